"""Tests of geodeform.quake: trace detection, slip profiles, mosaics across UTM zones, vector and products.

Fast tests score the kernels on analytic rupture fields (known truth, white noise, detector stripes) on a
node grid; the slow test runs the whole chain on a real Landsat texture warped by a known rupture.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pyproj import Proj, Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine

from geodeform.errors import DataError, GeodeformError, InvalidInputError
from geodeform.io import GeoGrid, apply_transform, dataset_grid
from geodeform.quake import (
    CSV_HEADER,
    DisplacementTile,
    EmptyFieldError,
    NoRuptureError,
    TraceCRSError,
    TraceOutsideError,
    correlation_area,
    detect_trace,
    grid_components,
    mosaic,
    plot_slip,
    read_trace,
    reprojection_jacobian,
    slip_profiles,
    utm_crs,
    write_profiles_csv,
    write_trace_geojson,
)
from geodeform.quake.synthetic import RuptureModel, ground_rupture, make_tiles

STEP = 8  # image pixels per node
PIXEL = 10.0  # metres per image pixel
CELL = STEP * PIXEL


class NodeRupture:
    """An analytic co-seismic field on the node grid of a 576 × 576 image at 10 m, in metres."""

    def __init__(
        self,
        *,
        noise: float = 0.3,
        stripes: float = 0.2,
        jitter: float = 0.0,
        seed: int = 0,
        trend: float = 0.35,
    ):
        self.model = RuptureModel((576, 576), trend=trend)
        self.nodes = np.arange(16.0, 560.0, STEP)
        rr, cc = np.meshgrid(self.nodes, self.nodes, indexing="ij")
        dx, dy = self.model.truth(rr, cc)
        rng = np.random.default_rng(seed)
        band = np.where((cc // 160) % 2 == 0, stripes, -stripes)  # detector stripes along the columns
        self.dx = dx * PIXEL + band + rng.normal(0, noise, dx.shape)
        self.dy = dy * PIXEL + jitter * np.sin(2 * np.pi * rr / 140) + rng.normal(0, noise, dx.shape)

    def image_px(self, trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.nodes[0] + trace[:, 0] * STEP, self.nodes[0] + trace[:, 1] * STEP

    def distance_px(self, trace: np.ndarray) -> np.ndarray:
        return np.abs(self.model.locate(*self.image_px(trace))[1])

    def true_trace(self) -> np.ndarray:
        t = self.model.trace(300)
        return (t - self.nodes[0]) / STEP

    def slip_at(self, profiles) -> tuple[np.ndarray, np.ndarray]:
        t = self.model.locate(self.nodes[0] + profiles.row * STEP, self.nodes[0] + profiles.col * STEP)[0]
        return self.model.slip(t)


@pytest.fixture(scope="module")
def rupture() -> NodeRupture:
    return NodeRupture()


# ------------------------------------------------------------------------------------------- trace
def test_detect_trace_follows_a_curved_rupture(rupture):
    trace = detect_trace(rupture.dx, rupture.dy, pixel_size=CELL)
    d = rupture.distance_px(trace)
    assert np.median(d) < 0.5 * STEP  # within half a node (4 image px), far inside one 32 px chip
    assert np.percentile(d, 95) < 1.5 * STEP
    length = np.hypot(*np.diff(trace, axis=0).T).sum()
    true_length = np.hypot(*np.diff(rupture.true_trace(), axis=0).T).sum()
    assert length > 0.8 * true_length
    assert trace[0, 0] < trace[-1, 0]  # runs mostly along the rows: starts at the top


def test_detect_trace_ignores_the_unit_and_a_parallel_stripe_edge(rupture):
    in_px = detect_trace(rupture.dx / PIXEL, rupture.dy / PIXEL, pixel_size=CELL)
    assert np.median(rupture.distance_px(in_px)) < 0.5 * STEP


def test_detect_trace_bridges_a_gap_of_missing_nodes(rupture):
    dx, dy = rupture.dx.copy(), rupture.dy.copy()
    dx[30:36], dy[30:36] = np.nan, np.nan  # decorrelated band across the rupture
    trace = detect_trace(dx, dy, pixel_size=CELL)
    assert trace[0, 0] < 20 and trace[-1, 0] > 50
    assert np.median(rupture.distance_px(trace)) < 0.5 * STEP


def test_detect_trace_refuses_noise_and_empty_fields():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.3, (69, 69))
    with pytest.raises(NoRuptureError, match="brackets the event"):
        detect_trace(noise, rng.normal(0, 0.3, noise.shape), pixel_size=CELL)
    with pytest.raises(EmptyFieldError, match="no finite value") as exc:
        detect_trace(np.full((20, 20), np.nan), np.full((20, 20), np.nan), pixel_size=CELL)
    assert isinstance(exc.value, GeodeformError) and isinstance(exc.value, LookupError)
    with pytest.raises(InvalidInputError, match="pixel_size"):
        detect_trace(noise, noise, pixel_size=0.0)


# ---------------------------------------------------------------------------------------- profiles
def _errors(r: NodeRupture, prof) -> tuple[np.ndarray, np.ndarray]:
    s, o = r.slip_at(prof)
    return prof.parallel - s, prof.normal - o


def test_slip_profiles_recover_slip_and_its_sign(rupture):
    trace = detect_trace(rupture.dx, rupture.dy, pixel_size=CELL)
    kw = {"spacing": 500, "half_width": 1500, "pixel_size": CELL, "gap": 160}
    prof = slip_profiles(rupture.dx, rupture.dy, trace, **kw)
    ep, en = _errors(rupture, prof)
    ok = prof.valid
    assert ok.sum() >= 9
    assert np.sqrt(np.mean(ep[ok] ** 2)) < 0.2  # m, right-lateral is +
    assert np.sqrt(np.mean(en[ok] ** 2)) < 0.3  # m, opening is +; ±0.2 m stripes cross the profiles
    assert np.all(np.diff(prof.distance) > 0)
    _, _, sr, sc = rupture.model.locate(*rupture.image_px(np.c_[prof.row, prof.col]))
    true_strike = np.degrees(np.arctan2(sc, -sr)) % 360  # clockwise from up; the trace runs down the rows
    assert np.abs(prof.strike - true_strike)[ok].max() < 3.0
    # the same table whichever way the trace is given; a left-lateral field gives negative slip
    rev = slip_profiles(rupture.dx, rupture.dy, trace[::-1], **kw)
    assert np.allclose(rev.parallel[::-1], prof.parallel, atol=0.03, equal_nan=True)  # nodes on swath edges
    assert np.allclose(rev.normal[::-1], prof.normal, atol=0.03, equal_nan=True)
    left = slip_profiles(-rupture.dx, -rupture.dy, trace, **kw)
    assert np.allclose(left.parallel, -prof.parallel, equal_nan=True)


def test_slip_profiles_sigma_has_the_size_of_the_errors():
    z = []
    for seed in range(3):
        r = NodeRupture(stripes=0.0, seed=seed)
        prof = slip_profiles(
            r.dx, r.dy, r.true_trace(), spacing=500, half_width=1000, pixel_size=CELL, gap=160
        )
        ep, en = _errors(r, prof)
        ok = prof.valid
        z.append(np.r_[ep[ok] / prof.parallel_sigma[ok], en[ok] / prof.normal_sigma[ok]])
    z = np.concatenate(z)
    assert len(z) > 50
    assert 0.55 < np.mean(np.abs(z) < 1) < 0.85 and np.mean(np.abs(z) < 2) > 0.9


@pytest.mark.parametrize("trend", [0.35, 0.8])
def test_track_correction_removes_stripes_and_jitter(trend):
    r = NodeRupture(stripes=0.3, jitter=0.3, trend=trend)
    kw = {"spacing": 500, "half_width": 1000, "pixel_size": CELL, "gap": 160}
    rmse = []
    for track in (None, 0.0):
        prof = slip_profiles(r.dx, r.dy, r.true_trace(), track_angle=track, **kw)
        ep, en = _errors(r, prof)
        rmse.append(np.sqrt(np.nanmean(ep**2) + np.nanmean(en**2)))
    assert rmse[1] < 0.25 and rmse[1] < 0.7 * rmse[0]  # m, parallel and normal together
    assert prof.meta["track_artefacts_rms"] == pytest.approx(np.hypot(0.3, 0.3 / np.sqrt(2)), rel=0.35)


def test_slip_profiles_table_forms(rupture):
    prof = slip_profiles(
        rupture.dx, rupture.dy, rupture.true_trace(), spacing=1000, half_width=1000, pixel_size=CELL
    )
    rec = prof.to_records()
    assert rec.dtype.names[:5] == ("distance", "row", "col", "strike", "parallel") and len(rec) == len(prof)
    assert np.array_equal(rec["parallel"], prof.parallel, equal_nan=True)
    pd = pytest.importorskip("pandas")
    assert isinstance(prof.to_pandas(), pd.DataFrame)


def test_slip_profiles_bad_input(rupture):
    trace = rupture.true_trace()
    kw = {"spacing": 500, "half_width": 1000, "pixel_size": CELL}
    with pytest.raises(TraceOutsideError, match="does not cross the offset grid") as exc:
        slip_profiles(rupture.dx, rupture.dy, trace + np.array([0.0, 500.0]), **kw)
    assert isinstance(exc.value, ValueError)
    with pytest.raises(EmptyFieldError, match="no finite value"):
        slip_profiles(np.full_like(rupture.dx, np.nan), rupture.dy, trace, **kw)
    with pytest.raises(InvalidInputError, match="gap"):
        slip_profiles(rupture.dx, rupture.dy, trace, gap=2000, **kw)
    with pytest.raises(InvalidInputError, match="trace must be"):
        slip_profiles(rupture.dx, rupture.dy, trace[:1], **kw)


def test_correlation_area_of_white_and_smoothed_noise():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    white = rng.normal(size=(120, 120))
    assert correlation_area(white) == pytest.approx(1.0, abs=0.3)
    smooth = ndimage.uniform_filter(white, 4)  # 4 × 4 box: 16 nodes share each value
    assert 8 < correlation_area(smooth, scale=None) < 20


def test_grid_components():
    north_up = Affine(10, 0, 0, 0, -10, 0)
    dx, dy = grid_components(np.array([1.0]), np.array([2.0]), north_up)
    assert dx[0] == pytest.approx(1.0) and dy[0] == pytest.approx(-2.0)
    a = np.radians(30)  # grid rotated: columns point 30° north of east
    rotated = Affine(10 * np.cos(a), 10 * np.sin(a), 0, 10 * np.sin(a), -10 * np.cos(a), 0)
    dx, dy = grid_components(np.cos(a), np.sin(a), rotated)  # a 1 m vector along the columns
    assert dx == pytest.approx(1.0) and dy == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InvalidInputError, match="square"):
        grid_components(1.0, 1.0, Affine(10, 0, 0, 0, -20, 0))


# ------------------------------------------------------------------------------------------ mosaic
CENTRES = [(35.55, 37.5), (35.85, 37.52), (36.15, 37.48)]  # T2 crosses 36° E, T3 is in UTM zone 37


def _truth_on(m, tiles):
    g = m.grid
    rr, cc = np.indices(g.shape)
    x, y = apply_transform(g.transform, cc + 0.5, rr + 0.5)
    return tiles.truth(g.crs, x, y)


def test_jacobian_is_the_convergence_difference():
    lon, lat = np.array([35.9, 36.0, 36.1]), np.array([37.5, 40.0, 30.0])
    z36, z37 = CRS.from_epsg(32636), CRS.from_epsg(32637)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32636", always_xy=True).transform(lon, lat)
    jac = reprojection_jacobian(z37, z36, x, y)  # vectors of zone 37 turned into zone 36 axes
    angle = np.degrees(np.arctan2(jac[:, 1, 0], jac[:, 0, 0]))
    g36 = Proj("EPSG:32636").get_factors(lon, lat)
    g37 = Proj("EPSG:32637").get_factors(lon, lat)
    assert angle == pytest.approx(g36.meridian_convergence - g37.meridian_convergence, abs=1e-4)
    assert abs(angle[0]) > 3.0  # about 3.6° at the zone boundary
    scale = np.hypot(jac[:, 0, 0], jac[:, 1, 0])
    assert scale == pytest.approx(g36.meridional_scale / g37.meridional_scale, rel=1e-6)
    assert np.allclose(reprojection_jacobian(z36, z36, x, y), np.eye(2), atol=1e-9)


def test_mosaic_turns_vectors_across_utm_zones():
    uniform = lambda lon, lat: (np.full(np.shape(lon), 20.0), np.full(np.shape(lon), 0.0))  # noqa: E731
    tiles = make_tiles(CENTRES, uniform, noise=0.0, size=30000, cell=200)
    m = mosaic(list(tiles.tiles), adjust="none")
    assert m.grid.crs == utm_crs(35.85, 37.5) and m.count.max() == 2
    te, tn = _truth_on(m, tiles)
    err = np.hypot(m.east - te, m.north - tn)
    assert np.nanmax(err) < 0.02  # m; a scalar reprojection would be 20 m × 3.6° = 1.3 m off in zone 37
    assert np.isfinite(m.east).mean() > 0.8


def test_mosaic_removes_tile_biases_without_seams():
    field = ground_rupture(35.85, 37.5, azimuth=70, slip=5.0)
    biases = [(1.0, -0.5), (-2.0, 1.5), (0.8, 2.5)]
    tiles = make_tiles(CENTRES, field, biases=biases, noise=0.5, size=30000, cell=200)
    m = mosaic(list(tiles.tiles))
    assert len(m.overlaps) == 2 and all(o.nodes > 1000 for o in m.overlaps)
    assert max(abs(v) for o in m.overlaps for v in o.after) < 1e-6
    te, tn = _truth_on(m, tiles)
    err_e, err_n = m.east - te, m.north - tn
    # relative level of each tile where it alone is used; the common level is free (area-weighted mean)
    levels = []
    for t in tiles.tiles:
        own = _footprint(m, t) & (m.count == 1)
        levels.append((np.nanmedian(err_e[own]), np.nanmedian(err_n[own])))
    levels = np.array(levels)
    seams = np.abs(levels[1:] - levels[:-1])
    assert seams.max() < 0.05 * PIXEL / 10  # 0.05 m: a hundredth of the 0.05 px (0.5 m) target
    ds = m.to_dataset()
    assert dataset_grid(ds).same_as(m.grid)
    again = mosaic([ds.rename({"dx": "dx"})], adjust="none")
    assert np.allclose(again.east, m.east, equal_nan=True, atol=1e-4)


def _footprint(m, tile):
    g = m.grid
    rr, cc = np.indices(g.shape)
    x, y = apply_transform(g.transform, cc + 0.5, rr + 0.5)
    tx, ty = Transformer.from_crs(g.crs.to_wkt(), tile.crs.to_wkt(), always_xy=True).transform(x, y)
    col, row = apply_transform(~tile.transform, tx, ty)
    h, w = tile.east.shape
    return (row > 2) & (row < h - 2) & (col > 2) & (col < w - 2)


def test_mosaic_bad_input():
    field = ground_rupture(35.85, 37.5)
    tiles = make_tiles(CENTRES[:2], field, noise=0.0, size=10000, cell=500)
    empty = [
        DisplacementTile(np.full_like(t.east, np.nan), t.north * np.nan, t.crs, t.transform, name=t.name)
        for t in tiles.tiles
    ]
    with pytest.raises(EmptyFieldError, match="none of the 2 tiles"):
        mosaic(empty)
    with pytest.raises(InvalidInputError, match="not a projected CRS"):
        DisplacementTile(np.zeros((3, 3)), np.zeros((3, 3)), "EPSG:4326", Affine(0.1, 0, 30, 0, -0.1, 40))
    with pytest.raises(InvalidInputError, match="reference="):
        mosaic(list(tiles.tiles), reference="nope")
    with pytest.raises(InvalidInputError, match="at least one tile"):
        mosaic([])
    part = mosaic([tiles.tiles[0], empty[1]])
    assert part.dropped == ("T2",)


# ------------------------------------------------------------------------------------------ vector
@pytest.fixture
def node_grid() -> GeoGrid:
    return GeoGrid(CRS.from_epsg(32636), Affine(CELL, 0, 700000, 0, -CELL, 4170000), (69, 69))


def test_trace_geojson_round_trip(tmp_path, node_grid, rupture):
    trace = rupture.true_trace()[::10]
    for crs in ("EPSG:4326", "EPSG:32637"):
        path = write_trace_geojson(tmp_path / "trace.geojson", trace, node_grid, crs=crs, properties={"n": 1})
        doc = json.loads(path.read_text())
        assert ("crs" in doc) == (crs != "EPSG:4326")
        back = read_trace(path, node_grid)
        assert len(back) >= len(trace)  # densified to ≤ 2 cells
        d = np.min(np.hypot(*(back[:, None, :] - trace[None, :, :]).transpose(2, 0, 1)), axis=0)
        assert d.max() < 1e-3  # every original vertex is on the read trace
    assert sorted(f.name for f in tmp_path.iterdir()) == ["trace.geojson"]  # atomic: no leftovers


def test_read_trace_joins_parts_and_refuses_bad_crs(tmp_path, node_grid):
    to_ll = Transformer.from_crs("EPSG:32636", "EPSG:4326", always_xy=True)
    xs = 700000 + CELL * np.array([10.5, 20.5, 30.5, 40.5])
    y = 4170000 - CELL * 30.5
    lon, lat = to_ll.transform(xs, np.full(4, y))
    parts = {
        "type": "MultiLineString",
        "coordinates": [[[lon[2], lat[2]], [lon[3], lat[3]]], [[lon[1], lat[1]], [lon[0], lat[0]]]],
    }
    tr = read_trace({"type": "Feature", "geometry": parts, "properties": {}}, node_grid)
    assert tr[:, 1].min() == pytest.approx(10, abs=1e-3) and tr[:, 1].max() == pytest.approx(40, abs=1e-3)
    assert np.all(np.abs(np.diff(tr[:, 1])) <= 2.0 + 1e-4)  # one chain, no jump back
    utm = {"type": "LineString", "coordinates": [[float(x), y] for x in xs]}
    with pytest.raises(TraceCRSError, match="not longitude/latitude") as exc:
        read_trace(utm, node_grid)
    assert "crs='EPSG:<code>'" in str(exc.value) and isinstance(exc.value, ValueError)
    assert read_trace(utm, node_grid, crs="EPSG:32636")[0] == pytest.approx([30.0, 10.0])
    far = {"type": "LineString", "coordinates": [[10.0, 50.0], [10.1, 50.1]]}
    with pytest.raises(TraceOutsideError, match="does not cross the area"):
        read_trace(far, node_grid)
    with pytest.raises(DataError, match="does not exist"):
        read_trace(tmp_path / "missing.geojson", node_grid)
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(DataError, match="not valid GeoJSON"):
        read_trace(tmp_path / "bad.geojson", node_grid)
    with pytest.raises(InvalidInputError, match="LineString"):
        read_trace({"type": "Point", "coordinates": [35.0, 37.0]}, node_grid)
    (tmp_path / "trace.shp").write_bytes(b"\0" * 100)
    with pytest.raises(InvalidInputError, match="ogr2ogr -f GeoJSON"):
        read_trace(tmp_path / "trace.shp", node_grid)


# ---------------------------------------------------------------------------------------- products
def test_profiles_csv_and_figure(tmp_path, rupture):
    prof = slip_profiles(
        rupture.dx, rupture.dy, rupture.true_trace(), spacing=500, half_width=1000, pixel_size=CELL
    )
    path = write_profiles_csv(tmp_path / "profiles.csv", prof)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == len(prof) + 1
    k = int(np.nonzero(prof.valid)[0][0])
    assert float(rows[k + 1][4]) == pytest.approx(prof.parallel[k], abs=1e-4)
    fig = plot_slip(
        prof, tmp_path / "slip.png", truth={"distance": prof.distance, "parallel": rupture.slip_at(prof)[0]}
    )
    assert len(fig.axes) == 2
    assert (tmp_path / "slip.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------ whole chain
@pytest.mark.slow
@pytest.mark.parametrize("trend", [0.35, 0.8])
def test_chain_on_a_real_texture(tmp_path, trend):
    """Landsat-8 texture warped by a curved rupture (2-5 m right-lateral, ±0.5 m opening, 10 m pixels, noise,
    ±0.03 px detector stripes, 0.02 px jitter): match, map the trace, measure the slip, write the products."""
    from geodeform.demo import load_texture
    from geodeform.io import node_grid
    from geodeform.offsets import match
    from geodeform.quake import FAULT_MATCHING
    from geodeform.quake.synthetic import make_rupture_pair

    tex = load_texture()
    pair = make_rupture_pair(tex, model=RuptureModel(tex.shape, trend=trend))
    field = match(pair.reference, pair.secondary, search_range=4, **FAULT_MATCHING)
    step = float(field.rows[1] - field.rows[0])
    dx, dy, cell = field.dx * PIXEL, field.dy * PIXEL, step * PIXEL
    trace = detect_trace(dx, dy, pixel_size=cell)
    rows, cols = field.rows[0] + trace[:, 0] * step, field.cols[0] + trace[:, 1] * step
    dist = np.abs(pair.model.locate(rows, cols)[1])
    assert np.median(dist) < FAULT_MATCHING["chip_size"] / 4  # px: well within one chip
    prof = slip_profiles(
        dx, dy, trace, spacing=500, half_width=1000, pixel_size=cell, gap=160, track_angle=0.0
    )
    t = pair.model.locate(field.rows[0] + prof.row * step, field.cols[0] + prof.col * step)[0]
    s, o = pair.model.slip(t)
    ok = prof.valid
    assert ok.sum() >= 9
    assert np.sqrt(np.mean((prof.parallel[ok] - s[ok]) ** 2)) <= 0.3  # m
    assert np.sqrt(np.mean((prof.normal[ok] - o[ok]) ** 2)) <= 0.4  # m
    image = GeoGrid(CRS.from_epsg(32636), Affine(PIXEL, 0, 500000, 0, -PIXEL, 4200000), tex.shape)
    grid = node_grid(image, field.rows, field.cols)
    back = read_trace(write_trace_geojson(tmp_path / "trace.geojson", trace, grid), grid)
    assert np.abs(back[0] - trace[0]).max() < 1e-3
    write_profiles_csv(tmp_path / "profiles.csv", prof)
    plot_slip(prof, tmp_path / "slip.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles.csv", "slip.png", "trace.geojson"]
