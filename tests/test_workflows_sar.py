"""The ``sar`` preset (geodeform.workflows.sar): whole jobs on Sentinel-1 GRD products with known motion.

Two kinds of data:

* **synthetic-from-real**: the real annotation, calibration and noise XML of an IW GRDH product (sarsen test
  data, metadata only) with the real amplitude texture of another IW GRD crop (rio-tiler-pds), a second
  date made by ``geodeform.sar.simulate`` (the texture moved by a known field, independent speckle on both
  dates). Skipped when ``shared/data`` is absent.
* **synthetic geometry**: small flat-Earth GRD products written by ``tests/_s1_safe.py`` (an ascending and a
  descending track over one area, texture from two parts of the real S1 GRD crop with independent speckle),
  for the east/north/up combination, which needs two real passes over one area that the shared data do not
  have.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from scipy import ndimage

from _s1_safe import SlcSpec, ground_position, write_slc_safe
from _shared import shared_data
from geodeform.config import load_config
from geodeform.decompose import EnuReason, azimuth_vector, los_vector
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.sar import MissingAnnotationError, footprint, open_s1, radar_coordinates
from geodeform.sar.simulate import gamma_speckle, grd_from_template, warp
from geodeform.workflows import run_job

S1 = shared_data() / "s1_grd"
TEMPLATE = next((S1 / "sarsen_grd_metadata_only").glob("*.SAFE"), S1 / "missing")
TEXTURE = S1 / "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B" / "measurement"
needs_shared = pytest.mark.skipif(not TEMPLATE.exists(), reason="shared/data/s1_grd not available")
YEAR = 365.25


# --- synthetic-from-real: one descending track -------------------------------------------------------------
def _real_pair(folder: Path, shape: tuple[int, int] = (480, 560), seed: int = 0):  # type: ignore[no-untyped-def]
    """Two GRD SAFEs of the real template geometry 12 days apart, the second moved by a known bump."""
    with rasterio.open(TEXTURE / "iw-vv.tiff") as src:
        amp = src.read(1).astype(float)[200 : 200 + shape[0], 300 : 300 + shape[1]]
    h, w = amp.shape
    rr, cc = np.mgrid[0:h, 0:w]
    bump = np.exp(-(((rr - h / 2) / 55) ** 2 + ((cc - w / 2) / 70) ** 2))  # stable ground around it
    dx, dy = 1.8 * bump, -1.2 * bump  # px: far range, against the flight
    rng = np.random.default_rng(seed)
    a1 = np.sqrt(gamma_speckle(amp**2, 4.4, rng))
    a2 = np.sqrt(gamma_speckle(np.clip(warp(amp, dx, dy, order=3), 0, None) ** 2, 4.4, rng))
    origin = (8000, 12000)
    s1 = grd_from_template(TEMPLATE, folder, a1, origin=origin)
    s2 = grd_from_template(TEMPLATE, folder, a2, origin=origin, cycles=1)
    window = open_s1(s1, polarisation="VV", window=(*origin, h, w))
    return s1, s2, window, dx, dy


def _sar_job(inputs: list[dict], **extra: object) -> dict:
    job = {
        "name": "s1",
        "preset": "sar",
        "inputs": inputs,
        "matching": {"step": 16, "expected_max_speed": 1000.0},
        "compute": {"cluster": "sync"},
    }
    job.update(extra)
    return job


@needs_shared
@pytest.mark.slow
def test_sar_job_on_a_real_geometry_recovers_the_imposed_field(tmp_path: Path) -> None:
    s1, s2, ref, dx, dy = _real_pair(tmp_path / "in")
    roi = footprint(ref, whole=False).buffer(-0.008).bounds
    inputs = [{"path": str(s1), "date": "2021-12-23"}, {"path": str(s2), "date": "2022-01-04"}]
    result = run_job(load_config(_sar_job(inputs, roi=list(roi))), tmp_path / "run")
    pair = result.pairs[0]
    assert pair.status == "ok" and pair.coverage > 0.95 and pair.dt_days == 12
    with xr.open_dataset(pair.path) as ds:
        coords = radar_coordinates(ref, result.stack.grid)
        tdx = ndimage.map_coordinates(dx, [coords.rows, coords.cols], order=1, cval=np.nan)
        tdy = ndimage.map_coordinates(dy, [coords.rows, coords.cols], order=1, cval=np.nan)
        inc = np.deg2rad(ds["incidence"].values)
        los_truth = -tdx * 10.0 * np.sin(inc)  # GRD: 10 m ground range pixels, los + towards the satellite
        err_los = ds["los"].values - los_truth
        err_az = ds["azimuth"].values - tdy * 10.0
        assert ds.attrs["sar_relative_orbit"] == 22 and ds.attrs["sar_pass"] == "descending"
    rmse_los = float(np.sqrt(np.nanmean(err_los**2)))
    rmse_az = float(np.sqrt(np.nanmean(err_az**2)))
    assert np.isfinite(err_los).mean() > 0.9
    assert rmse_los < 0.1 * np.nanmax(np.abs(los_truth)) and rmse_az < 0.1 * 12.0, (rmse_los, rmse_az)
    # the track product: mean LOS velocity of the one pair, m/yr
    with xr.open_dataset(result.products["track_022_nc"]) as track:
        v = track["los_velocity"].values
        assert float(np.sqrt(np.nanmean((v - los_truth * YEAR / 12) ** 2))) < 0.1 * np.nanmax(
            np.abs(los_truth) * YEAR / 12
        )
    again = run_job(load_config(_sar_job(inputs, roi=list(roi))), tmp_path / "run")
    assert again.pairs_reused == 1 and again.pairs_computed == 0


# --- preflight and bad input (metadata only) ---------------------------------------------------------
@needs_shared
@pytest.mark.slow  # ~6 s: nine preflights
def test_sar_job_bad_inputs_are_named_before_matching(tmp_path: Path) -> None:
    s1, s2, _, _, _ = _real_pair(tmp_path / "in", shape=(64, 64))
    good = [{"path": str(s1), "date": "2021-12-23"}, {"path": str(s2), "date": "2022-01-04"}]
    with pytest.raises(
        InvalidInputError, match=r"inputs\[1\]\.date: 2022-01-05 but .* acquired on 2022-01-04"
    ):
        run_job(load_config(_sar_job([good[0], {**good[1], "date": "2022-01-05"}])), tmp_path / "r1")
    with pytest.raises(InvalidInputError, match=r"inputs\[0\]\.orbit: 7 but .* relative orbit 22"):
        run_job(load_config(_sar_job([{**good[0], "orbit": 7}, good[1]])), tmp_path / "r2")
    with pytest.raises(InvalidInputError, match=r"no such|not found"):
        run_job(
            load_config(_sar_job([good[0], {**good[1], "path": str(tmp_path / "nope.SAFE")}])),
            tmp_path / "r3",
        )
    assert not (tmp_path / "r3").exists()  # nothing written
    # a measurement without its annotation
    loose = tmp_path / "loose.tiff"
    loose.write_bytes(next((s2 / "measurement").glob("*.tiff")).read_bytes())
    with pytest.raises(MissingAnnotationError, match="annotation"):
        run_job(load_config(_sar_job([good[0], {"path": str(loose), "date": "2022-01-04"}])), tmp_path / "r4")
    # another polarisation than the products hold
    with pytest.raises(Exception, match="VH"):
        run_job(load_config(_sar_job(good, sar={"polarisation": "VH"})), tmp_path / "r5")
    # a single track cannot give east/north/up
    with pytest.raises(
        InvalidInputError,
        match=r"cannot resolve east, north and up from relative orbit 22 \(descending\) with range and az",
    ):
        run_job(load_config(_sar_job(good, sar={"combine": "enu"})), tmp_path / "r6")
    with pytest.raises(InvalidInputError, match=r"cannot resolve .* range only"):
        run_job(load_config(_sar_job(good, sar={"combine": "enu", "use_azimuth": False})), tmp_path / "r7")
    # pairs only within an orbit, and an roi the products do not cover
    with pytest.raises(InvalidInputError, match="same_orbit"):
        load_config(_sar_job(good, pairs={"same_orbit": False}))
    with pytest.raises(NoDataError, match="does not cover the map grid"):
        run_job(load_config(_sar_job(good, roi=[10.0, 40.0, 10.1, 40.1])), tmp_path / "r8")
    with pytest.raises(NoDataError, match=r"no pair: .*relative orbit 22: 2021-12-23, 2022-01-04"):
        run_job(load_config(_sar_job(good, pairs={"min_range": 20})), tmp_path / "r9")


@needs_shared
def test_real_grd_crops_without_annotation_stop_with_what_to_give(tmp_path: Path) -> None:
    """The real rio-tiler-pds crops are measurement TIFFs with GCPs but no annotation XML: the chain says
    which input lacks what, and what to give, before any matching (no geometry is guessed)."""
    real = TEXTURE / "iw-vv.tiff"
    later = tmp_path / "measurement" / "iw-vv.tiff"
    later.parent.mkdir()
    later.write_bytes(real.read_bytes())
    inputs = [{"path": str(real), "date": "2018-07-16"}, {"path": str(later), "date": "2018-07-28"}]
    with pytest.raises(
        MissingAnnotationError,
        match=r"inputs\[0\]: .*iw-vv\.tiff: annotation iw-vv\.xml not found .* give the whole SAFE folder",
    ):
        run_job(load_config(_sar_job(inputs)), tmp_path / "run")
    assert not list((tmp_path / "run").glob("pairs/*"))


# --- synthetic geometry: ascending + descending -> east/north/up ------------------------------------------
CENTRE = (45.2, 6.3)  # lat, lon of the common area
N = 384  # lines and samples of each synthetic product, 10 m pixels


def _enu_truth(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Displacement over 12 days, metres [E, N, U]: a landslide-like bump 2.5 km wide at the centre."""
    y = (lat - CENTRE[0]) * 111_320.0
    x = (lon - CENTRE[1]) * 111_320.0 * np.cos(np.deg2rad(CENTRE[0]))
    g = np.exp(-((x / 500.0) ** 2 + (y / 450.0) ** 2))
    return np.stack([22.0 * g, -16.0 * g, -12.0 * g], axis=-1)


