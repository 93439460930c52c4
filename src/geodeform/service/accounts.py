"""What belongs to one user on disk: their upload folder, their jobs' folders, their data scope and usage."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from geodeform.service.paths import DataScope
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobStore

__all__ = ["DiskUsage", "disk_usage", "folder_bytes", "upload_dir", "user_scope"]


def upload_dir(settings: ServiceSettings, user_id: int) -> Path:
    """The user's upload folder (not created here)."""
    return settings.uploads_root / str(user_id)


def user_scope(settings: ServiceSettings, store: JobStore, user_id: int) -> DataScope:
    """What the user's inputs may name: the shared roots, their uploads, their successful jobs' outputs."""

    def job_dir(job_id: str) -> Path | None:
        if len(job_id) > 64:
            return None
        job = store.get_job(job_id)
        if job is None or job.user_id != user_id or job.status != "successful" or job.dismiss_requested:
            return None
        return settings.jobs_dir / job.id

    return DataScope(settings.data_roots, upload_dir(settings, user_id), job_dir)


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 if it does not exist); symlinks are not followed."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class DiskUsage:
    """Bytes one user's files take: job outputs and uploads."""

    jobs: int
    uploads: int

    @property
    def total(self) -> int:
        """Jobs and uploads together: what ``max_user_disk_bytes`` limits."""
        return self.jobs + self.uploads


def disk_usage(
    settings: ServiceSettings, store: JobStore, user_id: int, *, skip: str | None = None
) -> DiskUsage:
    """The user's disk usage now (``skip``: a job folder left out, e.g. the one being measured apart)."""
    ids = store.user_jobs(user_id, ("running", "successful", "failed"))
    jobs = sum(folder_bytes(settings.jobs_dir / job_id) for job_id in ids if job_id != skip)
    return DiskUsage(jobs, folder_bytes(upload_dir(settings, user_id)))
