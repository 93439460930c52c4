"""Stripe / jitter correction: biases that depend only on the across-track or along-track position.

Push-broom sensors leave detector-boundary steps and per-detector biases that are constant along the track
(Sentinel-2 detector stripes, about 0.1 px; Provost et al. 2022); attitude jitter leaves periodic biases
that are constant across the track. Both are removed by binning the map along one track coordinate and
subtracting the median of the reference pixels (stable ground) of each bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import median_filter

from geodeform.corrections._common import as_map, as_mask
from geodeform.errors import InvalidInputError, NoDataError

__all__ = ["StripeCorrection", "destripe", "track_coordinates"]


@dataclass(frozen=True)
class StripeCorrection:
    """Result of :func:`destripe`.

    Attributes
    ----------
    values
        Corrected map, float32.
    profile
        ``(nbins,)`` bias removed per bin (input unit); bins without enough reference pixels are
        interpolated from their neighbours.
    bin_start
        Track coordinate (pixels) of the start of bin 0; bin k covers
        ``[bin_start + k * bin_width, bin_start + (k + 1) * bin_width)``.
    bin_width
        Bin width, pixels.
    """

    values: NDArray[np.float32]
    profile: NDArray[np.float64]
    bin_start: float
    bin_width: float


def track_coordinates(shape: tuple[int, int], track_angle_deg: float) -> tuple[NDArray[np.float64], ...]:
    """Across-track and along-track coordinates (pixels) of every pixel.

    ``track_angle_deg`` is the angle of the along-track direction, clockwise from the image "up" direction
    (decreasing rows): 0 means the track runs along the columns' direction (stripes are columns).
    Across-track ``u = col cos(a) + row sin(a)``, along-track ``v = row cos(a) - col sin(a)``.
    """
    a = np.deg2rad(track_angle_deg)
    rows, cols = np.indices(shape, dtype=np.float64)
    return cols * np.cos(a) + rows * np.sin(a), rows * np.cos(a) - cols * np.sin(a)


def destripe(
    values: ArrayLike,
    *,
    reference: ArrayLike | None = None,
    direction: Literal["across", "along"] = "across",
    track_angle_deg: float = 0.0,
    bin_width: float = 1.0,
    highpass_bins: int | None = None,
    min_count: int = 5,
) -> StripeCorrection:
    """Remove biases that vary only across the track (stripes) or only along it (jitter).

    Parameters
    ----------
    values
        2-D offset or velocity component (NaN = no data).
    reference
        Pixels whose true value is known to be smooth, normally stable ground (True = use). None uses all
        valid pixels: then pass ``highpass_bins`` so that real motion, which varies slowly across bins, is
        not removed.
    direction
        ``"across"``: bias is a function of the across-track coordinate (detector stripes, boundaries);
        ``"along"``: function of the along-track coordinate (jitter).
    track_angle_deg
        Along-track direction, degrees clockwise from image up (see :func:`track_coordinates`).
    bin_width
        Bin width along the chosen coordinate, pixels.
    highpass_bins
        If given, only the part of the profile that departs from its running median over this many bins is
        removed (keeps large-scale signal).
    min_count
        Fewest reference pixels for a bin to be estimated (others are interpolated).

    Returns
    -------
    StripeCorrection

    Raises
    ------
    InvalidInputError
        Bad options or shapes.
    NoDataError
        No bin has ``min_count`` reference pixels.
    """
    if direction not in ("across", "along"):
        raise InvalidInputError(f"direction: must be 'across' or 'along', got {direction!r}")
    if bin_width <= 0 or min_count < 1:
        raise InvalidInputError("bin_width must be > 0 and min_count >= 1")
    v = as_map(values, "values")
    ref = as_mask(reference, "reference", v.shape)
    use = np.isfinite(v) if ref is None else ref & np.isfinite(v)
    u, w = track_coordinates(v.shape, track_angle_deg)
    coord = u if direction == "across" else w
    start = float(coord.min())
    idx = np.floor((coord - start) / bin_width).astype(np.int64)
    nbins = int(idx.max()) + 1
    order = np.argsort(idx[use], kind="stable")
    vals, bins = v[use][order], idx[use][order]
    edges = np.searchsorted(bins, np.arange(nbins + 1))
    profile = np.full(nbins, np.nan)
    for k in range(nbins):
        if edges[k + 1] - edges[k] >= min_count:
            profile[k] = np.median(vals[edges[k] : edges[k + 1]])
    good = np.isfinite(profile)
    if not good.any():
        raise NoDataError(
            f"reference: no bin has {min_count} reference pixels with data; enlarge the mask or bin_width"
        )
    profile = np.interp(np.arange(nbins), np.flatnonzero(good), profile[good])
    if highpass_bins is not None:
        if highpass_bins < 3:
            raise InvalidInputError(f"highpass_bins: need >= 3 bins, got {highpass_bins}")
        profile = profile - median_filter(profile, size=highpass_bins, mode="nearest")
    else:
        # The constant part is a co-registration shift, not a stripe: keep it for coregister().
        profile = profile - np.median(profile)
    return StripeCorrection(
        values=(v - profile[idx]).astype(np.float32), profile=profile, bin_start=start, bin_width=bin_width
    )
