"""ICA decomposition: recover trend and seasonal signals of synthetic landslide series with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from _shared import shared_data
from geodeform.decompose import (
    EnuReason,
    Observation,
    PairSet,
    azimuth_vector,
    ica,
    invert_enu,
    los_vector,
    slope_aspect,
    slope_parallel,
    solve_enu,
)
from geodeform.errors import InvalidInputError, NoDataError


def _best_corr(funcs: np.ndarray, truth: np.ndarray) -> float:
    return max(abs(np.corrcoef(funcs[:, c], truth)[0, 1]) for c in range(funcs.shape[1]))


def _landslide(seed: int, nd: int = 60, shape=(40, 50)):
    """A creeping body (trend) next to a groundwater-driven lobe (seasonal), px, noise 0.03 px."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 2.6 * 365.25, nd))
    rows, cols = np.indices(shape)
    trend_map = ((((rows - 15) / 9.0) ** 2 + ((cols - 18) / 11.0) ** 2) < 1).astype(float)
    season_map = np.exp(-(((rows - 26) / 9.0) ** 2 + ((cols - 32) / 9.0) ** 2))
    trend = t / 365.25
    season = np.sin(2 * np.pi * t / 365.25 + 0.5)
    stack = trend[:, None, None] * trend_map + season[:, None, None] * season_map
    return stack + rng.normal(0, 0.03, stack.shape), trend, season


@pytest.mark.parametrize("seed", [0, 1])
def test_spatial_ica_separates_trend_and_seasonal_signals(seed: int) -> None:
    stack, trend, season = _landslide(seed)
    stack[:, 0, 0] = np.nan  # a pixel with a gap is left out
    res = ica(stack, 2)
    assert res.converged
    assert _best_corr(res.time_functions, trend) > 0.99
    assert _best_corr(res.time_functions, season) > 0.99
    assert np.isnan(res.maps[:, 0, 0]).all()
    assert np.nanstd(res.reconstruct() - stack) < 0.04  # two components down to the noise level


def test_ica_recovers_sources_that_pca_mixes() -> None:
    """Overlapping independent maps with correlated time functions: PCA cannot separate them."""
    rng = np.random.default_rng(3)
    nd, shape = 50, (60, 60)
    t = np.sort(rng.uniform(0, 2.6 * 365.25, nd))
    maps = [gaussian_filter(rng.laplace(size=shape), 1.0) for _ in range(2)]
    maps = [np.sign(m) * m**2 / np.std(m**2) for m in maps]  # heavy-tailed, unit scale
    a1, a2 = t / 365.25, 1 - np.cos(2 * np.pi * t / 365.25)
    stack = a1[:, None, None] * maps[0] + a2[:, None, None] * maps[1] + rng.normal(0, 0.02, (nd, *shape))
    res = ica(stack, 2)
    assert _best_corr(res.time_functions, a1) > 0.995 and _best_corr(res.time_functions, a2) > 0.995
    X = stack.reshape(nd, -1)
    u = np.linalg.svd(X - X.mean(axis=1, keepdims=True), full_matrices=False)[0][:, :2]
    assert min(_best_corr(u, a1), _best_corr(u, a2)) < 0.95  # the peer fails here
    # Maps are recovered up to sign and scale.
    for m in maps:
        assert max(abs(np.corrcoef(res.maps[c].ravel(), m.ravel())[0, 1]) for c in range(2)) > 0.99


def test_temporal_mode_reconstructs_the_series() -> None:
    stack, trend, _ = _landslide(1, nd=120)
    res = ica(stack, 2, mode="temporal")
    assert np.nanstd(res.reconstruct() - stack) < 0.04
    assert _best_corr(res.time_functions, trend) > 0.9


def test_bad_inputs() -> None:
    stack, *_ = _landslide(2, nd=10)
    with pytest.raises(InvalidInputError, match="n_components"):
        ica(stack, 10)
    with pytest.raises(InvalidInputError, match="mode"):
        ica(stack, 2, mode="both")
    with pytest.raises(InvalidInputError, match="series"):
        ica(stack[:, 0, 0], 1)
    stack[:, :, :] = np.nan
    with pytest.raises((NoDataError, InvalidInputError)):
        ica(stack, 2)


