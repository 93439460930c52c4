"""geodeform.io.aoi: AOI reads of scenes from the local STAC API on one common UTM grid, cached on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from _stac_helpers import (
    ASSETS,
    BBOX,
    CLEAR,
    CLOUDY,
    LANDSAT,
    OTHER_ORBIT,
    closed_port_url,
    range_server,
    stac_url,
)
from geodeform.errors import DataError, InvalidInputError, NoDataError
from geodeform.io.aoi import SceneRef, aoi_grid, read_aoi, read_aoi_stack
from geodeform.search import aoi_from_bbox, search

AUGUST = {"start": "2023-08-11", "end": "2023-08-19"}


def cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def scenes():  # type: ignore[no-untyped-def]
    return search("s2-l2a", bbox=BBOX, catalog=stac_url(), **AUGUST)


def test_grid_is_utm_of_the_aoi_and_snapped() -> None:
    grid = aoi_grid(aoi_from_bbox(BBOX), 120.0)
    assert grid.crs == "EPSG:32633"
    assert grid.x0 % 120 == 0 and grid.y0 % 120 == 0
    xmin, ymin, xmax, ymax = grid.bounds
    assert (xmax - xmin) == grid.width * 120 and (ymax - ymin) == grid.height * 120
    with pytest.raises(InvalidInputError):
        aoi_grid(aoi_from_bbox(BBOX), 0.0)


def test_stack_on_common_grid_matches_the_source_pixels(scenes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = read_aoi_stack(
        scenes, "B04", scenes.aoi, resolution=120.0, cache_dir=tmp_path, resampling="nearest"
    )
    assert stack.dims == ("time", "y", "x") and stack.dtype == np.float32
    assert list(stack["item_id"].values) == [CLEAR, OTHER_ORBIT, CLOUDY]
    assert stack.attrs["crs"] == "EPSG:32633" and stack.attrs["resolution"] == 120.0
    assert np.all(np.diff(stack["x"].values) > 0) and np.all(np.diff(stack["y"].values) < 0)  # east, north-up
    # Independent check: sample the source COG at every grid pixel centre.
    xx, yy = np.meshgrid(stack["x"].values, stack["y"].values)
    with rasterio.open(ASSETS / CLEAR / "B04.tif") as src:
        rows, cols = rasterio.transform.rowcol(src.transform, xx.ravel(), yy.ravel())
        expected = src.read(1)[np.asarray(rows), np.asarray(cols)].astype(np.float32)
    got = stack.sel(time=stack["time"][0]).values.ravel()
    assert np.isfinite(got).mean() > 0.99
    assert np.mean(got == expected) > 0.99
    # Clear and cloudy dates differ a lot in red reflectance (clouds are bright).
    assert float(np.nanmean(stack[2])) > 1.5 * float(np.nanmean(stack[0]))


def test_cache_is_reused_checksummed_and_repaired(scenes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grid = aoi_grid(scenes.aoi, 240.0)
    first = read_aoi(scenes[0], "red", grid, cache_dir=tmp_path)
    files = cache_files(tmp_path)
    assert [p.suffix for p in files] == [".tif", ".sha256"]
    tif = files[0]
    with rasterio.open(tif) as cached:
        assert cached.crs.to_epsg() == 32633 and cached.transform == grid.transform
        assert cached.tags()["item_id"] == CLEAR
    np.testing.assert_array_equal(read_aoi(scenes[0], "red", grid, cache_dir=tmp_path), first)
    tif.write_bytes(tif.read_bytes()[:-100] + b"\0" * 100)  # corrupt the cache: checksum no longer matches
    np.testing.assert_array_equal(read_aoi(scenes[0], "red", grid, cache_dir=tmp_path), first)
    assert cache_files(tmp_path) == files
    other = aoi_grid(scenes.aoi, 480.0)
    read_aoi(scenes[0], "red", other, cache_dir=tmp_path)
    assert len(cache_files(tmp_path)) == 4  # keyed by grid as well


def test_failing_download_leaves_no_partial_file(tmp_path: Path) -> None:
    grid = aoi_grid(aoi_from_bbox(BBOX), 240.0)
    scene = SceneRef("remote-scene", None, {"red": f"{closed_port_url()}/B04.tif"})
    with pytest.raises(DataError, match="after 3 attempts"):
        read_aoi(scene, "red", grid, cache_dir=tmp_path, retries=2, backoff=0.01)
    assert cache_files(tmp_path) == []


def test_remote_cog_read_retries_and_fetches_only_byte_ranges(tmp_path: Path) -> None:
    grid = aoi_grid(aoi_from_bbox(BBOX), 240.0)
    local = read_aoi(SceneRef("local", None, {"red": str(ASSETS / CLEAR / "B04.tif")}), "red", grid,
                     cache_dir=tmp_path / "a")  # fmt: skip
    with range_server(ASSETS, fail_first=2) as (url, handler):
        remote = SceneRef(CLEAR, None, {"red": f"{url}/{CLEAR}/B04.tif"})
        data = read_aoi(remote, "red", grid, cache_dir=tmp_path / "b", retries=3, backoff=0.01)
    np.testing.assert_array_equal(data, local)
    assert handler.requests[:2] == [("HEAD", None), ("HEAD", None)]  # the two refused attempts
    ranges = [r for method, r in handler.requests if method == "GET"]
    assert ranges and all(r and r.startswith("bytes=") for r in ranges)  # a COG window, never the whole file
    assert len(cache_files(tmp_path / "b")) == 2


def test_corrupt_and_non_georeferenced_rasters(tmp_path: Path) -> None:
    grid = aoi_grid(aoi_from_bbox(BBOX), 240.0)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\0" + b"\x17" * 200)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint16") as dst:
        dst.write(np.ones((1, 8, 8), "uint16"))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="corrupt"):
        read_aoi(SceneRef("junk", None, {"red": str(junk)}), "red", grid, cache_dir=cache)
    with pytest.raises(DataError, match="no CRS"):
        read_aoi(SceneRef("plain", None, {"red": str(plain)}), "red", grid, cache_dir=cache)
    assert not cache.exists() or cache_files(cache) == []


def test_scene_not_overlapping_the_aoi(tmp_path: Path) -> None:
    grid = aoi_grid(aoi_from_bbox(BBOX), 240.0)
    far = SceneRef(
        "S2A_29RKH_20200219_0_L2A", None, {"scl": str(ASSETS / "S2A_29RKH_20200219_0_L2A" / "SCL.tif")}
    )
    with pytest.raises(NoDataError, match="does not overlap"):
        read_aoi(far, "scl", grid, cache_dir=tmp_path)


def test_unknown_band(scenes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="no band 'B99'"):
        read_aoi(scenes[0], "B99", aoi_grid(scenes.aoi, 240.0), cache_dir=tmp_path)


def test_landsat_qa_pixel_read_keeps_flags(tmp_path: Path) -> None:
    table = search("landsat", bbox=(-65.4, -3.3, -64.9, -2.8), catalog=stac_url())
    stack = read_aoi_stack(table, "QA_PIXEL", table.aoi, cache_dir=tmp_path, resampling="nearest")
    assert stack.attrs["crs"] == "EPSG:32720"  # UTM 20S of the AOI (the scene itself is stored in 32620)
    values = set(np.unique(stack.values[np.isfinite(stack.values)]).astype(int))
    assert values <= {1, 22280, 23888, 55052} and values
    assert stack["item_id"].values.tolist() == [LANDSAT]
