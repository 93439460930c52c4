"""Corrections: co-registration, stripes, outlier filters, GLAFT metrics (synthetic truth + Kaskawulsh)."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from _shared import SHARED_DATA
from geodeform.corrections import (
    apply_mask,
    coregister,
    correct_offsets,
    destripe,
    direction_mask,
    filter_outliers,
    median_mad_mask,
    ndc_mask,
    quality_mask,
    select_stable,
    speed_mask,
    stable_ground_metrics,
    track_coordinates,
)
from geodeform.errors import InvalidInputError, NoDataError

DATA = SHARED_DATA
KASKA = DATA / "glaft_kaskawulsh"


def _glacier_map(seed: int, shape=(80, 100)):
    """Offsets (px): a glacier tongue moving down-image, static terrain elsewhere, noise 0.05 px."""
    rng = np.random.default_rng(seed)
    cols = np.indices(shape)[1]
    glacier = np.abs(cols - shape[1] / 2) < shape[1] / 5
    flow = np.where(glacier, 3.0 * (1 - ((cols - shape[1] / 2) / (shape[1] / 5)) ** 2), 0.0)
    dx = 0.3 * flow + rng.normal(0, 0.05, shape)
    dy = flow + rng.normal(0, 0.05, shape)
    return dx, dy, ~glacier, flow


def test_coregister_removes_shift_and_plane_on_stable_ground() -> None:
    dx, dy, stable, flow = _glacier_map(0)
    rows, cols = np.indices(dx.shape)
    bias_x = 0.7 + 0.004 * (cols - 49.5) - 0.002 * (rows - 39.5)
    bias_y = -1.2 + 0.001 * (cols - 49.5) + 0.003 * (rows - 39.5)
    shift_only = coregister(dx + 0.7, dy - 1.2, stable=stable)
    np.testing.assert_allclose(shift_only.model_x, [0.7, 0, 0], atol=0.01)
    np.testing.assert_allclose(shift_only.model_y, [-1.2, 0, 0], atol=0.01)
    res = coregister(dx + bias_x, dy + bias_y, stable=stable, plane=True)
    tol = np.array([0.01, 2e-4, 2e-4])
    assert (np.abs(res.model_x - [0.7, 0.004, -0.002]) < tol).all()
    assert (np.abs(res.model_y - [-1.2, 0.001, 0.003]) < tol).all()
    np.testing.assert_allclose(res.dy, flow, atol=0.25)
    assert np.std(res.dx[stable]) < 0.06


def _detector_stripes(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sentinel-2-like detector biases (px) per pixel: 20 px wide bins across a track tilted by 10 degrees,
    one bias per bin drawn from ``rng`` and scaled to exactly 0.13 px (1 sigma) around 0."""
    u, _ = track_coordinates(shape, 10.0)
    detector = np.floor((u - u.min()) / 20).astype(int)
    bias = rng.normal(0, 1.0, detector.max() + 1)
    return (0.13 * (bias - bias.mean()) / bias.std())[detector]


def test_automatic_stable_selection_finds_static_terrain() -> None:
    dx, dy, stable, _ = _glacier_map(1)
    auto = select_stable(dx + 0.5, dy + 0.5)
    assert (auto & stable).sum() / stable.sum() > 0.95
    assert (auto & ~stable).sum() / auto.sum() < 0.1
    res = coregister(dx + 0.5, dy + 0.5)  # no mask: automatic
    np.testing.assert_allclose([res.model_x[0], res.model_y[0]], [0.5, 0.5], atol=0.02)


def test_destripe_removes_detector_biases_along_a_tilted_track() -> None:
    """Sentinel-2-like detector steps of 0.13 px (1 sigma) on a track tilted by 10 degrees."""
    rng = np.random.default_rng(2)
    dx, _, stable, flow = _glacier_map(2, shape=(120, 160))
    stripes = _detector_stripes(rng, dx.shape)
    striped = dx + stripes
    before = np.std(stripes[stable])
    res = destripe(striped, reference=stable, track_angle_deg=10.0, bin_width=2.0)
    after = np.std((res.values - dx)[stable] - np.median((res.values - dx)[stable]))
    assert before > 0.05
    assert after < 0.03 and after < before / 3
    # Motion is kept on the glacier.
    np.testing.assert_allclose(np.nanmedian(res.values[~stable] - dx[~stable]), 0, atol=0.03)
    del flow


def test_destripe_along_track_jitter_with_highpass_and_no_mask() -> None:
    rng = np.random.default_rng(3)
    shape = (200, 60)
    rows = np.indices(shape)[0]
    trend = 0.01 * rows  # real, slowly varying signal
    jitter = 0.2 * np.sin(2 * np.pi * rows / 8.0)
    noisy = trend + jitter + rng.normal(0, 0.02, shape)
    res = destripe(noisy, direction="along", highpass_bins=15)
    # Running-median edges are less reliable: check the interior tightly, everything loosely.
    np.testing.assert_allclose((noisy - res.values - jitter)[10:-10], 0, atol=0.05)
    assert np.std(noisy - trend) > 0.14
    assert np.std(res.values - trend) < 0.04


