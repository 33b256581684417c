"""A rotation- and shift-invariant variational autoencoder of windows.

The encoder reads a window and gives the posterior of its latents: an angle,
a shift (x, y) and ``n_latent`` content latents. The decoder draws the window
as a function of the pixel coordinates: it rotates and shifts the coordinate
grid by the angle and shift latents, then maps each moved coordinate and the
content latents to a pixel value. So a rotated or shifted copy of a window
needs no content latent of its own: orientation goes to the angle, the rest
to the content (Bepler et al. 2019's spatial VAE; Kalinin et al. 2021 and
Valleti et al. 2022 on ferroic variants in STEM). The decoder applies the
angle and shift, so traversals of any latent, ``inverse_transform`` of
chosen latents, reproduce windows.

torch, seeded and deterministic on the CPU; CUDA when asked for.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from stemunmix.core import checks
from stemunmix.learn._subsample import check_2d, is_dask, subsample


def _network(side: int, n_latent: int, n_labels: int, hidden: int):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(side * side + n_labels, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
            )
            # the angle as a 2-vector (its direction): no wrap at +-pi, and
            # a linear read of a displacement gives it
            self.mean = nn.Linear(hidden, 2 + n_latent)
            self.log_var = nn.Linear(hidden, 2 + n_latent)
            # the angle's own branch: it must turn with the window, which
            # the reconstruction alone does not ask of a shared body
            self.turn = nn.Sequential(
                nn.Linear(side * side + n_labels, hidden),
                nn.Tanh(),
                nn.Linear(hidden, 2),
            )

        def forward(self, x):
            h = self.body(x)
            direction = self.turn(x)
            log_var = torch.cat([torch.zeros_like(direction), self.log_var(h)], 1)
            return torch.cat([direction, self.mean(h)], 1), log_var

    class Decoder(nn.Module):
        """The window in its own frame from the content latents, then turned
        by the angle and moved by the shift (a bilinear resampling of it)."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(max(n_latent + n_labels, 1), hidden),
                nn.Tanh(),
                nn.Linear(hidden, side * side),
            )
            self.template = nn.Parameter(torch.zeros(side * side))

        def forward(self, angle, shift, content):
            b = len(angle)
            if content.shape[1] == 0:
                content = torch.zeros((b, 1), device=angle.device)
            frame = (self.template + self.body(content)).reshape(b, 1, side, side)
            c, s = torch.cos(angle), torch.sin(angle)
            theta = torch.stack(
                [
                    torch.stack([c, -s, shift[:, 0]], 1),
                    torch.stack([s, c, shift[:, 1]], 1),
                ],
                1,
            )
            grid = F.affine_grid(theta, (b, 1, side, side), align_corners=True)
            moved = F.grid_sample(
                frame, grid, padding_mode="border", align_corners=True
            )
            return moved.reshape(b, side * side)

    return Encoder(), Decoder()


