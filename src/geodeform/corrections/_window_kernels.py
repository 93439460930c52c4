"""Numba kernels of the neighbourhood filters: one pass over the nodes, a small window buffer per node.

They give exactly what the sort-based numpy versions gave (median of the finite values of a ``size`` x
``size`` window, NaN outside the map), in a few milliseconds per million nodes instead of seconds.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["window_consistency", "window_median_mad"]


@njit(cache=True, inline="always")
def _median(buf: NDArray[np.float64], n: int) -> float:
    """Median of ``buf[:n]`` (sorted in place by insertion: n <= size**2, small)."""
    for i in range(1, n):
        v = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v
    return 0.5 * (buf[(n - 1) // 2] + buf[n // 2])


@njit(cache=True, nogil=True)  # serial: a pass over nodes, cheap beside its parallel build
def window_median_mad(
    v: NDArray[np.float64], size: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:  # pragma: no cover - compiled
    """Per node: median and MAD (not scaled) of the finite values of its ``size`` x ``size`` window."""
    h, w = v.shape
    r = size // 2
    med = np.full((h, w), np.nan)
    mad = np.full((h, w), np.nan)
    for i in range(h):
        buf = np.empty(size * size)
        dev = np.empty(size * size)
        for j in range(w):
            n = 0
            for a in range(max(0, i - r), min(h, i + r + 1)):
                for b in range(max(0, j - r), min(w, j + r + 1)):
                    x = v[a, b]
                    if np.isfinite(x):
                        buf[n] = x
                        n += 1
            if n == 0:
                continue
            m = _median(buf, n)
            for k in range(n):
                dev[k] = abs(buf[k] - m)
            med[i, j] = m
            mad[i, j] = _median(dev, n)
    return med, mad


@njit(cache=True, nogil=True)  # serial, as window_median_mad
def window_consistency(
    x: NDArray[np.float64], y: NDArray[np.float64], size: int, tolerance: float
) -> NDArray[np.float64]:  # pragma: no cover - compiled
    """Per node: share of its valid neighbours (window, centre excluded) within ``tolerance`` of its vector
    (0 without a valid neighbour; NaN comparisons count as not close)."""
    h, w = x.shape
    r = size // 2
    frac = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            n_valid = 0
            n_close = 0
            for a in range(max(0, i - r), min(h, i + r + 1)):
                for b in range(max(0, j - r), min(w, j + r + 1)):
                    if a == i and b == j:
                        continue
                    d = np.hypot(x[a, b] - x[i, j], y[a, b] - y[i, j])
                    if np.isfinite(d):
                        n_valid += 1
                        if d <= tolerance:
                            n_close += 1
            if n_valid > 0:
                frac[i, j] = n_close / n_valid
    return frac
