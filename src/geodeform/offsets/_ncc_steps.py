"""The ``ncc`` passes at displacement discontinuities (faults, calving fronts, landslide scarps).

A chip that straddles a step measures a blend of both sides. These passes find the nodes next to a step
(their field departs from linear between opposite neighbours) and re-measure them so that each takes the
motion of its own side: the two-motion fit (default), a robust fit from each neighbour's value, or chips
shifted off the node. Each acts on the :class:`~geodeform.offsets._ncc_field.NodeField` in place.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from geodeform.offsets import _post
from geodeform.offsets._grid import strained_linear_residual
from geodeform.offsets._job import MatchJob
from geodeform.offsets._layout import (
    CENTRE_SCORE,
    M_COL,
    M_ROW,
    OK,
    SIGMA,
    TWO_COLS,
    TWO_DX,
    TWO_DY,
    TWO_REASON,
    TWO_SIGMA,
    TWO_ZNCC,
    Q,
    nan_to,
)
from geodeform.offsets._ncc_field import REACH, NodeField, measure, two_motion_pass
from geodeform.offsets._two_motion import Motions, two_motion_accept, two_motion_reach, two_motion_starts
from geodeform.offsets.ncc import NccOptions

__all__ = ["TwoMotionFit", "robust_discontinuities", "shiftable_windows", "two_motions"]

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

# the texture moments of the first-order strain correction (M_r, M_c) and of the second-order one (Q)
FIRST_ORDER = slice(M_ROW, M_COL + 3)
SECOND_ORDER = slice(Q, Q + 9)


class TwoMotionFit(NamedTuple):
    """Result of :func:`two_motions`.

    Attributes
    ----------
    fits : ndarray of float64, shape (nr, nc, TWO_COLS)
        The raw two-motion fits (NaN where none ran).
    accept : ndarray of bool, shape (nr, nc)
        Nodes that took the motion of their side.
    beside : ndarray of bool, shape (nr, nc)
        Accepted nodes and their neighbours (strain correction off: their gradients span the step).
    """

    fits: F64
    accept: Mask
    beside: Mask


def _motion_grids(dy: F64, dx: F64, sel: Mask) -> Motions:
    """Candidate motions A and B of the selected nodes as grids (NaN elsewhere), see
    :func:`geodeform.offsets._two_motion.two_motion_starts`."""
    ii, jj = (np.ascontiguousarray(a) for a in np.nonzero(sel))  # strided views unless empty: one kernel
    st = two_motion_starts(np.ascontiguousarray(dy), np.ascontiguousarray(dx), ii, jj, 2)
    grids = []
    for values in st:
        g = np.full(dy.shape, np.nan)
        g[ii, jj] = values
        grids.append(g)
    return Motions(*grids)


def _accept(fits: F64, job: MatchJob, opts: NccOptions) -> Mask:
    """Nodes whose two-motion fit shows a real step.

    Three tests: the fit leaves less than ``opts.two_motion_ratio`` of the one-motion residual energy;
    the sides separate as well next to the boundary as far from it (sharpness > 0.75: a smooth gradient
    split in two gives ≈ 0.3); and a neighbouring node that passed both found the same boundary line
    (within 5° and 1 px: a fault or a front is a continuous line, spurious splits of a smooth field
    are not).
    """
    accepted: Mask = two_motion_accept(
        fits,
        float(job.step[0]),
        float(job.step[1]),
        opts.two_motion_ratio,
        0.75,
        np.cos(np.radians(5.0)),
        1.0,
    )
    return accepted


def two_motions(job: MatchJob, opts: NccOptions, field: NodeField, sel: Mask | None = None) -> TwoMotionFit:
    """Re-measure nodes at a displacement discontinuity with two motions split by a straight boundary.

    Nodes whose (strain-corrected) field departs from linear by more than ``opts.two_motion_px`` and 4×
    their predicted error are fitted first, then (twice) the unfitted neighbours of newly accepted nodes
    within ``REACH`` chip of their boundary. Chips are 1.5× the base chip (the base chip where that
    leaves the image, and everywhere with ``opts.grow_chips`` off). A node takes the motion of its side
    when :func:`_accept` accepts the fit; the first- and second-order strain moments are then zeroed for
    it and its neighbours, whose gradients would span the step. ``sel`` overrides the first selection
    (diagnostics). Updates ``field`` in place.
    """
    dy, dx = field.dy, field.dx
    shape = dy.shape
    fits = np.full((*shape, TWO_COLS), np.nan)
    fit_chip = np.full((*shape, 2), np.nan)  # the chip of every fit
    done = np.zeros(shape, bool)
    accept = np.zeros(shape, bool)
    if sel is None:
        # on the (first-order) strain-corrected field: smooth but steep fields (glacier margins) are then
        # near linear
        lr = strained_linear_residual(
            dy, dx, np.ascontiguousarray(field.lk), float(job.step[0]), float(job.step[1])
        )
        # and well above the node's own predicted error (noise alone departs from linear too; 4σ with
        # the Gaussian chip window, whose σ is ~1.5× that of a uniform one)
        sigma = nan_to(field.sigma)
        with np.errstate(invalid="ignore"):
            sel = field.ok & (lr > opts.two_motion_px) & (lr > 4.0 * sigma)
    # 1.5× the chip (same centre parity): a longer stretch of boundary fixes its line far better
    chip = (job.chip[0] + 2 * (job.chip[0] // 4), job.chip[1] + 2 * (job.chip[1] // 4))
    if not opts.grow_chips:
        chip = job.chip
    for _ in range(3):  # the selected nodes, then twice the new neighbours near a found boundary
        sel = sel & ~done
        motions = _motion_grids(dy, dx, sel)
        sel &= np.isfinite(motions.a_dy) & np.isfinite(motions.b_dy)
        if not sel.any():
            break
        rows = np.nonzero(sel.any(axis=1))[0]
        t = two_motion_pass(job, opts, rows=rows, select=sel, start=(dy, dx), motions=motions, chip=chip)
        fit_chip[sel] = chip
        # chips that leave the image: the base chip size
        small = sel & ~(t[..., TWO_REASON] == OK)
        if small.any() and chip != job.chip:
            rows = np.nonzero(small.any(axis=1))[0]
            t2 = two_motion_pass(job, opts, rows=rows, select=small, start=(dy, dx), motions=motions)
            t[small] = t2[small]
            fit_chip[small] = job.chip
        fits[sel] = t[sel]
        done |= sel
        new = _accept(fits, job, opts) & ~accept
        if not new.any():
            break
        accept |= new
        # next round: the unfitted neighbours of newly accepted nodes near their boundary (REACH)
        near = two_motion_reach(
            new, fits, float(job.step[0]), float(job.step[1]), REACH * job.chip[0], REACH * job.chip[1]
        )
        sel = near & field.ok & ~done
    beside = accept
    if accept.any():
        dy[accept], dx[accept] = fits[accept, TWO_DY], fits[accept, TWO_DX]
        field.q[accept] = fits[accept, TWO_ZNCC]
        field.lk[accept, SIGMA] = fits[accept, TWO_SIGMA]
        field.chip[accept] = fit_chip[accept]
        beside = accept.copy()
        for _, v in _post.neighbour_views(accept.astype(float)):
            beside |= v == 1.0
        field.lk[beside, FIRST_ORDER] = 0.0  # each side moves rigidly: the gradients across are not strain
        field.lk[beside, SECOND_ORDER] = 0.0
    return TwoMotionFit(fits, accept, beside)


def robust_discontinuities(job: MatchJob, opts: NccOptions, field: NodeField) -> None:
    """Re-measure nodes next to a displacement discontinuity with a robust (Tukey IRLS) fit.

    Nodes are selected where the field departs from linear between opposite neighbours by more than
    ``opts.step_px`` (a step does, a smooth gradient does not). The robust fit is started from the node's
    own value and from each neighbour's: each start locks onto one side's motion; the answer kept is the
    one whose inliers cover most of the chip's centre (the node's own pixels), then the most precise.
    The first-order strain moments of the nodes replaced are zeroed. Updates ``field`` in place.
    """
    dy, dx = field.dy, field.dx
    disc = field.ok & (_post.linear_residual(dy, dx) > opts.step_px)
    if not disc.any():
        return
    rows = np.nonzero(disc.any(axis=1))[0]
    best = np.full(dy.shape, -1.0)
    best_sig = np.full(dy.shape, np.inf)
    kept = NodeField.empty(dy.shape)
    starts = zip(
        _post.neighbour_views(dy, self_too=True), _post.neighbour_views(dx, self_too=True), strict=True
    )
    for (_, ny), (_, nx) in starts:
        sel = disc & np.isfinite(ny)
        if not sel.any():
            continue
        r = measure(job, opts, rows=rows, select=sel, start=(ny, nx), robust=True)
        score, sig = r.lk[..., CENTRE_SCORE], r.sigma
        ok = sel & r.ok
        with np.errstate(invalid="ignore"):
            win = ok & ((score > best + 0.05) | ((np.abs(score - best) <= 0.05) & (sig < best_sig)))
        best[win], best_sig[win] = score[win], sig[win]
        kept.dy[win], kept.dx[win], kept.q[win] = r.dy[win], r.dx[win], r.q[win]
    take = disc & (best >= 0.5)
    dy[take], dx[take], field.q[take] = kept.dy[take], kept.dx[take], kept.q[take]
    field.chip[take] = job.chip
    field.lk[take, FIRST_ORDER] = 0.0  # the robust estimate is that of the node's side: no strain correction
    field.lk[take, SIGMA] = best_sig[take]


def shiftable_windows(job: MatchJob, opts: NccOptions, field: NodeField) -> None:
    """Re-measure nodes next to a displacement discontinuity (fault, glacier calving front) with chips
    shifted away from the node centre in 8 directions, keeping the most precise one.

    A chip straddling a step measures a blend of both sides; one shifted by 3/8 of its size still
    contains the node but lies on one side, and its residual (hence predicted error) is the lowest.
    Nodes are selected where the field departs from linear between opposite neighbours
    (> ``opts.step_px``), which a step does and a smooth gradient does not. A shifted chip replaces the
    node's answer only when its predicted error is below 0.7× the best so far (its first-order strain
    moments are then zeroed: the chip is off-centre). Updates ``field`` in place.
    """
    dy, dx = field.dy, field.dx
    disc = field.ok & (_post.linear_residual(dy, dx) > opts.step_px)
    if not disc.any():
        return
    rows = np.nonzero(disc.any(axis=1))[0]
    best_sigma = field.sigma.copy()
    sr, sc = (3 * job.chip[0]) // 8, (3 * job.chip[1]) // 8
    y0, x0 = dy.copy(), dx.copy()  # neighbour starts come from the field before any node is replaced
    for ((a, b), ny), (_, nx) in zip(_post.neighbour_views(y0), _post.neighbour_views(x0), strict=True):
        # start from the neighbour on the side the chip moves to (else the node itself)
        start = (np.where(np.isfinite(ny), ny, dy), np.where(np.isfinite(nx), nx, dx))
        r = measure(job, opts, rows=rows, select=disc, start=start, shift=(a * sr, b * sc))
        sig = r.sigma
        # a clear gain only: on a smooth but steep field an off-centre chip measures another place
        better = disc & r.ok & (sig < 0.7 * best_sigma)
        dy[better], dx[better], field.q[better] = r.dy[better], r.dx[better], r.q[better]
        field.lk[better] = r.lk[better]
        field.chip[better] = job.chip
        field.lk[better, FIRST_ORDER] = 0.0  # the chip is off-centre: no strain correction for it
        best_sigma[better] = sig[better]
