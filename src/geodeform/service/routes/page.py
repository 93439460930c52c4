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
import io
import logging
import math
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response

from geodeform.errors import DataError, GeodeformError, InvalidInputError, NoDataError
from geodeform.service.auth import bearer_user
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobInfo, UserInfo

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()
User = Annotated[UserInfo, Depends(bearer_user)]
JobId = Annotated[str, PathParam(max_length=64)]

STATIC = Path(__file__).parent / "static"
_MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
COLORMAP = "viridis"
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._/-]*")
_NO_STORE = {"Cache-Control": "private, no-store"}


def _error(status: int, title: str, detail: str, where: str | None = None) -> Exception:
    from geodeform.service.app import OGCError
    from geodeform.service.processes import Problem

    problems = [Problem(where, detail)] if where else None
    return OGCError(status, title, detail, problems=problems)


def _settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


def _own_job(request: Request, job_id: str, user: UserInfo) -> JobInfo:
    from geodeform.service.app import OGCError

    job = request.app.state.store.get_job(job_id)
    # As in app.py: someone else's job answers exactly like a missing one.
    if job is None or (job.user_id != user.id and not user.is_admin):
        raise OGCError(404, "No such job", f"no job {job_id!r}")
    return job


def _product(request: Request, job: JobInfo, keys: tuple[str, ...], what: str) -> Path:
    """The job's result file recorded under one of ``keys``, inside its job folder."""
    if job.status != "successful" or job.dismiss_requested:
        raise _error(404, "Result not ready", f"job {job.id} is {job.status}; no {what} yet")
    entry = next((job.results[k] for k in keys if k in job.results), None)
    if entry is None:
        raise _error(404, "No such result", f"job {job.id} has no {what}")
    job_dir = (_settings(request).jobs_dir / job.id).resolve()
    path = (job_dir / entry["name"]).resolve()
    if not path.is_relative_to(job_dir) or not path.is_file():
        raise _error(404, "No such result", f"the {what} of job {job.id} is gone")
    return path


# --- the page -------------------------------------------------------------------------------------------


@router.get("/map", summary="Map page (HTML)", tags=["Map page"], response_class=FileResponse)
def map_page() -> FileResponse:
    return FileResponse(STATIC / "map.html", media_type=_MEDIA[".html"])


@router.get("/map/static/{name:path}", summary="Static files of the map page", tags=["Map page"])
def map_static(name: Annotated[str, PathParam(max_length=200)]) -> FileResponse:
    root = STATIC.resolve()
    if not _STATIC_NAME.fullmatch(name) or ".." in name.split("/"):
        raise _error(404, "Not Found", f"no static file {name!r}")
    path = (root / name).resolve()
    suffix = path.suffix.lower()
    if not path.is_relative_to(root) or not path.is_file() or suffix not in _MEDIA:
        raise _error(404, "Not Found", f"no static file {name!r}")
    return FileResponse(path, media_type=_MEDIA[suffix], headers={"Cache-Control": "public, max-age=3600"})


# --- scenes and tiles -----------------------------------------------------------------------------------


def _parse_bbox(text: str, settings: ServiceSettings) -> tuple[float, float, float, float]:
    from geodeform.service.processes import _bbox_km2

    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise _error(
            400, "Invalid parameter", "bbox must be west,south,east,north in degrees", "bbox"
        ) from None
    if not all(math.isfinite(v) for v in (w, s, e, n)) or not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise _error(
            400,
            "Invalid parameter",
            "bbox must be west,south,east,north with west < east, south < north",
            "bbox",
        )
    area = _bbox_km2((w, s, e, n)) or 0.0
    if area > settings.max_area_km2:
        raise _error(
            400, "Invalid parameter", f"bbox covers {area:.0f} km²; at most {settings.max_area_km2:g}", "bbox"
        )
    return w, s, e, n


def _allowed_catalog(catalog: str, settings: ServiceSettings) -> str:
    """The catalogue a search may use: presets/URLs on the catalogue hosts, folders in the data roots."""
    from geodeform.search.catalogs import CATALOGS
    from geodeform.service.processes import _resolve_folder
    from geodeform.service.safety import check_url, is_url

    url = CATALOGS.get(catalog.strip().lower(), catalog.strip())
    if any(ord(ch) < 32 for ch in url) or "\\" in url:
        raise _error(400, "Invalid parameter", "control characters and '\\' are not allowed", "catalog")
    try:
        if is_url(url):
            return check_url(url, settings.catalogue_hosts)
        return str(_resolve_folder(url, settings))
    except InvalidInputError as exc:
        raise _error(400, "Invalid parameter", str(exc), "catalog") from None


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
    return str(exc).replace(where, catalog)


