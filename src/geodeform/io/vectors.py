"""Vector files in any OGR format (GeoJSON, shapefile, zipped shapefile, GeoPackage, KML, FlatGeobuf, ...).

AOIs, glacier outlines, stable-ground polygons and rupture traces are read through pyogrio (which ships GDAL
in its wheel), turned into shapely geometries, and reprojected to the CRS of the grid they are used on.

CRS rules: a file's own CRS wins (``.prj`` of a shapefile, ``crs`` member of an old-style GeoJSON, the
GeoPackage's SRS); RFC 7946 GeoJSON and KML are lon/lat (EPSG:4326) by definition. A file that declares no
CRS is read in the CRS given by the caller (``crs=``); without one, it is assumed lon/lat (EPSG:4326) only
when every coordinate fits the lon/lat ranges, with a warning naming the file, and refused otherwise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.features import rasterize

from geodeform.errors import DataError, InvalidInputError, NoDataError
from geodeform.io.grid import GeoGrid

__all__ = [
    "VECTOR_SUFFIXES",
    "GeometryKind",
    "VectorLayer",
    "is_vector_file",
    "rasterize_vectors",
    "read_vectors",
    "vectors_on_grid",
]

log = logging.getLogger(__name__)

#: File name endings read as vectors (anything else is tried as a raster first).
VECTOR_SUFFIXES = (
    ".geojson",
    ".json",
    ".shp",
    ".zip",
    ".shp.zip",
    ".gpkg",
    ".kml",
    ".kmz",
    ".fgb",
    ".gml",
    ".gpx",
    ".sqlite",
    ".tab",
)

GeometryKind = Literal["polygon", "line", "any"]
"""Which geometries a caller accepts: areas (``polygon``), traces (``line``) or both (``any``)."""

_KINDS: dict[str, tuple[str, ...]] = {
    "polygon": ("Polygon", "MultiPolygon"),
    "line": ("LineString", "MultiLineString", "LinearRing"),
    "any": ("Polygon", "MultiPolygon", "LineString", "MultiLineString", "LinearRing", "Point", "MultiPoint"),
}
_LONLAT_ONLY = ("KML", "LIBKML", "GPX")


@dataclass(frozen=True)
class VectorLayer:
    """The geometries of one layer of a vector file, in one CRS.

    Attributes
    ----------
    geometries
        Shapely geometries (2-D; multi-part and collection features split into their parts).
    crs
        CRS of the coordinates (pyproj), e.g. EPSG:32607 (metres) or EPSG:4326 (x = longitude).
    path
        File read.
    layer
        Layer name inside the file.
    crs_assumed
        True when the file declares no CRS and ``crs`` was assumed (see the module notes).
    """

    geometries: tuple[Any, ...]
    crs: ProjCRS
    path: Path
    layer: str
    crs_assumed: bool = False

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in :attr:`crs` units."""
        return tuple(float(v) for v in shapely.total_bounds(np.asarray(self.geometries)))  # type: ignore[return-value]

    def union(self) -> Any:
        """All geometries merged into one (polygons repaired with ``buffer(0)``)."""
        merged = shapely.union_all(np.asarray(self.geometries))
        return merged.buffer(0) if merged.area > 0 else merged

    def to_crs(self, crs: Any) -> VectorLayer:
        """The same layer reprojected (no-op when the CRS is already ``crs``)."""
        target = ProjCRS.from_user_input(crs)
        if target == self.crs:
            return self
        to_xy = Transformer.from_crs(self.crs, target, always_xy=True)

        def apply(coords: NDArray[np.float64]) -> NDArray[np.float64]:
            x, y = to_xy.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        moved = tuple(shapely.transform(g, apply) for g in self.geometries)
        return VectorLayer(moved, target, self.path, self.layer, self.crs_assumed)


def is_vector_file(path: str | os.PathLike[str]) -> bool:
    """True when the name ends like a vector file (:data:`VECTOR_SUFFIXES`), or a folder-less ``.shp``."""
    name = Path(path).name.lower()
    return name.endswith(VECTOR_SUFFIXES)


def _parts(geom: Any) -> list[Any]:
    """Single-part geometries of a feature (Multi* and collections are split)."""
    if geom is None or geom.is_empty:
        return []
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _parts(g)]
    return [geom]


