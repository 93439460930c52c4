"""Exception hierarchy: one root, specific subclasses that also inherit the matching built-in."""

from __future__ import annotations

__all__ = [
    "DataError",
    "GeodeformError",
    "InvalidInputError",
    "NoDataError",
    "UnknownPixelSizeError",
]


class GeodeformError(Exception):
    """Root of every error geodeform raises on purpose."""


class InvalidInputError(GeodeformError, ValueError):
    """An argument has the wrong type, shape or value; the message names it and the fix."""


class DataError(GeodeformError, OSError):
    """A file or remote resource is missing, corrupt or not georeferenced."""


class NoDataError(GeodeformError, LookupError):
    """Nothing usable was found (no scenes, no overlap, all clouds)."""


class UnknownPixelSizeError(InvalidInputError):
    """A map's pixel size in its own unit is needed (filter thresholds in pixels) and cannot be known from the
    input (plain arrays, a GeoTIFF without unit or time span, a composite); the message asks for pixel=."""
