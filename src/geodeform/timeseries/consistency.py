"""Each pair against the rest of the network: does its motion agree with what the other pairs say?

A pair's own stable ground cannot show an error that sits on the moving area of one image only (haze over
the ice, a thin cloud, a melt-water sheen: the matcher slows or speeds the ice of every pair through that
date while the rock stays put). The network can: the series inverted from all the pairs gives the motion
between any two dates, and a pair whose measured motion is a different multiple of it is suspect.

One subtlety decides the test. An error of one image on the moving area (every pair ending on the date
short by ``e``, every pair starting from it long by ``e``) is, for the inversion, *exactly* a displacement of
that date: the series absorbs it, and ``d(t2) - d(t1)`` of the fitted series reproduces the bad pairs. So a
pair is compared with the series **with its own two dates left out**: the displacement at each end date is
interpolated in time from the series at the neighbouring dates (the nearest earlier and later one;
extrapolated at the first and last date), skipping the dates whose displacement is a spike in the motion
around them (:func:`suspect_dates`), so that one bad date does not spoil its neighbours' pairs. What is
left is "what the other dates say the motion over this interval was", which an error confined to one
date cannot reach. A real change of speed is still followed (the neighbours move with it); what the test
assumes is that the motion is close to linear over the two intervals around a date: a speed step of a
fraction ``f`` at a date of equal spacing moves the ratio of the short pairs ending there by about ``f / 2``
(a 40 % step: ratio 0.8 or 1.2, inside the default bounds). Faster changes (a surge, a quake between two
dates) are beyond what the test can tell from a bad image: their short pairs would be flagged.

The statistic is the **median ratio** of the measured displacement projected on the network's, over the
pair's nodes where the network's motion is well above the pair's noise (``min_signal`` x the 1-sigma error).
A ratio, not a z-score of the residual: the target it serves is stated as a speed ratio, a ratio does not
depend on how well the noise is known, and a z-score would flag long pairs for a 3 % error that is many
sigmas but harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.errors import InvalidInputError

__all__ = [
    "DEFAULT_BOUNDS",
    "PairAgreement",
    "date_disagreement",
    "leave_date_out",
    "pair_agreement",
    "pair_ratio",
    "suspect_dates",
]

DEFAULT_BOUNDS = (0.7, 1 / 0.7)
"""Ratios (measured / network) outside which a pair disagrees with the network."""


@dataclass(frozen=True)
class PairAgreement:
    """How each pair agrees with the network (:func:`pair_agreement`).

    Attributes
    ----------
    ratio
        ``(npairs,)`` median over the moving nodes of (measured displacement projected on the network's) /
        (network's displacement magnitude); 1 = agreement. NaN with fewer than ``min_nodes`` moving nodes.
    nodes
        ``(npairs,)`` moving nodes the ratio was taken over.
    flagged
        ``(npairs,)`` ratio outside ``bounds`` over at least ``min_nodes`` nodes.
    bounds
        (low, high) ratio bounds.
    min_nodes
        Fewest moving nodes for a verdict.
    """

    ratio: NDArray[np.float64]
    nodes: NDArray[np.int64]
    flagged: NDArray[np.bool_]
    bounds: tuple[float, float]
    min_nodes: int


def leave_date_out(
    dates: ArrayLike, series: ArrayLike, *, skip: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Each date's displacement interpolated (linearly in time) from the series at its neighbouring dates.

    Parameters
    ----------
    dates
        ``(ndates,)`` increasing dates.
    series
        ``(ndates, ...)`` cumulative displacement (any unit), NaN = unconstrained.
    skip
        ``(ndates,)`` bool, dates never used as a neighbour (suspect dates, :func:`suspect_dates`).

    Returns
    -------
    ndarray
        Same shape: date ``k`` from the nearest usable dates before and after it; at an end, extrapolated
        from the nearest usable date and the first one at least as far beyond it as the gap; the series
        itself where fewer than two usable dates remain.
    """
    t = np.asarray(dates, dtype="datetime64[D]").astype(np.float64)
    s = np.asarray(series, dtype=np.float64)
    n = t.size
    if s.shape[0] != n:
        raise InvalidInputError(f"{s.shape[0]} series layers for {n} dates")
    usable = np.ones(n, dtype=bool) if skip is None else ~np.asarray(skip, dtype=bool)
    out = s.copy()
    for k in range(n):
        pick = _neighbours(t, k, usable)
        if pick is not None:
            a, b = pick
            out[k] = s[a] + (s[b] - s[a]) * ((t[k] - t[a]) / (t[b] - t[a]))
    return out


def _neighbours(t: NDArray[np.float64], k: int, usable: NDArray[np.bool_]) -> tuple[int, int] | None:
    """The dates that stand in for date ``k``: the nearest usable ones on each side or, at an end, the
    nearest and the first one at least as far beyond it as the gap (an extrapolation amplifies their noise
    at most about twice); None when fewer than two are usable."""
    idx = np.flatnonzero(usable)
    before, after = idx[idx < k], idx[idx > k]
    if before.size and after.size:
        return int(before[-1]), int(after[0])
    if after.size >= 2:
        a = int(after[0])
        far = after[t[after] - t[a] >= t[a] - t[k]]
        return a, int(far[0]) if far.size else int(after[-1])
    if before.size >= 2:
        b = int(before[-1])
        far = before[t[b] - t[before] >= t[k] - t[b]]
        return int(far[-1]) if far.size else int(before[0]), b
    return None


def suspect_dates(
    dates: ArrayLike, east: ArrayLike, north: ArrayLike, *, threshold: float = 0.25, max_share: float = 0.25
) -> NDArray[np.bool_]:
    """Dates whose displacement stands out of the motion around them (a spike), found one at a time.

    A date's spike is the median, over the nodes moving most between its stand-in dates
    (:func:`leave_date_out`), of ``|d(k) - interpolated d(k)| / |d(b) - d(a)|``. The date with the largest
    spike above ``threshold`` is set aside (no longer a neighbour: a bad date would otherwise spoil the
    stand-ins of its neighbours' pairs), and the search repeats, for at most ``max_share`` of the dates.
    A speed step of a fraction ``f`` at a date of equal spacing gives a spike of ``f / (4 + 2 f)``
    (0.08 for 40 %: well below the default threshold; a noisy stretch of the series can reach 0.1-0.2).
    """
    t = np.asarray(dates, dtype="datetime64[D]")
    ex, ny_ = np.asarray(east, dtype=np.float64), np.asarray(north, dtype=np.float64)
    n = t.size
    skip = np.zeros(n, dtype=bool)
    tf = t.astype(np.float64)
    for _ in range(int(max_share * n)):
        best, best_k = threshold, -1
        for k in np.flatnonzero(~skip):
            pick = _neighbours(tf, k, ~skip)
            if pick is None:
                continue
            a, b = pick
            w = (tf[k] - tf[a]) / (tf[b] - tf[a])
            span = np.hypot(ex[b] - ex[a], ny_[b] - ny_[a])
            off = np.hypot(ex[k] - ex[a] - (ex[b] - ex[a]) * w, ny_[k] - ny_[a] - (ny_[b] - ny_[a]) * w)
            ok = np.isfinite(span) & np.isfinite(off)
            if ok.sum() < 10:
                continue
            moving = ok & (span >= np.percentile(span[ok], 75)) & (span > 0)
            if moving.sum() < 10:
                continue
            spike = float(np.median(off[moving] / span[moving]))
            if spike > best:
                best, best_k = spike, int(k)
        if best_k < 0:
            break
        skip[best_k] = True
    return skip


def pair_ratio(
    network_x: ArrayLike,
    network_y: ArrayLike,
    dx: ArrayLike,
    dy: ArrayLike,
    noise: float,
    *,
    min_signal: float = 5.0,
) -> tuple[float, int]:
    """Median ratio of one pair's measured displacement to the network's, over its moving nodes.

    Parameters
    ----------
    network_x, network_y
        The network's displacement over the pair's interval (m, or any unit of ``dx``).
    dx, dy
        The pair's measured displacement, same unit and grid.
    noise
        The pair's 1-sigma displacement error (same unit); nodes count as moving where the network's motion
        exceeds ``min_signal`` x ``noise``.
    min_signal
        See ``noise``.

    Returns
    -------
    tuple
        (median ratio, number of moving nodes); NaN ratio without any.
    """
    nx_, ny_ = np.asarray(network_x, np.float64), np.asarray(network_y, np.float64)
    mx, my = np.asarray(dx, np.float64), np.asarray(dy, np.float64)
    mag2 = nx_**2 + ny_**2
    floor = min_signal * noise if np.isfinite(noise) and noise > 0 else 0.0
    moving = np.isfinite(mag2) & np.isfinite(mx) & np.isfinite(my) & (mag2 > floor**2) & (mag2 > 0)
    if not moving.any():
        return float("nan"), 0
    r = (mx[moving] * nx_[moving] + my[moving] * ny_[moving]) / mag2[moving]
    return float(np.median(r)), int(moving.sum())


def pair_agreement(
    dates: ArrayLike,
    pairs: ArrayLike,
    east: ArrayLike,
    north: ArrayLike,
    dx: ArrayLike,
    dy: ArrayLike,
    *,
    noise: ArrayLike | None = None,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    min_nodes: int = 50,
    min_signal: float = 5.0,
) -> PairAgreement:
    """Compare every pair with the network's motion over its interval, its own dates left out.

    Parameters
    ----------
    dates
        ``(ndates,)`` dates of the series.
    pairs
        ``(npairs, 2)`` indices (reference, secondary) into ``dates``.
    east, north
        ``(ndates, *spatial)`` inverted cumulative displacement (m, +x east, +y north).
    dx, dy
        ``(npairs, *spatial)`` the pairs' measured displacements, same unit and signs.
    noise
        ``(npairs,)`` 1-sigma displacement error of each pair (same unit); None: every node with motion.
    bounds, min_nodes, min_signal
        Verdict: ratio outside ``bounds`` over at least ``min_nodes`` nodes moving more than ``min_signal``
        x ``noise``.
    """
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    skip = suspect_dates(dates, east, north)
    ex, ny_ = leave_date_out(dates, east, skip=skip), leave_date_out(dates, north, skip=skip)
    mx, my = np.asarray(dx), np.asarray(dy)
    if mx.shape[0] != len(p) or my.shape[0] != len(p):
        raise InvalidInputError(f"{mx.shape[0]} pair maps for {len(p)} pairs")
    err = np.full(len(p), np.nan) if noise is None else np.asarray(noise, dtype=np.float64)
    ratio = np.full(len(p), np.nan)
    nodes = np.zeros(len(p), dtype=np.int64)
    for k, (i, j) in enumerate(p):
        r, n = pair_ratio(ex[j] - ex[i], ny_[j] - ny_[i], mx[k], my[k], float(err[k]), min_signal=min_signal)
        nodes[k] = n
        ratio[k] = r if n >= min_nodes else np.nan
    flagged = np.isfinite(ratio) & ((ratio < bounds[0]) | (ratio > bounds[1]))
    return PairAgreement(ratio, nodes, flagged, bounds, min_nodes)


def date_disagreement(pairs: ArrayLike, flagged: ArrayLike, n_dates: int) -> tuple[NDArray[np.int64], ...]:
    """Per date: (pairs ending or starting on it, of them flagged), each ``(n_dates,)``."""
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    f = np.asarray(flagged, dtype=bool)
    total = np.zeros(n_dates, dtype=np.int64)
    bad = np.zeros(n_dates, dtype=np.int64)
    for (i, j), flag in zip(p, f, strict=True):
        for k in (i, j):
            total[k] += 1
            bad[k] += int(flag)
    return total, bad
