"""``geodeform run``: one job from search to maps, time series, STAC catalogue and report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from geodeform.cli.app import app
from geodeform.config import load_config

__all__ = ["progress_bars", "run"]

STAGES = {
    "read": "reading images",
    "match": "matching pairs",
    "invert": "inverting time series",
    "products": "writing products",
}


@contextmanager
def progress_bars(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback drawing one rich bar per stage (count, ETA)."""
    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(STAGES.get(stage, stage), total=max(total, 1))
        bars.update(tasks[stage], completed=done, total=max(total, 1))

    with bars:
        yield update


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Job config (YAML), e.g. from geodeform init --preset ice.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<name>).")] = None,
    cluster: Annotated[
        str | None, typer.Option(help="Override compute.cluster: local (Dask LocalCluster), slurm or sync.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Override compute.workers (processes).", min=1)] = None,
    threads: Annotated[int | None, typer.Option(help="Override compute.threads (per worker).", min=1)] = None,
) -> None:
    """Run a job: search, read, mask, pair, match, correct, invert, write products + STAC + HTML report.

    Rerunning the same config in the same folder resumes: finished pairs are reused.
    """
    from geodeform.workflows import run_job  # needs the geo extra: imported when the command runs

    job = load_config(config)
    updates: dict[str, Any] = {}
    if cluster is not None:
        updates["cluster"] = cluster
    if workers is not None:
        updates["workers"] = workers
    if threads is not None:
        updates["threads"] = threads
    if updates:
        data = job.model_dump(mode="json")
        data["compute"].update(updates)
        job = load_config(data)
    console = Console(stderr=True)
    with progress_bars(console) as progress:
        result = run_job(job, out, progress=progress, on_estimate=lambda e: console.print(e.describe()))
    console.print(
        f"{result.pairs_computed} pairs computed, {result.pairs_reused} reused, "
        f"{sum(p.status != 'ok' for p in result.pairs)} failed, in {result.seconds:.0f} s"
    )
    for name, path in result.products.items():
        console.print(f"{name}: {path}")
    if "report" in result.products:
        typer.echo(f"report: {result.products['report'].resolve()}")
