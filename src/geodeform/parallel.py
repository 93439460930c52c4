"""Where independent tasks (image pairs) run: this process, a Dask LocalCluster, SLURM via dask-jobqueue, or
an existing Dask cluster reached by its scheduler address.

All four give the same interface: :func:`executor` yields an :class:`Executor` whose :meth:`Executor.map`
runs a picklable function on each task and yields ``(task index, result)`` as tasks finish, so callers can
write each result as soon as it exists (runs then resume after a kill).

Ownership: a LocalCluster or the SLURM jobs are started here and stopped on exit. An existing cluster
(``kind="address"``) is never closed, scaled or restarted: on exit only this run's client disconnects and
its unfinished tasks are cancelled.

Faults: a worker that dies (a SLURM job cancelled or killed, a node lost) has its tasks rescheduled by Dask on
the other workers; lost SLURM jobs are replaced while the run goes on. A task that kills several workers in a
row (most often: it needs more memory than a worker has) stops the run with :class:`WorkerLostError`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodeform import __version__
from geodeform.config import ClusterKind
from geodeform.errors import GeodeformError, InvalidInputError

__all__ = [
    "PAIR_RESOURCE",
    "ClusterError",
    "Executor",
    "WorkerLostError",
    "WorkerProbe",
    "executor",
    "probe_worker",
    "slurm_cluster",
]

log = logging.getLogger(__name__)

PAIR_RESOURCE = "geodeform_pair"
"""Dask worker resource of the clusters geodeform starts: one pair at a time per worker process (the
matcher's own threads use the worker's cores)."""

_GiB = 2**30


class ClusterError(GeodeformError, ConnectionError):
    """The execution backend cannot be reached or started (no scheduler at the address, no SLURM, no worker
    job starting); the message says what was tried and what to check."""


class WorkerLostError(ClusterError):
    """A task killed the workers that ran it several times in a row (out of memory, a crash)."""


@dataclass(frozen=True)
class WorkerProbe:
    """What one worker reported before the run: it imports this geodeform and sees the run folder.

    Attributes
    ----------
    version
        ``geodeform.__version__`` on the worker.
    sees_folder
        Whether the run folder exists on the worker (a shared file system), or True without a folder.
    """

    version: str
    sees_folder: bool


def probe_worker(folder: str | None) -> WorkerProbe:
    """Run on a worker by :func:`executor`: the worker's geodeform version and whether it sees ``folder``."""
    return WorkerProbe(__version__, folder is None or os.path.isdir(folder))


