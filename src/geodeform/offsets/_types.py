"""Result types of the matchers and the per-node reason codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from geodeform.offsets import _layout as L

__all__ = ["MatcherOutput", "OffsetField", "Reason", "reason_codes"]


class Reason(IntEnum):
    """Why a node is NaN (``OK`` for valid nodes)."""

    OK = L.OK
    MASKED = L.MASKED  #: too few valid pixels (no-data, fill values, user mask, clouds masked upstream)
    TEXTURELESS = L.TEXTURELESS  #: the reference chip has no usable texture (flat, saturated)
    SEARCH_EDGE = L.SEARCH_EDGE  #: correlation peak on the border of the search window: widen the search
    LOW_CORRELATION = L.LOW_CORRELATION  #: best match below ``min_correlation`` (clouds, change)
    NOT_CONVERGED = L.NOT_CONVERGED  #: the sub-pixel refinement diverged or did not converge
    OUTSIDE = L.OUTSIDE  #: the match falls outside the secondary image
    OUTLIER = L.OUTLIER  #: rejected by the neighbourhood-consistency test
    SPEED = L.SPEED  #: faster than the expected speed allows (after matching)
    CLOUD = L.CLOUD  #: on a cloud, shadow or no-data pixel of an image's own mask (SCL, QA_PIXEL, user mask)
    WATER = L.WATER  #: on the water mask (lake, fjord: no ground)
    AMBIGUOUS = L.AMBIGUOUS  #: predicted error too large: flat or ridge-shaped correlation peak

    @classmethod
    def codes(cls) -> dict[int, str]:
        """Every code and its name, e.g. ``{0: "OK", 1: "MASKED", ...}`` (for product metadata)."""
        return {int(r): r.name for r in cls}


def reason_codes() -> dict[int, str]:
    """Every :class:`Reason` code and its name, ``{0: "OK", 1: "MASKED", ...}``.

    Written into products (the ``reason`` band's flag table) so that a reader can decode the codes.
    """
    return Reason.codes()


class MatcherOutput(NamedTuple):
    """What every matcher's runner returns to :func:`geodeform.offsets.match` (arrays of the grid's shape).

    Attributes
    ----------
    dy, dx : ndarray of float64
        Offsets, px (sign convention of :class:`OffsetField`); the driver sets them to NaN where
        ``reason`` is not ``OK``.
    quality : ndarray of float64
        Match quality in [0, 1] (ZNCC, phase coherence or valid fraction, by matcher).
    reason : ndarray of uint8
        :class:`Reason` code per node.
    error : ndarray of float64 or None
        Predicted 1-σ vector error, px (``ncc``); None when the matcher does not predict one.
    chip_height, chip_width : ndarray of float64 or None
        Size (rows, columns; px) of the chip that measured each node (``ncc``); None: the base chip
        everywhere.
    unsmoothed : tuple of three ndarrays of float64, or None
        ``(dy, dx, error)`` of each node's own chip before the matcher's smoothing (``ncc`` with
        ``smoothing`` > 0); None: no smoothing ran.
    """

    dy: npt.NDArray[np.float64]
    dx: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float64]
    reason: npt.NDArray[np.uint8]
    error: npt.NDArray[np.float64] | None = None
    chip_height: npt.NDArray[np.float64] | None = None
    chip_width: npt.NDArray[np.float64] | None = None
    unsmoothed: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None


@dataclass(frozen=True)
class OffsetField:
    """Displacement of a reference image in a secondary image, on a regular grid of nodes.

    Sign convention: a feature at (row, col) of the reference appears at (row + dy, col + dx) of the
    secondary. ``dx`` is along increasing columns, ``dy`` along increasing rows (south on north-up
    images), both in pixels of the reference.

    Attributes
    ----------
    rows, cols : ndarray, shape (nr,), (nc,)
        Node centres in 0-based reference pixel coordinates (the centre of pixel (i, j) is (i, j)).
    dx, dy : ndarray of float32, shape (nr, nc)
        Offsets in pixels; NaN where invalid.
    quality : ndarray of float32, shape (nr, nc)
        In [0, 1], higher is better: zero-normalised cross-correlation of the matched chips (0 where NaN).
    reason : ndarray of uint8, shape (nr, nc)
        :class:`Reason` code of every node (``Reason.OK`` where valid).
    method : str
        Matcher used.
    params : dict
        Every parameter the matcher used (chip, step, search range, options), for product metadata.
    error : ndarray of float32, shape (nr, nc)
        Predicted 1-σ error of each offset vector, px, from the match residuals and the chip's texture
        (``ncc``; NaN for other methods and invalid nodes). Calibrated on noisy real textures so that it
        is of the order of the true error; use it to weight nodes, not as a guarantee.
    chip_height, chip_width : ndarray of float32, shape (nr, nc)
        Rows and columns (px) of the chip that measured each node's value: the requested ``chip_size``,
        or a larger chip where the matcher grew it (``ncc``: nested chips for weak or failed chips,
        1.5× chips at displacement discontinuities; see ``NccOptions.grow_chips``), or a narrower one
        near the border. NaN for invalid nodes. The value's spatial resolution is that of this chip
        (``ncc``'s smoothing, when on, then combines neighbouring nodes).
    smoothing_dx, smoothing_dy : ndarray of float32, shape (nr, nc), or None
        What the matcher's smoothing (``ncc`` with ``smoothing`` > 0) added to each node's own chip's
        offset, px: ``dx - smoothing_dx`` is the value the node's chip measured alone
        (:attr:`dx_unsmoothed`). Stored as the change rather than the value, so that a correction applied
        to ``dx``/``dy`` afterwards (co-registration, stripes) carries over to the unsmoothed values.
        None when no smoothing ran (the values are their chips' own).
    error_unsmoothed : ndarray of float32, shape (nr, nc), or None
        Predicted 1-σ vector error of each node's own chip's offset (px), before the smoothing: ``error``
        over it is the node's :attr:`smoothing_gain`. None when no smoothing ran.
    """

    rows: npt.NDArray[np.float64]
    cols: npt.NDArray[np.float64]
    dx: npt.NDArray[np.float32]
    dy: npt.NDArray[np.float32]
    quality: npt.NDArray[np.float32]
    reason: npt.NDArray[np.uint8]
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    error: npt.NDArray[np.float32] | None = None
    chip_height: npt.NDArray[np.float32] | None = None
    chip_width: npt.NDArray[np.float32] | None = None
    smoothing_dx: npt.NDArray[np.float32] | None = None
    smoothing_dy: npt.NDArray[np.float32] | None = None
    error_unsmoothed: npt.NDArray[np.float32] | None = None

    @property
    def dx_unsmoothed(self) -> npt.NDArray[np.float32]:
        """Each node's own chip's ``dx`` before the matcher's smoothing, px (``dx`` without smoothing)."""
        return self.dx if self.smoothing_dx is None else (self.dx - self.smoothing_dx).astype(np.float32)

    @property
    def dy_unsmoothed(self) -> npt.NDArray[np.float32]:
        """Each node's own chip's ``dy`` before the matcher's smoothing, px (``dy`` without smoothing)."""
        return self.dy if self.smoothing_dy is None else (self.dy - self.smoothing_dy).astype(np.float32)

    @property
    def smoothing_gain(self) -> npt.NDArray[np.float32] | None:
        """Per node, ``error / error_unsmoothed``: the share of a per-chip random error that the smoothing
        leaves in the value (1 without smoothing or where the smoothing kept the node's own chip, about
        0.6-0.7 where it averaged a 7 × 7 window of overlapping chips); NaN where either error is; None
        when the matcher predicts no error."""
        if self.error is None:
            return None
        if self.error_unsmoothed is None:
            return np.where(np.isfinite(self.error), np.float32(1), np.float32(np.nan))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.error / self.error_unsmoothed).astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (nr, nc)."""
        return (self.rows.size, self.cols.size)

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """Boolean mask of nodes with a finite offset."""
        return np.isfinite(self.dx) & np.isfinite(self.dy)

    @property
    def coverage(self) -> float:
        """Fraction of valid nodes."""
        return float(self.valid.mean()) if self.dx.size else 0.0

    def reason_counts(self) -> dict[str, int]:
        """Number of nodes per :class:`Reason`, e.g. ``{"OK": 3600, "MASKED": 12}``."""
        vals, counts = np.unique(self.reason, return_counts=True)
        return {Reason(int(v)).name: int(c) for v, c in zip(vals, counts, strict=True)}

    def grid(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """2-D (row, col) coordinates of every node, each of shape (nr, nc)."""
        rr, cc = np.meshgrid(self.rows, self.cols, indexing="ij")
        return rr, cc
