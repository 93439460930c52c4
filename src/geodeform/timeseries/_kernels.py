"""Numba kernels of the time-series inversion (pure, no I/O).

Unknowns are the cumulative displacements ``d_1 .. d_{n-1}`` (``d_0 = 0``). A pair ``(i, j)`` observes
``d_j - d_i``, so its design row has two non-zeros and the normal matrix is a weighted graph Laplacian; the
optional smoothing adds rows penalising the change of mean velocity between consecutive intervals.

The normal matrix is banded (half-bandwidth = the longest pair in acquisitions, or 2 with smoothing), so the
Cholesky factor and the entries of its inverse inside the band (Takahashi recurrences,
:mod:`geodeform.banded`) cost O(n b^2).
Pixels that use the same set of pairs (a "group") share one factorisation; each pixel then only costs two
banded triangular solves and O(npairs) bookkeeping.

Arrays are pixel-major (``[pixel, pair]``) so that the per-pixel loops read contiguous memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from geodeform.banded import band_cholesky, band_inverse, band_solve

__all__ = [
    "CHOLESKY_REL_TOL",
    "STATUS_EMPTY",
    "STATUS_OK",
    "STATUS_PARTIAL",
    "fill_normal_band",
    "find_root",
    "half_bandwidth",
    "linked",
    "reachable",
    "solve_groups",
]

STATUS_OK = 0
STATUS_PARTIAL = 1  # some dates unconstrained (NaN)
STATUS_EMPTY = 2  # nothing could be estimated
CHOLESKY_REL_TOL = 1e-11  # a pivot below this times the largest diagonal entry: singular group


@njit(cache=True, nogil=True)
def find_root(parent, a):
    """Root of ``a`` in a union-find forest (with path halving)."""
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(cache=True, nogil=True)
def linked(pi, pj, valid_row, t, lam, max_gap):
    """Union-find forest of the dates linked by valid pairs (and, with smoothing, bridgeable intervals)."""
    n = t.size
    parent = np.arange(n)
    for p in range(pi.size):
        if valid_row[p]:
            a = find_root(parent, pi[p])
            b = find_root(parent, pj[p])
            if a != b:
                parent[max(a, b)] = min(a, b)
    if lam > 0.0:
        for k in range(n - 1):
            if t[k + 1] - t[k] <= max_gap:
                a = find_root(parent, k)
                b = find_root(parent, k + 1)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return parent


@njit(cache=True, nogil=True)
def reachable(pi, pj, valid_row, t, lam, max_gap):
    """Dates linked to date 0 through valid pairs (and, with smoothing, through bridgeable intervals)."""
    n = t.size
    parent = linked(pi, pj, valid_row, t, lam, max_gap)
    reach = np.zeros(n, dtype=np.bool_)
    r0 = find_root(parent, 0)
    for k in range(n):
        reach[k] = find_root(parent, k) == r0
    return reach


@njit(cache=True, nogil=True)
def _normal_band(pi, pj, w_row, valid_row, reach, t, lam, b):
    """Lower band of the normal matrix: ``NB[i, d] = N[i, i - d]`` for ``d <= b``."""
    NB = np.empty((t.size - 1, b + 1))
    fill_normal_band(NB, pi, pj, w_row, valid_row, reach, t, lam)
    return NB


@njit(cache=True, nogil=True)
def fill_normal_band(NB, pi, pj, w_row, valid_row, reach, t, lam):
    """:func:`_normal_band` written into ``NB`` (``(n - 1, b + 1)``, overwritten)."""
    n = t.size
    NB[:] = 0.0
    for p in range(pi.size):
        if not valid_row[p] or not reach[pi[p]]:
            continue
        wp = w_row[p]
        i0 = pi[p] - 1
        j0 = pj[p] - 1
        if i0 >= 0:
            NB[i0, 0] += wp
        if j0 >= 0:
            NB[j0, 0] += wp
        if i0 >= 0 and j0 >= 0:
            hi = max(i0, j0)
            NB[hi, hi - min(i0, j0)] -= wp
    if lam > 0.0:
        lam2 = lam * lam
        c = np.empty(3)
        for k in range(1, n - 1):
            if not (reach[k - 1] and reach[k] and reach[k + 1]):
                continue
            dm = t[k] - t[k - 1]
            dp = t[k + 1] - t[k]
            tau = 0.5 * (dm + dp)
            c[0] = tau / dm
            c[1] = -tau / dm - tau / dp
            c[2] = tau / dp
            for u in range(3):
                ru = k - 2 + u
                if ru < 0:
                    continue
                for v in range(u + 1):
                    rv = k - 2 + v
                    if rv < 0:
                        continue
                    NB[ru, ru - rv] += lam2 * c[u] * c[v]
    for k in range(1, n):
        if not reach[k]:
            NB[k - 1, 0] = 1.0


@njit(cache=True, nogil=True)
def half_bandwidth(pi, pj, lam, m):
    """Half-bandwidth of the normal matrix of ``m`` unknowns: the longest pair (in acquisitions), 2 with
    smoothing. Taking every pair, not only the used ones, keeps N^-1 known for the pairs left out."""
    band = 2 if lam > 0.0 else 1
    for p in range(pi.size):
        band = max(band, abs(pi[p] - pj[p]))
    return min(band, max(m - 1, 0))


@njit(cache=True, nogil=True)
def _empty_pixel(px, n, P, ncomp, out_d, out_var, out_s2, out_res, out_q, out_dof, out_status):
    out_status[px] = STATUS_EMPTY
    out_dof[px] = np.nan
    for k in range(n):
        out_var[px, k] = np.nan
        for c in range(ncomp):
            out_d[c, px, k] = np.nan
    for c in range(ncomp):
        out_s2[c, px] = np.nan
        for p in range(P):
            out_res[c, px, p] = np.nan
    for p in range(P):
        out_q[px, p] = np.nan


@njit(cache=True, nogil=True)
def solve_groups(
    lo,
    hi,
    pi,
    pj,
    t,
    w,
    valid,
    finite,
    obs,
    order,
    group_start,
    lam,
    max_gap,
    out_d,
    out_var,
    out_s2,
    out_res,
    out_q,
    out_dof,
    out_status,
):
    """Weighted (regularised) least squares for every pixel, one factorisation per group of pixels.

    Parameters
    ----------
    lo, hi : int
        The groups ``lo <= g < hi`` are solved: run it over every group with
        ``geodeform.compiled.run_chunks(solve_groups, ngroups, pi, ...)`` (in parallel).
    pi, pj : int64 (P,)
        Reference / secondary date index of each pair.
    t : float64 (n,)
        Dates, days since the first.
    w : float64 (npx, P)
        Pair weights (inverse variances up to a common factor); must be equal within a group.
    valid : bool (npx, P)
        Pairs used in the fit; must be equal within a group.
    finite : bool (npx, P)
        Pairs with an observation (residuals are computed for these, used or not).
    obs : float64 (ncomp, npx, P)
        Observed pair displacements.
    order, group_start : int64
        Pixels sorted by group; group ``g`` is ``order[group_start[g]:group_start[g + 1]]``.
    lam : float
        Smoothing weight (0 = none).
    max_gap : float
        Longest interval (days) the smoothing may bridge when no pair spans it.
    out_d : float64 (ncomp, npx, n)
        Cumulative displacement since date 0; NaN where unconstrained.
    out_var : float64 (npx, n)
        Diagonal of N^-1 (variance per unit-weight variance).
    out_s2 : float64 (ncomp, npx)
        Unit-weight variance from the residuals of the used pairs; NaN without redundancy.
    out_res : float64 (ncomp, npx, P)
        Observation minus model for finite pairs between constrained dates (NaN elsewhere).
    out_q : float64 (npx, P)
        a_p^T N^-1 a_p, the variance factor of each pair's modelled value.
    out_dof : float64 (npx,)
        Residual degrees of freedom: used pairs minus the trace of the hat matrix.
    out_status : int8 (npx,)
        STATUS_OK, STATUS_PARTIAL or STATUS_EMPTY.
    """
    n = t.size
    m = n - 1
    P = pi.size
    ncomp = obs.shape[0]
    band = half_bandwidth(pi, pj, lam, m)
    for g in range(lo, hi):
        g0 = group_start[g]
        g1 = group_start[g + 1]
        p0 = order[g0]
        valid_row = valid[p0]
        w_row = w[p0]
        reach = reachable(pi, pj, valid_row, t, lam, max_gap)
        nreach = 0
        for k in range(n):
            if reach[k]:
                nreach += 1
        nused = 0
        for p in range(P):
            if valid_row[p] and reach[pi[p]]:
                nused += 1
        ok = nreach > 1 and nused > 0
        LB = np.zeros((1, 1))
        if ok:
            NB = _normal_band(pi, pj, w_row, valid_row, reach, t, lam, band)
            LB, ok = band_cholesky(NB, CHOLESKY_REL_TOL)
        if not ok:
            for gi in range(g0, g1):
                _empty_pixel(
                    order[gi], n, P, ncomp, out_d, out_var, out_s2, out_res, out_q, out_dof, out_status
                )
            continue
        ZU = band_inverse(LB)
        q = np.full(P, np.nan)
        trace = 0.0
        for p in range(P):
            if reach[pi[p]] and reach[pj[p]]:
                a = pi[p] - 1
                c2 = pj[p] - 1
                za = ZU[a, 0] if a >= 0 else 0.0
                zb = ZU[c2, 0] if c2 >= 0 else 0.0
                zab = ZU[min(a, c2), abs(a - c2)] if (a >= 0 and c2 >= 0) else 0.0
                q[p] = za + zb - 2.0 * zab
                if valid_row[p]:
                    trace += w_row[p] * q[p]
        dof = nused - trace
        status = STATUS_OK if nreach == n else STATUS_PARTIAL
        rhs = np.empty(m)
        x = np.empty(m)
        y = np.empty(m)
        for gi in range(g0, g1):
            px = order[gi]
            out_status[px] = status
            out_dof[px] = dof
            out_var[px, 0] = 0.0
            for k in range(1, n):
                out_var[px, k] = ZU[k - 1, 0] if reach[k] else np.nan
            for p in range(P):
                out_q[px, p] = q[p] if finite[px, p] else np.nan
            for c in range(ncomp):
                rhs[:] = 0.0
                for p in range(P):
                    if valid_row[p] and reach[pi[p]]:
                        v = w_row[p] * obs[c, px, p]
                        if pj[p] > 0:
                            rhs[pj[p] - 1] += v
                        if pi[p] > 0:
                            rhs[pi[p] - 1] -= v
                band_solve(LB, rhs, x, y)
                out_d[c, px, 0] = 0.0
                for k in range(1, n):
                    out_d[c, px, k] = x[k - 1] if reach[k] else np.nan
                ss = 0.0
                for p in range(P):
                    if finite[px, p] and reach[pi[p]] and reach[pj[p]]:
                        r = obs[c, px, p] - (out_d[c, px, pj[p]] - out_d[c, px, pi[p]])
                        out_res[c, px, p] = r
                        if valid_row[p]:
                            ss += w_row[p] * r * r
                    else:
                        out_res[c, px, p] = np.nan
                out_s2[c, px] = ss / dof if dof > 0.5 else np.nan
