"""One image pair, end to end: read, reproject onto the reference grid, match, correct, write the products.

This is the one chain behind ``geodeform offsets``, the service's ``offsets`` process and every pair of a
job (``geodeform run``): a :class:`PairSpec` (plain data and paths, frozen and picklable, so it travels to
Dask / SLURM workers) goes in, files are written atomically, and a :class:`PairOutcome` comes back.

Sign convention: products are in metres and m/yr with +x east (increasing map x) and +y north (increasing map
y), from the reference to the secondary image.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import h5netcdf
import numpy as np
import xarray as xr
from numpy.typing import NDArray

from geodeform.config import CorrectionsConfig
from geodeform.conventions import DAYS_PER_YEAR, ProductFormat
from geodeform.errors import GeodeformError, InvalidInputError
from geodeform.io import (
    AcquisitionDates,
    GeoGrid,
    ProductSummary,
    fill_values,
    offset_dataset,
    pair_dates,
    read_pair,
    summarize_product,
    write_product,
    write_stac_item,
)
from geodeform.offsets import OffsetField, Reason, match, reason_codes
from geodeform.timeseries import stable_noise_scale
from geodeform.workflows.screening import (
    PairCoregistration,
    Screened,
    image_masks,
    mark_cloud_nodes,
    screen_field,
)

__all__ = [
    "ErrorPolicy",
    "PairOutcome",
    "PairProgress",
    "PairSpec",
    "StoredPair",
    "failed_product_path",
    "process_pair",
    "read_stored_pair",
]

log = logging.getLogger(__name__)

ErrorPolicy = Literal["raise", "record"]
"""What :func:`process_pair` does with a pair that cannot be measured (see :attr:`PairSpec.errors`)."""

PairProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages ``read``, ``match`` (per strip of the matcher; first ``(0, 0)``)
and ``write``."""

_STATS = (
    "coverage",
    "stable_nmad_x",
    "stable_nmad_y",
    "noise_scale",
    "rejected",
    "seconds",
    "message",
    "degraded",
)


@dataclass(frozen=True, kw_only=True)
class PairSpec:
    """Everything one pair needs: inputs, matcher settings, corrections and outputs (keyword-built).

    Attributes
    ----------
    reference, secondary
        Georeferenced rasters; the secondary is warped onto the reference grid when the grids differ.
    outputs
        Product files to write, by format (``{"netcdf": "pair.nc", "cog": "pair.tif"}``); the first one is
        the pair's product (:attr:`PairOutcome.path`).
    stac
        Also write a STAC item describing the first output (``<its name without suffix>.stac.json``).
    band
        1-based band read from both rasters.
    dates
        Acquisition dates, or the text ``"REF,SEC"`` (as ``--dates``); None: from the rasters' tags or file
        names (without them, only displacements are written).
    reference_name, secondary_name
        Names recorded in the product (default: the file names), e.g. scene ids.
    method, chip_size, step, search_range, prefilter
        Matcher settings (:func:`geodeform.offsets.match`): chip and step in reference pixels; search range
        ± pixels, one value or one per node.
    options
        More keyword options of the matcher (e.g. ``{"two_motion_px": 0.1}``, see
        :class:`geodeform.offsets.ncc.NccOptions`).
    nodata
        Pixel value to ignore in both rasters; default: their declared nodata, plus 0 and the dtype maximum of
        integer rasters without one (:func:`geodeform.io.fill_values`).
    threads, strip_rows
        Matcher threads (default: every core numba sees) and image rows per strip (progress granularity).
    corrections
        Outlier filters and co-registration on stable ground (:func:`geodeform.corrections.correct_offsets`);
        None: the default credibility filters only (:mod:`geodeform.workflows.screening`), no co-registration.
    stable
        Stable-ground mask at the nodes (True = static terrain) for the corrections and the error estimate;
        None: ``corrections.reference`` decides (the dominant offset, or every node). With a mask, a pair
        with fewer than ``corrections.min_stable`` stable nodes is left for the job-level estimate
        (``geodeform_coregistration`` source ``pending``) and marked degraded.
    masks
        Cloud / no-data mask of each image: a path (SCL, QA_PIXEL, a raster with 1 = masked, polygons),
        ``"none"``, or None to use the scene's own SCL / QA_PIXEL when it sits next to the band.
    water
        Water nodes (lakes, fjords), left out with the reason ``WATER``; None: none.
    expected_speed, expected_displacement
        Largest expected speed (m/yr) and displacement regardless of time (m): nodes moving more, by one
        pixel of matching noise, are removed (``SPEED``). None: no speed test.
    attributes
        Extra settings recorded as ``geodeform_<key>`` product attributes (e.g. the job's preset).
    key
        Hash of everything the product depends on: a NetCDF output already written with this key is reused
        (the pair is not recomputed), so reruns resume. None: always compute.
    index
        Position of the pair in a job's network (copied to the outcome).
    rows
        Only these reference rows ``(first, stop)``: a strip of the pair (resource probes), None = all.
    errors
        ``"raise"``: bad inputs and matching errors propagate, and a product without any valid node is still
        written (one-pair commands). ``"record"``: matching or correction errors and an empty result give a
        failed outcome naming the reason, nothing is written (jobs: one bad pair must not stop the others).
    """

    reference: str
    secondary: str
    outputs: Mapping[ProductFormat, str]
    stac: bool = False
    band: int = 1
    dates: AcquisitionDates | str | None = None
    reference_name: str | None = None
    secondary_name: str | None = None
    method: Literal["ncc", "phase", "flow"] = "ncc"
    chip_size: int = 32
    step: int = 16
    search_range: int | NDArray[np.int64] = field(default=16, compare=False)
    prefilter: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    nodata: float | None = None
    threads: int | None = None
    strip_rows: int = 1024
    corrections: CorrectionsConfig | None = None
    stable: NDArray[np.bool_] | None = field(default=None, compare=False)
    masks: tuple[str | None, str | None] = (None, None)
    water: NDArray[np.bool_] | None = field(default=None, compare=False)
    expected_speed: float | None = None
    expected_displacement: float = 0.0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    index: int = 0
    rows: tuple[int, int] | None = None
    errors: ErrorPolicy = "raise"


