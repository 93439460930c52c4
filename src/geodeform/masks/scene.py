"""Cloud masks of catalogue scenes without a mask band: read the reflectance bands on a grid, run the tests.

Bands are read through :func:`geodeform.io.aoi.read_aoi` (AOI window only, cached) under their Earth Search
asset keys; digital numbers become reflectances with the product's own scaling:

* Sentinel-2 L1C / L2A: ``DN / 10000``, after the ``-1000`` radiometric offset of processing baseline 04.00+
  unless the item says it was applied (``earthsearch:boa_offset_applied``);
* Landsat Collection-2 L1: top-of-atmosphere ``(2e-5 DN - 0.1) / sin(sun elevation)``;
* Landsat Collection-2 L2: surface reflectance ``2.75e-5 DN - 0.2``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from geodeform.io.aoi import AOIGrid, SceneRef, read_aoi
from geodeform.masks.spectral import CloudMask, CloudOptions, Reflectances, clear_reference, detect_clouds

__all__ = ["SceneBands", "reflectance_scaling", "scene_cloud_mask", "scene_reflectances", "sun_angles"]

log = logging.getLogger(__name__)

_OPTIONAL = ("blue", "green", "swir16", "swir22", "cirrus")
_NIR_KEYS = ("nir", "nir08")  # S2 B08 is ``nir``; Landsat OLI B5 is ``nir08`` (S2 ``nir08`` is B8A)
_LANDSAT_ID = re.compile(r"^L[COTEM]0\d_(L1|L2)")


def sun_angles(properties: Mapping[str, Any]) -> tuple[float, float] | None:
    """(azimuth, elevation) of the sun in degrees from STAC properties (``view:`` or ``eo:`` names)."""
    for prefix in ("view:", "eo:", "s2:mean_solar_"):
        az, el = properties.get(f"{prefix}sun_azimuth"), properties.get(f"{prefix}sun_elevation")
        if az is not None and el is not None:
            return float(az), float(el)
    az, zen = properties.get("s2:mean_solar_azimuth"), properties.get("s2:mean_solar_zenith")
    if az is not None and zen is not None:
        return float(az), 90.0 - float(zen)
    return None


def reflectance_scaling(scene_id: str, properties: Mapping[str, Any]) -> tuple[float, float, bool]:
    """``(gain, offset, divide_by_sin_sun)``: reflectance = (gain * DN + offset) [/ sin(sun elevation)].

    Landsat is recognised by its product id (``LC08_L1TP_...``, ``LE07_L2SP_...``), anything else is taken
    as Sentinel-2 (``DN / 10000`` with the baseline 04.00 offset when not yet applied).
    """
    m = _LANDSAT_ID.match(scene_id)
    if m:
        return (2e-5, -0.1, True) if m.group(1) == "L1" else (2.75e-5, -0.2, False)
    baseline = str(properties.get("s2:processing_baseline") or "0")
    try:
        new = float(baseline) >= 4.0
    except ValueError:
        new = False
    offset = -0.1 if new and not properties.get("earthsearch:boa_offset_applied", False) else 0.0
    return 1e-4, offset, False


def _nir_key(ref: SceneRef) -> str | None:
    landsat = bool(_LANDSAT_ID.match(ref.id))
    for key in ("nir08", "nir") if landsat else _NIR_KEYS:
        if key in ref.assets:
            return key
    return None


class SceneBands(NamedTuple):
    """Reflectances of one catalogue scene on a grid (:func:`scene_reflectances`).

    Attributes
    ----------
    id
        Scene id.
    bands
        :class:`Reflectances` (0..1, NaN = no data).
    sun
        ``(azimuth, elevation)`` of the sun in degrees, or None when the metadata has none.
    """

    id: str
    bands: Reflectances
    sun: tuple[float, float] | None


def scene_reflectances(
    scene: Any, grid: AOIGrid, *, cache_dir: str | os.PathLike[str] | None = None
) -> SceneBands | None:
    """Read the reflectance bands of a scene on ``grid`` with the product's scaling (module notes).

    Returns None when the scene has no red or no near-infrared band.
    """
    ref = SceneRef.from_any(scene)
    props: Mapping[str, Any] = getattr(scene, "properties", None) or {}
    nir = _nir_key(ref)
    if "red" not in ref.assets or nir is None:
        return None
    gain, offset, by_sun = reflectance_scaling(ref.id, props)
    angles = sun_angles(props)
    scale = 1.0
    if by_sun:
        if angles is None:
            log.warning("%s: no sun elevation in the metadata; TOA reflectance not sun-corrected", ref.id)
        else:
            scale = 1.0 / max(math.sin(math.radians(angles[1])), 0.05)

    def band(key: str) -> NDArray[np.float32]:
        dn = read_aoi(ref, key, grid, cache_dir=cache_dir, resampling="average")
        dn[dn == 0] = np.nan  # 0 is the fill value of both missions' integer bands
        return ((gain * dn + offset) * scale).astype(np.float32)

    given = {k: band(k) for k in _OPTIONAL if k in ref.assets}
    return SceneBands(ref.id, Reflectances(red=band("red"), nir=band(nir), **given), angles)


def _detect(
    scene: SceneBands, grid: AOIGrid, options: CloudOptions | None, reference: Any = None
) -> CloudMask:
    az, el = (None, None) if scene.sun is None else scene.sun
    return detect_clouds(
        scene.bands,
        sun_azimuth=az,
        sun_elevation=el,
        pixel_m=grid.resolution,
        options=options,
        reference=reference,
    )


def scene_cloud_mask(
    scene: Any,
    grid: AOIGrid,
    *,
    references: Sequence[Any] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    options: CloudOptions | None = None,
) -> CloudMask | None:
    """Detect clouds and shadows of a scene on ``grid`` from its reflectance bands (FMask-style).

    Parameters
    ----------
    scene
        :class:`geodeform.search.Scene` (its ``properties`` give the sun angles and the scaling), a
        ``pystac.Item`` or a :class:`geodeform.io.aoi.SceneRef`.
    grid
        Grid to read the bands on (the job's AOI grid).
    references
        Other dates of the same area (scenes as ``scene``, or :class:`SceneBands` already read): their
        single-date clear pixels form the clear-sky reference of the multi-temporal tests
        (:func:`geodeform.masks.clear_reference`). Empty: single-date tests only.
    cache_dir
        Cache of the AOI reads (see :func:`geodeform.io.aoi.read_aoi`).
    options
        :class:`geodeform.masks.CloudOptions`.

    Returns
    -------
    CloudMask or None
        None when the scene has no red or no near-infrared band (nothing can be tested).
    """
    target = scene if isinstance(scene, SceneBands) else scene_reflectances(scene, grid, cache_dir=cache_dir)
    if target is None:
        return None
    others = [
        r if isinstance(r, SceneBands) else scene_reflectances(r, grid, cache_dir=cache_dir)
        for r in references
    ]
    others = [o for o in others if o is not None and o.bands.red.shape == target.bands.red.shape]
    reference = None
    if others:
        masks = [_detect(o, grid, options) for o in others]
        reference = clear_reference([o.bands for o in others], masks)
    if target.sun is None:
        log.warning("%s: no sun angles in the metadata; cloud shadows are not searched", target.id)
    mask = _detect(target, grid, options, reference)
    if not mask.snow_tested:
        how = "only snow that lies on every date is" if reference is not None else "no snow is"
        log.warning(
            "%s: no green + SWIR-1 band, so %s told from clouds; fresh snow may be masked as cloud (give a "
            "scene with those bands, or set mask_clouds: false)",
            target.id,
            how,
        )
    return mask
