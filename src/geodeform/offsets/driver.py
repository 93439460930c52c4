"""The :func:`match` driver: validates inputs, walks the image in strips, calls a matcher, post-processes."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from geodeform.errors import InvalidInputError
from geodeform.offsets import _kernels as K
from geodeform.offsets import _post
from geodeform.offsets._buffers import buffer
from geodeform.offsets._common import check_image, node_grid, pair_of_ints, texture, to_float32, top_value
from geodeform.offsets._types import OffsetField, Reason
from geodeform.offsets.ncc import (
    NccOptions,
    PreparedStrip,
    StripResult,
    image_stats,
    ncc_strip,
    robust_strip,
    two_motion_strip,
)
from geodeform.offsets.prefilters import PREFILTERS, apply_prefilter, prefilter_margin

__all__ = ["METHODS", "match"]

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("ncc", "phase", "flow")

ProgressCallback = Callable[[int, int], None]


def match(
    reference: npt.ArrayLike,
    secondary: npt.ArrayLike,
    *,
    method: str = "ncc",
    chip_size: int | tuple[int, int] = 32,
    step: int | tuple[int, int] = 16,
    search_range: int | npt.ArrayLike = 16,
    mask: npt.ArrayLike | None = None,
    secondary_mask: npt.ArrayLike | None = None,
    nodata: float | None = None,
    fill_values: tuple[float, ...] | None = None,
    saturation: float | str | None = "auto",
    prefilter: str | None = None,
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
    fill_values : tuple of float, optional
        Values treated as no-data; defaults to 0 and the dtype maximum for integer images.
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

    Returns
    -------
    OffsetField
        ``rows``, ``cols`` node centres; ``dx``, ``dy`` offsets (px, NaN invalid); ``quality`` in [0, 1];
        ``reason`` per-node :class:`Reason` code.

    Raises
    ------
    InvalidInputError
        Wrong shapes or dtypes, all-invalid or constant images, chip larger than the image, step ≤ 0,
        negative search range, unknown method or option.
    """
    ref = check_image(reference, "reference")
    sec = check_image(secondary, "secondary")
    if ref.shape != sec.shape:
        raise InvalidInputError(
            f"reference {ref.shape} and secondary {sec.shape} differ in shape; resample the secondary onto "
            "the reference grid first (geodeform.io reprojects georeferenced rasters)"
        )
    if method not in METHODS:
        raise InvalidInputError(f"method={method!r} is not known; use one of {list(METHODS)}")
    chip = pair_of_ints(chip_size, "chip_size", minimum=4)
    stp = pair_of_ints(step, "step", minimum=1)
    if chip[0] > ref.shape[0] or chip[1] > ref.shape[1]:
        raise InvalidInputError(
            f"chip_size {chip} is larger than the images {ref.shape}; use a chip_size ≤ the image size"
        )
    if prefilter is not None and prefilter != "none" and prefilter not in PREFILTERS:
        raise InvalidInputError(
            f"prefilter={prefilter!r} is not known; use one of {sorted(PREFILTERS)} or None"
        )
    if not isinstance(strip_rows, (int, np.integer)) or strip_rows < 1:
        raise InvalidInputError(f"strip_rows must be a positive int, got {strip_rows!r}")
    opts = _method_options(method, options)
    rs, cs, rows, cols = node_grid(ref.shape, chip, stp)
    search = _search_grid(search_range, (rs.size, cs.size))
    m_ref = _bool_mask(mask, ref.shape, "mask")
    m_sec = _bool_mask(secondary_mask, ref.shape, "secondary_mask")
    sat = _saturation(ref, sec, saturation)

    job = _Job(
        ref,
        sec,
        m_ref,
        m_sec,
        nodata,
        fill_values,
        sat,
        prefilter,
        chip,
        stp,
        rs,
        cs,
        search,
        max(strip_rows, chip[0]),
    )
    with _threads(threads):
        if method == "ncc":
            res = _run_ncc(job, opts, progress)
        elif method == "phase":
            from geodeform.offsets.phase import run_phase

            res = run_phase(job, opts, progress, threads)
        else:
            from geodeform.offsets.flow import run_flow

            res = run_flow(job, opts, progress)
    dy, dx, quality, reason = res[:4]
    error = res[4] if len(res) > 4 else np.full(dy.shape, np.nan)
    params = {
        "chip_size": chip,
        "step": stp,
        "search_range": int(search.max()) if search.size else 0,
        "prefilter": prefilter,
        "nodata": nodata,
        "saturation": sat,
        **dataclasses.asdict(opts),
    }
    bad = reason != Reason.OK
    dy = np.where(bad, np.nan, dy).astype(np.float32)
    dx = np.where(bad, np.nan, dx).astype(np.float32)
    quality = np.where(bad, 0.0, np.clip(quality, 0.0, 1.0)).astype(np.float32)
    return OffsetField(
        rows.astype(np.float64),
        cols.astype(np.float64),
        dx,
        dy,
        quality,
        reason.astype(np.uint8),
        method,
        params,
        np.where(bad, np.nan, error).astype(np.float32),
    )


# --------------------------------------------------------------------------------------------------
def _method_options(method: str, options: dict[str, Any]) -> Any:
    if method == "ncc":
        cls: Any = NccOptions
    elif method == "phase":
        from geodeform.offsets.phase import PhaseOptions as cls
    else:
        from geodeform.offsets.flow import FlowOptions as cls
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
    s = np.asarray(search_range, dtype=np.float64)
    if s.ndim not in (0, 2) or (s.ndim == 2 and s.shape != shape):
        raise InvalidInputError(
            f"search_range must be a number or an array of the grid shape {shape}, got shape {s.shape}; "
            "build it with geodeform.offsets.grid_shape(image.shape, chip_size, step)"
        )
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise InvalidInputError(f"search_range must be finite and ≥ 0 px, got {search_range!r}")
    return np.broadcast_to(np.ceil(s).astype(np.int64), shape).copy()


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