def test_outlier_filters_find_planted_blunders() -> None:
    rng = np.random.default_rng(4)
    dx, dy, _, _ = _glacier_map(4)
    bad = rng.random(dx.shape) < 0.05
    dx_b = np.where(bad, dx + rng.choice([-1, 1], dx.shape) * rng.uniform(2, 6, dx.shape), dx)
    dy_b = np.where(bad, dy + rng.uniform(2, 6, dx.shape), dy)
    mad = median_mad_mask(dx_b, size=5, n_mad=4, min_deviation=0.5) | median_mad_mask(dy_b, min_deviation=0.5)
    assert mad[bad].mean() > 0.9 and mad[~bad].mean() < 0.02
    ndc = ndc_mask(dx_b, dy_b, size=5, tolerance=0.6, min_fraction=0.5)
    assert ndc[bad].mean() > 0.9 and ndc[~bad].mean() < 0.05
    res = filter_outliers(dx_b, dy_b, pixel=1.0, min_deviation=0.5, ndc_tolerance=0.6)
    assert res.mask[bad].mean() > 0.95 and res.mask[~bad].mean() < 0.05
    assert np.isnan(res.dx[res.mask]).all() and set(res.reasons) == {"median", "ndc"}


def test_quality_speed_and_direction_masks() -> None:
    q = np.array([[0.1, 0.5], [np.nan, 0.9]])
    np.testing.assert_array_equal(quality_mask(q, 0.3), [[True, False], [True, False]])
    dx = np.array([[0.0, 3.0], [0.0, -1.0]])
    dy = np.array([[1.0, 0.0], [-2.0, 0.0]])
    fast = speed_mask(dx, dy, max_speed=0.1, dt_days=20)
    np.testing.assert_array_equal(fast, [[False, True], [False, False]])
    # Pixel frame: +dy is south, so (0, +1) moves south (azimuth 180); expected flow towards the south.
    m = direction_mask(dx, dy, azimuth_deg=180.0, max_angle_deg=45.0)
    np.testing.assert_array_equal(m, [[False, True], [True, True]])
    m_map = direction_mask(dx, dy, azimuth_deg=180.0, frame="map")  # +dy north: (0, -2) goes south
    np.testing.assert_array_equal(m_map, [[True, True], [False, True]])
    assert np.isnan(apply_mask(dx, m)[0, 1]) and apply_mask(dx, m)[0, 0] == 0.0


def test_stable_ground_metrics_of_a_normal_distribution() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.1, 0.2, (200, 200))
    y = rng.normal(-0.05, 0.1, (200, 200))
    m = stable_ground_metrics(x, y)
    assert m.peak_x == pytest.approx(0.1, abs=0.03) and m.peak_y == pytest.approx(-0.05, abs=0.015)
    # thres_sigma = 2: the box half-width is about 2 sigma (density smoothing widens it slightly).
    assert 1.8 * 0.2 < m.delta_x < 2.4 * 0.2 and 1.8 * 0.1 < m.delta_y < 2.4 * 0.1
    assert m.nmad_x == pytest.approx(0.2, rel=0.05) and m.nmad_y == pytest.approx(0.1, rel=0.05)


def test_bad_inputs() -> None:
    dx, dy, stable, _ = _glacier_map(6, shape=(20, 20))
    with pytest.raises(InvalidInputError, match="dy"):
        coregister(dx, dy[:-1])
    with pytest.raises(NoDataError, match="stable"):
        coregister(dx, dy, stable=np.zeros_like(stable))
    with pytest.raises(InvalidInputError, match="stable"):
        coregister(dx, dy, stable=stable[:-1])
    with pytest.raises(InvalidInputError, match="direction"):
        destripe(dx, direction="diagonal")
    with pytest.raises(InvalidInputError, match="size"):
        median_mad_mask(dx, size=4)
    with pytest.raises(NoDataError):
        stable_ground_metrics(np.full((5, 5), np.nan), np.full((5, 5), np.nan))


def _read_kaskawulsh():
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("pyogrio")
    from geodeform.io import GeoGrid, read_mask

    if not KASKA.is_dir():
        pytest.skip(f"real data not found at {KASKA}")
    maps = []
    for comp in ("vx", "vy"):
        with rasterio.open(KASKA / f"20180304-20180405_velo-raw_{comp}.tif") as src:
            a = src.read(1).astype(np.float64)
            a[a == src.nodata] = np.nan
            maps.append(a)
            grid = GeoGrid(crs=src.crs, transform=src.transform, shape=a.shape)

    def mask(name: str) -> np.ndarray:
        return read_mask(KASKA / name, grid, what=name)

    return maps[0], maps[1], mask("bedrock_V2.shp"), mask("glacier_V1_Kaskawulsh_s_inwardBuffer600m.shp")


def test_glaft_metric_reproduces_the_published_kaskawulsh_values() -> None:
    vx, vy, stable, _ = _read_kaskawulsh()
    m = stable_ground_metrics(vx, vy, stable)
    # GLAFT quick-start values for this map (m/day): peak (-0.0195, -0.0245), delta (0.150, 0.160), 7.1 %.
    assert m.peak_x == pytest.approx(-0.0195, abs=0.003) and m.peak_y == pytest.approx(-0.0245, abs=0.003)
    assert m.delta_x == pytest.approx(0.150, abs=0.005) and m.delta_y == pytest.approx(0.160, abs=0.005)
    assert m.outlier_fraction == pytest.approx(0.071, abs=0.005)


