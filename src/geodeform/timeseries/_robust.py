"""Robust start of the time-series inversion (numba kernels, pure, no I/O).

Least squares spreads a cluster of bad pairs over the good ones: the residuals of the good pairs grow, the
MAD of the residuals grows with them, and the bad pairs' own residuals shrink until none stands out. This
module starts the robust fit from a least-absolute-deviation (L1) solution per pixel instead, which a
minority of bad pairs at every date cannot move, takes the scale from its residuals and flags the pairs
that disagree with it.

Arrays are pixel-major (``[pixel, pair]``), as in :mod:`geodeform.timeseries._kernels`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from geodeform.banded import band_cholesky_into, band_solve
from geodeform.compiled import median
from geodeform.timeseries._kernels import (
    CHOLESKY_REL_TOL,
    fill_normal_band,
    find_root,
    half_bandwidth,
    linked,
    reachable,
)

__all__ = ["ambiguous_dates", "cut_labels", "flag_outliers", "judgeable", "robust_start", "select_flags"]

# Median of |r| / sigma for one Gaussian component, and of the norm of two (Rayleigh: sqrt(2 ln 2)).
_MEDIAN_ABS = (0.6744897501960817, 1.1774100225154747)
_TENTH_ABS = 0.12566134685507402  # 10th percentile of |r| / sigma, one Gaussian component


@njit(cache=True, nogil=True)
def _l1_fit(pi, pj, t, lam, obs_px, w_row, fit, reach, e, r, n_iter, band):
    """``n_iter`` IRLS steps towards the weighted L1 fit of one pixel, from the residuals ``r`` it is given.

    Minimises the sum over the pairs in ``fit`` of ``sqrt(w_p) |r_p|`` (``|r_p|`` the norm over the
    components) plus the smoothing rows squared, each step solving least squares with the weights
    ``w_p s / max(e_p, 1e-3 s)``, ``e_p = sqrt(w_p) |r_p|`` of the previous step and ``s`` the median of
    the first ones (so that the smoothing keeps its weight relative to a typical pair). ``r`` (ncomp, P)
    and ``e`` (P,) are updated in place; returns False when a normal matrix was singular (``r`` then holds
    the last good step).
    """
    ncomp, P = r.shape
    n = t.size
    m = n - 1
    NB = np.empty((m, band + 1))
    LB = np.empty((m, band + 1))
    rhs = np.empty(m)
    x = np.empty(m)
    y = np.empty(m)
    d = np.zeros((ncomp, n))
    u = np.zeros(P)
    buf = np.empty(P)
    nb = 0
    for p in range(P):
        if fit[p]:
            buf[nb] = e[p]
            nb += 1
    s = median(buf[:nb])
    if s <= 0.0:
        return True  # exact fit already
    for _ in range(n_iter):
        for p in range(P):
            u[p] = w_row[p] * s / max(e[p], 1e-3 * s) if fit[p] else 0.0
        fill_normal_band(NB, pi, pj, u, fit, reach, t, lam)
        if not band_cholesky_into(NB, LB, CHOLESKY_REL_TOL):
            return False
        for c in range(ncomp):
            rhs[:] = 0.0
            for p in range(P):
                if fit[p]:
                    v = u[p] * obs_px[c, p]
                    if pj[p] > 0:
                        rhs[pj[p] - 1] += v
                    if pi[p] > 0:
                        rhs[pi[p] - 1] -= v
            band_solve(LB, rhs, x, y)
            for k in range(1, n):
                d[c, k] = x[k - 1] if reach[k] else 0.0
            for p in range(P):
                if fit[p]:
                    r[c, p] = obs_px[c, p] - (d[c, pj[p]] - d[c, pi[p]])
        for p in range(P):
            if fit[p]:
                ss = 0.0
                for c in range(ncomp):
                    ss += r[c, p] * r[c, p]
                e[p] = np.sqrt(w_row[p] * ss)
    return True


@njit(cache=True, nogil=True)
def _closure_scale(tri, tri_sign, obs_px, w_row, use):
    """Noise scale of one pixel's pairs from the closures of its triangles; NaN when they cannot tell.

    The closure of a triangle of pairs (a -> b, b -> c, a -> c) is the signed sum of their observations:
    zero up to noise whatever the displacement, and no fit can spread a bad pair's error into it. Each is
    standardised by the square root of the sum of its pairs' 1/w; the scale (sigma of a unit-weight pair,
    any component) is the median of their absolute values divided by its Gaussian value (0.674). A
    minority of bad triangles raises it a little (by 1.5 when a quarter are bad). NaN with fewer than 5
    triangles, or when the median is more than twice what the lowest tenth implies (at least 20
    triangles): most triangles are then bad, and the median with them.
    """
    ncomp = obs_px.shape[0]
    T = tri.shape[0]
    buf = np.empty(T * ncomp)
    nt = 0
    for k in range(T):
        a, b, c3 = tri[k, 0], tri[k, 1], tri[k, 2]
        if not (use[a] and use[b] and use[c3]):
            continue
        v = 1.0 / w_row[a] + 1.0 / w_row[b] + 1.0 / w_row[c3]
        for c in range(ncomp):
            cl = (
                tri_sign[k, 0] * obs_px[c, a] + tri_sign[k, 1] * obs_px[c, b] + tri_sign[k, 2] * obs_px[c, c3]
            )
            buf[nt] = abs(cl) / np.sqrt(v)
            nt += 1
    if nt < 5 * ncomp:
        return np.nan
    scale = _select(buf[:nt], nt // 2) / _MEDIAN_ABS[0]
    if nt >= 20 * ncomp and scale > 2.0 * _select(buf[:nt], nt // 10) / _TENTH_ABS:
        return np.nan
    return scale


@njit(cache=True, nogil=True)
def _select(a, k):
    """The k-th smallest value of ``a`` (quickselect; ``a`` is reordered)."""
    lo, hi = 0, a.size - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit(cache=True, nogil=True)
def robust_start(
    lo,
    hi,
    pi,
    pj,
    t,
    lam,
    max_gap,
    obs,
    w,
    finite,
    res0,
    q0,
    tri,
    tri_sign,
    gate,
    n_iter,
    threshold,
    start_factor,
    max_fraction,
    out_flag,
    out_big,
):
    """Robust start for every pixel: closure gate, L1 fit, its scale and the pair flags it implies.

    Parameters
    ----------
    lo, hi : int
        The pixels ``lo <= px < hi`` are done: run it over every pixel with
        ``geodeform.compiled.run_chunks(robust_start, npx, pi, ...)`` (in parallel).
    pi, pj : int64 (P,)
        Reference / secondary date index of each pair.
    t : float64 (n,)
        Dates, days since the first.
    lam, max_gap : float
        Smoothing weight and longest bridgeable interval (days), as in ``solve_groups``.
    obs : float64 (ncomp, npx, P)
        Observed pair displacements.
    w : float64 (npx, P)
        Pair weights (inverse variances up to a common factor); 0 = not used.
    finite : bool (npx, P)
        Pairs with an observation.
    res0 : float64 (ncomp, npx, P)
        Residuals of the least-squares fit of all usable pairs (the IRLS start).
    q0 : float64 (npx, P)
        ``a_p^T N^-1 a_p`` of that fit (see ``solve_groups``).
    tri : int64 (T, 3), tri_sign : float64 (T, 3)
        Triangles of pairs and the signs that make their observations sum to zero.
    gate : float
        Pixels whose least-squares residuals, standardised by ``sqrt(1/w - q)`` and by the closure scale
        (:func:`_closure_scale`), all lie within ``gate`` (every component) are left to least squares;
        the others, and those whose closures cannot tell (see :func:`_closure_scale`), get the robust
        start. 0 sends every pixel through it.
    n_iter : int
        IRLS steps towards the L1 fit.
    threshold, start_factor : float
        Outlier threshold in sigmas of the standardised residual norm ``sqrt(w_p) |r_p|``; pairs are flagged
        above ``start_factor * threshold`` (the least-squares iterations that follow revoke the flags of
        the pairs that then fit).
    max_fraction : float
        At most ``floor(max_fraction * n_finite)`` pairs flagged per pixel.
    out_flag : bool (npx, P)
        Written: pairs flagged as outliers (largest first, at most the cap, never one whose loss would cut
        dates off the network).
    out_big : bool (npx, P)
        Written: pairs above ``threshold`` (flagged or not).

    Notes
    -----
    The scale is the median of the standardised L1 residual norms divided by its value for Gaussian
    errors (0.674 sigma for one component, 1.177 sigma for two) and by ``1 - m / P`` (m unknowns, P pairs
    in the fit): an L1 fit reproduces about m pairs exactly, which shrinks the median (by 0.70 sigma for
    m / P = 0.27 and 0.84 sigma for 0.15, measured on Gaussian noise). Sparser networks are left on the
    low side, so more pairs may be flagged here than by the least-squares iterations that follow, which
    re-examine every pair.
    """
    ncomp = obs.shape[0]
    P = obs.shape[2]
    n = t.size
    m = n - 1
    band = half_bandwidth(pi, pj, lam, m)
    c_med = _MEDIAN_ABS[min(ncomp, 2) - 1]
    for px in range(lo, hi):
        for p in range(P):
            out_flag[px, p] = False
        for p in range(P):
            out_big[px, p] = False
        use = np.empty(P, dtype=np.bool_)
        nfin = 0
        for p in range(P):
            use[p] = finite[px, p] and w[px, p] > 0.0
            if finite[px, p]:
                nfin += 1
        if gate > 0.0:
            sc = _closure_scale(tri, tri_sign, obs[:, px, :], w[px], use)
            worst = 0.0
            for p in range(P):
                if use[p] and not np.isnan(res0[0, px, p]):
                    vf = 1.0 / w[px, p] - q0[px, p]
                    if vf > 1e-6 / w[px, p]:
                        for c in range(ncomp):
                            worst = max(worst, abs(res0[c, px, p]) / np.sqrt(vf))
            if worst <= gate * sc:  # False when sc is NaN
                continue
        reach = reachable(pi, pj, use, t, lam, max_gap)
        fit = np.empty(P, dtype=np.bool_)
        nfit = 0
        for p in range(P):
            fit[p] = use[p] and reach[pi[p]]
            if fit[p]:
                nfit += 1
        nunk = -1
        for k in range(n):
            if reach[k]:
                nunk += 1
        if nfit - nunk < 2 or m == 0:
            continue  # (almost) no redundancy: nothing to judge a pair by
        if 2 * nunk >= nfit:
            # An L1 fit reproduces about one pair per unknown: with half of the pairs or more fitted
            # exactly, the median of its residuals is one of those and gives no scale (a sparse network,
            # e.g. pairs to the next 2 dates): the pixel starts from least squares.
            continue
        r = np.empty((ncomp, P))
        e = np.zeros(P)
        for p in range(P):
            if fit[p]:
                ss = 0.0
                for c in range(ncomp):
                    r[c, p] = res0[c, px, p]
                    ss += r[c, p] * r[c, p]
                e[p] = np.sqrt(w[px, p] * ss)
        _l1_fit(pi, pj, t, lam, obs[:, px, :], w[px], fit, reach, e, r, n_iter, band)
        buf = np.empty(nfit)
        nb = 0
        for p in range(P):
            if fit[p]:
                buf[nb] = e[p]
                nb += 1
        # An L1 fit reproduces about one pair per unknown: the median residual shrinks by about 1 - m / P.
        scale = median(buf) / c_med / (1.0 - nunk / nfit)
        if not scale > 0.0:
            continue
        z = np.zeros(P)
        for p in range(P):
            if fit[p]:
                z[p] = e[p] / scale
        cap = int(np.floor(max_fraction * nfin))
        select_flags(pi, pj, t, lam, max_gap, z, fit.copy(), cap, start_factor * threshold, out_flag[px])
        for p in range(P):
            out_big[px, p] = z[p] > threshold


@njit(cache=True, nogil=True)
def _n_reachable(pi, pj, use, t, lam, max_gap):
    reach = reachable(pi, pj, use, t, lam, max_gap)
    count = 0
    for k in range(reach.size):
        if reach[k]:
            count += 1
    return count


@njit(cache=True, nogil=True)
def flag_outliers(
    lo, hi, pi, pj, t, lam, max_gap, res, q, valid, finite, w, threshold, max_fraction, flag_dates, date_ptr,
    date_pair, out_flag, out_date, out_left,
):  # fmt: skip
    """Flag pairs whose standardised residual exceeds ``threshold`` robust sigmas, and ambiguous dates.

    The residual of pair p is standardised by ``sqrt(1/w - q)`` when the pair was used in the fit and by
    ``sqrt(1/w + q)`` when it was left out, then by the pixel's robust sigma (1.4826 * median absolute
    standardised residual of the used pairs, per component). A pair is flagged when any component exceeds
    the threshold, largest first, at most ``floor(max_fraction * n_finite)`` per pixel, and never when
    dropping it would cut dates off the network. With ``flag_dates``, dates are flagged by
    :func:`ambiguous_dates` (whatever the cap); ``date_ptr``/``date_pair`` list the pairs of each date.

    Pixels ``lo <= px < hi`` are done (``geodeform.compiled.run_chunks(flag_outliers, npx, pi, ...)``).
    Arrays are (npx, P) except res (ncomp, npx, P), out_date (npx, n) and out_left (npx,); out_flag (npx,
    P) bool, out_date and out_left are written: out_left when pairs above the threshold stay in the fit
    (the cap, or connectivity) or when a flagged pair crosses a part of the network that only one kept pair
    links otherwise (:func:`_hangs_on_one_pair`).
    """
    ncomp = res.shape[0]
    P = res.shape[2]
    for px in range(lo, hi):
        z = np.zeros(P)
        scales = np.zeros(ncomp)
        seen = np.zeros(P, dtype=np.bool_)
        buf = np.empty(P)
        sr = np.zeros((ncomp, P))
        has = np.zeros(P, dtype=np.bool_)
        for c in range(ncomp):
            nb = 0
            for p in range(P):
                has[p] = False
                if not finite[px, p] or w[px, p] <= 0.0 or np.isnan(res[c, px, p]):
                    continue
                inv_w = 1.0 / w[px, p]
                vf = inv_w - q[px, p] if valid[px, p] else inv_w + q[px, p]
                if vf <= 1e-6 * inv_w:
                    continue  # the fit must reproduce this pair exactly: its residual tells nothing
                sr[c, p] = res[c, px, p] / np.sqrt(vf)
                has[p] = True
                if valid[px, p]:
                    buf[nb] = abs(sr[c, p])
                    nb += 1
            if nb == 0:
                continue
            scale = 1.4826 * median(buf[:nb])
            if scale <= 0.0:
                continue  # exact fit of the used pairs: no scale to judge the others by
            scales[c] = scale
            for p in range(P):
                seen[p] = seen[p] or has[p]
                zz = abs(sr[c, p]) / scale
                if zz > z[p]:
                    z[p] = zz
        use = np.empty(P, dtype=np.bool_)
        nfin = 0
        for p in range(P):
            use[p] = finite[px, p] and w[px, p] > 0.0
            if finite[px, p]:
                nfin += 1
        select_flags(pi, pj, t, lam, max_gap, z, use.copy(), int(np.floor(max_fraction * nfin)), threshold,
                     out_flag[px])  # fmt: skip
        out_left[px] = _left_in(z, use, out_flag[px], threshold) or _hangs_on_one_pair(
            pi, pj, t, lam, max_gap, use, seen, out_flag[px]
        )
        if flag_dates:
            ambiguous_dates(pj, res[:, px, :], w[px], scales, seen, z, threshold, date_ptr, date_pair,
                            out_date[px])  # fmt: skip
        else:
            out_date[px, :] = False


@njit(cache=True, nogil=True)
def ambiguous_dates(pj, r, w_row, scale, seen, z, threshold, date_ptr, date_pair, out_date):
    """Dates whose outlier pairs back another value of the date as much as the others back the fitted one.

    For date k, a pair p with a standardised residual (``seen``) implies that the date should move by
    ``+r[:, p]`` when k is its secondary date, ``-r[:, p]`` when k is its reference. ``S`` pairs have
    ``z <= threshold`` (they back the fitted value); among the others, ``A`` is the largest number whose
    implied moves agree with one of them: differ by at most ``threshold * scale * sqrt(1/w_p + 1/w_q)`` in
    every component. The date is flagged when ``A >= max(S, 1)``: its pairs are as much for another value
    as for the fitted one (half of them shifted the same way, two pairs that disagree, or most of them
    erratic).

    ``r`` (ncomp, P) residuals; ``w_row`` (P,) weights; ``scale`` (ncomp,) unit-weight sigmas; ``z`` (P,)
    standardised residual (largest component); ``date_ptr`` (n + 1,) and ``date_pair`` (2P,) list the pairs
    of each date; ``out_date`` (n,) bool is written.
    """
    ncomp = r.shape[0]
    n = out_date.size
    cand = np.empty(date_pair.size, dtype=np.int64)
    for k in range(n):
        out_date[k] = False
        support = 0
        nc = 0
        for e in range(date_ptr[k], date_ptr[k + 1]):
            p = date_pair[e]
            if not seen[p]:
                continue
            if z[p] > threshold:
                cand[nc] = p
                nc += 1
            else:
                support += 1
        if nc == 0 or nc < support:
            continue
        best = 0
        for a in range(nc):
            pa = cand[a]
            sa = 1.0 if pj[pa] == k else -1.0
            agree = 0
            for b in range(nc):
                pb = cand[b]
                sb = 1.0 if pj[pb] == k else -1.0
                tol = threshold * np.sqrt(1.0 / w_row[pa] + 1.0 / w_row[pb])
                ok = True
                for c in range(ncomp):
                    if abs(sa * r[c, pa] - sb * r[c, pb]) > tol * scale[c]:
                        ok = False
                        break
                if ok:
                    agree += 1
            best = max(best, agree)
        out_date[k] = best >= max(support, 1)


@njit(cache=True, nogil=True)
def _mix(x):
    """splitmix64 of ``x`` (uint64), its top 52 bits: a reproducible pseudo-random label, exact as a float64
    (:func:`judgeable` sorts the labels as float64, whose sort other kernels compile already)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) >> np.uint64(12)


