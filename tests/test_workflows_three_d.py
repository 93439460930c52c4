"""The ``three_d`` option: slope-parallel east/north/up from an optical job and a DEM (real SRTM relief)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from scipy import ndimage

from _shared import shared_data
from geodeform.config import load_config
from geodeform.demo import PIXEL_M, load_texture
from geodeform.workflows import run_job
from test_workflows import ORIGIN, YEAR, _pair_job, _warp

SRTM = shared_data() / "dem" / "srtm_ref.tif"
DEM_PIXEL = 90.0  # the SRTM crop's spacing (3 arc-seconds), metres: its real slopes


def _dem(path: Path) -> tuple[np.ndarray, str]:
    """Real SRTM heights (a 200 x 200 crop, 90 m) written on the job's UTM area; heights and path."""
    with rasterio.open(SRTM) as src:
        z = src.read(1).astype(np.float32)[300:500, 300:500]
    profile = dict(driver="GTiff", width=200, height=200, count=1, dtype="float32", crs="EPSG:32621")
    with rasterio.open(path, "w", transform=from_origin(*ORIGIN, DEM_PIXEL, DEM_PIXEL), **profile) as dst:
        dst.write(z, 1)
    return z.astype(np.float64), str(path)


@pytest.mark.skipif(not SRTM.exists(), reason="shared/data/dem not available")
@pytest.mark.slow
def test_slide_three_d_gives_up_from_the_slope(tmp_path: Path) -> None:
    tex = load_texture()[:320, :320]
    rr, cc = np.mgrid[:320, :320].astype(float)
    lobe = 2.0 * np.exp(-(((rr - 170) / 70) ** 2 + ((cc - 150) / 60) ** 2))  # px in one year
    dx, dy = 0.6 * lobe, 0.8 * lobe  # image rows run south: +dy is southward motion
    z, dem = _dem(tmp_path / "dem.tif")
    job = _pair_job(
        tmp_path, tex, _warp(tex, dx, dy), ("2019-08-01", "2020-08-01"), preset="slide", dem=dem, three_d=True
    )
    result = run_job(load_config(job), tmp_path / "run")
    with xr.open_dataset(result.products["velocity_3d_nc"]) as ds:
        x, y = ds["x"].values, ds["y"].values
        up, up_err, reason = ds["up"].values, ds["up_error"].values, ds["reason"].values
    # truth: the imposed horizontal field (m/yr) and the slope / aspect of the DEM on its own 90 m grid
    xx, yy = np.meshgrid(x, y)
    rows, cols = (ORIGIN[1] - yy) / PIXEL_M - 0.5, (xx - ORIGIN[0]) / PIXEL_M - 0.5
    k = PIXEL_M * YEAR / 366
    east = ndimage.map_coordinates(dx, [rows, cols], order=1) * k
    north = -ndimage.map_coordinates(dy, [rows, cols], order=1) * k
    gz_row, gz_col = np.gradient(z, DEM_PIXEL)
    dz_de, dz_dn = gz_col, -gz_row
    drow, dcol = (ORIGIN[1] - yy) / DEM_PIXEL - 0.5, (xx - ORIGIN[0]) / DEM_PIXEL - 0.5
    de = ndimage.map_coordinates(dz_de, [drow, dcol], order=1)
    dn = ndimage.map_coordinates(dz_dn, [drow, dcol], order=1)
    truth_up = east * de + north * dn  # surface-parallel: U = grad(z) . (E, N)
    slope = np.degrees(np.arctan(np.hypot(de, dn)))
    moving = np.hypot(east, north) > 0.3 * np.hypot(east, north).max()
    steep = (slope > 10) & moving & np.isfinite(up)
    assert steep.sum() > 20 and (reason[np.isfinite(up)] == 0).all()
    rel = np.sqrt(np.nanmean((up[steep] - truth_up[steep]) ** 2)) / np.sqrt(np.mean(truth_up[steep] ** 2))
    assert rel < 0.2, rel
    assert np.isfinite(up_err[steep]).all() and (up_err[steep] > 0).all()