@dataclass(frozen=True)
class PairOutcome:
    """What happened to one pair (its numbers are also stored in the product, so a rerun can reuse it).

    Attributes
    ----------
    index
        :attr:`PairSpec.index`.
    reference, secondary
        Acquisition dates (``YYYY-MM-DD``) when known, else the image names.
    dt_days
        Secondary minus reference, days (NaN when the dates are unknown).
    status
        ``"ok"`` or ``"failed"`` (then ``message`` says why and nothing was written).
    path
        The pair's product (first output).
    computed
        False when an existing product with the same key was reused.
    coverage
        Share of nodes with a valid vector in the product.
    stable_nmad_x, stable_nmad_y
        Spread (NMAD) of the corrected offsets on stable ground, m/yr (m without dates); NaN without
        corrections.
    noise_scale
        Spread of the offsets on stable ground over the matcher's predicted error
        (:func:`geodeform.timeseries.stable_noise_scale`); NaN without a stable-ground mask, enough stable
        nodes or a predicted error.
    rejected
        Share of nodes removed by the outlier filters (NaN without corrections).
    search_range
        Largest search radius used, pixels.
    seconds
        Time spent on the pair (reading, matching, corrections, writing).
    message
        Why the pair failed, or a note (e.g. an unusable stable-ground mask).
    files
        Every file written (products and STAC item).
    dates_source
        Where the dates came from (:class:`geodeform.io.PairDates`); empty for a reused product.
    reprojected
        Whether the secondary was warped onto the reference grid.
    summary
        Headline numbers of the product (None when failed or reused).
    stage_seconds
        Where the pair's time went: ``read``, ``match``, ``correct``, ``product`` (building the Dataset),
        ``write``, seconds (empty for a reused product).
    degraded
        Why the pair's numbers are less reliable than the others' (e.g. co-registration taken from the
        other pairs of its dates); empty when they are not. Also in the product, its STAC item and the report.
    coregistration
        Where its co-registration came from (:data:`geodeform.workflows.screening.CoregSource`).
    """

    index: int
    reference: str
    secondary: str
    dt_days: float
    status: Literal["ok", "failed"]
    path: str = ""
    computed: bool = True
    coverage: float = float("nan")
    stable_nmad_x: float = float("nan")
    stable_nmad_y: float = float("nan")
    noise_scale: float = float("nan")
    rejected: float = float("nan")
    search_range: int = 0
    seconds: float = 0.0
    message: str = ""
    files: tuple[str, ...] = ()
    dates_source: str = ""
    reprojected: bool = False
    summary: ProductSummary | None = None
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    degraded: str = ""
    coregistration: str = "none"


