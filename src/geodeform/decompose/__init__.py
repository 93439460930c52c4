"""Decomposition of displacement observations: east/north/up from several geometries, 4-D series, ICA.

* :func:`solve_enu` — per-pixel least squares from radar range / azimuth and optical east / north
  observations (:class:`Observation`) to east/north/up with covariance; :func:`slope_parallel` adds a
  surface-parallel flow constraint from a DEM.
* :func:`invert_enu` — MSBAS-like joint inversion of the pair networks of several geometries
  (:class:`PairSet`), on different dates, into east/north/up time series.
* :func:`ica` — independent component analysis of a displacement time series (seasonal vs trend).

Convention: heading clockwise from north (flight direction), incidence from the vertical, right-looking
radar; a ``range`` value is the displacement projected on the ground-to-satellite unit vector
``[−sin θ cos h, sin θ sin h, cos θ]`` (+ towards the satellite), an ``azimuth`` value on
``[sin h, cos h, 0]`` (+ along the flight). See the concepts page "Geometry and 3-D decomposition".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.decompose.enu import (
        COMPONENTS,
        EnuReason,
        EnuResult,
        Observation,
        ObservationKind,
        slope_parallel,
        solve_enu,
    )
    from geodeform.decompose.geometry import (
        SlopeAspect,
        azimuth_vector,
        los_vector,
        slope_aspect,
        surface_normal,
    )
    from geodeform.decompose.separation import ICAResult, ica
    from geodeform.decompose.series import EnuSeries, PairSet, invert_enu

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "enu": (
            "COMPONENTS",
            "EnuReason",
            "EnuResult",
            "Observation",
            "ObservationKind",
            "slope_parallel",
            "solve_enu",
        ),
        "geometry": (
            "SlopeAspect",
            "azimuth_vector",
            "los_vector",
            "slope_aspect",
            "surface_normal",
        ),
        "separation": (
            "ICAResult",
            "ica",
        ),
        "series": (
            "EnuSeries",
            "PairSet",
            "invert_enu",
        ),
    },
)

__all__ = [
    "COMPONENTS",
    "EnuReason",
    "EnuResult",
    "EnuSeries",
    "ICAResult",
    "Observation",
    "ObservationKind",
    "PairSet",
    "SlopeAspect",
    "azimuth_vector",
    "ica",
    "invert_enu",
    "los_vector",
    "slope_aspect",
    "slope_parallel",
    "solve_enu",
    "surface_normal",
]
