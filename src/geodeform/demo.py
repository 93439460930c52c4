"""A self-contained glacier pair with known truth, built from a real satellite texture (offline demo, tests).

The reference is a real Landsat-8 band-4 crop shipped with the package (``geodeform/data``). The secondary
is the same surface moved by a known glacier flow field (a curved band flowing at up to ``peak_px``),
with a radiometric change (gain, offset, gamma), sensor noise in both images and a saturated cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from geodeform.synthetic import glacier_field, load_texture, radiometric_change, series_field, warp

__all__ = [
    "DemoPair",
    "DemoSeries",
    "glacier_field",
    "load_texture",
    "make_glacier_pair",
    "make_glacier_series",
    "series_field",
]

PIXEL_M = 30.0


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
    sec = warp(tex, lambda r, c: glacier_field(r, c, size, peak_px), iterations=10)
    span = tuple(np.percentile(tex, [0.5, 99.5]))
    sec = radiometric_change(sec, gain=1.1, offset=0.03, gamma=0.9, span=span)
    rng = np.random.default_rng(seed)
    sigma = tex.std() / 10 ** (snr_db / 20)
    ref = tex + rng.normal(0, sigma, tex.shape)
    sec = sec + rng.normal(0, sigma, tex.shape)
    cloud = ((rr - 0.25 * size) ** 2 + (cc - 0.75 * size) ** 2) < (0.09 * size) ** 2
    sec = np.where(cloud, 40000.0, sec)  # a saturated cloud top
    to16 = lambda a: np.clip(np.rint(a), 1, 65534).astype(np.uint16)  # noqa: E731
    return DemoPair(to16(ref), to16(sec), (datetime(2020, 1, 6), datetime(2020, 2, 5)), peak_px, cloud)


@dataclass(frozen=True)
class DemoSeries:
    """A glacier image series (uint16 DN, 0 = no data) with a known, constant flow.

    ``images[k]`` shows the surface displaced by ``velocity x (dates[k] - dates[0])`` from ``images[0]``;
    ``peak_px_per_day`` is the fastest flow. One date carries a saturated cloud (``cloudy``).
    """

    images: tuple[npt.NDArray[np.uint16], ...]
    dates: tuple[datetime, ...]
    peak_px_per_day: float
    cloudy: int

    def velocity(
        self, rows: npt.ArrayLike, cols: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """True velocity (dx, dy) in pixels per day at reference (row, col) (+dy = +row = south)."""
        return series_field(rows, cols, self.images[0].shape[0], self.peak_px_per_day)

    def glacier(self, margin_px: int = 4) -> npt.NDArray[np.bool_]:
        """The glacier outline of the demo: every pixel that moves, grown by ``margin_px``."""
        size = self.images[0].shape[0]
        rr, cc = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij")
        dx, dy = self.velocity(rr, cc)
        moving = np.hypot(dx, dy) > 0
        return ndimage.binary_dilation(moving, iterations=margin_px)


def _velocity_times(size: int, peak: float, days: float):
    def field(rows: npt.NDArray[np.float64], cols: npt.NDArray[np.float64]):
        vx, vy = series_field(rows, cols, size, peak)
        return vx * days, vy * days

    return field


def make_glacier_series(
    *,
    n_dates: int = 6,
    interval_days: int = 16,
    peak_px_per_day: float = 4.0 / 30.0,
    snr_db: float = 25.0,
    cloudy: int = 3,
    seed: int = 1,
) -> DemoSeries:
    """Build the demo series: date k = the real texture moved by ``v x t_k``, with a new radiometric change
    (gain, offset, gamma) and sensor noise per date, and a saturated cloud on date ``cloudy``.

    Default: 6 Landsat-like dates 16 days apart, up to 4 px per 30 days (1460 m/yr at 30 m).
    """
    from datetime import timedelta

    tex = load_texture().astype(np.float64)
    size = tex.shape[0]
    rr, cc = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij")
    rng = np.random.default_rng(seed)
    sigma = tex.std() / 10 ** (snr_db / 20)
    lo, hi = np.percentile(tex, [0.5, 99.5])
    t0 = datetime(2020, 1, 6)
    images, dates = [], []
    for k in range(n_dates):
        days = k * interval_days
        # image_k(p + v t) = image_0(p)
        img = warp(tex, _velocity_times(size, peak_px_per_day, days), iterations=12) if k else tex.copy()
        gain, offset, gamma = (
            1 + 0.1 * rng.standard_normal(),
            0.03 * rng.standard_normal(),
            1 + 0.08 * rng.standard_normal(),
        )
        img = radiometric_change(img, gain=gain, offset=offset, gamma=gamma, span=(lo, hi))
        img = img + rng.normal(0, sigma, tex.shape)
        if k == cloudy:
            cloud = ((rr - 0.3 * size) ** 2 + (cc - 0.65 * size) ** 2) < (0.1 * size) ** 2
            img = np.where(cloud, 40000.0, img)
        images.append(np.clip(np.rint(img), 1, 65534).astype(np.uint16))
        dates.append(t0 + timedelta(days=days))
    return DemoSeries(tuple(images), tuple(dates), peak_px_per_day, cloudy)
