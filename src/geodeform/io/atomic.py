"""Atomic file output: write to a temporary file in the destination folder, then ``os.replace`` it.

A reader never sees a half-written product, and a crash (or an exception inside the ``with`` block) leaves
no partial file behind: either the previous file (if any) or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from geodeform.errors import DataError

__all__ = ["atomic_output"]


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
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".aux.xml")):  # GDAL may add a PAM sidecar
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
