"""Small numba helpers shared by the kernels of several stages (offsets, time series).

A leaf module (imports nothing of ours). Numba compiles the numpy functions it supports (``np.median``
and the partition under it) anew inside every kernel whose compile options differ (parallel, fastmath,
nogil): a kernel that calls a dispatcher defined here gets that dispatcher's one compiled version instead,
so a cold first run compiles it once per argument type, not once per calling kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["median"]


@njit(cache=True, nogil=True)
def median(a):  # pragma: no cover - numba
    """``np.median(a)`` of a 1-D float array, compiled once (module docstring)."""
    return np.median(a)
