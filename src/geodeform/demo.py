"""A self-contained glacier pair with known truth, built from a real satellite texture (offline demo, tests).

The reference is a real Landsat-8 band-4 crop shipped with the package (``geodeform/data``). The secondary
is the same surface moved by a known glacier flow field (a curved band flowing at up to ``peak_px``),
with a radiometric change (gain, offset, gamma), sensor noise in both images and a saturated cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = ["DemoPair", "glacier_field", "load_texture", "make_glacier_pair"]

PIXEL_M = 30.0


def load_texture() -> npt.NDArray[np.uint16]:
    """The shipped 576 × 576 Landsat-8 B4 crop (uint16 DN)."""
    with resources.files("geodeform").joinpath("data", "landsat8_b4_crop.npz").open("rb") as fh:
        return np.load(fh)["b4"]


def glacier_field(
    rows: npt.ArrayLike, cols: npt.ArrayLike, size: int, peak_px: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Known flow (dx, dy) in pixels at reference coordinates: a curved band along the columns."""
    r = np.asarray(rows, float)
    c = np.asarray(cols, float)
    centre = 0.5 * size + 0.1 * size * np.sin(2 * np.pi * c / size)
    slope = 0.1 * size * 2 * np.pi / size * np.cos(2 * np.pi * c / size)
    mag = peak_px * np.exp(-0.5 * ((r - centre) / (0.15 * size)) ** 2)
    norm = np.sqrt(1 + slope**2)
    return mag / norm, mag * slope / norm


@dataclass(frozen=True)
class DemoPair:
    """Reference and secondary images (uint16 DN, 0 = no data), their dates and the true flow."""

    reference: npt.NDArray[np.uint16]
    secondary: npt.NDArray[np.uint16]
    dates: tuple[datetime, datetime]
    peak_px: float
    cloud: npt.NDArray[np.bool_]

    def truth(
        self, rows: npt.ArrayLike, cols: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """True (dx, dy) in pixels at reference (row, col)."""
        return glacier_field(rows, cols, self.reference.shape[0], self.peak_px)


def make_glacier_pair(*, peak_px: float = 4.0, snr_db: float = 25.0, seed: int = 0) -> DemoPair:
    """Build the demo pair: secondary(p + d(p)) = reference(p), plus radiometric change, noise and a cloud."""
    tex = load_texture().astype(np.float64)
    size = tex.shape[0]
    rr, cc = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij")
    # inverse mapping by fixed-point iteration: p = q - d(p)
    pr, pc = rr.copy(), cc.copy()
    for _ in range(10):
        dx, dy = glacier_field(pr, pc, size, peak_px)
        pr, pc = rr - dy, cc - dx
    sec = ndimage.map_coordinates(tex, [pr, pc], order=5, mode="mirror")
    lo, hi = np.percentile(tex, [0.5, 99.5])
    s = np.clip((sec - lo) / (hi - lo), 0, None)
    sec = lo + (hi - lo) * (1.1 * s**0.9 + 0.03)
    rng = np.random.default_rng(seed)
    sigma = tex.std() / 10 ** (snr_db / 20)
    ref = tex + rng.normal(0, sigma, tex.shape)
    sec = sec + rng.normal(0, sigma, tex.shape)
    cloud = ((rr - 0.25 * size) ** 2 + (cc - 0.75 * size) ** 2) < (0.09 * size) ** 2
    sec = np.where(cloud, 40000.0, sec)  # a saturated cloud top
    to16 = lambda a: np.clip(np.rint(a), 1, 65534).astype(np.uint16)  # noqa: E731
    return DemoPair(to16(ref), to16(sec), (datetime(2020, 1, 6), datetime(2020, 2, 5)), peak_px, cloud)