def _track(folder: Path, texture: np.ndarray, *, heading: float, incidence: float, orbit: int, day: int,
           seed: int) -> tuple[Path, Path]:  # fmt: skip
    """Two GRDs of one track, 12 days apart, covering CENTRE, the second moved by the truth."""
    h = np.deg2rad(heading)
    half = (N - 1) / 2 * 10.0  # metres from the first line/sample to the centre, along and across
    east = half * np.sin(h) + half * np.sin(h + np.pi / 2)
    north = half * np.cos(h) + half * np.cos(h + np.pi / 2)
    lat0 = CENTRE[0] - np.rad2deg(north / 6_371_000.0)
    lon0 = CENTRE[1] - np.rad2deg(east / (6_371_000.0 * np.cos(np.deg2rad(CENTRE[0]))))
    absolute = 73 + (orbit - 1) + 175 * 171  # relative orbit `orbit` of S1A
    spec = SlcSpec(
        product_type="GRD", swath="IW", bursts=1, lines_per_burst=N, samples=N, range_spacing=10.0,
        azimuth_spacing=10.0, incidence_near=incidence, incidence_far=incidence + 0.3, heading_deg=heading,
        pass_direction="Ascending" if abs(heading) < 90 else "Descending", absolute_orbit=absolute,
        lat0=float(lat0), lon0=float(lon0), start=datetime(2020, 6, 1, 5, 30) + timedelta(days=day),
    )  # fmt: skip
    lines, pixels = np.mgrid[0:N, 0:N].astype(float)
    lat, lon, inc = ground_position(spec, lines, pixels)
    d = _enu_truth(lat, lon)
    los = np.einsum("...k,...k->...", d, los_vector(heading, inc))
    dx = -los / np.sin(np.deg2rad(inc)) / 10.0  # ground-range pixels (+ far range)
    dy = np.einsum("...k,...k->...", d, azimuth_vector(heading)) / 10.0  # lines (+ along the flight)
    rng = np.random.default_rng(seed)
    refl = texture[seed * 200 : seed * 200 + N, seed * 300 : seed * 300 + N] ** 2
    a1 = np.sqrt(gamma_speckle(refl, 4.4, rng))
    a2 = np.sqrt(gamma_speckle(np.clip(warp(refl, dx, dy, order=3), 0, None), 4.4, rng))
    s1 = write_slc_safe(folder / f"{orbit}a", spec, a1)
    later = SlcSpec(
        **{**spec.__dict__, "start": spec.start + timedelta(days=12), "absolute_orbit": absolute + 175}
    )
    s2 = write_slc_safe(folder / f"{orbit}b", later, a2)
    return s1, s2


