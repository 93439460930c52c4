"""Job store on SQLite and on a real PostgreSQL: migrations, tokens, claims, heartbeats, reaper, paging."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from _service_helpers import db_url
from geodeform.service.store import Job, JobStore, hash_token, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = db_url(request.param, tmp_path)
    migrate(url)
    migrate(url)  # idempotent
    s = JobStore(url)
    yield s
    s.close()


def test_schema_is_at_alembic_head(store):
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"


def test_token_is_stored_hashed_and_authenticates(store):
    token = store.add_user("alice")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM users WHERE name = 'alice'")).scalar()
    assert stored == hash_token(token) and token not in stored
    assert store.user_for_token(token).name == "alice"
    assert store.user_for_token(token + "x") is None


def test_each_job_is_claimed_exactly_once_under_concurrency(store):
    store.add_user("alice")
    uid = store.user_for_token(store.add_user("bob")).id
    ids = {store.create_job(uid, "offsets", {"n": i}).id for i in range(24)}
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(w: int) -> None:
        while (job := store.claim(f"w{w}")) is not None:
            with lock:
                claimed.append(job.id)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(drain, range(4)))
    assert sorted(claimed) == sorted(ids)


def test_stale_heartbeat_requeues_then_fails_with_reason(store):
    uid = store.user_for_token(store.add_user("alice")).id
    job = store.create_job(uid, "offsets", {})
    assert store.claim("w1").id == job.id
    assert store.beat(job.id, "w1", 40, "matching")
    time.sleep(0.2)
    assert store.reap(stale_after=0.1, max_attempts=2) == ([job.id], [])
    again = store.get_job(job.id)
    assert again.status == "accepted" and "re-queued" in again.message
    assert not store.beat(job.id, "w1", 50)  # the lost worker may not write any more
    assert store.claim("w2").attempts == 2
    time.sleep(0.2)
    assert store.reap(stale_after=0.1, max_attempts=2) == ([], [job.id])
    done = store.get_job(job.id)
    assert done.status == "failed" and "heartbeat" in done.message and done.finished is not None


def test_release_hands_job_back_without_counting_the_attempt(store):
    uid = store.user_for_token(store.add_user("alice")).id
    job = store.create_job(uid, "offsets", {})
    store.claim("w1")
    assert store.release(job.id, "w1", "re-queued: stopping")
    row = store.get_job(job.id)
    assert (row.status, row.attempts) == ("accepted", 0)


def test_dismiss_queued_and_running(store):
    uid = store.user_for_token(store.add_user("alice")).id
    queued = store.create_job(uid, "offsets", {})
    running = store.create_job(uid, "offsets", {})
    store.claim("w1")  # oldest first: `queued`
    store.request_dismiss(running.id)
    assert store.get_job(running.id).status == "dismissed"
    store.request_dismiss(queued.id)
    assert store.get_job(queued.id).dismiss_requested
    assert not store.beat(queued.id, "w1", 10)  # tells the worker to stop


def test_active_job_limit_per_user(store):
    uid = store.user_for_token(store.add_user("alice")).id
    assert all(store.create_job(uid, "offsets", {}, max_active=3) for _ in range(3))
    assert store.create_job(uid, "offsets", {}, max_active=3) is None
    assert store.count_active(uid) == 3


def test_list_is_paged_newest_first_and_per_user(store):
    a = store.user_for_token(store.add_user("alice")).id
    b = store.user_for_token(store.add_user("bob")).id
    mine = [store.create_job(a, "offsets", {"i": i}).id for i in range(5)]
    store.create_job(b, "offsets", {})
    page1 = store.list_jobs(user_id=a, limit=3)
    page2 = store.list_jobs(user_id=a, limit=3, offset=3)
    assert [j.id for j in page1 + page2] == mine[::-1]
    assert len(store.list_jobs(user_id=None, limit=100)) == 6
    assert store.list_jobs(user_id=a, limit=10, statuses=["running"]) == []


def test_job_list_query_walks_an_index_not_the_table(tmp_path):
    """What keeps `/jobs` fast with 10 000 jobs (timed in benchmarks/bench_service.py): no scan + sort."""
    url = db_url("sqlite", tmp_path)
    migrate(url)
    store = JobStore(url)
    q = (
        sa.select(Job)
        .where(Job.user_id == 1)
        .order_by(Job.created.desc(), Job.id.desc())
        .limit(11)
        .offset(500)
    )
    with store.engine.connect() as conn:
        compiled = q.compile(conn, compile_kwargs={"literal_binds": True})
        plan = " ".join(str(r[-1]) for r in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")))
    store.close()
    assert "ix_jobs_user_created" in plan and "TEMP B-TREE" not in plan, plan


def test_migrations_match_the_models(store):
    """A model change without its alembic migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from geodeform.service.store import Base

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
