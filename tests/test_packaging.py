import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_extension_yaml_and_entry_point(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("stemunmix-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "stemunmix/hyperspy_extension.yaml" in names
        (ep,) = [n for n in names if n.endswith("entry_points.txt")]
        entry_points = zf.read(ep).decode()
    assert "[hyperspy.extensions]" in entry_points
    assert "stemunmix = stemunmix" in entry_points
