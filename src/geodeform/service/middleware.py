"""ASGI middleware and exception handlers: every error leaves the service as an OGC exception document."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geodeform.service.errors import OGCError, Problem

__all__ = ["BodyLimit", "install_error_handlers"]

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]


class BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    def _too_big(self) -> OGCError:
        return OGCError(413, "Payload Too Large", f"request bodies are limited to {self.limit} bytes")

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_big().response()(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._too_big()
            return message

        try:
            await self.app(scope, limited, send)
        except OGCError as exc:
            await exc.response()(scope, receive, send)


async def _ogc(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OGCError)
    return exc.response()


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        Problem(".".join(str(x) for x in e.get("loc", ())) or "request", str(e.get("msg", "invalid")))
        for e in exc.errors()
    ]
    return OGCError(
        400, "Invalid request", f"{len(problems)} problem(s) with the request", problems=problems
    ).response()


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed", 401: "Unauthorized"}.get(exc.status_code, "Error")
    return OGCError(exc.status_code, title, str(exc.detail)).response()


async def _bug(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return OGCError(
        500, "Internal Server Error", "an unexpected error occurred; it has been logged"
    ).response()


def install_error_handlers(app: FastAPI) -> None:
    """Answer OGC errors, request validation errors, HTTP errors and bugs (500) as OGC documents."""
    app.add_exception_handler(OGCError, _ogc)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _bug)
