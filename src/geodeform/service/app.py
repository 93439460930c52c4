"""The FastAPI application: OGC API – Processes Part 1 Core over the job store, uploads, and the map page.

:func:`create_app` wires the routers of :mod:`geodeform.service.routes` to a job store, settings and the
process registry (``app.state``, read by the dependencies of :mod:`geodeform.service.deps`). Every error is
an OGC exception document (:mod:`geodeform.service.errors`); every response carries the security headers of
:class:`~geodeform.service.middleware.SecurityHeaders`; the OpenAPI document is 3.0.3
(:mod:`geodeform.service.openapi`). Jobs are only ever read and written through
:class:`~geodeform.service.store.JobStore`; the work itself happens in job processes watched by workers
(:mod:`geodeform.service.worker`).

Behind a reverse proxy with a path prefix, run uvicorn with ``root_path`` (``geodeform serve --root-path``):
every link the service writes is then built from the prefix and the forwarded scheme and host, and the pages
only use relative URLs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import FastAPI

from geodeform.service.middleware import BodyLimit, SecurityHeaders, install_error_handlers
from geodeform.service.openapi import openapi_document
from geodeform.service.processes import build_registry
from geodeform.service.routes import account, jobs, landing, page, processes, uploads
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
        "Authenticate with `Authorization: Bearer TOKEN` (the service's administrator creates tokens with "
        "`geodeform users add NAME`).",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store = store or JobStore(settings.db)
    app.state.settings = settings
    app.state.registry = build_registry()
    app.add_middleware(
        BodyLimit, limit=settings.max_body_bytes, large={"/uploads/": settings.max_upload_bytes}
    )
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    for module in (landing, processes, jobs, account, uploads, page):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        return openapi_document(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app
