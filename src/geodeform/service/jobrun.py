"""The job process: one job's runner in a process of its own, under the limits of the server.

A worker (:mod:`geodeform.service.worker`) never runs a job itself: it starts a job process for each job
(from a fork server that has imported geodeform once, so a job starts in milliseconds and never inherits
a thread pool of the worker) and watches it. The job process

- leads a process group of its own (the worker ends the whole group: a dismissal, the wall time, a memory
  or disk limit stop a job within about a heartbeat, whatever it is doing);
- dies with its fork server, which dies with its worker (``PR_SET_PDEATHSIG``): a killed worker leaves no
  job running, and the reaper re-queues the job;
- may add at most ``memory_limit`` bytes to its data segment (``RLIMIT_DATA``): an allocation past it
  raises ``MemoryError``, and the job fails with a reason naming the limit (the worker's watchdog on the
  group's resident memory is the second line);
- sends its progress and its outcome to the worker through a pipe, and replaces every server folder in the
  texts a user will read (messages, ``config.yaml``, ``run.log``, reports) by the names the user gave.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from geodeform.errors import GeodeformError
from geodeform.service.paths import PathMask
from geodeform.service.processes import LimitExceeded, RunContext, build_registry
from geodeform.service.settings import MiB, ServiceSettings

__all__ = ["JobRequest", "group_rss", "job_main", "vm_data", "web_text"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_TEXT_SUFFIXES = (".yaml", ".yml", ".log", ".json", ".html", ".txt", ".csv")
_CLI_WORDS = (
    ("(paths are relative to the folder you run from)", "(paths are relative to the data roots)"),
    ("relative to the folder you run from", "relative to the data roots"),
    ("pass --dates REF,SEC", "give the 'dates' input"),
    ("--dates", "the 'dates' input"),
    ("; pass resolution=", "; give search.resolution"),
)


@dataclass(frozen=True)
class JobRequest:
    """What a job process needs (picklable: it crosses to the fork server).

    Attributes
    ----------
    job_id, process_id
        The job and its process.
    inputs
        The inputs as they run on the server (paths resolved: ``Process.prepare``), JSON-able.
    job_dir
        The job's folder (exists, empty).
    settings
        :meth:`ServiceSettings.to_json`.
    mask
        Server folders and their public names.
    memory_limit
        Bytes the process may add to its data segment; 0: no limit.
    """

    job_id: str
    process_id: str
    inputs: dict[str, Any]
    job_dir: str
    settings: str
    mask: PathMask
    memory_limit: int = 0


def web_text(text: str, mask: PathMask) -> str:
    """A message for a web user: no server folder, no command-line option."""
    text = mask(text)
    for cli_words, web_words in _CLI_WORDS:
        text = text.replace(cli_words, web_words)
    return text


def vm_data(pid: int | str = "self") -> int:
    """Bytes of the process's data segment (``VmData``: what ``RLIMIT_DATA`` limits); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def group_rss(pgid: int) -> int:
    """Resident memory (bytes) of every process of the process group ``pgid``."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[21]) * page
    return total


def _die_with_parent() -> None:
    """SIGKILL this process when its parent (the fork server) ends; exit now if it already has."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: watch the parent from a thread instead

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _limit_memory(extra: int) -> None:
    if extra > 0:  # the soft limit only: the job process raises it again to write its last words
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = vm_data() + extra
        resource.setrlimit(resource.RLIMIT_DATA, (limit if hard < 0 else min(limit, hard), hard))


def _scrub(job_dir: Path, mask: PathMask) -> None:
    """Server folders out of the job's text files (config.yaml, run.log, reports, STAC documents)."""
    for path in job_dir.rglob("*"):
        if path.suffix.lower() not in _TEXT_SUFFIXES or not path.is_file() or path.stat().st_size > 64 * MiB:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        clean = web_text(text, mask)
        if clean != text:
            tmp = path.with_name(f".{path.name}.scrub")
            tmp.write_text(clean, encoding="utf-8")
            tmp.replace(path)


def _run(request: JobRequest, conn: Connection) -> tuple[str, str, dict[str, Any]]:
    settings = ServiceSettings.from_json(request.settings)
    process = build_registry()[request.process_id]
    last = [0.0]

    def progress(percent: float, message: str | None = None) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2 or percent >= 100:  # the worker stores it at its next heartbeat anyway
            last[0] = now
            conn.send(("progress", float(percent), web_text(message or "", request.mask)))

    job_dir = Path(request.job_dir)
    context = RunContext(job_dir, progress, settings, public=request.mask)
    try:
        outcome = process.runner(process.inputs_model.model_validate(request.inputs), context)
    except MemoryError:
        limit = request.memory_limit / MiB
        return (
            "failed",
            (
                f"the job needed more memory than this server's limit of {limit:.0f} MiB per job "
                "(max_job_memory_bytes): raise the step, crop the images or make fewer pairs"
            ),
            {},
        )
    except LimitExceeded as exc:
        return "failed", str(exc), {}
    except GeodeformError as exc:
        return "failed", str(exc), {}
    except Exception as exc:  # a bug or a broken file: the job fails with a reason
        log.error("job %s crashed:\n%s", request.job_id, traceback.format_exc())
        return "failed", f"internal error ({type(exc).__name__}): {exc}", {}
    results = {
        key: {"name": f.name, "type": f.media_type, "title": f.title}
        for key, f in outcome.files.items()
        if (job_dir / f.name).is_file()
    }
    return "successful", outcome.message, results


def job_main(request: JobRequest, conn: Connection) -> None:
    """Entry point of a job process (started by the worker through the fork server)."""
    os.setpgid(0, 0)
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    conn.send(("started", os.getpid(), vm_data()))
    try:
        _limit_memory(request.memory_limit)
        status, message, results = _run(request, conn)
        message = web_text(message, request.mask)
    except MemoryError:  # even the reporting ran out
        status, message, results = "failed", "the job needed more memory than this server allows", {}
    except Exception as exc:
        status, message, results = "failed", f"internal error ({type(exc).__name__})", {}
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
        _scrub(Path(request.job_dir), request.mask)
    except (OSError, ValueError):
        log.exception("could not clean the texts of job %s", request.job_id)
    conn.send(("done", status, message, results))
    conn.close()
    logging.shutdown()
    os._exit(0)
