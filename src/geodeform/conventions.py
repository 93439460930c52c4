"""Conventions every layer shares (a leaf module: it imports nothing of geodeform).

Sign convention, everywhere: a feature at (row, col) of the reference image appears at (row + dy, col + dx)
of the secondary; products on disk are in metres and m/yr with +x east (increasing map x) and +y north
(increasing map y).
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Literal

__all__ = ["DAYS_PER_YEAR", "ProductFormat", "date_in_name", "date_in_path"]

DAYS_PER_YEAR = 365.25
"""Days of the (Julian) year in which velocities are given: m/yr = m/day x 365.25."""

ProductFormat = Literal["netcdf", "cog"]
"""Format of an offset or velocity product: CF-1.8 NetCDF (ITS_LIVE names) or Cloud-Optimized GeoTIFF."""


# YYYYMMDD not inside a longer number: the acquisition date of Sentinel-2 (``S2B_MSIL2A_20230813T100031_...``,
# ``S2B_33TWM_20230813_0_L2A``) and Landsat (``LC08_L2SP_001062_20201031_20201106_02_T2``) product names comes
# first, before their processing dates.
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")


def date_in_name(name: str) -> date | None:
    """The first valid ``YYYYMMDD`` date in a file or folder name (years 1900-2099), or None.

    Sentinel-2 and Landsat product names carry the acquisition date first and processing dates after it,
    so the first match is the acquisition date.
    """
    for m in _NAME_DATE.finditer(name):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:  # e.g. 20230231
            continue
    return None


# Folders above a band file looked at for a date: an Earth Search scene folder (``S2B_33TWM_20230813_0_L2A/
# B04.tif``) is one level up, a SAFE product (``*.SAFE/GRANULE/<granule>/IMG_DATA/R10m/``) four.
_NAME_DEPTH = 5


def date_in_path(path: str | os.PathLike[str]) -> date | None:
    """The acquisition date in a file's name, else in the names of the (up to five) folders above it.

    The first valid ``YYYYMMDD`` wins (:func:`date_in_name`): the file name
    (``LC08_L2SP_001062_20201031_20201106_02_T2_SR_B4.TIF``, ``T33TWM_20230813T100031_B04_10m.jp2``), then the
    folders (an Earth Search scene folder ``S2B_33TWM_20230813_0_L2A/B04.tif``, a ``.SAFE`` product).
    """
    p = Path(path)
    for part in [p.name, *(q.name for q in list(p.parents)[:_NAME_DEPTH])]:
        d = date_in_name(part)
        if d is not None:
            return d
    return None
