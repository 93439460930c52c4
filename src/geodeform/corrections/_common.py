"""Shared checks and robust statistics of the correction kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.errors import InvalidInputError

__all__ = ["NMAD", "as_map", "as_mask", "nmad"]

NMAD = 1.4826  # MAD -> sigma for a normal distribution


def as_map(values: ArrayLike, name: str, *, shape: tuple[int, ...] | None = None) -> NDArray[np.float64]:
    """A 2-D float map (NaN = no data), checked against ``shape`` when given."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name}: need a 2-D map (rows, cols), got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InvalidInputError(f"{name}: shape {arr.shape} differs from dx {shape}; pass maps of one grid")
    return arr


def as_mask(mask: ArrayLike | None, name: str, shape: tuple[int, ...]) -> NDArray[np.bool_] | None:
    """A boolean mask of ``shape`` (None passes through)."""
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise InvalidInputError(
            f"{name}: shape {arr.shape} differs from the map {shape}; rasterise it on the grid"
        )
    if arr.dtype != bool:
        arr = arr.astype(bool)
    return arr


def nmad(values: NDArray[Any]) -> float:
    """Normalised median absolute deviation of the finite values (NaN when there are none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan")
    return float(NMAD * np.median(np.abs(v - np.median(v))))
