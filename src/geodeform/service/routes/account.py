"""``/account``: who the token belongs to, the server's limits and quotas, and the caller's usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from geodeform.service.accounts import disk_usage
from geodeform.service.auth import User
from geodeform.service.deps import Settings, Store
from geodeform.service.documents import iso_time

__all__ = ["router"]

router = APIRouter(tags=["Account"])


@router.get(
    "/account", summary="Your account: limits, quotas and what you use of them", operation_id="getAccount"
)
async def account(user: User, store: Store, settings: Settings) -> dict[str, Any]:
    usage = await run_in_threadpool(disk_usage, settings, store, user.id)
    active = await run_in_threadpool(store.count_active, user.id)
    return {
        "name": user.name,
        "role": user.role,
        "email": user.email,
        "token_expires": iso_time(user.token_expires),
        "limits": settings.limits(),
        "usage": {
            "active_jobs": active,
            "disk_bytes": usage.total,
            "jobs_bytes": usage.jobs,
            "uploads_bytes": usage.uploads,
        },
        "disk_left_bytes": max(0, settings.max_user_disk_bytes - usage.total),
        "unlimited": user.is_admin,
    }
