"""Each pair against the network (geodeform.timeseries.consistency) on synthetic series with known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geodeform.synthetic import series_field
from geodeform.timeseries import invert
from geodeform.timeseries.consistency import date_disagreement, leave_date_out, pair_agreement

SIZE = 24
OFFSETS = np.array([0, 5, 12, 17, 22, 29, 34, 41, 46, 51, 58, 63])  # days since the first date
DATES = np.datetime64("2020-01-01") + OFFSETS.astype("timedelta64[D]")
BAD = 6  # the hazy date of the first test


def _network(max_days: int = 30) -> np.ndarray:
    return np.array(
        [
            (i, j)
            for i in range(len(DATES))
            for j in range(i + 1, len(DATES))
            if OFFSETS[j] - OFFSETS[i] <= max_days
        ]
    )


def _velocity() -> tuple[np.ndarray, np.ndarray]:
    """Glacier speed per day (m/day on 1 m nodes), zero off the ice."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    return series_field(rows, cols, SIZE, 2.0, cutoff=0.3)


def _pairs_from(position, pairs, rng, sigma=0.05):
    """Pair offsets d(j) - d(i) of the positions per date, plus white noise (m)."""
    dx = np.stack([position[j][0] - position[i][0] for i, j in pairs])
    dy = np.stack([position[j][1] - position[i][1] for i, j in pairs])
    return dx + rng.normal(0, sigma, dx.shape), dy + rng.normal(0, sigma, dy.shape)


