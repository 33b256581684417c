"""LocalDescriptors: a stack of d x d windows, one per atomic column."""

from __future__ import annotations

import numpy as np
from hyperspy._signals.lazy import LazySignal

from stemunmix.core import checks
from stemunmix.core.engine import is_lazy
from stemunmix.core.maps import draw, map_reach
from stemunmix.core.neighbours import component_moves, window_sites
from stemunmix.core.selection import domain_test
from stemunmix.signals._base import StemunmixSignal2D


class LocalDescriptors(StemunmixSignal2D):
    """One window per column, signal_type ``"local_descriptors"``.

    Navigation: the columns, in the order of ``.columns``. Signal: the d x d
    window (channels tiled side by side). The source image's shape and
    calibration are kept so loadings can be mapped back onto it.
    """

    _signal_type = "local_descriptors"

    def save(self, *args, **kwargs):
        """HyperSpy's ``save``. The fitted estimators HyperSpy keeps in
        ``learning_results`` (``decomposition_algorithm``,
        ``cluster_algorithm``...), which no file format holds, are written as
        their text (``repr``), so the save logs no error; everything else is
        saved as HyperSpy saves it, and the signal is left as it was."""
        lr = self.learning_results
        objects = {k: v for k, v in vars(lr).items() if _is_estimator(v)}
        try:
            for k, v in objects.items():
                setattr(lr, k, repr(v))
            return super().save(*args, **kwargs)
        finally:
            for k, v in objects.items():
                setattr(lr, k, v)

    def decomposition(
        self,
        normalize_poissonian_noise=False,
        algorithm="SVD",
        output_dimension=None,
        **kwargs,
    ):
        """HyperSpy's ``decomposition``, with defaults that make lazy as good
        as eager and both the same: ``algorithm="NMF"`` runs
        :class:`stemunmix.learn.NMF` (HALS; its keywords ``max_iter``,
        ``tol``, ``random_state``... pass through), eager and lazy alike: for
        lazy windows one pass over them per epoch, converged like the batch
        NMF, instead of HyperSpy's one-pass MiniBatchNMF, which loses about
        half the signal. A :class:`stemunmix.learn.NMF` passed as
        ``algorithm=`` is fitted the same way. Lazy ``"SVD"`` runs
        :class:`stemunmix.learn.svd.GramSVD` (exact: the windows are tall and
        skinny; eager's components, signs and explained variance) unless a
        ``svd_solver``, a ``signal_mask`` or Poisson normalisation is given.
        Any other algorithm is HyperSpy's own.
        """
        self._mask_missing_sites(kwargs, as_signal=True)
        algorithm = self._algorithm(
            algorithm, output_dimension, normalize_poissonian_noise, kwargs
        )
        # HyperSpy's own, eager or lazy (the lazy twin puts this method first).
        from hyperspy.signal import BaseSignal

        impl = LazySignal.decomposition if self._lazy else BaseSignal.decomposition
        data = self.data
        if algorithm == "SVD":
            # In float64: LAPACK (eager) and GramSVD (lazy, in float64) then
            # agree to 1e-12, where float32 windows leave them 2e-6 apart.
            self.data = data.astype(np.float64)
        try:
            return impl(
                self, normalize_poissonian_noise, algorithm, output_dimension, **kwargs
            )
        finally:
            self.data = data

    def _algorithm(self, algorithm, output_dimension, poisson, kwargs):
        """Our NMF and exact lazy SVD, fitted here (HyperSpy projects them);
        any other algorithm as given. Pops the keywords it consumes."""
        from stemunmix.learn.nmf import NMF
        from stemunmix.learn.svd import GramSVD

        if algorithm == "NMF":
            if output_dimension is None:
                raise ValueError("output_dimension must be given for NMF")
            own = {
                k: kwargs.pop(k) for k in list(kwargs) if k in NMF._get_param_names()
            }
            algorithm = NMF(output_dimension, **({"random_state": 0} | own))
        if isinstance(algorithm, NMF):  # fitted here, projected by HyperSpy
            algorithm = _Fitted(algorithm.fit(self._unmasked_rows(kwargs)))
        elif (
            algorithm == "SVD"
            and self._lazy
            and output_dimension is not None
            and (not poisson and _exact_svd_applies(kwargs))
        ):
            # Exact in one pass (HyperSpy's "full" is deprecated, its
            # "randomized" approximate: 28% off in a trailing component).
            svd = GramSVD(output_dimension, centre=kwargs.pop("centre", None))
            algorithm = _Fitted(svd.fit(self._unmasked_rows(kwargs)))
        return algorithm

    def _unmasked_rows(self, kwargs):
        """The windows as rows (navigation, pixels), less those HyperSpy's
        ``navigation_mask`` in ``kwargs`` leaves out (a signal: array order;
        numpy: axes order)."""
        mask = kwargs.get("navigation_mask")
        x = self.data.reshape((self.axes_manager.navigation_size, -1))
        if mask is None:
            return x
        mask = mask.data if hasattr(mask, "axes_manager") else np.asarray(mask).T
        return x[~np.asarray(mask, bool).ravel()]

    def cluster_analysis(self, cluster_source, *args, test: bool = True, **kwargs):
        """HyperSpy's ``cluster_analysis``; on the lattice grid
        (``navigation="lattice"``) the sites without a window are masked.

        Beside HyperSpy's hard labels: where the algorithm has
        ``predict_proba`` (a Gaussian mixture), each window's probability of
        each domain (:meth:`get_domain_probabilities`); and with ``test=True``
        (default) :func:`stemunmix.core.selection.domain_test` on the
        clustered data: the partition's silhouette against one Gaussian's, its
        stability under bootstrap resampling and whether it is significant,
        in ``metadata.Signal.stemunmix.domain_test`` (:attr:`domain_test`).
        """
        from hyperspy.signal import BaseSignal

        self._mask_missing_sites(kwargs)
        if len(args) >= 7:  # the algorithm given by position: HyperSpy's alone
            return BaseSignal.cluster_analysis(self, cluster_source, *args, **kwargs)
        algorithm = kwargs.get("algorithm")
        own = {k: kwargs.pop(k) for k in list(kwargs) if k not in _HYPERSPY_CLUSTER}
        # Built as HyperSpy builds it, wrapped to keep the data it is fitted on
        # (HyperSpy unfolds the signal, which changes its class meanwhile).
        fitted = _Recording(self._get_cluster_algorithm(algorithm, **own))
        kwargs["algorithm"] = fitted
        out = BaseSignal.cluster_analysis(self, cluster_source, *args, **kwargs)
        self.learning_results.cluster_algorithm = algorithm
        probabilities, record = _domain_results(
            self.learning_results.cluster_labels, fitted, test, self._nav_positions()
        )
        self._set_state("domain_probabilities", probabilities)
        self._set_state("domain_test", record)
        return fitted.estimator if out is fitted else out

    def _nav_positions(self) -> np.ndarray:
        """(navigation size, 2): each window's column [x, y] in pixels, in
        navigation (array) order, NaN at a lattice site without one; frames
        of a stack set far apart, so no frame neighbours another."""
        columns = self.columns
        xy = np.asarray(columns.xy, np.float64).copy()
        if columns.nav_index is not None and len(xy):
            frame = np.ravel_multi_index(
                tuple(np.asarray(columns.nav_index).T[::-1]),
                tuple(self._get_state("source").get("nav_shape")),
            )
            xy[:, 0] += frame * 10.0 * (np.ptp(xy) + 1)
        sites = self.sites
        if sites is None:
            return xy
        out = np.full((sites.size, 2), np.nan)
        inside = sites.ravel() >= 0
        out[inside] = xy[sites.ravel()[inside]]
        return out

    @property
    def domain_test(self) -> dict | None:
        """The last :meth:`cluster_analysis`'s test of its partition
        (:func:`stemunmix.core.selection.domain_test`), None before one."""
        return self._get_state("domain_test")

    @property
    def sites(self) -> np.ndarray | None:
        """On the lattice grid: (nj, ni) index into :attr:`columns` of the
        window at each site, -1 where none; None for column navigation."""
        sites = self._get_state("sites")
        return None if sites is None else np.asarray(sites, int)

    def _mask_missing_sites(self, kwargs, as_signal: bool = False) -> None:
        """Sites without a window out of a learning step (HyperSpy's
        ``navigation_mask``, True = left out), unless one is given. HyperSpy's
        decomposition reads a numpy mask in axes order (i, j) and a signal's
        data in array order (j, i); its cluster_analysis reads numpy in array
        order: the array-order mask goes in as a signal or as numpy."""
        sites = self.sites
        if sites is not None and kwargs.get("navigation_mask") is None:
            missing = sites < 0
            if missing.any():
                if as_signal:
                    from hyperspy.signal import BaseSignal

                    missing = BaseSignal(missing).T  # all axes navigation
                kwargs["navigation_mask"] = missing

    def _columns_frame(self):
        source = self._get_state("source")
        if source is None:
            return np.zeros(2), np.ones(2)
        return np.asarray(source["offset"], float), np.asarray(source["scale"], float)

    @property
    def domain_probabilities(self) -> np.ndarray | None:
        """(K, N) each window's probability of each domain from the last
        ``cluster_analysis`` with a Gaussian mixture; None without one."""
        return self._get_state("domain_probabilities")

    @property
    def source_shape(self) -> tuple[int, ...] | None:
        """Shape (rows, cols) of the image the windows were cut from."""
        source = self._get_state("source")
        return None if source is None else tuple(int(v) for v in source["shape"])

    def per_column(self, source: str) -> np.ndarray:
        """(N, K) values of a learning result, one row per column of
        ``.columns`` (in its order; on a lattice grid, the sites with a
        window): ``source`` is ``"decomposition"`` (the loadings), ``"bss"``,
        ``"cluster"`` (one-hot cluster labels) or ``"probability"`` (each
        window's domain probabilities, from ``cluster_analysis``)."""

        checks.one_of("source", source, tuple(_LEARNED))
        lr = self.learning_results
        values = {
            "decomposition": lambda: lr.loadings,
            "bss": lambda: lr.bss_loadings,
            "cluster": lambda: _transposed(lr.cluster_labels),
            "probability": lambda: _transposed(self._get_state("domain_probabilities")),
        }[source]()
        if values is None:
            raise ValueError(f"no {source} results: run {_LEARNED[source]} first")
        values = np.asarray(values)
        if len(values) != self.axes_manager.navigation_size:
            raise ValueError("learning results do not match the windows; rerun them")
        if self.sites is not None:  # the sites with a window, in column order
            values = values[np.flatnonzero(self.sites.ravel() >= 0)]
        return values

    def _to_image_grid(self, values, mode, name, title, block=2048):
        """(N, K) values per column drawn on the source image's grid (one
        map per k, per frame), calibrated as the source."""
        from hyperspy._signals.signal2d import Signal2D

        if mode not in ("voronoi", "points"):
            raise ValueError(f"mode must be 'voronoi' or 'points', got {mode!r}")
        source = self._get_state("source")
        if source is None:
            raise ValueError("these windows carry no source image geometry")
        shape, nav_shape = tuple(source["shape"]), tuple(source.get("nav_shape", []))
        columns = self.columns
        per_frame = {}
        for key in np.ndindex(nav_shape):
            m = (np.all(columns.nav_index == np.array(key[::-1]), axis=1)
                 if nav_shape else slice(None))  # fmt: skip
            per_frame[key] = (columns.xy[m], values[m])
        out = draw(per_frame, nav_shape, shape, values.shape[1], mode,
                   map_reach(columns.xy), block, self._lazy)  # fmt: skip
        signal = Signal2D(out, axes=_grid_axes(source, name, values.shape[1]))
        if self._lazy:
            signal = signal.as_lazy()
            signal.data = out
        signal.metadata.General.title = title
        return signal

    def get_loading_maps(
        self,
        source: str = "decomposition",
        mode: str = "voronoi",
        components=None,
        block: int = 2048,
    ):
        """Loadings of a learning result on the image grid.

        Parameters
        ----------
        source : {"decomposition", "bss", "cluster"} or signal
            Which learning result (cluster: the membership of each cluster),
            or a signal of values on these windows' navigation (e.g.
            :meth:`invariant_latents` or :meth:`manifold_learning`): one map
            per value of its signal axis.
        mode : {"voronoi", "points"}
            ``"voronoi"``: every pixel takes its nearest column's value (NaN
            beyond one lattice spacing); ``"points"``: values at the columns.
        components : int or list of int, optional
            The first n components, or these ones; default the
            ``output_dimension`` of the decomposition, else all.
        block : int
            Pixels per side of a block of the map (one task each when lazy; no
            effect on the values).

        Returns
        -------
        Signal2D
            Navigation: the components (and frames of a stack); signal: the
            source image's grid with its calibration.
        """

        checks.one_of("mode", mode, ("voronoi", "points"))
        named = isinstance(source, str)
        values = self.per_column(source) if named else _values_on(self, source)
        if components is None and named and source == "decomposition":
            components = self.learning_results.output_dimension
        if components is not None:
            values = values[:, _pick_components(components, values.shape[1])]
        title = f"{source if named else source.metadata.General.title} maps"
        block = checks.count("block", block, 16)
        return self._to_image_grid(values, mode, "component", title, block)

    def plot_decomposition_results(self, *args, **kwargs):
        """HyperSpy's own on the lattice grid (``navigation="lattice"``: the
        loadings are images already) and for lazy windows; on column
        navigation, the factors and the loading maps on the image grid, linked
        by component (``hs.plot.plot_signals``). Returns the two signals."""
        return self._plot_linked("decomposition", *args, **kwargs)

    def plot_cluster_results(self, *args, **kwargs):
        """As :meth:`plot_decomposition_results`: each cluster's mean window
        and its membership map on the image grid, linked by cluster."""
        return self._plot_linked("cluster", *args, **kwargs)

    def _plot_linked(self, source, *args, **kwargs):
        from hyperspy.api import plot
        from hyperspy.signal import BaseSignal

        own = (
            BaseSignal.plot_decomposition_results
            if source == "decomposition"
            else BaseSignal.plot_cluster_results
        )
        if self.sites is not None or self._lazy or args or kwargs:
            return own(self, *args, **kwargs)
        if source == "decomposition":
            factors = self.get_decomposition_factors()
        else:
            factors = self.get_cluster_signals(signal="mean")
        maps = self.get_loading_maps(source)
        plot.plot_signals([factors, maps])
        return factors, maps

    def plot_loading_maps(
        self,
        source: str = "decomposition",
        mode: str = "voronoi",
        components=None,
        **kwargs,
    ):
        """Plot :meth:`get_loading_maps` with ``hs.plot.plot_images``."""
        import hyperspy.api as hs

        maps = self.get_loading_maps(source, mode, components)
        kwargs.setdefault("cmap", "RdBu_r")
        kwargs.setdefault("axes_decor", "off")
        kwargs.setdefault(
            "label", [f"{source} {i}" for i in range(maps.axes_manager.navigation_size)]
        )
        return hs.plot.plot_images(maps, **kwargs)

    def manifold_learning(
        self,
        method: str = "isomap",
        n_components: int = 2,
        source: str = "decomposition",
        number_of_components: int | None = None,
        max_samples: int = 5000,
        random_state=0,
        **kwargs,
    ):
        """Embed the windows on a low-dimensional manifold.

        Parameters
        ----------
        method : {"isomap", "tsne", "umap"}
        n_components : int
            Dimensions of the embedding.
        source : {"decomposition", "bss", "signal"}
            Embed the loadings of a learning result (its first
            ``number_of_components``) or the raw windows.
        max_samples : int
            Fit on this many windows (seeded); embed the rest by chunks.

        Returns
        -------
        Signal1D
            Navigation: the columns; signal: the embedding. Pass it as
            ``cluster_source`` to ``cluster_analysis``.
        """
        from hyperspy._signals.signal1d import Signal1D

        from stemunmix.learn import ManifoldEmbedding

        if source == "signal":
            x = self.data.reshape(self.axes_manager.navigation_size, -1)
            if self.sites is not None:
                x = x[np.flatnonzero(self.sites.ravel() >= 0)]
        elif source in ("decomposition", "bss"):
            x = self.per_column(source)
            if number_of_components is None and source == "decomposition":
                number_of_components = self.learning_results.output_dimension
            if number_of_components is not None:
                x = x[:, :number_of_components]
        else:
            raise ValueError(
                f"source must be 'decomposition', 'bss' or 'signal', got {source!r}"
            )
        learner = ManifoldEmbedding(
            method, n_components, max_samples, random_state=random_state, **kwargs
        )
        embedding = learner.fit(x).transform(x)
        if self.sites is not None:  # back onto the lattice grid, NaN where no window
            return _embedding_on_sites(embedding, self.sites, method)
        out = Signal1D(embedding)
        out.axes_manager.navigation_axes[0].name = "column"
        out.axes_manager.signal_axes[0].name = method
        out.metadata.General.title = f"{method} embedding"
        if not self._lazy and is_lazy(embedding):
            out = out.as_lazy()
        return out

    def invariant_latents(self, n_latent: int = 2, channel=None, **kwargs):
        """Latents of the windows from a rotation- and shift-invariant VAE
        (:class:`stemunmix.learn.RotationInvariantVAE`; ``kwargs`` go to it):
        the angle of each window's content, its shift and ``n_latent``
        content latents.

        ``channel``: the window channel learned from (a name of
        ``metadata.Signal.stemunmix.local_descriptors.channels`` or its
        index; default the first). Returns a Signal1D like
        :meth:`manifold_learning`'s (navigation: the lattice sites, NaN
        without a window, or the columns; signal: ``latent_names_``), to plot
        or to pass as ``cluster_source``; the fitted model is kept for
        :meth:`latent_traversal`. The cosine and sine of the angle follow
        the latents (``cos_angle``, ``sin_angle``): cluster on those, not on
        the angle itself, which wraps at +-pi (``out.isig[-2:]``).
        """
        from stemunmix.learn import RotationInvariantVAE

        x, rows = _one_channel(self, channel)
        model = RotationInvariantVAE(n_latent=n_latent, **kwargs)
        latents = model.fit(x).transform(x)
        self._invariant_model = model
        return _latents_signal(latents, self.sites, model.latent_names_, rows)

    def latent_traversal(self, latent, values):
        """Windows decoded with ``latent`` (a name of the model's
        ``latent_names_``) set to each of ``values``, the others at their
        prior's centre: a Signal2D stack (values | d x d), after
        :meth:`invariant_latents`."""
        from hyperspy._signals.signal2d import Signal2D

        model = getattr(self, "_invariant_model", None)
        if model is None:
            raise ValueError("latent_traversal: run invariant_latents() first")
        out = Signal2D(model.traversal(latent, values))
        out.axes_manager.navigation_axes[0].name = str(latent)
        out.metadata.General.title = f"traversal of {latent}"
        return out

    def get_domain_map(self, mode: str = "voronoi", block: int = 2048):
        """Cluster label of every pixel (after ``cluster_analysis``), NaN outside;
        ``mode`` and ``block`` as in :meth:`get_loading_maps`."""

        checks.one_of("mode", mode, ("voronoi", "points"))
        labels = self.per_column("cluster").argmax(1).astype(np.float32)
        out = self._to_image_grid(
            labels[:, None], mode, "map", "domain map", checks.count("block", block, 16)
        )
        return out.inav[0] if out.axes_manager.navigation_dimension == 1 else out

    def get_domain_probabilities(self, mode: str = "voronoi", block: int = 2048):
        """The soft domain map: each domain's probability at every pixel (the
        Gaussian mixture's posterior of the window there, after
        ``cluster_analysis``), NaN outside; navigation: the domains, in the
        order of the cluster labels. Where no domain is above, say, 0.9 the
        window lies between domains (a wall, or noise). ``mode`` and
        ``block`` as in :meth:`get_loading_maps`."""

        checks.one_of("mode", mode, ("voronoi", "points"))
        values = self.per_column("probability")
        return self._to_image_grid(
            values,
            mode,
            "domain",
            "domain probabilities",
            checks.count("block", block, 16),
        )

    def component_displacements(
        self, columns=None, source: str = "decomposition", radius: float | None = None
    ) -> dict:
        """Each component as the column displacements it encodes, on the mean
        cell (the study's Fig. 1b as arrows).

        For windows: where the columns of each class sit in the mean window
        (from ``columns``, all classes, default those of the windows), and
        how far each column's centroid moves in the component's picture: an
        NMF component against the mean window; a signed (PCA, ICA) one as
        mean +/- its loadings' standard deviation times the component, half
        the difference. For the physical descriptor
        (:meth:`~stemunmix.signals.atomic_resolution.AtomicResolutionImage.displacement_descriptors`)
        the components are displacements already: each is scaled by its
        loadings' standard deviation.

        Returns {"sites": {class: (M, 2) [x, y] px from the window centre},
        "displacements": {class: (n_components, M, 2) px}}.
        """

        checks.one_of("source", source, ("decomposition", "bss"))
        lr = self.learning_results
        factors = lr.factors if source == "decomposition" else lr.bss_factors
        if factors is None:
            self.per_column(source)  # raises, naming what to run first
        factors = np.asarray(factors, float).T  # (components, features)
        spread = np.nanstd(self.per_column(source), axis=0)
        params = self._get_state("local_descriptors", {})
        if params.get("kind") == "displacements":
            k = len(params["reference"])
            disp = factors.reshape(len(factors), 2, k).transpose(0, 2, 1)
            name = params["around"]
            return {
                "sites": {name: np.asarray(params["reference"], float)},
                "displacements": {name: disp * spread[:, None, None]},
            }
        d = int(params["d"])
        sites = self._window_sites(columns if columns is not None else self.columns, d)
        data = self.data.reshape((-1,) + tuple(self.data.shape[-2:]))
        if self.sites is not None:  # the lattice grid's empty sites are zeros
            data = data[np.flatnonzero(self.sites.ravel() >= 0)]
        mean = np.asarray(data.mean(0).compute() if self._lazy else data.mean(0))
        channels = list(params.get("channels") or ["image"])
        moves = component_moves(factors, spread, mean, sites, d, channels, radius)
        return {"sites": sites, "displacements": moves}

    def _window_sites(self, columns, d: int) -> dict:
        """Where each class's columns sit in the mean window (``window_sites``)."""

        names = [n for n in columns.class_names if n != "background"]
        own = self.columns.class_names[int(np.bincount(self.columns.labels).argmax())]
        sites = window_sites(
            self.columns.xy, {n: columns.select(n).xy for n in names}, d, own
        )
        if not sites:
            raise ValueError("no columns of these classes fall inside the windows")
        return sites


