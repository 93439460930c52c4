"""The ``ncc`` matcher on one strip: prepared images, then search and refinement of a list of chips.

A :class:`PreparedStrip` holds both images of a strip normalised, their pyramid and their B-spline data;
:func:`ncc_strip` matches chips in it (integer ZNCC search on the pyramid, then Gauss–Newton refinement),
:func:`robust_strip` and :func:`two_motion_strip` re-measure chips from given starts. All return per-node
flat arrays over the chips given.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets in full-resolution pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from geodeform.offsets._buffers import buffer
from geodeform.offsets._filters import (
    bspline_coefficients,
    bspline_model,
    erode3,
    gaussian_kernel,
    separable_fir,
    spline_gradients,
    taps_valid,
)
from geodeform.offsets._layout import (
    DX,
    DY,
    H_INV,
    LK_PAD,
    LOW_CORRELATION,
    M_COL,
    M_ROW,
    MASKED,
    OK,
    REASON,
    REFINE_COLS,
    SEARCH_EDGE,
    SIGMA,
    TEXTURELESS,
    ZNCC,
    Q,
    Spline,
    nan_to,
)
from geodeform.offsets._refine import GaussNewton, lk_nodes, lk_nodes_range
from geodeform.offsets._refine_quad import lk_nodes_quadratic_range
from geodeform.offsets._robust import lk_robust_nodes
from geodeform.offsets._search import Level, chip_stats, normalise_valid, pyramid_down, search_nodes
from geodeform.offsets._two_motion import Motions, TwoMotionParams, two_motion_nodes
from geodeform.offsets.ncc import NccOptions

__all__ = ["Chips", "PreparedStrip", "StripResult", "ncc_strip", "robust_strip", "two_motion_strip"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Stats = tuple[tuple[float, float], tuple[float, float]]

# Predicted errors of refinements on pyramid level 1 are ~15 % high against full-resolution ones (measured
# over predicted error ratios of 64 px chips, see docs/benchmarks.md): they are scaled by this factor
COARSE_SIGMA = 0.85


# ------------------------------------------------------------------------------------------ the strip
def gaussian_nan(img: F32, sigma: float) -> F32:
    """Gaussian blur of σ = ``sigma`` px that ignores NaN pixels (normalised convolution); NaN stays NaN."""
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


def _erode(valid: npt.NDArray[np.bool_], key: str | None = None) -> npt.NDArray[np.bool_]:
    """``valid`` eroded by one pixel (pixels beyond the border count as valid): the pixels whose 3 × 3
    B-spline stencil holds only valid pixels. With ``key`` the result lives in a reused buffer."""
    if valid.all():
        return valid
    out = np.empty(valid.shape, bool) if key is None else buffer(key, valid.shape, np.bool_)
    erode3(valid, out)
    return out


def _normalised(img: F32, valid: npt.NDArray[np.bool_], stats: tuple[float, float]) -> F32:
    """(img - mean) / std with the image's global statistics, in place; non-finite pixels set to 0 and
    False in ``valid``."""
    mean, std = stats
    normalise_valid(img, mean, 1.0 / std, valid)
    return img


class PreparedStrip:
    """A strip of both images made ready for matching (pyramids, B-spline data); reused across passes.

    With ``interpolation="approx"`` both images are modelled the same way, as cubic B-splines whose
    coefficients are the pixel values: the reference samples, its gradients and the secondary samples
    all come from one model, which is symmetric in the two images (no differential smoothing, hence low
    pixel locking) and needs only 3×3 FIR filters. ``"exact"`` uses interpolating B-splines after a
    Gaussian of σ = ``smooth``.

    Parameters
    ----------
    ref, sec : ndarray of float32
        The strip's rows of both images, NaN where invalid; normalised in place.
    opts : NccOptions
        ``interpolation`` and ``smooth`` are read.
    stats : ((mean, std), (mean, std))
        Global statistics of the reference and the secondary.
    """

    def __init__(self, ref: F32, sec: F32, opts: NccOptions, stats: Stats) -> None:
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
        self._spline: Spline | None = None
        self._coarse: dict[int, Spline] = {}

    def _grow(self, k: int) -> None:
        while len(self.refs) <= k:
            a, av = pyramid_down(self.refs[-1], self.rvs[-1])
            b, bv = pyramid_down(self.secs[-1], self.svs[-1])
            self.refs.append(a)
            self.rvs.append(av)
            self.secs.append(b)
            self.svs.append(bv)

    def level(self, k: int) -> Level:
        """Pyramid level ``k`` (2**k block averages) of both images, as the search kernels read it."""
        self._grow(k)
        return Level(self.refs[k], self.rvs[k].view(np.uint8), self.secs[k], self.svs[k].view(np.uint8))

    def spline(self, level: int = 0) -> Spline:
        """The B-spline data of pyramid level ``level`` for the refinement kernels.

        Invalid pixels hold 0 (the normalised images' mean): no sum reads them, since the reference
        samples are valid only where their 3 × 3 model stencil is (eroded validity) and the secondary's
        interpolants only where their 4 × 4 taps are (``Spline.taps_valid``).
        """
        if level > 0:
            if level not in self._coarse:
                self._grow(level)
                ref, rv, sec, sv = self.refs[level], self.rvs[level], self.secs[level], self.svs[level]
                val, gy, gx = (np.empty(ref.shape, np.float32) for _ in range(3))
                bspline_model(ref, val, gy, gx)
                self._coarse[level] = _pad_spline(
                    val, _erode(rv, f"erode-r{level}"), gy, gx, sec, sv, rv, key=f"pad{level}"
                )
            return self._coarse[level]
        if self._spline is None:
            ref, rv, sec, sv = self.refs[0], self.rvs[0], self.secs[0], self.svs[0]
            if self.exact:
                if not sv.all():  # the interpolating prefilter spreads every pixel: fill with the mean
                    fill = float(sec[sv].mean()) if sv.any() else 0.0
                    sec = np.where(sv, sec, fill).astype(np.float32)
                gy, gx = spline_gradients(ref)
                self._spline = _pad_spline(ref, rv, gy, gx, bspline_coefficients(sec), sv, rv)
            else:
                val, gy, gx = (buffer(f"model-{k}", ref.shape, np.float32) for k in "vyx")
                bspline_model(ref, val, gy, gx)
                self._spline = _pad_spline(val, _erode(rv, "erode-r0"), gy, gx, sec, sv, rv)
        return self._spline


def _pad_spline(
    ref: F32,
    rv: npt.NDArray[np.bool_],
    gy: F32,
    gx: F32,
    coef: F32,
    sv: npt.NDArray[np.bool_],
    pixels: npt.NDArray[np.bool_],
    *,
    key: str = "pad",
) -> Spline:
    """The spline data with the secondary's coefficients given the invalid border of ``LK_PAD`` pixels
    that the refinement kernels expect, and the validity of every 4 × 4 block of taps."""
    p = LK_PAD
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
    tv = buffer(f"{key}-taps", vp.shape, np.uint8)
    taps_valid(vp, tv)
    return Spline(ref, gy, gx, rv.view(np.uint8), cp, tv, pixels.view(np.uint8))


# ---------------------------------------------------------------------------------- chips and results
@dataclass(frozen=True)
class Chips:
    """The chips of one strip pass.

    Attributes
    ----------
    r0, c0 : ndarray of int64, shape (n,)
        Chip origins in the strip, px.
    size : (int, int)
        Chip size (rows, cols), px.
    search_r, search_c : ndarray, shape (n,)
        Search half-widths around ``init``, px; an answer farther than that (+ 0.5) is ``SEARCH_EDGE``.
    init_r, init_c : ndarray, shape (n,)
        Centre of the search window, px (integers; zeros: no prior offset).
    """

    r0: I64
    c0: I64
    size: tuple[int, int]
    search_r: Any
    search_c: Any
    init_r: Any
    init_c: Any

    @classmethod
    def around(cls, r0: I64, c0: I64, size: tuple[int, int], search: I64, init: Any = None) -> Chips:
        """Chips searched ± ``search`` (same in rows and cols) around ``init`` = (rows, cols), else 0."""
        zero = np.zeros(r0.size, np.int64)
        init_r, init_c = (zero, zero) if init is None else init
        return cls(r0, c0, size, search, search, init_r, init_c)


@dataclass
class StripResult:
    """Per-node results of one strip pass (flat arrays over the chips given).

    Attributes
    ----------
    dy, dx : ndarray of float64
        Offsets, px; NaN unless ``reason`` is ``OK``.
    quality : ndarray of float64
        ZNCC of the match (0 where unknown).
    reason : ndarray of uint8
        Reason code per node.
    lk : ndarray of float64, shape (n, REFINE_COLS)
        The refinement kernel's raw output (columns of :mod:`geodeform.offsets._layout`): the texture
        moments of the strain correction and the predicted error.
    """

    dy: F64
    dx: F64
    quality: F64
    reason: npt.NDArray[np.uint8]
    lk: F64

    @classmethod
    def empty(cls, n: int) -> StripResult:
        """n nodes without an answer (``MASKED``)."""
        return cls(
            np.full(n, np.nan),
            np.full(n, np.nan),
            np.zeros(n),
            np.full(n, MASKED, np.uint8),
            np.full((n, REFINE_COLS), np.nan),
        )


class Peak(NamedTuple):
    """The integer search's answer on the finest level searched (``last``)."""

    dr: I64
    dc: I64
    score: F64
    edge_top: npt.NDArray[np.bool_]  #: the peak lay on the border of the coarsest level's window
    frac_r: F64
    frac_c: F64
    last: int


# -------------------------------------------------------------------------------------------- matching
def _chip_at_level(r0: I64, h: int, level: int) -> tuple[I64, int]:
    """Origins and size on pyramid level ``level`` of the chips (r0, h) of level 0, same centres."""
    s = 1 << level
    hl = max(h >> level, 4)
    centre = (r0 + (h - 1) / 2.0 + 0.5) / s - 0.5
    return np.rint(centre - (hl - 1) / 2.0).astype(np.int64), hl


def _top_level(search: int, h: int, w: int) -> int:
    """The coarsest level searched: where ± ``search`` px shrinks to ± 1 px, the chip staying ≥ 8 px."""
    level = 0
    while -(-search // (1 << level)) > 1 and (min(h, w) >> (level + 1)) >= 8:
        level += 1
    return level


@functools.lru_cache(maxsize=32)
def _window(h: int, w: int, kind: str) -> F32:
    """The chip weights (read-only, cached: every pass asks for the same few)."""
    if kind == "gaussian":
        yy = (np.arange(h) - (h - 1) / 2) / (h / 4)
        xx = (np.arange(w) - (w - 1) / 2) / (w / 4)
        out = np.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2)).astype(np.float32)
    else:
        out = np.ones((h, w), np.float32)
    out.flags.writeable = False
    return out


