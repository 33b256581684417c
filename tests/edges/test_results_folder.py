"""The results folder (report/folder.py): written whole or not at all, a
second run kept out, the user's files never replaced, damage named on load."""

import json
import os
import subprocess
import sys

import hyperspy.api as hs
import pytest

from stemunmix.cli import main
from stemunmix.report.folder import (
    MANIFEST,
    ResultsError,
    check_file,
    check_results,
    load_results,
    results_folder,
)

# A run that writes a report and three zarr signals tagged with its name,
# killed (SIGKILL) at ``point``: nothing of Python's clean-up runs.
WRITER = r"""
import os, signal, sys
import numpy as np
import hyperspy.api as hs
from stemunmix.report import folder as F
from stemunmix.report.page import save_signal

out, tag, point = sys.argv[1], sys.argv[2], sys.argv[3]

def die(here):
    if here == point:
        os.kill(os.getpid(), signal.SIGKILL)

real_replace, real_exchange = os.replace, F._exchange
def replace(a, b):
    die("manifest")
    return real_replace(a, b)
def exchange(a, b):
    done = real_exchange(a, b)
    die("swapped")
    return done
F.os.replace, F._exchange = replace, exchange

with F.results_folder(out) as stage:
    die("start")
    (stage.path / "report.html").write_text(tag)
    die("report")
    for k, name in enumerate(("image", "probabilities", "descriptors")):
        s = hs.signals.Signal2D(np.full((2, 32, 32), ord(tag[0]) + k, float)).as_lazy()
        s.data = s.data.rechunk((1, 16, 16))
        s.metadata.General.title = tag
        if point == f"during-{name}":
            os.makedirs(stage.path / f"{name}.zspy" / "data")
            (stage.path / f"{name}.zspy" / "data" / "0.0.0").write_bytes(b"torn")
            die(point)
        save_signal(s, stage.path / f"{name}.zspy")
        die(f"after-{name}")
"""

POINTS = ["start", "report", "during-image", "after-image", "during-probabilities",
          "during-descriptors", "after-descriptors", "manifest", "swapped"]  # fmt: skip


def _write(tmp_path, out, tag, point="none"):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.run(
        [sys.executable, str(script), str(out), tag, point],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tags(out):
    """The tag of every file of a results folder, checked first."""
    check_results(out)
    signals = load_results(out)
    tags = {s.metadata.General.title for s in signals.values()}
    tags.add((out / "report.html").read_text())
    return tags


def test_a_killed_run_leaves_the_earlier_set_or_the_new_one_whole(tmp_path):
    out = tmp_path / "d"
    assert _write(tmp_path, out, "A").returncode == 0
    # Each killed run's leftovers are cleared by the next run to start.
    for point in POINTS:
        killed = _write(tmp_path, out, "B", point)
        assert killed.returncode == -9, (point, killed.stderr)
        # Whole: every listed file present, every signal loads, one run's set:
        # the earlier one until the new one is complete and swapped in.
        assert _tags(out) == ({"B"} if point == "swapped" else {"A"}), point
    assert _write(tmp_path, out, "C").returncode == 0
    assert _tags(out) == {"C"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "writer.py"]


def test_a_second_run_is_kept_out_while_one_writes(tmp_path):
    out = tmp_path / "d"
    with results_folder(out):
        with pytest.raises(ResultsError, match=f"process {os.getpid()}"):
            with results_folder(out):
                pass
    with results_folder(out) as stage:  # the lock was released
        (stage.path / "report.html").write_text("x")
    assert (out / MANIFEST).exists()


def test_a_folder_of_the_users_files_is_refused_not_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "scan.tif").write_bytes(b"data")
    with pytest.raises(ResultsError, match=r"scan\.tif.*give a new folder"):
        with results_folder(out):
            pass
    assert (out / "scan.tif").read_bytes() == b"data"


@pytest.mark.parametrize("kind", ["file", "parent_is_file", "unwritable"])
def test_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, kind,
                                                               monkeypatch):  # fmt: skip
    import stemunmix.report as report

    out = tmp_path / "out"
    if kind == "file":
        out.write_text("")
    elif kind == "parent_is_file":  # refused for any user, root included
        (tmp_path / "f").write_text("")
        out = tmp_path / "f" / "out"
    else:
        tmp_path.chmod(0o500)
        if os.access(tmp_path, os.W_OK):  # root writes anyway
            tmp_path.chmod(0o700)
            pytest.skip("this user can write into a read-only folder")

    def never(*a, **k):
        raise AssertionError("analysed before --out was checked")

    monkeypatch.setattr(report, "analyze", never)
    try:
        code = main(["analyze", str(tmp_path / "nothing.tif"), "--out", str(out)])
    finally:
        tmp_path.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2
    assert "--out" in err and "folder" in err


def test_a_missing_zarr_chunk_is_named_where_results_load(tmp_path):
    out = tmp_path / "d"
    assert _write(tmp_path, out, "A").returncode == 0
    chunks = sorted((out / "probabilities.zspy").rglob("[0-9]*"))
    chunks = [c for c in chunks if c.is_file()]
    assert len(chunks) >= 2
    chunks[1].unlink()
    with pytest.raises(ResultsError, match=r"probabilities\.zspy \(.*missing"):
        check_results(out)
    with pytest.raises(ResultsError, match=r"probabilities\.zspy is damaged"):
        check_file(out / "probabilities.zspy")
    check_file(out / "image.zspy")  # the others are whole
    # zarr alone reads the hole as its fill value, without a word
    assert float(hs.load(out / "probabilities.zspy").data.min()) == 0.0
    code = main(
        ["analyze", str(out / "probabilities.zspy"), "--out", str(tmp_path / "e")]
    )
    assert code == 2


def test_a_folder_without_its_manifest_is_incomplete(tmp_path):
    out = tmp_path / "d"
    assert _write(tmp_path, out, "A").returncode == 0
    record = json.loads((out / MANIFEST).read_text())
    assert set(record["files"]) >= {"report.html"}
    (out / MANIFEST).unlink()
    with pytest.raises(ResultsError, match="no manifest.json"):
        check_results(out)


def test_what_an_earlier_run_left_is_named_before_it_is_replaced(tmp_path, capsys):
    from stemunmix.cli import _say_replaced

    out = tmp_path / "d"
    assert _write(tmp_path, out, "A").returncode == 0
    with results_folder(out) as stage:
        assert "report.html" in stage.replaced and "image.zspy" in stage.replaced
        _say_replaced(out, stage)
        (stage.path / "report.html").write_text("B")
    said = capsys.readouterr().out
    assert "replacing an earlier run's results" in said and "image.zspy" in said
    # replaced whole: nothing of the earlier run is left beside the new one
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "report.html"]
