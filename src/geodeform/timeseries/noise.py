"""Per-date image noise: estimated from the pairs' stable-ground errors, added to a series' 1-sigma.

Image-specific errors (noise, radiometry, geolocation of one date) are consistent around every loop of the
pair network, so inversion residuals cannot reveal them; the stable-ground spread of each pair can.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.timeseries._invert import TimeSeriesResult

__all__ = ["add_date_noise", "date_noise"]


def date_noise(
    pairs: list[tuple[int, int]], pair_sigma: NDArray[np.float64], ndates: int
) -> NDArray[np.float64]:
    """Per-date noise s_k from per-pair errors, assuming sigma_ij² = s_i² + s_j² (non-negative least squares).

    Parameters
    ----------
    pairs
        ``(i, j)`` date indices of each pair.
    pair_sigma
        1-sigma error of each pair (any unit; NaN = unknown, that pair is ignored).
    ndates
        Number of dates.

    Returns
    -------
    numpy.ndarray
        ``(ndates,)`` noise of each date, in the unit of ``pair_sigma``. Dates without a finite pair error
        get the median of the others; all zeros when no pair has an error.
    """
    ok = np.isfinite(pair_sigma)
    if not ok.any():
        return np.zeros(ndates)
    a = np.zeros((int(ok.sum()), ndates))
    for row, (i, j) in enumerate(p for p, good in zip(pairs, ok, strict=True) if good):
        a[row, i] = a[row, j] = 1.0
    s2, _ = nnls(a, pair_sigma[ok] ** 2)
    seen = a.any(axis=0)
    if seen.any():
        s2[~seen] = np.median(s2[seen])
    return np.sqrt(s2)


def add_date_noise(
    ts: TimeSeriesResult,
    pairs: list[tuple[int, int]],
    ex: NDArray[np.float64],
    ey: NDArray[np.float64],
) -> TimeSeriesResult:
    """The series with the per-date image noise added to its 1-sigma errors.

    The displacement since date 0 carries the noise of dates 0 and k (added in quadrature to
    ``sigma_dx``/``sigma_dy``, zero at date 0); the mean-velocity sigma gets the error of the slope of a
    straight line through dates with noise s_k.

    Parameters
    ----------
    ts
        Inverted series (dates in its ``dates``).
    pairs
        ``(i, j)`` indices into ``ts.dates`` of the pairs that were inverted.
    ex, ey
        1-sigma error of each pair along x and y, in the series' unit (NaN = unknown).
    """
    n = len(ts.dates)
    years = (ts.dates - ts.dates[0]) / np.timedelta64(1, "D") / DAYS_PER_YEAR
    changes: dict[str, Any] = {}
    for comp, err in (("dx", ex), ("dy", ey)):
        s = date_noise(pairs, err, n)
        floor = np.sqrt(s[0] ** 2 + s**2)
        floor[0] = 0.0
        sig = getattr(ts, f"sigma_{comp}")
        if sig is None:
            continue
        changes[f"sigma_{comp}"] = np.sqrt(sig.astype(np.float64) ** 2 + floor[:, None, None] ** 2).astype(
            np.float32
        )
        centred = years - years.mean()
        if n >= 2 and np.ptp(years) > 0:
            slope_sigma = np.sqrt(np.sum(centred**2 * s**2)) / np.sum(centred**2)
            vname = "sigma_velocity_x" if comp == "dx" else "sigma_velocity_y"
            vsig = getattr(ts, vname)
            if vsig is not None:
                changes[vname] = np.sqrt(vsig.astype(np.float64) ** 2 + slope_sigma**2).astype(np.float32)
    return replace(ts, **changes)
