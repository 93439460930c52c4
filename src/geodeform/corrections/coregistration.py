"""Co-registration: remove the shift (and optionally a plane) measured on stable ground."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.corrections._common import NMAD, as_map, as_mask
from geodeform.errors import InvalidInputError, NoDataError

__all__ = ["Coregistration", "DominantOffset", "coregister", "dominant_offset", "select_stable"]


@dataclass(frozen=True)
class Coregistration:
    """Result of :func:`coregister`.

    Attributes
    ----------
    dx, dy
        Corrected maps, float32, same unit and sign convention as the input (``dy`` None if not given).
    model_x, model_y
        ``(3,)`` fitted bias ``a + b * (col - col0) + c * (row - row0)`` as ``(a, b, c)``: ``a`` is the shift
        at the map centre ``(row0, col0)`` in the input unit, ``b`` and ``c`` per column / per row (0 without
        ``plane``). The correction subtracts this model.
    stable
        Stable-ground mask actually used (after robust clipping).
    n_stable
        Number of stable pixels used.
    """

    dx: NDArray[np.float32]
    dy: NDArray[np.float32] | None
    model_x: NDArray[np.float64]
    model_y: NDArray[np.float64] | None
    stable: NDArray[np.bool_]
    n_stable: int


class DominantOffset(NamedTuple):
    """The most frequent offset of a map and the scatter of the nodes around it (:func:`dominant_offset`).

    Attributes
    ----------
    x, y
        Peak of the 2-D histogram of (dx, dy), in the unit of the map.
    sigma
        Robust scatter (1 sigma per component) of the nodes around it, from the 20 % quantile of their
        distances (0.668 sigma for a 2-D normal), in the unit of the map.
    distance
        Distance of every node to the peak (NaN where no data).
    """

    x: float
    y: float
    sigma: float
    distance: NDArray[np.float64]


def dominant_offset(dx: ArrayLike, dy: ArrayLike | None = None, *, bins: int = 64) -> DominantOffset:
    """The dominant (most frequent) offset of a map: on most scenes static terrain, whatever its shift.

    The peak of the 2-D histogram of (dx, dy) between the 1st and 99th percentiles; the scatter around it
    assumes that static terrain holds at least a fifth of the nodes.

    Raises
    ------
    NoDataError
        Fewer than 10 valid nodes.
    """
    x = as_map(dx, "dx")
    y = np.zeros_like(x) if dy is None else as_map(dy, "dy", shape=x.shape)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 10:
        raise NoDataError("dx/dy: fewer than 10 valid nodes; cannot find the dominant offset")
    xs, ys = x[ok], y[ok]
    rx = np.percentile(xs, [1, 99])
    ry = np.percentile(ys, [1, 99])
    ry = ry if ry[1] > ry[0] else ry + np.array([-0.5, 0.5])
    rx = rx if rx[1] > rx[0] else rx + np.array([-0.5, 0.5])
    h, ex, ey = np.histogram2d(xs, ys, bins=bins, range=[rx, ry])
    i, j = np.unravel_index(np.argmax(h), h.shape)
    cx, cy = 0.5 * (ex[i] + ex[i + 1]), 0.5 * (ey[j] + ey[j + 1])
    dist = np.hypot(x - cx, y - cy)
    # 20 % quantile of a 2-D normal's radius is 0.668 sigma
    sigma = float(np.quantile(dist[ok], 0.2)) / 0.668
    return DominantOffset(float(cx), float(cy), sigma, dist)


def select_stable(
    dx: ArrayLike,
    dy: ArrayLike | None = None,
    *,
    max_offset: float | None = None,
    bins: int = 64,
    min_count: int = 0,
) -> NDArray[np.bool_]:
    """Automatic stable-ground selection: nodes close to the dominant (most frequent) offset.

    The dominant offset is the peak of the 2-D histogram of (dx, dy) between the 1st and 99th percentiles
    (:func:`dominant_offset`); on most scenes it is the static terrain, whatever its co-registration shift.
    Nodes within ``max_offset`` of it are selected; by default ``max_offset`` is 3 sigmas, with sigma
    estimated from the 20 % quantile of the distances (assumes static terrain holds at least that share of
    the nodes). On a scene mostly covered by moving ice this picks ice: give a stable-ground mask there.

    Parameters
    ----------
    dx, dy
        2-D offset maps (NaN = no data).
    max_offset
        Distance to the dominant offset, in the unit of the maps.
    bins
        Histogram bins per axis.
    min_count
        Select at least this many nodes (the nearest to the dominant offset) when fewer lie within
        ``max_offset``: small grids, or maps whose nodes have unequal errors (the ``ncc`` matcher's adaptive
        smoothing leaves the nodes it could not combine noisier than the rest), would otherwise keep too few.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True = stable.

    Raises
    ------
    NoDataError
        Fewer than 10 valid nodes.
    """
    try:
        dom = dominant_offset(dx, dy, bins=bins)
    except NoDataError:
        raise NoDataError(
            "dx/dy: fewer than 10 valid nodes; cannot select stable ground automatically"
        ) from None
    dist = dom.distance
    ok = np.isfinite(dist)
    if max_offset is None:
        max_offset = 3.0 * dom.sigma + 1e-12
    if min_count > 0 and int((ok & (dist <= max_offset)).sum()) < min_count:
        max_offset = float(np.sort(dist[ok])[min(min_count, int(ok.sum())) - 1])
    return ok & (dist <= max_offset)


def _fit_bias(
    v: NDArray[np.float64], use: NDArray[np.bool_], plane: bool, clip: float, iterations: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    grid = np.indices(v.shape, dtype=np.float64)
    rows, cols = grid[0], grid[1]
    r0, c0 = (v.shape[0] - 1) / 2, (v.shape[1] - 1) / 2
    keep = use & np.isfinite(v)
    coef = np.zeros(3)
    for _ in range(iterations):
        vals = v[keep]
        if plane:
            A = np.column_stack([np.ones(vals.size), cols[keep] - c0, rows[keep] - r0])
            coef = np.asarray(np.linalg.lstsq(A, vals, rcond=None)[0], dtype=np.float64)
        else:
            coef = np.array([np.median(vals), 0.0, 0.0])
        res = v - (coef[0] + coef[1] * (cols - c0) + coef[2] * (rows - r0))
        spread = NMAD * np.median(np.abs(res[keep]))
        new = keep & (np.abs(res) <= clip * max(spread, 1e-12))
        if new.sum() < (3 if plane else 1) or np.array_equal(new, keep):
            break
        keep = new
    return coef, keep


def coregister(
    dx: ArrayLike,
    dy: ArrayLike | None = None,
    *,
    stable: ArrayLike | None = None,
    plane: bool = False,
    clip: float = 3.0,
    iterations: int = 5,
    min_points: int = 20,
) -> Coregistration:
    """Remove the co-registration shift (and optionally a plane) measured on stable ground.

    The bias of each component is the median (``plane=False``) or the least-squares plane
    ``a + b * col + c * row`` (``plane=True``) of the stable nodes, with nodes farther than ``clip`` robust
    sigmas from the model dropped iteratively; it is subtracted from the whole map.

    Parameters
    ----------
    dx, dy
        2-D offsets or velocities (NaN = no data); any unit, any sign convention (kept).
    stable
        Boolean mask of static terrain (e.g. off-glacier outlines rasterised on the grid). None selects it
        automatically with :func:`select_stable`.
    plane
        Also remove a tilt (orbit / attitude residuals, scale errors).
    clip, iterations
        Robust clipping of the stable nodes.
    min_points
        Fewest stable valid nodes accepted (3 per fitted parameter at least).

    Returns
    -------
    Coregistration

    Raises
    ------
    InvalidInputError
        Shapes disagree or options out of range.
    NoDataError
        Fewer than ``min_points`` stable valid nodes.
    """
    if clip <= 0 or iterations < 1:
        raise InvalidInputError("clip and iterations must be positive")
    x = as_map(dx, "dx")
    y = None if dy is None else as_map(dy, "dy", shape=x.shape)
    mask = as_mask(stable, "stable", x.shape)
    if mask is None:
        mask = select_stable(x, y, min_count=min_points)
    use = mask & np.isfinite(x) & (np.isfinite(y) if y is not None else True)
    if use.sum() < max(min_points, 9 if plane else 3):
        raise NoDataError(
            f"stable: only {int(use.sum())} stable nodes with data (need {min_points}); enlarge the "
            "stable-ground "
            "mask, or pass stable=None for automatic selection"
        )
    cx, kx = _fit_bias(x, use, plane, clip, iterations)
    rows, cols = np.indices(x.shape, dtype=np.float64)
    r0, c0 = (x.shape[0] - 1) / 2, (x.shape[1] - 1) / 2

    def model(c: NDArray[np.float64]) -> NDArray[np.float64]:
        return c[0] + c[1] * (cols - c0) + c[2] * (rows - r0)

    out_y = None
    cy = None
    keep = kx
    if y is not None:
        cy, ky = _fit_bias(y, use, plane, clip, iterations)
        keep = kx & ky
        out_y = (y - model(cy)).astype(np.float32)
    return Coregistration(
        dx=(x - model(cx)).astype(np.float32),
        dy=out_y,
        model_x=cx,
        model_y=cy,
        stable=keep,
        n_stable=int(keep.sum()),
    )
