"""Synthetic HAADF images with exact ground truth.

:func:`perovskite` is the generator used for training, tests, benchmarks and the
demo (no real BiFeO3 image is available); :func:`crystal` renders crystals of
one species (particles on vacuum or an amorphous film, twins);
:func:`from_columns` any positions. Rendering lives in
:mod:`stemunmix.core.synthetic`; this module validates, calibrates and wraps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stemunmix.columns import Columns
from stemunmix.core import checks
from stemunmix.core import synthetic as _core


@dataclass
class SyntheticTruth:
    """Ground truth of a synthetic image; positions in the image's pixel frame.

    Attributes
    ----------
    columns : Columns
        True positions ([x, y] pixels, as the distorted scan records them) and
        sublattice labels (``class_names == ["A", "B"]``).
    displacement : ndarray (N, 2)
        Planted polar displacement of each column in pixels, [x, y] (zero for A).
    domain : ndarray (N,)
        Domain label of each column.
    domain_map : ndarray (H, W)
        Domain label of each pixel.
    expected : ndarray (H, W)
        The noise-free image in counts (the Poisson mean of every pixel).
    amplitude : ndarray (N,)
        Peak height of each column before noise (A = 1, dark A sites lower).
    parameters : dict
        The generator's arguments.
    """

    columns: Columns
    displacement: np.ndarray
    domain: np.ndarray
    domain_map: np.ndarray
    expected: np.ndarray
    amplitude: np.ndarray
    parameters: dict = field(default_factory=dict)

    @property
    def n_domains(self) -> int:
        return _core.N_DOMAINS[self.parameters["domains"]]


def _positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return float(value)


def perovskite(
    shape: int | Sequence[int] = (512, 512),
    pixel_size: float = 0.02,
    lattice_parameter: float = 0.396,
    projection: str = "001",
    rotation: float = 5.0,
    intensity_ratio: float = 0.25,
    dark_fraction: float = 0.1,
    dark_ratio: float = 0.8,
    column_width: float = 0.04,
    displacement: float = 0.02,
    directions: Sequence[float] | None = None,
    domains: str = "four_stripes",
    wall_width: float = 0.8,
    dose: float | None = 100.0,
    read_noise: float = 1.0,
    drift: Sequence[float] = (1.5, -1.0),
    jitter: float = 0.15,
    background: float = 0.1,
    blur: float = 0.0,
    seed: int | None = 0,
    oxygen_ratio: float | None = None,
    tilt: float = 0.0,
    contrast: str = "bright",
    dip: float = 0.3,
):
    """A realistic ABO3 HAADF (or ABF, iDPC) image and its ground truth.

    Parameters
    ----------
    shape : int or (rows, cols)
        Image size in pixels; at least 3 unit cells each way.
    pixel_size : float
        Pixel size in nm; calibrates the axes.
    lattice_parameter : float
        Pseudo-cubic lattice parameter in nm (0.396 for BiFeO3, 0.3905 for SrTiO3).
    projection : {"001", "110"}
        ``"001"``: A and B on a square lattice, BiFeO3-like. ``"110"``:
        SrTiO3-like rectangle a/sqrt(2) x a with bright A rows and weak B rows.
    rotation : float
        Lattice rotation in degrees, counter-clockwise as displayed.
    intensity_ratio : float
        B column peak height relative to A (about 0.1-0.35 in HAADF).
    dark_fraction, dark_ratio : float
        Fraction of A sites that are darker (La on Bi) and their relative height.
    column_width : float
        Gaussian sigma of a column in nm.
    displacement : float
        Magnitude of the polar B displacement in nm (0 for a paraelectric).
    directions : sequence of float, optional
        Direction of the displacement in each domain, degrees in the crystal frame
        (rotating with the lattice), counter-clockwise as displayed; default the
        projected <111> directions 45, 135, 225, 315 (as many as domains; for
        three stripes 45, 165, 285).
    domains : {"none", "two_stripes", "three_stripes", "four_stripes", "quadrants"}
        Domain pattern: one domain, two or three stripes (vertical walls), four
        stripes with walls at 45 degrees, or four quadrants.
    wall_width : float
        Width of the domain walls in nm (tanh profile; 0 for sharp walls).
    dose : float or None
        Mean detected counts per pixel; Poisson noise follows from it. None gives
        the noise-free image (still scaled to a mean of 1 count).
    read_noise : float
        Standard deviation of the Gaussian detector noise in counts.
    drift : (float, float)
        Slow-scan drift in pixels over the whole frame, [x, y].
    jitter : float
        Standard deviation in pixels of the random x offset of each scan line.
    background : float
        Mean level of the smooth background relative to the A peak height.
    blur : float
        Sigma of an extra Gaussian probe blur in nm (0 for none).
    seed : int or None
        Seed of the random generator; the same seed gives the same image.
    oxygen_ratio : float, optional
        Peak height of the pure-O columns relative to A (about 0.05 in
        HAADF, 0.5 in ABF, 0.2-0.4 in iDPC); None (default) renders none, and
        the truth's classes are A and B only. Pure-O columns sit midway
        along the B-B bonds: on the edges of the A square in [001], at the
        centre of the A rectangle in [110].
    tilt : float
        Antiphase octahedral rotation about the beam, degrees: each pure-O
        column moves across its B-B bond by (bond / 2) tan(tilt), in
        alternate directions from bond to bond. Needs ``oxygen_ratio``.
    contrast : {"bright", "dark"}
        ``"dark"``: dark columns on a bright background (ABF, BF), the
        deepest dip ``dip`` of the bright level.
    dip : float
        With ``contrast="dark"``, in (0, 1].

    Returns
    -------
    image : AtomicResolutionImage
        Counts (float32), axes calibrated in nm.
    truth : SyntheticTruth
        True column positions in the image's pixel frame (following the scan
        distortion), sublattices, planted displacements, domains, domain map.

    Examples
    --------
    >>> from stemunmix.synthetic import perovskite
    >>> image, truth = perovskite(shape=128, seed=1)
    >>> image.data.shape
    (128, 128)
    >>> truth.columns.class_names
    ['A', 'B']
    """
    shape = _check_shape(shape)
    _check_seed(seed)
    pixel_size = _positive("pixel_size", pixel_size)
    lattice_parameter = _positive("lattice_parameter", lattice_parameter)
    projection = str(projection).strip("[]<>")
    if projection not in _core.PROJECTIONS:
        raise ValueError(
            f"projection must be one of {_core.PROJECTIONS}, got {projection!r}"
        )
    a_px = lattice_parameter / pixel_size
    if min(shape) < 3 * a_px:
        raise ValueError(
            f"shape {shape} holds fewer than 3 unit cells of {a_px:.1f} pixels; "
            "use a larger shape, a larger pixel_size or a smaller lattice_parameter"
        )
    rotation = checks.real("rotation", rotation)
    intensity_ratio = _positive("intensity_ratio", intensity_ratio)
    for name, value in (("dark_fraction", dark_fraction), ("dark_ratio", dark_ratio)):
        if not 0 <= _positive(name, value, allow_zero=True) <= 1:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    sigma = _positive("column_width", column_width) / pixel_size
    if domains not in _core.DOMAIN_PATTERNS:
        raise ValueError(
            f"domains must be one of {_core.DOMAIN_PATTERNS}, got {domains!r}"
        )
    n_domains = _core.N_DOMAINS[domains]
    directions = _check_directions(directions, n_domains, domains)
    disp_px = _positive("displacement", displacement, allow_zero=True) / pixel_size
    wall_px = _positive("wall_width", wall_width, allow_zero=True) / pixel_size
    dose, read_noise, drift, jitter, background, blur_px = _check_acquisition(
        shape, pixel_size, dose, read_noise, drift, jitter, background, blur
    )
    if oxygen_ratio is not None:
        oxygen_ratio = _positive("oxygen_ratio", oxygen_ratio, allow_zero=True)
    tilt = checks.real("tilt", tilt, -45, 45)
    if tilt and oxygen_ratio is None:
        raise ValueError("tilt moves the O columns: give oxygen_ratio too")
    checks.one_of("contrast", contrast, ("bright", "dark"))
    dip = checks.real("dip", dip, 0, 1, low_open=True)

    out = _core.render_perovskite(
        shape,
        a_px,
        projection,
        rotation,
        intensity_ratio,
        dark_fraction,
        dark_ratio,
        sigma,
        disp_px,
        directions,
        domains,
        wall_px,
        dose,
        read_noise,
        drift,
        jitter,
        background,
        blur_px,
        seed,
        oxygen=oxygen_ratio,
        tilt=tilt,
        dip=dip if contrast == "dark" else None,
    )

    parameters = dict(
        shape=shape,
        pixel_size=pixel_size,
        lattice_parameter=lattice_parameter,
        projection=projection,
        rotation=rotation,
        intensity_ratio=intensity_ratio,
        dark_fraction=dark_fraction,
        dark_ratio=dark_ratio,
        column_width=column_width,
        displacement=displacement,
        directions=directions,
        domains=domains,
        wall_width=wall_width,
        dose=dose,
        read_noise=read_noise,
        drift=drift,
        jitter=jitter,
        background=background,
        blur=blur,
        seed=seed,
        oxygen_ratio=oxygen_ratio,
        tilt=tilt,
        contrast=contrast,
        dip=dip,
    )
    image = _make_image(out["image"], pixel_size, parameters)
    names = ["A", "B"] if oxygen_ratio is None else ["A", "B", "O"]
    truth = SyntheticTruth(
        columns=Columns(out["xy"], out["sublattice"], names),
        displacement=out["displacement"],
        domain=out["domain"],
        domain_map=out["domain_map"],
        expected=out["expected"],
        amplitude=out["amplitude"],
        parameters=parameters,
    )
    return image, truth


def crystal(
    structure: str = "fcc",
    zone: str = "110",
    lattice_parameter: float = 0.392,
    shape: int | Sequence[int] = (512, 512),
    pixel_size: float = 0.02,
    rotation: float = 7.0,
    particle: float | None = 5.0,
    facets: int = 0,
    support: float | None = None,
    twin: float | None = None,
    thickness: bool = True,
    column_width: float = 0.035,
    dose: float | None = 100.0,
    read_noise: float = 1.0,
    drift: Sequence[float] = (0.0, 0.0),
    jitter: float = 0.0,
    background: float = 0.1,
    blur: float = 0.0,
    seed: int | None = 0,
    ratio: float = 1.1,
):
    """A HAADF image of a crystal of one species (or of dumbbells) and its
    ground truth: a particle on vacuum or on an amorphous film, twinned or
    not, or a crystal that fills the frame.

    Parameters
    ----------
    structure, zone : str
        The crystal and the zone axis it is seen along: ``("fcc", "100")``,
        ``("fcc", "110")``, ``("fcc", "111")``, ``("bcc", "100")``,
        ``("bcc", "110")`` or ``("hcp", "0001")``
        (:data:`stemunmix.core.synthetic.MONATOMIC`); dumbbells
        ``("diamond", "110")`` (Si, a = 0.543 nm: 0.136 nm apart) and
        ``("zincblende", "110")`` (GaAs, 0.565 nm)
        (:data:`stemunmix.core.synthetic.DUMBBELLS`); a 2D honeycomb of two
        sublattices seen flat, ``("mos2", "0001")`` (MoS2, a = 0.316 nm;
        :data:`stemunmix.core.synthetic.TWO_D`).
    lattice_parameter : float
        Cubic (hcp: basal) lattice parameter in nm (Pt 0.392, Au 0.408, Fe
        0.287, Mg 0.321).
    shape, pixel_size, rotation
        As in :func:`perovskite`.
    particle : float or None
        The particle's diameter in nm, centred in the frame: an ellipse of
        that mean diameter (axes within 25 %), or with ``facets`` >= 3 a
        polygon of that many faces. None: the crystal fills the frame.
    support : float or None
        An amorphous film under everything (:func:`stemunmix.core.synthetic.amorphous`),
        its blobs up to this height relative to a column; None: vacuum.
    twin : float or None
        A twin boundary through the frame's centre at this angle (degrees):
        the lattice beyond it is the mirror image across it. None: one grain.
    thickness : bool
        A particle's columns are lower towards its edge, like a sphere's
        thickness (to 0.3 of the middle's).
    column_width, dose, read_noise, drift, jitter, background, blur, seed
        As in :func:`perovskite`.
    ratio : float
        Zincblende: the peak height of the anion column (the dumbbell's
        second, As in GaAs) over the cation's (about 1.1 for GaAs in HAADF);
        MoS2: the S2 column's over the Mo column's (give about 0.4).

    Returns
    -------
    image : AtomicResolutionImage
    truth : SyntheticTruth
        Column positions (class ``"column"``; zincblende ``"cation"`` and
        ``"anion"``; MoS2 ``"metal"`` and ``"chalcogen"``), ``domain`` the
        grain of each
        (0, and 1 beyond the twin), ``domain_map`` 1 on the crystal's pixels
        (within half a nearest distance of a column) and 0 elsewhere.

    Examples
    --------
    >>> from stemunmix.synthetic import crystal
    >>> image, truth = crystal("fcc", "110", shape=256, particle=3.0, seed=1)
    >>> truth.columns.class_names, len(truth.columns) > 100
    (['column'], True)
    """
    asked = dict(locals())  # recorded in the metadata with the checked shape
    shape = _check_shape(shape)
    _check_seed(seed)
    key = (str(structure), str(zone).strip("[]<>"))
    known = sorted(_core.MONATOMIC) + sorted(_core.DUMBBELLS) + sorted(_core.TWO_D)
    if key not in known:
        raise ValueError(
            f"structure={structure!r}, zone={zone!r}: the crystals rendered are {known}"
        )
    pixel_size = _positive("pixel_size", pixel_size)
    a_px = _positive("lattice_parameter", lattice_parameter) / pixel_size
    ratio = _positive("ratio", ratio)
    vectors, basis, species = _core.projected_cell(*key)
    vectors = (
        a_px * vectors @ _core.rotation_matrix(checks.real("rotation", rotation)).T
    )
    near = _core.nearest_distance(vectors, basis)
    if near < 3:
        raise ValueError(
            f"the columns would sit {near:.1f} pixels apart; use a smaller "
            "pixel_size or a larger lattice_parameter"
        )
    centre = (np.array(shape[::-1]) - 1) / 2
    inside = None
    if particle is not None:
        radius = _positive("particle", particle) / pixel_size / 2
        if radius < near:
            raise ValueError(f"particle={particle} nm holds no column: make it larger")
        facets = checks.count("facets", facets, 0)
        if facets in (1, 2):
            raise ValueError(f"facets must be 0 (an ellipse) or >= 3, got {facets}")
        rng = np.random.default_rng(seed)
        inside = _core.particle_outline(centre, radius, rng, facets)
    if support is not None:
        support = _positive("support", support)
    if twin is not None:
        twin = (centre, checks.real("twin", twin))
    sigma = _positive("column_width", column_width) / pixel_size
    dose, read_noise, drift, jitter, background, blur_px = _check_acquisition(
        shape, pixel_size, dose, read_noise, drift, jitter, background, blur
    )
    out = _core.render_monatomic(
        shape,
        vectors,
        basis,
        sigma,
        inside=inside,
        support=support,
        thickness=bool(thickness) and inside is not None,
        twin=twin,
        dose=dose,
        read_noise=read_noise,
        drift=drift,
        jitter=jitter,
        background=background,
        blur=blur_px,
        seed=seed,
        species=species,
        heights=(1.0, ratio),
    )
    parameters = asked | {
        "structure": key[0],
        "zone": key[1],
        "shape": shape,
        "drift": drift,
        "domains": "none",
    }
    image = _make_image(out["image"], pixel_size, parameters)
    image.metadata.General.title = f"Synthetic {key[0]} [{key[1]}]"
    names = ["column"]
    if species.max() > 0:
        names = ["metal", "chalcogen"] if key in _core.TWO_D else ["cation", "anion"]
    truth = SyntheticTruth(
        columns=Columns(out["xy"], out["sublattice"], names),
        displacement=np.zeros_like(out["xy"]),
        domain=out["grain"],
        domain_map=out["crystal"].astype(np.int8),
        expected=out["expected"],
        amplitude=out["amplitude"],
        parameters=parameters,
    )
    return image, truth


def from_columns(
    columns: Columns,
    shape: int | Sequence[int] | None = None,
    pixel_size: float = 0.02,
    column_width: float = 0.04,
    heights: dict | None = None,
    background: float = 0.1,
    dose: float | None = 100.0,
    read_noise: float = 1.0,
    blur: float = 0.0,
    drift: Sequence[float] = (0.0, 0.0),
    jitter: float = 0.0,
    seed: int | None = 0,
):
    """A HAADF-like image of any column positions, and its truth.

    Every column is a Gaussian of width ``column_width`` (nm) at its [x, y]
    pixel position (the specimen's), with the peak height of its class
    (``heights``: {class name: height}, default A 1, B 0.25, any other class
    0.1), seen through the raster scan (slow-scan ``drift`` in pixels over the
    frame, [x, y], and a random x offset of each line of standard deviation
    ``jitter`` pixels, as in :func:`perovskite`), blurred by a Gaussian probe
    of ``blur`` nm, on a smooth background (``background`` of the mean column
    height), scaled so the mean pixel is ``dose`` counts, then Poisson plus
    Gaussian read noise (``dose=None``: noise-free). Render measured or
    planted positions: a strain step, a real distortion field.

    Returns (AtomicResolutionImage, SyntheticTruth) like :func:`perovskite`:
    the truth's positions follow the scan distortion (the centres a Gaussian
    fit recovers; without drift and jitter, the positions given); its
    displacement and domain are zero (none planted here).
    """
    if not isinstance(columns, Columns):
        raise TypeError(
            f"columns must be a stemunmix.Columns, got {type(columns).__name__}"
        )
    if len(columns) == 0:
        raise ValueError("columns is empty: give at least one column to render")
    _check_positions(columns.xy)
    if shape is None:
        shape = tuple(int(np.ceil(v)) + 1 for v in columns.xy.max(0)[::-1])
        _check_size("shape=None", shape, columns.xy)
    shape = _check_shape(shape)
    _check_size("shape", shape)
    pixel_size = _positive("pixel_size", pixel_size)
    sigma = _positive("column_width", column_width) / pixel_size
    if dose is not None:
        dose = _positive("dose", dose)
    read_noise = _positive("read_noise", read_noise, allow_zero=True)
    blur = _positive("blur", blur, allow_zero=True) / pixel_size
    jitter = _positive("jitter", jitter, allow_zero=True)
    drift = _check_drift(drift, shape)
    _check_seed(seed)
    default = {"A": 1.0, "B": 0.25}
    heights = {**default, **_check_heights(heights, columns.class_names)}
    per_class = np.array([heights.get(n, 0.1) for n in columns.class_names], float)
    amplitude = per_class[columns.labels]
    rng = np.random.default_rng(seed)
    line_jitter = (
        jitter * rng.standard_normal(shape[0]) if jitter > 0 else np.zeros(shape[0])
    )
    clean = _core.render_columns(
        shape, columns.xy, amplitude, sigma, drift, line_jitter
    )
    expected, data = _core.detect(clean, blur, background, dose, read_noise, rng)
    parameters = {
        "pixel_size": pixel_size,
        "column_width": column_width,
        "background": background,
        "dose": dose,
        "read_noise": read_noise,
        "blur": blur * pixel_size,
        "drift": list(drift),
        "jitter": jitter,
        "seed": seed,
        "domains": "none",
    }
    image = _make_image(data.astype(np.float32), pixel_size, parameters)
    image.metadata.General.title = "Synthetic image of given columns"
    n = len(columns)
    seen = (
        _core.scan_positions(columns.xy, shape, drift, line_jitter, sigma)
        if jitter > 0 or any(drift)
        else columns.xy
    )
    truth = SyntheticTruth(
        columns=Columns(seen, columns.labels, columns.class_names),
        displacement=np.zeros((n, 2)),
        domain=np.zeros(n, int),
        domain_map=np.zeros(shape, np.int8),
        expected=expected.astype(np.float32),
        amplitude=amplitude,
        parameters=parameters,
    )
    return image, truth


def _check_shape(shape) -> tuple[int, int]:
    """(rows, cols) from an int or two ints (pixels)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape), int(shape))
    if not isinstance(shape, (str, bytes)) and np.ndim(shape) == 1 and len(shape) != 2:
        raise ValueError(
            f"shape must be an int or two ints (rows, cols), got {shape!r}"
        )
    if (
        isinstance(shape, (str, bytes))
        or not hasattr(shape, "__len__")
        or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape
        )
    ):
        raise TypeError(
            f"shape must be an int or two ints (rows, cols) in pixels, got {shape!r}"
        )
    return int(shape[0]), int(shape[1])


