"""Sub-pixel refinement of chip matches: inverse-compositional Gauss–Newton on cubic B-splines (numba).

The second stage of the ``ncc`` matcher. From a start (the integer search's peak, or a neighbour's
answer), each chip's translation is refined by Gauss–Newton on the gain/offset-normalised residual
R(p) - gain · S(p + d) - offset, with the secondary S interpolated by cubic B-splines: sub-pixel offsets
without the pixel-locking bias of a peak fit, insensitive to linear radiometric change.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels of the images the kernel runs on.

References
----------
Baker, S. and Matthews, I. (2004). Lucas-Kanade 20 years on: a unifying framework. IJCV 56(3), 221-255
(the inverse-compositional algorithm).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import run_chunks
from geodeform.offsets._layout import (
    DX,
    DY,
    FAST,
    H_INV,
    ITERATIONS,
    LK_PAD,
    M_COL,
    M_ROW,
    MASKED,
    NOT_CONVERGED,
    OK,
    OUTSIDE,
    REASON,
    REFINE_COLS,
    SIGMA,
    SIGMA_CALIBRATION,
    TEXTURELESS,
    ZNCC,
    Q,
    Spline,
)
from geodeform.offsets._search import valid_count, window_all_valid

__all__ = [
    "GaussNewton",
    "accelerated",
    "bspline3_weights",
    "interp_chip",
    "lk_nodes",
    "lk_nodes_range",
    "lk_refine_node",
    "spline_rows",
]

ACCEL_MAX = 0.8  # largest step-shortfall ratio the Gauss-Newton acceleration trusts


class GaussNewton(NamedTuple):
    """Stopping rules and chip tests of :func:`lk_refine_node` (numba reads it as one argument).

    Attributes
    ----------
    max_iter : int
        Largest number of iterations.
    tol : float
        Convergence threshold on the Gauss–Newton step, px.
    max_move : float
        Largest distance from the start along either axis, px; beyond it the node is ``NOT_CONVERGED``.
    min_frac : float
        Chips with less than this fraction of valid pixels are ``MASKED`` (0: no test).
    min_std : float
        Chips whose valid pixels have a standard deviation ≤ this are ``TEXTURELESS`` (-1: no test).
    quadratic : bool
        Fit a curved radiometric map per chip (``NccOptions.radiometry="quadratic"``): the
        caller then runs :func:`lk_nodes` with
        :func:`geodeform.offsets._refine_quad.lk_nodes_quadratic_range` (this module's kernels are the
        gain-and-offset model and do not read it).
    """

    max_iter: int
    tol: float
    max_move: float
    min_frac: float
    min_std: float
    quadratic: bool = False


@nb.njit(cache=True, nogil=True)
def bspline3_weights(t, out):
    """Cubic B-spline weights for fraction t in [0, 1) at offsets -1, 0, 1, 2."""
    t2 = t * t
    t3 = t2 * t
    u = 1.0 - t
    out[0] = u * u * u / 6.0
    out[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    out[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    out[3] = t3 / 6.0


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def spline_rows(coef, br, wc, bc, h, w, hb):
    """The B-spline along rows for a chip: rows br..br+h+2 of ``coef``, 4-tap sums weighted by ``wc`` at
    columns bc.., into ``hb`` (h + 3, w). Chip row i's values are then the 4-tap sums of ``hb`` rows
    i..i+3 weighted by the row weights. (The other order, per chip row the columns and then the row's
    taps, reads each freshly stored row back at three unaligned offsets, which the CPU cannot forward
    from its stores: see docs/benchmarks.md.)"""
    x0, x1, x2, x3 = np.float32(wc[0]), np.float32(wc[1]), np.float32(wc[2]), np.float32(wc[3])
    for i in range(h + 3):
        crow = coef[br + i, bc : bc + w + 3]
        hrow = hb[i]
        for j in range(w):
            hrow[j] = x0 * crow[j] + x1 * crow[j + 1] + x2 * crow[j + 2] + x3 * crow[j + 3]


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def interp_chip(coef, br, wr, wc, bc, h, w, hb, out):
    """B-spline values of a chip (h, w) into ``out``: see :func:`spline_rows` (``hb`` its buffer)."""
    spline_rows(coef, br, wc, bc, h, w, hb)
    u0, u1, u2, u3 = np.float32(wr[0]), np.float32(wr[1]), np.float32(wr[2]), np.float32(wr[3])
    for i in range(h):
        h0 = hb[i]
        h1 = hb[i + 1]
        h2 = hb[i + 2]
        h3 = hb[i + 3]
        orow = out[i]
        for j in range(w):
            orow[j] = u0 * h0[j] + u1 * h1[j] + u2 * h2[j] + u3 * h3[j]


@nb.njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def accelerated(ddr, ddc, prev_r, prev_c):
    """A Gauss-Newton step (ddr, ddc) scaled by 1 / (1 - ratio), the ratio being its projection on the
    previous step (Aitken's extrapolation of a linearly converging sequence; only for 0 < ratio <
    ACCEL_MAX), and the squared length of the raw step."""
    raw2 = ddr * ddr + ddc * ddc
    prev2 = prev_r * prev_r + prev_c * prev_c
    if prev2 > 0.0:
        rho = (ddr * prev_r + ddc * prev_c) / prev2
        if 0.0 < rho < ACCEL_MAX:
            ddr /= 1.0 - rho
            ddc /= 1.0 - rho
    return ddr, ddc, raw2


# Layout of the reference-chip sums of :func:`_chip_sums` (private to this module)
S_W = 0  # Σ w (weights × validity)
S_R = 1  # Σ w r
S_RR = 2  # Σ w r²
S_H = 3  # 3: H = Σ w g gᵀ (00, 01, 11)
S_G = 6  # 2: Σ w g (y, x)
S_GR = 8  # 2: Σ w g r (y, x)
S_M = 10  # 6: M_r, M_c (00, 01, 11 each)
S_Q = 16  # 9: Q (00, 01, 11 × rr, rc, cc)
S_NVALID = 25  # valid-pixel count
S_TR = 26  # unweighted Σ r over the valid pixels
S_TRR = 27  # unweighted Σ r² over the valid pixels
NSUM = 28


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _chip_sums(ref, gyi, gxi, rvalid, r0, c0, h, w, weight, out, xcol):
    """The reference sums of :func:`lk_refine_node` for one chip, into ``out`` (NSUM values, columns
    ``S_*`` above). The unweighted Σr and Σr² of the valid pixels serve the chip's texture test; the
    other sums are weighted by ``weight`` × validity. (``_refine_quad._chip_sums_quadratic`` repeats this
    body with the quadratic model's four sums added: a change here belongs there too.)"""
    cr_ = (h - 1) / 2.0
    cc_ = (w - 1) / 2.0
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
    mr00 = 0.0
    mr01 = 0.0
    mr11 = 0.0
    mc00 = 0.0
    mc01 = 0.0
    mc11 = 0.0
    # second moments Σ w g_a g_b Δk Δl (ab in yy, yx, xx; kl in rr, rc, cc) for the curvature bias
    q00rr = 0.0
    q00rc = 0.0
    q00cc = 0.0
    q01rr = 0.0
    q01rc = 0.0
    q01cc = 0.0
    q11rr = 0.0
    q11rc = 0.0
    q11cc = 0.0
    t_r = 0.0
    t_rr = 0.0
    nvalid = 0.0
    for j in range(w):  # (``xcol``: a float32 buffer of w values)
        xcol[j] = j - cc_
    for i in range(h):
        yi = i - cr_
        rr = r0 + i
        rrow = ref[rr, c0 : c0 + w]
        gyrow = gyi[rr, c0 : c0 + w]
        gxrow = gxi[rr, c0 : c0 + w]
        vrow = rvalid[rr, c0 : c0 + w]
        wrow = weight[i]
        # float32 sums along the row (SIMD; values are normalised to O(1)), float64 across rows; the
        # moments in the column offset x are row sums weighted by x and x², those in the row offset y
        # are row sums weighted by y and y² (the window is a product of rows and columns)
        b_w = np.float32(0.0)
        b_r = np.float32(0.0)
        b_rr = np.float32(0.0)
        b_gy = np.float32(0.0)
        b_gx = np.float32(0.0)
        b_gyr = np.float32(0.0)
        b_gxr = np.float32(0.0)
        u_n = np.float32(0.0)
        u_r = np.float32(0.0)
        u_rr = np.float32(0.0)
        p00 = np.float32(0.0)
        p01 = np.float32(0.0)
        p11 = np.float32(0.0)
        x00 = np.float32(0.0)
        x01 = np.float32(0.0)
        x11 = np.float32(0.0)
        xx00 = np.float32(0.0)
        xx01 = np.float32(0.0)
        xx11 = np.float32(0.0)
        # (three loops of few accumulators each; timing could not tell them from one loop of sixteen)
        for j in range(w):
            v = np.float32(vrow[j])
            m = wrow[j] * v  # branch-free masking keeps the loop vectorised
            r = rrow[j]
            vr_ = v * r
            u_n += v  # the valid count (exact in float32 for a row)
            u_r += vr_
            u_rr += vr_ * r
            mr_ = m * r
            mgy = m * gyrow[j]
            mgx = m * gxrow[j]
            b_w += m
            b_r += mr_
            b_rr += mr_ * r
            b_gy += mgy
            b_gx += mgx
            b_gyr += mgy * r
            b_gxr += mgx * r
        for j in range(w):
            m = wrow[j] * np.float32(vrow[j])
            gy = gyrow[j]
            gx = gxrow[j]
            xj = xcol[j]
            gyy = m * gy * gy
            gyx = m * gy * gx
            gxx = m * gx * gx
            p00 += gyy
            p01 += gyx
            p11 += gxx
            x00 += gyy * xj
            x01 += gyx * xj
            x11 += gxx * xj
        for j in range(w):
            m = wrow[j] * np.float32(vrow[j])
            gy = gyrow[j]
            gx = gxrow[j]
            xj2 = xcol[j] * xcol[j]
            xx00 += m * gy * gy * xj2
            xx01 += m * gy * gx * xj2
            xx11 += m * gx * gx * xj2
        swt += b_w
        s_r += b_r
        s_rr += b_rr
        s_gy += b_gy
        s_gx += b_gx
        s_gyr += b_gyr
        s_gxr += b_gxr
        nvalid += u_n
        t_r += u_r
        t_rr += u_rr
        a00 += p00
        a01 += p01
        a11 += p11
        mr00 += p00 * yi
        mr01 += p01 * yi
        mr11 += p11 * yi
        mc00 += x00
        mc01 += x01
        mc11 += x11
        q00rr += p00 * (yi * yi)
        q00rc += x00 * yi
        q00cc += xx00
        q01rr += p01 * (yi * yi)
        q01rc += x01 * yi
        q01cc += xx01
        q11rr += p11 * (yi * yi)
        q11rc += x11 * yi
        q11cc += xx11
    out[S_W] = swt
    out[S_R] = s_r
    out[S_RR] = s_rr
    out[S_H] = a00
    out[S_H + 1] = a01
    out[S_H + 2] = a11
    out[S_G] = s_gy
    out[S_G + 1] = s_gx
    out[S_GR] = s_gyr
    out[S_GR + 1] = s_gxr
    out[S_M] = mr00
    out[S_M + 1] = mr01
    out[S_M + 2] = mr11
    out[S_M + 3] = mc00
    out[S_M + 4] = mc01
    out[S_M + 5] = mc11
    out[S_Q] = q00rr
    out[S_Q + 1] = q00rc
    out[S_Q + 2] = q00cc
    out[S_Q + 3] = q01rr
    out[S_Q + 4] = q01rc
    out[S_Q + 5] = q01cc
    out[S_Q + 6] = q11rr
    out[S_Q + 7] = q11rc
    out[S_Q + 8] = q11cc
    out[S_NVALID] = nvalid
    out[S_TR] = t_r
    out[S_TRR] = t_rr


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _masked_weights(ref, gyi, gxi, rvalid, tvalid, r0, c0, h, w, br, bc, weight, mw):
    """The weights of a chip's pixels valid in both images when its secondary taps start at (br, bc) of
    the padded coefficients: ``mw`` = weight × reference validity × ``tvalid[br + i, bc + j]``, and the
    reference sums over them, (Σ m, Σ m r, Σ m r², Σ m g_y, Σ m g_x, Σ m g_y r, Σ m g_x r)."""
    sw = 0.0
    q_r = 0.0
    q_rr = 0.0
    q_gy = 0.0
    q_gx = 0.0
    q_gyr = 0.0
    q_gxr = 0.0
    for i in range(h):
        rr = r0 + i
        rrow = ref[rr, c0 : c0 + w]
        gyrow = gyi[rr, c0 : c0 + w]
        gxrow = gxi[rr, c0 : c0 + w]
        vrow = rvalid[rr, c0 : c0 + w]
        trow = tvalid[br + i, bc : bc + w]
        wrow = weight[i]
        mrow = mw[i]
        # branch-free (0/1 factors), so the row loop stays vectorised
        a0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        b3 = np.float32(0.0)
        b4 = np.float32(0.0)
        b5 = np.float32(0.0)
        b6 = np.float32(0.0)
        for j in range(w):
            m = wrow[j] * np.float32(vrow[j] & trow[j])
            mrow[j] = m
            r = rrow[j]
            mr_ = m * r
            mgy = m * gyrow[j]
            mgx = m * gxrow[j]
            a0 += m
            b1 += mr_
            b2 += mr_ * r
            b3 += mgy
            b4 += mgx
            b5 += mgy * r
            b6 += mgx * r
        sw += a0
        q_r += b1
        q_rr += b2
        q_gy += b3
        q_gx += b4
        q_gyr += b5
        q_gxr += b6
    return sw, q_r, q_rr, q_gy, q_gx, q_gyr, q_gxr


@nb.njit(cache=True, nogil=True)
def lk_scratch(h, w):
    """Buffers of :func:`lk_refine_node` for chips of h × w: (sums, row and column spline weights, column
    offsets, row-filtered spline rows, masked weights)."""
    return (
        np.empty(NSUM),
        np.empty(4),
        np.empty(4),
        np.empty(w, np.float32),
        np.empty((h + 3, w), np.float32),
        np.empty((h, w), np.float32),
    )


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def lk_refine_node(sp, r0, c0, h, w, d_r, d_c, weight, gn, out, scratch=None):
    """Inverse-compositional Gauss–Newton refinement of one chip's translation, invariant to gain and offset.

    Parameters
    ----------
    sp : Spline
        The strip's B-spline data (:class:`geodeform.offsets._layout.Spline`): reference samples and the
        derivatives of its interpolant (so that the step has the right gain at every frequency), the
        secondary's cubic B-spline coefficients, validity masks.
    r0, c0 : int
        Chip origin in the strip (reference pixels); the chip is ``sp.ref[r0:r0+h, c0:c0+w]``.
    h, w : int
        Chip size, px.
    d_r, d_c : float
        Start (row, col) offset, px.
    weight : ndarray of float32, shape (h, w)
        Weight of every pixel in every sum (a window; 0 leaves a pixel out).
    gn : GaussNewton
        Stopping rules and chip tests.
    out : ndarray of float64, shape (REFINE_COLS,)
        Receives the result, in the columns of :mod:`geodeform.offsets._layout` (NaN where not computed).
    scratch : tuple, optional
        :func:`lk_scratch` buffers reused from node to node (saves ~0.1 µs of allocation per node).

    Notes
    -----
    The answer (``DY``, ``DX``) is the start minus the sum of the steps δ = H⁻¹ Σ w g ((R - R̄) - gain
    (S - S̄)), with H = Σ w g gᵀ from the reference gradients g (inverse compositional: H is computed once).
    Successive steps fall short of the minimum by a constant ratio on noisy chips; the ratio is measured
    from two steps and the step scaled by 1 / (1 - ratio) (Aitken). Converged (``OK``) when a step is
    below ``gn.tol``, or the last one below 0.02 px after ``gn.max_iter`` iterations; ``NOT_CONVERGED``
    otherwise or beyond ``gn.max_move`` from the start; ``OUTSIDE`` when the secondary window leaves the
    padded strip; ``MASKED`` when fewer than half the weight falls on pixels valid in both images.

    ``SIGMA`` is the predicted 1-σ vector error, ``SIGMA_CALIBRATION`` · sqrt(σ_r² trace H⁻¹), with the
    residual variance σ_r² = 2 var(R) (1 - ZNCC). ``M_ROW``, ``M_COL`` and ``Q`` are the texture moments
    Σ w g gᵀ Δ and Σ w g gᵀ Δ Δᵀ (Δ = pixel - chip centre) that let the caller remove the bias of a
    translation estimate inside a strained chip (:func:`geodeform.offsets._post.strain_bias`).
    """
    ref, gyi, gxi, rvalid, coef, tvalid = sp.ref, sp.gy, sp.gx, sp.valid, sp.coef, sp.taps_valid
    max_iter, tol, max_move = gn.max_iter, gn.tol, gn.max_move
    Hh, Ww = coef.shape
    for k in range(REFINE_COLS):
        out[k] = np.nan
    if scratch is None:
        scratch = lk_scratch(h, w)
    sums, wr, wc, xcol, hb, mw = scratch
    _chip_sums(ref, gyi, gxi, rvalid, r0, c0, h, w, weight, sums, xcol)
    swt, s_r, s_rr = sums[S_W], sums[S_R], sums[S_RR]
    a00, a01, a11 = sums[S_H], sums[S_H + 1], sums[S_H + 2]
    s_gy, s_gx, s_gyr, s_gxr = sums[S_G], sums[S_G + 1], sums[S_GR], sums[S_GR + 1]
    nv = sums[S_NVALID]
    all_valid = nv == h * w
    # the valid fraction is that of the chip's pixels, as for searched chips (not of the eroded samples)
    if swt <= 0.0 or (gn.min_frac > 0.0 and valid_count(sp.pixels, r0, c0, h, w) < gn.min_frac * (h * w)):
        out[REASON] = MASKED
        return
    min_std = gn.min_std
    if min_std >= 0.0 and (
        nv <= 1.0 or math.sqrt(max(sums[S_TRR] / nv - (sums[S_TR] / nv) ** 2, 0.0)) <= min_std
    ):
        out[REASON] = TEXTURELESS
        return
    mr = s_r / swt
    vr = s_rr / swt - mr * mr
    det = a00 * a11 - a01 * a01
    tr = a00 + a11
    lmin = 0.5 * (tr - math.sqrt(max(tr * tr - 4.0 * det, 0.0)))
    if det <= 1e-12 * tr * tr or vr <= 0.0 or lmin <= 0.0:
        out[REASON] = TEXTURELESS
        return
    i00 = a11 / det
    i01 = -a01 / det
    i11 = a00 / det
    mm = math.ceil(max_move) + 2
    # every sample of every position within max_move reads valid taps: no per-position masking
    fast = all_valid and window_all_valid(
        tvalid,
        r0 + math.floor(d_r) - mm - 1 + LK_PAD,
        c0 + math.floor(d_c) - mm - 1 + LK_PAD,
        h + 2 * mm,
        w + 2 * mm,
    )
    sw = swt
    q_r, q_rr, q_gy, q_gx, q_gyr, q_gxr = s_r, s_rr, s_gy, s_gx, s_gyr, s_gxr
    if fast:
        for i in range(h):  # element by element: a row-slice copy costs ~3× more (0.3 µs per chip)
            for j in range(w):
                mw[i, j] = weight[i, j]
    at_r = -(1 << 30)  # the integer position the mask ``mw`` and the q_* sums were made for
    at_c = -(1 << 30)
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
        br = r0 + ir - 1 + LK_PAD  # coef/tvalid carry an invalid border of LK_PAD pixels
        bc = c0 + ic - 1 + LK_PAD
        if br < 0 or bc < 0 or br + h + 3 > Hh or bc + w + 3 > Ww:
            reason = OUTSIDE
            step2 = np.inf
            break
        if not fast and (ir != at_r or ic != at_c):
            # the pixels valid in both images at this integer position (the mask only changes with it,
            # so the iterations that stay there run the unmasked loop below on these weights)
            sw, q_r, q_rr, q_gy, q_gx, q_gyr, q_gxr = _masked_weights(
                ref, gyi, gxi, rvalid, tvalid, r0, c0, h, w, br, bc, weight, mw
            )
            at_r = ir
            at_c = ic
            if sw < 0.5 * swt:
                reason = MASKED
                step2 = np.inf
                break
        ss = 0.0
        sss = 0.0
        sgys = 0.0
        sgxs = 0.0
        srs = 0.0
        spline_rows(coef, br, wc, bc, h, w, hb)
        u0, u1, u2, u3 = np.float32(wr[0]), np.float32(wr[1]), np.float32(wr[2]), np.float32(wr[3])
        for i in range(h):
            # as :func:`interp_chip`, the row's taps fused with the sums instead of stored
            h0 = hb[i]
            h1 = hb[i + 1]
            h2 = hb[i + 2]
            h3 = hb[i + 3]
            rr = r0 + i
            rrow = ref[rr, c0 : c0 + w]
            gyrow = gyi[rr, c0 : c0 + w]
            gxrow = gxi[rr, c0 : c0 + w]
            wrow = mw[i]
            # float32 sums along the row (8-wide SIMD; values are normalised to O(1)), float64 across
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            a4 = np.float32(0.0)
            a5 = np.float32(0.0)
            for j in range(w):
                s = u0 * h0[j] + u1 * h1[j] + u2 * h2[j] + u3 * h3[j]
                ms_ = wrow[j] * s
                a1 += ms_
                a2 += ms_ * s
                a3 += ms_ * gyrow[j]
                a4 += ms_ * gxrow[j]
                a5 += ms_ * rrow[j]
            ss += a1
            sss += a2
            sgys += a3
            sgxs += a4
            srs += a5
        mq = q_r / sw
        vq = q_rr / sw - mq * mq
        ms = ss / sw
        vs = sss / sw - ms * ms
        if vs <= 0.0 or vq <= 0.0:
            reason = TEXTURELESS
            step2 = np.inf
            break
        gain = math.sqrt(vq / vs)
        # b = sum m g ((R - mq) - gain (S - ms))
        by = (q_gyr - mq * q_gy) - gain * (sgys - ms * q_gy)
        bx = (q_gxr - mq * q_gx) - gain * (sgxs - ms * q_gx)
        cov = srs / sw - mq * ms
        zn = cov / math.sqrt(vq * vs)
        sig2 = max(2.0 * vq * (1.0 - zn), 0.0)  # residual variance per pixel
        # delta = -H^-1 sum g (ref - S);  d <- d - delta
        ddr = -(i00 * by + i01 * bx)
        ddc = -(i01 * by + i11 * bx)
        # The inverse-compositional Hessian comes from the reference's gradients, whose noise inflates
        # it: each step then falls short of the minimum by a constant ratio (noisy pairs converge
        # linearly). Successive steps measure that ratio; scaling the step by 1 / (1 - ratio) (Aitken's
        # extrapolation) lands on the same fixed point in fewer iterations.
        ddr, ddc, raw2 = accelerated(ddr, ddc, prev_r, prev_c)
        prev_r = ddr
        prev_c = ddc
        dr -= ddr
        dc -= ddc
        if abs(dr - d_r) > max_move or abs(dc - d_c) > max_move:
            step2 = np.inf
            break
        # converged when the Gauss-Newton step is below tol: after an accelerated step its own size, which
        # is (1 - ratio) × the distance to the fixed point it corrects, not the extrapolated one
        step2 = min(ddr * ddr + ddc * ddc, raw2)
        if step2 < tol * tol:
            reason = OK
            break
    if reason == NOT_CONVERGED and step2 < 4e-4:
        reason = OK  # slow final convergence, last update below 0.02 px
    out[DY] = dr
    out[DX] = dc
    out[ZNCC] = zn
    out[REASON] = reason
    out[ITERATIONS] = _it + 1.0
    for k in range(3):
        out[M_ROW + k] = sums[S_M + k]
        out[M_COL + k] = sums[S_M + 3 + k]
    out[H_INV] = i00
    out[H_INV + 1] = i01
    out[H_INV + 2] = i11
    out[SIGMA] = SIGMA_CALIBRATION * math.sqrt(sig2 * (i00 + i11))
    for k in range(9):
        out[Q + k] = sums[S_Q + k]


@nb.njit(cache=True, nogil=True)
def lk_nodes_range(lo, hi, sp, r0, c0, h, w, d_r, d_c, weight, gn, todo, res):
    """:func:`lk_refine_node` for the nodes ``lo <= k < hi`` with ``todo`` set, into ``res`` (one chunk of
    :func:`lk_nodes`, with its own buffers)."""
    scratch = lk_scratch(h, w)
    for k in range(lo, hi):
        if not todo[k]:
            continue
        if r0[k] < 0 or c0[k] < 0 or r0[k] + h > sp.ref.shape[0] or c0[k] + w > sp.ref.shape[1]:
            res[k, REASON] = OUTSIDE
            continue
        lk_refine_node(sp, r0[k], c0[k], h, w, d_r[k], d_c[k], weight, gn, res[k], scratch)


def lk_nodes(
    sp: Spline,
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    size: tuple[int, int],
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    weight: npt.NDArray[np.float64],
    gn: GaussNewton,
    todo: npt.NDArray[np.bool_],
    *,
    kernel: Callable[..., None] = lk_nodes_range,
) -> npt.NDArray[np.float64]:
    """A node kernel for the nodes with ``todo`` set, in parallel; returns (n, REFINE_COLS).

    Chip k has origin (r0[k], c0[k]) and ``size`` (h, w) and starts at (start[0][k], start[1][k]) px;
    a chip outside the strip is ``OUTSIDE``, a node not to do is all NaN. The nodes run in chunks (a few
    per thread, :func:`geodeform.compiled.run_chunks`), each with its own buffers. ``kernel`` is the
    range kernel of one chunk: :func:`lk_nodes_range` (:func:`lk_refine_node`, gain and offset, the
    default) or :func:`geodeform.offsets._refine_quad.lk_nodes_quadratic_range` (the quadratic
    radiometric model)."""
    n = r0.size
    res = np.full((n, REFINE_COLS), np.nan)
    h, w = size
    run_chunks(kernel, n, sp, r0, c0, h, w, start[0], start[1], weight, gn, todo, res)
    return res