def _labels(spec: PairSpec, dates: AcquisitionDates | None) -> dict[str, Any]:
    """The outcome fields every status shares: index, dates (or names), span, path, search range."""
    if dates is not None:
        ref, sec, dt = dates.reference.date().isoformat(), dates.secondary.date().isoformat(), dates.dt_days
    else:
        ref = spec.reference_name or Path(spec.reference).name
        sec = spec.secondary_name or Path(spec.secondary).name
        dt = float("nan")
    return {
        "index": spec.index,
        "reference": ref,
        "secondary": sec,
        "dt_days": dt,
        "path": str(next(iter(spec.outputs.values()))),
        "search_range": int(np.max(spec.search_range)),
    }


def failed_product_path(path: str | Path) -> Path:
    """Where a pair product that a job could not use is set aside: ``<folder>/failed/<name>``.

    A pair left ``pending`` (too little stable ground) that no co-registered pair links to the others is
    moved there, marked failed with the reason (:func:`geodeform.workflows.stable.coregister_pending`), so
    that no product in the pairs folder looks finished while it is not; a rerun finds it there (it is not
    recomputed) and tries the job-level co-registration again.
    """
    path = Path(path)
    return path.parent / "failed" / path.name


class StoredPair(NamedTuple):
    """What a finished pair product records of its run (read back to reuse it)."""

    stats: dict[str, Any]
    """The :class:`PairOutcome` statistics (``geodeform_pair_stats``)."""
    coregistration: str | None
    """The JSON of its :class:`~geodeform.workflows.screening.PairCoregistration`, if it has one."""


def read_stored_pair(out: Path, key: str | None) -> StoredPair | None:
    """The record of the NetCDF pair product ``out`` when it was written with ``key``; None when there is no
    key or no such file, when it was written with another key, or when it cannot be read (logged: the caller
    recomputes the pair)."""
    if key is None or not out.is_file():
        return None
    try:
        # The file's global attributes only, through h5netcdf: xarray would decode every variable and build
        # its indexes first (about 20 times the CPU, paid for each pair of a resumed job, twice).
        with h5netcdf.File(out, "r") as nc:
            if nc.attrs.get("geodeform_pair_key") != key:
                return None
            stats = json.loads(nc.attrs["geodeform_pair_stats"])
            record = nc.attrs.get("geodeform_coregistration")
    except (OSError, ValueError, KeyError) as exc:
        log.warning("pair product %s unreadable (%s); recomputing", out, exc)
        return None
    return StoredPair(stats, record)


def _reused(spec: PairSpec) -> PairOutcome | None:
    """The outcome stored in an existing NetCDF product written with ``spec.key``, else None (a product set
    aside as failed comes back ``pending``: the job tries its co-registration again)."""
    out = Path(spec.outputs.get("netcdf", ""))
    if spec.key is not None and not out.is_file() and failed_product_path(out).is_file():
        out = failed_product_path(out)
    stored = read_stored_pair(out, spec.key)
    if stored is None:
        return None
    try:
        record = stored.coregistration
        source = PairCoregistration.from_json(record).source if record else "none"
    except (ValueError, KeyError) as exc:
        log.warning("pair product %s unreadable (%s); recomputing", out, exc)
        return None
    dates = spec.dates if isinstance(spec.dates, AcquisitionDates) else None
    labels = _labels(spec, dates)
    return PairOutcome(**labels, status="ok", computed=False, coregistration=source, **stored.stats)


def _expected_px(spec: PairSpec, dates: AcquisitionDates | None, pixel_m: float) -> float | None:
    """Largest expected displacement of the pair in pixels, or None without an expected speed or dates."""
    if spec.expected_speed is None or dates is None:
        return None
    metres = spec.expected_speed * abs(dates.dt_days) / DAYS_PER_YEAR + spec.expected_displacement
    return metres / pixel_m


