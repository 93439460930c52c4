"""Where a series' moving ground meets still ground, seen in the pairs' unsmoothed offsets.

The ``ncc`` matcher smooths each pair's field with windows of up to 7 × 7 nodes. Next to a glacier's
margin those windows borrow the ice's motion: a few hundredths of a pixel per pair on the still side, below
one pair's noise, so no per-pair test sees it, but shared by every pair in proportion to its span, so the
velocity there is biased by several times its 1-sigma (``docs/benchmarks.md``, "The smoothing's borrowing at
the ice margin"). At the velocity level the margin is plain: :func:`moving_nodes` inverts each node's own
chips' offsets (``OffsetField.dx_unsmoothed``, ...; the products' ``dx_unsmoothed``, ...) and marks the
nodes whose speed exceeds ``k`` times its noise-only 1-sigma; :func:`margin_nodes` gives the still nodes
within a few nodes of them, which then take their unsmoothed values and errors instead of the smoothed ones
(the windows that reach across the margin are the ones that borrow).
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.timeseries._invert import TimeSeriesWarning, invert
from geodeform.timeseries.uncertainty import ErrorModel, add_node_errors

__all__ = ["margin_nodes", "moving_nodes"]

_NOISE_ONLY = ErrorModel(0.0, 0.0)


def moving_nodes(
    dates: ArrayLike,
    pairs: ArrayLike,
    dx: ArrayLike,
    dy: ArrayLike,
    error: ArrayLike,
    *,
    k: float = 4.0,
) -> NDArray[np.bool_]:
    """Nodes whose mean velocity in a series of unsmoothed offsets exceeds ``k`` times its noise 1-sigma.

    The offsets are inverted (:func:`geodeform.timeseries.invert`, robust, without date flags) with weights
    ``1 / (error / sqrt 2)²``; the velocity's 1-sigma is the inversion's plus the per-date image noise
    (:func:`add_node_errors` without displacement/strain term). A node moves when
    ``|v| > k · sqrt(σ_vx² + σ_vy²)``.

    Parameters
    ----------
    dates
        ``(ndates,)`` increasing dates.
    pairs
        ``(npairs, 2)`` indices into ``dates``.
    dx, dy
        ``(npairs, ny, nx)`` each node's own chip's offsets (before any smoothing), in any unit (px, m).
    error
        ``(npairs, ny, nx)`` their predicted 1-sigma vector error, same unit.
    k
        Detection threshold, in noise 1-sigma (default 4: calibrated on ``benchmarks/bench_calibration.py``'s
        series, where the still side of a margin sits 2-3 nodes wide).

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` boolean, True where the ground moves (False where unknown).
    """
    x, y, e = (np.asarray(a, np.float64) for a in (dx, dy, error))
    if x.ndim != 3 or x.shape != y.shape or x.shape != e.shape:
        raise InvalidInputError(
            f"dx, dy and error must be (npairs, ny, nx) of one shape, got {x.shape}, {y.shape}, {e.shape}"
        )
    if not k > 0:
        raise InvalidInputError(f"k must be > 0, got {k}")
    noise = np.where(np.isfinite(x) & np.isfinite(y) & (e > 0), e / np.sqrt(2.0), np.nan)
    weights = np.where(np.isfinite(noise), 1.0 / np.where(np.isfinite(noise), noise, 1.0) ** 2, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)  # nodes without pairs: not moving
        # per-pair outliers dropped, but no date flags: a flagged first or last date leaves no velocity,
        # and on noise alone the flags fire at a few nodes in a thousand
        ts = invert(dates, pairs, x, y, weights=weights, flag_dates=False, return_residuals=False)
    ts = add_node_errors(ts, pairs, noise, step=1.0, model=_NOISE_ONLY)
    vx, vy = (np.asarray(v, np.float64) for v in (ts.velocity_x, ts.velocity_y))
    sx, sy = (np.asarray(v, np.float64) for v in (ts.sigma_velocity_x, ts.sigma_velocity_y))
    with np.errstate(invalid="ignore"):
        return np.asarray(np.hypot(vx, vy) > k * np.hypot(sx, sy), bool)


def margin_nodes(moving: ArrayLike, *, nodes: float = 3.5) -> NDArray[np.bool_]:
    """Still nodes within ``nodes`` node spacings (Euclidean) of a moving node.

    Parameters
    ----------
    moving
        ``(ny, nx)`` boolean, e.g. :func:`moving_nodes`.
    nodes
        Reach, in nodes (default 3.5: the smoothing's largest window radius, 3, and a half; 0: none).

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` boolean: the still nodes next to moving ground, which should take their unsmoothed
        values and errors (none when nothing or everything moves).
    """
    m = np.asarray(moving, bool)
    if m.ndim != 2:
        raise InvalidInputError(f"moving must be a (ny, nx) mask, got shape {m.shape}")
    if not nodes >= 0:
        raise InvalidInputError(f"nodes must be >= 0, got {nodes}")
    if not m.any() or m.all() or nodes == 0:
        return np.zeros(m.shape, bool)
    return np.asarray(~m & (ndimage.distance_transform_edt(~m) <= nodes), bool)
