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
    sigma : array_like, shape (N, 2), optional
        Position uncertainty (one standard deviation) in pixels, [x, y];
        default NaN (unknown).
    quantities : dict of str to array_like (N,), optional
        Per-column fitted quantities (``find_columns`` gives ``height``,
        ``intensity``, ``width``, ``background``, ``residual`` and
        ``line_width``, the width of the position's information across the
        scan lines).
    ij : array_like of int, shape (N, 2), optional
        Lattice site (i, j) of every column (>= 0), -1 where not indexed; a B
        column shares the (i, j) of the A column at its cell's origin.
    lattice_vectors : array_like, shape (2, 2), optional
        The two lattice vectors [a, b] in pixels, each [x, y]: i counts along
        a, j along b. For a stack, (F, 2, 2), one pair per frame, with
        ``lattice_frames`` (F, n_nav) saying which.
    covariance : array_like, shape (N, 2, 2), optional
        Position covariance in pixels^2, [x, y]; ``sigma`` is then the square
        root of its diagonal. Default: ``sigma`` squared on the diagonal.
    line_covariance : array_like, shape (N, 2, 2), optional
        The part of ``covariance`` that is scan-line noise, shared with the
        columns on the same scan lines of the same frame (pixels^2, diagonal;
        ``find_columns`` measures it). Measurements add the covariances it
        makes between their columns
        (:func:`stemunmix.core.measure.line_cross`). Default zero: the
        columns' errors independent.

    Examples
    --------
    >>> from stemunmix import Columns
    >>> c = Columns([[10.0, 12.0], [20.5, 12.0]], labels=[0, 1], class_names=["A", "B"])
    >>> len(c), c.select("B").xy.tolist()
    (2, [[20.5, 12.0]])
    >>> c.sigma.shape
    (2, 2)
    """

    def __init__(
        self,
        xy,
        labels=None,
        class_names: Sequence[str] | None = None,
        scores=None,
        nav_index=None,
        sigma=None,
        quantities=None,
        ij=None,
        lattice_vectors=None,
        lattice_frames=None,
        *,
        covariance=None,
        line_covariance=None,
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
        self.covariance, self.sigma = _uncertainty(sigma, covariance, n)
        self.line_covariance = _line_covariance(line_covariance, n)
        self.quantities = {
            str(k): _per_column(v, n, f"quantities[{k!r}]", (), float, np.nan)
            for k, v in (quantities or {}).items()
        }
        self.ij = None if ij is None else _per_column(ij, n, "ij", (2,), int, -1)
        self.lattice_vectors = (
            None if lattice_vectors is None else np.asarray(lattice_vectors, float)
        )
        self.lattice_frames = (
            None if lattice_frames is None else np.asarray(lattice_frames, int)
        )

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
        same_ij = (self.ij is None and other.ij is None) or (
            self.ij is not None
            and other.ij is not None
            and np.array_equal(self.ij, other.ij)
        )
        return (
            np.array_equal(self.xy, other.xy)
            and np.array_equal(self.labels, other.labels)
            and self.class_names == other.class_names
            and np.array_equal(self.scores, other.scores)
            and same_nav
            and same_ij
            and np.array_equal(self.sigma, other.sigma, equal_nan=True)
            and np.array_equal(self.covariance, other.covariance, equal_nan=True)
            and np.array_equal(
                self.line_covariance, other.line_covariance, equal_nan=True
            )
            and self.quantities.keys() == other.quantities.keys()
            and all(
                np.array_equal(v, other.quantities[k], equal_nan=True)
                for k, v in self.quantities.items()
            )
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
            self.sigma[index],
            {k: v[index] for k, v in self.quantities.items()},
            None if self.ij is None else self.ij[index],
            self.lattice_vectors,
            self.lattice_frames,
            covariance=self.covariance[index],
            line_covariance=self.line_covariance[index],
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
        if self.lattice_frames is not None:
            row = np.flatnonzero((self.lattice_frames == index).all(1))
            sel.lattice_vectors = self.lattice_vectors[row[0]] if len(row) else None
            sel.lattice_frames = None
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
        from stemunmix.interop.atomap import read_atomap

        return cls(*read_atomap(obj))

    def as_markers(self, scale=(1.0, 1.0), offset=(0.0, 0.0), size=8, **kwargs):
        """HyperSpy ``Points`` markers at the columns, in calibrated units.

        Pass the signal's axes calibration (``scale``, ``offset``, [x, y]); one
        colour per class. Add with ``signal.add_marker(markers)`` after plotting.
        """
        from hyperspy.api import plot

        from stemunmix.core.plotting import COLORS

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

    def polarization_map(
        self, a="A", b="B", reference=None, grid="lattice", image=None
    ):
        """Per unit cell: the ``b`` column's displacement from the centre of
        its ``a`` cell, with its propagated uncertainty, as a Signal2D.

        Only complete cells (the ``b`` column and the ``a`` corners, found by
        their lattice sites :attr:`ij`) get a value; others are NaN, so the
        image edge adds no half-cells. The navigation axis ``quantity`` holds
        ``x``, ``y``, ``sigma_x``, ``sigma_y`` (pixels, or the image's units
        with a calibrated ``image``), ``significance`` (the length of P over its sigma: the
        Mahalanobis length of the displacement under its covariance, above 3
        by chance in 1.1 % of cells) and ``covariance_xy`` (units^2). The
        uncertainty is the columns' :attr:`covariance`, the error model of
        ``find_columns`` (docs/measurements.md); a ``reference`` is taken
        as exact.

        Parameters
        ----------
        reference : None, "mean", bool array or HyperSpy ROI
            Subtract the median displacement of all complete cells ("mean": a
            mistilt or scan offset) or of the cells of a reference region: a
            mask on the lattice grid (nj, ni), a mask on the image grid
            (H, W), or an ROI (``hs.roi.RectangularROI``, ``CircleROI``,
            ``PolygonROI``; in ``image``'s units when given, else pixels)
            holding the cells whose B column lies inside; None: as measured.
        grid : {"lattice", "image"}
            Signal axes ``i`` and ``j`` (one pixel per cell), or the image's
            own grid (each cell's value over the pixels nearest its B column;
            needs ``image``).
        image : Signal2D or ndarray, optional
            The image the columns came from: its shape and calibration.
        """
        from stemunmix.signals._measurements import polarization_map

        return polarization_map(self, a, b, reference, grid, image)

    def polarization_region(
        self, region, reference=None, a="A", b="B", image=None
    ) -> dict:
        """Whether a region's mean polarization is non-zero.

        ``region`` (and ``reference``, optional): boolean masks (nj, ni) on
        the lattice grid of :meth:`polarization_map`, boolean masks on the
        image grid (H, W), or HyperSpy ROIs (``hs.roi.RectangularROI``,
        ``CircleROI``, ``PolygonROI``; in the units of ``image`` when given,
        else pixels), holding the cells whose B column lies inside. Returns the mean
        displacement of the region's complete cells (less the reference's),
        pixels [x, y], its ``covariance`` (2, 2) and ``sigma`` (2,) from
        the columns' :attr:`covariance` (a corner shared by cells counted
        once), its ``significance`` (the mean's length over its sigma, the Mahalanobis length)
        and ``p_value`` (the chance of that significance without a
        displacement), and the number of ``cells``.
        """
        from stemunmix.signals._measurements import polarization_region

        return polarization_region(self, region, reference, a, b, image)

    def strain_map(self, a="A", reference=None, grid="lattice", image=None):
        """Strain of the ``a`` lattice per cell (exx, eyy, exy, rotation in
        radians; columns without an A class, a crystal of one species, use
        their first column class for the default ``a``), against the median cell or the median of a ``reference``
        region (a boolean mask (nj, ni) of cells, a mask on the image grid,
        or a HyperSpy ROI, as in :meth:`polarization_map`; the cells whose
        centre lies inside), as a Signal2D with navigation
        axis ``quantity``; NaN where a cell lacks a corner. ``grid`` and
        ``image`` as in :meth:`polarization_map`."""
        from stemunmix.signals._measurements import strain_map

        return strain_map(self, a, reference, grid, image)

    def octahedral_map(self, o="O", b="B", grid="lattice", image=None):
        """Per unit cell: the pure-O columns on the two B-B bonds from the
        cell's B column (``a``: to the next B along the first lattice vector,
        ``b``: along the second), as a Signal2D with navigation axis
        ``quantity``: ``a_x``, ``a_y`` (the O column's displacement from the
        bond's midpoint: pixels, or the image's units with a calibrated
        ``image``), ``a_tilt`` (the octahedral tilt atan(2 d / L) in degrees,
        d the displacement across the bond, positive counter-clockwise as
        displayed, L the bond length), ``a_sigma_tilt`` (its standard
        deviation from the columns' sigma), and the same for ``b``.

        A bond with no O column within a quarter of its length of the
        midpoint is NaN: in [001] both bonds hold one, in [110] only ``a``
        (along [1-10]; the bond along [001] passes an AO column). ``grid`` and
        ``image`` as in :meth:`polarization_map`. Needs O columns (a model
        with an O class: the bundled ``"oxygen"`` one).
        """
        from stemunmix.signals._measurements import octahedral_map

        return octahedral_map(self, o, b, grid, image)

    def intensity_classes(
        self, name="A", n_classes: int = 2, quantity: str = "intensity", random_state=0
    ) -> np.ndarray:
        """Classes of the ``name`` columns by a fitted quantity (StatSTEM's
        atom counting): a Gaussian mixture of ``n_classes`` on the columns'
        ``quantities[quantity]`` (default the integrated intensity), e.g.
        La-rich against Bi A sites in La-BiFeO3, or a column's atom count.

        Returns (N,) int: the class of each ``name`` column, 0 the least
        intense, -1 for the columns of other classes and those without the
        quantity (not fitted). Map it with :meth:`site_map`, e.g.
        ``columns.site_map(classes == 0, "A")`` for a dopant map.
        """
        from stemunmix.signals._measurements import intensity_classes

        return intensity_classes(self, name, n_classes, quantity, random_state)

    def site_map(self, values, name="A", title: str | None = None):
        """Per-column ``values`` (N,) of the ``name`` columns on the lattice
        grid: a Signal2D with axes ``i`` and ``j``, NaN at sites without one."""
        from stemunmix.signals._measurements import site_map

        return site_map(self, values, name, title)

    def plot_polarization(
        self,
        image=None,
        a="A",
        b="B",
        scale=None,
        ax=None,
        kind="quiver",
        reference=None,
    ):
        """The per-cell polarization (:meth:`polarization_map`) as a quiver
        over ``image`` (``kind="quiver"``) or as a colour map, hue the
        direction and brightness the length (``kind="hsv"``; on the image grid
        with ``image``, else on the lattice grid). Columns without lattice
        sites get the quiver of :meth:`polarization`."""
        if self.ij is not None:
            from stemunmix.signals._measurements import plot_polarization

            return plot_polarization(self, image, a, b, kind, reference, scale, ax)
        import matplotlib.pyplot as plt

        if kind != "quiver":
            raise ValueError("kind='hsv' needs lattice sites (Columns.ij)")
        cols_b, vec = self.polarization(a, b)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6))
        if image is not None:
            ax.imshow(np.asarray(getattr(image, "data", image)), cmap="gray")
        length = np.hypot(*vec.T)
        q = ax.quiver(
            cols_b.x,
            cols_b.y,
            vec[:, 0],
            vec[:, 1],
            length,
            cmap="viridis",
            scale=scale,
            angles="xy",
        )
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
        d["sigma"] = self.sigma.copy()
        d["covariance"] = self.covariance.copy()
        d["line_covariance"] = self.line_covariance.copy()
        if self.quantities:
            d["quantities"] = {k: v.copy() for k, v in self.quantities.items()}
        if self.ij is not None:
            d["ij"] = self.ij.copy()
        if self.lattice_vectors is not None:
            d["lattice_vectors"] = self.lattice_vectors.copy()
        if self.lattice_frames is not None:
            d["lattice_frames"] = self.lattice_frames.copy()
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
            None if d.get("sigma") is None else np.asarray(d["sigma"]).reshape(n, 2),
            {k: np.asarray(v).reshape(n) for k, v in d.get("quantities", {}).items()},
            None if d.get("ij") is None else np.asarray(d["ij"]).reshape(n, 2),
            d.get("lattice_vectors"),
            d.get("lattice_frames"),
            covariance=None
            if d.get("covariance") is None
            else np.asarray(d["covariance"], float).reshape(n, 2, 2),
            line_covariance=None
            if d.get("line_covariance") is None
            else np.asarray(d["line_covariance"], float).reshape(n, 2, 2),
        )


def _uncertainty(sigma, covariance, n) -> tuple[np.ndarray, np.ndarray]:
    """(covariance (n, 2, 2), sigma (n, 2)) from either or both (which must
    agree); NaN where unknown. A covariance must be symmetric with variances
    >= 0, a sigma >= 0."""
    sig = _per_column(sigma, n, "sigma", (2,), float, np.nan)
    if (sig < 0).any():
        raise ValueError("sigma must be >= 0 (standard deviations in pixels)")
    if covariance is None:
        cov = np.zeros((n, 2, 2))
        cov[:, 0, 0], cov[:, 1, 1] = sig[:, 0] ** 2, sig[:, 1] ** 2
        return cov, sig
    cov = _per_column(covariance, n, "covariance", (2, 2), float, np.nan)
    diag = np.diagonal(cov, 0, 1, 2)
    if (diag < 0).any() or not np.allclose(
        cov[:, 0, 1], cov[:, 1, 0], rtol=1e-6, atol=0, equal_nan=True
    ):
        raise ValueError(
            "covariance must be symmetric (N, 2, 2) matrices with variances "
            ">= 0 on the diagonal, in pixels^2"
        )
    from_cov = np.sqrt(diag)
    if sigma is not None and not np.allclose(sig, from_cov, equal_nan=True):
        raise ValueError(
            "sigma and covariance disagree: give one of them (sigma is the "
            "square root of the covariance's diagonal)"
        )
    return cov, from_cov


def _line_covariance(value, n) -> np.ndarray:
    """(n, 2, 2) line-shared covariances (zero if None), diagonal >= 0."""
    if value is None:
        return np.zeros((n, 2, 2))
    cov = _per_column(value, n, "line_covariance", (2, 2), float, 0.0)
    diag = np.diagonal(cov, 0, 1, 2)
    if (diag < 0).any() or np.isnan(cov).any():
        raise ValueError(
            "line_covariance must be (N, 2, 2) covariances in pixels^2 with "
            "variances >= 0 and no NaN (zero where a column has no line noise)"
        )
    return cov


def _per_column(value, n, name, tail, dtype, fill):
    """``value`` as an (n, *tail) array of ``dtype`` (``fill`` if None)."""
    if value is None:
        return np.full((n, *tail), fill, dtype)
    arr = np.asarray(value)
    if arr.size == 0 and n == 0:
        arr = arr.reshape(0, *tail)
    if arr.shape != (n, *tail):
        raise ValueError(f"{name} must have shape {(n, *tail)}, got {arr.shape}")
    if dtype is int and arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got {arr.dtype}")
    return arr.astype(dtype)
