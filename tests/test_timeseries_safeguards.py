"""The robust inversion's safeguards, through the public :func:`geodeform.timeseries.invert` only (issue 27):
removing either of them made no test fail before.

- A pair whose loss would cut dates off the network is never flagged, however bad it looks (see also
  ``test_timeseries.py::test_an_outlier_that_is_the_only_link_left_is_kept_and_reported``).
- No pixel loses more than ``max_outlier_fraction`` of its pairs, even with 40 % bad pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from geodeform.errors import InvalidInputError
from geodeform.timeseries import invert

STEP_DAYS = 16


def _dates(n: int) -> np.ndarray:
    return np.datetime64("2020-01-01") + STEP_DAYS * np.arange(n)


def test_the_last_bridge_between_two_halves_is_never_flagged() -> None:
    # two dense halves (dates 0-4 and 5-9) joined by three bridges (4, 5), (3, 5), (4, 6) wrong by +10,
    # -10 and +25 px: they disagree with each other, all look like outliers, and the fit may drop two of
    # them but never the last one (dates 5-9 would be cut off)
    n = 10
    inner = [(i, j) for lo, hi in ((0, 5), (5, 10)) for i in range(lo, hi) for j in range(i + 1, hi)]
    pairs = np.array([*inner, (4, 5), (3, 5), (4, 6)])
    truth = np.arange(n, dtype=float)
    rng = np.random.default_rng(3)
    dx = (truth[pairs[:, 1]] - truth[pairs[:, 0]])[:, None] + rng.normal(0, 0.05, (len(pairs), 4))
    dx[-3:] += np.array([10.0, -10.0, 25.0])[:, None]
    r = invert(_dates(n), pairs, dx)
    assert (r.outlier[-3:].sum(axis=0) == 2).all(), r.outlier[-3:]  # two go, one bridge stays
    assert np.isfinite(r.dx).all()


def test_no_pixel_loses_more_than_max_outlier_fraction_of_its_pairs() -> None:
    # 12 dates, all 66 pairs, 40 % of them (26 per pixel, random) wrong by 5-20 px of random sign; with
    # a 3-sigma threshold and no cap, a few of the 40 pixels would lose more than 20 % (any seed tried, 0-4)
    n, npx = 12, 40
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    P = len(pairs)
    truth = np.arange(n, dtype=float)
    rng = np.random.default_rng(2)
    dx = (truth[pairs[:, 1]] - truth[pairs[:, 0]])[:, None] + rng.normal(0, 0.05, (P, npx))
    nbad = round(0.4 * P)
    for px in range(npx):
        bad = rng.choice(P, nbad, replace=False)
        dx[bad, px] += rng.choice([-1, 1], nbad) * rng.uniform(5, 20, nbad)
    loose = invert(_dates(n), pairs, dx, outlier_threshold=3.0, max_outlier_fraction=0.9)
    cap = math.floor(0.2 * P)
    assert loose.outlier.sum(axis=0).max() > cap  # without the cap some pixel would lose more: the case bites
    for fraction in (0.2, 0.1):
        r = invert(_dates(n), pairs, dx, outlier_threshold=3.0, max_outlier_fraction=fraction)
        flagged = r.outlier.sum(axis=0)
        assert flagged.max() <= math.floor(fraction * P), (fraction, flagged)


def test_pixels_are_inverted_independently_with_per_pixel_weights_and_refits() -> None:
    # Each pixel's series depends on its own pairs and weights only: a map gives, pixel by pixel, the series
    # of that pixel inverted alone. Per-pixel weights forbid sharing one factorisation between pixels with
    # the same usable pairs, also when the robust fit refits the pixels whose pairs it flagged; a blunder in
    # a one-pixel map is removed too (its refit is of a single pixel).
    n, npx = 9, 6
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, min(i + 4, n))])
    truth = 0.5 * np.arange(n, dtype=float)
    rng = np.random.default_rng(11)
    dx = (truth[pairs[:, 1]] - truth[pairs[:, 0]])[:, None] + rng.normal(0, 0.05, (len(pairs), npx))
    dx[5, :4] += 6.0  # a blunder in four pixels: flagged, those pixels are refitted
    weights = rng.lognormal(0.0, 0.8, dx.shape)
    whole = invert(_dates(n), pairs, dx, weights=weights)
    assert whole.outlier[5, :4].all()
    for k in range(npx):
        alone = invert(_dates(n), pairs, dx[:, k : k + 1], weights=weights[:, k : k + 1])
        np.testing.assert_allclose(whole.dx[:, k], alone.dx[:, 0], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(whole.outlier[:, k], alone.outlier[:, 0])
        np.testing.assert_allclose(alone.dx[:, 0], truth, atol=0.15)


def test_a_disconnected_network_is_refused_naming_its_gaps_or_groups() -> None:
    d = _dates(10)

    def run(pairs: list[tuple[int, int]], **options: object) -> None:
        invert(d, np.array(pairs), np.zeros((len(pairs), 2)), **options)

    in_blocks = [
        (i, j) for lo, hi in ((0, 3), (3, 6), (6, 10)) for i in range(lo, hi) for j in range(i + 1, hi)
    ]
    gaps = (
        rf"\(3 sub-networks\): {d[2]}\.\.{d[3]} \(16 d\); {d[5]}\.\.{d[6]} \(16 d\); add pairs that span it"
    )
    with pytest.raises(InvalidInputError, match=gaps):
        run(in_blocks)
    run(in_blocks, smoothing=0.5)  # a weak smoothing bridges gaps up to max_gap_days
    interleaved = [(i, i + 2) for i in range(8)]  # even and odd dates: two groups, no gap in time
    groups = rf"\{{{d[0]}, {d[2]}, {d[4]}, {d[6]}, \.\.\.\}}, \{{{d[1]}, {d[3]}, {d[5]}, {d[7]}, \.\.\.\}}"
    with pytest.raises(InvalidInputError, match=groups):
        run(interleaved)


def test_bad_options_and_weights_are_refused_with_what_to_do() -> None:
    d, pairs = _dates(4), np.array([(0, 1), (1, 2), (2, 3), (0, 2), (1, 3)])
    dx = np.ones((5, 3))
    assert np.isfinite(invert(d, pairs, dx, weights="dt", max_iterations=1).dx).all()
    cases = [
        (
            {"max_iterations": 0},
            r"^outlier_threshold, max_iterations, chunk_size and max_gap_days must be positive$",
        ),
        ({"weights": "inverse"}, r"weights: the only named scheme is 'dt', got 'inverse'"),
        ({"weights": np.ones(4)}, r"weights: need shape \(5,\) or \(5, 3\) \(like dx\), got \(4,\)"),
        ({"weights": -np.ones(5)}, r"^weights: must be >= 0 \(inverse variances\); 0 drops a pair$"),
        ({"dy": np.ones((5, 2))}, r"dy: shape \(5, 2\) differs from dx \(5, 3\); they must agree"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            invert(d, pairs, dx, **options)
