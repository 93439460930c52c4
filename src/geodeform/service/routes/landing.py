"""``/`` (landing page, JSON or HTML) and ``/conformance``: public, no token."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from swagger_ui_bundle import swagger_ui_path

from geodeform.service.deps import Registry, base_url
from geodeform.service.documents import CONFORMANCE, REL
from geodeform.service.errors import OGCError
from geodeform.service.processes import Process

__all__ = ["router"]

router = APIRouter(tags=["Capabilities"])

TITLE = "geodeform processing service"
STATIC = Path(__file__).resolve().parent.parent / "static"


def _links(base: str) -> list[dict[str, str]]:
    return [
        {"href": f"{base}/", "rel": "self", "type": "application/json", "title": "this document"},
        {
            "href": f"{base}/openapi.json",
            "rel": "service-desc",
            "type": "application/vnd.oai.openapi+json;version=3.0",  # the document is 3.0.3
            "title": "OpenAPI document",
        },
        {"href": f"{base}/api.html", "rel": "service-doc", "type": "text/html", "title": "API documentation"},
        {
            "href": f"{base}/conformance",
            "rel": f"{REL}/conformance",
            "type": "application/json",
            "title": "conformance",
        },
        {
            "href": f"{base}/processes",
            "rel": f"{REL}/processes",
            "type": "application/json",
            "title": "processes",
        },
        {"href": f"{base}/jobs", "rel": f"{REL}/job-list", "type": "application/json", "title": "jobs"},
        {"href": f"{base}/account", "rel": "related", "type": "application/json", "title": "your account"},
        {"href": f"{base}/map", "rel": "alternate", "type": "text/html", "title": "map page"},
    ]


@router.get("/", summary="Landing page", operation_id="getLandingPage")
def landing(
    request: Request, registry: Registry, f: Annotated[str | None, Query(pattern="^(json|html)$")] = None
) -> Response:
    doc = {
        "title": TITLE,
        "description": "Sub-pixel offset tracking and deformation workflows as OGC API – Processes.",
        "links": _links(base_url(request)),
    }
    wants_html = f == "html" or (f is None and "text/html" in request.headers.get("accept", ""))
    if wants_html:
        return HTMLResponse(_landing_html(doc, registry))
    return JSONResponse(doc)


@router.get("/conformance", summary="Conformance classes", operation_id="getConformanceClasses")
def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


def _landing_html(doc: dict[str, Any], registry: dict[str, Process]) -> str:
    links = "\n".join(
        f'<li><a href="{html.escape(link["href"])}">{html.escape(link["title"])}</a></li>'
        for link in doc["links"]
    )
    procs = "\n".join(
        f"<li><b>{html.escape(p.id)}</b>: {html.escape(p.title)}</li>" for p in registry.values()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(doc["title"])}</title></head>
<body>
<h1>{html.escape(doc["title"])}</h1>
<p>{html.escape(doc["description"])}</p>
<h2>Links</h2><ul>
{links}
</ul>
<h2>Processes</h2><ul>
{procs}
</ul>
<p>Every request but this page, <code>/conformance</code> and the process descriptions needs
<code>Authorization: Bearer TOKEN</code>;
ask the service's administrator for one.</p>
</body></html>
"""


# --- the API documentation page (Swagger UI, vendored by the swagger-ui-bundle package: works offline) ------

_API_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


@router.get(
    "/api.html", summary="API documentation (HTML)", response_class=FileResponse, include_in_schema=False
)
def api_page() -> FileResponse:
    return FileResponse(STATIC / "api.html", media_type="text/html")


@router.get("/api/static/{name}", include_in_schema=False)
def api_static(name: str) -> Response:
    if name == "api.js":
        return FileResponse(STATIC / "api.js", media_type="text/javascript")
    if name not in _API_ASSETS:
        raise OGCError(404, "Not Found", f"no file {name[:100]!r}")
    path = Path(str(swagger_ui_path)) / name
    return FileResponse(
        path, media_type=_API_ASSETS[name], headers={"Cache-Control": "public, max-age=86400"}
    )
