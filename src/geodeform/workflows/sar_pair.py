"""One Sentinel-1 pair of the ``sar`` preset: read, co-register, match in radar geometry, correct, geocode.

A :class:`SarPairSpec` (plain data and paths, picklable for Dask / SLURM workers) goes in; the pair's
geocoded product (range / azimuth / line-of-sight metres, :mod:`geodeform.sar.products`) is written
atomically and a :class:`geodeform.workflows.PairOutcome` comes back. The product is keyed by a hash of its
inputs and settings, so a rerun reuses it.

Radar geometry: the reference is read on its window, the secondary on a window covering it and resampled onto
the reference's radar grid through both products' GCPs (:func:`geodeform.sar.onto_reference`); offsets are
then measured by :func:`geodeform.sar.match_amplitude` (+dx towards far range, +dy along the flight),
cleaned on stable ground in pixels (:func:`geodeform.corrections.correct_offsets`), converted to metres
(:func:`geodeform.sar.radar_offsets`) and geocoded (:func:`geodeform.sar.sar_dataset`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geodeform.config import CorrectionsConfig, SarConfig
from geodeform.conventions import DAYS_PER_YEAR, ProductFormat
from geodeform.corrections import correct_offsets
from geodeform.errors import GeodeformError
from geodeform.io import AcquisitionDates, GeoGrid, write_stac_item
from geodeform.offsets import OffsetField
from geodeform.sar import (
    S1Image,
    check_pair,
    match_amplitude,
    onto_reference,
    open_s1,
    radar_offsets,
    sar_dataset,
    write_sar_product,
)
from geodeform.workflows.pair import PairOutcome, read_stored_pair

__all__ = ["SarPairSpec", "SarScene", "open_scene", "process_sar_pair"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SarScene:
    """One Sentinel-1 acquisition of a ``sar`` job.

    Attributes
    ----------
    id
        Product name (SAFE folder or measurement file name).
    date
        Acquisition date (``YYYY-MM-DD``); ``start`` is the full first-line time (UTC).
    orbit
        Relative orbit (track).
    pass_direction
        ``"ascending"`` or ``"descending"``.
    path
        SAFE folder or measurement file (a local path, or a GDAL path such as ``/vsicurl/...``).
    annotation, calibration, noise
        Explicit metadata files (when not in the SAFE layout next to the measurement), else None.
    window
        ``(row0, col0, rows, cols)`` of the measurement read (covers the job's map grid plus a margin).
    pixel_m
        Smallest pixel spacing (range, azimuth), metres.
    heading, incidence
        Flight direction and incidence at the window's centre, degrees.
    mission, product_type, mode
        E.g. ``"S1A"``, ``"GRD"``, ``"IW"``.
    """

    id: str
    date: str
    start: str
    orbit: int
    pass_direction: str
    path: str
    annotation: str | None
    calibration: str | None
    noise: str | None
    window: tuple[int, int, int, int]
    pixel_m: float
    heading: float
    incidence: float
    mission: str
    product_type: str
    mode: str


def open_scene(
    scene: SarScene, sar: SarConfig, *, window: tuple[int, int, int, int] | None = None
) -> S1Image:
    """Read a scene's window (or ``window``) with the job's polarisation and radiometry."""
    return open_s1(
        scene.path,
        polarisation=sar.polarisation,
        annotation=scene.annotation,
        calibration=scene.calibration,
        noise=scene.noise,
        radiometry=sar.radiometry,
        denoise=sar.denoise,
        window=scene.window if window is None else window,
    )


@dataclass(frozen=True, kw_only=True)
class SarPairSpec:
    """Everything one Sentinel-1 pair needs (keyword-built, picklable).

    Attributes
    ----------
    index
        Position in the job's network.
    reference, secondary
        The two scenes (one relative orbit).
    sar
        The job's SAR options (polarisation, radiometry, speckle, geocoding).
    method, chip_size, step, search_range
        Matcher settings in radar pixels of the reference.
    corrections
        Filters and co-registration on stable ground (in radar pixels), or None.
    grid
        The job's map grid (every pair and track is geocoded onto it).
    dem
        Heights for terrain-corrected geocoding (metres above the ellipsoid), or None.
    outputs
        Files to write by format; the first is the pair's product.
    stac
        Also write a STAC item of the first output.
    key
        Hash of everything the product depends on (reuse on rerun), or None.
    attributes
        Extra ``geodeform_<key>`` attributes of the product.
    """

    index: int
    reference: SarScene
    secondary: SarScene
    sar: SarConfig
    method: Literal["ncc", "phase", "flow"] = "ncc"
    chip_size: int = 64
    step: int = 32
    search_range: int = 4
    corrections: CorrectionsConfig | None = None
    grid: GeoGrid
    dem: str | None = None
    outputs: dict[ProductFormat, str] = field(default_factory=dict)
    stac: bool = False
    key: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def _dates(spec: SarPairSpec) -> AcquisitionDates:
    def utc(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)

    return AcquisitionDates(utc(spec.reference.start), utc(spec.secondary.start))


def _labels(spec: SarPairSpec) -> dict[str, Any]:
    return {
        "index": spec.index,
        "reference": spec.reference.date,
        "secondary": spec.secondary.date,
        "dt_days": _dates(spec).dt_days,
        "path": str(next(iter(spec.outputs.values()))),
        "search_range": int(spec.search_range),
    }


def _reused(spec: SarPairSpec) -> PairOutcome | None:
    stored = read_stored_pair(Path(spec.outputs.get("netcdf", "")), spec.key)
    if stored is None:
        return None
    return PairOutcome(**_labels(spec), status="ok", computed=False, **stored.stats)


def _correct(spec: SarPairSpec, f: OffsetField) -> tuple[OffsetField, dict[str, float]]:
    """Filters and co-registration in radar pixels; NMADs on stable ground in m/yr (range, azimuth).

    The offsets are in radar pixels, so the filters' thresholds in pixels apply unscaled (``pixel=1``;
    ``correct_offsets`` refuses plain arrays without it rather than estimate it from the map's scatter)."""
    c = spec.corrections
    nan = {"nmad_x": float("nan"), "nmad_y": float("nan"), "rejected": float("nan")}
    finite = np.isfinite(f.dx) & np.isfinite(f.dy)
    if c is None or not c.enabled or finite.sum() < 10:
        return f, nan
    stable = np.ones(f.dx.shape, dtype=bool) if c.reference == "all" else None
    rep = correct_offsets(
        f.dx,
        f.dy,
        stable=stable,
        plane=c.plane,
        filters={"quality": f.quality, "min_quality": c.min_quality, "n_mad": c.mad_threshold},
        pixel=1.0,  # radar offsets are in pixels: the filters' pixel thresholds apply as they are
    )
    years = max(abs(_dates(spec).dt_days), 1e-9) / DAYS_PER_YEAR
    spacing = spec.reference.pixel_m
    stats = {
        "nmad_x": float(rep.after.nmad_x) * spacing / years,
        "nmad_y": float(rep.after.nmad_y) * spacing / years,
        "rejected": float(rep.filtering.rejected_fraction),
    }
    return replace(f, dx=rep.dx.astype(np.float32), dy=rep.dy.astype(np.float32)), stats


def _match(spec: SarPairSpec, ref: S1Image, sec: S1Image) -> tuple[OffsetField, str]:
    resampled = onto_reference(sec, ref)
    note = f"secondary resampled onto the reference grid (up to {resampled.max_shift:.1f} px)"
    s = spec.sar
    f = match_amplitude(
        ref.data,
        resampled.data,
        values="amplitude" if ref.radiometry == "dn" else "intensity",
        method=spec.method,
        chip_size=spec.chip_size,
        step=spec.step,
        search_range=spec.search_range,
        speckle_filter=s.speckle_filter,
        filter_size=s.filter_size,
        looks=s.looks,
        threads=1,
    )
    return f, note if resampled.resampled else ""


def process_sar_pair(spec: SarPairSpec) -> PairOutcome:
    """Read, co-register, match, correct, geocode and write one Sentinel-1 pair (on a worker).

    Returns
    -------
    PairOutcome
        ``"ok"`` with the product written; ``"failed"`` with the reason when the matching or the corrections
        fail or no node is valid (nothing written). ``stable_nmad_x`` / ``stable_nmad_y`` are the spread of
        the range / azimuth offsets on stable ground, m/yr.

    Raises
    ------
    SarProductError, IncompatiblePairError
        Unreadable products, or two products that cannot be matched in radar geometry.
    """
    reused = _reused(spec)
    if reused is not None:
        return reused
    t0 = time.perf_counter()
    labels = _labels(spec)
    ref = open_scene(spec.reference, spec.sar)
    sec = open_scene(spec.secondary, spec.sar)
    check_pair(ref, sec, same_size=False)
    try:
        raw, note = _match(spec, ref, sec)
        field_, stats = _correct(spec, raw)
    except GeodeformError as exc:
        return PairOutcome(**labels, status="failed", message=f"matching: {exc}")
    offsets = radar_offsets(field_, ref)
    ds = sar_dataset(
        offsets,
        ref,
        grid=spec.grid,
        dem=spec.dem,
        method=spec.sar.geocoding,
        dates=_dates(spec),
        secondary=sec,
    )
    coverage = float(np.isfinite(ds["los"].values).mean())
    if coverage == 0:
        counts = ", ".join(f"{k} {v}" for k, v in field_.reason_counts().items())
        return PairOutcome(**labels, status="failed", message=f"no valid node ({counts})")
    outcome = {
        "coverage": coverage,
        "stable_nmad_x": stats["nmad_x"],
        "stable_nmad_y": stats["nmad_y"],
        "rejected": stats["rejected"],
        "seconds": time.perf_counter() - t0,
        "message": note,
    }
    ds.attrs.update({f"geodeform_{k}": v for k, v in spec.attributes.items()})
    ds.attrs["geodeform_matching"] = json.dumps(
        {
            "method": spec.method,
            "chip_size": spec.chip_size,
            "step": spec.step,
            "search_range": spec.search_range,
            **field_.params,
        },
        default=str,
    )
    ds.attrs["geodeform_radar_window"] = json.dumps(list(spec.reference.window))
    if spec.key is not None:
        ds.attrs["geodeform_pair_key"] = spec.key
    ds.attrs["geodeform_pair_stats"] = json.dumps(outcome)
    files = [str(write_sar_product(ds, path)) for path in spec.outputs.values()]
    if spec.stac:
        files.append(str(write_stac_item(ds, files[0])))
    return PairOutcome(**labels, status="ok", **outcome, files=tuple(files))
