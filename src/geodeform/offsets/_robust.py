"""Robust sub-pixel refinement for chips that straddle a displacement discontinuity (numba kernels).

Tukey-weighted iteratively reweighted Gauss–Newton: pixels that move with the other side of a step (a
fault, a calving front) or that match nothing (a cloud edge, a shadow) get large residuals and zero
weight, so the estimate locks onto one motion instead of blending. Used by the ``ncc`` matcher's
contaminated-chip and discontinuity passes.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import median
from geodeform.offsets._common import each_node
from geodeform.offsets._layout import (
    CENTRE_SCORE,
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
    ZNCC,
    Spline,
)
from geodeform.offsets._refine import bspline3_weights, interp_chip

__all__ = ["lk_robust_node", "lk_robust_nodes"]


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def lk_robust_node(sp, r0, c0, h, w, d_r, d_c, max_iter, centre, out):
    """Robust (Tukey IRLS) Gauss–Newton refinement of one chip's translation.

    Parameters
    ----------
    sp : Spline
        The strip's B-spline data (:class:`geodeform.offsets._layout.Spline`).
    r0, c0, h, w : int
        Chip origin in the strip and size, px.
    d_r, d_c : float
        Start offset, px; the answer stays within 2.5 px of it (else ``NOT_CONVERGED``).
    max_iter : int
        Iterations (at least 4 are made before the convergence test).
    centre : int
        Side, px, of the central square whose pixels decide whether the motion found is the node's.
    out : ndarray of float64, shape (REFINE_COLS,)
        Receives ``DY``, ``DX``, ``ZNCC``, ``REASON``, ``SIGMA`` and ``CENTRE_SCORE`` (others NaN).

    Notes
    -----
    Each iteration normalises gain and offset on the weighted valid pixels, takes the residuals' robust
    scale s = 1.4826 MAD and gives each pixel Tukey's biweight (1 - (e / 4.685 s)²)² (0 beyond), then
    makes a Gauss–Newton step on the weighted normal equations. ``CENTRE_SCORE`` is the share of the
    central pixels' texture (Σ |g|²) that stayed an inlier: near 1 when the motion found is that of the
    node's own pixels. ``SIGMA`` is the predicted 1-σ vector error from the inliers' residual variance.
    """
    ref, gyi, gxi, rvalid, coef, tvalid = sp.ref, sp.gy, sp.gx, sp.valid, sp.coef, sp.taps_valid
    Hh, Ww = coef.shape
    for k in range(REFINE_COLS):
        out[k] = np.nan
    wgt = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            wgt[i, j] = 1.0 if rvalid[r0 + i, c0 + j] else 0.0
    wr = np.empty(4)
    wc = np.empty(4)
    hb = np.empty((h + 3, w), np.float32)
    S = np.empty((h, w))
    V = np.empty((h, w), dtype=np.bool_)
    dr = float(d_r)
    dc = float(d_c)
    zn = np.nan
    sig2 = np.nan
    reason = NOT_CONVERGED
    for it in range(max_iter):
        ir = math.floor(dr)
        ic = math.floor(dc)
        bspline3_weights(dr - ir, wr)
        bspline3_weights(dc - ic, wc)
        br = r0 + ir - 1 + LK_PAD
        bc = c0 + ic - 1 + LK_PAD
        if br < 0 or bc < 0 or br + h + 3 > Hh or bc + w + 3 > Ww:
            reason = OUTSIDE
            break
        sw = 0.0
        sr = 0.0
        ss = 0.0
        interp_chip(coef, br, wr, wc, bc, h, w, hb, S)
        for i in range(h):
            for j in range(w):
                v = wgt[i, j] > 0.0 and tvalid[br + i, bc + j] != 0
                V[i, j] = v
                if v:
                    m = wgt[i, j]
                    sw += m
                    sr += m * ref[r0 + i, c0 + j]
                    ss += m * S[i, j]
        if sw < 0.25 * h * w:
            reason = MASKED
            break
        mr = sr / sw
        ms = ss / sw
        vr = 0.0
        vs = 0.0
        cv = 0.0
        for i in range(h):
            for j in range(w):
                if V[i, j]:
                    m = wgt[i, j]
                    a = ref[r0 + i, c0 + j] - mr
                    b = S[i, j] - ms
                    vr += m * a * a
                    vs += m * b * b
                    cv += m * a * b
        if vr <= 0.0 or vs <= 0.0:
            reason = TEXTURELESS
            break
        gain = math.sqrt(vr / vs)
        zn = cv / math.sqrt(vr * vs)
        # residuals, robust scale, new weights, normal equations
        e2 = 0.0
        for i in range(h):
            for j in range(w):
                if V[i, j]:
                    e = (ref[r0 + i, c0 + j] - mr) - gain * (S[i, j] - ms)
                    S[i, j] = e
                    e2 += wgt[i, j] * e * e
        sig2 = e2 / sw
        # robust scale: MAD of the residuals (an RMS would let the other side's pixels set it)
        absr = np.empty(h * w)
        na = 0
        for i in range(h):
            for j in range(w):
                if V[i, j]:
                    absr[na] = abs(S[i, j])
                    na += 1
        scale = 1.4826 * median(absr[:na])
        c = 4.685 * max(scale, 1e-12)
        a00 = 0.0
        a01 = 0.0
        a11 = 0.0
        by = 0.0
        bx = 0.0
        e2i = 0.0
        ni = 0.0
        for i in range(h):
            for j in range(w):
                wnew = 0.0
                if V[i, j]:
                    u = S[i, j] / c
                    if u * u < 1.0:
                        wnew = (1.0 - u * u) ** 2
                        e2i += S[i, j] * S[i, j]
                        ni += 1.0
                if rvalid[r0 + i, c0 + j]:
                    wgt[i, j] = max(wnew, 1e-6)
                if wnew > 0.0:
                    gy = gyi[r0 + i, c0 + j]
                    gx = gxi[r0 + i, c0 + j]
                    a00 += wnew * gy * gy
                    a01 += wnew * gy * gx
                    a11 += wnew * gx * gx
                    by += wnew * gy * S[i, j]
                    bx += wnew * gx * S[i, j]
        if ni > 0:
            sig2 = e2i / ni
        det = a00 * a11 - a01 * a01
        if det <= 1e-12 * (a00 + a11) ** 2:
            reason = TEXTURELESS
            break
        ddr = -(a11 * by - a01 * bx) / det
        ddc = -(a00 * bx - a01 * by) / det
        dr -= ddr
        dc -= ddc
        if abs(dr - d_r) > 2.5 or abs(dc - d_c) > 2.5:
            reason = NOT_CONVERGED
            break
        if it >= 3 and ddr * ddr + ddc * ddc < 1e-4:
            reason = OK
            break
        if it == max_iter - 1 and ddr * ddr + ddc * ddc < 4e-4:
            reason = OK
    if reason != OK:
        out[REASON] = reason
        return
    lo_r = (h - centre) // 2
    lo_c = (w - centre) // 2
    num = 0.0
    den = 0.0
    for i in range(lo_r, lo_r + centre):
        for j in range(lo_c, lo_c + centre):
            if rvalid[r0 + i, c0 + j]:
                # texture-weighted: flat pixels fit either motion and say nothing about the side
                g2 = gyi[r0 + i, c0 + j] ** 2 + gxi[r0 + i, c0 + j] ** 2
                den += g2
                num += g2 if wgt[i, j] > 0.01 else 0.0
    det = a00 * a11 - a01 * a01
    out[DY] = dr
    out[DX] = dc
    out[ZNCC] = zn
    out[REASON] = OK
    out[CENTRE_SCORE] = num / den if den > 0 else 0.0
    out[SIGMA] = SIGMA_CALIBRATION * math.sqrt(sig2 * (a00 + a11) / det) if det > 0 else np.nan


def lk_robust_nodes(
    sp: Spline,
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    size: tuple[int, int],
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    max_iter: int,
    centre: int,
) -> npt.NDArray[np.float64]:
    """:func:`lk_robust_node` for many nodes in parallel (chips of ``size`` (h, w) at (r0[k], c0[k]),
    from (start[0][k], start[1][k]) px); returns (n, REFINE_COLS)."""
    n = r0.size
    res = np.full((n, REFINE_COLS), np.nan)
    each_node(
        lk_robust_node, sp, r0, c0, size, start, res, params=(max_iter, centre), outside=(REASON, OUTSIDE)
    )
    return res
