"""Areas of interest: a bbox, a vector file (any OGR format) or an MGRS tile id, as one lon/lat geometry."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import box, mapping, shape

from geodeform.errors import InvalidInputError
from geodeform.io.vectors import read_vectors
from geodeform.search.mgrs import mgrs_square

__all__ = [
    "AOI",
    "aoi_from_bbox",
    "aoi_from_file",
    "aoi_from_geojson",
    "aoi_from_tile",
    "make_aoi",
    "utm_epsg",
]


def _reproject(geom: Any, src: int, dst: int) -> Any:
    to_xy = Transformer.from_crs(src, dst, always_xy=True)

    def apply(coords: Any) -> Any:
        x, y = to_xy.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone holding (lon, lat): 326zz north of the equator, 327zz south."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class AOI:
    """An area of interest in lon/lat (EPSG:4326, x = longitude).

    Attributes
    ----------
    geometry
        Shapely (multi)polygon, degrees.
    epsg
        UTM zone used for areas, coverage and the common grid of AOI reads (the tile's own zone for a tile).
    source
        Human-readable origin, e.g. ``bbox``, ``file.geojson``, ``tile 32TLR``.
    tile
        Normalised MGRS tile id when the AOI is, or is restricted to, a Sentinel-2 tile.
    """

    geometry: Any
    epsg: int
    source: str
    tile: str | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north), degrees."""
        return tuple(float(v) for v in self.geometry.bounds)  # type: ignore[return-value]

    def projected(self, epsg: int | None = None) -> Any:
        """The geometry in a projected CRS (default :attr:`epsg`), metres."""
        return _reproject(self.geometry, 4326, epsg or self.epsg)

    def coverage(self, footprint: dict[str, Any] | None) -> float:
        """Percentage (0-100) of the AOI area inside a GeoJSON footprint (lon/lat)."""
        if not footprint:
            return 0.0
        aoi = self.projected()
        other = _reproject(shape(footprint), 4326, self.epsg).buffer(0)
        if aoi.area == 0:
            return 100.0 if other.intersects(aoi) else 0.0
        return float(100.0 * aoi.intersection(other).area / aoi.area)

    def to_geojson(self) -> dict[str, Any]:
        """GeoJSON geometry dict (lon/lat)."""
        return dict(mapping(self.geometry))


def _finite(values: Sequence[float]) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def aoi_from_bbox(bbox: Sequence[float] | str) -> AOI:
    """AOI from ``(west, south, east, north)`` in degrees (or the string ``"w,s,e,n"``).

    Raises
    ------
    InvalidInputError
        Not four finite numbers, west >= east, south >= north, or outside -180..180 / -90..90.
    """
    if isinstance(bbox, str):
        try:
            bbox = [float(v) for v in bbox.replace(" ", "").split(",")]
        except ValueError as exc:
            raise InvalidInputError(f"bbox {bbox!r}: expected four numbers W,S,E,N in degrees") from exc
    values = list(bbox)
    if len(values) != 4 or not _finite(values):
        raise InvalidInputError(f"bbox {values!r}: expected four numbers W,S,E,N in degrees")
    west, south, east, north = (float(v) for v in values)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InvalidInputError(
            f"bbox {values!r}: need -180 <= west < east <= 180 and -90 <= south < north <= 90 "
            "(order W,S,E,N, degrees; longitude first)"
        )
    geom = box(west, south, east, north)
    c = geom.centroid
    return AOI(geom, utm_epsg(c.x, c.y), "bbox")


def _area(shapes: Sequence[Any], name: str) -> AOI:
    """One AOI from lon/lat geometries: their union; points and lines get a tiny (~0.1 m) area."""
    geom = shapely.union_all([s if s.area > 0 else s.buffer(1e-6) for s in shapes]).buffer(0)
    west, south, east, north = geom.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidInputError(
            f"AOI {name} has coordinates outside lon/lat ranges {geom.bounds}; GeoJSON must be EPSG:4326 "
            "(longitude, latitude), reproject it first (or give a file that declares its CRS)"
        )
    c = geom.centroid
    return AOI(geom, utm_epsg(c.x, c.y), name)


def aoi_from_file(path: str | os.PathLike[str], *, layer: str | int | None = None) -> AOI:
    """AOI from a vector file in any OGR format: GeoJSON, KML/KMZ, shapefile (or zipped), GeoPackage, ...

    Every geometry of the layer is reprojected to lon/lat and merged (union). A file without a CRS is read as
    lon/lat when its coordinates fit (with a warning), else refused (see
    :func:`geodeform.io.vectors.read_vectors`).

    Raises
    ------
    DataError
        The file cannot be read.
    InvalidInputError
        Empty layer, no CRS that can be assumed, or an unknown layer.
    """
    vec = read_vectors(path, layer=layer, kind="any", what="AOI").to_crs("EPSG:4326")
    return _area(vec.geometries, Path(path).name)


def aoi_from_geojson(path: str | os.PathLike[str] | dict[str, Any]) -> AOI:
    """AOI from a GeoJSON dict (RFC 7946, lon/lat), or from a vector file (see :func:`aoi_from_file`).

    Several features are merged (union).

    Raises
    ------
    DataError
        The file cannot be read.
    InvalidInputError
        Not GeoJSON, no polygonal/point geometry, or coordinates outside lon/lat ranges.
    """
    if not isinstance(path, dict):
        return aoi_from_file(path)
    doc, name = path, "GeoJSON"
    kind = doc.get("type")
    if kind == "FeatureCollection":
        geoms = [f.get("geometry") for f in doc.get("features", [])]
    elif kind == "Feature":
        geoms = [doc.get("geometry")]
    else:
        geoms = [doc]
    try:
        shapes = [shape(g) for g in geoms if g]
    except Exception as exc:
        raise InvalidInputError(f"AOI {name}: not a GeoJSON geometry ({exc})") from exc
    if not shapes:
        raise InvalidInputError(
            f"AOI {name} holds no geometry; give a Polygon or a FeatureCollection of them"
        )
    return _area(shapes, name)


def aoi_from_tile(tile: str) -> AOI:
    """AOI covering a Sentinel-2 tile (MGRS id such as ``32TLR``), in the tile's own UTM zone."""
    square = mgrs_square(tile)
    geom = shapely.Polygon(square.polygon())
    return AOI(geom, square.epsg, f"tile {square.tile}", square.tile)


def make_aoi(
    *,
    bbox: Sequence[float] | str | None = None,
    geojson: str | os.PathLike[str] | dict[str, Any] | None = None,
    tile: str | None = None,
    aoi: AOI | None = None,
) -> AOI:
    """Build one AOI from the user's options.

    A tile alone is the AOI; a tile with a bbox or GeoJSON restricts scenes to that tile and the AOI to the
    given geometry, which must then intersect the tile.

    Raises
    ------
    InvalidInputError
        No AOI given, bbox and GeoJSON both given, or the AOI lies outside the tile.
    """
    if aoi is not None:
        return aoi
    if bbox is not None and geojson is not None:
        raise InvalidInputError("give either a bbox or a GeoJSON AOI, not both")
    if bbox is None and geojson is None:
        if tile is None:
            raise InvalidInputError(
                "no area of interest: give a bbox, a vector file (GeoJSON, KML, ...) or an MGRS tile id"
            )
        return aoi_from_tile(tile)
    area = aoi_from_bbox(bbox) if bbox is not None else aoi_from_geojson(geojson)  # type: ignore[arg-type]
    if tile is None:
        return area
    tile_aoi = aoi_from_tile(tile)
    if not area.geometry.intersects(tile_aoi.geometry):
        w, s, e, n = (round(v, 3) for v in tile_aoi.bbox)
        raise InvalidInputError(
            f"the AOI ({area.source}) lies outside tile {tile_aoi.tile} (lon {w}..{e}, lat {s}..{n}); "
            "check the tile id or the AOI coordinates (longitude first)"
        )
    return AOI(area.geometry, tile_aoi.epsg, f"{area.source} in tile {tile_aoi.tile}", tile_aoi.tile)