@pytest.mark.slow
def test_kaskawulsh_correction_lowers_stable_ground_spread() -> None:
    vx, vy, stable, ice = _read_kaskawulsh()
    rep = correct_offsets(vx, vy, stable=stable, plane=True, pixel=15 / 32)  # 15 m Landsat-8 pixels, 32 days
    assert rep.after.delta_x < rep.before.delta_x and rep.after.delta_y < rep.before.delta_y
    assert rep.after.nmad_y < rep.before.nmad_y and rep.after.rmse < rep.before.rmse
    assert abs(rep.after.peak_x) < abs(rep.before.peak_x) and abs(rep.after.peak_y) < abs(rep.before.peak_y)
    # Glacier flow is kept: the on-ice median speed changes by about the removed bias only.
    speed_before = np.nanmedian(np.hypot(vx, vy)[ice])
    speed_after = np.nanmedian(np.hypot(rep.dx, rep.dy)[ice])
    bias = np.hypot(rep.coregistration.model_x[0], rep.coregistration.model_y[0])
    assert abs(speed_after - speed_before) <= bias + 0.01


def test_automatic_stable_ground_keeps_at_least_min_count_nodes() -> None:
    # 6 x 6 nodes: 14 on a glacier moving 2 px, 22 still ones, half of them much noisier than the others
    # (nodes the matcher's smoothing could not combine): 3 sigma of the quiet ones leaves too few.
    rng = np.random.default_rng(3)
    dx = np.zeros((6, 6))
    dx[:, :2] = 2.0
    dx[0, 2] = dx[1, 2] = 2.0
    still = dx == 0
    noise = np.where(rng.random(dx.shape) < 0.5, 0.002, 0.05)
    dx = dx + rng.normal(0, 1, dx.shape) * noise
    dy = rng.normal(0, 1, dx.shape) * noise
    plain = select_stable(dx, dy)
    wide = select_stable(dx, dy, min_count=20)
    assert plain.sum() < 20 <= wide.sum()
    assert not (wide & ~still).any()  # the nearest nodes to the dominant offset are the still ones


def _reference_windows(v: np.ndarray, size: int) -> np.ndarray:
    """Every node's size x size window (NaN outside the map): the plain numpy definition of the filters."""
    from numpy.lib.stride_tricks import sliding_window_view

    r = size // 2
    return sliding_window_view(np.pad(v, r, constant_values=np.nan), (size, size)).reshape(*v.shape, -1)


def test_window_filters_match_their_numpy_definition() -> None:
    """The numba window kernels give the numpy definition's median/MAD and NDC masks exactly."""
    from geodeform.corrections import median_mad_mask, ndc_mask

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (40, 57))
    y = rng.normal(0, 1, (40, 57))
    x[rng.random(x.shape) < 0.2] = np.nan
    y[rng.random(y.shape) < 0.1] = np.nan
    x[::7, ::5] += 9  # outliers
    for size in (3, 5):
        win = _reference_windows(x, size)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
            med = np.nanmedian(win, axis=-1)
            mad = 1.4826 * np.nanmedian(np.abs(win - med[..., None]), axis=-1)
            want = np.isfinite(x) & (np.abs(x - med) > np.maximum(3.0 * mad, 0.1))
        assert np.array_equal(median_mad_mask(x, size=size, n_mad=3.0), want)
        wx, wy = _reference_windows(x, size), _reference_windows(y, size)
        nb = np.delete(np.arange(size * size), size * size // 2)
        with np.errstate(invalid="ignore"):
            d = np.hypot(wx[..., nb] - x[..., None], wy[..., nb] - y[..., None])
            n_valid = np.isfinite(d).sum(-1)
            frac = np.where(n_valid > 0, (d <= 1.0).sum(-1) / np.maximum(n_valid, 1), 0.0)
        want = np.isfinite(x) & np.isfinite(y) & (frac < 0.5)
        assert np.array_equal(ndc_mask(x, y, size=size, tolerance=1.0, min_fraction=0.5), want)


def test_filter_thresholds_are_in_pixels_whatever_the_unit_of_the_map() -> None:
    from geodeform.corrections import dominant_offset, pixel_scale

    rng = np.random.default_rng(7)
    dx, dy, _, _ = _glacier_map(7)  # pixels
    bad = rng.random(dx.shape) < 0.05
    dx = np.where(bad, dx + rng.uniform(2, 6, dx.shape), dx)
    sigma = dominant_offset(dx, dy).sigma
    assert 0.01 < sigma < 0.2  # the static terrain's scatter, px
    kept = {}
    for unit, k in (("px", 1.0), ("m", 10.0), ("m/day", 10.0 / 16), ("m/yr", 10.0 / 16 * 365.25)):
        assert pixel_scale(dx * k, dy * k) == pytest.approx(k * pixel_scale(dx, dy), rel=1e-9)
        res = filter_outliers(dx * k, dy * k, pixel=k)  # the true pixel size in each unit
        auto = filter_outliers(dx * k, dy * k, pixel="scatter")  # estimated by choice: same in every unit
        assert auto.pixel_source == "scatter" and res.pixel_source == "given"
        kept[unit] = (res.mask, auto.mask)
        assert res.pixel == k and res.mask[bad].mean() > 0.9 and res.mask[~bad].mean() < 0.05
    for unit in ("m", "m/day", "m/yr"):
        assert np.array_equal(kept[unit][0], kept["px"][0]) and np.array_equal(kept[unit][1], kept["px"][1])
    with pytest.raises(InvalidInputError, match="pixel must be > 0"):
        filter_outliers(dx, dy, pixel=0.0)


def test_ambiguous_matches_are_removed_on_their_predicted_error() -> None:
    dx = np.zeros((20, 20))
    error = np.full(dx.shape, 0.05)
    error[5, 5] = 1.5  # a flat or ridge-shaped peak: the matcher cannot say where the match is
    res = filter_outliers(dx, dx, pixel=1.0, error=error, max_error=1.0, median_size=None, ndc_size=None)
    assert res.reasons["ambiguous"].sum() == 1 and res.reasons["ambiguous"][5, 5]
    metres = filter_outliers(dx, dx, pixel=30.0, error=error * 30, median_size=None, ndc_size=None)
    assert np.array_equal(metres.reasons["ambiguous"], res.reasons["ambiguous"])


# --- pixel size: given, said by the product, estimated by choice, never guessed ---


def test_correct_offsets_refuses_plain_arrays_without_pixel_instead_of_guessing() -> None:
    from geodeform.corrections import correct_offsets
    from geodeform.errors import UnknownPixelSizeError

    dx, dy, _, _ = _glacier_map(3)
    for call in (lambda: correct_offsets(dx, dy), lambda: filter_outliers(dx, dy)):
        with pytest.raises(UnknownPixelSizeError, match="pixel=") as info:
            call()
        assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError, match="'scatter'"):
        correct_offsets(dx, dy, pixel="guess")  # type: ignore[arg-type]
    # DataArrays that say they are in pixels need nothing more
    rep = correct_offsets(xr.DataArray(dx, attrs={"units": "px"}), xr.DataArray(dy, attrs={"units": "px"}))
    given = correct_offsets(dx, dy, pixel=1.0)
    assert rep.filtering.pixel == 1.0 and rep.filtering.pixel_source == "units"
    assert np.array_equal(np.isfinite(rep.dx), np.isfinite(given.dx))
    with pytest.raises(UnknownPixelSizeError, match="units"):  # metres without a pixel size: refused
        correct_offsets(
            xr.DataArray(dx * 30, attrs={"units": "m"}), xr.DataArray(dy * 30, attrs={"units": "m"})
        )


