"""Numba kernels of the east/north/up series inversion (pure, no I/O).

Unknowns per pixel: ``x[3 (k − 1) + c]`` = component c (east, north, up) of the cumulative displacement at
union date k ≥ 1 (``d_0 = 0``). A pair (i, j) couples the blocks of dates i and j, the smoothing couples
consecutive dates, so the normal matrix is banded: half-bandwidth ``b = 3 · (longest pair in dates) + 2``.
Its Cholesky factor and the entries of its inverse inside the band (Takahashi's recurrences) cost
``O(m b²)`` per pixel instead of ``O(m³)``. Band storage: ``NB[i, d] = N[i, i − d]`` (lower),
``ZU[i, d] = Z[i, i + d]`` (upper, Z = N⁻¹).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["solve_pixels"]


@njit(cache=True)
def _cholesky(NB):
    m, b1 = NB.shape
    b = b1 - 1
    LB = np.zeros((m, b1))
    scale = 0.0
    for k in range(m):
        scale = max(scale, abs(NB[k, 0]))
    tol = 1e-13 * max(scale, 1e-300)
    for j in range(m):
        s = NB[j, 0]
        for k in range(max(0, j - b), j):
            s -= LB[j, j - k] * LB[j, j - k]
        if s <= tol:
            return LB, False
        LB[j, 0] = np.sqrt(s)
        inv = 1.0 / LB[j, 0]
        for i in range(j + 1, min(m, j + b + 1)):
            s2 = NB[i, i - j]
            for k in range(max(0, i - b), j):
                s2 -= LB[i, i - k] * LB[j, j - k]
            LB[i, i - j] = s2 * inv
    return LB, True


@njit(cache=True)
def _inverse_band(LB):
    m, b1 = LB.shape
    b = b1 - 1
    ZU = np.zeros((m, b1))
    for i in range(m - 1, -1, -1):
        kmax = min(m - 1, i + b)
        lii = LB[i, 0]
        for j in range(kmax, i - 1, -1):
            s = 1.0 / lii if i == j else 0.0
            for k in range(i + 1, kmax + 1):
                zkj = ZU[j, k - j] if k >= j else ZU[k, j - k]
                s -= LB[k, k - i] * zkj
            ZU[i, j - i] = s / lii
    return ZU


@njit(cache=True)
def _z(ZU, r, c):
    """Entry (r, c) of the inverse from its upper band (0 outside it, never asked for here)."""
    if r > c:
        r, c = c, r
    d = c - r
    if d >= ZU.shape[1]:
        return 0.0
    return ZU[r, d]


@njit(cache=True)
def _solve(LB, rhs):
    m, b1 = LB.shape
    b = b1 - 1
    y = np.empty(m)
    x = np.empty(m)
    for i in range(m):
        s = rhs[i]
        for k in range(max(0, i - b), i):
            s -= LB[i, i - k] * y[k]
        y[i] = s / LB[i, 0]
    for i in range(m - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, min(m, i + b + 1)):
            s -= LB[k, k - i] * x[k]
        x[i] = s / LB[i, 0]
    return x


@njit(cache=True)
def _normal(px, ref, sec, set_of, unit, value, w, use, reg):
    """Band of the normal matrix and the right-hand side of one pixel."""
    m = reg.shape[0]
    NB = reg.copy()
    rhs = np.zeros(m)
    for p in range(ref.size):
        if not use[p, px]:
            continue
        wp = w[p, px]
        s = set_of[p]
        i, j, sign = ref[p], sec[p], 1.0
        if i > j:
            i, j, sign = j, i, -1.0
        bi, bj = 3 * (i - 1), 3 * (j - 1)
        for a in range(3):
            ua = unit[s, px, a]
            rhs[bj + a] += sign * wp * value[p, px] * ua
            if i > 0:
                rhs[bi + a] -= sign * wp * value[p, px] * ua
            for c in range(3):
                v = wp * ua * unit[s, px, c]
                if a >= c:
                    NB[bj + a, a - c] += v
                    if i > 0:
                        NB[bi + a, a - c] += v
                if i > 0:
                    NB[bj + a, bj + a - bi - c] -= v
    return NB, rhs


@njit(parallel=True, cache=True)
def solve_pixels(
    ref, sec, set_of, unit, value, w, use, finite, reg, max_cond2, x_out, var_out, free_out, q_out, failed
):
    """Regularised least squares of every pixel (see the module docstring).

    Outputs: ``x_out``, ``var_out`` ``(npx, m)`` solution and diagonal of the inverse normal matrix;
    ``free_out`` ``(npx, m)`` unknowns whose variance-inflation factor exceeds ``max_cond2``; ``q_out``
    ``(P, npx)`` variance of each finite observation's prediction ``u · (d_j − d_i)``; ``failed`` pixels
    whose normal matrix is singular (left for a dense eigen-decomposition by the caller).
    """
    npx = x_out.shape[0]
    for px in prange(npx):
        NB, rhs = _normal(px, ref, sec, set_of, unit, value, w, use, reg)
        LB, ok = _cholesky(NB)
        if not ok:
            failed[px] = True
            continue
        x = _solve(LB, rhs)
        ZU = _inverse_band(LB)
        for k in range(x.size):
            x_out[px, k] = x[k]
            var_out[px, k] = ZU[k, 0]
            free_out[px, k] = NB[k, 0] * ZU[k, 0] > max_cond2
        for p in range(ref.size):
            if not finite[p, px]:
                continue
            s = set_of[p]
            i, j = ref[p], sec[p]
            q = 0.0
            for a in range(3):
                for c in range(3):
                    uu = unit[s, px, a] * unit[s, px, c]
                    zjj = _z(ZU, 3 * (j - 1) + a, 3 * (j - 1) + c) if j > 0 else 0.0
                    zii = _z(ZU, 3 * (i - 1) + a, 3 * (i - 1) + c) if i > 0 else 0.0
                    zij = _z(ZU, 3 * (i - 1) + a, 3 * (j - 1) + c) if (i > 0 and j > 0) else 0.0
                    q += uu * (zjj + zii - 2.0 * zij)
            q_out[p, px] = q
