"""A results folder written whole or not at all, and checked where it is read.

A run writes into a hidden staging folder beside ``out``
(``.NAME.partial-PID``), writes ``manifest.json`` there last (every file
written, with its size: a zarr store's chunks are files), then moves the
earlier folder aside and the staging folder into its place. A run killed at
any point leaves the earlier complete set where it was; the next run (or
:func:`check_results`) finds the leftovers by name and clears them. A lock
file beside ``out`` (``.NAME.lock``, holding the writer's process id) keeps
a second run out of a folder another one is writing.

Only a folder stemunmix wrote is replaced: one that holds other files is
refused, never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "manifest.json"
# The signals a results folder holds (latents: method "rvae" only).
SIGNALS = ("image", "probabilities", "descriptors", "latents")
# What a results folder holds; anything else is the user's and is not replaced.
_OURS_NAMES = {
    "report.html",
    "summary.json",
    "results.json",  # written by stemunmix before 2026-12-02
    "columns.csv",
    "cells.csv",
    MANIFEST,
    "maps.zarr",
} | {f"{n}.{e}" for n in SIGNALS for e in ("hspy", "zspy")}


class ResultsError(OSError):
    """A results folder that cannot be written, or one that is damaged."""


def _ours(entry: Path) -> bool:
    return entry.name in _OURS_NAMES or entry.suffix.lower() == ".png"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _siblings(out: Path, kind: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{kind}-*"))


def _lock(out: Path) -> Path:
    lock = out.parent / f".{out.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise ResultsError(
                    f"--out {out}: another run (process {pid}) is writing this "
                    "folder; wait for it, or give another folder"
                ) from None
            lock.unlink(missing_ok=True)  # a killed run's lock
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ResultsError(f"--out {out}: cannot take the lock {lock}")


def _recover(out: Path) -> None:
    """Clear what a killed run left beside ``out`` (under the lock)."""
    partial = [p for p in _siblings(out, "partial") if (p / MANIFEST).exists()]
    old = _siblings(out, "old")
    if not out.exists():
        # Killed between the two moves: the newest complete set goes back.
        back = partial[-1] if partial else (old[-1] if old else None)
        if back is not None:
            os.rename(back, out)
    for p in _siblings(out, "partial") + _siblings(out, "old"):
        shutil.rmtree(p, ignore_errors=True)


def _check_out(out: Path) -> list[str]:
    """Refuse an ``out`` that is a file, not writable, or the user's folder;
    return the names of an earlier run's results it holds."""
    if out.exists() and not out.is_dir():
        raise ResultsError(
            f"--out {out} is a file: --out must be a folder (created if missing)"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(
            f"--out {out}: cannot create its parent folder ({exc.strerror}); "
            "--out must be a writable folder"
        ) from exc
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ResultsError(
            f"--out {out}: {out.parent} is not writable; --out must be a writable "
            "folder"
        )
    if not out.exists():
        return []
    entries = sorted(out.iterdir())
    foreign = [e.name for e in entries if not _ours(e)]
    if foreign:
        raise ResultsError(
            f"--out {out} holds files stemunmix did not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "give a new folder, or one an earlier stemunmix run wrote"
        )
    return [e.name for e in entries]


def _inventory(folder: Path) -> dict:
    """{relative path: size} of every file under ``folder``."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
    return files


def write_manifest(folder) -> Path:
    """``manifest.json`` in ``folder``: every file under it with its size."""
    from stemunmix import __version__

    folder = Path(folder)
    record = {"stemunmix": __version__, "files": _inventory(folder)}
    path = folder / MANIFEST
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE); False
    where the system or the file system cannot, and nothing was moved."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(
        at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange
    )
    return done == 0


@contextmanager
def results_folder(out):
    """Stage a run's results and put them in place at once.

    Checks ``out`` before any work (a writable folder, not another run's,
    not the user's own files), takes the lock and yields the staging folder
    to write into. On a normal exit the manifest is written, the earlier
    results (if any) are replaced as a whole and the lock released; on an
    error the staging folder is removed and ``out`` is left as it was.
    The yielded object has ``.path`` (the staging folder) and ``.replaced``
    (the names of the earlier results it replaces).
    """
    out = Path(out).absolute()
    _check_out(out)
    lock = _lock(out)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        _recover(out)
        replaced = _check_out(out)
        stage.mkdir()
        yield _Stage(stage, replaced)
        write_manifest(stage)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if not out.exists():
            os.rename(stage, out)
        elif _exchange(stage, out):
            shutil.rmtree(stage, ignore_errors=True)  # now the earlier set
        else:
            os.rename(out, old)
            os.rename(stage, out)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        lock.unlink(missing_ok=True)


class _Stage:
    def __init__(self, path: Path, replaced: list[str]):
        self.path = path
        self.replaced = replaced


def check_results(folder) -> dict:
    """Check a results folder against its manifest.

    Raises :class:`ResultsError` naming the damaged file (a missing file, a
    zarr chunk missing or of another size) or saying that the folder is
    incomplete (no manifest: the run that wrote it did not finish). Returns
    the manifest.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise ResultsError(
            f"{folder} is not a complete stemunmix results folder: it has no "
            f"{MANIFEST}, written last by a run that finished; run the analysis "
            "again"
        )
    record = _read_manifest(path)
    damaged = _damaged(folder, record["files"])
    if damaged:
        raise ResultsError(
            f"{folder}: damaged results: "
            + "; ".join(f"{top} ({why})" for top, why in damaged.items())
            + "; run the analysis again"
        )
    return record


def _read_manifest(path: Path) -> dict:
    """The manifest at ``path``, or a ResultsError naming it as damaged."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["files"] = dict(record["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsError(
            f"{path} is damaged ({exc}); run the analysis again"
        ) from exc
    return record


def _damaged(folder: Path, files: dict) -> dict:
    """{top-level entry: what is wrong} against the manifest's ``files``."""
    damaged = {}
    for name, size in files.items():
        p = folder / name
        top = name.split("/")[0]
        if not p.is_file():
            damaged.setdefault(top, f"{name} is missing")
        elif p.stat().st_size != size:
            damaged.setdefault(top, f"{name} has {p.stat().st_size} bytes, not {size}")
    return damaged


def load_results(folder, lazy: bool = False) -> dict:
    """The signals of a results folder, checked first (:func:`check_results`):
    {"image", "probabilities", "descriptors" (, "latents")} -> signal."""
    import hyperspy.api as hs

    folder = Path(folder)
    check_results(folder)
    out = {}
    for name in SIGNALS:
        for ext in ("zspy", "hspy"):
            p = folder / f"{name}.{ext}"
            if p.exists():
                out[name] = hs.load(p, lazy=lazy)
                break
    return out


def check_file(path) -> None:
    """Where ``path`` lies in a results folder (one with a manifest), check
    that folder's record of it; a file outside one is not checked."""
    path = Path(path).absolute()
    folder = path.parent
    manifest = folder / MANIFEST
    if not manifest.exists():
        return
    why = _damaged(folder, _read_manifest(manifest)["files"]).get(path.name)
    if why is not None:
        raise ResultsError(
            f"{path} is damaged ({why}); the manifest of {folder} records it "
            "whole; run the analysis again"
        )
