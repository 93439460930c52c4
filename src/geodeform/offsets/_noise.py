"""The predicted error of a chip's offset with the noise correlation of the image model (texture-aware).

The refinement kernels predict ``SIGMA_CALIBRATION`` · sqrt(σ_r² trace H⁻¹) (σ_r² the residual variance per
pixel, H = Σ w g gᵀ), the white-noise formula times one constant. The residual is not white: the image
model (the cubic B-spline whose coefficients are the pixels, or a Gaussian before an interpolating
spline) filters the pixels' noise by a kernel K, so neighbouring residuals share noise, and how much of
it reaches the offset depends on how the chip's gradients vary over K's width: on a smooth texture the
shared noise adds up, on a rough one it cancels. One constant cannot hold for every texture. With white
pixel noise filtered by K, the first-order error of the estimate δ = H⁻¹ Σ w g r has the covariance

    C = σ_r² / ‖K‖² · H₀⁻¹ B H₀⁻¹,    B = Σ_k (K ⋆ (w g))_k (K ⋆ (w g))_kᵀ ≈ Σ w² (K ⋆ g)(K ⋆ g)ᵀ,

(the sandwich estimator: σ_r² / ‖K‖² is the pixels' noise variance, B the variance of the weighted
gradient sum it drives), and H₀ = H - Σw · σ_g² I removes from H the power that the reference's noise
adds to its gradients (σ_g² = σ_r² / (2 ‖K‖²) · ‖∂K‖², half the residual being the reference's), which
makes the steps fall short on noisy chips and the white-noise formula optimistic there.
:func:`noise_factor` returns sqrt(trace C) over the kernel's ``SIGMA`` per chip: the matcher keeps its
``SIGMA`` for its own decisions (nested chips, two-motion fits, smoothing weights) and scales the error
it reports by the factor of each node's base chip.

Sign convention and units: offsets and errors in pixels of the images the kernel ran on.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import run_chunks
from geodeform.offsets._filters import bspline_model, gaussian_kernel, separable_fir, spline_gradients
from geodeform.offsets._layout import FAST, H_INV, SIGMA, SIGMA_CALIBRATION, Spline

__all__ = ["ChipNoise", "filter_norms", "interpolation_error", "noise_factor", "smoothed_gradients"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Per-component interpolation bias (px) of the B-spline model at a quarter-pixel fraction per unit
# roughness²: fitted on noise-free imposed shifts (0.1-0.7 px) of the shipped Landsat-8 crop (bias
# 0.003 px, roughness 0.29) and an aliased 120 m Sentinel-2 crop (0.017 px, roughness 0.59).
INTERPOLATION_BIAS = 0.045

# The reference's gradient noise is removed from H only up to this share of H's smallest eigenvalue:
# beyond it the chip's texture is below its noise and the first-order formula no longer holds.
MAX_NOISE_SHARE = 0.75


def _gaussian(img: F32, sigma: float) -> F32:
    k = gaussian_kernel(sigma)
    return separable_fir(np.ascontiguousarray(img, np.float32), k, k)


@functools.lru_cache(maxsize=8)
def filter_norms(exact: bool, smooth: float) -> tuple[float, float, float]:
    """(‖K‖², ‖∂K‖², ‖K ⋆ ∂K‖²): squared norms of the image model's value, row-derivative and smoothed
    row-derivative responses to one pixel (the noise variance they pass on from unit white pixel noise),
    from an impulse run through the same filters as the images. ``exact``: a Gaussian of σ =
    ``smooth`` px then an interpolating cubic B-spline; else the B-spline whose coefficients are the
    pixels."""
    n = 41
    delta = np.zeros((n, n), np.float32)
    delta[n // 2, n // 2] = 1.0
    if exact:
        val = _gaussian(delta, smooth) if smooth > 0 else delta
        gy, _ = spline_gradients(val)
        ty = _gaussian(gy, smooth) if smooth > 0 else gy
    else:
        val, gy, gx, ty, v2, v3 = (np.empty((n, n), np.float32) for _ in range(6))
        bspline_model(delta, val, gy, gx)
        bspline_model(gy, ty, v2, v3)
    return tuple(float(np.sum(a.astype(np.float64) ** 2)) for a in (val, gy, ty))  # type: ignore[return-value]


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _model_smooth_even_range(lo, hi, g, out):  # pragma: no cover - numba
    """[1, 4, 1] / 6 ⊗ [1, 4, 1] / 6 (the B-spline model's value kernel) of ``g`` at its even rows and
    columns, into the rows ``lo <= i2 < hi`` of ``out`` (ceil(h / 2), ceil(w / 2)); edge pixels repeat."""
    h, w = g.shape
    c0 = np.float32(1.0 / 6.0)
    c1 = np.float32(4.0 / 6.0)
    for i2 in range(lo, hi):
        i = 2 * i2
        up = g[max(i - 1, 0)]
        mid = g[i]
        dn = g[min(i + 1, h - 1)]
        orow = out[i2]
        for j2 in range(out.shape[1]):
            j = 2 * j2
            jl = max(j - 1, 0)
            jr = min(j + 1, w - 1)
            left = c0 * up[jl] + c1 * mid[jl] + c0 * dn[jl]
            centre = c0 * up[j] + c1 * mid[j] + c0 * dn[j]
            right = c0 * up[jr] + c1 * mid[jr] + c0 * dn[jr]
            orow[j2] = c0 * left + c1 * centre + c0 * right


def _even(a: npt.NDArray[np.generic]) -> F32:
    """``a`` at its even rows and columns, as a contiguous float32 array."""
    return np.ascontiguousarray(a[::2, ::2], np.float32)


def smoothed_gradients(sp: Spline, exact: bool, smooth: float) -> tuple[F32, F32]:
    """K ⋆ g at the even rows and columns: the reference's model gradients filtered again by the model's
    value kernel K, shape (ceil(h / 2), ceil(w / 2))."""
    if exact:
        if smooth <= 0:
            return _even(sp.gy), _even(sp.gx)
        return _even(_gaussian(sp.gy, smooth)), _even(_gaussian(sp.gx, smooth))
    h, w = sp.gy.shape
    out = []
    for g in (sp.gy, sp.gx):
        even = np.empty(((h + 1) // 2, (w + 1) // 2), np.float32)
        run_chunks(_model_smooth_even_range, even.shape[0], np.ascontiguousarray(g), even)
        out.append(even)
    return out[0], out[1]


def _parity_windows(weight: F32) -> F64:
    """The window at the rows and columns of each parity (pi, pj): shape (2, 2, ceil(h/2), ceil(w/2)),
    entry [pi, pj, k, l] the weight of chip pixel (pi + 2k, pj + 2l), 0 past the chip."""
    h, w = weight.shape
    out = np.zeros((2, 2, (h + 1) // 2, (w + 1) // 2))
    for pi in (0, 1):
        for pj in (0, 1):
            sub = weight[pi::2, pj::2]
            out[pi, pj, : sub.shape[0], : sub.shape[1]] = sub
    return out


@nb.njit(cache=True, nogil=True, fastmath=FAST)
def _weighted_outer_range(lo, hi, ty, tx, g2, ve, r0, c0, wp, out):  # pragma: no cover - numba
    """Per chip (origin r0[k], c0[k] in the strip), over its valid pixels on the strip's even rows and
    columns (a quarter of the pixels, the sums scaled back by 4; all arrays given at those pixels, ``wp``
    the window per parity, :func:`_parity_windows`): Σ w² t tᵀ (entries yy, yx, xx), Σ w, Σ w² |g|², Σ w²
    into the rows ``lo <= k < hi`` of ``out`` (n, 6), left as they are (NaN) for chips outside the strip."""
    hh, ww = wp.shape[2], wp.shape[3]
    nr, nc = ty.shape
    for k in range(lo, hi):
        a, b = r0[k], c0[k]
        pi, pj = a & 1, b & 1
        a2, b2 = (a + pi) // 2, (b + pj) // 2  # the chip's first even row and column, halved
        if a < 0 or b < 0 or a2 + hh > nr or b2 + ww > nc:
            continue
        wk = wp[pi, pj]
        s00 = 0.0
        s01 = 0.0
        s11 = 0.0
        sw = 0.0
        sg = 0.0
        sw2 = 0.0
        for i in range(hh):
            yrow = ty[a2 + i, b2 : b2 + ww]
            xrow = tx[a2 + i, b2 : b2 + ww]
            grow = g2[a2 + i, b2 : b2 + ww]
            vrow = ve[a2 + i, b2 : b2 + ww]
            wrow = wk[i]
            for j in range(ww):
                wv = wrow[j] * vrow[j]
                q = wv * wrow[j]
                y = yrow[j]
                x = xrow[j]
                s00 += q * y * y
                s01 += q * y * x
                s11 += q * x * x
                sw += wv
                sg += q * grow[j]
                sw2 += q
        out[k, 0] = 4.0 * s00
        out[k, 1] = 4.0 * s01
        out[k, 2] = 4.0 * s11
        out[k, 3] = 4.0 * sw
        out[k, 4] = 4.0 * sg
        out[k, 5] = 4.0 * sw2


class ChipNoise(NamedTuple):
    """Per chip: the correlated-noise error over the kernel's ``SIGMA`` and the texture's roughness.

    Attributes
    ----------
    factor : ndarray of float64
        sqrt(trace C) / ``SIGMA`` (module docstring); NaN where the chip has no refinement output.
    roughness : ndarray of float64
        1 - ‖K ⋆ g‖² / ‖g‖² over the chip (weights w²), the reference's noise removed: the share of the
        gradient power at frequencies the image model attenuates, in [0, 1] (0.29 on the shipped
        Landsat-8 crop, 0.59 on an aliased 120 m Sentinel-2 crop); what sets the model's
        interpolation bias (:func:`interpolation_error`).
    """

    factor: F64
    roughness: F64


def noise_factor(
    sp: Spline,
    r0: I64,
    c0: I64,
    chip: tuple[int, int],
    weight: F32,
    lk: F64,
    *,
    exact: bool,
    smooth: float,
) -> ChipNoise:
    """Ratio of the correlated-noise predicted error (module docstring) to the kernel's ``SIGMA``, per
    chip (origins ``r0``, ``c0`` in the strip, size ``chip``, window ``weight``), from the refinement
    output ``lk`` (n, REFINE_COLS) of those chips on the full-resolution model ``sp``, and the chips'
    roughness (:class:`ChipNoise`)."""
    knorm, dknorm, tnorm = filter_norms(exact, float(smooth))
    ty, tx = smoothed_gradients(sp, exact, smooth)
    gy, gx = _even(sp.gy), _even(sp.gx)
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)
    s = np.full((r0.size, 6), np.nan)
    run_chunks(
        _weighted_outer_range,
        r0.size,
        ty,
        tx,
        gy * gy + gx * gx,
        _even(sp.valid),
        r0,
        c0,
        _parity_windows(weight),
        s,
    )
    i00, i01, i11 = lk[:, H_INV], lk[:, H_INV + 1], lk[:, H_INV + 2]
    sigma = lk[:, SIGMA]
    with np.errstate(invalid="ignore", divide="ignore"):
        det_i = i00 * i11 - i01 * i01
        h00, h01, h11 = i11 / det_i, -i01 / det_i, i00 / det_i  # H from its inverse
        sr2 = (sigma / SIGMA_CALIBRATION) ** 2 / (i00 + i11)  # residual variance per pixel
        tr = h00 + h11
        lmin = 0.5 * (tr - np.sqrt(np.maximum(tr * tr - 4.0 * (h00 * h11 - h01 * h01), 0.0)))
        noise = np.minimum(sr2 / (2.0 * knorm) * dknorm * s[:, 3], MAX_NOISE_SHARE * lmin)
        a, b, c = h00 - noise, h01, h11 - noise
        det0 = a * c - b * b
        j00, j01, j11 = c / det0, -b / det0, a / det0  # H₀⁻¹
        b00, b01, b11 = s[:, 0], s[:, 1], s[:, 2]
        # trace(J B J) = trace(J² B) for symmetric J, B
        t = (j00 * j00 + j01 * j01) * b00 + 2.0 * j01 * (j00 + j11) * b01 + (j01 * j01 + j11 * j11) * b11
        out = np.sqrt(sr2 / knorm * t) / sigma
        # the reference's noise in Σ w² |g|² and Σ w² |K ⋆ g|² (both gradient components)
        ref_noise = sr2 / (2.0 * knorm) * 2.0 * s[:, 5]
        rough = 1.0 - (s[:, 0] + s[:, 2] - ref_noise * tnorm) / (s[:, 4] - ref_noise * dknorm)
    return ChipNoise(
        np.where(np.isfinite(out) & (out > 0), out, np.nan),
        np.where(np.isfinite(rough), np.clip(rough, 0.0, 1.0), np.nan),
    )


def interpolation_error(roughness: F64, dy: F64, dx: F64) -> F64:
    """Predicted 1-σ vector error (px) of the image model's interpolation at offsets (dy, dx) px.

    The model of the secondary at a fractional position t is not the exact shift of the model at the
    pixels: its phase lags at the frequencies the model attenuates, which biases the offset toward, or
    away from, whole and half pixels (pixel locking: 0 at t = 0 and 0.5, largest near 0.25). The bias is
    the same for neighbouring nodes with the same fraction, so the smoothing does not reduce it. Per
    component ``INTERPOLATION_BIAS`` · roughness² · |sin 2πt|.
    """
    ey = np.abs(np.sin(2.0 * np.pi * dy))
    ex = np.abs(np.sin(2.0 * np.pi * dx))
    return INTERPOLATION_BIAS * roughness**2 * np.hypot(ey, ex)
