"""``geodeform serve``: the OGC API – Processes web service with its worker processes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from geodeform.cli.app import app
from geodeform.config import ComputeConfig
from geodeform.errors import InvalidInputError

__all__ = ["serve"]

log = logging.getLogger(__name__)


@app.command("serve")
def serve(
    *,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: Annotated[
        str, typer.Option(help="Job store: SQLite file path or URL, or postgresql://USER@HOST:PORT/DB.")
    ] = "geodeform-service.db",
    workers: Annotated[int, typer.Option(min=0, help="Worker processes running the jobs.")] = 2,
    jobs_dir: Annotated[Path, typer.Option(help="Folder for the jobs' outputs.")] = Path("geodeform-jobs"),
    data_root: Annotated[
        list[Path] | None,
        typer.Option(
            help="Folder that input paths are relative to (repeatable); default: the current folder."
        ),
    ] = None,
    catalogue_host: Annotated[
        list[str] | None, typer.Option(help="Host name that https input URLs may point to (repeatable).")
    ] = None,
    max_active_jobs: Annotated[int, typer.Option(min=1, help="Queued + running jobs per user.")] = 20,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest reference image, pixels.")] = 100_000_000,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body, bytes.")] = 1_000_000,
    heartbeat: Annotated[float, typer.Option(min=0.1, help="Seconds between worker heartbeats.")] = 2.0,
    stale_after: Annotated[
        float, typer.Option(min=0.5, help="Seconds without heartbeat after which a running job is orphaned.")
    ] = 30.0,
    max_attempts: Annotated[int, typer.Option(min=1, help="Starts of an orphaned job before it fails.")] = 2,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
    compute: Annotated[
        Path | None,
        typer.Option(
            help="YAML file with the compute section every preset job runs with (cluster: local | slurm, "
            "workers, threads, slurm: {queue, account, walltime, cores, memory, jobs}); default: each job "
            "runs inside its worker process."
        ),
    ] = None,
) -> None:
    """Serve the processing chains as OGC API – Processes on http://HOST:PORT/ (OpenAPI at /openapi.json).

    Jobs run in WORKERS separate processes that take them from the job store; a killed worker's job is
    re-queued (or failed with a reason after MAX_ATTEMPTS starts). Create accounts with `geodeform users add`.

    Example: geodeform serve --port 8000 --db service.db --data-root /data/scenes --workers 2
    """
    # The service extra (FastAPI, uvicorn, SQLAlchemy): imported when the command runs.
    import uvicorn

    from geodeform.service.app import create_app
    from geodeform.service.settings import ServiceSettings
    from geodeform.service.store import migrate
    from geodeform.service.worker import WorkerPool

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    compute_section = _compute_section(compute)
    settings = ServiceSettings(
        db=db,
        jobs_dir=jobs_dir,
        data_roots=tuple(data_root or [Path(".")]),
        catalogue_hosts=tuple(catalogue_host or ()),
        max_active_jobs=max_active_jobs,
        max_pixels=max_pixels,
        max_body_bytes=max_body,
        heartbeat_s=heartbeat,
        stale_after_s=stale_after,
        max_attempts=max_attempts,
        compute=compute_section,
    ).resolved()
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db)
    pool = WorkerPool(settings, workers)
    app_ = create_app(settings, on_startup=[pool.start], on_shutdown=[pool.stop])
    uvicorn.run(app_, host=host, port=port, log_level=log_level.lower())


def _compute_section(path: Path | None) -> dict[str, Any] | None:
    """Read and validate ``--compute FILE``: a ComputeConfig mapping (or a job config's ``compute:``)."""
    if path is None:
        return None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"--compute {path}: cannot read it as YAML ({exc})") from None
    if isinstance(data, dict) and "compute" in data:
        data = data["compute"]
    try:
        return ComputeConfig.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"--compute {path}: {problems}") from None
