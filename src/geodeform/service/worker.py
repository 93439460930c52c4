"""Workers: processes that claim jobs from the store and watch each one run in a job process of its own.

``geodeform serve --workers N`` starts a :class:`WorkerPool`: N processes running :func:`main`, restarted when
one dies, a reaper that re-queues (or fails, after ``max_attempts``) running jobs whose heartbeat went stale
because their worker was killed, the retention sweep, and the notification sender.

A :class:`Worker` claims a job, checks its inputs again in the owner's data scope, and starts a job process
(:mod:`geodeform.service.jobrun`) for it. While the job runs, the worker stores its progress with a heartbeat
every ``heartbeat_s`` and ends the job process's whole process group when

- the job is dismissed (the heartbeat finds the flag): the job ends ``dismissed``, its folder deleted;
- the worker is told to stop (SIGTERM): the job goes back to the queue (that attempt does not count);
- the job runs past ``max_job_seconds``, its processes' resident memory grows past ``max_job_memory_bytes``,
  or its folder makes the owner's files larger than ``max_user_disk_bytes``: the job ends ``failed`` with a
  message naming the limit, and is not tried again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from geodeform.errors import InvalidInputError
from geodeform.service.accounts import disk_usage, folder_bytes, user_scope
from geodeform.service.jobrun import JobRequest, group_rss, job_main
from geodeform.service.models import JobInfo
from geodeform.service.notify import Notifier, final_notices, progress_notices
from geodeform.service.processes import InputContext, Process, build_registry, validate_inputs
from geodeform.service.settings import MiB, ServiceSettings
from geodeform.service.store import JobStore

__all__ = ["Worker", "WorkerPool", "main", "sweep"]

log = logging.getLogger(__name__)

_FORKSERVER = multiprocessing.get_context("forkserver")
# Each job process runs the worker's main module again (multiprocessing's spawn preparation: for
# ``python -m geodeform.service.worker``, ``runpy.run_module`` of this module): the fork server imports it
# too, so that its imports (the store, accounts, notifications: SQLAlchemy...) are there already, rather than
# imported again by every job (0.3-0.5 CPU-s each).
_FORKSERVER.set_forkserver_preload(["geodeform.service._jobserver", "geodeform.service.worker"])


@dataclass
class _Watch:
    """What the worker knows of a running job process."""

    progress: float = 0.0
    message: str = "running"
    baseline_rss: int = 0
    outcome: tuple[str, str, dict[str, Any]] | None = None
    stop_reason: tuple[str, str] | None = None  # (status, message) of a stop decided by the worker
    dismissed: bool = False  # set by the heartbeat thread
    remove_outputs: bool = False
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Claims jobs one at a time and watches each one run in its job process.

    Parameters
    ----------
    settings
        Service settings (store URL, folders, limits, heartbeat and staleness periods).
    name
        Identifies this worker in job rows; defaults to ``host:pid:random``.
    """

    def __init__(self, settings: ServiceSettings, *, name: str | None = None) -> None:
        self.settings = settings.resolved()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.store = JobStore(self.settings.db)
        self.registry: dict[str, Process] = build_registry()
        self.stopping = threading.Event()
        self.parent_pid: int | None = None
        self.job_pid: int | None = None  # the running job's process (monitoring, tests)

    def stop(self) -> None:
        """Finish soon: the running job (if any) is handed back to the queue."""
        self.stopping.set()

    def run_forever(self, *, parent_pid: int | None = None) -> None:
        """Claim and run jobs until :meth:`stop` (or until the parent process is gone)."""
        last_reap = 0.0
        self.parent_pid = parent_pid
        while not self.stopping.is_set():
            if self._orphaned():
                log.warning("worker %s: parent %d gone, exiting", self.name, parent_pid)
                break
            if time.monotonic() - last_reap > self.settings.heartbeat_s:
                self.store.reap(
                    stale_after=self.settings.stale_after_s,
                    max_attempts=self.settings.max_attempts,
                    notices=final_notices(self.settings),
                )
                last_reap = time.monotonic()
            if not self.run_one():
                self.stopping.wait(self.settings.poll_s)
        self.store.close()

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run_one(self) -> bool:
        """Claim one job and run it to its end; False when the queue was empty."""
        _warm_job_server()  # before a claim: the fork server's warm-up takes seconds
        job = self.store.claim(self.name)
        if job is None:
            return False
        log.info("worker %s: job %s (%s), attempt %d", self.name, job.id, job.process_id, job.attempts)
        self.store.notify(job.id, progress_notices(job, self.settings))
        self._execute(job)
        return True

    # -- one job ---------------------------------------------------------------------------------------------

    def _request(self, job: JobInfo, job_dir: Path) -> JobRequest | str:
        """The job process's request, or why the job cannot run (its inputs are no longer valid)."""
        process = self.registry.get(job.process_id)
        if process is None:
            return f"process {job.process_id!r} is not offered by this worker"
        scope = user_scope(self.settings, self.store, job.user_id)
        context = InputContext(self.settings, scope)
        inputs, problems = validate_inputs(process, job.inputs, context)
        if inputs is None or problems:
            return "inputs no longer valid: " + "; ".join(f"{p.input}: {p.problem}" for p in problems)
        try:
            prepared = process.prepare(inputs, context) if process.prepare is not None else inputs
        except InvalidInputError as exc:  # the files changed since the check (e.g. swapped for a symlink)
            return f"inputs no longer valid: {exc}"
        return JobRequest(
            job_id=job.id,
            process_id=job.process_id,
            inputs=prepared.model_dump(mode="json"),
            job_dir=str(job_dir),
            settings=self.settings.to_json(),
            mask=scope.mask({job_dir: ".", self.settings.jobs_dir: "jobs"}),
            memory_limit=self.settings.max_job_memory_bytes,
        )

    def _execute(self, job: JobInfo) -> None:
        watch = _Watch()
        beating = threading.Event()
        beater = threading.Thread(target=self._heartbeat, args=(job, watch, beating), daemon=True)
        beater.start()  # from the claim on, whatever the main loop is doing (validating, starting, joining)
        job_dir = self.settings.jobs_dir / job.id
        try:
            if job_dir.exists():  # files of an interrupted attempt: start over (products are rewritten whole)
                shutil.rmtree(job_dir, ignore_errors=True)
            job_dir.mkdir(parents=True)
            request = self._request(job, job_dir)
            if isinstance(request, str):
                outcome: tuple[str, str, dict[str, Any]] = ("failed", request, {})
            else:
                outcome = self._run_process(job, request, watch)
        finally:
            beating.set()
            beater.join()
        if watch.remove_outputs:
            shutil.rmtree(job_dir, ignore_errors=True)
        self._conclude(job, job_dir, outcome)

    def _run_process(
        self, job: JobInfo, request: JobRequest, watch: _Watch
    ) -> tuple[str, str, dict[str, Any]]:
        receive, send = _FORKSERVER.Pipe(duplex=False)
        proc = _FORKSERVER.Process(
            target=job_main, args=(request, send), name=f"job-{job.id[:8]}", daemon=False
        )
        proc.start()
        send.close()
        self.job_pid = proc.pid
        try:
            return self._watch(job, proc, receive, watch)
        finally:
            _kill_group(proc)
            receive.close()
            self.job_pid = None

    def _heartbeat(self, job: JobInfo, watch: _Watch, done: threading.Event) -> None:
        """Every ``heartbeat_s``: store the progress; flag the job when it was dismissed (or taken away)."""
        while not done.wait(self.settings.heartbeat_s):
            if self._orphaned():
                self.stop()  # our server is gone (killed): hand the job back rather than run orphaned
            try:
                alive = self.store.beat(job.id, self.name, int(watch.progress), watch.message)
            except Exception:  # the database is away for a moment: try again at the next beat
                log.exception("heartbeat of job %s failed", job.id)
                continue
            if not alive:
                watch.dismissed = True

    def _watch(
        self, job: JobInfo, proc: Any, conn: Connection, watch: _Watch
    ) -> tuple[str, str, dict[str, Any]]:
        """Follow the job process to its end; the job's outcome."""
        s = self.settings
        disk_left = s.max_user_disk_bytes - disk_usage(s, self.store, job.user_id, skip=job.id).total
        next_check = time.monotonic()
        while True:
            ended = self._receive(conn, watch, timeout=0.1)
            if ended or watch.outcome is not None:
                break
            now = time.monotonic()
            if self.stopping.is_set():
                watch.stop_reason = ("cancelled", "re-queued: its worker was stopped")
            elif watch.dismissed:
                watch.stop_reason = ("dismissed", "dismissed; outputs deleted")
            elif now >= next_check:
                next_check = now + 1.0
                watch.stop_reason = self._over_limit(job, proc, watch, disk_left)
            if watch.stop_reason is not None:
                break
        if watch.outcome is not None and watch.outcome[0] == "successful":
            watch.stop_reason = self._over_disk(job, watch, disk_left)  # what it wrote last counts too
        if watch.stop_reason is not None:
            return (*watch.stop_reason, {})
        if watch.outcome is not None:
            return watch.outcome
        proc.join(5)
        code = proc.exitcode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        hint = " (killed: probably out of memory)" if code == -signal.SIGKILL else ""
        return "failed", f"the job's process ended without a result ({why}){hint}", {}

    @staticmethod
    def _receive(conn: Connection, watch: _Watch, timeout: float) -> bool:
        """Read the job process's messages; True when it has closed its end (ended)."""
        try:
            while conn.poll(timeout):
                timeout = 0
                msg = conn.recv()
                if msg[0] == "started":
                    watch.baseline_rss = group_rss(msg[1])
                elif msg[0] == "progress":
                    watch.progress, watch.message = msg[1], msg[2] or watch.message
                elif msg[0] == "done":
                    watch.outcome = (msg[1], msg[2], msg[3])
                    return False
        except (EOFError, OSError):
            return True
        return False

    def _over_limit(self, job: JobInfo, proc: Any, watch: _Watch, disk_left: int) -> tuple[str, str] | None:
        s = self.settings
        if s.max_job_seconds and time.monotonic() - watch.started > s.max_job_seconds:
            return "failed", (
                f"stopped after {s.max_job_seconds:.0f} s: this server's wall-time limit per job "
                "(max_job_seconds); make the job smaller (fewer pairs, a larger step, a smaller area)"
            )
        if s.max_job_memory_bytes and proc.pid is not None:
            used = group_rss(proc.pid) - watch.baseline_rss
            if used > s.max_job_memory_bytes:
                return "failed", (
                    f"stopped: the job used {used / MiB:.0f} MiB, more than this server's limit of "
                    f"{s.max_job_memory_bytes / MiB:.0f} MiB per job (max_job_memory_bytes); raise the step, "
                    "crop the images or make fewer pairs"
                )
        return self._over_disk(job, watch, disk_left)

    def _over_disk(self, job: JobInfo, watch: _Watch, disk_left: int) -> tuple[str, str] | None:
        s = self.settings
        if folder_bytes(s.jobs_dir / job.id) <= disk_left:
            return None
        watch.remove_outputs = True  # kept, they would keep their owner over the quota
        return "failed", (
            f"stopped: your files would take more than your disk quota of {s.max_user_disk_bytes:,} bytes "
            "(max_disk_bytes); dismiss old jobs or delete uploads, then submit again"
        )

    def _conclude(self, job: JobInfo, job_dir: Path, outcome: tuple[str, str, dict[str, Any]]) -> None:
        status, message, results = outcome
        row = self.store.get_job(job.id)
        if row is None or row.worker != self.name or row.status != "running":
            log.warning("job %s was taken from worker %s; leaving it", job.id, self.name)
            return
        if row.dismiss_requested or status == "dismissed":
            shutil.rmtree(job_dir, ignore_errors=True)
            self.store.finish(job.id, self.name, "dismissed", "dismissed; outputs deleted")
        elif status == "cancelled":  # stopping: hand the job back, it starts again elsewhere
            shutil.rmtree(job_dir, ignore_errors=True)
            self.store.release(job.id, self.name, message)
        else:
            self.store.finish(
                job.id, self.name, status, message, results, notices=final_notices(self.settings)
            )
        log.info("job %s: %s (%s)", job.id, status, message)


