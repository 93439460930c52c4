"""Grid-level kernels of the matchers: medians, neighbour statistics, lattices, plane smoothing (numba).

They act on node fields (arrays over the grid of nodes, NaN = no value), not on images: the medians and
agreement counts of the consistency tests, the sparse lattice's averages, the strain-corrected departure
from linearity that selects steps, and the adaptive local-plane smoothing.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import run_chunks
from geodeform.offsets._layout import H_INV, M_COL, M_ROW

__all__ = [
    "PlaneFit",
    "adaptive_plane_nodes",
    "lattice_average",
    "lattice_median",
    "nanmedian_filter",
    "neighbour_agreement_nodes",
    "neighbour_median_nodes",
    "sorting_network",
    "strained_linear_residual",
]


class PlaneFit(NamedTuple):
    """Result of :func:`adaptive_plane_nodes` (arrays of the grid's shape, NaN where the node is NaN)."""

    dy: npt.NDArray[np.float64]  #: smoothed row offset, px
    dx: npt.NDArray[np.float64]  #: smoothed column offset, px
    sigma: npt.NDArray[np.float64]  #: predicted 1-σ vector error of the fit, px
    radius: npt.NDArray[Any]  #: window radius used, nodes (0: the node's own value)


@nb.njit(cache=True, nogil=True)
def _plane_node(acc, r, inflation, out):
    """Solve the weighted plane fit from the sums ``acc`` (see :func:`adaptive_plane_nodes`) and write
    (value dy, value dx, per-component variance, χ² per degree of freedom) into ``out``; False if the
    window does not define a plane."""
    s, sr, sc, srr, src, scc = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    c00 = srr * scc - src * src
    c01 = -(sr * scc - src * sc)
    c02 = sr * src - srr * sc
    c11 = s * scc - sc * sc
    c12 = -(s * src - sr * sc)
    c22 = s * srr - sr * sr
    det = s * c00 + sr * c01 + sc * c02
    n = acc[13]
    if n < max(6, (2 * r + 1) ** 2 // 2) or not det > 1e-9 * s * s * s:
        return False
    fitted = 0.0
    for k in range(2):
        b0, b1, b2 = acc[6 + 3 * k], acc[7 + 3 * k], acc[8 + 3 * k]
        a0 = (c00 * b0 + c01 * b1 + c02 * b2) / det
        a1 = (c01 * b0 + c11 * b1 + c12 * b2) / det
        a2 = (c02 * b0 + c12 * b1 + c22 * b2) / det
        out[k] = a0
        fitted += a0 * b0 + a1 * b1 + a2 * b2
    out[2] = 0.5 * c00 / det * inflation
    out[3] = 2.0 * (acc[12] - fitted) / max(2.0 * n - 6.0, 1.0)
    return True


@nb.njit(cache=True, nogil=True)
def _adaptive_plane_range(lo, hi, dy, dx, sigma, radii, inflation, gamma, max_chi2, floor, out):
    """The rows ``lo <= i < hi`` of :func:`adaptive_plane_nodes` into ``out`` (a :class:`PlaneFit` of
    NaN arrays)."""
    nr, nc = dy.shape
    out_y, out_x, out_s, out_r = out
    for i in range(lo, hi):
        acc = np.empty(14)
        fit = np.empty(4)
        for j in range(nc):
            if not (np.isfinite(dy[i, j]) and np.isfinite(dx[i, j]) and np.isfinite(sigma[i, j])):
                continue
            best_y = dy[i, j]
            best_x = dx[i, j]
            best_v = 0.5 * max(sigma[i, j], floor) ** 2
            half = gamma * math.sqrt(best_v)
            lo_y, hi_y, lo_x, hi_x = best_y - half, best_y + half, best_x - half, best_x + half
            used = 0
            acc[:] = 0.0
            done = -1
            for k in range(radii.size):
                r = radii[k]
                for a in range(-r, r + 1):
                    ii = i + a
                    if ii < 0 or ii >= nr:
                        continue
                    for b in range(-r, r + 1):
                        ring = max(abs(a), abs(b))
                        jj = j + b
                        if ring <= done or jj < 0 or jj >= nc:
                            continue
                        y = dy[ii, jj]
                        x = dx[ii, jj]
                        sg = sigma[ii, jj]
                        if not (np.isfinite(y) and np.isfinite(x) and np.isfinite(sg)):
                            continue
                        wt = 1.0 / max(sg, floor) ** 2
                        acc[0] += wt
                        acc[1] += wt * a
                        acc[2] += wt * b
                        acc[3] += wt * a * a
                        acc[4] += wt * a * b
                        acc[5] += wt * b * b
                        acc[6] += wt * y
                        acc[7] += wt * y * a
                        acc[8] += wt * y * b
                        acc[9] += wt * x
                        acc[10] += wt * x * a
                        acc[11] += wt * x * b
                        acc[12] += wt * (y * y + x * x)
                        acc[13] += 1.0
                done = r
                if not _plane_node(acc, r, inflation[k], fit):
                    break
                half = gamma * math.sqrt(fit[2])
                ly = max(lo_y, fit[0] - half)
                hy = min(hi_y, fit[0] + half)
                lx = max(lo_x, fit[1] - half)
                hx = min(hi_x, fit[1] + half)
                if ly > hy or lx > hx or fit[2] >= best_v or fit[3] > max_chi2:
                    break
                lo_y, hi_y, lo_x, hi_x = ly, hy, lx, hx
                best_y, best_x, best_v = fit[0], fit[1], fit[2]
                used = r
            out_y[i, j] = best_y
            out_x[i, j] = best_x
            out_s[i, j] = math.sqrt(2.0 * best_v)
            out_r[i, j] = used


def adaptive_plane_nodes(
    dy: npt.NDArray[np.float64],
    dx: npt.NDArray[np.float64],
    sigma: npt.NDArray[np.float64],
    radii: npt.NDArray[np.int64],
    inflation: npt.NDArray[np.float64],
    gamma: float,
    max_chi2: float,
    floor: float,
) -> PlaneFit:
    """Per-node kernel of :func:`geodeform.offsets._post.adaptive_plane`: grows each node's window ring
    by ring and stops at the first radius the ICI / χ² tests reject. Returns a :class:`PlaneFit`; rows
    in parallel (:func:`geodeform.compiled.run_chunks`)."""
    out = PlaneFit(*(np.full(dy.shape, np.nan) for _ in range(4)))
    run_chunks(
        _adaptive_plane_range, dy.shape[0], dy, dx, sigma, radii, inflation, gamma, max_chi2, floor, out
    )
    return out


@nb.njit(cache=True, nogil=True)
def _grad_at(a, i, j, di, dj, spacing):
    """NaN-aware central difference of a node field (one-sided where a neighbour is missing, else 0)."""
    H, W = a.shape
    i1, j1, i0, j0 = i + di, j + dj, i - di, j - dj
    f = a[i1, j1] if 0 <= i1 < H and 0 <= j1 < W else np.nan
    b = a[i0, j0] if 0 <= i0 < H and 0 <= j0 < W else np.nan
    c = a[i, j]
    if np.isfinite(f) and np.isfinite(b):
        return (f - b) / (2 * spacing)
    if np.isfinite(f) and np.isfinite(c):
        return (f - c) / spacing
    if np.isfinite(b) and np.isfinite(c):
        return (c - b) / spacing
    return 0.0


@nb.njit(cache=True, nogil=True)
def strained_linear_residual(dy, dx, lk, step_r, step_c):
    """:func:`geodeform.offsets._post.linear_residual` of the field corrected for the first-order strain
    bias (:func:`geodeform.offsets._post.strain_bias` without the curvature term), in one pass."""
    H, W = dy.shape
    cy = np.empty((H, W))
    cx = np.empty((H, W))
    one, zero = np.int64(1), np.int64(0)  # typed int64, not literals: one compiled _grad_at for both
    for i in range(H):
        for j in range(W):
            gyr = _grad_at(dy, i, j, one, zero, step_r)
            gyc = _grad_at(dy, i, j, zero, one, step_c)
            gxr = _grad_at(dx, i, j, one, zero, step_r)
            gxc = _grad_at(dx, i, j, zero, one, step_c)
            m = lk[i, j]
            v0 = m[M_ROW] * gyr + m[M_ROW + 1] * gxr + m[M_COL] * gyc + m[M_COL + 1] * gxc
            v1 = m[M_ROW + 1] * gyr + m[M_ROW + 2] * gxr + m[M_COL + 1] * gyc + m[M_COL + 2] * gxc
            by = m[H_INV] * v0 + m[H_INV + 1] * v1
            bx = m[H_INV + 1] * v0 + m[H_INV + 2] * v1
            cy[i, j] = dy[i, j] - (by if np.isfinite(by) else 0.0)
            cx[i, j] = dx[i, j] - (bx if np.isfinite(bx) else 0.0)
    out = np.full((H, W), np.nan)
    for i in range(H):
        for j in range(W):
            best = np.nan
            for a, b in ((1, 0), (0, 1), (1, 1), (1, -1)):
                i1, j1, i2, j2 = i + a, j + b, i - a, j - b
                if not (0 <= i1 < H and 0 <= j1 < W and 0 <= i2 < H and 0 <= j2 < W):
                    continue
                r = math.hypot(
                    cy[i, j] - 0.5 * (cy[i1, j1] + cy[i2, j2]), cx[i, j] - 0.5 * (cx[i1, j1] + cx[i2, j2])
                )
                if np.isfinite(r) and not (r <= best):
                    best = r
            out[i, j] = best
    return out


@nb.njit(cache=True, nogil=True)
def _median_of(buf, n):
    """Median of ``buf[:n]`` (mean of the two middle values for even n), by ranks: O(n²) but
    branch-free comparisons, faster than sorting or quickselect for the 8-49 values of a node window."""
    k1 = (n - 1) // 2
    k2 = n // 2
    m1 = np.nan
    m2 = np.nan
    for i in range(n):
        x = buf[i]
        less = 0
        leq = 0
        for j in range(n):
            less += buf[j] < x
            leq += buf[j] <= x
        # x fills the sorted positions less .. leq - 1
        if less <= k1 < leq:
            m1 = x
        if less <= k2 < leq:
            m2 = x
    return 0.5 * (m1 + m2)


@nb.njit(cache=True, nogil=True)
def lattice_average(gy, gx, ri, rj, d):
    """Mean (dy, dx) of the finite values among the 3 × 3 points (ri + {-d, 0, d}, rj + {-d, 0, d}) of
    the grids, and the largest distance of those values from it (NaN where none). The caller pads the
    grids by ``d``."""
    n = ri.size
    my = np.full(n, np.nan)
    mx = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    for k in range(n):
        sy = 0.0
        sx = 0.0
        c = 0
        for a in range(-1, 2):
            for b in range(-1, 2):
                y = gy[ri[k] + a * d, rj[k] + b * d]
                x = gx[ri[k] + a * d, rj[k] + b * d]
                if y == y and x == x:
                    sy += y
                    sx += x
                    c += 1
        if c == 0:
            continue
        my[k] = sy / c
        mx[k] = sx / c
        far = 0.0
        for a in range(-1, 2):
            for b in range(-1, 2):
                y = gy[ri[k] + a * d, rj[k] + b * d]
                x = gx[ri[k] + a * d, rj[k] + b * d]
                if y == y and x == x:
                    far = max(far, math.hypot(y - my[k], x - mx[k]))
        spread[k] = far
    return my, mx, spread


@nb.njit(cache=True, nogil=True)
def _lattice_median_of(g, ri, rj, d, buf):
    # an int64 count from the start: typed from the literal 0, it compiled _median_of a second, never-run
    # time for Literal[int](0)
    c = np.int64(0)
    for a in range(-1, 2):
        for b in range(-1, 2):
            v = g[ri + a * d, rj + b * d]
            if v == v:
                buf[c] = v
                c += 1
    return _median_of(buf, c) if c > 0 else np.nan


@nb.njit(cache=True, nogil=True)
def lattice_median(gy, gx, ri, rj, d):
    """Median dy and dx of the finite values among the 3 × 3 points (ri + {-d, 0, d}, rj + {-d, 0, d})
    (NaN where none); the caller pads the grids by ``d``."""
    n = ri.size
    my = np.empty(n)
    mx = np.empty(n)
    buf = np.empty(9)
    for k in range(n):
        my[k] = _lattice_median_of(gy, ri[k], rj[k], d, buf)
        mx[k] = _lattice_median_of(gx, ri[k], rj[k], d, buf)
    return my, mx


@functools.cache
def _sorting_network(n: int) -> np.ndarray:
    """Comparator pairs (i < j) of Batcher's odd-even merge sort for ``n`` (a power of 2) values."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, np.int64).reshape(-1, 2)


@functools.cache
def sorting_network(count: int) -> np.ndarray:
    """The comparator pairs sorting ``count`` values padded with +inf to the next power of 2 (at least 8).

    Comparators that touch a padding wire are left out: a pair (i < j) puts the larger value on j, so the
    padding wires (the highest) hold +inf throughout and such comparators change nothing (the 25 values
    of a 5 × 5 window: 129 comparators instead of 191)."""
    n = 8
    while n < count:
        n *= 2
    net = _sorting_network(n)
    return np.ascontiguousarray(net[net[:, 1] < count])


@nb.njit(cache=True, nogil=True, inline="always")
def _wires(net):
    """``net.max() + 1``, the number of values the comparator network ``net`` sorts, by a plain loop:
    numba's ``ndarray.max`` compiles a generic reduction (and ``np.take`` of a 0-d array, twice) for this
    one use, ~0.7 CPU-s on a cold cache. An empty network raises as ``net.max()`` does."""
    if net.size == 0:
        raise ValueError("zero-size array to reduction operation maximum which has no identity")
    top = net[0, 0]
    for c in range(net.shape[0]):
        for e in range(net.shape[1]):
            top = max(top, net[c, e])
    return top + 1


@nb.njit(cache=True, nogil=True)
def _window_medians(a, radius, skip_centre, net, i, v, out, count):
    """Median of the finite values of ``a`` in the (2r+1)² window around every element of row ``i``
    (the centre excluded with ``skip_centre``) into ``out`` (NaN if none), their number into ``count``.

    The window values of all the row's elements are sorted at once by the comparator network ``net``
    (min/max along the row: branch-free SIMD) in ``v`` (network size, row length), non-finite values
    as +inf so that they sort last."""
    nr, nc = a.shape
    v[:] = np.inf
    count[:] = 0
    k = 0
    for di in range(-radius, radius + 1):
        ii = i + di
        for dj in range(-radius, radius + 1):
            if skip_centre and di == 0 and dj == 0:
                continue
            if 0 <= ii < nr:
                row = a[ii]
                vk = v[k]
                for j in range(max(0, -dj), min(nc, nc - dj)):
                    x = row[j + dj]
                    fin = x - x == 0.0
                    vk[j] = x if fin else np.inf
                    count[j] += fin
            k += 1
    for c in range(net.shape[0]):
        p = v[net[c, 0]]
        q = v[net[c, 1]]
        for j in range(nc):
            x = p[j]
            y = q[j]
            c = x < y
            lo = x if c else y
            hi = y if c else x
            # (+ 0.0: stored as is, LLVM sees that p[j] keeps its value where x < y and emits masked
            # stores, microcoded and slow on AMD; the sum is a new value, stored whole: 37 % faster)
            p[j] = lo + 0.0
            q[j] = hi + 0.0
    for j in range(nc):
        n = count[j]
        out[j] = 0.5 * (v[(n - 1) // 2, j] + v[n // 2, j]) if n > 0 else np.nan


@nb.njit(cache=True, nogil=True)  # serial: a pass over nodes, cheap beside its parallel build
def nanmedian_filter(a, radius, net):
    """Median of the finite values of ``a`` in the (2r+1)² window around every element (NaN if none);
    ``net`` = :func:`sorting_network` ((2r+1)²)."""
    nr, nc = a.shape
    out = np.empty((nr, nc))
    rows = _wires(net)
    for i in range(nr):
        count = np.empty(nc, np.int64)
        v = np.empty((rows, nc))
        # np.bool_: a typed bool, not a literal, so that both callers share one compiled _window_medians
        _window_medians(a, radius, np.bool_(False), net, i, v, out[i], count)
    return out


@nb.njit(cache=True, nogil=True)  # serial: a pass over nodes, cheap beside its parallel build
def neighbour_median_nodes(dy, dx, radius, min_count, net):
    """Median (dy, dx) of the finite neighbours of every node in its (2r+1)² window, itself excluded,
    and their count (of finite dy); NaN medians where fewer than ``min_count``. ``net`` =
    :func:`sorting_network` ((2r+1)² - 1)."""
    nr, nc = dy.shape
    my = np.empty((nr, nc))
    mx = np.empty((nr, nc))
    count = np.zeros((nr, nc), np.int64)
    rows = _wires(net)
    for i in range(nr):
        cx = np.empty(nc, np.int64)
        v = np.empty((rows, nc))
        _window_medians(dy, radius, np.bool_(True), net, i, v, my[i], count[i])
        _window_medians(dx, radius, np.bool_(True), net, i, v, mx[i], cx)
        for j in range(nc):
            n = count[i, j]
            if not (n >= min_count and n > 0):
                my[i, j] = np.nan
                mx[i, j] = np.nan
    return my, mx, count


@nb.njit(cache=True, nogil=True)  # serial: a pass over nodes, cheap beside its parallel build
def neighbour_agreement_nodes(dy, dx, radius, tol):
    """Fraction of the valid neighbours (both components finite) within ``tol`` px of every node, and
    their count (the node itself excluded)."""
    nr, nc = dy.shape
    frac = np.zeros((nr, nc))
    count = np.zeros((nr, nc), np.int64)
    tol2 = tol * tol
    for i in range(nr):
        for j in range(nc):
            n = 0
            k = 0
            y0 = dy[i, j]
            x0 = dx[i, j]
            for ii in range(max(i - radius, 0), min(i + radius + 1, nr)):
                for jj in range(max(j - radius, 0), min(j + radius + 1, nc)):
                    if ii == i and jj == j:
                        continue
                    v = dy[ii, jj]
                    u = dx[ii, jj]
                    if np.isfinite(v) and np.isfinite(u):
                        n += 1
                        if (v - y0) * (v - y0) + (u - x0) * (u - x0) <= tol2:
                            k += 1
            count[i, j] = n
            if n > 0:
                frac[i, j] = k / n
    return frac, count
