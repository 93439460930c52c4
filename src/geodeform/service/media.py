"""Media types of the files the service serves: job products and the map page's static files.

The one table of the service (job results, downloads by path, static files). Text types carry no charset
here: Starlette adds ``; charset=utf-8`` to ``text/*`` responses.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

__all__ = ["MEDIA_TYPES", "media_type"]

MEDIA_TYPES: dict[str, str] = {
    ".nc": "application/x-netcdf",
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".json": "application/json",
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}


def media_type(path: Path | str, *, guess: bool = True) -> str:
    """Media type of a file from its suffix.

    Parameters
    ----------
    path
        File name or path.
    guess
        For a suffix not in :data:`MEDIA_TYPES`, ask :mod:`mimetypes`; else (and when that fails too)
        ``application/octet-stream``.
    """
    path = Path(path)
    known = MEDIA_TYPES.get(path.suffix.lower())
    if known is None and guess:
        known = mimetypes.guess_type(path.name)[0]
    return known or "application/octet-stream"
