"""Synthetic perovskite HAADF images with exact ground truth (numpy only).

Coordinates are pixels, [x, y] order, pixel centres at integer coordinates; every
length argument of these functions is already in pixels. The public, calibrated
entry point is :func:`stemunmix.synthetic.perovskite`.

The specimen is a projected perovskite lattice of Gaussian columns. The raster scan
distorts it: image pixel (x, y) samples the specimen at
``(x - drift_x * y / (H - 1) - jitter[y], y - drift_y * y / (H - 1))``, i.e. a
linear slow-scan drift plus a random horizontal offset per scan line. Ground-truth
positions are given in the image frame: the centre of each column as the
distorted scan records it (see :func:`scan_positions`).
"""

from __future__ import annotations

import numpy as np

PROJECTIONS = ("001", "110")
DOMAIN_PATTERNS = ("none", "two_stripes", "three_stripes", "four_stripes", "quadrants")
N_DOMAINS = {
    "none": 1,
    "two_stripes": 2,
    "three_stripes": 3,
    "four_stripes": 4,
    "quadrants": 4,
}
# Polar directions (degrees, crystal frame) per domain: projected <111> of BiFeO3.
DEFAULT_DIRECTIONS = {
    1: (45.0,),
    2: (45.0, 225.0),
    3: (45.0, 165.0, 285.0),
    4: (45.0, 135.0, 225.0, 315.0),
}


