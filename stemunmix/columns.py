"""Atomic column positions: the one container every step of stemunmix passes on.

Positions are pixels in [x, y] order (Atomap's order), pixel centres at integer
coordinates. Calibrated units appear only at the edges (:meth:`Columns.calibrated`,
markers, Atomap conversion with a pixel size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Columns:
    """Positions, class labels and scores of atomic columns.

    Parameters
    ----------
    xy : array_like, shape (N, 2)
        Column positions in pixels, [x, y] order.
    labels : array_like of int, shape (N,), optional
        Class index of each column into ``class_names``; default all 0.
    class_names : sequence of str, optional
        Name of each class; default ``["A"]`` or one name per label found.
    scores : array_like of float, shape (N,), optional
        Confidence of each column (higher is better); default ones.
    nav_index : array_like of int, shape (N, n_nav), optional
        For image stacks: the navigation index of the frame each column belongs
        to, in HyperSpy's navigation order (x first).
    """

    def __init__(
        self,
        xy,
        labels=None,
        class_names: Sequence[str] | None = None,
        scores=None,
        nav_index=None,
    ):
        xy = np.asarray(xy, dtype=float)
        if xy.size == 0:
            xy = xy.reshape(0, 2)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(
                f"xy must have shape (N, 2) in [x, y] pixel order, got {xy.shape}"
            )
        if not np.all(np.isfinite(xy)):
            raise ValueError("xy contains NaN or inf; remove those columns first")
        n = len(xy)
        labels = np.zeros(n, int) if labels is None else np.asarray(labels)
        if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(f"labels must be {n} integers, got shape {labels.shape}")
        labels = labels.astype(int)
        if class_names is None:
            n_cls = int(labels.max()) + 1 if n else 1
            class_names = ["A", "B", "C", "D"][:n_cls] if n_cls <= 4 else None
            class_names = class_names or [f"class{i}" for i in range(n_cls)]
        if isinstance(class_names, str):
            raise TypeError("class_names must be a sequence of names, not one string")
        class_names = [str(c) for c in class_names]
        if n and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(
                f"labels must lie in 0..{len(class_names) - 1} for class_names "
                f"{class_names}"
            )
        scores = np.ones(n) if scores is None else np.asarray(scores, dtype=float)
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {scores.shape}")
        if nav_index is not None:
            nav_index = np.asarray(nav_index, dtype=int).reshape(n, -1)
        self.xy = xy
        self.labels = labels
        self.class_names = class_names
        self.scores = scores
        self.nav_index = nav_index

    # --- basic container behaviour ----------------------------------------------

    def __len__(self) -> int:
        return len(self.xy)

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{name}: {int(np.sum(self.labels == i))}"
            for i, name in enumerate(self.class_names)
        )
        return f"<Columns, {len(self)} columns ({counts})>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Columns):
            return NotImplemented
        same_nav = (self.nav_index is None and other.nav_index is None) or (
            self.nav_index is not None
            and other.nav_index is not None
            and np.array_equal(self.nav_index, other.nav_index)
        )
        return (
            np.array_equal(self.xy, other.xy)
            and np.array_equal(self.labels, other.labels)
            and self.class_names == other.class_names
            and np.array_equal(self.scores, other.scores)
            and same_nav
        )

    def __getitem__(self, index) -> Columns:
        """Select columns by integer index, slice or boolean mask."""
        index = np.arange(len(self))[index]
        return Columns(
            self.xy[index],
            self.labels[index],
            self.class_names,
            self.scores[index],
            None if self.nav_index is None else self.nav_index[index],
        )

    @property
    def x(self) -> np.ndarray:
        return self.xy[:, 0]

    @property
    def y(self) -> np.ndarray:
        return self.xy[:, 1]

    def class_index(self, name: str | int) -> int:
        """Index of a class given by name or index; ValueError if unknown."""
        if isinstance(name, (int, np.integer)):
            if not 0 <= name < len(self.class_names):
                raise ValueError(
                    f"class index {name} out of range for {self.class_names}"
                )
            return int(name)
        if name not in self.class_names:
            raise ValueError(
                f"unknown class name {name!r}; known classes: {self.class_names}"
            )
        return self.class_names.index(name)

    def select(self, name: str | int) -> Columns:
        """The columns of one class (by name or index)."""
        return self[self.labels == self.class_index(name)]

    def frame(self, index) -> Columns:
        """The columns of one frame of a stack (``nav_index == index``, given in
        HyperSpy's navigation order, x first, like ``image.inav[...]``); the
        result has no navigation index. Frames may hold different numbers of
        columns."""
        if self.nav_index is None:
            raise ValueError("these columns belong to a single image; no frame to pick")
        index = np.atleast_1d(np.asarray(index, dtype=int))
        if index.shape != (self.nav_index.shape[1],):
            raise ValueError(
                f"index must have {self.nav_index.shape[1]} entries (one per "
                f"navigation axis), got {index.tolist()}"
            )
        sel = self[(self.nav_index == index).all(1)]
        sel.nav_index = None
        return sel

    def calibrated(self, scale=(1.0, 1.0), offset=(0.0, 0.0)) -> np.ndarray:
        """Positions in calibrated units: ``offset + scale * xy`` per axis (x, y)."""
        return np.asarray(offset, float) + np.asarray(scale, float) * self.xy

    # --- edges: Atomap, HyperSpy markers, polarization ---------------------------

    def to_sublattices(self, image=None, pixel_size=None, units=None) -> list:
        """One ``atomap.Sublattice`` per class, named by class.

        ``image``: the frame the columns were found on (a Signal2D gives its
        pixel size and units too); a blank image of the right size if None.
        """
        from stemunmix.interop.atomap import to_sublattices

        return to_sublattices(self, image, pixel_size, units)

    def to_atom_lattice(self, image=None, pixel_size=None, units=None):
        """An ``atomap.Atom_Lattice`` with one sublattice per class."""
        from stemunmix.interop.atomap import to_atom_lattice

        return to_atom_lattice(self, image, pixel_size, units)

    @classmethod
    def from_atomap(cls, obj) -> Columns:
        """Columns from an Atomap Sublattice, a list of them, or an Atom_Lattice."""
        from stemunmix.interop.atomap import from_atomap

        return from_atomap(obj)

    def as_markers(self, scale=(1.0, 1.0), offset=(0.0, 0.0), size=8, **kwargs):
        """HyperSpy ``Points`` markers at the columns, in calibrated units.

        Pass the signal's axes calibration (``scale``, ``offset``, [x, y]); one
        colour per class. Add with ``signal.add_marker(markers)`` after plotting.
        """
        from hyperspy.api import plot

        from stemunmix.interop.atomap import COLORS

        colors = [COLORS[k % len(COLORS)] for k in self.labels]
        return plot.markers.Points(
            offsets=self.calibrated(scale, offset), sizes=size, color=colors, **kwargs
        )

    def polarization(self, a="A", b="B"):
        """Displacement of each ``b`` column from the centroid of its ``a``
        neighbours, pixels [x, y]: returns (Columns of the b columns, (N_b, 2)).

        Only ``b`` columns with the full set of ``a`` neighbours (the number
        most columns have: four in [001], two in [110]) are returned; those at
        the image edge, with some neighbours missing, are left out.
        """
        from stemunmix.core.polarization import polarization

        cols_b = self.select(b)
        vectors, count = polarization(self.select(a).xy, cols_b.xy)
        if len(count):
            full = count >= np.bincount(count).argmax()
            cols_b, vectors = cols_b[full], vectors[full]
        return cols_b, vectors

    def plot_polarization(self, image=None, a="A", b="B", scale=None, ax=None):
        """Quiver plot of :meth:`polarization` (over ``image`` if given)."""
        import matplotlib.pyplot as plt

        cols_b, vec = self.polarization(a, b)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6))
        if image is not None:
            ax.imshow(np.asarray(getattr(image, "data", image)), cmap="gray")
        length = np.hypot(*vec.T)
        q = ax.quiver(cols_b.x, cols_b.y, vec[:, 0], vec[:, 1], length,
                      cmap="viridis", scale=scale, angles="xy")  # fmt: skip
        ax.set_aspect("equal")
        if image is None:
            ax.invert_yaxis()
        plt.colorbar(q, ax=ax, label="displacement (px)")
        return ax

    # --- storage in HyperSpy metadata ------------------------------------------

    def to_dict(self) -> dict:
        """Plain dictionary of arrays and lists (stored in signal metadata)."""
        d = {
            "xy": self.xy.copy(),
            "labels": self.labels.copy(),
            "class_names": list(self.class_names),
            "scores": self.scores.copy(),
        }
        if self.nav_index is not None:
            d["nav_index"] = self.nav_index.copy()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Columns:
        n = np.asarray(d["labels"]).size
        return cls(
            np.asarray(d["xy"], float).reshape(n, 2),
            np.asarray(d["labels"], int).reshape(n),
            list(d["class_names"]),
            np.asarray(d["scores"], float).reshape(n),
            d.get("nav_index"),
        )