def _check_positions(xy) -> None:
    bad = np.flatnonzero(~np.isfinite(xy).all(1) | (xy < -0.5).any(1))
    if len(bad):
        k = int(bad[0])
        raise ValueError(
            f"columns: {len(bad)} column(s) outside the image, the first "
            f"(index {k}) at [x, y] = {xy[k].round(2).tolist()} px; positions "
            "are pixels from the image's top-left corner (>= 0): shift them, "
            "e.g. columns.xy - columns.xy.min(0), or leave those columns out"
        )


# Above this many bytes (the image and its working copies) from_columns
# refuses rather than allocating: a half of this machine's memory.
def _memory_budget() -> float:
    import os

    try:
        return 0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return float(2**34)


def _check_size(name, shape, xy=None) -> None:
    need = 4 * 8 * float(shape[0]) * float(shape[1])  # four float64 arrays
    if need <= _memory_budget():
        return
    where = ""
    if xy is not None:
        k = int(np.argmax(xy.max(1)))
        where = (
            f" (the column farthest out, index {k}, lies at "
            f"[x, y] = {xy[k].round(1).tolist()} px)"
        )
    raise ValueError(
        f"{name}: an image of {shape[0]} x {shape[1]} px needs about "
        f"{need / 2**30:.0f} GiB, more than this machine can hold{where}; give "
        "a smaller shape, or check the positions (pixels, not nm)"
    )


