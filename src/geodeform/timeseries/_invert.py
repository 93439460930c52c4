"""Driver of the time-series inversion: validation, chunking, robust iterations, result object."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.compiled import run_chunks
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.pairs import Gap, as_dates, check_pairs, find_gaps, network_components
from geodeform.timeseries._kernels import STATUS_EMPTY, STATUS_OK, solve_groups
from geodeform.timeseries._robust import flag_outliers, robust_start

__all__ = [
    "DAYS_PER_YEAR",
    "SpanVelocity",
    "TimeSeriesResult",
    "TimeSeriesWarning",
    "invert",
    "span_velocity",
]

_AUTO_RESIDUAL_BYTES = 2**30  # residual maps kept by default up to this size
# Robust start: IRLS steps towards the L1 fit; its flags at this fraction of outlier_threshold (the
# least-squares iterations then re-examine every pair at the threshold itself); pixels whose least-squares
# residuals all lie within this many closure sigmas skip it.
_L1_ITERATIONS = 4
_START_FACTOR = 0.6
_START_GATE = 3.5

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
    date_flag
        ``(ndates, *spatial)`` bool, dates whose value the pairs leave ambiguous: their pairs that disagree
        with the fit back another value of the date as much as the others back the fitted one (e.g. every
        pair of a cloudy image wrong, or two pairs that disagree). All the date's pairs are then left out
        (neither used nor counted in ``outlier``): its displacement is NaN (bridged by the smoothing, if any,
        like a gap), and so is that of any date reached only through it; ``dates[0]`` flagged leaves the
        pixel empty.
    unresolved
        ``(*spatial)`` bool, pixels where pairs beyond the outlier threshold stayed in the fit, because
        rejecting them too would have exceeded ``max_outlier_fraction`` or cut dates off the network (e.g.
        two pairs that disagree are the only links between two parts of it): their values are degraded,
        possibly beyond their sigma (bad pairs that agree with each other can bias the fit).
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
    date_flag: NDArray[np.bool_]
    unresolved: NDArray[np.bool_]

    @property
    def outlier_pair_fraction(self) -> NDArray[np.float64]:
        """``(npairs,)`` fraction of the pixels with data in which each pair was rejected."""
        flat = self.outlier.reshape(self.outlier.shape[0], -1)
        return flat.mean(axis=1)

    @property
    def flagged_date_fraction(self) -> NDArray[np.float64]:
        """``(ndates,)`` fraction of the pixels in which each date was flagged (see ``date_flag``)."""
        flat = self.date_flag.reshape(self.date_flag.shape[0], -1)
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
    run_chunks(
        solve_groups, start.size - 1,
        s.pairs[:, 0].copy(), s.pairs[:, 1].copy(), s.t, w, valid, finite, obs, order, start, float(lam),
        float(max_gap), out.d, out.var, out.s2, out.res, out.q, dof, out.status,
    )  # fmt: skip
    return out


def _chunk_weights(s: _Setup, sl: slice, finite: NDArray[np.bool_]) -> NDArray[np.float64]:
    if s.weights.ndim == 1:
        return np.ascontiguousarray(np.broadcast_to(s.weights[None, :], finite.shape))
    w = s.weights.reshape(s.weights.shape[0], -1)[:, sl].T
    return np.ascontiguousarray(np.where(np.isfinite(w), w, 0.0))


def _triangles(
    pairs: NDArray[np.int64], n: int, per_pair: int = 2
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Triangles of pairs ``(a -> b, b -> c, a -> c)`` with the signs that make their observations close.

    For each pair ``a -> c`` (dates sorted), at most ``per_pair`` intermediate dates b linked to both ends
    (those nearest to a and to c), so that there are at most ``per_pair * npairs`` triangles.
    """
    index: dict[tuple[int, int], tuple[int, float]] = {}
    for p, (i, j) in enumerate(pairs.tolist()):
        index.setdefault((min(i, j), max(i, j)), (p, 1.0 if i < j else -1.0))
    tri, sign = [], []
    for (a, c), (p_ac, s_ac) in index.items():
        mids = [b for b in range(a + 1, c) if (a, b) in index and (b, c) in index]
        if len(mids) > per_pair:  # spread over the span
            mids = (
                [mids[round(q * (len(mids) - 1) / (per_pair - 1))] for q in range(per_pair)]
                if per_pair > 1
                else mids[:1]
            )
        for b in mids:
            (p_ab, s_ab), (p_bc, s_bc) = index[(a, b)], index[(b, c)]
            tri.append((p_ab, p_bc, p_ac))
            sign.append((s_ab, s_bc, -s_ac))
    if not tri:
        return np.zeros((0, 3), dtype=np.int64), np.zeros((0, 3))
    return np.array(tri, dtype=np.int64), np.array(sign, dtype=np.float64)