def test_a_pair_product_gives_its_own_pixel_size_and_the_filters_match_the_pixel_offsets() -> None:
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from geodeform.corrections import correct_offsets, product_pixel
    from geodeform.errors import UnknownPixelSizeError
    from geodeform.io import AcquisitionDates, GeoGrid, offset_dataset

    rng = np.random.default_rng(11)
    dx, dy, _, _ = _glacier_map(11)  # pixels
    bad = rng.random(dx.shape) < 0.05
    dx = np.where(bad, dx + rng.uniform(2, 6, dx.shape), dx)
    step, pixel_m, span = 4, 10.0, 16.0
    rows = np.arange(dx.shape[0]) * step + 16.0
    cols = np.arange(dx.shape[1]) * step + 16.0
    field = SimpleNamespace(dx=dx, dy=dy, rows=rows, cols=cols, quality=np.ones_like(dx),
                            reason=np.zeros(dx.shape, np.int8))  # fmt: skip
    grid = GeoGrid(crs=CRS.from_epsg(32633), transform=from_origin(500_000.0, 4_000_000.0, pixel_m, pixel_m),
                   shape=(int(rows[-1]) + 32, int(cols[-1]) + 32))  # fmt: skip
    dates = AcquisitionDates(
        datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2020, 1, 17, tzinfo=timezone.utc)
    )
    ds = offset_dataset(field, grid, dates=dates, step=step)
    assert product_pixel(ds, "dx") == pytest.approx(pixel_m)
    assert product_pixel(ds, "vx") == pytest.approx(pixel_m * 365.25 / span)
    in_px = correct_offsets(dx, dy, stable=np.ones(dx.shape, bool), pixel=1.0)
    for var in ("dx", "vx"):
        own = correct_offsets(ds[f"{var[0]}x"], ds[f"{var[0]}y"], stable=np.ones(dx.shape, bool),
                              pixel=product_pixel(ds, var))  # fmt: skip
        # +y north in the product, +rows south in the offsets, float32 on disk: the same nodes survive
        assert (np.isfinite(own.dx) != np.isfinite(in_px.dx)).mean() < 0.005
        assert own.filtering.mask[bad].mean() > 0.9
    composite = ds.drop_vars(["date_dt"])
    with pytest.raises(UnknownPixelSizeError, match="time span"):
        product_pixel(composite.assign_attrs(date_dt=None), "vx")
    with pytest.raises(UnknownPixelSizeError, match="no pixel size"):
        product_pixel(ds.assign_attrs(geodeform_pixel_m=None), "dx")


# --- Options, boundaries and argument names of the masks and of destripe (mutation survivors, issue 27) ---


def test_speed_mask_limit_is_per_day_or_per_pair_and_refuses_non_positive_options() -> None:
    dx = np.array([[1.5, 0.6, 0.4]])
    dy = np.zeros_like(dx)
    # Without dt_days the limit is per pair: 1.5 > 1.0 moves too fast, 0.6 does not.
    np.testing.assert_array_equal(speed_mask(dx, dy, max_speed=1.0), [[True, False, False]])
    # With dt_days the limit is per day: 0.5 px/day over half a day is 0.25 px.
    np.testing.assert_array_equal(speed_mask(dx, dy, max_speed=0.5, dt_days=0.5), [[True, True, True]])
    np.testing.assert_array_equal(speed_mask(dx, dy, max_speed=0.05, dt_days=10), [[True, True, False]])
    # A node exactly at the limit is not "more than" it.
    assert not speed_mask(np.array([[2.0]]), np.array([[0.0]]), max_speed=0.5, dt_days=4)[0, 0]
    for options in ({"max_speed": 0.0}, {"max_speed": -1.0}, {"max_speed": 1.0, "dt_days": 0.0}):
        with pytest.raises(InvalidInputError, match="max_speed and dt_days must be > 0"):
            speed_mask(dx, dy, **options)


