"""Observation geometry: unit vectors of radar range / azimuth and optical east / north, DEM slope and aspect.

Convention (the one of every function in :mod:`geodeform.decompose`):

* displacements are vectors ``[E, N, U]`` in metres, +east, +north, +up;
* heading ``h`` is the flight direction of the satellite, degrees **clockwise from north** (about −12°
  for Sentinel-1 ascending passes, about −168° descending);
* incidence ``θ`` is the angle between the local vertical and the line of sight, degrees;
* the radar looks to the **right** of its flight direction (Sentinel-1, ALOS-2, RADARSAT-2, NISAR);
* a ``range`` observation is the displacement projected on the ground-to-satellite unit vector
  ``[−sin θ cos h, sin θ sin h, cos θ]`` (positive **towards the satellite**, i.e. a range decrease);
* an ``azimuth`` observation is the displacement projected on the along-track unit vector
  ``[sin h, cos h, 0]`` (positive along the flight direction).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.errors import InvalidInputError

__all__ = ["SlopeAspect", "azimuth_vector", "los_vector", "slope_aspect", "surface_normal"]


def _angles(name: str, value: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(value, dtype=np.float64)
    if not np.isfinite(a).any():
        raise InvalidInputError(f"{name}: no finite value; give the angle in degrees")
    return a


def los_vector(heading_deg: ArrayLike, incidence_deg: ArrayLike) -> NDArray[np.float64]:
    """Ground-to-satellite unit vector of a right-looking radar, ``(..., 3)`` as [E, N, U].

    Parameters
    ----------
    heading_deg
        Flight direction, degrees clockwise from north.
    incidence_deg
        Incidence angle from the vertical, degrees, in [0, 90).

    Returns
    -------
    ndarray
        ``[−sin θ cos h, sin θ sin h, cos θ]``, shaped like the broadcast of the inputs plus a last axis of 3.
        A displacement ``d`` seen in range is ``d @ los_vector(h, θ)`` (positive towards the satellite).

    Raises
    ------
    InvalidInputError
        An incidence outside [0, 90) degrees.
    """
    h = np.deg2rad(_angles("heading_deg", heading_deg))
    inc = _angles("incidence_deg", incidence_deg)
    bad = np.isfinite(inc) & ((inc < 0) | (inc >= 90))
    if bad.any():
        raise InvalidInputError(
            f"incidence_deg: must be in [0, 90) degrees from the vertical, got values up to "
            f"{float(np.nanmax(np.abs(inc))):.1f}; give the incidence in degrees (not the elevation angle, "
            "not radians)"
        )
    t = np.deg2rad(inc)
    h, t = np.broadcast_arrays(h, t)
    return np.stack([-np.sin(t) * np.cos(h), np.sin(t) * np.sin(h), np.cos(t)], axis=-1)


def azimuth_vector(heading_deg: ArrayLike) -> NDArray[np.float64]:
    """Along-track unit vector ``[sin h, cos h, 0]`` (``(..., 3)`` as [E, N, U]).

    Parameters
    ----------
    heading_deg
        Flight direction, degrees clockwise from north.

    Returns
    -------
    ndarray
        A displacement ``d`` seen in azimuth is ``d @ azimuth_vector(h)`` (positive along the flight).
    """
    h = np.deg2rad(_angles("heading_deg", heading_deg))
    return np.stack([np.sin(h), np.cos(h), np.zeros_like(h)], axis=-1)


class SlopeAspect(NamedTuple):
    """Terrain slope and aspect of a DEM.

    Attributes
    ----------
    slope_deg
        Slope angle from the horizontal, degrees, in [0, 90).
    aspect_deg
        Direction of steepest **descent**, degrees clockwise from north, in [0, 360); NaN on flat cells.
    """

    slope_deg: NDArray[np.float64]
    aspect_deg: NDArray[np.float64]


def slope_aspect(dem: ArrayLike, spacing_m: tuple[ArrayLike, ArrayLike]) -> SlopeAspect:
    """Slope and aspect of a north-up DEM by central differences.

    Parameters
    ----------
    dem
        ``(rows, cols)`` heights, metres; NaN = no data (its neighbours get NaN too). Rows run southward,
        columns eastward (a north-up grid).
    spacing_m
        ``(row_spacing, col_spacing)`` in metres, positive: scalars, or arrays broadcastable to the DEM
        (e.g. a per-row column spacing ``111320 * cos(lat)[:, None] * pixel_deg`` on a geographic grid).

    Returns
    -------
    SlopeAspect
        Slope and aspect in degrees (aspect = downslope direction, clockwise from north).

    Raises
    ------
    InvalidInputError
        A DEM that is not 2-D or smaller than 3 × 3, or a non-positive spacing.
    """
    z = np.asarray(dem, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 3:
        raise InvalidInputError(f"dem: need a 2-D array of at least 3 x 3 heights, got shape {z.shape}")
    dr = np.asarray(spacing_m[0], dtype=np.float64)
    dc = np.asarray(spacing_m[1], dtype=np.float64)
    if (dr <= 0).any() or (dc <= 0).any() or not (np.isfinite(dr).all() and np.isfinite(dc).all()):
        raise InvalidInputError("spacing_m: row and column spacings must be finite and positive, metres")
    dz_drow, dz_dcol = np.gradient(z)
    dz_de = dz_dcol / dc
    dz_dn = -dz_drow / dr  # rows run south
    grad = np.hypot(dz_de, dz_dn)
    slope = np.rad2deg(np.arctan(grad))
    with np.errstate(invalid="ignore"):
        aspect = np.where(grad > 0, np.rad2deg(np.arctan2(-dz_de, -dz_dn)) % 360.0, np.nan)
    return SlopeAspect(slope_deg=slope, aspect_deg=aspect)


def surface_normal(slope_deg: ArrayLike, aspect_deg: ArrayLike) -> NDArray[np.float64]:
    """Upward unit normal of a surface of given slope and aspect, ``(..., 3)`` as [E, N, U].

    Returns
    -------
    ndarray
        ``[sin s sin a, sin s cos a, cos s]``: a displacement parallel to the surface has a zero projection
        on it. Flat cells (NaN aspect, zero slope) give ``[0, 0, 1]``.
    """
    s = np.deg2rad(np.asarray(slope_deg, dtype=np.float64))
    a = np.deg2rad(np.nan_to_num(np.asarray(aspect_deg, dtype=np.float64), nan=0.0))
    s, a = np.broadcast_arrays(s, a)
    return np.stack([np.sin(s) * np.sin(a), np.sin(s) * np.cos(a), np.cos(s)], axis=-1)