@router.get("/map/api/scenes", summary="Scenes over an AOI with their AOI cloud %", tags=["Map page"])
def scenes(
    request: Request,
    user: User,
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
    from geodeform.search import search

    settings = _settings(request)
    if start > end:
        raise _error(400, "Invalid parameter", f"start {start} is after end {end}; swap them", "start")
    if bbox is None and tile is None:
        raise _error(
            400, "Invalid parameter", "give an AOI: bbox=west,south,east,north or tile=MGRS id", "bbox"
        )
    box = _parse_bbox(bbox, settings) if bbox is not None else None
    where = _allowed_catalog(catalog, settings)
    try:
        table = search(
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
        raise _error(400, "Invalid parameter", _public_text(exc, where, catalog)) from None
    except (DataError, GeodeformError, OSError) as exc:
        log.warning("scene search failed: %s", exc)
        raise _error(
            502, "Catalogue error", f"the search failed: {_public_text(exc, where, catalog)}"
        ) from None
    docs = [_scene_doc(s) for s in table]
    return {"scenes": docs, "message": f"{len(docs)} scene(s)"}


@router.get("/map/api/tiles/{tile}", summary="Outline of an MGRS tile (GeoJSON, lon/lat)", tags=["Map page"])
def tile_outline(user: User, tile: Annotated[str, PathParam(max_length=8)]) -> dict[str, Any]:
    from shapely.geometry import mapping

    from geodeform.search import aoi_from_tile

    try:
        aoi = aoi_from_tile(tile.upper())
    except (InvalidInputError, ValueError) as exc:
        raise _error(400, "Invalid parameter", str(exc), "tile") from None
    w, s, e, n = aoi.geometry.bounds
    return {
        "type": "Feature",
        "id": aoi.tile,
        "geometry": mapping(aoi.geometry),
        "bbox": [w, s, e, n],
        "properties": {"tile": aoi.tile, "epsg": aoi.epsg},
    }


# --- velocity overlay -----------------------------------------------------------------------------------


def _grid_crs(ds: Any, var: str) -> Any:
    from pyproj import CRS

    gm = ds[var].attrs.get("grid_mapping")
    attrs = ds[gm].attrs if gm and gm in ds.variables else {}
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    if not wkt:
        raise _error(404, "No such result", "the velocity product has no CRS (grid_mapping)")
    return CRS.from_wkt(wkt)


def _nice_ceiling(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(value))
    return next(m * mag for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * mag >= value)


def _stops(n: int = 11) -> list[str]:
    import matplotlib

    cmap = matplotlib.colormaps[COLORMAP]
    return [matplotlib.colors.to_hex(cmap(i / (n - 1))) for i in range(n)]


@functools.lru_cache(maxsize=16)
def _overlay(path: str, mtime: float) -> tuple[bytes, dict[str, Any]]:
    """PNG and legend of the speed map in ``path`` (``mtime`` keys the cache)."""
    import matplotlib
    import numpy as np
    import xarray as xr
    from PIL import Image
    from rasterio.crs import CRS as RioCRS
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        var = "v" if "v" in ds else "vx"
        if "v" in ds:
            speed = ds["v"].values.astype("float32")
        elif "vx" in ds and "vy" in ds:
            speed = np.hypot(ds["vx"].values, ds["vy"].values).astype("float32")
        else:
            raise _error(404, "No such result", "the product holds no velocity (v or vx/vy)")
        units = str(ds[var].attrs.get("units", "m/yr"))
        crs = _grid_crs(ds, var)
        x, y = ds["x"].values.astype(float), ds["y"].values.astype(float)
    if speed.ndim != 2 or len(x) < 2 or len(y) < 2:
        raise _error(404, "No such result", "the velocity grid is too small to draw")
    if y[1] > y[0]:  # south-up storage: flip to north-up
        y, speed = y[::-1], speed[::-1]
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    src_transform = from_origin(x[0] - dx / 2, y[0] + dy / 2, dx, dy)
    h, w = speed.shape
    bounds = (x[0] - dx / 2, y[-1] - dy / 2, x[-1] + dx / 2, y[0] + dy / 2)
    src_crs, dst_crs = RioCRS.from_wkt(crs.to_wkt()), RioCRS.from_epsg(4326)
    scale = max(1, math.ceil(512 / max(w, h)))  # finer than the nodes so that the warp stays sharp
    dst_transform, dw, dh = calculate_default_transform(
        src_crs, dst_crs, w, h, *bounds, dst_width=w * scale, dst_height=h * scale
    )
    out = np.full((dh, dw), np.nan, dtype="float32")
    reproject(
        speed,
        out,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    valid = np.isfinite(out)
    vmax = _nice_ceiling(float(np.nanpercentile(speed, 98))) if np.isfinite(speed).any() else 1.0
    rgba = matplotlib.colormaps[COLORMAP](np.clip(np.nan_to_num(out) / vmax, 0, 1), bytes=True)
    rgba[..., 3] = np.where(valid, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    west, north = dst_transform.c, dst_transform.f
    east, south = west + dst_transform.a * dw, north + dst_transform.e * dh
    finite = speed[np.isfinite(speed)]
    meta = {
        "bounds": [west, south, east, north],
        "variable": "speed",
        "title": "mean speed",
        "units": units,
        "min": 0.0,
        "max": vmax,
        "data_min": float(finite.min()) if finite.size else None,
        "data_max": float(finite.max()) if finite.size else None,
        "colormap": COLORMAP,
        "stops": _stops(),
        "valid_pct": round(100.0 * finite.size / speed.size, 1),
        "crs": crs.to_string(),
    }
    return buf.getvalue(), meta


def _job_overlay(request: Request, job_id: str, user: UserInfo) -> tuple[bytes, dict[str, Any]]:
    job = _own_job(request, job_id, user)
    path = _product(request, job, ("velocity_nc", "netcdf"), "velocity map")
    try:
        return _overlay(str(path), path.stat().st_mtime)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("overlay of job %s failed: %s", job_id, exc)
        raise _error(404, "No such result", f"the velocity map of job {job_id} cannot be drawn") from None


@router.get(
    "/map/api/jobs/{jobId}/overlay.json", summary="Velocity overlay: bounds, legend", tags=["Map page"]
)
def overlay_json(request: Request, jobId: JobId, user: User) -> JSONResponse:
    _, meta = _job_overlay(request, jobId, user)
    return JSONResponse(
        {**meta, "image": f"{_base(request)}/map/api/jobs/{jobId}/overlay.png"}, headers=_NO_STORE
    )


@router.get(
    "/map/api/jobs/{jobId}/overlay.png", summary="Velocity overlay image (EPSG:4326)", tags=["Map page"]
)
def overlay_png(request: Request, jobId: JobId, user: User) -> Response:
    png, _ = _job_overlay(request, jobId, user)
    return Response(png, media_type="image/png", headers=_NO_STORE)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# --- time series at a point -----------------------------------------------------------------------------


def _clean(values: Any) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), 4) for v in values]


@router.get("/map/api/jobs/{jobId}/series", summary="Displacement time series at a point", tags=["Map page"])
def series(
    request: Request,
    jobId: JobId,
    user: User,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
) -> JSONResponse:
    job = _own_job(request, jobId, user)
    path = _product(request, job, ("timeseries",), "time series")
    try:
        doc = _series_at(str(path), lon, lat)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("series of job %s failed: %s", jobId, exc)
        raise _error(404, "No such result", f"the time series of job {jobId} cannot be read") from None
    if doc is None:
        raise _error(404, "No data here", "no valid node of this job near that point; click on the overlay")
    return JSONResponse(doc, headers=_NO_STORE)


def _series_at(path: str, lon: float, lat: float) -> dict[str, Any] | None:
    import numpy as np
    import xarray as xr
    from pyproj import Transformer

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        crs = _grid_crs(ds, "east")
        to_grid = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        px, py = to_grid.transform(lon, lat)
        x, y = ds["x"].values.astype(float), ds["y"].values.astype(float)
        east = ds["east"].values
        valid = np.isfinite(east).any(axis=0)
        if not (math.isfinite(px) and math.isfinite(py)) or not valid.any():
            return None
        spacing = max(
            abs(float(x[1] - x[0])) if len(x) > 1 else 0, abs(float(y[1] - y[0])) if len(y) > 1 else 0
        )
        d2 = (x[None, :] - px) ** 2 + (y[:, None] - py) ** 2
        d2 = np.where(valid, d2, np.inf)
        i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
        dist = math.sqrt(float(d2[i, j]))
        if dist > 3 * max(spacing, 1.0):
            return None
        pick = {"y": int(i), "x": int(j)}
        out = {
            "dates": [str(t)[:10] for t in ds["time"].values],
            "east": _clean(ds["east"][dict(pick)].values),
            "north": _clean(ds["north"][dict(pick)].values),
            "units": str(ds["east"].attrs.get("units", "m")),
        }
        for k in ("east_error", "north_error"):
            if k in ds:
                out[k] = _clean(ds[k][dict(pick)].values)
    node_lon, node_lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x[j], y[i])
    out["node"] = {
        "x": float(x[j]),
        "y": float(y[i]),
        "lon": node_lon,
        "lat": node_lat,
        "crs": crs.to_string(),
    }
    out["distance_m"] = round(dist, 2)
    out["sign_convention"] = (
        "east: + toward increasing map x; north: + toward increasing map y; since the first date"
    )
    return out


# --- form defaults --------------------------------------------------------------------------------------


@router.get("/map/api/presets", summary="Form defaults of each workflow preset", tags=["Map page"])
def presets(user: User) -> dict[str, Any]:
    from geodeform.config import PRESETS, MatchingConfig, PairsConfig

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
    return {"presets": out}
