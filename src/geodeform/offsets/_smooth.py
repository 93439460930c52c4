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

How: the normal equations of every window come from its moments (Σ w·a^p·b^q, Σ w·v·a^p·b^q, Σ w·v²,
a and b the row and column offsets from the node, w = 1/σ², 0 at invalid nodes), summed once per row of
nodes as column sums (over the rows of each window shape) and then column ranges, in the node's own
offsets (no prefix sums of absolute coordinates, whose differences would cancel digits) and with the
values about the field's mean (no digits lost in χ² on large offsets). The solves (LDLᵀ, the constant
last) run along blocks of nodes of a row; the window choice and fusion node by node. The fused value's
variance is that of its linear filter, Σ_{d,e} share_d share_e z_dᵀ M(W_d ∩ W_e) z_e, from the moments of
the shapes' intersections (z_d = M_d⁻¹ e0: shape d's equivalent kernel).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import run_chunks
from geodeform.offsets._grid import PlaneFit

__all__ = ["adaptive_poly_nodes"]

_BLOCK = 64  # nodes of a row done together: window sums and solves run along them (SIMD lanes)
_SRC_W, _SRC_Y, _SRC_X, _SRC_V, _SRC_N = range(5)  # source planes: w, w·dy, w·dx, w·(dy² + dx²), valid
_OUT = 8  # per window and node: ok, value y, value x, variance, χ², slope y, slope x, slope variance; z


class _Tables(NamedTuple):
    """Index tables of one polynomial degree (:func:`_tables`): which sums make which normal equations."""

    vsrc: npt.NDArray[np.int64]  #: per column sum h (Σ_a a^p f(i + a, ·)): the source plane f
    vp: npt.NDArray[np.int64]  #: ... and the row power p
    mv: npt.NDArray[np.int64]  #: per window moment m (Σ_b b^q of a column sum): the column sum h
    mq: npt.NDArray[np.int64]  #: ... and the column power q
    nw: int  #: the first ``nw`` moments are w's (the normal matrix's)
    widx: npt.NDArray[np.int64]  #: (npar, npar): the moment of the normal matrix's entry (k, l)
    yidx: npt.NDArray[np.int64]  #: (npar,): the moment of Σ w·dy·φ_k
    xidx: npt.NDArray[np.int64]  #: (npar,): the moment of Σ w·dx·φ_k
    vidx: int  #: the moment Σ w·(dy² + dx²)
    nidx: int  #: the moment Σ valid (node count)
    perm: npt.NDArray[
        np.int64
    ]  #: (2, npar): the basis in solve order (slope along rows / columns second last)


@functools.cache
def _tables(degree: int) -> _Tables:
    """Tables of the moments a polynomial of ``degree`` (1 or 2) needs, basis (1, a, b, a², ab, b²) in
    row (a) and column (b) offsets from the node: w·a^p·b^q up to total degree 2·degree, (w·dy, w·dx)·a^p·b^q
    up to ``degree``, w·(dy² + dx²) and the count."""
    basis = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)][: 3 if degree == 1 else 6]
    sums = [(_SRC_W, p) for p in range(2 * degree + 1)]
    sums += [(s, p) for s in (_SRC_Y, _SRC_X) for p in range(degree + 1)]
    sums += [(_SRC_V, 0), (_SRC_N, 0)]
    moms = [(_SRC_W, p, t - p) for t in range(2 * degree + 1) for p in range(t, -1, -1)]
    moms += [(s, p, t - p) for s in (_SRC_Y, _SRC_X) for t in range(degree + 1) for p in range(t, -1, -1)]
    moms += [(_SRC_V, 0, 0), (_SRC_N, 0, 0)]
    where = {m: k for k, m in enumerate(moms)}
    npar = len(basis)
    lead = list(range(3, npar))
    return _Tables(
        vsrc=np.array([s for s, _ in sums], np.int64),
        vp=np.array([p for _, p in sums], np.int64),
        mv=np.array([sums.index((s, p)) for s, p, _ in moms], np.int64),
        mq=np.array([q for *_, q in moms], np.int64),
        nw=sum(1 for m in moms if m[0] == _SRC_W),
        widx=np.array([[where[_SRC_W, pk + pl, qk + ql] for pl, ql in basis] for pk, qk in basis], np.int64),
        yidx=np.array([where[_SRC_Y, p, q] for p, q in basis], np.int64),
        xidx=np.array([where[_SRC_X, p, q] for p, q in basis], np.int64),
        vidx=where[_SRC_V, 0, 0],
        nidx=where[_SRC_N, 0, 0],
        perm=np.array([[*lead, 2, 1, 0], [*lead, 1, 2, 0]], np.int64),
    )