# cluster_analysis's own keywords; any other keyword builds the algorithm.
_HYPERSPY_CLUSTER = {
    "source_for_centers",
    "preprocessing",
    "preprocessing_kwargs",
    "number_of_components",
    "navigation_mask",
    "signal_mask",
    "algorithm",
    "return_info",
}


class _Recording:
    """A clustering estimator that keeps the data it was fitted on."""

    def __init__(self, estimator):
        self.estimator, self.data = estimator, None

    def fit(self, X, y=None):
        self.data = X
        self.estimator.fit(X)
        self.labels_ = self.estimator.labels_
        return self


def _domain_results(cluster_labels, fitted, test: bool, positions):
    """(probabilities (clusters, windows) in the rows of HyperSpy's
    ``cluster_labels``, NaN where masked, or None without ``predict_proba``;
    the domain test's record, or None without ``test``)."""
    estimator, data = fitted.estimator, np.asarray(fitted.data)
    labels = np.asarray(estimator.labels_)
    rows = _cluster_rows(cluster_labels, labels)
    probabilities = record = None
    mask = np.asarray(cluster_labels).any(0)
    if hasattr(estimator, "predict_proba"):
        p = np.asarray(estimator.predict_proba(data), np.float32)[:, : len(rows)]
        probabilities = np.full((len(rows), len(mask)), np.nan, np.float32)
        probabilities[np.ix_(rows, np.flatnonzero(mask))] = p.T
    if test:
        record = domain_test(data, labels, estimator, positions=positions[mask])
        record.pop("stability_resamples", None)
    return probabilities, record


