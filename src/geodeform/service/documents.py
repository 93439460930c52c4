"""The OGC API – Processes JSON documents the routers answer with: process summaries and job status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from geodeform.service.models import JobInfo
from geodeform.service.processes import Process

__all__ = [
    "CONFORMANCE",
    "REL",
    "STATUS_CODES",
    "iso_time",
    "process_summary",
    "results_document",
    "status_info",
]

REL = "http://www.opengis.net/def/rel/ogc/1.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback",
]
STATUS_CODES = ("accepted", "running", "successful", "failed", "dismissed")


def iso_time(t: dt.datetime | None) -> str | None:
    """A store time (naive UTC) as ISO 8601 with milliseconds and ``Z``; None stays None."""
    return None if t is None else t.isoformat(timespec="milliseconds") + "Z"


def status_info(job: JobInfo, base: str) -> dict[str, Any]:
    """The job's status document (OGC ``statusInfo``), links under ``base``; absent times are left out."""
    status = "dismissed" if job.dismiss_requested else job.status
    links = [
        {"href": f"{base}/jobs/{job.id}", "rel": "self", "type": "application/json", "title": "status"},
    ]
    if status == "successful":
        links.append(
            {"href": f"{base}/jobs/{job.id}/results", "rel": f"{REL}/results", "type": "application/json"}
        )
    info: dict[str, Any] = {
        "type": "process",
        "processID": job.process_id,
        "jobID": job.id,
        "status": status,
        "message": job.message,
        "created": iso_time(job.created),
        "started": iso_time(job.started),
        "finished": iso_time(job.finished),
        "updated": iso_time(job.updated),
        "progress": job.progress,
        "links": links,
    }
    return {k: v for k, v in info.items() if v is not None}


def results_document(job: JobInfo, base: str) -> dict[str, Any]:
    """The results of a successful job (OGC ``results``): a link per output, only those the execute request
    selected (all when it selected none)."""
    chosen = set(job.outputs) if job.outputs else None
    return {
        key: {"href": f"{base}/jobs/{job.id}/results/{key}", "type": r["type"], "title": r["title"]}
        for key, r in job.results.items()
        if chosen is None or key in chosen
    }


def process_summary(p: Process, base: str) -> dict[str, Any]:
    """The process's summary (OGC ``processSummary``), links under ``base``."""
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
            {"href": f"{base}/processes/{p.id}/execution", "rel": f"{REL}/execute", "title": "execute"},
        ],
    }
