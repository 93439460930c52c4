"""Speckle handling kernels (pure numpy/scipy, no I/O): oversampled detection, speckle filters, ENL.

Speckle is multiplicative on intensity: ``I = R · S`` with ``R`` the reflectivity and ``S`` a unit-mean
Gamma variable of shape L (the equivalent number of looks, ENL; ≈ 4.4 for Sentinel-1 IW GRDH, 1 for an SLC).
Averaging intensities over n independent pixels multiplies the ENL by about n; the logarithm turns the
speckle into an additive noise of constant variance (ψ'(L), ψ' the trigamma function), which is what a
correlation assumes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from geodeform.errors import InvalidInputError

__all__ = [
    "SPECKLE_FILTERS",
    "SpeckleFilter",
    "detect",
    "enl",
    "filter_intensity",
    "oversample_complex",
    "spectral_centroid",
]

SpeckleFilter = Literal["none", "boxcar", "gaussian", "lee"]
SPECKLE_FILTERS: tuple[str, ...] = ("none", "boxcar", "gaussian", "lee")


def spectral_centroid(z: ArrayLike, axis: int) -> float:
    """Centre of the power spectrum of complex data along ``axis``, cycles per sample in [−0.5, 0.5).

    From the phase of the lag-one autocorrelation (the Doppler centroid along azimuth for an SLC).
    """
    a = np.moveaxis(np.asarray(z), axis, 0)
    ok = np.isfinite(a[1:]) & np.isfinite(a[:-1])
    c = np.sum(np.where(ok, a[1:] * np.conj(a[:-1]), 0))
    return float(np.angle(c) / (2 * np.pi))


def oversample_complex(z: ArrayLike, factor: int = 2) -> NDArray[np.complex64]:
    """Band-limited interpolation of complex (SLC) data by ``factor`` in both directions.

    The spectrum is first moved to baseband along each axis (its centroid, e.g. the Doppler centroid, to
    zero frequency), then zero-padded, as ampcor does before detection: detection doubles the bandwidth, so
    the amplitude of the oversampled data is free of aliasing. The linear phase removed does not change
    ``|z|``. Sample ``u`` of the output lies at input coordinate ``u / factor``.

    Parameters
    ----------
    z
        ``(rows, cols)`` complex values; NaN = no data (set to 0 before the FFT; the output is NaN within
        ``factor`` samples of them).
    factor
        Integer oversampling factor ≥ 1.

    Returns
    -------
    ndarray of complex64
        ``(rows · factor, cols · factor)``.
    """
    k = int(factor)
    if k < 1 or k != factor:
        raise InvalidInputError(f"oversample: need an integer factor >= 1, got {factor!r}")
    a = np.asarray(z, dtype=np.complex128)
    if a.ndim != 2:
        raise InvalidInputError(f"complex image: need 2-D data, got shape {a.shape}")
    if k == 1:
        return a.astype(np.complex64)
    bad = ~np.isfinite(a)
    a = np.where(bad, 0, a)
    for axis in (0, 1):
        n = a.shape[axis]
        f0 = spectral_centroid(a, axis)
        ramp = np.exp(-2j * np.pi * f0 * np.arange(n)).reshape((-1, 1) if axis == 0 else (1, -1))
        spec = np.fft.fft(a * ramp, axis=axis)
        half = (n + 1) // 2
        pad_shape = list(spec.shape)
        pad_shape[axis] = n * (k - 1)
        lo = np.take(spec, np.arange(half), axis=axis)
        hi = np.take(spec, np.arange(half, n), axis=axis)
        if n % 2 == 0:  # split the Nyquist bin between both ends so the interpolation stays real-symmetric
            nyq = np.take(hi, [0], axis=axis) / 2
            hi = np.concatenate([nyq, np.take(hi, np.arange(1, hi.shape[axis]), axis=axis)], axis=axis)
            lo = np.concatenate([lo, nyq], axis=axis)
            pad_shape[axis] -= 1
        spec = np.concatenate([lo, np.zeros(pad_shape, dtype=spec.dtype), hi], axis=axis)
        a = np.fft.ifft(spec, axis=axis) * k
    if bad.any():
        grown = ndimage.binary_dilation(bad, iterations=1)
        a[np.repeat(np.repeat(grown, k, axis=0), k, axis=1)] = np.nan
    return a.astype(np.complex64)


def detect(z: ArrayLike) -> NDArray[np.float32]:
    """Intensity ``|z|²`` of complex data (float32, NaN kept)."""
    a = np.asarray(z)
    return (a.real.astype(np.float32) ** 2 + a.imag.astype(np.float32) ** 2).astype(np.float32)


def _nan_uniform(x: NDArray[np.float64], size: int) -> NDArray[np.float64]:
    ok = np.isfinite(x)
    num = ndimage.uniform_filter(np.where(ok, x, 0.0), size, mode="reflect")
    den = ndimage.uniform_filter(ok.astype(np.float64), size, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok & (den > 0), num / den, np.nan)


def filter_intensity(
    intensity: ArrayLike,
    method: SpeckleFilter = "boxcar",
    *,
    size: int = 3,
    looks: float = 1.0,
) -> NDArray[np.float32]:
    """Speckle filter of a SAR intensity image.

    Parameters
    ----------
    intensity
        ``(rows, cols)`` intensity (linear power, ≥ 0); NaN = no data (kept NaN).
    method
        ``"none"``; ``"boxcar"``: mean over ``size`` × ``size`` pixels (multi-looking without decimation);
        ``"gaussian"``: Gaussian of σ = ``size`` / 2.5 px (about the same noise reduction as the boxcar,
        smoother transfer function); ``"lee"``: Lee's (1980) local-statistics filter over ``size`` ×
        ``size``, which smooths homogeneous areas and keeps edges and point targets.
    size
        Window size, px (odd, ≥ 1).
    looks
        ENL of the input, used by ``"lee"`` (speckle variance 1 / looks).

    Returns
    -------
    ndarray of float32
    """
    x = np.asarray(intensity, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"intensity: need a 2-D image, got shape {x.shape}")
    if method not in SPECKLE_FILTERS:
        raise InvalidInputError(f"speckle_filter={method!r} is not known; use one of {list(SPECKLE_FILTERS)}")
    if int(size) != size or size < 1:
        raise InvalidInputError(f"filter size: need a positive integer (px), got {size!r}")
    if method == "none" or size == 1:
        return x.astype(np.float32)
    if method == "boxcar":
        return _nan_uniform(x, int(size)).astype(np.float32)
    if method == "gaussian":
        ok = np.isfinite(x)
        sigma = size / 2.5
        num = ndimage.gaussian_filter(np.where(ok, x, 0.0), sigma, mode="reflect")
        den = ndimage.gaussian_filter(ok.astype(np.float64), sigma, mode="reflect")
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok & (den > 0.05), num / den, np.nan).astype(np.float32)
    if looks <= 0:
        raise InvalidInputError(f"looks: must be > 0, got {looks}")
    mean = _nan_uniform(x, int(size))
    var = np.maximum(_nan_uniform(x * x, int(size)) - mean**2, 0.0)
    cu2 = 1.0 / looks  # squared coefficient of variation of pure speckle
    with np.errstate(invalid="ignore", divide="ignore"):
        ci2 = var / mean**2
        k = np.clip((1.0 - cu2 / ci2) / (1.0 + cu2), 0.0, 1.0)
    k = np.where(np.isfinite(k), k, 0.0)
    return (mean + k * (x - mean)).astype(np.float32)


def enl(intensity: ArrayLike) -> float:
    """Equivalent number of looks of a homogeneous intensity patch: mean² / variance."""
    x = np.asarray(intensity, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2 or x.var() == 0:
        raise InvalidInputError("enl: need a patch with at least two finite, non-constant values")
    return float(x.mean() ** 2 / x.var())
