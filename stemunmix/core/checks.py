"""Argument checks shared by every entry point (plain Python, no HyperSpy).

Each helper names the parameter and what would work, and raises before any
heavy work: ``TypeError`` for a value of the wrong kind, ``ValueError`` for a
value of the right kind outside its range.
"""

from __future__ import annotations

import math

import numpy as np


def real(name: str, value, low=None, high=None, low_open=False) -> float:
    """A finite real number in [low, high] (``low_open``: (low, high])."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"{name} must be a number, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    bracket = "(" if low_open else "["
    if (
        not math.isfinite(value)
        or (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and value > high)
    ):
        raise ValueError(
            f"{name} must be a finite number in {bracket}{lo}, {hi}], got {value}"
        )
    return value


def count(name: str, value, low: int = 1, high: int | None = None) -> int:
    """An integer in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        )
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be an integer {bound}, got {value}")
    return value


def one_of(name: str, value, options):
    """``value`` if it is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def class_names(name: str, value, known) -> list[str]:
    """One name or a list of names, each in ``known`` (the column classes)."""
    names = [value] if isinstance(value, (str, int, np.integer)) else value
    try:
        names = list(names)
    except TypeError:
        raise TypeError(
            f"{name} must be a class name or a list of them, got {type(value).__name__}"
        ) from None
    known = list(known)
    out = []
    for n in names:
        if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
            if not 0 <= n < len(known):
                raise ValueError(f"{name}: class index {n} out of range for {known}")
            n = known[n]
        if n not in known:
            raise ValueError(f"{name}: {n!r} is not one of the column classes {known}")
        out.append(str(n))
    if not out:
        raise ValueError(f"{name} must name at least one of the column classes {known}")
    return out


# Packages whose frames a warning skips to reach the user's own line.
_INNER = ("stemunmix", "hyperspy", "dask", "concurrent")


def _inner_paths() -> tuple:
    import importlib.util
    import os
    import threading

    paths = [threading.__file__]
    for name in _INNER:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            paths += [os.path.join(p, "") for p in spec.submodule_search_locations]
    return tuple(paths)


def warn(message: str, category=UserWarning) -> None:
    """``warnings.warn`` pointing at the user's line: the first frame on the
    stack outside stemunmix (and HyperSpy, dask and thread machinery, which
    call into it), whatever the depth of the call inside the package."""
    import sys
    import warnings

    inner = _inner_paths()
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(inner):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def note(message: str) -> None:
    """An informational message (nothing for the user to act on): the
    ``stemunmix`` logger at INFO, not a warning."""
    import logging

    logging.getLogger("stemunmix").info(message)


def calibrated(axis) -> bool:
    """Whether an axis (anything with ``.units``, such as a HyperSpy axis)
    carries units: HyperSpy's default '<undefined>', an empty string and
    pixels are none. The one test every step uses."""
    units = str(axis.units)
    return units not in ("", "<undefined>", "None", "px", "pixel", "pixels")


# Lengths in nm per unit, as the axes of microscope files spell them.
UNITS = {
    "pm": 1e-3,
    "\u00c5": 0.1,  # the letter; the Angstrom sign U+212B is normalised to it
    "A": 0.1,
    "angstrom": 0.1,
    "nm": 1.0,
    "\u03bcm": 1e3,  # Greek mu; the micro sign U+00B5 is normalised to it
    "um": 1e3,
    "mm": 1e6,
    "m": 1e9,
}


def unit_key(text: str) -> str:
    """A unit as :data:`UNITS` spells it (Unicode compatibility forms)."""
    import unicodedata

    return unicodedata.normalize("NFKC", str(text)).strip()


def nm_per_unit(units) -> float | None:
    """How many nm one of ``units`` is (None: not a length stemunmix knows)."""
    return UNITS.get(unit_key(units))
