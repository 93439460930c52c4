"""Settings of the earthquake chain (the ``quake:`` section of a job file), re-exported by
:mod:`geodeform.config`.

A module of its own beside ``config.py``, not in :mod:`geodeform.quake`: importing a module of that package
imports the whole chain (xarray, SciPy, numba kernels: ~1 s), which every ``geodeform`` command (``--help``,
``init``, ``serve``) would pay to read a job file."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["QuakeConfig"]


class QuakeConfig(BaseModel):
    """Earthquake chain (``preset: quake``): pre x post pairs around the event per tile and orbit, stacked;
    stripe/jitter correction against the trace; one mosaic of all tiles; rupture trace; slip profiles."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)

    event_date: dt.date = Field(
        ...,
        description="Date of the earthquake, YYYY-MM-DD (UTC). Images of that day are left out (their "
        "time relative to the event is not known).",
    )
    pre_images: int = Field(
        2, ge=1, le=10, description="Pre-event acquisitions used per tile and orbit: the latest before it."
    )
    post_images: int = Field(
        2, ge=1, le=10, description="Post-event acquisitions used per tile and orbit: the earliest after it."
    )
    max_days: float = Field(
        365.0,
        gt=0,
        description="Images farther from the event are not used, days (post-seismic motion and surface "
        "change grow with time).",
    )
    stack: Literal["median", "mean"] = Field(
        "median", description="How the pre x post pairs of one tile and orbit are combined at every node."
    )
    trace: str | None = Field(
        None,
        description="Rupture trace (GeoJSON LineString / MultiLineString); default: detected from the "
        "offset mosaic.",
    )
    trace_crs: str | None = Field(
        None,
        description="CRS of the trace's coordinates when the file declares none and they are not lon/lat, "
        "e.g. EPSG:32636.",
    )
    crs: str | None = Field(
        None,
        description="CRS of the mosaic, e.g. EPSG:32637; default the UTM zone of the centre of the tiles "
        "(one grid also for tiles of several UTM zones).",
    )
    resolution: float | None = Field(
        None, gt=0, description="Cell of the mosaic, metres; default the finest node spacing of the tiles."
    )
    track_correction: bool = Field(
        True,
        description="Remove detector stripes and attitude jitter along corrections.track_angle_deg, "
        "estimated against a smooth model on each side of the trace so that the slip is kept.",
    )
    two_motion_px: float = Field(
        0.1,
        gt=0,
        description="Step (px) from which nodes are re-measured with two-motion chips (metre-scale slip "
        "at 10 m is a sub-pixel step; geodeform.quake.FAULT_MATCHING).",
    )
    profile_spacing: float = Field(500.0, gt=0, description="Slip profiles every this along the trace, m.")
    profile_half_width: float = Field(
        1500.0, gt=0, description="Extent of each slip profile on each side of the trace, metres."
    )
    profile_gap: float | None = Field(
        None,
        ge=0,
        description="Nodes closer to the trace are left out of the profile fits, metres; default half a "
        "chip (chips that straddle the trace blend both sides).",
    )