def _check_heights(heights, names) -> dict:
    from collections.abc import Mapping

    if heights is None:
        return {}
    if not isinstance(heights, Mapping):
        raise TypeError(
            f"heights must be a dict {{class name: height}}, got "
            f"{type(heights).__name__} {heights!r}; e.g. heights={{'A': 1.0, "
            "'B': 0.25}"
        )
    out = {}
    for name, h in heights.items():
        if name not in names:
            raise ValueError(
                f"heights: {name!r} is not a class of the columns ({list(names)})"
            )
        out[name] = checks.real(f"heights[{name!r}]", h, low=0)
    return out


def _check_seed(seed) -> None:
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise TypeError(
            f"seed must be a non-negative int (or None for a random image), got {seed!r}"
        )


def _check_directions(directions, n_domains, domains) -> list[float]:
    """One finite angle (degrees) per domain; the default for None."""
    if directions is None:
        directions = _core.DEFAULT_DIRECTIONS[n_domains]
    if isinstance(directions, str) or np.ndim(directions) != 1:
        raise TypeError(
            f"directions must be a list of angles in degrees, got {directions!r}"
        )
    directions = [checks.real("directions", d) for d in directions]
    if len(directions) != n_domains or not all(map(math.isfinite, directions)):
        raise ValueError(
            f"directions must give {n_domains} finite angles (degrees) for "
            f"domains={domains!r}, got {directions}"
        )
    return directions


