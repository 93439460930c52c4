"""``geodeform run``: search -> reads -> masks -> pairs -> matching -> corrections -> inversion -> products.

Every stage writes its results atomically into the run folder and keys them by a hash of their inputs and
settings, so a killed run, rerun with the same config, redoes only what is missing:

``<run>/config.yaml``            the resolved config (preset defaults filled in)
``<run>/run.log``                log of every run in this folder
``<run>/images/*.tif``           the acquisitions on the common grid (float32, NaN = no data / cloud)
``<run>/pairs/*.nc``             one corrected velocity product per pair (CF-1.8, ITS_LIVE names)
``<run>/velocity.nc|.tif``       mean-velocity composite (m/yr, +x east, +y north)
``<run>/timeseries.nc``          cumulative displacement per date (m) and its 1-sigma
``<run>/catalog.json``           STAC catalogue of the products
``<run>/report.html``            self-contained HTML report, PNG quicklooks in ``quicklooks/``

This module only wires the stages: :mod:`~geodeform.workflows.stack` (images on one grid),
:mod:`~geodeform.workflows.plan` (pairs, search ranges, stable ground), :mod:`~geodeform.workflows.preflight`
(checks and estimate), :mod:`~geodeform.workflows.pair` (one pair, on the workers) and
:mod:`~geodeform.workflows.products` (inversion, products, report).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from geodeform.config import JobConfig, config_to_yaml
from geodeform.io import DiskFullError, atomic_output
from geodeform.pairs import PairNetwork
from geodeform.parallel import Executor, WorkerLostError, executor
from geodeform.workflows._timing import log_runtime
from geodeform.workflows.pair import PairOutcome, PairSpec, _reused, process_pair
from geodeform.workflows.plan import build_network, pair_specs, stable_ground
from geodeform.workflows.preflight import (
    SMALL_JOB_SECONDS,
    ResourceEstimate,
    check_files,
    drop_unusable,
    estimate_resources,
    human_time,
    preflight,
)
from geodeform.workflows.probe import probe_pair
from geodeform.workflows.products import (
    RunResult,
    StageProgress,
    all_failed,
    write_products,
    write_run_report,
)
from geodeform.workflows.quake import plan_quake, run_quake
from geodeform.workflows.sar import check_sar_files, run_sar_job
from geodeform.workflows.stable import coregister_pending
from geodeform.workflows.stack import ImageStack, sensor_inputs, stack_from_inputs, stack_from_search

__all__ = ["RunResult", "StageProgress", "run_job"]

log = logging.getLogger("geodeform.workflows")


def _setup_logging(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("geodeform")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _workers(config: JobConfig, override: int | None) -> int:
    c = config.compute
    if c.cluster == "sync":
        return 1
    if c.cluster == "slurm":
        return c.slurm.jobs * max(1, c.slurm.cores // c.threads)
    return override or c.workers or max(1, (os.cpu_count() or 1) // c.threads)


def _stage(progress: StageProgress | None, name: str) -> Callable[[int, int], None] | None:
    """``progress`` bound to one stage, as the per-stage callbacks of the readers want it."""
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


@log_runtime("read")
def _read_images(
    config: JobConfig, out: Path, progress: StageProgress | None, cache_dir: Path | None
) -> ImageStack:
    """The acquisitions on one grid in ``<run>/images`` (local inputs or a catalogue search)."""
    if config.inputs:
        stack = stack_from_inputs(
            config.inputs,
            out,
            progress=_stage(progress, "read"),
            roi=config.roi,
            sensor=sensor_inputs(config),
        )
    else:
        assert config.search is not None  # the config validator requires search or inputs
        stack = stack_from_search(
            config.search, out, progress=_stage(progress, "read"), cache_dir=cache_dir, roi=config.roi
        )
    log.info("%d images on a %d x %d grid", len(stack.acquisitions), *stack.grid.shape)
    for note in stack.notes:
        log.info(note)
    return stack


def _log_outcome(outcome: PairOutcome) -> None:
    if outcome.status == "ok":
        log.info(
            "pair %s_%s %s in %.1f s (coverage %.0f%%)%s",
            outcome.reference,
            outcome.secondary,
            "computed" if outcome.computed else "reused",
            outcome.seconds,
            100 * outcome.coverage,
            f", degraded: {outcome.degraded}" if outcome.degraded else "",
        )
    else:
        log.warning("pair %s_%s failed: %s", outcome.reference, outcome.secondary, outcome.message)


def _backend(config: JobConfig, todo: int) -> tuple[str, int]:
    """(cluster kind, workers): a single pair to compute on a LocalCluster runs in this process instead (no
    worker to start and warm up: the matcher's threads use the cores either way)."""
    kind = config.compute.cluster
    if kind == "local" and todo <= 1:
        return "sync", 1
    return kind, _workers(config, None)


def _probe_spec(specs: list[PairSpec]) -> PairSpec:
    """The pair whose largest search radius is the median one: the probe's matching cost is typical."""
    radii = [int(np.max(s.search_range)) for s in specs]
    return specs[int(np.argsort(radii)[len(radii) // 2])]


def _check_disk(out: Path, needed: int) -> None:
    free = shutil.disk_usage(out).free
    if free < needed:
        raise DiskFullError(
            f"the run needs about {needed / 2**20:.0f} MiB in {out} but its file system has "
            f"{free / 2**20:.0f} MiB free: free some space or choose another run folder (-o); nothing was "
            "matched yet"
        )


def _estimate(
    config: JobConfig,
    stack: ImageStack,
    network: PairNetwork,
    todo: list[PairSpec],
    ex: Executor,
    started: float,
    model: ResourceEstimate,
) -> ResourceEstimate:
    """The run's cost, scaled from a probe on one strip of a typical pair, run where the pairs run; without
    the probe when the array-size ``model`` puts the job under :data:`SMALL_JOB_SECONDS`."""
    probe = None
    if todo and model.seconds < SMALL_JOB_SECONDS:
        log.info("small job (~%s of matching by array sizes): no probe", human_time(model.seconds))
    elif todo:
        _, probe = next(ex.map(probe_pair, [_probe_spec(todo)]))
        log.info(
            "probe: %d x %d px strip in %.1f s (%s)",
            probe.rows,
            probe.width,
            probe.seconds,
            ", ".join(f"{k} {v:.2f} s" for k, v in probe.stage_seconds.items()),
        )
    return estimate_resources(
        config,
        stack,
        len(todo),
        ex.workers,
        probe,
        search_ranges=[int(np.max(s.search_range)) for s in todo],
        pairs=network,
        elapsed=time.perf_counter() - started,
        in_process=ex.client is None,
    )


@log_runtime("match")
def _match_pairs(
    config: JobConfig,
    stack: ImageStack,
    network: PairNetwork,
    specs: list[PairSpec],
    out: Path,
    started: float,
    progress: StageProgress | None,
    on_estimate: Callable[[ResourceEstimate], None] | None,
) -> tuple[list[PairOutcome], ResourceEstimate]:
    """Every pair through :func:`~geodeform.workflows.pair.process_pair` on the configured executor, after
    the resource estimate (probe) and the memory and disk checks."""
    todo = [s for s in specs if _reused(s) is None]
    kind, workers = _backend(config, len(todo))
    if progress:
        progress("match", 0, len(specs))
    model = estimate_resources(config, stack, max(1, len(todo)), workers)  # array sizes, before any job
    if todo:
        _check_disk(out, model.disk_bytes)
    with _executor(config, kind, workers, out, pair_memory=model.pair_memory_bytes if todo else None) as ex:
        estimate = _estimate(config, stack, network, todo, ex, started, model)
        log.info(estimate.describe())
        if on_estimate:
            on_estimate(estimate)
        if todo:
            ex.check_memory(estimate.pair_memory_bytes)
            _check_disk(out, estimate.disk_bytes)
        log.info("matching %d pairs (%d to compute) on %s", len(specs), len(todo), ex.description)
        try:
            outcomes = _map_pairs(ex, specs, progress)
        except WorkerLostError as exc:
            raise WorkerLostError(
                f"{exc} (one pair of this job needs about {estimate.pair_memory_bytes / 2**30:.1f} GiB)"
            ) from None
    return outcomes, estimate


def _executor(
    config: JobConfig, kind: str, workers: int, out: Path, *, pair_memory: int | None = None
) -> AbstractContextManager[Executor]:
    """The job's executor: its compute section, on ``kind`` with ``workers`` (from :func:`_backend`)."""
    c = config.compute
    return executor(
        kind,  # type: ignore[arg-type]  # a ClusterKind: _backend only narrows it
        workers=workers,
        threads=c.threads,
        slurm=c.slurm,
        address=c.address,
        scheduler_file=c.scheduler_file,
        connect_timeout=c.connect_timeout,
        folder=out,
        pair_memory=pair_memory,
        name=f"geodeform-{config.name}",
    )


def _map_pairs(ex: Executor, specs: list[PairSpec], progress: StageProgress | None) -> list[PairOutcome]:
    """Every spec through :func:`~geodeform.workflows.pair.process_pair` on ``ex``, in the specs' order."""
    outcomes: list[PairOutcome | None] = [None] * len(specs)
    for done, (k, outcome) in enumerate(ex.map(process_pair, specs), start=1):
        outcomes[k] = outcome
        _log_outcome(outcome)
        if progress:
            progress("match", done, len(specs))
    return [o for o in outcomes if o is not None]


@log_runtime("match")
def _match_chain_pairs(
    config: JobConfig, specs: list[PairSpec], out: Path, progress: StageProgress | None
) -> list[PairOutcome]:
    """The pairs of a chain that makes its own estimate (quake) on the configured executor (no probe)."""
    kind, workers = _backend(config, sum(_reused(s) is None for s in specs))
    if progress:
        progress("match", 0, len(specs))
    with _executor(config, kind, workers, out) as ex:
        log.info("matching %d pairs on %s", len(specs), ex.description)
        return _map_pairs(ex, specs, progress)


def _remove_leftovers(out: Path, before: float) -> None:
    """Delete the temporary files (``.<name>.<random>.tmp``, files or Zarr folders) of writes that an earlier
    run of this folder did not finish (killed mid-write): older than ``before`` (epoch s), so never a write
    of this run."""
    gone = 0
    for folder in (out, out / "pairs", out / "images"):
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp*"):
            if not (path.name.endswith(".tmp") or path.name.endswith(".tmp.aux.xml")):
                continue
            if path.lstat().st_mtime >= before:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            gone += 1
    if gone:
        log.info("removed %d unfinished write(s) of an earlier run", gone)


def run_job(
    config: JobConfig,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    progress: StageProgress | None = None,
    on_estimate: Callable[[ResourceEstimate], None] | None = None,
    report_extras: Callable[[RunResult], dict[str, Any]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a job end to end; rerunning it in the same folder resumes.

    Parameters
    ----------
    config
        Validated job config (:func:`geodeform.config.load_config`).
    run_dir
        Output folder (default ``runs/<name>``).
    progress
        ``progress(stage, done, total)`` for stages ``read``, ``match``, ``invert``, ``products``.
    on_estimate
        Called with the resource estimate before matching starts.
    report_extras
        Called with the finished result; returns extra report fields (``summary``, ``truth``, ...).
    cache_dir
        Cache of the AOI reads of a catalogue search (default :func:`geodeform.io.aoi.default_cache_dir`).

    Raises
    ------
    InvalidInputError, NoDataError, DataError
        Preflight failures and bad inputs, with a message naming the problem and the fix.
    """
    started = time.perf_counter()
    if config.sar is not None:
        check_sar_files(config)  # before anything is written
    else:
        check_files(config)
    quake = plan_quake(config) if config.preset == "quake" else None  # acquisitions, trace: still nothing
    out = Path(run_dir) if run_dir is not None else Path("runs") / config.name
    out.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(out)
    try:
        _remove_leftovers(out, time.time())
        with atomic_output(out / "config.yaml") as tmp:
            tmp.write_text(config_to_yaml(config), encoding="utf-8")
        log.info("run %s in %s", config.name, out.resolve())
        cache = Path(cache_dir) if cache_dir else None
        if quake is not None:
            workers = _workers(config, None)
            result = run_quake(
                quake,
                out,
                workers=workers,
                match=lambda specs: _match_chain_pairs(config, specs, out, progress),
                progress=progress,
                on_estimate=on_estimate,
                cache_dir=cache,
                report_extras=report_extras,
                started=started,
            )
            log.info("run %s finished in %.1f s", config.name, result.seconds)
            return result
        if config.sar is not None:
            result = run_sar_job(
                config,
                out,
                workers=_workers(config, None),
                progress=progress,
                on_estimate=on_estimate,
                cache_dir=cache,
            )
        else:
            result = _run_images(config, out, started, progress, on_estimate, cache)
        result.seconds = time.perf_counter() - started
        if config.output.report and config.sar is None:
            write_run_report(result, report_extras(result) if report_extras else {})
        log.info(
            "run %s finished in %.1f s: %d pairs computed, %d reused",
            config.name,
            result.seconds,
            result.pairs_computed,
            result.pairs_reused,
        )
        return result
    except Exception:
        log.exception("run %s stopped", config.name)
        raise
    finally:
        logging.getLogger("geodeform").removeHandler(handler)
        handler.close()


def _run_images(
    config: JobConfig,
    out: Path,
    started: float,
    progress: StageProgress | None,
    on_estimate: Callable[[ResourceEstimate], None] | None,
    cache: Path | None,
) -> RunResult:
    """The optical chain: images on one grid, pairs, probe and estimate, matching, inversion and products."""
    stack = _read_images(config, out, progress, cache)
    stack, warnings = drop_unusable(config, stack)
    network = build_network(config, stack)
    warnings += preflight(config, stack, network)
    ground = stable_ground(config, stack)  # every mask checked on the grid before matching
    warnings += ground.warnings
    for w in warnings:
        log.warning(w)
    log.info("stable ground: %s", ground.source)
    (out / "pairs").mkdir(exist_ok=True)
    specs = pair_specs(config, stack, network, out, ground)
    outcomes, estimate = _match_pairs(config, stack, network, specs, out, started, progress, on_estimate)
    outcomes = coregister_pending(outcomes, stack.dates)
    result = RunResult(out, config, stack, outcomes, estimate=estimate, warnings=warnings)
    if not any(o.status == "ok" for o in result.pairs):
        error = all_failed(result.pairs)
        if config.output.report:  # the report says which pair failed and why
            write_run_report(result, {"summary": {"result": str(error)}})
        raise error
    write_products(config, result, progress)
    return result