class Executor:
    """Runs tasks and yields their results as they complete.

    Attributes
    ----------
    client
        The Dask client (None for ``sync``).
    description
        Where the tasks run, for the log.
    workers
        Tasks that run at once.
    memory_limit
        Smallest memory limit of one worker process, bytes (None: unknown or unlimited).
    """

    def __init__(
        self,
        client: Any | None,
        description: str,
        workers: int,
        *,
        memory_limit: int | None = None,
        resources: dict[str, float] | None = None,
    ) -> None:
        self.client = client
        self.description = description
        self.workers = workers
        self.memory_limit = memory_limit
        self._resources = resources

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(tasks[index]))`` in completion order; a task's exception is raised here.

        Raises
        ------
        WorkerLostError
            A task killed the workers that ran it (Dask's ``KilledWorker``): the message names the task.
        """
        if self.client is None:
            for i, task in enumerate(tasks):
                yield i, fn(task)
            return
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        # Keys unique to this call: on a shared cluster a key reused from another run would return its result.
        token = uuid.uuid4().hex[:12]
        name = getattr(fn, "__name__", "task")
        futures = [
            self.client.submit(fn, task, pure=False, key=f"{name}-{i}-{token}", resources=self._resources)
            for i, task in enumerate(tasks)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures, loop=self.client.loop):
                try:
                    result = future.result()
                except KilledWorker as exc:
                    raise WorkerLostError(
                        f"task {index[future.key]} killed every worker that ran it ({exc}); most often it "
                        "needs more memory than a worker has: give the workers more memory (compute.slurm."
                        "memory) or fewer processes per job; finished tasks are kept, rerun to resume"
                    ) from None
                yield index[future.key], result
        finally:
            # On an early exit (error, interrupt) nothing of this run keeps running on the cluster.
            self.client.cancel([f for f in futures if not f.done()])

    def check_memory(self, needed: int, *, what: str = "one pair") -> None:
        """Stop before the run when a worker's memory limit is below ``needed`` bytes.

        Raises
        ------
        InvalidInputError
            Naming the limit, the need and the settings to change.
        """
        if self.memory_limit is None or self.memory_limit >= needed:
            return
        raise InvalidInputError(
            f"the workers ({self.description}) have a memory limit of {self.memory_limit / _GiB:.2f} GiB "
            f"each, but {what} needs about {needed / _GiB:.2f} GiB: give each worker at least "
            f"{needed / _GiB:.1f} GiB (compute.slurm.memory per job / its processes; fewer "
            "compute.workers on one machine), or crop the job (roi)"
        )


def _check_slurm(slurm: Any) -> None:
    """SLURM answers and the partition exists, before any job is submitted."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        raise ClusterError(
            "compute.cluster is 'slurm' but the SLURM commands (sbatch, sinfo) are not on PATH; run from a "
            "SLURM login node, or use cluster: local"
        )
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        raise ClusterError("sinfo did not answer within 30 s: is slurmctld running?") from None
    if done.returncode != 0:
        raise ClusterError(
            f"SLURM does not answer (sinfo: {done.stderr.strip() or done.returncode}); check that slurmctld "
            "runs and SLURM_CONF points to its slurm.conf"
        )
    partitions = [p.strip().rstrip("*") for p in done.stdout.split()]
    if slurm.queue is not None and slurm.queue not in partitions:
        raise InvalidInputError(
            f"compute.slurm.queue: SLURM partition {slurm.queue!r} does not exist; this cluster has "
            f"{', '.join(partitions) or 'no partition'} (sinfo)"
        )


