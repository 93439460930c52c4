"""MGRS 100 km squares and Sentinel-2 tiles: ``32TLR`` -> UTM bounds and a lon/lat polygon.

Implemented from the MGRS definition (no mgrs package): column letters cycle through three sets of eight
(A-H, J-R, S-Z) by zone, row letters through A-V (I and O skipped) every 2000 km, shifted by five letters in
even zones; the latitude band fixes which 2000 km cycle applies. The Norway/Svalbard zone exceptions are not
handled (Sentinel-2 tiles there still follow the regular grid).

A Sentinel-2 tile is 109.8 km x 109.8 km (1830 pixels of 60 m), overlapping its neighbours by about 9.8 km.
Its upper-left corner is the MGRS square's upper-left corner snapped onto the 60 m grid, west and north
(northings counted from the equator, so south of it without the 10 000 km false northing): 33TWM spans
x 499980-609780, y 5090220-5200020; 32TMS starts at x 399960; 24MUA at y 9600040. This rule reproduces the
``proj:transform`` of every Sentinel-2 item in the test catalogue.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

from geodeform.errors import InvalidInputError

__all__ = ["S2_TILE_SIZE", "MGRSSquare", "mgrs_square", "parse_tile_id"]

S2_TILE_SIZE = 109_800.0  # m
_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROWS = "ABCDEFGHJKLMNPQRSTUV"
# Lowest northing (m, in the hemisphere's false-northing frame) of each latitude band.
_MIN_NORTHING = dict(
    zip(
        _BANDS,
        (1.1, 2.0, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1, 0.0, 0.8, 1.7, 2.6, 3.5, 4.4, 5.3, 6.2, 7.0, 7.9),
        strict=True,
    )
)
_TILE_RE = re.compile(r"^(?:MGRS-|T)?(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


def parse_tile_id(tile: str) -> str:
    """Normalise ``32TLR`` / ``T32TLR`` / ``MGRS-32TLR`` to ``32TLR`` (zone zero-padded to two digits).

    Raises
    ------
    InvalidInputError
        Not an MGRS 100 km square id.
    """
    match = _TILE_RE.match(str(tile).strip().upper())
    if not match or not 1 <= int(match.group(1)) <= 60:
        raise InvalidInputError(
            f"{tile!r} is not an MGRS tile id: expected zone (1-60), latitude band (C-X without I/O) and "
            "two 100 km square letters, e.g. 32TLR"
        )
    zone, band, col, row = match.groups()
    return f"{int(zone):02d}{band}{col}{row}"


@dataclass(frozen=True)
class MGRSSquare:
    """One MGRS 100 km square and the Sentinel-2 tile built on it.

    Attributes
    ----------
    tile
        Normalised id, e.g. ``32TLR``.
    epsg
        UTM CRS of the square (326zz north, 327zz south).
    square_bounds
        (xmin, ymin, xmax, ymax) of the 100 km square in that CRS, metres.
    """

    tile: str
    zone: int
    band: str
    epsg: int
    square_bounds: tuple[float, float, float, float]

    @property
    def s2_bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the Sentinel-2 tile (109.8 km square), metres in :attr:`epsg`."""
        x0, _, _, y1 = self.square_bounds
        false_northing = 0.0 if self.epsg < 32700 else 10_000_000.0
        left = math.floor(x0 / 60.0) * 60.0
        top = math.ceil((y1 - false_northing) / 60.0) * 60.0 + false_northing
        return (left, top - S2_TILE_SIZE, left + S2_TILE_SIZE, top)

    def polygon(self, *, sentinel2: bool = True, points_per_edge: int = 11) -> list[tuple[float, float]]:
        """Closed lon/lat ring of the tile (or of the bare MGRS square), densified so it stays accurate."""
        xmin, ymin, xmax, ymax = self.s2_bounds if sentinel2 else self.square_bounds
        t = np.linspace(0.0, 1.0, points_per_edge)[:-1]
        xs = np.concatenate(
            [xmin + (xmax - xmin) * t, np.full_like(t, xmax), xmax - (xmax - xmin) * t, np.full_like(t, xmin)]
        )
        ys = np.concatenate(
            [np.full_like(t, ymin), ymin + (ymax - ymin) * t, np.full_like(t, ymax), ymax - (ymax - ymin) * t]
        )
        to_ll = Transformer.from_crs(self.epsg, 4326, always_xy=True)
        lon, lat = to_ll.transform(xs, ys)
        ring = [(float(a), float(b)) for a, b in zip(lon, lat, strict=True)]
        return [*ring, ring[0]]


def mgrs_square(tile: str) -> MGRSSquare:
    """Compute the MGRS 100 km square of a tile id (Sentinel-2 tiles use these ids).

    Parameters
    ----------
    tile
        ``32TLR``, ``T32TLR`` or ``MGRS-32TLR``.

    Raises
    ------
    InvalidInputError
        Malformed id, or letters that do not exist in that zone/latitude band.
    """
    norm = parse_tile_id(tile)
    zone, band, col, row = int(norm[:2]), norm[2], norm[3], norm[4]
    columns = _COLUMN_SETS[(zone - 1) % 3]
    if col not in columns:
        raise InvalidInputError(
            f"tile {norm}: column letter {col!r} does not exist in UTM zone {zone} "
            f"(zone {zone} uses {columns[0]}-{columns[-1]})"
        )
    easting = (columns.index(col) + 1) * 100_000.0
    row_index = (_ROWS.index(row) - (5 if zone % 2 == 0 else 0)) % len(_ROWS)
    northing = row_index * 100_000.0
    min_northing = _MIN_NORTHING[band] * 1e6
    while northing < min_northing:
        northing += 2_000_000.0
    epsg = (32600 if band >= "N" else 32700) + zone
    square = MGRSSquare(
        norm, zone, band, epsg, (easting, northing, easting + 100_000.0, northing + 100_000.0)
    )
    _check_band(square)
    return square


def _check_band(square: MGRSSquare) -> None:
    """Reject row letters whose square lies far outside the latitude band (they name no real tile)."""
    to_ll = Transformer.from_crs(square.epsg, 4326, always_xy=True)
    x0, y0, x1, y1 = square.square_bounds
    _, lat = to_ll.transform((x0 + x1) / 2, (y0 + y1) / 2)
    south = -80.0 + 8.0 * _BANDS.index(square.band)
    north = 84.0 if square.band == "X" else south + 8.0
    if not south - 1.0 <= lat <= north + 1.0:
        raise InvalidInputError(
            f"tile {square.tile}: row letter {square.tile[4]!r} falls at latitude {lat:.1f}, outside band "
            f"{square.band} ({south:g} to {north:g}); check the tile id"
        )