@nb.njit(cache=True, nogil=True)
def _column_sums(src, i, j0, nu, radii, vsrc, vp, out, up, down):
    """``out[s, h, u]`` = Σ_a a^p f(i + a, j0 + u - R) over the rows a of row sum s (0 the node's row,
    1 + 3k rows -r..r, 2 + 3k rows -r..0, 3 + 3k rows 0..r for r = radii[k]), for the sums h = (f, p) of
    ``vsrc``/``vp`` and u < ``nu``; ``src`` is padded by R = radii[-1] zeros."""
    big = radii[-1]
    for h in range(vsrc.size):
        row = src[vsrc[h], i + big]
        keep = 1.0 if vp[h] == 0 else 0.0
        for u in range(nu):
            out[0, h, u] = keep * row[j0 + u]
            up[h, u] = 0.0
            down[h, u] = 0.0
    k = 0
    for a in range(1, big + 1):
        for h in range(vsrc.size):
            cd = float(a) ** vp[h]
            cu = float(-a) ** vp[h]
            ru = src[vsrc[h], i + big - a]
            rd = src[vsrc[h], i + big + a]
            for u in range(nu):
                up[h, u] += cu * ru[j0 + u]
                down[h, u] += cd * rd[j0 + u]
        while k < radii.size and radii[k] == a:
            for h in range(vsrc.size):
                for u in range(nu):
                    c = out[0, h, u]
                    out[1 + 3 * k, h, u] = up[h, u] + c + down[h, u]
                    out[2 + 3 * k, h, u] = up[h, u] + c
                    out[3 + 3 * k, h, u] = c + down[h, u]
            k += 1


@nb.njit(cache=True, nogil=True)
def _column_ranges(cols, rs, r, n, big, mv, mq, nmom, nlr, out, dest, scratch):
    """Window moments ``out[win, m, t]`` = Σ_b b^q · cols[rs, h, t + big + b] of the row sum ``rs`` over
    the columns b = -r..r (window ``dest[0]``), -r..0 (``dest[1]``), 0..r (``dest[2]``) and 0 (``dest[3]``):
    one pass over the columns for the first ``nmom`` moments (h, q), of which the first ``nlr`` for the
    last three windows; -1: no window."""
    both, left, right, centre = dest[0], dest[1], dest[2], dest[3]
    lp = scratch[0, :n]
    rp = scratch[1, :n]
    for m in range(nmom):
        h = mv[m]
        q = mq[m]
        base = cols[rs, h]
        for t in range(n):
            lp[t] = 0.0
            rp[t] = 0.0
        for b in range(1, r + 1):
            cl = float(-b) ** q
            cr = float(b) ** q
            sl = base[big - b : big - b + n]
            sr = base[big + b : big + b + n]
            for t in range(n):
                lp[t] += cl * sl[t]
                rp[t] += cr * sr[t]
        kc = 1.0 if q == 0 else 0.0
        cen = base[big : big + n]
        if both >= 0:
            o = out[both, m, :n]
            for t in range(n):
                o[t] = lp[t] + kc * cen[t] + rp[t]
        if left >= 0 and m < nlr:
            o = out[left, m, :n]
            for t in range(n):
                o[t] = lp[t] + kc * cen[t]
        if right >= 0 and m < nlr:
            o = out[right, m, :n]
            for t in range(n):
                o[t] = kc * cen[t] + rp[t]
        if centre >= 0 and m < nlr:
            o = out[centre, m, :n]
            for t in range(n):
                o[t] = kc * cen[t]


