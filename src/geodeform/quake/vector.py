"""Rupture traces as vector data: read a user's trace onto a grid, write a detected one as GeoJSON.

Traces are GeoJSON, the vector format the project reads (as AOIs and masks), parsed with the standard
library: RFC 7946 longitude/latitude on WGS 84 unless the file carries a legacy ``crs`` member or the caller
names the CRS. Convert other formats first, e.g. ``ogr2ogr -f GeoJSON trace.geojson trace.shp``.

Grid coordinates follow :mod:`geodeform.io.grid`: (row, col) with the centre of cell (i, j) at (i, j).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pyproj import Transformer
from rasterio.crs import CRS

from geodeform.errors import DataError, InvalidInputError
from geodeform.io import GeoGrid, apply_transform, atomic_output
from geodeform.quake.errors import TraceCRSError, TraceOutsideError

__all__ = ["read_trace", "trace_to_geojson", "write_trace_geojson"]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

_GEOJSON_SUFFIXES = (".geojson", ".json")


def _geojson_crs(doc: dict[str, Any]) -> CRS | None:
    """The legacy (GeoJSON 2008) ``crs`` member, if any."""
    member = doc.get("crs")
    if not member:
        return None
    name = (member.get("properties") or {}).get("name")
    if not name:
        raise TraceCRSError(
            f"the GeoJSON 'crs' member {member!r} has no properties.name; write it as "
            '{"type": "name", "properties": {"name": "EPSG:32636"}} or pass crs=...'
        )
    try:
        return CRS.from_user_input(str(name).replace("urn:ogc:def:crs:", "").replace("::", ":"))
    except Exception as exc:
        raise TraceCRSError(f"the GeoJSON 'crs' member names {name!r}, which is not a known CRS") from exc


def _coords(coords: Any) -> F64:
    try:
        a = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"trace coordinates are not numbers: {str(coords)[:80]}") from exc
    if a.ndim != 2 or a.shape[1] < 2:
        raise InvalidInputError(f"a LineString needs [[x, y], ...] coordinates, got {str(coords)[:80]}")
    return a[:, :2]


def _lines(geometry: dict[str, Any]) -> list[F64]:
    kind = geometry.get("type")
    coords = geometry.get("coordinates") or []
    if kind == "LineString":
        return [_coords(coords)]
    if kind == "MultiLineString":
        return [_coords(c) for c in coords]
    if kind == "GeometryCollection":
        return [ln for g in geometry.get("geometries", []) for ln in _lines(g)]
    raise InvalidInputError(
        f"a rupture trace must be a LineString or MultiLineString, got a {kind!r} geometry"
    )


def _geojson_lines(doc: dict[str, Any]) -> list[F64]:
    kind = doc.get("type")
    if kind == "FeatureCollection":
        return [ln for f in doc.get("features", []) for ln in _geojson_lines(f)]
    if kind == "Feature":
        return _lines(doc.get("geometry") or {})
    return _lines(doc)


def _chain(lines: list[F64]) -> F64:
    """Join line parts end to end, nearest ends first, starting from the longest part."""
    parts = [ln for ln in lines if len(ln) >= 2]
    if not parts:
        raise InvalidInputError("the trace has no line with two or more vertices")
    parts.sort(key=lambda p: -float(np.hypot(*np.diff(p, axis=0).T).sum()))
    chain = parts.pop(0)
    while parts:
        best = None
        for k, p in enumerate(parts):
            for rev_chain in (False, True):
                for rev_part in (False, True):
                    a = chain[0] if rev_chain else chain[-1]
                    b = p[-1] if rev_part else p[0]
                    d = float(np.hypot(*(a - b)))
                    if best is None or d < best[0]:
                        best = (d, k, rev_chain, rev_part)
        assert best is not None
        _, k, rev_chain, rev_part = best
        p = parts.pop(k)
        p = p[::-1] if rev_part else p
        chain = np.concatenate([p[::-1], chain]) if rev_chain else np.concatenate([chain, p])
    return chain


def read_trace(
    source: str | os.PathLike[str] | dict[str, Any], grid: GeoGrid, *, crs: Any | None = None
) -> F64:
    """Read a rupture trace from a vector file (or a GeoJSON mapping) onto a grid.

    Parameters
    ----------
    source
        Path of a GeoJSON file (``.geojson``/``.json``), or a GeoJSON mapping (geometry, Feature or
        FeatureCollection). LineStrings and MultiLineStrings; several parts are joined end to end
        (nearest ends first).
    grid
        Target grid, e.g. :func:`geodeform.io.node_grid` of an offset field or a mosaic's grid.
    crs
        CRS of the coordinates when the file does not declare one (it overrides a declared one).
        Without either, GeoJSON coordinates are longitude/latitude (RFC 7946).

    Returns
    -------
    ndarray, shape (N, 2)
        (row, col) vertices on ``grid`` (cell centre (i, j) at (i, j)), densified to at most two cells
        apart so that long straight segments in geographic coordinates follow the projection.

    Raises
    ------
    TraceCRSError
        Coordinates that are not longitude/latitude with no CRS declared or given; an unknown CRS.
    TraceOutsideError
        The trace does not cross the grid.
    DataError
        The file is missing or is not valid JSON.
    InvalidInputError
        Not a GeoJSON file; no line geometry; malformed coordinates.
    """
    declared: CRS | None = None
    if isinstance(source, dict):
        lines, declared, label = _geojson_lines(source), _geojson_crs(source), "the GeoJSON mapping"
    else:
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise DataError(f"trace file {label!r} does not exist")
        if path.suffix.lower() not in _GEOJSON_SUFFIXES:
            raise InvalidInputError(
                f"trace file {label!r} is not GeoJSON (.geojson / .json); convert it, e.g. "
                f"ogr2ogr -f GeoJSON trace.geojson {path.name}"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"trace file {label!r} is not valid GeoJSON: {exc}") from exc
        lines, declared = _geojson_lines(doc), _geojson_crs(doc)
    src = CRS.from_user_input(crs) if crs is not None else declared
    coords = np.concatenate([ln for ln in lines if len(ln)]) if lines else np.empty((0, 2))
    if src is None:
        lonlat = (np.abs(coords[:, 0]) <= 180).all() and (np.abs(coords[:, 1]) <= 90).all()
        if not lonlat:
            x, y = np.median(coords, axis=0)
            raise TraceCRSError(
                f"{label}: the coordinates (around x={x:.6g}, y={y:.6g}) are not longitude/latitude and "
                "no CRS is declared; add a 'crs' member to the GeoJSON or pass crs='EPSG:<code>' (the CRS "
                "of the coordinates, e.g. EPSG:32636 for UTM 36N)"
            )
        src = CRS.from_epsg(4326)
    elif src.is_geographic and not (
        (np.abs(coords[:, 0]) <= 180).all() and (np.abs(coords[:, 1]) <= 90).all()
    ):
        raise TraceCRSError(
            f"{label}: the CRS {src.to_string()} is geographic but the coordinates exceed ±180/±90 degrees; "
            "give the CRS the coordinates are really in"
        )
    rc = _to_grid(_chain(lines), src, grid)
    _require_crossing(rc, grid, label)
    return rc


def _to_grid(line: F64, src: CRS, grid: GeoGrid) -> F64:
    fwd = Transformer.from_crs(src.to_wkt(), grid.crs.to_wkt(), always_xy=True)
    inv = ~grid.transform

    def rowcol(p: F64) -> F64:
        x, y = fwd.transform(p[:, 0], p[:, 1])
        c, r = apply_transform(inv, x, y)
        return np.c_[r - 0.5, c - 0.5]

    rc = rowcol(line)
    if not np.isfinite(rc).all():
        raise TraceCRSError(
            f"the trace cannot be projected from {src.to_string()} to the grid's {grid.crs.to_string()}; "
            "check its CRS"
        )
    seg = np.hypot(*np.diff(rc, axis=0).T)
    pieces = [line[:1]]
    for k, n in enumerate(np.maximum(1, np.ceil(seg / 2.0)).astype(int)):
        f = (np.arange(1, n + 1) / n)[:, None]
        pieces.append(line[k] + f * (line[k + 1] - line[k]))
    return rowcol(np.concatenate(pieces))


def _require_crossing(rc: F64, grid: GeoGrid, label: str) -> None:
    h, w = grid.shape
    inside = (rc[:, 0] >= -0.5) & (rc[:, 0] <= h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] <= w - 0.5)
    if not inside.any():
        b = grid.bounds
        raise TraceOutsideError(
            f"{label}: the trace does not cross the area ({grid.crs.to_string()} x {b[0]:.0f}..{b[2]:.0f}, "
            f"y {b[1]:.0f}..{b[3]:.0f}); check the trace's CRS, or choose images / tiles that cover it"
        )
    if inside.mean() < 0.5:
        log.warning("%s: only %.0f %% of the trace lies on the grid", label, 100 * inside.mean())


def trace_to_geojson(
    trace: npt.ArrayLike,
    grid: GeoGrid,
    *,
    crs: Any = "EPSG:4326",
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A trace on a grid as a GeoJSON Feature (LineString).

    Parameters
    ----------
    trace
        (N, 2) (row, col) vertices on ``grid``.
    grid
        Grid of the vertices.
    crs
        Output CRS. EPSG:4326 (default) writes RFC 7946 longitude/latitude; any other CRS adds the
        legacy ``crs`` member naming it, which :func:`read_trace`, GDAL and QGIS read.
    properties
        Feature properties (JSON-serialisable).

    Returns
    -------
    dict
        A GeoJSON Feature.
    """
    t = np.asarray(trace, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or len(t) < 2:
        raise InvalidInputError(f"trace must be an (N ≥ 2, 2) array of (row, col) vertices, got {t.shape}")
    dst = CRS.from_user_input(crs)
    x, y = apply_transform(grid.transform, t[:, 1] + 0.5, t[:, 0] + 0.5)
    ox, oy = Transformer.from_crs(grid.crs.to_wkt(), dst.to_wkt(), always_xy=True).transform(x, y)
    digits = 7 if dst.is_geographic else 3
    coords = [[round(float(a), digits), round(float(b), digits)] for a, b in zip(ox, oy, strict=True)]
    feature: dict[str, Any] = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": dict(properties or {}),
    }
    if dst != CRS.from_epsg(4326):
        epsg = dst.to_epsg()
        name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else dst.to_wkt()
        feature["crs"] = {"type": "name", "properties": {"name": name}}
    return feature


def write_trace_geojson(
    path: str | os.PathLike[str],
    trace: npt.ArrayLike,
    grid: GeoGrid,
    *,
    crs: Any = "EPSG:4326",
    properties: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`trace_to_geojson` to ``path`` atomically; returns the path."""
    feature = trace_to_geojson(trace, grid, crs=crs, properties=properties)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(feature, indent=1), encoding="utf-8")
    return Path(path)