@needs_shared
@pytest.mark.slow
def test_ascending_and_descending_tracks_give_east_north_up(tmp_path: Path) -> None:
    with rasterio.open(TEXTURE / "iw-vv.tiff") as src:  # real S1 amplitude texture
        texture = src.read(1).astype(float)
    asc = _track(tmp_path, texture, heading=-12.0, incidence=34.0, orbit=44, day=0, seed=1)
    desc = _track(tmp_path, texture, heading=-168.0, incidence=41.0, orbit=95, day=1, seed=2)
    dates = ("2020-06-01", "2020-06-13", "2020-06-02", "2020-06-14")
    inputs = [{"path": str(p), "date": d} for p, d in zip((*asc, *desc), dates, strict=True)]
    dlat, dlon = 0.009, 0.012
    roi = [CENTRE[1] - dlon, CENTRE[0] - dlat, CENTRE[1] + dlon, CENTRE[0] + dlat]
    job = _sar_job(
        inputs, roi=roi, sar={"combine": "enu"}, matching={"step": 16, "expected_max_speed": 1500.0}
    )
    result = run_job(load_config(job), tmp_path / "run")
    assert len(result.pairs) == 2 and all(p.status == "ok" for p in result.pairs)
    with xr.open_dataset(result.products["enu_nc"]) as enu:
        xx, yy = np.meshgrid(enu["x"].values, enu["y"].values)
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(result.stack.grid.crs, 4326, always_xy=True).transform(xx, yy)
        truth = _enu_truth(lat, lon) * YEAR / 12  # m/yr
        inside = np.isfinite(enu["up"].values)
        # resolved wherever both tracks have a value; where one track's pair left a hole (the matcher's
        # outlier filter rejects a few nodes at the bump's peak) the pixel says which component is free
        both = enu["n_obs"].values == 4
        assert inside.mean() > 0.75 and inside[both].all() and not inside[~both].any()
        assert (enu["reason"].values[~both & (enu["n_obs"].values > 0)] == EnuReason.UNCONSTRAINED).all()
        summary = enu.attrs["geodeform_enu_summary"]
        assert inside.all() or "unconstrained" in summary, summary
        peak = np.abs(truth).max(axis=(0, 1))
        for k, c in enumerate(("east", "north", "up")):
            rmse = float(np.sqrt(np.nanmean((enu[c].values - truth[..., k]) ** 2)))
            assert rmse < 0.15 * peak[k], (c, rmse, peak[k])
        # the 1-sigma is not wildly off: normalised errors of order one
        z = (enu["up"].values - truth[..., 2]) / enu["up_error"].values
        assert 0.3 < float(np.nanmedian(np.abs(z))) / 0.6745 < 3.0
    # the joint series on the union of the dates: 13 days of constant motion at the last date
    with xr.open_dataset(result.products["enu_series_nc"]) as series:
        assert series["time"].size == 4
        moved = _enu_truth(lat, lon) * 13 / 12
        for k, c in enumerate(("east", "north", "up")):
            last = series[c].values[-1]
            assert (np.isfinite(last) == inside).all()
            rmse = float(np.sqrt(np.nanmean((last - moved[..., k]) ** 2)))
            assert rmse < 0.15 * np.abs(moved[..., k]).max(), (c, rmse)


