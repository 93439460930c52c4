"""Bearer-token authentication: ``Authorization: Bearer TOKEN``, tokens stored as SHA-256 hashes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from geodeform.service.deps import Store
from geodeform.service.errors import OGCError
from geodeform.service.store import UserInfo

__all__ = ["User", "bearer_user"]


def bearer_user(request: Request, store: Store) -> UserInfo:
    """FastAPI dependency: the user owning the request's bearer token; a 401 OGC exception otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise OGCError(
            401, "Unauthorized", "send 'Authorization: Bearer TOKEN' (tokens: geodeform users add)"
        )
    if len(token) > 256:
        raise OGCError(401, "Unauthorized", "invalid token")
    user = store.user_for_token(token)
    if user is None:
        raise OGCError(401, "Unauthorized", "invalid token")
    return user


# The authenticated caller of a handler.
User = Annotated[UserInfo, Depends(bearer_user)]