def _refit(
    s: _Setup,
    fit: _ChunkFit,
    rows: NDArray[np.intp],
    obs: NDArray[np.float64],
    w: NDArray[np.float64],
    finite: NDArray[np.bool_],
    flag: NDArray[np.bool_],
    opts: dict[str, Any],
) -> None:
    """Fit the pixels ``rows`` of the chunk again (their flags or weights changed), in place in ``fit``.

    The kernel is given the chunk's arrays and the pixels to solve (no copies of the observations).
    """
    if rows.size == 0:
        return
    valid = finite[rows] & ~flag[rows] & (w[rows] > 0)
    fit.valid[rows] = valid
    order, start = _group_pixels(valid, opts["per_pixel"])
    dof = np.empty(finite.shape[0])
    run_chunks(
        solve_groups, start.size - 1,
        s.pairs[:, 0].copy(), s.pairs[:, 1].copy(), s.t, w, fit.valid, finite, obs, rows[order], start,
        float(opts["lam"]), float(opts["max_gap"]), fit.d, fit.var, fit.s2, fit.res, fit.q, dof, fit.status,
    )  # fmt: skip


def _rows_of(rows: NDArray[np.intp], c: int) -> NDArray[np.intp] | slice:
    """``rows`` as an index: a slice (a view, no copy) when it is every pixel of the chunk in order."""
    return slice(None) if rows.size == c and (c == 0 or rows[-1] == c - 1) else rows


def _settle_flags(
    s: _Setup,
    fit: _ChunkFit,
    rows: NDArray[np.intp],
    obs: NDArray[np.float64],
    w: NDArray[np.float64],
    finite: NDArray[np.bool_],
    flag: NDArray[np.bool_],
    *,
    left_in: NDArray[np.bool_],
    opts: dict[str, Any],
) -> NDArray[np.bool_]:
    """Flag and refit the pixels ``rows`` until their flags settle; returns the dates found suspect.

    Each pass refits only the pixels whose flags changed. The flags have settled when none changes, or
    fewer than 1e-4 of the chunk's observations, or after ``max_iterations`` passes. A date is suspect
    when its pairs were ambiguous (see ``ambiguous_dates``) in any pass; a pixel stops at the first pass
    that finds a new suspect date (its flags as they were). ``flag`` and ``left_in`` (pairs above the
    threshold left in the fit, in the last pass of the pixel) are updated in place.
    """
    pi, pj = s.pairs[:, 0].copy(), s.pairs[:, 1].copy()
    suspect = np.zeros((finite.shape[0], s.t.size), dtype=bool)
    nfin = max(int(finite.sum()), 1)
    for _ in range(opts["max_iterations"]):
        if rows.size == 0:
            break
        new = np.empty((rows.size, flag.shape[1]), dtype=bool)
        dates = np.empty((rows.size, s.t.size), dtype=bool)
        over = np.empty(rows.size, dtype=bool)
        pick = _rows_of(rows, finite.shape[0])
        # C-contiguous either way (``res[:, rows]`` is a strided copy): one compiled kernel, not two
        res = fit.res[:, pick] if isinstance(pick, slice) else np.take(fit.res, pick, axis=1)
        run_chunks(
            flag_outliers, rows.size,
            pi, pj, s.t, opts["lam"], opts["max_gap"], res, fit.q[pick], fit.valid[pick], finite[pick],
            w[pick], opts["threshold"], opts["max_fraction"], opts["flag_dates"], opts["date_ptr"],
            opts["date_pair"], new, dates, over,
        )  # fmt: skip
        # A pixel with a newly ambiguous date stops here with its flags: the caller takes the date's pairs
        # out of the fit first, so that the pairs they spoil are not judged against a fit they pull.
        fresh = (dates & ~suspect[rows]).any(axis=1)
        new[fresh] = flag[rows[fresh]]
        suspect[rows] |= dates
        left_in[rows] = over
        diff = new != flag[rows]
        changed = int(diff.sum())
        if changed == 0:
            break
        flag[rows] = new
        rows = rows[diff.any(axis=1)]
        _refit(s, fit, rows, obs, w, finite, flag, opts)
        if changed < 1e-4 * nfin:
            break
    return suspect