def _plan(nk: int, shapes: int) -> npt.NDArray[np.int64]:
    """The passes of :func:`_column_ranges`: per pass (row sum, radius index, all moments (1) or w's (0),
    then the windows -r..r, -r..0, 0..r, 0; -1: none; the last three take all moments from row sum 1 + 3k
    (rows -r..r), w's from the others). Window ``d·K + k`` is
    shape d (0 centred, 1 rows -r..0, 2 rows 0..r, 3 columns -r..0, 4 columns 0..r) at radius r = radii[k]
    (K radii); with 5 shapes, the intersections of two shapes the fused variance needs follow (w's
    moments): 5K + k row 0 (columns -r..r), 6K + k column 0 (rows -r..r), then the quadrants rows -r..0 /
    0..r × columns -r..0 / 0..r (7K + k: --, 8K: -+, 9K: +-, 10K: ++)."""
    rows = []
    for k in range(nk):
        if shapes == 1:
            rows.append((1 + 3 * k, k, 1, k, -1, -1, -1))
            continue
        rows += [
            (1 + 3 * k, k, 1, k, 3 * nk + k, 4 * nk + k, 6 * nk + k),
            (2 + 3 * k, k, 1, nk + k, 7 * nk + k, 8 * nk + k, -1),
            (3 + 3 * k, k, 1, 2 * nk + k, 9 * nk + k, 10 * nk + k, -1),
            (0, k, 0, 5 * nk + k, -1, -1, -1),
        ]
    return np.array(rows, np.int64)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _solve(mom, n, npar, perm, tab, nmin, out, work):
    """Weighted least squares of the windows of ``n`` nodes from their moments (``mom[m, t]``), by LDLᵀ of
    the normal matrix with the basis in the order ``perm`` (its last: the constant, so the centre value,
    its variance and χ² need no back substitution). Writes per node t into ``out[:, t]``: ok (enough
    nodes, every pivot > 1e-9 of its diagonal entry), value dy, value dx, variance of the value (per
    component, up to the caller's factor), χ² per degree of freedom, slopes dy and dx along the basis
    ``perm[-2]``, their variance, and z = M⁻¹ e0 in the basis order (the window's equivalent kernel)."""
    tab_w, tab_y, tab_x, vidx, nidx = tab[5], tab[6], tab[7], tab[8], tab[9]
    low, low_d, vecs = work
    inv, fy, fx = vecs[0], vecs[1], vecs[2]
    last = npar - 1
    for t in range(n):
        out[0, t] = 1.0 if mom[nidx, t] >= nmin else 0.0
        out[4, t] = 0.0
    for k in range(npar):
        for col in range(k + 1):
            e = tab_w[perm[k], perm[col]]
            for t in range(n):
                fy[0, t] = mom[e, t]
            for m in range(col):
                for t in range(n):
                    fy[0, t] -= low_d[k, m, t] * low[col, m, t]
            if col < k:
                for t in range(n):
                    low_d[k, col, t] = fy[0, t]
                    low[k, col, t] = fy[0, t] * inv[col, t]
            else:
                for t in range(n):
                    s = fy[0, t]
                    out[0, t] = out[0, t] if s > 1e-9 * mom[e, t] else 0.0
                    inv[k, t] = 1.0 / s
    for k in range(npar):  # forward substitution; bᵀM⁻¹b = Σ (L⁻¹b)_k² / D_k
        ey = tab_y[perm[k]]
        ex = tab_x[perm[k]]
        for t in range(n):
            fy[k, t] = mom[ey, t]
            fx[k, t] = mom[ex, t]
        for m in range(k):
            for t in range(n):
                fy[k, t] -= low[k, m, t] * fy[m, t]
                fx[k, t] -= low[k, m, t] * fx[m, t]
        for t in range(n):
            out[4, t] += (fy[k, t] * fy[k, t] + fx[k, t] * fx[k, t]) * inv[k, t]
    ax = last - 1
    for t in range(n):
        vy = fy[last, t] * inv[last, t]
        vx = fx[last, t] * inv[last, t]
        out[1, t] = vy
        out[2, t] = vx
        out[3, t] = 0.5 * inv[last, t]
        dof = max(2.0 * mom[nidx, t] - 2.0 * npar, 1.0)
        out[4, t] = 2.0 * (mom[vidx, t] - out[4, t]) / dof
        out[5, t] = fy[ax, t] * inv[ax, t] - low[last, ax, t] * vy
        out[6, t] = fx[ax, t] * inv[ax, t] - low[last, ax, t] * vx
        out[7, t] = 0.5 * (inv[ax, t] + low[last, ax, t] * low[last, ax, t] * inv[last, t])
        out[_OUT + perm[last], t] = inv[last, t]
    for k in range(last - 1, -1, -1):  # z = M⁻¹ e0: Lᵀ z = e0 / D0 (e0 last in the solve order)
        row = out[_OUT + perm[k]]
        for t in range(n):
            row[t] = 0.0
        for m in range(k + 1, npar):
            zm = out[_OUT + perm[m]]
            for t in range(n):
                row[t] -= low[m, k, t] * zm[t]


