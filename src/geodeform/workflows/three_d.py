"""Slope-parallel 3-D velocity of an optical job (``three_d: true``, e.g. the ``slide`` preset).

Optical offset tracking measures east and north; the up component of a landslide or glacier moving parallel
to its surface follows from the terrain: ``U = −tan(s) (E sin a + N cos a)`` (slope ``s``, downslope aspect
``a``, :func:`geodeform.decompose.slope_parallel`). The DEM is resampled bilinearly onto the job's image
grid, its slope and aspect taken there by central differences and sampled at the velocity nodes, and
east/north/up solved per node with their covariance (:func:`geodeform.decompose.solve_enu`).

``<run>/velocity_3d.nc|.tif``: ``east``, ``north``, ``up`` (m/yr, +east/+north/+up) and their 1-σ, ``slope``
and ``aspect`` (degrees), ``reason`` (:class:`geodeform.decompose.EnuReason`) and ``low_slope`` (1 where the
slope is under :data:`LOW_SLOPE_DEG`: up is then close to zero by assumption, not by measurement).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from scipy import ndimage

from geodeform.decompose import (
    COMPONENTS,
    EnuReason,
    EnuResult,
    Observation,
    slope_aspect,
    slope_parallel,
    solve_enu,
)
from geodeform.errors import InvalidInputError
from geodeform.io import GeoGrid, write_cog, write_netcdf
from geodeform.io.masks import raster_on_grid

__all__ = ["LOW_SLOPE_DEG", "enu_reason_variable", "enu_variables", "velocity_3d", "write_velocity_3d"]

log = logging.getLogger("geodeform.workflows")

LOW_SLOPE_DEG = 5.0
"""Below this slope (degrees) the slope-parallel up is flagged ``low_slope``: it is the assumption's zero."""

PARALLEL_SIGMA = 0.01
"""Allowed departure from surface-parallel flow, a fraction of the horizontal 1-σ (near-hard constraint)."""


def _terrain(dem: str | Path, grid: GeoGrid, x: NDArray[Any], y: NDArray[Any]) -> tuple[NDArray, NDArray]:
    """Slope and aspect (degrees) at the nodes (x, y): the DEM's gradient on the fine image grid, sampled."""
    z = raster_on_grid(dem, grid, resampling="bilinear", fill=np.nan)
    if not np.isfinite(z).any():
        raise InvalidInputError(f"three_d: the DEM {dem} does not cover the job's grid; give one that does")
    sa = slope_aspect(z, (abs(grid.transform.e), abs(grid.transform.a)))
    t = np.tan(np.radians(sa.slope_deg))
    down_e, down_n = t * np.sin(np.radians(sa.aspect_deg)), t * np.cos(np.radians(sa.aspect_deg))
    xx, yy = np.meshgrid(x, y)
    inv = ~grid.transform
    cols, rows = inv * (xx, yy)
    at = [np.asarray(rows) - 0.5, np.asarray(cols) - 0.5]
    e = ndimage.map_coordinates(down_e, at, order=1, mode="constant", cval=np.nan)
    n = ndimage.map_coordinates(down_n, at, order=1, mode="constant", cval=np.nan)
    slope = np.degrees(np.arctan(np.hypot(e, n)))
    aspect = np.degrees(np.arctan2(e, n)) % 360.0
    return slope, aspect


def _var(values: NDArray[Any], long_name: str, units: str) -> xr.Variable:
    return xr.Variable(
        ("y", "x"),
        np.asarray(values, np.float32),
        {"long_name": long_name, "units": units, "grid_mapping": "mapping"},
    )


def enu_variables(res: EnuResult) -> dict[str, xr.Variable]:
    """The east, north and up velocities of an ENU solution and their 1-sigma errors (m/yr, + east, + north,
    + up), float32 on ``(y, x)``, named ``east``, ``east_error``, ``north``..."""
    out: dict[str, xr.Variable] = {}
    for k, c in enumerate(COMPONENTS):
        out[c] = _var(getattr(res, c), f"{c} velocity, + {c}", "m/yr")
        out[f"{c}_error"] = _var(np.sqrt(res.covariance[..., k, k]), f"1-sigma of {c}", "m/yr")
    return out


def enu_reason_variable(reason: NDArray[Any], *, grid_mapping: bool) -> xr.Variable:
    """The per-cell :class:`~geodeform.decompose.EnuReason` codes as a CF flag variable on ``(y, x)``
    (``grid_mapping``: name the product's ``mapping`` variable in its attributes)."""
    codes = {int(r): r.name for r in EnuReason}
    attrs: dict[str, Any] = {
        "long_name": "why a component is NaN",
        "flag_values": list(codes),
        "flag_meanings": " ".join(codes.values()),
    }
    if grid_mapping:
        attrs["grid_mapping"] = "mapping"
    return xr.Variable(("y", "x"), reason, attrs)