def slurm_cluster(
    slurm: Any, *, threads: int = 1, log_directory: str | Path | None = None, job_name: str = "geodeform"
) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` from the config's ``compute.slurm`` section (not yet scaled).

    Each job runs ``cores // threads`` worker processes that take one pair at a time (resource
    :data:`PAIR_RESOURCE`), so a pair's matcher threads have their cores.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the install
        raise InvalidInputError(
            "compute.cluster is 'slurm' but dask-jobqueue is not installed: pip install 'geodeform[cluster]'"
        ) from None
    kwargs: dict[str, Any] = {}
    if log_directory is not None:
        kwargs["log_directory"] = str(log_directory)
    return SLURMCluster(
        queue=slurm.queue,
        account=slurm.account,
        walltime=slurm.walltime,
        cores=slurm.cores,
        processes=max(1, slurm.cores // max(1, threads)),
        memory=slurm.memory,
        job_extra_directives=list(slurm.job_extra_directives),
        worker_extra_args=["--resources", f"{PAIR_RESOURCE}=1"],
        job_name=job_name,
        **kwargs,
    )


def _probe(client: Any, folder: str | None, where: str) -> None:
    """Every worker imports this geodeform and sees the run folder, else a clear error."""
    try:
        probes: dict[str, WorkerProbe] = client.run(probe_worker, folder)
    except Exception as exc:  # unpickling fails on a worker without geodeform
        raise ClusterError(
            f"the workers of {where} cannot run geodeform ({type(exc).__name__}: {exc}); install geodeform "
            f"{__version__} (with the geo extra) in the workers' environment"
        ) from None
    for address, p in probes.items():
        if p.version != __version__:
            log.warning("worker %s runs geodeform %s, this process %s", address, p.version, __version__)
        if not p.sees_folder:
            raise ClusterError(
                f"worker {address} of {where} does not see the run folder {folder}: the workers read the "
                "images and write the pair products there, so put it on a file system they share "
                "(geodeform run job.yaml -o /shared/path)"
            )


def _worker_memory(client: Any) -> int | None:
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    positive = [int(x) for x in limits if x]
    return min(positive) if positive else None


def _connect(address: str | None, scheduler_file: str | None, timeout: float) -> Any:
    from distributed import Client

    where = address or f"scheduler file {scheduler_file}"
    if scheduler_file is not None and not Path(scheduler_file).is_file():
        raise InvalidInputError(
            f"compute.scheduler_file {scheduler_file} not found; start the scheduler with "
            "dask scheduler --scheduler-file PATH, or give compute.address"
        )
    try:
        client = Client(address=address, scheduler_file=scheduler_file, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"no Dask scheduler answers at {where} within {timeout:g} s ({exc}); check the address "
            "(tcp://host:port), that the scheduler runs and that this machine can reach it"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ClusterError(
            f"the Dask scheduler at {where} has no worker (waited {timeout:g} s); start workers on it"
        ) from None
    return client


class _JobKeeper:
    """Replaces lost SLURM worker jobs (cancelled, killed, timed out) while the run goes on."""

    def __init__(self, cluster: Any, jobs: int, every: float = 10.0) -> None:
        self._cluster, self._jobs, self._every = cluster, jobs, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="geodeform-slurm-keeper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            if len(self._cluster.workers) < self._jobs:
                log.warning(
                    "%d of %d SLURM worker jobs left: submitting replacements",
                    len(self._cluster.workers),
                    self._jobs,
                )
                self._cluster.scale(jobs=self._jobs)

    def __enter__(self) -> _JobKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _start_slurm(
    slurm: Any, threads: int, log_directory: str | Path | None, pair_memory: int | None, name: str
) -> tuple[Any, int, int]:
    """(cluster, worker processes, memory per process) of a scaled SLURMCluster, checked before submitting."""
    from dask.utils import parse_bytes

    _check_slurm(slurm)
    processes = max(1, slurm.cores // max(1, threads))
    per_process = int(parse_bytes(slurm.memory) / processes)
    if pair_memory is not None and per_process < pair_memory:
        raise InvalidInputError(
            f"compute.slurm.memory {slurm.memory} for {processes} worker process(es) per job leaves "
            f"{per_process / _GiB:.2f} GiB per process, but one pair needs about "
            f"{pair_memory / _GiB:.2f} GiB: "
            f"set compute.slurm.memory to at least {processes * pair_memory / _GiB * 1.1:.1f}GB (or fewer "
            "cores per job)"
        )
    if log_directory is not None:
        Path(log_directory).mkdir(parents=True, exist_ok=True)
    cluster = slurm_cluster(slurm, threads=threads, log_directory=log_directory, job_name=name)
    cluster.scale(jobs=slurm.jobs)
    return cluster, slurm.jobs * processes, per_process


def _wait_slurm(client: Any, cluster: Any, slurm: Any, log_directory: str | Path | None) -> None:
    try:
        client.wait_for_workers(1, timeout=slurm.start_timeout)
    except (OSError, TimeoutError):
        ids = [getattr(job, "job_id", None) for job in cluster.workers.values()]
        ids = [str(i) for i in ids if i]
        state = ""
        if ids:
            done = subprocess.run(
                ["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"],
                capture_output=True,
                text=True,
                check=False,
            )
            state = done.stdout.strip().replace("\n", "; ")
        raise ClusterError(
            f"no SLURM worker job started within {slurm.start_timeout:g} s (compute.slurm.start_timeout); "
            f"jobs: {state or 'none in the queue (rejected or finished: see the job logs)'}; job logs in "
            f"{log_directory or 'the working folder'}"
        ) from None


@contextmanager
def executor(
    kind: ClusterKind = "local",
    *,
    workers: int | None = None,
    threads: int = 1,
    slurm: Any | None = None,
    address: str | None = None,
    scheduler_file: str | None = None,
    connect_timeout: float = 30.0,
    folder: str | Path | None = None,
    pair_memory: int | None = None,
    name: str = "geodeform",
) -> Iterator[Executor]:
    """Start (or connect to) the execution backend; stop what was started on exit.

    Parameters
    ----------
    kind
        ``"sync"`` (this process, in order), ``"local"`` (Dask LocalCluster with ``workers`` processes,
        one task at a time each; default workers = cores / threads), ``"slurm"`` (dask-jobqueue, options in
        ``slurm``), ``"address"`` (an existing Dask scheduler at ``address`` or in ``scheduler_file``).
    threads
        Threads of one task (the matcher's); a task takes one worker process.
    folder
        The run folder: every worker of a SLURM or existing cluster must see it (checked); SLURM job logs
        go to ``<folder>/slurm-logs``.
    pair_memory
        Peak memory of one task, bytes: a LocalCluster starts no more workers than fit in the machine's
        memory; SLURM settings giving a worker less stop before any job is submitted.
    name
        SLURM job name of the worker jobs (``squeue --name``).

    Raises
    ------
    ClusterError
        No scheduler at the address, SLURM not answering, no worker starting, workers that cannot run
        geodeform or do not see ``folder``.
    InvalidInputError
        An unknown kind, a SLURM partition that does not exist, a worker memory limit below ``pair_memory``.
    """
    if kind == "sync":
        yield Executor(None, "this process", 1)
        return
    from distributed import Client, LocalCluster

    folder_str = None if folder is None else str(Path(folder).resolve())
    if kind == "address":
        if address is None and scheduler_file is None:
            raise InvalidInputError(
                "compute.cluster is 'address' but neither compute.address nor compute.scheduler_file is set"
            )
        where = address or f"scheduler file {scheduler_file}"
        client = _connect(address, scheduler_file, connect_timeout)
        try:
            _probe(client, folder_str, where)
            info = client.scheduler_info()["workers"]
            n = sum(int(w.get("nthreads", 1)) for w in info.values()) or 1
            ex = Executor(
                client,
                f"the Dask cluster at {where}, {len(info)} worker(s), {n} thread(s)",
                n,
                memory_limit=_worker_memory(client),
            )
            yield ex
        finally:
            client.close()  # never the cluster: geodeform does not own it
        return
    if kind == "local":
        import psutil

        n = workers or max(1, (os.cpu_count() or 1) // max(1, threads))
        total = psutil.virtual_memory().total
        if pair_memory:
            fit = max(1, int(total * 0.9 // pair_memory))
            if fit < n:
                log.warning("%d worker(s) would not fit in %.1f GiB: starting %d", n, total / _GiB, fit)
                n = fit
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: never collides with another cluster
            silence_logs=logging.ERROR,
            resources={PAIR_RESOURCE: 1},
        )
        description = f"Dask LocalCluster, {n} worker(s) x {threads} thread(s)"
        keeper = None
        memory: int | None = int(total / n)
    elif kind == "slurm":
        if slurm is None:
            raise InvalidInputError("compute.cluster is 'slurm' but compute.slurm is missing")
        logs = None if folder is None else Path(folder) / "slurm-logs"
        cluster, n, memory = _start_slurm(slurm, threads, logs, pair_memory, name)
        description = f"SLURM via dask-jobqueue, {slurm.jobs} job(s) x {slurm.cores} core(s)"
        keeper = _JobKeeper(cluster, slurm.jobs)
    else:
        raise InvalidInputError(f"compute.cluster {kind!r} unknown; use local, slurm, address or sync")
    client = Client(cluster, set_as_default=False)
    try:
        if kind == "slurm":
            _wait_slurm(client, cluster, slurm, logs)
            _probe(client, folder_str, description)
        log.info("Dask dashboard: %s", client.dashboard_link)
        ex = Executor(client, description, n, memory_limit=memory, resources={PAIR_RESOURCE: 1})
        if keeper is None:
            yield ex
        else:
            with keeper:
                yield ex
    finally:
        client.close()
        cluster.close()
