"""Job store: users and jobs in one SQL database (a SQLite file by default, PostgreSQL with ``postgresql://``).

The web process and the worker processes share nothing but this database. Every state change is one short
transaction, so a crash of any process leaves the rows consistent:

- ``accepted`` jobs wait in the table until a worker claims one (an atomic UPDATE guarded by
  ``status = 'accepted'``, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), which makes it ``running``;
- a running job's worker writes a heartbeat (and progress) into the row every few seconds;
- :meth:`JobStore.reap` re-queues running jobs whose heartbeat is stale (their worker died) or fails them with
  a reason once they have been tried ``max_attempts`` times.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = [
    "FINAL_STATUSES",
    "Base",
    "Job",
    "JobStore",
    "User",
    "hash_token",
    "migrate",
    "new_token",
    "normalise_db_url",
]

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"successful", "failed", "dismissed"})
ACTIVE_STATUSES = ("accepted", "running")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the service tables (naive UTC timestamps everywhere)."""


class User(Base):
    """An account: a name, a hashed API token and a role (``user`` or ``admin``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16), default="user")
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=_now)


class Job(Base):
    """One execution of a process; ``inputs``, ``results`` and ``messages`` are JSON text."""

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
    created: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=_now)
    started: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    finished: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    updated: Mapped[dt.datetime] = mapped_column(sa.DateTime, default=_now)
    heartbeat: Mapped[dt.datetime | None] = mapped_column(sa.DateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    dismiss_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)


@dataclass(frozen=True)
class UserInfo:
    """A user as the web layer sees it (detached from any session)."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Whether this account sees and touches every job."""
        return self.role == "admin"


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
        )


