"""Small velocity and time-series NetCDF products with known values, laid out as the workflows write them.

A projected grid (UTM 7N) with a CF ``grid_mapping`` variable (``crs_wkt``), ``x``/``y`` node centres,
north-up; what :mod:`geodeform.workflows.maps` reads. The values are set here, so tests compare against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS

EPSG = 32607
ORIGIN = (350_000.0, 6_700_000.0)  # west, north edge of the grid, m
SPACING = 240.0  # m
SHAPE = (10, 12)  # y, x nodes
DATES = ("2020-01-06", "2020-01-22", "2020-02-07")


@dataclass(frozen=True)
class MapProducts:
    """Paths of the written products and the values they hold."""

    velocity: Path
    timeseries: Path
    x: np.ndarray
    y: np.ndarray
    v: np.ndarray  # m/yr, (y, x); NaN at the invalid nodes
    east: np.ndarray  # m, (time, y, x)
    north: np.ndarray


def _grid() -> tuple[np.ndarray, np.ndarray, xr.DataArray]:
    x = ORIGIN[0] + SPACING * (np.arange(SHAPE[1]) + 0.5)
    y = ORIGIN[1] - SPACING * (np.arange(SHAPE[0]) + 0.5)
    mapping = xr.DataArray(np.int32(0), attrs=CRS.from_epsg(EPSG).to_cf())
    return x, y, mapping


def velocity_field() -> np.ndarray:
    """Speed (m/yr): 10 + 2 * column + row; the first column and the top-left 3 x 3 corner invalid."""
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    v = (10.0 + 2.0 * cols + rows).astype("float32")
    v[:3, :3] = np.nan
    v[:, 0] = np.nan
    return v


def write_velocity(path: Path, *, components: bool = False, crs: bool = True) -> np.ndarray:
    """A velocity product at ``path`` (``v``, or only ``vx``/``vy`` with ``components``); its speed."""
    x, y, mapping = _grid()
    v = velocity_field()
    attrs = {"units": "m/yr", **({"grid_mapping": "mapping"} if crs else {})}
    if components:  # vx, vy: a 3-4-5 triangle, so that |v| is exact
        data = {"vx": (("y", "x"), 0.6 * v, attrs), "vy": (("y", "x"), -0.8 * v, attrs)}
    else:
        data = {"v": (("y", "x"), v, attrs)}
    ds = xr.Dataset(data, coords={"x": x, "y": y})
    if crs:
        ds["mapping"] = mapping
    ds.to_netcdf(path, engine="h5netcdf")
    return v


def write_products(folder: Path) -> MapProducts:
    """velocity.nc and timeseries.nc in ``folder``: east = t * (1 + column / 10) m, north = -t / 2 m at
    date index t, NaN in the first column at every date."""
    folder.mkdir(parents=True, exist_ok=True)
    x, y, mapping = _grid()
    v = write_velocity(folder / "velocity.nc")
    t = np.arange(len(DATES), dtype="float32")[:, None, None]
    cols = np.arange(SHAPE[1], dtype="float32")[None, None, :]
    east = np.broadcast_to(t * (1 + cols / 10), (len(DATES), *SHAPE)).copy()
    north = np.broadcast_to(-t / 2, (len(DATES), *SHAPE)).copy()
    east[:, :, 0] = north[:, :, 0] = np.nan
    attrs = {"units": "m", "grid_mapping": "mapping"}
    dims = ("time", "y", "x")
    ts = xr.Dataset(
        {
            "east": (dims, east, attrs),
            "north": (dims, north, attrs),
            "east_error": (dims, np.full_like(east, 0.25), attrs),
            "north_error": (dims, np.full_like(east, 0.5), attrs),
            "mapping": mapping,
        },
        coords={"time": pd.to_datetime(list(DATES)), "x": x, "y": y},
    )
    ts.to_netcdf(folder / "timeseries.nc", engine="h5netcdf")
    return MapProducts(folder / "velocity.nc", folder / "timeseries.nc", x, y, v, east, north)
