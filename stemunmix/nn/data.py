"""Training samples from the synthetic generator: image and per-pixel class map.

Columns sit at a spacing (the shortest lattice translation) drawn around the
training spacing; ``segment(scale="auto")`` resamples real images to it.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from stemunmix.core.segmentation import normalize
from stemunmix.core.synthetic import (
    DUMBBELLS,
    MONATOMIC,
    TWO_D,
    nearest_distance,
    particle_outline,
    projected_cell,
    render_monatomic,
    render_perovskite,
    rotation_matrix,
)

# A-B distance is spacing / sqrt(2) in both projections; label disks use a
# quarter of it, so the disks never touch.
DISK_FRACTION = 0.25 / np.sqrt(2)
# Shares of the one-species model's crystals in dumbbells and in 2D
# honeycombs of two sublattices (see monatomic_sample).
DUMBBELL_SHARE = 0.3
TWO_D_SHARE = 0.15
# The share of 2D images of each model trained on monatomic_sample.
MONATOMIC_SHARES = {"one species": 0.0, "2D": TWO_D_SHARE}
# Share of training images with a band of another material (see random_sample).
LAYER_PROBABILITY = 0.5


def label_map(shape, xy, labels, radius, background) -> np.ndarray:
    """Class index per pixel: the nearest column's class within ``radius``."""
    if len(xy) == 0:
        return np.full(shape, background, np.int64)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    pixels = np.stack([xx.ravel(), yy.ravel()], 1)
    dist, idx = cKDTree(xy).query(pixels, distance_upper_bound=radius)
    out = np.full(len(pixels), background, np.int64)
    hit = np.isfinite(dist)
    out[hit] = labels[idx[hit]]
    return out.reshape(shape)


def random_sample(
    rng: np.random.Generator,
    size: int = 128,
    spacing_range=(11, 23),
    truth=False,
    oxygen: bool = False,
):
    """One training image (normalised float32) and its class map (int64).

    ``oxygen=True``: the oxygen model's images (:func:`oxygen_contrast`), with
    classes 0 = A, 1 = B, 2 = O, 3 = background.

    With ``truth=True`` also the true column positions and sublattices.

    Classes: 0 = A, 1 = B, 2 = background. Draws wide ranges of every control of
    the generator: spacing, rotation, projection, dose 0.5-1000, drift, jitter,
    blur, background, A/B ratio, darker A sites, displacements and domains; in
    half the images a band of another material where A is about as bright as
    B (a layer such as SrRuO3 in PbTiO3, named only by the lattice running on
    through it); and a symmetric smear along the fast scan (detector
    afterglow; no shift).
    """
    projection = "001" if rng.random() < 0.5 else "110"
    spacing = rng.uniform(*spacing_range)
    a_px = spacing if projection == "001" else spacing * np.sqrt(2)
    sigma = spacing * rng.uniform(0.07, 0.24)
    kind = oxygen_contrast(rng, spacing) if oxygen else {}
    if kind:
        sigma = spacing * kind.pop("sigma")
    domains = rng.choice(["none", "two_stripes", "four_stripes", "quadrants"])
    n_dom = {"none": 1, "two_stripes": 2, "four_stripes": 4, "quadrants": 4}[domains]
    layer = None
    if rng.random() < LAYER_PROBABILITY:
        # A band of another material (SrRuO3 in PbTiO3): A about as bright as
        # B, both between the outside's A and B; only the lattice running on
        # from outside names them.
        a_layer = rng.uniform(0.3, 0.8)
        layer = dict(
            normal=rng.uniform(0, 360),
            offset=rng.uniform(-0.25, 0.25) * size,
            width=min(rng.uniform(1.5, 3.5) * a_px, 0.4 * size),
            a=a_layer,
            b=a_layer * rng.uniform(0.75, 1.35),
        )
    rotation, ratio = rng.uniform(0, 360), rng.uniform(0.08, 0.6)  # in this order
    out = render_perovskite(
        shape=(size, size),
        a_px=a_px,
        projection=projection,
        rotation=rotation,
        intensity_ratio=kind.pop("intensity_ratio", ratio),
        dark_fraction=rng.uniform(0, 0.3),
        dark_ratio=rng.uniform(0.6, 0.95),
        sigma=sigma,
        displacement=spacing * rng.uniform(0, 0.06),
        directions=rng.uniform(0, 360, n_dom),
        domains=domains,
        wall_width=rng.uniform(0, 3) * spacing,
        dose=kind.pop("dose", None)
        or float(np.exp(rng.uniform(np.log(0.5), np.log(1000)))),
        read_noise=rng.uniform(0, 2),
        drift=rng.uniform(-3, 3, 2),
        jitter=rng.uniform(0, 0.4),
        background=rng.uniform(0, 0.5),
        blur=rng.uniform(0, 0.5) * sigma,
        seed=int(rng.integers(2**31)),
        layer=layer,
        **{k: kind[k] for k in ("oxygen", "tilt", "dip") if k in kind},
    )
    if kind.get("high_pass"):  # iDPC: integrated gradients lose the low frequencies
        from scipy.ndimage import gaussian_filter

        out["image"] = out["image"] - kind["high_pass"] * gaussian_filter(
            out["image"], kind["high_pass_width"] * spacing
        )
    out["image"] = _detector(rng, out["image"])
    # Dark columns go in inverted, as segment() passes them to the network.
    image = normalize(-out["image"] if kind.get("dip") else out["image"])
    sub = out["sublattice"]
    if oxygen and not kind.get("o_visible"):
        sub = np.where(sub == 2, 3, sub)  # invisible O is background, not a guess
    labels = label_map(
        (size, size), out["xy"], sub, DISK_FRACTION * spacing, 3 if oxygen else 2
    )
    if truth:
        return image, labels, out["xy"], sub
    return image, labels