def _positions(vx, vy, error_days: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Displacement per date of a steady flow, with the BAD date's image ``error_days`` of flow off on the
    moving area only (rock, v = 0, untouched)."""
    return [(vx * (t + (error_days if k == BAD else 0)), vy * (t + (error_days if k == BAD else 0)))
            for k, t in enumerate(OFFSETS)]  # fmt: skip


def _run(position, pairs, rng):
    dx, dy = _pairs_from(position, pairs, rng)
    ts = invert(DATES, pairs, dx, dy, smoothing=0.1, robust=True)
    return dx, dy, pair_agreement(DATES, pairs, ts.dx, ts.dy, dx, dy, noise=np.full(len(pairs), 0.07))


def test_a_date_wrong_on_the_ice_only_flags_its_short_pairs_not_the_clean_ones():
    rng = np.random.default_rng(3)
    vx, vy = _velocity()
    moving = np.hypot(vx, vy) > 0
    # the hazy image: the ice looks 4 days of flow behind where it is; rock (v = 0) untouched
    error = -4.0
    position = _positions(vx, vy, error)
    assert np.all(position[BAD][0][~moving] == 0)  # stable ground shows nothing
    pairs = _network()
    _, _, agree = _run(position, pairs, rng)
    through = (pairs == BAD).any(axis=1)
    # truth: a pair ending on BAD measures D + e, one starting from it D - e (e: 4 days of flow backwards)
    span = (OFFSETS[pairs[:, 1]] - OFFSETS[pairs[:, 0]]).astype(float)
    sign = np.where(pairs[:, 1] == BAD, 1.0, np.where(pairs[:, 0] == BAD, -1.0, 0.0))
    expected = 1 + sign * error / span
    assert np.all(agree.nodes >= agree.min_nodes)
    np.testing.assert_allclose(agree.ratio[through], expected[through], atol=0.06)
    np.testing.assert_allclose(agree.ratio[~through], 1.0, atol=0.16)  # neighbours feel half the error
    clearly_off = through & ((expected < 0.65) | (expected > 1.5))
    assert clearly_off.sum() >= 2
    assert agree.flagged[clearly_off].all()
    assert not agree.flagged[~through].any()  # no false flag on a clean pair
    total, bad = date_disagreement(pairs, agree.flagged, len(DATES))
    assert bad[BAD] == agree.flagged.sum() and total[BAD] == through.sum()


def test_a_real_speed_change_raises_no_flag():
    rng = np.random.default_rng(5)
    vx, vy = _velocity()
    # the ice speeds up by 40 % from day 29 on: the series follows it, the pairs are all right
    t_step = 29.0
    shift = [min(t, t_step) + 1.4 * max(0.0, t - t_step) for t in OFFSETS]
    position = [(vx * s, vy * s) for s in shift]
    pairs = _network()
    _, _, agree = _run(position, pairs, rng)
    assert np.all(agree.nodes >= agree.min_nodes)
    assert not agree.flagged.any(), agree.ratio[agree.flagged]
    assert np.abs(agree.ratio - 1).max() < 0.25


def test_the_fitted_series_alone_would_absorb_the_date_error():
    """Why the pair's own dates are left out: the plain reconstruction reproduces the bad pairs."""
    rng = np.random.default_rng(3)
    vx, vy = _velocity()
    position = _positions(vx, vy, -3.0)
    pairs = _network()
    dx, dy = _pairs_from(position, pairs, rng)
    ts = invert(DATES, pairs, dx, dy, smoothing=0.1, robust=True)
    k = int(np.flatnonzero((pairs[:, 1] == BAD) & (pairs[:, 0] == BAD - 1))[0])
    rec = ts.dx[BAD] - ts.dx[BAD - 1]
    moving = np.abs(rec) > 1
    plain = np.median(dx[k][moving] / rec[moving])
    left_out = leave_date_out(DATES, ts.dx)
    rec2 = left_out[BAD] - left_out[BAD - 1]
    assert abs(plain - 1) < 0.15  # absorbed
    assert np.median(dx[k][moving] / rec2[moving]) < 0.85  # seen


def test_leave_date_out_is_exact_on_linear_motion_and_checks_shapes():
    series = np.outer(OFFSETS.astype(float), [1.0, -2.0])
    np.testing.assert_allclose(leave_date_out(DATES, series), series, atol=1e-9)
    with pytest.raises(ValueError, match="series layers"):
        leave_date_out(DATES[:3], series)


@pytest.mark.slow  # a whole job (~40 s)
def test_the_job_marks_the_pairs_that_disagree_in_their_products(tmp_path):
    import json

    import xarray as xr
    from rasterio.crs import CRS

    from geodeform.io import write_netcdf, write_stac_item
    from geodeform.workflows.network import check_network
    from geodeform.workflows.pair import PairOutcome

    rng = np.random.default_rng(3)
    vx, vy = _velocity()
    position = _positions(vx, vy, -4.0)
    pairs = _network()
    dx, dy = _pairs_from(position, pairs, rng)
    ts = invert(DATES, pairs, dx, dy, smoothing=0.1, robust=True)
    coords = {"y": np.arange(SIZE, 0, -1.0) - 0.5, "x": np.arange(SIZE, dtype=float) + 0.5}
    gt = "0.0 1.0 0.0 24.0 0.0 -1.0"
    store = tmp_path / "timeseries.zarr"
    xr.Dataset(
        {"east": (("time", "y", "x"), ts.dx), "north": (("time", "y", "x"), ts.dy)},
        coords={"time": DATES.astype("datetime64[ns]"), **coords},
    ).to_zarr(store)
    outcomes = []
    for k, (i, j) in enumerate(pairs):
        ref, sec = str(DATES[i]), str(DATES[j])
        own = "co-registration from the other pairs" if k == 0 else ""
        stats = {"degraded": own}
        mapping = {"crs_wkt": CRS.from_epsg(32718).to_wkt(), "GeoTransform": gt}
        ds = xr.Dataset(
            {"dx": (("y", "x"), dx[k].astype(np.float32)), "dy": (("y", "x"), dy[k].astype(np.float32)),
             "mapping": ((), np.int32(0), mapping)},
            coords=coords,
            attrs={"geodeform_pair_stats": json.dumps(stats), "geodeform_degraded": own},
        )  # fmt: skip
        path = write_netcdf(ds, tmp_path / f"{ref}_{sec}.nc")
        write_stac_item(ds, path)
        dt = float(OFFSETS[j] - OFFSETS[i])
        nmad = 0.07 / np.sqrt(2) * 365.25 / dt  # m/yr, so that the pair's error is 0.07 m
        outcomes.append(
            PairOutcome(
                k, ref, sec, dt, "ok", path=str(path), stable_nmad_x=nmad, stable_nmad_y=nmad, degraded=own
            )
        )
    check = check_network(outcomes, store)
    through = {f"{DATES[i]}_{DATES[j]}" for i, j in pairs if BAD in (i, j)}
    assert check.flagged and set(check.flagged) <= through
    short_end = f"{DATES[BAD - 1]}_{DATES[BAD]}"  # 5 days, truth 0.2
    assert short_end in check.flagged
    assert abs(check.ratios[short_end][0] - 0.2) < 0.06
    marked = {f"{o.reference}_{o.secondary}": o for o in check.pairs}
    with xr.open_dataset(marked[short_end].path, engine="h5netcdf") as ds:
        text = ds.attrs["geodeform_degraded"]
        verdict = json.loads(ds.attrs["geodeform_network_check"])
    assert text.startswith("disagrees with the network: its motion is 0.") and "moving nodes" in text
    assert verdict["flagged"] and verdict["nodes"] >= 50
    assert marked[short_end].degraded == text
    # the items say the same and stay newer than their products (the job rewrites older ones)
    for key, o in marked.items():
        item = Path(o.path).with_suffix(".stac.json")
        props = json.loads(item.read_text())["properties"]
        assert props.get("geodeform:degraded_reason", "") == o.degraded, key
        assert item.stat().st_mtime_ns >= Path(o.path).stat().st_mtime_ns, key
    assert any(str(DATES[BAD]) in w for w in check.warnings)
    # a clean pair stays clean; a resumed run does not repeat the reason; a pair's own reason is kept
    clean = f"{DATES[0]}_{DATES[1]}"
    assert clean not in check.flagged and marked[clean].degraded == outcomes[0].degraded
    again = check_network(outcomes, store)
    assert again.flagged == check.flagged
    with xr.open_dataset(marked[short_end].path, engine="h5netcdf") as ds:
        assert ds.attrs["geodeform_degraded"] == text
