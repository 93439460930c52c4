"""Media (MIME) types of the files geodeform writes, for STAC links and HTTP responses."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

__all__ = ["MEDIA_TYPES", "media_type"]

MEDIA_TYPES: dict[str, str] = {
    ".nc": "application/x-netcdf",
    ".nc4": "application/x-netcdf",
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".tiff": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".stac.json": "application/geo+json",
    ".geojson": "application/geo+json",
    ".json": "application/json",
    ".html": "text/html",
    ".png": "image/png",
    ".csv": "text/csv",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
"""Media type by file suffix (``.stac.json``: a STAC item, a GeoJSON feature); GeoTIFFs are COGs."""


def media_type(path: str | os.PathLike[str], *, guess: bool = True) -> str:
    """Media type of a file by its name: :data:`MEDIA_TYPES`, else the system's guess (when ``guess``), else
    ``application/octet-stream``. Text types carry no charset (HTTP servers add it).

    >>> media_type("velocity.nc"), media_type("offsets.stac.json")
    ('application/x-netcdf', 'application/geo+json')
    """
    name = Path(path).name.lower()
    for suffix, media in MEDIA_TYPES.items():  # ".stac.json" before ".json"
        if name.endswith(suffix):
            return media
    return (mimetypes.guess_type(name)[0] if guess else None) or "application/octet-stream"
