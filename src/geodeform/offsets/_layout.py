"""Layout of the matcher kernels' inputs and outputs: reason codes, result columns, the spline bundle.

The kernels write one row of floats per node (numba kernels cannot return records cheaply), so the
column of every quantity is named here, once. Module-level ints are compile-time constants for numba;
every module reads a kernel result through these names, never through a bare column number, and a
column keeps one meaning throughout.

Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
secondary; offsets are in pixels of the (possibly block-averaged) images the kernel ran on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

# ---------------------------------------------------------------------------------------- reason codes
# Why a node has no answer (0 = valid); the public names are in :class:`geodeform.offsets.Reason`.
OK = 0
MASKED = 1
TEXTURELESS = 2
SEARCH_EDGE = 3
LOW_CORRELATION = 4
NOT_CONVERGED = 5
OUTSIDE = 6
OUTLIER = 7  # set by the driver's neighbourhood-consistency test, never by a kernel
# Appended by the pair chain's checks after matching (geodeform.workflows), never by a kernel:
SPEED = 8  # outside the expected speed
CLOUD = 9  # on a cloud, shadow or no-data pixel of an image's mask
WATER = 10  # on the water mask
AMBIGUOUS = 11  # predicted error too large: flat or ridge-shaped correlation peak

# ------------------------------------------------------------------------------- refinement columns
# One row per node of the sub-pixel refinement (:func:`geodeform.offsets._refine.lk_refine_node`) and the
# robust refinement (:func:`geodeform.offsets._robust.lk_robust_node`); NaN where not computed.
DY = 0  #: row offset, px
DX = 1  #: column offset, px
ZNCC = 2  #: zero-normalised cross-correlation at the answer, [-1, 1]
REASON = 3  #: reason code (a float: NaN where the kernel did not run)
ITERATIONS = 4  #: Gauss–Newton iterations used
M_ROW = 5  #: 3 columns: M_r = Σ w g gᵀ (row - centre), entries (yy, yx, xx), px
M_COL = 8  #: 3 columns: M_c = Σ w g gᵀ (col - centre), entries (yy, yx, xx), px
H_INV = 11  #: 3 columns: inverse normal matrix H⁻¹ = (Σ w g gᵀ)⁻¹, entries (00, 01, 11)
SIGMA = 14  #: predicted 1-σ vector error, px
Q = 15  #: 9 columns: Q = Σ w g gᵀ Δ Δᵀ, entries yy (rr, rc, cc), yx (rr, rc, cc), xx (rr, rc, cc), px²
CENTRE_SCORE = 24  #: robust fit: texture-weighted share of the central pixels kept as inliers, [0, 1]
REFINE_COLS = 25

# ------------------------------------------------------------------------------- two-motion columns
# One row per node of the two-motion fit (:func:`geodeform.offsets._two_motion.two_motion_node`).
TWO_DY = 0  #: row offset of the side holding the chip centre, px
TWO_DX = 1  #: column offset of that side, px
TWO_ZNCC = 2  #: ZNCC of that side's masked fit
TWO_REASON = 3  #: reason code (float)
TWO_RATIO = 4  #: residual energy of the two-motion fit over that of the one-motion fit (≈ 1: no step)
TWO_SIGMA = 5  #: predicted 1-σ vector error of the centre's side, px
TWO_A_DY = 6  #: motion A (the side where orient · (t - ρ) < 0), px
TWO_A_DX = 7
TWO_B_DY = 8  #: motion B, px
TWO_B_DX = 9
TWO_THETA = 10  #: boundary normal angle θ, rad: t = (row, col - centre) · (cos θ, sin θ)
TWO_CENTRE_DIST = 11  #: signed distance of the chip centre from the boundary, px (negative on A's side)
TWO_SHARP_NEAR = 12  #: support of the split 2-6 px from the boundary (≈ 1 for a step)
TWO_SHARPNESS = 13  #: near / far support (≈ 1 for a step, ≈ 0.3 for a smooth gradient split in two)
TWO_RHO = 14  #: boundary offset ρ, px
TWO_COLS = 15

# -------------------------------------------------------------------------------------- kernel options
# LLVM fast-math flags of the hot kernels: reassociation lets LLVM vectorise the reductions; NaN/inf
# semantics are kept (no nnan/ninf)
FAST = {"reassoc", "contract", "arcp", "nsz"}

# Border (px) of invalid pixels around the secondary's B-spline coefficients, so that chips at the image
# edge are refined on their pixels that stay inside instead of being dropped.
LK_PAD = 3

# Ratio of measured to first-order predicted errors on noisy textures (10-30 dB): the B-spline model
# smooths the noise, which the white-noise formula does not see.
SIGMA_CALIBRATION = 2.2


class Spline(NamedTuple):
    """The B-spline data of one strip that every refinement kernel reads (numba accepts NamedTuples).

    Attributes
    ----------
    ref : ndarray of float32, shape (h, w)
        Reference samples (values of its B-spline model at the pixels), normalised to unit variance.
    gy, gx : ndarray of float32, shape (h, w)
        Derivatives of the reference's interpolant along rows and columns, per px.
    valid : ndarray of uint8, shape (h, w)
        1 where the reference sample may enter a sum (its 3 × 3 model stencil holds only valid pixels).
    coef : ndarray of float32, shape (h + 2 LK_PAD, w + 2 LK_PAD)
        Cubic B-spline coefficients of the secondary, with a border of ``LK_PAD`` px.
    taps_valid : ndarray of uint8, same shape as ``coef``
        1 where the 4 × 4 coefficients whose top-left one this is are all valid pixels of the secondary
        (0 on the border): the interpolant at a point whose integer part is (y + 1, x + 1) in ``coef``'s
        coordinates reads only valid pixels when ``taps_valid[y, x]`` is 1 (:func:`taps_valid`).
    pixels : ndarray of uint8, shape (h, w)
        1 where the reference pixel is valid: a chip's valid fraction is counted on these.
    """

    ref: npt.NDArray[np.float32]
    gy: npt.NDArray[np.float32]
    gx: npt.NDArray[np.float32]
    valid: npt.NDArray[np.uint8]
    coef: npt.NDArray[np.float32]
    taps_valid: npt.NDArray[np.uint8]
    pixels: npt.NDArray[np.uint8]


def nan_to(x: npt.NDArray[np.floating], value: float = 0.0) -> npt.NDArray[np.floating]:
    """A copy of ``x`` with its NaNs set to ``value`` (``np.nan_to_num`` without its infinity handling,
    whose overhead dominated on the small per-pass arrays)."""
    return np.where(np.isnan(x), value, x)
