"""Pair-network construction: modes, ranges, directions, seasons, orbits, components and gaps."""

from __future__ import annotations

import numpy as np
import pytest

from geodeform.errors import InvalidInputError
from geodeform.pairs import as_dates, build_pairs, check_pairs, find_gaps, network_components

DATES = np.datetime64("2021-01-01") + np.array([0, 10, 20, 35, 50, 60, 200, 210], dtype="timedelta64[D]")


def test_sequential_pairs_are_consecutive_dates() -> None:
    net = build_pairs(DATES, mode="sequential")
    assert net.pairs.tolist() == [[k, k + 1] for k in range(DATES.size - 1)]
    np.testing.assert_array_equal(net.dt_days, np.diff(DATES).astype(float))
    assert net.is_connected


def test_all_mode_counts_every_pair_in_range() -> None:
    net = build_pairs(DATES, mode="all", min_separation=2, max_separation=3)
    expected = {(i, j) for i in range(8) for j in range(8) if 2 <= j - i <= 3}
    assert {tuple(p) for p in net.pairs.tolist()} == expected


def test_day_limits_use_the_time_span() -> None:
    net = build_pairs(DATES, min_days=15, max_days=30)
    spans = net.dt_days
    assert ((spans >= 15) & (spans <= 30)).all()
    t = (DATES - DATES[0]).astype(int)
    expected = sum(1 for i in range(8) for j in range(i + 1, 8) if 15 <= t[j] - t[i] <= 30)
    assert len(net) == expected


def test_directions() -> None:
    fw = build_pairs(DATES, mode="sequential")
    bw = build_pairs(DATES, mode="sequential", direction="backward")
    both = build_pairs(DATES, mode="sequential", direction="both")
    np.testing.assert_array_equal(bw.pairs, fw.pairs[:, ::-1])
    assert (bw.dt_days < 0).all()
    assert len(both) == 2 * len(fw)
    assert both.is_connected and not both.gaps


def test_gap_and_components_are_reported() -> None:
    net = build_pairs(DATES, max_days=60)
    assert [(g.index, g.days) for g in net.gaps] == [(5, 140.0)]
    assert not net.is_connected
    assert [c.tolist() for c in net.components] == [[0, 1, 2, 3, 4, 5], [6, 7]]


def test_components_without_time_gap() -> None:
    comps = network_components(4, np.array([[0, 2], [1, 3]]))
    assert [c.tolist() for c in comps] == [[0, 2], [1, 3]]
    assert find_gaps(as_dates(DATES[:4]), np.array([[0, 2], [1, 3]])) == ()


def test_season_window_including_new_year_wrap() -> None:
    dates = np.array(["2020-01-15", "2020-06-15", "2020-07-20", "2020-12-20", "2021-02-01", "2021-07-01"],
                     dtype="datetime64[D]")  # fmt: skip
    summer = build_pairs(dates, season=("06-01", "08-31"))
    assert {tuple(p) for p in summer.pairs.tolist()} == {(1, 2), (1, 5), (2, 5)}
    winter = build_pairs(dates, season=("12-01", "02-28"), mode="sequential")
    assert winter.pairs.tolist() == [[0, 3], [3, 4]]


def test_per_orbit_pairing() -> None:
    orbits = ["A", "D", "A", "D", "A", "D", "A", "D"]
    net = build_pairs(DATES, orbits=orbits, mode="sequential")
    assert net.pairs.tolist() == [[0, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
    assert len(net.components) == 2


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"mode": "nearest"}, "mode"),
        ({"direction": "up"}, "direction"),
        ({"min_separation": 3, "max_separation": 2}, "max_separation"),
        ({"min_days": 30, "max_days": 10}, "max_days"),
        ({"max_days": 5}, "no pair"),
        ({"season": ("June", "July")}, "season"),
        ({"orbits": [1, 2]}, "orbits"),
    ],
)
def test_bad_options_raise_named_errors(kwargs: dict, word: str) -> None:
    with pytest.raises(InvalidInputError, match=word):
        build_pairs(DATES, **kwargs)


def test_bad_dates_and_pairs() -> None:
    with pytest.raises(InvalidInputError, match="strictly increasing"):
        as_dates(["2020-01-02", "2020-01-01"])
    with pytest.raises(InvalidInputError, match="dates"):
        as_dates(["not a date", "2020-01-01"])
    with pytest.raises(InvalidInputError, match="unknown date"):
        check_pairs([[0, 1], [1, 8]], 8)
    with pytest.raises(InvalidInputError, match="itself"):
        check_pairs([[2, 2]], 8)
    with pytest.raises(InvalidInputError, match="shape"):
        check_pairs([0, 1], 8)
