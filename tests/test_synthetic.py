"""geodeform.synthetic: every field and degradation is checked against its own truth (a matcher recovers
the imposed motion on the real texture, signs follow the package convention)."""

from __future__ import annotations

import numpy as np
import pytest

from geodeform.errors import InvalidInputError
from geodeform.offsets import match
from geodeform.synthetic import (
    add,
    constant,
    fault,
    glacier,
    image_series,
    landslide,
    load_texture,
    scale,
    warp,
)

SIZE = 192


def _pair(field, **kw):
    series = image_series([constant(0, 0), field], size=SIZE, snr_db=30.0, **kw)
    return series, match(series.images[0], series.images[1], chip_size=32, step=16, search_range=6)


def _error(series, result, i=0, j=1):
    tdx, tdy = series.pair_truth(i, j, result.rows[:, None], result.cols[None, :])
    ok = np.isfinite(result.dx)
    return np.abs(result.dx - tdx)[ok], np.abs(result.dy - tdy)[ok], ok


def test_constant_shift_sign_convention() -> None:
    # a feature at (row, col) of the reference is at (row + dy, col + dx) of the secondary
    tex = np.zeros((64, 64))
    tex[20, 30] = 1.0
    moved = warp(tex, constant(3.0, -2.0))
    assert np.unravel_index(np.argmax(moved), moved.shape) == (18, 33)
    series, result = _pair(constant(1.3, -0.7))
    ex, ey, ok = _error(series, result)
    assert ok.mean() > 0.95 and np.median(ex) < 0.02 and np.median(ey) < 0.02
    assert abs(np.nanmedian(result.dx) - 1.3) < 0.02 and abs(np.nanmedian(result.dy) + 0.7) < 0.02


@pytest.mark.parametrize(
    "field",
    [
        glacier(SIZE, 1.5, still_ground=True),
        landslide((96, 96), 50, 1.5, azimuth_deg=135),
        fault((SIZE, SIZE), pixel_size=10.0, slip_m=(10.0, 20.0), opening_m=2.0, depth_m=800.0),
    ],
    ids=["glacier", "landslide", "fault"],
)
@pytest.mark.slow
def test_fields_are_recovered_by_the_matcher(field) -> None:
    series, result = _pair(field)
    ex, ey, ok = _error(series, result)
    assert ok.mean() > 0.8
    # score the nodes whose chip (32 px) sees a smooth motion: next to the fault trace it does not
    r, c = np.meshgrid(result.rows, result.cols, indexing="ij")
    spread = np.zeros(r.shape)
    for dr, dc in ((-16, -16), (-16, 16), (16, -16), (16, 16)):
        a = np.hypot(*series.truth(1, r + dr, c + dc))
        spread = np.maximum(spread, np.abs(a - np.hypot(*series.truth(1, r, c))))
    smooth = spread[ok] < 0.25 * np.abs(np.hypot(*series.truth(1, r, c))).max()
    assert smooth.mean() > 0.25
    assert np.median(ex[smooth]) < 0.05 and np.median(ey[smooth]) < 0.05
    assert np.median(ex) < 0.1 and np.median(ey) < 0.1  # all nodes: strained chips are less accurate
    tdx, tdy = series.truth(1, result.rows[:, None], result.cols[None, :])
    assert np.abs(np.hypot(tdx, tdy)).max() > 0.5  # there is motion to recover


def test_landslide_direction_and_extent() -> None:
    f = landslide((50, 50), 20, 2.0, azimuth_deg=180)  # moving south = +rows
    dx, dy = f(np.array([50.0, 50.0]), np.array([50.0, 95.0]))
    assert np.allclose(dx, 0, atol=1e-12) and dy[0] == pytest.approx(2.0) and dy[1] == 0
    with pytest.raises(InvalidInputError):
        landslide((0, 0), 0, 1.0)


def test_scale_and_add() -> None:
    g = glacier(100, 1.0)
    rows, cols = np.array([50.0]), np.array([10.0])
    gx, gy = g(rows, cols)
    sx, sy = add(scale(g, 3.0), constant(0.5, 0.0))(rows, cols)
    assert sx == pytest.approx(3 * gx + 0.5) and sy == pytest.approx(3 * gy)


def test_misregistration_is_recorded_and_measured() -> None:
    series, result = _pair(constant(0, 0), misregistration_px=0.4, seed=3)
    m = series.misregistration
    assert np.all(m[0] == 0) and np.all(np.abs(m[1]) <= 0.4) and np.any(m[1] != 0)
    assert abs(np.nanmedian(result.dx) - m[1, 0]) < 0.02 and abs(np.nanmedian(result.dy) - m[1, 1]) < 0.02


@pytest.mark.slow
def test_radiometric_change_and_clouds() -> None:
    field = glacier(SIZE, 1.0, still_ground=True)
    plain = image_series([constant(0, 0), field], size=SIZE, seed=2)
    series = image_series([constant(0, 0), field], size=SIZE, seed=2, radiometric=1.0, cloudy=[1])
    cloud = series.clouds[1]
    assert not series.clouds[0].any() and 0.01 < cloud.mean() < 0.1
    assert np.all(series.images[1][cloud] == 40000)
    # the radiometry changed outside the cloud, the noise draws did not (date 0 is not changed)
    assert np.array_equal(plain.images[0], series.images[0])
    assert np.abs(series.images[1][~cloud].astype(float) - plain.images[1][~cloud]).mean() > 20
    result = match(series.images[0], series.images[1], chip_size=32, step=16, search_range=6)
    ex, ey, ok = _error(series, result)
    assert ok.mean() > 0.7 and np.median(ex) < 0.05 and np.median(ey) < 0.05


def test_series_of_velocities_and_bad_input() -> None:
    flow = glacier(SIZE, 0.05, still_ground=True)
    days = [0, 16, 32]
    series = image_series([scale(flow, d) for d in days], size=SIZE)
    assert len(series.images) == 3 and series.images[0].dtype == np.uint16
    assert series.images[0].shape == (SIZE, SIZE)
    r, c = np.array([96.0]), np.array([50.0])
    assert series.truth(2, r, c)[0] == pytest.approx(2 * series.truth(1, r, c)[0])
    assert load_texture().shape == (576, 576)
    with pytest.raises(InvalidInputError):
        image_series([])
    with pytest.raises(InvalidInputError):
        image_series([constant(0, 0)], cloudy=[1])
    with pytest.raises(ValueError):  # InvalidInputError is also a ValueError
        warp(np.zeros(5), constant(0, 0))
