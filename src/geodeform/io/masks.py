"""Auxiliary maps read onto a grid: mask polygons (any OGR format) or rasters, DEM slopes, reference speeds.

Every reader resamples its source onto a :class:`geodeform.io.GeoGrid` (the grid of a job's images), so the
result can be combined pixel by pixel with the images. Errors name the config field the file came from
(``what``), so a bad file in a job config points at the line to fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import xarray as xr
from numpy.typing import NDArray
from rasterio.errors import CRSError, RasterioIOError
from rasterio.warp import Resampling, reproject

from geodeform.errors import DataError, InvalidInputError, NoDataError
from geodeform.io.grid import GeoGrid
from geodeform.io.product import dataset_grid, speed
from geodeform.io.vectors import is_vector_file, rasterize_vectors

__all__ = [
    "QA_CLOUD_BITS",
    "QA_FILL_BIT",
    "QA_MASKED_BITS",
    "SCL_CLOUD_CLASSES",
    "SCL_INVALID_CLASSES",
    "SCL_MASKED_CLASSES",
    "MaskCheck",
    "MaskRole",
    "SceneMask",
    "SceneMaskKind",
    "check_mask",
    "find_scene_mask",
    "mask_footprint",
    "mask_kind",
    "ndwi_water",
    "raster_on_grid",
    "read_mask",
    "read_scene_mask",
    "scene_mask",
    "scene_water",
    "slope_degrees",
    "speed_on_grid",
]

ResamplingName = Literal["nearest", "bilinear", "cubic"]


def raster_on_grid(
    path: str | os.PathLike[str], grid: GeoGrid, *, resampling: ResamplingName, fill: float
) -> NDArray[np.float64]:
    """Band 1 of a raster resampled onto ``grid`` (``fill`` outside it and on the raster's nodata).

    Raises
    ------
    rasterio.errors.RasterioIOError
        The file is not a readable raster (callers turn it into an error naming their field).
    rasterio.errors.CRSError
        The raster has no CRS.
    """
    dst = np.full(grid.shape, fill, dtype=np.float64)
    with rasterio.open(path) as src:
        if src.crs is None:  # GDAL would silently take the grid's CRS
            raise CRSError(f"{path} has no CRS")
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
    except CRSError:
        raise InvalidInputError(
            f"{what}: raster {p} has no CRS, so it cannot be placed on the job grid; georeference it "
            "(e.g. gdal_edit.py -a_srs EPSG:<code>) or give polygons"
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


# ------------------------------------------------------------------------------------------ checks of masks

MaskRole = Literal["glacier", "stable", "water"]
"""What a mask marks: moving ice (outside = stable ground), stable ground, or water."""


@dataclass(frozen=True)
class MaskCheck:
    """How a mask read onto a job grid covers it (:func:`check_mask`).

    Attributes
    ----------
    what
        Config field the mask came from (``masks.glacier``...).
    inside
        Share of the grid pixels inside the mask (True), 0-1.
    footprint
        Share of the grid pixels the source covers at all (1 for polygons: outside them is "not inside";
        a raster may cover only part of the grid), 0-1.
    warnings
        Named warnings (``"mask_partial_overlap: ..."``) for the log, the console and the report.
    """

    what: str
    inside: float
    footprint: float
    warnings: tuple[str, ...] = ()


def mask_footprint(path: str | os.PathLike[str], grid: GeoGrid) -> NDArray[np.bool_]:
    """Where a mask source says anything on ``grid``: everywhere for polygons, inside the extent (and off the
    nodata) of a raster.

    Raises
    ------
    InvalidInputError
        A raster without CRS.
    """
    p = Path(path)
    if is_vector_file(p) or not p.exists():
        return np.ones(grid.shape, dtype=bool)
    try:
        with rasterio.open(p) as src:
            if src.crs is None:
                raise CRSError(f"{p} has no CRS")
            ones = np.ones((src.height, src.width), dtype=np.uint8)
            if src.nodata is not None:
                ones[src.read(1) == src.nodata] = 0
            dst = np.zeros(grid.shape, dtype=np.uint8)
            reproject(
                ones,
                dst,
                src_transform=src.transform,
                src_crs=src.crs,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                resampling=Resampling.nearest,
                dst_nodata=0,
            )
    except RasterioIOError:
        return np.ones(grid.shape, dtype=bool)  # not a raster: polygons (read_mask names a bad file)
    except CRSError:
        raise InvalidInputError(
            f"{p} has no CRS; georeference it (gdal_edit.py -a_srs EPSG:<code>)"
        ) from None
    return dst > 0


def check_mask(
    mask: NDArray[np.bool_],
    grid: GeoGrid,
    *,
    what: str,
    role: MaskRole,
    footprint: NDArray[np.bool_] | None = None,
) -> MaskCheck:
    """Refuse a mask that cannot be right on this grid; name what is doubtful.

    Parameters
    ----------
    mask
        The mask on ``grid`` (:func:`read_mask`), True inside.
    grid
        The job's grid.
    what
        Config field of the mask, for the messages.
    role
        ``glacier``: the mask must cover some but not all of the grid (outside it is the stable ground);
        ``stable`` and ``water``: it must cover some of it.
    footprint
        Where the source covers the grid (:func:`mask_footprint`); None: everywhere.

    Returns
    -------
    MaskCheck
        With named warnings: ``mask_partial_overlap`` (a raster covering only part of the grid),
        ``mask_small`` (under 1 % of the grid inside), ``mask_large`` (a glacier mask over 95 % of it).

    Raises
    ------
    NoDataError
        The mask does not overlap the grid (empty on it), or a glacier mask covers all of it.
    """
    inside = float(mask.mean()) if mask.size else 0.0
    cover = 1.0 if footprint is None else float(footprint.mean())
    x0, y0, x1, y1 = grid.bounds
    area = (
        f"the job grid ({grid.shape[1]} x {grid.shape[0]} px, bounds {x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})"
    )
    if cover == 0 or inside == 0:
        raise NoDataError(
            f"{what}: the mask does not overlap {area}: nothing is inside it. Check that the file is for "
            "this area, that its CRS is right (a GeoJSON without 'crs' is longitude/latitude), and the AOI"
        )
    if role == "glacier" and inside >= 0.999:
        raise NoDataError(
            f"{what}: the glacier mask covers all of {area}, which leaves no stable ground to co-register "
            "on; give masks.stable (or a dem), or enlarge the AOI beyond the glacier"
        )
    notes = []
    if cover < 0.999:
        outside = "is left out of the stable ground" if role == "glacier" else "counts as outside the mask"
        notes.append(
            f"mask_partial_overlap: {what} covers only {cover:.0%} of the job grid; the rest {outside}"
        )
    if inside < 0.01:
        notes.append(f"mask_small: only {inside:.2%} of the job grid is inside {what}")
    if role == "glacier" and inside > 0.95:
        notes.append(f"mask_large: {what} covers {inside:.0%} of the job grid; little stable ground is left")
    return MaskCheck(what, inside, cover, tuple(notes))


# ------------------------------------------------------------------------- masks of the images themselves

SCL_INVALID_CLASSES = (0, 1)
"""Sentinel-2 SCL classes without a usable surface: no data, saturated or defective."""
SCL_CLOUD_CLASSES = (3, 8, 9, 10)
"""Sentinel-2 SCL cloud classes: cloud shadow, cloud (medium, high probability), thin cirrus."""
SCL_MASKED_CLASSES = SCL_INVALID_CLASSES + SCL_CLOUD_CLASSES
"""Sentinel-2 SCL classes masked in the images (snow and ice, class 11, are kept: a glacier's surface)."""
SCL_WATER_CLASS = 6
QA_FILL_BIT = 0
QA_CLOUD_BITS = (1, 2, 3, 4)
"""Landsat Collection 2 QA_PIXEL cloud bits: dilated cloud, cirrus, cloud, cloud shadow."""
QA_MASKED_BITS = (QA_FILL_BIT, *QA_CLOUD_BITS)
"""Landsat Collection 2 QA_PIXEL bits masked: fill and the cloud bits."""
QA_WATER_BIT = 7

SceneMaskKind = Literal["scl", "qa_pixel", "binary"]
"""How a mask raster is read: Sentinel-2 scene classes, Landsat QA bits, or 1 = masked."""

_LANDSAT_ID = re.compile(r"^(L[COTEM]0\d_[A-Z0-9]{4}_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2})_", re.IGNORECASE)


@dataclass(frozen=True)
class SceneMask:
    """A mask file of one image and how to read it.

    Attributes
    ----------
    path
        The mask file.
    kind
        :data:`SceneMaskKind` (``scl``, ``qa_pixel``, or ``binary`` for rasters and polygons, 1 = masked).
    found
        True when it was found next to the band, False when it was given.
    """

    path: Path
    kind: SceneMaskKind
    found: bool = False


def mask_kind(path: str | os.PathLike[str]) -> SceneMaskKind:
    """The kind of a mask file from its name: ``SCL`` -> scene classes, ``QA_PIXEL`` -> bits, else binary."""
    name = Path(path).name.upper()
    if "QA_PIXEL" in name:
        return "qa_pixel"
    if re.search(r"(^|[_.])SCL([_.]|$)", name):
        return "scl"
    return "binary"


def find_scene_mask(band_path: str | os.PathLike[str]) -> SceneMask | None:
    """The scene's own cloud mask next to a band file, or None.

    Looked for: ``SCL.tif`` (or ``.jp2``) in the same folder (Earth Search / element84 scene folders), the
    ``*_SCL_20m.jp2`` of a SAFE granule (``IMG_DATA/R20m``), and ``<Landsat product id>_QA_PIXEL.TIF`` next to
    a Landsat band (``..._SR_B4.TIF``, ``..._B4.TIF``).
    """
    p = Path(band_path)
    folder = p.parent
    if not folder.is_dir():
        return None
    lower = {q.name.lower(): q for q in folder.iterdir()}
    landsat = _LANDSAT_ID.match(p.name)
    if landsat:
        qa = lower.get(f"{landsat.group(1)}_qa_pixel.tif".lower())
        return SceneMask(qa, "qa_pixel", True) if qa is not None else None
    for name in ("scl.tif", "scl.tiff", "scl.jp2"):
        if name in lower and lower[name] != p:
            return SceneMask(lower[name], "scl", True)
    if folder.parent.name.upper() == "IMG_DATA":  # SAFE: IMG_DATA/R10m/..._B04_10m.jp2
        for sub in ("R20m", "R60m"):
            hits = sorted((folder.parent / sub).glob("*_SCL_*.jp2")) if (folder.parent / sub).is_dir() else []
            if hits:
                return SceneMask(hits[0], "scl", True)
    return None


def scene_mask(band_path: str | os.PathLike[str], given: str | None) -> SceneMask | None:
    """The mask of one image: ``given`` (a path, or ``"none"``), else the scene's own next to the band."""
    if given is not None:
        if given.strip().lower() == "none":
            return None
        return SceneMask(Path(given), mask_kind(given), False)
    return find_scene_mask(band_path)


def scene_codes(mask: SceneMask, grid: GeoGrid) -> NDArray[np.int64]:
    """Class codes / QA bits of an SCL or QA_PIXEL mask on ``grid`` (nearest neighbour; no data outside)."""
    fill = 1 if mask.kind == "qa_pixel" else 0  # QA bit 0 = fill; SCL 0 = no data
    try:
        raw = raster_on_grid(mask.path, grid, resampling="nearest", fill=float(fill))
    except RasterioIOError as exc:
        raise InvalidInputError(f"mask {mask.path}: cannot read it as a raster ({exc})") from None
    except CRSError:
        raise InvalidInputError(f"mask {mask.path} has no CRS; it cannot be placed on the image") from None
    return np.where(np.isfinite(raw), raw, fill).astype(np.int64)


def read_scene_mask(mask: SceneMask, grid: GeoGrid) -> NDArray[np.bool_]:
    """True where an image must not be used (cloud, cloud shadow, cirrus, no data, saturated) on ``grid``.

    SCL: classes :data:`SCL_MASKED_CLASSES` (snow and ice, class 11, are kept: on a glacier they are the
    surface); QA_PIXEL: bits :data:`QA_MASKED_BITS`; binary rasters: values > 0.5; polygons: inside.
    """
    if mask.kind == "binary":
        return read_mask(mask.path, grid, what=f"mask {mask.path.name}")
    codes = scene_codes(mask, grid)
    if mask.kind == "scl":
        return np.isin(codes, SCL_MASKED_CLASSES)
    bits = sum(1 << b for b in QA_MASKED_BITS)
    return (codes & bits) != 0


def scene_water(mask: SceneMask, grid: GeoGrid) -> NDArray[np.bool_] | None:
    """Water pixels of an SCL (class 6) or QA_PIXEL (bit 7) mask on ``grid``; None for other masks."""
    if mask.kind == "binary":
        return None
    codes = scene_codes(mask, grid)
    if mask.kind == "scl":
        return codes == SCL_WATER_CLASS
    return (codes & (1 << QA_WATER_BIT)) != 0


def ndwi_water(
    band_path: str | os.PathLike[str], grid: GeoGrid, *, threshold: float = 0.0
) -> NDArray[np.bool_]:
    """Water from the NDWI (McFeeters 1996) of the green and NIR bands next to a band file.

    NDWI = (green - NIR) / (green + NIR) > ``threshold`` (water reflects green and absorbs NIR). Bands looked
    for: ``B03`` and ``B08`` (Sentinel-2 scene folders), ``SR_B3`` and ``SR_B5`` (Landsat 8/9 products).

    Raises
    ------
    InvalidInputError
        The green or NIR band is not next to the band file.
    """
    p = Path(band_path)
    files = {q.name.upper(): q for q in p.parent.iterdir()} if p.parent.is_dir() else {}
    landsat = _LANDSAT_ID.match(p.name)
    if landsat:
        names = (f"{landsat.group(1)}_SR_B3.TIF".upper(), f"{landsat.group(1)}_SR_B5.TIF".upper())
    else:
        names = ("B03.TIF", "B08.TIF")
    if not all(n in files for n in names):
        raise InvalidInputError(
            f"masks.water = ndwi: the green and NIR bands ({', '.join(names)}) are not next to {p}; give a "
            "water mask file or 'scl'"
        )
    green = raster_on_grid(files[names[0]], grid, resampling="bilinear", fill=np.nan)
    nir = raster_on_grid(files[names[1]], grid, resampling="bilinear", fill=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndwi = (green - nir) / (green + nir)
    return np.nan_to_num(ndwi, nan=-1.0) > threshold
