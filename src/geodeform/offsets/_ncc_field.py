"""The ``ncc`` matcher's node field and its passes over the strips: the first (sparse-then-dense) match
and the re-measurements of selected nodes that the later passes ask for.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from geodeform.offsets._grid import lattice_average, lattice_median
from geodeform.offsets._job import MatchJob
from geodeform.offsets._layout import MASKED, OK, OUTSIDE, REFINE_COLS, SEARCH_EDGE, SIGMA, TWO_COLS
from geodeform.offsets._ncc_strip import (
    Chips,
    PreparedStrip,
    StripResult,
    _window,
    ncc_strip,
    robust_strip,
    two_motion_strip,
)
from geodeform.offsets._noise import noise_factor
from geodeform.offsets._two_motion import Motions
from geodeform.offsets.ncc import NccOptions

__all__ = ["REACH", "NodeField", "measure", "two_motion_pass"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Start = tuple[F64, F64]
ProgressCallback = Callable[[int, int], None]

# a node is re-measured with two motions only when the step lies within this fraction of its chip size
# from its centre: farther, the step is in the chip's border and barely biases the one-motion answer
REACH = 0.3


@dataclass
class NodeField:
    """The state of every node of the grid between the ``ncc`` passes (arrays of shape (nr, nc)).

    Attributes
    ----------
    dy, dx : ndarray of float64
        Offsets, px; NaN unless ``reason`` is ``OK``.
    q : ndarray of float64
        ZNCC of the match (0 where unknown).
    reason : ndarray of uint8
        Reason code per node.
    lk : ndarray of float64, shape (nr, nc, REFINE_COLS)
        The refinement output of the answer kept (predicted error, texture moments; columns of
        :mod:`geodeform.offsets._layout`).
    chip : ndarray of float64, shape (nr, nc, 2)
        Rows and columns (px, full resolution) of the chip that measured the answer kept (NaN where
        no chip was matched).
    noise_factor, roughness : ndarray of float64, shape (nr, nc), or None
        The first pass's correlated-noise error over the kernel's ``SIGMA`` and the texture roughness of
        each node's base chip (:func:`geodeform.offsets._noise.noise_factor`; NaN where that chip has
        no refinement); None for the passes that re-measure nodes.
    """

    dy: F64
    dx: F64
    q: F64
    reason: npt.NDArray[np.uint8]
    lk: F64
    chip: F64
    noise_factor: F64 | None = None
    roughness: F64 | None = None

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> NodeField:
        """A field without any answer (``MASKED`` everywhere)."""
        return cls(
            np.full(shape, np.nan),
            np.full(shape, np.nan),
            np.zeros(shape),
            np.full(shape, MASKED, np.uint8),
            np.full((*shape, REFINE_COLS), np.nan),
            np.full((*shape, 2), np.nan),
        )

    @property
    def ok(self) -> Mask:
        """Nodes with a valid answer."""
        return self.reason == OK

    @property
    def sigma(self) -> F64:
        """Predicted 1-σ vector error, px (a view of ``lk``)."""
        return self.lk[..., SIGMA]

    def take(self, other: NodeField, where: Mask, *, lk: bool = True) -> None:
        """Replace the answers at ``where`` by ``other``'s: offsets, quality, reason and chip size, and
        (with ``lk``) the refinement output."""
        for name in ("dy", "dx", "q", "reason", "chip"):
            getattr(self, name)[where] = getattr(other, name)[where]
        if lk:
            self.lk[where] = other.lk[where]

    def reject(self, where: Mask, reason: int) -> None:
        """Mark the nodes at ``where`` invalid for ``reason``."""
        self.reason[where] = reason
        self.dy[where] = np.nan
        self.dx[where] = np.nan


class _StripChips(NamedTuple):
    """The selected nodes of one strip: their grid indices and chip origins in the strip."""

    k: int  #: the strip's index
    n_strips: int
    prep: PreparedStrip
    ii: I64
    jj: I64
    r0: I64
    c0: I64


def _strip_chips(
    job: MatchJob,
    opts: NccOptions,
    reason: npt.NDArray[np.uint8],
    *,
    rows: I64 | None,
    select: Mask | None,
    chip: tuple[int, int],
    shift: tuple[int, int] = (0, 0),
    clamp: bool = False,
    extra_pad: int = 0,
) -> Iterator[_StripChips]:
    """Walk the strips holding the selected nodes (all by default), preparing each strip once (the job
    keeps the last one for the next pass). A chip of size ``chip`` keeps the node's centre, moved by
    ``shift`` px; with ``clamp`` a chip crossing the image border is moved inside it. Nodes whose chip
    leaves the strip get ``OUTSIDE`` in ``reason`` and are not yielded."""
    nc = job.cs.size
    # chip origin offset that keeps the node centre start + (chip - 1) / 2 where it is
    off_r = (chip[0] - job.chip[0]) // 2 - shift[0]
    off_c = (chip[1] - job.chip[1]) // 2 - shift[1]
    strips = list(job.strips(rows, extra_pad=extra_pad + max(abs(off_r), abs(off_c))))
    for k, (a, b, idx, _pad) in enumerate(strips):
        prep = job.cached((a, b))
        if prep is None:
            ref_s = job.prepare(job.ref, job.ref_mask, a, b, key="strip-ref")
            sec_s = job.prepare(job.sec, job.sec_mask, a, b, key="strip-sec")
            prep = PreparedStrip(ref_s, sec_s, opts, job.stats(ref_s, sec_s))
            job.keep((a, b), prep)
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
            reason[ii[~inside], jj[~inside]] = OUTSIDE
            ii, jj, r0, c0 = ii[inside], jj[inside], r0[inside], c0[inside]
            if ii.size == 0:
                continue
        yield _StripChips(k, len(strips), prep, ii, jj, r0, c0)


def measure(
    job: MatchJob,
    opts: NccOptions,
    *,
    rows: I64 | None = None,
    select: Mask | None = None,
    start: Start | None = None,
    radius: int | None = None,
    chip: tuple[int, int] | None = None,
    shift: tuple[int, int] = (0, 0),
    robust: bool = False,
    level: int = 0,
    clamp: bool = False,
    progress: ProgressCallback | None = None,
) -> NodeField:
    """One matching pass over the selected nodes (``select``, in grid rows ``rows``; all by default).

    Parameters
    ----------
    job, opts
        The match and its options.
    start : (dy grid, dx grid), optional
        None: full search of every node (sparse-then-dense, see ``NccOptions.sparse``). Else each node
        starts from its value there, px.
    radius : int, optional
        With ``start``: None refines from the sub-pixel start without a search; an int searches
        ± ``radius`` px around it first.
    chip : (int, int), optional
        Chip size (default: the job's), keeping the node centres; ``shift`` moves the chips off the node
        by (rows, cols) px; with ``clamp`` a chip crossing the image border is moved inside it instead of
        failing as ``OUTSIDE``, so it measures the nearest ground it can.
    robust : bool
        Robust (Tukey) refinement from ``start`` (``lk`` then carries ``CENTRE_SCORE`` and ``SIGMA``).
    level : int
        Pyramid level of the refinement (nested chips, see ``NccOptions.coarse_nested``).
    progress : callable(done, total), optional
        Called after every strip.

    Returns
    -------
    NodeField
        The answers at the selected nodes; the others without an answer (``MASKED``). A re-measurement
        stays inside the user's search range (``SEARCH_EDGE`` beyond it).
    """
    chip = job.chip if chip is None else chip
    out = NodeField.empty(job.grid)
    walk = _strip_chips(
        job,
        opts,
        out.reason,
        rows=rows,
        select=select,
        chip=chip,
        shift=shift,
        clamp=clamp,
        extra_pad=0 if start is None else 3,
    )
    for k, n_strips, prep, ii, jj, r0, c0 in walk:
        if start is None:
            res = sparse_dense(prep, ii, jj, r0, c0, job, opts, halo=_halo(job, prep, ii, r0, select))
            if opts.subpixel == "lk":
                if out.noise_factor is None or out.roughness is None:
                    out.noise_factor, out.roughness = np.full(job.grid, np.nan), np.full(job.grid, np.nan)
                out.noise_factor[ii, jj], out.roughness[ii, jj] = noise_factor(
                    prep.spline(0),
                    r0,
                    c0,
                    chip,
                    _window(*chip, opts.window),
                    res.lk,
                    exact=prep.exact,
                    smooth=opts.smooth,
                )
        else:
            at = (start[0][ii, jj], start[1][ii, jj])
            if robust:
                res = robust_strip(prep, r0, c0, chip, at, opts)
            elif radius is None:  # refine from the given sub-pixel start, no search
                res = ncc_strip(
                    prep, Chips.around(r0, c0, chip, job.search[ii, jj]), opts, start=at, level=level
                )
            else:
                init = (np.rint(at[0]).astype(np.int64), np.rint(at[1]).astype(np.int64))
                sr = np.full(ii.size, radius, np.int64)
                res = ncc_strip(prep, Chips.around(r0, c0, chip, sr, init), opts, level=level)
            # a re-search must stay inside the user's search range
            far = (np.abs(res.dy) > job.search[ii, jj] + 0.5) | (np.abs(res.dx) > job.search[ii, jj] + 0.5)
            res.reason[(res.reason == OK) & far] = SEARCH_EDGE
        out.dy[ii, jj] = res.dy
        out.dx[ii, jj] = res.dx
        out.q[ii, jj] = res.quality
        out.reason[ii, jj] = res.reason
        out.lk[ii, jj] = res.lk
        out.chip[ii, jj] = chip
        if progress is not None:
            progress(k + 1, n_strips)
    return out


def two_motion_pass(
    job: MatchJob,
    opts: NccOptions,
    *,
    rows: I64,
    select: Mask,
    start: Start,
    motions: Motions,
    chip: tuple[int, int] | None = None,
) -> F64:
    """Two-motion fits of the selected nodes (see :func:`geodeform.offsets._ncc_strip.two_motion_strip`)
    from the one-motion field ``start`` and the candidate motion grids ``motions``, with chips of size
    ``chip`` (default: the job's). Returns the raw fits, (nr, nc, TWO_COLS), NaN where not run."""
    chip = job.chip if chip is None else chip
    out = np.full((*job.grid, TWO_COLS), np.nan)
    reason = np.full(job.grid, MASKED, np.uint8)  # (OUTSIDE nodes keep a NaN fit)
    walk = _strip_chips(job, opts, reason, rows=rows, select=select, chip=chip, extra_pad=3)
    reach = (REACH * job.chip[0], REACH * job.chip[1])
    for _k, _n, prep, ii, jj, r0, c0 in walk:
        at = Motions(motions.a_dy[ii, jj], motions.a_dx[ii, jj], motions.b_dy[ii, jj], motions.b_dx[ii, jj])
        out[ii, jj] = two_motion_strip(
            prep, r0, c0, chip, (start[0][ii, jj], start[1][ii, jj]), at, reach=reach
        )
    return out


# ------------------------------------------------------------------------------------ sparse then dense
class Halo(NamedTuple):
    """Nodes of the rows around a strip's own (grid indices, chip origins in the strip), whose first
    estimates the strip's edge rows take their starts from."""

    ii: I64
    jj: I64
    r0: I64
    c0: I64


def _halo(job: MatchJob, prep: PreparedStrip, ii: I64, r0: I64, select: Mask | None) -> Halo | None:
    """The ``job.halo_rows`` node rows above and below the strip's nodes ``ii`` (chip origins ``r0``)
    whose base chips lie inside the prepared strip; None when there are none (one strip, a selection)."""
    if job.halo_rows <= 0 or select is not None or ii.size == 0:
        return None
    a = int(job.rs[ii[0]] - r0[0])  # the strip's first image row
    lo, hi = int(ii.min()), int(ii.max())
    rows = np.r_[max(lo - job.halo_rows, 0) : lo, hi + 1 : min(hi + 1 + job.halo_rows, job.rs.size)]
    hr0 = job.rs[rows] - a
    rows = rows[(hr0 >= 0) & (hr0 + job.chip[0] <= prep.refs[0].shape[0])]
    if rows.size == 0:
        return None
    hi_, hj = np.meshgrid(rows, np.arange(job.cs.size), indexing="ij")
    hi_, hj = hi_.ravel(), hj.ravel()
    return Halo(hi_, hj, job.rs[hi_] - a, job.cs[hj].astype(np.int64))


def sparse_dense(
    prep: PreparedStrip,
    ii: I64,
    jj: I64,
    r0: I64,
    c0: I64,
    job: MatchJob,
    opts: NccOptions,
    halo: Halo | None = None,
) -> StripResult:
    """The first match of the nodes (ii, jj) of one strip, their chips at (r0, c0): search a sparse
    subset, start the others from their searched neighbours (see ``NccOptions.sparse``).

    Every ``stride``-th node in each direction is searched, then each halving of the stride starts its
    new nodes from the average of the known nodes ``stride`` away. Down to every other node, these
    estimates only serve as starts: they are refined on pyramid level 1 (a quarter of the pixels, in a
    quarter of the memory). The last level then refines every node at full resolution in one pass, in
    grid order, from its own coarse estimate or its neighbours' average. The ``halo`` nodes (rows around
    the strip's own) take part in the lattice levels only, so that the strip's edge rows start from the
    same neighbours as on the whole image.
    """
    # the dense nodes are refined from their neighbours' average by Gauss-Newton, which the parabola
    # option means not to run: with subpixel="parabola" every node is searched
    if not opts.sparse or opts.subpixel != "lk" or ii.size < 16:
        return ncc_strip(prep, Chips.around(r0, c0, job.chip, job.search[ii, jj]), opts)
    n_own = ii.size
    if halo is not None:
        ii, jj = np.r_[ii, halo.ii], np.r_[jj, halo.jj]
        r0, c0 = np.r_[r0, halo.r0], np.r_[c0, halo.c0]
    search = job.search[ii, jj]
    stride = int(opts.sparse_stride)
    level = 1 if min(job.chip) >= 16 else 0  # (a level-1 chip of 8 px still locks onto texture)
    i0 = int(ii.min())
    pad = stride
    grid_y = np.full((int(ii.max()) - i0 + 1 + 2 * pad, job.cs.size + 2 * pad), np.nan)
    grid_x = grid_y.copy()
    gi, gj = ii - i0 + pad, jj + pad
    out = StripResult.empty(n_own)

    def store(idx: Any, res: StripResult) -> None:
        grid_y[gi[idx], gj[idx]] = res.dy
        grid_x[gi[idx], gj[idx]] = res.dx

    def keep(idx: Any, res: StripResult) -> None:
        out.dy[idx], out.dx[idx], out.quality[idx] = res.dy, res.dx, res.quality
        out.reason[idx], out.lk[idx] = res.reason, res.lk

    def match_nodes(idx: Any, start: Any, on_level: int) -> StripResult:
        """Nodes ``idx`` refined from ``start`` (rows, cols), or searched when it is None."""
        chips = Chips.around(r0[idx], c0[idx], job.chip, search[idx])
        return ncc_strip(prep, chips, opts, start=start, level=on_level)

    def predict(new: Any, half: int) -> tuple[Any, Any, Any]:
        """Average of the known neighbours (i ± half or i) × (j ± half or j) of ``new``, and whether
        they agree within 0.5 px."""
        py, px, spread = lattice_average(grid_y, grid_x, gi[new], gj[new], half)
        with np.errstate(invalid="ignore"):
            return py, px, np.isfinite(py) & (spread <= 0.5)

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
    known = np.isfinite(sy[:n_own])
    for idx, from_start in ((np.nonzero(known)[0], True), (np.nonzero(~known)[0], False)):
        if idx.size:
            keep(idx, match_nodes(idx, (sy[idx], sx[idx]) if from_start else None, 0))
    return out


def _clean_lattice(grid_y: F64, grid_x: F64, gi: I64, gj: I64, idx: I64, stride: int) -> None:
    """Replace the coarse estimates at nodes ``idx`` (spaced ``stride`` in the padded grids) that differ
    by more than 0.2 px from the median of their 3 × 3 lattice neighbourhood by that median, in place.

    At low signal-to-noise a coarse chip sometimes locks onto a wrong peak, and the full-resolution
    refinement started there, or at its neighbours, would stay in that basin."""
    if idx.size == 0:
        return
    ri, rj = gi[idx], gj[idx]
    my, mx = lattice_median(grid_y, grid_x, ri, rj, stride)
    with np.errstate(invalid="ignore"):
        off = np.hypot(grid_y[ri, rj] - my, grid_x[ri, rj] - mx) > 0.2
    grid_y[ri[off], rj[off]] = my[off]
    grid_x[ri[off], rj[off]] = mx[off]