def _layer_name(path: Path, layer: str | int | None, what: str) -> str:
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio raises its own DataSourceError / DataLayerError family
        raise _open_error(path, what, exc) from exc
    names = [str(n) for n, _ in layers]
    if not names:
        raise InvalidInputError(f"{what}: {path} holds no vector layer; export the outlines into it first")
    if layer is None:
        if len(names) > 1:
            log.warning(
                "%s: %s has %d layers (%s); reading the first, %r", what, path, len(names), names, names[0]
            )
        return names[0]
    if isinstance(layer, int):
        if not 0 <= layer < len(names):
            raise InvalidInputError(f"{what}: {path} has layers 0..{len(names) - 1} ({names}), not {layer}")
        return names[layer]
    if layer not in names:
        raise InvalidInputError(f"{what}: {path} has no layer {layer!r}; its layers are {names}")
    return layer


def _open_error(path: Path, what: str, exc: Exception) -> DataError:
    return DataError(
        f"{what}: cannot read {path} as a vector file ({str(exc)[:200]}); give a GeoJSON, shapefile "
        "(.shp with .shx/.dbf/.prj, or all zipped), GeoPackage, KML or FlatGeobuf file"
    )


def _resolve_crs(
    declared: str | None, driver: str, geoms: list[Any], path: Path, crs: Any, what: str
) -> tuple[ProjCRS, bool]:
    if declared:
        src = ProjCRS.from_user_input(declared)
        if src.is_geographic:  # GDAL declares EPSG:4326 for every GeoJSON without a crs member
            why = (
                "a GeoJSON without a 'crs' member" if driver == "GeoJSON" else f"its CRS is {src.to_string()}"
            )
            _require_lonlat(geoms, path, what, why)
        return src, False
    if crs is not None:
        return ProjCRS.from_user_input(crs), False
    if driver in _LONLAT_ONLY:
        return ProjCRS.from_epsg(4326), False
    if _fits_lonlat(geoms):
        log.warning(
            "%s: %s declares no CRS; its coordinates fit longitude/latitude, so EPSG:4326 is assumed. If it "
            "is in another CRS, add it (e.g. a .prj file, or ogr2ogr -a_srs EPSG:<code>)",
            what,
            path,
        )
        return ProjCRS.from_epsg(4326), True
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.asarray(geoms))
    raise InvalidInputError(
        f"{what}: {path} declares no CRS and its coordinates "
        f"({xmin:.6g}..{xmax:.6g}, {ymin:.6g}..{ymax:.6g}) are not longitude/latitude, so its CRS cannot "
        "be guessed; add one (a .prj file next to a shapefile, or ogr2ogr -a_srs EPSG:<code> "
        "out.gpkg in.shp) and read it again"
    )


def _fits_lonlat(geoms: list[Any]) -> bool:
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.asarray(geoms))
    return bool(-180 <= xmin <= xmax <= 180 and -90 <= ymin <= ymax <= 90)


def _require_lonlat(geoms: list[Any], path: Path, what: str, why: str) -> None:
    """Refuse coordinates that cannot be longitude/latitude in a file read as lon/lat."""
    if _fits_lonlat(geoms):
        return
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.asarray(geoms))
    raise InvalidInputError(
        f"{what}: {path} is read as longitude/latitude ({why}), but its coordinates reach "
        f"({xmin:.6g}..{xmax:.6g}, {ymin:.6g}..{ymax:.6g}): they are projected. Add a 'crs' member naming "
        "their CRS (e.g. EPSG:32607), or convert the file: ogr2ogr -a_srs EPSG:<code> out.gpkg in.geojson"
    )


