"""Simulated SAR pairs with known truth, for tests, benchmarks and checking a processing chain.

* :func:`gamma_speckle` — multiplicative, unit-mean Gamma speckle of a given ENL on an intensity image (a
  multi-looked GRD);
* :func:`warp` — move an image by a known displacement field (``secondary(p + d(p)) = reference(p)``);
* :func:`complex_pair` — two complex (SLC-like) images of circular-Gaussian speckle with a given
  coherence, band-limited, the second shifted by a known sub-pixel offset.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from geodeform.errors import InvalidInputError

__all__ = ["ComplexPair", "complex_pair", "gamma_speckle", "warp"]


def gamma_speckle(intensity: ArrayLike, looks: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Multiply an intensity image by independent unit-mean Gamma speckle of shape ``looks`` (the ENL).

    Parameters
    ----------
    intensity
        Reflectivity (linear intensity, ≥ 0).
    looks
        Equivalent number of looks L > 0 (speckle variance 1 / L; 4.4 for Sentinel-1 IW GRDH).
    rng
        Random generator.
    """
    if looks <= 0:
        raise InvalidInputError(f"looks: must be > 0, got {looks}")
    x = np.asarray(intensity, dtype=np.float64)
    return x * rng.gamma(looks, 1.0 / looks, size=x.shape)


def warp(image: ArrayLike, dx: ArrayLike, dy: ArrayLike, *, order: int = 5) -> NDArray[np.float64]:
    """Move ``image`` by the displacement field (dx, dy) defined on its own grid.

    The output ``s`` satisfies ``s(p + d(p)) = image(p)`` (geodeform's sign convention: a feature at (row,
    col) of the reference appears at (row + dy, col + dx) of the secondary), found by fixed-point
    iteration of the inverse map; spline interpolation of ``order``, mirrored at the borders.

    Parameters
    ----------
    image
        ``(rows, cols)`` image.
    dx, dy
        Displacement in pixels, scalars or arrays of the image's shape, smooth (|∇d| < 1).
    order
        Spline order of the interpolation (1-5).
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    qr, qc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    fx = np.broadcast_to(np.asarray(dx, dtype=np.float64), img.shape)
    fy = np.broadcast_to(np.asarray(dy, dtype=np.float64), img.shape)
    pr, pc = qr.copy(), qc.copy()
    for _ in range(10):
        ux = ndimage.map_coordinates(fx, [pr, pc], order=1, mode="nearest")
        uy = ndimage.map_coordinates(fy, [pr, pc], order=1, mode="nearest")
        pr, pc = qr - uy, qc - ux
    return np.asarray(ndimage.map_coordinates(img, [pr, pc], order=order, mode="mirror"))


class ComplexPair(NamedTuple):
    """Two simulated SLC-like images.

    Attributes
    ----------
    reference, secondary
        ``(rows, cols)`` complex64; ``secondary`` is the reference scene shifted by (dx, dy) px with a
        fraction of new speckle, so that the complex coherence of the pair is ``coherence``.
    dx, dy
        The imposed shift, px (a feature at (row, col) of the reference is at (row + dy, col + dx) of the
        secondary).
    coherence
        The imposed coherence.
    """

    reference: NDArray[np.complex64]
    secondary: NDArray[np.complex64]
    dx: float
    dy: float
    coherence: float


def _band_limit(z: NDArray[np.complex128], fraction: tuple[float, float]) -> NDArray[np.complex128]:
    F = np.fft.fft2(z)
    fy = np.abs(np.fft.fftfreq(z.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(z.shape[1]))[None, :]
    F[(fy > fraction[0] / 2) | (fx > fraction[1] / 2)] = 0
    return np.fft.ifft2(F)


def complex_pair(
    shape: tuple[int, int],
    coherence: float,
    dx: float,
    dy: float,
    rng: np.random.Generator,
    *,
    reflectivity: ArrayLike | None = None,
    bandwidth: tuple[float, float] = (0.8, 0.85),
) -> ComplexPair:
    """A pair of circular-Gaussian speckle images with a known coherence and a known constant shift.

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    coherence
        Complex coherence γ in [0, 1] between the two dates: ``s2 = γ s1 + √(1 − γ²) n`` before the shift.
    dx, dy
        Shift, px (Fourier shift, exact for the band-limited signal).
    rng
        Random generator.
    reflectivity
        Optional ``shape`` intensity scaling both images (``√R`` times the speckle), e.g. a real texture.
    bandwidth
        Occupied fraction of the sampling rate in (azimuth, range) (Sentinel-1 IW SLC: about 327/486 Hz in
        azimuth and 56.5/64.3 MHz in range; (0.8, 0.85) by default).
    """
    if not 0 <= coherence <= 1:
        raise InvalidInputError(f"coherence: must be in [0, 1], got {coherence}")
    h, w = shape

    def noise() -> NDArray[np.complex128]:
        z = (rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / np.sqrt(2)
        return _band_limit(z, bandwidth)

    s1 = noise()
    s2 = coherence * s1 + np.sqrt(1 - coherence**2) * noise()
    if reflectivity is not None:
        amp = np.sqrt(np.asarray(reflectivity, dtype=np.float64))
        s1 = s1 * amp
        s2 = s2 * amp
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    s2 = np.fft.ifft2(np.fft.fft2(s2) * np.exp(-2j * np.pi * (fx * dx + fy * dy)))
    return ComplexPair(
        s1.astype(np.complex64), s2.astype(np.complex64), float(dx), float(dy), float(coherence)
    )
