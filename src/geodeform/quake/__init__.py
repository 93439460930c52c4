"""The earthquake chain: rupture trace mapping, slip profiles and co-seismic offset mosaics.

>>> from geodeform.quake import detect_trace, slip_profiles  # doctest: +SKIP
>>> trace = detect_trace(dx_m, dy_m, pixel_size=80.0)  # doctest: +SKIP
>>> table = slip_profiles(dx_m, dy_m, trace, spacing=500, half_width=1500, pixel_size=80)  # doctest: +SKIP

Conventions: fields are on a regular grid of square cells ``pixel_size`` metres wide (an offset field's node
grid: ``step`` × the image pixel); ``dx``/``dy`` are along +col / +row (the offsets convention; a map
product's +y north is ``dy = -north`` on a north-up grid, :func:`grid_components`); traces are (row, col)
vertices of that grid. Fault-parallel slip is + for right-lateral motion, fault-normal slip + for opening.

Matching near a rupture: :data:`FAULT_MATCHING` holds the :func:`geodeform.offsets.match` settings this
module's benchmarks support (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.quake.errors import EmptyFieldError, NoRuptureError, TraceCRSError, TraceOutsideError
    from geodeform.quake.grids import FAULT_MATCHING, grid_components
    from geodeform.quake.mosaics import (
        DisplacementTile,
        Mosaic,
        TileOverlap,
        mosaic,
        mosaic_grid,
        reprojection_jacobian,
        utm_crs,
    )
    from geodeform.quake.products import CSV_HEADER, plot_slip, write_profiles_csv
    from geodeform.quake.profiles import (
        COLUMNS,
        SlipProfiles,
        TrackArtefacts,
        correlation_area,
        slip_profiles,
        trace_frame,
        track_artefacts,
    )
    from geodeform.quake.trace import detect_trace, step_strength
    from geodeform.quake.vector import read_trace, trace_to_geojson, write_trace_geojson

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "errors": (
            "EmptyFieldError",
            "NoRuptureError",
            "TraceCRSError",
            "TraceOutsideError",
        ),
        "grids": (
            "FAULT_MATCHING",
            "grid_components",
        ),
        "mosaics": (
            "DisplacementTile",
            "Mosaic",
            "TileOverlap",
            "mosaic",
            "mosaic_grid",
            "reprojection_jacobian",
            "utm_crs",
        ),
        "products": (
            "CSV_HEADER",
            "plot_slip",
            "write_profiles_csv",
        ),
        "profiles": (
            "COLUMNS",
            "SlipProfiles",
            "TrackArtefacts",
            "correlation_area",
            "slip_profiles",
            "trace_frame",
            "track_artefacts",
        ),
        "trace": (
            "detect_trace",
            "step_strength",
        ),
        "vector": (
            "read_trace",
            "trace_to_geojson",
            "write_trace_geojson",
        ),
    },
)

__all__ = [
    "COLUMNS",
    "CSV_HEADER",
    "FAULT_MATCHING",
    "DisplacementTile",
    "EmptyFieldError",
    "Mosaic",
    "NoRuptureError",
    "SlipProfiles",
    "TileOverlap",
    "TraceCRSError",
    "TraceOutsideError",
    "TrackArtefacts",
    "correlation_area",
    "detect_trace",
    "grid_components",
    "mosaic",
    "mosaic_grid",
    "plot_slip",
    "read_trace",
    "reprojection_jacobian",
    "slip_profiles",
    "step_strength",
    "trace_frame",
    "trace_to_geojson",
    "track_artefacts",
    "utm_crs",
    "write_profiles_csv",
    "write_trace_geojson",
]
