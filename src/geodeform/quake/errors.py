"""Errors of the earthquake chain; each also inherits the matching built-in (see :mod:`geodeform.errors`)."""

from __future__ import annotations

from geodeform.errors import InvalidInputError, NoDataError

__all__ = ["EmptyFieldError", "NoRuptureError", "TraceCRSError", "TraceOutsideError"]


class EmptyFieldError(NoDataError):
    """An offset field (or every tile of a mosaic) holds no finite value."""


class NoRuptureError(NoDataError):
    """No displacement discontinuity stands above the noise of the offset field."""


class TraceOutsideError(InvalidInputError):
    """A rupture trace does not cross the offset grid (or crosses too little of it)."""


class TraceCRSError(InvalidInputError):
    """A trace file's coordinates do not match its declared CRS (or it declares none and is not lon/lat)."""