def unobserved_nodes(
    field_: OffsetField,
    reference: NDArray[np.floating[Any]],
    secondary: NDArray[np.floating[Any]],
    fills: tuple[float, ...] = (),
) -> OffsetField:
    """Set to NaN (reason ``MASKED``) the nodes whose own pixel has no data in the reference, or in the
    secondary where the match lands.

    The matcher measures a node from the valid part of its chip, so a node inside a Landsat 7 scan-line gap
    or a no-data stripe would get a value interpolated from the texture around it, not observed there.

    Parameters
    ----------
    field_
        The matcher's result on ``reference`` / ``secondary``'s pixel grid.
    reference, secondary
        The matched images (NaN = no data).
    fills
        Pixel values that also mean no data (see :func:`geodeform.io.fill_values`).
    """
    h, w = reference.shape

    def missing(
        image: NDArray[np.floating[Any]], r: NDArray[np.float64], c: NDArray[np.float64]
    ) -> NDArray[np.bool_]:
        # The pixels around (r, c): the centre of an even chip lies between four of them.
        out = np.zeros(np.broadcast_shapes(r.shape, c.shape), dtype=bool)
        for rr in (np.floor(r), np.ceil(r)):
            for cc in (np.floor(c), np.ceil(c)):
                values = image[np.clip(rr, 0, h - 1).astype(np.int64), np.clip(cc, 0, w - 1).astype(np.int64)]
                out |= ~np.isfinite(values) | np.isin(values, fills)
        return out

    valid = field_.valid
    rows, cols = np.broadcast_arrays(field_.rows[:, None], field_.cols[None, :])
    r2, c2 = rows + np.nan_to_num(field_.dy), cols + np.nan_to_num(field_.dx)
    drop = valid & (missing(reference, rows, cols) | missing(secondary, r2, c2))
    if not drop.any():
        return field_
    nan = np.float32(np.nan)
    return replace(
        field_,
        dx=np.where(drop, nan, field_.dx),
        dy=np.where(drop, nan, field_.dy),
        quality=np.where(drop, np.float32(0), field_.quality),
        reason=np.where(drop, np.uint8(Reason.MASKED), field_.reason).astype(np.uint8),
        error=None if field_.error is None else np.where(drop, nan, field_.error),
    )


def _processing(spec: PairSpec, field_: OffsetField) -> dict[str, Any]:
    """Settings recorded in the product: those asked for, overridden by the matcher's resolved ones."""
    out: dict[str, Any] = {
        "method": spec.method,
        "chip_size": spec.chip_size,
        "step": spec.step,
        "search_range": int(np.max(spec.search_range)),
    }
    out.update(field_.params)  # the matcher's full, resolved settings win
    out["band"] = spec.band
    out.update(spec.attributes)
    return out


def _noise_scale(field_: OffsetField, stable: NDArray[np.bool_] | None) -> float:
    """The matcher's error calibration on the pair's stable ground (NaN without mask or error)."""
    if stable is None or field_.error is None or stable.shape != field_.dx.shape:
        return float("nan")
    one = (field_.dx[None], field_.dy[None], np.asarray(field_.error, np.float64)[None])
    return float(stable_noise_scale(*one, stable)[0])


def _pair_attrs(
    spec: PairSpec, stats: dict[str, Any], corrected: Any, sources: tuple[str, str], coverage_raw: float
) -> dict[str, Any]:
    """The pair product's geodeform attributes: key, statistics, co-registration, degradation, masks."""
    attrs: dict[str, Any] = {} if spec.key is None else {"geodeform_pair_key": spec.key}
    attrs["geodeform_pair_stats"] = json.dumps(stats)
    attrs["geodeform_coregistration"] = corrected.coregistration.to_json()
    attrs["geodeform_degraded"] = corrected.degraded
    attrs["geodeform_masks"] = "; ".join(
        f"{k}: {v}" for k, v in zip(("reference", "secondary"), sources, strict=True)
    )
    attrs["geodeform_coverage_before_filters"] = coverage_raw
    return attrs


def _screen(
    spec: PairSpec,
    field_: OffsetField,
    cloud: NDArray[np.bool_] | None,
    dates: AcquisitionDates | None,
    grid: GeoGrid,
) -> Screened:
    """Filters, reasons, co-registration of the pair (:func:`~geodeform.workflows.screening.screen_field`)."""
    t = grid.transform
    pixel_m = float(np.sqrt(abs(t.a * t.e - t.b * t.d)))
    return screen_field(
        mark_cloud_nodes(field_, cloud, spec.chip_size),
        spec.corrections,
        stable=spec.stable,
        water=spec.water,
        expected_px=_expected_px(spec, dates, pixel_m),
        dates=dates,
        transform_linear=(t.a, t.b, t.d, t.e),
        pixel_m=pixel_m,
    )