# What makes each learning result that per_column reads.
_LEARNED = {
    "decomposition": "decomposition()",
    "bss": "blind_source_separation()",
    "cluster": "cluster_analysis(...)",
    "probability": "cluster_analysis(...) with a Gaussian mixture",
}


def _transposed(values):
    return None if values is None else np.asarray(values).T


def _grid_axes(source: dict, name: str, n: int) -> list:
    """HyperSpy axes of maps on the source image's grid: its frames, ``n``
    maps named ``name``, then y and x calibrated as the source."""
    nav_shape, shape = tuple(source.get("nav_shape", [])), tuple(source["shape"])
    axes = [{"name": f"frame{i}", "size": s, "navigate": True}
            for i, s in enumerate(nav_shape)]  # fmt: skip
    axes.append({"name": name, "size": n, "navigate": True})
    for i, ax in ((1, "y"), (0, "x")):
        axes.append({"name": ax, "size": shape[1 - i], "scale": source["scale"][i],
                     "offset": source["offset"][i], "units": source["units"][i],
                     "navigate": False})  # fmt: skip
    return axes


def _cluster_rows(cluster_labels, labels) -> np.ndarray:
    """The row of HyperSpy's ``cluster_labels`` (sorted by size) that holds
    each of the algorithm's labels 0..k-1 (an empty label takes a row left)."""
    cluster_labels = np.asarray(cluster_labels, bool)
    labels = np.asarray(labels)
    inside = cluster_labels[:, cluster_labels.any(0)]
    k = len(cluster_labels)
    overlap = np.array([inside[:, labels == i].sum(1) for i in range(k)])
    rows = overlap.argmax(1)
    empty = overlap.max(1) == 0
    rows[empty] = sorted(set(range(k)) - set(rows[~empty].tolist()))
    return rows


