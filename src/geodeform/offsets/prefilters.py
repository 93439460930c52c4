"""Image pre-filters applied before matching: Wallis, high-pass, gradient orientation, rank.

Each filter takes a float image (NaN = no data) and returns a float32 image of the same shape with NaN kept
where the input was NaN, so masks survive filtering.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from geodeform.errors import InvalidInputError

__all__ = ["PREFILTERS", "apply_prefilter", "gradient_orientation", "highpass", "rank", "wallis"]

Array = npt.NDArray[np.float32]


def _filled(img: npt.NDArray[np.floating]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    valid = np.isfinite(img)
    out = np.where(valid, img, 0.0).astype(np.float64)
    if not valid.all() and valid.any():
        # normalised convolution fill so filters do not ring at no-data borders
        num = ndimage.uniform_filter(out, 9)
        den = ndimage.uniform_filter(valid.astype(np.float64), 9)
        fill = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 1e-6)
        fill = np.where(np.isfinite(fill), fill, float(np.nanmean(img)))
        out = np.where(valid, out, fill)
    return out, valid


def _masked_box_stats(img: npt.NDArray[np.floating], size: int) -> tuple[Array, Array, npt.NDArray[np.bool_]]:
    valid = np.isfinite(img)
    x = np.where(valid, img, 0.0).astype(np.float64)
    w = valid.astype(np.float64)
    n = ndimage.uniform_filter(w, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = ndimage.uniform_filter(x, size) / n
        var = ndimage.uniform_filter(x * x, size) / n - mean * mean
    return mean.astype(np.float32), np.sqrt(np.maximum(var, 0.0)).astype(np.float32), valid


def wallis(img: npt.NDArray[np.floating], *, size: int = 15, eps: float = 1e-6) -> Array:
    """Wallis filter: local mean removed and local standard deviation equalised over ``size`` px.

    Makes matching insensitive to illumination and contrast changes (shadows, haze, seasonal change).
    """
    mean, std, valid = _masked_box_stats(img, size)
    scale = float(np.nanmedian(std[valid])) if valid.any() else 1.0
    out = (img - mean) / (std + eps * max(scale, 1e-12) + 1e-3 * scale)
    return np.where(valid, out, np.nan).astype(np.float32)


def highpass(img: npt.NDArray[np.floating], *, sigma: float = 3.0) -> Array:
    """Difference of the image and its Gaussian blur (``sigma`` px): removes slow radiometric trends."""
    filled, valid = _filled(img)
    out = filled - ndimage.gaussian_filter(filled, sigma)
    return np.where(valid, out, np.nan).astype(np.float32)


def gradient_orientation(img: npt.NDArray[np.floating], *, sigma: float = 1.0) -> Array:
    """Orientation of the intensity gradient, as cos(2θ)+sin(2θ)-weighted signal.

    Gradient orientation is invariant to monotonic radiometric changes (illumination, sensor), which makes
    it the usual choice for optical/SAR or multi-sensor pairs. Returned as the real image
    ``cos θ + sin θ`` weighted by the normalised gradient magnitude, a single-channel surrogate of the
    complex orientation image.
    """
    filled, valid = _filled(img)
    gy = ndimage.gaussian_filter(filled, sigma, order=(1, 0))
    gx = ndimage.gaussian_filter(filled, sigma, order=(0, 1))
    mag = np.hypot(gx, gy)
    ref = float(np.median(mag[valid])) if valid.any() else 1.0
    w = mag / (mag + ref + 1e-12)
    theta = np.arctan2(gy, gx)
    out = w * (np.cos(theta) + np.sin(theta))
    return np.where(valid, out, np.nan).astype(np.float32)


def rank(img: npt.NDArray[np.floating], *, size: int = 7) -> Array:
    """Local rank transform (GeFolki): each pixel replaced by its rank among its ``size``² neighbours.

    Invariant to any monotonic radiometric change.
    """
    filled, valid = _filled(img)
    half = size // 2
    pad = np.pad(filled, half, mode="reflect")
    out = np.zeros(filled.shape, np.float32)
    for i in range(size):
        for j in range(size):
            out += pad[i : i + filled.shape[0], j : j + filled.shape[1]] < filled
    return np.where(valid, out, np.nan).astype(np.float32)


PREFILTERS: dict[str, Callable[..., Array]] = {
    "wallis": wallis,
    "highpass": highpass,
    "gradient": gradient_orientation,
    "rank": rank,
}


def apply_prefilter(img: npt.NDArray[np.floating], name: str | None) -> npt.NDArray[np.float32]:
    """Apply the pre-filter called ``name`` (one of :data:`PREFILTERS`, or None for none)."""
    if name is None or name == "none":
        return np.asarray(img, np.float32)
    if name not in PREFILTERS:
        raise InvalidInputError(f"prefilter={name!r} is not known; use one of {sorted(PREFILTERS)} or None")
    return PREFILTERS[name](img)


def prefilter_margin(name: str | None) -> int:
    """Pixels of context a filter needs on each side of a strip (so strips join seamlessly)."""
    return {"wallis": 12, "highpass": 12, "gradient": 6, "rank": 6}.get(name or "none", 0)
