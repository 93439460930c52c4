"""FMask-style cloud and cloud-shadow detection from reflectances (kernel: arrays in, masks out).

For products without a cloud mask (Sentinel-2 L1C, Landsat Collection-2 L1), after Zhu & Woodcock (2012,
Fmask) and Qiu et al. (2019, Fmask 4.0), reduced to what the bands at hand allow. Every test that needs a
band is applied only when that band is given; red and near infrared are required.

Clouds
    1. Potential cloud pixels (FMask's basic test): NDVI < 0.8 and red above the clear-land ramp start
       (0.07); with SWIR-2, SWIR-2 > 0.03; with green + SWIR-1, NDSI < 0.8 and not snow (NDSI > 0.15 and
       NIR > 0.11, FMask's snow test); with blue, HOT = blue - 0.5 red - 0.08 > 0.
    2. Cloud probability = variability x brightness. Variability = 1 - max(|NDVI|, |NDSI|, whiteness) (the
       terms whose bands are given). Brightness: FMask 4.0 uses a HOT probability where thermal is missing;
       without blue we use the red ramp of Sen2Cor's first cloud test, 0 at red 0.07 to 1 at 0.25, and the
       HOT ramp (0.04 to 0.10) when blue is given.
    3. FMask's dynamic threshold: the 82.5th percentile of the probability over the clear pixels (not
       potential cloud) plus 0.2; potential cloud pixels above it are cloud. With a cirrus band (S2 B10,
       Landsat B9), cirrus reflectance > 0.01 is cloud too (Fmask 4.0). Objects thinner than one pixel are
       removed by an opening, then clouds are buffered by ``cloud_buffer_m``.

Shadows
    4. Potential shadow: near-infrared depressions (FMask's flood fill) at least ``shadow_depth`` (relative)
       deep, or vegetated (NDVI > 0.2) with a near infrared below ``dark_fraction`` of the clear median.
    5. Each cloud object is moved away from the sun for cloud-top heights ``min_height_m``..``max_height_m``
       and kept where at least ``min_similarity`` of it lands on potential shadow (FMask's object matching);
       the matched shadows grow into adjacent potential shadow within ``shadow_grow_m``.

Several dates (multi-temporal tests, after MAJA, Hagolle et al. 2010, and Tmask, Zhu & Woodcock 2014)
    6. When a clear-sky ``reference`` of the same grid is given (:func:`clear_reference` of the job's other
       dates), a pixel whose red exceeds the reference's by ``temporal_red_increase`` (Tmask's 0.04) is
       cloud, and any other pixel whose near infrared is darker than ``1 - shadow_depth`` of the
       reference's is shadow. The single-date clouds (step 3) are kept only where the pixel is brighter in
       red than its reference, and the single-date shadows only where it is darker in near infrared: a
       surface that is bright or dark on every date (bare soil, rock, dark water) is not cloud or shadow.
       Pixels without a reference keep the single-date result.

Reflectances are top-of-atmosphere (L1C) or surface (L2A) values in 0..1 with NaN = no data; the tests are
the same for both (clouds are bright in either). Without green and SWIR-1, snow and ice cannot be told from
clouds: the caller must say so (:attr:`CloudMask.snow_tested` is False).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.masks._kernels import fill_depressions, match_shadows

__all__ = ["CloudMask", "CloudOptions", "Reflectances", "clear_reference", "detect_clouds"]

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Reflectances:
    """Reflectance bands of one scene on one grid (0..1, NaN = no data); ``None`` = band not available.

    Attributes
    ----------
    red, nir
        Red (S2 B04, Landsat 8/9 B4, Landsat 7 B3) and near infrared (S2 B08, Landsat 8/9 B5, L7 B4).
    blue, green
        S2 B02 / B03; Landsat 8/9 B2 / B3 (Landsat 7 B1 / B2).
    swir16, swir22
        Short-wave infrared, 1.6 and 2.2 µm (S2 B11 / B12; Landsat 8/9 B6 / B7, Landsat 7 B5 / B7).
    cirrus
        1.38 µm cirrus band (S2 B10, Landsat 8/9 B9): top-of-atmosphere only.
    """

    red: F32
    nir: F32
    blue: F32 | None = None
    green: F32 | None = None
    swir16: F32 | None = None
    swir22: F32 | None = None
    cirrus: F32 | None = None

    def names(self) -> tuple[str, ...]:
        """Names of the bands given."""
        keys = ("red", "nir", "blue", "green", "swir16", "swir22", "cirrus")
        return tuple(k for k in keys if getattr(self, k) is not None)


@dataclass(frozen=True)
class CloudOptions:
    """Settings of :func:`detect_clouds` (defaults: FMask's where it has one; see the module notes).

    Attributes
    ----------
    probability_margin
        Added to the 82.5th percentile of the clear-pixel probability to form the cloud threshold (FMask 0.2).
    cloud_buffer_m, shadow_grow_m
        Cloud buffer and growth of matched shadows into adjacent dark pixels, metres.
    min_height_m, max_height_m
        Cloud-top heights tried when matching shadows, metres (FMask: 200 to 12 000 m).
    shadow_depth
        Minimum relative depth of a near-infrared depression, ``(filled - nir) / filled``.
    dark_fraction
        Near infrared below this share of the clear-pixel median is a potential shadow.
    min_similarity
        Share of a projected cloud object that must fall on potential shadow (FMask 0.3).
    min_object_px
        Smallest cloud object (pixels) whose shadow is searched.
    temporal_red_increase
        Multi-temporal test: red reflectance increase over the clear-sky reference that makes a cloud
        (Tmask's 0.04). Shadows use ``shadow_depth`` relative to the reference's near infrared.
    """

    probability_margin: float = 0.2
    cloud_buffer_m: float = 90.0
    shadow_grow_m: float = 500.0
    min_height_m: float = 200.0
    max_height_m: float = 12_000.0
    shadow_depth: float = 0.25
    dark_fraction: float = 0.5
    min_similarity: float = 0.3
    min_object_px: int = 3
    temporal_red_increase: float = 0.04


class CloudMask(NamedTuple):
    """Result of :func:`detect_clouds`.

    Attributes
    ----------
    cloud, shadow
        Boolean masks (shadow excludes cloud); no-data pixels are False in both.
    valid
        Pixels with red and near-infrared data.
    probability
        Cloud probability (float32, NaN = no data).
    threshold
        Probability threshold used (NaN when no clear pixel was left: every potential cloud pixel is cloud).
    snow_tested
        Whether snow/ice could be separated from clouds (green and SWIR-1 given).
    temporal_share
        Share of the valid pixels that had a clear-sky reference (multi-temporal tests; 0 = single date).
    """

    cloud: NDArray[np.bool_]
    shadow: NDArray[np.bool_]
    valid: NDArray[np.bool_]
    probability: F32
    threshold: float
    snow_tested: bool
    temporal_share: float = 0.0

    @property
    def cloud_or_shadow(self) -> NDArray[np.bool_]:
        """Cloud | shadow."""
        return self.cloud | self.shadow

    def cloud_pct(self) -> float:
        """Cloud + shadow share of the valid pixels, percent (NaN without valid pixel)."""
        n = int(self.valid.sum())
        return 100.0 * int((self.cloud_or_shadow & self.valid).sum()) / n if n else math.nan


def _ratio(a: F32, b: F32) -> F32:
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((a - b) / (a + b)).astype(np.float32)


def _potential_clouds(b: Reflectances, valid: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], F32, bool]:
    """FMask's basic test and the cloud probability (variability x brightness)."""
    ndvi = np.nan_to_num(_ratio(b.nir, b.red), nan=0.0)
    red = np.nan_to_num(b.red, nan=0.0)
    pcp = valid & (ndvi < 0.8) & (red > 0.07)
    variability = np.abs(ndvi)
    snow_tested = b.green is not None and b.swir16 is not None
    if snow_tested:
        ndsi = np.nan_to_num(_ratio(b.green, b.swir16), nan=0.0)  # type: ignore[arg-type]
        snow = (ndsi > 0.15) & (np.nan_to_num(b.nir, nan=0.0) > 0.11)
        pcp &= (ndsi < 0.8) & ~snow
        variability = np.maximum(variability, np.abs(ndsi))
    if b.swir22 is not None:
        pcp &= np.nan_to_num(b.swir22, nan=1.0) > 0.03
    if b.blue is not None and b.green is not None:
        visible = np.stack([b.blue, b.green, b.red])
        mean = np.nanmean(visible, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            white = np.nan_to_num(np.abs(visible - mean).sum(axis=0) / mean, nan=1.0)
        pcp &= white < 0.7
        variability = np.maximum(variability, white)
    if b.blue is not None:
        hot = np.nan_to_num(b.blue - 0.5 * b.red - 0.08, nan=-1.0)
        pcp &= hot > 0
        brightness = np.clip((hot + 0.08 - 0.04) / (0.10 - 0.04), 0.0, 1.0)
    else:
        brightness = np.clip((red - 0.07) / (0.25 - 0.07), 0.0, 1.0)
    prob = ((1.0 - np.clip(variability, 0.0, 1.0)) * brightness).astype(np.float32)
    prob[~valid] = np.nan
    return pcp, prob, snow_tested


def _shadows(
    b: Reflectances,
    cloud: NDArray[np.bool_],
    clear: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    *,
    sun_azimuth: float,
    sun_elevation: float,
    pixel_m: float,
    opts: CloudOptions,
) -> NDArray[np.bool_]:
    nir = np.where(valid, b.nir, np.nanmedian(b.nir[valid])).astype(np.float64)
    filled = fill_depressions(nir)
    reference = float(np.median(nir[clear])) if clear.any() else float(np.median(nir[valid]))
    with np.errstate(invalid="ignore", divide="ignore"):
        deep = (filled - nir) > opts.shadow_depth * filled
        shallow = (filled - nir) > 0.1 * filled
    ndvi = np.nan_to_num(_ratio(b.nir, b.red), nan=0.0)
    dark = (nir < opts.dark_fraction * reference) & (ndvi > 0.2)  # dark vegetation, not open water
    candidate = (deep | dark) & valid & ~cloud
    tan_zenith = math.tan(math.radians(90.0 - sun_elevation))
    az = math.radians(sun_azimuth)
    # Away from the sun: columns run east, rows run south on a north-up grid.
    step_row, step_col = math.cos(az), -math.sin(az)
    first = max(0, int(opts.min_height_m * tan_zenith / pixel_m))
    last = math.ceil(opts.max_height_m * tan_zenith / pixel_m)
    labels, n = ndimage.label(cloud, structure=np.ones((3, 3)))
    shadow = match_shadows(
        labels.astype(np.int64), n, candidate, cloud, first, last, step_row, step_col,
        opts.min_similarity, opts.min_object_px,
    )  # fmt: skip
    # A projected cloud outline is not the shadow's: keep its dark part, then grow into dark neighbours.
    shadow &= shallow | (nir < 0.75 * reference)
    grow = round(opts.shadow_grow_m / pixel_m)
    if grow > 0 and shadow.any():
        shadow |= ndimage.binary_dilation(shadow, iterations=grow) & candidate
    return shadow & valid


def clear_reference(dates: Sequence[Reflectances], masks: Sequence[CloudMask]) -> Reflectances:
    """Clear-sky reference of each pixel from other dates of the same grid (input of :func:`detect_clouds`).

    The reference red and near infrared are the darkest values of the pixel over the dates where its
    single-date ``masks`` saw no cloud, shadow or no data: clouds and haze only brighten both bands, so
    the minimum is the cleanest clear view. Where every date was flagged cloud, the reference red is the
    darkest red over all dates (shadows left out): a surface that is bright on every date (bare soil,
    rock) is its own reference, so it is not taken for a cloud; the near infrared stays NaN there (no
    shadow test against a cloud). NaN where no date has data.

    Raises
    ------
    InvalidInputError
        No date, a different number of masks, or dates of different shapes.
    """
    if not dates or len(dates) != len(masks):
        raise InvalidInputError(
            f"a clear reference needs one mask per date; got {len(dates)} dates, {len(masks)} masks"
        )
    if len({d.red.shape for d in dates}) != 1:
        raise InvalidInputError("the dates of a clear reference must share one grid")

    red = np.stack([d.red for d in dates])
    nir = np.stack([d.nir for d in dates])
    clear = np.stack([m.valid & ~m.cloud_or_shadow for m in masks])
    unshaded = np.stack([m.valid & ~m.shadow for m in masks])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: no such date
        red_clear = np.nanmin(np.where(clear, red, np.nan), axis=0)
        red_any = np.nanmin(np.where(unshaded, red, np.nan), axis=0)
        nir_clear = np.nanmin(np.where(clear, nir, np.nan), axis=0)
    red_ref = np.where(np.isfinite(red_clear), red_clear, red_any).astype(np.float32)
    return Reflectances(red=red_ref, nir=nir_clear.astype(np.float32))


def _temporal(
    b: Reflectances,
    reference: Reflectances,
    cloud: NDArray[np.bool_],
    shadow: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    opts: CloudOptions,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], float]:
    """Multi-temporal tests (module notes, step 6) -> cloud, shadow, share of pixels with a reference."""
    if reference.red.shape != b.red.shape or reference.nir.shape != b.nir.shape:
        raise InvalidInputError(
            f"the clear-sky reference ({reference.red.shape}) is not on the scene's grid ({b.red.shape})"
        )
    has = valid & np.isfinite(reference.red)
    has_nir = has & np.isfinite(reference.nir)
    with np.errstate(invalid="ignore"):
        brighter = np.nan_to_num(b.red - reference.red, nan=0.0)
        darker_nir = has_nir & (b.nir < reference.nir)
        new_cloud = has & (brighter > opts.temporal_red_increase)
        new_shadow = has_nir & ~new_cloud & (b.nir < (1.0 - opts.shadow_depth) * reference.nir)
    new_cloud = ndimage.binary_opening(new_cloud)
    cloud = (cloud & (~has | (brighter > 0))) | new_cloud
    shadow = ((shadow & (~has_nir | darker_nir)) | new_shadow) & ~cloud
    share = float(has.sum()) / max(1, int(valid.sum()))
    return cloud, shadow, share


def detect_clouds(
    bands: Reflectances,
    *,
    sun_azimuth: float | None,
    sun_elevation: float | None,
    pixel_m: float,
    options: CloudOptions | None = None,
    reference: Reflectances | None = None,
) -> CloudMask:
    """Cloud and cloud-shadow masks of one scene (FMask-style tests; see the module notes).

    Parameters
    ----------
    bands
        Reflectances on one north-up grid (rows southward, columns eastward), 0..1, NaN = no data.
    sun_azimuth, sun_elevation
        Sun position at acquisition, degrees (azimuth clockwise from north); from the STAC item
        (``view:sun_azimuth`` / ``view:sun_elevation``) or the metadata file. None: shadows are not searched.
    pixel_m
        Pixel size, metres (sets the shadow search distances and the buffers).
    options
        :class:`CloudOptions`.
    reference
        Clear-sky reference on the same grid (:func:`clear_reference` of other dates): adds the
        multi-temporal tests (module notes, step 6). None: single-date tests only.

    Returns
    -------
    CloudMask

    Raises
    ------
    InvalidInputError
        Bands of different shapes (or a reference on another grid), a sun below the horizon, or a
        non-positive pixel size.
    """
    opts = options or CloudOptions()
    shapes = {getattr(bands, k).shape for k in bands.names()}
    if len(shapes) != 1:
        raise InvalidInputError(f"cloud detection needs bands of one shape; got {sorted(shapes)}")
    if (sun_elevation is not None and not 0 < sun_elevation <= 90) or pixel_m <= 0:
        raise InvalidInputError(
            f"sun elevation {sun_elevation} deg / pixel size {pixel_m} m: need 0 < elevation <= 90 and a "
            "positive pixel size"
        )
    valid = np.isfinite(bands.red) & np.isfinite(bands.nir)
    pcp, prob, snow_tested = _potential_clouds(bands, valid)
    clear = valid & ~pcp
    if clear.sum() > 0.001 * max(1, valid.sum()):
        threshold = float(np.percentile(prob[clear], 82.5)) + opts.probability_margin
        cloud = pcp & (prob > threshold)
    else:  # FMask: no clear pixel to calibrate on, every potential cloud pixel is cloud
        threshold, cloud = math.nan, pcp.copy()
    if bands.cirrus is not None:
        cloud |= valid & (np.nan_to_num(bands.cirrus, nan=0.0) > 0.01)
    cloud = ndimage.binary_opening(cloud)
    if sun_azimuth is None or sun_elevation is None:
        shadow = np.zeros_like(cloud)
    else:
        shadow = _shadows(
            bands, cloud, clear, valid,
            sun_azimuth=sun_azimuth, sun_elevation=sun_elevation, pixel_m=pixel_m, opts=opts,
        )  # fmt: skip
    share = 0.0
    if reference is not None:
        cloud, shadow, share = _temporal(bands, reference, cloud, shadow, valid, opts)
    buffer = round(opts.cloud_buffer_m / pixel_m)
    if buffer > 0:
        cloud = ndimage.binary_dilation(cloud, iterations=buffer) & valid
    return CloudMask(cloud, shadow & ~cloud, valid, prob, threshold, snow_tested, share)