@nb.njit(cache=True, nogil=True)
def _poly_rows(lo, hi, src, field, radii, inflation, opts, npar, shapes, tab, plan, out):
    """Rows ``lo <= i < hi`` of :func:`adaptive_poly_nodes` (a chunk of ``run_chunks``), in blocks of
    ``_BLOCK`` nodes along the row: column sums, window moments and solves for the whole block, then the
    window choice and fusion node by node (:func:`_choose`). ``field``: (dy, dx, sigma); ``opts``:
    (gamma, max χ², σ floor, kink, reference dy, reference dx)."""
    vsrc, vp, mv, mq, nw, widx = tab[:6]
    perm = tab[10]
    dy, dx, sigma = field
    big = radii[-1]
    nc = src.shape[2] - 2 * big
    nk = radii.size
    nmain = shapes * nk
    cols = np.empty((1 + 3 * nk, vsrc.size, _BLOCK + 2 * big))
    scratch = np.empty((2, vsrc.size, _BLOCK + 2 * big))
    moms = np.empty((11 * nk if shapes > 1 else nk, mv.size, _BLOCK))
    res = np.empty((nmain, _OUT + npar, _BLOCK))
    work = (np.zeros((npar, npar, _BLOCK)), np.zeros((npar, npar, _BLOCK)), np.empty((3, npar, _BLOCK)))
    est = np.zeros((5, 7 + npar))  # per shape: value y, x, variance, χ², slope y, x, slope variance; z
    kept = np.zeros((3, 5), np.int64)  # per shape: radius index kept, radius kept
    wts = np.zeros((2, 5))  # per shape: weight, chip-overlap factor
    for i in range(lo, hi):
        valid = src[_SRC_N, i + big]
        for j0 in range(0, nc, _BLOCK):
            n = min(_BLOCK, nc - j0)
            if not valid[j0 + big : j0 + big + n].any():
                continue
            _column_sums(src, i, j0, n + 2 * big, radii, vsrc, vp, cols, scratch[0], scratch[1])
            for p in range(plan.shape[0]):
                nmom = mv.size if plan[p, 2] else nw
                nlr = mv.size if plan[p, 0] % 3 == 1 else nw
                r = radii[plan[p, 1]]
                _column_ranges(cols, plan[p, 0], r, n, big, mv, mq, nmom, nlr, moms, plan[p, 3:], scratch[0])
            for w in range(nmain):
                d = w // nk
                r = radii[w % nk]
                cells = (2 * r + 1) * (2 * r + 1 if d == 0 else r + 1)
                order = perm[0] if d < 3 else perm[1]  # a half-window's own direction last but one
                if npar > 3 and d > 0 and r < 2:  # a one-sided quadratic needs three rows / columns
                    res[w, 0, :n] = 0.0
                    continue
                _solve(moms[w], n, npar, order, tab, max(npar + 3, cells // 2), res[w], work)
                for t in range(n):
                    res[w, 1, t] += opts[4]
                    res[w, 2, t] += opts[5]
            for t in range(n):
                j = j0 + t
                if valid[j + big] > 0.0:
                    node = (dy[i, j], dx[i, j], sigma[i, j])
                    _choose(
                        t,
                        node,
                        res,
                        moms,
                        radii,
                        inflation,
                        opts,
                        npar,
                        shapes,
                        widx,
                        est,
                        kept,
                        wts,
                        out,
                        (i, j),
                    )


@nb.njit(cache=True, nogil=True, inline="always")
def _choose(t, node, res, moms, radii, inflation, opts, npar, shapes, widx, est, kept, wts, out, at):
    """One node, (dy, dx, σ) ``node``, lane ``t`` of the block's window fits ``res``: per shape, the largest
    radius the ICI rule and the χ² test accept; the estimates fused by inverse variance (or, with a kink
    ``opts[3]``, the half-window of the kink's side); (dy, dx, 1-σ vector error, radius) into ``out`` at
    the node ``at``."""
    gamma, max_chi2, floor, kink = opts[0], opts[1], opts[2], opts[3]
    y0, x0, s0 = node
    nk = radii.size
    own_v = 0.5 * max(s0, floor) ** 2
    sw = 0.0
    swy = 0.0
    swx = 0.0
    used = 0
    for d in range(shapes):
        best_y, best_x, best_v = y0, x0, own_v
        half = gamma * math.sqrt(best_v)
        lo_y, hi_y, lo_x, hi_x = best_y - half, best_y + half, best_x - half, best_x + half
        r_d = 0
        for c in range(3, 7):
            est[d, c] = 0.0
        for k in range(nk):
            r = radii[k]
            w = d * nk + k
            if res[w, 0, t] == 0.0:
                if npar > 3 and d > 0 and r < 2:
                    continue  # a one-sided quadratic needs three rows / columns
                break
            f_k = inflation[0 if d == 0 else 1, k]
            v = res[w, 3, t] * f_k
            half = gamma * math.sqrt(v)
            ly = max(lo_y, res[w, 1, t] - half)
            hy = min(hi_y, res[w, 1, t] + half)
            lx = max(lo_x, res[w, 2, t] - half)
            hx = min(hi_x, res[w, 2, t] + half)
            if v >= best_v:
                if npar > 3:
                    continue  # a quadratic's smallest windows are noisier than the node itself
                break
            if ly > hy or lx > hx or res[w, 4, t] > max_chi2:
                break
            lo_y, hi_y, lo_x, hi_x = ly, hy, lx, hx
            best_y, best_x, best_v = res[w, 1, t], res[w, 2, t], v
            r_d = r
            kept[0, d] = k
            wts[1, d] = f_k
            est[d, 3] = res[w, 4, t]
            est[d, 4] = res[w, 5, t]
            est[d, 5] = res[w, 6, t]
            est[d, 6] = res[w, 7, t] * f_k
        est[d, 0], est[d, 1], est[d, 2] = best_y, best_x, best_v
        wd = 1.0 / best_v
        kept[1, d] = r_d
        wts[0, d] = wd
        sw += wd
        swy += wd * best_y
        swx += wd * best_x
        used = max(used, r_d)
    out[0, at[0], at[1]] = swy / sw
    out[1, at[0], at[1]] = swx / sw
    out[3, at[0], at[1]] = used
    pick = _side_of_kink(est, kept[1], kink) if shapes == 5 and kink > 0 else -1
    if pick >= 0:
        out[0, at[0], at[1]] = est[pick, 0]
        out[1, at[0], at[1]] = est[pick, 1]
        out[2, at[0], at[1]] = math.sqrt(2.0 * est[pick, 2])
        out[3, at[0], at[1]] = kept[1, pick]
    elif shapes == 1:
        out[2, at[0], at[1]] = math.sqrt(2.0 / sw)
    else:
        # the shapes share nodes, so their errors are correlated: the fused value is one linear filter of
        # the nodes (the weighted sum of the shapes' equivalent kernels); its variance
        out[2, at[0], at[1]] = math.sqrt(
            _fused_variance(t, max(s0, floor), npar, res, moms, nk, kept, wts, sw, widx, est)
        )


@nb.njit(cache=True, nogil=True, inline="always")
def _fused_variance(t, s0, npar, res, moms, nk, kept, wts, sw, widx, zs):
    """Per-component variance ×2 of Σ_d share_d · (shape d's centre value) (share_d = ``wts[0, d] / sw``),
    the nodes' errors independent but for the chip-overlap factor (the shares' mean of the shapes'
    ``wts[1]``; 1 for a shape that kept the node alone, of floored error ``s0``).

    Shape d's value is Σ_c w_c φ(c)ᵀ z_d · v_c over its window W_d (z_d = M_d⁻¹ e0), or the node's own
    value where it kept no window (``kept[1, d]`` = 0); the variance of the fusion is Σ_{d,e} share_d share_e
    z_dᵀ M(W_d ∩ W_e) z_e (× ½ per component), where z_dᵀ M_d z_d = z_d[0] and the intersection of two
    shapes is one of the windows of :func:`_plan` (a shape or row 0, column 0, a quadrant at the
    smaller radius), whose w moments ``moms`` holds."""
    f = 0.0
    alone = 0.0  # the shares of the shapes that kept the node's own value
    for d in range(5):
        sd = wts[0, d] / sw
        f += sd * (wts[1, d] if kept[1, d] > 0 else 1.0)
        if kept[1, d] == 0:
            alone += sd
    var = alone * alone * s0 * s0
    for d in range(5):
        for p in range(npar):
            zs[d, 7 + p] = res[d * nk + kept[0, d], _OUT + p, t] if kept[1, d] > 0 else 0.0
    for d in range(5):
        if kept[1, d] == 0:
            continue
        sd = wts[0, d] / sw
        var += sd * (sd + 2.0 * alone) * zs[d, 7]
        for e in range(d + 1, 5):
            if kept[1, e] == 0:
                continue
            k = min(kept[0, d], kept[0, e])
            if d == 0 and k == kept[0, e]:  # W_e ⊂ W_0: z_0ᵀ M_e z_e = z_0ᵀ e0
                q = zs[0, 7]
            elif d == 0:  # W_0 ∩ W_e is shape e at W_0's radius
                q = _form(zs, 0, e, moms, e * nk + k, widx, npar, t)
            else:  # (1, 2) row 0, (3, 4) column 0, (1, 3) (1, 4) (2, 3) (2, 4) the quadrants
                win = 5 * nk + nk * (0 if d == 1 and e == 2 else 1 if d == 3 else 2 * d + e - 3) + k
                q = _form(zs, d, e, moms, win, widx, npar, t)
            var += 2.0 * sd * (wts[0, e] / sw) * q
    return var * f


@nb.njit(cache=True, nogil=True, inline="always")
def _form(zs, d, e, moms, win, widx, npar, t):
    """z_dᵀ M z_e (z in ``zs[:, 7:]``), M the normal matrix of window ``win`` (``moms[win, :, t]``)."""
    q = 0.0
    for p in range(npar):
        zdp = zs[d, 7 + p]
        zep = zs[e, 7 + p]
        q += zdp * zep * moms[win, widx[p, p], t]
        for l in range(p + 1, npar):
            q += (zdp * zs[e, 7 + l] + zep * zs[d, 7 + l]) * moms[win, widx[p, l], t]
    return q


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
    radii = np.asarray(radii, np.int64)
    if radii.size == 0 or radii[0] < 1 or (np.diff(radii) < 0).any():
        raise ValueError(f"smoothing radii must be positive and sorted, got {radii.tolist()}")
    npar = 3 if degree == 1 else 6
    shapes = 5 if sided else 1
    big = int(radii[-1])
    valid = np.isfinite(dy) & np.isfinite(dx) & np.isfinite(sigma)
    w = np.where(valid, 1.0 / np.maximum(np.where(valid, sigma, 1.0), floor) ** 2, 0.0)
    # values about their mean: the χ² (Σ w v² less the fit's share) loses no digits on large offsets
    ref = [float(np.mean(a[valid])) if valid.any() else 0.0 for a in (dy, dx)]
    y = np.where(valid, dy - ref[0], 0.0)
    x = np.where(valid, dx - ref[1], 0.0)
    src = np.zeros((5, dy.shape[0] + 2 * big, dy.shape[1] + 2 * big))
    inner = (slice(None), slice(big, big + dy.shape[0]), slice(big, big + dy.shape[1]))
    src[inner] = np.stack([w, w * y, w * x, w * (y * y + x * x), valid.astype(np.float64)])
    opts = (float(gamma), float(max_chi2), float(floor), float(kink), ref[0], ref[1])
    tab = tuple(_tables(degree))
    plan = _plan(radii.size, shapes)
    run_chunks(
        _poly_rows, dy.shape[0], src, (dy, dx, sigma), radii, inflation, opts, npar, shapes, tab, plan, out
    )
    return PlaneFit(out[0], out[1], out[2], out[3])
