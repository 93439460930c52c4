"""Glue between offset products and the quake kernels: grid-axis components, matching settings."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from rasterio.transform import Affine

from geodeform.errors import InvalidInputError
from geodeform.quake.errors import EmptyFieldError

__all__ = ["FAULT_MATCHING", "FieldArrays", "field_arrays", "grid_components"]

FAULT_MATCHING: dict[str, Any] = {"method": "ncc", "chip_size": 24, "step": 8, "two_motion_px": 0.1}
"""Settings of :func:`geodeform.offsets.match` for co-seismic pairs (add ``search_range``).

Small chips narrow the band where a chip straddles the rupture and blends both sides; nodes every 8 px
keep several of them across that band; the two-motion re-measurement of step nodes (see
:class:`geodeform.offsets.ncc.NccOptions`) is triggered from 0.1 px instead of 0.5 px, since metre-scale
slip at 10 m pixels is a sub-pixel step. The comparison with larger chips, other steps, ``robust_steps``,
no smoothing and ``flow`` is in ``docs/benchmarks.md``."""


def grid_components(
    east: npt.ArrayLike, north: npt.ArrayLike, transform: Affine
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Map displacement (east, north) turned into components along the grid's +col and +row, same unit.

    Parameters
    ----------
    east, north
        Displacement along +x and +y of the CRS (a product's ``dx``/``dy`` in metres).
    transform
        Affine transform of the grid (any rotation; square cells).

    Returns
    -------
    (ndarray, ndarray)
        ``(dx, dy)`` along +col and +row, in the unit of the input: on a north-up grid ``(east, -north)``.
    """
    e = np.asarray(east, dtype=np.float64)
    n = np.asarray(north, dtype=np.float64)
    a = np.array([[transform.a, transform.b], [transform.d, transform.e]], dtype=np.float64)
    col_len, row_len = np.hypot(a[0, 0], a[1, 0]), np.hypot(a[0, 1], a[1, 1])
    if not np.isclose(col_len, row_len, rtol=1e-6) or abs(np.linalg.det(a)) == 0:
        raise InvalidInputError(
            f"the grid cells are not square ({col_len:g} × {row_len:g}); resample onto a square grid first"
        )
    inv = np.linalg.inv(a) * col_len  # map vector -> (col, row) cells -> length units along the axes
    return inv[0, 0] * e + inv[0, 1] * n, inv[1, 0] * e + inv[1, 1] * n


class FieldArrays(NamedTuple):
    """An offset field checked by :func:`field_arrays`."""

    x: npt.NDArray[np.float64]
    """(nr, nc) displacement along +col, float64 (NaN kept)."""
    y: npt.NDArray[np.float64]
    """(nr, nc) displacement along +row, float64 (NaN kept)."""
    valid: npt.NDArray[np.bool_]
    """(nr, nc) nodes where both components are finite."""


def field_arrays(dx: npt.ArrayLike, dy: npt.ArrayLike) -> FieldArrays:
    """The two components of an offset field as float64 and their valid nodes, for the trace and profile
    kernels.

    Raises
    ------
    InvalidInputError
        ``dx`` and ``dy`` are not 2-D arrays of one shape.
    EmptyFieldError
        No node has both components finite.
    """
    x = np.asarray(dx, dtype=np.float64)
    y = np.asarray(dy, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise InvalidInputError(f"dx and dy must be 2-D arrays of one shape, got {x.shape} and {y.shape}")
    valid = np.isfinite(x) & np.isfinite(y)
    if not valid.any():
        raise EmptyFieldError(
            f"the offset field ({x.shape[0]} × {x.shape[1]} nodes) has no finite value; check that the "
            "matching succeeded (OffsetField.reason_counts()) and that the pair covers the rupture"
        )
    return FieldArrays(x, y, valid)
