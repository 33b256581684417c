"""Non-negative matrix factorisation by HALS that fits numpy or dask arrays.

X (samples, features) >= 0 is factorised as W H, W (samples, k) the loadings
and H (k, features) the components, minimising the squared error. Each epoch
is one pass over the rows, chunk by chunk: a chunk's loadings get a few
hierarchical alternating least squares (HALS) sweeps against H, and the
chunk's W^T X and W^T W are summed; H then gets its HALS sweeps from those
sums. A dask array is read one chunk at a time, every epoch, so memory stays
the loadings plus a chunk, and the result is the same as for the array in
memory: unlike a one-pass mini-batch NMF, it converges like the batch one.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from stemunmix.core import checks
from stemunmix.core.engine import release_memory
from stemunmix.learn._subsample import check_2d, is_dask, subsample

_EPS = 1e-12


class NMF(TransformerMixin, BaseEstimator):
    """Non-negative matrix factorisation (HALS), numpy or dask in.

    Parameters
    ----------
    n_components : int
        Number of components k.
    max_iter : int
        Most epochs (passes over the data).
    tol : float
        Stop when an epoch lowers the relative squared error by less than this.
    inner : int
        HALS sweeps of the loadings of a chunk per epoch (the components get
        five times as many: they need no pass over the data). Many sweeps per
        pass is what makes an epoch count (each pass over the data is the
        expensive part).
    max_memory : float
        Bytes: a dask array whose float32 copy fits is read into memory once
        and fitted there (the same result, no pass over the lazy stack per
        epoch); a larger one is read chunk by chunk every epoch.
    presample : int
        For such a larger one: the components are first fitted, to
        convergence, on this many seeded rows held in memory (at most what
        fits in ``max_memory``), and the epochs over the whole stack start
        from them, so a few passes over it are enough. 0: start the passes
        from the initialisation, exactly as for the array in memory.
    init_samples : int
        Rows of the seeded subsample that the components start from (the
        leading singular vectors, made non-negative as NNDSVDa does).
    random_state : int, optional
        Seeds the subsample.

    Attributes
    ----------
    components_ : ndarray (k, features)
    loadings_ : ndarray (samples, k), the loadings of the data fitted
    reconstruction_err_ : float, the Frobenius norm of X - W H
    n_iter_ : int, epochs run
    """

    def __init__(
        self,
        n_components: int = 2,
        max_iter: int = 200,
        tol: float = 1e-4,
        inner: int = 10,
        init_samples: int = 20_000,
        max_memory: float = 1e9,
        presample: int = 100_000,
        random_state=None,
    ):
        self.n_components = n_components
        self.max_memory = max_memory
        self.presample = presample
        self.max_iter = max_iter
        self.tol = tol
        self.inner = inner
        self.init_samples = init_samples
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def fit(self, X, y=None):

        X = check_2d(X)
        k = checks.count("n_components", self.n_components, 1, min(X.shape))
        checks.count("max_iter", self.max_iter)
        checks.count("inner", self.inner)
        tol = checks.real("tol", self.tol, 0)
        budget = checks.real("max_memory", self.max_memory, 0)
        presample = checks.count("presample", self.presample, 0)
        H = None
        if is_dask(X):  # the steps before leave freed memory behind: return it
            release_memory()
        if is_dask(X) and 4 * X.shape[0] * X.shape[1] <= budget:
            # Small enough: read once (float32), chunk by chunk into one array
            # (a single compute holds the chunks and their concatenation: twice
            # the stack), then every epoch is in memory.
            X = _read_rows(X)
        elif is_dask(X):
            rows = min(presample, int(budget // (4 * X.shape[1])))
            if 0 < rows < X.shape[0] and rows >= 10 * k:
                from sklearn.base import clone

                part = np.asarray(subsample(X, rows, self.random_state), np.float32)
                first = clone(self).set_params(presample=0).fit(part)
                H = first.components_.astype(np.float64)
        chunks = list(_chunks(X))
        if H is None:
            H = self._init(X, k)
        W = np.zeros((X.shape[0], k), np.float64)
        norm = 0.0
        for lo, hi, get in chunks:
            x = get()
            _check_nonnegative(x)
            norm += float(np.einsum("ij,ij->", x, x, dtype=np.float64))
            W[lo:hi] = _project(x, H, self.inner * 4)
        last = np.inf
        for it in range(1, self.max_iter + 1):
            wtx = np.zeros_like(H)
            wtw = np.zeros((k, k))
            h32 = np.ascontiguousarray(H.T, np.float32)  # (features, k)
            hht = H @ H.T
            for lo, hi, get in chunks:
                x = get()
                # float32 products, float64 sums: a chunk of rows is read
                # twice while it is in cache (the shapes BLAS does fastest).
                w = _hals_rows((x @ h32).astype(np.float64), hht, W[lo:hi], self.inner)
                W[lo:hi] = w
                wtx += (x.T @ w.astype(np.float32)).T
                wtw += w.T @ w
            H = _hals_rows(wtx.T, wtw, H.T, 5 * self.inner).T  # free: no data read
            # ||X - WH||^2 from the sums: no second pass over the data.
            err = max(norm - 2 * np.sum(wtx * H) + np.sum(wtw * (H @ H.T)), 0.0)
            rel = err / max(norm, _EPS)
            if last - rel < tol * max(last, _EPS) and it > 1:
                break
            last = rel
        self.components_ = H.astype(np.float32)
        self.loadings_ = W
        self.reconstruction_err_ = float(np.sqrt(err))
        self.n_iter_ = it
        self.n_features_in_ = X.shape[1]
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).loadings_

    def transform(self, X):
        """Loadings of X (numpy in: numpy out; dask in: dask out, by chunks)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "components_")
        X = check_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but NMF is expecting "
                f"{self.n_features_in_} features as input"
            )
        H = self.components_.astype(np.float64)
        sweeps = 8 * self.inner
        if is_dask(X):
            return X.map_blocks(
                lambda x: _project(np.asarray(x, np.float32), H, sweeps),
                chunks=(X.chunks[0], (H.shape[0],)),
                dtype=np.float64,
            )
        X = np.asarray(X, np.float32)
        _check_nonnegative(X)
        return _project(X, H, sweeps)

    def inverse_transform(self, W):
        return np.asarray(W) @ self.components_

    def _init(self, X, k):
        """NNDSVDa on a seeded subsample: the leading singular vectors with
        their negative parts set to the mean (no zero rows to get stuck)."""
        from sklearn.utils.extmath import randomized_svd

        x = np.asarray(subsample(X, self.init_samples, self.random_state), np.float64)
        _check_nonnegative(x)
        # The k leading singular vectors only (randomized: a few passes of
        # k + 10 vectors, not the full SVD of the subsample).
        _, s, vt = randomized_svd(
            x, k, n_oversamples=10, n_iter=4, random_state=self.random_state or 0
        )
        H = np.empty((k, x.shape[1]))
        for j in range(k):
            v = vt[j]
            pos, neg = np.maximum(v, 0), np.maximum(-v, 0)
            v = pos if np.linalg.norm(pos) >= np.linalg.norm(neg) else neg
            H[j] = np.sqrt(s[j]) * v / max(np.linalg.norm(v), _EPS)
        mean = H[H > 0].mean() if (H > 0).any() else 1.0
        H[H <= 0] = mean / 100
        return H


