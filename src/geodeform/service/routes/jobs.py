"""``/jobs``: the caller's jobs (an admin's: everyone's), their status, results, files and dismissal."""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse

from geodeform.errors import InvalidInputError
from geodeform.io import media_type
from geodeform.service.auth import User
from geodeform.service.deps import JobId, Settings, Store, base_url, own_job
from geodeform.service.documents import STATUS_CODES, results_document, status_info
from geodeform.service.errors import EXCEPTIONS, OGCError, Problem, invalid_parameter, no_such_job
from geodeform.service.safety import check_relative

__all__ = ["router"]

router = APIRouter(tags=["Jobs"])


def _instant(text: str) -> dt.datetime | None:
    """One end of a ``datetime`` interval (RFC 3339; ``..`` or empty: open) as naive UTC."""
    if text in ("", ".."):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid_parameter(
            f"{text!r} is not an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z", "datetime"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when


def _interval(text: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    if text is None:
        return None, None
    parts = text.split("/")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] in ("", "..") and parts[1] in ("", "..")):
        raise invalid_parameter(
            "datetime is one instant or an interval START/END ('..' for open)", "datetime"
        )
    start, end = _instant(parts[0]), _instant(parts[-1])
    if start is not None and end is not None and start > end:
        raise invalid_parameter("datetime: the interval ends before it starts", "datetime")
    return start, end


@router.get("/jobs", summary="List your jobs (newest first)", operation_id="getJobs")
def jobs(
    request: Request,
    user: User,
    store: Store,
    *,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    status: Annotated[list[str] | None, Query(max_length=20)] = None,
    processID: Annotated[list[str] | None, Query(max_length=100)] = None,
    datetime: Annotated[
        str | None,
        Query(max_length=100, description="Jobs created at this instant or in this interval START/END."),
    ] = None,
    minDuration: Annotated[
        int | None, Query(ge=0, le=10**9, description="Jobs that ran at least this long, seconds.")
    ] = None,
    maxDuration: Annotated[
        int | None, Query(ge=0, le=10**9, description="Jobs that ran at most this long, seconds.")
    ] = None,
) -> dict[str, Any]:
    bad = [s for s in status or [] if s not in STATUS_CODES]
    if bad:
        raise OGCError(
            400,
            "Invalid parameter",
            f"unknown status {bad[0][:40]!r}",
            problems=[Problem("status", f"must be one of {', '.join(STATUS_CODES)}")],
        )
    if minDuration is not None and maxDuration is not None and minDuration > maxDuration:
        raise invalid_parameter("minDuration is larger than maxDuration", "minDuration")
    rows = store.list_jobs(
        user_id=None if user.is_admin else user.id,
        limit=limit + 1,
        offset=offset,
        statuses=status,
        process_ids=processID,
        created=_interval(datetime),
        duration=(minDuration, maxDuration),
    )
    base = base_url(request)
    links = [{"href": str(request.url), "rel": "self", "type": "application/json"}]
    if len(rows) > limit:
        nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
        links.append({"href": str(nxt), "rel": "next", "type": "application/json"})
    if offset > 0:
        prev = request.url.include_query_params(limit=limit, offset=max(0, offset - limit))
        links.append({"href": str(prev), "rel": "prev", "type": "application/json"})
    return {"jobs": [status_info(j, base) for j in rows[:limit]], "links": links}


@router.get("/jobs/{jobId}", summary="Status of a job", operation_id="getStatus")
def job_status(request: Request, jobId: JobId, user: User, store: Store) -> dict[str, Any]:
    return status_info(own_job(store, jobId, user), base_url(request))


@router.get(
    "/jobs/{jobId}/results", summary="Results of a job (links to its files)", operation_id="getResult"
)
def job_results(request: Request, jobId: JobId, user: User, store: Store) -> dict[str, Any]:
    job = own_job(store, jobId, user)
    if job.dismiss_requested or job.status == "dismissed":
        raise no_such_job(jobId, f"job {jobId} was dismissed")
    if job.status == "failed":
        raise OGCError(404, "Job failed", job.message, type_=f"{EXCEPTIONS}/job-failed")
    if job.status != "successful":
        raise OGCError(
            404, "Result not ready", f"job {jobId} is {job.status}", type_=f"{EXCEPTIONS}/result-not-ready"
        )
    return results_document(job, base_url(request))


@router.get(
    "/jobs/{jobId}/results/{outputId:path}",
    summary="Download a result file (by output id, or by its path in the job's results)",
    operation_id="getResultFile",
)
def job_result_file(
    jobId: JobId,
    outputId: Annotated[str, Path(max_length=512)],
    user: User,
    store: Store,
    settings: Settings,
) -> FileResponse:
    job = own_job(store, jobId, user)
    missing = OGCError(404, "No such result", f"job {jobId} has no result {outputId[:200]!r}")
    if job.status != "successful" or job.dismiss_requested:
        raise missing
    # By output id, else by relative path (the STAC item / catalogue links are relative to the files);
    # whatever the name, only a regular file inside this job's own folder is ever served.
    entry = job.results.get(outputId)
    if entry is not None and job.outputs and outputId not in job.outputs:
        raise missing  # not asked for in the execute request
    name = entry["name"] if entry else outputId
    job_dir = (settings.jobs_dir / job.id).resolve()
    try:
        path = (job_dir / check_relative(name)).resolve()
        found = path.is_relative_to(job_dir) and path.is_file() and not path.name.startswith(".")
    except (InvalidInputError, OSError):
        found = False
    if not found:
        raise missing
    media = entry["type"] if entry else media_type(path)
    return FileResponse(path, media_type=media.split(";")[0], filename=path.name)


@router.delete(
    "/jobs/{jobId}", summary="Dismiss a job (cancel it and delete its outputs)", operation_id="dismiss"
)
def dismiss(request: Request, jobId: JobId, user: User, store: Store, settings: Settings) -> dict[str, Any]:
    own_job(store, jobId, user)
    job = store.request_dismiss(jobId)
    if job is None:
        raise no_such_job(jobId)
    if job.status == "dismissed":  # the worker cleans up running jobs itself
        shutil.rmtree(settings.jobs_dir / job.id, ignore_errors=True)
    return status_info(job, base_url(request))