@dataclass
class _Flags:
    pairs: NDArray[np.bool_]  # (c, P) outlier pairs
    dates: NDArray[np.bool_]  # (c, n) flagged dates
    left_in: NDArray[np.bool_]  # (c,) pairs above the threshold left in the fit


def _robust_fit(
    s: _Setup,
    obs: NDArray[np.float64],
    w: NDArray[np.float64],
    finite: NDArray[np.bool_],
    opts: dict[str, Any],
) -> tuple[_ChunkFit, _Flags]:
    """Least squares, robust start, then flags settled by refits; flagged dates leave, and again."""
    c = finite.shape[0]
    out = _Flags(np.zeros(finite.shape, dtype=bool), np.zeros((c, s.t.size), dtype=bool), np.zeros(c, bool))
    flag = out.pairs
    fit = _fit(s, obs, w, finite, flag, opts["lam"], opts["max_gap"], opts["per_pixel"])
    if not opts["robust"]:
        return fit, out
    rows = np.arange(c)
    start_big = np.zeros(finite.shape, dtype=bool)
    if opts["start"] == "l1":
        run_chunks(
            robust_start, c,
            s.pairs[:, 0].copy(), s.pairs[:, 1].copy(), s.t, opts["lam"], opts["max_gap"], obs, w, finite,
            fit.res, fit.q, opts["tri"], opts["tri_sign"], _START_GATE, _L1_ITERATIONS, opts["threshold"],
            _START_FACTOR, opts["max_fraction"], flag, start_big,
        )  # fmt: skip
        _refit(s, fit, rows[flag.any(axis=1)], obs, w, finite, flag, opts)
    for _ in range(4):  # rounds of date flags: rarely more than two
        new_dates = (
            _settle_flags(s, fit, rows, obs, w, finite, flag, left_in=out.left_in, opts=opts) & ~out.dates
        )
        rows = np.flatnonzero(new_dates.any(axis=1))
        if rows.size == 0:
            break
        out.dates |= new_dates
        # A flagged date's pairs all leave the fit (weight 0): neither used nor outliers.
        w = np.where(out.dates[:, s.pairs[:, 0]] | out.dates[:, s.pairs[:, 1]], 0.0, w)
        flag &= w > 0
        _refit(s, fit, rows, obs, w, finite, flag, opts)
    # More pairs beyond the threshold for the start than the cap lets it reject (not counting the pairs of
    # dates flagged since): least squares with the rest in the fit may no longer see them.
    cap = np.floor(opts["max_fraction"] * finite.sum(axis=1))
    out.left_in |= (start_big & (w > 0)).sum(axis=1) > cap
    return fit, out


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
    robust_start: Literal["l1", "ls"] = "l1",
    flag_dates: bool = True,
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
        Reject outlier pairs per pixel (see Notes): pairs whose standardised residual exceeds
        ``outlier_threshold`` robust sigmas are dropped and the fit repeated, at most ``max_iterations``
        times; never more than ``max_outlier_fraction`` of a pixel's pairs are dropped, and never a pair
        whose loss would cut dates off the network.
    progress
        Called as ``progress(done_pixels, total_pixels)`` after each chunk.
    max_outlier_fraction, outlier_threshold, max_iterations
        Robust-fit settings (see ``robust``).
    robust_start
        ``"l1"``: start the robust fit from a least-absolute-deviation fit of each pixel whose least-squares
        residuals look suspect (see Notes). ``"ls"``: from least squares (the behaviour before this
        option; clustered bad pairs can then hide by spreading into the good ones).
    flag_dates
        Flag the dates whose pairs back another value of the date as much as they back the fitted one
        (``TimeSeriesResult.date_flag``): all their pairs are left out and their displacement is NaN.
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
        Gaps bridged by the smoothing; pixels with unconstrained dates (NaN) or with no estimate at all;
        flagged dates (with the share of pixels for the most flagged ones); unresolved pixels.

    Notes
    -----
    The uncertainty of date k is ``sqrt(s2 * [N^-1]_kk)``, with ``N`` the (regularised) normal matrix and
    ``s2`` the weighted residual variance of the used pairs divided by the residual degrees of freedom
    (pairs minus the trace of the hat matrix). It covers the random (non-closing) errors of the pairs;
    biases that close around every loop of the network (e.g. a matcher under-estimating all displacements
    by the same fraction) leave no residual and are not included. Mean velocity = displacement at the last
    constrained date / its time since ``dates[0]``.

    Robust fit (details in the user guide, ``docs/concepts/timeseries.md``): pixels whose least-squares
    residuals exceed 3.5 sigmas of the closure scale (median absolute closure of triangles of pairs, which
    no fit can spread an error into) start from an L1 fit, which a minority of bad pairs at every date
    cannot move; the pairs it flags are left out, every pair is re-examined against the MAD of the used
    pairs' standardised residuals until the flags settle, then dates whose outlier pairs agree on another
    value as well as the others agree on the fitted one are flagged, their pairs left out.

    Limits: an image shifted as a whole (all its pairs off by the same vector, with the sign of the pair)
    is indistinguishable from a displacement of that date; dates whose pairs are mostly bad in the same
    way look like motion, and the fewest-outliers answer is then the wrong one.
    """
    lam = 0.0 if smoothing is None else float(smoothing)
    _check_options(lam, smoothing, max_outlier_fraction, robust_start, outlier_threshold, max_iterations,
                   chunk_size, max_gap_days)  # fmt: skip
    s = _check_inputs(dates, pairs, dx, dy, weights, lam, max_gap_days)
    opts = _options(s, lam=lam, max_gap_days=max_gap_days, robust=robust, max_iterations=max_iterations,
                    threshold=outlier_threshold, max_fraction=max_outlier_fraction, start=robust_start,
                    flag_dates=flag_dates)  # fmt: skip
    maps = _invert_chunks(s, opts, chunk=chunk_size, residuals=return_residuals, progress=progress)
    return _assemble(s, maps)


def _invert_chunks(
    s: _Setup,
    opts: dict[str, Any],
    *,
    chunk: int,
    residuals: bool | None,
    progress: Progress | None,
) -> _Maps:
    """Fit the map chunk by chunk of ``chunk`` pixels."""
    P = s.pairs.shape[0]
    flat = [c.reshape(P, -1) for c in s.comps]
    npx = flat[0].shape[1]
    keep = _keep_residuals(residuals, len(s.comps) * P * npx * 4)
    maps = _Maps.empty(len(s.comps), s.t.size, P, npx, residuals=keep)
    for start in range(0, npx, chunk):
        sl = slice(start, min(start + chunk, npx))
        obs = np.empty((len(flat), sl.stop - sl.start, P))
        for k, f in enumerate(flat):
            obs[k] = f[:, sl].T
        finite: NDArray[np.bool_] = np.asarray(np.isfinite(obs).all(axis=0))
        fit, flags = _robust_fit(s, obs, _chunk_weights(s, sl, finite), finite, opts)
        maps.store(sl, fit, flags, finite)
        if progress is not None:
            progress(sl.stop, npx)
    return maps


def _keep_residuals(return_residuals: bool | None, size: int) -> bool:
    """Whether to keep the residual maps of ``size`` bytes (None: when they take at most 1 GiB)."""
    if return_residuals is not None:
        return return_residuals
    if size <= _AUTO_RESIDUAL_BYTES:
        return True
    warnings.warn(
        f"residual maps not kept ({size / 2**30:.1f} GiB); pass return_residuals=True to keep them",
        TimeSeriesWarning,
        stacklevel=4,
    )
    return False


def _check_options(
    lam: float,
    smoothing: float | None,
    max_outlier_fraction: float,
    robust_start: str,
    outlier_threshold: float,
    max_iterations: int,
    chunk_size: int,
    max_gap_days: float,
) -> None:
    if not np.isfinite(lam) or lam < 0:
        raise InvalidInputError(f"smoothing: must be None or a finite weight >= 0, got {smoothing!r}")
    if not 0 <= max_outlier_fraction < 1:
        raise InvalidInputError(f"max_outlier_fraction: must be in [0, 1), got {max_outlier_fraction}")
    if robust_start not in ("l1", "ls"):
        raise InvalidInputError(f"robust_start: must be 'l1' or 'ls', got {robust_start!r}")
    if outlier_threshold <= 0 or max_iterations < 1 or chunk_size < 1 or max_gap_days <= 0:
        raise InvalidInputError(
            "outlier_threshold, max_iterations, chunk_size and max_gap_days must be positive"
        )


def _options(s: _Setup, *, lam: float, max_gap_days: float, **robust: Any) -> dict[str, Any]:
    """Settings of the fit, and the network's triangles and pairs per date for the robust one."""
    n = s.t.size
    tri, tri_sign = _triangles(s.pairs, n)
    by_date = np.argsort(s.pairs.ravel(), kind="stable")
    return {
        "lam": lam,
        "max_gap": max_gap_days,
        "per_pixel": s.weights.ndim > 1,
        **robust,
        "date_ptr": np.concatenate([[0], np.cumsum(np.bincount(s.pairs.ravel(), minlength=n))]).astype(
            np.int64
        ),
        "date_pair": (by_date // 2).astype(np.int64),  # the pairs of each date, date by date
        "tri": tri,
        "tri_sign": tri_sign,
    }


@dataclass
class _Maps:
    """Outputs of the whole map, filled chunk by chunk (pixel axis last)."""

    d: NDArray[np.float32]  # (ncomp, n, npx)
    sig: NDArray[np.float32]  # (ncomp, n, npx)
    res: NDArray[np.float32] | None  # (ncomp, P, npx)
    outlier: NDArray[np.bool_]  # (P, npx)
    date_flag: NDArray[np.bool_]  # (n, npx)
    unresolved: NDArray[np.bool_]  # (npx,)
    n_used: NDArray[np.int32]  # (npx,)
    status: NDArray[np.int8]  # (npx,)

    @classmethod
    def empty(cls, ncomp: int, n: int, P: int, npx: int, *, residuals: bool) -> _Maps:
        return cls(
            d=np.full((ncomp, n, npx), np.nan, dtype=np.float32),
            sig=np.full((ncomp, n, npx), np.nan, dtype=np.float32),
            res=np.full((ncomp, P, npx), np.nan, dtype=np.float32) if residuals else None,
            outlier=np.zeros((P, npx), dtype=bool),
            date_flag=np.zeros((n, npx), dtype=bool),
            unresolved=np.zeros(npx, dtype=bool),
            n_used=np.zeros(npx, dtype=np.int32),
            status=np.zeros(npx, dtype=np.int8),
        )

    def store(self, sl: slice, fit: _ChunkFit, flags: _Flags, finite: NDArray[np.bool_]) -> None:
        self.d[:, :, sl] = fit.d.transpose(0, 2, 1)
        with np.errstate(invalid="ignore"):
            self.sig[:, :, sl] = np.sqrt(fit.s2[:, None, :] * fit.var.T[None, :, :])
        if self.res is not None:
            self.res[:, :, sl] = fit.res.transpose(0, 2, 1)
        self.outlier[:, sl] = (flags.pairs & finite).T
        self.date_flag[:, sl] = flags.dates.T
        self.unresolved[sl] = flags.left_in
        self.n_used[sl] = fit.valid.sum(axis=1)
        self.status[sl] = fit.status


class SpanVelocity(NamedTuple):
    """Mean velocity of each pixel over its constrained span (:func:`span_velocity`), float32."""

    v: NDArray[np.float32]
    """(npx,) displacement at the last constrained date over its time since date 0, per year (input
    unit / yr); NaN where no date after the first is constrained."""
    sigma: NDArray[np.float32]
    """(npx,) its standard error, same unit."""


def span_velocity(t: NDArray[np.float64], d: NDArray[np.floating], sig: NDArray[np.floating]) -> SpanVelocity:
    """Mean velocity from a cumulative displacement series: the last finite date's displacement over its
    time since date 0.

    Parameters
    ----------
    t
        (ndates,) days since the first date.
    d, sig
        (ndates, npx) cumulative displacement since date 0 and its standard error (NaN = unconstrained).
    """
    ok = np.isfinite(d)
    last = d.shape[0] - 1 - np.argmax(ok[::-1], axis=0)
    span = t[last]
    cols = np.arange(d.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(span > 0, d[last, cols] / span * DAYS_PER_YEAR, np.nan)
        sv = np.where(span > 0, sig[last, cols] / span * DAYS_PER_YEAR, np.nan)
    return SpanVelocity(v.astype(np.float32), sv.astype(np.float32))


def _warn_flags(
    dates: NDArray[np.datetime64], date_flag: NDArray[np.bool_], left_in: NDArray[np.bool_]
) -> None:
    npx = left_in.size
    per_date = date_flag.sum(axis=1)
    if per_date.any():
        worst = np.argsort(-per_date, kind="stable")[: min(3, int((per_date > 0).sum()))]
        warnings.warn(
            f"{int(date_flag.any(axis=0).sum())} pixel(s) out of {npx} have dates whose pairs disagree among "
            "themselves (flagged in date_flag, NaN there): "
            + ", ".join(f"{dates[k]} in {100 * per_date[k] / npx:.1f} %" for k in worst)
            + " of the pixels; a date flagged in most pixels is a bad image (clouds, mis-registration)",
            TimeSeriesWarning,
            stacklevel=4,
        )
    if left_in.any():
        warnings.warn(
            f"{int(left_in.sum())} pixel(s) out of {npx} keep outlier pairs in their fit (rejecting them "
            "would exceed max_outlier_fraction or cut dates off the network): their values are degraded (see "
            "TimeSeriesResult.unresolved)",
            TimeSeriesWarning,
            stacklevel=4,
        )


def _assemble(s: _Setup, maps: _Maps) -> TimeSeriesResult:
    d, sig, res, status = maps.d, maps.sig, maps.res, maps.status
    ncomp, n = d.shape[0], d.shape[1]
    P = s.pairs.shape[0]
    sp = s.spatial
    vel = [span_velocity(s.t, d[c], sig[c]) for c in range(ncomp)]
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
            f"out of {status.size}: too few valid pairs there, or flagged dates (see date_flag)",
            TimeSeriesWarning,
            stacklevel=3,
        )
    _warn_flags(s.dates, maps.date_flag, maps.unresolved)
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
        outlier=maps.outlier.reshape((P, *sp)),
        n_pairs_used=maps.n_used.reshape(sp),
        velocity_x=vel[0][0].reshape(sp),
        velocity_y=vel[1][0].reshape(sp) if two else None,
        sigma_velocity_x=vel[0][1].reshape(sp),
        sigma_velocity_y=vel[1][1].reshape(sp) if two else None,
        gaps=s.gaps,
        n_partial=n_partial,
        n_empty=n_empty,
        date_flag=maps.date_flag.reshape((n, *sp)),
        unresolved=maps.unresolved.reshape(sp),
    )
