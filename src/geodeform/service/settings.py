"""Settings shared by the web process and its workers (passed to worker processes as JSON)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ServiceSettings"]


@dataclass(frozen=True)
class ServiceSettings:
    """What a ``geodeform serve`` instance is allowed to do and where it keeps things.

    Attributes
    ----------
    db
        Job store URL: a SQLite file path / ``sqlite:///...`` or ``postgresql://...``.
    jobs_dir
        Folder holding one sub-folder of outputs per job.
    data_roots
        Folders that input paths are resolved in; nothing outside them can be read on a user's behalf.
    catalogue_hosts
        Host names that input URLs may point to (https only, public addresses only).
    max_active_jobs
        Accepted + running jobs one (non-admin) user may have at once.
    max_images
        Images one job may read.
    max_pixels
        Pixels (rows × columns) of the reference image of one job: the area limit.
    max_area_km2
        Largest search area (bounding box) of one job, km².
    max_body_bytes
        Largest request body accepted (uploads included), bytes.
    heartbeat_s
        Seconds between a worker's heartbeats.
    stale_after_s
        A running job whose heartbeat is older than this is taken as orphaned (its worker died).
    max_attempts
        Times a job is started before an orphaned one ends ``failed`` instead of being re-queued.
    poll_s
        Seconds an idle worker waits before looking at the queue again.
    compute
        The ``compute`` section (:class:`geodeform.config.ComputeConfig` as a mapping) every preset job runs
        with, e.g. ``{"cluster": "slurm", "slurm": {...}}`` to send each job's pairs to SLURM through
        dask-jobqueue; None runs them inside the worker process (``sync``). Users cannot choose it.
    """

    db: str = "geodeform-service.db"
    jobs_dir: Path = Path("geodeform-jobs")
    data_roots: tuple[Path, ...] = (Path("."),)
    catalogue_hosts: tuple[str, ...] = ()
    max_active_jobs: int = 20
    max_images: int = 100
    max_pixels: int = 100_000_000
    max_area_km2: float = 50_000.0
    max_body_bytes: int = 1_000_000
    heartbeat_s: float = 2.0
    stale_after_s: float = 30.0
    max_attempts: int = 2
    poll_s: float = 0.5
    compute: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> ServiceSettings:
        """Absolute, symlink-free folders (workers may run in another working directory)."""
        return dataclasses.replace(
            self,
            jobs_dir=self.jobs_dir.expanduser().resolve(),
            data_roots=tuple(r.expanduser().resolve() for r in self.data_roots),
        )

    def to_json(self) -> str:
        """Serialise for a worker process."""
        d = dataclasses.asdict(self)
        d["jobs_dir"] = str(self.jobs_dir)
        d["data_roots"] = [str(r) for r in self.data_roots]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        """Inverse of :meth:`to_json`."""
        d = json.loads(text)
        d["jobs_dir"] = Path(d["jobs_dir"])
        d["data_roots"] = tuple(Path(r) for r in d["data_roots"])
        d["catalogue_hosts"] = tuple(d["catalogue_hosts"])
        return cls(**d)
