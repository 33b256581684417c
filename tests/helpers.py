"""Helpers the tests share (plain functions; fixtures are in conftest.py)."""

import hyperspy.api as hs
import numpy as np
import pytest


def image(data, scale=(1.0, 1.0), units="<undefined>"):
    """An AtomicResolutionImage of ``data`` with the given pixel size."""
    s = hs.signals.Signal2D(np.asarray(data, np.float32))
    s.set_signal_type("atomic_resolution")
    for ax, sc in zip(s.axes_manager.signal_axes, scale, strict=True):
        ax.scale, ax.units = sc, units
    return s


def refused(call, error, *words):
    """``call()`` raises ``error`` whose message holds every one of ``words``
    (and prints no numpy scalar type); returns the message."""
    with pytest.raises(error) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"
    assert "np.int64" not in msg and "np.float64" not in msg, msg
    return msg