def _detector(rng, image):
    """What the detector adds to a rendered image, drawn: an afterglow smear
    along the fast scan (30 %), another gain and offset (50 %)."""
    if rng.random() < 0.3:  # detector afterglow smears counts along the fast scan
        from scipy.ndimage import gaussian_filter1d

        image = gaussian_filter1d(image, rng.uniform(0.3, 1.5), axis=1)
    if rng.random() < 0.5:  # ADF/HAADF gain and offset vary between microscopes
        image = image * rng.uniform(0.5, 50) + rng.uniform(-100, 100)
    return image


def monatomic_sample(
    rng: np.random.Generator,
    size: int = 128,
    spacing_range=(11, 23),
    truth=False,
    two_d: float = 0.0,
):
    """One training image of the one-species model and its class map
    (0 = column, 1 = background): a crystal of any projection in
    :data:`MONATOMIC` (square, centred rectangle, triangular, honeycomb) or,
    in ``DUMBBELL_SHARE`` of the images, in :data:`DUMBBELLS` ([110]
    diamond and zincblende, the two columns of a dumbbell 0.6-1 of each
    other's height), or in a share ``two_d`` of them (the 2D model's
    ``TWO_D_SHARE``; 0 for the one-species model) a 2D honeycomb of two
    sublattices (:data:`TWO_D`, MoS2: one 0.2-1 of the other's height), at a shortest translation drawn in ``spacing_range``,
    turned at random; it
    fills the frame (35 %), is a particle (ellipse or facets) on vacuum
    (30 %) or on an amorphous film (25 %), or is absent (10 %: a film or
    vacuum only); a quarter of the crystals are twinned. Dose, noise, drift,
    jitter, blur and the detector are drawn as for the perovskites.
    """
    u = rng.random()
    two_d = DUMBBELL_SHARE <= u < DUMBBELL_SHARE + two_d
    keys = list(DUMBBELLS if u < DUMBBELL_SHARE else TWO_D if two_d else MONATOMIC)
    vectors, basis, species = projected_cell(*keys[int(rng.integers(len(keys)))])
    second = rng.uniform(0.2 if two_d else 0.6, 1.0)
    heights = (1.0, second)[:: 1 if rng.random() < 0.5 else -1]
    spacing = rng.uniform(*spacing_range)
    # the shortest translation (what segment() measures as the spacing): the
    # nearest distance of a one-site basis
    vectors = np.asarray(vectors) * spacing / nearest_distance(vectors, [[0.0, 0.0]])
    vectors = vectors @ rotation_matrix(rng.uniform(0, 360)).T
    near = nearest_distance(vectors, basis)
    sigma = near * rng.uniform(0.1, 0.32)
    u = rng.random()
    inside, support = None, None
    if u >= 0.35:
        centre = rng.uniform(0.2, 0.8, 2) * size
        radius = rng.uniform(1.5, 6.0) * spacing
        sides = int(rng.choice([0, 4, 5, 6, 8]))
        inside = particle_outline(centre, radius, rng, sides)
        if u >= 0.9:
            inside = _nowhere
        if u >= 0.65 and rng.random() < 0.85:
            support = rng.uniform(0.05, 0.6)
    twin = None
    if rng.random() < 0.25:
        twin = (rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0, 180))
    out = render_monatomic(
        (size, size),
        vectors,
        basis,
        sigma,
        inside=inside,
        support=support,
        thickness=inside is not None and rng.random() < 0.5,
        twin=twin,
        dose=float(np.exp(rng.uniform(np.log(2), np.log(1000)))),
        read_noise=rng.uniform(0, 2),
        drift=rng.uniform(-3, 3, 2),
        jitter=rng.uniform(0, 0.4),
        background=rng.uniform(0, 0.5),
        blur=rng.uniform(0, 0.5) * sigma,
        seed=int(rng.integers(2**31)),
        species=species,
        heights=heights,
    )
    image = normalize(_detector(rng, out["image"]))
    column = np.zeros(len(out["xy"]), int)  # every species is a column
    labels = label_map((size, size), out["xy"], column, 0.25 * near, 1)
    if truth:
        return image, labels, out["xy"], column
    return image, labels


