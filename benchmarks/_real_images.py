"""Loaders of the real microscope images in ../shared/data/real (never committed)."""

import os
from pathlib import Path

import numpy as np

REAL = Path(
    os.environ.get(
        "STEMUNMIX_REAL_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real",
    )
)


def load(name: str) -> np.ndarray:
    """One real image as a float32 array (rows, cols)."""
    import hyperspy.api as hs

    if name == "SrTiO3 [110] ADF":
        f = REAL / "atomap_hist_STO110_ADF_full.hdf5"
        return hs.load(f, file_format="HSPY").data.astype(np.float32)
    if name == "PbTiO3/SrRuO3 HAADF":
        return hs.load(REAL / "temul_PTO-SRO_HAADF_Hadjimichael2020.hspy").data.astype(
            np.float32
        )
    if name == "NSMO [110] HAADF":
        f = REAL / "kemstem_NSMO110_cryo_HAADF_registered.tif"
        return hs.load(f).data.astype(np.float32)
    if name == "SrTiO3 low dose":
        import h5py

        with h5py.File(REAL / "tkrem_exp_hrstem_5imgs_idx4_STO_lowdose.h5") as f:
            return f["x"][4, 0].astype(np.float32)
    if name.startswith("nanoparticles "):  # tk_r_em indices 0-3
        import h5py

        with h5py.File(REAL / "tkrem_exp_hrstem_5imgs_idx4_STO_lowdose.h5") as f:
            return f["x"][int(name.split()[-1]), 0].astype(np.float32)
    raise KeyError(name)


NAMES = [
    "SrTiO3 [110] ADF",
    "PbTiO3/SrRuO3 HAADF",
    "NSMO [110] HAADF",
    "SrTiO3 low dose",
]
