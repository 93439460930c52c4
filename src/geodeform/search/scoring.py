"""AOI scoring: cloud % and valid-data % computed on the AOI from the SCL (S2 L2A) or QA_PIXEL (Landsat) band.

Kernels (:func:`scl_scores`, :func:`qa_pixel_scores`) work on arrays; :func:`score_asset` reads only the
AOI window of a (cloud-optimised) GeoTIFF with rasterio windows, so a remote COG costs a few range requests.

Definitions, over the AOI pixels (pixel centres inside the AOI polygon; AOI parts beyond the raster count
as missing data):

* valid-data % = pixels with data / AOI pixels. SCL: not 0 (no data) nor 1 (saturated/defective).
  QA_PIXEL: fill bit 0 not set.
* cloud % = cloudy pixels / valid pixels. SCL classes 3 (cloud shadow), 8 (cloud medium probability),
  9 (cloud high probability), 10 (thin cirrus). QA_PIXEL bits 1 (dilated cloud), 2 (cirrus), 3 (cloud),
  4 (cloud shadow). NaN when no pixel is valid.

Collections without a mask band (Sentinel-2 L1C, Landsat C2 L1 without QA_PIXEL) are scored the same way
from the FMask-style cloud + shadow mask of :mod:`geodeform.masks` (:func:`spectral_scores`): valid = red
and near infrared have data, cloudy = cloud or cloud shadow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geodeform.errors import DataError, InvalidInputError
from geodeform.io.aoi import AOIGrid, SceneRef, aoi_grid, band_resolution
from geodeform.io.masks import QA_CLOUD_BITS, QA_FILL_BIT, SCL_CLOUD_CLASSES, SCL_INVALID_CLASSES
from geodeform.io.raster import gdal_path
from geodeform.masks import scene_cloud_mask
from geodeform.search.area import AOI

__all__ = [
    "QA_CLOUD_BITS",
    "SCL_CLOUD_CLASSES",
    "SCL_INVALID_CLASSES",
    "AOIScore",
    "qa_pixel_scores",
    "scl_scores",
    "score_asset",
    "spectral_scores",
]

log = logging.getLogger(__name__)

# Pixel size of the spectral AOI score: coarse enough to read many scenes, fine enough for small clouds.
SPECTRAL_SCORE_M = 60.0
# Reading more than this many pixels of the mask over a large AOI uses an overview (nearest, classes kept).
MAX_SCORE_PIXELS = 4_000_000


@dataclass(frozen=True)
class AOIScore:
    """Cloud and valid-data shares of an AOI in one scene.

    Attributes
    ----------
    cloud_pct
        Cloudy share of the valid AOI pixels, percent (NaN if none is valid).
    valid_pct
        Share of AOI pixels with usable data, percent.
    n_pixels
        Number of mask pixels inside the AOI that were counted.
    """

    cloud_pct: float
    valid_pct: float
    n_pixels: int


def _shares(valid: NDArray[np.bool_], cloudy: NDArray[np.bool_], inside: NDArray[np.bool_]) -> AOIScore:
    n = int(inside.sum())
    if n == 0:
        return AOIScore(math.nan, 0.0, 0)
    n_valid = int((valid & inside).sum())
    cloud = 100.0 * int((cloudy & valid & inside).sum()) / n_valid if n_valid else math.nan
    return AOIScore(cloud, 100.0 * n_valid / n, n)


def scl_scores(scl: NDArray[np.integer], *, inside: NDArray[np.bool_] | None = None) -> AOIScore:
    """Score a Sentinel-2 scene classification (SCL) array.

    Parameters
    ----------
    scl
        SCL class codes (0-11).
    inside
        Pixels of the AOI (default: all).
    """
    inside = np.ones(scl.shape, bool) if inside is None else inside
    valid = ~np.isin(scl, SCL_INVALID_CLASSES)
    return _shares(valid, np.isin(scl, SCL_CLOUD_CLASSES), inside)


def qa_pixel_scores(qa: NDArray[np.integer], *, inside: NDArray[np.bool_] | None = None) -> AOIScore:
    """Score a Landsat Collection 2 QA_PIXEL bit-flag array.

    Parameters
    ----------
    qa
        QA_PIXEL values (uint16 bit flags).
    inside
        Pixels of the AOI (default: all).
    """
    inside = np.ones(qa.shape, bool) if inside is None else inside
    qa = qa.astype(np.uint32)
    valid = (qa & (1 << QA_FILL_BIT)) == 0
    cloud_mask = sum(1 << b for b in QA_CLOUD_BITS)
    return _shares(valid, (qa & cloud_mask) != 0, inside)


def score_asset(href: str, kind: str, aoi: AOI, *, max_pixels: int = MAX_SCORE_PIXELS) -> AOIScore:
    """Read the AOI window of a mask asset and score it.

    Parameters
    ----------
    href
        Local path or URL of the SCL / QA_PIXEL raster (COG preferred: only the window is fetched).
    kind
        ``"scl"`` or ``"qa_pixel"``.
    aoi
        Area of interest.
    max_pixels
        Above this window size an overview is read instead (nearest resampling keeps class codes).

    Raises
    ------
    DataError
        The raster cannot be opened or read, or has no CRS.
    """
    import rasterio
    from affine import Affine
    from rasterio.errors import RasterioError
    from rasterio.features import geometry_mask
    from rasterio.warp import transform_geom
    from rasterio.windows import Window, from_bounds
    from shapely.geometry import shape

    if kind not in ("scl", "qa_pixel"):
        raise InvalidInputError(f"unknown mask kind {kind!r}; use 'scl' or 'qa_pixel'")
    fill = 0 if kind == "scl" else 1 << QA_FILL_BIT
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(gdal_path(href)) as src:
            if src.crs is None:
                raise DataError(f"mask raster {href} has no CRS; it cannot be matched to the AOI")
            geom = transform_geom("EPSG:4326", src.crs, aoi.geometry.__geo_interface__)
            window = from_bounds(*shape(geom).bounds, transform=src.transform)
            window = Window(
                math.floor(window.col_off),
                math.floor(window.row_off),
                math.ceil(window.width) + 1,
                math.ceil(window.height) + 1,
            )
            full = Window(0, 0, src.width, src.height)
            if not _overlaps(window, full):
                return AOIScore(math.nan, 0.0, int(window.width * window.height))
            scale = max(1.0, math.sqrt(window.width * window.height / max_pixels))
            shape_out = (max(1, round(window.height / scale)), max(1, round(window.width / scale)))
            data = src.read(1, window=window, out_shape=shape_out, boundless=True, fill_value=fill)
            t = src.window_transform(window)
            sx, sy = window.width / shape_out[1], window.height / shape_out[0]
            win_transform = Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)
    except RasterioError as exc:
        raise DataError(f"cannot read mask band {href}: {exc}") from exc
    inside = geometry_mask([geom], out_shape=data.shape, transform=win_transform, invert=True)
    if not inside.any():  # AOI smaller than a pixel: count the pixels it touches
        inside = geometry_mask(
            [geom], out_shape=data.shape, transform=win_transform, invert=True, all_touched=True
        )
    return scl_scores(data, inside=inside) if kind == "scl" else qa_pixel_scores(data, inside=inside)


def _overlaps(a: Any, b: Any) -> bool:
    from rasterio.windows import WindowError, intersection

    try:
        intersection(a, b)
    except WindowError:
        return False
    return True


def spectral_scores(
    scene: Any,
    aoi: AOI,
    *,
    resolution: float | None = None,
    cache_dir: str | None = None,
    references: Sequence[Any] = (),
) -> AOIScore:
    """Score a scene without a mask band from its FMask-style cloud + shadow mask on the AOI.

    Parameters
    ----------
    scene
        :class:`geodeform.search.Scene` with ``red`` and ``nir`` / ``nir08`` assets.
    aoi
        Area of interest.
    resolution
        Pixel size of the detection, metres (default: the red band's own, but not finer than 60 m).
    cache_dir
        Cache of the AOI reads.
    references
        Other dates of the AOI (scenes): adds the multi-temporal cloud tests (see
        :func:`geodeform.masks.scene_cloud_mask`). A catalogue search scores each scene alone (empty).

    Raises
    ------
    DataError
        The bands cannot be read.
    InvalidInputError
        The scene has no red or no near-infrared band.
    """
    from rasterio.features import geometry_mask

    ref = SceneRef.from_any(scene)
    res = resolution or max(band_resolution(ref, "red"), SPECTRAL_SCORE_M)
    grid: AOIGrid = aoi_grid(aoi, res)
    mask = scene_cloud_mask(scene, grid, references=references, cache_dir=cache_dir)
    if mask is None:
        raise InvalidInputError(f"scene {ref.id} has no red or no near-infrared band to detect clouds with")
    geom = aoi.projected(grid.epsg)
    inside = geometry_mask([geom], out_shape=(grid.height, grid.width), transform=grid.transform, invert=True)
    if not inside.any():
        inside = geometry_mask(
            [geom],
            out_shape=(grid.height, grid.width),
            transform=grid.transform,
            invert=True,
            all_touched=True,
        )
    return _shares(mask.valid, mask.cloud_or_shadow, inside)
