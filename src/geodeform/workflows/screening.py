"""Between matching and writing: what makes a pair's numbers credible, or says why they are not.

The pair chain (:func:`geodeform.workflows.process_pair`) calls these steps on every matched field:

1. the images' own masks (cloud, shadow, no data: the scene's SCL / QA_PIXEL found next to the band, or a
   mask given per image) are read on the reference grid and go to the matcher; nodes they emptied get the
   reason ``CLOUD``;
2. nodes on the water mask get ``WATER``;
3. matches that are not credible are removed, each with a reason code: low correlation
   (``LOW_CORRELATION``), an ambiguous peak (``AMBIGUOUS``, a large predicted error), faster than the
   expected speed (``SPEED``), inconsistent with their neighbours (``OUTLIER``);
4. the co-registration bias is fitted on the job's stable ground (mask), on the dominant offset (``auto``,
   a documented choice of jobs without a mask) or on every node (``all``). With a mask, a pair with too
   little stable ground is **not** fitted on moving ice: it is left ``pending`` and the job gives it the
   job-level estimate of its dates (:mod:`geodeform.workflows.stable`), marked degraded.

Thresholds are in pixels; offsets in pixels with a feature at (row, col) of the reference found at
(row + dy, col + dx) of the secondary.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from geodeform.config import CorrectionsConfig
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.corrections import correct_offsets, filter_outliers
from geodeform.io import AcquisitionDates, GeoGrid
from geodeform.io.masks import read_scene_mask, scene_mask
from geodeform.offsets import OffsetField, Reason

__all__ = [
    "FILTER_REASONS",
    "CoregSource",
    "ImageMasks",
    "PairCoregistration",
    "Screened",
    "image_masks",
    "mark_cloud_nodes",
    "screen_field",
]

log = logging.getLogger(__name__)

CoregSource = Literal["mask", "auto", "all", "pending", "job", "none"]
"""Where a pair's co-registration came from: its own stable ground (``mask``), the dominant offset
(``auto``), every node (``all``), not yet fitted (``pending``: too little stable ground), the job-level
estimate of its dates (``job``), or none (no corrections)."""

# Filter names of geodeform.corrections.filter_outliers -> the reason code written in the products.
FILTER_REASONS: dict[str, int] = {
    "quality": int(Reason.LOW_CORRELATION),
    "ambiguous": int(Reason.AMBIGUOUS),
    "speed": int(Reason.SPEED),
    "direction": int(Reason.OUTLIER),
    "median": int(Reason.OUTLIER),
    "ndc": int(Reason.OUTLIER),
}
# Share of a chip under a mask from which a node that failed for any reason is counted as clouded.
_CLOUDED_CHIP = 0.25
# Margin (px) above the expected displacement before a node counts as too fast: the matching noise.
_SPEED_MARGIN_PX = 1.0


@dataclass(frozen=True)
class ImageMasks:
    """The masks of both images on the reference grid (True = do not use), and where they came from."""

    reference: NDArray[np.bool_] | None
    secondary: NDArray[np.bool_] | None
    sources: tuple[str, str]

    @property
    def union(self) -> NDArray[np.bool_] | None:
        """Pixels masked in either image (None without any mask)."""
        masks = [m for m in (self.reference, self.secondary) if m is not None]
        if not masks:
            return None
        return np.logical_or.reduce(masks)


def image_masks(
    reference: str, secondary: str, given: tuple[str | None, str | None], grid: GeoGrid
) -> ImageMasks:
    """The cloud / no-data masks of a pair on the reference ``grid``.

    Parameters
    ----------
    reference, secondary
        The band files.
    given
        Per image: a mask path, ``"none"`` (no mask), or None to use the scene's own SCL / QA_PIXEL when it
        sits next to the band (:func:`geodeform.io.masks.find_scene_mask`).
    grid
        The reference grid (the secondary is warped onto it, and so is its mask).
    """
    out: list[NDArray[np.bool_] | None] = []
    sources: list[str] = []
    for band, mask in zip((reference, secondary), given, strict=True):
        found = scene_mask(band, mask)
        if found is None:
            out.append(None)
            sources.append("none")
            continue
        bad = read_scene_mask(found, grid)
        out.append(bad)
        how = "found next to the band" if found.found else "given"
        sources.append(f"{found.path.name} ({found.kind}, {how}, {bad.mean():.0%} masked)")
    return ImageMasks(out[0], out[1], (sources[0], sources[1]))


def _chip_fraction(
    bad: NDArray[np.bool_], rows: NDArray[np.float64], cols: NDArray[np.float64], chip: int
) -> NDArray[np.float64]:
    """Share of each node's chip (``chip`` px square, centred on the node) that ``bad`` covers."""
    h, w = bad.shape
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = np.cumsum(np.cumsum(bad, axis=0), axis=1)
    r0 = np.clip(np.rint(rows - (chip - 1) / 2).astype(int), 0, h)
    c0 = np.clip(np.rint(cols - (chip - 1) / 2).astype(int), 0, w)
    r1, c1 = np.clip(r0 + chip, 0, h), np.clip(c0 + chip, 0, w)
    rr0, cc0 = np.meshgrid(r0, c0, indexing="ij")
    rr1, cc1 = np.meshgrid(r1, c1, indexing="ij")
    area = np.maximum((rr1 - rr0) * (cc1 - cc0), 1)
    inside = table[rr1, cc1] - table[rr0, cc1] - table[rr1, cc0] + table[rr0, cc0]
    return inside / area


