"""Tables of the job store (SQLAlchemy 2 models) and the plain records the rest of the service sees.

``users`` (accounts and their token hashes), ``jobs`` (one row per execution) and ``notifications`` (the
outbox of webhooks and e-mails: a row is written in the same transaction as the job state it reports, then
delivered with retries by :mod:`geodeform.service.notify`). Timestamps are naive UTC everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "Base",
    "Job",
    "JobInfo",
    "Notification",
    "NotificationInfo",
    "User",
    "UserInfo",
    "utcnow",
]

FINAL_STATUSES = frozenset({"successful", "failed", "dismissed"})
ACTIVE_STATUSES = ("accepted", "running")


def utcnow() -> dt.datetime:
    """Now, as the store keeps times: naive UTC."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the service tables (naive UTC timestamps everywhere)."""


class User(Base):
    """An account: a name, a hashed API token (with an optional expiry) and a role (``user``/``admin``).

    A revoked token's hash is replaced by ``!`` and random text, which no token hashes to.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16), default="user")
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    token_expires: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    email: Mapped[str | None] = mapped_column(sa.String(254), nullable=True)


class Job(Base):
    """One execution of a process; ``inputs``, ``results``, ``outputs`` and ``subscriber`` are JSON text."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_user_created", "user_id", "created", "id"),
        sa.Index("ix_jobs_created", "created", "id"),
        sa.Index("ix_jobs_status_created", "status", "created"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    process_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="accepted")
    progress: Mapped[int] = mapped_column(sa.Integer, default=0)
    message: Mapped[str] = mapped_column(sa.Text, default="")
    inputs: Mapped[str] = mapped_column(sa.Text, default="{}")
    results: Mapped[str] = mapped_column(sa.Text, default="{}")
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    started: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    finished: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    updated: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    heartbeat: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    dismiss_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    outputs: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    subscriber: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class Notification(Base):
    """One message to deliver (a webhook POST or an e-mail), written with the job change it reports.

    ``(job_id, event, target, attempt)`` is unique: a job's success is reported once per target whatever
    happens to workers (``attempt`` is the job attempt for ``in-progress``, 0 for the final events).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("job_id", "event", "target", "attempt", name="uq_notifications_once"),
        sa.Index("ix_notifications_due", "status", "next_try"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(sa.String(16))
    target: Mapped[str] = mapped_column(sa.String(1024))
    attempt: Mapped[int] = mapped_column(sa.Integer, default=0)
    payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    tries: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_try: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=utcnow)
    sent: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)


@dataclass(frozen=True)
class UserInfo:
    """A user as the web layer sees it (detached from any session)."""

    id: int
    name: str
    role: str
    email: str | None = None
    token_expires: dt.datetime | None = None
    disabled: bool = False
    created: dt.datetime | None = None
    revoked: bool = False

    @property
    def is_admin(self) -> bool:
        """Whether this account sees and touches every job."""
        return self.role == "admin"

    @classmethod
    def of(cls, row: User) -> UserInfo:
        """Copy a mapped row."""
        return cls(
            id=row.id,
            name=row.name,
            role=row.role,
            email=row.email,
            token_expires=row.token_expires,
            disabled=bool(row.disabled),
            created=row.created,
            revoked=row.token_hash.startswith("!"),
        )


@dataclass(frozen=True)
class JobInfo:
    """A job row as plain data (detached from any session)."""

    id: str
    user_id: int
    process_id: str
    status: str
    progress: int
    message: str
    inputs: dict[str, Any]
    results: dict[str, Any]
    created: dt.datetime
    started: dt.datetime | None
    finished: dt.datetime | None
    updated: dt.datetime
    heartbeat: dt.datetime | None
    worker: str | None
    attempts: int
    dismiss_requested: bool
    outputs: list[str] | None = None
    subscriber: dict[str, str] | None = None

    @classmethod
    def of(cls, row: Job) -> JobInfo:
        """Copy a mapped row."""
        return cls(
            id=row.id,
            user_id=row.user_id,
            process_id=row.process_id,
            status=row.status,
            progress=row.progress,
            message=row.message,
            inputs=json.loads(row.inputs or "{}"),
            results=json.loads(row.results or "{}"),
            created=row.created,
            started=row.started,
            finished=row.finished,
            updated=row.updated,
            heartbeat=row.heartbeat,
            worker=row.worker,
            attempts=row.attempts,
            dismiss_requested=row.dismiss_requested,
            outputs=None if row.outputs is None else json.loads(row.outputs),
            subscriber=None if row.subscriber is None else json.loads(row.subscriber),
        )


@dataclass(frozen=True)
class NotificationInfo:
    """A notification row as plain data."""

    id: int
    job_id: str
    event: str
    target: str
    payload: dict[str, Any]
    tries: int

    @classmethod
    def of(cls, row: Notification) -> NotificationInfo:
        """Copy a mapped row."""
        return cls(row.id, row.job_id, row.event, row.target, json.loads(row.payload), row.tries)