class RotationInvariantVAE(TransformerMixin, BaseEstimator):
    """Latents of square windows that separate orientation from content.

    Parameters
    ----------
    n_latent : int
        Content latents besides the angle and the shift (default 2).
    hidden : int
        Width of the encoder's and decoder's layers.
    epochs : int
        Passes over the fitted rows.
    batch_size : int
    learning_rate : float
    shift_prior : float
        Standard deviation of the shift's prior, in half-windows (default
        0.1: a tenth of the half-window).
    equivariance : float
        Weight of the term that makes the angle turn with the window: a
        quarter turn of a window's pixels must add a quarter turn to its
        angle (0: none; the angle then tends to settle on one value).
    rotation : bool
        Whether the angle latent turns the decoded window (default True).
        False: the angle is held at 0 and the model is shift-invariant only,
        for windows of one orientation (a crystal imaged in one zone axis,
        whose variants are displacements, not turns; a near-square frame of
        columns otherwise lets the angle spin the shift's frame).
    max_samples : int, optional
        Fit on a seeded subsample of this many rows (default 20000); None:
        all (a dask array is then read in minibatches chunk by chunk).
    random_state : int
        The seed (0 or more): of the subsample, the initial weights, the
        batches and the draws.
    device : str
        ``"cpu"`` (default) or ``"cuda"``.
    verbose : bool
        A progress bar per epoch.

    Attributes
    ----------
    latent_names_ : list of str
        ``["angle", "shift_x", "shift_y", "z0", ...]``, the columns of
        :meth:`transform`.
    loss_curve_ : list of float
        The mean loss (negative ELBO per window) of each epoch.
    """

    def __init__(
        self,
        n_latent=2,
        hidden=64,
        epochs=30,
        batch_size=128,
        learning_rate=3e-3,
        shift_prior=0.1,
        max_samples=20000,
        equivariance=10.0,
        rotation=True,
        random_state=0,
        device="cpu",
        verbose=False,
    ):
        self.n_latent = n_latent
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.shift_prior = shift_prior
        self.max_samples = max_samples
        self.equivariance = equivariance
        self.rotation = rotation
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- checks -------------------------------------------------------------

    def _side(self, features: int) -> int:
        side = int(round(np.sqrt(features)))
        if side * side != features or side < 3:
            raise ValueError(
                f"X has {features} features: the rows must be square windows "
                "(d * d values, d >= 3) flattened; pass LocalDescriptors data "
                "reshaped to (windows, d * d)"
            )
        return side

    def _check_params(self) -> None:
        checks.count("n_latent", self.n_latent, low=0)
        checks.count("hidden", self.hidden)
        checks.count("epochs", self.epochs)
        checks.count("batch_size", self.batch_size)
        checks.count("random_state", self.random_state, low=0)  # torch seeds it
        for name, low in (
            ("learning_rate", 0),
            ("shift_prior", 0),
            ("equivariance", None),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and np.isfinite(value)
            if not (ok and (value > 0 if low == 0 else value >= 0)):
                what = "a positive number" if low == 0 else "a number >= 0"
                raise ValueError(f"{name} must be {what}, got {value!r}")
        if not isinstance(self.rotation, (bool, np.bool_)):
            raise TypeError(f"rotation must be True or False, got {self.rotation!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    def _labels(self, y, n: int):
        if y is None:
            return None
        y = np.asarray(y).reshape(-1)
        if len(y) != n:
            raise ValueError(f"y has {len(y)} labels for {n} rows of X")
        if not hasattr(self, "classes_"):
            self.classes_ = np.unique(y)
        index = np.searchsorted(self.classes_, y)
        bad = (index >= len(self.classes_)) | (
            self.classes_[np.minimum(index, len(self.classes_) - 1)] != y
        )
        if bad.any():
            raise ValueError(
                f"y holds labels the model was not fitted on: {np.unique(y[bad])}"
            )
        return np.eye(len(self.classes_), dtype=np.float32)[index]

    # -- fitting ------------------------------------------------------------

    def fit(self, X, y=None):
        """Fit on the rows of ``X`` (windows, d * d), numpy or dask; ``y``:
        a label per row (e.g. the site class) to condition on."""
        import torch

        self._check_params()
        X = check_2d(X)
        side = self._side(X.shape[1])
        if y is not None:
            y = np.asarray(y).reshape(-1)
            if self.max_samples is not None and X.shape[0] > self.max_samples:
                raise ValueError(
                    "y with a subsample: pass max_samples=None, or fit on the rows "
                    "and labels you chose"
                )
            self.classes_ = np.unique(y)
        rows = subsample(X, self.max_samples, self.random_state).astype(np.float32)
        if not np.all(np.isfinite(rows)):
            raise ValueError("X contains NaN or inf; remove those rows first")
        labels = self._labels(y, len(rows))
        self.mean_ = float(rows.mean())
        self.scale_ = float(rows.std()) or 1.0
        data = (rows - self.mean_) / self.scale_
        torch.manual_seed(int(self.random_state))
        n_labels = 0 if labels is None else labels.shape[1]
        self.encoder_, self.decoder_ = _network(
            side, self.n_latent, n_labels, self.hidden
        )
        device = torch.device(self.device)
        self.encoder_.to(device)
        self.decoder_.to(device)
        self.side_ = side
        self.n_labels_ = n_labels
        self.device_ = device
        params = list(self.encoder_.parameters()) + list(self.decoder_.parameters())
        optimiser = torch.optim.Adam(params, lr=self.learning_rate)
        generator = torch.Generator().manual_seed(int(self.random_state))
        x_all = torch.from_numpy(data)
        l_all = None if labels is None else torch.from_numpy(labels)
        self.loss_curve_ = []
        turns = bool(self.equivariance) and self.rotation
        if turns:
            self._turn_first(x_all, l_all, device, generator)
        for _ in _epochs(self.epochs, self.verbose):
            order = torch.randperm(len(x_all), generator=generator)
            total = 0.0
            for start in range(0, len(order), int(self.batch_size)):
                idx = order[start : start + int(self.batch_size)]
                xb = x_all[idx].to(device)
                lb = None if l_all is None else l_all[idx].to(device)
                loss = self._loss(xb, lb, sample=True, generator=generator)
                if turns:
                    loss = loss + self.equivariance * self._turned(xb, lb, generator)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            self.loss_curve_.append(total / len(order))
        self.n_features_in_ = X.shape[1]
        self.latent_names_ = ["angle", "shift_x", "shift_y"] + [
            f"z{k}" for k in range(int(self.n_latent))
        ]
        return self

    def _encode(self, xb, lb):
        import torch

        inputs = xb if lb is None else torch.cat([xb, lb], 1)
        mean, log_var = self.encoder_(inputs)
        if not getattr(self, "rotation", True):  # the angle held at 0
            fixed = torch.zeros_like(mean[:, :2])
            fixed[:, 0] = 1.0
            mean = torch.cat([fixed, mean[:, 2:]], 1)
        return mean, log_var

    def _decode(self, z, lb):
        """Windows from latents [angle, shift_x, shift_y, content...]."""
        import torch

        content = z[:, 3:] if lb is None else torch.cat([z[:, 3:], lb], 1)
        return self.decoder_(z[:, 0], z[:, 1:3], content)

    @staticmethod
    def _named(raw):
        """[u, v, shifts, content] -> [angle, shifts, content]."""
        import torch

        angle = torch.atan2(raw[:, 1], raw[:, 0])[:, None]
        return torch.cat([angle, raw[:, 2:]], 1)

    def _turn_first(self, x_all, l_all, device, generator, epochs: int = 10):
        """The angle's branch trained alone first, to turn with the windows:
        from the start, the decoder's template and the angle would settle
        together on one orientation for every window (a quarter-turn
        symmetric frame of columns makes every angle between two quarter
        turns worse than either)."""
        import torch

        optimiser = torch.optim.Adam(
            self.encoder_.turn.parameters(), lr=self.learning_rate
        )
        for _ in range(epochs):
            order = torch.randperm(len(x_all), generator=generator)
            for start in range(0, len(order), int(self.batch_size)):
                idx = order[start : start + int(self.batch_size)]
                lb = None if l_all is None else l_all[idx].to(device)
                loss = self._turned(x_all[idx].to(device), lb, generator)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def _turned(self, xb, lb, generator):
        """How far the angle is from turning with the window: a quarter turn
        of the pixels (exact, no resampling) must add a quarter turn to the
        angle. Without it, a template that averages the orientations is a
        minimum the angle never leaves."""
        import torch

        k = int(torch.randint(1, 4, (1,), generator=generator))
        side = self.side_
        turned = torch.rot90(xb.reshape(-1, side, side), k, dims=(1, 2))
        mean, _ = self._encode(xb, lb)
        mean_turned, _ = self._encode(turned.reshape(len(xb), -1), lb)
        u, v = mean[:, 0], mean[:, 1]
        for _ in range(k):  # (u, v) turned by +90 degrees (y down)
            u, v = -v, u
        # directions compared (1 - cosine): a vector shrunk to nothing would
        # turn with anything
        a = torch.atan2(mean_turned[:, 1], mean_turned[:, 0])
        return (1 - torch.cos(a - torch.atan2(v, u))).mean()

    def _loss(self, xb, lb, sample: bool, generator=None):
        """Negative ELBO per window: the squared error of the decoded window
        (unit noise on standardised pixels) and the latents' KL divergence
        from their priors (the angle's 2-vector and the content's of 1, the
        shift's of shift_prior)."""
        import torch

        mean, log_var = self._encode(xb, lb)
        # The angle's direction is a point estimate (no noise, no prior: a
        # noisy direction would blur every decoded window); the shift and the
        # content are drawn from their posterior.
        raw = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator).to(mean.device)
            noise[:, :2] = 0.0
            raw = mean + torch.exp(0.5 * log_var) * noise
        recon = self._decode(self._named(raw), lb)
        error = 0.5 * ((recon - xb) ** 2).sum(1)
        prior = torch.ones(mean.shape[1] - 2, device=mean.device)
        prior[:2] = float(self.shift_prior)
        var = prior**2
        m, lv = mean[:, 2:], log_var[:, 2:]
        kl = 0.5 * ((torch.exp(lv) + m**2) / var - 1 - lv + torch.log(var)).sum(1)
        return (error + kl).mean()

    # -- using it -----------------------------------------------------------

    def _batches(self, X, y):
        """(numpy rows, one-hot labels or None) in batches; a dask array
        chunk by chunk."""
        if is_dask(X):
            X = X.rechunk({1: -1})
            start = 0
            for block in X.to_delayed().ravel():
                rows = np.asarray(block.compute(), np.float32)
                lab = (
                    None
                    if y is None
                    else self._labels(y[start : start + len(rows)], len(rows))
                )
                start += len(rows)
                yield rows, lab
        else:
            X = np.asarray(X, np.float32)
            for start in range(0, len(X), 4096):
                rows = X[start : start + 4096]
                lab = (
                    None
                    if y is None
                    else self._labels(y[start : start + len(rows)], len(rows))
                )
                yield rows, lab

    def _check_fitted(self, X, y):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "encoder_")
        X = check_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features; the model was fitted on "
                f"{self.n_features_in_} ({self.side_} x {self.side_} windows)"
            )
        if (y is None) != (self.n_labels_ == 0):
            raise ValueError(
                "y: the model was fitted with labels; pass them"
                if self.n_labels_
                else "y: the model was fitted without labels; leave y out"
            )
        return X

    def transform(self, X, y=None):
        """The posterior mean of the latents of each row (rows,
        3 + n_latent), named by ``latent_names_``: the angle in radians,
        the shift in half-windows, then the content."""
        import torch

        X = self._check_fitted(X, y)
        out = []
        with torch.no_grad():
            for rows, lab in self._batches(X, y):
                xb = torch.from_numpy((rows - self.mean_) / self.scale_)
                lb = None if lab is None else torch.from_numpy(lab)
                mean, _ = self._encode(
                    xb.to(self.device_),
                    None if lb is None else lb.to(self.device_),
                )
                out.append(self._named(mean).cpu().numpy().astype(float))
        return np.concatenate(out) if out else np.zeros((0, 3 + int(self.n_latent)))

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X, y)

    def inverse_transform(self, Z, y=None):
        """Windows (rows, d * d) the decoder draws from latents ``Z`` (rows,
        3 + n_latent): the angle and shift applied to the coordinate grid."""
        import torch
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "encoder_")
        Z = np.asarray(Z, np.float32)
        if Z.ndim != 2 or Z.shape[1] != 3 + int(self.n_latent):
            raise ValueError(
                f"Z must be (rows, {3 + int(self.n_latent)}) latents "
                f"{self.latent_names_}, got shape {Z.shape}"
            )
        lab = None if y is None else torch.from_numpy(self._labels(y, len(Z)))
        with torch.no_grad():
            z = torch.from_numpy(Z).to(self.device_)
            out = self._decode(z, None if lab is None else lab.to(self.device_))
        return out.cpu().numpy().astype(float) * self.scale_ + self.mean_

    def score(self, X, y=None):
        """The mean ELBO per window (higher is better) at the posterior mean."""
        import torch

        X = self._check_fitted(X, y)
        total, n = 0.0, 0
        with torch.no_grad():
            for rows, lab in self._batches(X, y):
                xb = torch.from_numpy((rows - self.mean_) / self.scale_).to(
                    self.device_
                )
                lb = None if lab is None else torch.from_numpy(lab).to(self.device_)
                total += float(self._loss(xb, lb, sample=False)) * len(rows)
                n += len(rows)
        return -total / max(n, 1)

    def traversal(self, latent, values, base=None, y=None):
        """Windows (len(values), d, d) decoded with ``latent`` (a name of
        ``latent_names_`` or its index) set to each of ``values`` and the
        others at ``base`` (default 0: the prior's centre)."""
        names = self.latent_names_
        k = names.index(latent) if isinstance(latent, str) else int(latent)
        if not 0 <= k < len(names):
            raise ValueError(f"latent must be one of {names}, got {latent!r}")
        values = np.asarray(values, float).reshape(-1)
        Z = np.tile(
            np.zeros(len(names)) if base is None else np.asarray(base, float),
            (len(values), 1),
        )
        Z[:, k] = values
        labels = (
            None if y is None else np.repeat(np.asarray(y).reshape(-1)[:1], len(values))
        )
        return self.inverse_transform(Z, labels).reshape(
            len(values), self.side_, self.side_
        )


def _epochs(n: int, verbose: bool):
    if not verbose:
        return range(int(n))
    from tqdm.auto import trange

    return trange(int(n), desc="RotationInvariantVAE")