def _nowhere(xy):
    return np.zeros(len(xy), bool)


def oxygen_contrast(rng: np.random.Generator, spacing: float) -> dict:
    """The contrast of one oxygen-model image, drawn: HAADF (30 %: O rendered at
    a few % of A, invisible, labelled background), ABF (35 %: every column a
    dip, O the weakest, A and B alike) or iDPC (35 %: every
    column bright, roughly with the projected potential, the low frequencies
    partly lost). Half of the ABF and iDPC images have octahedral tilts up to 10
    degrees. Returns render_perovskite's oxygen/tilt/dip, the B/A ratio, the
    column sigma (fraction of the spacing) and the iDPC high-pass."""
    u = rng.random()
    tilt = rng.uniform(0, 10) if rng.random() < 0.5 else 0.0
    if u < 0.3:
        return dict(oxygen=rng.uniform(0, 0.05), sigma=rng.uniform(0.07, 0.24))
    if u < 0.65:
        # A bright field: ABF frames collect many counts a pixel.
        return dict(
            oxygen=rng.uniform(0.3, 0.85),
            tilt=tilt,
            dip=rng.uniform(0.08, 0.6),
            dose=float(np.exp(rng.uniform(np.log(20), np.log(5000)))),
            intensity_ratio=rng.uniform(0.45, 1.1),
            sigma=rng.uniform(0.07, 0.16),
            o_visible=True,
        )
    return dict(
        oxygen=rng.uniform(0.2, 0.55),
        tilt=tilt,
        intensity_ratio=rng.uniform(0.35, 1.0),
        sigma=rng.uniform(0.07, 0.16),
        high_pass=rng.uniform(0, 0.9),
        high_pass_width=rng.uniform(0.4, 1.5),
        o_visible=True,
    )


def batch(
    rng: np.random.Generator,
    n: int,
    size: int = 128,
    oxygen: bool = False,
    structure: str = "perovskite",
):
    """(images (n, 1, size, size) float32, labels (n, size, size) int64)."""
    if structure in MONATOMIC_SHARES:
        share = MONATOMIC_SHARES[structure]
        pairs = [monatomic_sample(rng, size, two_d=share) for _ in range(n)]
    else:
        pairs = [random_sample(rng, size, oxygen=oxygen) for _ in range(n)]
    images = np.stack([p[0] for p in pairs])[:, None]
    labels = np.stack([p[1] for p in pairs])
    return images, labels