def _chunks(X, step: int = 2048):
    """(lo, hi, get) per row chunk: get() returns the rows as float32 numpy
    (a dask chunk is computed then; numpy rows are cut ``step`` at a time,
    about what stays in cache between the two products of an epoch)."""
    if is_dask(X):
        X = X.rechunk({1: -1})
        bounds = np.cumsum((0,) + X.chunks[0])
        blocks = X.to_delayed().ravel()
        for lo, hi, block in zip(bounds[:-1], bounds[1:], blocks, strict=True):
            get = lambda b=block: np.asarray(b.compute(), np.float32)  # noqa: E731
            yield int(lo), int(hi), get
        return
    X = np.asarray(X, np.float32)
    for lo in range(0, X.shape[0], step):
        hi = min(X.shape[0], lo + step)
        yield lo, hi, (lambda lo=lo, hi=hi: X[lo:hi])


def _read_rows(X) -> np.ndarray:
    """A dask (rows, features) array as float32 numpy, filled chunk by chunk."""
    out = np.empty(X.shape, np.float32)
    for lo, hi, get in _chunks(X):
        out[lo:hi] = get()
    return out


def _hals_rows(xht, hht, W, sweeps):
    """HALS sweeps of the rows W (n, k) of min ||X - W H|| given X H^T and
    H H^T: each column of W in turn is its exact non-negative update."""
    W = np.array(W, np.float64)
    k = W.shape[1]
    for _ in range(sweeps):
        for j in range(k):
            num = xht[:, j] - W @ hht[:, j] + W[:, j] * hht[j, j]
            W[:, j] = np.maximum(num / max(hht[j, j], _EPS), _EPS)
    return W


def _project(x, H, sweeps):
    """Non-negative loadings of rows ``x`` on fixed components ``H``."""
    hht = H @ H.T
    # In float64: a float32 product's rounding depends on the rows around a
    # row (BLAS blocking), and each row's loadings must not.
    xht = np.asarray(x, np.float64) @ H.T
    W = np.maximum(np.linalg.lstsq(hht, xht.T, rcond=None)[0].T, _EPS)
    return _hals_rows(xht, hht, W, sweeps)


def _check_nonnegative(x):
    if np.min(x) < 0:
        raise ValueError(
            f"Negative values in data passed to NMF (min {np.min(x):.3g}): NMF "
            "needs non-negative data; subtract the minimum first, or use SVD"
        )
