"""Adaptive local-plane smoothing of offset fields (geodeform.offsets._post.adaptive_plane) and its
effect inside geodeform.offsets.match: accuracy against known truth, steps and outliers kept."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from _imposed import fourier_shift, noisy
from geodeform.offsets import match
from geodeform.offsets._post import SIGMA_FLOOR, _independent_fraction, adaptive_plane, adaptive_poly

STEP, CHIP = (16, 16), (32, 32)


def _grid(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")


def _smooth(dy: np.ndarray, dx: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, ...]:
    return adaptive_plane(dy, dx, sigma, step=STEP, chip=CHIP)


def _chip_noise(rng: np.random.Generator, shape: tuple[int, int], s: float) -> tuple[np.ndarray, ...]:
    """Errors of chips twice the step, per axis (vector 1-σ = s): each chip averages the noise of its
    2 × 2 quarter blocks, which it shares with its neighbours, as overlapping chips share pixels."""
    out = []
    for _ in range(2):
        blocks = rng.normal(0, s / np.sqrt(2) * 2, (shape[0] + 1, shape[1] + 1))
        out.append(0.25 * (blocks[:-1, :-1] + blocks[1:, :-1] + blocks[:-1, 1:] + blocks[1:, 1:]))
    return out[0], out[1]


def test_noise_on_a_smooth_gradient_drops_without_bias() -> None:
    rng = np.random.default_rng(0)
    ii, jj = _grid()
    ty, tx = 0.02 * ii - 0.5, 0.05 * jj + 0.01 * ii  # linear field: a plane follows it exactly
    s = 0.1
    ny, nx = _chip_noise(rng, ty.shape, s)
    dy, dx = ty + ny, tx + nx
    sy, sx, sig, used = _smooth(dy, dx, np.full(ty.shape, s))
    before = np.hypot(dy - ty, dx - tx)
    after = np.hypot(sy - ty, sx - tx)
    inner = (slice(3, -3), slice(3, -3))
    assert np.median(after[inner]) < 0.4 * np.median(before[inner])
    # no bias from the gradient: the smoothed errors average to what the raw errors average to
    assert abs(np.mean((sy - dy)[inner])) < 0.002 and abs(np.mean((sx - dx)[inner])) < 0.002
    assert (used[inner] >= 2).mean() > 0.8
    # the predicted error of the fit shrinks with it and stays of the order of the true error
    assert np.median(sig[inner]) < 0.5 * s
    assert 0.4 < np.median(after[inner] / sig[inner]) < 2.0


def test_a_step_keeps_both_sides_and_an_outlier_stays_alone() -> None:
    rng = np.random.default_rng(1)
    _, jj = _grid()
    tx = np.where(jj < 20, -1.0, 1.0)  # 2 px strike-slip step between columns 19 and 20
    ty = np.zeros_like(tx)
    s = 0.05
    ny, nx = _chip_noise(rng, ty.shape, s)
    dy, dx = ty + ny, tx + nx
    dx[10, 10] += 1.5  # a blunder far from the step
    sy, sx, _, used = _smooth(dy, dx, np.full(ty.shape, s))
    err = np.hypot(sy - ty, sx - tx)
    next_to_step = (jj == 19) | (jj == 20)
    # nodes beside the step are not blended with the other side (a blend would be ~1 px off)
    assert err[next_to_step].max() < 4 * s
    # the blunder is neither spread onto its neighbours nor hidden: it keeps its own value
    assert used[10, 10] == 0 and abs(sx[10, 10] - dx[10, 10]) < 1e-9
    around = np.zeros(tx.shape, bool)
    around[8:13, 8:13] = True
    around[10, 10] = False
    assert err[around].max() < 4 * s


def test_nan_nodes_stay_nan_and_carry_no_weight() -> None:
    ii, _ = _grid(12)
    dy = np.zeros_like(ii)
    dx = np.full_like(ii, 0.5)
    dy[4:7, 4:7] = np.nan
    dx[4:7, 4:7] = np.nan
    sy, sx, sig, _ = _smooth(dy, dx, np.full(ii.shape, 0.1))
    assert np.isnan(sy[4:7, 4:7]).all() and np.isnan(sig[4:7, 4:7]).all()
    assert np.allclose(sx[np.isfinite(dx)], 0.5) and np.isfinite(sig[np.isfinite(dx)]).all()


@pytest.mark.parametrize("snr", [10.0, 20.0])
def test_match_on_noisy_real_texture_reaches_three_hundredths_of_a_pixel(
    texture: np.ndarray,
    snr: float,
) -> None:
    dy, dx = -0.81, 0.37
    ref = noisy(texture, snr, 21)
    sec = noisy(fourier_shift(texture, dy, dx), snr, 22)
    raw = match(ref, sec, chip_size=32, step=16, search_range=5, smoothing=0)
    f = match(ref, sec, chip_size=32, step=16, search_range=5)
    e_raw = np.hypot(raw.dx - dx, raw.dy - dy)
    e = np.hypot(f.dx - dx, f.dy - dy)
    assert np.nanmedian(e) < 0.03
    assert np.nanmedian(e) < 0.6 * np.nanmedian(e_raw)
    assert f.coverage >= raw.coverage
    ok = np.isfinite(e)
    assert 0.4 < float(np.median(e[ok] / f.error[ok])) < 1.6


@pytest.mark.parametrize(
    ("model", "vs_plane"),
    [("quadratic", 2.0), ("plane-sided", 1.3), ("plane-split", 1.3), ("quadratic-sided", 2.0)],
)
def test_other_smoothing_models_in_match_are_accurate_and_calibrated(
    texture: np.ndarray, model: str, vs_plane: float
) -> None:
    """``match(..., smoothing_model=...)`` on a real texture with a known shift at 20 dB: better than no
    smoothing, within ``vs_plane`` of the plane smoothing's median error (a constant field is where a
    quadratic's extra noise shows most: measured 1.7-1.8×, the one-sided planes 1.14×), and its
    predicted error of the order of the true one."""
    dy, dx = -0.81, 0.37
    ref = noisy(texture, 20.0, 21)
    sec = noisy(fourier_shift(texture, dy, dx), 20.0, 22)
    raw = match(ref, sec, chip_size=32, step=16, search_range=5, smoothing=0)
    plane = match(ref, sec, chip_size=32, step=16, search_range=5)
    f = match(ref, sec, chip_size=32, step=16, search_range=5, smoothing_model=model)
    e = np.hypot(f.dx - dx, f.dy - dy)
    e_plane = np.hypot(plane.dx - dx, plane.dy - dy)
    assert np.nanmedian(e) < vs_plane * np.nanmedian(e_plane)
    assert np.nanmedian(e) < 0.8 * np.nanmedian(np.hypot(raw.dx - dx, raw.dy - dy))
    assert f.coverage == plane.coverage and f.params["smoothing_model"] == model
    ok = np.isfinite(e)
    assert 0.4 < float(np.median(e[ok] / f.error[ok])) < 1.6


# ----------------------------------------------------------------------------- quadratic / one-sided windows
def test_poly_of_degree_one_is_the_plane_smoothing() -> None:
    rng = np.random.default_rng(3)
    ii, jj = _grid(30)
    ny, nx = _chip_noise(rng, ii.shape, 0.08)
    dy, dx = 0.01 * ii + ny, np.where(jj < 15, 0.0, 0.6) + nx
    dy[5:8, 20:24] = np.nan
    sigma = np.full(ii.shape, 0.08)
    a = adaptive_plane(dy, dx, sigma, step=STEP, chip=CHIP)
    b = adaptive_poly(dy, dx, sigma, step=STEP, chip=CHIP, degree=1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True)


def _margin_field(n: int = 40, g: float = 0.15) -> np.ndarray:
    """Still ground (rows < 20), then a convex ice profile rising along the rows from the margin (a kink
    between rows 19 and 20, then the lower flank of a Gaussian), constant along the columns: px."""
    ii, _ = _grid(n)
    u = np.maximum(ii - 19.0, 0.0)
    return g * 12.0 * (np.exp(-0.5 * ((12.0 - u) / 6.0) ** 2) - np.exp(-2.0)) * (u > 0)


def test_quadratic_sided_windows_are_not_biased_on_the_ice_side_of_a_margin() -> None:
    """Averaged over noise realisations (as a series of pairs averages them), the plane fit lifts the
    ice's convex flank and the first row of still ground along the flow; the quadratic with one-sided
    windows removes the ice side's bias and halves the still row's (a window that holds the node and no
    ice is one of the five it fuses)."""
    truth = _margin_field()
    rows = np.arange(15, 27)  # still ground to row 19, ice from row 20
    bias = {m: np.zeros(rows.size) for m in ("plane", "quadratic-sided")}
    rng = np.random.default_rng(5)
    trials = 30
    for _ in range(trials):
        ny, nx = _chip_noise(rng, truth.shape, 0.05)
        sigma = np.full(truth.shape, 0.05)
        for m, kw in (("plane", {"degree": 1}), ("quadratic-sided", {"degree": 2, "sided": True})):
            f = adaptive_poly(ny, truth + nx, sigma, step=STEP, chip=CHIP, **kw)
            bias[m] += np.nanmean((f.dx - truth)[rows, 4:-4], axis=1) / trials
    ice = (rows >= 20) & (rows <= 24)
    first_still = rows == 19
    # the plane's bias is well above the average's noise (about 0.002 px) on both sides
    assert bias["plane"][ice].mean() > 0.008 and bias["plane"][first_still][0] > 0.015
    assert np.abs(bias["quadratic-sided"][ice]).max() < 0.3 * bias["plane"][ice].mean()
    assert abs(bias["quadratic-sided"][first_still][0]) < 0.7 * bias["plane"][first_still][0]
    # and far from the margin neither is biased
    assert np.abs(bias["quadratic-sided"][:2]).max() < 0.003 and np.abs(bias["plane"][:2]).max() < 0.003


def test_split_windows_keep_the_side_of_a_margin_without_ice() -> None:
    """With the slope test of opposite half-windows (``kink``), a node whose window reaches the margin
    keeps the half-window on its own side: averaged over noise realisations, the first still row and the
    ice's flank lose most of the plane's bias."""
    truth = _margin_field()
    rows = np.arange(17, 25)  # still ground to row 19, ice from row 20
    bias = {m: np.zeros(rows.size) for m in ("plane", "split")}
    rng = np.random.default_rng(6)
    trials = 30
    for _ in range(trials):
        ny, nx = _chip_noise(rng, truth.shape, 0.05)
        sigma = np.full(truth.shape, 0.05)
        for m, kw in (("plane", {"degree": 1}), ("split", {"degree": 1, "sided": True, "kink": 3.0})):
            f = adaptive_poly(ny, truth + nx, sigma, step=STEP, chip=CHIP, **kw)
            bias[m] += np.nanmean((f.dx - truth)[rows, 4:-4], axis=1) / trials
    first_still = rows == 19
    assert bias["plane"][first_still][0] > 0.015
    assert abs(bias["split"][first_still][0]) < 0.3 * bias["plane"][first_still][0]
    assert np.abs(bias["split"]).mean() < 0.4 * np.abs(bias["plane"]).mean()


def test_quadratic_and_sided_windows_follow_a_curved_field_and_report_their_noise() -> None:
    """Noise-free curvature: the quadratic's centre value is exact where the plane's is biased; with
    independent chips (step = chip) the predicted error of every model is its true scatter."""
    ii, jj = _grid(30)
    ty, tx = 0.004 * (ii - 15.0) ** 2, 0.003 * (jj - 12.0) ** 2 - 0.002 * (ii - 15.0) * (jj - 12.0)
    flat = np.full(ii.shape, 0.05)
    q = adaptive_poly(ty, tx, flat, step=CHIP, chip=CHIP, degree=2)
    p = adaptive_plane(ty, tx, flat, step=CHIP, chip=CHIP)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(q.dy - ty)[inner].max() < 1e-9 and np.abs(q.dx - tx)[inner].max() < 1e-9
    assert np.abs(p.dy - ty)[inner].max() > 0.003
    # noise on a linear field (which every model follows): the predicted error of each model, the fused
    # shapes' included, is its true scatter (the plane's own ratio here is 1.1)
    ly, lx = 0.01 * ii - 0.2, 0.02 * jj
    rng = np.random.default_rng(7)
    for kw in ({"degree": 2}, {"degree": 2, "sided": True}, {"degree": 1, "sided": True, "kink": 3.0}):
        ratio = []
        for _ in range(10):
            ny, nx = rng.normal(0, 0.05 / np.sqrt(2), (2, *ii.shape))
            f = adaptive_poly(ly + ny, lx + nx, flat, step=CHIP, chip=CHIP, **kw)
            ratio.append(np.hypot(f.dy - ly, f.dx - lx)[inner] / f.sigma[inner])
        rms = float(np.sqrt(np.mean(np.square(ratio))))
        assert 0.8 < rms < 1.25, (kw, rms)


# ----------------------------------------------------------------------------- the kernel against brute force
def _brute_cells(valid: np.ndarray, i: int, j: int, d: int, r: int) -> tuple[list[tuple[int, int]], int]:
    """The valid nodes of window shape d at radius r around (i, j), and its cell count (the grid's outside
    included)."""
    nr, nc = valid.shape
    rows = range(i - (0 if d == 2 else r), i + (0 if d == 1 else r) + 1)
    cols = range(j - (0 if d == 4 else r), j + (0 if d == 3 else r) + 1)
    inside = [(a, b) for a in rows for b in cols if 0 <= a < nr and 0 <= b < nc and valid[a, b]]
    return inside, len(rows) * len(cols)


def _brute_fit(f: tuple[np.ndarray, ...], i: int, j: int, d: int, r: int, npar: int, floor: float) -> Any:
    """Weighted least squares of one window by numpy (None: too few nodes or a singular fit): centre
    values, their variance, χ² from the residuals, slopes along the shape's direction and their variance,
    and the fit's weight per node (its equivalent kernel)."""
    dy, dx, sigma, valid = f
    basis = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)][:npar]
    inside, count = _brute_cells(valid, i, j, d, r)
    n = len(inside)
    if n < max(npar + 3, count // 2):
        return None
    a = np.array([[(p - i) ** u * (q - j) ** v for u, v in basis] for p, q in inside], float)
    w = np.array([1.0 / max(sigma[p, q], floor) ** 2 for p, q in inside])
    m = a.T @ (w[:, None] * a)
    try:
        chol = np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return None
    if not (np.diag(chol) ** 2 > 1e-9 * np.diag(m)).all():
        return None
    inv = np.linalg.inv(m)
    vals = np.array([[dy[p, q], dx[p, q]] for p, q in inside])
    beta = np.linalg.solve(m, a.T @ (w[:, None] * vals))
    chi2 = 2.0 * float(np.sum(w[:, None] * (vals - a @ beta) ** 2)) / max(2.0 * n - 2.0 * npar, 1.0)
    axis = 1 if d < 3 else 2
    z = inv[:, 0]
    kernel = {pq: wk * float(ak @ z) for pq, wk, ak in zip(inside, w, a, strict=True)}
    return beta[0], 0.5 * inv[0, 0], chi2, beta[axis], 0.5 * inv[axis, axis], kernel


def _brute_poly(
    dy: np.ndarray,
    dx: np.ndarray,
    sigma: np.ndarray,
    radii: tuple[int, ...],
    inflation: np.ndarray,
    **kw: Any,
) -> np.ndarray:
    """The adaptive polynomial smoothing by brute force: every window's weighted least-squares fit from its
    own nodes (numpy's solver, residuals summed directly), the window choice and fusion as documented,
    the fused error from the fused filter's per-node weights."""
    gamma, max_chi2, floor, kink, sided = kw["gamma"], kw["max_chi2"], kw["floor"], kw["kink"], kw["sided"]
    npar = 3 if kw["degree"] == 1 else 6
    nr, nc = dy.shape
    valid = np.isfinite(dy) & np.isfinite(dx) & np.isfinite(sigma)
    out = np.full((4, nr, nc), np.nan)

    for i in range(nr):
        for j in range(nc):
            if not valid[i, j]:
                continue
            own_v = 0.5 * max(sigma[i, j], floor) ** 2
            est = []  # per shape: value y, x, variance, radius, χ², slopes, their variance, kernel, inflation
            for d in range(5 if sided else 1):
                best = (dy[i, j], dx[i, j], own_v, 0, 0.0, (0.0, 0.0), 0.0, {(i, j): None}, 1.0)
                half = gamma * np.sqrt(own_v)
                box = [dy[i, j] - half, dy[i, j] + half, dx[i, j] - half, dx[i, j] + half]
                for k, r in enumerate(radii):
                    f = _brute_fit((dy, dx, sigma, valid), i, j, d, r, npar, floor)
                    if f is None:
                        if npar > 3 and d > 0 and r < 2:
                            continue
                        break
                    infl = inflation[0 if d == 0 else 1, k]
                    v = f[1] * infl
                    half = gamma * np.sqrt(v)
                    new = [max(box[0], f[0][0] - half), min(box[1], f[0][0] + half)]
                    new += [max(box[2], f[0][1] - half), min(box[3], f[0][1] + half)]
                    if v >= best[2]:
                        if npar > 3:
                            continue
                        break
                    if new[0] > new[1] or new[2] > new[3] or f[2] > max_chi2:
                        break
                    box = new
                    best = (f[0][0], f[0][1], v, r, f[2], tuple(f[3]), f[4] * infl, f[5], infl)
                est.append(best)
            wts = np.array([1.0 / e[2] for e in est])
            share = wts / wts.sum()
            out[0, i, j] = float(share @ [e[0] for e in est])
            out[1, i, j] = float(share @ [e[1] for e in est])
            out[3, i, j] = max(e[3] for e in est)
            pick, low = -1, np.inf
            for d1 in (1, 3) if sided and kink > 0 else ():
                e1, e2 = est[d1], est[d1 + 1]
                if e1[3] < 1 or e2[3] < 1:
                    continue
                t = max(abs(e1[5][0] - e2[5][0]), abs(e1[5][1] - e2[5][1])) / np.sqrt(e1[6] + e2[6])
                if t > kink:
                    for d in (d1, d1 + 1):
                        if est[d][4] < low:
                            low, pick = est[d][4], d
            if pick >= 0:
                out[:, i, j] = est[pick][0], est[pick][1], np.sqrt(2 * est[pick][2]), est[pick][3]
                continue
            if not sided:
                out[2, i, j] = np.sqrt(2.0 / wts.sum())
                continue
            g = {}  # the fused filter's weight per node
            for e, s in zip(est, share, strict=True):
                for pq, kw in e[7].items():
                    g[pq] = g.get(pq, 0.0) + s * (1.0 if kw is None else kw)
            var = sum(gk * gk / max(sigma[pq], floor) ** -2 for pq, gk in g.items())
            f = sum(s * (e[8] if e[3] > 0 else 1.0) for e, s in zip(est, share, strict=True))
            out[2, i, j] = np.sqrt(var * f)
    return out


def _test_field(shape: tuple[int, int], level: float, noise: float, seed: int) -> tuple[np.ndarray, ...]:
    """A curved field with a step, noise of varying σ, NaN holes (in one component, in both, in σ) and a
    few σ below the floor."""
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    sigma = noise * np.exp(0.4 * rng.normal(size=shape))
    g = noise / 0.08  # the field's shape in units of its noise
    dy = level + g * (0.02 * ii - 0.01 * jj + 0.004 * (ii - 6.0) ** 2) + 0.5 * sigma * rng.normal(size=shape)
    dx = -level + g * (0.05 * jj + np.where(jj > 9, 0.4, 0.0)) + 0.5 * sigma * rng.normal(size=shape)
    dy[rng.random(shape) < 0.05] = np.nan
    dx[rng.random(shape) < 0.02] = np.nan
    sigma[rng.random(shape) < 0.02] = np.nan
    sigma[rng.random(shape) < 0.03] = 1e-5
    return dy, dx, sigma


@pytest.mark.parametrize(
    "kw",
    [
        {"degree": 1},
        {"degree": 2},
        {"degree": 1, "sided": True},
        {"degree": 2, "sided": True},
        {"degree": 1, "sided": True, "kink": 3.0},
        {"degree": 2, "sided": True, "kink": 3.0},
    ],
)
@pytest.mark.parametrize(("level", "noise"), [(0.3, 0.08), (1e3, 1e-3)])
def test_window_fits_equal_brute_force_least_squares(kw: dict, level: float, noise: float) -> None:
    """The kernel (window moments from column sums, LDLᵀ solves, the fused error from the intersections'
    moments) equals every window's least-squares fit done by numpy, with its window choice, fusion and
    fused-filter error, on a field with NaN holes and borders; also on offsets of 1000 px with 0.001 px
    noise, where summing w·v² and subtracting the fit would lose the χ² (the kernel centres the values)."""
    dy, dx, sigma = _test_field((13, 17), level, noise, 8)
    radii = (1, 2, 3)
    f = adaptive_poly(dy, dx, sigma, step=STEP, chip=CHIP, radii=radii, **kw)
    inflation = np.array(
        [
            [1.0 / _independent_fraction(r, STEP, CHIP) for r in radii],
            [1.0 / _independent_fraction(r, STEP, CHIP, spans=(r + 1, 2 * r + 1)) for r in radii],
        ]
    )
    opts = {"gamma": 2.0, "max_chi2": 1.0, "floor": SIGMA_FLOOR, "sided": False, "kink": 0.0} | kw
    ref = _brute_poly(dy, dx, sigma, radii, inflation, **opts)
    assert (np.nan_to_num(ref[3]) > 0).mean() > 0.15  # windows grow: fits are compared, not nodes alone
    for k in range(3):
        np.testing.assert_allclose(f[k], ref[k], rtol=1e-9, atol=1e-12 * max(level, 1.0), equal_nan=True)
    np.testing.assert_array_equal(f.radius, np.nan_to_num(ref[3]).astype(int))


# ----------------------------------------------------------------------------- neighbour statistics
def _window_stack(a: np.ndarray, r: int, self_too: bool) -> np.ndarray:
    pad = np.pad(a, r, constant_values=np.nan)
    h, w = a.shape
    views = [
        pad[r + i : r + i + h, r + j : r + j + w]
        for i in range(-r, r + 1)
        for j in range(-r, r + 1)
        if self_too or (i, j) != (0, 0)
    ]
    return np.stack(views)


@pytest.mark.parametrize("radius", [1, 2, 3, 4])
def test_neighbour_statistics_match_numpy(radius: int) -> None:
    """The numba window medians, neighbour medians and agreement fractions equal numpy's nan-aware
    versions, with NaN holes, ties (rounded values) and grid edges."""
    from geodeform.offsets._post import nanmedian_filter, neighbour_agreement, neighbour_median

    rng = np.random.default_rng(radius)
    for trial in range(4):
        dy = rng.normal(size=(23, 31))
        dx = rng.normal(size=(23, 31))
        hole = rng.random(dy.shape) < 0.3 * trial / 3
        dy[hole] = np.nan
        dx[hole] = np.nan
        dx[rng.random(dy.shape) < 0.05] = np.nan  # some nodes valid in one component only
        if trial % 2:
            dy, dx = np.round(dy, 1), np.round(dx, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
            full = np.nanmedian(_window_stack(dy, radius, True), axis=0)
        np.testing.assert_allclose(nanmedian_filter(dy, radius), full, equal_nan=True)
        sy, sx = _window_stack(dy, radius, False), _window_stack(dx, radius, False)
        count = np.isfinite(sy).sum(axis=0)
        my, mx, n = neighbour_median(dy, dx, radius=radius, min_count=3)
        np.testing.assert_array_equal(n, count)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref_y = np.where(count >= 3, np.nanmedian(sy, axis=0), np.nan)
            ref_x = np.where(count >= 3, np.nanmedian(sx, axis=0), np.nan)
        np.testing.assert_allclose(my, ref_y, equal_nan=True)
        np.testing.assert_allclose(mx, ref_x, equal_nan=True)
        valid = np.isfinite(sy) & np.isfinite(sx)
        with np.errstate(invalid="ignore"):
            agree = (np.hypot(sy - dy, sx - dx) <= 0.8) & valid
        vcount = valid.sum(axis=0)
        frac, c2 = neighbour_agreement(dy, dx, radius=radius, tol=0.8)
        np.testing.assert_array_equal(c2, vcount)
        np.testing.assert_allclose(frac, np.where(vcount > 0, agree.sum(axis=0) / np.maximum(vcount, 1), 0.0))


@pytest.mark.parametrize("model", ["plane", "quadratic-sided"])
def test_the_field_carries_each_chips_own_value_and_the_smoothings_gain(
    texture: np.ndarray, model: str
) -> None:
    """Known truth, a constant shift at 15 dB, step 16: ``dx_unsmoothed``, ``dy_unsmoothed`` and
    ``error_unsmoothed`` are what ``match`` gives without smoothing (each node's own chip), and the
    smoothing gain (``error / error_unsmoothed``) predicts how much the smoothing shrinks the true error:
    its RMS ratio is within 25 % of the ratio of the true RMS errors, smoothed over unsmoothed."""
    ref = noisy(texture[:320, :320], 15, 1)
    sec = noisy(fourier_shift(texture[:320, :320], 0.6, 0.3), 15, 2)
    f = match(ref, sec, chip_size=32, step=16, search_range=3, smoothing_model=model)
    raw = match(ref, sec, chip_size=32, step=16, search_range=3, smoothing=0)
    np.testing.assert_allclose(f.dx_unsmoothed, raw.dx, atol=1e-6)  # NaN where the node has no value
    np.testing.assert_allclose(f.dy_unsmoothed, raw.dy, atol=1e-6)
    np.testing.assert_array_equal(f.error_unsmoothed, raw.error)
    ok = f.valid & raw.valid
    assert ok.mean() > 0.95
    true = np.sqrt(np.mean(np.hypot(f.dx - 0.3, f.dy - 0.6)[ok] ** 2))
    own = np.sqrt(np.mean(np.hypot(raw.dx - 0.3, raw.dy - 0.6)[ok] ** 2))
    assert f.smoothing_gain is not None and f.error is not None and f.error_unsmoothed is not None
    predicted = np.sqrt(np.mean(f.error[ok] ** 2) / np.mean(f.error_unsmoothed[ok] ** 2))
    assert true / own < 0.7  # the smoothing does shrink the error here
    assert abs(predicted / (true / own) - 1) < 0.25, (predicted, true / own)
    np.testing.assert_allclose(f.smoothing_gain[ok], (f.error / f.error_unsmoothed)[ok])
    # without smoothing the values are their chips' own: no change stored, gain 1
    assert raw.smoothing_dx is None and raw.error_unsmoothed is None
    assert raw.smoothing_gain is not None and np.all(raw.smoothing_gain[raw.valid] == 1)
    np.testing.assert_array_equal(raw.dx_unsmoothed, raw.dx)
