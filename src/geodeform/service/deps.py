"""FastAPI dependencies of the routers: the job store, the settings and the process registry of the app.

:func:`~geodeform.service.app.create_app` puts them on ``app.state``; handlers receive them as annotated
parameters (``store: Store``), so that a router never imports the app factory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam

from geodeform.service.accounts import user_scope
from geodeform.service.errors import no_such_job, no_such_process
from geodeform.service.models import JobInfo, UserInfo
from geodeform.service.processes import InputContext, Process
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobStore

__all__ = [
    "JobId",
    "Registry",
    "Settings",
    "Store",
    "base_url",
    "get_registry",
    "get_settings",
    "get_store",
    "input_context",
    "own_job",
    "process_or_404",
]


def get_store(request: Request) -> JobStore:
    """The app's job store."""
    store: JobStore = request.app.state.store
    return store


def get_settings(request: Request) -> ServiceSettings:
    """The app's settings (resolved: absolute folders)."""
    settings: ServiceSettings = request.app.state.settings
    return settings


def get_registry(request: Request) -> dict[str, Process]:
    """The processes the app offers, by id."""
    registry: dict[str, Process] = request.app.state.registry
    return registry


Store = Annotated[JobStore, Depends(get_store)]
Settings = Annotated[ServiceSettings, Depends(get_settings)]
Registry = Annotated[dict[str, Process], Depends(get_registry)]
JobId = Annotated[str, PathParam(max_length=64)]


def base_url(request: Request) -> str:
    """The service's base URL as the client reached it (behind a proxy: its scheme and host from the
    forwarded headers uvicorn trusts, and the ``--root-path`` prefix), without a trailing slash."""
    return str(request.base_url).rstrip("/")


def input_context(settings: ServiceSettings, store: JobStore, user: UserInfo) -> InputContext:
    """What ``user``'s inputs may name, for the processes' checks."""
    return InputContext(settings, user_scope(settings, store, user.id))


def own_job(store: JobStore, job_id: str, user: UserInfo) -> JobInfo:
    """The job ``job_id`` if ``user`` may see it (their own; an admin sees all); a 404 OGC error otherwise.

    Someone else's job answers exactly like a missing one: its existence is not disclosed.
    """
    job = store.get_job(job_id)
    if job is None or (job.user_id != user.id and not user.is_admin):
        raise no_such_job(job_id)
    return job


def process_or_404(registry: dict[str, Process], process_id: str) -> Process:
    """The process ``process_id``; a 404 OGC error when the server offers none by that id."""
    process = registry.get(process_id)
    if process is None:
        raise no_such_process(process_id)
    return process