def read_vectors(
    path: str | os.PathLike[str],
    *,
    layer: str | int | None = None,
    kind: GeometryKind = "polygon",
    crs: Any = None,
    what: str = "vector file",
) -> VectorLayer:
    """Read the geometries of one layer of a vector file.

    Parameters
    ----------
    path
        Any vector file OGR reads: GeoJSON, shapefile (``.shp`` with its sidecars, or a ``.zip`` of them),
        GeoPackage, KML/KMZ, FlatGeobuf, GML...
    layer
        Layer name or 0-based index (default: the first; a warning names the others).
    kind
        Geometries kept: ``polygon`` (areas: AOIs, glacier outlines, stable ground), ``line`` (rupture traces)
        or ``any``. Other geometry types are dropped with a warning.
    crs
        CRS to use when the file declares none (anything pyproj reads, e.g. ``"EPSG:32607"``).
    what
        What the file is for (a config field such as ``"masks.glacier"``), used in every message.

    Returns
    -------
    VectorLayer

    Raises
    ------
    DataError
        Missing or unreadable file.
    InvalidInputError
        Unknown layer, no CRS that can be assumed, or no geometry of the wanted kind (empty layer).
    """
    import pyogrio.raw

    p = Path(path)
    if not p.exists():
        raise DataError(f"{what}: file {p} not found; check the path")
    name = _layer_name(p, layer, what)
    try:
        meta, _, wkb, _ = pyogrio.raw.read(p, layer=name, read_geometry=True, columns=[])
        driver = str(pyogrio.read_info(p, layer=name).get("driver") or "")
    except Exception as exc:
        raise _open_error(p, what, exc) from exc
    geoms = [g for g in shapely.from_wkb(wkb) if g is not None] if wkb is not None else []
    parts = [shapely.force_2d(g) for geom in geoms for g in _parts(geom)]
    if not parts:
        raise InvalidInputError(
            f"{what}: layer {name!r} of {p} is empty (no geometry); check that the right file and layer were "
            "exported"
        )
    wanted = _KINDS[kind]
    kept = [g for g in parts if g.geom_type in wanted]
    dropped = len(parts) - len(kept)
    if not kept:
        found = sorted({g.geom_type for g in parts})
        raise InvalidInputError(
            f"{what}: layer {name!r} of {p} holds {', '.join(found)} but no {kind} geometry; give "
            f"{'polygons (areas)' if kind == 'polygon' else 'lines (traces)'}"
        )
    if dropped:
        log.warning("%s: %d geometries of %s are not %s and were ignored", what, dropped, p, kind)
    if kind == "polygon":
        kept = [g if g.is_valid else g.buffer(0) for g in kept]
    src_crs, assumed = _resolve_crs(meta.get("crs"), driver, kept, p, crs, what)
    return VectorLayer(tuple(kept), src_crs, p, name, assumed)


def vectors_on_grid(
    path: str | os.PathLike[str] | VectorLayer,
    grid: GeoGrid,
    *,
    kind: GeometryKind = "polygon",
    layer: str | int | None = None,
    crs: Any = None,
    what: str = "vector file",
) -> VectorLayer:
    """The geometries of a vector file in the CRS of ``grid``, checked to overlap it.

    Raises
    ------
    NoDataError
        No geometry touches the grid (wrong file, wrong area or a wrong CRS).
    """
    vec = (
        path
        if isinstance(path, VectorLayer)
        else read_vectors(path, layer=layer, kind=kind, crs=crs, what=what)
    )
    moved = vec.to_crs(grid.crs.to_wkt())
    area = shapely.box(*grid.bounds)
    if not any(g.intersects(area) for g in moved.geometries):
        xmin, ymin, xmax, ymax = moved.bounds
        gx0, gy0, gx1, gy1 = grid.bounds
        assumed = ", assumed" if vec.crs_assumed else ""
        raise NoDataError(
            f"{what}: the geometries of {vec.path} (bounds {xmin:.0f}, {ymin:.0f}, {xmax:.0f}, {ymax:.0f} in "
            f"the grid CRS) do not overlap the job's area ({gx0:.0f}, {gy0:.0f}, {gx1:.0f}, {gy1:.0f}); "
            f"check the file, its CRS ({vec.crs.to_string()}{assumed}) or the AOI"
        )
    return moved


def rasterize_vectors(
    path: str | os.PathLike[str] | VectorLayer,
    grid: GeoGrid,
    *,
    kind: GeometryKind = "polygon",
    layer: str | int | None = None,
    crs: Any = None,
    all_touched: bool = False,
    what: str = "vector file",
) -> NDArray[np.bool_]:
    """A boolean mask on ``grid``: True on the pixels covered by the geometries of a vector file.

    Parameters
    ----------
    path
        Vector file (see :func:`read_vectors`) or an already read :class:`VectorLayer`.
    grid
        Target grid; geometries are reprojected to its CRS first.
    kind, layer, crs, what
        See :func:`read_vectors`.
    all_touched
        Burn every pixel a geometry touches (default: pixels whose centre is inside; lines always use
        ``all_touched``, else a one-pixel trace would vanish).

    Raises
    ------
    NoDataError
        The geometries do not overlap the grid, or cover no pixel centre of it.
    """
    moved = vectors_on_grid(path, grid, kind=kind, layer=layer, crs=crs, what=what)
    touched = all_touched or kind == "line"
    out = rasterize(
        [(g, 1) for g in moved.geometries],
        out_shape=grid.shape,
        transform=grid.transform,
        fill=0,
        dtype="uint8",
        all_touched=touched,
    )
    mask = out.astype(bool)
    if not mask.any():
        raise NoDataError(
            f"{what}: the geometries of {moved.path} touch the job's area but cover no pixel centre of its "
            f"{grid.shape[1]} x {grid.shape[0]} grid; use larger polygons or a finer grid"
        )
    return mask
