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
