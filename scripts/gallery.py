"""Regenerate the screenshots of docs/gallery.md.

    python scripts/gallery.py [--out runs/gallery]

Runs `stemunmix demo` and `stemunmix analyze` (defaults, nothing chosen by
hand) on the real images of ../shared/data/real (PbTiO3/SrRuO3 with its
0.015 nm pixel from PROVENANCE.md, SrTiO3 [110] ADF and ABF, NSMO), renders
the top of each report.html in headless Chromium and writes it, halved, to
docs/figures/gallery_<name>.png. Prints each report's summary answer.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
CASES = {
    "demo": ["demo"],
    "pto_sro": ["analyze", "PbTiO3_SrRuO3.hspy", "--pixel-size", "0.015"],
    "sto_adf": ["analyze", str(REAL / "atomap_hist_STO110_ADF_full.hdf5")],
    "sto_abf": ["analyze", str(REAL / "atomap_hist_STO110_ABF_full.hdf5")],
    "nsmo": ["analyze", "NSMO.hspy"],
}


def _inputs(out: Path) -> None:
    """The real images that need reading first, saved as .hspy."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hyperspy.api as hs
    from _real_images import load

    for name, file in (("PbTiO3/SrRuO3 HAADF", "PbTiO3_SrRuO3.hspy"),
                       ("NSMO [110] HAADF", "NSMO.hspy")):  # fmt: skip
        hs.signals.Signal2D(load(name)).save(out / file, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gallery")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None or not REAL.is_dir():
        sys.exit("needs chromium and ../shared/data/real")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _inputs(out)
    for name, command in CASES.items():
        folder = out / name
        subprocess.run([sys.executable, "-m", "stemunmix.cli", *command, "--out",
                        str(folder), "--quiet"], cwd=out, check=True)  # fmt: skip
        shot = out / f"{name}.png"
        subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1150,1700",
                        f"--screenshot={shot}", (folder / "report.html").as_uri()],
                       check=True, capture_output=True)  # fmt: skip
        image = Image.open(shot).convert("RGB")
        image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
        image = image.quantize(colors=128)
        image.save(ROOT / "docs" / "figures" / f"gallery_{name}.png", optimize=True)
        answer = json.loads((folder / "summary.json").read_text())["answer"]
        print(f"{name}: {answer}\n")


if __name__ == "__main__":
    main()
