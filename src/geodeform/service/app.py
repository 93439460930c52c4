"""The FastAPI application: OGC API – Processes Part 1 Core over the job store.

Every error is an OGC exception document (``type``, ``title``, ``status``, ``detail`` and, for bad input, a
``problems`` list). Jobs are only ever read and written through :class:`~geodeform.service.store.JobStore`;
the work itself happens in worker processes (:mod:`geodeform.service.worker`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import importlib
import json
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path as PathLib
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from geodeform.service.auth import bearer_user
from geodeform.service.processes import Problem, Process, build_registry, input_descriptions, validate_inputs
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobInfo, JobStore, UserInfo

__all__ = ["OGCError", "create_app"]

log = logging.getLogger(__name__)

_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0"
_REL = "http://www.opengis.net/def/rel/ogc/1.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
]
STATUS_CODES = ("accepted", "running", "successful", "failed", "dismissed")

# The authenticated caller; module level, as FastAPI resolves string annotations in module globals.
User = Annotated[UserInfo, Depends(bearer_user)]


class OGCError(Exception):
    """An error answered as an OGC exception document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type_: str | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.type = type_ or f"about:blank#{title.lower().replace(' ', '-')}"
        self.problems = problems or []

    def response(self) -> JSONResponse:
        """The JSON response of this error."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.problems:
            body["problems"] = [p.as_dict() for p in self.problems]
        headers = {"WWW-Authenticate": 'Bearer realm="geodeform"'} if self.status == 401 else None
        return JSONResponse(
            body, status_code=self.status, headers=headers, media_type="application/problem+json"
        )


class ExecuteRequest(BaseModel):
    """Body of ``POST /processes/{processId}/execution`` (OGC ``execute.yaml``)."""

    model_config = ConfigDict(extra="allow")

    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] | None = None
    response: str | None = None
    subscriber: dict[str, Any] | None = None


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds") + "Z"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


class _BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = OGCError(413, "Payload Too Large", f"request bodies are limited to {self.limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_big.response()(scope, receive, send)
            return
        seen = 0

        async def limited() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise OGCError(413, "Payload Too Large", f"request bodies are limited to {self.limit} bytes")
            return message

        try:
            await self.app(scope, limited, send)
        except OGCError as exc:
            await exc.response()(scope, receive, send)


def create_app(
    settings: ServiceSettings | None = None,
    *,
    store: JobStore | None = None,
    on_startup: Sequence[Callable[[], None]] = (),
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings
        Service settings; the store is opened from ``settings.db`` unless ``store`` is given.
    store
        An open job store (tests, embedding).
    on_startup, on_shutdown
        Called when the server starts and stops serving (``geodeform serve`` starts and stops its worker
        pool here: uvicorn re-raises SIGTERM after its shutdown, so code after ``uvicorn.run`` never runs).
    """
    settings = (settings or ServiceSettings()).resolved()
    store = store or JobStore(settings.db)
    registry = build_registry()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup:
            hook()
        try:
            yield
        finally:
            for hook in on_shutdown:
                hook()

    app = FastAPI(
        title="geodeform processing service",
        version="1.0.0",
        description="Ground deformation from satellite images as OGC API – Processes. "
        "Authenticate with `Authorization: Bearer TOKEN` (tokens from `geodeform users add NAME`).",
        openapi_url="/openapi.json",
        docs_url="/api.html",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store, app.state.settings, app.state.registry = store, settings, registry
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    _install_error_handlers(app)

    def process_or_404(process_id: str) -> Process:
        process = registry.get(process_id)
        if process is None:
            raise OGCError(
                404, "No such process", f"no process {process_id!r}", type_=f"{_EXC}/no-such-process"
            )
        return process

    def own_job_or_404(job_id: str, user: UserInfo) -> JobInfo:
        job = store.get_job(job_id)
        # Someone else's job answers exactly like a missing one: its existence is not disclosed.
        if job is None or (job.user_id != user.id and not user.is_admin):
            raise OGCError(404, "No such job", f"no job {job_id!r}", type_=f"{_EXC}/no-such-job")
        return job

    def status_info(job: JobInfo, base: str) -> dict[str, Any]:
        status = "dismissed" if job.dismiss_requested else job.status
        links = [
            {"href": f"{base}/jobs/{job.id}", "rel": "self", "type": "application/json", "title": "status"},
        ]
        if status == "successful":
            links.append(
                {
                    "href": f"{base}/jobs/{job.id}/results",
                    "rel": f"{_REL}/results",
                    "type": "application/json",
                }
            )
        info: dict[str, Any] = {
            "type": "process",
            "processID": job.process_id,
            "jobID": job.id,
            "status": status,
            "message": job.message,
            "created": _iso(job.created),
            "started": _iso(job.started),
            "finished": _iso(job.finished),
            "updated": _iso(job.updated),
            "progress": job.progress,
            "links": links,
        }
        return {k: v for k, v in info.items() if v is not None}

    def summary(p: Process, base: str) -> dict[str, Any]:
        return {
            "id": p.id,
            "title": p.title,
            "description": p.description,
            "version": p.version,
            "keywords": list(p.keywords),
            "jobControlOptions": ["async-execute", "dismiss"],
            "outputTransmission": ["reference"],
            "links": [
                {"href": f"{base}/processes/{p.id}", "rel": "self", "type": "application/json"},
                {"href": f"{base}/processes/{p.id}/execution", "rel": f"{_REL}/execute", "title": "execute"},
            ],
        }

    @app.get("/", summary="Landing page", tags=["Capabilities"])
    def landing(
        request: Request, f: Annotated[str | None, Query(pattern="^(json|html)$")] = None
    ) -> Response:
        base = _base(request)
        links = [
            {"href": f"{base}/", "rel": "self", "type": "application/json", "title": "this document"},
            {
                "href": f"{base}/openapi.json",
                "rel": "service-desc",
                "type": "application/vnd.oai.openapi+json;version=3.0",
                "title": "OpenAPI document",
            },
            {
                "href": f"{base}/api.html",
                "rel": "service-doc",
                "type": "text/html",
                "title": "API documentation",
            },
            {
                "href": f"{base}/conformance",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                "type": "application/json",
                "title": "conformance",
            },
            {
                "href": f"{base}/processes",
                "rel": f"{_REL}/processes",
                "type": "application/json",
                "title": "processes",
            },
            {"href": f"{base}/jobs", "rel": f"{_REL}/job-list", "type": "application/json", "title": "jobs"},
            {"href": f"{base}/map", "rel": "alternate", "type": "text/html", "title": "map page"},
        ]
        doc = {
            "title": "geodeform processing service",
            "description": "Sub-pixel offset tracking and deformation workflows as OGC API – Processes.",
            "links": links,
        }
        wants_html = f == "html" or (f is None and "text/html" in request.headers.get("accept", ""))
        if wants_html:
            return HTMLResponse(_landing_html(doc, registry))
        return JSONResponse(doc)

    @app.get("/conformance", summary="Conformance classes", tags=["Capabilities"])
    def conformance() -> dict[str, Any]:
        return {"conformsTo": CONFORMANCE}

    @app.get("/processes", summary="List the processes", tags=["Processes"])
    def processes(request: Request) -> dict[str, Any]:
        base = _base(request)
        return {
            "processes": [summary(p, base) for p in registry.values()],
            "links": [{"href": f"{base}/processes", "rel": "self", "type": "application/json"}],
        }

    @app.get("/processes/{processId}", summary="Describe a process", tags=["Processes"])
    def process_description(
        request: Request, processId: Annotated[str, Path(max_length=200)]
    ) -> dict[str, Any]:
        p = process_or_404(processId)
        return {
            **summary(p, _base(request)),
            "inputs": input_descriptions(p.inputs_model),
            "outputs": dict(p.outputs),
        }

    @app.post(
        "/processes/{processId}/execution",
        summary="Execute a process (asynchronously)",
        tags=["Processes"],
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ExecuteRequest.model_json_schema()}},
            }
        },
        responses={201: {"description": "Job created; its status is at the Location header"}},
    )
    async def execute(
        request: Request, processId: Annotated[str, Path(max_length=200)], user: User
    ) -> Response:
        process = process_or_404(processId)
        body = await request.body()
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OGCError(
                400,
                "Invalid JSON",
                f"the request body is not valid JSON: {exc}",
                type_=f"{_EXC}/invalid-json",
            ) from None
        if not isinstance(doc, dict):
            raise OGCError(
                400,
                "Invalid execute request",
                "the request body must be a JSON object",
                problems=[Problem("body", "must be a JSON object")],
            )
        return await _submit(request, process, doc, user)

    async def _submit(request: Request, process: Process, doc: dict[str, Any], user: UserInfo) -> Response:
        from starlette.concurrency import run_in_threadpool

        inputs, problems = await run_in_threadpool(validate_inputs, process, doc.get("inputs", {}), settings)
        if inputs is None or problems:
            raise OGCError(
                400,
                "Invalid inputs",
                f"{len(problems)} problem(s) with the inputs of {process.id!r}",
                type_=f"{_EXC}/invalid-input",
                problems=problems,
            )
        limit = None if user.is_admin else settings.max_active_jobs
        job = await run_in_threadpool(
            store.create_job, user.id, process.id, inputs.model_dump(mode="json"), limit
        )
        if job is None:
            raise OGCError(
                429,
                "Too many jobs",
                f"you already have {settings.max_active_jobs} jobs queued or running; wait for one to finish",
            )
        base = _base(request)
        headers = {"Location": f"{base}/jobs/{job.id}"}
        if "respond-async" in request.headers.get("prefer", ""):
            headers["Preference-Applied"] = "respond-async"
        return JSONResponse(status_info(job, base), status_code=201, headers=headers)

    @app.get("/jobs", summary="List your jobs (newest first)", tags=["Jobs"])
    def jobs(
        request: Request,
        user: User,
        limit: Annotated[int, Query(ge=1, le=1000)] = 10,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        status: Annotated[list[str] | None, Query()] = None,
        processID: Annotated[list[str] | None, Query(max_length=100)] = None,
    ) -> dict[str, Any]:
        bad = [s for s in status or [] if s not in STATUS_CODES]
        if bad:
            raise OGCError(
                400,
                "Invalid parameter",
                f"unknown status {bad[0]!r}",
                problems=[Problem("status", f"must be one of {', '.join(STATUS_CODES)}")],
            )
        rows = store.list_jobs(
            user_id=None if user.is_admin else user.id,
            limit=limit + 1,
            offset=offset,
            statuses=status,
            process_ids=processID,
        )
        base = _base(request)
        links = [{"href": str(request.url), "rel": "self", "type": "application/json"}]
        if len(rows) > limit:
            nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
            links.append({"href": str(nxt), "rel": "next", "type": "application/json"})
        if offset > 0:
            prev = request.url.include_query_params(limit=limit, offset=max(0, offset - limit))
            links.append({"href": str(prev), "rel": "prev", "type": "application/json"})
        return {"jobs": [status_info(j, base) for j in rows[:limit]], "links": links}

    @app.get("/jobs/{jobId}", summary="Status of a job", tags=["Jobs"])
    def job_status(
        request: Request, jobId: Annotated[str, Path(max_length=64)], user: User
    ) -> dict[str, Any]:
        return status_info(own_job_or_404(jobId, user), _base(request))

    @app.get("/jobs/{jobId}/results", summary="Results of a job (links to its files)", tags=["Jobs"])
    def job_results(
        request: Request, jobId: Annotated[str, Path(max_length=64)], user: User
    ) -> dict[str, Any]:
        job = own_job_or_404(jobId, user)
        if job.dismiss_requested or job.status == "dismissed":
            raise OGCError(404, "No such job", f"job {jobId} was dismissed", type_=f"{_EXC}/no-such-job")
        if job.status == "failed":
            raise OGCError(404, "Job failed", job.message, type_=f"{_EXC}/job-failed")
        if job.status != "successful":
            raise OGCError(
                404, "Result not ready", f"job {jobId} is {job.status}", type_=f"{_EXC}/result-not-ready"
            )
        base = _base(request)
        return {
            key: {"href": f"{base}/jobs/{job.id}/results/{key}", "type": r["type"], "title": r["title"]}
            for key, r in job.results.items()
        }

    @app.get(
        "/jobs/{jobId}/results/{outputId:path}",
        summary="Download a result file (by output id, or by its path in the job's results)",
        tags=["Jobs"],
    )
    def job_result_file(
        jobId: Annotated[str, Path(max_length=64)],
        outputId: Annotated[str, Path(max_length=512)],
        user: User,
    ) -> FileResponse:
        job = own_job_or_404(jobId, user)
        missing = OGCError(404, "No such result", f"job {jobId} has no result {outputId!r}")
        if job.status != "successful" or job.dismiss_requested:
            raise missing
        # By output id, else by relative path (the STAC item / catalogue links are relative to the files);
        # whatever the name, only a regular file inside this job's own folder is ever served.
        entry = job.results.get(outputId)
        name = entry["name"] if entry else outputId
        job_dir = (settings.jobs_dir / job.id).resolve()
        path = (job_dir / name).resolve()
        if not path.is_relative_to(job_dir) or not path.is_file() or path.name.startswith("."):
            raise missing
        media = entry["type"].split(";")[0] if entry else _media_type(path)
        return FileResponse(path, media_type=media, filename=path.name)

    @app.delete("/jobs/{jobId}", summary="Dismiss a job (cancel it and delete its outputs)", tags=["Jobs"])
    def dismiss(request: Request, jobId: Annotated[str, Path(max_length=64)], user: User) -> dict[str, Any]:
        own_job_or_404(jobId, user)
        job = store.request_dismiss(jobId)
        if job is None:
            raise OGCError(404, "No such job", f"no job {jobId!r}", type_=f"{_EXC}/no-such-job")
        if job.status == "dismissed":  # the worker cleans up running jobs itself
            shutil.rmtree(settings.jobs_dir / job.id, ignore_errors=True)
        return status_info(job, _base(request))

    _mount_page(app)
    return app


