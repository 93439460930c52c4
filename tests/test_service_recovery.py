"""Nothing is lost: kill -9 of a worker mid-job, a restart of the server, 50 concurrent submissions."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from _service_helpers import FINAL, Receiver, Server, add_users, auth, db_url, running, wait_final, write_pair
from geodeform.service.store import JobStore

# Every test here runs `geodeform serve` with worker processes and kills or restarts them.
pytestmark = pytest.mark.slow


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root


def _wait_running(store: JobStore, *job_ids: str, timeout: float = 60.0):
    """The first of ``job_ids`` seen running on a worker (any of them: with one worker, the jobs of an
    earlier round run first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id in job_ids:
            job = store.get_job(job_id)
            if job.status == "running" and job.worker:
                return job
        time.sleep(0.05)
    raise AssertionError(f"none of {job_ids} started: {[store.get_job(i) for i in job_ids]}")


def test_kill_9_of_a_worker_mid_job_then_the_job_finishes(tmp_path, data):
    """The job is re-queued by the reaper and finishes on the restarted worker; its subscriber hears of its
    success exactly once (the killed attempt never reports), and of its start once per attempt that got to
    start (this test also stands for the notifications' exactly-once check of test_service_accounts.py)."""
    ref, sec = write_pair(data, size=512)
    slow = {"reference": ref, "secondary": sec, "chip": 32, "step": 4, "search": 16}
    db = db_url("sqlite", tmp_path)
    (token,) = add_users(db, "alice")
    receiver = Receiver()
    sub = {"successUri": receiver.url("/ok"), "inProgressUri": receiver.url("/running")}
    args = ("--heartbeat", "0.3", "--stale-after", "2", "--max-attempts", "2", "--webhook-host", "127.0.0.1")
    server = Server(db=db, data_root=data, jobs_dir=tmp_path / "jobs", workers=1, args=args)
    store = JobStore(db)
    try:
        with running(server), httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post(
                "/processes/offsets/execution", json={"inputs": slow, "subscriber": sub}, headers=auth(token)
            )
            job_id = r.json()["jobID"]
            job = _wait_running(store, job_id)
            pid = int(job.worker.split(":")[1])
            assert pid in server.worker_pids()
            os.kill(pid, signal.SIGKILL)
            doc = wait_final(c, f"/jobs/{job_id}", token, timeout=180)
            assert doc["status"] == "successful", doc
            assert store.get_job(job_id).attempts == 2  # re-queued once, by the reaper, after the kill
            assert c.get(f"/jobs/{job_id}/results", headers=auth(token)).status_code == 200
            # Every notification is a row of the store, written with the change it reports, and sent from
            # there: once none of the job's is left to send (the final one included: the job is final), no
            # further one can come, and what the receiver has is all there will be.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                not receiver.on("/ok")
                or any(status in ("pending", "sending") for _, _, status, _ in store.notifications(job_id))
            ):
                time.sleep(0.1)
            notes = store.notifications(job_id)
            assert notes and all(status == "sent" for _, _, status, _ in notes), notes
        assert [b["jobID"] for b in receiver.on("/ok")] == [job_id]
        assert 1 <= len(receiver.on("/running")) <= 2  # one per attempt that got to start
    finally:
        receiver.close()
        store.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_server_restarts_lose_no_job(tmp_path, data):
    """Stopped with SIGTERM mid-job, then killed with SIGKILL mid-job: every job still ends successful."""
    ref, sec = write_pair(data, size=256)
    inputs = {"reference": ref, "secondary": sec, "chip": 32, "step": 4, "search": 8}
    db = db_url("sqlite", tmp_path)
    (token,) = add_users(db, "alice")
    store = JobStore(db)

    def server() -> Server:
        return Server(
            db=db, data_root=data, jobs_dir=tmp_path / "jobs", workers=1, args=("--heartbeat", "0.5")
        )

    ids: list[str] = []
    for how in ("SIGTERM", "SIGKILL"):
        with running(server()) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
            new = [
                c.post("/processes/offsets/execution", json={"inputs": inputs}, headers=auth(token)).json()[
                    "jobID"
                ]
                for _ in range(2)
            ]
            ids += new
            _wait_running(store, *ids)  # a job is mid-run when the server stops
            if how == "SIGKILL":  # the server dies at once; its orphaned worker hands its job back and exits
                workers = srv.worker_pids()
                os.kill(srv.proc.pid, signal.SIGKILL)
                srv.proc.wait()
                srv.proc = None
                deadline = time.monotonic() + 60
                while any(_alive(p) for p in workers) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not any(_alive(p) for p in workers)
        # Whatever was running went back to the queue (or had just finished): nothing lost, nothing stuck.
        assert all(store.get_job(i).status in {"accepted", "successful"} for i in ids), how
    with running(server()) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        docs = [wait_final(c, f"/jobs/{i}", token) for i in ids]
    assert [d["status"] for d in docs] == ["successful"] * 4
    store.close()


def test_50_concurrent_submissions_all_reach_a_final_state(tmp_path, data):
    ref, sec = write_pair(data, size=64)
    inputs = {"reference": ref, "secondary": sec, "chip": 16, "step": 16, "search": 4}
    db = db_url("sqlite", tmp_path)
    tokens = add_users(db, *(f"user{i}" for i in range(5)))
    server = Server(db=db, data_root=data, jobs_dir=tmp_path / "jobs", workers=2, args=("--heartbeat", "0.5"))
    with running(server), httpx.Client(base_url=server.url, timeout=60) as c:

        def submit(i: int) -> tuple[str, str, int]:
            token = tokens[i % len(tokens)]
            r = c.post("/processes/offsets/execution", json={"inputs": inputs}, headers=auth(token))
            return token, r.json().get("jobID", ""), r.status_code

        with ThreadPoolExecutor(50) as pool:
            submitted = list(pool.map(submit, range(50)))
        assert [code for _, _, code in submitted] == [201] * 50
        docs = [wait_final(c, f"/jobs/{job}", token, timeout=240) for token, job, _ in submitted]
        assert {d["status"] for d in docs} <= FINAL
        assert [d["status"] for d in docs] == ["successful"] * 50
        listed = set()
        for token in tokens:
            listed |= {j["jobID"] for j in c.get("/jobs?limit=100", headers=auth(token)).json()["jobs"]}
        assert listed == {job for _, job, _ in submitted}