@pytest.mark.parametrize("mask", [speed_mask, direction_mask])
def test_masks_name_the_component_of_a_bad_shape(mask) -> None:
    options = {"max_speed": 1.0} if mask is speed_mask else {"azimuth_deg": 0.0}
    dx = np.zeros((3, 4))
    with pytest.raises(InvalidInputError, match=r"^dx: need a 2-D map"):
        mask(dx[0], dx, **options)
    # A one-row dy would broadcast silently over every row of dx.
    with pytest.raises(InvalidInputError, match=r"^dy: shape \(1, 4\) differs from dx"):
        mask(dx, dx[:1], **options)


def test_quality_mask_keeps_a_node_exactly_at_the_threshold() -> None:
    np.testing.assert_array_equal(quality_mask(np.array([[0.3, 0.29, np.nan]]), 0.3), [[False, True, True]])


def test_direction_mask_angles_wrap_at_north_and_the_limit_is_strict() -> None:
    # Map frame (+dy north): unit motions towards azimuths 10, 350, 45 and 100 degrees.
    az = np.deg2rad([10.0, 350.0, 45.0, 100.0])
    dx, dy = np.sin(az)[None, :], np.cos(az)[None, :]
    # Expected flow towards azimuth 350: 10 and 350 are 20 degrees apart across north, 45 is 55 away.
    np.testing.assert_array_equal(
        direction_mask(dx, dy, azimuth_deg=350.0, frame="map"), [[False, False, True, True]]
    )
    np.testing.assert_array_equal(
        direction_mask(dx, dy, azimuth_deg=10.0, max_angle_deg=30.0, frame="map"),
        [[False, False, True, True]],
    )
    # The default limit is 45 degrees, and a motion 45 degrees off (north-east, expected north) is kept;
    # 45.5 degrees off is flagged.
    off = np.deg2rad(45.5)
    np.testing.assert_array_equal(
        direction_mask(
            np.array([[1.0, np.sin(off)]]), np.array([[1.0, np.cos(off)]]), azimuth_deg=0.0, frame="map"
        ),
        [[False, True]],
    )
    # 44.5 degrees off across north (325.5 against 10) is kept.
    back = np.deg2rad(325.5)
    assert not direction_mask(
        np.array([[np.sin(back)]]), np.array([[np.cos(back)]]), azimuth_deg=10.0, frame="map"
    )[0, 0]
    # A node that does not move has no direction: never flagged, whatever the expected azimuth.
    assert not direction_mask(np.zeros((1, 1)), np.zeros((1, 1)), azimuth_deg=180.0)[0, 0]
    with pytest.raises(InvalidInputError, match="frame: must be 'pixel' or 'map'"):
        direction_mask(dx, dy, azimuth_deg=0.0, frame="lonlat")  # type: ignore[arg-type]


def test_apply_mask_takes_a_0_1_mask_and_returns_float32() -> None:
    values = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = apply_mask(values, np.array([[0, 1, 0], [0, 0, 1]]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), [[False, True, False], [False, False, True]])
    np.testing.assert_array_equal(out[~np.isnan(out)], [0, 2, 3, 4])


def test_track_coordinates_follow_the_documented_rotation() -> None:
    u, v = track_coordinates((3, 4), 30.0)
    rows, cols = np.indices((3, 4))
    a = np.deg2rad(30.0)
    np.testing.assert_allclose(u, cols * np.cos(a) + rows * np.sin(a))
    np.testing.assert_allclose(v, rows * np.cos(a) - cols * np.sin(a))
    # Along the track (v grows, u constant): one pixel down-track is (cos a, -sin a) in (row, col).
    assert u.dtype == np.float64 and v.dtype == np.float64


@pytest.mark.parametrize("angle", [0.0, -20.0, 25.0])
def test_destripe_profile_is_the_bias_of_each_documented_bin(angle: float) -> None:
    """Noise-free stripes of 2-pixel bins on a tilted track: the profile is the bias per bin, exactly."""
    shape, width = (40, 50), 2.0
    u, _ = track_coordinates(shape, angle)
    k = np.floor((u - u.min()) / width).astype(int)
    bias = 0.1 * np.sin(1.7 * np.arange(k.max() + 1))
    res = destripe(bias[k], track_angle_deg=angle, bin_width=width, min_count=1)
    assert res.bin_start == pytest.approx(u.min()) and res.bin_width == width
    # The bins cover the image, and no bin lies past it.
    assert (
        res.bin_start + (len(res.profile) - 1) * width <= u.max() < res.bin_start + len(res.profile) * width
    )
    # The profile is the bias less its median (the constant part is a shift, left to coregister()).
    np.testing.assert_allclose(res.profile, bias - np.median(bias), atol=1e-12)
    np.testing.assert_allclose(res.values, np.median(bias), atol=1e-6)