def _embedding_on_sites(embedding, sites, method):
    """A Signal1D (j, i | embedding) of the embedding of the sites with a
    window, NaN at the others."""
    from hyperspy._signals.signal1d import Signal1D

    embedding = np.asarray(embedding.compute() if is_lazy(embedding) else embedding)
    full = np.full((sites.size, embedding.shape[1]), np.nan)
    full[np.flatnonzero(sites.ravel() >= 0)] = embedding
    out = Signal1D(full.reshape(sites.shape + (embedding.shape[1],)))
    for ax, name in zip(out.axes_manager.navigation_axes, "ij", strict=True):
        ax.name = name
    out.axes_manager.signal_axes[0].name = method
    out.metadata.General.title = f"{method} embedding"
    return out


def _one_channel(ld, channel):
    """(windows (rows, d * d) of one channel, as numpy or dask, and the rows:
    the indices of the navigation positions that hold a window)."""
    md = ld.metadata.get_item("Signal.stemunmix.local_descriptors")
    names = list(md.get_item("channels")) if md is not None else ["window"]
    if channel is None:
        k = 0
    elif isinstance(channel, str) and channel in names:
        k = names.index(channel)
    elif isinstance(channel, (int, np.integer)) and 0 <= channel < len(names):
        k = int(channel)
    else:
        raise ValueError(
            f"channel must be one of {names} or its index, got {channel!r}"
        )
    d = ld.data.shape[-2]
    x = ld.data[..., :, k * d : (k + 1) * d].reshape(-1, d * d)
    rows = np.arange(x.shape[0])
    if ld.sites is not None:
        rows = np.flatnonzero(ld.sites.ravel() >= 0)
        x = x[rows]
    return x, rows