# --- east/north/up from several geometries (geodeform.decompose.solve_enu) -------------------------------

DEM = shared_data() / "dem" / "srtm_ref.tif"


def test_unit_vectors_follow_the_documented_convention() -> None:
    # ascending, right-looking: the radar looks east, so the ground-to-satellite vector points west and up
    u = los_vector(-12.0, 35.0)
    s, c = np.sin(np.deg2rad(35.0)), np.cos(np.deg2rad(35.0))
    h = np.deg2rad(-12.0)
    np.testing.assert_allclose(u, [-s * np.cos(h), s * np.sin(h), c])
    assert u[0] < 0 and u[2] > 0
    assert los_vector(-168.0, 35.0)[0] > 0  # descending looks west
    np.testing.assert_allclose(
        azimuth_vector(-168.0), [np.sin(h - np.pi * 13 / 15), np.cos(np.deg2rad(-168.0)), 0], atol=1e-12
    )
    assert abs(float(np.dot(u, azimuth_vector(-12.0)))) < 1e-12  # range and azimuth are orthogonal
    with pytest.raises(InvalidInputError, match="incidence"):
        los_vector(-12.0, 95.0)


def _asc_desc_optical(
    shape: tuple[int, int], rng: np.random.Generator
) -> tuple[list[Observation], np.ndarray]:
    truth = np.stack([rng.normal(0, 1.0, shape), rng.normal(0, 1.0, shape), rng.normal(0, 0.5, shape)], -1)
    inc_a = np.broadcast_to(np.linspace(30, 45, shape[1]), shape)
    inc_d = inc_a[:, ::-1]
    obs = []
    for name, h, inc, sig in (("asc", -12.0, inc_a, 0.03), ("desc", -168.0, inc_d, 0.03)):
        u = los_vector(h, inc)
        obs.append(
            Observation((truth * u).sum(-1) + rng.normal(0, sig, shape), "range", h, inc, sig, name=name)
        )
        ua = azimuth_vector(h)
        obs.append(Observation((truth * ua).sum(-1) + rng.normal(0, 0.3, shape), "azimuth", h, sigma=0.3))
    for k, kind in enumerate(("east", "north")):
        obs.append(Observation(truth[..., k] + rng.normal(0, 0.2, shape), kind, sigma=0.2))  # type: ignore[arg-type]
    return obs, truth


def test_enu_is_recovered_within_its_propagated_covariance() -> None:
    rng = np.random.default_rng(7)
    obs, truth = _asc_desc_optical((60, 80), rng)
    res = solve_enu(obs)
    assert (res.reason == EnuReason.OK).all() and res.summary() == "all resolved"
    err = np.stack([res.east, res.north, res.up], -1) - truth
    chi2 = np.einsum("...i,...ij,...j->...", err, np.linalg.inv(res.covariance), err)
    assert 0.9 < chi2.mean() / 3 < 1.1  # chi-square per degree of freedom of the estimate
    assert 0.9 < np.nanmean(res.chi2 / res.dof) < 1.1  # residual chi-square per dof (redundancy 3)
    # the radar range tracks dominate east and up: far better than the optical 0.2 m
    assert (
        float(np.sqrt(np.mean(err[..., 0] ** 2))) < 0.05 and float(np.sqrt(np.mean(err[..., 2] ** 2))) < 0.05
    )


