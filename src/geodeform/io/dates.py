"""Acquisition dates of an image pair: from ``--dates``, raster metadata tags or file names.

All datetimes are timezone-aware UTC. Velocities use a Julian year of 365.25 days.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from geodeform.conventions import DAYS_PER_YEAR, date_in_path
from geodeform.errors import InvalidInputError
from geodeform.io.raster import RasterPair

__all__ = [
    "DAYS_PER_YEAR",
    "AcquisitionDates",
    "PairDates",
    "acquisition_date",
    "date_from_path",
    "pair_dates",
    "parse_date",
    "parse_dates_option",
]

# Tags that name the acquisition time, most specific first. TIFFTAG_DATETIME comes last (after the file name)
# because GDAL and most tools set it to the *processing* time.
_ACQUISITION_TAGS = (
    "ACQUISITION_DATETIME",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "datetime",
    "start_datetime",
)


@dataclass(frozen=True)
class AcquisitionDates:
    """Acquisition times of the reference and secondary images (UTC).

    Attributes
    ----------
    reference, secondary
        Timezone-aware UTC datetimes.
    """

    reference: datetime
    secondary: datetime

    @property
    def dt_days(self) -> float:
        """Secondary minus reference, days (positive when the secondary is later)."""
        return (self.secondary - self.reference) / timedelta(days=1)

    @property
    def center(self) -> datetime:
        """Midpoint of the two acquisitions, UTC."""
        return self.reference + (self.secondary - self.reference) / 2

    def check_order(self) -> None:
        """Raise ``InvalidInputError`` if the secondary is older than the reference (velocity sign)."""
        if self.dt_days < 0:
            raise InvalidInputError(
                f"the secondary ({self.secondary:%Y-%m-%d %H:%M}) is older than the reference "
                f"({self.reference:%Y-%m-%d %H:%M}); swap REF and SEC (or the two --dates) "
                "so that velocities have the right sign"
            )


def parse_date(text: str) -> datetime:
    """Parse an ISO date/datetime, a TIFF ``YYYY:MM:DD HH:MM:SS`` stamp or ``YYYYMMDD`` into UTC.

    Naive values are taken as UTC.

    Raises
    ------
    InvalidInputError
        If ``text`` is none of these forms.
    """
    s = text.strip()
    tiff = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", s)
    if tiff:
        s = "{}-{}-{}T{}:{}:{}".format(*tiff.groups())
    elif re.fullmatch(r"\d{8}", s):
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    try:
        value = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(f"cannot read {text!r} as a date; use YYYY-MM-DD (e.g. 2020-01-31)") from exc
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_dates_option(text: str) -> AcquisitionDates:
    """Parse ``"REF_DATE,SEC_DATE"`` (e.g. ``"2020-01-01,2020-02-01"``) as given on the command line."""
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) != 2:
        raise InvalidInputError(f"--dates needs two dates separated by a comma (REF,SEC), got {text!r}")
    return AcquisitionDates(parse_date(parts[0]), parse_date(parts[1]))


def date_from_path(path: str | Path) -> datetime | None:
    """The acquisition date in a file's name, else in the names of the folders above it, or None.

    The first valid ``YYYYMMDD`` wins (:func:`geodeform.conventions.date_in_path`): the file name
    (``LC08_L2SP_001062_20201031_20201106_02_T2_SR_B4.TIF``, ``T33TWM_20230813T100031_B04_10m.jp2``), then up
    to five parent folders (an Earth Search scene folder ``S2B_33TWM_20230813_0_L2A/B04.tif``, a ``.SAFE``
    product). Midnight UTC of that day.
    """
    d = date_in_path(path)
    return None if d is None else datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def acquisition_date(path: str | Path, tags: Mapping[str, str]) -> datetime | None:
    """Best guess of when an image was acquired, or None.

    Order: acquisition tags (``ACQUISITION_DATETIME``, ``ACQUISITION_DATE``, ``DATE_ACQUIRED``,
    ``SENSING_TIME``, ...), then the first valid ``YYYYMMDD`` in the file name or the folders above it
    (:func:`date_from_path`: the acquisition date in Landsat / Sentinel-2 product names), then
    ``TIFFTAG_DATETIME`` (often the processing time).
    """
    upper = {k.upper(): v for k, v in tags.items()}
    for key in _ACQUISITION_TAGS:
        value = upper.get(key.upper())
        if value:
            try:
                return parse_date(value)
            except InvalidInputError:
                continue
    from_name = date_from_path(path)
    if from_name is not None:
        return from_name
    value = upper.get("TIFFTAG_DATETIME")
    if value:
        try:
            return parse_date(value)
        except InvalidInputError:
            return None
    return None


class PairDates(NamedTuple):
    """Acquisition dates of a pair and where they came from.

    Attributes
    ----------
    dates
        The dates, or None when they are unknown (then only displacements can be computed).
    source
        ``"--dates"`` (given as text ``REF,SEC``), ``"given"``, ``"metadata / file names"``, or why they are
        unknown (a sentence naming the file).
    """

    dates: AcquisitionDates | None
    source: str


def pair_dates(pair: RasterPair, given: AcquisitionDates | str | None = None) -> PairDates:
    """The acquisition dates of a pair: ``given``, else from the rasters' tags or file names.

    Parameters
    ----------
    pair
        The pair read by :func:`geodeform.io.read_pair` (its tags and paths are looked at).
    given
        Dates known by the caller, or the text ``"REF,SEC"`` of the ``--dates`` option.

    Raises
    ------
    InvalidInputError
        ``given`` text that is not two dates separated by a comma.
    """
    if isinstance(given, AcquisitionDates):
        return PairDates(given, "given")
    if given:
        return PairDates(parse_dates_option(given), "--dates")
    ref = acquisition_date(pair.reference.path, pair.reference.tags)
    sec = acquisition_date(pair.secondary.path, pair.secondary.tags)
    if ref is None or sec is None:
        missing = pair.reference.path.name if ref is None else pair.secondary.path.name
        return PairDates(None, f"unknown for {missing}: velocities not computed (pass --dates REF,SEC)")
    return PairDates(AcquisitionDates(ref, sec), "metadata / file names")
