"""Series of offset products -> time-series inversion -> ITS_LIVE-like composite NetCDF, reopened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
xr = pytest.importorskip("xarray")

from affine import Affine  # noqa: E402
from rasterio.crs import CRS  # noqa: E402

from geodeform.errors import InvalidInputError  # noqa: E402
from geodeform.io import GeoGrid, composite_dataset, write_netcdf  # noqa: E402
from geodeform.pairs import build_pairs  # noqa: E402
from geodeform.timeseries import invert, velocity_composite  # noqa: E402


def test_composite_netcdf_from_inverted_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    dates = np.array(["2021-01-01", "2021-02-10", "2021-03-22", "2021-05-01", "2021-06-10"], "datetime64[D]")
    net = build_pairs(dates, mode="all", max_separation=3)
    pairs = net.pairs
    ny, nx = 6, 7
    vx_true = np.linspace(100, 400, nx)[None, :].repeat(ny, 0)  # m/yr east
    vy_true = np.full((ny, nx), -50.0)  # m/yr, southward
    t = (dates - dates[0]).astype(float) / 365.25
    dx = np.stack([(t[j] - t[i]) * vx_true for i, j in pairs]) + rng.normal(0, 0.5, (len(pairs), ny, nx))
    dy = np.stack([(t[j] - t[i]) * vy_true for i, j in pairs]) + rng.normal(0, 0.5, (len(pairs), ny, nx))
    ts = invert(dates, pairs, dx.astype(np.float32), dy.astype(np.float32))
    comp = velocity_composite(ts)
    grid = GeoGrid(CRS.from_epsg(32607), Affine(120.0, 0, 500000.0, 0, -120.0, 6700000.0), (ny, nx))
    out = write_netcdf(composite_dataset(comp, grid), tmp_path / "composite.nc")
    with xr.open_dataset(out) as ds:
        assert ds["vx"].attrs["units"] == "m/yr" and ds["vx"].attrs["grid_mapping"] == "mapping"
        assert np.nanmax(np.abs(ds["vx"].values - vx_true)) < 10
        assert np.nanmax(np.abs(ds["vy"].values - vy_true)) < 10
        assert ds.attrs["time_coverage_start"] == "2021-01-01"
        assert float(ds["x"][0]) == pytest.approx(500060.0)
    with rasterio.open(f"netcdf:{out}:vx") as src:
        assert src.crs.to_epsg() == 32607
    bad = GeoGrid(grid.crs, grid.transform, (ny + 1, nx))
    with pytest.raises(InvalidInputError, match="shape"):
        composite_dataset(comp, bad)
