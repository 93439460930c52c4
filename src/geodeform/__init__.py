"""geodeform: ground deformation from satellite images.

Sign convention used everywhere (pixels): a feature at (row, col) in the reference image appears at
(row + dy, col + dx) in the secondary image. +dx is along increasing columns, +dy along increasing rows.
On georeferenced outputs, offsets are converted to metres east/north (+x east, +y north).
"""

from __future__ import annotations

from geodeform.errors import DataError, GeodeformError, InvalidInputError, NoDataError

__version__ = "0.1.0"

__all__ = ["DataError", "GeodeformError", "InvalidInputError", "NoDataError", "__version__"]
