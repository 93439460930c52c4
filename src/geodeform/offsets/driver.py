"""The :func:`match` driver: validates the inputs, builds the job, dispatches to a matcher's runner."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt

from geodeform.errors import InvalidInputError
from geodeform.offsets._common import check_image, node_grid, pair_of_ints, top_value
from geodeform.offsets._job import MatchJob
from geodeform.offsets._ncc_run import run_ncc
from geodeform.offsets._types import MatcherOutput, OffsetField, Reason
from geodeform.offsets.flow import FlowOptions, run_flow
from geodeform.offsets.ncc import NccOptions
from geodeform.offsets.phase import PhaseOptions, run_phase
from geodeform.offsets.prefilters import PREFILTERS

__all__ = ["METHODS", "Method", "Prefilter", "match"]

log = logging.getLogger(__name__)

Method = Literal["ncc", "phase", "flow"]
Prefilter = Literal["wallis", "highpass", "gradient", "rank", "none"]
METHODS: tuple[str, ...] = ("ncc", "phase", "flow")

ProgressCallback = Callable[[int, int], None]


def match(
    reference: npt.ArrayLike,
    secondary: npt.ArrayLike,
    *,
    method: Method = "ncc",
    chip_size: int | tuple[int, int] = 32,
    step: int | tuple[int, int] = 16,
    search_range: int | npt.ArrayLike = 16,
    mask: npt.ArrayLike | None = None,
    secondary_mask: npt.ArrayLike | None = None,
    nodata: float | None = None,
    fill_values: float | Sequence[float] | None = None,
    saturation: float | str | None = "auto",
    prefilter: Prefilter | None = None,
    threads: int | None = None,
    strip_rows: int = 1024,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> OffsetField:
    """Measure the offsets of ``reference`` chips in ``secondary`` on a regular grid.

    Parameters
    ----------
    reference, secondary : 2-D arrays of the same shape
        Images on the same pixel grid (any integer or float dtype; uint16 Sentinel-2 is fine).
    method : {"ncc", "phase", "flow"}
        Matcher, see the module documentation.
    chip_size : int or (int, int)
        Chip (template) size in pixels, rows × cols. ≥ 4.
    step : int or (int, int)
        Node spacing in pixels. ≥ 1. Chip k spans rows ``[k*step, k*step + chip)``; nodes are chip centres.
    search_range : int, float, or array of shape (nr, nc)
        Half-width (px) of the search window around zero offset, per node if an array (see
        :func:`geodeform.offsets.grid_shape`). ≥ 0; non-integers are rounded up.
    mask, secondary_mask : bool arrays, optional
        True where pixels must be ignored (clouds, water, glacier outlines...).
    nodata : float, optional
        No-data value of both images. NaN is always no-data.
    fill_values : float or sequence of float, optional
        Values treated as no-data (one number or several); defaults to 0 and the dtype maximum for integer
        images, none for float images; ``()`` for none at all.
    saturation : float, "auto" or None
        Pixels at or above this value carry no texture (saturated snow, clouds) and are ignored. "auto"
        uses the image maximum when more than 0.5 % of the pixels sit at it.
    prefilter : {"wallis", "highpass", "gradient", "rank"} or None
        Pre-filter applied to both images before matching.
    threads : int, optional
        Threads used (numba / FFT workers). Default: all cores numba sees.
    strip_rows : int
        Image rows processed at once; bounds memory on large scenes (≈ 40 bytes × strip_rows × width).
    progress : callable(done, total), optional
        Called after every strip.
    **options
        Matcher options: see :class:`geodeform.offsets.ncc.NccOptions`,
        :class:`geodeform.offsets.phase.PhaseOptions`, :class:`geodeform.offsets.flow.FlowOptions`.

    Notes
    -----
    Sign convention: a feature at (row, col) of ``reference`` appears at (row + dy, col + dx) of
    ``secondary``; +dx along increasing columns (east on north-up images), +dy along increasing rows
    (south on north-up images), in pixels of the reference.

    Returns
    -------
    OffsetField
        ``rows``, ``cols`` node centres; ``dx``, ``dy`` offsets (px, NaN invalid); ``quality`` in [0, 1];
        ``reason`` per-node :class:`Reason` code; ``error`` the predicted 1-σ error (px, ``ncc`` only);
        ``chip_height``, ``chip_width`` the chip behind each value (px); with ``ncc``'s smoothing,
        ``smoothing_dx``, ``smoothing_dy``, ``error_unsmoothed`` (each node's own chip before the
        smoothing: ``dx_unsmoothed``, ``dy_unsmoothed``, ``smoothing_gain``).

    Raises
    ------
    InvalidInputError
        Wrong shapes or dtypes, all-invalid or constant images, chip larger than the image, step ≤ 0,
        negative search range, unknown method or option.
    """
    ref, sec = _check_images(reference, secondary)
    if method not in METHODS:
        raise InvalidInputError(f"method={method!r} is not known; use one of {list(METHODS)}")
    chip = pair_of_ints(chip_size, "chip_size", minimum=4)
    stp = pair_of_ints(step, "step", minimum=1)
    _check_settings(ref.shape, chip, prefilter, strip_rows)
    opts = _method_options(method, options)
    rs, cs, rows, cols = node_grid(ref.shape, chip, stp)
    search = _search_grid(search_range, (rs.size, cs.size))
    job = MatchJob(
        ref=ref,
        sec=sec,
        ref_mask=_bool_mask(mask, ref.shape, "mask"),
        sec_mask=_bool_mask(secondary_mask, ref.shape, "secondary_mask"),
        nodata=_number(nodata, "nodata"),
        fill_values=_fill_values(fill_values),
        saturation=_saturation(ref, sec, saturation),
        prefilter=prefilter,
        chip=chip,
        step=stp,
        rs=rs,
        cs=cs,
        search=search,
        strip_rows=max(strip_rows, chip[0]),
    )
    with _threads(threads):
        if method == "ncc":
            res = run_ncc(job, opts, progress)
        elif method == "phase":
            res = run_phase(job, opts, progress, threads)
        else:
            res = run_flow(job, opts, progress)
    params = {
        "chip_size": chip,
        "step": stp,
        "search_range": int(search.max()) if search.size else 0,
        "prefilter": prefilter,
        "nodata": nodata,
        "saturation": job.saturation,
        **dataclasses.asdict(opts),
    }
    return _offset_field(res, rows, cols, method, params, chip)


def _offset_field(
    res: MatcherOutput, rows: Any, cols: Any, method: str, params: dict[str, Any], chip: tuple[int, int]
) -> OffsetField:
    """The public result: offsets, errors and chip sizes NaN, quality 0 wherever the reason is not ``OK``."""
    bad = res.reason != Reason.OK
    error = np.full(res.dy.shape, np.nan) if res.error is None else res.error
    sizes = [
        np.where(bad, np.nan, np.full(res.dy.shape, float(base)) if size is None else size).astype(np.float32)
        for size, base in ((res.chip_height, chip[0]), (res.chip_width, chip[1]))
    ]
    dx = np.where(bad, np.nan, res.dx).astype(np.float32)
    dy = np.where(bad, np.nan, res.dy).astype(np.float32)
    smoothing: list[Any] = [None, None, None]
    if res.unsmoothed is not None:
        own_dy, own_dx, own_error = res.unsmoothed
        # the change in float32, so that dx - smoothing_dx is the float32 of the own chip's value
        smoothing = [
            np.where(bad, np.nan, dx - own_dx.astype(np.float32)).astype(np.float32),
            np.where(bad, np.nan, dy - own_dy.astype(np.float32)).astype(np.float32),
            np.where(bad, np.nan, own_error).astype(np.float32),
        ]
    return OffsetField(
        rows.astype(np.float64),
        cols.astype(np.float64),
        dx,
        dy,
        np.where(bad, 0.0, np.clip(res.quality, 0.0, 1.0)).astype(np.float32),
        res.reason.astype(np.uint8),
        method,
        params,
        np.where(bad, np.nan, error).astype(np.float32),
        *sizes,
        *smoothing,
    )


# --------------------------------------------------------------------------------------------------
def _check_images(reference: Any, secondary: Any) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Both images as 2-D real arrays of the same shape, else :class:`InvalidInputError`."""
    ref = check_image(reference, "reference")
    sec = check_image(secondary, "secondary")
    if ref.shape != sec.shape:
        raise InvalidInputError(
            f"reference {ref.shape} and secondary {sec.shape} differ in shape; resample the secondary onto "
            "the reference grid first (geodeform.io reprojects georeferenced rasters)"
        )
    return ref, sec