_warm = threading.Event()


def _noop() -> None:
    """A job process that does nothing (starting one waits for the fork server's warm-up)."""


def _warm_job_server() -> None:
    """Start the fork server of the job processes and wait until it has warmed up (once per process)."""
    if not _warm.is_set():
        proc = _FORKSERVER.Process(target=_noop, name="warm-up")
        proc.start()
        proc.join()
        _warm.set()


def _kill_group(proc: Any) -> None:
    """End the job process and every process it started (its process group)."""
    if proc.pid is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.is_alive():
        proc.kill()
    proc.join(10)


def sweep(store: JobStore, settings: ServiceSettings) -> list[str]:
    """The retention policy: delete the folders of jobs that ended more than ``retention_days`` ago (the
    jobs become ``dismissed``) and of dismissed jobs; the ids whose folders went."""
    removed: list[str] = []
    if settings.retention_days:
        cutoff = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(
            days=settings.retention_days
        )
        for job_id in store.expire(finished_before=cutoff):
            shutil.rmtree(settings.jobs_dir / job_id, ignore_errors=True)
            removed.append(job_id)
    try:
        folders = [p for p in settings.jobs_dir.iterdir() if p.is_dir()]
    except OSError:
        return removed
    for folder in folders:
        job = store.get_job(folder.name) if len(folder.name) <= 36 else None
        if job is not None and job.status == "dismissed":
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


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
    """N worker processes, restarted when they die, a reaper for orphaned jobs, the retention sweep and the
    notification sender.

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
        self.notifier = Notifier(self.settings, period=self.settings.poll_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-pool", daemon=True)

    def start(self) -> None:
        """Start the workers, the supervising thread and the notifier."""
        for slot in range(self.size):
            self._spawn(slot)
        self._thread.start()
        self.notifier.start()

    def _spawn(self, slot: int) -> None:
        self.procs[slot] = subprocess.Popen(_worker_command(self.settings))
        log.info("worker %d started (pid %d)", slot, self.procs[slot].pid)

    def _supervise(self) -> None:
        store = JobStore(self.settings.db)
        last_sweep = 0.0
        try:
            while not self._stop.wait(self.settings.poll_s):
                for slot, proc in list(self.procs.items()):
                    if proc.poll() is not None and not self._stop.is_set():
                        log.warning("worker pid %d exited with %s; restarting", proc.pid, proc.returncode)
                        self._spawn(slot)
                try:
                    store.reap(
                        stale_after=self.settings.stale_after_s,
                        max_attempts=self.settings.max_attempts,
                        notices=final_notices(self.settings),
                    )
                    if time.monotonic() - last_sweep > 600:
                        last_sweep = time.monotonic()
                        for job_id in sweep(store, self.settings):
                            log.info("retention: removed the folder of job %s", job_id)
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
        self.notifier.stop()


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
