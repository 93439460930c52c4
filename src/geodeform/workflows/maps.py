"""Map views of products: a speed overlay in lon/lat with its legend, and the time series at a point.

What the service's map page draws, computed from the product files alone (no web types): a velocity
product (``v``, or ``vx``/``vy``, on a projected ``x``/``y`` grid with a CF ``grid_mapping``) warped to
EPSG:4326 and coloured as a PNG, and the cumulative displacement of a ``timeseries.nc`` at the valid node
nearest a lon/lat point.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from numpy.typing import NDArray
from PIL import Image
from pyproj import CRS, Transformer
from rasterio.crs import CRS as RioCRS
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject

from geodeform.errors import DataError

__all__ = [
    "COLORMAP",
    "SERIES_SIGN_CONVENTION",
    "PointSeries",
    "SpeedOverlay",
    "colormap_stops",
    "grid_crs",
    "nice_ceiling",
    "point_series",
    "speed_overlay",
]

COLORMAP = "viridis"
SERIES_SIGN_CONVENTION = (
    "east: + toward increasing map x; north: + toward increasing map y; since the first date"
)


@dataclass(frozen=True)
class SpeedOverlay:
    """A speed map warped to EPSG:4326, as a PNG, with what a legend needs.

    Attributes
    ----------
    png
        RGBA PNG: ``COLORMAP`` from 0 (``vmin``) to ``vmax``; transparent where there is no data.
    bounds
        West, south, east, north of the image, degrees (EPSG:4326).
    units
        Units of the speed (the product's, normally m/yr).
    vmin, vmax
        Colour range: 0 and a rounded 98th percentile of the speed (:func:`nice_ceiling`).
    data_min, data_max
        Smallest and largest valid speed; None when no node is valid.
    valid_pct
        Valid nodes, % of the grid.
    crs
        CRS of the product's grid, as text (``EPSG:32607``).
    """

    png: bytes
    bounds: tuple[float, float, float, float]
    units: str
    vmin: float
    vmax: float
    data_min: float | None
    data_max: float | None
    valid_pct: float
    crs: str


@dataclass(frozen=True)
class PointSeries:
    """Cumulative displacement since the first date at one node of a time series.

    Signs: ``east`` + toward increasing map x, ``north`` + toward increasing map y
    (:data:`SERIES_SIGN_CONVENTION`).

    Attributes
    ----------
    dates
        Dates, ``YYYY-MM-DD``.
    east, north
        Displacement per date (NaN: no value), in ``units``.
    east_error, north_error
        1-sigma errors per date when the product has them, else None.
    units
        Units of the displacement (normally m).
    node_x, node_y
        Map coordinates of the node, in ``crs``.
    node_lon, node_lat
        The node in degrees (EPSG:4326).
    crs
        CRS of the product's grid, as text.
    distance_m
        Distance from the asked point to the node, map units (m).
    """

    dates: list[str]
    east: NDArray[np.float64]
    north: NDArray[np.float64]
    east_error: NDArray[np.float64] | None
    north_error: NDArray[np.float64] | None
    units: str
    node_x: float
    node_y: float
    node_lon: float
    node_lat: float
    crs: str
    distance_m: float


def grid_crs(ds: xr.Dataset, var: str) -> CRS:
    """CRS of ``var``'s grid from its CF ``grid_mapping`` variable (``crs_wkt`` or ``spatial_ref``).

    Raises
    ------
    DataError
        If the variable has no grid mapping with a CRS.
    """
    gm = ds[var].attrs.get("grid_mapping")
    attrs = ds[gm].attrs if gm and gm in ds.variables else {}
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    if not wkt:
        raise DataError("the velocity product has no CRS (grid_mapping)")
    return CRS.from_wkt(wkt)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 times a power of ten that is >= ``value``; 1 for
    a value that is not finite and positive."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(value))
    return next(m * mag for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * mag >= value)


def colormap_stops(n: int = 11) -> list[str]:
    """``n`` evenly spaced colours of :data:`COLORMAP`, as ``#rrggbb``, from its low end to its high end."""
    cmap = matplotlib.colormaps[COLORMAP]
    return [matplotlib.colors.to_hex(cmap(i / (n - 1))) for i in range(n)]


def _speed(ds: xr.Dataset) -> tuple[NDArray[np.float32], str]:
    """Speed (``v``, else the norm of ``vx``, ``vy``) and the name of the variable holding its attributes."""
    if "v" in ds:
        return ds["v"].values.astype("float32"), "v"
    if "vx" in ds and "vy" in ds:
        return np.hypot(ds["vx"].values, ds["vy"].values).astype("float32"), "vx"
    raise DataError("the product holds no velocity (v or vx/vy)")


def speed_overlay(path: Path | str) -> SpeedOverlay:
    """The speed map of the velocity product at ``path`` warped to EPSG:4326 and coloured.

    Nearest-neighbour warp, at least 512 pixels along the longer side so that node cells stay sharp.

    Raises
    ------
    DataError
        If the product holds no velocity, no CRS, or a grid under 2 x 2 nodes.
    """
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        speed, var = _speed(ds)
        units = str(ds[var].attrs.get("units", "m/yr"))
        crs = grid_crs(ds, var)
        x, y = ds["x"].values.astype(float), ds["y"].values.astype(float)
    if speed.ndim != 2 or len(x) < 2 or len(y) < 2:
        raise DataError("the velocity grid is too small to draw")
    if y[1] > y[0]:  # south-up storage: flip to north-up
        y, speed = y[::-1], speed[::-1]
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    src_transform = from_origin(x[0] - dx / 2, y[0] + dy / 2, dx, dy)
    h, w = speed.shape
    bounds = (x[0] - dx / 2, y[-1] - dy / 2, x[-1] + dx / 2, y[0] + dy / 2)
    src_crs, dst_crs = RioCRS.from_wkt(crs.to_wkt()), RioCRS.from_epsg(4326)
    scale = max(1, math.ceil(512 / max(w, h)))  # finer than the nodes so that the warp stays sharp
    dst_transform, dw, dh = calculate_default_transform(
        src_crs, dst_crs, w, h, *bounds, dst_width=w * scale, dst_height=h * scale
    )
    out = np.full((dh, dw), np.nan, dtype="float32")
    reproject(
        speed,
        out,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    valid = np.isfinite(out)
    vmax = nice_ceiling(float(np.nanpercentile(speed, 98))) if np.isfinite(speed).any() else 1.0
    rgba = matplotlib.colormaps[COLORMAP](np.clip(np.nan_to_num(out) / vmax, 0, 1), bytes=True)
    rgba[..., 3] = np.where(valid, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    west, north = dst_transform.c, dst_transform.f
    east, south = west + dst_transform.a * dw, north + dst_transform.e * dh
    finite = speed[np.isfinite(speed)]
    return SpeedOverlay(
        png=buf.getvalue(),
        bounds=(west, south, east, north),
        units=units,
        vmin=0.0,
        vmax=vmax,
        data_min=float(finite.min()) if finite.size else None,
        data_max=float(finite.max()) if finite.size else None,
        valid_pct=round(100.0 * finite.size / speed.size, 1),
        crs=crs.to_string(),
    )


def point_series(path: Path | str, lon: float, lat: float) -> PointSeries | None:
    """The displacement series of ``timeseries.nc`` at ``path`` at the valid node nearest (lon, lat).

    Parameters
    ----------
    path
        A time-series product: ``east``, ``north`` (and optionally ``east_error``, ``north_error``) on
        (time, y, x) with a CF ``grid_mapping``.
    lon, lat
        The point, degrees (EPSG:4326).

    Returns
    -------
    PointSeries or None
        None when no node has a valid value within 3 node spacings (at least 3 map units) of the point.

    Raises
    ------
    DataError
        If the product has no CRS.
    """
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        crs = grid_crs(ds, "east")
        px, py = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        x, y = ds["x"].values.astype(float), ds["y"].values.astype(float)
        valid = np.isfinite(ds["east"].values).any(axis=0)
        if not (math.isfinite(px) and math.isfinite(py)) or not valid.any():
            return None
        spacing = max(
            abs(float(x[1] - x[0])) if len(x) > 1 else 0, abs(float(y[1] - y[0])) if len(y) > 1 else 0
        )
        d2 = (x[None, :] - px) ** 2 + (y[:, None] - py) ** 2
        d2 = np.where(valid, d2, np.inf)
        i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
        dist = math.sqrt(float(d2[i, j]))
        if dist > 3 * max(spacing, 1.0):
            return None
        pick = {"y": int(i), "x": int(j)}
        east, north = (ds[k][pick].values.astype(float) for k in ("east", "north"))
        east_error, north_error = (
            ds[k][pick].values.astype(float) if k in ds else None for k in ("east_error", "north_error")
        )
        dates = [str(t)[:10] for t in ds["time"].values]
        units = str(ds["east"].attrs.get("units", "m"))
    node_lon, node_lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x[j], y[i])
    return PointSeries(
        dates=dates,
        east=east,
        north=north,
        east_error=east_error,
        north_error=north_error,
        units=units,
        node_x=float(x[j]),
        node_y=float(y[i]),
        node_lon=float(node_lon),
        node_lat=float(node_lat),
        crs=crs.to_string(),
        distance_m=dist,
    )
