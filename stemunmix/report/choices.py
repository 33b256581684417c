"""What analyze() chooses from the data where the user gives nothing, and
why (recorded in ``choices``); the rules are in core/selection."""

from __future__ import annotations

import numpy as np

from stemunmix.core.selection import count_domains, parallel_analysis, window_candidates


def choose_window(scree, n_components: int) -> int:
    """The rule for the window size: the d whose first ``n_components``
    components explain the most variance on the scree against window size
    (``scree_by_window``, the study's Fig. 1a). A window the size of the
    distortion holds the signal and little else; a larger one adds pixels
    the components do not explain (other columns' noise), a smaller one cuts
    the column off."""
    curves = np.asarray(scree.data)
    d = scree.axes_manager.signal_axes[0].axis
    row = curves[min(n_components, len(curves)) - 1]
    return int(d[int(np.argmax(row))])


def _window_from_data(windows, spacing, scree, choices) -> int:
    """The window size by :func:`choose_window` on the scree (half the
    spacing without one), recorded with why in ``choices``."""
    half = int(round(0.5 * spacing)) | 1
    if scree is None:
        choices["window"] = {
            "value": half,
            "why": f"half the {spacing:.1f} px column spacing (no scree computed)",
        }
        return half
    n_floor = _components_above_noise(windows(half))
    window = choose_window(scree, n_floor)
    choices["window"] = {
        "value": int(window),
        "why": f"the most variance in the first {n_floor} components (those "
        f"above the noise floor) on the scree against window size, d = "
        f"{window_candidates(spacing)} px (0.3 to 1.2 x the "
        f"{spacing:.1f} px column spacing)",
    }
    return window


def _domains_from_data(loadings, choices) -> int:
    """The number of domains by :func:`stemunmix.core.selection.count_domains`,
    recorded with why in ``choices``."""

    found = count_domains(loadings, max_domains=8)
    why = (
        "the Gaussian mixture (2 to 8 clusters, one shared covariance) of the "
        "loadings whose partition has the highest mean silhouette"
    )
    if found["n_domains"] == 1 and found["silhouette"]:
        best = int(np.argmax(found["silhouette"]))
        why = (
            f"no significant domain structure: no partition into 2 to 8 "
            f"clusters reaches a silhouette of 0.25 (best "
            f"{found['silhouette'][best]:.2f}, {best + 2} clusters)"
        )
    choices["domains"] = {
        "value": int(found["n_domains"]),
        "why": why,
        "silhouette": [round(v, 3) for v in found["silhouette"]],
    }
    return found["n_domains"]


def _components_above_noise(ld) -> int:
    """Parallel analysis on (a subsample of) the windows (as the analysis
    made them: normalised there, if at all), 2 to 10 components."""

    n = ld.axes_manager.navigation_size
    data = ld.data.reshape((n, -1))
    pick = np.sort(np.random.default_rng(0).choice(n, min(n, 5000), replace=False))
    x = np.asarray(data[pick].compute() if ld._lazy else data[pick], np.float64)
    found = parallel_analysis(x, max_components=10)
    return int(np.clip(found["n_components"], 2, 10))


def _scree(prob, columns, image, spacing, classes, source, centre, normalize):
    """The scree against window size (``scree_by_window``, the study's Fig.
    1a) of windows like the analysis's, over :func:`window_candidates`."""
    return prob.scree_by_window(
        window_candidates(spacing),
        n_components=10,
        classes=classes,
        columns=columns,
        image=image,
        source=source,
        centre=centre,
        normalize=normalize,
        lazy_output=image._lazy,
    )