def mark_cloud_nodes(field: OffsetField, masked: NDArray[np.bool_] | None, chip: int) -> OffsetField:
    """``CLOUD`` for the nodes the image masks emptied (``MASKED`` with masked pixels in the chip) or spoilt
    (failed with a quarter of the chip masked)."""
    if masked is None or not masked.any():
        return field
    share = _chip_fraction(masked, field.rows, field.cols, chip)
    failed = field.reason != Reason.OK
    cloud = ((field.reason == Reason.MASKED) & (share > 0)) | (failed & (share >= _CLOUDED_CHIP))
    return replace(field, reason=np.where(cloud, np.uint8(Reason.CLOUD), field.reason).astype(np.uint8))


def _reject(field: OffsetField, mask: NDArray[np.bool_], code: int) -> OffsetField:
    """``field`` with NaN offsets, zero quality and ``code`` on the valid nodes where ``mask`` is True."""
    hit = mask & (field.reason == Reason.OK)
    if not hit.any():
        return field
    nan = np.float32(np.nan)
    err = None if field.error is None else np.where(hit, nan, field.error).astype(np.float32)
    return replace(
        field,
        dx=np.where(hit, nan, field.dx).astype(np.float32),
        dy=np.where(hit, nan, field.dy).astype(np.float32),
        quality=np.where(hit, np.float32(0), field.quality).astype(np.float32),
        reason=np.where(hit, np.uint8(code), field.reason).astype(np.uint8),
        error=err,
    )


