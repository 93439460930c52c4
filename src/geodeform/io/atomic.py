"""Atomic file output: write to a temporary file in the destination folder, then ``os.replace`` it.

A reader never sees a half-written product, and a crash (or an exception inside the ``with`` block) leaves
no partial file behind: either the previous file (if any) or the complete new one.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geodeform.errors import DataError

__all__ = ["DiskFullError", "atomic_output", "is_disk_full"]


class DiskFullError(DataError):
    """The disk filled up while a file was written (nothing half-written was left)."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a "no space left on device" error, whatever library raised it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(seen) or "errno = 28" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    Parameters
    ----------
    path
        Final destination. Its parent folder must exist (it is not created, so a typo in ``-o`` fails
        early instead of scattering folders).

    Yields
    ------
    pathlib.Path
        Temporary path in the same folder (same filesystem, so the final rename is atomic). It does not
        exist yet when yielded; the caller creates it with any writer (GDAL, h5netcdf, ``open``).

    Raises
    ------
    DataError
        If the destination folder does not exist or the block did not create the temporary file.
    DiskFullError
        The disk filled up while writing: the temporary file is removed, the destination is untouched.
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(f"output folder {str(folder)!r} does not exist; create it or choose another -o path")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers such as GDAL refuse to overwrite some formats; let them create it
    try:
        yield tmp
        if not tmp.exists():
            raise DataError(f"writer produced no file for {str(final)!r}")
        with open(tmp, "rb") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except Exception as exc:
        if is_disk_full(exc):
            # Drop the writer's frames: they hold its open file, which must close now, not at a later GC.
            seen: BaseException | None = exc
            while seen is not None:
                seen.__traceback__ = None
                seen = seen.__cause__ or seen.__context__
            gc.collect()
            free = shutil.disk_usage(folder).free
            raise DiskFullError(
                f"the disk filled up while writing {str(final)!r} ({free / 2**20:.0f} MiB free on its file "
                "system); nothing half-written was kept: free some space (or write elsewhere) and rerun"
            ) from exc
        raise
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".aux.xml")):  # GDAL may add a PAM sidecar
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
