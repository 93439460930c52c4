"""Error estimate of a map from stable ground (GLAFT-like metrics, Zheng et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.corrections._common import as_map, as_mask, nmad
from geodeform.errors import InvalidInputError, NoDataError

__all__ = ["StableGroundMetrics", "stable_ground_metrics"]


@dataclass(frozen=True)
class StableGroundMetrics:
    """Spread of a displacement/velocity map on stable ground (all in the input unit).

    Attributes
    ----------
    n
        Stable nodes with data.
    peak_x, peak_y
        Peak of the kernel density of (x, y): the residual bias of static terrain.
    delta_x, delta_y
        GLAFT metric 1: half-widths of the box holding the density above ``max / exp(thres_sigma^2 / 2)``
        (for a normal distribution and ``thres_sigma = 2``, about 2 sigma).
    median_x, median_y, nmad_x, nmad_y
        Median and normalised median absolute deviation.
    rmse
        Root mean square of the vector (sqrt(x^2 + y^2)), i.e. the error if static terrain should not move.
    outlier_fraction
        Share of stable nodes outside the GLAFT box ("incorrect matches").
    """

    n: int
    peak_x: float
    peak_y: float
    delta_x: float
    delta_y: float
    median_x: float
    median_y: float
    nmad_x: float
    nmad_y: float
    rmse: float
    outlier_fraction: float


def _epanechnikov_density(
    xy: NDArray[np.float64], gx: NDArray[np.float64], gy: NDArray[np.float64], h: float
):
    """Unnormalised 2-D radial Epanechnikov density of the samples ``xy`` (2, n) on the mesh gx x gy.

    Returns an array (len(gy), len(gx)). Only samples within ``h`` of a mesh column are visited.
    """
    order = np.argsort(xy[0])
    xs, ys = xy[0][order], xy[1][order]
    out = np.zeros((gy.size, gx.size))
    for k, x0 in enumerate(gx):
        a, b = np.searchsorted(xs, [x0 - h, x0 + h])
        if a == b:
            continue
        dx2 = (xs[a:b] - x0) ** 2
        r2 = (dx2[None, :] + (ys[a:b][None, :] - gy[:, None]) ** 2) / (h * h)
        out[:, k] = np.where(r2 < 1.0, 1.0 - r2, 0.0).sum(axis=1)
    return out


def _threshold_box(
    xy: NDArray[np.float64], cx: float, cy: float, half: float, n: int, h: float, level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Lower/upper corners of the above-threshold mesh nodes, and the peak node."""
    gx = np.linspace(cx - half, cx + half, n)
    gy = np.linspace(cy - half, cy + half, n)
    z = _epanechnikov_density(xy, gx, gy, h)
    iy, ix = np.nonzero(z >= z.max() / level)
    py, px = np.unravel_index(int(np.argmax(z)), z.shape)
    lo = np.array([gx[ix].min(), gy[iy].min()])
    hi = np.array([gx[ix].max(), gy[iy].max()])
    return lo, hi, np.array([gx[px], gy[py]])


def stable_ground_metrics(
    x: ArrayLike,
    y: ArrayLike,
    stable: ArrayLike | None = None,
    *,
    thres_sigma: float = 2.0,
    gridsize: int = 60,
    max_samples: int = 50_000,
    seed: int = 0,
) -> StableGroundMetrics:
    """GLAFT-like error metrics of a map on stable ground.

    The joint density of (x, y) on stable ground is estimated with a radial Epanechnikov kernel (bandwidth
    ``2.1991 * s * n^(-1/6)``, ``s = (var_x var_y)^(1/4)``) on a mesh centred on the median; the box of
    the mesh nodes whose density exceeds ``max / exp(thres_sigma^2 / 2)`` gives ``delta_x/y`` (half-widths)
    after one refinement of the mesh, and its peak gives the residual bias.

    Parameters
    ----------
    x, y
        2-D components (offsets or velocities; NaN = no data).
    stable
        Boolean mask of static terrain; None uses all nodes.
    thres_sigma
        Threshold in normal-distribution sigmas.
    gridsize
        Mesh nodes per axis.
    max_samples
        Random subsample above this many nodes (the density is smooth; speeds up large maps).
    seed
        Subsampling seed.

    Raises
    ------
    NoDataError
        Fewer than 10 stable nodes with data.
    """
    if thres_sigma <= 0 or gridsize < 5:
        raise InvalidInputError("thres_sigma must be > 0 and gridsize >= 5")
    vx = as_map(x, "x")
    vy = as_map(y, "y", shape=vx.shape)
    mask = as_mask(stable, "stable", vx.shape)
    ok = np.isfinite(vx) & np.isfinite(vy) & (True if mask is None else mask)
    n = int(ok.sum())
    if n < 10:
        raise NoDataError(f"stable: only {n} stable nodes with data; need at least 10 to estimate errors")
    xy = np.vstack([vx[ok], vy[ok]])
    full = xy
    if n > max_samples:
        xy = xy[:, np.random.default_rng(seed).choice(n, max_samples, replace=False)]
    cov = np.cov(xy)
    s = float((cov[0, 0] * cov[1, 1]) ** 0.25)
    if s <= 0:
        s = 1e-12
    h = 2.1991 * s * xy.shape[1] ** (-1.0 / 6.0)
    mx, my = float(np.median(xy[0])), float(np.median(xy[1]))
    level = np.exp(thres_sigma**2 / 2.0)
    lo, hi, _ = _threshold_box(xy, mx, my, (thres_sigma + 1.0) * s, gridsize, h, level)
    half = float((hi[0] - lo[0]) + (hi[1] - lo[1])) / 2.0
    lo, hi, peak = _threshold_box(xy, mx, my, max(half, 1e-12), gridsize, h, level)
    outside = (full[0] < lo[0]) | (full[0] > hi[0]) | (full[1] < lo[1]) | (full[1] > hi[1])
    return StableGroundMetrics(
        n=n,
        peak_x=float(peak[0]),
        peak_y=float(peak[1]),
        delta_x=float(hi[0] - lo[0]) / 2.0,
        delta_y=float(hi[1] - lo[1]) / 2.0,
        median_x=float(np.median(full[0])),
        median_y=float(np.median(full[1])),
        nmad_x=nmad(full[0]),
        nmad_y=nmad(full[1]),
        rmse=float(np.sqrt(np.mean(full[0] ** 2 + full[1] ** 2))),
        outlier_fraction=float(outside.mean()),
    )
