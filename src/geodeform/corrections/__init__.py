"""Corrections of offset maps: co-registration on stable ground, stripe/jitter removal, outlier filters and
stable-ground error metrics.

Kernels work on 2-D numpy maps (NaN = no data) in any unit; they keep the input sign convention (pixel
offsets: +dx towards increasing columns, +dy towards increasing rows). :func:`correct_offsets` chains them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.corrections.coregistration import (
        Coregistration,
        DominantOffset,
        coregister,
        dominant_offset,
        select_stable,
    )
    from geodeform.corrections.filters import (
        FilterResult,
        apply_mask,
        direction_mask,
        filter_outliers,
        median_mad_mask,
        ndc_mask,
        quality_mask,
        speed_mask,
    )
    from geodeform.corrections.metrics import StableGroundMetrics, stable_ground_metrics
    from geodeform.corrections.pipeline import CorrectionReport, correct_offsets
    from geodeform.corrections.scale import Pixel, PixelScale, pixel_scale, product_pixel, resolve_pixel
    from geodeform.corrections.stripes import StripeCorrection, destripe, track_coordinates

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "coregistration": (
            "Coregistration",
            "DominantOffset",
            "coregister",
            "dominant_offset",
            "select_stable",
        ),
        "filters": (
            "FilterResult",
            "apply_mask",
            "direction_mask",
            "filter_outliers",
            "median_mad_mask",
            "ndc_mask",
            "quality_mask",
            "speed_mask",
        ),
        "metrics": (
            "StableGroundMetrics",
            "stable_ground_metrics",
        ),
        "pipeline": (
            "CorrectionReport",
            "correct_offsets",
        ),
        "scale": (
            "Pixel",
            "PixelScale",
            "pixel_scale",
            "product_pixel",
            "resolve_pixel",
        ),
        "stripes": (
            "StripeCorrection",
            "destripe",
            "track_coordinates",
        ),
    },
)

__all__ = [
    "Coregistration",
    "CorrectionReport",
    "DominantOffset",
    "FilterResult",
    "Pixel",
    "PixelScale",
    "StableGroundMetrics",
    "StripeCorrection",
    "apply_mask",
    "coregister",
    "correct_offsets",
    "destripe",
    "direction_mask",
    "dominant_offset",
    "filter_outliers",
    "median_mad_mask",
    "ndc_mask",
    "pixel_scale",
    "product_pixel",
    "quality_mask",
    "resolve_pixel",
    "select_stable",
    "speed_mask",
    "stable_ground_metrics",
    "track_coordinates",
]