def _check_settings(shape: tuple[int, ...], chip: tuple[int, int], prefilter: Any, strip_rows: Any) -> None:
    """Raise :class:`InvalidInputError` on a chip larger than the images, an unknown pre-filter or a
    non-positive ``strip_rows``."""
    if chip[0] > shape[0] or chip[1] > shape[1]:
        raise InvalidInputError(
            f"chip_size {chip} is larger than the images {shape}; use a chip_size ≤ the image size"
        )
    if prefilter is not None and prefilter != "none" and prefilter not in PREFILTERS:
        raise InvalidInputError(
            f"prefilter={prefilter!r} is not known; use one of {sorted(PREFILTERS)} or None"
        )
    if not isinstance(strip_rows, (int, np.integer)) or strip_rows < 1:
        raise InvalidInputError(f"strip_rows must be a positive int, got {strip_rows!r}")


def _method_options(method: str, options: dict[str, Any]) -> Any:
    """The method's options dataclass built from ``options``, validated."""
    cls: Any = {"ncc": NccOptions, "phase": PhaseOptions, "flow": FlowOptions}[method]
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidInputError(
            f"unknown option(s) {unknown} for method={method!r}; valid options are {sorted(known)}"
        )
    opts = cls(**options)
    if hasattr(opts, "validate"):
        opts.validate()
    return opts


