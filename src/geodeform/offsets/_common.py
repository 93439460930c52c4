"""Argument checking, the node grid and no-data handling shared by every matcher."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from geodeform.errors import InvalidInputError

__all__ = ["node_grid", "valid_pixels"]


def pair_of_ints(value: Any, name: str, *, minimum: int) -> tuple[int, int]:
    """``value`` as (rows, cols) ints ≥ ``minimum``; accepts an int or a 2-sequence."""
    vals = value if isinstance(value, (tuple, list, np.ndarray)) else (value, value)
    if len(vals) != 2:
        raise InvalidInputError(f"{name} must be an int or a (rows, cols) pair, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, bool) or (
            not isinstance(v, (int, np.integer))
            and not (isinstance(v, (float, np.floating)) and float(v).is_integer())
        ):
            raise InvalidInputError(f"{name} must be a whole number of pixels, got {value!r}")
        if int(v) < minimum:
            raise InvalidInputError(f"{name} must be ≥ {minimum} px, got {value!r}; pass a larger value")
        out.append(int(v))
    return out[0], out[1]


def check_image(arr: Any, name: str) -> npt.NDArray[Any]:
    """A 2-D real numeric array, else :class:`InvalidInputError`."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise InvalidInputError(
            f"{name} must be a 2-D array (rows, cols), got {a.ndim}-D shape {a.shape}; "
            "select one band, e.g. image[0]"
        )
    if a.dtype.kind not in "uif" or a.dtype == np.float16:
        raise InvalidInputError(f"{name} must be an integer or float32/float64 array, got dtype {a.dtype}")
    if min(a.shape) < 4:
        raise InvalidInputError(f"{name} is too small ({a.shape}); matching needs at least 4×4 pixels")
    return a


def node_grid(
    shape: tuple[int, int], chip: tuple[int, int], step: tuple[int, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.floating], npt.NDArray[np.floating]]:
    """Chip origins and node centres of the regular grid over an image of ``shape``.

    Chip k spans rows ``[k*step, k*step + chip)``; its node is the chip centre ``start + (chip - 1)/2``
    (half-integer for even chips), in 0-based pixel coordinates where pixel (i, j) has centre (i, j).
    Returns (row_starts, col_starts, row_centres, col_centres).
    """
    rs = np.arange(0, shape[0] - chip[0] + 1, step[0], dtype=np.int64)
    cs = np.arange(0, shape[1] - chip[1] + 1, step[1], dtype=np.int64)
    return rs, cs, rs + (chip[0] - 1) / 2.0, cs + (chip[1] - 1) / 2.0


def grid_shape(
    image_shape: tuple[int, int], chip_size: int | tuple[int, int], step: int | tuple[int, int]
) -> tuple[int, int]:
    """Shape (nr, nc) of the node grid that :func:`geodeform.offsets.match` returns for these arguments.

    Use it to build a per-node ``search_range`` array.
    """
    chip = pair_of_ints(chip_size, "chip_size", minimum=4)
    stp = pair_of_ints(step, "step", minimum=1)
    rs, cs, _, _ = node_grid(image_shape, chip, stp)
    return rs.size, cs.size


def valid_pixels(
    img: npt.NDArray[Any],
    *,
    nodata: float | None,
    mask: npt.NDArray[np.bool_] | None,
    fill_values: tuple[float, ...] | None,
) -> npt.NDArray[np.bool_]:
    """Pixels usable for matching: finite, not ``nodata``, not a fill value, not masked (mask True = bad).

    Integer images treat 0 and the dtype maximum (e.g. 65535 for uint16) as fill values unless
    ``fill_values`` says otherwise (pass ``()`` to keep them).
    """
    valid = np.isfinite(img) if img.dtype.kind == "f" else np.ones(img.shape, bool)
    if fill_values is None:
        fill_values = (0, np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else ()
    for v in fill_values:
        valid &= img != v
    if nodata is not None and np.isfinite(nodata):
        valid &= img != nodata
    if mask is not None:
        valid &= ~mask
    return valid
