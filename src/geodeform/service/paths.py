"""What one user's path inputs may name: the shared data roots, their own uploads, their own job outputs.

Every path-valued input of every process goes through :func:`resolve_input` with the caller's
:class:`DataScope`:

- ``uploads/NAME`` names a file the user uploaded (``PUT /uploads/NAME``);
- ``jobs/JOB_ID/NAME`` names a file of one of the user's own successful jobs (e.g.
  ``jobs/2f1c.../velocity.tif`` as the reference velocity of the next job);
- anything else is looked up in the shared data roots, in order.

The rules of :func:`geodeform.service.safety.check_relative` hold everywhere (no ``..``, no absolute path,
no control characters, no overlong names), no symlink may lead out of the folder a name starts in, and a
value that looks like a URL or a GDAL connection string (``/vsicurl/...``, ``NETCDF:...``) is refused where a
path is expected. :meth:`DataScope.public` maps server paths back to the names the user gave, so that no
message, config or log the user sees shows a server folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from geodeform.errors import InvalidInputError
from geodeform.service.safety import check_relative, find_in_root, is_url

__all__ = ["JOBS", "UPLOADS", "DataScope", "PathKind", "PathMask", "resolve_input"]

UPLOADS = "uploads"
"""First component of a path naming one of the user's uploaded files."""
JOBS = "jobs"
"""First component of a path naming a file of one of the user's jobs: ``jobs/JOB_ID/...``."""

PathKind = Literal["file", "folder"]


@dataclass(frozen=True)
class DataScope:
    """The folders one user's inputs may name.

    Attributes
    ----------
    roots
        Shared data roots (absolute, resolved), searched in order.
    uploads
        The user's upload folder (may not exist yet); None: no uploads.
    job_dir
        The output folder of one of the user's successful jobs by id, None for any other id.
    """

    roots: tuple[Path, ...]
    uploads: Path | None = None
    job_dir: Callable[[str], Path | None] = field(default=lambda _job_id: None, compare=False)

    def mask(self, extra: Mapping[Path, str] | None = None) -> PathMask:
        """The :class:`PathMask` hiding this scope's folders (and ``extra``: folder -> public name)."""
        pairs: list[tuple[str, str]] = [(str(p), name) for p, name in (extra or {}).items()]
        if self.uploads is not None:
            pairs.append((str(self.uploads), UPLOADS))
        pairs += [(str(root), "") for root in self.roots]
        return PathMask(tuple(sorted(pairs, key=lambda kv: -len(kv[0]))))  # deepest first


@dataclass(frozen=True)
class PathMask:
    """Server folders and the names users know them by (picklable: it travels to job processes).

    Calling it on a text replaces each folder by its public name: a shared data root by nothing (paths
    in it are given relative to it), the user's upload folder by ``uploads``, a job folder by ``.``.
    """

    folders: tuple[tuple[str, str], ...] = ()

    def __call__(self, text: str) -> str:
        """``text`` without server folders."""
        for folder, name in self.folders:
            if not folder or folder == "/":
                continue
            text = text.replace(folder + "/", f"{name}/" if name else "")
            text = re.sub(re.escape(folder) + r"(?![\w.-])", name or ".", text)
        return text


_GDAL_PREFIX = re.compile(r"^(/vsi|<|[A-Za-z0-9_]+:)")


def resolve_input(value: str, scope: DataScope, *, kind: PathKind = "file") -> Path:
    """The file (or folder) that ``value`` names in ``scope``, symlinks resolved.

    Parameters
    ----------
    value
        ``uploads/NAME``, ``jobs/JOB_ID/NAME`` or a path relative to a shared data root.
    scope
        The caller's :class:`DataScope`.
    kind
        ``"file"`` or ``"folder"``.

    Raises
    ------
    InvalidInputError
        A URL or GDAL connection string, a path breaking :func:`~geodeform.service.safety.check_relative`,
        a symlink leading out, or nothing of that kind under that name; the message never shows a server
        folder.
    """
    if is_url(value) or _GDAL_PREFIX.match(value):
        raise InvalidInputError(
            "a URL or GDAL connection string is not allowed here: give a path relative to a data root, "
            f"{UPLOADS}/NAME or {JOBS}/JOB_ID/NAME"
        )
    rel = check_relative(value.rstrip("/") if kind == "folder" else value)
    what = "folder" if kind == "folder" else "file"
    parts = rel.parts
    if parts and parts[0] == UPLOADS:
        bases: tuple[Path, ...] = (scope.uploads,) if scope.uploads is not None else ()
        rel, where = PurePosixPath(*parts[1:]), "your uploads"
    elif parts and parts[0] == JOBS:
        job = scope.job_dir(parts[1]) if len(parts) > 1 else None
        if job is None:
            shown = parts[1] if len(parts) > 1 else ""
            raise InvalidInputError(f"no successful job {shown!r} of yours: {JOBS}/JOB_ID/NAME")
        bases, rel, where = (job,), PurePosixPath(*parts[2:]), f"the outputs of job {parts[1]}"
    else:
        bases, where = scope.roots, "the data roots"
    if not rel.parts and kind == "file":
        raise InvalidInputError(f"names a folder, not a {what}")
    for base in bases:
        found = find_in_root(base, rel, folder=kind == "folder")
        if found is not None:
            return found
    raise InvalidInputError(f"no {what} {value!r} in {where}")
