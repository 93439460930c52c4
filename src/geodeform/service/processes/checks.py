"""Checks shared by the processes: what their inputs name and ask for must stay inside the server's limits.

Files in the caller's data scope (:mod:`geodeform.service.paths`), URLs on the configured catalogue hosts,
rasters of at most ``max_pixels``, search areas of at most ``max_area_km2``, at most ``max_nodes_per_pair``
matcher nodes per pair and ``max_nodes_per_job`` per job. Each check returns a list of
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

from geodeform.errors import GeodeformError, InvalidInputError
from geodeform.offsets import grid_shape
from geodeform.search.catalogs import CATALOGS
from geodeform.service.errors import Problem
from geodeform.service.paths import PathKind, resolve_input
from geodeform.service.processes.base import InputContext
from geodeform.service.safety import check_url, is_url
from geodeform.service.settings import ServiceSettings

__all__ = [
    "bbox_area_km2",
    "catalog_problems",
    "check_image",
    "node_count",
    "node_problems",
    "path_problems",
    "raster_shape",
    "unwrap_href",
]


def unwrap_href(value: Any) -> Any:
    """A file input as a string: OGC clients send either a string or a link object ``{"href": ...}``."""
    if isinstance(value, Mapping) and set(value) <= {"href", "type", "rel", "title"} and "href" in value:
        return value["href"]
    return value


def check_image(name: str, value: str, context: InputContext) -> tuple[Path | None, list[Problem]]:
    """An image input: a URL on a catalogue host (path None) or a file in the caller's scope (its path)."""
    try:
        if is_url(value):
            check_url(value, context.settings.catalogue_hosts)
            return None, []
        return resolve_input(value, context.scope), []
    except InvalidInputError as exc:
        return None, [Problem(name, str(exc))]


def raster_shape(
    name: str, path: Path, band: int, settings: ServiceSettings
) -> tuple[tuple[int, int] | None, list[Problem]]:
    """(rows, columns) of a readable raster of at most ``settings.max_pixels`` pixels holding ``band``."""
    try:
        with rasterio.open(path) as src:
            shape, count = (src.height, src.width), src.count
    except (RasterioError, OSError):
        return None, [Problem(name, "not a readable raster (GeoTIFF expected)")]
    problems = []
    if shape[0] * shape[1] > settings.max_pixels:
        problems.append(
            Problem(
                name,
                f"image is {shape[1]} x {shape[0]} pixels, more than this server's limit of "
                f"{settings.max_pixels:,} pixels per image (max_pixels_per_image); crop it",
            )
        )
    if band > count:
        problems.append(Problem("band", f"{name} has {count} band(s), band {band} asked"))
    return shape, problems


def path_problems(where: str, value: Any, context: InputContext, *, kind: PathKind = "file") -> list[Problem]:
    """A path input naming a file (or a folder) in the caller's scope; non-strings pass (the schema says)."""
    if not isinstance(value, str):
        return []
    try:
        resolve_input(value, context.scope, kind=kind)
    except InvalidInputError as exc:
        return [Problem(where, str(exc))]
    return []


def catalog_problems(catalog: Any, context: InputContext) -> list[Problem]:
    """A catalogue input: a preset name, an https URL on a catalogue host, or a folder in the caller's
    scope."""
    if not isinstance(catalog, str):
        return []
    url = CATALOGS.get(catalog.strip().lower(), catalog)
    try:
        if is_url(url):
            check_url(url, context.settings.catalogue_hosts)
        else:
            resolve_input(url, context.scope, kind="folder")
    except InvalidInputError as exc:
        return [Problem("search.catalog", str(exc))]
    return []


def node_count(shape: tuple[int, int], chip: int, step: int) -> int:
    """Matcher nodes of one pair on an image of ``shape`` (rows, columns); 0 when no chip fits."""
    try:
        rows, cols = grid_shape(shape, chip, step)
    except (GeodeformError, ValueError):
        return 0
    return int(rows) * int(cols)


def node_problems(where: str, per_pair: int, pairs: int, settings: ServiceSettings) -> list[Problem]:
    """Nodes per pair and per job within ``max_nodes_per_pair`` / ``max_nodes_per_job``."""
    if per_pair > settings.max_nodes_per_pair:
        return [
            Problem(
                where,
                f"{per_pair:,} matcher nodes per pair, more than this server's limit of "
                f"{settings.max_nodes_per_pair:,} (max_nodes_per_pair): raise the step or crop the images",
            )
        ]
    if per_pair * pairs > settings.max_nodes_per_job:
        return [
            Problem(
                where,
                f"{pairs} pairs x {per_pair:,} nodes = {per_pair * pairs:,} matcher nodes, more than this "
                f"server's limit of {settings.max_nodes_per_job:,} per job (max_nodes_per_job): raise the "
                "step, crop the images or make fewer pairs",
            )
        ]
    return []


def bbox_area_km2(bbox: Any) -> float | None:
    """Approximate area of a lon/lat box ``(west, south, east, north)`` in degrees, km²; None if not one.

    Degrees times 111.32 km (longitude, scaled by the cosine of the mid latitude) and 110.57 km (latitude):
    good to a few percent for the size limits it serves.
    """
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError, OverflowError):
        return None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        return None
    lat = math.radians((s + n) / 2)
    return abs(e - w) * 111.32 * math.cos(lat) * abs(n - s) * 110.57
