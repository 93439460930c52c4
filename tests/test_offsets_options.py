"""The matcher's option handling: what ``geodeform.offsets.match`` accepts and refuses (each ``NccOptions``
range at its boundaries, the driver's arguments, the shared argument checks) and that each option reaches
the matcher it names, on small crops of the real texture.

These are the fast selection of the mutation run of ``offsets/ncc.py``, ``offsets/driver.py`` and
``offsets/_common.py`` (``scripts/mutation/options.toml``).
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

from _imposed import fourier_shift
from geodeform.errors import InvalidInputError
from geodeform.offsets import METHODS, Reason, grid_shape, match, node_grid
from geodeform.offsets._common import check_image, pair_of_ints
from geodeform.offsets._types import MatcherOutput
from geodeform.offsets.driver import _offset_field
from geodeform.offsets.flow import FlowOptions
from geodeform.offsets.ncc import NccOptions
from geodeform.offsets.phase import PhaseOptions

SMALL = dict(chip_size=16, step=16, search_range=2)


@pytest.fixture(scope="module")
def pair(texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """96 × 96 px of the real texture and its copy shifted by (dy, dx) = (0.4, -0.3) px."""
    ref = texture[:96, :96].copy()
    return ref, fourier_shift(texture[:192, :192], 0.4, -0.3)[:96, :96]


# --- NccOptions ranges at their boundaries --------------------------------------------------------------

# (option, accepted values, refused values): the values on each side of every limit
RANGES = [
    ("min_correlation", [-1.0, 1.0], [-1.001, 1.001]),
    ("min_valid_fraction", [1e-9, 1.0], [0.0, 1.001]),
    ("min_texture", [0.0], [-1e-9]),
    ("subpixel", ["lk", "parabola"], ["quadratic"]),
    ("max_iter", [1, 1.5], [0, 0.9]),
    ("tol", [1e-9], [0.0]),
    ("window", ["gaussian", "uniform"], ["box"]),
    ("radiometry", ["linear", "quadratic"], ["gamma"]),
    ("consistency_px", [1e-9], [0.0]),
    ("target_sigma", [1e-9], [0.0]),
    ("step_px", [1e-9], [0.0]),
    ("two_motion_px", [1e-9], [0.0]),
    ("two_motion_ratio", [1e-9, 1.0], [0.0, 1.001]),
    ("max_chip_factor", [1, 1.9], [0, 0.9]),
    ("grow_chips", [True, False], ["yes", None]),
    ("sparse_stride", [1, 2, 8, 16.0], [0, -2, 3, 6, 12]),
    ("coarse_nested", [True, False, "auto"], ["sometimes", None]),
    ("coarse_nested_fraction", [0.0, 1.0], [-0.001, 1.001]),
    ("smoothing", [0, 10, np.int64(3)], [-1, 11, 3.0]),
    ("smoothing_gamma", [1e-9], [0.0]),
    ("smoothing_chi2", [1e-9], [0.0, -1.0]),
    (
        "smoothing_model",
        ["plane", "plane-sided", "plane-split", "quadratic", "quadratic-sided", "quadratic-split"],
        ["cubic", "sided", None],
    ),
    ("robust_ratio", [0.0], [-1e-9]),
    ("smooth", [0.0, 10.0], [-0.001, 10.001]),
    ("interpolation", ["approx", "exact"], ["linear"]),
]


def test_every_ncc_option_has_its_range_checked():
    assert {name for name, _, _ in RANGES} == {f.name for f in dataclasses.fields(NccOptions)} - {
        "strain_correction",
        "consistency",
        "sparse",
        "shiftable",
        "robust_steps",
        "two_motion",
    }


@pytest.mark.parametrize(("name", "good", "bad"), RANGES, ids=[r[0] for r in RANGES])
def test_ncc_option_ranges_at_their_boundaries(name, good, bad):
    for value in good:
        NccOptions(**{name: value}).validate()
    for value in bad:
        with pytest.raises(InvalidInputError) as info:
            NccOptions(**{name: value}).validate()
        assert str(info.value) == (
            f"invalid ncc option(s) [{name!r}]: got {name}={value!r}; see geodeform.offsets.ncc.NccOptions "
            "for the allowed values"
        )


def test_the_defaults_are_valid_and_every_bad_option_is_listed_in_order():
    NccOptions().validate()
    with pytest.raises(InvalidInputError) as info:
        NccOptions(tol=0.0, min_correlation=2.0, smooth=-1.0).validate()
    assert str(info.value).startswith(
        "invalid ncc option(s) ['min_correlation', 'tol', 'smooth']: got min_correlation=2.0, tol=0.0, "
        "smooth=-1.0; "
    )


# --- options reach the matcher they name ----------------------------------------------------------------


def test_options_are_dispatched_to_their_method_and_recorded(pair):
    ref, sec = pair
    for method, cls in (("ncc", NccOptions), ("phase", PhaseOptions), ("flow", FlowOptions)):
        f = match(ref, sec, method=method, **SMALL)
        assert f.method == method
        for field in dataclasses.fields(cls):
            assert f.params[field.name] == field.default or field.default is dataclasses.MISSING, field.name
    f = match(ref, sec, min_correlation=0.5, window="uniform", **SMALL)
    assert f.params["min_correlation"] == 0.5 and f.params["window"] == "uniform"
    f = match(ref, sec, method="phase", window_beta=0.25, **SMALL)
    assert f.params["window_beta"] == 0.25 and "min_correlation" not in f.params
    f = match(ref, sec, method="flow", iterations=2, **SMALL)
    assert f.params["iterations"] == 2 and "window_beta" not in f.params


def test_options_of_another_method_are_refused_naming_the_valid_ones(pair):
    ref, sec = pair
    with pytest.raises(InvalidInputError) as info:
        match(ref, sec, method="phase", subpixel="lk", colour="red", **SMALL)
    valid = sorted(f.name for f in dataclasses.fields(PhaseOptions))
    assert str(info.value) == (
        f"unknown option(s) ['colour', 'subpixel'] for method='phase'; valid options are {valid}"
    )
    with pytest.raises(InvalidInputError, match=r"invalid phase option\(s\) \['iterations'\]"):
        match(ref, sec, method="phase", iterations=0, **SMALL)
    with pytest.raises(InvalidInputError, match=r"invalid flow option\(s\) \['rank_size'\]"):
        match(ref, sec, method="flow", rank_size=2, **SMALL)
    with pytest.raises(InvalidInputError) as info:
        match(ref, sec, method="fft", **SMALL)
    assert str(info.value) == "method='fft' is not known; use one of ['ncc', 'phase', 'flow']"


def test_each_method_measures_the_shift(pair):
    ref, sec = pair
    for method in METHODS:
        f = match(ref, sec, method=method, chip_size=32, step=16, search_range=2)
        assert np.nanmedian(f.dy) == pytest.approx(0.4, abs=0.1), method
        assert np.nanmedian(f.dx) == pytest.approx(-0.3, abs=0.1), method
        # the predicted error is the ncc matcher's only
        assert np.isfinite(f.error).any() == (method == "ncc"), method


def test_the_parabola_and_lk_paths_differ(pair):
    ref, sec = pair
    lk = match(ref, sec, chip_size=32, step=16, search_range=2, smoothing=0)
    parabola = match(ref, sec, chip_size=32, step=16, search_range=2, subpixel="parabola", smoothing=0)
    assert parabola.params["subpixel"] == "parabola"
    assert np.nanmax(np.abs(lk.dx - parabola.dx)) > 1e-3
    assert np.nanmedian(np.abs(lk.dx + 0.3)) < np.nanmedian(np.abs(parabola.dx + 0.3))


# --- the driver's arguments ------------------------------------------------------------------------------


def test_chip_size_against_the_image_size(pair):
    ref, sec = pair
    f = match(ref, sec, chip_size=96, step=16, search_range=0)
    assert f.dx.shape == (1, 1)
    for chip in ((97, 16), (16, 97)):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, chip_size=chip, step=16, search_range=0)
        assert str(info.value) == (
            f"chip_size {chip} is larger than the images (96, 96); use a chip_size ≤ the image size"
        )


def test_prefilter_and_strip_rows(pair):
    ref, sec = pair
    base = match(ref, sec, **SMALL)
    same = match(ref, sec, prefilter="none", **SMALL)
    np.testing.assert_array_equal(base.dx, same.dx)
    assert match(ref, sec, prefilter="wallis", **SMALL).params["prefilter"] == "wallis"
    with pytest.raises(InvalidInputError) as info:
        match(ref, sec, prefilter="sobel", **SMALL)
    assert str(info.value) == (
        "prefilter='sobel' is not known; use one of ['gradient', 'highpass', 'rank', 'wallis'] or None"
    )
    # strips of one row (fewer than a chip: a strip then holds a chip) or of numpy ints work (strips
    # change the sparse search's starts a little)
    np.testing.assert_allclose(match(ref, sec, strip_rows=1, **SMALL).dx, base.dx, atol=0.01)
    strips = match(ref, sec, strip_rows=16, **SMALL).dx
    np.testing.assert_array_equal(match(ref, sec, strip_rows=np.int64(16), **SMALL).dx, strips)
    for bad in (0, -1, 16.0, "16"):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, strip_rows=bad, **SMALL)
        assert str(info.value) == f"strip_rows must be a positive int, got {bad!r}"


def test_search_range_as_a_number_or_a_grid(pair):
    ref, sec = pair
    shape = grid_shape(ref.shape, 16, 16)
    assert match(ref, sec, chip_size=16, step=16, search_range=1.2).params["search_range"] == 2  # rounded up
    assert match(ref, sec, chip_size=16, step=16, search_range=0).params["search_range"] == 0
    grid = np.zeros(shape)
    grid[0, 0] = 3
    f = match(ref, sec, chip_size=16, step=16, search_range=grid)
    assert f.params["search_range"] == 3
    np.testing.assert_array_equal(grid, np.zeros(shape) + grid)  # the caller's array is left alone
    for bad in (np.zeros(shape[0]), np.zeros((shape[0], shape[1] + 1)), np.zeros((1, *shape))):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, chip_size=16, step=16, search_range=bad)
        assert str(info.value) == (
            f"search_range must be a number or an array of the grid shape {shape}, got shape {bad.shape}; "
            "build it with geodeform.offsets.grid_shape(image.shape, chip_size, step)"
        )
    for bad in (-1, -1e-9, np.inf, np.nan):
        with pytest.raises(InvalidInputError, match="search_range must be finite and ≥ 0 px"):
            match(ref, sec, chip_size=16, step=16, search_range=bad)
    for bad in ("3", True, None, np.ones(shape, dtype=bool)):  # not silently 3 px or 1 px
        with pytest.raises(InvalidInputError, match="search_range must be a number of pixels"):
            match(ref, sec, chip_size=16, step=16, search_range=bad)


def test_nodata_fill_values_and_masks_blank_their_nodes(pair):
    ref, sec = pair
    hole = ref.copy()
    hole[:16, :] = -5.0  # the first row of chips is no-data
    for kwargs in (
        {"nodata": -5.0},
        {"nodata": -5},
        {"nodata": np.float32(-5)},
        {"fill_values": -5},
        {"fill_values": (1e9, -5.0)},
        {"fill_values": np.array([[-5.0]])},
    ):
        f = match(hole, sec, **SMALL, **kwargs)
        assert np.isnan(f.dx[0]).all() and np.isfinite(f.dx[1:]).all(), kwargs
        assert (f.reason[0] == Reason.MASKED).all()
    assert match(hole, sec, **SMALL, nodata=-5.0).params["nodata"] == -5.0
    # no fill value at all: the constant chips are measured, and found textureless (not masked)
    assert (match(hole, sec, **SMALL, fill_values=()).reason[0] == Reason.TEXTURELESS).all()
    for bad in ("none", True, np.bool_(False)):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, nodata=bad, **SMALL)
        assert str(info.value) == f"nodata must be a number or None, got {bad!r}"
    for bad in ("zero", (0, None), True, (0, True), [[0, "a"]]):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, fill_values=bad, **SMALL)
        assert str(info.value) == (
            f"fill_values must be a number or a sequence of numbers (e.g. 0 or (0, 65535)), got {bad!r}"
        )

    class NoArray:  # an object numpy cannot convert: the same clear error, not a bare TypeError
        def __array__(self, dtype=None, copy=None):
            raise TypeError("not an array")

        def __repr__(self) -> str:
            return "NoArray()"

    with pytest.raises(InvalidInputError, match=r"fill_values must be a number .* got NoArray\(\)"):
        match(ref, sec, fill_values=NoArray(), **SMALL)
    mask = np.zeros(ref.shape, np.uint8)
    mask[:, :16] = 1  # not bool: taken as True where non-zero
    for kwargs in ({"mask": mask}, {"secondary_mask": mask}):
        f = match(ref, sec, **SMALL, **kwargs)
        assert np.isnan(f.dx[:, 0]).all() and np.isfinite(f.dx[:, 1:]).all()
    for name in ("mask", "secondary_mask"):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, **SMALL, **{name: np.zeros((96, 95), bool)})
        assert str(info.value) == f"{name} has shape (96, 95), expected the image shape (96, 96)"


def test_saturation_auto_number_or_none(pair):
    ref, sec = pair
    top = float(max(ref.max(), sec.max())) + 100.0
    cloudy = ref.copy()
    cloudy[:16, :16] = top  # one chip of 36: 2.8 % of the pixels at the maximum
    auto = match(cloudy, sec, **SMALL)
    assert auto.params["saturation"] == top and np.isnan(auto.dx[0, 0]) and np.isfinite(auto.dx[0, 1])
    # 0.5 % of the pixels or fewer at the maximum: not saturation (a 100 x 100 image: 50 pixels)
    speck = np.pad(ref, ((0, 4), (0, 4)), mode="reflect")
    speck_sec = np.pad(sec, ((0, 4), (0, 4)), mode="reflect")
    speck.flat[:50] = top
    assert match(speck, speck_sec, **SMALL).params["saturation"] is None
    speck.flat[:51] = top
    assert match(speck, speck_sec, **SMALL).params["saturation"] == top
    # the lower level of the two images
    both = sec.copy()
    both[-16:, -16:] = top - 50.0
    assert match(cloudy, both, **SMALL).params["saturation"] == top - 50.0
    assert match(cloudy, sec, saturation=None, **SMALL).params["saturation"] is None
    assert auto.reason[0, 0] == Reason.MASKED
    assert match(cloudy, sec, saturation=None, **SMALL).reason[0, 0] != Reason.MASKED  # measured, fails
    assert match(ref, sec, saturation="1e9", **SMALL).params["saturation"] == 1e9
    assert match(ref, sec, saturation=7, **SMALL).params["saturation"] == 7.0
    for bad in ("high", [1, 2]):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, saturation=bad, **SMALL)
        assert str(info.value) == f"saturation must be a number, 'auto' or None, got {bad!r}"


def test_saturation_auto_skips_the_dtype_maximum_of_integer_images(pair):
    ref, sec = pair
    scale = 60000.0 / max(ref.max(), sec.max())
    ref16 = np.clip(ref * scale, 1, 65534).astype(np.uint16)
    sec16 = np.clip(sec * scale, 1, 65534).astype(np.uint16)
    ref16[:16, :16] = 65535  # the dtype maximum: a fill value already, not a saturation level
    assert match(ref16, sec16, **SMALL).params["saturation"] is None
    ref16[:16, :16] = 65000
    assert match(ref16, sec16, **SMALL).params["saturation"] == 65000.0


def test_threads_are_set_for_the_call_only(pair):
    ref, sec = pair
    before = numba.get_num_threads()
    base = match(ref, sec, **SMALL)
    np.testing.assert_array_equal(match(ref, sec, threads=1, **SMALL).dx, base.dx)
    np.testing.assert_array_equal(match(ref, sec, threads=np.int64(1), **SMALL).dx, base.dx)
    assert numba.get_num_threads() == before
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, threads=bad, **SMALL)
        assert str(info.value) == f"threads must be a positive int, got {bad!r}"
    assert numba.get_num_threads() == before


def test_the_result_blanks_every_failed_node(pair):
    ref, sec = pair
    hole = ref.copy()
    hole[:16, :] = np.nan
    f = match(hole, sec, **SMALL)
    bad = f.reason != Reason.OK
    assert bad[0].all() and not bad[1:].any()
    for name in ("dx", "dy", "error", "chip_height", "chip_width"):
        values = getattr(f, name)
        assert values.dtype == np.float32, name
        assert np.isnan(values[bad]).all() and np.isfinite(values[~bad]).all(), name
    assert (f.quality[bad] == 0).all() and (f.quality[~bad] > 0.5).all() and (f.quality <= 1).all()
    assert f.quality.dtype == np.float32 and f.reason.dtype == np.uint8
    assert (f.chip_height[~bad] >= 16).all()
    rows, cols = node_grid(ref.shape, (16, 16), (16, 16))[2:]
    np.testing.assert_array_equal(f.rows, rows) and np.testing.assert_array_equal(f.cols, cols)
    assert f.rows.dtype == np.float64 and f.cols.dtype == np.float64
    assert f.params["chip_size"] == (16, 16) and f.params["step"] == (16, 16)
    # phase has no predicted error and base-size chips
    f = match(hole, sec, method="phase", **SMALL)
    assert np.isnan(f.error).all()
    assert (f.chip_height[1:] == 16).all() and np.isnan(f.chip_width[0]).all()


# --- the shared argument checks --------------------------------------------------------------------------


def test_pair_of_ints():
    assert pair_of_ints(8, "chip_size", minimum=4) == (8, 8)
    assert pair_of_ints((8, 12), "chip_size", minimum=4) == (8, 12)
    assert pair_of_ints([8.0, np.int64(12)], "chip_size", minimum=4) == (8, 12)
    assert pair_of_ints(np.array([4, 5]), "chip_size", minimum=4) == (4, 5)
    assert pair_of_ints(np.float64(6.0), "step", minimum=1) == (6, 6)
    with pytest.raises(InvalidInputError) as info:
        pair_of_ints((8, 8, 8), "chip_size", minimum=4)
    assert str(info.value) == "chip_size must be an int or a (rows, cols) pair, got (8, 8, 8)"
    for bad in (True, 7.5, "8", (8, None), np.float32(7.5)):
        with pytest.raises(InvalidInputError) as info:
            pair_of_ints(bad, "step", minimum=1)
        assert str(info.value) == f"step must be a whole number of pixels, got {bad!r}"
    with pytest.raises(InvalidInputError) as info:
        pair_of_ints((8, 3), "chip_size", minimum=4)
    assert str(info.value) == "chip_size must be ≥ 4 px, got (8, 3); pass a larger value"


def test_check_image():
    ok = np.zeros((4, 4), np.uint8)
    assert check_image(ok, "reference") is not None
    for dtype in (np.int16, np.uint16, np.float32, np.float64):
        check_image(np.zeros((4, 5), dtype), "reference")
    with pytest.raises(InvalidInputError) as info:
        check_image(np.zeros((2, 4, 4)), "secondary")
    assert str(info.value) == (
        "secondary must be a 2-D array (rows, cols), got 3-D shape (2, 4, 4); select one band, e.g. image[0]"
    )
    for dtype in (np.float16, np.complex64, np.bool_):
        with pytest.raises(InvalidInputError) as info:
            check_image(np.zeros((8, 8), dtype), "reference")
        assert str(info.value) == (
            f"reference must be an integer or float32/float64 array, got dtype {np.dtype(dtype)}"
        )
    for shape in ((3, 8), (8, 3)):
        with pytest.raises(InvalidInputError) as info:
            check_image(np.zeros(shape), "reference")
        assert str(info.value) == f"reference is too small ({shape}); matching needs at least 4×4 pixels"
    with pytest.raises(InvalidInputError) as info:
        match(np.zeros((8, 8)), np.zeros((8, 9)), chip_size=4, step=4, search_range=0)
    assert str(info.value) == (
        "reference (8, 8) and secondary (8, 9) differ in shape; resample the secondary onto the reference "
        "grid first (geodeform.io reprojects georeferenced rasters)"
    )


def test_node_grid_places_nodes_at_chip_centres():
    rs, cs, rows, cols = node_grid((40, 50), (16, 9), (8, 10))
    np.testing.assert_array_equal(rs, [0, 8, 16, 24])
    np.testing.assert_array_equal(cs, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(rows, [7.5, 15.5, 23.5, 31.5])
    np.testing.assert_array_equal(cols, [4, 14, 24, 34, 44])
    assert grid_shape((40, 50), (16, 9), (8, 10)) == (4, 5)
    assert grid_shape((16, 16), 16, 1) == (1, 1) and grid_shape((15, 16), 16, 1) == (0, 1)
    with pytest.raises(InvalidInputError) as info:
        grid_shape((40, 50), 2, 1)
    assert str(info.value) == "chip_size must be ≥ 4 px, got 2; pass a larger value"
    with pytest.raises(InvalidInputError) as info:
        grid_shape((40, 50), 8, 0)
    assert str(info.value) == "step must be ≥ 1 px, got 0; pass a larger value"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fill_value_matches_the_pixels_of_the_images_precision(pair, dtype):
    """0.1 is not a float32 number: a float32 image's 0.1 pixels hold float32(0.1), which the rule must
    match (rounded like the pixels), and a float64 image's hold 0.1 itself."""
    ref, sec = pair
    hole = ref.astype(dtype)
    hole[:16, :] = dtype(0.1)
    f = match(hole, sec.astype(dtype), fill_values=0.1, **SMALL)
    assert (f.reason[0] == Reason.MASKED).all() and (f.reason[1:] == Reason.OK).all()