def _media_type(path: PathLib) -> str:
    import mimetypes

    known = {".nc": "application/x-netcdf", ".tif": "image/tiff", ".json": "application/json"}
    return known.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _mount_page(app: FastAPI) -> None:
    """Mount ``geodeform.service.page.router`` (the map page) when that module exists.

    A page that fails to import is logged and left out: the API itself keeps working.
    """
    try:
        page = importlib.import_module("geodeform.service.page")
    except ModuleNotFoundError as exc:
        if exc.name == "geodeform.service.page":
            return
        log.exception("map page not mounted")
        return
    except Exception:
        log.exception("map page not mounted")
        return
    router = getattr(page, "router", None)
    if router is not None:
        app.include_router(router)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OGCError)
    async def _ogc(_request: Request, exc: OGCError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            Problem(".".join(str(x) for x in e.get("loc", ())) or "request", str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        return OGCError(
            400, "Invalid request", f"{len(problems)} problem(s) with the request", problems=problems
        ).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized"}.get(
            exc.status_code, "Error"
        )
        return OGCError(exc.status_code, title, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return OGCError(
            500, "Internal Server Error", "an unexpected error occurred; it has been logged"
        ).response()


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
an administrator creates tokens with <code>geodeform users add NAME</code>.</p>
</body></html>
"""