def test_rank_deficiency_is_reported_with_the_free_component() -> None:
    rng = np.random.default_rng(1)
    obs, _ = _asc_desc_optical((20, 30), rng)
    one = solve_enu([obs[0]])  # range only, one track
    assert (one.reason == EnuReason.UNCONSTRAINED).all() and one.unconstrained.all()
    assert np.isnan(one.east).all() and np.isnan(one.up).all()
    two = solve_enu([obs[0], obs[2]])  # ascending + descending range: north is the free direction
    assert two.unconstrained.all(axis=(0, 1)).tolist() == [True, True, True]
    assert np.all(np.argmax(np.abs(two.free_direction), axis=-1) == 1)
    assert "mostly north" in two.summary()
    same = solve_enu([Observation(0.1, "range", -12.0, 38.0), Observation(-0.2, "range", -168.0, 38.0)])
    assert same.unconstrained.tolist() == [False, True, True]  # mirror geometry: east is estimable alone
    fixed = solve_enu([obs[0], obs[2]], assume_zero=("north",))
    assert (fixed.reason == EnuReason.OK).all() and (fixed.north == 0).all()
    assert np.isfinite(fixed.east).all() and np.isfinite(fixed.up).all()
    nothing = solve_enu([Observation(np.nan, "east", sigma=1.0)])
    assert nothing.reason == EnuReason.NO_DATA


def test_observation_errors_are_clear() -> None:
    with pytest.raises(InvalidInputError, match="heading_deg and incidence_deg"):
        solve_enu([Observation(1.0, "range", heading_deg=-12.0)])
    with pytest.raises(InvalidInputError, match="kind"):
        solve_enu([Observation(1.0, "slant")])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="sigma"):
        solve_enu([Observation(1.0, "east", sigma=0.0)])
    with pytest.raises(InvalidInputError, match="broadcast"):
        solve_enu([Observation(np.zeros((3, 4)), "east"), Observation(np.zeros((5, 4)), "north")])
    with pytest.raises(InvalidInputError, match="assume_zero"):
        solve_enu([Observation(1.0, "east")], assume_zero=("vertical",))  # type: ignore[arg-type]


def _landslide_on_dem(z: np.ndarray, row_m: float, col_m: np.ndarray):
    n = z.shape[0]
    rr, cc = np.mgrid[0:n, 0:n]
    mag = 2.0 * np.exp(-(((rr - n / 2) / (n / 5)) ** 2 + ((cc - n / 2) / (n / 6)) ** 2))
    sa = slope_aspect(z, (row_m, col_m))
    a, s = np.deg2rad(sa.aspect_deg), np.deg2rad(sa.slope_deg)
    return mag, np.stack([mag * np.cos(s) * np.sin(a), mag * np.cos(s) * np.cos(a), -mag * np.sin(s)], -1)


@pytest.mark.skipif(not DEM.exists(), reason="../shared/data/dem not available")
def test_slope_parallel_gives_up_from_east_north_on_a_real_dem() -> None:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(DEM) as src:
        z = src.read(1, window=((720, 784), (512, 576))).astype(float)  # a steep 64 x 64 crop (SRTM 3")
        t = src.transform
    lat = t.f + t.e * (720 + np.arange(64) + 0.5)
    row_m = abs(t.e) * 111_320.0
    col_m = abs(t.a) * 111_320.0 * np.cos(np.deg2rad(lat))[:, None]
    mag, truth = _landslide_on_dem(z, row_m, col_m)
    rng = np.random.default_rng(0)
    dem_used = z + rng.normal(0, 2.0, z.shape)  # the DEM of the constraint has its own 2 m errors
    sa = slope_aspect(dem_used, (row_m, col_m))
    obs = [
        Observation(truth[..., 0] + rng.normal(0, 0.05, z.shape), "east", sigma=0.05),
        Observation(truth[..., 1] + rng.normal(0, 0.05, z.shape), "north", sigma=0.05),
        slope_parallel(sa.slope_deg, sa.aspect_deg, sigma=0.02),
    ]
    res = solve_enu(obs)
    sel = (sa.slope_deg > 10) & (mag > 0.5)
    assert sel.sum() > 500
    rel = np.abs(res.up - truth[..., 2])[sel] / np.abs(truth[..., 2][sel])
    assert np.median(rel) < 0.1 and np.mean(rel <= 0.2) > 0.9
    # without the constraint, up is unconstrained
    assert solve_enu(obs[:2]).unconstrained[..., 2].all()


