"""Argument checking, the node grid and no-data handling shared by every matcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

from geodeform.compiled import run_chunks
from geodeform.errors import InvalidInputError

__all__ = ["node_grid", "texture", "to_float32", "top_value"]


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


def _rules(
    img: npt.NDArray[Any], nodata: float | None, mask: npt.NDArray[np.bool_] | None, fill_values: Any
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """The no-data rules as kernel arguments. A pixel is usable for matching when it is finite, equals no
    fill value and not ``nodata``, and is not masked (mask True = bad). Integer images treat 0 and the
    dtype maximum (e.g. 65535 for uint16) as fill values unless ``fill_values`` says otherwise (pass
    ``()`` to keep them). Returns the invalid values in float64 (rounded to float32 first for float32
    images, as numpy compares a float32 array with a Python float) and the mask as uint8 (empty: none)."""
    if fill_values is None:
        fill_values = (0, np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else ()
    vals = [float(v) for v in fill_values]
    if nodata is not None and np.isfinite(nodata):
        vals.append(float(nodata))
    out = np.array(vals, np.float64)
    if img.dtype == np.float32:
        with np.errstate(over="ignore"):
            out = out.astype(np.float32).astype(np.float64)
    m = np.zeros((0, 0), np.uint8) if mask is None else mask.view(np.uint8)
    return out, m


@nb.njit(cache=True, nogil=True)
def _ok_row(row, bad, mask, i, sat, ok):
    """``ok[j]`` = whether pixel (i, j) of value ``row[j]`` passes the rules of :func:`_rules` and is below
    ``sat`` (branch-free passes over the row, vectorised)."""
    for j in range(row.size):
        x = np.float64(row[j])
        ok[j] = (x - x == 0.0) & (x < sat)  # finite, below saturation
    for k in range(bad.size):
        v = bad[k]
        for j in range(row.size):
            ok[j] &= np.float64(row[j]) != v
    if mask.shape[0] > 0:
        mrow = mask[i]
        for j in range(row.size):
            ok[j] &= mrow[j] == 0


@nb.njit(cache=True, nogil=True)
def _to_float32_range(lo, hi, img, bad, mask, sat, out):
    """``out`` = float32 ``img`` with NaN at the invalid pixels (see :func:`_ok_row`), rows
    ``lo <= i < hi`` (a chunk of :func:`geodeform.compiled.run_chunks`)."""
    w = img.shape[1]
    for i in range(lo, hi):
        ok = np.empty(w, np.bool_)
        row = img[i]
        _ok_row(row, bad, mask, np.int64(i), sat, ok)
        orow = out[i]
        for j in range(w):
            orow[j] = np.float32(row[j]) if ok[j] else np.float32(np.nan)


@nb.njit(cache=True, nogil=True)
def _texture(img, bad, mask):
    """(has a valid pixel, the first valid value, whether another valid value differs from it), scanning
    row by row and stopping at the first difference (see :func:`_ok_row`)."""
    first = np.nan
    found = False
    h, w = img.shape
    ok = np.empty(w, np.bool_)
    for i in range(h):
        row = img[i]
        _ok_row(row, bad, mask, i, np.inf, ok)
        for j in range(w):
            if ok[j]:
                x = np.float64(row[j])
                if not found:
                    found = True
                    first = x
                elif x != first:
                    return True, first, True
    return found, first, False


@nb.njit(cache=True, nogil=True)
def top_value(img):
    """Largest non-NaN value of ``img`` (-inf if none) and how many pixels hold it, in one pass."""
    top = -np.inf
    n = 0
    h, w = img.shape
    for i in range(h):  # two branch-free (vectorised) passes per row: its maximum, then its count
        row = img[i]
        m = -np.inf
        for j in range(w):
            x = np.float64(row[j])
            m = x if x > m else m  # (NaN compares false: skipped)
        if m < top:
            continue
        if m > top:
            top = m
            n = 0
        for j in range(w):
            n += np.float64(row[j]) == top
    return top, n


def to_float32(
    img: npt.NDArray[Any],
    out: npt.NDArray[np.float32],
    *,
    nodata: float | None,
    mask: npt.NDArray[np.bool_] | None,
    fill_values: Any,
    saturation: float | None = None,
) -> npt.NDArray[np.float32]:
    """``img`` as float32 in ``out``, NaN at the pixels the no-data rules (see :func:`_rules`) reject and
    those ≥ ``saturation``, in one pass."""
    bad, m = _rules(img, nodata, mask, fill_values)
    run_chunks(
        _to_float32_range, img.shape[0], img, bad, m, np.inf if saturation is None else float(saturation), out
    )
    return out


def texture(
    img: npt.NDArray[Any], *, nodata: float | None, mask: npt.NDArray[np.bool_] | None, fill_values: Any
) -> tuple[bool, float, bool]:
    """Whether ``img`` has a pixel the no-data rules (see :func:`_rules`) keep, the first such value, and
    whether another kept value differs from it (early exit: one row for textured images)."""
    bad, m = _rules(img, nodata, mask, fill_values)
    found, first, differs = _texture(img, bad, m)
    return bool(found), float(first), bool(differs)


def each_node(
    node: Callable[..., None],
    sp: Any,
    r0: npt.NDArray[np.int64],
    c0: npt.NDArray[np.int64],
    size: tuple[int, int],
    per_node: tuple[npt.NDArray[Any], ...],
    res: npt.NDArray[np.float64],
    *,
    params: tuple[Any, ...],
    outside: tuple[int, int],
) -> None:
    """``node(sp, r0[k], c0[k], h, w, *(a[k] for a in per_node), *params, res[k])`` for every node whose
    chip (``size`` = (h, w) at (r0[k], c0[k])) lies inside the strip ``sp.ref``, on the kernel threads
    (:func:`geodeform.compiled.run_chunks`); ``res[k, outside[0]] = outside[1]`` for the others.

    A Python loop over a compiled node kernel, for the passes that run on few nodes (the robust and
    two-motion re-fits): a compiled loop would optimise and emit the whole node kernel's code a second time
    on a cold cache (1.5-3 CPU-s per kernel, ``docs/benchmarks.md``), while a call from Python costs
    microseconds beside a node's fit (the kernel releases the GIL).
    """
    h, w = size
    nr, nc = sp.ref.shape
    col, code = outside
    # Python ints and floats (typed int64 and float64, as the array elements): cheaper to pass than
    # NumPy scalars, which a call from Python would otherwise create and unbox per node
    rows, cols = r0.tolist(), c0.tolist()
    values = list(zip(*(np.asarray(a).tolist() for a in per_node), strict=True))

    def chunk(lo: int, hi: int) -> None:
        for k in range(lo, hi):
            r, c = rows[k], cols[k]
            if r < 0 or c < 0 or r + h > nr or c + w > nc:
                res[k, col] = code
                continue
            node(sp, r, c, h, w, *values[k], *params, res[k])

    run_chunks(chunk, r0.size)
