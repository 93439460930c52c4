"""Imposed motions on real texture for the offset-tracking tests (known truth)."""

from __future__ import annotations

import numpy as np


def fourier_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """sec(p) = img(p - d): a feature at p moves to p + d, px (symmetric extension, no wrap ringing)."""
    h, w = img.shape
    big = np.pad(img.astype(np.float64), ((0, h), (0, w)), mode="symmetric")
    ky = np.fft.fftfreq(big.shape[0])[:, None]
    kx = np.fft.fftfreq(big.shape[1])[None, :]
    out = np.real(np.fft.ifft2(np.fft.fft2(big) * np.exp(-2j * np.pi * (ky * dy + kx * dx))))
    return out[:h, :w]


def noisy(img: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """``img`` plus white Gaussian noise at ``snr_db`` (std(img) / noise std, in dB), as float32."""
    rng = np.random.default_rng(seed)
    return (img + rng.normal(0, img.std() / 10 ** (snr_db / 20), img.shape)).astype(np.float32)
