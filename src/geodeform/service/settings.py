"""Settings shared by the web process and its workers (passed to worker processes as JSON)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodeform.errors import InvalidInputError

__all__ = ["GiB", "MiB", "ServiceSettings", "parse_bytes"]

MiB = 2**20
GiB = 2**30

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": MiB}
_UNITS |= {"g": 10**9, "gb": 10**9, "gib": GiB, "t": 10**12, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """A size in bytes from ``"4GiB"``, ``"500MB"``, ``"2G"`` or a plain number (bytes).

    Raises
    ------
    InvalidInputError
        Not a number with one of the units B, kB/KiB, MB/MiB, GB/GiB, TB/TiB.
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidInputError(f"{text!r} is not a size: use e.g. 4GiB, 500MB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class ServiceSettings:
    """What a ``geodeform serve`` instance is allowed to do and where it keeps things.

    Attributes
    ----------
    db
        Job store URL: a SQLite file path / ``sqlite:///...`` or ``postgresql://...``.
    jobs_dir
        Folder holding one sub-folder of outputs per job.
    uploads_dir
        Folder holding one sub-folder of uploaded files per user; default ``geodeform-uploads`` next to
        ``jobs_dir``.
    data_roots
        Shared folders that input paths are resolved in (besides the user's own uploads and job outputs);
        nothing outside them can be read on a user's behalf.
    catalogue_hosts
        Host names that input URLs may point to (https only, public addresses only).
    webhook_hosts
        ``host`` or ``host:port`` entries that ``subscriber`` URIs may call. A host name must resolve to
        public addresses only; an IP literal or ``localhost`` listed here is the operator's explicit choice.
    public_url
        Base URL of the service as its users reach it (``https://example.org/geodeform``), used for the links
        in notifications (no request to take them from); None: links relative to the service root.
    max_active_jobs
        Accepted + running jobs one (non-admin) user may have at once.
    max_images
        Images one job may read.
    max_pixels
        Pixels (rows × columns) of the reference image of one job: the area limit.
    max_area_km2
        Largest search area (bounding box) of one job, km².
    max_nodes_per_pair, max_nodes_per_job
        Matcher nodes of one pair, and of all pairs of one job together.
    max_job_memory_bytes
        Memory a job's process may add to what it holds when it starts (its data segment is limited with
        ``RLIMIT_DATA``, and a watchdog ends it when its resident memory grows past this); 0: no limit.
    max_job_seconds
        Wall time of one job; 0: no limit.
    max_user_disk_bytes
        Disk one user's job outputs and uploads may take together.
    max_upload_bytes
        Largest uploaded file.
    retention_days
        Outputs of finished jobs are deleted this many days after they ended (the job is then ``dismissed``
        with a message saying so); 0: kept forever.
    max_body_bytes
        Largest request body accepted (uploads excepted: ``max_upload_bytes``), bytes.
    heartbeat_s
        Seconds between a worker's heartbeats (a dismissal stops a running job within about this long).
    stale_after_s
        A running job whose heartbeat is older than this is taken as orphaned (its worker died).
    max_attempts
        Times a job is started before an orphaned one ends ``failed`` instead of being re-queued.
    poll_s
        Seconds an idle worker waits before looking at the queue again, and between two rounds of the
        worker pool's supervisor (a dead worker restarted, orphaned jobs re-queued) and of the notification
        sender (``geodeform serve --poll``); shorter: jobs start, are re-queued and are reported sooner, for
        a few more (small) queries of the store per second.
    notify_attempts, notify_backoff_s
        Deliveries of one notification before it is given up, and the first wait between two (doubling).
    smtp_host, smtp_port, smtp_from, smtp_starttls, smtp_user, smtp_password
        SMTP server for e-mail notifications (``mailto:`` subscriber URIs); no e-mail when ``smtp_host`` is
        empty.
    compute
        The ``compute`` section (:class:`geodeform.config.ComputeConfig` as a mapping) every preset job runs
        with, e.g. ``{"cluster": "slurm", "slurm": {...}}`` to send each job's pairs to SLURM through
        dask-jobqueue; None runs them inside the job's process (``sync``). Users cannot choose it.
    """

    db: str = "geodeform-service.db"
    jobs_dir: Path = Path("geodeform-jobs")
    uploads_dir: Path | None = None
    data_roots: tuple[Path, ...] = (Path("."),)
    catalogue_hosts: tuple[str, ...] = ()
    webhook_hosts: tuple[str, ...] = ()
    public_url: str | None = None
    max_active_jobs: int = 20
    max_images: int = 100
    max_pixels: int = 100_000_000
    max_area_km2: float = 50_000.0
    max_nodes_per_pair: int = 2_000_000
    max_nodes_per_job: int = 50_000_000
    max_job_memory_bytes: int = 4 * GiB
    max_job_seconds: float = 6 * 3600.0
    max_user_disk_bytes: int = 20 * GiB
    max_upload_bytes: int = 2 * GiB
    retention_days: float = 30.0
    max_body_bytes: int = 1_000_000
    heartbeat_s: float = 2.0
    stale_after_s: float = 30.0
    max_attempts: int = 2
    poll_s: float = 0.5
    notify_attempts: int = 6
    notify_backoff_s: float = 5.0
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "geodeform@localhost"
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    compute: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> ServiceSettings:
        """Absolute, symlink-free folders (workers may run in another working directory)."""
        jobs = self.jobs_dir.expanduser().resolve()
        uploads = self.uploads_dir or jobs.parent / "geodeform-uploads"
        return dataclasses.replace(
            self,
            jobs_dir=jobs,
            uploads_dir=uploads.expanduser().resolve(),
            data_roots=tuple(r.expanduser().resolve() for r in self.data_roots),
        )

    @property
    def uploads_root(self) -> Path:
        """The folder of the users' upload folders (``uploads_dir``, or its default)."""
        return self.uploads_dir or self.jobs_dir.parent / "geodeform-uploads"

    def to_json(self) -> str:
        """Serialise for a worker process."""
        d = dataclasses.asdict(self)
        for key in ("jobs_dir", "uploads_dir"):
            d[key] = None if d[key] is None else str(d[key])
        d["data_roots"] = [str(r) for r in self.data_roots]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        d["jobs_dir"] = Path(d["jobs_dir"])
        d["uploads_dir"] = None if d.get("uploads_dir") is None else Path(d["uploads_dir"])
        d["data_roots"] = tuple(Path(r) for r in d["data_roots"])
        d["catalogue_hosts"] = tuple(d["catalogue_hosts"])
        d["webhook_hosts"] = tuple(d.get("webhook_hosts", ()))
        return cls(**d)

    def limits(self) -> dict[str, Any]:
        """The per-user and per-job limits, as shown to users (``GET /account``)."""
        return {
            "max_active_jobs": self.max_active_jobs,
            "max_images_per_job": self.max_images,
            "max_pixels_per_image": self.max_pixels,
            "max_area_km2_per_job": self.max_area_km2,
            "max_nodes_per_pair": self.max_nodes_per_pair,
            "max_nodes_per_job": self.max_nodes_per_job,
            "max_job_memory_bytes": self.max_job_memory_bytes or None,
            "max_job_seconds": self.max_job_seconds or None,
            "max_disk_bytes": self.max_user_disk_bytes,
            "max_upload_bytes": self.max_upload_bytes,
            "retention_days": self.retention_days or None,
            "max_request_bytes": self.max_body_bytes,
        }
