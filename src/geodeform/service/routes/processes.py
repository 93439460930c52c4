"""``/processes``: the process list and descriptions (public) and execution (token; always asynchronous)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from geodeform.service.auth import User
from geodeform.service.deps import Registry, Settings, Store, base_url, process_or_404
from geodeform.service.documents import process_summary, status_info
from geodeform.service.errors import EXCEPTIONS, OGCError, Problem
from geodeform.service.processes import input_descriptions, validate_inputs

__all__ = ["ExecuteRequest", "router"]

router = APIRouter(tags=["Processes"])
ProcessId = Annotated[str, Path(max_length=200)]


class ExecuteRequest(BaseModel):
    """Body of ``POST /processes/{processId}/execution`` (OGC ``execute.yaml``)."""

    model_config = ConfigDict(extra="allow")

    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] | None = None
    response: str | None = None
    subscriber: dict[str, Any] | None = None


@router.get("/processes", summary="List the processes")
def processes(request: Request, registry: Registry) -> dict[str, Any]:
    base = base_url(request)
    return {
        "processes": [process_summary(p, base) for p in registry.values()],
        "links": [{"href": f"{base}/processes", "rel": "self", "type": "application/json"}],
    }


@router.get("/processes/{processId}", summary="Describe a process")
def process_description(request: Request, processId: ProcessId, registry: Registry) -> dict[str, Any]:
    p = process_or_404(registry, processId)
    return {
        **process_summary(p, base_url(request)),
        "inputs": input_descriptions(p.inputs_model),
        "outputs": dict(p.outputs),
    }


@router.post(
    "/processes/{processId}/execution",
    summary="Execute a process (asynchronously)",
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
    request: Request,
    processId: ProcessId,
    user: User,
    registry: Registry,
    store: Store,
    settings: Settings,
) -> Response:
    process = process_or_404(registry, processId)
    doc = _json_object(await request.body())
    inputs, problems = await run_in_threadpool(validate_inputs, process, doc.get("inputs", {}), settings)
    if inputs is None or problems:
        raise OGCError(
            400,
            "Invalid inputs",
            f"{len(problems)} problem(s) with the inputs of {process.id!r}",
            type_=f"{EXCEPTIONS}/invalid-input",
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
    base = base_url(request)
    headers = {"Location": f"{base}/jobs/{job.id}"}
    if "respond-async" in request.headers.get("prefer", ""):
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(status_info(job, base), status_code=201, headers=headers)


def _json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; 400 when it is not JSON or not an object."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OGCError(
            400,
            "Invalid JSON",
            f"the request body is not valid JSON: {exc}",
            type_=f"{EXCEPTIONS}/invalid-json",
        ) from None
    if not isinstance(doc, dict):
        raise OGCError(
            400,
            "Invalid execute request",
            "the request body must be a JSON object",
            problems=[Problem("body", "must be a JSON object")],
        )
    return doc
