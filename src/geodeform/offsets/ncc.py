"""``ncc`` matcher: coarse-to-fine masked ZNCC search, then inverse-compositional sub-pixel refinement.

In the spirit of autoRIFT (normalised cross-correlation, coarse search that narrows the fine one) with two
changes that remove the usual pixel-locking bias of 3×3 peak fits:

1. the integer search runs on a pyramid of block-averaged images (2× per level), each finer level searching
   ±1 px around the doubled coarser peak, so large search ranges cost little;
2. the sub-pixel offset is found by Gauss–Newton (inverse-compositional Lucas–Kanade) on the chip, with the
   secondary interpolated by cubic B-splines (exact interpolation) and gain/offset normalised at every
   iteration, which is insensitive to linear radiometric change.

Every sum is masked: pixels flagged invalid (no-data, fill values, user masks) never enter a correlation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.offsets import _kernels as K
from geodeform.offsets._buffers import buffer
from geodeform.offsets._filters import (
    bspline_coefficients,
    bspline_model,
    gaussian_kernel,
    separable_fir,
    spline_gradients,
)

__all__ = ["NccOptions", "ncc_strip"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class NccOptions:
    """Options of the ``ncc`` matcher (all keyword arguments of ``match(..., method="ncc")``).

    Attributes
    ----------
    min_correlation : float
        Nodes whose final ZNCC is below this are NaN (``LOW_CORRELATION``). Default 0.3.
    min_valid_fraction : float
        Minimum fraction of valid pixels in a chip (``MASKED`` otherwise). Default 0.5.
    min_texture : float
        Minimum chip standard deviation as a fraction of the image's robust standard deviation
        (``TEXTURELESS`` otherwise). Default 0.02. Chips refined from a start without a search (nodes
        predicted from their neighbours, re-measurements) are tested by the refinement kernel on the
        samples it uses: the B-spline model of the chip and its validity eroded by one pixel.
    subpixel : str
        ``"lk"`` (iterative Gauss–Newton, default) or ``"parabola"`` (3×3 quadratic fit on the ZNCC
        surface, fast and biased, for comparison).
    max_iter : int
        Iterations of the sub-pixel refinement. Default 12.
    tol : float
        Convergence threshold on the last update, px. With the accelerated steps the error left after an
        update below 0.03 px is a few thousandths of a pixel: pixel locking stays at 0.003 px from 0.02
        to 0.05 and the peerbench RMSEs change by less than 0.004 px, for 10-20 % fewer iterations than
        0.02. Looser values let the answer depend on the start by up to ~0.02 px (strips against the
        whole image: 0.005 px at 0.03, 0.02 px at 0.04). Default 0.03.
    window : str
        Weighting inside the chip for the refinement: ``"gaussian"`` (σ = chip/4, default) or
        ``"uniform"``. The Gaussian weights the pixels near the node most, which halves the bias of a
        translation estimate where the field varies inside the chip (glacier margins: median error
        0.044 → 0.031 px on the peerbench glacier at 60 dB) for some noise, which the smoothing below
        takes back.
    strain_correction : bool
        Remove the first-order bias of a translation estimate where the field has a gradient inside a chip
        (glacier margins), using the gradient measured between neighbouring nodes. Default True.
    consistency : bool
        Re-search nodes that disagree with their neighbours (or failed) around the neighbourhood median and
        keep the better-correlated answer; then reject remaining inconsistent nodes. Default True.
    consistency_px : float
        Disagreement (px) above which a node is re-searched / rejected. Default 1.0.
    smooth : float
        σ (px) of a Gaussian applied to both images before matching (0 = none). Removes the frequencies
        near Nyquist where interpolation is inexact: pixel locking drops from ±0.01 to ±0.002 px on
        Landsat texture, at no cost in precision (those frequencies are mostly noise). Used with
        ``interpolation="exact"`` only. Default 0.7.
    target_sigma : float
        Predicted 1-σ error (px) above which a node is measured again with a 2× larger chip. Default
        0.16 (lower values help very noisy pairs but add strain and fault blending from the larger chips).
    max_chip_factor : int
        Largest chip enlargement for imprecise or failed nodes (1 disables nested chips; 2, 4 …).
        Beyond 2× only nodes that failed for lack of signal are redone (not those whose chip holds
        foreign pixels, see ``robust_ratio``: a larger chip would reach clear ground beyond a cloud edge
        and report its motion), and their chips are moved inside the image where they would cross its
        border. Default 4: on the 10 dB peerbench pair the 4× chips measure the last 19 nodes of a
        flat, noise-dominated corner (coverage 99.5 → 100 %; RMSE 0.071 → 0.069 px).
    smoothing : int
        Largest window radius, in nodes, of the adaptive local-plane smoothing applied last
        (:func:`geodeform.offsets._post.adaptive_plane`): each node's offset becomes the error-weighted
        plane fit through its (2r+1)² neighbourhood for the largest r ≤ ``smoothing`` that the
        intersection-of-confidence-intervals rule and a χ² test accept; steps, outliers and curvature
        stop the growth, so they keep their own values. The predicted error (``OffsetField.error``)
        is that of the fit. On the noisiest peerbench case (10 dB) it cuts the median error from 0.071
        to 0.023 px. 0 disables it (every node then keeps its own chip's measurement).
    smoothing_gamma : float
        Half-width, in σ, of the confidence intervals of the smoothing's window choice. Default 2.
    robust_ratio : float
        Chips whose residual variance per pixel exceeds this multiple of the pair's median (a cloud
        edge, a shadow, a changed patch inside the chip) are re-measured with a robust fit that keeps the
        motion of the node's own pixels, or rejected when those pixels follow no motion
        (``LOW_CORRELATION``; not a chip whose plain match correlates at 0.99 or more, which foreign
        pixels cannot dominate). Next to a synthetic cloud it cuts the largest error of the clear nodes
        from 1.1 to 0.05 px. Default 10 (lower values also catch strained glacier chips, which the
        robust fit then measures worse); 0 disables it.
    two_motion : bool
        Re-measure nodes at displacement discontinuities (faults, calving fronts, landslide scarps) with
        a two-motion model: a straight boundary splits the chip (1.5× larger) into two rigidly moving
        sides, found by alternating the boundary fit with masked Gauss–Newton on each side; the node takes
        the motion of its own side instead of a blend of both. A fit is kept only where it is clearly a
        step (see ``two_motion_ratio``, the sharpness and the neighbour tests of
        :func:`geodeform.offsets.driver._two_motion_accept`), so smooth shear is left alone (peerbench
        glacier and landslide cases unchanged). On the peerbench fault case (2 px strike-slip step) the
        RMSE within two chips of the fault drops from 0.31 to 0.11 px, the case RMSE from 0.125 to
        0.054 px, for ~15 % more time there. Default True.
    two_motion_px : float
        Departure from linearity between opposite neighbours (px, strain-corrected field) that selects a
        node for the two-motion fit, if also above 4× the node's predicted error (neighbours of accepted
        nodes are fitted too). Default 0.5.
    two_motion_ratio : float
        Largest residual energy of the two-motion fit relative to the one-motion fit for it to be kept.
        Default 0.6.
    robust_steps : bool
        Re-measure nodes next to displacement discontinuities (faults, calving fronts, landslide scarps)
        with a robust Tukey fit started from each neighbour's value, keeping the motion of the node's own
        pixels instead of a blend of both sides. On the peerbench fault case it cuts the error 4-16 px
        from the fault from 0.34-0.71 to 0.04-0.07 px (median) but costs ~0.005 px RMSE on a glacier
        margin. Default False (``two_motion`` handles steps better and is on by default).
    shiftable : bool
        Re-measure nodes next to displacement discontinuities with chips shifted off-centre (8
        directions) and keep the most precise (shiftable windows). Cuts the inlier error next to a fault
        by half but moves nodes on steep smooth gradients (glacier margins). Default False.
    step_px : float
        Departure from linearity between opposite neighbours (px) that marks a discontinuity. Default 0.5.
    coarse_nested : bool or "auto"
        Refine the nested (larger) chips on the block-averaged pyramid level where they have the base
        chip's size: 4× fewer pixels per doubling. ``"auto"`` (default) does so when more than
        ``coarse_nested_fraction`` of the valid nodes need a larger chip, which happens on noisy pairs,
        where the fine level's extra high frequencies are mostly noise: on the 10 dB peerbench pair
        (27 % of the nodes nested) it cuts the refinement work by a fifth for the same accuracy (RMSE
        0.074 instead of 0.071 px, median 0.023 px), while pairs that nest a few nodes keep the fine
        level (coarse nesting there costs ~10 % of RMSE, e.g. landslide 0.032 instead of 0.029 px).
        The coarse chip's offset from the node and its moments are converted so that the strain
        correction still applies. ``True``/``False`` force the coarse/fine level.
    coarse_nested_fraction : float
        Share of the valid nodes above which ``coarse_nested="auto"`` nests on the coarse level.
        Default 0.1.
    sparse : bool
        Search every ``sparse_stride``-th node in each direction and start the others from the average of
        their known neighbours, skipping their integer search (autoRIFT's sparse-then-dense idea), one
        halving of the stride at a time; nodes without agreeing neighbours (spread > 0.5 px) are searched
        in full. Down to every other node these estimates only serve as starts: they are refined on
        pyramid level 1 (a quarter of the pixels) and cleaned against the median of their 3 × 3 lattice
        neighbourhood; every node is then refined at full resolution in one pass, in grid order (peerbench
        10 dB pair: the sparse levels' refinements take ~5 ms instead of ~25 ms, the full-resolution pass
        ~9 ms more for its ~1000 extra nodes; RMSE over six noise seeds 0.076 px, as before). Default True.
    sparse_stride : int
        Spacing, in nodes, of the searched nodes (a power of 2). Default 4: 1/16 of the grid is searched
        (integer-search time on the peerbench pairs: 4-5 ms, against 29 ms when every node is searched).
    interpolation : str
        ``"approx"`` (default): both images modelled as cubic B-splines with the pixels as coefficients
        (symmetric, FIR-only, fastest); ``"exact"``: interpolating B-splines after a Gaussian of σ =
        ``smooth``.
    """

    min_correlation: float = 0.3
    min_valid_fraction: float = 0.5
    min_texture: float = 0.02
    subpixel: str = "lk"
    max_iter: int = 12
    tol: float = 0.03
    window: str = "gaussian"
    strain_correction: bool = True
    consistency: bool = True
    consistency_px: float = 1.0
    smooth: float = 0.7
    interpolation: str = "approx"
    sparse: bool = True
    sparse_stride: int = 4
    shiftable: bool = False
    robust_steps: bool = False
    two_motion: bool = True
    two_motion_px: float = 0.5
    two_motion_ratio: float = 0.6
    step_px: float = 0.5
    target_sigma: float = 0.16
    max_chip_factor: int = 4
    coarse_nested: bool | str = "auto"
    coarse_nested_fraction: float = 0.1
    smoothing: int = 3
    smoothing_gamma: float = 2.0
    robust_ratio: float = 10.0

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` on values out of range."""
        checks = {
            "min_correlation": -1.0 <= self.min_correlation <= 1.0,
            "min_valid_fraction": 0.0 < self.min_valid_fraction <= 1.0,
            "min_texture": self.min_texture >= 0.0,
            "subpixel": self.subpixel in ("lk", "parabola"),
            "max_iter": int(self.max_iter) >= 1,
            "tol": self.tol > 0.0,
            "window": self.window in ("uniform", "gaussian"),
            "consistency_px": self.consistency_px > 0.0,
            "target_sigma": self.target_sigma > 0.0,
            "step_px": self.step_px > 0.0,
            "two_motion_px": self.two_motion_px > 0.0,
            "two_motion_ratio": 0.0 < self.two_motion_ratio <= 1.0,
            "max_chip_factor": int(self.max_chip_factor) >= 1,
            "sparse_stride": int(self.sparse_stride) >= 1
            and int(self.sparse_stride) & (int(self.sparse_stride) - 1) == 0,
            "coarse_nested": self.coarse_nested in (True, False, "auto"),
            "coarse_nested_fraction": 0.0 <= self.coarse_nested_fraction <= 1.0,
            "smoothing": isinstance(self.smoothing, (int, np.integer)) and 0 <= self.smoothing <= 10,
            "smoothing_gamma": self.smoothing_gamma > 0.0,
            "robust_ratio": self.robust_ratio >= 0.0,
            "smooth": 0.0 <= self.smooth <= 10.0,
            "interpolation": self.interpolation in ("approx", "exact"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InvalidInputError(
                f"invalid ncc option(s) {bad}: got "
                + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
                + "; see geodeform.offsets.ncc.NccOptions for the allowed values"
            )


def gaussian_nan(img: F32, sigma: float) -> F32:
    """Gaussian blur that ignores NaN pixels (normalised convolution); NaN stays NaN."""
    if sigma <= 0:
        return img
    k = gaussian_kernel(sigma)
    valid = np.isfinite(img)
    if valid.all():
        return separable_fir(img, k, k)
    num = separable_fir(np.where(valid, img, 0.0).astype(np.float32), k, k)
    den = separable_fir(valid.astype(np.float32), k, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, num / den, np.nan).astype(np.float32)


# Predicted errors of pyramid-level refinements relative to full-resolution ones: measured/predicted
# error ratios of 64 px chips refined on level 1 and on level 0 (peerbench const 10 and 30 dB and
# landslide pairs: 0.50-0.54 against 0.55-0.66) put the level-1 formula ~15 % high
COARSE_SIGMA = 0.85


def _chip_at_level(r0: I64, h: int, level: int) -> tuple[I64, int]:
    s = 1 << level
    hl = max(h >> level, 4)
    centre = (r0 + (h - 1) / 2.0 + 0.5) / s - 0.5
    return np.rint(centre - (hl - 1) / 2.0).astype(np.int64), hl


def _top_level(search: int, h: int, w: int) -> int:
    level = 0
    while -(-search // (1 << level)) > 1 and (min(h, w) >> (level + 1)) >= 8:
        level += 1
    return level


@functools.lru_cache(maxsize=32)
def _window(h: int, w: int, kind: str) -> npt.NDArray[np.float32]:
    """The chip weights (read-only, cached: every pass asks for the same few)."""
    if kind == "gaussian":
        yy = (np.arange(h) - (h - 1) / 2) / (h / 4)
        xx = (np.arange(w) - (w - 1) / 2) / (w / 4)
        out = np.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2)).astype(np.float32)
    else:
        out = np.ones((h, w), np.float32)
    out.flags.writeable = False
    return out


@dataclass
class StripResult:
    """Per-node results of one strip (flat arrays over the nodes given)."""

    dy: npt.NDArray[np.float64]
    dx: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float64]
    reason: npt.NDArray[np.uint8]
    lk: npt.NDArray[np.float64]  # (n, NOUT) raw refinement outputs (moments for the strain correction)


_B3 = np.array([1 / 6, 4 / 6, 1 / 6], np.float32)
_D = np.array([-0.5, 0.0, 0.5], np.float32)


def _erode(valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return valid if valid.all() else ndimage.binary_erosion(valid, np.ones((3, 3), bool), border_value=1)


def image_stats(img: F32) -> tuple[float, float]:
    """Mean and standard deviation of the finite pixels of ``img`` (strided sample)."""
    sample = img[::3, ::3]
    sample = sample[np.isfinite(sample)]
    if sample.size < 16:
        sample = img[np.isfinite(img)]
    if sample.size == 0:
        return 0.0, 1.0
    std = float(sample.std())
    return float(sample.mean()), std if std > 0 else 1.0


def _normalised(img: F32, valid: npt.NDArray[np.bool_], stats: tuple[float, float]) -> F32:
    """(img - mean) / std with the image's global statistics, in place; non-finite pixels set to 0 and
    False in ``valid``."""
    mean, std = stats
    K.normalise_valid(img, mean, 1.0 / std, valid)
    return img


class PreparedStrip:
    """A strip of both images made ready for matching (pyramids, B-spline data); reused across passes.

    With ``interpolation="approx"`` both images are modelled the same way, as cubic B-splines whose
    coefficients are the pixel values: the reference samples, its gradients and the secondary samples
    all come from one model, which is symmetric in the two images (no differential smoothing, hence low
    pixel locking) and needs only 3×3 FIR filters. ``"exact"`` uses interpolating B-splines after a
    Gaussian of σ = ``smooth``.
    """

    def __init__(
        self, ref: F32, sec: F32, opts: NccOptions, stats: tuple[tuple[float, float], tuple[float, float]]
    ) -> None:
        self.exact = opts.interpolation == "exact"
        if self.exact:
            ref = gaussian_nan(ref, opts.smooth)
            sec = gaussian_nan(sec, opts.smooth)
        rvalid = np.empty(ref.shape, bool)
        svalid = np.empty(sec.shape, bool)
        # normalise both to O(1) values: the correlation sums can then run in float32 without cancellation
        self.refs = [_normalised(ref, rvalid, stats[0])]
        self.secs = [_normalised(sec, svalid, stats[1])]
        self.rvs = [rvalid]
        self.svs = [svalid]
        self._spline: tuple[F32, npt.NDArray[np.bool_], F32, F32, F32, npt.NDArray[np.bool_]] | None = None
        self._coarse: dict[int, Any] = {}

    def level(self, k: int) -> tuple[F32, npt.NDArray[np.bool_], F32, npt.NDArray[np.bool_]]:
        """Pyramid level ``k`` (2**k block averages): (ref, ref_valid, sec, sec_valid)."""
        while len(self.refs) <= k:
            a, av = K.pyramid_down(self.refs[-1], self.rvs[-1])
            b, bv = K.pyramid_down(self.secs[-1], self.svs[-1])
            self.refs.append(a)
            self.rvs.append(av)
            self.secs.append(b)
            self.svs.append(bv)
        return self.refs[k], self.rvs[k], self.secs[k], self.svs[k]

    def spline(
        self, level: int = 0
    ) -> tuple[F32, npt.NDArray[np.bool_], F32, F32, F32, npt.NDArray[np.bool_]]:
        """(reference samples, their validity, d/drow, d/dcol, secondary coefficients, their validity)."""
        if level > 0:
            if level not in self._coarse:
                ref, rv, sec, sv = self.level(level)
                val, gy, gx = (np.empty(ref.shape, np.float32) for _ in range(3))
                bspline_model(ref, val, gy, gx)
                self._coarse[level] = _pad_spline(
                    (val, _erode(rv), gy, gx, sec, _erode(sv)), key=f"pad{level}"
                )
            return self._coarse[level]
        if self._spline is None:
            ref, rv, sec, sv = self.refs[0], self.rvs[0], self.secs[0], self.svs[0]
            if not sv.all():
                fill = float(sec[sv].mean()) if sv.any() else 0.0
                sec = np.where(sv, sec, fill).astype(np.float32)
            if self.exact:
                gy, gx = spline_gradients(ref)
                self._spline = _pad_spline((ref, rv, gy, gx, bspline_coefficients(sec), sv))
            else:
                if not rv.all():
                    fill = float(ref[rv].mean()) if rv.any() else 0.0
                    ref = np.where(rv, ref, fill).astype(np.float32)
                val, gy, gx = (buffer(f"model-{k}", ref.shape, np.float32) for k in "vyx")
                bspline_model(ref, val, gy, gx)
                self._spline = _pad_spline((val, _erode(rv), gy, gx, sec, _erode(sv)))
        return self._spline


def _pad_spline(parts: tuple[Any, ...], key: str = "pad") -> tuple[Any, ...]:
    """Give the secondary's coefficients and validity the invalid border the refinement kernel expects."""
    ref, rv, gy, gx, coef, sv = parts
    p = K.LK_PAD
    h, w = coef.shape
    cp = buffer(f"{key}-coef", (h + 2 * p, w + 2 * p), coef.dtype)
    cp[p : p + h, p : p + w] = coef
    cp[:p, p : p + w] = coef[:1]  # edge values: finite, never counted (their validity is False)
    cp[p + h :, p : p + w] = coef[-1:]
    cp[:, :p] = cp[:, p : p + 1]
    cp[:, p + w :] = cp[:, p + w - 1 : p + w]
    vp = buffer(f"{key}-valid", (h + 2 * p, w + 2 * p), np.bool_)
    vp[:] = False
    vp[p : p + h, p : p + w] = sv
    return ref, rv, gy, gx, cp, vp


def ncc_strip(
    prep: PreparedStrip,
    r0: I64,
    c0: I64,
    chip: tuple[int, int],
    search_r: I64,
    search_c: I64,
    opts: NccOptions,
    *,
    init_r: I64 | None = None,
    init_c: I64 | None = None,
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    level: int = 0,
) -> StripResult:
    """Match chips with origins (r0, c0) of the prepared reference strip inside the secondary strip.

    ``search_r``/``search_c`` are per-node ± search radii (px) around ``init`` (default 0). With
    ``start`` (sub-pixel predictions, e.g. from neighbouring nodes) the integer search is skipped and
    the refinement starts there; ``level`` > 0 then refines on the 2**level block-averaged images (a
    chip of ``chip``/2**level coarse pixels covering the same ground: nested chips at a quarter of the
    cost, which loses only frequencies that noise dominates when large chips are needed).
    """
    h, w = chip
    n = r0.size
    refine_level = level  # (``level`` is reused by the search loop below)
    reason = np.zeros(n, np.uint8)
    init_r = np.zeros(n, np.int64) if init_r is None else init_r
    init_c = np.zeros(n, np.int64) if init_c is None else init_c
    if start is not None:
        # no search: the refinement kernel tests the valid fraction and the texture of each chip itself,
        # in the pass over the chip it makes anyway
        todo = np.ones(n, bool)
        if level > 0:
            return _refine_coarse(
                prep,
                r0,
                c0,
                h,
                w,
                start,
                reason,
                todo,
                init_r,
                init_c,
                search_r,
                search_c,
                opts,
                level,
                chip_tests=True,
            )
        return _refine(
            prep,
            r0,
            c0,
            h,
            w,
            start[0],
            start[1],
            reason,
            todo,
            np.zeros(n, bool),
            init_r,
            init_c,
            search_r,
            search_c,
            opts,
            max_move=1.5,
            chip_tests=True,
        )
    ref0, rvalid, _, _ = prep.level(0)
    frac, std = K.chip_stats(ref0, rvalid, r0, c0, h, w)
    reason[frac < opts.min_valid_fraction] = K.MASKED
    reason[(reason == 0) & (std <= opts.min_texture)] = K.TEXTURELESS  # images are normalised to std 1
    todo = reason == 0
    top = _top_level(int(max(search_r.max(initial=0), search_c.max(initial=0))), h, w)
    # the LK refinement converges from a sub-pixel start, so the last integer search can stop at level 1
    last = 1 if (top >= 1 and opts.subpixel == "lk") else 0
    if refine_level > 0 and opts.subpixel == "lk" and top > refine_level:
        # a coarse refinement on level k converges from the level-(k+1) peak and its parabola vertex
        last = refine_level + 1
    cen_r = np.floor(init_r / (1 << top) + 0.5).astype(np.int64)
    cen_c = np.floor(init_c / (1 << top) + 0.5).astype(np.int64)
    rad_r = -(-search_r // (1 << top))
    rad_c = -(-search_c // (1 << top))
    edge_top = np.zeros(n, bool)
    score = np.full(n, -2.0)
    fr = fc = np.zeros(n)
    for level in range(top, last - 1, -1):
        r0l, hl = _chip_at_level(r0, h, level)
        c0l, wl = _chip_at_level(c0, w, level)
        if level < top:
            cen_r, cen_c = 2 * cen_r, 2 * cen_c
            rad_r = np.minimum(1, search_r)
            rad_c = np.minimum(1, search_c)
        rl, rvl, sl, svl = prep.level(level)
        cen_r, cen_c, score, edge, fr, fc = K.search_nodes(
            rl,
            rvl.view(np.uint8),
            sl,
            svl.view(np.uint8),
            r0l,
            c0l,
            hl,
            wl,
            cen_r,
            cen_c,
            rad_r.astype(np.int64),
            rad_c.astype(np.int64),
            opts.min_valid_fraction,
            todo,
            level == last and opts.subpixel == "lk",
        )
        if level == top:
            edge_top = edge
    reason[todo & (score <= -2.0)] = K.MASKED
    todo &= score > -2.0

    if opts.subpixel == "parabola":
        _, _, sec0, svalid = prep.level(0)
        return _parabola(
            ref0,
            rvalid,
            sec0,
            svalid,
            r0,
            c0,
            h,
            w,
            cen_r,
            cen_c,
            score,
            reason,
            todo,
            edge_top,
            init_r,
            init_c,
            search_r,
            search_c,
            opts,
        )

    scale = 1 << last
    if refine_level > 0:  # a nested chip refined where it has the base chip's size (see ``start``)
        start_rc = ((cen_r + fr) * scale, (cen_c + fc) * scale)
        res = _refine_coarse(
            prep,
            r0,
            c0,
            h,
            w,
            start_rc,
            reason,
            todo,
            init_r,
            init_c,
            search_r,
            search_c,
            opts,
            refine_level,
            max_move=3.0 if last > refine_level else 1.0,  # (as the full-resolution path: 1 + 2)
        )
        reason[edge_top & (reason == K.OK)] = K.SEARCH_EDGE
        res.dy[reason != K.OK] = np.nan
        res.dx[reason != K.OK] = np.nan
        return res
    return _refine(
        prep,
        r0,
        c0,
        h,
        w,
        (cen_r + fr) * scale,
        (cen_c + fc) * scale,
        reason,
        todo,
        edge_top,
        init_r,
        init_c,
        search_r,
        search_c,
        opts,
        max_move=1.0 + scale,
    )


def _refine_coarse(
    prep,
    r0,
    c0,
    h,
    w,
    start,
    reason,
    todo,
    init_r,
    init_c,
    search_r,
    search_c,
    opts,
    level,
    chip_tests=False,
    max_move=1.0,
):
    """Refinement on pyramid level ``level``; offsets and errors returned in full-resolution pixels."""
    s = 1 << level
    r0l, hl = _chip_at_level(r0, h, level)
    c0l, wl = _chip_at_level(c0, w, level)
    # the coarse chip's centre, in full-resolution pixels, may differ from the node's by up to half a
    # coarse pixel: the refinement measures the displacement there, which for a smooth field is the node's
    res = _refine(
        prep,
        r0l,
        c0l,
        hl,
        wl,
        np.asarray(start[0]) / s,
        np.asarray(start[1]) / s,
        reason,
        todo,
        np.zeros(r0.size, bool),
        np.asarray(init_r) / s,
        np.asarray(init_c) / s,
        np.asarray(search_r) / s,
        np.asarray(search_c) / s,
        opts,
        max_move=max_move,
        level=level,
        chip_tests=chip_tests,
    )
    res.dy *= s
    res.dx *= s
    # the coarse chip's centre lies up to half a coarse pixel from the node (offset dr, dc): the
    # refinement measures the motion there. Moments taken about the node instead of the chip's centre
    # (M + H δ, Q + M δᵀ + δ Mᵀ + H δ δᵀ) let the strain correction move the estimate to the node.
    dr = r0l + (hl - 1) / 2.0 - ((r0 + (h - 1) / 2.0 + 0.5) / s - 0.5)
    dc = c0l + (wl - 1) / 2.0 - ((c0 + (w - 1) / 2.0 + 0.5) / s - 0.5)
    _moments_about(res.lk, dr, dc)
    # then to full-resolution units: bias = s H_c⁻¹ (M_c G + ½ Q_c K_c) with K_c = s K
    res.lk[:, 5:11] *= s
    res.lk[:, 15:24] *= s * s
    res.lk[:, 14] *= s * COARSE_SIGMA
    return res


def _moments_about(lk: npt.NDArray[np.float64], dr: Any, dc: Any) -> None:
    """Shift the texture moments of ``lk`` (see :func:`lk_refine_node`) from the chip's centre to the
    point (dr, dc) px away from it, in place."""
    i00, i01, i11 = lk[:, 11], lk[:, 12], lk[:, 13]
    with np.errstate(invalid="ignore", divide="ignore"):
        det = i00 * i11 - i01 * i01
        h00, h01, h11 = i11 / det, -i01 / det, i00 / det  # H from its inverse
    m_r = [lk[:, 5].copy(), lk[:, 6].copy(), lk[:, 7].copy()]
    m_c = [lk[:, 8].copy(), lk[:, 9].copy(), lk[:, 10].copy()]
    hh = [h00, h01, h11]
    for k in range(3):  # g-products yy, yx, xx
        lk[:, 15 + 3 * k] += 2 * dr * m_r[k] + dr * dr * hh[k]
        lk[:, 16 + 3 * k] += dc * m_r[k] + dr * m_c[k] + dr * dc * hh[k]
        lk[:, 17 + 3 * k] += 2 * dc * m_c[k] + dc * dc * hh[k]
        lk[:, 5 + k] += dr * hh[k]
        lk[:, 8 + k] += dc * hh[k]


def _refine(
    prep,
    r0,
    c0,
    h,
    w,
    start_r,
    start_c,
    reason,
    todo,
    edge_top,
    init_r,
    init_c,
    search_r,
    search_c,
    opts,
    *,
    max_move,
    level=0,
    chip_tests=False,
):
    """Gauss–Newton refinement of the ``todo`` nodes from (start_r, start_c); with ``chip_tests`` the
    kernel also applies the valid-fraction and texture tests (for nodes that skipped the search)."""
    lk_ref, lk_rv, gy, gx, coef, lk_sv = prep.spline(level)
    lk = K.lk_nodes(
        lk_ref,
        gy,
        gx,
        lk_rv.view(np.uint8),
        coef,
        lk_sv.view(np.uint8),
        r0,
        c0,
        h,
        w,
        np.asarray(start_r, np.float64),
        np.asarray(start_c, np.float64),
        opts.max_iter,
        opts.tol,
        float(max_move),
        _window(h, w, opts.window),
        todo,
        opts.min_valid_fraction if chip_tests else 0.0,
        opts.min_texture if chip_tests else -1.0,
        4 * numba.get_num_threads(),
    )
    dy, dx, zn = lk[:, 0], lk[:, 1], lk[:, 2]
    lk_reason = np.nan_to_num(lk[:, 3], nan=0).astype(np.uint8)
    reason[todo] = lk_reason[todo]
    _finish(dy, dx, zn, reason, edge_top, init_r, init_c, search_r, search_c, opts)
    return StripResult(dy, dx, np.nan_to_num(zn), reason, lk)


def robust_strip(
    prep: PreparedStrip,
    r0: I64,
    c0: I64,
    chip: tuple[int, int],
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    opts: NccOptions,
) -> StripResult:
    """Robust refinement (see :func:`geodeform.offsets._kernels.lk_robust_node`) from ``start``."""
    lk_ref, lk_rv, gy, gx, coef, lk_sv = prep.spline()
    h, w = chip
    res = K.lk_robust_nodes(
        lk_ref,
        gy,
        gx,
        lk_rv.view(np.uint8),
        coef,
        lk_sv.view(np.uint8),
        r0,
        c0,
        h,
        w,
        np.asarray(start[0], np.float64),
        np.asarray(start[1], np.float64),
        12,
        max(4, min(h, w) // 4),
    )
    n = r0.size
    reason = np.nan_to_num(res[:, 3], nan=K.MASKED).astype(np.uint8)
    lk = np.full((n, K.NOUT), np.nan)
    lk[:, 4] = res[:, 4]
    lk[:, 14] = res[:, 5]
    dy, dx, zn = res[:, 0], res[:, 1], res[:, 2]
    _reject(dy, dx, zn, reason, opts)
    return StripResult(dy, dx, np.nan_to_num(zn), reason, lk)


def _finish(dy, dx, zn, reason, edge_top, init_r, init_c, search_r, search_c, opts):
    # a peak on the border of the search window explains any later failure: report that first
    reason[edge_top & (reason != K.MASKED) & (reason != K.TEXTURELESS)] = K.SEARCH_EDGE
    far = (np.abs(dy - init_r) > search_r + 0.5) | (np.abs(dx - init_c) > search_c + 0.5)
    reason[(reason == K.OK) & far] = K.SEARCH_EDGE
    _reject(dy, dx, zn, reason, opts)


def _reject(dy, dx, zn, reason, opts):
    """Flag weak correlations, then set every node that is not OK to NaN (in place)."""
    reason[(reason == K.OK) & ~(zn >= opts.min_correlation)] = K.LOW_CORRELATION
    bad = reason != K.OK
    dy[bad] = np.nan
    dx[bad] = np.nan


def _parabola(
    ref,
    rv,
    sec,
    sv,
    r0,
    c0,
    h,
    w,
    br,
    bc,
    score,
    reason,
    todo,
    edge_top,
    init_r,
    init_c,
    search_r,
    search_c,
    opts,
):
    """3×3 ZNCC surface around the integer peak, separable parabola vertex (the classic, biased fit)."""
    n = r0.size
    surf = np.full((n, 3, 3), np.nan)
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            _, _, s, _, _, _ = K.search_nodes(
                ref,
                rv.view(np.uint8),
                sec,
                sv.view(np.uint8),
                r0,
                c0,
                h,
                w,
                br + i,
                bc + j,
                np.zeros(n, np.int64),
                np.zeros(n, np.int64),
                opts.min_valid_fraction,
                todo,
                False,
            )
            surf[:, i + 1, j + 1] = np.where(s > -2, s, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        den_r = surf[:, 0, 1] - 2 * surf[:, 1, 1] + surf[:, 2, 1]
        den_c = surf[:, 1, 0] - 2 * surf[:, 1, 1] + surf[:, 1, 2]
        fr = np.clip(0.5 * (surf[:, 0, 1] - surf[:, 2, 1]) / den_r, -0.5, 0.5)
        fc = np.clip(0.5 * (surf[:, 1, 0] - surf[:, 1, 2]) / den_c, -0.5, 0.5)
    dy = br + np.nan_to_num(fr)
    dx = bc + np.nan_to_num(fc)
    zn = np.where(todo, score, np.nan)
    reason[todo & ~np.isfinite(surf).all(axis=(1, 2))] = K.SEARCH_EDGE
    _finish(dy, dx, zn, reason, edge_top, init_r, init_c, search_r, search_c, opts)
    return StripResult(dy, dx, np.nan_to_num(zn), reason, np.full((n, K.NOUT), np.nan))


def two_motion_strip(
    prep: PreparedStrip,
    r0: I64,
    c0: I64,
    chip: tuple[int, int],
    start: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    motion_a: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    motion_b: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    n_iter: int = 2,
    guard: float = 1.5,
    early: tuple[float, float] = (0.8, 0.5),
    reach: tuple[float, float] = (np.inf, np.inf),
) -> npt.NDArray[np.float64]:
    """Two-motion fit (see :func:`geodeform.offsets._kernels.two_motion_node`); returns (n, NTWO).

    Nodes whose coarse boundary lies farther from the centre than ``reach`` (row, col half extents, px,
    projected on the boundary normal) stop early and are not fitted (NaN ratio).
    """
    lk_ref, lk_rv, gy, gx, coef, lk_sv = prep.spline()
    h, w = chip

    def f64(a: Any) -> npt.NDArray[np.float64]:
        return np.ascontiguousarray(a, np.float64)

    return K.two_motion_nodes(
        lk_ref,
        gy,
        gx,
        lk_rv.view(np.uint8),
        coef,
        lk_sv.view(np.uint8),
        r0,
        c0,
        h,
        w,
        f64(start[0]),
        f64(start[1]),
        f64(motion_a[0]),
        f64(motion_a[1]),
        f64(motion_b[0]),
        f64(motion_b[1]),
        int(n_iter),
        float(guard),
        float(early[0]),
        float(early[1]),
        float(reach[0]),
        float(reach[1]),
    )