def ncc_strip(
    prep: PreparedStrip,
    chips: Chips,
    opts: NccOptions,
    *,
    start: tuple[F64, F64] | None = None,
    level: int = 0,
) -> StripResult:
    """Match ``chips`` of the prepared reference strip in the secondary strip.

    Parameters
    ----------
    prep : PreparedStrip
        The strip.
    chips : Chips
        Origins, size, search windows.
    opts : NccOptions
        Matcher options.
    start : (ndarray, ndarray), optional
        Sub-pixel start offsets (rows, cols), px (e.g. predicted from neighbouring nodes): the integer
        search is skipped, and the refinement kernel tests the chips' valid fraction and texture itself.
    level : int
        With ``level`` > 0 the refinement runs on the 2**level block-averaged images: a chip of
        ``size``/2**level coarse pixels covering the same ground (nested chips at a quarter of the cost,
        which loses only frequencies that noise dominates when large chips are needed).

    Returns
    -------
    StripResult
    """
    n = chips.r0.size
    reason = np.zeros(n, np.uint8)
    if start is not None:
        todo = np.ones(n, bool)
        if level > 0:
            return _refine_coarse(prep, chips, start, reason, todo, opts, level, chip_tests=True)
        no_edge = np.zeros(n, bool)
        return _refine(prep, chips, start, reason, todo, no_edge, opts, max_move=1.5, chip_tests=True)
    h, w = chips.size
    frac, std = chip_stats(prep.refs[0], prep.rvs[0], chips.r0, chips.c0, h, w)
    reason[frac < opts.min_valid_fraction] = MASKED
    reason[(reason == 0) & (std <= opts.min_texture)] = TEXTURELESS  # images are normalised to std 1
    todo = reason == 0
    peak = _search_pyramid(prep, chips, todo, opts, level)
    reason[todo & (peak.score <= -2.0)] = MASKED
    todo &= peak.score > -2.0
    if opts.subpixel == "parabola":
        return _parabola(prep.level(0), chips, peak, reason, todo, opts)
    scale = 1 << peak.last
    start = ((peak.dr + peak.frac_r) * scale, (peak.dc + peak.frac_c) * scale)
    if level > 0:  # a nested chip refined where it has the base chip's size (see ``start``)
        # (as the full-resolution path: 1 + 2)
        move = 3.0 if peak.last > level else 1.0
        res = _refine_coarse(prep, chips, start, reason, todo, opts, level, max_move=move)
        reason[peak.edge_top & (reason == OK)] = SEARCH_EDGE
        res.dy[reason != OK] = np.nan
        res.dx[reason != OK] = np.nan
        return res
    return _refine(prep, chips, start, reason, todo, peak.edge_top, opts, max_move=1.0 + scale)


