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

_Memory = Annotated[str, typer.Option(help="Memory a job may add to its process (4GiB, 500MB; 0: none).")]
_Disk = Annotated[str, typer.Option(help="Disk one user's job outputs and uploads may take (20GiB, ...).")]
_Upload = Annotated[str, typer.Option(help="Largest uploaded file (2GiB, ...).")]


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
    uploads_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the users' uploads (default: geodeform-uploads next to the jobs)."),
    ] = None,
    data_root: Annotated[
        list[Path] | None,
        typer.Option(
            help="Shared folder that input paths are relative to (repeatable); default: the current one."
        ),
    ] = None,
    catalogue_host: Annotated[
        list[str] | None, typer.Option(help="Host name that https input URLs may point to (repeatable).")
    ] = None,
    webhook_host: Annotated[
        list[str] | None,
        typer.Option(help="HOST or HOST:PORT that subscriber webhooks may call (repeatable)."),
    ] = None,
    root_path: Annotated[
        str, typer.Option(help="Path prefix the reverse proxy serves the service under.")
    ] = "",
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxy addresses whose X-Forwarded-Proto/-For headers are trusted ('*': any).")
    ] = "127.0.0.1",
    public_url: Annotated[
        str | None, typer.Option(help="The service's URL as users reach it (links in notifications).")
    ] = None,
    max_active_jobs: Annotated[int, typer.Option(min=1, help="Queued + running jobs per user.")] = 20,
    max_images: Annotated[int, typer.Option(min=2, help="Images per job.")] = 100,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest image, pixels.")] = 100_000_000,
    max_area_km2: Annotated[float, typer.Option(min=1, help="Largest search area per job, km².")] = 50_000.0,
    max_nodes_per_pair: Annotated[int, typer.Option(min=1, help="Matcher nodes per pair.")] = 2_000_000,
    max_nodes_per_job: Annotated[int, typer.Option(min=1, help="Matcher nodes per job.")] = 50_000_000,
    max_job_memory: _Memory = "4GiB",
    max_job_seconds: Annotated[float, typer.Option(min=0, help="Wall time per job, s (0: none).")] = 21_600.0,
    max_disk_per_user: _Disk = "20GiB",
    max_upload: _Upload = "2GiB",
    retention_days: Annotated[
        float, typer.Option(min=0, help="Days job outputs are kept (0: forever).")
    ] = 30.0,
    max_body: Annotated[int, typer.Option(min=1024, help="Largest request body, bytes.")] = 1_000_000,
    heartbeat: Annotated[float, typer.Option(min=0.1, help="Seconds between worker heartbeats.")] = 2.0,
    stale_after: Annotated[
        float, typer.Option(min=0.5, help="Seconds without heartbeat after which a running job is orphaned.")
    ] = 30.0,
    max_attempts: Annotated[int, typer.Option(min=1, help="Starts of an orphaned job before it fails.")] = 2,
    poll: Annotated[
        float,
        typer.Option(
            min=0.01, help="Seconds between looks at the queue, reaper rounds and notification rounds."
        ),
    ] = 0.5,
    smtp_host: Annotated[
        str, typer.Option(help="SMTP server for e-mail notifications (none: no e-mail).")
    ] = "",
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 25,
    smtp_from: Annotated[str, typer.Option(help="Sender of the e-mails.")] = "geodeform@localhost",
    smtp_starttls: Annotated[bool, typer.Option(help="Use STARTTLS.")] = False,
    smtp_user: Annotated[str, typer.Option(help="SMTP login.")] = "",
    smtp_password_file: Annotated[Path | None, typer.Option(help="File holding the SMTP password.")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
    compute: Annotated[
        Path | None,
        typer.Option(
            help="YAML file with the compute section every preset job runs with (cluster: local | slurm, "
            "workers, threads, slurm: {...}); default: each job runs in its own job process."
        ),
    ] = None,
) -> None:
    """Serve the processing chains as OGC API – Processes on http://HOST:PORT/ (OpenAPI at /openapi.json).

    Each job runs in a process of its own, watched by one of WORKERS worker processes that stops it at the
    per-job limits (memory, wall time, disk) or when it is dismissed; a killed worker's job is re-queued (or
    failed after MAX_ATTEMPTS starts). Accounts: `geodeform users add`. Behind a reverse proxy under a path
    prefix: --root-path /prefix (docs/guide/service.md has an nginx configuration).

    Example: geodeform serve --port 8000 --db service.db --data-root /data/scenes --workers 2
    """
    options = dict(locals())
    # The service extra (FastAPI, uvicorn, SQLAlchemy): imported when the command runs.
    import uvicorn

    from geodeform.service.app import create_app
    from geodeform.service.store import migrate
    from geodeform.service.worker import WorkerPool

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = _settings(options)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.db)
    pool = WorkerPool(settings, workers)
    app_ = create_app(settings, on_startup=[pool.start], on_shutdown=[pool.stop])
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_level=log_level.lower(),
        root_path=root_path.rstrip("/"),
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )


def _settings(o: dict[str, Any]) -> Any:
    """The ServiceSettings of the command's options."""
    from geodeform.service.settings import ServiceSettings, parse_bytes

    password = ""
    if o["smtp_password_file"] is not None:
        try:
            password = Path(o["smtp_password_file"]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInputError(f"--smtp-password-file: cannot read it ({exc})") from None
    return ServiceSettings(
        db=o["db"],
        jobs_dir=o["jobs_dir"],
        uploads_dir=o["uploads_dir"],
        data_roots=tuple(o["data_root"] or [Path(".")]),
        catalogue_hosts=tuple(o["catalogue_host"] or ()),
        webhook_hosts=tuple(o["webhook_host"] or ()),
        public_url=o["public_url"],
        max_active_jobs=o["max_active_jobs"],
        max_images=o["max_images"],
        max_pixels=o["max_pixels"],
        max_area_km2=o["max_area_km2"],
        max_nodes_per_pair=o["max_nodes_per_pair"],
        max_nodes_per_job=o["max_nodes_per_job"],
        max_job_memory_bytes=parse_bytes(o["max_job_memory"]),
        max_job_seconds=o["max_job_seconds"],
        max_user_disk_bytes=parse_bytes(o["max_disk_per_user"]),
        max_upload_bytes=parse_bytes(o["max_upload"]),
        retention_days=o["retention_days"],
        max_body_bytes=o["max_body"],
        heartbeat_s=o["heartbeat"],
        stale_after_s=o["stale_after"],
        max_attempts=o["max_attempts"],
        poll_s=o["poll"],
        smtp_host=o["smtp_host"],
        smtp_port=o["smtp_port"],
        smtp_from=o["smtp_from"],
        smtp_starttls=o["smtp_starttls"],
        smtp_user=o["smtp_user"],
        smtp_password=password,
        compute=_compute_section(o["compute"]),
    ).resolved()


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