def test_destripe_estimates_a_bin_with_exactly_min_count_reference_pixels() -> None:
    bias = np.array([0.0, 0.2, -0.3, 0.2, 0.0, 0.2])
    values = np.tile(bias, (20, 1))
    reference = np.ones(values.shape, dtype=bool)
    reference[5:, 2] = False  # 5 reference pixels in column 2 (the default min_count)
    res = destripe(values, reference=reference)
    np.testing.assert_allclose(res.profile, bias - np.median(bias), atol=1e-12)
    reference[4, 2] = False  # 4: column 2 is interpolated from its neighbours (0.2 both)
    profile = destripe(values, reference=reference).profile
    assert profile[2] == pytest.approx(profile[1]) and profile[2] == pytest.approx(profile[3])


def test_destripe_refuses_bad_options_and_names_bad_maps() -> None:
    values = np.zeros((6, 6))
    for options in ({"bin_width": 0.0}, {"bin_width": -1.0}, {"min_count": 0}):
        with pytest.raises(InvalidInputError, match="bin_width must be > 0 and min_count >= 1"):
            destripe(values, **options)
    # columns 0..5 in bins of half a pixel: 11 bins (the last one starts at 5.0)
    assert destripe(values, min_count=1, bin_width=0.5).profile.shape == (11,)
    with pytest.raises(InvalidInputError, match=r"^values: need a 2-D map"):
        destripe(values[0])
    with pytest.raises(InvalidInputError, match=r"^reference: shape \(5, 6\) differs from the map"):
        destripe(values, reference=np.ones((5, 6), dtype=bool))


def test_filter_outliers_runs_each_requested_filter_and_reports_it_by_name() -> None:
    # A smooth southward flow of 1 px (pixel frame: +dy south) with one node of each kind of blunder:
    # poor correlation, too fast for the pair, moving north-east.
    dx, dy = np.zeros((12, 12)), np.ones((12, 12))
    quality = np.full(dx.shape, 0.8)
    quality[2, 2] = 0.1
    dy[5, 5] = 4.0
    dx[8, 8], dy[8, 8] = 0.8, -0.8
    res = filter_outliers(
        dx, dy, pixel=1.0, quality=quality, min_quality=0.3, max_speed=0.25, dt_days=8,
        azimuth_deg=180.0, median_size=None, ndc_size=None,
    )  # fmt: skip
    assert list(res.reasons) == ["quality", "speed", "direction"]
    assert [tuple(np.argwhere(res.reasons[k])[0]) for k in res.reasons] == [(2, 2), (5, 5), (8, 8)]
    assert [int(m.sum()) for m in res.reasons.values()] == [1, 1, 1]
    assert np.isnan(res.dx[[2, 5, 8], [2, 5, 8]]).all() and int(res.mask.sum()) == 3
    # without the options, none of these filters runs
    assert list(filter_outliers(dx, dy, pixel=1.0, median_size=None, ndc_size=None).reasons) == []
    with pytest.raises(InvalidInputError, match=r"^quality: shape \(11, 12\) differs from dx"):
        filter_outliers(dx, dy, pixel=1.0, quality=quality[1:])


# --- Survivors of the mutation run (issue 27): each test checks a documented contract or a known truth.


def test_integer_maps_are_read_as_floats() -> None:
    # Offsets stored as integers (e.g. a file of whole pixels) behave like the same values as floats.
    ints = np.zeros((9, 9), dtype=np.int16)
    ints[4, 4] = 5
    assert np.array_equal(median_mad_mask(ints), median_mad_mask(ints.astype(float)))
    assert median_mad_mask(ints)[4, 4] and int(median_mad_mask(ints).sum()) == 1
    # int16 offsets of (300, 400) m: the RMSE is 500, with no integer overflow in the squares
    m = stable_ground_metrics(np.full((5, 5), 300, np.int16), np.full((5, 5), 400, np.int16))
    assert m.rmse == pytest.approx(500.0)


def test_nmad_of_no_finite_value_is_nan() -> None:
    from geodeform.corrections._common import nmad

    assert np.isnan(nmad(np.array([np.nan, np.inf])))
    assert np.isnan(nmad(np.array([])))
    assert nmad(np.array([1.0, 2.0, 3.0, np.nan])) == pytest.approx(1.4826)


def test_coregister_plane_is_centred_on_the_middle_of_the_map() -> None:
    # A pure tilt across columns on a non-square map: the model's offset `a` is the bias at the centre
    # ((n - 1) / 2 in rows and columns), and subtracting the model leaves nothing.
    rows, cols = np.indices((30, 41), dtype=float)
    bias = 0.5 + 0.02 * (cols - 20.0) - 0.01 * (rows - 14.5)
    res = coregister(bias, bias.copy(), stable=np.ones(bias.shape, bool), plane=True)
    np.testing.assert_allclose(res.model_x, [0.5, 0.02, -0.01], atol=1e-9)
    np.testing.assert_allclose(res.dx, 0.0, atol=1e-5)
    np.testing.assert_allclose(res.dy, 0.0, atol=1e-5)


