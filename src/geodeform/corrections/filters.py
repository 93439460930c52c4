"""Outlier filters for offset maps. Each kernel returns a boolean mask, True = outlier (reject).

The thresholds of :func:`filter_outliers` that measure displacement are in pixels, scaled by the size of a
pixel in the map's unit (:mod:`geodeform.corrections.scale`: given, said by the map, or estimated by choice;
never guessed), so that they mean the same on pixel offsets, metres, m/day or m/yr.

Pixel sign convention: +dx towards increasing columns (east on north-up images), +dy towards increasing
rows (south). Map-frame inputs (vx east, vy north) are accepted where stated with ``frame="map"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.corrections._common import NMAD, as_map
from geodeform.corrections._window_kernels import window_consistency, window_median_mad
from geodeform.corrections.scale import PixelScale, pixel_scale, resolve_pixel
from geodeform.errors import InvalidInputError

__all__ = [
    "FilterResult",
    "apply_mask",
    "direction_mask",
    "filter_outliers",
    "median_mad_mask",
    "ndc_mask",
    "pixel_scale",
    "quality_mask",
    "speed_mask",
]


def _check_size(size: int) -> None:
    if size < 3 or size % 2 == 0:
        raise InvalidInputError(f"size: need an odd window of at least 3 nodes, got {size}")


def quality_mask(quality: ArrayLike, min_quality: float) -> NDArray[np.bool_]:
    """Nodes whose matching quality (e.g. correlation peak, in [0, 1]) is below ``min_quality`` or NaN."""
    q = np.asarray(quality, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return ~(q >= min_quality)


def median_mad_mask(
    values: ArrayLike, *, size: int = 5, n_mad: float = 3.0, min_deviation: float = 0.1
) -> NDArray[np.bool_]:
    """Nodes farther from their neighbourhood median than ``n_mad`` local robust sigmas.

    Parameters
    ----------
    values
        2-D component (NaN = no data).
    size
        Odd window, nodes.
    n_mad
        Threshold in local robust sigmas (1.4826 * MAD of the window).
    min_deviation
        Deviations below this (input unit, e.g. 0.1 px) are never flagged, so that perfectly smooth areas
        (MAD = 0) keep their nodes.
    """
    v = as_map(values, "values")
    _check_size(size)
    med, raw_mad = window_median_mad(np.ascontiguousarray(v), size)
    mad = NMAD * raw_mad
    dev = np.abs(v - med)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (dev > np.maximum(n_mad * mad, min_deviation))


def ndc_mask(
    dx: ArrayLike, dy: ArrayLike, *, size: int = 5, tolerance: float = 1.0, min_fraction: float = 0.5
) -> NDArray[np.bool_]:
    """Neighbourhood displacement consistency (autoRIFT's NDC filter).

    A node is consistent when at least ``min_fraction`` of its valid neighbours (window ``size``, centre
    excluded) have a displacement vector within ``tolerance`` (input unit) of its own. Nodes with no valid
    neighbour are flagged.
    """
    x = as_map(dx, "dx")
    y = as_map(dy, "dy", shape=x.shape)
    if not 0 < min_fraction <= 1 or tolerance <= 0:
        raise InvalidInputError("min_fraction must be in (0, 1] and tolerance > 0")
    _check_size(size)
    frac = window_consistency(np.ascontiguousarray(x), np.ascontiguousarray(y), size, float(tolerance))
    return np.isfinite(x) & np.isfinite(y) & (frac < min_fraction)


def speed_mask(
    dx: ArrayLike, dy: ArrayLike, *, max_speed: float, dt_days: float | None = None
) -> NDArray[np.bool_]:
    """Nodes moving more than ``max_speed`` (per day when ``dt_days`` is given, else per pair)."""
    x = as_map(dx, "dx")
    y = as_map(dy, "dy", shape=x.shape)
    if max_speed <= 0 or (dt_days is not None and dt_days <= 0):
        raise InvalidInputError("max_speed and dt_days must be > 0")
    limit = max_speed * (abs(dt_days) if dt_days is not None else 1.0)
    with np.errstate(invalid="ignore"):
        return np.hypot(x, y) > limit


def direction_mask(
    dx: ArrayLike,
    dy: ArrayLike,
    *,
    azimuth_deg: ArrayLike,
    max_angle_deg: float = 45.0,
    min_magnitude: float = 0.0,
    frame: Literal["pixel", "map"] = "pixel",
) -> NDArray[np.bool_]:
    """Nodes whose motion direction departs from the expected one by more than ``max_angle_deg``.

    Parameters
    ----------
    dx, dy
        Displacement components. ``frame="pixel"``: +dx east (columns), +dy south (rows), north-up image;
        ``frame="map"``: +dx east, +dy north.
    azimuth_deg
        Expected direction, degrees clockwise from north (scalar or map), e.g. a flow-line direction or the
        DEM slope aspect (downslope direction). NaN = no constraint.
    max_angle_deg
        Largest accepted angle between motion and expected direction.
    min_magnitude
        Slower nodes are never flagged (their direction is noise).
    """
    x = as_map(dx, "dx")
    y = as_map(dy, "dy", shape=x.shape)
    if frame not in ("pixel", "map"):
        raise InvalidInputError(f"frame: must be 'pixel' or 'map', got {frame!r}")
    north = -y if frame == "pixel" else y
    az = np.broadcast_to(np.asarray(azimuth_deg, dtype=np.float64), x.shape)
    motion = np.degrees(np.arctan2(x, north))
    diff = np.abs((motion - az + 180.0) % 360.0 - 180.0)
    with np.errstate(invalid="ignore"):
        return (np.hypot(x, y) > min_magnitude) & (diff > max_angle_deg) & np.isfinite(az)


def apply_mask(values: ArrayLike, mask: ArrayLike) -> NDArray[np.float32]:
    """Copy of ``values`` (float32) with NaN where ``mask`` is True."""
    out = np.array(values, dtype=np.float32)
    out[np.asarray(mask, dtype=bool)] = np.nan
    return out


@dataclass(frozen=True)
class FilterResult:
    """Result of :func:`filter_outliers`.

    Attributes
    ----------
    dx, dy
        Filtered maps (float32, NaN where rejected).
    mask
        Union of all rejections.
    reasons
        Mask per filter, in the order applied (``quality``, ``ambiguous``, ``speed``, ``direction``,
        ``median``, ``ndc``).
    pixel
        One pixel of displacement in the unit of the maps: the scale of the thresholds given in pixels.
    pixel_source
        Where ``pixel`` came from: ``"given"``, ``"units"`` (maps in pixels) or ``"scatter"`` (estimated).
    """

    dx: NDArray[np.float32]
    dy: NDArray[np.float32]
    mask: NDArray[np.bool_]
    reasons: dict[str, NDArray[np.bool_]] = field(default_factory=dict)
    pixel: float = 1.0
    pixel_source: Literal["given", "units", "scatter"] = "given"

    @property
    def rejected_fraction(self) -> float:
        """Share of the nodes that had data and were rejected."""
        return float(self.mask.mean())


def filter_outliers(
    dx: ArrayLike,
    dy: ArrayLike,
    *,
    pixel: PixelScale = None,
    quality: ArrayLike | None = None,
    min_quality: float = 0.2,
    error: ArrayLike | None = None,
    max_error: float = 1.0,
    max_speed: float | None = None,
    dt_days: float | None = None,
    azimuth_deg: ArrayLike | None = None,
    max_angle_deg: float = 45.0,
    min_magnitude: float = 0.0,
    frame: Literal["pixel", "map"] = "pixel",
    median_size: int | None = 5,
    n_mad: float = 3.0,
    min_deviation: float = 0.1,
    ndc_size: int | None = 5,
    ndc_tolerance: float = 1.0,
    ndc_min_fraction: float = 0.5,
) -> FilterResult:
    """Chain the outlier filters: quality, ambiguity, max speed, direction, median/MAD, NDC (in that order).

    Each filter sees the output of the previous ones. ``None`` for ``quality``, ``error``, ``max_speed``,
    ``azimuth_deg``, ``median_size`` or ``ndc_size`` skips that filter.

    Parameters
    ----------
    dx, dy
        2-D components (NaN = no data), any unit.
    pixel
        One pixel of displacement in the unit of ``dx``/``dy``: 1 for pixel offsets, the pixel size for
        metres, pixel size / Δt for a velocity map (e.g. 15 m / 32 days = 0.47 m/day for a Landsat-8
        panchromatic pair). The thresholds ``max_error``, ``min_deviation`` and ``ndc_tolerance`` are in
        pixels and scaled by it, so a map in m/day and the same map in m/yr keep the same nodes. None: from
        the maps themselves (DataArrays whose ``units`` are pixels), else refused; ``"scatter"``: estimated
        from the map's static terrain (:func:`pixel_scale`), by choice. See
        :func:`~geodeform.corrections.scale.product_pixel` for a geodeform pair product.
    quality, min_quality
        Matching quality per node (e.g. the correlation peak, [0, 1]) and the lowest accepted.
    error, max_error
        Predicted 1-sigma error per node, in the unit of the maps, and the largest accepted, in pixels: a
        flat or ridge-shaped correlation peak (an ambiguous match) predicts a large error.
    max_speed, dt_days
        Largest speed in the unit of the maps (per day when ``dt_days`` is given): see :func:`speed_mask`.
    azimuth_deg, max_angle_deg, min_magnitude, frame
        Expected direction: see :func:`direction_mask` (``min_magnitude`` in the unit of the maps).
    median_size, n_mad, min_deviation
        Median / MAD filter window (nodes), threshold (robust sigmas) and floor (pixels).
    ndc_size, ndc_tolerance, ndc_min_fraction
        Neighbourhood consistency: window (nodes), tolerance (pixels), share of agreeing neighbours.

    Returns
    -------
    FilterResult

    Raises
    ------
    UnknownPixelSizeError
        ``pixel`` not given and the maps do not say their pixel size (plain arrays).
    """
    unit, source = resolve_pixel(dx, dy, pixel)  # before as_map: a DataArray's units say the pixel size
    x = as_map(dx, "dx")
    y = as_map(dy, "dy", shape=x.shape)
    reasons: dict[str, NDArray[np.bool_]] = {}
    total = np.zeros(x.shape, dtype=bool)

    def reject(name: str, m: NDArray[np.bool_]) -> None:
        nonlocal x, y, total
        m = m & np.isfinite(x) & np.isfinite(y)
        reasons[name] = m
        total = total | m
        x = np.where(m, np.nan, x)
        y = np.where(m, np.nan, y)

    if quality is not None:
        q = as_map(quality, "quality", shape=x.shape)
        reject("quality", quality_mask(q, min_quality))
    if error is not None:
        e = as_map(error, "error", shape=x.shape)
        with np.errstate(invalid="ignore"):
            reject("ambiguous", e > max_error * unit)
    if max_speed is not None:
        reject("speed", speed_mask(x, y, max_speed=max_speed, dt_days=dt_days))
    if azimuth_deg is not None:
        reject("direction", direction_mask(x, y, azimuth_deg=azimuth_deg, max_angle_deg=max_angle_deg,
                                           min_magnitude=min_magnitude, frame=frame))  # fmt: skip
    if median_size is not None:
        floor = min_deviation * unit
        m = median_mad_mask(x, size=median_size, n_mad=n_mad, min_deviation=floor)
        m |= median_mad_mask(y, size=median_size, n_mad=n_mad, min_deviation=floor)
        reject("median", m)
    if ndc_size is not None:
        tol = ndc_tolerance * unit
        reject("ndc", ndc_mask(x, y, size=ndc_size, tolerance=tol, min_fraction=ndc_min_fraction))
    return FilterResult(
        dx=x.astype(np.float32),
        dy=y.astype(np.float32),
        mask=total,
        reasons=reasons,
        pixel=unit,
        pixel_source=source,
    )
