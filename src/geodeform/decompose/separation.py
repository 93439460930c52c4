"""Source separation of displacement time series (ICA), e.g. seasonal vs trend signals of a landslide.

The stack ``X`` (ndates x npixels) is modelled as ``X = mean + A @ S``: ``A`` holds one time function per
component (ndates x k) and ``S`` one map per component (k x npixels).

* ``mode="spatial"`` (default, the common choice for InSAR/offset stacks): the maps ``S`` are statistically
  independent over the pixels; robust because there are many pixels.
* ``mode="temporal"``: the time functions are independent over the dates; needs many dates.

FastICA (Hyvärinen 1999) with symmetric decorrelation and the log-cosh contrast, implemented with numpy.
Components are returned sorted by the variance they explain; ICA cannot fix the sign or scale of a
component, so each map is scaled to unit standard deviation and its sign chosen so that its largest
absolute value is positive (the time function carries the amplitude, in the input unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.errors import InvalidInputError, NoDataError

__all__ = ["ICAResult", "ica"]


@dataclass(frozen=True)
class ICAResult:
    """Result of :func:`ica`.

    Attributes
    ----------
    time_functions
        ``(ndates, k)`` amplitude of each component at each date, input unit per unit of map.
    maps
        ``(k, *spatial)`` unit-variance maps; NaN at pixels with a missing date.
    mean
        ``(ndates,)`` mean over the pixels of each date (``mode="spatial"``) or ``(*spatial)`` mean over the
        dates of each pixel (``mode="temporal"``), removed before the separation.
    explained_variance
        ``(k,)`` share of the total variance explained by each component.
    converged
        Whether FastICA met its tolerance.
    mode
        ``"spatial"`` or ``"temporal"``.
    """

    time_functions: NDArray[np.float64]
    maps: NDArray[np.float64]
    mean: NDArray[np.float64]
    explained_variance: NDArray[np.float64]
    converged: bool
    mode: str

    def reconstruct(self) -> NDArray[np.float64]:
        """``(ndates, *spatial)`` stack rebuilt from the components (NaN where maps are NaN)."""
        flat = self.maps.reshape(self.maps.shape[0], -1)
        rec = self.time_functions @ flat
        if self.mode == "spatial":
            rec = rec + self.mean[:, None]
        else:
            rec = rec + self.mean.reshape(1, -1)
        return rec.reshape((rec.shape[0], *self.maps.shape[1:]))


def _sym_decorrelate(W: NDArray[np.float64]) -> NDArray[np.float64]:
    s, u = np.linalg.eigh(W @ W.T)
    s = np.clip(s, np.finfo(float).tiny, None)
    return (u * (1.0 / np.sqrt(s))) @ u.T @ W


def _fastica(
    Z: NDArray[np.float64], k: int, max_iter: int, tol: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], bool]:
    """Unmixing matrix W (k x k) for whitened data Z (k x nsamples)."""
    W = _sym_decorrelate(rng.normal(size=(k, k)))
    n = Z.shape[1]
    for _ in range(max_iter):
        wx = W @ Z
        g = np.tanh(wx)
        g_prime = 1.0 - g**2
        W_new = _sym_decorrelate(g @ Z.T / n - g_prime.mean(axis=1)[:, None] * W)
        lim = float(np.max(np.abs(np.abs(np.einsum("ij,ij->i", W_new, W)) - 1.0)))
        W = W_new
        if lim < tol:
            return W, True
    return W, False


def ica(
    series: ArrayLike,
    n_components: int,
    *,
    mode: Literal["spatial", "temporal"] = "spatial",
    max_iter: int = 500,
    tol: float = 1e-6,
    seed: int = 0,
) -> ICAResult:
    """Independent component analysis of a displacement time series.

    Parameters
    ----------
    series
        ``(ndates, *spatial)`` cumulative displacement (e.g. ``TimeSeriesResult.dx``), any unit; pixels
        with a NaN at any date are left out (NaN in the maps).
    n_components
        Number of components k (after PCA reduction); at most ``min(ndates, npixels) - 1``.
    mode
        ``"spatial"`` (independent maps) or ``"temporal"`` (independent time functions).
    max_iter, tol
        FastICA iterations and convergence tolerance (on ``1 - |w_new . w_old|``).
    seed
        Random initialisation.

    Returns
    -------
    ICAResult

    Raises
    ------
    InvalidInputError
        Bad shape, ``n_components`` or ``mode``.
    NoDataError
        Fewer than ``n_components + 1`` complete pixels.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim < 2:
        raise InvalidInputError(f"series: need (ndates, *spatial), got shape {x.shape}")
    if mode not in ("spatial", "temporal"):
        raise InvalidInputError(f"mode: must be 'spatial' or 'temporal', got {mode!r}")
    nd = x.shape[0]
    flat = x.reshape(nd, -1)
    ok = np.isfinite(flat).all(axis=0)
    X = flat[:, ok]
    k = int(n_components)
    if not 1 <= k < min(nd, X.shape[1]):
        raise InvalidInputError(
            f"n_components: need 1 <= k < min(ndates={nd}, complete pixels={X.shape[1]}), got {n_components}"
        )
    if X.shape[1] <= k:
        raise NoDataError("series: too few pixels without NaN; fill or crop the series first")
    # Samples run along axis 1: pixels for spatial ICA, dates for temporal ICA.
    data = X if mode == "spatial" else X.T
    mean = data.mean(axis=1)
    Xc = data - mean[:, None]
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    n = Xc.shape[1]
    Z = Vt[:k] * np.sqrt(n)  # whitened: unit variance, uncorrelated
    W, converged = _fastica(Z, k, max_iter, tol, np.random.default_rng(seed))
    S = W @ Z  # independent signals (unit variance)
    A = (U[:, :k] * s[:k]) @ W.T / np.sqrt(n)  # data ≈ A @ S
    total = float((Xc**2).sum())
    explained = np.array([float(((A[:, [c]] @ S[[c]]) ** 2).sum()) / total for c in range(k)])
    order = np.argsort(-explained)
    A, S, explained = A[:, order], S[order], explained[order]
    for c in range(k):
        sign = np.sign(S[c][np.argmax(np.abs(S[c]))]) or 1.0
        S[c] *= sign
        A[:, c] *= sign
    if mode == "spatial":
        maps_ok, time_functions, mean_out = S, A, mean
        full_mean: NDArray[np.float64] = mean_out
    else:
        maps_ok, time_functions = A.T, S.T
        full_mean = np.full(flat.shape[1], np.nan)
        full_mean[ok] = mean
        full_mean = full_mean.reshape(x.shape[1:])
        # Keep the convention "time functions carry the amplitude": move the scale from maps to functions.
        scale = maps_ok.std(axis=1)
        scale[scale == 0] = 1.0
        maps_ok = maps_ok / scale[:, None]
        time_functions = time_functions * scale[None, :]
    maps = np.full((k, flat.shape[1]), np.nan)
    maps[:, ok] = maps_ok
    return ICAResult(
        time_functions=time_functions,
        maps=maps.reshape((k, *x.shape[1:])),
        mean=full_mean,
        explained_variance=explained,
        converged=converged,
        mode=mode,
    )
