"""Does each real nanoparticle show a lattice to find columns on? (diagnostic)

    python benchmarks/particle_lattice.py

The tk_r_em images 0-3 of ../shared/data/real hold nanoparticles. For a box
inside each particle, and one on the support or vacuum beside it (boxes
placed by eye on the images and written below: our annotation, not data),
the strongest peak of the power spectrum at a spacing of 6-40 px over the
median power there, and its spacing; the rows and columns of the spectrum
within 2 bins of its axes are left out (scan-line streaks). The amorphous
texture and the scan read tens to a few hundred at long spacings; a
crystal's lattice reads thousands at its own spacing. Then the columns
`find_columns(structure="one species")` finds inside each box, and the
spacing it measured on the frame. Beside each particle: its box's three
strongest spectral peaks, marked where the box beside it shows the same
(a spacing within 10 %, a direction within 10 degrees): a lattice the
particle shares with its support, or the scan's, is not the particle's.
"""

import warnings

import numpy as np
from _real_images import load

# (x0, x1, y0, y1) pixels: a box inside the particle, and one beside it
# (None where the crystal fills the frame).
BOXES = {
    0: ((200, 456, 200, 456), None),
    1: ((330, 530, 200, 400), (40, 200, 600, 760)),
    2: ((250, 350, 310, 410), (500, 620, 500, 620)),
    3: ((330, 430, 380, 480), (550, 670, 550, 670)),
}


def spectrum(data, box) -> tuple:
    """(power, spacing px, ky, kx) of the Hann-windowed crop ``box`` of
    ``data``, its mean taken out; the zero frequency in the middle."""
    x0, x1, y0, y1 = box
    crop = data[y0:y1, x0:x1].astype(float)
    crop = crop - crop.mean()
    h, w = crop.shape
    crop *= np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(crop))) ** 2
    ky = np.arange(h)[:, None] - h // 2
    kx = np.arange(w)[None, :] - w // 2
    with np.errstate(divide="ignore"):
        spacing = 1 / np.hypot(ky / h, kx / w)
    return power, spacing, ky, kx


def _band(spacing, ky, kx, low):
    """Spacings ``low``-40 px, off the rows and columns within 2 bins of the
    axes (scan-line streaks)."""
    return (spacing >= low) & (spacing <= 40) & (np.abs(ky) > 2) & (np.abs(kx) > 2)


def lattice_peak(data, box) -> tuple[float, float]:
    """(peak power over the median, the peak's spacing in px) in ``box``."""
    power, spacing, ky, kx = spectrum(data, box)
    keep = _band(spacing, ky, kx, 6)
    values = power[keep]
    k = np.argmax(values)
    return float(values[k] / np.median(values)), float(spacing[keep][k])


def top_peaks(data, box, n=3) -> list:
    """The ``n`` strongest local maxima of the power spectrum in ``box`` at
    spacings of 5-40 px, one of each Friedel pair: (power over the
    median, spacing px, direction in degrees)."""
    from scipy import ndimage

    power, spacing, ky, kx = spectrum(data, box)
    keep = _band(spacing, ky, kx, 5)
    median = np.median(power[keep])
    q = np.where(keep, power, 0)
    top = (q == ndimage.maximum_filter(q, 5)) & keep & (ky >= 0)
    ys, xs = np.nonzero(top)
    order = np.argsort(q[ys, xs])[::-1][:n]
    return [
        (
            float(q[ys[i], xs[i]] / median),
            float(spacing[ys[i], xs[i]]),
            float(np.degrees(np.arctan2(ky[ys[i], 0], kx[0, xs[i]]))),
        )
        for i in order
    ]


def shared(peak, others, tolerance=(0.1, 10.0)) -> bool:
    """Whether ``peak`` (power, spacing, degrees) stands in ``others`` too:
    a spacing within 10 % and a direction within 10 degrees."""
    return any(
        abs(s - peak[1]) <= tolerance[0] * peak[1]
        and abs((d - peak[2] + 90) % 180 - 90) <= tolerance[1]
        for _, s, d in others
    )


def columns_in(xy, box) -> int:
    x0, x1, y0, y1 = box
    inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
    return int(inside.sum())


def main():
    from stemunmix.signals import AtomicResolutionImage

    for k, (particle, beside) in BOXES.items():
        data = load(f"nanoparticles {k}")
        image = AtomicResolutionImage(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xy = image.find_columns(structure="one species", show_progressbar=False).xy
        ratio, spacing = lattice_peak(data, particle)
        line = (
            f"image {k}: particle box {particle}: peak / median {ratio:.0f} at "
            f"{spacing:.1f} px, {columns_in(xy, particle)} columns"
        )
        if beside is not None:
            ratio, spacing = lattice_peak(data, beside)
            line += (
                f"; beside {beside}: peak / median {ratio:.0f} at {spacing:.1f} px, "
                f"{columns_in(xy, beside)} columns"
            )
            inside, outside = top_peaks(data, particle), top_peaks(data, beside)
            line += "; the particle's 3 strongest spectral peaks (power, px, deg): " + ", ".join(
                f"{p:.0f} {s:.1f} {d:.0f}" + (" (beside too)" if shared((p, s, d), outside) else "")
                for p, s, d in inside
            )  # fmt: skip
        md = image.probabilities.metadata.Signal.stemunmix.segment
        spacing = float(np.ravel(md.measured_spacing)[0])
        print(
            line + f"; {len(xy)} columns in all, spacing measured {spacing:.1f} px",
            flush=True,
        )


if __name__ == "__main__":
    main()
