"""Checks shared by the processes: what their inputs name must stay inside the server's limits.

Files inside the data roots, URLs on the configured catalogue hosts, rasters of at most ``max_pixels``,
search areas of at most ``max_area_km2``. Each check returns a list of
:class:`~geodeform.service.errors.Problem` (empty when all is well), so that every problem of a request is
listed at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from geodeform.errors import InvalidInputError
from geodeform.search.catalogs import CATALOGS
from geodeform.service.errors import Problem
from geodeform.service.safety import check_url, is_url, resolve_data_folder, resolve_data_path
from geodeform.service.settings import ServiceSettings

__all__ = [
    "bbox_area_km2",
    "catalog_problems",
    "check_image",
    "inside_roots",
    "raster_problems",
    "unwrap_href",
]


def unwrap_href(value: Any) -> Any:
    """A file input as a string: OGC clients send either a string or a link object ``{"href": ...}``."""
    if isinstance(value, Mapping) and set(value) <= {"href", "type", "rel", "title"} and "href" in value:
        return value["href"]
    return value


def check_image(name: str, value: str, settings: ServiceSettings) -> tuple[Path | None, list[Problem]]:
    """An image input: a URL on a catalogue host (path None) or a file in the data roots (its path)."""
    try:
        if is_url(value):
            check_url(value, settings.catalogue_hosts)
            return None, []
        return resolve_data_path(value, settings.data_roots), []
    except InvalidInputError as exc:
        return None, [Problem(name, str(exc))]


def raster_problems(name: str, path: Path, band: int, settings: ServiceSettings) -> list[Problem]:
    """A readable raster of at most ``settings.max_pixels`` pixels, holding ``band`` (1-based)."""
    try:
        with rasterio.open(path) as src:
            problems = []
            if src.width * src.height > settings.max_pixels:
                problems.append(
                    Problem(
                        name,
                        f"image is {src.width} x {src.height} pixels, more than the {settings.max_pixels} "
                        "pixel area limit of this server; crop it",
                    )
                )
            if band > src.count:
                problems.append(Problem("band", f"{name} has {src.count} band(s), band {band} asked"))
            return problems
    except RasterioError:
        return [Problem(name, "not a readable raster (GeoTIFF expected)")]


def inside_roots(where: str, value: Any, settings: ServiceSettings, *, folder: bool = False) -> list[Problem]:
    """A path input (a file, or a folder with ``folder=True``) inside the data roots; non-strings pass
    (the schema reports them)."""
    if not isinstance(value, str):
        return []
    try:
        if folder:
            resolve_data_folder(value, settings.data_roots)
        else:
            resolve_data_path(value, settings.data_roots)
    except InvalidInputError as exc:
        return [Problem(where, str(exc))]
    return []


def catalog_problems(catalog: Any, settings: ServiceSettings) -> list[Problem]:
    """A catalogue input: a preset name, an https URL on a catalogue host, or a folder in the data roots."""
    if not isinstance(catalog, str):
        return []
    url = CATALOGS.get(catalog.strip().lower(), catalog)
    try:
        if is_url(url):
            check_url(url, settings.catalogue_hosts)
        else:
            resolve_data_folder(url, settings.data_roots)
    except InvalidInputError as exc:
        return [Problem("search.catalog", str(exc))]
    return []


def bbox_area_km2(bbox: Any) -> float | None:
    """Approximate area of a lon/lat box ``(west, south, east, north)`` in degrees, km²; None if not one.

    Degrees times 111.32 km (longitude, scaled by the cosine of the mid latitude) and 110.57 km (latitude):
    good to a few percent for the size limits it serves.
    """
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    lat = math.radians((s + n) / 2)
    return abs(e - w) * 111.32 * math.cos(lat) * abs(n - s) * 110.57
