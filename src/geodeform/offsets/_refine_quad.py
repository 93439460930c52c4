"""Sub-pixel refinement with a quadratic radiometric model (``NccOptions.radiometry = "quadratic"``).

The kernels of :mod:`geodeform.offsets._refine` (inverse-compositional Gauss–Newton on cubic B-splines,
gain and offset between the chips) with a per-chip curvature of the radiometric map, S ≈ a + β u +
γ (u² - var u), u = R - mean R, fitted where it explains the residual significantly
(:func:`quadratic_radiometry`); ``NccOptions.radiometry="quadratic"``. Kept apart so that
``radiometry="linear"`` compiles to exactly the arithmetic and code of the gain-and-offset model: the
extra reference moments (Σ w r³, Σ w r⁴, Σ w g r², fused into the chip's reference sums) and the
per-iteration Σ m S R² are computed here only. The ``ZNCC`` column is the plain ZNCC of the chips at the
answer, as in the linear model (the acceptance tests read it: the curvature's extra degree of freedom
would raise a fitted correlation on pure noise too); ``SIGMA`` uses the quadratic fit's residual.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels of the images the kernel runs on.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

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
)
from geodeform.offsets._refine import (
    S_G,
    S_GR,
    S_H,
    S_M,
    S_NVALID,
    S_Q,
    S_R,
    S_RR,
    S_TR,
    S_TRR,
    S_W,
    _masked_weights,
    accelerated,
    bspline3_weights,
    lk_scratch,
    spline_rows,
)
from geodeform.offsets._search import valid_count, window_all_valid

__all__ = ["lk_nodes_quadratic_range", "lk_refine_node_quadratic", "quadratic_radiometry"]

# t² at which the fitted curvature γ is halved (16 until 2026-12-07: 30 dB peer case 1.50× its Cramér-Rao
# bound, 1.27× with 100; docs/benchmarks.md)
GAMMA_SHRINK = 100.0


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _chip_sums_quadratic(ref, gyi, gxi, rvalid, r0, c0, h, w, weight, out, xcol):
    """:func:`geodeform.offsets._refine._chip_sums` (into ``out``, columns ``S_*``) with the quadratic
    model's reference moments fused into its last loop (one pass over the chip instead of two): returns
    (Σ m r³, Σ m r⁴, Σ m g_y r², Σ m g_x r²), m = ``weight`` × validity."""
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
    s_r3 = 0.0
    s_r4 = 0.0
    s_gyrr = 0.0
    s_gxrr = 0.0
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
        b_r3 = np.float32(0.0)
        b_r4 = np.float32(0.0)
        b_gyrr = np.float32(0.0)
        b_gxrr = np.float32(0.0)
        # (three loops of few accumulators each; the quadratic moments in the third, which has fewest)
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
            r = rrow[j]
            mr2 = m * r * r
            b_r3 += mr2 * r
            b_r4 += mr2 * r * r
            b_gyrr += mr2 * gy
            b_gxrr += mr2 * gx
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
        s_r3 += b_r3
        s_r4 += b_r4
        s_gyrr += b_gyrr
        s_gxrr += b_gxrr
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
    return s_r3, s_r4, s_gyrr, s_gxrr


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _masked_quadratic_sums(ref, gyi, gxi, r0, c0, h, w, mw):
    """The quadratic moments of :func:`_chip_sums_quadratic` over the weights ``mw`` (h, w) that
    :func:`geodeform.offsets._refine._masked_weights` has just made (validity in both images included)."""
    q_r3 = 0.0
    q_r4 = 0.0
    q_gyrr = 0.0
    q_gxrr = 0.0
    for i in range(h):
        rr = r0 + i
        rrow = ref[rr, c0 : c0 + w]
        gyrow = gyi[rr, c0 : c0 + w]
        gxrow = gxi[rr, c0 : c0 + w]
        mrow = mw[i]
        b7 = np.float32(0.0)
        b8 = np.float32(0.0)
        b9 = np.float32(0.0)
        b10 = np.float32(0.0)
        for j in range(w):
            m = mrow[j]
            r = rrow[j]
            mr2 = m * r * r
            b7 += mr2 * r
            b8 += mr2 * r * r
            b9 += mr2 * gyrow[j]
            b10 += mr2 * gxrow[j]
        q_r3 += b7
        q_r4 += b8
        q_gyrr += b9
        q_gxrr += b10
    return q_r3, q_r4, q_gyrr, q_gxrr


@nb.njit(cache=True, nogil=True, inline="always")
def quadratic_radiometry(sw, q_r, q_rr, q_r3, q_r4, ss, sss, srs, srrs):
    """The curvature γ of the radiometric map S ≈ a + β u + γ (u² - var u), u = R - mean(R), fitted by
    weighted least squares over a chip (sums of weights m: Σ m, Σ m R^k for k = 1..4, Σ m S, Σ m S R,
    Σ m S², Σ m S R²), and the moments the refinement needs: (mean R, var R, μ₃ = mean u³, var(u²),
    cov(S, u²), γ). γ is 0 when the fit is ill-conditioned (u² nearly a linear function of u: few grey
    levels), and shrunk by t² / (t² + ``GAMMA_SHRINK``) with t its t statistic (counting Σ m as the number
    of samples):
    a chip whose curvature is not significant keeps about the linear model, without a jump between
    nearby sums."""
    mq = q_r / sw
    e2 = q_rr / sw
    e3 = q_r3 / sw
    e4 = q_r4 / sw
    vq = e2 - mq * mq
    mu3 = e3 - 3.0 * mq * e2 + 2.0 * mq * mq * mq
    mu4 = e4 - 4.0 * mq * e3 + 6.0 * mq * mq * e2 - 3.0 * mq**4
    vz = mu4 - vq * vq  # var(u²)
    ms = ss / sw
    csu = srs / sw - mq * ms  # cov(S, u)
    csz = (srrs - 2.0 * mq * srs + mq * mq * ss) / sw - vq * ms  # cov(S, u²)
    det = vq * vz - mu3 * mu3
    gamma = 0.0
    if vq > 0.0 and det > 0.15 * vq * vz:
        gamma = (vq * csz - mu3 * csu) / det
        # residual variance of the linear fit, and its reduction by the curvature term
        res_lin = sss / sw - ms * ms - csu * csu / vq
        gain2 = gamma * (csz - csu * mu3 / vq)
        t2 = gain2 * sw / max(res_lin - gain2, 1e-12)  # squared t statistic of γ
        # shrunk smoothly (no jump between nearby sums), by half at t = 10: t counts Σ m as independent
        # samples, but the residuals of neighbouring pixels are correlated (interpolation, window)
        gamma *= t2 / (t2 + GAMMA_SHRINK)
    return mq, vq, mu3, vz, csz, gamma


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def lk_refine_node_quadratic(sp, r0, c0, h, w, d_r, d_c, weight, gn, out, scratch=None):
    """:func:`~geodeform.offsets._refine.lk_refine_node` with a quadratic radiometric map per chip.

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
    residual variance σ_r² = 2 var(R) (1 - ρ), ρ the correlation of R with the curvature-corrected
    secondary S'; ``ZNCC`` is the plain ZNCC of R and S (what the acceptance tests read). ``M_ROW``,
    ``M_COL`` and ``Q`` are the texture moments Σ w g gᵀ Δ and Σ w g gᵀ Δ Δᵀ (Δ = pixel - chip centre)
    that let the caller remove the bias of a translation estimate inside a strained chip
    (:func:`geodeform.offsets._post.strain_bias`).
    """
    ref, gyi, gxi, rvalid, coef, tvalid = sp.ref, sp.gy, sp.gx, sp.valid, sp.coef, sp.taps_valid
    max_iter, tol, max_move = gn.max_iter, gn.tol, gn.max_move
    Hh, Ww = coef.shape
    for k in range(REFINE_COLS):
        out[k] = np.nan
    if scratch is None:
        scratch = lk_scratch(h, w)
    sums, wr, wc, xcol, hb, mw = scratch
    q_r3, q_r4, q_gyrr, q_gxrr = _chip_sums_quadratic(ref, gyi, gxi, rvalid, r0, c0, h, w, weight, sums, xcol)
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
            q_r3, q_r4, q_gyrr, q_gxrr = _masked_quadratic_sums(ref, gyi, gxi, r0, c0, h, w, mw)
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
        srrs = 0.0
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
            a6 = np.float32(0.0)
            for j in range(w):
                s = u0 * h0[j] + u1 * h1[j] + u2 * h2[j] + u3 * h3[j]
                ms_ = wrow[j] * s
                r = rrow[j]
                msr = ms_ * r
                a1 += ms_
                a2 += ms_ * s
                a3 += ms_ * gyrow[j]
                a4 += ms_ * gxrow[j]
                a5 += msr
                a6 += msr * r
            ss += a1
            sss += a2
            sgys += a3
            sgxs += a4
            srs += a5
            srrs += a6
        # The radiometric map from R to S, a + β u + γ (u² - var u) with u = R - mean R (γ = 0: gain and
        # offset only): a curved map (a gamma change, haze) left in the residual biases the step wherever
        # the window's weights are not flat. The secondary is compared through S' = S - γ (u² - var u).
        mq, vq, mu3, vz, csz, gam = quadratic_radiometry(sw, q_r, q_rr, q_r3, q_r4, ss, sss, srs, srrs)
        ms = ss / sw
        vs = sss / sw - ms * ms - 2.0 * gam * csz + gam * gam * vz  # var S'
        if vs <= 0.0 or vq <= 0.0:
            reason = TEXTURELESS
            step2 = np.inf
            break
        gain = math.sqrt(vq / vs)
        # b = sum m g ((R - mq) - gain (S' - ms)), with Σ m g (u² - var u) from the reference sums
        zgy = q_gyrr - 2.0 * mq * q_gyr + (mq * mq - vq) * q_gy
        zgx = q_gxrr - 2.0 * mq * q_gxr + (mq * mq - vq) * q_gx
        by = (q_gyr - mq * q_gy) - gain * (sgys - ms * q_gy - gam * zgy)
        bx = (q_gxr - mq * q_gx) - gain * (sgxs - ms * q_gx - gam * zgx)
        cov = srs / sw - mq * ms - gam * mu3  # cov(S', R)
        # residual variance per pixel, of the quadratic model's fit
        sig2 = max(2.0 * vq * (1.0 - cov / math.sqrt(vq * vs)), 0.0)
        # the reported correlation (``ZNCC``, which the acceptance tests read) is the plain ZNCC of the
        # chips at this offset, as in the linear model: the curvature's extra degree of freedom raises
        # the fitted correlation on pure noise too, and would let a chip pass that the linear test rejects
        vs_lin = sss / sw - ms * ms
        zn = (srs / sw - mq * ms) / math.sqrt(vq * vs_lin) if vs_lin > 0.0 else 0.0
        # delta = -H^-1 sum g (ref - S);  d <- d - delta. γ is fitted again at every step, so the step
        # solves for the offset with γ eliminated: H - c cᵀ / Σ m z², c = Σ m g z, z = u² - var u (the
        # plain H would overshoot the curvature along c and stop short of the minimum).
        e00, e01, e11 = i00, i01, i11
        if gam != 0.0:
            szz = sw * vz
            f00 = a00 - zgy * zgy / szz
            f01 = a01 - zgy * zgx / szz
            f11 = a11 - zgx * zgx / szz
            fdet = f00 * f11 - f01 * f01
            if fdet > 0.05 * det:
                e00 = f11 / fdet
                e01 = -f01 / fdet
                e11 = f00 / fdet
        ddr = -(e00 * by + e01 * bx)
        ddc = -(e01 * by + e11 * bx)
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
def lk_nodes_quadratic_range(lo, hi, sp, r0, c0, h, w, d_r, d_c, weight, gn, todo, res):
    """:func:`lk_refine_node_quadratic` for the nodes ``lo <= k < hi`` with ``todo`` set, into ``res``
    (one chunk of :func:`geodeform.offsets._refine.lk_nodes` with ``kernel=lk_nodes_quadratic_range``,
    with its own buffers)."""
    scratch = lk_scratch(h, w)
    for k in range(lo, hi):
        if not todo[k]:
            continue
        if r0[k] < 0 or c0[k] < 0 or r0[k] + h > sp.ref.shape[0] or c0[k] + w > sp.ref.shape[1]:
            res[k, REASON] = OUTSIDE
            continue
        lk_refine_node_quadratic(sp, r0[k], c0[k], h, w, d_r[k], d_c[k], weight, gn, res[k], scratch)