def process_pair(spec: PairSpec, *, progress: PairProgress | None = None) -> PairOutcome:
    """Read, reproject, match, correct and write one pair (also on a worker: ``spec`` is picklable).

    Parameters
    ----------
    spec
        The pair and its settings.
    progress
        ``progress(stage, done, total)`` (:data:`PairProgress`); not part of the spec, so that the spec
        stays picklable.

    Returns
    -------
    PairOutcome
        ``status == "ok"`` with the files written, or (``errors="record"``) ``"failed"`` with the reason.

    Raises
    ------
    DataError, NoOverlapError, InvalidInputError
        Unreadable, non-georeferenced or disjoint rasters, bad dates (or, with ``errors="raise"``, bad
        matcher settings): whatever the policy, since no pair of such inputs can be measured.
    """
    if not spec.outputs:
        raise InvalidInputError("a pair needs at least one output file, e.g. outputs={'netcdf': 'pair.nc'}")
    reused = _reused(spec)
    if reused is not None:
        return reused
    t0 = time.perf_counter()
    if progress:
        progress("read", 0, 1)
    clock = _Clock()
    pair = read_pair(spec.reference, spec.secondary, band=spec.band, rows=spec.rows)
    clock.lap("read")
    dates, dates_source = pair_dates(pair, spec.dates)
    if dates is not None:
        dates.check_order()  # before the long matching, not after
    labels = _labels(spec, dates)
    if progress:
        progress("match", 0, 0)
    grid: GeoGrid = pair.reference.grid
    masks = image_masks(spec.reference, spec.secondary, spec.masks, grid)
    try:
        field_ = match(
            pair.reference.data,
            pair.secondary.data,
            mask=masks.reference,
            secondary_mask=masks.secondary,
            method=spec.method,
            chip_size=spec.chip_size,
            step=spec.step,
            search_range=spec.search_range,
            fill_values=fill_values(pair, spec.nodata),
            prefilter=spec.prefilter,
            threads=spec.threads,
            strip_rows=spec.strip_rows,
            progress=(lambda done, total: progress("match", done, total)) if progress else None,
            **spec.options,
        )
    except GeodeformError as exc:
        if spec.errors == "raise":
            raise
        return PairOutcome(**labels, status="failed", message=f"matching: {exc}")
    field_ = unobserved_nodes(
        field_, pair.reference.data, pair.secondary.data, fill_values(pair, spec.nodata)
    )
    clock.lap("match")
    coverage_raw = field_.coverage
    try:
        corrected = _screen(spec, field_, masks.union, dates, grid)
    except GeodeformError as exc:
        if spec.errors == "raise":
            raise
        return PairOutcome(**labels, status="failed", message=f"corrections: {exc}")
    clock.lap("correct")
    if corrected.degraded and spec.rows is None:  # a probe's strip is not the pair: its verdict is not shown
        log.warning("pair %s -> %s: %s", spec.reference, spec.secondary, corrected.degraded)
    ds = offset_dataset(
        corrected.field,  # type: ignore[arg-type]  # the io Protocol declares settable attributes; ours is frozen
        grid,
        dates=dates,
        reference=spec.reference_name or spec.reference,
        secondary=spec.secondary_name or spec.secondary,
        stable_mask=corrected.stable,
        step=spec.step,
        processing=_processing(spec, field_),
        reason_codes=reason_codes(),
    )
    coverage = float((np.isfinite(ds["dx"].values) & np.isfinite(ds["dy"].values)).mean())
    if coverage == 0 and spec.errors == "record":
        counts = ", ".join(f"{k} {v}" for k, v in corrected.field.reason_counts().items())
        return PairOutcome(**labels, status="failed", message=f"no valid node ({counts})")
    stats: dict[str, Any] = {
        "coverage": coverage,
        "stable_nmad_x": corrected.nmad_x,
        "stable_nmad_y": corrected.nmad_y,
        "noise_scale": _noise_scale(corrected.field, corrected.stable),
        "rejected": corrected.rejected,
        "seconds": time.perf_counter() - t0,
        "message": corrected.note,
        "degraded": corrected.degraded,
    }
    ds.attrs.update(_pair_attrs(spec, stats, corrected, masks.sources, coverage_raw))
    summary = summarize_product(ds)
    clock.lap("product")
    files = _write(spec, ds, progress)
    clock.lap("write")
    return PairOutcome(
        **labels,
        status="ok",
        **stats,
        files=files,
        dates_source=dates_source,
        reprojected=pair.reprojected,
        summary=summary,
        stage_seconds=dict(clock.laps),
        coregistration=corrected.coregistration.source,
    )


class _Clock:
    """Seconds spent in each stage of one pair (``lap(name)`` closes the stage that just ended)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


def _write(spec: PairSpec, ds: xr.Dataset, progress: PairProgress | None = None) -> tuple[str, ...]:
    """Every output of ``spec`` (atomic writers), then the STAC item of the first one."""
    if progress:
        progress("write", 0, 1)
    written = [str(write_product(ds, path, fmt)) for fmt, path in spec.outputs.items()]
    if spec.stac:
        written.append(str(write_stac_item(ds, written[0])))
    if progress:
        progress("write", 1, 1)
    return tuple(written)
