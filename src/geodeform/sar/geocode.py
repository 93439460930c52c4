"""Geocoding radar-grid fields onto a map grid through the ground control points (and a DEM).

The map-to-radar mapping is GDAL's GCP transformer (``rasterio.transform.GCPTransformer``): a thin-plate
spline through the GCPs (exact at them; ``method="tps"``, default) or a least-squares polynomial
(``method="polynomial"``, GDAL's default order for the number of GCPs). Sentinel-1 GCPs (the annotation's
geolocation grid) sit on the terrain heights the processor used; with a ``dem``, the radar position of each
map cell is moved along range by the height difference between the DEM and the GCP surface (foreshortening:
``Δ ground range = −Δh / tan θ``, ``Δ slant range = −Δh cos θ``), so that steep terrain lands where the
radar saw it.

Pixel convention: radar coordinates are geodeform's (pixel centre (i, j) at (i, j)); GDAL's GCP row/col
are pixel-corner coordinates, i.e. ours + 0.5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
from numpy.typing import ArrayLike, NDArray
from rasterio.crs import CRS
from rasterio.transform import Affine, GCPTransformer
from rasterio.warp import Resampling, reproject
from rasterio.warp import transform as warp_transform
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.io import GeoGrid
from geodeform.sar.errors import SarProductError
from geodeform.sar.reader import S1Image

__all__ = ["GcpMethod", "RadarCoordinates", "map_grid", "radar_coordinates", "sample_nodes"]

GcpMethod = Literal["tps", "polynomial"]


def _footprint_lonlat(image: S1Image) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if not image.gcps:
        raise SarProductError(f"{image.path}: no ground control points; the image cannot be geocoded")
    lon = np.array([g.x for g in image.gcps])
    lat = np.array([g.y for g in image.gcps])
    return lon, lat


def map_grid(image: S1Image, resolution: float, *, crs: str | CRS | None = None) -> GeoGrid:
    """A north-up map grid covering the GCPs of ``image``.

    Parameters
    ----------
    image
        The radar image.
    resolution
        Cell size in CRS units (metres for UTM).
    crs
        Target CRS; default the UTM zone of the footprint's centre (WGS84).

    Returns
    -------
    GeoGrid
    """
    if not resolution > 0:
        raise InvalidInputError(f"resolution: must be > 0 (CRS units), got {resolution}")
    lon, lat = _footprint_lonlat(image)
    if crs is None:
        zone = int((float(lon.mean()) + 180) // 6) % 60 + 1
        dst = CRS.from_epsg((32600 if float(lat.mean()) >= 0 else 32700) + zone)
    else:
        dst = CRS.from_user_input(crs)
    xs, ys = warp_transform("EPSG:4326", dst, list(lon), list(lat))
    x0 = np.floor(min(xs) / resolution) * resolution
    y1 = np.ceil(max(ys) / resolution) * resolution
    w = int(np.ceil((max(xs) - x0) / resolution))
    h = int(np.ceil((y1 - min(ys)) / resolution))
    return GeoGrid(crs=dst, transform=Affine(resolution, 0, x0, 0, -resolution, y1), shape=(h, w))


@dataclass(frozen=True)
class RadarCoordinates:
    """Where every map cell lies in the radar image.

    Attributes
    ----------
    rows, cols
        ``grid.shape`` float64 radar pixel coordinates of the cell centres, relative to the image's ``data``
        (pixel centre convention); NaN outside the image.
    grid
        The map grid.
    terrain_corrected
        Whether a DEM moved the positions (foreshortening).
    """

    rows: NDArray[np.float64]
    cols: NDArray[np.float64]
    grid: GeoGrid
    terrain_corrected: bool


def _dem_on_grid(dem: ArrayLike | str | os.PathLike[str], grid: GeoGrid) -> NDArray[np.float64]:
    if isinstance(dem, (str, os.PathLike)):
        out = np.full(grid.shape, np.nan, dtype=np.float64)
        with rasterio.open(dem) as src:
            reproject(
                rasterio.band(src, 1),
                out,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
        return out
    arr = np.asarray(dem, dtype=np.float64)
    if arr.shape != grid.shape:
        raise InvalidInputError(f"dem: an array must be on the map grid {grid.shape}, got {arr.shape}")
    return arr


def radar_coordinates(
    image: S1Image,
    grid: GeoGrid,
    *,
    dem: ArrayLike | str | os.PathLike[str] | None = None,
    method: GcpMethod = "tps",
) -> RadarCoordinates:
    """Radar (row, col) of every cell centre of a map grid, through the image's GCPs (and a DEM).

    Parameters
    ----------
    image
        The radar image (its GCPs; with a DEM also its annotation: incidence, spacing, GCP heights).
    grid
        The map grid (any CRS).
    dem
        Heights (metres above the ellipsoid; a geoid height is a few tens of metres, i.e. a fraction of a
        pixel for 10 m pixels) on ``grid`` as an array, or a DEM file reprojected onto ``grid`` with GDAL.
    method
        ``"tps"`` (thin-plate spline, default) or ``"polynomial"``.

    Returns
    -------
    RadarCoordinates

    Raises
    ------
    MissingAnnotationError
        A DEM given for an image read without annotation.
    """
    if method not in ("tps", "polynomial"):
        raise InvalidInputError(f"method={method!r}; use 'tps' or 'polynomial'")
    _footprint_lonlat(image)
    h, w = grid.shape
    t = grid.transform
    cc, rr = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs = t.a * cc + t.b * rr + t.c
    ys = t.d * cc + t.e * rr + t.f
    lon, lat = warp_transform(grid.crs, "EPSG:4326", xs.ravel().tolist(), ys.ravel().tolist())
    with GCPTransformer(list(image.gcps), tps=method == "tps") as tr:
        r, c = tr.rowcol(np.asarray(lon), np.asarray(lat), op=np.positive)
    rows = np.asarray(r, np.float64).reshape(h, w) - 0.5 - image.window[0]
    cols = np.asarray(c, np.float64).reshape(h, w) - 0.5 - image.window[1]
    corrected = dem is not None
    if corrected:
        ann = image.require_annotation("terrain correction with a DEM")
        z = _dem_on_grid(dem, grid)  # type: ignore[arg-type]
        full_r, full_c = rows + image.window[0], cols + image.window[1]
        g = ann.geolocation
        dz = z - g.interpolate(g.height, full_r, full_c)
        theta = np.deg2rad(g.incidence(full_r, full_c))
        if ann.projection.lower().startswith("ground"):
            cols = cols - dz / np.tan(theta) / ann.range_pixel_spacing
        else:
            cols = cols - dz * np.cos(theta) / ann.range_pixel_spacing
    hi_r, hi_c = image.data.shape
    outside = ~((rows >= -0.5) & (rows <= hi_r - 0.5) & (cols >= -0.5) & (cols <= hi_c - 0.5))
    rows = np.where(outside | ~np.isfinite(cols), np.nan, rows)
    cols = np.where(np.isfinite(rows), cols, np.nan)
    return RadarCoordinates(rows=rows, cols=cols, grid=grid, terrain_corrected=corrected)


def sample_nodes(
    values: ArrayLike,
    node_rows: ArrayLike,
    node_cols: ArrayLike,
    coords: RadarCoordinates,
    *,
    order: Literal[0, 1] = 1,
) -> NDArray[np.float64]:
    """Sample a node-grid field (e.g. an offset map) at the radar positions of the map cells.

    Parameters
    ----------
    values
        ``(nr, nc)`` field on the regular node grid ``node_rows`` x ``node_cols`` (radar pixel centres).
    node_rows, node_cols
        Increasing, evenly spaced node centres.
    coords
        From :func:`radar_coordinates`.
    order
        1: bilinear (a NaN node makes its four cells NaN); 0: nearest node (for codes).

    Returns
    -------
    ndarray
        ``coords.grid.shape``; NaN outside the node grid and where the nodes are NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    nr = np.asarray(node_rows, np.float64)
    nc = np.asarray(node_cols, np.float64)
    if v.shape != (nr.size, nc.size):
        raise InvalidInputError(f"values: shape {v.shape} does not match the {nr.size} x {nc.size} nodes")
    sr = (nr[-1] - nr[0]) / max(nr.size - 1, 1) or 1.0
    sc = (nc[-1] - nc[0]) / max(nc.size - 1, 1) or 1.0
    fr = (coords.rows - nr[0]) / sr
    fc = (coords.cols - nc[0]) / sc
    inside = (fr >= -0.5) & (fr <= nr.size - 0.5) & (fc >= -0.5) & (fc <= nc.size - 0.5)
    fr_c = np.clip(np.nan_to_num(fr), 0, nr.size - 1)
    fc_c = np.clip(np.nan_to_num(fc), 0, nc.size - 1)
    if order == 0:
        out = v[np.rint(fr_c).astype(int), np.rint(fc_c).astype(int)]
    else:
        out = ndimage.map_coordinates(v, [fr_c, fc_c], order=1, mode="nearest", cval=np.nan)
    return np.where(inside & np.isfinite(fr) & np.isfinite(fc), out, np.nan)
