"""Each pair against the network (geodeform.timeseries.consistency) on synthetic series with known truth."""

from __future__ import annotations

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
    position = [(vx * t + (error * vx if k == BAD else 0), vy * t + (error * vy if k == BAD else 0))
                for k, t in enumerate(OFFSETS)]  # fmt: skip
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
    position = [(vx * t - (3.0 * vx if k == BAD else 0), vy * t - (3.0 * vy if k == BAD else 0))
                for k, t in enumerate(OFFSETS)]  # fmt: skip
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