def test_coregister_plane_clips_blunders_on_stable_ground() -> None:
    # A steep tilt (+-0.8 across the map), noise 0.01 and 5 % blunders of +0.4: the blunders lie 40 sigmas
    # off the plane, so the robust loop drops them from the stable mask and the plane stays exact.
    rng = np.random.default_rng(11)
    cols = np.indices((40, 41), dtype=float)[1]
    truth = 0.2 + 0.04 * (cols - 20.0)
    blunder = rng.random(truth.shape) < 0.05
    v = truth + rng.normal(0, 0.01, truth.shape) + np.where(blunder, 0.4, 0.0)
    res = coregister(v, stable=np.ones(v.shape, bool), plane=True)
    assert not (res.stable & blunder).any()
    assert res.n_stable > 0.9 * (~blunder).sum()
    np.testing.assert_allclose(res.model_x, [0.2, 0.04, 0.0], atol=2e-3)


def test_coregister_with_a_single_iteration_is_the_plain_median() -> None:
    v = np.arange(25, dtype=float).reshape(5, 5)
    v[0, 0] = 1000.0
    # one pass: the median of the 25 nodes (the blunder included), then the blunder is clipped
    res = coregister(v, stable=np.ones(v.shape, bool), iterations=1)
    assert res.model_x[0] == 13.0 and res.n_stable == 24 and not res.stable[0, 0]
    # a second pass fits the 24 nodes left
    assert coregister(v, stable=np.ones(v.shape, bool), iterations=2).model_x[0] == 12.5
    with pytest.raises(InvalidInputError, match=r"^clip and iterations must be positive"):
        coregister(v, stable=np.ones(v.shape, bool), iterations=0)


def test_coregister_refuses_a_dy_of_another_shape_with_a_mask() -> None:
    dx, dy, stable, _ = _glacier_map(6, shape=(20, 20))
    with pytest.raises(InvalidInputError, match=r"^dy: shape \(19, 20\) differs from dx"):
        coregister(dx, dy[:-1], stable=stable)


def test_dominant_offset_ignores_rare_far_blunders_and_finds_dy() -> None:
    from geodeform.corrections import dominant_offset

    # 0.5 % of the nodes 500 px away (outside the 1-99 % range of the histogram), 69.5 % static at
    # (1.3, -0.3) with noise 0.01, 30 % moving at (3, 4): the peak is within one bin of the static offset.
    rng = np.random.default_rng(4)
    n = 4000
    dx, dy = rng.normal(1.3, 0.01, n), rng.normal(-0.3, 0.01, n)
    moving = np.arange(n) % 10 < 3
    dx[moving], dy[moving] = 3.0, 4.0
    dx[:20] = 500.0
    dom = dominant_offset(dx.reshape(40, 100), dy.reshape(40, 100), bins=16)
    width_x = (np.percentile(dx, 99) - np.percentile(dx, 1)) / 16
    width_y = (np.percentile(dy, 99) - np.percentile(dy, 1)) / 16
    assert abs(dom.x - 1.3) < width_x and abs(dom.y + 0.3) < width_y


def test_select_stable_min_count_one_keeps_the_nearest_node() -> None:
    dx = np.linspace(0.0, 1.0, 100).reshape(10, 10)
    dx[0, 0] = 0.0
    for count in (1, 5):
        chosen = select_stable(dx, max_offset=1e-9, bins=4, min_count=count)
        assert int(chosen.sum()) >= count
    assert int(select_stable(dx, max_offset=-1.0, bins=4, min_count=1).sum()) == 1


def test_filters_name_their_maps_and_ndc_accepts_a_fraction_of_one() -> None:
    with pytest.raises(InvalidInputError, match=r"^values: need a 2-D map"):
        median_mad_mask(np.zeros(5))
    with pytest.raises(InvalidInputError, match=r"^dx: need a 2-D map"):
        ndc_mask(np.zeros(5), np.zeros(5))
    with pytest.raises(InvalidInputError, match=r"^dy: shape \(4, 5\) differs from dx"):
        ndc_mask(np.zeros((5, 5)), np.zeros((4, 5)))
    # min_fraction = 1: every valid neighbour must agree. One node of the 3 x 3 window of (2, 2) moved by
    # 2 px: (2, 2) is flagged with min_fraction = 1 (7 of 8 neighbours agree), not with 0.5.
    dx, dy = np.zeros((5, 5)), np.zeros((5, 5))
    dx[1, 1] = 2.0
    assert ndc_mask(dx, dy, size=3, min_fraction=1.0)[2, 2]
    assert not ndc_mask(dx, dy, size=3, min_fraction=0.5)[2, 2]
    with pytest.raises(InvalidInputError, match=r"^min_fraction must be in \(0, 1\]"):
        ndc_mask(dx, dy, min_fraction=1.01)


def test_stable_ground_metrics_rmse_is_the_vector_root_mean_square() -> None:
    # Every vector has length 3 (x = 3 cos t, y = 3 sin t): RMSE = 3 exactly, whatever the directions.
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False).reshape(20, 20)
    m = stable_ground_metrics(3 * np.cos(t), 3 * np.sin(t))
    assert m.rmse == pytest.approx(3.0, rel=1e-12)
    # Known numbers: (1, 2), (3, 4), (0, 0), (2, 1) repeated: mean of x^2 + y^2 = (5 + 25 + 0 + 5) / 4
    x = np.tile([1.0, 3.0, 0.0, 2.0], 5).reshape(4, 5)
    y = np.tile([2.0, 4.0, 0.0, 1.0], 5).reshape(4, 5)
    assert stable_ground_metrics(x, y).rmse == pytest.approx(np.sqrt(35 / 4), rel=1e-12)


