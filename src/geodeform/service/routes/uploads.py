"""``/uploads``: the caller's private folder of input files (GeoTIFF images, GeoJSON vectors).

``PUT /uploads/NAME`` stores the request body as ``NAME`` (streamed to a temporary file, checked, then
renamed into place), within ``max_upload_bytes`` per file and the caller's disk quota. Jobs name it
``uploads/NAME``; nobody else can. Only GeoTIFF (checked by opening it) and GeoJSON (parsed) are kept:
formats that can point to other files (VRT, HDF5 external links...) are refused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

import rasterio
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from rasterio.errors import RasterioError
from starlette.concurrency import run_in_threadpool

from geodeform.service.accounts import disk_usage, upload_dir
from geodeform.service.auth import User
from geodeform.service.deps import Settings, Store
from geodeform.service.documents import iso_time
from geodeform.service.errors import OGCError, Problem
from geodeform.service.paths import UPLOADS

__all__ = ["UPLOAD_NAME", "router"]

router = APIRouter(tags=["Uploads"])

UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.(tif|tiff|geojson|json)", re.IGNORECASE)
"""Names an upload may have: letters, digits, ``.``, ``_``, ``-`` and a suffix telling its format."""
Name = Annotated[str, PathParam(max_length=210, description="File name, e.g. LC08_20200106_B4.tif")]
_JSON_MAX = 64 * 2**20


def _bad(detail: str, where: str = "name", status: int = 400) -> OGCError:
    title = "Invalid upload" if status == 400 else "Payload Too Large"
    return OGCError(status, title, detail, problems=[Problem(where, detail)])


def _check_name(name: str) -> str:
    if not UPLOAD_NAME.fullmatch(name) or ".." in name:
        raise _bad(
            "an upload is named with letters, digits, '.', '_', '-' (at most 200) and ends in .tif, .tiff, "
            ".geojson or .json"
        )
    return name


def _check_content(path: Path, name: str) -> None:
    """Keep only a GeoTIFF GDAL opens as such, or a GeoJSON object; raise otherwise."""
    head = path.open("rb").read(4)
    if name.lower().endswith((".tif", ".tiff")):
        if head not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            raise _bad("not a TIFF file (its first bytes are not a TIFF header)", "body")
        try:
            with rasterio.open(path) as src:
                if src.driver not in ("GTiff", "COG"):
                    raise _bad(f"read as {src.driver}, not as a GeoTIFF", "body")
                if src.crs is None:
                    raise _bad("the TIFF has no coordinate reference system: a GeoTIFF is needed", "body")
        except RasterioError as exc:
            raise _bad(f"not a readable GeoTIFF ({exc})", "body") from None
        return
    if path.stat().st_size > _JSON_MAX:
        raise _bad(f"a GeoJSON upload is limited to {_JSON_MAX} bytes", "body", 413)
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad("not valid JSON", "body") from None
    if not isinstance(doc, dict) or doc.get("type") not in (
        "FeatureCollection",
        "Feature",
        "Polygon",
        "MultiPolygon",
    ):
        raise _bad("not a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon", "body")


def _entry(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {
        "name": path.name,
        "path": f"{UPLOADS}/{path.name}",
        "bytes": st.st_size,
        "modified": iso_time(dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc).replace(tzinfo=None)),
    }


@router.put(
    "/uploads/{name}",
    summary="Upload a file (GeoTIFF or GeoJSON) into your private folder",
    operation_id="putUpload",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_upload(
    request: Request, name: Name, user: User, store: Store, settings: Settings
) -> dict[str, Any]:
    _check_name(name)
    folder = upload_dir(settings, user.id)
    usage = await run_in_threadpool(disk_usage, settings, store, user.id)
    old = folder / name
    replaced = old.stat().st_size if old.is_file() else 0
    room = settings.max_user_disk_bytes - usage.total + replaced
    limit = min(settings.max_upload_bytes, room) if not user.is_admin else settings.max_upload_bytes
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{secrets.token_hex(8)}.part"
    size = 0
    try:
        with tmp.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    which = "max_upload_bytes" if limit == settings.max_upload_bytes else "your disk quota"
                    raise _bad(f"the file is larger than {limit} bytes ({which})", "body", 413)
                out.write(chunk)
        if size == 0:
            raise _bad("the request body is empty: send the file's bytes", "body")
        await run_in_threadpool(_check_content, tmp, name)
        os.replace(tmp, old)
    finally:
        tmp.unlink(missing_ok=True)
    return _entry(old)


@router.get("/uploads", summary="Your uploaded files", operation_id="getUploads")
async def list_uploads(user: User, store: Store, settings: Settings) -> dict[str, Any]:
    folder = upload_dir(settings, user.id)
    files = (
        sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith("."))
        if folder.is_dir()
        else []
    )
    usage = await run_in_threadpool(disk_usage, settings, store, user.id)
    return {
        "uploads": [_entry(p) for p in files],
        "disk_bytes": usage.total,
        "max_disk_bytes": settings.max_user_disk_bytes,
        "max_upload_bytes": settings.max_upload_bytes,
    }


@router.delete("/uploads/{name}", summary="Delete one of your uploaded files", operation_id="deleteUpload")
def delete_upload(name: Name, user: User, settings: Settings) -> dict[str, Any]:
    _check_name(name)
    path = upload_dir(settings, user.id) / name
    if not path.is_file():
        raise OGCError(404, "No such upload", f"you have no upload {name!r}")
    path.unlink()
    return {"deleted": f"{UPLOADS}/{name}"}
