"""Map views of products (geodeform.workflows.maps) on NetCDF products with known values."""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
import pytest
import xarray as xr
from PIL import Image
from pyproj import Transformer

from _map_products import EPSG, SPACING, write_products, write_velocity
from geodeform.errors import DataError
from geodeform.workflows.maps import (
    COLORMAP,
    colormap_stops,
    grid_crs,
    nice_ceiling,
    point_series,
    speed_overlay,
)

TO_LONLAT = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    return write_products(tmp_path_factory.mktemp("maps"))


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0.7, 0.8), (1.0, 1.0), (1.01, 1.5), (123.0, 150.0), (2600.0, 3000.0), (0.0, 1.0), (-3.0, 1.0)],
)
def test_nice_ceiling(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)
    assert nice_ceiling(float("nan")) == 1.0 and nice_ceiling(float("inf")) == 1.0


def test_colormap_stops_run_from_low_to_high():
    stops = colormap_stops()
    cmap = matplotlib.colormaps[COLORMAP]
    assert len(stops) == 11 and stops[0] == matplotlib.colors.to_hex(cmap(0.0))
    assert stops[-1] == matplotlib.colors.to_hex(cmap(1.0))


def test_grid_crs_and_missing_crs(products, tmp_path):
    with xr.open_dataset(products.velocity, engine="h5netcdf") as ds:
        assert grid_crs(ds, "v").to_epsg() == EPSG
    write_velocity(tmp_path / "nocrs.nc", crs=False)
    with pytest.raises(DataError, match="no CRS"):
        speed_overlay(tmp_path / "nocrs.nc")


def _pixel(overlay, lon: float, lat: float) -> tuple[int, int]:
    """Row, column of the overlay pixel holding (lon, lat)."""
    w, s, e, n = overlay.bounds
    img = Image.open(io.BytesIO(overlay.png))
    return int((n - lat) / (n - s) * img.height), int((lon - w) / (e - w) * img.width)


def test_speed_overlay_colours_each_node_by_its_speed(products):
    ov = speed_overlay(products.velocity)
    v = products.v
    assert ov.units == "m/yr" and ov.crs == f"EPSG:{EPSG}" and ov.vmin == 0.0
    assert ov.vmax == nice_ceiling(float(np.nanpercentile(v, 98)))
    assert ov.data_min == np.nanmin(v) and ov.data_max == np.nanmax(v)
    assert ov.valid_pct == round(100 * np.isfinite(v).mean(), 1)
    rgba = np.asarray(Image.open(io.BytesIO(ov.png)).convert("RGBA"))
    assert max(rgba.shape[:2]) >= 512  # finer than the nodes
    # Every node's centre lands inside the image, coloured by its own speed, transparent where invalid.
    cmap = matplotlib.colormaps[COLORMAP]
    for i, j in [(5, 6), (9, 11), (0, 5), (4, 1), (1, 1), (6, 0)]:
        lon, lat = TO_LONLAT.transform(products.x[j], products.y[i])
        w, s, e, n = ov.bounds
        assert w < lon < e and s < lat < n
        r, c = _pixel(ov, lon, lat)
        if np.isnan(v[i, j]):
            assert rgba[r, c, 3] == 0, (i, j)
        else:
            expected = np.array(cmap(min(v[i, j] / ov.vmax, 1.0), bytes=True))
            assert np.abs(rgba[r, c].astype(int) - expected).max() <= 1, (i, j, rgba[r, c], expected)


def test_speed_overlay_from_components(tmp_path, products):
    write_velocity(tmp_path / "vxvy.nc", components=True)
    ov = speed_overlay(tmp_path / "vxvy.nc")
    assert ov.data_max == pytest.approx(np.nanmax(products.v), rel=1e-6)
    assert ov.data_min == pytest.approx(np.nanmin(products.v), rel=1e-6)


def test_speed_overlay_needs_a_velocity(tmp_path, products):
    with xr.open_dataset(products.timeseries, engine="h5netcdf") as ds:
        ds.load().to_netcdf(tmp_path / "series.nc", engine="h5netcdf")
    with pytest.raises(DataError, match="no velocity"):
        speed_overlay(tmp_path / "series.nc")


def test_point_series_at_a_node_gives_its_values(products):
    i, j = 4, 7
    lon, lat = TO_LONLAT.transform(products.x[j] + 30, products.y[i] - 20)  # 36 m from the node
    ts = point_series(products.timeseries, lon, lat)
    assert ts is not None
    assert ts.dates == ["2020-01-06", "2020-01-22", "2020-02-07"] and ts.units == "m"
    np.testing.assert_allclose(ts.east, products.east[:, i, j])
    np.testing.assert_allclose(ts.north, products.north[:, i, j])
    np.testing.assert_allclose(ts.east_error, 0.25)
    assert (ts.node_x, ts.node_y) == (products.x[j], products.y[i])
    assert ts.distance_m == pytest.approx(math.hypot(30, 20), abs=0.01)
    node = TO_LONLAT.transform(products.x[j], products.y[i])
    assert (ts.node_lon, ts.node_lat) == pytest.approx(node)


def test_point_series_skips_invalid_nodes_and_far_points(products):
    # Over the invalid first column: the nearest valid node is in the second one.
    lon, lat = TO_LONLAT.transform(products.x[0], products.y[5])
    ts = point_series(products.timeseries, lon, lat)
    assert ts is not None and ts.node_x == products.x[1] and ts.distance_m == pytest.approx(SPACING)
    np.testing.assert_allclose(ts.east, products.east[:, 5, 1])
    # Further than 3 node spacings from any node: nothing.
    lon, lat = TO_LONLAT.transform(products.x[-1] + 4 * SPACING, products.y[5])
    assert point_series(products.timeseries, lon, lat) is None
    assert point_series(products.timeseries, 10.0, 10.0) is None
