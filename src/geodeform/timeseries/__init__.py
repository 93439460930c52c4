"""Time-series inversion of pair networks: from many offset maps to one displacement series per pixel.

Sign convention: the one of the input offsets. For pixel offsets, a feature at (row, col) of the reference
image of a pair appears at (row + dy, col + dx) in its secondary image; cumulative displacements are
relative to the first date.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.timeseries._invert import (
        DAYS_PER_YEAR,
        SpanVelocity,
        TimeSeriesResult,
        TimeSeriesWarning,
        invert,
        span_velocity,
    )
    from geodeform.timeseries.margin import margin_nodes, moving_nodes
    from geodeform.timeseries.noise import add_date_noise, date_noise
    from geodeform.timeseries.products import (
        AnnualVelocity,
        VelocityComposite,
        annual_velocity,
        velocity_composite,
    )
    from geodeform.timeseries.uncertainty import (
        ErrorModel,
        add_node_errors,
        footprint_gradient,
        node_date_noise,
        pair_sigma,
        stable_noise_scale,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "_invert": (
            "DAYS_PER_YEAR",
            "SpanVelocity",
            "TimeSeriesResult",
            "TimeSeriesWarning",
            "invert",
            "span_velocity",
        ),
        "margin": (
            "margin_nodes",
            "moving_nodes",
        ),
        "noise": (
            "add_date_noise",
            "date_noise",
        ),
        "products": (
            "AnnualVelocity",
            "VelocityComposite",
            "annual_velocity",
            "velocity_composite",
        ),
        "uncertainty": (
            "ErrorModel",
            "add_node_errors",
            "footprint_gradient",
            "node_date_noise",
            "pair_sigma",
            "stable_noise_scale",
        ),
    },
)

__all__ = [
    "DAYS_PER_YEAR",
    "AnnualVelocity",
    "ErrorModel",
    "SpanVelocity",
    "TimeSeriesResult",
    "TimeSeriesWarning",
    "VelocityComposite",
    "add_date_noise",
    "add_node_errors",
    "annual_velocity",
    "date_noise",
    "footprint_gradient",
    "invert",
    "margin_nodes",
    "moving_nodes",
    "node_date_noise",
    "pair_sigma",
    "span_velocity",
    "stable_noise_scale",
    "velocity_composite",
]
