"""Bearer-token authentication: ``Authorization: Bearer TOKEN``, tokens stored as SHA-256 hashes.

The scheme is declared to OpenAPI (``securitySchemes.bearer``) through FastAPI's :class:`HTTPBearer`; the
errors are OGC documents with ``WWW-Authenticate: Bearer``. Expired tokens and disabled accounts are refused
like unknown tokens.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from geodeform.service.deps import Store
from geodeform.service.errors import OGCError
from geodeform.service.models import UserInfo

__all__ = ["BEARER", "User", "bearer_user"]

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token: `geodeform users add NAME` prints it (an administrator runs it).",
)


def bearer_user(
    request: Request,
    store: Store,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> UserInfo:
    """FastAPI dependency: the user owning the request's bearer token; a 401 OGC exception otherwise."""
    if credentials is None or not credentials.credentials.strip():
        raise OGCError(
            401,
            "Unauthorized",
            "send 'Authorization: Bearer TOKEN' (ask the service's administrator for one)",
        )
    token = credentials.credentials.strip()
    if len(token) > 256:
        raise OGCError(401, "Unauthorized", "invalid token")
    user = store.user_for_token(token)
    if user is None:
        raise OGCError(401, "Unauthorized", "invalid, expired or revoked token")
    return user


# The authenticated caller of a handler.
User = Annotated[UserInfo, Depends(bearer_user)]
