"""Auxiliary maps read onto a grid: mask polygons (any OGR format) or rasters, DEM slopes, reference speeds.

Every reader resamples its source onto a :class:`geodeform.io.GeoGrid` (the grid of a job's images), so the
result can be combined pixel by pixel with the images. Errors name the config field the file came from
(``what``), so a bad file in a job config points at the line to fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import xarray as xr
from numpy.typing import NDArray
from rasterio.errors import RasterioIOError
from rasterio.warp import Resampling, reproject

from geodeform.errors import DataError, InvalidInputError
from geodeform.io.grid import GeoGrid
from geodeform.io.product import dataset_grid, speed
from geodeform.io.vectors import is_vector_file, rasterize_vectors

__all__ = ["raster_on_grid", "read_mask", "slope_degrees", "speed_on_grid"]

ResamplingName = Literal["nearest", "bilinear", "cubic"]


def raster_on_grid(
    path: str | os.PathLike[str], grid: GeoGrid, *, resampling: ResamplingName, fill: float
) -> NDArray[np.float64]:
    """Band 1 of a raster resampled onto ``grid`` (``fill`` outside it and on the raster's nodata).

    Raises
    ------
    rasterio.errors.RasterioIOError
        The file is not a readable raster (callers turn it into an error naming their field).
    """
    dst = np.full(grid.shape, fill, dtype=np.float64)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, 1),
            dst,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling[resampling],
            dst_nodata=fill,
        )
    return dst


def read_mask(path: str | os.PathLike[str], grid: GeoGrid, *, what: str) -> NDArray[np.bool_]:
    """A mask on ``grid``: True inside the polygons of a vector file, or where a raster is > 0.5.

    Parameters
    ----------
    path
        A vector file in any OGR format (GeoJSON, shapefile or zipped shapefile, GeoPackage, KML,
        FlatGeobuf...; see :func:`geodeform.io.vectors.read_vectors` for the CRS rules), or any raster GDAL
        reads (resampled with nearest neighbour).
    grid
        Target grid.
    what
        Name of the config field the path came from (e.g. ``"masks.glacier"``), used in error messages.

    Raises
    ------
    InvalidInputError
        Missing file, empty layer, no polygon, no CRS that can be assumed, or a file that is neither a vector
        file nor a raster.
    NoDataError
        The polygons do not overlap the grid (a silent empty mask would change the results).
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{what}: file {p} not found")
    if is_vector_file(p):
        try:
            return rasterize_vectors(p, grid, what=what)
        except DataError as exc:  # a broken file given in a config is a bad input, not a data fault
            raise InvalidInputError(str(exc)) from None
    try:
        dst = raster_on_grid(p, grid, resampling="nearest", fill=0.0)
    except RasterioIOError:
        try:
            return rasterize_vectors(p, grid, what=what)
        except DataError:
            raise InvalidInputError(
                f"{what}: cannot read {p} as a raster nor as a vector file; give a GeoTIFF (1 = inside) or "
                "polygons (GeoJSON, shapefile, GeoPackage, KML, FlatGeobuf)"
            ) from None
    return dst > 0.5


def slope_degrees(dem_path: str | os.PathLike[str], grid: GeoGrid) -> NDArray[np.float64]:
    """Terrain slope (degrees from horizontal) of a DEM resampled bilinearly onto ``grid``; NaN outside it."""
    dem = raster_on_grid(dem_path, grid, resampling="bilinear", fill=np.nan)
    gy, gx = np.gradient(dem, abs(grid.transform.e), abs(grid.transform.a))
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def speed_on_grid(path: str | os.PathLike[str], grid: GeoGrid, *, what: str) -> NDArray[np.float64]:
    """Speed (m/yr) of a velocity map resampled bilinearly onto ``grid``; NaN where it has no value.

    Parameters
    ----------
    path
        A velocity product (NetCDF with ``v`` or ``vx``/``vy`` and a grid mapping, e.g. a previous run's
        ``velocity.nc`` or an ITS_LIVE mosaic written by geodeform) or a single-band speed raster.
    grid
        Target grid.
    what
        Name of the config field the path came from, used in error messages.

    Raises
    ------
    InvalidInputError
        Missing file, or a NetCDF without ``v`` nor ``vx``/``vy``.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{what}: file {p} not found")
    if p.suffix != ".nc":
        return raster_on_grid(p, grid, resampling="bilinear", fill=np.nan)
    with xr.open_dataset(p, engine="h5netcdf") as ds:
        values = speed(ds)
        if values is None:
            raise InvalidInputError(f"{what}: {p} has neither v nor vx/vy")
        src_grid = dataset_grid(ds)
    dst = np.full(grid.shape, np.nan)
    reproject(
        values,
        dst,
        src_transform=src_grid.transform,
        src_crs=src_grid.crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        resampling=Resampling.bilinear,
        src_nodata=np.nan,
        dst_nodata=np.nan,
    )
    return dst
