"""Bad input at the window kernel: never a read outside the image."""

import numpy as np
import pytest
from helpers import refused as _refused

from stemunmix import Columns


def test_window_kernel_never_reads_outside_the_image(small):
    image, _ = small
    lo, hi = float(image.data.min()), float(image.data.max())
    far = Columns([[100, 100], [1000, 1000], [-5000, 3]])
    for d in (9, 101):  # 101 crashed the interpreter
        with pytest.warns(UserWarning, match="2 of 3 columns lie outside"):
            ld = image.local_descriptors(d, columns=far, source="image", edge="nearest")
        assert ld.axes_manager.navigation_size == 1
        assert lo <= ld.data.min() and ld.data.max() <= hi
        np.testing.assert_array_equal(ld.columns.xy, [[100, 100]])


def test_window_kernel_clamps_positions_far_outside():
    from stemunmix.core.windows import extract_windows

    image = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    xy = np.array([[1e6, 1e6], [-1e6, 5.0], [15.2, -1e9]])
    for edge in ("nearest", "drop"):
        win = extract_windows(image, xy, 5, edge)
        assert image.min() <= win.min() and win.max() <= image.max()
    # "nearest" far outside is the corner/edge value, as padding says.
    win = extract_windows(image, xy[:1], 5, "nearest")
    np.testing.assert_allclose(win, image[-1, -1])
    _refused(lambda: extract_windows(image, [[np.nan, 3]], 5), ValueError, "xy", "NaN")
