"""Two-motion fit: two translations split by a straight boundary inside one chip (numba kernels).

A chip that straddles a displacement discontinuity (a fault, a calving front, a landslide scarp) measures a
blend of both sides with one translation. Here the chip is split by the straight line that best separates
the pixels following motion A from those following motion B, each side's motion is refined on its own
pixels, and the node takes the motion of the side holding its centre. The ``ncc`` matcher keeps a fit only
where it is clearly a step (:func:`two_motion_accept`).

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels. Boundary lines are t = (row - cr) cos θ + (col - cc) sin θ = ρ, with
(cr, cc) the chip centre.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import median
from geodeform.offsets._common import each_node
from geodeform.offsets._layout import (
    DX,
    DY,
    FAST,
    LK_PAD,
    MASKED,
    NOT_CONVERGED,
    OK,
    OUTSIDE,
    REASON,
    REFINE_COLS,
    SIGMA,
    SIGMA_CALIBRATION,
    TEXTURELESS,
    TWO_A_DX,
    TWO_A_DY,
    TWO_B_DX,
    TWO_B_DY,
    TWO_CENTRE_DIST,
    TWO_COLS,
    TWO_DX,
    TWO_DY,
    TWO_RATIO,
    TWO_REASON,
    TWO_RHO,
    TWO_SHARP_NEAR,
    TWO_SHARPNESS,
    TWO_SIGMA,
    TWO_THETA,
    TWO_ZNCC,
    ZNCC,
    Spline,
)
from geodeform.offsets._refine import (
    GaussNewton,
    accelerated,
    bspline3_weights,
    interp_chip,
    lk_refine_node,
    lk_scratch,
    spline_rows,
)
from geodeform.offsets._search import valid_count, window_all_valid

__all__ = [
    "Motions",
    "TwoMotionParams",
    "two_motion_accept",
    "two_motion_node",
    "two_motion_nodes",
    "two_motion_reach",
    "two_motion_starts",
]


class TwoMotionParams(NamedTuple):
    """Settings of :func:`two_motion_node` (numba reads them as one argument).

    Attributes
    ----------
    n_iter : int
        Rounds of boundary fit + side refinement after the first boundary.
    guard : float
        Pixels closer than this to the boundary (px) are left out of the side refinements.
    early_ratio : float
        Stop early when the first split leaves more than this share of the one-motion residual energy.
    early_sharp : float
        Stop early when the first split's sharpness is below this.
    reach_r, reach_c : float
        Stop early (NaN ratio) when the boundary lies farther from the chip centre than
        reach_r |cos θ| + reach_c |sin θ| + 2 px.
    """

    n_iter: int
    guard: float
    early_ratio: float
    early_sharp: float
    reach_r: float
    reach_c: float


class Motions(NamedTuple):
    """Candidate motions A and B per node (px), NaN where fewer than two neighbours are valid."""

    a_dy: npt.NDArray[np.float64]
    a_dx: npt.NDArray[np.float64]
    b_dy: npt.NDArray[np.float64]
    b_dx: npt.NDArray[np.float64]


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _residual_map(sp, r0, c0, h, w, d_r, d_c, wr, wc, hb, e, valid, full):
    """Gain/offset-normalised residuals e = (R - mean R) - gain (S(p + d) - mean S) over the chip.

    Without ``full`` (every pixel of both images valid), ``valid`` (h, w) is and-ed with the pixels where
    both images are valid at ``d``; invalid residuals are 0. Returns False when the secondary window
    leaves the strip or the chip has no variance.
    """
    ref, rvalid, coef, tvalid = sp.ref, sp.valid, sp.coef, sp.taps_valid
    Hh, Ww = coef.shape
    ir = math.floor(d_r)
    ic = math.floor(d_c)
    bspline3_weights(d_r - ir, wr)
    bspline3_weights(d_c - ic, wc)
    br = r0 + ir - 1 + LK_PAD
    bc = c0 + ic - 1 + LK_PAD
    if br < 0 or bc < 0 or br + h + 3 > Hh or bc + w + 3 > Ww:
        return False
    if full:
        full = window_all_valid(tvalid, br, bc, h, w)
    n = 0.0
    sr = 0.0
    ss = 0.0
    srr = 0.0
    sss = 0.0
    interp_chip(coef, br, wr, wc, bc, h, w, hb, e)
    for i in range(h):
        rrow = ref[r0 + i, c0 : c0 + w]
        erow = e[i]
        if full:
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            a4 = np.float32(0.0)
            for j in range(w):
                r = rrow[j]
                s = erow[j]
                a1 += r
                a2 += s
                a3 += r * r
                a4 += s * s
            n += w
            sr += a1
            ss += a2
            srr += a3
            sss += a4
        else:
            vrow = valid[i]
            rvrow = rvalid[r0 + i, c0 : c0 + w]
            tvrow = tvalid[br + i, bc : bc + w]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            a4 = np.float32(0.0)
            for j in range(w):  # branch-free (0/1 factors): vectorised
                v = vrow[j] & (rvrow[j] != 0) & (tvrow[j] != 0)
                vrow[j] = v
                f = np.float32(v)
                r = rrow[j] * f
                s = erow[j] * f
                a0 += f
                a1 += r
                a2 += s
                a3 += r * r
                a4 += s * s
            n += a0
            sr += a1
            ss += a2
            srr += a3
            sss += a4
    if n < 16:
        return False
    mr = sr / n
    ms = ss / n
    vr = srr / n - mr * mr
    vs = sss / n - ms * ms
    if vr <= 0.0 or vs <= 0.0:
        return False
    gain = np.float32(math.sqrt(vr / vs))
    off = np.float32(mr - gain * ms)
    for i in range(h):
        rrow = ref[r0 + i, c0 : c0 + w]
        erow = e[i]
        vrow = valid[i]
        for j in range(w):
            erow[j] = (rrow[j] - gain * erow[j] - off) * vrow[j]
    return True


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _scan_lines(py, px, pd, npt, th0, th1, n_ang, lo, bw, nbins, orient, base, hist):
    """Best straight split of weighted points (py, px, pd) over angles [th0, th1] (``n_ang`` values,
    ends included) and offsets ρ = lo + k bw (k = 0..nbins); motion A takes orient · (t - ρ) < 0 and the
    cost is ``base`` + the sum of pd over A's points. orient = 0 tries both sides.
    Returns (cost, θ, ρ, orient)."""
    best = np.inf
    bth = th0
    brho = lo
    bor = 1.0
    ibw = 1.0 / bw
    idx = np.empty(npt, np.int32)
    for k in range(n_ang):
        th = th0 + (th1 - th0) * k / max(n_ang - 1, 1)
        ct = math.cos(th)
        st = math.sin(th)
        stride = nbins + 2
        for b in range(4 * stride):
            hist[b] = 0.0
        tot = 0.0
        top = nbins + 1.5
        off = -lo * ibw + 1.0
        cti = ct * ibw
        sti = st * ibw
        for q in range(npt):
            # bin 0: below lo, nbins + 1: above the last edge (branch-free clamp, vectorised)
            idx[q] = np.int32(min(max(py[q] * cti + px[q] * sti + off, 0.0), top))
        for q in range(npt):
            # 4 interleaved histograms: consecutive points rarely update the same memory
            hist[(q & 3) * stride + idx[q]] += pd[q]
            tot += pd[q]
        p = 0.0
        for m in range(nbins + 1):
            p += hist[m] + hist[stride + m] + hist[2 * stride + m] + hist[3 * stride + m]  # t < lo + m bw
            if orient >= 0.0 and base + p < best:
                best = base + p
                bth = th
                brho = lo + m * bw
                bor = 1.0
            if orient <= 0.0 and base + tot - p < best:
                best = base + tot - p
                bth = th
                brho = lo + m * bw
                bor = -1.0
    return best, bth, brho, bor


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _coarse_boundary(D, valid, h, w, py, px, pd, hist):
    """Every orientation (5° steps) and offset (1.5 px) of a straight boundary scanned on 3 × 3 pixel
    block sums of ``D``; see :func:`_fit_boundary`. Returns (cost, θ, ρ, orient)."""
    cr = (h - 1) / 2.0
    cc = (w - 1) / 2.0
    R = math.sqrt(cr * cr + cc * cc) + 1.0
    npt = np.int64(0)  # not the literal 0: _scan_lines is typed (and compiled) once per caller
    rs = np.empty(w, np.float32)
    for bi in range(0, h - 2, 3):
        for j in range(w):  # the block row's three rows summed first (vectorised)
            rs[j] = (
                D[bi, j] * valid[bi, j] + D[bi + 1, j] * valid[bi + 1, j] + D[bi + 2, j] * valid[bi + 2, j]
            )
        for bj in range(0, w - 2, 3):
            py[npt] = bi + 1.0 - cr
            px[npt] = bj + 1.0 - cc
            pd[npt] = rs[bj] + rs[bj + 1] + rs[bj + 2]
            npt += 1
    n_ang = np.int64(36)  # typed int64, not a literal: one compiled _scan_lines for both callers
    return _scan_lines(
        py, px, pd, npt, 0.0, math.pi * (1 - 1 / 36), n_ang, -R, 1.5, int(2 * R / 1.5) + 1, 0.0, 0.0, hist
    )


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _fit_boundary(D, valid, h, w, th, rho, orient, dth, n_ang, drho, bw, py, px, pd, hist):
    """Straight boundary minimising the sum of ``D`` over the pixels given to motion A, near a given one.

    Lines are t = (row - centre) cos θ + (col - centre) sin θ = ρ; motion A takes orient · (t - ρ) < 0.
    The scan covers θ ± dth (``n_ang`` angles), ρ ± drho (bins of ``bw``) on the pixels near the given
    line only: the others stay on one side for every candidate and add a constant. Returns
    (cost, θ, ρ, orient).
    """
    cr = (h - 1) / 2.0
    cc = (w - 1) / 2.0
    R = math.sqrt(cr * cr + cc * cc) + 1.0
    ct = math.cos(th)
    st = math.sin(th)
    margin = drho + R * math.sin(dth) + bw
    base = 0.0
    npt = np.int64(0)  # not the literal 0: _scan_lines is typed (and compiled) once per caller
    for i in range(h):
        yi = (i - cr) * ct - rho
        for j in range(w):
            if valid[i, j]:
                t = yi + (j - cc) * st
                if abs(t) < margin:
                    py[npt] = i - cr
                    px[npt] = j - cc
                    pd[npt] = D[i, j]
                    npt += 1
                elif orient * t < 0.0:
                    base += D[i, j]
    nb_ = int(2.0 * drho / bw + 0.5)
    n_ang = np.int64(n_ang)  # typed int64 (the callers pass literals): one compiled _scan_lines
    return _scan_lines(py, px, pd, npt, th - dth, th + dth, n_ang, rho - drho, bw, nb_, orient, base, hist)


@nb.njit(cache=True, nogil=True)
def _side_weights(valid, h, w, th, rho, orient, guard, wa, wb):
    """Weights of the pixels on each side of the boundary, ``guard`` px away from it."""
    cr = (h - 1) / 2.0
    cc = (w - 1) / 2.0
    ct = math.cos(th)
    st = math.sin(th)
    na = 0.0
    nb_ = 0.0
    for i in range(h):
        yi = (i - cr) * ct - rho
        arow = wa[i]
        brow = wb[i]
        vrow = valid[i]
        ca = np.float32(0.0)
        cb = np.float32(0.0)
        for j in range(w):
            u = orient * (yi + (j - cc) * st)
            v = np.float32(vrow[j])
            arow[j] = np.float32(u < -guard) * v
            brow[j] = np.float32(u > guard) * v
            ca += arow[j]
            cb += brow[j]
        na += ca
        nb_ += cb
    return na, nb_


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _masked_gn(sp, r0, c0, h, w, m, d_r, d_c, gn, out):
    """Translation refined on the pixels weighted by ``m`` (h, w) only: :func:`lk_refine_node`'s
    gain/offset-invariant Gauss-Newton without its strain moments, for chips whose pixels are all valid.
    Falls back to :func:`lk_refine_node` when the secondary window has invalid pixels. Writes ``DY``,
    ``DX``, ``ZNCC``, ``REASON`` and ``SIGMA`` into ``out`` (REFINE_COLS).
    """
    ref, gyi, gxi, coef, tvalid = sp.ref, sp.gy, sp.gx, sp.coef, sp.taps_valid
    max_iter, tol, max_move = gn.max_iter, gn.tol, gn.max_move
    mm = math.ceil(max_move) + 2
    if not window_all_valid(
        tvalid,
        r0 + math.floor(d_r) - mm - 1 + LK_PAD,
        c0 + math.floor(d_c) - mm - 1 + LK_PAD,
        h + 2 * mm,
        w + 2 * mm,
    ):
        lk_refine_node(sp, r0, c0, h, w, d_r, d_c, m, gn, out, lk_scratch(h, w))
        return
    # the weighted pixels of each row form an interval (a half-plane): loop over it only
    lo = np.zeros(h, np.int64)
    hi = np.zeros(h, np.int64)
    for i in range(h):
        j0 = 0
        while j0 < w and m[i, j0] == 0:
            j0 += 1
        j1 = w
        while j1 > j0 and m[i, j1 - 1] == 0:
            j1 -= 1
        lo[i] = j0
        hi[i] = j1
    swt = 0.0
    s_r = 0.0
    s_rr = 0.0
    a00 = 0.0
    a01 = 0.0
    a11 = 0.0
    s_gy = 0.0
    s_gx = 0.0
    s_gyr = 0.0
    s_gxr = 0.0
    for i in range(h):
        if hi[i] <= lo[i]:
            continue
        rrow = ref[r0 + i, c0 + lo[i] : c0 + hi[i]]
        gyrow = gyi[r0 + i, c0 + lo[i] : c0 + hi[i]]
        gxrow = gxi[r0 + i, c0 + lo[i] : c0 + hi[i]]
        mrow = m[i, lo[i] : hi[i]]
        b0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        b3 = np.float32(0.0)
        b4 = np.float32(0.0)
        b5 = np.float32(0.0)
        b6 = np.float32(0.0)
        b7 = np.float32(0.0)
        b8 = np.float32(0.0)
        b9 = np.float32(0.0)
        for j in range(hi[i] - lo[i]):
            q = mrow[j]
            r = rrow[j]
            gy = gyrow[j]
            gx = gxrow[j]
            b0 += q
            b1 += q * r
            b2 += q * r * r
            b3 += q * gy * gy
            b4 += q * gy * gx
            b5 += q * gx * gx
            b6 += q * gy
            b7 += q * gx
            b8 += q * gy * r
            b9 += q * gx * r
        swt += b0
        s_r += b1
        s_rr += b2
        a00 += b3
        a01 += b4
        a11 += b5
        s_gy += b6
        s_gx += b7
        s_gyr += b8
        s_gxr += b9
    out[REASON] = TEXTURELESS
    if swt <= 0.0:
        return
    mq = s_r / swt
    vq = s_rr / swt - mq * mq
    det = a00 * a11 - a01 * a01
    if det <= 1e-9 * (a00 + a11) ** 2 or vq <= 0.0:
        return
    i00 = a11 / det
    i01 = -a01 / det
    i11 = a00 / det
    Hh, Ww = coef.shape
    wr = np.empty(4)
    wc = np.empty(4)
    hb = np.empty((h + 3, w), np.float32)
    dr = float(d_r)
    dc = float(d_c)
    zn = np.nan
    sig2 = np.nan
    reason = NOT_CONVERGED
    step2 = np.inf
    prev_r = 0.0
    prev_c = 0.0
    for _it in range(max_iter):
        ir = math.floor(dr)
        ic = math.floor(dc)
        bspline3_weights(dr - ir, wr)
        bspline3_weights(dc - ic, wc)
        br = r0 + ir - 1 + LK_PAD
        bc = c0 + ic - 1 + LK_PAD
        if br < 0 or bc < 0 or br + h + 3 > Hh or bc + w + 3 > Ww:
            reason = OUTSIDE
            break
        ss = 0.0
        sss = 0.0
        sgys = 0.0
        sgxs = 0.0
        srs = 0.0
        spline_rows(coef, br, wc, bc, h, w, hb)
        u0, u1, u2, u3 = np.float32(wr[0]), np.float32(wr[1]), np.float32(wr[2]), np.float32(wr[3])
        for i in range(h):
            n_ = hi[i] - lo[i]
            if n_ <= 0:
                continue
            h0 = hb[i, lo[i] : hi[i]]
            h1 = hb[i + 1, lo[i] : hi[i]]
            h2 = hb[i + 2, lo[i] : hi[i]]
            h3 = hb[i + 3, lo[i] : hi[i]]
            rrow = ref[r0 + i, c0 + lo[i] : c0 + hi[i]]
            gyrow = gyi[r0 + i, c0 + lo[i] : c0 + hi[i]]
            gxrow = gxi[r0 + i, c0 + lo[i] : c0 + hi[i]]
            mrow = m[i, lo[i] : hi[i]]
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            a4 = np.float32(0.0)
            a5 = np.float32(0.0)
            for j in range(n_):
                sv = u0 * h0[j] + u1 * h1[j] + u2 * h2[j] + u3 * h3[j]
                ms_ = mrow[j] * sv
                a1 += ms_
                a2 += ms_ * sv
                a3 += ms_ * gyrow[j]
                a4 += ms_ * gxrow[j]
                a5 += ms_ * rrow[j]
            ss += a1
            sss += a2
            sgys += a3
            sgxs += a4
            srs += a5
        ms = ss / swt
        vs = sss / swt - ms * ms
        if vs <= 0.0:
            reason = TEXTURELESS
            break
        gain = math.sqrt(vq / vs)
        by = (s_gyr - mq * s_gy) - gain * (sgys - ms * s_gy)
        bx = (s_gxr - mq * s_gx) - gain * (sgxs - ms * s_gx)
        zn = (srs / swt - mq * ms) / math.sqrt(vq * vs)
        sig2 = max(2.0 * vq * (1.0 - zn), 0.0)
        ddr = -(i00 * by + i01 * bx)
        ddc = -(i01 * by + i11 * bx)
        # the accelerated steps and the raw-step convergence test of :func:`lk_refine_node`
        ddr, ddc, raw2 = accelerated(ddr, ddc, prev_r, prev_c)
        prev_r = ddr
        prev_c = ddc
        dr -= ddr
        dc -= ddc
        if abs(dr - d_r) > max_move or abs(dc - d_c) > max_move:
            step2 = np.inf
            break
        step2 = min(ddr * ddr + ddc * ddc, raw2)
        if step2 < tol * tol:
            reason = OK
            break
    if reason == NOT_CONVERGED and step2 < 4e-4:
        reason = OK
    out[DY] = dr
    out[DX] = dc
    out[ZNCC] = zn
    out[REASON] = reason
    out[SIGMA] = SIGMA_CALIBRATION * math.sqrt(sig2 * (i00 + i11))


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _step_tests(D, e0, eb, valid, sp, r0, c0, h, w, th, rho, orient, cost, ddr, ddc):
    """(residual energy ratio two / one motion, near-boundary support, near / far support) of a split.

    The support is the side assignment's gain in squared residual, over what a step of (B - A) would give,
    (g · (B - A))^2 per pixel: ≈ 1 at any distance from the boundary for a step; on a smooth gradient the
    two motions differ less and less towards the boundary (≈ 2 |u| / side spacing).
    """
    gyi, gxi = sp.gy, sp.gx
    cr = (h - 1) / 2.0
    cc = (w - 1) / 2.0
    sse1 = 0.0
    sse_b = 0.0
    ct = math.cos(th)
    st = math.sin(th)
    s_near = 0.0
    g_near = 0.0
    s_far = 0.0
    g_far = 0.0
    for i in range(h):
        yi = (i - cr) * ct - rho
        e0row = e0[i]
        ebrow = eb[i]
        drow = D[i]
        vrow = valid[i]
        gyrow = gyi[r0 + i, c0 : c0 + w]
        gxrow = gxi[r0 + i, c0 : c0 + w]
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        a4 = np.float32(0.0)
        a5 = np.float32(0.0)
        a6 = np.float32(0.0)
        for j in range(w):  # branch-free: vectorised
            v = np.float32(vrow[j])
            u = np.float32(orient * (yi + (j - cc) * st))
            sv = drow[j] * (np.float32(u >= 0) - np.float32(u < 0)) * v
            gd = gyrow[j] * np.float32(ddr) + gxrow[j] * np.float32(ddc)
            gd = gd * gd * v
            au = abs(u)
            near = np.float32((au >= 2.0) & (au < 6.0))
            far = np.float32(au >= 6.0)
            a1 += e0row[j] * e0row[j] * v
            a2 += ebrow[j] * ebrow[j] * v
            a3 += sv * near
            a4 += gd * near
            a5 += sv * far
            a6 += gd * far
        sse1 += a1
        sse_b += a2
        s_near += a3
        g_near += a4
        s_far += a5
        g_far += a6
    ratio = (sse_b + cost) / sse1 if sse1 > 0 else np.nan
    s12 = s_near / g_near if g_near > 0 else np.nan
    s13 = np.nan
    if g_far > 0 and s_far > 0 and g_near > 0:
        s13 = s12 / (s_far / g_far)
    return ratio, s12, s13


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def two_motion_node(sp, r0, c0, h, w, d0_r, d0_c, a_r, a_c, b_r, b_c, tm, out):
    """Two translations separated by a straight boundary inside one chip (fault, calving front, scarp).

    Parameters
    ----------
    sp : Spline
        The strip's B-spline data (:class:`geodeform.offsets._layout.Spline`).
    r0, c0, h, w : int
        Chip origin in the strip and size, px.
    d0_r, d0_c : float
        The one-motion answer, px: its residual energy is the reference of the ``TWO_RATIO`` test.
    a_r, a_c, b_r, b_c : float
        Candidate motions A and B, px (e.g. the two clusters of the neighbours' answers).
    tm : TwoMotionParams
        Rounds, guard band and early-stop thresholds.
    out : ndarray of float64, shape (TWO_COLS,)
        Receives the fit in the ``TWO_*`` columns of :mod:`geodeform.offsets._layout`.

    Notes
    -----
    Alternates: residual maps of the gain/offset-normalised secondary at A and at B; the straight boundary
    that best separates the pixels following each (:func:`_coarse_boundary`, every 5° and 1.5 px on
    3 × 3 blocks, then :func:`_fit_boundary` around it, on the difference of squared residuals); a masked
    Gauss–Newton refinement of each motion on its own side's pixels (``tm.guard`` px from the boundary
    left out; after the first of the ``tm.n_iter`` rounds only the centre's side). Stops early (NaN
    motion) when the coarse split leaves more than ``tm.early_ratio`` of the one-motion residual energy,
    when the first sharpness is below ``tm.early_sharp``, or (NaN ratio too) when the boundary is
    farther from the centre than the reach. ``TWO_DY``, ``TWO_DX`` is the motion of the side holding the
    chip centre and ``TWO_SIGMA`` its predicted error; ``TWO_RATIO`` the two-motion residual energy over
    that of the one-motion fit (≈ 1 without a step); sharpness: see :func:`_step_tests`.
    """
    n_iter, guard, early_ratio, early_sharp = tm.n_iter, tm.guard, tm.early_ratio, tm.early_sharp
    reach_r, reach_c = tm.reach_r, tm.reach_c
    rvalid = sp.valid
    for k in range(TWO_COLS):
        out[k] = np.nan
    wr = np.empty(4)
    wc = np.empty(4)
    hb = np.empty((h + 3, w), np.float32)
    e0 = np.empty((h, w), np.float32)
    ea = np.empty((h, w), np.float32)
    eb = np.empty((h, w), np.float32)
    D = np.empty((h, w), np.float32)
    valid = np.empty((h, w), np.bool_)
    wa = np.empty((h, w), np.float32)
    wb = np.empty((h, w), np.float32)
    cr = (h - 1) / 2.0
    cc = (w - 1) / 2.0
    hist = np.empty(4 * (int(2.0 * (math.sqrt(cr * cr + cc * cc) + 1.0)) + 64))
    py = np.empty(h * w)
    px = np.empty(h * w)
    pd = np.empty(h * w)
    side = np.empty(REFINE_COLS)
    for i in range(h):
        vrow = rvalid[r0 + i, c0 : c0 + w]
        for j in range(w):  # branch-free: vectorised
            valid[i, j] = vrow[j] != 0
    full = valid_count(rvalid, r0, c0, h, w) == h * w
    if not _residual_map(sp, r0, c0, h, w, d0_r, d0_c, wr, wc, hb, e0, valid, full):
        out[TWO_REASON] = MASKED
        return
    ar, ac, br_, bc_ = a_r, a_c, b_r, b_c
    th = 0.0
    rho = 0.0
    orient = 1.0
    cost = 0.0
    sig_a = np.nan
    sig_b = np.nan
    zn_a = np.nan
    zn_b = np.nan
    mapped_a = (np.nan, np.nan)
    mapped_b = (np.nan, np.nan)
    side_gn = GaussNewton(12, 0.01, 1.5, 0.0, -1.0, False)  # the sides' refinement where pixels are missing
    for it in range(n_iter + 1):
        ok = True
        if (ar, ac) != mapped_a:  # a motion left unchanged keeps its residual map
            ok = _residual_map(sp, r0, c0, h, w, ar, ac, wr, wc, hb, ea, valid, full)
            mapped_a = (ar, ac)
        if ok and (br_, bc_) != mapped_b:
            ok = _residual_map(sp, r0, c0, h, w, br_, bc_, wr, wc, hb, eb, valid, full)
            mapped_b = (br_, bc_)
        if not ok:
            out[TWO_REASON] = OUTSIDE
            return
        for i in range(h):
            for j in range(w):
                D[i, j] = ea[i, j] * ea[i, j] - eb[i, j] * eb[i, j]
        if it == 0:
            cost, th, rho, orient = _coarse_boundary(D, valid, h, w, py, px, pd, hist)
            sse1 = 0.0
            sse_b = 0.0
            for i in range(h):
                for j in range(w):
                    sse1 += e0[i, j] * e0[i, j]
                    sse_b += eb[i, j] * eb[i, j]
            ratio = (sse_b + cost) / sse1 if sse1 > 0 else np.nan
            reach = reach_r * abs(math.cos(th)) + reach_c * abs(math.sin(th))
            if not ratio < early_ratio or abs(rho) > reach + 2.0:
                # not a step even from the neighbours' motions, or one that only grazes the chip
                out[TWO_REASON] = OK
                out[TWO_RATIO] = ratio if abs(rho) <= reach + 2.0 else np.nan
                return
            cost, th, rho, orient = _fit_boundary(
                D, valid, h, w, th, rho, orient, math.radians(3.0), 7, 2.0, 0.25, py, px, pd, hist
            )
        else:  # local refinement around the previous line
            cost, th, rho, orient = _fit_boundary(
                D, valid, h, w, th, rho, orient, math.radians(1.5), 7, 1.0, 0.25, py, px, pd, hist
            )
        if it == n_iter:
            break
        if it == 0:
            ratio, s12, s13 = _step_tests(
                D, e0, eb, valid, sp, r0, c0, h, w, th, rho, orient, cost, br_ - ar, bc_ - ac
            )
            if not (ratio < early_ratio and s13 > early_sharp):
                out[TWO_REASON] = OK
                out[TWO_RATIO] = ratio
                out[TWO_SHARP_NEAR] = s12
                out[TWO_SHARPNESS] = s13
                out[TWO_THETA] = th
                out[TWO_RHO] = rho
                return
        na, nb_ = _side_weights(valid, h, w, th, rho, orient, guard, wa, wb)
        # after the first round only the motion of the centre's side needs more precision (the other's
        # is good enough to place the boundary)
        a_side = orient * rho > 0.0
        if na >= 64 and (it == 0 or a_side):
            if full:
                _masked_gn(sp, r0, c0, h, w, wa, ar, ac, GaussNewton(12, 0.02, 1.5, 0.0, -1.0, False), side)
            else:
                lk_refine_node(sp, r0, c0, h, w, ar, ac, wa, side_gn, side, lk_scratch(h, w))
            if side[REASON] == OK:
                ar, ac, zn_a, sig_a = side[DY], side[DX], side[ZNCC], side[SIGMA]
        if nb_ >= 64 and (it == 0 or not a_side):
            if full:
                _masked_gn(sp, r0, c0, h, w, wb, br_, bc_, GaussNewton(12, 0.02, 1.5, 0.0, -1.0, False), side)
            else:
                lk_refine_node(sp, r0, c0, h, w, br_, bc_, wb, side_gn, side, lk_scratch(h, w))
            if side[REASON] == OK:
                br_, bc_, zn_b, sig_b = side[DY], side[DX], side[ZNCC], side[SIGMA]
    ratio, s12, s13 = _step_tests(
        D, e0, eb, valid, sp, r0, c0, h, w, th, rho, orient, cost, br_ - ar, bc_ - ac
    )
    out[TWO_SHARP_NEAR] = s12
    out[TWO_SHARPNESS] = s13
    centre = -orient * rho
    out[TWO_RATIO] = ratio
    out[TWO_A_DY] = ar
    out[TWO_A_DX] = ac
    out[TWO_B_DY] = br_
    out[TWO_B_DX] = bc_
    out[TWO_THETA] = th
    out[TWO_CENTRE_DIST] = centre
    out[TWO_RHO] = rho
    if centre < 0:
        out[TWO_DY], out[TWO_DX], out[TWO_ZNCC], out[TWO_SIGMA] = ar, ac, zn_a, sig_a
    else:
        out[TWO_DY], out[TWO_DX], out[TWO_ZNCC], out[TWO_SIGMA] = br_, bc_, zn_b, sig_b
    out[TWO_REASON] = OK if np.isfinite(out[TWO_SIGMA]) else NOT_CONVERGED


def two_motion_nodes(
    sp: Spline,
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    size: tuple[int, int],
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    motions: Motions,
    tm: TwoMotionParams,
) -> npt.NDArray[np.float64]:
    """:func:`two_motion_node` for many nodes in parallel (chips of ``size`` (h, w) at (r0[k], c0[k]),
    one-motion answer ``start``, candidate ``motions`` per node, px); returns (n, TWO_COLS)."""
    res = np.full((r0.size, TWO_COLS), np.nan)
    per_node = (*start, *motions)
    each_node(two_motion_node, sp, r0, c0, size, per_node, res, params=(tm,), outside=(TWO_REASON, OUTSIDE))
    return res


@nb.njit(cache=True, nogil=True)
def two_motion_starts(dy, dx, ii, jj, radius):
    """Candidate motions A and B of nodes (ii, jj): the two clusters of their (2 radius + 1)² neighbourhood.

    The two most separated valid values seed a 2-means split; each motion is its cluster's median.
    Returns :class:`Motions`, NaN where fewer than two values are valid.
    """
    n = ii.size
    H, W = dy.shape
    out_ay = np.full(n, np.nan)
    out_ax = np.full(n, np.nan)
    out_by = np.full(n, np.nan)
    out_bx = np.full(n, np.nan)
    m = (2 * radius + 1) ** 2
    ys = np.empty(m)
    xs = np.empty(m)
    ca = np.empty(m)
    cb = np.empty(m)
    for k in range(n):
        c = 0
        for a in range(-radius, radius + 1):
            for b in range(-radius, radius + 1):
                i = ii[k] + a
                j = jj[k] + b
                if 0 <= i < H and 0 <= j < W and np.isfinite(dy[i, j]) and np.isfinite(dx[i, j]):
                    ys[c] = dy[i, j]
                    xs[c] = dx[i, j]
                    c += 1
        if c < 2:
            continue
        best = -1.0
        ia = 0
        ib = 1
        for p in range(c):
            for q in range(p + 1, c):
                d = (ys[p] - ys[q]) ** 2 + (xs[p] - xs[q]) ** 2
                if d > best:
                    best = d
                    ia = p
                    ib = q
        ay, ax, by, bx = ys[ia], xs[ia], ys[ib], xs[ib]
        for _ in range(2):
            na = 0
            nb_ = 0
            for p in range(c):
                if (ys[p] - ay) ** 2 + (xs[p] - ax) ** 2 <= (ys[p] - by) ** 2 + (xs[p] - bx) ** 2:
                    ca[na] = p
                    na += 1
                else:
                    cb[nb_] = p
                    nb_ += 1
            if na == 0 or nb_ == 0:
                break
            ay = median(ys[ca[:na].astype(np.int64)])
            ax = median(xs[ca[:na].astype(np.int64)])
            by = median(ys[cb[:nb_].astype(np.int64)])
            bx = median(xs[cb[:nb_].astype(np.int64)])
        out_ay[k] = ay
        out_ax[k] = ax
        out_by[k] = by
        out_bx[k] = bx
    return Motions(out_ay, out_ax, out_by, out_bx)


@nb.njit(cache=True, nogil=True)
def two_motion_accept(t, step_r, step_c, max_ratio, min_sharp, cos_tol, off_tol):
    """Nodes of a grid of two-motion fits ``t`` (rows, cols, TWO_COLS) that pass the step tests (residual
    ratio below ``max_ratio``, sharpness above ``min_sharp``) and have a neighbour that passes them with
    the same boundary line (directions within acos(cos_tol), offsets within ``off_tol`` px)."""
    H, W = t.shape[0], t.shape[1]
    cand = np.zeros((H, W), np.bool_)
    for i in range(H):
        for j in range(W):
            cand[i, j] = (
                t[i, j, TWO_REASON] == OK
                and t[i, j, TWO_RATIO] < max_ratio
                and t[i, j, TWO_SHARPNESS] > min_sharp
            )
    out = np.zeros((H, W), np.bool_)
    for i in range(H):
        for j in range(W):
            if not cand[i, j]:
                continue
            th = t[i, j, TWO_THETA]
            rho = t[i, j, TWO_RHO]
            for a in range(-1, 2):
                for b in range(-1, 2):
                    i2 = i + a
                    j2 = j + b
                    if (a == 0 and b == 0) or i2 < 0 or j2 < 0 or i2 >= H or j2 >= W or not cand[i2, j2]:
                        continue
                    th2 = t[i2, j2, TWO_THETA]
                    dot = math.cos(th - th2)
                    if abs(dot) <= cos_tol:
                        continue
                    # signed distance of this node's centre to the neighbour's boundary vs to its own
                    # (-rho); the normals may point opposite ways (angles are taken mod pi)
                    s2 = math.cos(th2) * (-a * step_r) + math.sin(th2) * (-b * step_c) - t[i2, j2, TWO_RHO]
                    off = abs(s2 + rho) if dot > 0 else abs(s2 - rho)
                    if off < off_tol:
                        out[i, j] = True
    return out


@nb.njit(cache=True, nogil=True)
def two_motion_reach(new, t, step_r, step_c, half_r, half_c):
    """Nodes next to a ``new`` node whose chip (half extents half_r, half_c) reaches its boundary."""
    H, W = new.shape
    out = np.zeros((H, W), np.bool_)
    for i in range(H):
        for j in range(W):
            if not new[i, j]:
                continue
            th = t[i, j, TWO_THETA]
            ct = math.cos(th)
            st = math.sin(th)
            reach = half_r * abs(ct) + half_c * abs(st)
            for a in range(-1, 2):
                for b in range(-1, 2):
                    i2 = i + a
                    j2 = j + b
                    if i2 < 0 or j2 < 0 or i2 >= H or j2 >= W:
                        continue
                    if abs(ct * a * step_r + st * b * step_c - t[i, j, TWO_RHO]) < reach:
                        out[i2, j2] = True
    return out