def _values_on(ld, signal) -> np.ndarray:
    """(N, K) values of a signal on the windows' navigation (its signal axis
    the K values), one row per column with a window, as :meth:`per_column`."""
    from hyperspy.signal import BaseSignal

    if not isinstance(signal, BaseSignal):
        raise TypeError(
            "source must be 'decomposition', 'bss', 'cluster' or a signal on "
            f"these windows' navigation, got {type(signal).__name__}"
        )
    n = ld.axes_manager.navigation_size
    data = np.asarray(signal.data, float)
    if data.size % n or signal.axes_manager.navigation_size != n:
        raise ValueError(
            f"source: a signal of {signal.axes_manager.navigation_size} "
            f"navigation positions, these windows have {n}; pass one made from "
            "them (invariant_latents, manifold_learning)"
        )
    values = data.reshape(n, -1)
    if ld.sites is not None:  # the sites with a window, in column order
        values = values[np.flatnonzero(ld.sites.ravel() >= 0)]
    return values


def _latents_signal(latents, sites, names, rows):
    """The latents, then the cosine and sine of the angle (what to cluster
    on: the angle wraps at +-pi), as a Signal1D on the lattice grid (NaN at
    sites without a window) or along the columns; ``quantities`` names
    them."""
    from hyperspy._signals.signal1d import Signal1D

    latents = np.asarray(latents)
    angle = latents[:, :1]
    latents = np.hstack([latents, np.cos(angle), np.sin(angle)])
    names = list(names) + ["cos_angle", "sin_angle"]
    if sites is not None:
        out = _embedding_on_sites(latents, sites, "latent")
    else:
        out = Signal1D(np.asarray(latents))
        out.axes_manager.navigation_axes[0].name = "column"
    out.axes_manager.signal_axes[0].name = "latent"
    out.metadata.set_item("Signal.quantities", list(names))
    out.metadata.General.title = "invariant latents (" + ", ".join(names) + ")"
    return out


