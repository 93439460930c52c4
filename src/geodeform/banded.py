"""Symmetric positive definite banded matrices: Cholesky factor, solve, and the inverse inside the band.

Numba kernels shared by the time-series inversion (:mod:`geodeform.timeseries`) and the east/north/up
series (:mod:`geodeform.decompose`); a leaf module (imports nothing of ours). Pure, no I/O.

Band storage of an ``(m, m)`` matrix with half-bandwidth ``b``, as ``(m, b + 1)`` arrays:

- lower band ``NB[i, d] = N[i, i − d]`` (the matrix) and ``LB[i, d] = L[i, i − d]`` (its Cholesky factor,
  ``N = L Lᵀ``); entries with ``i − d < 0`` are never read;
- upper band of the inverse ``ZU[i, d] = Z[i, i + d]``, ``Z = N⁻¹``, from Takahashi's recurrences.

The factor and the inverse band cost ``O(m b²)``, a solve ``O(m b)``, instead of ``O(m³)`` dense.

References
----------
Takahashi, K., Fagan, J. and Chen, M.-S. (1973). Formation of a sparse bus impedance matrix and its
application to short circuit study. Proc. 8th PICA Conference, 63-69.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["band_cholesky", "band_cholesky_into", "band_entry", "band_inverse", "band_solve"]


@njit(cache=True, nogil=True)
def band_cholesky_into(NB, LB, rel_tol):
    """Lower band Cholesky factor of ``NB`` written into ``LB`` (same shape); returns ok.

    A pivot at or below ``rel_tol`` times the largest diagonal entry of ``NB`` counts as singular: False is
    returned and ``LB`` is left partly written.
    """
    m, b1 = NB.shape
    b = b1 - 1
    scale = 0.0
    for k in range(m):
        scale = max(scale, abs(NB[k, 0]))
    tol = rel_tol * max(scale, 1e-300)
    for j in range(m):
        s = NB[j, 0]
        for k in range(max(0, j - b), j):
            s -= LB[j, j - k] * LB[j, j - k]
        if s <= tol:
            return False
        LB[j, 0] = np.sqrt(s)
        inv = 1.0 / LB[j, 0]
        for i in range(j + 1, min(m, j + b + 1)):
            s2 = NB[i, i - j]
            for k in range(max(0, i - b), j):
                s2 -= LB[i, i - k] * LB[j, j - k]
            LB[i, i - j] = s2 * inv
    return True


@njit(cache=True, nogil=True)
def band_cholesky(NB, rel_tol):
    """``(LB, ok)``: :func:`band_cholesky_into` into a new array."""
    LB = np.zeros(NB.shape)
    return LB, band_cholesky_into(NB, LB, rel_tol)


@njit(cache=True, nogil=True)
def band_inverse(LB):
    """Entries of ``N⁻¹`` inside the band, ``ZU[i, d] = Z[i, i + d]``, from the factor ``LB`` (Takahashi)."""
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


@njit(cache=True, nogil=True)
def band_entry(ZU, r, c):
    """Entry (r, c) of the symmetric inverse from its upper band; 0 outside the band (not computed)."""
    if r > c:
        r, c = c, r
    d = c - r
    if d >= ZU.shape[1]:
        return 0.0
    return ZU[r, d]


@njit(cache=True, nogil=True)
def band_solve(LB, rhs, x, y):
    """Solve ``L Lᵀ x = rhs`` with the band factor ``LB``: ``x`` gets the solution, ``y`` is work space
    (both ``(m,)``, overwritten)."""
    m, b1 = LB.shape
    b = b1 - 1
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
