"""Result type of the matchers and the per-node reason codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from geodeform.offsets import _kernels as K

__all__ = ["OffsetField", "Reason"]


class Reason(IntEnum):
    """Why a node is NaN (``OK`` for valid nodes)."""

    OK = K.OK
    MASKED = K.MASKED  #: too few valid pixels (no-data, fill values, user mask, clouds masked upstream)
    TEXTURELESS = K.TEXTURELESS  #: the reference chip has no usable texture (flat, saturated)
    SEARCH_EDGE = K.SEARCH_EDGE  #: correlation peak on the border of the search window: widen the search
    LOW_CORRELATION = K.LOW_CORRELATION  #: best match below ``min_correlation`` (clouds, change)
    NOT_CONVERGED = K.NOT_CONVERGED  #: the sub-pixel refinement diverged or did not converge
    OUTSIDE = K.OUTSIDE  #: the match falls outside the secondary image
    OUTLIER = 7  #: rejected by the neighbourhood-consistency test


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
