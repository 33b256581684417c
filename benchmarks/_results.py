"""Writing benchmark results: the commit they ran at, and sizes kept across runs."""

import subprocess
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent


def commit() -> str:
    """The short hash of the checkout the benchmark runs from."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def merge_by_size(kept: list, rows: list) -> list:
    """``kept`` rows of earlier runs with ``rows`` of this one, one row per
    ``size`` (this run's win), sorted by size; this run's rows get today's
    date and the commit, so rows of other sizes keep their own."""
    by_size = {r["size"]: r for r in kept}
    stamp = {"date": date.today().isoformat(), "commit": commit()}
    for r in rows:
        by_size[r["size"]] = {**stamp, **r}
    return [by_size[k] for k in sorted(by_size)]
