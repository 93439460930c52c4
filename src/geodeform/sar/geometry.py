"""Radar offsets in metres: range, azimuth and line of sight at every node, with the viewing geometry.

Conventions (see also :mod:`geodeform.decompose`):

* ``range``: offset along the image's range axis in metres of that axis (ground range for a GRD, slant
  range for an SLC), + towards increasing range, i.e. **away from the satellite** (Sentinel-1 samples
  increase with range);
* ``azimuth``: offset along the image lines in metres, + along the flight direction (lines increase with
  azimuth time);
* ``los``: displacement projected on the ground-to-satellite unit vector, metres, + **towards the
  satellite**. A GRD maps slant range onto the ellipsoid, so a ground-range offset ``g`` is a slant-range
  change ``g sin θ`` and ``los = −g sin θ``; for an SLC ``los = −range``. This is the value of a
  ``range`` :class:`geodeform.decompose.Observation`.
* ``heading``: local flight direction (degrees clockwise from north), ``incidence``: degrees from the
  vertical; the unit vector of ``los`` is ``[−sin θ cos h, sin θ sin h, cos θ]`` (right-looking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geodeform.decompose import los_vector
from geodeform.offsets import OffsetField
from geodeform.sar.reader import S1Image

__all__ = ["RadarOffsets", "radar_offsets"]


@dataclass(frozen=True)
class RadarOffsets:
    """Offsets of a radar pair in metres, on the matcher's node grid.

    Attributes
    ----------
    rows, cols
        ``(nr,)``, ``(nc,)`` node centres in pixels of the reference :class:`~geodeform.sar.S1Image` data
        (0-based, pixel centre = integer).
    range, azimuth, los
        ``(nr, nc)`` float32 metres, see the module docstring for the signs; NaN where the matcher failed.
    incidence, heading
        ``(nr, nc)`` float32 degrees at the nodes.
    quality, reason
        The matcher's quality (0..1) and :class:`geodeform.offsets.Reason` codes.
    error_range, error_azimuth
        ``(nr, nc)`` float32 1-σ of ``range`` / ``azimuth``, metres, from the matcher's predicted error
        (NaN when it has none).
    projection
        ``"Ground Range"`` or ``"Slant Range"``.
    """

    rows: NDArray[np.float64]
    cols: NDArray[np.float64]
    range: NDArray[np.float32]
    azimuth: NDArray[np.float32]
    los: NDArray[np.float32]
    incidence: NDArray[np.float32]
    heading: NDArray[np.float32]
    quality: NDArray[np.float32]
    reason: NDArray[np.uint8]
    error_range: NDArray[np.float32]
    error_azimuth: NDArray[np.float32]
    projection: str

    @property
    def los_error(self) -> NDArray[np.float32]:
        """1-σ of ``los``, metres."""
        sin_t = np.sin(np.deg2rad(self.incidence)) if self.projection == "Ground Range" else 1.0
        return (self.error_range * sin_t).astype(np.float32)

    def unit_vectors(self) -> NDArray[np.float64]:
        """``(nr, nc, 3)`` ground-to-satellite unit vectors [E, N, U] of ``los``."""
        return los_vector(self.heading, self.incidence)


def radar_offsets(field: OffsetField, image: S1Image) -> RadarOffsets:
    """Convert a pixel offset field of a Sentinel-1 pair to range / azimuth / line-of-sight metres.

    Parameters
    ----------
    field
        From :func:`geodeform.sar.match_amplitude` or :func:`geodeform.sar.match_coherence` (or
        :func:`geodeform.offsets.match`) run on ``image`` and a secondary of the same track.
    image
        The reference :class:`~geodeform.sar.S1Image` (its annotation gives the pixel spacing, incidence and
        heading at the nodes).

    Returns
    -------
    RadarOffsets

    Raises
    ------
    MissingAnnotationError
        When ``image`` was read without annotation.
    """
    ann = image.require_annotation("converting offsets to metres")
    rr, cc = np.meshgrid(field.rows, field.cols, indexing="ij")
    inc = image.incidence(rr, cc)
    head = image.heading(rr, cc)
    rng = field.dx.astype(np.float64) * ann.range_pixel_spacing
    azi = field.dy.astype(np.float64) * ann.azimuth_pixel_spacing
    ground = ann.projection.lower().startswith("ground")
    los = -rng * np.sin(np.deg2rad(inc)) if ground else -rng
    err = field.error if field.error is not None else np.full(field.dx.shape, np.nan)
    # the matcher's error is that of the offset vector: per component / sqrt(2)
    comp = np.asarray(err, np.float64) / np.sqrt(2.0)
    return RadarOffsets(
        rows=np.asarray(field.rows, np.float64),
        cols=np.asarray(field.cols, np.float64),
        range=rng.astype(np.float32),
        azimuth=azi.astype(np.float32),
        los=los.astype(np.float32),
        incidence=inc.astype(np.float32),
        heading=head.astype(np.float32),
        quality=field.quality,
        reason=field.reason,
        error_range=(comp * ann.range_pixel_spacing).astype(np.float32),
        error_azimuth=(comp * ann.azimuth_pixel_spacing).astype(np.float32),
        projection=ann.projection,
    )
