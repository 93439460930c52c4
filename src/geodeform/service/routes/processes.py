"""``/processes``: the process list and descriptions (public) and execution (token; always asynchronous)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from geodeform.service.accounts import disk_usage
from geodeform.service.auth import User
from geodeform.service.deps import Registry, Settings, Store, base_url, input_context, process_or_404
from geodeform.service.documents import process_summary, status_info
from geodeform.service.errors import EXCEPTIONS, OGCError, Problem
from geodeform.service.jsonbody import parse_json_object
from geodeform.service.models import UserInfo
from geodeform.service.notify import check_subscriber
from geodeform.service.processes import Process, input_descriptions, validate_inputs
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobStore

__all__ = ["ExecuteRequest", "router"]

router = APIRouter(tags=["Processes"])
ProcessId = Annotated[str, Path(max_length=200)]


class Subscriber(BaseModel):
    """Where to be told of the job (OGC ``subscriber``): webhooks on hosts the server allows, or
    ``mailto:`` your account's own address."""

    model_config = ConfigDict(extra="forbid")

    successUri: str | None = Field(None, max_length=1024)
    failedUri: str | None = Field(None, max_length=1024)
    inProgressUri: str | None = Field(None, max_length=1024)


class OutputRequest(BaseModel):
    """One output asked for; files are always transmitted by reference (a link)."""

    model_config = ConfigDict(extra="allow")

    transmissionMode: str = Field("reference", pattern="^reference$")


class ExecuteRequest(BaseModel):
    """Body of ``POST /processes/{processId}/execution`` (OGC ``execute.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict, description="The process's inputs.")
    outputs: dict[str, OutputRequest] | None = Field(
        None, description="The outputs to return (default: all); only those are listed in the results."
    )
    response: str = Field("document", pattern="^document$", description="Results are links in a document.")
    subscriber: Subscriber | None = None


@router.get("/processes", summary="List the processes", operation_id="getProcesses")
def processes(
    request: Request,
    registry: Registry,
    limit: Annotated[int, Query(ge=1, le=1000, description="Processes per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Processes skipped.")] = 0,
) -> dict[str, Any]:
    base = base_url(request)
    items = list(registry.values())
    page = items[offset : offset + limit]
    links = [{"href": str(request.url), "rel": "self", "type": "application/json"}]
    if offset + limit < len(items):
        nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
        links.append({"href": str(nxt), "rel": "next", "type": "application/json"})
    if offset > 0:
        prev = request.url.include_query_params(limit=limit, offset=max(0, offset - limit))
        links.append({"href": str(prev), "rel": "prev", "type": "application/json"})
    return {"processes": [process_summary(p, base) for p in page], "links": links}


@router.get("/processes/{processId}", summary="Describe a process", operation_id="getProcessDescription")
def process_description(request: Request, processId: ProcessId, registry: Registry) -> dict[str, Any]:
    p = process_or_404(registry, processId)
    return {
        **process_summary(p, base_url(request)),
        "inputs": input_descriptions(p.inputs_model),
        "outputs": dict(p.outputs),
    }


def _request_problems(doc: Mapping[str, Any], process: Process) -> list[Problem]:
    """What is wrong with the execute request outside its inputs (unknown keys, outputs, response)."""
    problems = [
        Problem(key, "unknown field of an execute request (inputs, outputs, response, subscriber)")
        for key in doc
        if key not in ExecuteRequest.model_fields
    ]
    if "inputs" in doc and not isinstance(doc["inputs"], Mapping):
        problems.append(Problem("inputs", "must be a JSON object"))
    outputs = doc.get("outputs")
    if outputs is not None and not isinstance(outputs, Mapping):
        problems.append(Problem("outputs", "must be an object: {output id: {}}"))
    for key, value in (outputs or {}).items() if isinstance(outputs, Mapping) else ():
        if key not in process.outputs:
            problems.append(Problem(f"outputs.{key}", f"no such output; {', '.join(process.outputs)}"))
        elif not isinstance(value, Mapping):
            problems.append(Problem(f"outputs.{key}", "must be an object, e.g. {}"))
        elif value.get("transmissionMode", "reference") != "reference":
            problems.append(
                Problem(f"outputs.{key}.transmissionMode", "only 'reference' is offered: results are links")
            )
    if doc.get("response", "document") != "document":
        problems.append(Problem("response", "only 'document' is offered: results are links in a document"))
    return problems


def _quota_problems(settings: ServiceSettings, store: JobStore, user: UserInfo) -> list[Problem]:
    if user.is_admin:
        return []
    used = disk_usage(settings, store, user.id).total
    if used < settings.max_user_disk_bytes:
        return []
    return [
        Problem(
            "quota",
            f"your files take {used / 2**30:.2f} GiB, your disk quota is "
            f"{settings.max_user_disk_bytes / 2**30:.2f} GiB (max_disk_bytes): dismiss old jobs or delete "
            "uploads first",
        )
    ]


def _check_execute(
    doc: dict[str, Any], process: Process, settings: ServiceSettings, store: JobStore, user: UserInfo
) -> tuple[Any, dict[str, str], list[Problem]]:
    """Everything of an execute request, checked: (validated inputs, subscriber, problems)."""
    problems = _request_problems(doc, process)
    raw = doc.get("inputs", {})
    inputs, found = validate_inputs(process, raw, input_context(settings, store, user))
    problems += found  # named by the input (OGC: problems name input ids), e.g. "reference", "masks.glacier"
    subscriber, found = check_subscriber(doc.get("subscriber"), settings, user)
    problems += found
    problems += _quota_problems(settings, store, user)
    return inputs, subscriber, problems


@router.post(
    "/processes/{processId}/execution",
    summary="Execute a process (asynchronously)",
    operation_id="execute",
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
    doc = parse_json_object(await request.body())
    inputs, subscriber, problems = await run_in_threadpool(
        _check_execute, doc, process, settings, store, user
    )
    if inputs is None or problems:
        raise OGCError(
            400,
            "Invalid execute request",
            f"{len(problems)} problem(s) with the execute request of {process.id!r}",
            type_=f"{EXCEPTIONS}/invalid-input",
            problems=problems,
        )
    limit = None if user.is_admin else settings.max_active_jobs
    outputs = list(doc["outputs"]) if isinstance(doc.get("outputs"), Mapping) and doc["outputs"] else None
    job = await run_in_threadpool(
        lambda: store.create_job(
            user.id,
            process.id,
            inputs.model_dump(mode="json"),
            limit,
            outputs=outputs,
            subscriber=subscriber or None,
        )
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