def _series_sets(rng: np.random.Generator, outliers: float, oracle: bool) -> tuple[list[PairSet], object]:
    shape = (6, 7)
    t0 = np.datetime64("2021-01-01")
    ramp = np.linspace(0.5, 1.5, shape[1]) * np.ones(shape)

    def truth(d: np.ndarray) -> np.ndarray:
        t = (d - t0).astype(float)[:, None, None] / 365.25
        return np.stack([2.0 * t * ramp, -1.0 * t * ramp, 0.3 * np.sin(2 * np.pi * t) * ramp], -1)

    sets = []
    specs = (
        ("asc", 0, 12, 24, "range", -12.0, 34.0, 0.01),
        ("desc", 5, 12, 24, "range", -168.0, 41.0, 0.01),
        ("optical east", 3, 25, 12, "east", None, None, 0.25),
        ("optical north", 3, 25, 12, "north", None, None, 0.25),
    )
    for name, off, step, n, kind, h, inc, sig in specs:
        d = t0 + off + step * np.arange(n)
        p = np.array([(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4))])
        u = los_vector(h, inc) if kind == "range" else np.eye(3)[0 if kind == "east" else 1]
        x = truth(d)
        val = ((x[p[:, 1]] - x[p[:, 0]]) * u).sum(-1) + rng.normal(0, sig, (p.shape[0], *shape))
        bad = rng.random(val.shape) < outliers
        blunder = rng.normal(0, 30 * sig, val.shape)  # drawn in both cases: the same noise for both runs
        val = np.where(bad, np.nan if oracle else val + blunder, val)
        sets.append(PairSet(d, p, val, kind, h, inc, sig if oracle else None, name))  # type: ignore[arg-type]
    return sets, truth


def test_four_d_inversion_is_close_to_an_oracle_and_calibrated() -> None:
    ours_sets, truth = _series_sets(np.random.default_rng(3), 0.03, oracle=False)
    oracle_sets, _ = _series_sets(np.random.default_rng(3), 0.03, oracle=True)
    ours = invert_enu(ours_sets, smoothing=1.0)
    oracle = invert_enu(oracle_sets, smoothing=1.0, robust=False)
    x = truth(ours.dates)
    for k, c in enumerate(("east", "north", "up")):
        e_ours = float(np.sqrt(np.nanmean((getattr(ours, c) - x[..., k]) ** 2)))
        e_oracle = float(np.sqrt(np.nanmean((getattr(oracle, c) - x[..., k]) ** 2)))
        assert e_ours <= 1.2 * e_oracle, (c, e_ours, e_oracle)
    assert (
        abs(ours.set_sigma["asc"] / 0.01 - 1) < 0.15 and abs(ours.set_sigma["optical east"] / 0.25 - 1) < 0.15
    )
    assert (
        ours.summary() == "all resolved"
        and ours.dates.size == np.unique(np.concatenate([np.asarray(s.dates) for s in ours_sets])).size
    )
    z = (ours.east - x[..., 0])[1:] / ours.sigma_east[1:]
    assert np.nanmean(z**2) < 1.5  # the 1-sigma is not optimistic


def test_four_d_reports_what_range_only_tracks_cannot_resolve() -> None:
    sets, _ = _series_sets(np.random.default_rng(4), 0.0, oracle=True)
    res = invert_enu(sets[:2], smoothing=1.0, robust=False)  # ascending + descending range only
    assert res.unconstrained[..., 1].all()  # north
    assert np.isnan(res.north[1:]).all() and (res.north[0] == 0).all()  # the first date is the origin
    with pytest.raises(InvalidInputError, match="one map per pair"):
        invert_enu([PairSet(sets[0].dates, sets[0].pairs, np.zeros((3, 6, 7)), "range", -12.0, 34.0)])
    with pytest.raises(InvalidInputError, match="kind"):
        invert_enu([PairSet(sets[2].dates, sets[2].pairs, sets[2].value, "vector")])  # type: ignore[arg-type]
