"""The ``ncc`` matcher's runner: the first match, then the passes that re-measure the nodes that need it.

:func:`run_ncc` wires the passes over one :class:`~geodeform.offsets._ncc_field.NodeField`:

1. the first match of every node (sparse-then-dense search and refinement);
2. consistency: nodes that failed or disagree with their neighbours are refined again from the
   neighbourhood median (then searched ± 2 px around it), isolated ones become ``OUTLIER``;
3. discontinuities: the two-motion fit (and optionally robust fits or shifted chips) at steps;
4. nested chips: imprecise or failed nodes measured again with 2×, 4× larger chips; then the
   consistency test again, its rejects measured again by nested chips from their neighbours;
5. contaminated chips: chips with foreign pixels re-measured robustly, or rejected;
6. the strain-bias correction and the adaptive local-plane smoothing.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from geodeform.offsets import _post
from geodeform.offsets._job import MatchJob
from geodeform.offsets._layout import (
    CENTRE_SCORE,
    H_INV,
    LOW_CORRELATION,
    MASKED,
    NOT_CONVERGED,
    OUTLIER,
    SEARCH_EDGE,
    SIGMA,
    SIGMA_CALIBRATION,
    TEXTURELESS,
    nan_to,
)
from geodeform.offsets._ncc_field import NodeField, measure
from geodeform.offsets._ncc_steps import (
    FIRST_ORDER,
    SECOND_ORDER,
    robust_discontinuities,
    shiftable_windows,
    two_motions,
)
from geodeform.offsets._noise import interpolation_error
from geodeform.offsets._types import MatcherOutput
from geodeform.offsets.ncc import NccOptions

__all__ = ["border_chips", "run_ncc"]

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
ProgressCallback = Callable[[int, int], None]

# ZNCC of a chip above which it cannot be dominated by foreign pixels (see :func:`_contaminated`); clean
# chips reach it only on low-noise pairs (about 0.98 at 20 dB, 0.998 at 30 dB)
WHOLE_MATCH = 0.99
# the smoothing's "-split" models: opposite half-windows whose slopes differ by more than this many σ
# hold a change of gradient (docs/benchmarks.md, "A smoothing that does not fit across the margin")
KINK_SIGMA = 3.0


def run_ncc(job: MatchJob, opts: NccOptions, progress: ProgressCallback | None) -> MatcherOutput:
    """Run the ``ncc`` matcher on ``job`` (see the module documentation for the passes).

    Returns
    -------
    MatcherOutput
        Offsets (px), ZNCC quality, reason codes and the predicted 1-σ vector error (px; that of the
        smoothing's fit when ``opts.smoothing`` > 0, and then each node's own chip's offsets and error
        before the smoothing in ``unsmoothed``).
    """
    if opts.sparse and opts.subpixel == "lk":
        # strips hold the lattice nodes the first pass predicts their edge rows' starts from
        job = dataclasses.replace(job, halo_rows=int(opts.sparse_stride) + 1)
    field = measure(job, opts, progress=progress)
    lk_passes = opts.subpixel == "lk"  # the passes below need the refinement's outputs
    if lk_passes and opts.consistency:
        _consistency(job, opts, field)
    steps = None
    if lk_passes and opts.two_motion:
        steps = two_motions(job, opts, field).beside
    if lk_passes and opts.robust_steps:
        # each round gives the nodes nearer the step cleaner one-sided starts from their neighbours
        for _ in range(3):
            robust_discontinuities(job, opts, field)
    if lk_passes and opts.shiftable:
        shiftable_windows(job, opts, field)
    if lk_passes and opts.grow_chips and opts.max_chip_factor > 1:
        _nested_chips(job, opts, field, steps)
        if opts.consistency:
            _late_outliers(job, opts, field, steps)
    if lk_passes and opts.robust_ratio > 0:
        _contaminated(job, opts, field)
    return _finish(job, opts, field)


def _finish(job: MatchJob, opts: NccOptions, field: NodeField) -> MatcherOutput:
    """The strain-bias correction and the adaptive smoothing (``lk`` passes only), then the output."""
    dy, dx, ok = field.dy, field.dx, field.ok
    lk_passes = opts.subpixel == "lk"
    if lk_passes and opts.strain_correction:
        by, bx = _post.strain_bias(dy, dx, field.lk, job.step)
        dy = np.where(ok, dy - by, dy)
        dx = np.where(ok, dx - bx, dx)
    sigma = np.where(ok, field.sigma, np.nan)
    own: tuple[F64, F64, F64] | None = None
    if lk_passes and opts.smoothing > 0:
        own = (dy, dx, sigma)  # each node's own chip's value and error, before the smoothing
        window: dict[str, Any] = {
            "step": job.step,
            "chip": job.chip,
            "radii": tuple(range(1, opts.smoothing + 1)),
            "gamma": opts.smoothing_gamma,
            "max_chi2": opts.smoothing_chi2,
        }
        masked = (np.where(ok, dy, np.nan), np.where(ok, dx, np.nan), sigma)
        model = opts.smoothing_model
        if model == "plane":
            dy, dx, sigma, _ = _post.adaptive_plane(*masked, **window)
        else:
            dy, dx, sigma, _ = _post.adaptive_poly(
                *masked,
                **window,
                degree=2 if model.startswith("quadratic") else 1,
                sided=not model.endswith(("plane", "quadratic")),
                kink=KINK_SIGMA if model.endswith("split") else 0.0,
            )
    unsmoothed = None
    if lk_passes:
        factor = _noise_factor(field)
        sigma = np.hypot(sigma * factor, _interpolation(field, dy, dx))
        if own is not None:
            own_error = np.hypot(own[2] * factor, _interpolation(field, own[0], own[1]))
            unsmoothed = (own[0], own[1], own_error)
    return MatcherOutput(
        dy, dx, field.q, field.reason, sigma, field.chip[..., 0], field.chip[..., 1], unsmoothed
    )


def _noise_factor(field: NodeField) -> F64:
    """Per node, the factor that turns the kernels' predicted error (``SIGMA``, which the passes compare
    and weight by) into the reported one: the correlated-noise error of the node's base chip over its
    ``SIGMA`` (:func:`geodeform.offsets._noise.noise_factor`). The passes that replace a node's answer
    (nested, two-motion, robust chips) keep their own ``SIGMA`` scaled by the base chip's factor; a node
    whose base chip has no refinement takes the median factor of the pair (1 when none has one)."""
    f = field.noise_factor
    if f is None or not np.isfinite(f).any():
        return np.ones(field.dy.shape)
    return np.where(np.isfinite(f), f, float(np.nanmedian(f)))


def _interpolation(field: NodeField, dy: F64, dx: F64) -> F64:
    """The image model's interpolation error at each node's offset (px; 0 without roughness, the
    pair's median roughness where the base chip has none)."""
    r = field.roughness
    if r is None or not np.isfinite(r).any():
        return np.zeros(field.dy.shape)
    r = np.where(np.isfinite(r), r, float(np.nanmedian(r)))
    return interpolation_error(r, np.nan_to_num(dy), np.nan_to_num(dx))


def _consistency(job: MatchJob, opts: NccOptions, field: NodeField) -> None:
    """Re-measure nodes that failed in a way a better start can fix, or that disagree with their
    neighbours by more than ``opts.consistency_px``: refined again from the neighbourhood median, then
    searched ± 2 px around it; the better-correlated answer wins (a true discontinuity keeps its own,
    better-correlated value). Then autoRIFT's neighbourhood-consistency test: a node agreeing with less
    than a quarter of its (at least 6) valid neighbours in a 5 × 5 window is an ``OUTLIER``."""
    retry = (LOW_CORRELATION, SEARCH_EDGE, NOT_CONVERGED)
    for radius in (None, 2):
        my, mx, _count = _post.neighbour_median(field.dy, field.dx)
        with np.errstate(invalid="ignore"):
            off = np.hypot(field.dy - my, field.dx - mx) > opts.consistency_px
        cand = np.isfinite(my) & (off | np.isin(field.reason, retry))
        if not cand.any():
            break
        rows = np.nonzero(cand.any(axis=1))[0]
        r2 = measure(job, opts, rows=rows, select=cand, start=(my, mx), radius=radius)
        field.take(r2, cand & r2.ok & (~field.ok | (r2.q > field.q)))
    field.reject(_disagreeing(opts, field), OUTLIER)


def _disagreeing(opts: NccOptions, field: NodeField) -> Mask:
    """autoRIFT's neighbourhood-consistency test: valid nodes agreeing (within ``opts.consistency_px``)
    with less than a quarter of their valid neighbours in a 5 × 5 window, judged only where at least 6
    are valid."""
    frac, count = _post.neighbour_agreement(field.dy, field.dx, radius=2, tol=opts.consistency_px)
    return field.ok & (count >= 6) & (frac < 0.25)


def _nested_chips(
    job: MatchJob, opts: NccOptions, field: NodeField, keep: Mask | None = None, *, only: Mask | None = None
) -> None:
    """Re-measure imprecise or failed nodes with chips 2×, 4×… larger (autoRIFT's nested chip sizes).

    A node is redone when its predicted error exceeds ``opts.target_sigma`` (2× chips only) or its match
    failed for lack of signal; the larger chip's answer is kept when it is valid and its predicted error
    is below twice the smaller chip's. Valid nodes in ``keep`` (next to a step found by the two-motion
    fit, which a larger chip would blend) are left alone; with ``only``, nodes outside it too. Chips
    start from the neighbourhood median (else the node's own value; nodes with neither are searched in
    full, one pyramid level finer). With ``opts.coarse_nested`` they are refined on the pyramid level
    where they have the base chip's size.
    Near the image border a chip whose displaced secondary window would leave the image is narrowed
    (:func:`border_chips`); beyond 2× a chip crossing the border is moved inside it. Updates in place.
    """
    factor = 2
    coarse = opts.coarse_nested
    weak = (LOW_CORRELATION, NOT_CONVERGED, TEXTURELESS, SEARCH_EDGE, OUTLIER)
    while factor <= opts.max_chip_factor:
        chip = (_nested(job.chip[0], factor), _nested(job.chip[1], factor))
        sigma = field.sigma
        # beyond 2× only failed nodes are redone: a larger chip trades resolution for a valid answer
        need = (field.ok & (sigma > opts.target_sigma) & (factor == 2)) | np.isin(field.reason, weak)
        if keep is not None:
            need &= ~(keep & field.ok)
        if only is not None:
            need &= only
        if factor > 2:
            # a failed chip with foreign pixels (a cloud edge) would reach clear ground farther away with a
            # larger chip and report its motion: only chips that failed for lack of signal grow again
            need &= ~_foreign(field, opts)
        if not need.any():
            return
        if coarse == "auto":
            n_valid = max(int(np.count_nonzero(field.ok)), 1)
            coarse = bool(np.count_nonzero(need) > opts.coarse_nested_fraction * n_valid)
        # start from the neighbourhood median: at low signal-to-noise the node's own value may sit in
        # a wrong correlation basin that the larger chip would keep
        my, mx, _ = _post.neighbour_median(field.dy, field.dx)
        sy = np.where(np.isfinite(my), my, field.dy)
        sx = np.where(np.isfinite(mx), mx, field.dx)
        has_start = need & np.isfinite(sy)
        # the larger chip is refined on the pyramid level where it has the size of the base chip
        level = factor.bit_length() - 1 if coarse else 0
        zero = np.zeros_like(field.dy)
        passes = (
            (has_start, (sy, sx), None, level),
            # nodes without a start are searched from scratch, one level finer than the others
            (
                need & ~has_start & (field.reason != MASKED),
                (zero, zero),
                int(job.search.max()),
                min(level, factor.bit_length() - 2),
            ),
        )
        results: list[tuple[Mask, NodeField]] = []
        for nodes, start, radius, on_level in passes:
            if not nodes.any():
                continue
            for shape, sel in border_chips(job, chip, nodes, start, radius or 0):
                rows = np.nonzero(sel.any(axis=1))[0]
                r = measure(
                    job,
                    opts,
                    rows=rows,
                    select=sel,
                    start=start,
                    radius=radius,
                    chip=shape,
                    level=on_level,
                    clamp=factor > 2,
                )
                results.append((sel, r))
        for sel, r in results:
            # the larger chip wins unless it is much less precise: its predicted error says how precise
            # it is, not how likely the smaller chip sat in a wrong correlation basin, which is what a
            # larger chip mostly cures
            field.take(r, sel & r.ok & (~field.ok | (r.sigma < 2.0 * sigma)))
        factor *= 2


def _late_outliers(job: MatchJob, opts: NccOptions, field: NodeField, keep: Mask | None) -> None:
    """Test the field again after the nested chips, and re-measure the nodes it rejects.

    The first consistency test (:func:`_consistency`) cannot judge a node whose neighbours mostly failed
    the first match (fewer than 6 valid in its 5 × 5 window): on a low-texture patch at low
    signal-to-noise, a node whose base chip passed where its neighbours' failed may sit on a wrong
    correlation peak, pixels away. Once the nested chips have measured its neighbours, the same test
    (agreeing with less than a quarter of at least 6 valid neighbours within ``opts.consistency_px``)
    marks it an ``OUTLIER``, and :func:`_nested_chips` measures it again from its neighbourhood median;
    it stays ``OUTLIER`` (NaN) when no chip size gives a valid answer. Updates in place.
    """
    bad = _disagreeing(opts, field)
    if not bad.any():
        return
    field.reject(bad, OUTLIER)
    _nested_chips(job, opts, field, keep, only=bad)


def _nested(size: int, factor: int) -> int:
    """A chip size ``factor`` × ``size`` with the parity of ``size`` (the node stays at its centre)."""
    return size * factor - (size % 2) * (factor - 1)


def border_chips(
    job: MatchJob, chip: tuple[int, int], select: Mask, start: tuple[Any, Any], radius: int
) -> Iterator[tuple[tuple[int, int], Mask]]:
    """Split the nodes in ``select`` by the nested chip shape they use, yielding (shape, node mask) pairs.

    The shape is ``chip``, except near the image border where the chip fits in the reference but its
    secondary window (the chip displaced by ``start``, plus ``radius`` px of search, with the spline's
    taps) would cross the refinement's padding of the secondary, where it would fail as ``OUTSIDE``:
    the chip is then narrowed, still centred on the node (same parity as the base chip), to the largest
    size whose window fits, if that is at least the base chip.
    """
    ii, jj = np.nonzero(select)
    key = np.zeros(ii.size, np.int64)  # the shape (rows, cols) as rows * (chip[1] + 1) + cols
    for axis, (origins, idx) in enumerate(((job.rs, ii), (job.cs, jj))):
        base, size, n = job.chip[axis], chip[axis], job.ref.shape[axis]
        centre = origins[idx] + (base - 1) / 2.0
        d = nan_to(start[axis][ii, jj])
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


def _residual_per_pixel(lk: F64) -> F64:
    """Residual variance per pixel of every refined chip, from its predicted error and inverse normal
    matrix (NaN where no refinement ran). Noise is stationary, so clean chips share one value."""
    with np.errstate(invalid="ignore", divide="ignore"):
        resid: F64 = (lk[..., SIGMA] / SIGMA_CALIBRATION) ** 2 / (lk[..., H_INV] + lk[..., H_INV + 2])
    return resid


def _foreign(field: NodeField, opts: NccOptions) -> Mask:
    """Chips whose residual variance per pixel exceeds ``opts.robust_ratio`` × the valid chips' median:
    something in them matches nothing (a cloud edge, a shadow, a changed patch)."""
    resid = _residual_per_pixel(field.lk)
    good = field.ok & np.isfinite(resid)
    if opts.robust_ratio <= 0 or not good.any():
        return np.zeros(field.reason.shape, bool)
    # (the images are normalised to unit variance: a floor keeps noise-free pairs out of the test)
    with np.errstate(invalid="ignore"):
        foreign: Mask = resid > opts.robust_ratio * max(float(np.median(resid[good])), 1e-4)
    return foreign


def _contaminated(job: MatchJob, opts: NccOptions, field: NodeField) -> None:
    """Re-measure chips partly covered by something that does not match (a cloud edge, a shadow, a
    changed surface) with a robust fit, keeping the motion of the node's own pixels.

    Image noise is stationary, so clean chips leave the same residual variance per pixel whatever their
    texture; a foreign patch raises it. Nodes whose residual variance exceeds ``opts.robust_ratio`` × the
    median are refined again by Tukey-weighted Gauss–Newton started from their value. When at least half
    the node's central pixels follow the robust motion and it correlates above ``opts.min_correlation``,
    it replaces the blend (without strain correction); when a quarter or less do, or no robust motion
    correlates, the motion measured is that of other pixels of the chip and the node becomes
    ``LOW_CORRELATION`` — unless its plain match correlates at ``WHOLE_MATCH`` or more, which foreign
    pixels covering a visible part of its texture would prevent (on clean, high-contrast chips of a
    low-noise pair the residual is heavy-tailed interpolation error, not foreign pixels). Updates in place.
    """
    cand = field.ok & _foreign(field, opts)
    if not cand.any():
        return
    rows = np.nonzero(cand.any(axis=1))[0]
    r = measure(job, opts, rows=rows, select=cand, start=(field.dy, field.dx), robust=True)
    score = nan_to(r.lk[..., CENTRE_SCORE])
    take = cand & r.ok & (score >= 0.5) & (r.q >= opts.min_correlation)
    field.take(r, take, lk=False)
    # the robust estimate is that of the node's pixels: no strain correction (H⁻¹ zeroed too)
    field.lk[take, FIRST_ORDER] = 0.0
    field.lk[take, H_INV : H_INV + 3] = 0.0
    field.lk[take, SECOND_ORDER] = 0.0
    field.lk[take, SIGMA] = r.sigma[take]
    foreign = (
        cand & ~take & (~r.ok | (score < 0.25) | (r.q < opts.min_correlation)) & ~(field.q >= WHOLE_MATCH)
    )
    field.reject(foreign, LOW_CORRELATION)
