"""Adaptive local-polynomial smoothing of node fields: planes or quadratics, centred or one-sided windows.

The kernel behind :func:`geodeform.offsets._post.adaptive_poly`. For every node and every window shape
(the centred square, and with ``sided`` the four half-windows that hold the node on one edge: rows
``-r..0``, ``0..r``, columns ``-r..0``, ``0..r``), it grows the window radius by radius, fits a polynomial
of ``degree`` 1 (plane) or 2 (full quadratic) by weighted least squares and keeps the largest radius that
the intersection-of-confidence-intervals rule and a χ² test accept (Katkovnik, Egiazarian & Astola,
*Local Approximation Techniques in Signal and Image Processing*, 2006: LPA-ICI; anisotropic version with
one estimate per window shape, fused by inverse variance).

Why a quadratic: a plane fitted across a change of gradient (a glacier's margin, where still ground meets
the ice's slope) or over a curved profile is biased by the curvature times the window's second moment;
the bias is below one pair's noise, so no window test sees it, but every pair of a series shares it in
proportion to its displacement (``docs/benchmarks.md``, "The smoothing's borrowing at the ice margin").
A quadratic's centre value has no such bias; it is noisier at the same radius, which the larger windows
the ICI then accepts make up for in part.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from geodeform.compiled import run_chunks
from geodeform.offsets._grid import PlaneFit

__all__ = ["adaptive_poly_nodes"]

_MAX_PAR = 6
_MOMENTS = 2 * _MAX_PAR + 2  # per node: the normal matrix is built from these basis products


@nb.njit(cache=True, nogil=True)
def _basis(a, b, phi):
    phi[0] = 1.0
    phi[1] = a
    phi[2] = b
    phi[3] = a * a
    phi[4] = a * b
    phi[5] = b * b


@nb.njit(cache=True, nogil=True)
def _fit(m, rhs, npar, n, chol, sol, out, coef):
    """Weighted least squares from the normal matrix ``m`` and right-hand sides ``rhs`` (columns y, x;
    ``rhs[npar, :]`` holds Σw(y² + x²)): writes (centre dy, centre dx, per-component variance of the
    centre value up to the caller's factor, χ² per degree of freedom) into ``out``. False when the
    window does not determine the polynomial. Also: ``coef`` (the fits' coefficients, rows y and x) and
    ``out[4]``, ``out[5]`` (the per-component variances of the row and column slopes, same factor)."""
    for i in range(npar):
        for j in range(i + 1):
            s = m[i, j]
            for k in range(j):
                s -= chol[i, k] * chol[j, k]
            if i == j:
                if not s > 1e-9 * m[i, i]:
                    return False
                chol[i, i] = math.sqrt(s)
            else:
                chol[i, j] = s / chol[j, j]
    for e in (1, 2):  # [M⁻¹]_ee = |L⁻¹ e_e|²
        acc = 0.0
        for i in range(npar):
            s = 1.0 if i == e else 0.0
            for k in range(i):
                s -= chol[i, k] * sol[k]
            sol[i] = s / chol[i, i]
            acc += sol[i] * sol[i]
        out[3 + e] = 0.5 * acc
    fitted = 0.0
    for c in range(3):  # y, x, then e0 (for the variance of the centre value; ``sol`` keeps M⁻¹ e0)
        for i in range(npar):
            s = rhs[i, c] if c < 2 else (1.0 if i == 0 else 0.0)
            for k in range(i):
                s -= chol[i, k] * sol[k]
            sol[i] = s / chol[i, i]
        for i in range(npar - 1, -1, -1):
            s = sol[i]
            for k in range(i + 1, npar):
                s -= chol[k, i] * sol[k]
            sol[i] = s / chol[i, i]
        if c < 2:
            out[c] = sol[0]
            for i in range(npar):
                fitted += sol[i] * rhs[i, c]
                coef[c, i] = sol[i]
        else:
            out[2] = 0.5 * sol[0]
    out[3] = 2.0 * (rhs[npar, 0] - fitted) / max(2.0 * n - 2.0 * npar, 1.0)
    return True


@nb.njit(cache=True, nogil=True)
def _poly_rows(lo, hi, dy, dx, sigma, radii, inflation, gamma, max_chi2, floor, npar, shapes, kink, out):
    """Rows ``lo <= i < hi`` of :func:`adaptive_poly_nodes` (a chunk of ``run_chunks``)."""
    nr, nc = dy.shape
    m = np.empty((_MAX_PAR, _MAX_PAR))
    rhs = np.empty((_MAX_PAR + 1, 2))
    chol = np.empty((_MAX_PAR, _MAX_PAR))
    sol = np.empty(_MAX_PAR)
    phi = np.empty(_MAX_PAR)
    fit = np.empty(6)
    coef = np.empty((2, _MAX_PAR))
    est = np.zeros((5, 7))  # per shape: value y, x, variance, χ², slope y, slope x, slope variance
    z = np.zeros((5, _MAX_PAR))  # per shape: (M⁻¹ e0) of the window kept, for its equivalent kernel
    rad = np.zeros(5, np.int64)
    wts = np.zeros(5)
    infl = np.zeros(5)
    for i in range(lo, hi):
        for j in range(nc):
            if not (np.isfinite(dy[i, j]) and np.isfinite(dx[i, j]) and np.isfinite(sigma[i, j])):
                continue
            own_v = 0.5 * max(sigma[i, j], floor) ** 2
            sw = 0.0
            swy = 0.0
            swx = 0.0
            used = 0
            for d in range(shapes):
                best_y, best_x, best_v = dy[i, j], dx[i, j], own_v
                half = gamma * math.sqrt(best_v)
                lo_y, hi_y, lo_x, hi_x = best_y - half, best_y + half, best_x - half, best_x + half
                r_d = 0
                est[d, 3:] = 0.0
                for k in range(radii.size):
                    r = radii[k]
                    r0 = 0 if d == 2 else -r
                    r1 = 0 if d == 1 else r
                    c0 = 0 if d == 4 else -r
                    c1 = 0 if d == 3 else r
                    m[:, :] = 0.0
                    rhs[:, :] = 0.0
                    n = 0
                    for a in range(r0, r1 + 1):
                        ii = i + a
                        if ii < 0 or ii >= nr:
                            continue
                        for b in range(c0, c1 + 1):
                            jj = j + b
                            if jj < 0 or jj >= nc:
                                continue
                            y = dy[ii, jj]
                            x = dx[ii, jj]
                            sg = sigma[ii, jj]
                            if not (np.isfinite(y) and np.isfinite(x) and np.isfinite(sg)):
                                continue
                            wt = 1.0 / max(sg, floor) ** 2
                            _basis(float(a), float(b), phi)
                            for p in range(npar):
                                wp = wt * phi[p]
                                for q in range(p + 1):
                                    m[p, q] += wp * phi[q]
                                rhs[p, 0] += wp * y
                                rhs[p, 1] += wp * x
                            rhs[npar, 0] += wt * (y * y + x * x)
                            n += 1
                    cells = (r1 - r0 + 1) * (c1 - c0 + 1)
                    if n < max(npar + 3, cells // 2) or not _fit(m, rhs, npar, n, chol, sol, fit, coef):
                        if npar > 3 and d > 0 and r < 2:
                            continue  # a one-sided quadratic needs three rows / columns
                        break
                    v = fit[2] * inflation[0 if d == 0 else 1, k]
                    half = gamma * math.sqrt(v)
                    ly = max(lo_y, fit[0] - half)
                    hy = min(hi_y, fit[0] + half)
                    lx = max(lo_x, fit[1] - half)
                    hx = min(hi_x, fit[1] + half)
                    if v >= best_v:
                        if npar > 3:
                            continue  # a quadratic's smallest windows are noisier than the node itself
                        break
                    if ly > hy or lx > hx or fit[3] > max_chi2:
                        break
                    lo_y, hi_y, lo_x, hi_x = ly, hy, lx, hx
                    best_y, best_x, best_v = fit[0], fit[1], v
                    r_d = r
                    z[d, :npar] = sol[:npar]
                    infl[d] = inflation[0 if d == 0 else 1, k]
                    axis = 1 if d < 3 else 2  # the half-window's own direction
                    est[d, 3] = fit[3]
                    est[d, 4] = coef[0, axis]
                    est[d, 5] = coef[1, axis]
                    est[d, 6] = fit[3 + axis] * infl[d]
                est[d, 0], est[d, 1], est[d, 2] = best_y, best_x, best_v
                w = 1.0 / best_v
                rad[d] = r_d
                wts[d] = w
                sw += w
                swy += w * best_y
                swx += w * best_x
                used = max(used, r_d)
            out[0, i, j] = swy / sw
            out[1, i, j] = swx / sw
            pick = _side_of_kink(est, rad, kink) if shapes == 5 and kink > 0 else -1
            if pick >= 0:
                out[0, i, j], out[1, i, j] = est[pick, 0], est[pick, 1]
                out[2, i, j] = math.sqrt(2.0 * est[pick, 2])
                out[3, i, j] = rad[pick]
                continue
            if shapes == 1:
                out[2, i, j] = math.sqrt(2.0 / sw)
            else:
                # the shapes share nodes, so their errors are correlated: the fused value is one linear
                # filter of the nodes (the weighted sum of the shapes' equivalent kernels); its variance
                out[2, i, j] = math.sqrt(
                    2.0
                    * _fused_variance(i, j, dy, dx, sigma, floor, npar, shapes, rad, z, wts / sw, infl, phi)
                )
            out[3, i, j] = used


@nb.njit(cache=True, nogil=True)
def _side_of_kink(est, rad, kink):
    """The half-window to keep alone when opposite half-windows (rows −r..0 against 0..r, columns −r..0
    against 0..r) disagree on the slope along their direction by more than ``kink`` σ in either component
    (a change of gradient within reach): of the halves of the disagreeing pair(s), the one whose
    neighbours scatter least about its fit (lowest χ²), which is the side the node shares with no kink.
    -1 when no pair disagrees."""
    pick = -1
    best = np.inf
    for d1 in (1, 3):
        d2 = d1 + 1
        if rad[d1] < 1 or rad[d2] < 1:
            continue
        s = math.sqrt(est[d1, 6] + est[d2, 6])
        t = max(abs(est[d1, 4] - est[d2, 4]), abs(est[d1, 5] - est[d2, 5])) / s
        if not t > kink:
            continue
        for d in (d1, d2):
            if est[d, 3] < best:
                best = est[d, 3]
                pick = d
    return pick


@nb.njit(cache=True, nogil=True)
def _fused_variance(i, j, dy, dx, sigma, floor, npar, shapes, rad, z, share, infl, phi):
    """Per-component variance of Σ_d share_d · (shape d's centre value), the nodes' errors independent
    but for the chip-overlap factor (the shares' mean of the shapes' ``infl``; 1 for the node alone)."""
    nr, nc = sigma.shape
    big = 0
    f = 0.0
    for d in range(shapes):
        big = max(big, rad[d])
        f += share[d] * (infl[d] if rad[d] > 0 else 1.0)
    var = 0.0
    for a in range(-big, big + 1):
        ii = i + a
        if ii < 0 or ii >= nr:
            continue
        for b in range(-big, big + 1):
            jj = j + b
            if jj < 0 or jj >= nc:
                continue
            sg = sigma[ii, jj]
            if not (np.isfinite(dy[ii, jj]) and np.isfinite(dx[ii, jj]) and np.isfinite(sg)):
                continue
            wt = 1.0 / max(sg, floor) ** 2
            _basis(float(a), float(b), phi)
            g = 0.0
            for d in range(shapes):
                r = rad[d]
                if r == 0:
                    if a == 0 and b == 0:
                        g += share[d]
                    continue
                if a < (0 if d == 2 else -r) or a > (0 if d == 1 else r):
                    continue
                if b < (0 if d == 4 else -r) or b > (0 if d == 3 else r):
                    continue
                h = 0.0
                for p in range(npar):
                    h += phi[p] * z[d, p]
                g += share[d] * wt * h
            var += g * g * 0.5 / wt
    return var * f


def adaptive_poly_nodes(
    dy: np.ndarray,
    dx: np.ndarray,
    sigma: np.ndarray,
    radii: np.ndarray,
    inflation: np.ndarray,
    *,
    gamma: float,
    max_chi2: float,
    floor: float,
    degree: int,
    sided: bool,
    kink: float = 0.0,
) -> PlaneFit:
    """Per-node adaptive polynomial fit (module documentation). ``inflation`` has shape (2, radii):
    the variance factor of the overlapping chips for centred (row 0) and half (row 1) windows. Returns a
    :class:`geodeform.offsets._grid.PlaneFit` (radius: the largest kept over the window shapes)."""
    out = np.full((4, *dy.shape), np.nan)
    npar = 3 if degree == 1 else 6
    shapes = 5 if sided else 1
    run_chunks(
        _poly_rows,
        dy.shape[0],
        dy,
        dx,
        sigma,
        radii,
        inflation,
        float(gamma),
        float(max_chi2),
        float(floor),
        npar,
        shapes,
        float(kink),
        out,
    )
    return PlaneFit(out[0], out[1], out[2], out[3])
