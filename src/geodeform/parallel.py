"""Where independent tasks (image pairs) run: this process, a Dask LocalCluster, or SLURM via dask-jobqueue.

All three give the same interface: :func:`executor` yields a :class:`Executor` whose :meth:`Executor.map`
runs a picklable function on each task and yields ``(task index, result)`` as tasks finish, so callers can
write each result as soon as it exists (runs then resume after a kill).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from geodeform.errors import InvalidInputError

__all__ = ["Executor", "executor", "slurm_cluster"]

log = logging.getLogger(__name__)


class Executor:
    """Runs tasks and yields their results as they complete."""

    def __init__(self, client: Any | None, description: str, workers: int) -> None:
        self.client = client
        self.description = description
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(tasks[index]))`` in completion order; a task's exception is raised here."""
        if self.client is None:
            for i, task in enumerate(tasks):
                yield i, fn(task)
            return
        from distributed import as_completed

        futures = [
            self.client.submit(fn, task, pure=False, key=f"task-{i}-{os.getpid()}")
            for i, task in enumerate(tasks)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future.key], future.result()


def slurm_cluster(slurm: Any, *, threads: int = 1) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` from the config's ``compute.slurm`` section (not yet scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # pragma: no cover - depends on the install
        raise InvalidInputError(
            "compute.cluster is 'slurm' but dask-jobqueue is not installed: pip install 'geodeform[cluster]'"
        ) from None
    return SLURMCluster(
        queue=slurm.queue,
        account=slurm.account,
        walltime=slurm.walltime,
        cores=slurm.cores,
        processes=max(1, slurm.cores // max(1, threads)),
        memory=slurm.memory,
        job_extra_directives=list(slurm.job_extra_directives),
    )


@contextmanager
def executor(
    kind: str = "local", *, workers: int | None = None, threads: int = 1, slurm: Any | None = None
) -> Iterator[Executor]:
    """Start (and stop on exit) the execution backend.

    Parameters
    ----------
    kind
        ``"sync"`` (this process, in order), ``"local"`` (Dask LocalCluster with ``workers`` processes of
        ``threads`` threads; default workers = cores / threads) or ``"slurm"`` (dask-jobqueue, options in
        ``slurm``).
    """
    if kind == "sync":
        yield Executor(None, "this process", 1)
        return
    from distributed import Client, LocalCluster

    if kind == "local":
        n = workers or max(1, (os.cpu_count() or 1) // max(1, threads))
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=":0",  # a free port: never collides with another cluster
            silence_logs=logging.ERROR,
        )
        description = f"Dask LocalCluster, {n} worker(s) x {threads} thread(s)"
    elif kind == "slurm":
        if slurm is None:
            raise InvalidInputError("compute.cluster is 'slurm' but compute.slurm is missing")
        cluster = slurm_cluster(slurm, threads=threads)
        cluster.scale(jobs=slurm.jobs)
        n = slurm.jobs * max(1, slurm.cores // max(1, threads))
        description = f"SLURM via dask-jobqueue, {slurm.jobs} job(s) x {slurm.cores} core(s)"
    else:
        raise InvalidInputError(f"compute.cluster {kind!r} unknown; use local, slurm or sync")
    client = Client(cluster)
    log.info("Dask dashboard: %s", client.dashboard_link)
    try:
        yield Executor(client, description, n)
    finally:
        client.close()
        cluster.close()
