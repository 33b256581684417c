import os
from pathlib import Path

import pytest

REAL_DATA = Path(
    os.environ.get(
        "STEMUNMIX_REAL_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real",
    )
)


@pytest.fixture
def real_data():
    """Folder of real microscope images; the test skips where it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real microscope data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def forward_passes():
    """The segmentation network's forward passes (any copy), one entry per
    call with the number of tiles in its batch: ``== []`` asserts that a
    check came before any network work."""
    import torch

    from stemunmix.nn.unet import DilatedUNet

    calls = []

    def hook(module, args, output):
        if isinstance(module, DilatedUNet):
            calls.append(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


@pytest.fixture(scope="module")
def small():
    """A 256^2 synthetic perovskite and its truth (a fresh one per module)."""
    from stemunmix.synthetic import perovskite

    return perovskite(shape=256, seed=0)