def new_token() -> str:
    """A fresh API token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 of a token. Tokens carry 256 random bits: a fast hash is enough (no dictionary to attack)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalise_db_url(url: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver and a bare file path to a SQLite URL."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers go on while a worker writes; the busy timeout makes concurrent writers wait, not fail.
    # Transactions are begun by hand (BEGIN IMMEDIATE, below), so pysqlite must not open its own.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """Engine for ``url`` with SQLite tuned for several processes (WAL, busy timeout)."""
    url = normalise_db_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # A deferred transaction that reads then writes fails at once (no busy wait) when another process
        # wrote in between; BEGIN IMMEDIATE takes the write lock up front and waits for it instead.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(url: str) -> None:
    """Bring the schema at ``url`` to the newest alembic revision (creates the tables on a new database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


class JobStore:
    """Users and jobs in one database; every method is one short transaction.

    Parameters
    ----------
    url
        SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://user@host/db``) or a path to a SQLite file.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_db_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is a SQLite file."""
        return self.engine.dialect.name == "sqlite"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error."""
        with self._sessions.begin() as s:
            yield s

    # -- users -------------------------------------------------------------------------------------------

    def add_user(self, name: str, *, role: str = "user") -> str:
        """Create a user and return its API token (only its hash is stored)."""
        token = new_token()
        with self.session() as s:
            s.add(User(name=name, token_hash=hash_token(token), role=role))
        return token

    def user_for_token(self, token: str) -> UserInfo | None:
        """The user owning ``token``, or None."""
        with self.session() as s:
            row = s.scalars(sa.select(User).where(User.token_hash == hash_token(token))).first()
            return None if row is None else UserInfo(row.id, row.name, row.role)

    def user_exists(self, name: str) -> bool:
        """Whether an account called ``name`` exists."""
        with self.session() as s:
            return s.scalars(sa.select(User.id).where(User.name == name)).first() is not None

    # -- jobs: web side ------------------------------------------------------------------------------------

    def create_job(
        self, user_id: int, process_id: str, inputs: dict[str, Any], max_active: int | None = None
    ) -> JobInfo | None:
        """Insert an ``accepted`` job, committed when this returns (a poll right after finds it).

        Returns None, inserting nothing, when the user already has ``max_active`` jobs accepted or running.
        """
        now = _now()
        row = Job(
            id=str(uuid.uuid4()),
            user_id=user_id,
            process_id=process_id,
            status="accepted",
            progress=0,
            message="queued",
            inputs=json.dumps(inputs),
            results="{}",
            created=now,
            updated=now,
            attempts=0,
            dismiss_requested=False,
        )
        with self.session() as s:
            if max_active is not None:
                # Lock the user's row so that concurrent submissions of one user count one after the other.
                s.execute(sa.select(User.id).where(User.id == user_id).with_for_update())
                active = s.scalar(
                    sa.select(sa.func.count()).where(Job.user_id == user_id, Job.status.in_(ACTIVE_STATUSES))
                )
                if int(active or 0) >= max_active:
                    return None
            s.add(row)
        return JobInfo.of(row)

    def get_job(self, job_id: str) -> JobInfo | None:
        """The job ``job_id``, or None."""
        with self.session() as s:
            row = s.get(Job, job_id)
            return None if row is None else JobInfo.of(row)

    def count_active(self, user_id: int) -> int:
        """Number of the user's jobs that are accepted or running."""
        with self.session() as s:
            q = sa.select(sa.func.count()).where(Job.user_id == user_id, Job.status.in_(ACTIVE_STATUSES))
            return int(s.scalar(q) or 0)

    def list_jobs(
        self,
        *,
        user_id: int | None,
        limit: int,
        offset: int = 0,
        statuses: Sequence[str] | None = None,
        process_ids: Sequence[str] | None = None,
    ) -> list[JobInfo]:
        """Newest first; ``user_id=None`` lists everyone's jobs (admin). One indexed query, no count."""
        q = sa.select(Job)
        if user_id is not None:
            q = q.where(Job.user_id == user_id)
        if statuses:
            q = q.where(Job.status.in_(list(statuses)))
        if process_ids:
            q = q.where(Job.process_id.in_(list(process_ids)))
        q = q.order_by(Job.created.desc(), Job.id.desc()).limit(limit).offset(offset)
        with self.session() as s:
            return [JobInfo.of(r) for r in s.scalars(q)]

    def request_dismiss(self, job_id: str) -> JobInfo | None:
        """Dismiss a job: a queued one ends at once; a running one is flagged for its worker to stop."""
        with self.session() as s:
            row = s.get(Job, job_id)
            if row is None:
                return None
            now = _now()
            if row.status == "accepted":
                row.status, row.finished, row.message = "dismissed", now, "dismissed before it started"
            elif row.status == "running":
                row.dismiss_requested = True
                row.message = "dismissal requested"
            elif row.status in ("successful", "failed"):
                row.status, row.message = "dismissed", "dismissed; results deleted"
            row.updated = now
            return JobInfo.of(row)

    # -- jobs: worker side ---------------------------------------------------------------------------------

    def claim(self, worker: str) -> JobInfo | None:
        """Atomically take the oldest ``accepted`` job for ``worker``; None when the queue is empty."""
        now = _now()
        with self.session() as s:
            pick = sa.select(Job.id).where(Job.status == "accepted").order_by(Job.created).limit(1)
            if not self.is_sqlite:
                pick = pick.with_for_update(skip_locked=True)
            job_id = s.scalar(pick)
            if job_id is None:
                return None
            res = s.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.status == "accepted")
                .values(
                    status="running",
                    worker=worker,
                    heartbeat=now,
                    started=now,
                    updated=now,
                    attempts=Job.attempts + 1,
                    message="running",
                )
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = s.get(Job, job_id, populate_existing=True)
            return None if row is None else JobInfo.of(row)

    def beat(self, job_id: str, worker: str, progress: int | None = None, message: str | None = None) -> bool:
        """Heartbeat (and progress) of a running job; returns False if the job must stop (dismissed, lost)."""
        values: dict[str, Any] = {"heartbeat": _now(), "updated": _now()}
        if progress is not None:
            values["progress"] = max(0, min(100, int(progress)))
        if message is not None:
            values["message"] = message[:2000]
        with self.session() as s:
            res = s.execute(
                sa.update(Job)
                .where(
                    Job.id == job_id,
                    Job.worker == worker,
                    Job.status == "running",
                    Job.dismiss_requested.is_(False),
                )
                .values(**values)
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def finish(
        self, job_id: str, worker: str, status: str, message: str, results: dict[str, Any] | None = None
    ) -> bool:
        """End a running job owned by ``worker`` (successful, failed or dismissed); False if it was not."""
        now = _now()
        values: dict[str, Any] = {
            "status": status,
            "message": message[:2000],
            "finished": now,
            "updated": now,
        }
        if status == "successful":
            values["progress"] = 100
        if results is not None:
            values["results"] = json.dumps(results)
        with self.session() as s:
            res = s.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.status == "running")
                .values(**values)
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def release(self, job_id: str, worker: str, message: str) -> bool:
        """Hand a running job back to the queue (its worker is stopping); the attempt does not count."""
        with self.session() as s:
            res = s.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.status == "running")
                .values(
                    status="accepted",
                    worker=None,
                    heartbeat=None,
                    progress=0,
                    attempts=Job.attempts - 1,
                    message=message,
                    updated=_now(),
                )
            )
            return res.rowcount == 1  # type: ignore[attr-defined]

    def reap(self, *, stale_after: float, max_attempts: int) -> tuple[list[str], list[str]]:
        """Re-queue or fail running jobs whose heartbeat is older than ``stale_after`` seconds.

        Returns
        -------
        (requeued, failed)
            Job ids handled. A dismissed-while-running job whose worker died ends ``dismissed``.
        """
        now = _now()
        cutoff = now - dt.timedelta(seconds=stale_after)
        requeued: list[str] = []
        failed: list[str] = []
        with self.session() as s:
            q = sa.select(Job).where(Job.status == "running", Job.heartbeat < cutoff)
            if not self.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            for row in s.scalars(q):
                last = f"{row.heartbeat:%Y-%m-%dT%H:%M:%SZ}"
                lost = f"worker {row.worker} stopped sending heartbeats (last {last})"
                row.updated = now
                if row.dismiss_requested:
                    row.status, row.finished, row.message = "dismissed", now, "dismissed"
                elif row.attempts >= max_attempts:
                    row.status, row.finished = "failed", now
                    row.message = f"{lost}; gave up after {row.attempts} attempt(s)"
                    failed.append(row.id)
                else:
                    row.status, row.worker, row.heartbeat, row.progress = "accepted", None, None, 0
                    row.message = f"re-queued: {lost}"
                    requeued.append(row.id)
        for job_id in requeued:
            log.warning("re-queued job %s (stale heartbeat)", job_id)
        for job_id in failed:
            log.warning("failed job %s (stale heartbeat, attempts exhausted)", job_id)
        return requeued, failed
