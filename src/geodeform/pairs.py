"""Pair networks: which acquisitions to match with which.

A pair ``(i, j)`` indexes ``dates``: ``i`` is the reference image and ``j`` the secondary image, so the
offsets of the pair measure the displacement from ``dates[i]`` to ``dates[j]``. Forward pairs have
``i < j`` (positive Δt); backward pairs have ``i > j`` (negative Δt).

Dates are handled as ``numpy.datetime64[D]``; Δt is in days (secondary minus reference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError, NoDataError

__all__ = [
    "Gap",
    "PairNetwork",
    "as_dates",
    "build_pairs",
    "check_pairs",
    "coseismic_pairs",
    "find_gaps",
    "network_components",
    "search_range_px",
]

Mode = Literal["sequential", "all"]
Direction = Literal["forward", "backward", "both"]


@dataclass(frozen=True)
class Gap:
    """A time interval that no pair spans: the network is cut there.

    Attributes
    ----------
    index
        The gap lies between ``dates[index]`` and ``dates[index + 1]``.
    start, end
        The two dates around the gap.
    days
        Length of the gap, days.
    """

    index: int
    start: np.datetime64
    end: np.datetime64
    days: float


@dataclass(frozen=True)
class PairNetwork:
    """Pairs chosen among acquisitions.

    Attributes
    ----------
    dates
        ``(ndates,)`` acquisition dates, ``datetime64[D]``, strictly increasing.
    pairs
        ``(npairs, 2)`` int64 indices ``(reference, secondary)`` into ``dates``.
    dt_days
        ``(npairs,)`` Δt = date of secondary minus date of reference, days (negative for backward pairs).
    components
        Connected sub-networks, each an array of date indices, largest first. Dates used by no pair form
        single-date components.
    gaps
        Intervals between consecutive dates that no pair spans.
    """

    dates: NDArray[np.datetime64]
    pairs: NDArray[np.int64]
    dt_days: NDArray[np.float64]
    components: tuple[NDArray[np.int64], ...]
    gaps: tuple[Gap, ...]

    @property
    def is_connected(self) -> bool:
        """True when every date is linked to every other one through pairs."""
        return len(self.components) == 1

    def __len__(self) -> int:
        return int(self.pairs.shape[0])


def as_dates(dates: ArrayLike | Sequence[Any], *, name: str = "dates") -> NDArray[np.datetime64]:
    """Convert dates to a strictly increasing ``datetime64[D]`` array.

    Parameters
    ----------
    dates
        ISO strings, ``datetime.date``/``datetime`` objects or ``datetime64`` values.
    name
        Argument name used in error messages.

    Raises
    ------
    InvalidInputError
        Unparseable, not 1-D, fewer than 2, or not strictly increasing dates.
    """
    try:
        out = np.asarray(dates, dtype="datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"{name}: cannot read as dates ({exc}); pass ISO strings or datetime64"
        ) from exc
    if out.ndim != 1 or out.size < 2:
        raise InvalidInputError(f"{name}: need a 1-D list of at least 2 dates, got shape {out.shape}")
    if np.isnat(out).any():
        raise InvalidInputError(f"{name}: contains NaT; remove the missing dates")
    if (np.diff(out).astype(np.int64) <= 0).any():
        raise InvalidInputError(f"{name}: must be strictly increasing; sort them and drop duplicates first")
    return out


def check_pairs(pairs: ArrayLike, ndates: int) -> NDArray[np.int64]:
    """Validate ``(npairs, 2)`` date indices.

    Repeated pairs (e.g. the same two dates from two sensors) are allowed.

    Raises
    ------
    InvalidInputError
        Wrong shape, indices outside ``[0, ndates)`` or a pair of a date with itself.
    """
    arr = np.asarray(pairs)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise InvalidInputError(f"pairs: need shape (npairs, 2) with npairs >= 1, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InvalidInputError("pairs: must hold integer indices into dates")
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= ndates)
    if bad.any():
        k = int(np.argwhere(bad.any(axis=1))[0, 0])
        raise InvalidInputError(
            f"pairs: pair {k} = {tuple(out[k])} references an unknown date; indices must be in [0, {ndates})"
        )
    same = out[:, 0] == out[:, 1]
    if same.any():
        raise InvalidInputError(f"pairs: pair {int(np.argmax(same))} pairs a date with itself; remove it")
    return out


def network_components(ndates: int, pairs: NDArray[np.int64]) -> tuple[NDArray[np.int64], ...]:
    """Connected components of the pair graph, largest first (ties: earliest first date).

    Parameters
    ----------
    ndates
        Number of dates (graph nodes).
    pairs
        ``(npairs, 2)`` date indices.
    """
    parent = np.arange(ndates)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for i, j in pairs:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(k) for k in range(ndates)])
    comps = [np.flatnonzero(roots == r).astype(np.int64) for r in np.unique(roots)]
    comps.sort(key=lambda c: (-c.size, int(c[0])))
    return tuple(comps)


def find_gaps(dates: NDArray[np.datetime64], pairs: NDArray[np.int64]) -> tuple[Gap, ...]:
    """Intervals between consecutive dates spanned by no pair.

    A gap cuts the network in two in time: nothing links the dates before it to the dates after it.
    """
    n = dates.size
    lo = pairs.min(axis=1)
    hi = pairs.max(axis=1)
    cover = np.zeros(n, dtype=np.int64)
    np.add.at(cover, lo, 1)
    np.add.at(cover, hi, -1)
    spanned = np.cumsum(cover)[:-1] > 0
    days = np.diff(dates).astype(np.float64)
    return tuple(
        Gap(index=int(k), start=dates[k], end=dates[k + 1], days=float(days[k]))
        for k in np.flatnonzero(~spanned)
    )


def _in_season(dates: NDArray[np.datetime64], season: tuple[str, str]) -> NDArray[np.bool_]:
    try:
        (m0, d0), (m1, d1) = (tuple(int(v) for v in s.split("-")) for s in season)
    except (ValueError, AttributeError) as exc:
        raise InvalidInputError(
            f"season: need two 'MM-DD' strings, e.g. ('06-01', '09-30'); got {season!r}"
        ) from exc
    months = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    key = months * 100 + days
    start, end = m0 * 100 + d0, m1 * 100 + d1
    if start <= end:
        return (key >= start) & (key <= end)
    return (key >= start) | (key <= end)  # window across the new year, e.g. ('11-01', '03-31')


def build_pairs(
    dates: ArrayLike | Sequence[Any],
    *,
    mode: Mode = "all",
    min_separation: int = 1,
    max_separation: int | None = None,
    min_days: float | None = None,
    max_days: float | None = None,
    direction: Direction = "forward",
    season: tuple[str, str] | None = None,
    orbits: Sequence[Any] | None = None,
) -> PairNetwork:
    """Build the pair network from acquisition dates.

    Parameters
    ----------
    dates
        ``(ndates,)`` acquisition dates, strictly increasing.
    mode
        ``"sequential"``: each acquisition with the next ``max_separation`` ones (default 1: consecutive
        only).
        ``"all"``: every pair that passes the separation and day limits.
    min_separation, max_separation
        Matching range in acquisitions, counted within the same orbit and season (1 = consecutive). ``None``
        for ``max_separation`` means unlimited in ``"all"`` mode and 1 in ``"sequential"`` mode.
    min_days, max_days
        Matching range in days, on ``|Δt|``.
    direction
        ``"forward"`` (earlier date as reference, Δt > 0), ``"backward"`` (later date as reference) or
        ``"both"``. The two directions of one pair are not independent measurements: matching both helps
        to detect errors, but invert only one of them (or halve their weights) to keep the time-series
        uncertainty honest.
    season
        Optional window ``("MM-DD", "MM-DD")``: both dates of a pair must fall in it (a window may wrap
        across the new year). Pairs may link windows of different years.
    orbits
        Optional per-date orbit labels (e.g. relative orbit numbers, or track + direction): only dates of the
        same orbit are paired.

    Returns
    -------
    PairNetwork
        Pairs sorted by reference then secondary date (forward pairs before backward ones), with Δt, the
        connected sub-networks and the gaps.

    Raises
    ------
    InvalidInputError
        Bad dates, ranges or options, or no pair passes the limits.
    """
    d = as_dates(dates)
    if mode not in ("sequential", "all"):
        raise InvalidInputError(f"mode: must be 'sequential' or 'all', got {mode!r}")
    if direction not in ("forward", "backward", "both"):
        raise InvalidInputError(f"direction: must be 'forward', 'backward' or 'both', got {direction!r}")
    if max_separation is None:
        max_separation = 1 if mode == "sequential" else d.size
    if min_separation < 1 or max_separation < min_separation:
        raise InvalidInputError(
            f"min_separation/max_separation: need 1 <= min <= max, got {min_separation}, {max_separation}"
        )
    if min_days is not None and max_days is not None and max_days < min_days:
        raise InvalidInputError(f"min_days/max_days: max_days ({max_days}) is below min_days ({min_days})")
    keep = np.ones(d.size, dtype=bool) if season is None else _in_season(d, season)
    if orbits is None:
        labels = np.zeros(d.size, dtype=np.int64)
    else:
        if len(orbits) != d.size:
            raise InvalidInputError(f"orbits: need one label per date ({d.size}), got {len(orbits)}")
        _, labels = np.unique(np.asarray(orbits, dtype=object).astype(str), return_inverse=True)

    t = d.astype(np.int64).astype(np.float64)
    forward: list[tuple[int, int]] = []
    for lab in np.unique(labels):
        idx = np.flatnonzero((labels == lab) & keep)
        for a in range(idx.size):
            for s in range(min_separation, max_separation + 1):
                if a + s >= idx.size:
                    break
                i, j = int(idx[a]), int(idx[a + s])
                span = t[j] - t[i]
                if (min_days is None or span >= min_days) and (max_days is None or span <= max_days):
                    forward.append((i, j))
    if not forward:
        raise InvalidInputError(
            "no pair passes the limits; widen max_separation/max_days, lower min_days or check season/orbits"
        )
    fw = np.array(sorted(forward), dtype=np.int64)
    if direction == "forward":
        pairs = fw
    elif direction == "backward":
        pairs = fw[:, ::-1].copy()
    else:
        pairs = np.concatenate([fw, fw[:, ::-1]])
    dt = t[pairs[:, 1]] - t[pairs[:, 0]]
    # Both directions of the same two dates carry the same information: gaps/components use the forward set.
    return PairNetwork(
        dates=d,
        pairs=pairs,
        dt_days=dt,
        components=network_components(d.size, fw),
        gaps=find_gaps(d, fw),
    )


def coseismic_pairs(
    dates: ArrayLike | Sequence[Any],
    event: Any,
    *,
    orbits: Sequence[Any] | None = None,
    pre: int = 2,
    post: int = 2,
    max_days: float | None = None,
    label: str = "",
) -> PairNetwork:
    """Pre-event × post-event pairs around an event (an earthquake), within each orbit.

    In every orbit, the ``pre`` latest acquisitions before the event day are each paired with the ``post``
    earliest after it (forward: Δt > 0), so a co-seismic field can be stacked from ``pre × post``
    measurements with independent noise in every image. Acquisitions of the event day itself are left out
    (whether they precede the event is unknown), as are those more than ``max_days`` from it.

    Parameters
    ----------
    dates
        ``(ndates,)`` acquisition dates, strictly increasing.
    event
        Event date (ISO string, ``datetime.date`` or ``datetime64``).
    orbits
        Optional per-date orbit labels: pairs never mix orbits (view geometries).
    pre, post
        Acquisitions kept before and after the event, per orbit (≥ 1).
    max_days
        Acquisitions farther than this from the event are not used, days.
    label
        Prefix of error messages (e.g. ``"tile 36SYF: "``).

    Returns
    -------
    PairNetwork
        Over all ``dates`` (unused ones form single-date components).

    Raises
    ------
    InvalidInputError
        The event date lies outside the acquisitions' range, or bad options.
    NoDataError
        No orbit has both a pre-event and a post-event acquisition (within ``max_days``); the message lists
        what each orbit has.
    """
    d = as_dates(dates)
    try:
        ev = np.datetime64(event, "D")
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{label}event date {event!r} is not a date; give YYYY-MM-DD") from exc
    if pre < 1 or post < 1:
        raise InvalidInputError(f"pre and post must be >= 1, got {pre}, {post}")
    span = f"{d[0]}..{d[-1]}"
    if not d[0] < ev < d[-1]:
        missing, side = ("post-event", "after the last") if ev >= d[-1] else ("pre-event", "before the first")
        raise InvalidInputError(
            f"{label}no {missing} image: the event date {ev} is outside the data range ({span}; it is on or "
            f"{side} acquisition); correct the event date, or add images from both sides of it "
            "(search.start before it, search.end after it)"
        )
    if orbits is None:
        labels = np.array(["-"] * d.size, dtype=object)
    else:
        if len(orbits) != d.size:
            raise InvalidInputError(f"orbits: need one label per date ({d.size}), got {len(orbits)}")
        labels = np.asarray(orbits, dtype=object).astype(str)
    near = np.ones(d.size, dtype=bool)
    if max_days is not None:
        near = np.abs((d - ev).astype(np.float64)) <= max_days
    pairs: list[tuple[int, int]] = []
    seen: list[str] = []
    for lab in dict.fromkeys(labels):
        own = labels == lab
        before = np.flatnonzero(own & near & (d < ev))[::-1][:pre]
        after = np.flatnonzero(own & near & (d > ev))[:post]
        orbit = "" if orbits is None else f"orbit {lab}: "
        seen.append(f"{orbit}{before.size} before, {after.size} after")
        pairs += [(int(i), int(j)) for i in sorted(before) for j in after]
    if not pairs:
        window = "" if max_days is None else f" within {max_days:g} days"
        raise NoDataError(
            f"{label}no orbit has images both before and after the event date {ev}{window} "
            f"({'; '.join(seen)}; acquisitions {span}): a co-seismic pair needs a pre-event and a "
            "post-event image of one orbit; add the missing images, widen the search dates or quake.max_days"
        )
    arr = np.array(sorted(pairs), dtype=np.int64)
    dt = (d[arr[:, 1]] - d[arr[:, 0]]).astype(np.float64)
    return PairNetwork(
        dates=d, pairs=arr, dt_days=dt, components=network_components(d.size, arr), gaps=find_gaps(d, arr)
    )


def search_range_px(
    matching: Any, *, dt_days: float, pixel_m: float, speed_m_per_yr: float | None = None
) -> int:
    """Search radius in pixels for one pair: (speed x dt + max displacement) / pixel size x 1.5 + 2.

    ``matching`` is a :class:`geodeform.config.MatchingConfig` (``search_range``, ``expected_max_speed``,
    ``expected_max_displacement``).

    ``speed_m_per_yr`` overrides ``matching.expected_max_speed`` (e.g. a node's reference speed). The
    explicit ``matching.search_range`` wins when set. Never below 2 pixels.
    """
    if matching.search_range is not None:
        return int(matching.search_range)
    speed = matching.expected_max_speed if speed_m_per_yr is None else speed_m_per_yr
    metres = abs(speed) * abs(dt_days) / DAYS_PER_YEAR + matching.expected_max_displacement
    return max(2, math.ceil(1.5 * metres / pixel_m) + 2)
