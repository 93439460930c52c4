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
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geodeform.io.aoi import AOIGrid, SceneRef, read_aoi
from geodeform.masks.spectral import CloudMask, CloudOptions, Reflectances, detect_clouds

__all__ = ["reflectance_scaling", "scene_cloud_mask", "sun_angles"]

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


def scene_cloud_mask(
    scene: Any,
    grid: AOIGrid,
    *,
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
    cache_dir
        Cache of the AOI reads (see :func:`geodeform.io.aoi.read_aoi`).
    options
        :class:`geodeform.masks.CloudOptions`.

    Returns
    -------
    CloudMask or None
        None when the scene has no red or no near-infrared band (nothing can be tested).
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
    bands = Reflectances(red=band("red"), nir=band(nir), **given)
    if angles is None:
        log.warning("%s: no sun angles in the metadata; cloud shadows are not searched", ref.id)
    mask = detect_clouds(
        bands,
        sun_azimuth=None if angles is None else angles[0],
        sun_elevation=None if angles is None else angles[1],
        pixel_m=grid.resolution,
        options=options,
    )
    if not mask.snow_tested:
        log.warning(
            "%s: no green + SWIR-1 band, so snow and ice cannot be told from clouds by the spectral test; "
            "bright snow may be masked as cloud (give a scene with those bands, or set mask_clouds: false)",
            ref.id,
        )
    return mask
