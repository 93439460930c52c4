"""End-to-end test of ``geodeform run`` with ``preset: quake`` on synthetic scenes with a known rupture.

Three overlapping tiles (the middle one straddles 36° E, the last one is in UTM zone 37) of a real Landsat
texture, two pre- and two post-event images each with noise, misregistration, jitter and detector stripes
(:func:`geodeform.quake.synthetic.make_scenes`), over a straight right-lateral rupture whose slip grows from
2 to 5 m along strike. The products are scored against that truth: slip profiles (RMSE, metres), the trace
(distance, image pixels) and the seams between the tiles in the mosaic (image pixels).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from _service_helpers import auth
from geodeform.config import load_config
from geodeform.errors import GeodeformError, InvalidInputError, NoDataError
from geodeform.io import apply_transform, dataset_grid
from geodeform.pairs import coseismic_pairs
from geodeform.quake import TraceCRSError, TraceOutsideError
from geodeform.quake.synthetic import SyntheticScenes, ground_rupture, make_scenes
from geodeform.workflows import run_job
from geodeform.workflows.quake_plan import plan_quake

PIXEL = 10.0  # metres per image pixel
# 384 px x 10 m tiles 0.03° (2.6 km) apart: ~1.2 km overlaps; T2 crosses 36° E, T3 is in UTM zone 37
CENTRES = [(35.955, 37.50), (35.985, 37.505), (36.015, 37.51)]


def _slip(s: np.ndarray) -> np.ndarray:
    """Right-lateral slip (m) at along-strike distance ``s`` (m) from the middle tile: 2 to 5 m."""
    return 3.5 + 1.5 * np.tanh(np.asarray(s, dtype=np.float64) / 3000.0)


@pytest.fixture(scope="module")
def scenes(texture) -> SyntheticScenes:
    """Two pre- and two post-event images of the three tiles of :data:`CENTRES`."""
    field = ground_rupture(35.985, 37.505, azimuth=78.0, slip=_slip, depth=8000.0)
    return make_scenes(texture, CENTRES, field, shape=(384, 384), pixel_size=PIXEL, seed=1)


@pytest.fixture(scope="module")
def quake_run(tmp_path_factory, scenes):
    """A finished quake job over :data:`CENTRES` and its scenes."""
    root = tmp_path_factory.mktemp("quake")
    config = load_config(
        {
            "name": "quake-e2e",
            "preset": "quake",
            "inputs": scenes.write_inputs(root / "inputs"),
            "quake": {"event_date": scenes.event_date},
            "corrections": {"track_angle_deg": scenes.track_angle},
            "compute": {"cluster": "sync"},
        }
    )
    result = run_job(config, root / "run")
    return scenes, result


def _lonlat(crs, x, y):
    return Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)


@pytest.mark.slow
def test_quake_job_products_and_zones(quake_run):
    scenes, result = quake_run
    assert [t.crs.to_epsg() for t in scenes.tiles] == [32636, 32636, 32637]
    run = result.run_dir
    for key, name in [
        ("offsets_nc", "offsets.nc"),
        ("offsets_tif", "offsets.tif"),
        ("trace", "trace.geojson"),
        ("profiles", "profiles.csv"),
        ("report", "report.html"),
    ]:
        assert Path(result.products[key]) == run / name and (run / name).stat().st_size > 0
    assert len(result.tiles) == 3 and all(len(t.network) == 4 for t in result.tiles)  # 2 pre x 2 post
    assert all(o.status == "ok" for o in result.pairs)
    assert [f.pairs for f in result.fields] == [4, 4, 4]
    assert result.mosaic is not None and result.mosaic.grid.crs.to_epsg() == 32636  # zone of the centre
    ds = xr.open_dataset(run / "offsets.nc")
    assert ds.attrs["geodeform_preset"] == "quake" and json.loads(ds.attrs["geodeform_fields"]) == [
        "T1",
        "T2",
        "T3",
    ]
    assert "Slip along strike" in (run / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_quake_job_slip_profiles_match_the_truth(quake_run):
    scenes, result = quake_run
    run = result.run_dir
    grid = dataset_grid(xr.open_dataset(run / "offsets.nc"))
    with open(run / "profiles.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["parallel_m"]]
    assert len(rows) >= 12  # profiles every 500 m along ~9 km of trace
    row = np.array([float(r["row"]) for r in rows])
    col = np.array([float(r["col"]) for r in rows])
    lon, lat = _lonlat(grid.crs, *apply_transform(grid.transform, col + 0.5, row + 0.5))
    truth = scenes.field.slip_at(lon, lat)
    assert truth.min() < 2.6 and truth.max() > 4.5  # the profiles span the 2-5 m of slip
    parallel = np.array([float(r["parallel_m"]) for r in rows])
    normal = np.array([float(r["normal_m"]) for r in rows])
    assert np.sqrt(np.mean((parallel - truth) ** 2)) <= 0.3  # m (measured 0.22)
    assert np.sqrt(np.mean(normal**2)) <= 0.3  # m: a pure strike-slip rupture
    assert np.corrcoef(parallel, truth)[0, 1] > 0.95  # the variation along strike is followed


@pytest.mark.slow
def test_quake_job_trace_matches_the_truth(quake_run):
    scenes, result = quake_run
    doc = json.loads((result.run_dir / "trace.geojson").read_text(encoding="utf-8"))
    lonlat = np.asarray(doc["geometry"]["coordinates"], dtype=np.float64)
    along, across = scenes.field.local(lonlat[:, 0], lonlat[:, 1])
    assert np.median(np.abs(across)) / PIXEL <= 3.0  # px; one chip is 24 px (measured 0.7)
    assert np.percentile(np.abs(across), 90) / PIXEL <= 6.0
    assert along.max() - along.min() > 8000.0  # m: the trace runs through all three tiles


def _sole_levels(scenes: SyntheticScenes, result, ds: xr.Dataset) -> np.ndarray:
    """Median (east, north) error of the mosaic vs the truth where each tile alone gives the value and far
    from the trace (the stacked offsets there are smooth), pixels."""
    grid = dataset_grid(ds)
    rr, cc = np.indices(grid.shape)
    x, y = apply_transform(grid.transform, cc + 0.5, rr + 0.5)
    te, tn = scenes.truth(grid.crs, x, y)
    err_e, err_n = ds["dx"].values - te, ds["dy"].values - tn
    lon, lat = _lonlat(grid.crs, x, y)
    far = np.abs(scenes.field.local(lon, lat)[1]) > 1000.0
    sole = ds["count"].values == 1
    levels = []
    for tile in scenes.tiles:
        tx, ty = Transformer.from_crs(grid.crs.to_wkt(), tile.crs.to_wkt(), always_xy=True).transform(x, y)
        col, row = apply_transform(~tile.transform, tx, ty)
        h, w = tile.images[0].shape
        inside = (row > 24) & (row < h - 24) & (col > 24) & (col < w - 24)
        own = inside & sole & far & np.isfinite(err_e)
        assert own.sum() > 50
        levels.append((np.median(err_e[own]), np.median(err_n[own])))
    return np.asarray(levels) / PIXEL


@pytest.mark.slow
def test_quake_job_mosaic_has_no_seams_across_the_zone_boundary(quake_run):
    scenes, result = quake_run
    ds = xr.open_dataset(result.run_dir / "offsets.nc")
    assert (ds["count"].values >= 2).sum() > 200  # the overlaps
    levels = _sole_levels(scenes, result, ds)
    seams = np.abs(levels[1:] - levels[:-1])  # T1|T2 and T2|T3 (across 36° E)
    assert seams.max() <= 0.05  # px
    assert np.abs(levels).max() <= 0.1  # px: no tile is off the truth either


def _profile_rmse(scenes: SyntheticScenes, grid, text: str) -> tuple[float, int]:
    """RMSE (m) of the fault-parallel slip of a profiles CSV against the truth, and the profiles scored."""
    rows = [r for r in csv.DictReader(text.splitlines()) if r["parallel_m"]]
    row = np.array([float(r["row"]) for r in rows])
    col = np.array([float(r["col"]) for r in rows])
    lon, lat = _lonlat(grid.crs, *apply_transform(grid.transform, col + 0.5, row + 0.5))
    parallel = np.array([float(r["parallel_m"]) for r in rows])
    return float(np.sqrt(np.mean((parallel - scenes.field.slip_at(lon, lat)) ** 2))), len(rows)


@pytest.mark.slow
def test_service_quake_process_returns_the_products(service, scenes, tmp_path):
    """The service's ``quake`` process on the two tiles either side of 36° E, one pre x post pair each: the
    same chain, its products served, the slip right."""
    token = service.add_user("quake-user")
    local = scenes.write_inputs(service.data_root / "quake")
    inputs = [
        {**i, "path": str(Path(i["path"]).relative_to(service.data_root))}
        for i in local
        if i["tile"] in ("T2", "T3") and i["date"] in (scenes.dates[1], scenes.dates[2])
    ]
    job = {
        "inputs": inputs,
        "quake": {"event_date": scenes.event_date},
        "corrections": {"track_angle_deg": scenes.track_angle},
    }
    doc = service.run("quake", job, token)
    assert doc["status"] == "successful", doc
    c, a = service.client, auth(token)
    res = c.get(f"/jobs/{doc['jobID']}/results", headers=a).json()
    assert {"offsets_nc", "offsets_tif", "trace", "profiles", "slip_plot", "report", "catalog"} <= set(res)
    assert res["profiles"]["type"].startswith("text/csv") and res["slip_plot"]["type"] == "image/png"
    nc = tmp_path / "offsets.nc"
    nc.write_bytes(c.get(res["offsets_nc"]["href"], headers=a).content)
    grid = dataset_grid(xr.open_dataset(nc))
    assert grid.crs.to_epsg() in (32636, 32637)
    rmse, n = _profile_rmse(scenes, grid, c.get(res["profiles"]["href"], headers=a).text)
    assert n >= 8 and rmse <= 0.3  # m
    trace = c.get(res["trace"]["href"], headers=a).json()
    lonlat = np.asarray(trace["geometry"]["coordinates"])
    assert np.median(np.abs(scenes.field.local(lonlat[:, 0], lonlat[:, 1])[1])) / PIXEL <= 3.0  # px


# ------------------------------------------------------------------------------------- bad input (fast)
def test_coseismic_pairs_pair_each_orbit_around_the_event():
    dates = ["2023-01-20", "2023-01-25", "2023-01-30", "2023-02-06", "2023-02-09", "2023-02-14", "2023-02-19"]
    net = coseismic_pairs(dates, "2023-02-06", pre=2, post=2)
    # the latest two before (the event day is left out) x the earliest two after
    assert sorted(map(tuple, net.pairs)) == [(1, 4), (1, 5), (2, 4), (2, 5)]
    orbits = ["A", "B", "A", "B", "A", "B", "A"]
    net = coseismic_pairs(dates, "2023-02-06", orbits=orbits, pre=1, post=1)
    assert sorted(map(tuple, net.pairs)) == [(1, 5), (2, 4)]  # never across orbits
    net = coseismic_pairs(dates, "2023-02-06", pre=2, post=2, max_days=7)
    assert sorted(map(tuple, net.pairs)) == [(2, 4)]  # 7 days before, 3 after


def test_coseismic_pairs_bad_input_names_the_problem():
    dates = ["2023-01-20", "2023-01-25", "2023-02-09"]
    with pytest.raises(InvalidInputError, match=r"no post-event image.*outside the data range"):
        coseismic_pairs(dates, "2023-03-01")
    with pytest.raises(InvalidInputError, match="no pre-event image"):
        coseismic_pairs(dates, "2023-01-01")
    with pytest.raises(InvalidInputError, match="not a date"):
        coseismic_pairs(dates, "yesterday")
    with pytest.raises(NoDataError, match="orbit B: 1 before, 0 after; orbit A: 0 before, 2 after"):
        coseismic_pairs(dates, "2023-01-22", orbits=["B", "A", "A"])
    with pytest.raises(NoDataError, match="within 5 days"):
        coseismic_pairs(dates, "2023-02-01", max_days=5)
    assert issubclass(TraceOutsideError, ValueError) and issubclass(NoDataError, GeodeformError)


def _tiny_inputs(folder: Path, dates: list[str]) -> list[dict[str, str]]:
    """64 x 64 GeoTIFFs of one tile at 10 m near 35.96° E 37.5° N (UTM 36N), one per date."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for day in dates:
        path = folder / f"T1_{day}.tif"
        profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="float32", crs="EPSG:32636")
        with rasterio.open(path, "w", transform=from_origin(760000, 4155000, 10, 10), **profile) as dst:
            dst.write(rng.normal(size=(64, 64)).astype(np.float32), 1)
        out.append({"path": str(path), "date": day, "tile": "T1"})
    return out


