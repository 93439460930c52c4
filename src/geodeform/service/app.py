"""The FastAPI application: OGC API – Processes Part 1 Core over the job store, and the map page.

:func:`create_app` wires the routers of :mod:`geodeform.service.routes` to a job store, settings and the
process registry (``app.state``, read by the dependencies of :mod:`geodeform.service.deps`). Every error is
an OGC exception document (:mod:`geodeform.service.errors`). Jobs are only ever read and written through
:class:`~geodeform.service.store.JobStore`; the work itself happens in worker processes
(:mod:`geodeform.service.worker`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI

from geodeform.service.middleware import BodyLimit, install_error_handlers
from geodeform.service.processes import build_registry
from geodeform.service.routes import jobs, landing, page, processes
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobStore

__all__ = ["create_app"]


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
    app.state.store = store or JobStore(settings.db)
    app.state.settings = settings
    app.state.registry = build_registry()
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (landing, processes, jobs, page):
        app.include_router(module.router)
    return app