@njit(cache=True, nogil=True)
def cut_labels(pi, pj, use, t, lam, max_gap):
    """Labels of the links of the network that show its cuts of one and of two links.

    The links are those of :func:`~geodeform.timeseries._kernels.linked`: the usable pairs, then (with
    smoothing) the ``n - 1`` intervals between consecutive dates that the smoothing may bridge. Each link
    outside a spanning forest gets a pseudo-random 52-bit label, each forest link the XOR of the labels of
    the links that span it. A link whose removal splits its part of the network (a bridge) gets 0; two
    links share a non-zero label exactly when removing both splits it (up to 52-bit collisions).

    Returns the labels ``(P + n - 1,)`` or ``(P,)`` uint64 (0 for links not in use) and the links in use.
    """
    n = t.size
    P = pi.size
    nint = n - 1 if lam > 0.0 else 0
    ne = P + nint
    eu = np.empty(ne, dtype=np.int64)
    ev = np.empty(ne, dtype=np.int64)
    ok = np.zeros(ne, dtype=np.bool_)
    for p in range(P):
        eu[p], ev[p], ok[p] = pi[p], pj[p], use[p] and pi[p] != pj[p]
    for k in range(nint):
        eu[P + k], ev[P + k], ok[P + k] = k, k + 1, t[k + 1] - t[k] <= max_gap
    ptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(ne):
        if ok[e]:
            ptr[eu[e] + 1] += 1
            ptr[ev[e] + 1] += 1
    for k in range(n):
        ptr[k + 1] += ptr[k]
    fill = ptr[:n].copy()
    adj = np.empty(ptr[n], dtype=np.int64)
    for e in range(ne):
        if ok[e]:
            adj[fill[eu[e]]] = e
            fill[eu[e]] += 1
            adj[fill[ev[e]]] = e
            fill[ev[e]] += 1
    # breadth-first spanning forest
    up = np.full(n, -1, dtype=np.int64)  # link to the parent date
    seen = np.zeros(n, dtype=np.bool_)
    tree = np.zeros(ne, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    head = tail = 0
    for root in range(n):
        if seen[root]:
            continue
        seen[root] = True
        order[tail] = root
        tail += 1
        while head < tail:
            a = order[head]
            head += 1
            for k in range(ptr[a], ptr[a + 1]):
                e = adj[k]
                b = ev[e] if eu[e] == a else eu[e]
                if not seen[b]:
                    seen[b] = True
                    up[b] = e
                    tree[e] = True
                    order[tail] = b
                    tail += 1
    acc = np.zeros(n, dtype=np.uint64)
    label = np.zeros(ne, dtype=np.uint64)
    for e in range(ne):
        if ok[e] and not tree[e]:
            label[e] = _mix(np.uint64(e + 1))
            acc[eu[e]] ^= label[e]
            acc[ev[e]] ^= label[e]
    for r in range(n - 1, -1, -1):
        b = order[r]
        e = up[b]
        if e >= 0:
            label[e] = acc[b]
            a = ev[e] if eu[e] == b else eu[e]
            acc[a] ^= acc[b]
    for e in range(ne):
        if not ok[e]:
            label[e] = np.uint64(0)
    return label, ok


@njit(cache=True, nogil=True)
def judgeable(pi, pj, use, t, lam, max_gap):
    """Usable pairs whose residual can tell whether they are wrong: in no cut of one or two links.

    A pair whose removal cuts dates off the network is reproduced exactly by the fit (no residual), and so
    is the other pair of a cut of two once one of them is left out (e.g. the two pairs of an end date, or
    the two pairs that alone link two parts of the network): the fit cannot tell which of the two holds an
    error, so neither may be judged an outlier (:func:`cut_labels`).
    """
    P = pi.size
    label, ok = cut_labels(pi, pj, use, t, lam, max_gap)
    out = np.zeros(P, dtype=np.bool_)
    # a pair is alone when its label occurs once among the links in use: the labels (52 bits, exact as
    # float64) in order by np.argsort of float64, whose quicksort the other kernels compile already
    m = 0
    for e in range(label.size):
        m += ok[e]
    keys = np.empty(m)
    link = np.empty(m, dtype=np.int64)
    m = 0
    for e in range(label.size):
        if ok[e]:
            keys[m] = np.float64(label[e])
            link[m] = e
            m += 1
    order = np.argsort(keys)
    a = 0
    while a < m:
        b = a + 1
        while b < m and keys[order[b]] == keys[order[a]]:
            b += 1
        e = link[order[a]]
        if b - a == 1 and e < P and label[e] != np.uint64(0):
            out[e] = True
        a = b
    return out


@njit(cache=True, nogil=True)
def select_flags(pi, pj, t, lam, max_gap, z, use, cap, threshold, out_row):
    """Flag the usable pairs with ``z > threshold``, largest first, at most ``cap``, never cutting dates off.

    ``use`` (P,) bool marks the pairs the fit may use (it is modified); ``out_row`` (P,) bool is written.
    A candidate whose removal would leave fewer dates linked to date 0 (through the remaining usable pairs
    and, with smoothing, bridgeable intervals) than with all usable pairs is kept, and so is one that the
    network cannot judge (:func:`judgeable`: e.g. one of the two pairs of an end date).
    """
    P = z.size
    ncand = 0
    for p in range(P):
        out_row[p] = False
        if use[p] and z[p] > threshold:
            ncand += 1
    if cap <= 0 or ncand == 0:
        return
    ok = judgeable(pi, pj, use, t, lam, max_gap)
    z = z.copy()
    ncand = 0
    for p in range(P):
        if use[p] and z[p] > threshold and not ok[p]:
            z[p] = threshold  # kept: its residual cannot say whether it or its twin is wrong
        elif use[p] and z[p] > threshold:
            ncand += 1
    if ncand == 0:
        return
    full = _n_reachable(pi, pj, use, t, lam, max_gap)
    # Usual case: dropping the (at most cap) largest candidates at once keeps the network whole, and so
    # would dropping them one by one: no pair-by-pair check.
    kept = use.copy()
    idx = np.argsort(-z) if ncand > cap else np.arange(P)
    ndrop = 0
    for r in range(P):
        p = idx[r]
        if ndrop < cap and use[p] and z[p] > threshold:
            kept[p] = False
            ndrop += 1
    if _n_reachable(pi, pj, kept, t, lam, max_gap) == full:
        for p in range(P):
            out_row[p] = use[p] and not kept[p]
        return
    if ncand <= cap:
        idx = np.argsort(-z)
    nflag = 0
    for r in range(P):
        p = idx[r]
        if z[p] <= threshold or nflag >= cap:
            break
        if not use[p]:
            continue
        use[p] = False
        if _n_reachable(pi, pj, use, t, lam, max_gap) < full:
            use[p] = True  # the only link left for some dates: keep it
            continue
        out_row[p] = True
        nflag += 1


@njit(cache=True, nogil=True)
def _hangs_on_one_pair(pi, pj, t, lam, max_gap, use, seen, flagged):
    """Whether a flagged pair links two parts of the network that only one kept pair links otherwise.

    The kept pair is then reproduced exactly by the fit (it has no residual: not ``seen``), so nothing says
    whether it or the flagged one is right: the offset between the two parts is ambiguous.
    """
    P = pi.size
    nflag = 0
    for p in range(P):
        if flagged[p]:
            nflag += 1
    if nflag == 0:
        return False
    kept = np.empty(P, dtype=np.bool_)
    for p in range(P):
        kept[p] = use[p] and not flagged[p]
    for b in range(P):
        if not kept[b] or seen[b]:
            continue
        kept[b] = False
        parent = linked(pi, pj, kept, t, lam, max_gap)
        kept[b] = True
        for p in range(P):
            if flagged[p] and find_root(parent, pi[p]) != find_root(parent, pj[p]):
                return True
    return False


@njit(cache=True, nogil=True)
def _left_in(z, use, flagged, threshold):
    """Whether a usable pair above ``threshold`` was not flagged (kept by the cap or for connectivity)."""
    for p in range(z.size):
        if use[p] and z[p] > threshold and not flagged[p]:
            return True
    return False
