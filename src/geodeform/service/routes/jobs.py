"""``/jobs``: the caller's jobs (an admin's: everyone's), their status, results, files and dismissal."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse

from geodeform.io import media_type
from geodeform.service.auth import User
from geodeform.service.deps import JobId, Settings, Store, base_url, own_job
from geodeform.service.documents import STATUS_CODES, status_info
from geodeform.service.errors import EXCEPTIONS, OGCError, Problem, no_such_job

__all__ = ["router"]

router = APIRouter(tags=["Jobs"])


@router.get("/jobs", summary="List your jobs (newest first)")
def jobs(
    request: Request,
    user: User,
    store: Store,
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
    base = base_url(request)
    links = [{"href": str(request.url), "rel": "self", "type": "application/json"}]
    if len(rows) > limit:
        nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
        links.append({"href": str(nxt), "rel": "next", "type": "application/json"})
    if offset > 0:
        prev = request.url.include_query_params(limit=limit, offset=max(0, offset - limit))
        links.append({"href": str(prev), "rel": "prev", "type": "application/json"})
    return {"jobs": [status_info(j, base) for j in rows[:limit]], "links": links}


@router.get("/jobs/{jobId}", summary="Status of a job")
def job_status(request: Request, jobId: JobId, user: User, store: Store) -> dict[str, Any]:
    return status_info(own_job(store, jobId, user), base_url(request))


@router.get("/jobs/{jobId}/results", summary="Results of a job (links to its files)")
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
    base = base_url(request)
    return {
        key: {"href": f"{base}/jobs/{job.id}/results/{key}", "type": r["type"], "title": r["title"]}
        for key, r in job.results.items()
    }


@router.get(
    "/jobs/{jobId}/results/{outputId:path}",
    summary="Download a result file (by output id, or by its path in the job's results)",
)
def job_result_file(
    jobId: JobId,
    outputId: Annotated[str, Path(max_length=512)],
    user: User,
    store: Store,
    settings: Settings,
) -> FileResponse:
    job = own_job(store, jobId, user)
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
    media = entry["type"] if entry else media_type(path)
    return FileResponse(path, media_type=media.split(";")[0], filename=path.name)


@router.delete("/jobs/{jobId}", summary="Dismiss a job (cancel it and delete its outputs)")
def dismiss(request: Request, jobId: JobId, user: User, store: Store, settings: Settings) -> dict[str, Any]:
    own_job(store, jobId, user)
    job = store.request_dismiss(jobId)
    if job is None:
        raise no_such_job(jobId)
    if job.status == "dismissed":  # the worker cleans up running jobs itself
        shutil.rmtree(settings.jobs_dir / job.id, ignore_errors=True)
    return status_info(job, base_url(request))