def test_stable_ground_metrics_of_a_still_map_and_a_small_spread() -> None:
    # Perfectly still terrain shifted by (3, 4): zero spread, no outlier, RMSE 5.
    m = stable_ground_metrics(np.full((10, 10), 3.0), np.full((10, 10), 4.0))
    assert (m.median_x, m.median_y, m.nmad_x, m.nmad_y) == (3.0, 4.0, 0.0, 0.0)
    assert m.rmse == pytest.approx(5.0) and m.outlier_fraction == 0.0
    assert m.delta_x < 1e-9 and m.delta_y < 1e-9
    # A spread far from 1 (sigma 0.05 px) offset far from 0 in x: the box is still about 2 sigma wide, and
    # the 10 % planted blunders are about the only nodes outside it.
    rng = np.random.default_rng(8)
    x, y = rng.normal(5.0, 0.05, (100, 100)), rng.normal(-3.0, 0.05, (100, 100))
    blunder = rng.random(x.shape) < 0.1
    x[blunder] += rng.choice([-1.0, 1.0], blunder.sum())
    m = stable_ground_metrics(x, y)
    assert 1.8 * 0.05 < m.delta_x < 2.6 * 0.05 and 1.8 * 0.05 < m.delta_y < 2.6 * 0.05
    assert 0.1 < m.outlier_fraction < 0.25
    with pytest.raises(InvalidInputError, match=r"^thres_sigma must be > 0 and gridsize >= 5$"):
        stable_ground_metrics(x, y, gridsize=4)


def test_stable_ground_metrics_subsample_estimates_the_density_and_counts_every_node() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.normal(0.0, 0.2, (100, 100)), rng.normal(0.0, 0.1, (100, 100))
    sub = stable_ground_metrics(x, y, max_samples=2000)
    assert sub.n == 10_000 and sub.median_x == float(np.median(x))  # the statistics use every node
    assert 1.8 * 0.2 < sub.delta_x < 2.4 * 0.2 and 1.8 * 0.1 < sub.delta_y < 2.4 * 0.1


def test_correct_offsets_removes_stripes_and_reports_metrics_before_and_after() -> None:
    # Detector stripes (0.13 px, 1 sigma, 20 px wide across a track tilted 10 degrees) and a shift of
    # (0.7, -0.4) px on both components: after correction, stable ground is flat and centred on 0.
    rng = np.random.default_rng(12)
    dx, dy, stable, flow = _glacier_map(12, shape=(120, 160))
    stripe = _detector_stripes(rng, dx.shape)
    sx, sy = dx + 0.7 + stripe, dy - 0.4 - stripe
    options = {"track_angle_deg": 10.0, "bin_width": 2.0}
    rep = correct_offsets(sx, sy, stable=stable, pixel=1.0, plane=False, stripes=options)
    assert rep.before.median_x == pytest.approx(0.7, abs=0.03)
    assert rep.before.median_y == pytest.approx(-0.4, abs=0.03)
    assert abs(rep.after.median_x) < 0.01 and abs(rep.after.median_y) < 0.01
    assert np.nanstd(rep.dx[stable]) < 0.06 and np.nanstd(rep.dy[stable]) < 0.06
    assert set(rep.stripe_profiles) == {"dx", "dy"}
    # the removed profiles are the stripes: 0.13 px (1 sigma), of opposite signs on the two components
    px, py = rep.stripe_profiles["dx"], rep.stripe_profiles["dy"]
    assert 0.1 < np.nanstd(px) < 0.16 and np.nanstd(px + py) < 0.03
    plain = correct_offsets(sx, sy, stable=stable, pixel=1.0, plane=False)
    assert plain.stripe_profiles == {} and np.nanstd(plain.dx[stable]) > 0.1
    del flow


def test_correct_offsets_needs_min_stable_nodes_and_names_bad_maps() -> None:
    rng = np.random.default_rng(13)
    dx, dy = rng.normal(0.5, 0.01, (12, 12)), rng.normal(0.0, 0.01, (12, 12))
    stable = np.zeros(dx.shape, bool)
    stable.flat[:20] = True  # exactly the default min_stable
    off = {"median_size": None, "ndc_size": None}
    rep = correct_offsets(dx, dy, stable=stable, pixel=1.0, plane=False, filters=off)
    assert rep.coregistration.model_x[0] == pytest.approx(0.5, abs=0.01)
    stable.flat[19] = False
    with pytest.raises(NoDataError, match="only 19 stable nodes"):
        correct_offsets(dx, dy, stable=stable, pixel=1.0, plane=False, filters=off)
    with pytest.raises(InvalidInputError, match=r"^dx: need a 2-D map"):
        correct_offsets(dx[0], dy, pixel=1.0)
    with pytest.raises(InvalidInputError, match=r"^dy: shape \(11, 12\) differs from dx"):
        correct_offsets(dx, dy[1:], pixel=1.0)
    with pytest.raises(InvalidInputError, match=r"^stable: shape \(11, 12\) differs from the map"):
        correct_offsets(dx, dy, stable=stable[1:], pixel=1.0)


def test_messages_of_pixel_size_and_highpass_bins() -> None:
    from geodeform.errors import UnknownPixelSizeError

    with pytest.raises(UnknownPixelSizeError, match=r"in pixels\. Give pixel=: 1 for pixel offsets"):
        correct_offsets(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(InvalidInputError, match=r"^highpass_bins: need >= 3 bins, got 2$"):
        destripe(np.zeros((6, 6)), highpass_bins=2)
