"""The map page (``/map``) and the small JSON/PNG endpoints it needs besides the OGC API.

The page itself (HTML, JS, CSS and the vendored Leaflet) is public: it holds no data and asks for the API
token, which it then sends as ``Authorization: Bearer`` on every call. Everything under ``/map/api`` needs
that token and only ever reads the caller's own jobs (an administrator reads all), exactly like ``/jobs``:

- ``GET /map/api/scenes``: catalogue search with AOI cloud % (:func:`geodeform.search.search`), on the
  catalogues the server allows (presets or URLs on its catalogue hosts, folders in its data roots);
- ``GET /map/api/tiles/{tile}``: outline of an MGRS tile in lon/lat;
- ``GET /map/api/jobs/{id}/overlay.json`` + ``overlay.png``: the job's speed map warped to EPSG:4326,
  coloured with a fixed colour map (viridis, 0 to a rounded 98th percentile), with its legend;
- ``GET /map/api/jobs/{id}/series?lon=&lat=``: east/north cumulative displacement (m) per date at the
  nearest valid node of the job's ``timeseries.nc``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from shapely.geometry import mapping

# Scene search and the map overlays load on the first request that needs them (geodeform.lazy): a server
# that never shows the page does not import them.
from geodeform import search as scene_search
from geodeform import workflows
from geodeform.config import PRESETS, MatchingConfig, PairsConfig
from geodeform.errors import DataError, GeodeformError, InvalidInputError, NoDataError
from geodeform.io import media_type
from geodeform.search.catalogs import CATALOGS
from geodeform.service.accounts import user_scope
from geodeform.service.auth import User
from geodeform.service.deps import JobId, Settings, Store, base_url, own_job
from geodeform.service.errors import OGCError, invalid_parameter
from geodeform.service.paths import DataScope, resolve_input
from geodeform.service.processes import bbox_area_km2
from geodeform.service.safety import check_url, is_url
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobInfo

if TYPE_CHECKING:
    from geodeform.workflows.maps import PointSeries, SpeedOverlay

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["Map page"])

STATIC = Path(__file__).resolve().parent.parent / "static"
_STATIC_SUFFIXES = (".html", ".js", ".css", ".png", ".svg", ".txt")
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._/-]*")
_NO_STORE = {"Cache-Control": "private, no-store"}


def _not_found(title: str, detail: str) -> OGCError:
    return OGCError(404, title, detail)


def _product(settings: ServiceSettings, job: JobInfo, keys: tuple[str, ...], what: str) -> Path:
    """The job's result file recorded under one of ``keys``, inside its job folder."""
    if job.status != "successful" or job.dismiss_requested:
        raise _not_found("Result not ready", f"job {job.id} is {job.status}; no {what} yet")
    entry = next((job.results[k] for k in keys if k in job.results), None)
    if entry is None:
        raise _not_found("No such result", f"job {job.id} has no {what}")
    job_dir = (settings.jobs_dir / job.id).resolve()
    path = (job_dir / entry["name"]).resolve()
    if not path.is_relative_to(job_dir) or not path.is_file():
        raise _not_found("No such result", f"the {what} of job {job.id} is gone")
    return path


# --- the page -------------------------------------------------------------------------------------------


@router.get("/map", summary="Map page (HTML)", response_class=FileResponse)
def map_page() -> FileResponse:
    return FileResponse(STATIC / "map.html", media_type=media_type("map.html"))


@router.get("/map/static/{name:path}", summary="Static files of the map page")
def map_static(name: Annotated[str, PathParam(max_length=200)]) -> FileResponse:
    root = STATIC.resolve()
    if not _STATIC_NAME.fullmatch(name) or ".." in name.split("/"):
        raise _not_found("Not Found", f"no static file {name!r}")
    path = (root / name).resolve()
    suffix = path.suffix.lower()
    if not path.is_relative_to(root) or not path.is_file() or suffix not in _STATIC_SUFFIXES:
        raise _not_found("Not Found", f"no static file {name!r}")
    return FileResponse(path, media_type=media_type(path), headers={"Cache-Control": "public, max-age=3600"})


# --- scenes and tiles -----------------------------------------------------------------------------------


def _parse_bbox(text: str, settings: ServiceSettings) -> tuple[float, float, float, float]:
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise invalid_parameter("bbox must be west,south,east,north in degrees", "bbox") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)) or not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise invalid_parameter("bbox must be west,south,east,north with west < east, south < north", "bbox")
    area = bbox_area_km2((w, s, e, n)) or 0.0
    if area > settings.max_area_km2:
        raise invalid_parameter(f"bbox covers {area:.0f} km²; at most {settings.max_area_km2:g}", "bbox")
    return w, s, e, n


