"""geodeform.masks: FMask-style clouds and shadows, on synthetic scenes with known clouds and on real
Sentinel-2 crops compared with their SCL (Contains modified Copernicus Sentinel data [2023])."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest

from _shared import SHARED_DATA
from _stac_helpers import ASSETS, BBOX
from geodeform.errors import InvalidInputError
from geodeform.masks import Reflectances, detect_clouds, reflectance_scaling, sun_angles

CROPS = SHARED_DATA / "s2_l2a_crops"
CLOUDY = "S2A_33TWM_20230818_0_L2A"
CLEAR = ("S2B_33TWM_20230813_0_L2A", "S2A_33TWM_20230815_0_L2A")
SCL_CLOUD = (3, 8, 9, 10)


def _scene(shape=(160, 160), seed=0):  # type: ignore[no-untyped-def]
    """Vegetation (red 0.04, NIR 0.35, textured), one square cloud, and its shadow cast by a known sun."""
    rng = np.random.default_rng(seed)
    red = (0.04 + 0.01 * rng.random(shape)).astype(np.float32)
    nir = (0.35 + 0.05 * rng.random(shape)).astype(np.float32)
    cloud = np.zeros(shape, bool)
    cloud[40:60, 40:60] = True
    # sun from the south-east (azimuth 135), elevation 45: a cloud top at 600 m casts its shadow 600 m
    # north-west, i.e. 20 px at 30 m: -14.1 rows (north) and -14.1 columns (west).
    shadow = np.roll(np.roll(cloud, -14, 0), -14, 1) & ~cloud
    red[cloud], nir[cloud] = 0.45, 0.5
    nir[shadow] *= 0.3
    red[shadow] *= 0.5
    return red, nir, cloud, shadow


def test_cloud_and_its_shadow_are_found_where_the_sun_puts_it() -> None:
    red, nir, cloud, shadow = _scene()
    m = detect_clouds(Reflectances(red=red, nir=nir), sun_azimuth=135.0, sun_elevation=45.0, pixel_m=30.0)
    assert m.cloud[cloud].all()  # buffered by 90 m = 3 px
    assert m.cloud.sum() <= (20 + 6) ** 2
    found = m.shadow & shadow
    assert found.sum() / shadow.sum() > 0.9 and (m.shadow & ~shadow).sum() / shadow.sum() < 0.3
    assert not (m.cloud_or_shadow[100:, 100:]).any()  # clear vegetation stays clear
    # the same scene lit from the north-west casts no shadow where the dark patch lies
    other = detect_clouds(Reflectances(red=red, nir=nir), sun_azimuth=315.0, sun_elevation=45.0, pixel_m=30.0)
    assert (other.shadow & shadow).sum() < 0.1 * shadow.sum()


def test_snow_is_not_cloud_when_green_and_swir_are_given() -> None:
    red, nir, _, _ = _scene()
    snow = np.zeros(red.shape, bool)
    snow[100:140, 100:140] = True
    red[snow], nir[snow] = 0.7, 0.65  # fresh snow: bright in red and NIR, like a cloud
    green = np.where(snow, 0.75, 0.06).astype(np.float32)
    swir = np.where(snow, 0.08, 0.15).astype(np.float32)  # but dark at 1.6 µm: NDSI 0.8
    blind = detect_clouds(Reflectances(red=red, nir=nir), sun_azimuth=135, sun_elevation=45, pixel_m=30)
    assert not blind.snow_tested and blind.cloud[snow].mean() > 0.9  # red + NIR alone cannot tell
    seeing = detect_clouds(
        Reflectances(red=red, nir=nir, green=green, swir16=swir),
        sun_azimuth=135,
        sun_elevation=45,
        pixel_m=30,
    )
    assert seeing.snow_tested and seeing.cloud[snow].mean() < 0.05


def test_cirrus_band_flags_thin_cirrus_the_visible_bands_miss() -> None:
    red, nir, _, _ = _scene()
    cirrus = np.full(red.shape, 0.002, np.float32)
    cirrus[120:150, 10:40] = 0.03  # thin cirrus over vegetation: invisible in red / NIR
    m = detect_clouds(
        Reflectances(red=red, nir=nir, cirrus=cirrus), sun_azimuth=None, sun_elevation=None, pixel_m=30
    )
    assert m.cloud[125:145, 15:35].all() and not m.shadow.any()


def test_bad_input() -> None:
    red, nir, _, _ = _scene()
    with pytest.raises(InvalidInputError, match="one shape"):
        detect_clouds(Reflectances(red=red, nir=nir[:10]), sun_azimuth=0, sun_elevation=40, pixel_m=30)
    with pytest.raises(InvalidInputError, match="sun elevation"):
        detect_clouds(Reflectances(red=red, nir=nir), sun_azimuth=0, sun_elevation=-5, pixel_m=30)
    nodata = np.full(red.shape, np.nan, np.float32)
    m = detect_clouds(Reflectances(red=nodata, nir=nodata), sun_azimuth=0, sun_elevation=40, pixel_m=30)
    assert not m.valid.any() and math.isnan(m.cloud_pct())


def test_scaling_and_sun_angles_from_metadata() -> None:
    assert reflectance_scaling("LC08_L1TP_224077_20200518_20200528_02_T1", {}) == (2e-5, -0.1, True)
    assert reflectance_scaling("LE07_L2SP_001062_20201031_20201106_02_T2", {}) == (2.75e-5, -0.2, False)
    assert reflectance_scaling("S2B_27VWK_20240206_0_L1C", {"s2:processing_baseline": "05.10"})[1] == -0.1
    applied = {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}
    assert reflectance_scaling(CLOUDY, applied) == (1e-4, 0.0, False)
    assert sun_angles({"view:sun_azimuth": 157.1, "view:sun_elevation": 54.8}) == (157.1, 54.8)
    assert sun_angles({"s2:mean_solar_azimuth": 150.0, "s2:mean_solar_zenith": 40.0}) == (150.0, 50.0)
    assert sun_angles({}) is None


def _crop(name: str):  # type: ignore[no-untyped-def]
    rasterio = pytest.importorskip("rasterio")
    folder = CROPS / name
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder}")
    out = []
    for band in ("B04", "B08"):
        with rasterio.open(folder / f"{band}.tif") as src:
            a = src.read(1).astype(np.float32)
        a[a == 0] = np.nan
        out.append(a / 1e4)  # L2A DN, BOA offset already applied (earthsearch:boa_offset_applied)
    with rasterio.open(folder / "SCL.tif") as src:
        scl = src.read(1)
    props = json.loads((folder / f"{name}.json").read_text())["properties"]
    return out[0], out[1], scl, props


@pytest.mark.slow
@pytest.mark.parametrize("name", [CLOUDY, *CLEAR])
def test_red_nir_mask_agrees_with_scl_on_real_sentinel2(name: str) -> None:
    """The L1C-style mask (red + NIR only) against SCL's cloud classes (3, 8, 9, 10), 120 m crops of 33TWM.
    Measured (docs/benchmarks.md): 83.4 % agreement on the cloudy date, 98.0 % on the clear ones."""
    red, nir, scl, props = _crop(name)
    az, el = sun_angles(props)  # type: ignore[misc]
    m = detect_clouds(Reflectances(red=red, nir=nir), sun_azimuth=az, sun_elevation=el, pixel_m=120.0)
    ok = ~np.isin(scl, (0, 1))
    truth, mine = np.isin(scl, SCL_CLOUD)[ok], m.cloud_or_shadow[ok]
    agree = float((truth == mine).mean())
    if name == CLOUDY:
        assert agree > 0.83
        assert (mine & truth).sum() / truth.sum() > 0.8  # 80 % of SCL's cloud + shadow found
        assert np.isin(scl[ok][mine], (9,)).sum() / (scl[ok] == 9).sum() > 0.95  # thick clouds: all
    else:
        assert agree > 0.97


@pytest.mark.slow
def test_aoi_cloud_score_of_l1c_style_scene_matches_scl(tmp_path) -> None:
    """AOI scoring of a scene without a mask band (as L1C) against the SCL score of the same AOI."""
    from geodeform.search import Scene, aoi_from_bbox, score_asset
    from geodeform.search.scoring import spectral_scores

    aoi = aoi_from_bbox(BBOX)
    for name, tolerance in ((CLOUDY, 10.0), (CLEAR[0], 3.0)):
        folder = CROPS / name
        if not folder.is_dir():
            pytest.skip(f"real data not found at {folder}")
        props = json.loads((folder / f"{name}.json").read_text())["properties"]
        scene = Scene(
            id=name,
            collection="sentinel-2-l1c",
            datetime=dt.datetime(2023, 8, 18),
            assets={"red": str(folder / "B04.tif"), "nir": str(folder / "B08.tif")},
            properties=props,
        )
        spectral = spectral_scores(scene, aoi, resolution=120.0, cache_dir=str(tmp_path))
        scl = score_asset(str(ASSETS / name / "SCL.tif"), "scl", aoi)
        assert spectral.valid_pct > 99
        assert abs(spectral.cloud_pct - scl.cloud_pct) < tolerance, (name, spectral.cloud_pct, scl.cloud_pct)
