"""Errors of the web service, answered as OGC exception documents; imports nothing of geodeform's.

Every error the service answers is an :class:`OGCError`: an exception document with ``type``, ``title``,
``status``, ``detail`` and, for bad input, a ``problems`` list of :class:`Problem`. Handlers, dependencies,
processes and workers raise these; only :mod:`geodeform.service.app` turns them into responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

__all__ = [
    "EXCEPTIONS",
    "OGCError",
    "Problem",
    "invalid_parameter",
    "no_such_job",
    "no_such_process",
]

# OGC API – Processes exception type URIs (``/req/core/...`` exception types of the standard).
EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs of a request: the input's name (dotted path) and what is wrong."""

    input: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        """JSON form used in OGC exception documents."""
        return {"input": self.input, "problem": self.problem}


class OGCError(Exception):
    """An error answered as an OGC exception document.

    Parameters
    ----------
    status
        HTTP status code.
    title
        Short, fixed summary of the kind of error (``"No such job"``).
    detail
        What went wrong in this request and, where it helps, what to do.
    type_
        Exception type URI; default ``about:blank#<title in kebab case>``.
    problems
        Each problem with the request's inputs (400 answers).
    """

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

    def document(self) -> dict[str, Any]:
        """The exception document (JSON object)."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.problems:
            body["problems"] = [p.as_dict() for p in self.problems]
        return body

    def response(self) -> JSONResponse:
        """The JSON response of this error (``application/problem+json``; 401 adds ``WWW-Authenticate``)."""
        headers = {"WWW-Authenticate": 'Bearer realm="geodeform"'} if self.status == 401 else None
        return JSONResponse(
            self.document(),
            status_code=self.status,
            headers=headers,
            media_type="application/problem+json",
        )


def no_such_process(process_id: str) -> OGCError:
    """404 for a process id this server does not offer."""
    return OGCError(
        404, "No such process", f"no process {process_id!r}", type_=f"{EXCEPTIONS}/no-such-process"
    )


def no_such_job(job_id: str, detail: str | None = None) -> OGCError:
    """404 for a job that does not exist, or that the caller may not see (answered alike)."""
    return OGCError(404, "No such job", detail or f"no job {job_id!r}", type_=f"{EXCEPTIONS}/no-such-job")


def invalid_parameter(detail: str, where: str | None = None) -> OGCError:
    """400 for a bad query or path parameter; ``where`` names it in the problems list."""
    problems = [Problem(where, detail)] if where else None
    return OGCError(400, "Invalid parameter", detail, problems=problems)
