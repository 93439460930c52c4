"""geodeform.search against a real STAC API (rustac + pgstac, loaded with real Earth Search items).

The server is started by scripts/services.d/stac.sh; tests that need it skip when GEODEFORM_TEST_STAC_URL is
unset. AOI cloud % is checked against an independent computation: every SCL / QA_PIXEL pixel centre is
projected to lon/lat with pyproj and counted if it falls in the bbox (no rasterio windows, no masks).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from _stac_helpers import (
    ASSETS,
    BBOX,
    CLEAR,
    CLOUDY,
    LANDSAT,
    OTHER_ORBIT,
    STAC_DATA,
    closed_port_url,
    stac_url,
)
from geodeform.errors import DataError, GeodeformError, InvalidInputError, NoDataError
from geodeform.search import (
    aoi_from_bbox,
    aoi_from_tile,
    index_folder,
    item_orbit,
    mgrs_square,
    parse_months,
    search,
)

AUGUST = {"start": "2023-08-11", "end": "2023-08-19"}
# SCL cloud shadow, cloud medium / high probability, thin cirrus (ESA L2A product definition).
SCL_CLOUDS = [3, 8, 9, 10]


def independent_scores(path: Path, bbox: tuple[float, float, float, float], kind: str) -> tuple[float, float]:
    """(cloud %, valid %) of the pixels whose centres fall in a lon/lat bbox, by brute force."""
    with rasterio.open(path) as src:
        data = src.read(1)
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        xs, ys = rasterio.transform.xy(src.transform, rows.ravel(), cols.ravel())
        lon, lat = Transformer.from_crs(src.crs, 4326, always_xy=True).transform(xs, ys)
    inside = ((lon >= bbox[0]) & (lon <= bbox[2]) & (lat >= bbox[1]) & (lat <= bbox[3])).reshape(data.shape)
    values = data[inside].astype(np.int64)
    if kind == "scl":
        valid = (values != 0) & (values != 1)
        cloudy = np.isin(values, SCL_CLOUDS)
    else:
        valid = (values & 1) == 0
        cloudy = (values & 0b11110) != 0
    return 100.0 * (cloudy & valid).sum() / valid.sum(), 100.0 * valid.mean()


# --- MGRS tiles (no server needed) ---------------------------------------------------------------------


def test_mgrs_tile_corners_match_every_sentinel2_item() -> None:
    checked = 0
    for name in ("sentinel-2-l2a", "sentinel-2-l1c", "sentinel-2-c1-l2a"):
        for line in (STAC_DATA / "items" / f"{name}.ndjson").read_text().splitlines():
            item = json.loads(line)
            square = mgrs_square(item["properties"]["grid:code"])
            transform = item["assets"]["red"]["proj:transform"]
            assert (square.s2_bounds[0], square.s2_bounds[3]) == (transform[2], transform[5]), item["id"]
            assert square.epsg == item["properties"]["proj:epsg"]
            checked += 1
    assert checked >= 40


def test_mgrs_tile_bounds_match_the_real_scl_raster() -> None:
    with rasterio.open(ASSETS / CLEAR / "SCL.tif") as src:
        assert mgrs_square("T33TWM").s2_bounds == tuple(src.bounds)
        assert src.crs.to_epsg() == mgrs_square("33TWM").epsg == 32633
    assert mgrs_square("29RKH").s2_bounds == (199980.0, 2690220.0, 309780.0, 2800020.0)
    tile = aoi_from_tile("33twm")
    assert tile.tile == "33TWM" and tile.epsg == 32633
    west, south, east, north = tile.bbox
    assert 14.9 < west < 15.1 and 16.4 < east < 16.5 and 45.9 < south < 46.0 and 46.9 < north < 47.0


@pytest.mark.parametrize("bad", ["32TIR", "61TLR", "33TWA", "33TAM", "3", "XX"])
def test_invalid_tile_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        mgrs_square(bad)


def test_months_and_bbox_validation() -> None:
    assert parse_months("11-2") == (11, 2)
    with pytest.raises(InvalidInputError):
        parse_months("0-13")
    with pytest.raises(InvalidInputError, match="W,S,E,N"):
        aoi_from_bbox([46.2, 15.5, 46.5])
    with pytest.raises(InvalidInputError, match="west < east"):
        aoi_from_bbox([15.9, 46.2, 15.5, 46.5])
    assert item_orbit({"s2:product_uri": "S2B_MSIL2A_20230813T095559_N0509_R122_T33TWM_2023.SAFE"}) == 122


# --- search against the local STAC API -----------------------------------------------------------------


def test_tile_search_scores_clear_and_cloudy_dates() -> None:
    table = search("sentinel-2-l2a", tile="33TWM", catalog=stac_url(), **AUGUST)
    assert table.ids == [CLEAR, OTHER_ORBIT, CLOUDY]
    by_id = {s.id: s for s in table}
    assert {by_id[CLEAR].orbit, by_id[CLOUDY].orbit, by_id[OTHER_ORBIT].orbit} == {122, 79}
    # The whole tile is the AOI, so the independent count is over the whole SCL raster.
    for scene_id in (CLEAR, CLOUDY, OTHER_ORBIT):
        with rasterio.open(ASSETS / scene_id / "SCL.tif") as src:
            scl = src.read(1)
        valid = ~np.isin(scl, [0, 1])
        expected = 100.0 * (np.isin(scl, SCL_CLOUDS) & valid).sum() / valid.sum()
        assert by_id[scene_id].aoi_cloud_pct == pytest.approx(expected, abs=0.3)
    assert by_id[CLEAR].aoi_cloud_pct < 3.0 < 40.0 < by_id[CLOUDY].aoi_cloud_pct
    assert by_id[OTHER_ORBIT].aoi_valid_pct == pytest.approx(89.2, abs=1.0)  # orbit 79 misses the east edge
    assert by_id[OTHER_ORBIT].aoi_coverage_pct < 95.0 < by_id[CLEAR].aoi_coverage_pct


def test_bbox_search_matches_an_independent_scl_count() -> None:
    table = search("s2-l2a", bbox=BBOX, catalog=stac_url(), **AUGUST)
    assert table.ids == [CLEAR, OTHER_ORBIT, CLOUDY]
    for scene in table:
        cloud, valid = independent_scores(ASSETS / scene.id / "SCL.tif", BBOX, "scl")
        assert scene.aoi_cloud_pct == pytest.approx(cloud, abs=0.5), scene.id
        assert scene.aoi_valid_pct == pytest.approx(valid, abs=0.5), scene.id
        assert scene.aoi_coverage_pct == pytest.approx(100.0)
    clear, cloudy = table[0], table[2]
    assert clear.aoi_cloud_pct < 1.0 and cloudy.aoi_cloud_pct > 50.0


def test_filters_orbit_cloud_coverage_months_and_best_per_orbit() -> None:
    url = stac_url()
    assert search("s2-l2a", bbox=BBOX, catalog=url, orbit=79, **AUGUST).ids == [OTHER_ORBIT]
    assert search("s2-l2a", bbox=BBOX, catalog=url, max_cloud=10, **AUGUST).ids == [CLEAR, OTHER_ORBIT]
    best = search("s2-l2a", bbox=BBOX, catalog=url, best_per_orbit=1, **AUGUST)
    assert best.ids == [CLEAR, OTHER_ORBIT]
    assert search("s2-l2a", bbox=BBOX, catalog=url, max_aoi_cloud=20, **AUGUST).ids == [CLEAR, OTHER_ORBIT]
    covered = search("s2-l2a", tile="33TWM", catalog=url, min_coverage=95, **AUGUST)
    assert covered.ids == [CLEAR, CLOUDY]
    summer = search("s2-l2a", tile="33TWN", catalog=url, months="6-8", score=False)
    assert summer.ids and all(s.datetime.month in (6, 7, 8) for s in summer)
    winter = search("s2-l2a", tile="33TWN", catalog=url, months="11-2", score=False)
    assert winter.ids and all(s.datetime.month in (11, 12, 1, 2) for s in winter)
    assert not set(summer.ids) & set(winter.ids)


def test_unreadable_mask_asset_is_reported_not_fatal() -> None:
    # mapchete-eo's static copy left S2B_33TWM_20230810 with a relative SCL href that resolves to nothing.
    table = search("s2-l2a", tile="33TWM", catalog=stac_url(), start="2023-08-10", end="2023-08-10")
    assert table.ids == ["S2B_33TWM_20230810_0_L2A"]
    assert table[0].aoi_cloud_pct is None and "scoring failed" in table[0].note


def test_landsat_qa_pixel_scoring() -> None:
    bbox = (-65.4, -3.3, -64.9, -2.8)
    table = search("landsat", bbox=bbox, catalog=stac_url())
    assert table.ids == [LANDSAT] and table[0].orbit == 1
    cloud, valid = independent_scores(ASSETS / LANDSAT / f"{LANDSAT}_QA_PIXEL.TIF", bbox, "qa_pixel")
    assert table[0].aoi_cloud_pct == pytest.approx(cloud, abs=0.5)
    assert table[0].aoi_valid_pct == pytest.approx(valid, abs=0.5)
    assert table[0].aoi_cloud_pct > 99.0  # the fixture scene is fully cloudy


def test_sentinel1_and_dem_collections() -> None:
    url = stac_url()
    s1 = search("sentinel-1-grd", bbox=(76.0, -49.0, 77.0, -48.0), catalog=url)
    assert len(s1) == 2 and {s.orbit for s in s1} == {56}
    assert all(s.aoi_cloud_pct is None for s in s1)
    dem = search("dem", bbox=(-170.9, -89.9, -170.1, -89.1), catalog=url)
    assert dem.ids == ["Copernicus_DSM_COG_10_S90_00_W171_00_DEM"]


def test_table_writes_geojson_and_csv(tmp_path: Path) -> None:
    table = search("s2-l2a", bbox=BBOX, catalog=stac_url(), **AUGUST)
    doc = json.loads(table.write(tmp_path / "scenes.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    feature = doc["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert feature["properties"]["aoi_cloud_pct"] == table[0].aoi_cloud_pct
    assert feature["properties"]["assets"]["scl"].endswith("SCL.tif")
    with open(table.write(tmp_path / "scenes.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == table.ids
    assert float(rows[2]["aoi_cloud_pct"]) == pytest.approx(table[2].aoi_cloud_pct)
    with pytest.raises(InvalidInputError):
        table.write(tmp_path / "scenes.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes.csv", "scenes.geojson"]


def test_geojson_aoi_file(tmp_path: Path) -> None:
    west, south, east, north = BBOX
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    ]}))  # fmt: skip
    table = search("s2-l2a", aoi=path, catalog=stac_url(), **AUGUST)
    bbox_table = search("s2-l2a", bbox=BBOX, catalog=stac_url(), **AUGUST)
    assert [s.aoi_cloud_pct for s in table] == [s.aoi_cloud_pct for s in bbox_table]


# --- bad input -----------------------------------------------------------------------------------------


def test_no_scenes_found() -> None:
    with pytest.raises(NoDataError, match="no sentinel-2-l2a scenes"):
        search("s2-l2a", bbox=BBOX, catalog=stac_url(), start="2015-01-01", end="2015-02-01")
    with pytest.raises(NoDataError, match="orbit"):
        search("s2-l2a", bbox=BBOX, catalog=stac_url(), orbit=7, **AUGUST)


def test_aoi_outside_tile() -> None:
    with pytest.raises(InvalidInputError, match="outside tile 32TLR"):
        search("s2-l2a", bbox=BBOX, tile="32TLR", catalog=stac_url(), **AUGUST)


def test_dates_reversed() -> None:
    with pytest.raises(InvalidInputError, match="after end date"):
        search("s2-l2a", bbox=BBOX, catalog=stac_url(), start="2023-08-19", end="2023-08-11")


def test_unknown_collection() -> None:
    with pytest.raises(InvalidInputError, match="unknown collection 'sentinel-9'") as info:
        search("sentinel-9", bbox=BBOX, catalog=stac_url())
    assert "sentinel-2-l2a" in str(info.value)
    with pytest.raises(InvalidInputError, match="not offered by the cdse"):
        search("landsat", bbox=BBOX, catalog="cdse")


def test_unreachable_catalogue() -> None:
    url = closed_port_url()
    with pytest.raises(DataError, match="cannot reach the STAC catalogue") as info:
        search("s2-l2a", bbox=BBOX, catalog=url, timeout=5)
    assert isinstance(info.value, OSError) and url in str(info.value)


# --- local catalogue -----------------------------------------------------------------------------------


def test_local_catalogue_indexes_and_searches_like_the_api(tmp_path: Path) -> None:
    for name in (CLEAR, CLOUDY, LANDSAT):
        shutil.copytree(ASSETS / name, tmp_path / name)
    with rasterio.open(  # a raster without CRS: skipped with a warning
        tmp_path / "plain.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8"
    ) as dst:
        dst.write(np.zeros((1, 4, 4), "uint8"))
    # the scene's own STAC item saved next to its rasters (as Earth Search downloads keep it): its orbit
    # and scene cloud cover are kept (the folder name carries neither); its remote hrefs are not used
    lines = (STAC_DATA / "items" / "sentinel-2-l2a.ndjson").read_text().splitlines()
    stored = next(json.loads(line) for line in lines if json.loads(line)["id"] == CLEAR)
    (tmp_path / CLEAR / f"{CLEAR}.json").write_text(json.dumps(stored))
    (tmp_path / CLOUDY / f"{CLOUDY}.json").write_text("{not json")  # unreadable: ignored with a warning
    items = {item.id: item for item in index_folder(tmp_path)}
    assert set(items) == {CLEAR, CLOUDY, LANDSAT}
    assert items[CLEAR].properties["eo:cloud_cover"] == stored["properties"]["eo:cloud_cover"]
    assert set(items[CLEAR].assets) == {"red", "scl"}
    assert all(str(a.href).startswith(str(tmp_path)) for a in items[CLEAR].assets.values())
    assert set(items[CLEAR].assets) == {"red", "scl"} and items[CLEAR].collection_id == "sentinel-2-l2a"
    assert items[LANDSAT].collection_id == "landsat-c2-l2" and "qa_pixel" in items[LANDSAT].assets
    assert items[CLEAR].properties["proj:epsg"] == 32633 or items[CLEAR].properties.get("proj:code")
    local = search("s2-l2a", bbox=BBOX, catalog=tmp_path, **AUGUST)
    remote = search("s2-l2a", bbox=BBOX, catalog=stac_url(), **AUGUST)
    assert local.ids == [CLEAR, CLOUDY]
    assert local[0].orbit == 122 and local[1].orbit is None  # from the stored item / nothing to read
    by_id = {s.id: s for s in remote}
    for scene in local:
        assert scene.aoi_cloud_pct == pytest.approx(by_id[scene.id].aoi_cloud_pct, abs=1e-6)
    assert search("landsat", bbox=(-65.4, -3.3, -64.9, -2.8), catalog=tmp_path).ids == [LANDSAT]
    with pytest.raises(InvalidInputError, match="not found in"):
        search("sentinel-1-grd", bbox=BBOX, catalog=tmp_path)


def test_local_catalogue_reads_sentinel2_safe_and_loose_jp2(tmp_path: Path) -> None:
    from rasterio.shutil import copy as copy_raster

    safe = tmp_path / "S2B_MSIL2A_20230813T095559_N0509_R122_T33TWM_20230813T130536.SAFE"
    granule = safe / "GRANULE" / "L2A_T33TWM_A033610_20230813T100712" / "IMG_DATA"
    for band, res, name in (("B04", "R10m", "B04.tif"), ("SCL", "R20m", "SCL.tif")):
        (granule / res).mkdir(parents=True)
        target = granule / res / f"T33TWM_20230813T095559_{band}_{res[1:]}.jp2"
        copy_raster(ASSETS / CLEAR / name, target, driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY=100)
    loose = tmp_path / "loose"
    loose.mkdir()
    copy_raster(ASSETS / CLOUDY / "SCL.tif", loose / "T33TWM_20230818T095601_SCL_20m.jp2",
                driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY=100)  # fmt: skip
    items = {item.id: item for item in index_folder(tmp_path)}
    assert set(items) == {"S2B_33TWM_20230813_0_L2A", "T33TWM_20230818T095601"}
    safe_item = items["S2B_33TWM_20230813_0_L2A"]
    assert set(safe_item.assets) == {"red", "scl"} and safe_item.properties["sat:relative_orbit"] == 122
    table = search("s2-l2a", tile="33TWM", catalog=tmp_path)
    by_id = {s.id: s for s in table}
    remote = {s.id: s for s in search("s2-l2a", tile="33TWM", catalog=stac_url(), **AUGUST)}
    assert by_id["S2B_33TWM_20230813_0_L2A"].aoi_cloud_pct == pytest.approx(remote[CLEAR].aoi_cloud_pct)
    assert by_id["T33TWM_20230818T095601"].aoi_cloud_pct == pytest.approx(remote[CLOUDY].aoi_cloud_pct)
    assert by_id["S2B_33TWM_20230813_0_L2A"].orbit == 122


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_search_writes_a_table(tmp_path: Path, cli) -> None:
    out = tmp_path / "scenes.geojson"
    args = ["search", "--bbox", ",".join(map(str, BBOX)), "--start", AUGUST["start"], "--end", AUGUST["end"]]
    args += ["--catalog", stac_url(), "--limit", "1", "-o", str(out)]
    result = cli(*args, env={"COLUMNS": "200"})
    assert result.code == 0, result.output
    assert CLEAR in result.output and "AOI cloud %" in result.output
    ids = [f["id"] for f in json.loads(out.read_text())["features"]]
    assert ids == [CLEAR, OTHER_ORBIT]


def test_cli_bad_input_raises_our_errors(cli) -> None:
    args = [
        "search",
        "--tile",
        "33TWM",
        "--start",
        "2023-08-19",
        "--end",
        "2023-08-11",
        "--catalog",
        stac_url(),
    ]
    result = cli(*args)
    assert isinstance(result.exception, GeodeformError) and "after end date" in str(result.exception)
