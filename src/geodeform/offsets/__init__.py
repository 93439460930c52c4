"""Sub-pixel offset tracking between two images (the matching stage of every chain).

>>> from geodeform.offsets import match
>>> field = match(ref, sec, method="ncc", chip_size=32, step=16, search_range=16)  # doctest: +SKIP

Sign convention: a feature at (row, col) in ``reference`` appears at (row + dy, col + dx) in ``secondary``;
+dx is along increasing columns (east on north-up images), +dy along increasing rows (south on north-up
images). Offsets are in pixels of the reference.

Methods (:data:`METHODS`):

``ncc``
    Coarse-to-fine masked zero-normalised cross-correlation (autoRIFT-like) with an inverse-compositional
    Gauss–Newton sub-pixel refinement on cubic B-splines, strain-bias correction and neighbour-guided
    re-search of inconsistent nodes. The default: the most accurate and the fastest.
``phase``
    Frequency-domain phase correlation with a raised-cosine window, iterative frequency masking and a
    robust phase-plane fit (COSI-Corr, Leprince et al. 2007).
``flow``
    Dense pyramidal optical flow robust to radiometric change (GeFolki-like: rank filtering, iterative
    windowed Lucas–Kanade), sampled on the node grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.offsets._common import grid_shape, node_grid
    from geodeform.offsets._types import OffsetField, Reason, reason_codes
    from geodeform.offsets.driver import METHODS, match
    from geodeform.offsets.prefilters import PREFILTERS

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_common": (
            "grid_shape",
            "node_grid",
        ),
        "_types": (
            "OffsetField",
            "Reason",
            "reason_codes",
        ),
        "driver": (
            "METHODS",
            "match",
        ),
        "prefilters": ("PREFILTERS",),
    },
)

__all__ = [
    "METHODS",
    "PREFILTERS",
    "OffsetField",
    "Reason",
    "grid_shape",
    "match",
    "node_grid",
    "reason_codes",
]
