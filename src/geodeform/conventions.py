"""Conventions every layer shares (a leaf module: it imports nothing of geodeform).

Sign convention, everywhere: a feature at (row, col) of the reference image appears at (row + dy, col + dx)
of the secondary; products on disk are in metres and m/yr with +x east (increasing map x) and +y north
(increasing map y).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DAYS_PER_YEAR", "ProductFormat"]

DAYS_PER_YEAR = 365.25
"""Days of the (Julian) year in which velocities are given: m/yr = m/day x 365.25."""

ProductFormat = Literal["netcdf", "cog"]
"""Format of an offset or velocity product: CF-1.8 NetCDF (ITS_LIVE names) or Cloud-Optimized GeoTIFF."""
