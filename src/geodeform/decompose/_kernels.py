"""Numba kernels of the east/north/up series inversion (pure, no I/O).

Unknowns per pixel: ``x[3 (k − 1) + c]`` = component c (east, north, up) of the cumulative displacement at
union date k ≥ 1 (``d_0 = 0``). A pair (i, j) couples the blocks of dates i and j, the smoothing couples
consecutive dates, so the normal matrix is banded: half-bandwidth ``b = 3 · (longest pair in dates) + 2``.
Its Cholesky factor and the entries of its inverse inside the band (Takahashi's recurrences,
:mod:`geodeform.banded`) cost ``O(m b²)`` per pixel instead of ``O(m³)``. Band storage:
``NB[i, d] = N[i, i − d]`` (lower), ``ZU[i, d] = Z[i, i + d]`` (upper, Z = N⁻¹).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from geodeform.banded import band_cholesky, band_entry, band_inverse, band_solve

__all__ = ["solve_pixels"]

CHOLESKY_REL_TOL = 1e-13  # a pivot below this times the largest diagonal entry: singular pixel


@njit(cache=True, nogil=True)
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
        LB, ok = band_cholesky(NB, CHOLESKY_REL_TOL)
        if not ok:
            failed[px] = True
            continue
        x = np.empty(rhs.size)
        band_solve(LB, rhs, x, np.empty(rhs.size))
        ZU = band_inverse(LB)
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
                    zjj = band_entry(ZU, 3 * (j - 1) + a, 3 * (j - 1) + c) if j > 0 else 0.0
                    zii = band_entry(ZU, 3 * (i - 1) + a, 3 * (i - 1) + c) if i > 0 else 0.0
                    zij = band_entry(ZU, 3 * (i - 1) + a, 3 * (j - 1) + c) if (i > 0 and j > 0) else 0.0
                    q += uu * (zjj + zii - 2.0 * zij)
            q_out[p, px] = q
