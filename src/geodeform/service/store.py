"""Job store: users, jobs and notifications in one SQL database (a SQLite file by default, PostgreSQL with ``postgresql://``).

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from geodeform.service.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    Base,
    Job,
    JobInfo,
    Notification,
    NotificationInfo,
    User,
    UserInfo,
    utcnow,
)

__all__ = [
    "FINAL_STATUSES",
    "Base",
    "Job",
    "JobInfo",
    "JobStore",
    "Notice",
    "Notices",
    "User",
    "UserInfo",
    "hash_token",
    "make_engine",
    "migrate",
    "new_token",
    "normalise_db_url",
]

log = logging.getLogger(__name__)

Notice = tuple[str, str, int, dict[str, Any]]
"""A notification to write: (event, target, attempt, payload)."""
Notices = Callable[[JobInfo], list[Notice]]
"""The notifications a job's new state calls for (by its subscriber), given the job as it now is."""

_now = utcnow


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

    def add_user(
        self,
        name: str,
        *,
        role: str = "user",
        email: str | None = None,
        expires: dt.datetime | None = None,
    ) -> str:
        """Create a user and return its API token (only its hash is stored); ``expires``: naive UTC."""
        token = new_token()
        with self.session() as s:
            s.add(
                User(name=name, token_hash=hash_token(token), role=role, email=email, token_expires=expires)
            )
        return token

    def user_for_token(self, token: str) -> UserInfo | None:
        """The user owning ``token``; None for no such token, an expired one, or a disabled account."""
        with self.session() as s:
            row = s.scalars(sa.select(User).where(User.token_hash == hash_token(token))).first()
            if row is None or row.disabled:
                return None
            if row.token_expires is not None and row.token_expires <= _now():
                return None
            return UserInfo.of(row)

    def user_exists(self, name: str) -> bool:
        """Whether an account called ``name`` exists."""
        return self.get_user(name) is not None

    def get_user(self, name: str) -> UserInfo | None:
        """The account called ``name``, or None."""
        with self.session() as s:
            row = s.scalars(sa.select(User).where(User.name == name)).first()
            return None if row is None else UserInfo.of(row)

    def list_users(self) -> list[UserInfo]:
        """Every account, by name."""
        with self.session() as s:
            return [UserInfo.of(r) for r in s.scalars(sa.select(User).order_by(User.name))]

    def _update_user(self, name: str, **values: Any) -> bool:
        with self.session() as s:
            res = s.execute(sa.update(User).where(User.name == name).values(**values))
            return res.rowcount == 1  # type: ignore[attr-defined]

    def rotate_token(self, name: str, *, expires: dt.datetime | None = None) -> str | None:
        """A new token for ``name`` (the old one stops working at once); None if there is no such user."""
        token = new_token()
        ok = self._update_user(name, token_hash=hash_token(token), token_expires=expires)
        return token if ok else None

    def revoke_token(self, name: str) -> bool:
        """Make ``name``'s token unusable (``rotate`` gives a new one); False if there is no such user."""
        return self._update_user(name, token_hash="!" + secrets.token_hex(31), token_expires=None)

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (no request is served) or enable an account; False if there is no such user."""
        return self._update_user(name, disabled=disabled)

    def set_email(self, name: str, email: str | None) -> bool:
        """Set the account's e-mail address (``mailto:`` notifications); False if there is no such user."""
        return self._update_user(name, email=email)

    # -- jobs: web side ------------------------------------------------------------------------------------

    def create_job(
        self,
        user_id: int,
        process_id: str,
        inputs: dict[str, Any],
        max_active: int | None = None,
        *,
        outputs: list[str] | None = None,
        subscriber: dict[str, str] | None = None,
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
            outputs=None if outputs is None else json.dumps(outputs),
            subscriber=None if subscriber is None else json.dumps(subscriber),
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

    def _duration(self) -> Any:
        """SQL expression: seconds a job ran (until now while it runs); NULL before it started."""
        end = sa.func.coalesce(Job.finished, sa.literal(_now(), sa.DateTime))
        if self.is_sqlite:
            return (sa.func.julianday(end) - sa.func.julianday(Job.started)) * 86400.0
        return sa.func.extract("epoch", end - Job.started)

    def list_jobs(
        self,
        *,
        user_id: int | None,
        limit: int,
        offset: int = 0,
        statuses: Sequence[str] | None = None,
        process_ids: Sequence[str] | None = None,
        created: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
        duration: tuple[float | None, float | None] = (None, None),
    ) -> list[JobInfo]:
        """Newest first; ``user_id=None`` lists everyone's jobs (admin). One indexed query, no count.

        ``created`` keeps jobs created in ``[start, end]`` (either end open with None); ``duration`` keeps
        jobs that ran (or have been running) at least / at most that many seconds.
        """
        q = sa.select(Job)
        if user_id is not None:
            q = q.where(Job.user_id == user_id)
        if statuses:
            q = q.where(Job.status.in_(list(statuses)))
        if process_ids:
            q = q.where(Job.process_id.in_(list(process_ids)))
        if created[0] is not None:
            q = q.where(Job.created >= created[0])
        if created[1] is not None:
            q = q.where(Job.created <= created[1])
        if duration != (None, None):
            seconds = self._duration()
            q = q.where(Job.started.is_not(None))
            if duration[0] is not None:
                q = q.where(seconds >= duration[0])
            if duration[1] is not None:
                q = q.where(seconds <= duration[1])
        q = q.order_by(Job.created.desc(), Job.id.desc()).limit(limit).offset(offset)
        with self.session() as s:
            return [JobInfo.of(r) for r in s.scalars(q)]

    def user_jobs(self, user_id: int, statuses: Sequence[str]) -> list[str]:
        """Ids of the user's jobs in ``statuses``."""
        with self.session() as s:
            q = sa.select(Job.id).where(Job.user_id == user_id, Job.status.in_(list(statuses)))
            return list(s.scalars(q))

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

    def expire(self, *, finished_before: dt.datetime) -> list[str]:
        """Dismiss successful and failed jobs that ended before ``finished_before`` (retention); their ids."""
        with self.session() as s:
            q = sa.select(Job).where(Job.status.in_(("successful", "failed")), Job.finished < finished_before)
            rows = list(s.scalars(q))
            for row in rows:
                row.status, row.updated = "dismissed", _now()
                row.message = f"results deleted after the retention period (ended {row.finished:%Y-%m-%d})"
            return [r.id for r in rows]

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
        self,
        job_id: str,
        worker: str,
        status: str,
        message: str,
        results: dict[str, Any] | None = None,
        *,
        notices: Notices | None = None,
    ) -> bool:
        """End a running job owned by ``worker`` (successful, failed or dismissed); False if it was not.

        ``notices`` gives the notifications this end calls for; they are written in the same transaction,
        so a job's end is reported exactly once (a second worker finishing it finds nothing to update).
        """
        now = _now()
        with self.session() as s:
            row = s.get(Job, job_id, with_for_update=not self.is_sqlite)
            if row is None or row.worker != worker or row.status != "running":
                return False
            row.status, row.message, row.finished, row.updated = status, message[:2000], now, now
            if status == "successful":
                row.progress = 100
            if results is not None:
                row.results = json.dumps(results)
            s.flush()
            if notices is not None:
                self._enqueue(s, job_id, notices(JobInfo.of(row)))
            return True

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

    def reap(
        self, *, stale_after: float, max_attempts: int, notices: Notices | None = None
    ) -> tuple[list[str], list[str]]:
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
                    if notices is not None:
                        s.flush()
                        self._enqueue(s, row.id, notices(JobInfo.of(row)))
                else:
                    row.status, row.worker, row.heartbeat, row.progress = "accepted", None, None, 0
                    row.message = f"re-queued: {lost}"
                    requeued.append(row.id)
        for job_id in requeued:
            log.warning("re-queued job %s (stale heartbeat)", job_id)
        for job_id in failed:
            log.warning("failed job %s (stale heartbeat, attempts exhausted)", job_id)
        return requeued, failed

    # -- notifications (the outbox) ------------------------------------------------------------------------

    def _enqueue(self, s: Session, job_id: str, items: Sequence[Notice]) -> None:
        for event_, target, attempt, payload in items:
            exists = s.scalar(
                sa.select(Notification.id).where(
                    Notification.job_id == job_id,
                    Notification.event == event_,
                    Notification.target == target,
                    Notification.attempt == attempt,
                )
            )
            if exists is None:
                s.add(
                    Notification(
                        job_id=job_id,
                        event=event_,
                        target=target,
                        attempt=attempt,
                        payload=json.dumps(payload),
                        status="pending",
                        tries=0,
                        next_try=_now(),
                        last_error="",
                        created=_now(),
                    )
                )

    def notify(self, job_id: str, items: Sequence[Notice]) -> None:
        """Write notifications of a job (each ``(job, event, target, attempt)`` at most once)."""
        if items:
            with self.session() as s:
                self._enqueue(s, job_id, items)

    def next_notification(self, *, stale_after: float = 300.0) -> NotificationInfo | None:
        """Claim the oldest due notification (``sending``); one claimed longer ago than ``stale_after``
        seconds by a sender that died is due again."""
        now = _now()
        with self.session() as s:
            due = sa.or_(
                sa.and_(Notification.status == "pending", Notification.next_try <= now),
                sa.and_(
                    Notification.status == "sending",
                    Notification.next_try <= now - dt.timedelta(seconds=stale_after),
                ),
            )
            pick = sa.select(Notification.id).where(due).order_by(Notification.next_try).limit(1)
            if not self.is_sqlite:
                pick = pick.with_for_update(skip_locked=True)
            note_id = s.scalar(pick)
            if note_id is None:
                return None
            row = s.get(Notification, note_id)
            assert row is not None
            row.status, row.tries, row.next_try = "sending", row.tries + 1, now
            return NotificationInfo.of(row)

    def notification_done(
        self, note_id: int, *, error: str = "", retry_at: dt.datetime | None = None
    ) -> None:
        """Record a delivery: sent (no ``error``), to be tried again at ``retry_at``, or given up."""
        with self.session() as s:
            row = s.get(Notification, note_id)
            if row is None:
                return
            row.last_error = error[:2000]
            if not error:
                row.status, row.sent = "sent", _now()
            elif retry_at is not None:
                row.status, row.next_try = "pending", retry_at
            else:
                row.status = "failed"

    def notifications(self, job_id: str) -> list[tuple[str, str, str, int]]:
        """(event, target, status, tries) of a job's notifications, oldest first."""
        with self.session() as s:
            q = sa.select(Notification).where(Notification.job_id == job_id).order_by(Notification.id)
            return [(r.event, r.target, r.status, r.tries) for r in s.scalars(q)]
