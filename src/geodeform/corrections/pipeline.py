"""Driver: filter, co-register and destripe one offset map, with stable-ground metrics before and after."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geodeform.corrections._common import as_map, as_mask
from geodeform.corrections.coregistration import Coregistration, coregister, select_stable
from geodeform.corrections.filters import FilterResult, filter_outliers
from geodeform.corrections.metrics import StableGroundMetrics, stable_ground_metrics
from geodeform.corrections.scale import PixelScale, resolve_pixel
from geodeform.corrections.stripes import destripe

__all__ = ["CorrectionReport", "correct_offsets"]


@dataclass(frozen=True)
class CorrectionReport:
    """Result of :func:`correct_offsets`.

    Attributes
    ----------
    dx, dy
        Corrected maps, float32 (NaN where rejected or without data).
    stable
        Stable-ground mask used for the fit and the metrics.
    before, after
        Stable-ground metrics of the input and of the corrected maps.
    filtering
        Outlier masks per filter.
    coregistration
        Fitted bias models.
    stripe_profiles
        Removed stripe profiles per component (empty without ``stripes``).
    """

    dx: NDArray[np.float32]
    dy: NDArray[np.float32]
    stable: NDArray[np.bool_]
    before: StableGroundMetrics
    after: StableGroundMetrics
    filtering: FilterResult
    coregistration: Coregistration
    stripe_profiles: dict[str, NDArray[np.float64]]


def correct_offsets(
    dx: ArrayLike,
    dy: ArrayLike,
    *,
    stable: ArrayLike | None = None,
    plane: bool = True,
    stripes: dict[str, Any] | None = None,
    filters: dict[str, Any] | None = None,
    pixel: PixelScale = None,
    min_stable: int = 20,
) -> CorrectionReport:
    """Clean one offset (or velocity) map: outlier filters, co-registration, optional stripe removal.

    Parameters
    ----------
    dx, dy
        2-D components (NaN = no data), any unit and frame (kept).
    stable
        Static-terrain mask; None selects it automatically (:func:`select_stable`: the nodes near the
        dominant offset, right when most of the map is static terrain; give a mask on glaciers).
    plane
        Remove a plane, not only a shift, fitted on stable ground.
    stripes
        Keyword arguments of :func:`destripe` (e.g. ``{"track_angle_deg": 12, "bin_width": 16}``); the
        profile is estimated on stable ground. None skips stripe removal.
    filters
        Keyword arguments of :func:`filter_outliers`; None uses its defaults.
    pixel
        One pixel of displacement in the unit of the maps (1 for pixel offsets from
        :func:`geodeform.offsets.match`, the pixel size for metres, pixel size / Δt for a velocity map;
        :func:`~geodeform.corrections.scale.product_pixel` reads it from a geodeform pair product): the
        scale of the filters' thresholds, which are in pixels. None: from the maps themselves (DataArrays
        whose ``units`` are pixels), else refused; ``"scatter"``: estimated from the map's static terrain
        (:func:`~geodeform.corrections.pixel_scale`), by choice (it shrinks with the map's noise).
    min_stable
        Fewest stable nodes with data for the co-registration.

    Raises
    ------
    UnknownPixelSizeError
        ``pixel`` not given and the maps do not say their pixel size (plain arrays): nothing is guessed.
    NoDataError
        Fewer than ``min_stable`` stable nodes with data (or fewer than 10 valid nodes for an automatic
        selection).

    Returns
    -------
    CorrectionReport
    """
    options = {"pixel": pixel, **(filters or {})}
    scale = resolve_pixel(dx, dy, options["pixel"])  # first: refused before any work if unknown
    x = as_map(dx, "dx")
    y = as_map(dy, "dy", shape=x.shape)
    mask = as_mask(stable, "stable", x.shape)
    if mask is None:
        # co-registration needs 20 stable nodes; a margin for those the outlier filters remove
        mask = select_stable(x, y, min_count=min_stable + 10)
    before = stable_ground_metrics(x, y, mask)
    filt = filter_outliers(x, y, **{**options, "pixel": scale.value})
    filt = replace(filt, pixel_source=scale.source)
    co = coregister(filt.dx, filt.dy, stable=mask, plane=plane, min_points=min_stable)
    out_x, out_y = co.dx, co.dy
    assert out_y is not None
    profiles: dict[str, NDArray[np.float64]] = {}
    if stripes is not None:
        sx = destripe(out_x, reference=mask, **stripes)
        sy = destripe(out_y, reference=mask, **stripes)
        out_x, out_y = sx.values, sy.values
        profiles = {"dx": sx.profile, "dy": sy.profile}
    after = stable_ground_metrics(out_x, out_y, mask)
    return CorrectionReport(
        dx=out_x,
        dy=out_y,
        stable=mask,
        before=before,
        after=after,
        filtering=filt,
        coregistration=co,
        stripe_profiles=profiles,
    )