def velocity_3d(velocity: xr.Dataset, dem: str | Path, grid: GeoGrid) -> xr.Dataset:
    """East/north/up velocity from an optical velocity product (``vx``, ``vy`` m/yr) and a DEM.

    Parameters
    ----------
    velocity
        A velocity composite or pair product: ``vx`` (+east), ``vy`` (+north), m/yr, with ``vx_error`` /
        ``vy_error`` (1-σ) when known (else the horizontal components get unit weight and the up 1-σ is
        relative), on a projected north-up grid (metres).
    dem
        Heights, metres, any CRS GDAL can reproject.
    grid
        The job's image grid (``velocity``'s x/y are positions on it): the DEM's slope is taken at this
        resolution, then sampled at the nodes, so the terrain is not smoothed to the node spacing.

    Returns
    -------
    xr.Dataset
        See the module docstring.

    Raises
    ------
    InvalidInputError
        A grid that is not projected, or a DEM that does not cover it.
    """
    if not grid.crs.is_projected:
        raise InvalidInputError("three_d: the job grid is not projected (metres); use a UTM grid")
    slope, aspect = _terrain(dem, grid, velocity["x"].values, velocity["y"].values)
    vx, vy = velocity["vx"].values.astype(np.float64), velocity["vy"].values.astype(np.float64)
    ex = velocity["vx_error"].values if "vx_error" in velocity else np.ones_like(vx)
    ey = velocity["vy_error"].values if "vy_error" in velocity else np.ones_like(vy)
    ex = np.where(np.isfinite(ex) & (ex > 0), ex, np.nan)
    ey = np.where(np.isfinite(ey) & (ey > 0), ey, np.nan)
    horizontal = np.nanmedian(np.r_[ex.ravel(), ey.ravel()]) if np.isfinite(ex).any() else 1.0
    ex = np.where(np.isfinite(ex), ex, horizontal)
    ey = np.where(np.isfinite(ey), ey, horizontal)
    obs = [
        Observation(vx, "east", sigma=ex, name="east"),
        Observation(vy, "north", sigma=ey, name="north"),
        slope_parallel(slope, aspect, sigma=PARALLEL_SIGMA * float(horizontal)),
    ]
    res = solve_enu(obs)
    ds = xr.Dataset(coords={"y": velocity["y"], "x": velocity["x"]})
    if "mapping" in velocity:
        ds["mapping"] = velocity["mapping"]
    ds.update(enu_variables(res))
    ds["slope"] = _var(slope, "terrain slope from the DEM", "degree")
    ds["aspect"] = _var(aspect, "downslope direction, clockwise from north", "degree")
    ds["reason"] = enu_reason_variable(res.reason, grid_mapping=False)
    low = np.isfinite(slope) & (slope < LOW_SLOPE_DEG)
    ds["low_slope"] = xr.Variable(
        ("y", "x"),
        low.astype(np.uint8),
        {"long_name": f"1: slope under {LOW_SLOPE_DEG:g} degrees, up is ~0 by the slope-parallel assumption"},
    )
    ds.attrs.update(
        {k: v for k, v in velocity.attrs.items() if k.startswith(("geodeform_preset", "geodeform_job"))}
    )
    ds.attrs.update(
        {
            "title": "geodeform slope-parallel 3-D velocity",
            "sign_convention": "east: + east; north: + north; up: + up (m/yr)",
            "geodeform_three_d": json.dumps(
                {
                    "dem": str(dem),
                    "assumption": "flow parallel to the ground surface",
                    "low_slope_deg": LOW_SLOPE_DEG,
                }
            ),
            "geodeform_enu_summary": res.summary(),
        }
    )
    return ds


def write_velocity_3d(
    velocity: xr.Dataset, dem: str | Path, grid: GeoGrid, run_dir: Path, formats: tuple[str, ...] | list[str]
) -> dict[str, Path]:
    """:func:`velocity_3d` written as ``velocity_3d.nc`` (and ``.tif``); the products by name."""
    ds = velocity_3d(velocity, dem, grid)
    low = float(ds["low_slope"].values.mean())
    log.info("slope-parallel 3-D: %s", ds.attrs["geodeform_enu_summary"])
    if low > 0.2:
        log.warning(
            "three_d: %.0f%% of the grid is flatter than %g degrees: up is ~0 there by assumption",
            100 * low,
            LOW_SLOPE_DEG,
        )
    out: dict[str, Path] = {"velocity_3d_nc": write_netcdf(ds, run_dir / "velocity_3d.nc")}
    if "cog" in formats:
        bands = ("east", "north", "up", "east_error", "north_error", "up_error")
        out["velocity_3d_tif"] = write_cog(ds, run_dir / "velocity_3d.tif", bands=bands)
    return out