def _search_grid(search_range: Any, shape: tuple[int, int]) -> npt.NDArray[np.int64]:
    raw = np.asarray(search_range)
    if raw.dtype.kind not in "iuf":  # "3" or True would otherwise pass as 3 px / 1 px
        raise InvalidInputError(
            f"search_range must be a number of pixels or an array of them, got {search_range!r} "
            f"({type(search_range).__name__}); give e.g. search_range=16"
        )
    s = raw.astype(np.float64)
    if s.ndim not in (0, 2) or (s.ndim == 2 and s.shape != shape):
        raise InvalidInputError(
            f"search_range must be a number or an array of the grid shape {shape}, got shape {s.shape}; "
            "build it with geodeform.offsets.grid_shape(image.shape, chip_size, step)"
        )
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise InvalidInputError(f"search_range must be finite and ≥ 0 px, got {search_range!r}")
    return np.broadcast_to(np.ceil(s).astype(np.int64), shape).copy()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _number(value: Any, name: str) -> float | None:
    """``value`` as a float (None stays None), else :class:`InvalidInputError` naming ``name``."""
    if value is None:
        return None
    if not _is_number(value):
        raise InvalidInputError(f"{name} must be a number or None, got {value!r}")
    return float(value)


def _fill_values(values: Any) -> tuple[float, ...] | None:
    """``fill_values`` as a tuple of floats: one number is a tuple of one; None keeps the default."""
    if values is None:
        return None
    items = [values] if _is_number(values) or isinstance(values, str) else values
    try:
        items = list(np.ravel(np.asarray(items, dtype=object)))
    except TypeError:
        items = [values]
    bad = [v for v in items if not _is_number(v)]
    if bad:
        raise InvalidInputError(
            f"fill_values must be a number or a sequence of numbers (e.g. 0 or (0, 65535)), got {values!r}"
        )
    return tuple(float(v) for v in items)


def _bool_mask(mask: Any, shape: tuple[int, ...], name: str) -> npt.NDArray[np.bool_] | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape:
        raise InvalidInputError(f"{name} has shape {m.shape}, expected the image shape {shape}")
    return m.astype(bool)


def _saturation(ref: npt.NDArray[Any], sec: npt.NDArray[Any], saturation: Any) -> float | None:
    if saturation is None:
        return None
    if saturation != "auto":
        try:
            return float(saturation)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"saturation must be a number, 'auto' or None, got {saturation!r}"
            ) from None
    # a 0.5 % share of saturated pixels shows as well on a quarter-million sample
    stride = max(1, int(np.sqrt(ref.size / 2.5e5)))
    levels = []
    for img in (ref, sec):
        sub = img[::stride, ::stride]
        top, count = top_value(sub)
        if img.dtype.kind in "ui" and top == np.iinfo(img.dtype).max:
            continue  # the dtype maximum is already a fill value
        if np.isfinite(top) and count > 0.005 * sub.size:
            levels.append(float(top))
    return min(levels) if levels else None


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InvalidInputError(f"threads must be a positive int, got {threads!r}")
    old = numba.get_num_threads()
    numba.set_num_threads(min(int(threads), int(getattr(numba.config, "NUMBA_NUM_THREADS", threads))))
    try:
        yield
    finally:
        numba.set_num_threads(old)