@dataclass(frozen=True)
class PairCoregistration:
    """The co-registration bias removed from a pair (or why none was).

    Attributes
    ----------
    source
        :data:`CoregSource`.
    model_east, model_north
        Bias ``a + b * (col - col0) + c * (row - row0)`` over the node grid (row, col in nodes from the grid
        centre) as ``(a, b, c)``, metres along +x (east) and +y (north); zeros when none was removed.
    n_stable
        Stable nodes the fit used.
    sigma_east, sigma_north
        1-sigma uncertainty of the removed bias at the grid centre, metres (the job-level estimate's
        scatter; 0 for a pair's own fit, whose noise is in its stable-ground NMAD).
    """

    source: CoregSource
    model_east: tuple[float, float, float] = (0.0, 0.0, 0.0)
    model_north: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n_stable: int = 0
    sigma_east: float = 0.0
    sigma_north: float = 0.0

    def to_json(self) -> str:
        """The record written in the product (``geodeform_coregistration`` attribute)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PairCoregistration:
        """Read back :meth:`to_json`."""
        d = json.loads(text)
        return cls(
            d["source"],
            tuple(d["model_east"]),
            tuple(d["model_north"]),
            int(d["n_stable"]),
            float(d.get("sigma_east", 0.0)),
            float(d.get("sigma_north", 0.0)),
        )


@dataclass(frozen=True)
class Screened:
    """A matched field after the checks and the corrections, with their numbers.

    Attributes
    ----------
    field
        Offsets (px) with NaN and a reason code on every removed node.
    stable
        The stable-ground nodes used (None: none).
    nmad_x, nmad_y
        Spread of the corrected offsets on stable ground, m/yr (m without dates); NaN when not measured.
    rejected
        Share of the nodes removed by the credibility filters.
    coregistration
        What was removed, or ``pending``.
    degraded
        Why the pair's numbers are less reliable than the others' (empty when they are not).
    note
        Other remarks for the log and the report.
    """

    field: OffsetField
    stable: NDArray[np.bool_] | None
    nmad_x: float = float("nan")
    nmad_y: float = float("nan")
    rejected: float = float("nan")
    coregistration: PairCoregistration = PairCoregistration("none")
    degraded: str = ""
    note: str = ""


def _filter(
    field: OffsetField,
    c: CorrectionsConfig,
    expected_px: float | None,
    water: NDArray[np.bool_] | None,
) -> tuple[OffsetField, float]:
    """Water, then the credibility filters, each removal with its reason code; and the share removed."""
    if water is not None and water.shape == field.dx.shape:
        field = _reject(field, water, int(Reason.WATER))
    valid = int(field.valid.sum())
    if valid < 10:
        return field, float("nan")
    tol = c.consistency_px if expected_px is None else max(c.consistency_px, 0.1 * expected_px)
    filt = filter_outliers(
        field.dx,
        field.dy,
        pixel=1.0,
        quality=field.quality,
        min_quality=c.min_quality,
        error=field.error,
        max_error=c.max_error_px,
        max_speed=None if expected_px is None else expected_px + _SPEED_MARGIN_PX,
        n_mad=c.mad_threshold,
        ndc_tolerance=tol,
    )
    for name, mask in filt.reasons.items():
        field = _reject(field, mask, FILTER_REASONS[name])
    return field, float(filt.rejected_fraction)


def _map_model(
    coef: NDArray[np.float64] | None, linear: tuple[float, float, float, float]
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Pixel-frame bias coefficients (x: columns, y: rows) as metres east / north."""
    a, b, d, e = linear
    cx, cy = coef if coef is not None else (np.zeros(3), np.zeros(3))
    east = a * np.asarray(cx) + b * np.asarray(cy)
    north = d * np.asarray(cx) + e * np.asarray(cy)
    return tuple(float(v) for v in east), tuple(float(v) for v in north)  # type: ignore[return-value]


PLANE_MIN_SPAN = 0.5
"""Least share of the node grid's rows and of its columns the stable nodes must span for a plane fit."""


def plane_supported(stable: NDArray[np.bool_]) -> bool:
    """Whether stable nodes constrain a plane over the whole grid.

    A plane fitted on stable ground clustered in one corner (clouds over the rest) is extrapolated over the
    glacier: on a 5-day Perito Moreno pair, 31 stable nodes in a corner gave a ramp of several pixels that
    cut the trunk speeds to 0.63x the composite. Below :data:`PLANE_MIN_SPAN` of the rows or the columns
    (between the 5th and 95th percentiles of the stable nodes' positions), only a shift is removed.
    """
    rows, cols = np.nonzero(stable)
    if rows.size < 9:
        return False
    ny, nx = stable.shape
    span_r = np.subtract(*np.percentile(rows, [95, 5])) / max(ny - 1, 1)
    span_c = np.subtract(*np.percentile(cols, [95, 5])) / max(nx - 1, 1)
    return bool(span_r >= PLANE_MIN_SPAN and span_c >= PLANE_MIN_SPAN)


MAX_PLANE_RAMP_PX = 2.0
"""Largest credible ramp (pixels, 2nd to 98th percentile over the valid nodes) of a pair's co-registration
plane; a steeper one is taken for clouds over the stable ground and the pair takes the job-level estimate."""


def plane_ramp_px(cx: NDArray[np.floating], cy: NDArray[np.floating], valid: NDArray[np.bool_]) -> float:
    """Spread (pixels, 2nd to 98th percentile) of a co-registration correction over the valid nodes."""
    if not valid.any():
        return 0.0
    spans = [float(np.subtract(*np.percentile(c[valid], [98, 2]))) for c in (cx, cy)]
    return max(spans)