def _pick_components(components, available: int) -> list[int]:
    """Indices of ``components`` (the first n, or a list) among ``available``."""

    if np.isscalar(components):
        n = checks.count("components", components)
        if n > available:
            raise ValueError(
                f"components = {n}, but the result has {available}; ask for at most "
                f"{available}, or rerun the decomposition with more"
            )
        return list(range(n))
    pick = [checks.count("components", c, 0) for c in components]
    bad = [c for c in pick if c >= available]
    if bad or not pick:
        raise ValueError(
            f"components {bad or pick} are not among the {available} the result "
            f"has (0..{available - 1})"
        )
    return pick


class LazyLocalDescriptors(LazySignal, LocalDescriptors):
    """Lazy twin of :class:`LocalDescriptors`."""

    decomposition = LocalDescriptors.decomposition
    cluster_analysis = LocalDescriptors.cluster_analysis
    save = LocalDescriptors.save


def _exact_svd_applies(kwargs) -> bool:
    """Lazy SVD through :class:`stemunmix.learn.svd.GramSVD`: unless the user
    asked for a solver, a signal mask or Poisson normalisation."""
    return "svd_solver" not in kwargs and kwargs.get("signal_mask") is None


def _is_estimator(value) -> bool:
    return hasattr(value, "get_params") or isinstance(value, _Fitted)


class _Fitted:
    """An estimator fitted already, for HyperSpy's decomposition: fitting does
    nothing, and the loadings are the fitted components' projection
    (``transform``), chunk by chunk when lazy, so eager and lazy agree."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.components_ = estimator.components_
        for name in ("explained_variance_", "mean_"):  # HyperSpy reads these
            if getattr(estimator, name, None) is not None:
                setattr(self, name, getattr(estimator, name))

    def partial_fit(self, X):
        return self

    def fit(self, X):
        return self

    def fit_transform(self, X):
        return self.estimator.transform(X)

    def transform(self, X):
        return self.estimator.transform(X)

    def __repr__(self):
        return repr(self.estimator)
