"""Workers: separate processes that claim jobs from the store, run them, heartbeat, and obey dismissals.

``geodeform serve --workers N`` starts a :class:`WorkerPool`: N processes running :func:`main`, restarted when
one dies, plus a reaper that re-queues (or fails, after ``max_attempts``) running jobs whose heartbeat went
stale because their worker was killed. A worker told to stop (SIGTERM) hands its job back to the queue.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodeform.errors import GeodeformError
from geodeform.service.processes import JobCancelled, Process, build_registry, validate_inputs
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobInfo, JobStore

__all__ = ["Worker", "WorkerPool", "main"]

log = logging.getLogger(__name__)


@dataclass
class _RunState:
    progress: float = 0.0
    message: str = "running"
    cancelled: bool = False
    why: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class Worker:
    """Claims and runs jobs one at a time.

    Parameters
    ----------
    settings
        Service settings (store URL, jobs folder, data roots, heartbeat and staleness periods).
    name
        Identifies this worker in job rows; defaults to ``host:pid:random``.
    """

    def __init__(self, settings: ServiceSettings, *, name: str | None = None) -> None:
        self.settings = settings.resolved()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.store = JobStore(self.settings.db)
        self.registry: dict[str, Process] = build_registry()
        self.stopping = threading.Event()
        self._state: _RunState | None = None
        self.parent_pid: int | None = None

    def stop(self) -> None:
        """Finish soon: the running job (if any) is handed back to the queue."""
        self.stopping.set()
        state = self._state
        if state is not None:
            with state.lock:
                state.cancelled, state.why = True, "stopping"

    def run_forever(self, *, parent_pid: int | None = None) -> None:
        """Claim and run jobs until :meth:`stop` (or until the parent process is gone)."""
        last_reap = 0.0
        self.parent_pid = parent_pid
        while not self.stopping.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("worker %s: parent %d gone, exiting", self.name, parent_pid)
                break
            if time.monotonic() - last_reap > self.settings.heartbeat_s:
                self.store.reap(
                    stale_after=self.settings.stale_after_s, max_attempts=self.settings.max_attempts
                )
                last_reap = time.monotonic()
            if not self.run_one():
                self.stopping.wait(self.settings.poll_s)
        self.store.close()

    def run_one(self) -> bool:
        """Claim one job and run it to its end; False when the queue was empty."""
        job = self.store.claim(self.name)
        if job is None:
            return False
        log.info("worker %s: job %s (%s), attempt %d", self.name, job.id, job.process_id, job.attempts)
        self._execute(job)
        return True

    def _execute(self, job: JobInfo) -> None:
        job_dir = self.settings.jobs_dir / job.id
        if job_dir.exists():  # files of an interrupted attempt: start over (products are rewritten whole)
            shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True)
        state = _RunState()
        self._state = state
        beating = threading.Event()
        beater = threading.Thread(target=self._heartbeat, args=(job, state, beating), daemon=True)
        beater.start()
        try:
            outcome = self._run(job, job_dir, state)
        finally:
            beating.set()
            beater.join()
            self._state = None
        self._conclude(job, job_dir, state, outcome)

    def _run(self, job: JobInfo, job_dir: Path, state: _RunState) -> tuple[str, str, dict[str, Any]]:
        process = self.registry.get(job.process_id)
        if process is None:
            return "failed", f"process {job.process_id!r} is not offered by this worker", {}
        inputs, problems = validate_inputs(process, job.inputs, self.settings)
        if inputs is None or problems:
            detail = "; ".join(f"{p.input}: {p.problem}" for p in problems)
            return "failed", f"inputs no longer valid: {detail}", {}

        def progress(percent: float, message: str | None = None) -> None:
            with state.lock:
                if state.cancelled:
                    raise JobCancelled(state.why)
                state.progress = percent
                if message:
                    state.message = message

        try:
            files = process.runner(inputs, job_dir, progress, self.settings)
        except JobCancelled:
            return "cancelled", state.why, {}
        except GeodeformError as exc:
            return "failed", f"{type(exc).__name__}: {exc}", {}
        except Exception as exc:  # a bug or a broken file: the job fails with a reason, the worker goes on
            log.error("job %s crashed:\n%s", job.id, traceback.format_exc())
            return "failed", f"internal error ({type(exc).__name__}): {exc}", {}
        results = {
            key: {"name": f.name, "type": f.media_type, "title": f.title}
            for key, f in files.items()
            if (job_dir / f.name).is_file()
        }
        return "successful", "finished", results

    def _heartbeat(self, job: JobInfo, state: _RunState, done: threading.Event) -> None:
        while not done.wait(self.settings.heartbeat_s):
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                self.stop()  # our server is gone (killed): hand the job back rather than run orphaned
            with state.lock:
                progress, message = state.progress, state.message
            try:
                alive = self.store.beat(job.id, self.name, int(progress), message)
            except Exception:  # the database is away for a moment: try again at the next beat
                log.exception("heartbeat of job %s failed", job.id)
                continue
            if not alive:
                with state.lock:
                    state.cancelled = True
                    state.why = state.why or "dismissed"

    def _conclude(
        self, job: JobInfo, job_dir: Path, state: _RunState, outcome: tuple[str, str, dict[str, Any]]
    ) -> None:
        status, message, results = outcome
        row = self.store.get_job(job.id)
        if row is None or row.worker != self.name or row.status != "running":
            log.warning("job %s was taken from worker %s; leaving it", job.id, self.name)
            return
        if row.dismiss_requested:
            shutil.rmtree(job_dir, ignore_errors=True)
            self.store.finish(job.id, self.name, "dismissed", "dismissed; outputs deleted")
        elif status == "cancelled":  # stopping: hand the job back, it starts again elsewhere
            shutil.rmtree(job_dir, ignore_errors=True)
            self.store.release(job.id, self.name, "re-queued: its worker was stopped")
        else:
            self.store.finish(job.id, self.name, status, message, results)
        log.info("job %s: %s (%s)", job.id, status, message)


def _worker_command(settings: ServiceSettings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "geodeform.service.worker",
        "--parent-pid",
        str(os.getpid()),
        "--settings",
        settings.to_json(),
    ]


class WorkerPool:
    """N worker processes, restarted when they die, and a reaper for orphaned jobs.

    Parameters
    ----------
    settings
        Service settings.
    size
        Number of worker processes (0: none, jobs wait for workers started elsewhere).
    """

    def __init__(self, settings: ServiceSettings, size: int) -> None:
        self.settings = settings.resolved()
        self.size = size
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-pool", daemon=True)

    def start(self) -> None:
        """Start the workers and the supervising thread."""
        for slot in range(self.size):
            self._spawn(slot)
        self._thread.start()

    def _spawn(self, slot: int) -> None:
        self.procs[slot] = subprocess.Popen(_worker_command(self.settings))
        log.info("worker %d started (pid %d)", slot, self.procs[slot].pid)

    def _supervise(self) -> None:
        store = JobStore(self.settings.db)
        try:
            while not self._stop.wait(1.0):
                for slot, proc in list(self.procs.items()):
                    if proc.poll() is not None and not self._stop.is_set():
                        log.warning("worker pid %d exited with %s; restarting", proc.pid, proc.returncode)
                        self._spawn(slot)
                try:
                    store.reap(
                        stale_after=self.settings.stale_after_s, max_attempts=self.settings.max_attempts
                    )
                except Exception:
                    log.exception("reaper failed; trying again")
        finally:
            store.close()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the workers (they re-queue their jobs), SIGKILL those still there after ``timeout``."""
        self._stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread.is_alive():
            self._thread.join(5)


def main(argv: list[str] | None = None) -> None:
    """Entry point of one worker process (started by :class:`WorkerPool`)."""
    parser = argparse.ArgumentParser(prog="python -m geodeform.service.worker")
    parser.add_argument("--settings", required=True, help="ServiceSettings as JSON")
    parser.add_argument("--name", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = Worker(ServiceSettings.from_json(args.settings), name=args.name)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run_forever(parent_pid=args.parent_pid)


if __name__ == "__main__":
    main()
