"""Velocity products derived from an inverted time series."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geodeform.errors import InvalidInputError
from geodeform.timeseries._invert import DAYS_PER_YEAR, TimeSeriesResult

__all__ = ["AnnualVelocity", "VelocityComposite", "annual_velocity", "velocity_composite"]


@dataclass(frozen=True)
class AnnualVelocity:
    """Mean velocity per calendar year.

    Attributes
    ----------
    years
        ``(nyears,)`` int calendar years.
    start, end
        ``(nyears,)`` ``datetime64[D]`` span actually covered in each year.
    vx, vy
        ``(nyears, *spatial)`` float32 mean rate over the span, input unit per year; ``vy`` None without dy.
    """

    years: NDArray[np.int64]
    start: NDArray[np.datetime64]
    end: NDArray[np.datetime64]
    vx: NDArray[np.float32]
    vy: NDArray[np.float32] | None


def _interp(t: NDArray[np.float64], d: NDArray[np.float32], at: float) -> NDArray[np.float64]:
    k = int(np.clip(np.searchsorted(t, at, side="right") - 1, 0, t.size - 2))
    f = (at - t[k]) / (t[k + 1] - t[k])
    return (1.0 - f) * d[k].astype(np.float64) + f * d[k + 1].astype(np.float64)


def annual_velocity(ts: TimeSeriesResult, *, min_days: float = 180.0) -> AnnualVelocity:
    """Mean velocity of each calendar year covered by at least ``min_days``.

    The cumulative displacement is interpolated linearly in time at the year limits (or the first/last date
    when the series starts/ends inside the year); the rate is the difference over the span, per 365.25 days.

    Raises
    ------
    InvalidInputError
        ``min_days`` not positive, or no year is covered long enough.
    """
    if min_days <= 0:
        raise InvalidInputError(f"min_days: must be > 0, got {min_days}")
    t = (ts.dates - ts.dates[0]).astype(np.float64)
    first, last = ts.dates[0], ts.dates[-1]
    y0 = int(str(first.astype("datetime64[Y]")))
    y1 = int(str(last.astype("datetime64[Y]")))
    years, starts, ends, vx, vy = [], [], [], [], []
    for y in range(y0, y1 + 1):
        a = max(np.datetime64(f"{y}-01-01", "D"), first)
        b = min(np.datetime64(f"{y + 1}-01-01", "D"), last)
        span = float((b - a).astype(np.int64))
        if span < min_days:
            continue
        ta, tb = float((a - first).astype(np.int64)), float((b - first).astype(np.int64))
        years.append(y)
        starts.append(a)
        ends.append(b)
        vx.append((_interp(t, ts.dx, tb) - _interp(t, ts.dx, ta)) / span * DAYS_PER_YEAR)
        if ts.dy is not None:
            vy.append((_interp(t, ts.dy, tb) - _interp(t, ts.dy, ta)) / span * DAYS_PER_YEAR)
    if not years:
        raise InvalidInputError(f"min_days: no calendar year is covered for {min_days} days; lower it")
    return AnnualVelocity(
        years=np.array(years, dtype=np.int64),
        start=np.array(starts, dtype="datetime64[D]"),
        end=np.array(ends, dtype="datetime64[D]"),
        vx=np.stack(vx).astype(np.float32),
        vy=np.stack(vy).astype(np.float32) if vy else None,
    )


@dataclass(frozen=True)
class VelocityComposite:
    """Mean velocity over the whole series, ITS_LIVE-like names (input unit per year).

    Attributes
    ----------
    vx, vy, v
        ``(*spatial)`` float32 mean velocity components and magnitude.
    vx_error, vy_error
        ``(*spatial)`` float32 1-sigma component errors.
    v_error
        ``(*spatial)`` float32 error of ``v``: component errors projected on the flow direction,
        ``sqrt((vx vx_error)^2 + (vy vy_error)^2) / v`` (their mean where v = 0).
    count
        ``(*spatial)`` int32 pairs used per pixel.
    start, end
        ``datetime64[D]`` span of the series.
    """

    vx: NDArray[np.float32]
    vy: NDArray[np.float32]
    v: NDArray[np.float32]
    vx_error: NDArray[np.float32]
    vy_error: NDArray[np.float32]
    v_error: NDArray[np.float32]
    count: NDArray[np.int32]
    start: np.datetime64
    end: np.datetime64


def velocity_composite(ts: TimeSeriesResult) -> VelocityComposite:
    """Mean-velocity composite of an inverted series with both components.

    Raises
    ------
    InvalidInputError
        The series has no ``dy`` component.
    """
    if ts.dy is None or ts.velocity_y is None or ts.sigma_velocity_y is None:
        raise InvalidInputError("ts: the composite needs dx and dy; invert both components")
    vx = ts.velocity_x.astype(np.float64)
    vy = ts.velocity_y.astype(np.float64)
    ex = ts.sigma_velocity_x.astype(np.float64)
    ey = ts.sigma_velocity_y.astype(np.float64)
    v = np.hypot(vx, vy)
    with np.errstate(invalid="ignore", divide="ignore"):
        v_err = np.where(v > 0, np.hypot(vx * ex, vy * ey) / v, 0.5 * (ex + ey))
    return VelocityComposite(
        vx=vx.astype(np.float32),
        vy=vy.astype(np.float32),
        v=v.astype(np.float32),
        vx_error=ex.astype(np.float32),
        vy_error=ey.astype(np.float32),
        v_error=v_err.astype(np.float32),
        count=ts.n_pairs_used,
        start=ts.dates[0],
        end=ts.dates[-1],
    )
