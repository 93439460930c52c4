"""ASGI middleware and exception handlers: body limits, security headers, and every error leaving the service
as an OGC exception document."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geodeform.service.errors import OGCError, Problem

__all__ = ["CSP", "BodyLimit", "SecurityHeaders", "install_error_handlers"]

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]


class BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over ``limit`` bytes, declared or streamed.

    Requests whose path (below the root path) starts with one of ``large`` get that prefix's limit
    instead (uploads).
    """

    def __init__(self, app: Any, limit: int, large: dict[str, int] | None = None) -> None:
        self.app, self.limit, self.large = app, limit, large or {}

    def _limit(self, scope: Message) -> tuple[int, str]:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        large = next((n for prefix, n in self.large.items() if path.startswith(prefix)), None)
        return (self.limit, "max_request_bytes") if large is None else (large, "max_upload_bytes")

    @staticmethod
    def _too_big(limit: tuple[int, str]) -> OGCError:
        return OGCError(
            413, "Payload Too Large", f"request bodies are limited to {limit[0]} bytes here ({limit[1]})"
        )

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_long = declared is not None and (not declared.isdigit() or len(declared) > 18)
        if declared is not None and (too_long or int(declared) > limit[0]):
            await self._too_big(limit).response()(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit[0]:
                raise self._too_big(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except OGCError as exc:
            await exc.response()(scope, receive, send)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob: https:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
"""Content-Security-Policy of every response: scripts, styles and data only from the service itself
(images also from https tile servers, for an optional basemap)."""

_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=(), payment=()"),
    (b"content-security-policy", CSP.encode()),
]


class SecurityHeaders:
    """Pure ASGI middleware adding security headers (CSP, nosniff, no framing, no referrer) to every
    response; HSTS is the TLS-terminating proxy's (it knows whether the request came over https)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _HEADERS if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)


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
