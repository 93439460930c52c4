"""``ncc`` matcher: coarse-to-fine masked ZNCC search, then inverse-compositional sub-pixel refinement.

In the spirit of autoRIFT (normalised cross-correlation, a coarse search that narrows the fine one) with
two changes that remove the usual pixel-locking bias of 3×3 peak fits:

1. the integer search runs on a pyramid of block-averaged images (2× per level), each finer level searching
   ±1 px around the doubled coarser peak, so large search ranges cost little
   (:mod:`geodeform.offsets._search`);
2. the sub-pixel offset is found by Gauss–Newton (inverse-compositional Lucas–Kanade) on the chip, with the
   secondary interpolated by cubic B-splines and gain/offset normalised at every iteration, which is
   insensitive to linear radiometric change (:mod:`geodeform.offsets._refine`).

Then passes over the node field re-measure the nodes that need it
(:func:`geodeform.offsets._ncc_run.run_ncc`): neighbour-guided re-search of inconsistent nodes, a
two-motion fit at displacement discontinuities, larger (nested) chips for imprecise or failed nodes, a
robust fit for chips with foreign pixels, the strain-bias correction and an adaptive local-plane
smoothing. Every sum is masked: pixels flagged invalid (no-data, fill values, user masks) never enter a
correlation.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in pixels of the reference.

References
----------
Gardner, A. S. et al. (2018). Increased West Antarctic and unchanged East Antarctic ice discharge over the
last 7 years. The Cryosphere 12, 521-547 (autoRIFT).
Baker, S. and Matthews, I. (2004). Lucas-Kanade 20 years on: a unifying framework. IJCV 56(3), 221-255.
Katkovnik, V. (1999). A new method for varying adaptive bandwidth selection. IEEE TSP 47(9), 2567-2571
(the intersection-of-confidence-intervals rule of the smoothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from geodeform.errors import InvalidInputError

SmoothingModel = Literal[
    "plane", "plane-sided", "plane-split", "quadratic", "quadratic-sided", "quadratic-split"
]
SMOOTHING_MODELS: tuple[str, ...] = get_args(SmoothingModel)

__all__ = ["NccOptions"]


@dataclass(frozen=True)
class NccOptions:
    """Options of the ``ncc`` matcher (all keyword arguments of ``match(..., method="ncc")``).

    Design choices and the measurements behind the defaults are in the documentation's benchmarks page
    ("Design notes: why the matcher does what it does").

    Attributes
    ----------
    min_correlation : float
        Nodes whose final ZNCC is below this are NaN (``LOW_CORRELATION``). In [-1, 1]; default 0.3.
    min_valid_fraction : float
        Minimum fraction of valid pixels in a chip (``MASKED`` otherwise). In (0, 1]; default 0.5.
    min_texture : float
        Minimum chip standard deviation as a fraction of the image's standard deviation
        (``TEXTURELESS`` otherwise). Default 0.02. Chips refined from a start without a search (nodes
        predicted from their neighbours, re-measurements) are tested by the refinement kernel on the
        samples it uses: the B-spline model of the chip and its validity eroded by one pixel.
    subpixel : {"lk", "parabola"}
        ``"lk"``: iterative Gauss–Newton (default); ``"parabola"``: 3×3 quadratic fit on the ZNCC
        surface, fast and biased towards integer offsets (for comparison; the passes below need "lk").
    max_iter : int
        Largest number of Gauss–Newton iterations per chip. Default 12.
    tol : float
        Convergence threshold on the last Gauss–Newton step, px. Steps are accelerated (Aitken), and the
        error left after a step below 0.03 px is a few thousandths of a pixel; looser values let the
        answer depend on the start. Default 0.03.
    window : {"gaussian", "uniform"}
        Weighting of the chip's pixels in the refinement: a Gaussian of σ = chip/4 (default) weights the
        pixels near the node most, which reduces the bias of a translation estimate where the field
        varies inside the chip, for somewhat more noise; ``"uniform"`` weights all alike.
    strain_correction : bool
        Remove the first- and second-order bias of a translation estimate where the field has a gradient
        or curvature inside a chip (glacier margins), using the gradient and curvature measured between
        neighbouring nodes and the chip's texture moments. Default True.
    consistency : bool
        Re-search nodes that disagree with their neighbours (or failed) around the neighbourhood median and
        keep the better-correlated answer; then reject nodes that still disagree with most of their
        5 × 5 neighbourhood (``OUTLIER``, autoRIFT's NDC test). The test is made again after the nested
        chips (``max_chip_factor``), which give it the neighbours a node lacked, and the nodes it then
        rejects are measured again by nested chips from their neighbourhood median. Default True.
    consistency_px : float
        Disagreement (px) above which a node is re-searched / rejected. Default 1.0.
    smooth : float
        σ (px) of a Gaussian applied to both images before matching with ``interpolation="exact"``
        (0 = none): it removes the frequencies near Nyquist where interpolation is inexact, which lowers
        pixel locking. In [0, 10]; default 0.7.
    interpolation : {"approx", "exact"}
        ``"approx"`` (default): both images modelled as cubic B-splines with the pixels as coefficients
        (symmetric, FIR-only, fastest); ``"exact"``: interpolating B-splines after a Gaussian of σ =
        ``smooth``.
    sparse : bool
        Search every ``sparse_stride``-th node in each direction and start the others from the average of
        their known neighbours, skipping their integer search (autoRIFT's sparse-then-dense idea), one
        halving of the stride at a time; nodes without agreeing neighbours (spread > 0.5 px) are searched
        in full. Down to every other node these estimates only serve as starts: they are refined on
        pyramid level 1 (a quarter of the pixels) and cleaned against the median of their 3 × 3 lattice
        neighbourhood; every node is then refined at full resolution in one pass. Default True. Only with
        ``subpixel="lk"``: the starts are refined by Gauss–Newton, so with ``"parabola"`` every node is
        searched.
    sparse_stride : int
        Spacing, in nodes, of the searched nodes (a power of 2). Default 4: 1/16 of the grid is searched.
    shiftable : bool
        Re-measure nodes next to displacement discontinuities with chips shifted off-centre by 3/8 of
        their size (8 directions) and keep the most precise (shiftable windows). Also moves nodes on
        steep smooth gradients. Default False.
    robust_steps : bool
        Re-measure nodes next to displacement discontinuities with a robust Tukey fit started from each
        neighbour's value, keeping the motion of the node's own pixels instead of a blend of both sides.
        Default False (``two_motion`` handles steps better and is on by default).
    two_motion : bool
        Re-measure nodes at displacement discontinuities (faults, calving fronts, landslide scarps) with
        a two-motion model: a straight boundary splits the chip (1.5× larger) into two rigidly moving
        sides, found by alternating the boundary fit with masked Gauss–Newton on each side; the node takes
        the motion of its own side instead of a blend of both. A fit is kept only where it is clearly a
        step: it leaves less than ``two_motion_ratio`` of the one-motion residual energy, the sides
        separate as well next to the boundary as far from it, and a neighbouring node found the same
        boundary line (within 5° and 1 px); smooth shear is left alone. Strain correction is then off for
        the node and its neighbours. Default True.
    two_motion_px : float
        Departure from linearity between opposite neighbours (px, strain-corrected field) that selects a
        node for the two-motion fit, if also above 4× the node's predicted error (neighbours of accepted
        nodes near the boundary are fitted too). Default 0.5.
    two_motion_ratio : float
        Largest residual energy of the two-motion fit relative to the one-motion fit for it to be kept.
        In (0, 1]; default 0.6.
    step_px : float
        Departure from linearity between opposite neighbours (px) that marks a discontinuity for
        ``robust_steps`` and ``shiftable``. Default 0.5.
    target_sigma : float
        Predicted 1-σ error (px) above which a node is measured again with a 2× larger chip. Default
        0.16 (lower values help very noisy pairs but add strain and fault blending from the larger chips).
    max_chip_factor : int
        Largest chip enlargement for imprecise or failed nodes (1 disables nested chips; 2, 4 …). The
        larger chip's answer is kept when it is valid and not much less precise (predicted error below
        twice the smaller chip's). Beyond 2× only nodes that failed for lack of signal are redone (not
        those whose chip holds foreign pixels, see ``robust_ratio``: a larger chip would reach clear ground
        beyond a cloud edge and report its motion), and their chips are moved inside the image where
        they would cross its border. Near the border, a larger chip whose displaced secondary window
        would leave the image is narrowed, centred on the node, down to the base chip size. Default 4.
    grow_chips : bool
        Let a node be measured by a chip larger than ``chip_size``: the nested chips of
        ``max_chip_factor`` and the 1.5× chips of the ``two_motion`` fit. The chip behind every value is
        reported (``OffsetField.chip_height``, ``chip_width``). ``False`` keeps every value at the
        requested resolution: a node whose chip has no usable texture stays NaN (``TEXTURELESS``,
        ``LOW_CORRELATION``...) and two-motion fits use the base chip. Default True.
    coarse_nested : bool or "auto"
        Refine the nested (larger) chips on the block-averaged pyramid level where they have the base
        chip's size: 4× fewer pixels per doubling, at the cost of the finest frequencies. ``"auto"``
        (default) does so when more than ``coarse_nested_fraction`` of the valid nodes need a larger chip
        (noisy pairs, where those frequencies are mostly noise). The coarse chip's offset from the node
        and its moments are converted so that the strain correction still applies. ``True``/``False``
        force the coarse/fine level.
    coarse_nested_fraction : float
        Share of the valid nodes above which ``coarse_nested="auto"`` nests on the coarse level. In
        [0, 1]; default 0.1.
    smoothing : int
        Largest window radius, in nodes, of the adaptive local-plane smoothing applied last
        (:func:`geodeform.offsets._post.adaptive_plane`): each node's offset becomes the error-weighted
        plane fit through its (2r+1)² neighbourhood for the largest r ≤ ``smoothing`` that the
        intersection-of-confidence-intervals rule and a χ² test accept; steps, outliers and curvature
        stop the growth, so they keep their own values. The predicted error (``OffsetField.error``)
        is that of the fit. In [0, 10]; 0 disables it (every node then keeps its own chip's
        measurement). Default 3.
    smoothing_gamma : float
        Half-width, in σ, of the confidence intervals of the smoothing's window choice. Default 2.
    smoothing_chi2 : float
        Largest χ² per degree of freedom of the neighbours about the smoothing's fit (errors as the
        kernels predict them) for a window to be kept. Default 1.
    smoothing_model : {"plane", "plane-sided", "plane-split", "quadratic", "quadratic-sided", \
"quadratic-split"}
        The smoothing's local model: planes (default) or full quadratics, whose centre value is not
        biased by the field's curvature or by a change of gradient inside the window (a glacier's
        margin) but is noisier at the same radius (:func:`geodeform.offsets._post.adaptive_poly`);
        ``-sided`` adds, per node, the four half-windows that hold it on one edge, each with its own
        window choice, fused by inverse variance; ``-split`` keeps instead, where two opposite
        half-windows disagree on the slope (a change of gradient such as a glacier's margin), the one
        that fits the neighbours best. See ``docs/benchmarks.md`` for the measured effects.
    radiometry : {"linear", "quadratic"}
        Radiometric model between the chips in the sub-pixel refinement. ``"quadratic"``: gain,
        offset and a per-chip curvature (S ≈ a + β u + γ u², u the reference's value minus its chip
        mean), the curvature fitted where it explains the residual significantly: removes the bias a
        non-linear radiometric change (gamma, haze, different sensors) leaves in the offsets (default;
        see the benchmarks page for the measured effect). The correlation a node reports (``quality``,
        tested against ``min_correlation``) is the plain ZNCC of the two chips at the answer in both
        models: the curvature's extra degree of freedom does not raise it. ``"linear"``: gain and offset
        only (:func:`geodeform.sar.match_amplitude` uses it: two SAR dates of one track differ by a
        calibration gain).
    robust_ratio : float
        Chips whose residual variance per pixel exceeds this multiple of the pair's median (a cloud
        edge, a shadow, a changed patch inside the chip) are re-measured with a robust fit that keeps the
        motion of the node's own pixels, or rejected when those pixels follow no motion
        (``LOW_CORRELATION``; not a chip whose plain match correlates at 0.99 or more, which foreign
        pixels cannot dominate). Default 10 (lower values also catch strained glacier chips, which the
        robust fit then measures worse); 0 disables it.
    """

    min_correlation: float = 0.3
    min_valid_fraction: float = 0.5
    min_texture: float = 0.02
    subpixel: Literal["lk", "parabola"] = "lk"
    max_iter: int = 12
    tol: float = 0.03
    window: Literal["gaussian", "uniform"] = "gaussian"
    strain_correction: bool = True
    consistency: bool = True
    consistency_px: float = 1.0
    smooth: float = 0.7
    interpolation: Literal["approx", "exact"] = "approx"
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
    grow_chips: bool = True
    coarse_nested: bool | Literal["auto"] = "auto"
    coarse_nested_fraction: float = 0.1
    smoothing: int = 3
    smoothing_gamma: float = 2.0
    smoothing_chi2: float = 1.0
    smoothing_model: SmoothingModel = "plane"
    robust_ratio: float = 10.0
    radiometry: Literal["linear", "quadratic"] = "quadratic"

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
            "radiometry": self.radiometry in ("linear", "quadratic"),
            "consistency_px": self.consistency_px > 0.0,
            "target_sigma": self.target_sigma > 0.0,
            "step_px": self.step_px > 0.0,
            "two_motion_px": self.two_motion_px > 0.0,
            "two_motion_ratio": 0.0 < self.two_motion_ratio <= 1.0,
            "max_chip_factor": int(self.max_chip_factor) >= 1,
            "grow_chips": self.grow_chips in (True, False),
            "sparse_stride": int(self.sparse_stride) >= 1
            and int(self.sparse_stride) & (int(self.sparse_stride) - 1) == 0,
            "coarse_nested": self.coarse_nested in (True, False, "auto"),
            "coarse_nested_fraction": 0.0 <= self.coarse_nested_fraction <= 1.0,
            "smoothing": isinstance(self.smoothing, (int, np.integer)) and 0 <= self.smoothing <= 10,
            "smoothing_gamma": self.smoothing_gamma > 0.0,
            "smoothing_chi2": self.smoothing_chi2 > 0.0,
            "smoothing_model": self.smoothing_model in SMOOTHING_MODELS,
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