def _search_pyramid(
    prep: PreparedStrip, chips: Chips, todo: Any, opts: NccOptions, refine_level: int
) -> Peak:
    """Integer ZNCC search of the ``todo`` chips, coarse to fine: ± the search range on the coarsest
    level, then ± 1 px around the doubled peak on each finer one, down to level ``last`` (1 when the
    Gauss–Newton refinement follows: it converges from there; ``refine_level`` + 1 for a coarse
    refinement), where the sub-pixel parabola vertex is added."""
    h, w = chips.size
    n = chips.r0.size
    top = _top_level(int(max(chips.search_r.max(initial=0), chips.search_c.max(initial=0))), h, w)
    last = 1 if (top >= 1 and opts.subpixel == "lk") else 0
    if refine_level > 0 and opts.subpixel == "lk" and top > refine_level:
        last = refine_level + 1
    cen_r = np.floor(chips.init_r / (1 << top) + 0.5).astype(np.int64)
    cen_c = np.floor(chips.init_c / (1 << top) + 0.5).astype(np.int64)
    rad_r = -(-chips.search_r // (1 << top))
    rad_c = -(-chips.search_c // (1 << top))
    edge_top = np.zeros(n, bool)
    score = np.full(n, -2.0)
    fr = fc = np.zeros(n)
    for lv in range(top, last - 1, -1):
        r0l, hl = _chip_at_level(chips.r0, h, lv)
        c0l, wl = _chip_at_level(chips.c0, w, lv)
        if lv < top:
            cen_r, cen_c = 2 * cen_r, 2 * cen_c
            rad_r = np.minimum(1, chips.search_r)
            rad_c = np.minimum(1, chips.search_c)
        found = search_nodes(
            prep.level(lv),
            r0l,
            c0l,
            (hl, wl),
            (cen_r, cen_c),
            (rad_r.astype(np.int64), rad_c.astype(np.int64)),
            min_frac=opts.min_valid_fraction,
            todo=todo,
            frac=lv == last and opts.subpixel == "lk",
        )
        cen_r, cen_c, score, fr, fc = found.dr, found.dc, found.score, found.frac_r, found.frac_c
        if lv == top:
            edge_top = found.edge
    return Peak(cen_r, cen_c, score, edge_top, fr, fc, last)


def _refine_coarse(
    prep: PreparedStrip,
    chips: Chips,
    start: tuple[Any, Any],
    reason: npt.NDArray[np.uint8],
    todo: npt.NDArray[np.bool_],
    opts: NccOptions,
    level: int,
    *,
    chip_tests: bool = False,
    max_move: float = 1.0,
) -> StripResult:
    """Refinement on pyramid level ``level``; offsets, moments and errors returned in full-resolution
    units, the moments taken about the node."""
    s = 1 << level
    h, w = chips.size
    r0l, hl = _chip_at_level(chips.r0, h, level)
    c0l, wl = _chip_at_level(chips.c0, w, level)
    coarse = Chips(
        r0l,
        c0l,
        (hl, wl),
        np.asarray(chips.search_r) / s,
        np.asarray(chips.search_c) / s,
        np.asarray(chips.init_r) / s,
        np.asarray(chips.init_c) / s,
    )
    start_l = (np.asarray(start[0]) / s, np.asarray(start[1]) / s)
    no_edge = np.zeros(chips.r0.size, bool)
    res = _refine(
        prep,
        coarse,
        start_l,
        reason,
        todo,
        no_edge,
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
    dr = r0l + (hl - 1) / 2.0 - ((chips.r0 + (h - 1) / 2.0 + 0.5) / s - 0.5)
    dc = c0l + (wl - 1) / 2.0 - ((chips.c0 + (w - 1) / 2.0 + 0.5) / s - 0.5)
    _moments_about(res.lk, dr, dc)
    # then to full-resolution units: bias = s H_c⁻¹ (M_c G + ½ Q_c K_c) with K_c = s K
    res.lk[:, M_ROW : M_COL + 3] *= s
    res.lk[:, Q : Q + 9] *= s * s
    res.lk[:, SIGMA] *= s * COARSE_SIGMA
    return res


def _moments_about(lk: F64, dr: Any, dc: Any) -> None:
    """Shift the texture moments of refinement results ``lk`` (n, REFINE_COLS) from the chip's centre to
    the point (dr, dc) px away from it, in place."""
    i00, i01, i11 = lk[:, H_INV], lk[:, H_INV + 1], lk[:, H_INV + 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        det = i00 * i11 - i01 * i01
        h00, h01, h11 = i11 / det, -i01 / det, i00 / det  # H from its inverse
    m_r = [lk[:, M_ROW + k].copy() for k in range(3)]
    m_c = [lk[:, M_COL + k].copy() for k in range(3)]
    hh = [h00, h01, h11]
    for k in range(3):  # g-products yy, yx, xx
        lk[:, Q + 3 * k] += 2 * dr * m_r[k] + dr * dr * hh[k]
        lk[:, Q + 1 + 3 * k] += dc * m_r[k] + dr * m_c[k] + dr * dc * hh[k]
        lk[:, Q + 2 + 3 * k] += 2 * dc * m_c[k] + dc * dc * hh[k]
        lk[:, M_ROW + k] += dr * hh[k]
        lk[:, M_COL + k] += dc * hh[k]


def _refine(
    prep: PreparedStrip,
    chips: Chips,
    start: tuple[Any, Any],
    reason: npt.NDArray[np.uint8],
    todo: npt.NDArray[np.bool_],
    edge_top: npt.NDArray[np.bool_],
    opts: NccOptions,
    *,
    max_move: float,
    level: int = 0,
    chip_tests: bool = False,
) -> StripResult:
    """Gauss–Newton refinement of the ``todo`` chips from ``start`` on pyramid level ``level``; with
    ``chip_tests`` the kernel also applies the valid-fraction and texture tests (for nodes that skipped
    the search). ``reason`` is updated in place and returned in the result."""
    h, w = chips.size
    gn = GaussNewton(
        int(opts.max_iter),
        float(opts.tol),
        float(max_move),
        float(opts.min_valid_fraction) if chip_tests else 0.0,
        float(opts.min_texture) if chip_tests else -1.0,
        opts.radiometry == "quadratic",
    )
    # the quadratic radiometric model has its own kernels: radiometry="linear" compiles to
    # the gain-and-offset arithmetic alone
    lk = lk_nodes(
        prep.spline(level),
        chips.r0,
        chips.c0,
        (h, w),
        (np.asarray(start[0], np.float64), np.asarray(start[1], np.float64)),
        _window(h, w, opts.window).copy(),  # writable, as the two-motion fit's weights: one compiled kernel
        gn,
        todo,
        kernel=lk_nodes_quadratic_range if gn.quadratic else lk_nodes_range,
    )
    dy, dx, zn = lk[:, DY], lk[:, DX], lk[:, ZNCC]
    lk_reason = nan_to(lk[:, REASON], 0).astype(np.uint8)
    reason[todo] = lk_reason[todo]
    _finish(dy, dx, zn, reason, edge_top, chips, opts)
    return StripResult(dy, dx, nan_to(zn), reason, lk)


def _finish(dy: F64, dx: F64, zn: F64, reason: Any, edge_top: Any, chips: Chips, opts: NccOptions) -> None:
    """Flag search-edge answers and weak correlations, then NaN every node that is not OK (in place)."""
    # a peak on the border of the search window explains any later failure: report that first
    reason[edge_top & (reason != MASKED) & (reason != TEXTURELESS)] = SEARCH_EDGE
    far = (np.abs(dy - chips.init_r) > chips.search_r + 0.5) | (
        np.abs(dx - chips.init_c) > chips.search_c + 0.5
    )
    reason[(reason == OK) & far] = SEARCH_EDGE
    _reject(dy, dx, zn, reason, opts)


def _reject(dy: F64, dx: F64, zn: F64, reason: Any, opts: NccOptions) -> None:
    """Flag weak correlations, then set every node that is not OK to NaN (in place)."""
    reason[(reason == OK) & ~(zn >= opts.min_correlation)] = LOW_CORRELATION
    bad = reason != OK
    dy[bad] = np.nan
    dx[bad] = np.nan


def _parabola(
    lv: Level, chips: Chips, peak: Peak, reason: npt.NDArray[np.uint8], todo: Any, opts: NccOptions
) -> StripResult:
    """3×3 ZNCC surface around the integer peak, separable parabola vertex (the classic, biased fit)."""
    h, w = chips.size
    n = chips.r0.size
    surf = np.full((n, 3, 3), np.nan)
    zero = np.zeros(n, np.int64)
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            s = search_nodes(
                lv,
                chips.r0,
                chips.c0,
                (h, w),
                (peak.dr + i, peak.dc + j),
                (zero, zero),
                min_frac=opts.min_valid_fraction,
                todo=todo,
                frac=False,
            ).score
            surf[:, i + 1, j + 1] = np.where(s > -2, s, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        den_r = surf[:, 0, 1] - 2 * surf[:, 1, 1] + surf[:, 2, 1]
        den_c = surf[:, 1, 0] - 2 * surf[:, 1, 1] + surf[:, 1, 2]
        fr = np.clip(0.5 * (surf[:, 0, 1] - surf[:, 2, 1]) / den_r, -0.5, 0.5)
        fc = np.clip(0.5 * (surf[:, 1, 0] - surf[:, 1, 2]) / den_c, -0.5, 0.5)
    dy = peak.dr + nan_to(fr)
    dx = peak.dc + nan_to(fc)
    zn = np.where(todo, peak.score, np.nan)
    reason[todo & ~np.isfinite(surf).all(axis=(1, 2))] = SEARCH_EDGE
    _finish(dy, dx, zn, reason, peak.edge_top, chips, opts)
    return StripResult(dy, dx, nan_to(zn), reason, np.full((n, REFINE_COLS), np.nan))


# ------------------------------------------------------------------------------------- re-measurements
def robust_strip(
    prep: PreparedStrip, r0: I64, c0: I64, chip: tuple[int, int], start: tuple[F64, F64], opts: NccOptions
) -> StripResult:
    """Robust (Tukey) refinement of chips (r0, c0) of size ``chip`` from ``start`` (px), see
    :func:`geodeform.offsets._robust.lk_robust_node`; ``lk`` carries its ``CENTRE_SCORE`` and ``SIGMA``."""
    h, w = chip
    lk = lk_robust_nodes(
        prep.spline(),
        r0,
        c0,
        (h, w),
        (np.asarray(start[0], np.float64), np.asarray(start[1], np.float64)),
        12,
        max(4, min(h, w) // 4),
    )
    reason = nan_to(lk[:, REASON], MASKED).astype(np.uint8)
    dy, dx, zn = lk[:, DY], lk[:, DX], lk[:, ZNCC]
    _reject(dy, dx, zn, reason, opts)
    return StripResult(dy, dx, nan_to(zn), reason, lk)


def two_motion_strip(
    prep: PreparedStrip,
    r0: I64,
    c0: I64,
    chip: tuple[int, int],
    start: tuple[F64, F64],
    motions: Motions,
    *,
    reach: tuple[float, float] = (np.inf, np.inf),
    n_iter: int = 2,
    guard: float = 1.5,
    early: tuple[float, float] = (0.8, 0.5),
) -> F64:
    """Two-motion fits of chips (r0, c0) of size ``chip`` (see
    :func:`geodeform.offsets._two_motion.two_motion_node`); returns (n, TWO_COLS).

    ``start`` is the one-motion answer, ``motions`` the candidate motions A and B per node (px). Nodes
    whose coarse boundary lies farther from the centre than ``reach`` (row, col half extents, px,
    projected on the boundary normal) stop early and are not fitted (NaN ratio).
    """
    h, w = chip

    def f64(a: Any) -> F64:
        return np.ascontiguousarray(a, np.float64)

    params = TwoMotionParams(
        int(n_iter), float(guard), float(early[0]), float(early[1]), float(reach[0]), float(reach[1])
    )
    return two_motion_nodes(
        prep.spline(),
        r0,
        c0,
        (h, w),
        (f64(start[0]), f64(start[1])),
        Motions(f64(motions.a_dy), f64(motions.a_dx), f64(motions.b_dy), f64(motions.b_dx)),
        params,
    )
