"""Errors of the SAR chain (subclasses of :mod:`geodeform.errors`, so they also inherit the built-ins)."""

from __future__ import annotations

from geodeform.errors import DataError, InvalidInputError

__all__ = ["IncompatiblePairError", "MissingAnnotationError", "SarProductError"]


class SarProductError(DataError):
    """A Sentinel-1 product is malformed: unreadable XML, missing measurement, sizes that disagree."""


class MissingAnnotationError(SarProductError):
    """The annotation XML of a measurement is not found: geometry (heading, incidence, spacing) is unknown."""


class IncompatiblePairError(InvalidInputError):
    """Two SAR images cannot be matched in radar geometry: different sensors, modes, polarisations, orbits."""