def test_an_image_without_a_valid_pixel_outside_its_mask_is_refused(pair):
    ref, sec = pair
    everything = np.ones(ref.shape, bool)
    for kwargs, name in (({"mask": everything}, "reference"), ({"secondary_mask": everything}, "secondary")):
        with pytest.raises(InvalidInputError, match=f"^{name} has no valid pixel"):
            match(ref, sec, **SMALL, **kwargs)
    # texture only under the mask: constant where it counts
    flat = np.full(ref.shape, 5.0)
    flat[:16, :16] = ref[:16, :16]
    mask = np.zeros(ref.shape, bool)
    mask[:16, :16] = True
    with pytest.raises(InvalidInputError, match=r"^reference is constant"):
        match(flat, sec, mask=mask, **SMALL)


def test_the_driver_blanks_whatever_a_matcher_left_at_a_failed_node():
    """A matcher may leave numbers at its failed nodes: the driver makes them NaN (quality 0), as
    ``MatcherOutput`` documents, and clips the quality to [0, 1]."""
    reason = np.array([[Reason.OK, Reason.LOW_CORRELATION]], np.uint8)
    ones = np.ones((1, 2))
    res = MatcherOutput(
        0.5 * ones, -0.5 * ones, np.array([[1.2, 0.9]]), reason, 0.1 * ones, 24 * ones, 20 * ones
    )
    f = _offset_field(res, np.array([7.5]), np.array([7.5, 23.5]), "ncc", {}, (16, 16))
    for name, kept in (("dy", 0.5), ("dx", -0.5), ("error", 0.1), ("chip_height", 24), ("chip_width", 20)):
        np.testing.assert_array_equal(getattr(f, name), np.float32([[kept, np.nan]]), err_msg=name)
    np.testing.assert_array_equal(f.quality, np.float32([[1.0, 0.0]]))
    # no error and no chip sizes from the matcher: NaN errors, the base chip where the node is valid
    res = MatcherOutput(ones, ones, np.array([[-0.2, 0.5]]), reason, None, None, None)
    f = _offset_field(res, np.array([7.5]), np.array([7.5, 23.5]), "phase", {}, (16, 12))
    assert np.isnan(f.error).all() and f.method == "phase"
    np.testing.assert_array_equal(f.quality, np.float32([[0.0, 0.0]]))
    np.testing.assert_array_equal(f.chip_height, np.float32([[16, np.nan]]))
    np.testing.assert_array_equal(f.chip_width, np.float32([[12, np.nan]]))


