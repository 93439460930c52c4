"""Image series with a known motion, built from the real Landsat-8 texture shipped with geodeform.

Used by the tutorials when no real multi-date series with a known truth is at hand: the texture is real, the
motion is imposed, so every number the tutorials print can be checked against the truth.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from geodeform.demo import load_texture

Field = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def warp(texture: np.ndarray, field: Field, *, iterations: int = 10) -> np.ndarray:
    """The texture moved by ``field``: a feature at (row, col) goes to (row + dy, col + dx)."""
    rr, cc = np.meshgrid(*(np.arange(n, dtype=float) for n in texture.shape), indexing="ij")
    pr, pc = rr.copy(), cc.copy()
    for _ in range(iterations):  # inverse mapping by fixed-point iteration: p = q - d(p)
        dx, dy = field(pr, pc)
        pr, pc = rr - dy, cc - dx
    return ndimage.map_coordinates(texture, [pr, pc], order=5, mode="mirror")


def image_series(
    fields: list[Field], *, snr_db: float = 30.0, seed: int = 0, size: int | None = None
) -> list[np.ndarray]:
    """One uint16 image per displacement field (field k = cumulative motion since the first date), on the
    texture or its upper-left ``size`` x ``size`` crop."""
    tex = load_texture().astype(np.float64)[:size, :size]
    rng = np.random.default_rng(seed)
    sigma = tex.std() / 10 ** (snr_db / 20)
    out = []
    for field in fields:
        img = warp(tex, field) + rng.normal(0, sigma, tex.shape)
        out.append(np.clip(np.rint(img), 1, 65534).astype(np.uint16))
    return out