def screen_field(
    field: OffsetField,
    corrections: CorrectionsConfig | None,
    *,
    stable: NDArray[np.bool_] | None,
    water: NDArray[np.bool_] | None,
    expected_px: float | None,
    dates: AcquisitionDates | None,
    transform_linear: tuple[float, float, float, float],
    pixel_m: float,
) -> Screened:
    """Credibility filters and co-registration of one matched field (offsets in pixels).

    Parameters
    ----------
    field
        The matcher's result (with ``CLOUD`` already marked).
    corrections
        Thresholds and co-registration settings; None: the default filters, no co-registration;
        ``enabled=False``: raw offsets (only the water is removed).
    stable
        The job's stable ground at the nodes (glacier complement, DEM slopes, user mask), or None.
    water
        Water nodes (``WATER``), or None.
    expected_px
        Largest expected displacement of this pair, pixels (None: no speed test).
    dates
        Acquisition dates (the spreads are then in m/yr).
    transform_linear
        ``(a, b, d, e)`` of the image transform: pixel offsets to metres east / north.
    pixel_m
        Pixel size, metres.

    Raises
    ------
    NoDataError
        An automatic selection found fewer than 10 valid nodes.
    """
    if corrections is not None and not corrections.enabled:  # raw offsets asked for: only the water goes
        if water is not None and water.shape == field.dx.shape:
            field = _reject(field, water, int(Reason.WATER))
        return Screened(field, stable)
    c = corrections if corrections is not None else CorrectionsConfig()
    field, rejected = _filter(field, c, expected_px, water)
    if corrections is None or field.valid.sum() < 10:
        return Screened(field, stable, rejected=rejected)
    years = abs(dates.dt_days) / DAYS_PER_YEAR if dates is not None else 0.0
    scale = pixel_m / years if years > 0 else pixel_m
    if stable is None:
        source: CoregSource = "all" if c.reference == "all" else "auto"
        use = np.ones(field.dx.shape, dtype=bool) if c.reference == "all" else None
    else:
        source, use = "mask", stable
        n = int((stable & field.valid).sum())
        if n < c.min_stable:
            reason = (
                f"only {n} stable-ground nodes with data (need {c.min_stable}, clouds or a small mask): "
                "co-registration from the other pairs of these dates"
            )
            return Screened(field, stable, rejected=rejected, coregistration=PairCoregistration("pending"),
                            degraded=reason)  # fmt: skip
    stripes = {"track_angle_deg": c.track_angle_deg} if c.stripes else None
    no_filters: dict[str, Any] = {"median_size": None, "ndc_size": None}
    plane = c.plane and (use is None or plane_supported(use & field.valid))
    rep = correct_offsets(field.dx, field.dy, stable=use, plane=plane, stripes=stripes, filters=no_filters,
                          pixel=1.0, min_stable=c.min_stable)  # fmt: skip
    ramp = plane_ramp_px(field.dx - rep.dx, field.dy - rep.dy, field.valid) if plane else 0.0
    if source == "mask" and ramp > MAX_PLANE_RAMP_PX:
        n_used = int((use & field.valid).sum())
        reason = (
            f"the plane fitted on its {n_used} stable-ground nodes ramps {ramp:.1f} px "
            "across the grid (clouds or haze over the stable ground?): co-registration from the other pairs "
            "of these dates"
        )
        return Screened(field, stable, rejected=rejected, coregistration=PairCoregistration("pending"),
                        degraded=reason)  # fmt: skip
    co = rep.coregistration
    east, north = _map_model(np.vstack([co.model_x, co.model_y]) if co.model_y is not None else None,
                             transform_linear)  # fmt: skip
    record = PairCoregistration(source, east, north, co.n_stable)
    out = replace(field, dx=rep.dx.astype(np.float32), dy=rep.dy.astype(np.float32))
    return Screened(out, rep.stable, float(rep.after.nmad_x) * scale, float(rep.after.nmad_y) * scale,
                    rejected, record)  # fmt: skip