def _quake_config(inputs, **quake):
    return {
        "name": "bad",
        "preset": "quake",
        "inputs": inputs,
        "quake": {"event_date": "2023-02-06", **quake},
    }


def test_quake_job_refuses_missing_sides_at_load_time(tmp_path):
    before = _tiny_inputs(tmp_path, ["2023-01-20", "2023-01-25"])
    with pytest.raises(GeodeformError, match="no post-event image"):
        load_config(_quake_config(before))
    with pytest.raises(GeodeformError, match=r"quake\.event_date is required"):
        load_config({"name": "bad", "preset": "quake", "inputs": before})
    search = {"start": "2023-03-01", "end": "2023-04-01", "aoi": {"bbox": [35.9, 37.4, 36.1, 37.6]}}
    with pytest.raises(GeodeformError, match="outside the search period"):
        load_config(
            {"name": "bad", "preset": "quake", "search": search, "quake": {"event_date": "2023-02-06"}}
        )


def test_quake_job_refuses_a_bad_trace_before_writing(tmp_path):
    inputs = _tiny_inputs(tmp_path / "in", ["2023-01-25", "2023-02-09"])
    far = tmp_path / "far.geojson"  # lon/lat, 50 km east of the images
    far.write_text(json.dumps({"type": "LineString", "coordinates": [[36.5, 37.4], [36.6, 37.6]]}))
    run = tmp_path / "run"
    with pytest.raises(TraceOutsideError, match=r"quake\.trace"):
        run_job(load_config(_quake_config(inputs, trace=str(far))), run)
    assert not run.exists()  # refused before anything was written
    utm = tmp_path / "utm.geojson"  # UTM 36N metres crossing the images, without a CRS
    utm.write_text(json.dumps({"type": "LineString", "coordinates": [[760100, 4154400], [760600, 4154600]]}))
    with pytest.raises(TraceCRSError, match=r"trace_crs|CRS"):
        plan_quake(load_config(_quake_config(inputs, trace=str(utm))))
    plan = plan_quake(load_config(_quake_config(inputs, trace=str(utm), trace_crs="EPSG:32636")))
    assert [t.name for t in plan.tiles] == ["T1"]
    with pytest.raises(InvalidInputError, match="not found"):
        plan_quake(load_config(_quake_config(inputs, trace=str(tmp_path / "missing.geojson"))))