class _Job:
    """Images, grid and no-data rules of one ``match`` call; yields prepared strips."""

    def __init__(
        self,
        ref,
        sec,
        m_ref,
        m_sec,
        nodata,
        fill_values,
        sat,
        prefilter,
        chip,
        step,
        rs,
        cs,
        search,
        strip_rows,
    ):
        self.ref, self.sec = ref, sec
        self.m_ref, self.m_sec = m_ref, m_sec
        self.nodata, self.fill_values, self.sat = nodata, fill_values, sat
        self.prefilter = prefilter
        self.chip, self.step = chip, step
        self.rs, self.cs, self.search = rs, cs, search
        self.strip_rows = strip_rows
        self._stats: Any = None
        self.cache: dict[tuple[int, int], Any] = {}
        self.check_not_empty()

    def prepare(
        self, img: npt.NDArray[Any], m: npt.NDArray[np.bool_] | None, a: int, b: int, key: str | None = None
    ) -> npt.NDArray[np.float32]:
        """Rows [a, b) as float32 with NaN at every invalid pixel, pre-filtered.

        With ``key`` the result lives in a reused per-thread buffer (valid until the next call with that key).
        """
        part = img[a:b]
        out = np.empty(part.shape, np.float32) if key is None else buffer(key, part.shape, np.float32)
        to_float32(
            part,
            out,
            nodata=self.nodata,
            mask=None if m is None else m[a:b],
            fill_values=self.fill_values,
            saturation=self.sat,
        )
        return apply_prefilter(out, self.prefilter)

    def check_not_empty(self) -> None:
        for name, img, m in (("reference", self.ref, self.m_ref), ("secondary", self.sec, self.m_sec)):
            found, first, differs = texture(img, mask=m, nodata=self.nodata, fill_values=self.fill_values)
            if not found:
                raise InvalidInputError(
                    f"{name} has no valid pixel (all NaN, no-data, fill values or masked); check the nodata/"
                    "fill_values arguments and the input file"
                )
            if not differs:
                value = img.dtype.type(first)
                raise InvalidInputError(
                    f"{name} is constant ({value!r}): there is no texture to match; check the band and the "
                    "scaling of the input"
                )

    def stats(self, ref_strip: npt.NDArray[np.float32], sec_strip: npt.NDArray[np.float32]) -> Any:
        """Global (mean, std) of both prepared images, from a central window (or the only strip)."""
        if self._stats is None:
            h = self.ref.shape[0]
            if h > self.strip_rows:
                a = max(0, h // 2 - self.strip_rows // 2)
                b = min(h, a + self.strip_rows)
                ref_strip = self.prepare(self.ref, self.m_ref, a, b)
                sec_strip = self.prepare(self.sec, self.m_sec, a, b)
            self._stats = (image_stats(ref_strip), image_stats(sec_strip))
        return self._stats

    def strips(
        self, node_rows: npt.NDArray[np.int64] | None = None, extra_pad: int = 0
    ) -> Iterator[tuple[int, int, npt.NDArray[np.int64], int]]:
        """(a, b, node-row indices, pad) of every strip covering the requested node rows.

        A strip's rows [a, b) depend only on its index, with a margin wide enough for every pass
        (search, nested chips, shifted chips), so later passes reuse the prepared strip.
        """
        nr = self.rs.size
        rows_per = max(1, (self.strip_rows - self.chip[0]) // self.step[0] + 1)
        wanted = np.arange(nr) if node_rows is None else np.unique(node_rows)
        pad = int(self.search.max(initial=0)) + 8 + prefilter_margin(self.prefilter) + 2 * max(self.chip)
        if extra_pad > 2 * max(self.chip):
            pad += extra_pad
        for i0 in range(0, nr, rows_per):
            idx = wanted[(wanted >= i0) & (wanted < i0 + rows_per)]
            if idx.size == 0:
                continue
            i1 = min(nr, i0 + rows_per) - 1
            # a multiple of 8: the strip's pyramid levels (≤ 3) then average the same pixel blocks as
            # the whole image's, so strips do not change the coarse-level answers
            a = max(0, (int(self.rs[i0]) - pad) // 8 * 8)
            b = min(self.ref.shape[0], int(self.rs[i1]) + self.chip[0] + pad)
            yield a, b, idx, pad


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


# ---------------------------------------------------------------------------------------------- ncc
def _ncc_pass(
    job: _Job,
    opts: NccOptions,
    node_rows: npt.NDArray[np.int64] | None,
    select: npt.NDArray[np.bool_] | None,
    init: tuple[Any, Any] | None,
    radius: int | None,
    progress: ProgressCallback | None,
    chip: tuple[int, int] | None = None,
    shift: tuple[int, int] = (0, 0),
    robust: bool = False,
    level: int = 0,
    clamp: bool = False,
    two: tuple[Any, Any, Any, Any] | None = None,
) -> dict[str, Any]:
    """One matching pass over the selected nodes (all by default).

    ``init`` = None: full search (sparse-then-dense); ``radius`` None: refinement from the sub-pixel
    ``init`` only; else integer search ±radius around ``init``. ``chip`` overrides the chip size while
    keeping the node centres (nested chips); with ``clamp`` a chip crossing the image border is moved
    inside it instead of failing (``OUTSIDE``), so it measures the nearest ground it can. With ``two`` =
    (a_dy, a_dx, b_dy, b_dx) grids the two-motion fit runs from motions A and B (``init`` the one-motion
    answer) and ``out["two"]`` holds its raw output.
    """
    nr, nc = job.rs.size, job.cs.size
    chip = job.chip if chip is None else chip
    # chip origin offset that keeps the node centre start + (chip - 1) / 2 where it is
    off_r = (chip[0] - job.chip[0]) // 2 - shift[0]
    off_c = (chip[1] - job.chip[1]) // 2 - shift[1]
    out = {
        "dy": np.full((nr, nc), np.nan),
        "dx": np.full((nr, nc), np.nan),
        "q": np.zeros((nr, nc)),
        "reason": np.full((nr, nc), K.MASKED, np.uint8),
    }
    if two is None:
        out["lk"] = np.full((nr, nc, K.NOUT), np.nan)
    else:  # the two-motion fit's own outputs instead of the refinement's
        out["two"] = np.full((nr, nc, K.NTWO), np.nan)
    strips = list(job.strips(node_rows, extra_pad=(0 if init is None else 3) + max(abs(off_r), abs(off_c))))
    for k, (a, b, idx, _pad) in enumerate(strips):
        prep = job.cache.get((a, b))
        if prep is None:
            ref_s = job.prepare(job.ref, job.m_ref, a, b, key="strip-ref")
            sec_s = job.prepare(job.sec, job.m_sec, a, b, key="strip-sec")
            prep = PreparedStrip(ref_s, sec_s, opts, job.stats(ref_s, sec_s))
            job.cache = {(a, b): prep}  # keep one strip: bounded memory, reused by the re-search passes
        ii: Any
        jj: Any
        ii, jj = np.meshgrid(idx, np.arange(nc), indexing="ij")
        if select is not None:
            keep = select[ii, jj]
            ii, jj = ii[keep], jj[keep]
        ii, jj = ii.ravel(), jj.ravel()
        if ii.size == 0:
            continue
        r0 = job.rs[ii] - a - off_r
        c0 = job.cs[jj] - off_c
        if clamp:  # inside the image, not the strip: the strip is padded for the larger chips
            r0 = np.clip(r0, -a, max(job.ref.shape[0] - a - chip[0], -a))
            c0 = np.clip(c0, 0, max(job.ref.shape[1] - chip[1], 0))
        inside = (r0 >= 0) & (c0 >= 0) & (r0 + chip[0] <= b - a) & (c0 + chip[1] <= job.ref.shape[1])
        if not inside.all():
            out["reason"][ii[~inside], jj[~inside]] = K.OUTSIDE
            ii, jj, r0, c0 = ii[inside], jj[inside], r0[inside], c0[inside]
            if ii.size == 0:
                continue
        if two is not None and init is not None:
            t = two_motion_strip(
                prep,
                r0,
                c0,
                chip,
                (init[0][ii, jj], init[1][ii, jj]),
                (two[0][ii, jj], two[1][ii, jj]),
                (two[2][ii, jj], two[3][ii, jj]),
                reach=(_REACH * job.chip[0], _REACH * job.chip[1]),
            )
            out["two"][ii, jj] = t
            continue
        if init is None:
            res = _sparse_dense(prep, ii, jj, r0, c0, job, opts)
        elif robust:
            res = robust_strip(prep, r0, c0, chip, (init[0][ii, jj], init[1][ii, jj]), opts)
        elif radius is None:  # refine from the given sub-pixel start, no search
            sr = job.search[ii, jj]
            res = ncc_strip(
                prep, r0, c0, chip, sr, sr, opts, start=(init[0][ii, jj], init[1][ii, jj]), level=level
            )
        else:
            ir = np.rint(init[0][ii, jj]).astype(np.int64)
            ic = np.rint(init[1][ii, jj]).astype(np.int64)
            sr = np.full(ii.size, radius, np.int64)
            res = ncc_strip(prep, r0, c0, chip, sr, sr, opts, init_r=ir, init_c=ic, level=level)
        if init is not None:
            # a re-search must stay inside the user's search range
            far = (np.abs(res.dy) > job.search[ii, jj] + 0.5) | (np.abs(res.dx) > job.search[ii, jj] + 0.5)
            res.reason[(res.reason == K.OK) & far] = K.SEARCH_EDGE
        out["dy"][ii, jj] = res.dy
        out["dx"][ii, jj] = res.dx
        out["q"][ii, jj] = res.quality
        out["reason"][ii, jj] = res.reason
        out["lk"][ii, jj] = res.lk
        if progress is not None:
            progress(k + 1, len(strips))
    return out


def _sparse_dense(
    prep: PreparedStrip, ii: Any, jj: Any, r0: Any, c0: Any, job: _Job, opts: NccOptions
) -> Any:
    """Search a sparse subset of the nodes, start the others from their searched neighbours (see
    NccOptions.sparse): every ``stride``-th node in each direction is searched, then each halving of the
    stride starts its new nodes from the average of the known nodes ``stride`` away. Down to every
    other node, these estimates only serve as starts: they are refined on pyramid level 1 (a quarter of
    the pixels, in a quarter of the memory). The last level then refines every node at full resolution in
    one pass, in grid order, from its own coarse estimate or its neighbours' average."""
    search = job.search[ii, jj]
    if not opts.sparse or ii.size < 16:
        return ncc_strip(prep, r0, c0, job.chip, search, search, opts)
    stride = int(opts.sparse_stride)
    level = 1 if min(job.chip) >= 16 else 0  # (a level-1 chip of 8 px still locks onto texture)
    i0 = int(ii.min())
    pad = stride
    grid_y = np.full((int(ii.max()) - i0 + 1 + 2 * pad, job.cs.size + 2 * pad), np.nan)
    grid_x = grid_y.copy()
    gi, gj = ii - i0 + pad, jj + pad

    def store(idx: Any, res: Any) -> None:
        grid_y[gi[idx], gj[idx]] = res.dy
        grid_x[gi[idx], gj[idx]] = res.dx

    def keep(idx: Any, res: Any) -> None:
        out.dy[idx], out.dx[idx], out.quality[idx] = res.dy, res.dx, res.quality
        out.reason[idx], out.lk[idx] = res.reason, res.lk

    def match_nodes(idx: Any, start: Any, on_level: int) -> Any:
        """Nodes ``idx`` refined from ``start`` (rows, cols), or searched when it is None."""
        return ncc_strip(
            prep, r0[idx], c0[idx], job.chip, search[idx], search[idx], opts, start=start, level=on_level
        )

    def predict(new: Any, half: int) -> tuple[Any, Any, Any]:
        """Average of the known neighbours (i ± half or i) × (j ± half or j) of ``new``, and whether
        they agree within 0.5 px."""
        py, px, spread = K.lattice_average(grid_y, grid_x, gi[new], gj[new], half)
        with np.errstate(invalid="ignore"):
            return py, px, np.isfinite(py) & (spread <= 0.5)

    out = StripResult(
        np.full(ii.size, np.nan),
        np.full(ii.size, np.nan),
        np.zeros(ii.size),
        np.full(ii.size, K.MASKED, np.uint8),
        np.full((ii.size, K.NOUT), np.nan),
    )

    def lattice(spacing: int) -> Any:
        """Whether each node lies on the lattice of every ``spacing``-th node in both directions."""
        return (ii % spacing == 0) & (jj % spacing == 0)

    first = np.nonzero(lattice(stride))[0]
    if first.size:
        store(first, match_nodes(first, None, level))
    while stride > 2:
        half = stride // 2
        new = np.nonzero(lattice(half) & ~lattice(stride))[0]
        stride = half
        if new.size == 0:
            continue
        py, px, predicted = predict(new, half)
        p_idx, s_idx = new[predicted], new[~predicted]
        if p_idx.size:
            store(p_idx, match_nodes(p_idx, (py[predicted], px[predicted]), level))
        if s_idx.size:
            store(s_idx, match_nodes(s_idx, None, level))
    # the last level: every node at full resolution
    if level > 0:
        _clean_lattice(grid_y, grid_x, gi, gj, np.nonzero(lattice(stride))[0], stride)
    sy = grid_y[gi, gj]
    sx = grid_x[gi, gj]
    if stride > 1:  # (stride is 2 here) the nodes between the lattice's nodes start from those
        new = np.nonzero(~lattice(stride))[0]
        py, px, predicted = predict(new, 1)
        sy[new] = np.where(predicted, py, np.nan)
        sx[new] = np.where(predicted, px, np.nan)
    known = np.isfinite(sy)
    for idx, from_start in ((np.nonzero(known)[0], True), (np.nonzero(~known)[0], False)):
        if idx.size:
            keep(idx, match_nodes(idx, (sy[idx], sx[idx]) if from_start else None, 0))
    return out


def _clean_lattice(grid_y: Any, grid_x: Any, gi: Any, gj: Any, idx: Any, stride: int) -> None:
    """Replace the coarse estimates at nodes ``idx`` (spaced ``stride`` in the padded grids) that differ
    by more than 0.2 px from the median of their 3 × 3 lattice neighbourhood by that median, in place.
    At low signal-to-noise a coarse chip sometimes locks onto a wrong peak, and the full-resolution
    refinement started there, or at its neighbours, stays in that basin: on the 10 dB peerbench pair, 37
    nodes were off by more than 1 px after the full-resolution pass without this, 4 with it (13 when the
    sparse levels were refined at full resolution), and the mean RMSE over six noise seeds was 0.081 px
    without it, 0.076 with it (threshold 0.5 px: 0.078; 0.15-0.3 px: 0.075-0.076)."""
    if idx.size == 0:
        return
    ri, rj = gi[idx], gj[idx]
    my, mx = K.lattice_median(grid_y, grid_x, ri, rj, stride)
    with np.errstate(invalid="ignore"):
        off = np.hypot(grid_y[ri, rj] - my, grid_x[ri, rj] - mx) > 0.2
    grid_y[ri[off], rj[off]] = my[off]
    grid_x[ri[off], rj[off]] = mx[off]


def _robust_discontinuities(
    job: _Job, opts: NccOptions, dy: Any, dx: Any, q: Any, reason: Any, lk: Any
) -> None:
    """Re-measure nodes next to a displacement discontinuity with a robust (Tukey IRLS) fit.

    Nodes are selected where the field departs from linear between opposite neighbours by more than
    ``opts.step_px`` (a step does, a smooth gradient does not). The robust fit is started from the node's
    own value and from each neighbour's: each start locks onto one side's motion; the answer kept is the
    one whose inliers cover most of the chip's centre (the node's own pixels), then the most precise.
    Updates in place.
    """
    disc = (reason == K.OK) & (_post.linear_residual(dy, dx) > opts.step_px)
    if not disc.any():
        return
    rows = np.nonzero(disc.any(axis=1))[0]
    best = np.full(dy.shape, -1.0)
    best_sig = np.full(dy.shape, np.inf)
    out = {k: np.full(dy.shape, np.nan) for k in ("dy", "dx", "q")}
    starts = zip(
        _post.neighbour_views(dy, self_too=True), _post.neighbour_views(dx, self_too=True), strict=True
    )
    for (_, ny), (_, nx) in starts:
        sel = disc & np.isfinite(ny)
        if not sel.any():
            continue
        r = _ncc_pass(job, opts, rows, sel, (ny, nx), None, None, robust=True)
        score, sig = r["lk"][..., 4], r["lk"][..., 14]
        ok = sel & (r["reason"] == K.OK)
        with np.errstate(invalid="ignore"):
            win = ok & ((score > best + 0.05) | ((np.abs(score - best) <= 0.05) & (sig < best_sig)))
        best[win], best_sig[win] = score[win], sig[win]
        out["dy"][win], out["dx"][win], out["q"][win] = r["dy"][win], r["dx"][win], r["q"][win]
    take = disc & (best >= 0.5)
    dy[take], dx[take], q[take] = out["dy"][take], out["dx"][take], out["q"][take]
    lk[take, 5:11] = 0.0  # the robust estimate is that of the node's side: no strain correction
    lk[take, 14] = best_sig[take]


def _shiftable_windows(job: _Job, opts: NccOptions, dy: Any, dx: Any, q: Any, reason: Any, lk: Any) -> None:
    """Re-measure nodes next to a displacement discontinuity (fault, glacier calving front) with chips
    shifted away from the node centre in 8 directions, keeping the most precise one.

    A chip straddling a step measures a blend of both sides; one shifted by 3/8 of its size still
    contains the node but lies on one side, and its residual (hence predicted error) is the lowest.
    Nodes are selected where the field departs from linear between opposite neighbours
    (> ``opts.step_px``), which a step does and a smooth gradient does not. Updates in place.
    """
    disc = (reason == K.OK) & (_post.linear_residual(dy, dx) > opts.step_px)
    if not disc.any():
        return
    rows = np.nonzero(disc.any(axis=1))[0]
    best_sigma = lk[..., 14].copy()
    sr, sc = (3 * job.chip[0]) // 8, (3 * job.chip[1]) // 8
    y0, x0 = dy.copy(), dx.copy()  # neighbour starts come from the field before any node is replaced
    for ((a, b), ny), (_, nx) in zip(_post.neighbour_views(y0), _post.neighbour_views(x0), strict=True):
        # start from the neighbour on the side the chip moves to (else the node itself)
        start = (np.where(np.isfinite(ny), ny, dy), np.where(np.isfinite(nx), nx, dx))
        r = _ncc_pass(job, opts, rows, disc, start, None, None, None, (a * sr, b * sc))
        sig = r["lk"][..., 14]
        # a clear gain only: on a smooth but steep field an off-centre chip measures another place
        better = disc & (r["reason"] == K.OK) & (sig < 0.7 * best_sigma)
        for key, arr in (("dy", dy), ("dx", dx), ("q", q)):
            arr[better] = r[key][better]
        lk[better] = r["lk"][better]
        lk[better, 5:11] = 0.0  # the chip is off-centre: no strain correction for it
        best_sigma[better] = sig[better]


# a node is re-measured with two motions only when the step lies within this fraction of its chip size
# from its centre: farther, the step is in the chip's border and barely biases the one-motion answer
_REACH = 0.3


def _two_motion_starts(dy: Any, dx: Any, sel: Any) -> tuple[Any, Any, Any, Any]:
    """Candidate motions A and B of the selected nodes (NaN grids elsewhere), see
    :func:`geodeform.offsets._kernels.two_motion_starts`."""
    ii, jj = np.nonzero(sel)
    st = K.two_motion_starts(np.ascontiguousarray(dy), np.ascontiguousarray(dx), ii, jj, 2)
    out = [np.full(dy.shape, np.nan) for _ in range(4)]
    for k in range(4):
        out[k][ii, jj] = st[:, k]
    return out[0], out[1], out[2], out[3]


def _two_motions(
    job: _Job, opts: NccOptions, dy: Any, dx: Any, q: Any, reason: Any, lk: Any, sel: Any | None = None
) -> dict[str, Any]:
    """Re-measure nodes at a displacement discontinuity with two motions split by a straight boundary.

    Nodes whose (strain-corrected) field departs from linear by more than ``opts.two_motion_px`` and 4×
    their predicted error are fitted first, then (twice) the unfitted neighbours of newly accepted nodes
    within ``_REACH`` chip of their boundary. A node takes the motion of its side
    when :func:`_two_motion_accept` accepts the fit; strain correction is then off for it and for its
    neighbours, whose gradients would span the step. Returns the raw fits ``two`` (NaN where not run) and
    the ``accept`` mask, and ``beside`` (accepted nodes and their neighbours); ``sel`` overrides the
    first selection, for diagnostics. Updates in place.
    """
    h, w = dy.shape
    two = np.full((h, w, K.NTWO), np.nan)
    done = np.zeros((h, w), bool)
    accept = np.zeros((h, w), bool)
    if sel is None:
        # on the (first-order) strain-corrected field: smooth but steep fields (glacier margins) are then
        # near linear
        lr = K.strained_linear_residual(
            dy, dx, np.ascontiguousarray(lk), float(job.step[0]), float(job.step[1])
        )
        # and well above the node's own predicted error (noise alone departs from linear too; 4σ with
        # the Gaussian chip window, whose σ is ~1.5× that of a uniform one)
        sigma = np.nan_to_num(lk[..., 14])
        with np.errstate(invalid="ignore"):
            sel = (reason == K.OK) & (lr > opts.two_motion_px) & (lr > 4.0 * sigma)
    # 1.5× the chip (same centre parity): a longer stretch of boundary fixes its line far better
    chip = (job.chip[0] + 2 * (job.chip[0] // 4), job.chip[1] + 2 * (job.chip[1] // 4))
    for _ in range(3):  # the selected nodes, then twice the new neighbours near a found boundary
        sel = sel & ~done
        ay, ax, by, bx = _two_motion_starts(dy, dx, sel)
        sel &= np.isfinite(ay) & np.isfinite(by)
        if not sel.any():
            break
        rows = np.nonzero(sel.any(axis=1))[0]
        r = _ncc_pass(job, opts, rows, sel, (dy, dx), None, None, chip=chip, two=(ay, ax, by, bx))
        t = r["two"]
        # chips that leave the image: the base chip size
        small = sel & ~(t[..., 3] == K.OK)
        if small.any() and chip != job.chip:
            rows = np.nonzero(small.any(axis=1))[0]
            r2 = _ncc_pass(job, opts, rows, small, (dy, dx), None, None, two=(ay, ax, by, bx))
            t[small] = r2["two"][small]
        two[sel] = t[sel]
        done |= sel
        new = _two_motion_accept(two, job, opts) & ~accept
        if not new.any():
            break
        accept |= new
        # next round: the unfitted neighbours of newly accepted nodes near their boundary (_REACH)
        near = K.two_motion_reach(
            new, two, float(job.step[0]), float(job.step[1]), _REACH * job.chip[0], _REACH * job.chip[1]
        )
        sel = near & (reason == K.OK) & ~done
    if accept.any():
        dy[accept], dx[accept], q[accept] = two[accept, 0], two[accept, 1], two[accept, 2]
        lk[accept, 14] = two[accept, 5]
        beside = accept.copy()
        for _, v in _post.neighbour_views(accept.astype(float)):
            beside |= v == 1.0
        lk[beside, 5:11] = 0.0  # each side moves rigidly; the gradients across the step are not strain
        lk[beside, 15:24] = 0.0
    else:
        beside = accept
    return {"two": two, "accept": accept, "beside": beside}


def _two_motion_accept(t: Any, job: _Job, opts: NccOptions) -> Any:
    """Nodes whose two-motion fit shows a real step.

    Three tests: the fit leaves less than ``opts.two_motion_ratio`` of the one-motion residual energy;
    the sides separate as well next to the boundary as far from it (sharpness > 0.75: a smooth gradient
    split in two gives ≈ 0.3); and a neighbouring node that passed both found the same boundary line
    (within 5° and 1 px: a fault or a front is a continuous line, spurious splits of a smooth field
    are not).
    """
    return K.two_motion_accept(
        t, float(job.step[0]), float(job.step[1]), opts.two_motion_ratio, 0.75, np.cos(np.radians(5.0)), 1.0
    )


def _nested_chips(
    job: _Job, opts: NccOptions, dy: Any, dx: Any, q: Any, reason: Any, lk: Any, keep: Any = None
) -> None:
    """Re-measure imprecise or failed nodes with chips 2×, 4×… larger (autoRIFT's nested chip sizes).

    A node is redone when its predicted error exceeds ``opts.target_sigma`` or its match failed for
    lack of signal; the larger chip's answer is kept when it is valid and more precise. Valid nodes in
    ``keep`` (next to a step found by the two-motion fit, which a larger chip would blend) are left alone.
    Updates in place.
    """
    factor = 2
    coarse = opts.coarse_nested
    while factor <= opts.max_chip_factor:
        chip = tuple(c * factor - (c % 2) * (factor - 1) for c in job.chip)
        sigma = lk[..., 14]
        weak = np.isin(
            reason, (K.LOW_CORRELATION, K.NOT_CONVERGED, K.TEXTURELESS, K.SEARCH_EDGE, Reason.OUTLIER)
        )
        # beyond 2× only failed nodes are redone: a larger chip trades resolution for a valid answer
        need = ((reason == K.OK) & (sigma > opts.target_sigma) & (factor == 2)) | weak
        if keep is not None:
            need &= ~(keep & (reason == K.OK))
        if factor > 2:
            # a failed chip with foreign pixels (a cloud edge) would reach clear ground farther away with a
            # larger chip and report its motion: only chips that failed for lack of signal grow again
            need &= ~_foreign(reason, lk, opts)
        if not need.any():
            return
        if coarse == "auto":
            n_valid = max(int(np.count_nonzero(reason == K.OK)), 1)
            coarse = bool(np.count_nonzero(need) > opts.coarse_nested_fraction * n_valid)
        # start from the neighbourhood median: at low signal-to-noise the node's own value may sit in
        # a wrong correlation basin that the larger chip would keep (10 dB peerbench: RMSE 0.085 →
        # 0.071 px, and fewer iterations)
        my, mx, _ = _post.neighbour_median(dy, dx)
        sy = np.where(np.isfinite(my), my, dy)
        sx = np.where(np.isfinite(mx), mx, dx)
        has_start = need & np.isfinite(sy)
        # the larger chip is refined on the pyramid level where it has the size of the base chip
        level = factor.bit_length() - 1 if coarse else 0
        zero = np.zeros_like(dy)
        passes = (
            (has_start, (sy, sx), None, level),
            # nodes without a start are searched from scratch: one level finer than the others (10 dB
            # peerbench: RMSE 0.069 px; 0.085-0.089 on the same level)
            (
                need & ~has_start & (reason != K.MASKED),
                (zero, zero),
                int(job.search.max()),
                min(level, factor.bit_length() - 2),
            ),
        )
        results: list[tuple[Any, dict[str, Any]]] = []
        for nodes, start, radius, on_level in passes:
            if not nodes.any():
                continue
            for shape, sel in _border_chips(job, chip, nodes, start, radius or 0):
                rows = np.nonzero(sel.any(axis=1))[0]
                r = _ncc_pass(
                    job, opts, rows, sel, start, radius, None, shape, level=on_level, clamp=factor > 2
                )
                results.append((sel, r))
        for sel, r in results:
            # the larger chip wins unless it is much less precise: its predicted error says how precise
            # it is, not how likely the smaller chip sat in a wrong correlation basin, which is what a
            # larger chip mostly cures (10 dB pair, coarse level: RMSE 0.074 px, 0.123 if it must be
            # more precise)
            better = sel & (r["reason"] == K.OK) & ((reason != K.OK) | (r["lk"][..., 14] < 2.0 * sigma))
            for key, arr in (("dy", dy), ("dx", dx), ("q", q), ("reason", reason)):
                arr[better] = r[key][better]
            lk[better] = r["lk"][better]
        factor *= 2


def _border_chips(
    job: _Job, chip: tuple[int, int], select: Any, start: tuple[Any, Any], radius: int
) -> Iterator[tuple[tuple[int, int], Any]]:
    """Split the nodes in ``select`` by the nested chip shape they use, yielding (shape, node mask) pairs.

    The shape is ``chip``, except near the image border where the chip fits in the reference but its
    secondary window (the chip displaced by ``start``, plus ``radius`` of search) would cross the
    secondary's edge: the chip is then narrowed, still centred on the node, to the largest size whose
    window fits, if that is at least the base chip. (A chip whose window crosses the border loses the
    pixels outside, and beyond the refinement's padding it fails as ``OUTSIDE``: peerbench glacier, a
    weakly textured node 32 px from the right edge moving 7 px towards it had no answer at any size.)
    """
    ii, jj = np.nonzero(select)
    key = np.zeros(ii.size, np.int64)  # the shape (rows, cols) as rows * (chip[1] + 1) + cols
    for axis, (origins, idx) in enumerate(((job.rs, ii), (job.cs, jj))):
        base, size, n = job.chip[axis], chip[axis], job.ref.shape[axis]
        centre = origins[idx] + (base - 1) / 2.0
        d = np.nan_to_num(start[axis][ii, jj])
        # the first and last chip pixels whose secondary window (displaced by the start, ± the search,
        # with the spline's taps) lies within the refinement's padding of the secondary
        first = np.maximum(0.0, -2.0 - np.floor(d - radius))
        last = np.minimum(n - 1.0, n - np.floor(d + radius))
        room = np.minimum(centre - first, last - centre)
        fit = np.floor(2 * room + 1).astype(np.int64)
        fit -= (fit - base) % 2  # the base chip's parity keeps the node at the chip's centre
        ref_fits = (centre >= (size - 1) / 2.0) & (centre <= n - 1 - (size - 1) / 2.0)
        key = key * (chip[1] + 1) + np.where(ref_fits & (fit >= base) & (fit < size), fit, size)
    full = chip[0] * (chip[1] + 1) + chip[1]
    if (key == full).all():
        yield chip, select
        return
    for k in np.unique(key):
        pick = key == k
        sel = np.zeros_like(select)
        sel[ii[pick], jj[pick]] = True
        yield (int(k) // (chip[1] + 1), int(k) % (chip[1] + 1)), sel


def _residual_per_pixel(lk: Any) -> Any:
    """Residual variance per pixel of every refined chip, from its predicted error and inverse normal
    matrix (NaN where no refinement ran). Noise is stationary, so clean chips share one value."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (lk[..., 14] / K.SIGMA_CALIBRATION) ** 2 / (lk[..., 11] + lk[..., 13])


def _foreign(reason: Any, lk: Any, opts: NccOptions) -> Any:
    """Chips whose residual variance per pixel exceeds ``opts.robust_ratio`` × the valid chips' median:
    something in them matches nothing (a cloud edge, a shadow, a changed patch)."""
    resid = _residual_per_pixel(lk)
    good = (reason == K.OK) & np.isfinite(resid)
    if opts.robust_ratio <= 0 or not good.any():
        return np.zeros(reason.shape, bool)
    # (the images are normalised to unit variance: a floor keeps noise-free pairs out of the test)
    with np.errstate(invalid="ignore"):
        return resid > opts.robust_ratio * max(float(np.median(resid[good])), 1e-4)


# ZNCC of a chip above which it cannot be dominated by foreign pixels (see :func:`_contaminated`); clean
# chips reach it only on low-noise pairs (about 0.98 at 20 dB, 0.998 at 30 dB)
_WHOLE_MATCH = 0.99


def _contaminated(job: _Job, opts: NccOptions, dy: Any, dx: Any, q: Any, reason: Any, lk: Any) -> None:
    """Re-measure chips partly covered by something that does not match (a cloud edge, a shadow, a
    changed surface) with a robust fit, keeping the motion of the node's own pixels.

    Image noise is stationary, so clean chips leave the same residual variance per pixel whatever their
    texture; a foreign patch raises it. Nodes whose residual variance exceeds ``opts.robust_ratio`` × the
    median are refined again by Tukey-weighted Gauss–Newton (pixels that do not follow the fitted motion
    lose their weight) started from their value. When the node's central pixels follow the robust motion
    it replaces the blend; when they do not, or no robust motion correlates, the motion measured is that
    of other pixels of the chip and the node becomes ``LOW_CORRELATION``. Updates in place.
    """
    cand = (reason == K.OK) & _foreign(reason, lk, opts)
    if not cand.any():
        return
    rows = np.nonzero(cand.any(axis=1))[0]
    r = _ncc_pass(job, opts, rows, cand, (dy, dx), None, None, robust=True)
    score = np.nan_to_num(r["lk"][..., 4])
    fitted = cand & (r["reason"] == K.OK)
    take = fitted & (score >= 0.5) & (r["q"] >= opts.min_correlation)
    for key, arr in (("dy", dy), ("dx", dx), ("q", q)):
        arr[take] = r[key][take]
    lk[take, 5:24] = 0.0  # the robust estimate is that of the node's pixels: no strain correction
    lk[take, 14] = r["lk"][take, 14]
    # no robust motion that the node's own pixels follow: its chip is dominated by foreign pixels. Not
    # when the chip as a whole correlates at _WHOLE_MATCH or more: foreign pixels covering a tenth of its
    # texture would lower that visibly. On clean high-contrast chips of a low-noise pair the residual is
    # interpolation error, heavy-tailed on sharp edges, which the robust fit's centre test mistakes for
    # pixels that do not follow (peerbench 30 dB: one such node, 0.01 px from the truth, was rejected)
    foreign = (
        cand
        & ~take
        & ((r["reason"] != K.OK) | (score < 0.25) | (r["q"] < opts.min_correlation))
        & ~(q >= _WHOLE_MATCH)
    )
    reason[foreign] = K.LOW_CORRELATION
    dy[foreign] = np.nan
    dx[foreign] = np.nan


def _run_ncc(job: _Job, opts: NccOptions, progress: ProgressCallback | None) -> tuple[Any, ...]:
    r = _ncc_pass(job, opts, None, None, None, None, progress)
    dy, dx, q, reason, lk = r["dy"], r["dx"], r["q"], r["reason"], r["lk"]
    if opts.subpixel == "lk" and opts.consistency:
        # nodes that failed in a way a better start can fix, or that disagree with their neighbours, are
        # refined again from the neighbourhood median, then searched ±2 px around it; the better-correlated
        # answer wins (a true discontinuity keeps its own, better-correlated value)
        retry = (K.LOW_CORRELATION, K.SEARCH_EDGE, K.NOT_CONVERGED)
        for radius in (None, 2):
            my, mx, count = _post.neighbour_median(dy, dx)
            with np.errstate(invalid="ignore"):
                off = np.hypot(dy - my, dx - mx) > opts.consistency_px
            cand = np.isfinite(my) & (off | np.isin(reason, retry))
            if not cand.any():
                break
            node_rows = np.nonzero(cand.any(axis=1))[0]
            r2 = _ncc_pass(job, opts, node_rows, cand, (my, mx), radius, None)
            better = cand & (r2["reason"] == K.OK) & ((reason != K.OK) | (r2["q"] > q))
            for key, arr in (("dy", dy), ("dx", dx), ("q", q), ("reason", reason)):
                arr[better] = r2[key][better]
            lk[better] = r2["lk"][better]
        # autoRIFT's neighbourhood-consistency (NDC) test on what is left
        frac, count = _post.neighbour_agreement(dy, dx, radius=2, tol=opts.consistency_px)
        isolated = (reason == K.OK) & (count >= 6) & (frac < 0.25)
        reason[isolated] = Reason.OUTLIER
        dy[isolated] = np.nan
        dx[isolated] = np.nan
    steps = None
    if opts.subpixel == "lk" and opts.two_motion:
        steps = _two_motions(job, opts, dy, dx, q, reason, lk)["beside"]
    if opts.subpixel == "lk" and opts.robust_steps:
        # each round gives the nodes nearer the step cleaner one-sided starts from their neighbours
        for _ in range(3):
            _robust_discontinuities(job, opts, dy, dx, q, reason, lk)
    if opts.subpixel == "lk" and opts.shiftable:
        _shiftable_windows(job, opts, dy, dx, q, reason, lk)
    if opts.subpixel == "lk" and opts.max_chip_factor > 1:
        _nested_chips(job, opts, dy, dx, q, reason, lk, steps)
    if opts.subpixel == "lk" and opts.robust_ratio > 0:
        _contaminated(job, opts, dy, dx, q, reason, lk)
    if opts.subpixel == "lk" and opts.strain_correction:
        by, bx = _post.strain_bias(dy, dx, lk, job.step)
        ok = reason == K.OK
        dy = np.where(ok, dy - by, dy)
        dx = np.where(ok, dx - bx, dx)
    sigma = np.where(reason == K.OK, lk[..., 14], np.nan)
    if opts.subpixel == "lk" and opts.smoothing > 0:
        dy, dx, sigma, _ = _post.adaptive_plane(
            np.where(reason == K.OK, dy, np.nan),
            np.where(reason == K.OK, dx, np.nan),
            sigma,
            step=job.step,
            chip=job.chip,
            radii=tuple(range(1, opts.smoothing + 1)),
            gamma=opts.smoothing_gamma,
        )
    return dy, dx, q, reason, sigma