def test_match_defaults_and_the_names_in_its_messages(pair):
    ref, sec = pair
    f = match(ref, sec)
    assert f.method == "ncc" and f.params["chip_size"] == (32, 32) and f.params["step"] == (16, 16)
    assert f.params["search_range"] == 16 and f.params["prefilter"] is None
    assert f.dx.shape == grid_shape(ref.shape, 32, 16)
    for kwargs, message in (
        ({"step": 0}, "step must be ≥ 1 px, got 0; pass a larger value"),
        ({"chip_size": (8, 2)}, "chip_size must be ≥ 4 px, got (8, 2); pass a larger value"),
    ):
        with pytest.raises(InvalidInputError) as info:
            match(ref, sec, **kwargs)
        assert str(info.value) == message
    cube = np.stack([ref, ref])
    with pytest.raises(InvalidInputError, match=r"^reference must be a 2-D array"):
        match(cube, sec)
    with pytest.raises(InvalidInputError, match=r"^secondary must be a 2-D array"):
        match(ref, cube)


def test_strips_hold_at_least_one_chip_of_a_tall_chip(pair):
    ref, sec = pair
    tall = {"chip_size": (32, 16), "step": 16, "search_range": 2}
    whole = match(ref, sec, **tall)
    strips = match(ref, sec, strip_rows=1, **tall)
    # strips change the sparse search's starts a little, not the answer
    np.testing.assert_allclose(strips.dx, whole.dx, atol=0.03)
    np.testing.assert_allclose(strips.dy, whole.dy, atol=0.03)