def unit_cell(projection: str, a_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice vectors (rows, pixels) and fractional [A, B] basis of a projection.

    ``"001"``: square cell a x a, A at the corners, B at the centre (BiFeO3-like).
    ``"110"``: rectangle a/sqrt(2) (x) by a (y), A (AO columns) at the corners and
    B at the middle of the vertical edge, so A rows and B rows alternate.
    """
    if projection == "001":
        return np.array([[a_px, 0.0], [0.0, a_px]]), np.array([[0, 0], [0.5, 0.5]])
    return (
        np.array([[a_px / np.sqrt(2), 0.0], [0.0, a_px]]),
        np.array([[0, 0], [0, 0.5]]),
    )


# Pure-O columns of each projection: (fractional site, fractional site of the
# B column whose octahedron holds it). Every pure-O column lies midway along a
# B-B bond: [001] on the edges of the A square, [110] at the centre of the A
# rectangle, between the B columns of its row.
OXYGEN_SITES = {
    "001": [((0.5, 0.0), (0.5, 0.5)), ((0.0, 0.5), (0.5, 0.5))],
    "110": [((0.5, 0.5), (0.0, 0.5))],
}


def rotation_matrix(degrees: float) -> np.ndarray:
    """Counter-clockwise as displayed (y axis down), acting on [x, y] columns."""
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])


def lattice_sites(shape, vectors, basis, origin, margin, cells=False):
    """All sites within ``margin`` pixels of the image: xy (N, 2), sublattice (N,)
    (and with ``cells=True`` the cell index (N, 2) of each)."""
    h, w = shape
    corners = np.array([[-margin, -margin], [w + margin, -margin]])
    corners = np.vstack([corners, corners + [0, h + 2 * margin]]) - origin
    frac = np.linalg.solve(vectors.T, corners.T)
    lo = np.floor(frac.min(axis=1)) - 1
    hi = np.ceil(frac.max(axis=1)) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
    ij = np.stack([ii.ravel(), jj.ravel()], axis=1)
    xy, sub = [], []
    for k, b in enumerate(basis):
        xy.append(origin + (ij + b) @ vectors)
        sub.append(np.full(len(ij), k))
    xy, sub = np.concatenate(xy), np.concatenate(sub)
    keep = (
        (xy[:, 0] >= -margin)
        & (xy[:, 0] <= w - 1 + margin)
        & (xy[:, 1] >= -margin)
        & (xy[:, 1] <= h - 1 + margin)
    )
    if cells:
        return xy[keep], sub[keep], np.tile(ij, (len(basis), 1))[keep].astype(int)
    return xy[keep], sub[keep]


def oxygen_sites(shape, vectors, projection, origin, margin, tilt):
    """Pure-O columns: xy (N, 2) and the displacement (N, 2) an antiphase
    rotation of the octahedra by ``tilt`` degrees about the beam gives them.

    Each octahedron turns by +-``tilt`` (the sign alternating from one B
    column to the next along every B-B bond); the O column it shares with its
    neighbour moves across the bond by (bond / 2) * tan(tilt), so the B-O-B
    angle is 180 - 2 * tilt degrees.
    """
    sites = OXYGEN_SITES[projection]
    basis = np.array([o for o, _ in sites], float)
    owner = np.array([b for _, b in sites], float)
    xy, kind, ij = lattice_sites(shape, vectors, basis, origin, margin, cells=True)
    r = (basis - owner)[kind] @ vectors  # from the owning B column to the O
    perp = np.stack([-r[:, 1], r[:, 0]], 1)
    # B columns alternate along every B-B bond: (-1)^(i + j) of the owner's cell.
    sign = np.where(ij.sum(1) % 2, -1, 1)
    return xy, np.tan(np.deg2rad(tilt)) * sign[:, None] * perp


def _domain_axes(pattern: str, shape) -> list[tuple[np.ndarray, np.ndarray]]:
    """(direction, wall positions) pairs; their bins, combined, are the domains."""
    h, w = shape
    if pattern == "none":
        return []
    if pattern == "two_stripes":
        return [(np.array([1.0, 0.0]), np.array([(w - 1) / 2]))]
    if pattern == "three_stripes":
        return [(np.array([1.0, 0.0]), (w - 1) * np.array([1 / 3, 2 / 3]))]
    if pattern == "four_stripes":
        extent = (w - 1 + h - 1) / np.sqrt(2)
        d = np.array([1.0, 1.0]) / np.sqrt(2)
        return [(d, extent * np.array([0.25, 0.5, 0.75]))]
    return [
        (np.array([0.0, 1.0]), np.array([(h - 1) / 2])),
        (np.array([1.0, 0.0]), np.array([(w - 1) / 2])),
    ]


def domain_labels(xy, pattern: str, shape) -> np.ndarray:
    """Domain index of each [x, y] point (any leading shape)."""
    xy = np.asarray(xy, float)
    label = np.zeros(xy.shape[:-1], int)
    for direction, walls in _domain_axes(pattern, shape):
        side = np.searchsorted(walls, xy @ direction, side="right")
        label = label * (len(walls) + 1) + side
    return label


def domain_weights(xy, pattern: str, shape, wall_width: float) -> np.ndarray:
    """Soft domain membership (n_domains, N), summing to one; tanh walls.

    ``wall_width`` is the distance in pixels between the tanh(-1) and tanh(+1)
    points of the wall profile; 0 gives sharp walls.
    """
    xy = np.asarray(xy, float)
    weights = np.ones((1, len(xy)))
    for direction, walls in _domain_axes(pattern, shape):
        u = xy @ direction
        if wall_width > 0:
            step = 0.5 * (1 + np.tanh((u[None] - walls[:, None]) / (wall_width / 2)))
        else:
            step = (u[None] >= walls[:, None]).astype(float)
        ones, zeros = np.ones((1, len(u))), np.zeros((1, len(u)))
        cdf = np.vstack([ones, step, zeros])
        bins = cdf[:-1] - cdf[1:]
        weights = (weights[:, None] * bins[None]).reshape(-1, len(u))
    return weights


def scan_positions(xy_specimen, shape, drift, jitter, sigma):
    """Image-frame positions of specimen points under the raster-scan distortion.

    The y position inverts the linear slow-scan drift exactly. The x position
    averages the shifted scan lines of the column with the weights a least-squares
    Gaussian fit gives them (the squared row profile), so it is the centre such a
    fit recovers, line jitter included.
    """
    h = shape[0]
    kx, ky = drift[0] / (h - 1), drift[1] / (h - 1)
    sx, sy = xy_specimen[:, 0], xy_specimen[:, 1]
    y = sy / (1 - ky)
    radius = int(np.ceil(4 * sigma / (1 - abs(ky)))) + 1
    rows = np.round(y)[:, None] + np.arange(-radius, radius + 1)
    weight = np.exp(-(((1 - ky) * rows - sy[:, None]) ** 2) / sigma**2)
    inside = (rows >= 0) & (rows < h)
    row_jitter = np.where(inside, jitter[np.clip(rows, 0, h - 1).astype(int)], 0.0)
    shift = (weight * (kx * rows + row_jitter)).sum(1) / weight.sum(1)
    return np.stack([sx + shift, y], axis=1)


def in_frame(xy, shape) -> np.ndarray:
    """(N,) bool: the positions [x, y] on the frame's pixels."""
    h, w = shape
    return (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)


def render_columns(shape, xy_specimen, amplitude, sigma, drift, jitter, chunk=4096):
    """Point-sampled image of Gaussian columns seen through the distorted scan.

    Each column is evaluated on a patch of pixels around its image position,
    all columns of a chunk at once, and the patches are summed with bincount.
    """
    h, w = shape
    kx, ky = drift[0] / (h - 1), drift[1] / (h - 1)
    image = np.zeros(h * w)
    radius = int(np.ceil((4 * sigma + 3 * np.abs(jitter).max()) / (1 - abs(ky)))) + 2
    offsets = np.arange(-radius, radius + 1)
    for start in range(0, len(xy_specimen), chunk):
        sx, sy = xy_specimen[start : start + chunk].T
        amp = amplitude[start : start + chunk]
        y0 = np.round(sy / (1 - ky))
        x0 = np.round(sx + kx * y0)
        rows = (y0[:, None] + offsets).astype(int)  # (n, p)
        cols = (x0[:, None] + offsets).astype(int)  # (n, p)
        row_ok = (rows >= 0) & (rows < h)
        col_ok = (cols >= 0) & (cols < w)
        shift = kx * rows + np.where(row_ok, jitter[np.clip(rows, 0, h - 1)], 0.0)
        gy = np.exp(-(((1 - ky) * rows - sy[:, None]) ** 2) / (2 * sigma**2))
        dx = cols[:, None, :] - shift[:, :, None] - sx[:, None, None]
        val = amp[:, None, None] * gy[:, :, None] * np.exp(-(dx**2) / (2 * sigma**2))
        ok = row_ok[:, :, None] & col_ok[:, None, :]
        flat = rows[:, :, None] * w + cols[:, None, :]
        image += np.bincount(flat[ok], weights=val[ok], minlength=h * w)
    return image.reshape(h, w)


def smooth_background(shape, rng, n_waves=3) -> np.ndarray:
    """A smooth random field in about [0.5, 1.5], varying over the image size."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(float)
    field = np.zeros(shape)
    for _ in range(n_waves):
        angle = rng.uniform(0, 2 * np.pi)
        wavelength = rng.uniform(1.0, 3.0) * max(h, w)
        phase = rng.uniform(0, 2 * np.pi)
        u = x * np.cos(angle) + y * np.sin(angle)
        field += np.cos(2 * np.pi * u / wavelength + phase)
    return 1 + 0.5 * field / n_waves


def detect(clean, blur, background, dose, read_noise, rng):
    """(expected, image) of a clean column image: blurred by a Gaussian probe
    of ``blur`` pixels, on ``background`` x a smooth random field, scaled to a
    mean of ``dose`` counts, then Poisson plus Gaussian ``read_noise`` (None
    dose: noise-free, mean 1)."""
    if blur > 0:
        from scipy.ndimage import gaussian_filter

        clean = gaussian_filter(clean, blur, mode="nearest")
    clean = clean + background * smooth_background(clean.shape, rng)
    expected = clean * ((dose if dose is not None else 1.0) / clean.mean())
    if dose is None:
        return expected, expected.copy()
    image = rng.poisson(expected).astype(float)
    if read_noise > 0:
        image += read_noise * rng.standard_normal(clean.shape)
    return expected, image


def render_perovskite(
    shape,
    a_px,
    projection,
    rotation,
    intensity_ratio,
    dark_fraction,
    dark_ratio,
    sigma,
    displacement,
    directions,
    domains,
    wall_width,
    dose,
    read_noise,
    drift,
    jitter,
    background,
    blur,
    seed,
    layer=None,
    oxygen=None,
    tilt=0.0,
    dip=None,
):
    """Render an ABO3 image; all lengths in pixels, inputs already valid.

    ``oxygen``, optional: the peak height of the pure-O columns relative to A
    (HAADF: about 0.05, invisible; ABF about 0.5; iDPC 0.2-0.4); None renders
    none (and draws the same random numbers as before O existed). ``tilt``:
    their antiphase octahedral rotation in degrees (:func:`oxygen_sites`).
    ``dip``, optional: dark columns on a bright background (ABF, BF), the
    deepest dip this fraction of the bright level; None: bright columns.

    ``layer``, optional: a band of another material, e.g. SrRuO3 between PbTiO3
    layers, where the A lattice runs on but the brightness differs. A dict with
    ``normal`` (direction of the band's normal, degrees in the image),
    ``offset`` (pixels from the image centre along that normal), ``width``
    (pixels), and the peak heights ``a`` and ``b`` of A and B columns inside it.

    Returns a dict: ``image`` (float32 counts), ``expected`` (noise-free counts),
    ``xy`` (N, 2) true image-frame positions, ``sublattice`` (0 = A, 1 = B),
    ``displacement`` (N, 2) planted displacement in pixels (zero for A),
    ``domain`` (N,), ``domain_map`` (H, W) and ``amplitude`` (N,); sublattice
    2 is O and its ``displacement`` the tilt's.
    """
    rng = np.random.default_rng(seed)
    vectors, basis = unit_cell(projection, a_px)
    rot = rotation_matrix(rotation)
    vectors = vectors @ rot.T
    origin = rng.uniform(0, a_px, 2)
    margin = 4 * sigma + abs(drift[0]) + abs(drift[1]) + displacement + 2
    xy, sub = lattice_sites(shape, vectors, basis, origin, margin)
    o_disp = np.zeros((0, 2))
    if oxygen is not None:
        xy_o, o_disp = oxygen_sites(shape, vectors, projection, origin, margin, tilt)
        xy, sub = np.vstack([xy, xy_o]), np.concatenate([sub, np.full(len(xy_o), 2)])

    # Polar displacement of B, blended across the domain walls.
    weights = domain_weights(xy, domains, shape, wall_width)
    angles = np.deg2rad(np.asarray(directions, float))
    # Angles count counter-clockwise as displayed, with the y axis pointing down.
    unit = np.stack([np.cos(angles), -np.sin(angles)], 1)
    per_domain = displacement * unit @ rot.T
    disp = (weights.T @ per_domain) * (sub == 1)[:, None]
    disp[sub == 2] = o_disp
    domain = domain_labels(xy, domains, shape)
    xy_specimen = xy + disp

    amplitude = np.where(sub == 0, 1.0, intensity_ratio)
    if oxygen is not None:
        amplitude = np.where(sub == 2, oxygen, amplitude)
    if layer is not None:
        t = np.deg2rad(layer["normal"])
        normal = np.array([np.cos(t), np.sin(t)])
        centre = np.array([shape[1], shape[0]]) / 2
        depth = (xy - centre) @ normal - layer["offset"]
        in_layer = np.abs(depth) < layer["width"] / 2
        layered = np.where(sub == 0, layer["a"], layer["b"])
        amplitude = np.where(in_layer & (sub < 2), layered, amplitude)
    dark = (sub == 0) & (rng.random(len(xy)) < dark_fraction)
    amplitude = amplitude * np.where(dark, dark_ratio, 1.0)
    amplitude *= 1 + 0.03 * rng.standard_normal(len(xy))

    h = shape[0]
    line_jitter = jitter * rng.standard_normal(h) if jitter > 0 else np.zeros(h)
    clean = render_columns(shape, xy_specimen, amplitude, sigma, drift, line_jitter)
    if dip is not None:  # dips below a bright level, the deepest ``dip`` of it
        clean = clean.max() / dip - clean
    expected, image = detect(clean, blur, background, dose, read_noise, rng)

    xy_image = scan_positions(xy_specimen, shape, drift, line_jitter, sigma)
    inside = in_frame(xy_image, shape)
    # Domain of each pixel: the domain of the specimen point that pixel samples.
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    kx, ky = drift[0] / (h - 1), drift[1] / (h - 1)
    spec = np.stack([xx - kx * yy - line_jitter[:, None], yy - ky * yy], axis=-1)
    domain_map = domain_labels(spec, domains, shape).astype(np.int8)
    return {
        "image": image.astype(np.float32),
        "expected": expected.astype(np.float32),
        "xy": xy_image[inside],
        "sublattice": sub[inside],
        "displacement": disp[inside],
        "domain": domain[inside],
        "domain_map": domain_map,
        "amplitude": amplitude[inside],
    }


# Projected cells of one-species crystals: lattice vectors (rows) in units of
# the cubic (or hexagonal a) lattice parameter and the fractional basis of the
# columns. fcc and bcc in [110] are the same centred rectangle of aspect sqrt(2)
# (scaled), as are both in [100] (a square); fcc [111] is a triangular
# lattice and hcp [0001] a honeycomb.
MONATOMIC = {
    ("fcc", "100"): ([[0.5, 0.0], [0.0, 0.5]], [[0.0, 0.0]]),
    ("fcc", "110"): ([[1.0, 0.0], [0.0, 2**-0.5]], [[0.0, 0.0], [0.5, 0.5]]),
    ("bcc", "100"): ([[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.5, 0.5]]),
    ("bcc", "110"): ([[1.0, 0.0], [0.0, 2**0.5]], [[0.0, 0.0], [0.5, 0.5]]),
    ("fcc", "111"): ([[6**-0.5, 0.0], [0.5 * 6**-0.5, 0.5 * 2**-0.5]], [[0.0, 0.0]]),
    ("hcp", "0001"): ([[1.0, 0.0], [0.5, 3**0.5 / 2]], [[0.0, 0.0], [1 / 3, 1 / 3]]),
}


# Dumbbells in [110]: the fcc [110] cell of MONATOMIC with each column's
# partner a/4 along [001] (x here): (vectors, basis, species of each basis
# site). Diamond (Si, Ge): one species; zincblende (GaAs): two, the second
# (the anion) at the partner sites.
DUMBBELLS = {
    ("diamond", "110"): (
        [[1.0, 0.0], [0.0, 2**-0.5]],
        [[0.0, 0.0], [0.5, 0.5], [0.25, 0.0], [0.75, 0.5]],
        [0, 0, 0, 0],
    ),
    ("zincblende", "110"): (
        [[1.0, 0.0], [0.0, 2**-0.5]],
        [[0.0, 0.0], [0.5, 0.5], [0.25, 0.0], [0.75, 0.5]],
        [0, 0, 1, 1],
    ),
}


# 2D materials seen flat: a honeycomb of two sublattices, the second (S2 in
# MoS2, N in hBN) at its own height.
TWO_D = {
    ("mos2", "0001"): (
        [[1.0, 0.0], [0.5, 3**0.5 / 2]],
        [[0.0, 0.0], [1 / 3, 1 / 3]],
        [0, 1],
    ),
}


def projected_cell(structure: str, zone: str):
    """(vectors, basis, species) of a crystal in :data:`MONATOMIC`,
    :data:`DUMBBELLS` or :data:`TWO_D` (lengths in lattice parameters)."""
    two = DUMBBELLS | TWO_D
    if (structure, zone) in two:
        v, b, sp = two[(structure, zone)]
        return np.asarray(v, float), np.asarray(b, float), np.asarray(sp, int)
    v, b = MONATOMIC[(structure, zone)]
    return np.asarray(v, float), np.asarray(b, float), np.zeros(len(b), int)


def nearest_distance(vectors, basis) -> float:
    """The shortest distance between two columns of a projected cell."""
    vectors, basis = np.asarray(vectors, float), np.asarray(basis, float)
    ij = np.stack(np.meshgrid(*(np.arange(-2, 3),) * 2), -1).reshape(-1, 2)
    xy = ((ij[:, None, :] + basis[None]).reshape(-1, 2)) @ vectors
    d = np.hypot(*(xy[:, None] - (basis @ vectors)[None]).transpose(2, 0, 1))
    return float(d[d > 1e-9].min())


def particle_outline(centre, radius, rng, sides: int = 0):
    """A function xy -> bool of the inside of a particle: an ellipse of mean
    radius ``radius`` pixels (axes within 25 %), or with ``sides`` >= 3 a
    polygon with that many faces (a faceted particle); turned at random."""
    centre = np.asarray(centre, float)
    turn = rng.uniform(0, 2 * np.pi)
    if sides >= 3:
        angles = turn + np.sort(rng.uniform(0, 2 * np.pi, sides))
        reach = radius * rng.uniform(0.85, 1.1, sides)
        normals = np.stack([np.cos(angles), np.sin(angles)], 1)

        def inside(xy):
            return ((np.asarray(xy) - centre) @ normals.T <= reach).all(1)

        return inside
    stretch = rng.uniform(0.8, 1.25)
    axes = radius * np.array([stretch, 1 / stretch])
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])

    def inside(xy):
        u = (np.asarray(xy) - centre) @ rot / axes
        return (u**2).sum(1) <= 1

    return inside


def grain_sites(shape, vectors, basis, origin, margin, twin=None):
    """Columns of one grain, or of two grains meeting on a twin boundary.

    ``twin``, optional: (point, angle in degrees) of the boundary line; the
    sites beyond it are the mirror image of the lattice across it, and the
    sites of the second grain closer than 0.6 of the nearest distance to one
    of the first are left out. Returns xy (N, 2), the grain (N,) and the
    basis site (N,) of each.
    """
    from scipy.spatial import cKDTree

    xy, sub = lattice_sites(shape, vectors, basis, origin, margin)
    if twin is None:
        return xy, np.zeros(len(xy), int), sub
    point, angle = np.asarray(twin[0], float), np.deg2rad(twin[1])
    along = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-along[1], along[0]])
    side = (xy - point) @ normal
    mirror = xy - 2 * side[:, None] * normal
    first, second = xy[side <= 0], mirror[side <= 0]
    sub_first, sub_second = sub[side <= 0], sub[side <= 0]
    beyond = (second - point) @ normal > 0
    second, sub_second = second[beyond], sub_second[beyond]
    near = nearest_distance(np.asarray(vectors) / 1.0, basis)
    if len(first) and len(second):
        d, _ = cKDTree(first).query(second)
        second, sub_second = second[d > 0.6 * near], sub_second[d > 0.6 * near]
    grain = np.r_[np.zeros(len(first), int), np.ones(len(second), int)]
    return np.vstack([first, second]), grain, np.r_[sub_first, sub_second]


def amorphous(shape, spacing, sigma, amplitude, rng, where=None) -> np.ndarray:
    """The projected texture of an amorphous film: Gaussian blobs of width
    ``sigma`` at random places, about six per ``spacing`` squared, with
    heights uniform in [0, ``amplitude``]; only where ``where(xy)`` is True
    (default everywhere)."""
    h, w = shape
    n = int(6 * h * w / spacing**2)
    xy = rng.uniform([-3 * sigma] * 2, [w + 3 * sigma, h + 3 * sigma], (n, 2))
    if where is not None:
        xy = xy[where(xy)]
    heights = rng.uniform(0, amplitude, len(xy))
    flat = np.zeros(h)
    return render_columns(shape, xy, heights, sigma, (0.0, 0.0), flat)


def render_monatomic(
    shape,
    vectors,
    basis,
    sigma,
    inside=None,
    support=None,
    thickness=False,
    twin=None,
    dose=100.0,
    read_noise=1.0,
    drift=(0.0, 0.0),
    jitter=0.0,
    background=0.1,
    blur=0.0,
    seed=0,
    species=None,
    heights=(1.0,),
):
    """Render a crystal of one species (or of two, in dumbbells); every
    length in pixels, inputs valid.

    ``vectors`` (2, 2) and ``basis`` (k, 2) are the projected cell, already
    scaled and turned; the lattice's origin is drawn. ``inside``, optional: a
    function xy -> bool, the crystal's outline (a particle,
    :func:`particle_outline`); None fills the frame. ``support``, optional:
    the peak height (of a column's) of an amorphous film under everything
    (:func:`amorphous`); None: vacuum around the crystal. ``thickness``:
    column heights fall off towards the particle's edge like a sphere's
    thickness (to 0.3 at the edge). ``twin``: see :func:`grain_sites`.
    ``species``, optional: the species (int) of each basis site (default
    all 0), ``heights`` the peak height of each species.

    Returns a dict like :func:`render_perovskite`'s: ``image``,
    ``expected``, ``xy`` (true image-frame positions), ``sublattice`` (the
    species of each), ``grain``, ``amplitude``, and ``crystal`` (H, W)
    bool, the pixels within half a nearest distance of a column.
    """
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(seed)
    vectors = np.asarray(vectors, float)
    near = nearest_distance(vectors, basis)
    origin = rng.uniform(0, 1, 2) @ vectors
    margin = 4 * sigma + abs(drift[0]) + abs(drift[1]) + 2
    xy, grain, site = grain_sites(shape, vectors, basis, origin, margin, twin)
    if inside is not None:
        keep = inside(xy)
        xy, grain, site = xy[keep], grain[keep], site[keep]
    kind = np.zeros(len(basis), int) if species is None else np.asarray(species)
    kind = kind[site]
    amplitude = np.asarray(heights, float)[kind]
    if thickness and len(xy):
        centre = xy.mean(0)
        reach = np.hypot(*(xy - centre).T).max() + near
        r = np.hypot(*(xy - centre).T) / reach
        amplitude = amplitude * (0.3 + 0.7 * np.sqrt(np.clip(1 - r**2, 0, 1)))
    amplitude *= 1 + 0.03 * rng.standard_normal(len(xy))
    h = shape[0]
    line_jitter = jitter * rng.standard_normal(h) if jitter > 0 else np.zeros(h)
    clean = render_columns(shape, xy, amplitude, sigma, drift, line_jitter)
    if support is not None:
        clean = clean + amorphous(shape, near, sigma, support, rng)
    if not clean.any():
        clean = clean + 1e-3
    expected, image = detect(clean, blur, background, dose, read_noise, rng)
    xy_image = scan_positions(xy, shape, drift, line_jitter, sigma)
    ok = in_frame(xy_image, shape)
    crystal = np.ones(shape, bool)
    if len(xy_image[ok]):
        seeds = np.ones(shape, bool)
        r = np.round(xy_image[ok]).astype(int)
        seeds[r[:, 1], r[:, 0]] = False
        crystal = distance_transform_edt(seeds) <= 0.5 * near
    else:
        crystal[:] = False
    return {
        "image": image.astype(np.float32),
        "expected": expected.astype(np.float32),
        "xy": xy_image[ok],
        "sublattice": kind[ok],
        "grain": grain[ok].astype(int),
        "amplitude": amplitude[ok],
        "crystal": crystal,
    }