def _allowed_catalog(catalog: str, settings: ServiceSettings, scope: DataScope) -> str:
    """The catalogue a search may use: presets/URLs on the catalogue hosts, folders in the caller's scope."""
    url = CATALOGS.get(catalog.strip().lower(), catalog.strip())
    if any(ord(ch) < 32 for ch in url) or "\\" in url:
        raise invalid_parameter("control characters and '\\' are not allowed", "catalog")
    try:
        if is_url(url):
            return check_url(url, settings.catalogue_hosts)
        return str(resolve_input(url, scope, kind="folder"))
    except InvalidInputError as exc:
        raise invalid_parameter(str(exc), "catalog") from None


def allowed_catalogs(settings: ServiceSettings) -> list[str]:
    """The named catalogues (``earth-search``, ``cdse``) whose host the operator allows."""
    hosts = {h.lower() for h in settings.catalogue_hosts}
    return [name for name, url in CATALOGS.items() if (urlsplit(url).hostname or "").lower() in hosts]


def _num(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else round(float(v), 2)


def _scene_doc(scene: Any) -> dict[str, Any]:
    return {
        "id": scene.id,
        "collection": scene.collection,
        "datetime": scene.datetime.isoformat(),
        "platform": scene.platform,
        "tile": scene.tile,
        "orbit": scene.orbit,
        "cloud_cover": _num(scene.cloud_cover),
        "aoi_coverage_pct": _num(scene.aoi_coverage_pct),
        "aoi_cloud_pct": _num(scene.aoi_cloud_pct),
        "aoi_valid_pct": _num(scene.aoi_valid_pct),
        "note": scene.note,
        "geometry": scene.geometry,
    }


def _public_text(exc: Exception, where: str, catalog: str) -> str:
    # The server's own folders stay private: a folder catalogue is named as the user named it.
    return str(exc).replace(where, catalog).replace("pass resolution=", "give a resolution")


@router.get("/map/api/scenes", summary="Scenes over an AOI with their AOI cloud %")
def scenes(
    user: User,
    settings: Settings,
    store: Store,
    *,
    start: dt.date,
    end: dt.date,
    collection: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = (
        "sentinel-2-l2a"
    ),
    bbox: Annotated[str | None, Query(max_length=200)] = None,
    tile: Annotated[str | None, Query(max_length=8, pattern=r"^\d{1,2}[A-Za-z]{3}$")] = None,
    catalog: Annotated[str, Query(min_length=1, max_length=300)] = "earth-search",
    max_cloud: Annotated[float | None, Query(ge=0, le=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    if start > end:
        raise invalid_parameter(f"start {start} is after end {end}; swap them", "start")
    if bbox is None and tile is None:
        raise invalid_parameter("give an AOI: bbox=west,south,east,north or tile=MGRS id", "bbox")
    box = _parse_bbox(bbox, settings) if bbox is not None else None
    where = _allowed_catalog(catalog, settings, user_scope(settings, store, user.id))
    try:
        table = scene_search.search(
            collection,
            bbox=box,
            tile=tile.upper() if tile else None,
            start=start,
            end=end,
            max_cloud=max_cloud,
            max_items=limit,
            catalog=where,
            timeout=30.0,
        )
    except NoDataError as exc:
        return {"scenes": [], "message": _public_text(exc, where, catalog)}
    except (InvalidInputError, ValueError) as exc:
        raise invalid_parameter(_public_text(exc, where, catalog)) from None
    except (DataError, GeodeformError, OSError) as exc:
        log.warning("scene search failed: %s", exc)
        raise OGCError(
            502, "Catalogue error", f"the search failed: {_public_text(exc, where, catalog)}"
        ) from None
    docs = [_scene_doc(s) for s in table]
    return {"scenes": docs, "message": f"{len(docs)} scene(s)"}


@router.get("/map/api/tiles/{tile}", summary="Outline of an MGRS tile (GeoJSON, lon/lat)")
def tile_outline(user: User, tile: Annotated[str, PathParam(max_length=8)]) -> dict[str, Any]:
    try:
        aoi = scene_search.aoi_from_tile(tile.upper())
    except (InvalidInputError, ValueError) as exc:
        raise invalid_parameter(str(exc), "tile") from None
    w, s, e, n = aoi.geometry.bounds
    return {
        "type": "Feature",
        "id": aoi.tile,
        "geometry": mapping(aoi.geometry),
        "bbox": [w, s, e, n],
        "properties": {"tile": aoi.tile, "epsg": aoi.epsg},
    }


# --- velocity overlay -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _overlay(path: str, mtime: float) -> SpeedOverlay:
    """The overlay of the product at ``path`` (``mtime`` keys the cache: a rewritten file is drawn again)."""
    return workflows.maps.speed_overlay(path)


def _job_overlay(store: Store, settings: ServiceSettings, job_id: str, user: User) -> SpeedOverlay:
    job = own_job(store, job_id, user)
    path = _product(settings, job, ("velocity_nc", "netcdf"), "velocity map")
    try:
        return _overlay(str(path), path.stat().st_mtime)
    except DataError as exc:  # before OSError, its base: a product without what the map needs
        raise _not_found("No such result", str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("overlay of job %s failed: %s", job_id, exc)
        raise _not_found("No such result", f"the velocity map of job {job_id} cannot be drawn") from None


@router.get("/map/api/jobs/{jobId}/overlay.json", summary="Velocity overlay: bounds, legend")
def overlay_json(
    request: Request, jobId: JobId, user: User, store: Store, settings: Settings
) -> JSONResponse:
    ov = _job_overlay(store, settings, jobId, user)
    doc = {
        "bounds": list(ov.bounds),
        "variable": "speed",
        "title": "mean speed",
        "units": ov.units,
        "min": ov.vmin,
        "max": ov.vmax,
        "data_min": ov.data_min,
        "data_max": ov.data_max,
        "colormap": workflows.maps.COLORMAP,
        "stops": workflows.maps.colormap_stops(),
        "valid_pct": ov.valid_pct,
        "crs": ov.crs,
        "image": f"{base_url(request)}/map/api/jobs/{jobId}/overlay.png",
    }
    return JSONResponse(doc, headers=_NO_STORE)


@router.get("/map/api/jobs/{jobId}/overlay.png", summary="Velocity overlay image (EPSG:4326)")
def overlay_png(jobId: JobId, user: User, store: Store, settings: Settings) -> Response:
    ov = _job_overlay(store, settings, jobId, user)
    return Response(ov.png, media_type="image/png", headers=_NO_STORE)


# --- time series at a point -----------------------------------------------------------------------------


def _clean(values: Any) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), 4) for v in values]


def _series_doc(ts: PointSeries) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "dates": ts.dates,
        "east": _clean(ts.east),
        "north": _clean(ts.north),
        "units": ts.units,
    }
    if ts.east_error is not None:
        doc["east_error"] = _clean(ts.east_error)
    if ts.north_error is not None:
        doc["north_error"] = _clean(ts.north_error)
    doc["node"] = {"x": ts.node_x, "y": ts.node_y, "lon": ts.node_lon, "lat": ts.node_lat, "crs": ts.crs}
    doc["distance_m"] = round(ts.distance_m, 2)
    doc["sign_convention"] = workflows.maps.SERIES_SIGN_CONVENTION
    return doc


@router.get("/map/api/jobs/{jobId}/series", summary="Displacement time series at a point")
def series(
    jobId: JobId,
    user: User,
    store: Store,
    settings: Settings,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
) -> JSONResponse:
    job = own_job(store, jobId, user)
    path = _product(settings, job, ("timeseries",), "time series")
    try:
        ts = workflows.maps.point_series(path, lon, lat)
    except DataError as exc:  # before OSError, its base
        raise _not_found("No such result", str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("series of job %s failed: %s", jobId, exc)
        raise _not_found("No such result", f"the time series of job {jobId} cannot be read") from None
    if ts is None:
        raise _not_found("No data here", "no valid node of this job near that point; click on the overlay")
    return JSONResponse(_series_doc(ts), headers=_NO_STORE)


# --- form defaults --------------------------------------------------------------------------------------


@router.get("/map/api/presets", summary="Form defaults of each workflow preset", operation_id="getMapPresets")
def presets(user: User, settings: Settings) -> dict[str, Any]:
    out = {}
    for name, preset in PRESETS.items():
        pairs = {**PairsConfig().model_dump(mode="json"), **preset.get("pairs", {})}
        matching = {**MatchingConfig().model_dump(mode="json"), **preset.get("matching", {})}
        text = ", ".join(f"{k} {v}" for k, v in preset.get("pairs", {}).items())
        out[name] = {
            "pairs": pairs,
            "matching": matching,
            "description": f"{name}: pairs {text}; max speed {matching['expected_max_speed']:g} m/yr",
        }
    return {"presets": out, "catalogs": allowed_catalogs(settings)}
