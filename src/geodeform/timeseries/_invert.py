"""Driver of the time-series inversion: validation, chunking, robust iterations, result object."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.pairs import Gap, as_dates, check_pairs, find_gaps, network_components
from geodeform.timeseries._kernels import STATUS_EMPTY, STATUS_OK, flag_outliers, solve_groups

__all__ = ["DAYS_PER_YEAR", "TimeSeriesResult", "TimeSeriesWarning", "invert"]

_AUTO_RESIDUAL_BYTES = 2**30  # residual maps kept by default up to this size

Progress = Callable[[int, int], Any]


class TimeSeriesWarning(UserWarning):
    """Some pixels or dates could not be constrained, or a gap was bridged by the smoothing."""


@dataclass(frozen=True)
class TimeSeriesResult:
    """Displacement time series from an inverted pair network.

    Sign convention: the same as the input offsets; ``dx[k]`` is the displacement from ``dates[0]`` to
    ``dates[k]`` (for pixel offsets: +dx towards increasing columns, +dy towards increasing rows).

    Attributes
    ----------
    dates
        ``(ndates,)`` ``datetime64[D]``.
    pairs
        ``(npairs, 2)`` date indices (reference, secondary) as given.
    dx, dy
        ``(ndates, *spatial)`` float32 cumulative displacement since ``dates[0]`` in the input unit; NaN where
        unconstrained. ``dy`` is None when no ``dy`` was given.
    sigma_dx, sigma_dy
        ``(ndates, *spatial)`` float32 1-sigma uncertainty of ``dx``/``dy`` (0 at ``dates[0]``), from the
        residuals of the pairs used.
    residual_dx, residual_dy
        ``(npairs, *spatial)`` float32 observation minus fitted model for every pair with data (also for
        pairs rejected as outliers); NaN elsewhere. None when ``return_residuals=False``.
    outlier
        ``(npairs, *spatial)`` bool, pairs rejected by the robust fit.
    n_pairs_used
        ``(*spatial)`` int32, pairs used by the final fit.
    velocity_x, velocity_y
        ``(*spatial)`` float32 mean rate over the constrained span, input unit per year (365.25 days).
    sigma_velocity_x, sigma_velocity_y
        ``(*spatial)`` float32 1-sigma uncertainty of the mean rates.
    gaps
        Intervals that no pair spans, bridged by the smoothing.
    n_partial
        Pixels with at least one unconstrained (NaN) date.
    n_empty
        Pixels where nothing could be estimated.
    """

    dates: NDArray[np.datetime64]
    pairs: NDArray[np.int64]
    dx: NDArray[np.float32]
    dy: NDArray[np.float32] | None
    sigma_dx: NDArray[np.float32]
    sigma_dy: NDArray[np.float32] | None
    residual_dx: NDArray[np.float32] | None
    residual_dy: NDArray[np.float32] | None
    outlier: NDArray[np.bool_]
    n_pairs_used: NDArray[np.int32]
    velocity_x: NDArray[np.float32]
    velocity_y: NDArray[np.float32] | None
    sigma_velocity_x: NDArray[np.float32]
    sigma_velocity_y: NDArray[np.float32] | None
    gaps: tuple[Gap, ...]
    n_partial: int
    n_empty: int

    @property
    def outlier_pair_fraction(self) -> NDArray[np.float64]:
        """``(npairs,)`` fraction of the pixels with data in which each pair was rejected."""
        flat = self.outlier.reshape(self.outlier.shape[0], -1)
        return flat.mean(axis=1)


@dataclass
class _Setup:
    dates: NDArray[np.datetime64]
    pairs: NDArray[np.int64]
    t: NDArray[np.float64]
    comps: list[NDArray[Any]]
    spatial: tuple[int, ...]
    weights: NDArray[np.float64]
    gaps: tuple[Gap, ...]


def _check_inputs(
    dates: Any,
    pairs: ArrayLike,
    dx: ArrayLike,
    dy: ArrayLike | None,
    weights: ArrayLike | str | None,
    lam: float,
    max_gap_days: float,
) -> _Setup:
    d = as_dates(dates)
    p = check_pairs(pairs, d.size)
    comps = []
    for name, arr in (("dx", dx), ("dy", dy)):
        if arr is None:
            continue
        a = np.asarray(arr)
        if a.ndim < 1 or a.shape[0] != p.shape[0]:
            raise InvalidInputError(
                f"{name}: first axis must be the {p.shape[0]} pairs, got shape {a.shape}; "
                "stack one map per pair"
            )
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        comps.append(a)
    if len(comps) == 2 and comps[0].shape != comps[1].shape:
        raise InvalidInputError(
            f"dy: shape {comps[1].shape} differs from dx {comps[0].shape}; they must agree"
        )
    spatial = comps[0].shape[1:]
    if comps[0].size == 0:
        raise InvalidInputError("dx: is empty; pass one value (or map) per pair")
    if all(not np.isfinite(c).any() for c in comps):
        raise NoDataError("dx/dy: every value is NaN or infinite; nothing to invert")
    t = (d - d[0]).astype(np.float64)
    dt = np.abs(t[p[:, 1]] - t[p[:, 0]])
    w = _pair_weights(weights, dt, comps[0].shape)
    _check_network(d, p, t, lam, max_gap_days)
    return _Setup(d, p, t, comps, spatial, w, find_gaps(d, p))


def _pair_weights(weights: ArrayLike | str | None, dt: NDArray[np.float64], shape: tuple[int, ...]) -> Any:
    if weights is None:
        return np.ones(dt.size)
    if isinstance(weights, str):
        if weights != "dt":
            raise InvalidInputError(f"weights: the only named scheme is 'dt', got {weights!r}")
        return 1.0 / (1.0 + dt / DAYS_PER_YEAR)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (dt.size,) and w.shape != shape:
        raise InvalidInputError(f"weights: need shape ({dt.size},) or {shape} (like dx), got {w.shape}")
    good = np.isfinite(w)
    if (w[good] < 0).any():
        raise InvalidInputError("weights: must be >= 0 (inverse variances); 0 drops a pair")
    pos = w[good & (w > 0)]
    if pos.size == 0:
        raise InvalidInputError("weights: all zero or NaN; give positive weights to the pairs to use")
    # Normalised so that `smoothing` keeps its meaning (relative to a typical pair) whatever the weight unit.
    return np.where(good, w, 0.0) / np.median(pos)


def _check_network(
    d: NDArray[np.datetime64], p: NDArray[np.int64], t: NDArray[np.float64], lam: float, max_gap_days: float
) -> None:
    edges = p
    if lam > 0:
        k = np.flatnonzero(np.diff(t) <= max_gap_days)
        edges = np.concatenate([p, np.stack([k, k + 1], axis=1)])
    comps = network_components(d.size, edges)
    if len(comps) == 1:
        return
    gaps = [g for g in find_gaps(d, p) if not (lam > 0 and g.days <= max_gap_days)]
    where = (
        "; ".join(f"{g.start}..{g.end} ({g.days:.0f} d)" for g in gaps[:5])
        if gaps
        else ", ".join(
            f"{{{', '.join(str(d[i]) for i in c[:4])}{', ...' if c.size > 4 else ''}}}" for c in comps[:4]
        )
    )
    fix = (
        "add pairs that span it, or pass smoothing=<weight> with max_gap_days >= the gap"
        if gaps
        else "add pairs linking these groups of dates, or pass smoothing=<weight> to tie them together"
    )
    raise InvalidInputError(f"pairs: the network is disconnected ({len(comps)} sub-networks): {where}; {fix}")


def _group_pixels(
    valid: NDArray[np.bool_], per_pixel: bool, max_group: int = 256
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Sort pixels by their pattern of usable pairs; groups larger than ``max_group`` are split (threads)."""
    npx = valid.shape[0]
    if per_pixel:
        return np.arange(npx, dtype=np.int64), np.arange(npx + 1, dtype=np.int64)
    packed = np.ascontiguousarray(np.packbits(valid, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable").astype(np.int64)
    counts = np.bincount(inverse)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    starts = [np.arange(a, b, max_group) for a, b in itertools.pairwise(bounds)]
    return order, np.concatenate([*starts, [npx]]).astype(np.int64)


@dataclass
class _ChunkFit:
    d: NDArray[np.float64]  # (ncomp, c, n)
    var: NDArray[np.float64]  # (c, n)
    s2: NDArray[np.float64]  # (ncomp, c)
    res: NDArray[np.float64]  # (ncomp, c, P)
    q: NDArray[np.float64]  # (c, P)
    status: NDArray[np.int8]  # (c,)
    valid: NDArray[np.bool_]  # (c, P)


def _fit(
    s: _Setup,
    obs: NDArray[np.float64],
    w: NDArray[np.float64],
    finite: NDArray[np.bool_],
    flag: NDArray[np.bool_],
    lam: float,
    max_gap: float,
    per_pixel: bool,
) -> _ChunkFit:
    ncomp, c, P = obs.shape
    n = s.t.size
    valid = finite & ~flag & (w > 0)
    order, start = _group_pixels(valid, per_pixel)
    out = _ChunkFit(
        d=np.empty((ncomp, c, n)),
        var=np.empty((c, n)),
        s2=np.empty((ncomp, c)),
        res=np.empty((ncomp, c, P)),
        q=np.empty((c, P)),
        status=np.empty(c, dtype=np.int8),
        valid=valid,
    )
    dof = np.empty(c)
    solve_groups(
        s.pairs[:, 0].copy(), s.pairs[:, 1].copy(), s.t, w, valid, finite, obs, order, start, float(lam),
        float(max_gap), out.d, out.var, out.s2, out.res, out.q, dof, out.status,
    )  # fmt: skip
    return out


def _chunk_weights(s: _Setup, sl: slice, finite: NDArray[np.bool_]) -> NDArray[np.float64]:
    if s.weights.ndim == 1:
        return np.ascontiguousarray(np.broadcast_to(s.weights[None, :], finite.shape))
    w = s.weights.reshape(s.weights.shape[0], -1)[:, sl].T
    return np.ascontiguousarray(np.where(np.isfinite(w), w, 0.0))


def _robust_fit(
    s: _Setup,
    obs: NDArray[np.float64],
    w: NDArray[np.float64],
    finite: NDArray[np.bool_],
    opts: dict[str, Any],
) -> tuple[_ChunkFit, NDArray[np.bool_]]:
    """Fit, flag, refit until the flags settle (fewer than 1e-4 of the observations change)."""
    flag = np.zeros(finite.shape, dtype=bool)
    fit = _fit(s, obs, w, finite, flag, opts["lam"], opts["max_gap"], opts["per_pixel"])
    if not opts["robust"]:
        return fit, flag
    nfin = max(int(finite.sum()), 1)
    for _ in range(opts["max_iterations"]):
        new = np.empty_like(flag)
        flag_outliers(
            s.pairs[:, 0].copy(), s.pairs[:, 1].copy(), s.t, opts["lam"], opts["max_gap"], fit.res, fit.q,
            fit.valid, finite, w, opts["threshold"], opts["max_fraction"], new,
        )  # fmt: skip
        changed = int((new != flag).sum())
        if changed == 0:
            break
        flag = new
        fit = _fit(s, obs, w, finite, flag, opts["lam"], opts["max_gap"], opts["per_pixel"])
        if changed < 1e-4 * nfin:
            break
    return fit, flag


def invert(
    dates: Sequence[Any] | ArrayLike,
    pairs: ArrayLike,
    dx: ArrayLike,
    dy: ArrayLike | None = None,
    *,
    weights: ArrayLike | Literal["dt"] | None = None,
    smoothing: float | None = None,
    robust: bool = True,
    progress: Progress | None = None,
    max_outlier_fraction: float = 0.2,
    outlier_threshold: float = 4.0,
    max_iterations: int = 6,
    max_gap_days: float = 180.0,
    chunk_size: int = 4096,
    return_residuals: bool | None = None,
) -> TimeSeriesResult:
    """Invert pair-wise offsets into one cumulative displacement time series per pixel.

    Weighted least squares on the date increments (unknowns: displacement at each date since ``dates[0]``),
    optionally regularised by a Laplacian in time, with an iteratively reweighted robust fit that drops
    outlier pairs per pixel. Each pixel uses the pairs it has (NaN = missing). Pixels with the same set of
    usable pairs share one factorisation; the map is processed in chunks of ``chunk_size`` pixels.

    Parameters
    ----------
    dates
        ``(ndates,)`` acquisition dates, strictly increasing (ISO strings, ``datetime`` or ``datetime64``).
    pairs
        ``(npairs, 2)`` indices ``(reference, secondary)`` into ``dates``. A pair measures the displacement
        from ``dates[reference]`` to ``dates[secondary]``; backward pairs (reference later) are allowed.
    dx, dy
        ``(npairs, *spatial)`` pair displacements (any unit, e.g. pixels or metres), NaN = no data. ``dy``
        is optional; both components use the same outlier decisions.
    weights
        None (equal), ``"dt"`` (variance growing with the time span: w = 1 / (1 + |Δt| / 365.25 d), for
        decorrelation), or inverse-variance weights of shape ``(npairs,)`` or like ``dx`` (0 drops a pair).
        Weights are normalised by their median.
    smoothing
        Weight λ of the temporal Laplacian (dimensionless, relative to a median-weight pair): each interior
        date adds the row ``λ τ (v_after - v_before)`` where v are the mean velocities of the two adjacent
        intervals and τ their mean length, i.e. ``λ (d[k-1] - 2 d[k] + d[k+1])`` for regular sampling. It
        also bridges intervals no pair spans, up to ``max_gap_days``. None or 0 disables it.
    robust
        Reject outlier pairs per pixel: pairs whose residual exceeds ``outlier_threshold`` robust sigmas
        (MAD of the standardised residuals) are dropped and the fit repeated, at most ``max_iterations``
        times; never more than ``max_outlier_fraction`` of a pixel's pairs are dropped.
    progress
        Called as ``progress(done_pixels, total_pixels)`` after each chunk.
    max_outlier_fraction, outlier_threshold, max_iterations
        Robust-fit settings (see ``robust``).
    max_gap_days
        Longest interval without pairs (days) that the smoothing may bridge.
    chunk_size
        Pixels per chunk; memory is about ``60 * npairs * chunk_size`` bytes.
    return_residuals
        Keep the per-pair residual maps (``4 * npairs * npixels`` bytes per component). None (default)
        keeps them when they take at most 1 GiB, so that a large inversion stays within memory; a
        :class:`TimeSeriesWarning` says when they were left out (pass True to force them).

    Returns
    -------
    TimeSeriesResult
        Cumulative displacements, 1-sigma uncertainties, residuals, outlier flags and mean velocities.

    Raises
    ------
    InvalidInputError
        Bad dates, pairs referencing unknown dates, shapes that disagree, bad weights or options, or a pair
        network that is disconnected and cannot be bridged.
    NoDataError
        All observations are NaN.

    Warns
    -----
    TimeSeriesWarning
        Gaps bridged by the smoothing; pixels with unconstrained dates (NaN) or with no estimate at all.

    Notes
    -----
    The uncertainty of date k is ``sqrt(s2 * [N^-1]_kk)``, with ``N`` the (regularised) normal matrix and
    ``s2`` the weighted residual variance of the used pairs divided by the residual degrees of freedom
    (pairs minus the trace of the hat matrix). It covers the random (non-closing) errors of the pairs;
    biases that close around every loop of the network (e.g. a matcher under-estimating all displacements
    by the same fraction) leave no residual and are not included. Mean velocity = displacement at the last
    constrained date / its time since ``dates[0]``.
    """
    lam = 0.0 if smoothing is None else float(smoothing)
    if not np.isfinite(lam) or lam < 0:
        raise InvalidInputError(f"smoothing: must be None or a finite weight >= 0, got {smoothing!r}")
    if not 0 <= max_outlier_fraction < 1:
        raise InvalidInputError(f"max_outlier_fraction: must be in [0, 1), got {max_outlier_fraction}")
    if outlier_threshold <= 0 or max_iterations < 1 or chunk_size < 1 or max_gap_days <= 0:
        raise InvalidInputError(
            "outlier_threshold, max_iterations, chunk_size and max_gap_days must be positive"
        )
    s = _check_inputs(dates, pairs, dx, dy, weights, lam, max_gap_days)
    ncomp = len(s.comps)
    P, n = s.pairs.shape[0], s.t.size
    flat = [c.reshape(P, -1) for c in s.comps]
    npx = flat[0].shape[1]

    if return_residuals is None:
        return_residuals = ncomp * P * npx * 4 <= _AUTO_RESIDUAL_BYTES
        if not return_residuals:
            warnings.warn(
                f"residual maps not kept ({ncomp * P * npx * 4 / 2**30:.1f} GiB); pass "
                "return_residuals=True to keep them",
                TimeSeriesWarning,
                stacklevel=2,
            )
    d_out = np.full((ncomp, n, npx), np.nan, dtype=np.float32)
    sig_out = np.full((ncomp, n, npx), np.nan, dtype=np.float32)
    res_out = np.full((ncomp, P, npx), np.nan, dtype=np.float32) if return_residuals else None
    outlier = np.zeros((P, npx), dtype=bool)
    n_used = np.zeros(npx, dtype=np.int32)
    status = np.zeros(npx, dtype=np.int8)

    opts = {
        "lam": lam,
        "max_gap": max_gap_days,
        "per_pixel": s.weights.ndim > 1,
        "robust": robust,
        "max_iterations": max_iterations,
        "threshold": outlier_threshold,
        "max_fraction": max_outlier_fraction,
    }
    for start in range(0, npx, chunk_size):
        sl = slice(start, min(start + chunk_size, npx))
        obs = np.ascontiguousarray(np.stack([f[:, sl].T for f in flat]), dtype=np.float64)
        finite: NDArray[np.bool_] = np.asarray(np.isfinite(obs).all(axis=0))
        w = _chunk_weights(s, sl, finite)
        fit, flag = _robust_fit(s, obs, w, finite, opts)
        d_out[:, :, sl] = fit.d.transpose(0, 2, 1)
        with np.errstate(invalid="ignore"):
            sig_out[:, :, sl] = np.sqrt(fit.s2[:, None, :] * fit.var.T[None, :, :])
        if res_out is not None:
            res_out[:, :, sl] = fit.res.transpose(0, 2, 1)
        outlier[:, sl] = (flag & finite).T
        n_used[sl] = fit.valid.sum(axis=1)
        status[sl] = fit.status
        if progress is not None:
            progress(sl.stop, npx)

    return _assemble(s, d_out, sig_out, res_out, outlier, n_used, status)


def _velocity(
    t: NDArray[np.float64], d: NDArray[np.float32], sig: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    ok = np.isfinite(d)
    last = d.shape[0] - 1 - np.argmax(ok[::-1], axis=0)
    span = t[last]
    cols = np.arange(d.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(span > 0, d[last, cols] / span * DAYS_PER_YEAR, np.nan)
        sv = np.where(span > 0, sig[last, cols] / span * DAYS_PER_YEAR, np.nan)
    return v.astype(np.float32), sv.astype(np.float32)


def _assemble(
    s: _Setup, d: Any, sig: Any, res: Any, outlier: Any, n_used: Any, status: Any
) -> TimeSeriesResult:
    ncomp, n = d.shape[0], d.shape[1]
    P = s.pairs.shape[0]
    sp = s.spatial
    vel = [_velocity(s.t, d[c], sig[c]) for c in range(ncomp)]
    n_partial = int(((status != STATUS_OK) & (status != STATUS_EMPTY)).sum())
    n_empty = int((status == STATUS_EMPTY).sum())
    if s.gaps:
        warnings.warn(
            f"{len(s.gaps)} interval(s) without any pair were bridged by the smoothing: "
            + "; ".join(f"{g.start}..{g.end} ({g.days:.0f} d)" for g in s.gaps[:5]),
            TimeSeriesWarning,
            stacklevel=3,
        )
    if n_partial or n_empty:
        warnings.warn(
            f"{n_partial} pixel(s) have unconstrained dates (NaN) and {n_empty} pixel(s) have no estimate, "
            f"out of {status.size}: too few valid pairs there",
            TimeSeriesWarning,
            stacklevel=3,
        )
    two = ncomp == 2
    return TimeSeriesResult(
        dates=s.dates,
        pairs=s.pairs,
        dx=d[0].reshape((n, *sp)),
        dy=d[1].reshape((n, *sp)) if two else None,
        sigma_dx=sig[0].reshape((n, *sp)),
        sigma_dy=sig[1].reshape((n, *sp)) if two else None,
        residual_dx=None if res is None else res[0].reshape((P, *sp)),
        residual_dy=None if res is None or not two else res[1].reshape((P, *sp)),
        outlier=outlier.reshape((P, *sp)),
        n_pairs_used=n_used.reshape(sp),
        velocity_x=vel[0][0].reshape(sp),
        velocity_y=vel[1][0].reshape(sp) if two else None,
        sigma_velocity_x=vel[0][1].reshape(sp),
        sigma_velocity_y=vel[1][1].reshape(sp) if two else None,
        gaps=s.gaps,
        n_partial=n_partial,
        n_empty=n_empty,
    )