def _check_acquisition(
    shape, pixel_size, dose, read_noise, drift, jitter, background, blur
):
    """The scan and detector arguments every generator takes, checked:
    (dose, read_noise, drift, jitter, background, blur in pixels)."""
    if dose is not None:
        dose = _positive("dose", dose)
    read_noise = _positive("read_noise", read_noise, allow_zero=True)
    drift = _check_drift(drift, shape)
    jitter = _positive("jitter", jitter, allow_zero=True)
    background = _positive("background", background, allow_zero=True)
    blur_px = _positive("blur", blur, allow_zero=True) / pixel_size
    return dose, read_noise, drift, jitter, background, blur_px


def _check_drift(drift, shape) -> tuple[float, float]:
    if isinstance(drift, str) or np.ndim(drift) != 1:
        raise TypeError(f"drift must be two numbers [x, y] in pixels, got {drift!r}")
    drift = tuple(checks.real("drift", v) for v in drift)
    if len(drift) != 2:
        raise ValueError(f"drift must be two finite numbers [x, y], got {drift}")
    if abs(drift[1]) > 0.5 * shape[0]:
        raise ValueError(f"drift[1] must be smaller than half the rows, got {drift}")
    return drift


def _make_image(data, pixel_size, parameters):
    from stemunmix.signals import AtomicResolutionImage

    image = AtomicResolutionImage(data)
    for ax, name in zip(image.axes_manager.signal_axes, ("x", "y"), strict=True):
        ax.name, ax.scale, ax.units, ax.offset = name, pixel_size, "nm", 0.0
    image.metadata.General.title = "Synthetic perovskite"
    image.metadata.set_item(
        "Signal.stemunmix.synthetic",
        {k: (v if v is not None else "None") for k, v in parameters.items()},
    )
    return image
