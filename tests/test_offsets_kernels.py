"""Direct tests of the ``ncc`` matcher's kernels on small crops of real texture with imposed motions.

Sign convention: ``secondary(p + d) = reference(p)``: a feature at (row, col) of the reference appears at
(row + dy, col + dx) of the secondary.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytest

from _imposed import fourier_shift
from geodeform.offsets._filters import (
    bspline_coefficients,
    bspline_model,
    erode3,
    gaussian_kernel,
    separable_fir,
    spline_gradients,
    taps_valid,
)
from geodeform.offsets._grid import lattice_median, neighbour_median_nodes, sorting_network
from geodeform.offsets._job import MatchJob
from geodeform.offsets._layout import (
    CENTRE_SCORE,
    DX,
    DY,
    LK_PAD,
    MASKED,
    OK,
    OUTSIDE,
    REASON,
    REFINE_COLS,
    SIGMA,
    TWO_A_DX,
    TWO_A_DY,
    TWO_B_DX,
    TWO_B_DY,
    TWO_CENTRE_DIST,
    TWO_DX,
    TWO_DY,
    TWO_RATIO,
    TWO_REASON,
    TWO_SHARPNESS,
    TWO_THETA,
    Spline,
)
from geodeform.offsets._ncc_run import border_chips
from geodeform.offsets._refine import GaussNewton, lk_nodes
from geodeform.offsets._robust import lk_robust_nodes
from geodeform.offsets._search import Level, search_nodes
from geodeform.offsets._two_motion import Motions, TwoMotionParams, two_motion_nodes

GN = GaussNewton(max_iter=20, tol=0.001, max_move=3.0, min_frac=0.0, min_std=-1.0)


def shifted_crop(texture: np.ndarray, r: int, c: int, size: int, dy: float, dx: float) -> tuple[Any, Any]:
    """A size² crop of the texture at (r, c) and the same crop of the texture moved by (dy, dx) px
    (shifted with 32 px of real texture around, so the shift is exact on the crop)."""
    m = 32
    big = texture[r - m : r + size + m, c - m : c + size + m]
    return big[m:-m, m:-m], fourier_shift(big, dy, dx)[m:-m, m:-m]


def uniform(size: int) -> np.ndarray:
    """Equal weights for a size² chip (a writable float32 array, as the matcher passes its windows)."""
    return np.ones((size, size), np.float32)


def gaussian(size: int) -> np.ndarray:
    """The matcher's default chip weights: a Gaussian of σ = size / 4 centred on the chip."""
    x = (np.arange(size) - (size - 1) / 2) / (size / 4)
    return np.exp(-0.5 * (x[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def normalised(img: np.ndarray) -> np.ndarray:
    return ((img - img.mean()) / img.std()).astype(np.float32)


def spline_of(ref: np.ndarray, sec: np.ndarray) -> Spline:
    """The kernels' B-spline data of a pair (every pixel valid): the reference's B-spline model and its
    gradients, the secondary's pixels as coefficients with an invalid border of LK_PAD pixels."""
    r, s = normalised(ref), normalised(sec)
    val, gy, gx = (np.empty(r.shape, np.float32) for _ in range(3))
    bspline_model(r, val, gy, gx)
    coef = np.pad(s, LK_PAD, mode="edge")
    valid = np.pad(np.ones(s.shape, np.uint8), LK_PAD)
    taps = np.empty_like(valid)
    taps_valid(valid, taps)
    return Spline(val, gy, gx, np.ones(r.shape, np.uint8), coef, taps, np.ones(r.shape, np.uint8))


def refine(
    sp: Spline, r0: list[int], c0: list[int], size: int, start: tuple[float, float], window: Any = None
) -> np.ndarray:
    n = len(r0)
    return lk_nodes(
        sp,
        np.array(r0, np.int64),
        np.array(c0, np.int64),
        (size, size),
        (np.full(n, start[0]), np.full(n, start[1])),
        uniform(size) if window is None else window,
        GN,
        np.ones(n, bool),
    )


# ------------------------------------------------------------------------------------------ refinement
@pytest.mark.parametrize(("dy", "dx"), [(0.3, -0.45), (-0.81, 0.37), (1.6, 0.05)])
def test_refinement_finds_a_known_subpixel_shift(texture: np.ndarray, dy: float, dx: float) -> None:
    sp = spline_of(*shifted_crop(texture, 100, 200, 64, dy, dx))
    # 32 px chips, Gaussian weights (the matcher's defaults), from the nearest integer offset
    res = refine(sp, [16, 8, 20, 30], [16, 30, 20, 8], 32, (round(dy), round(dx)), gaussian(32))
    assert res.shape == (4, REFINE_COLS)
    assert (res[:, REASON] == OK).all()
    assert np.abs(res[:, DY] - dy).max() < 0.02
    assert np.abs(res[:, DX] - dx).max() < 0.02
    assert (res[:, SIGMA] > 0).all() and (res[:, SIGMA] < 0.05).all()  # noise-free: tiny predicted error


def test_refinement_flags_chips_outside_the_strip_and_masked_chips(texture: np.ndarray) -> None:
    sp = spline_of(*shifted_crop(texture, 100, 200, 64, 0.2, 0.2))
    res = refine(sp, [50, 20], [20, 20], 24, (0.0, 0.0))
    assert res[0, REASON] == OUTSIDE  # rows 50..73 of a 64-row strip
    assert res[1, REASON] == OK
    # a chip with 40 % valid pixels fails the valid-fraction test of nodes refined without a search
    valid = sp.valid.copy()
    valid[20:44, 20:40] = 0
    pixels = sp.pixels.copy()
    pixels[20:44, 20:40] = 0
    masked = sp._replace(valid=valid, pixels=pixels)
    out = lk_nodes(
        masked,
        np.array([20], np.int64),
        np.array([20], np.int64),
        (24, 24),
        (np.zeros(1), np.zeros(1)),
        uniform(24),
        GN._replace(min_frac=0.5, min_std=0.02),
        np.ones(1, bool),
    )
    assert out[0, REASON] == MASKED and np.isnan(out[0, DY])


def test_integer_search_finds_the_peak_and_its_subpixel_vertex(texture: np.ndarray) -> None:
    crop, sec = shifted_crop(texture, 40, 40, 96, -3.0, 4.0)
    lv = Level(normalised(crop), np.ones((96, 96), np.uint8), normalised(sec), np.ones((96, 96), np.uint8))
    zero = np.zeros(1, np.int64)
    found = search_nodes(
        lv,
        np.array([30]),
        np.array([30]),
        (24, 24),
        (zero, zero),
        (zero + 6, zero + 6),
        min_frac=0.5,
        todo=np.ones(1, bool),
        frac=True,
    )
    assert (found.dr[0], found.dc[0]) == (-3, 4)
    assert found.score[0] > 0.99 and not found.edge[0]
    assert abs(found.frac_r[0]) < 0.1 and abs(found.frac_c[0]) < 0.1
    # a window of ± 2 px cannot reach the peak: the best lies on its border
    near = search_nodes(
        lv,
        np.array([30]),
        np.array([30]),
        (24, 24),
        (zero, zero),
        (zero + 2, zero + 2),
        min_frac=0.5,
        todo=np.ones(1, bool),
        frac=False,
    )
    assert near.edge[0]


# ------------------------------------------------------------------------------------------ border chips
def test_a_chip_near_the_border_is_narrowed_to_fit_its_secondary_window(texture: np.ndarray) -> None:
    """Nested 32 px chips of 16 px nodes starting 5 px towards the right edge of a 96 px image: the
    node whose widened window would leave the secondary is narrowed (centred, same parity) to the
    largest width that fits, and that chip refines where the full one fails as OUTSIDE."""
    crop = texture[200:296, 300:396]
    sec = fourier_shift(crop, 0.0, 5.0)
    rs = np.arange(0, 96 - 16 + 1, 8, dtype=np.int64)
    job = MatchJob(
        ref=crop,
        sec=sec,
        ref_mask=None,
        sec_mask=None,
        nodata=None,
        fill_values=(),
        saturation=None,
        prefilter=None,
        chip=(16, 16),
        step=(8, 8),
        rs=rs,
        cs=rs.copy(),
        search=np.zeros((rs.size, rs.size), np.int64),
        strip_rows=96,
    )
    select = np.zeros((rs.size, rs.size), bool)
    select[5, :] = True  # node row centre 47.5: the full chip fits in rows
    start = (np.zeros(select.shape), np.full(select.shape, 5.0))
    shapes = dict(border_chips(job, (32, 32), select, start, 0))
    centres = rs + 7.5
    narrowed = {shape: centres[sel[5]] for shape, sel in shapes.items() if shape != (32, 32)}
    # column centre 79.5: 79.5 + 11.5 + 5 = 96 px, the image width; a 26 px chip would need 97
    assert narrowed == {(32, 24): np.array([79.5])}
    assert sum(int(s.sum()) for s in shapes.values()) == int(select.sum())
    # the kernel agrees: the full chip's window leaves the padded secondary, the narrowed one measures
    sp = spline_of(crop, sec)
    full = refine(sp, [32], [64], 32, (0.0, 5.0))
    narrow = refine(sp, [32], [68], 24, (0.0, 5.0))
    assert full[0, REASON] == OUTSIDE
    assert narrow[0, REASON] == OK
    assert abs(narrow[0, DX] - 5.0) < 0.05 and abs(narrow[0, DY]) < 0.05


# -------------------------------------------------------------------------------------------- two motions
def step_pair(texture: np.ndarray, boundary: int) -> tuple[np.ndarray, np.ndarray]:
    """A 96 px crop and its secondary with a vertical step at column ``boundary``: strike-slip, the left
    side moves +1 px along the rows, the right side -1 px (exact: the motion is parallel to the step)."""
    crop, left = shifted_crop(texture, 300, 100, 96, 1.0, 0.0)
    _, right = shifted_crop(texture, 300, 100, 96, -1.0, 0.0)
    return crop, np.where(np.arange(96)[None, :] < boundary, left, right)


@pytest.mark.parametrize(("boundary", "side"), [(52, "left"), (44, "right")])
def test_a_chip_straddling_a_step_gets_two_motions_on_the_right_sides(
    texture: np.ndarray, boundary: int, side: str
) -> None:
    crop, sec = step_pair(texture, boundary)
    sp = spline_of(crop, sec)
    # a 48 px chip centred on column 47.5, the step 4 px right (or left) of its centre; the one-motion
    # answer is the blend (0, 0); the candidate motions the two sides' (e.g. from the neighbours)
    one = np.zeros(1)
    t = two_motion_nodes(
        sp,
        np.array([24], np.int64),
        np.array([24], np.int64),
        (48, 48),
        (one, one),
        Motions(one + 1.0, one, one - 1.0, one),
        TwoMotionParams(2, 1.5, 0.8, 0.5, np.inf, np.inf),
    )[0]
    assert t[TWO_REASON] == OK
    assert t[TWO_RATIO] < 0.3  # the two motions explain the chip far better than one
    assert t[TWO_SHARPNESS] > 0.75  # a step, not a smooth gradient split in two
    # motion A (+1 px) on the left of the boundary, B (-1 px) on its right
    assert abs(t[TWO_A_DY] - 1.0) < 0.05 and abs(t[TWO_A_DX]) < 0.05
    assert abs(t[TWO_B_DY] + 1.0) < 0.05 and abs(t[TWO_B_DX]) < 0.05
    # the boundary is vertical (its normal along the columns), 4 px from the centre (between columns 51
    # and 52, or 43 and 44)
    assert abs(np.cos(t[TWO_THETA])) < 0.1
    assert abs(abs(t[TWO_CENTRE_DIST]) - 4.0) < 1.0
    # the node takes the motion of the side holding its centre
    expected = 1.0 if side == "left" else -1.0
    assert abs(t[TWO_DY] - expected) < 0.05 and abs(t[TWO_DX]) < 0.05


def test_no_two_motion_fit_on_a_rigid_shift(texture: np.ndarray) -> None:
    sp = spline_of(*shifted_crop(texture, 300, 100, 96, 0.4, -0.2))
    one = np.zeros(1)
    t = two_motion_nodes(
        sp,
        np.array([24], np.int64),
        np.array([24], np.int64),
        (48, 48),
        (one + 0.4, one - 0.2),
        Motions(one + 1.4, one - 0.2, one - 0.6, one - 0.2),
        TwoMotionParams(2, 1.5, 0.8, 0.5, np.inf, np.inf),
    )[0]
    # one motion explains the chip: no step (the fit stops early, no motion of its own)
    assert not t[TWO_RATIO] < 0.8
    assert np.isnan(t[TWO_DY])


def test_robust_fit_tells_whether_it_found_the_motion_of_the_centre(texture: np.ndarray) -> None:
    """A 32 px chip whose right 6 columns lie beyond a step (30 dB noise): started from either side's
    motion, the robust fit locks onto that motion; only the centre's motion keeps the central pixels as
    inliers (the matcher takes a robust answer only when its centre score is ≥ 0.5)."""
    crop, sec = step_pair(texture, 58)  # the step 10 px right of the chip's centre (column 47.5)
    rng = np.random.default_rng(0)
    sigma_n = crop.std() / 10 ** (30 / 20)
    sp = spline_of(crop + rng.normal(0, sigma_n, crop.shape), sec + rng.normal(0, sigma_n, sec.shape))
    res = lk_robust_nodes(
        sp,
        np.array([32, 32], np.int64),
        np.array([32, 32], np.int64),
        (32, 32),
        (np.array([0.9, -0.9]), np.zeros(2)),
        12,
        8,
    )
    assert (res[:, REASON] == OK).all()
    assert abs(res[0, DY] - 1.0) < 0.05 and abs(res[0, DX]) < 0.05  # the centre's side
    assert res[0, CENTRE_SCORE] > 0.9
    assert abs(res[1, DY] + 1.0) < 0.1  # the other side's 6 columns...
    assert res[1, CENTRE_SCORE] < 0.5  # ...which the centre does not follow


# ------------------------------------------------------------------------------------------ grid kernels
def test_window_medians_and_lattice_median_match_numpy() -> None:
    rng = np.random.default_rng(3)
    dy = rng.normal(size=(7, 9))
    dx = rng.normal(size=(7, 9))
    dy[2, 3] = np.nan
    my, _mx, count = neighbour_median_nodes(dy, dx, 1, 3, sorting_network(8))
    i, j = 3, 4
    window = np.delete(dy[i - 1 : i + 2, j - 1 : j + 2].ravel(), 4)
    assert count[i, j] == 7
    assert my[i, j] == pytest.approx(np.nanmedian(window))
    grid = np.pad(dy, 2, constant_values=np.nan)
    gx = np.pad(dx, 2, constant_values=np.nan)
    ly, _ = lattice_median(grid, gx, np.array([5]), np.array([6]), 2)
    pts = grid[[3, 3, 3, 5, 5, 5, 7, 7, 7], [4, 6, 8, 4, 6, 8, 4, 6, 8]]
    assert ly[0] == pytest.approx(np.nanmedian(pts))


# ----------------------------------------------------------------------------------------- image filters
def _filters(img: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Every image filter of ``geodeform.offsets._filters`` on one image and one mask."""
    out: dict[str, np.ndarray] = {}
    k = gaussian_kernel(1.5)
    out["fir"] = separable_fir(img, k, _DIFF3)
    out["coef"] = bspline_coefficients(img)
    out["gy"], out["gx"] = spline_gradients(img)
    val, gy, gx = (np.empty(img.shape, np.float32) for _ in range(3))
    bspline_model(img, val, gy, gx)
    out["val"], out["mgy"], out["mgx"] = val, gy, gx
    out["eroded"] = np.empty(valid.shape, bool)
    erode3(valid, out["eroded"])
    out["taps"] = np.empty(valid.shape, np.uint8)
    taps_valid(valid, out["taps"])
    return out


_DIFF3 = np.array([-0.5, 0.0, 0.5], np.float32)


def test_image_filters_match_scipy_and_do_not_depend_on_the_thread_count(texture: np.ndarray) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    img = normalised(texture[:150, :200])  # 200 columns: four 64-column blocks of the column prefilter
    valid = np.random.default_rng(5).random(img.shape) > 0.02
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _filters(img, valid)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _filters(img, valid)
    finally:
        numba.set_num_threads(old)
    for name in one:
        assert np.array_equal(one[name], two[name]), name  # bitwise: rows are independent
    f64 = img.astype(np.float64)
    k = gaussian_kernel(1.5).astype(np.float64)
    fir = ndi.correlate1d(
        ndi.correlate1d(f64, k, axis=0, mode="mirror"), _DIFF3.astype(np.float64), axis=1, mode="mirror"
    )
    assert np.abs(one["fir"] - fir).max() < 1e-5
    coef = ndi.spline_filter(f64, order=3, mode="mirror")
    assert np.abs(one["coef"] - coef).max() < 1e-4
    # the spline whose coefficients are ``coef`` passes through the pixels
    smooth, diff = np.array([1.0, 4.0, 1.0]) / 6.0, _DIFF3.astype(np.float64)
    assert np.abs(ndi.correlate(coef, np.outer(smooth, smooth), mode="mirror") - f64).max() < 1e-4
    # bspline_model: the pixels as coefficients; spline_gradients: the interpolant's derivatives
    for name, kernel in (
        ("val", np.outer(smooth, smooth)),
        ("mgy", np.outer(diff, smooth)),
        ("mgx", np.outer(smooth, diff)),
    ):
        assert np.abs(one[name] - ndi.correlate(f64, kernel, mode="mirror")).max() < 1e-5, name
    for name, kernel in (("gy", np.outer(diff, smooth)), ("gx", np.outer(smooth, diff))):
        assert np.abs(one[name] - ndi.correlate(coef, kernel, mode="mirror")).max() < 1e-4, name
    assert np.array_equal(one["eroded"], ndi.binary_erosion(valid, np.ones((3, 3)), border_value=1))
    blocks = np.lib.stride_tricks.sliding_window_view(valid, (4, 4)).all(axis=(2, 3))
    taps = np.zeros(valid.shape, np.uint8)
    taps[: blocks.shape[0], : blocks.shape[1]] = blocks
    assert np.array_equal(one["taps"], taps)