def test_searched_scene_assets_become_files_open_s1_reads(tmp_path: Path) -> None:
    """A ``sentinel-1-grd`` STAC item's assets (Earth Search layout: its ``schema-product-vv`` names the RFI
    report under ``annotation/rfi/``) give the measurement and the product annotation and LUTs."""
    from geodeform.config import SarConfig
    from geodeform.search import Scene
    from geodeform.workflows.sar_search import materialise

    spec = SlcSpec(product_type="GRD", swath="IW", bursts=1, lines_per_burst=64, samples=64)
    safe = write_slc_safe(tmp_path, spec, np.full((64, 64), 100.0))
    tiff = next((safe / "measurement").glob("*.tiff"))
    stem = tiff.stem
    assets = {
        "vv": tiff.as_uri(),
        "schema-product-vv": (safe / "annotation" / "rfi" / f"rfi-{stem}.xml").as_uri(),
        "schema-calibration-vv": (safe / "annotation" / "calibration" / f"calibration-{stem}.xml").as_uri(),
    }
    scene = Scene(id=safe.stem, collection="sentinel-1-grd", datetime=spec.start, orbit=36, assets=assets)
    path, files = materialise(scene, SarConfig(), tmp_path / "cache")
    assert Path(files["annotation"] or "") == safe / "annotation" / f"{stem}.xml" and files["noise"] is None
    image = open_s1(path, **files)
    assert image.radiometry == "sigma0" and image.annotation is not None
    with pytest.raises(MissingAnnotationError, match="schema-product-vv"):
        materialise(
            Scene(id="x", collection="sentinel-1-grd", datetime=spec.start, assets={"vv": tiff.as_uri()}),
            SarConfig(),
            tmp_path / "cache",
        )
