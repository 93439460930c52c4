"""``geodeform run`` with ``preset: quake``: co-seismic offsets of every tile, one mosaic, the rupture trace
and the slip along it.

1. **Plan** (:func:`~geodeform.workflows.quake_plan.plan_quake`, before anything is written): the tiles
   and, in each tile and orbit, the acquisitions around ``quake.event_date``; the user's trace is checked.
2. **Read** each tile on its own grid (its own UTM zone), **match** every pre x post pair with the fault
   settings (:data:`geodeform.quake.FAULT_MATCHING`: ncc, chip 24, step 8, ``two_motion_px``) on the job's
   executor (Dask LocalCluster, SLURM or this process), one shift fitted on every node (a constant, so the
   slip is kept).
3. **Stack** the pairs of each tile and orbit node by node (median), **mosaic** all tiles onto one grid
   (``quake.crs`` or the UTM zone of the centre; vectors turned into its axes, biases adjusted in the
   overlaps, overlaps feathered), map the **trace** (``quake.trace`` or detected), remove **stripes and
   jitter** along the track against a smooth model on each side of the trace, mosaic again (and detect
   again), and measure the **slip profiles**.

Run folder (besides ``config.yaml``, ``run.log``, ``report.html`` and ``catalog.json``):

``<run>/tiles/<tile>/images|pairs``          the tile's images on its grid and its pair products
``<run>/tiles/<tile>/coseismic[_o<orbit>].nc`` the stacked, corrected field of the tile (and orbit)
``<run>/offsets.nc|.tif``                    the mosaic: ``dx``/``dy`` metres east/north, ``count``
``<run>/trace.geojson``                      the trace (lon/lat LineString)
``<run>/profiles.csv``, ``<run>/slip.png``     slip along strike (+ right-lateral, + opening)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr

from geodeform.config import JobConfig
from geodeform.errors import GeodeformError
from geodeform.io import write_catalog, write_cog, write_netcdf, write_stac_item
from geodeform.quake import (
    Mosaic,
    NoRuptureError,
    SlipProfiles,
    write_profiles_csv,
    write_trace_geojson,
)
from geodeform.workflows._timing import log_runtime
from geodeform.workflows.pair import PairOutcome, PairSpec
from geodeform.workflows.preflight import ResourceEstimate, estimate_resources, human_time, preflight
from geodeform.workflows.products import RunResult, StageProgress, all_failed, pair_summaries
from geodeform.workflows.quake_plan import QuakePlan, QuakeTile, plan_quake, read_tile, tile_pairs
from geodeform.workflows.quake_products import (
    CoseismicField,
    locate_trace,
    measure_slip,
    mosaic_fields,
    remove_track_artefacts,
    stack_pairs,
    trace_on_grid,
    write_field,
)
from geodeform.workflows.quake_report import quake_section, slip_summary
from geodeform.workflows.report import ReportInputs, write_report

__all__ = ["PairMatcher", "QuakeResult", "plan_quake", "run_quake"]

log = logging.getLogger("geodeform.workflows")

F64 = npt.NDArray[np.float64]

PairMatcher = Callable[[list[PairSpec]], list[PairOutcome]]
"""Matches pair specs on the job's executor, returns the outcomes in order (``run_job`` passes its own)."""


@dataclass
class QuakeResult(RunResult):
    """A finished quake run: :class:`~geodeform.workflows.products.RunResult` (``stack`` is the first
    tile's) with the tiles, their stacked fields, the mosaic, the trace and the slip profiles."""

    tiles: list[QuakeTile] = field(default_factory=list)
    fields: list[CoseismicField] = field(default_factory=list)
    mosaic: Mosaic | None = None
    trace: F64 | None = None
    trace_source: str = ""
    profiles: SlipProfiles | None = None


@log_runtime("read")
def _read_tiles(
    plan: QuakePlan, out: Path, progress: StageProgress | None, cache_dir: Path | None
) -> list[QuakeTile]:
    config = plan.config
    total = sum(len(t.inputs) or len(t.chosen) for t in plan.tiles)
    tiles, done = [], 0
    for source in plan.tiles:

        def step(k: int, n: int, before: int = done) -> None:
            if progress:
                progress("read", before + k, total)

        stack = read_tile(config, source, out, progress=step, cache_dir=cache_dir)
        done += len(stack.acquisitions)
        for note in stack.notes:
            log.info("tile %s: %s", source.name, note)
        tile = tile_pairs(config, source.name, stack, out)
        for warning in preflight(config, stack, tile.network):
            log.warning("tile %s: %s", source.name, warning)
        log.info(
            "tile %s: %d images on a %d x %d grid (%s), %d pre x post pairs",
            source.name,
            len(stack.acquisitions),
            *stack.grid.shape,
            stack.grid.crs.to_string(),
            len(tile.network),
        )
        tiles.append(tile)
    return tiles


def _estimate(config: JobConfig, tiles: list[QuakeTile], workers: int) -> ResourceEstimate:
    parts = [estimate_resources(config, t.stack, len(t.network), workers) for t in tiles]
    return ResourceEstimate(
        sum(p.pairs for p in parts),
        max(p.nodes_per_pair for p in parts),
        sum(p.seconds for p in parts),
        max(p.peak_memory_bytes for p in parts),
        sum(p.disk_bytes for p in parts),
        workers,
    )


@log_runtime("stack")
def _stack(config: JobConfig, tiles: list[QuakeTile], outcomes: list[PairOutcome]) -> list[CoseismicField]:
    """One field per tile and orbit from its ok pairs (``outcomes`` in the order of the tiles' specs)."""
    q = config.quake
    assert q is not None
    fields, k = [], 0
    for tile in tiles:
        groups: dict[int | None, list[str]] = {}
        for i, _ in tile.network.pairs:
            outcome = outcomes[k]
            k += 1
            if outcome.status == "ok":
                groups.setdefault(tile.stack.acquisitions[int(i)].orbit, []).append(outcome.path)
        for orbit, paths in groups.items():
            name = tile.name if len(groups) == 1 else f"{tile.name}-o{orbit}"
            track = config.corrections.track_angle_deg
            fields.append(
                stack_pairs(paths, tile=tile.name, orbit=orbit, name=name, how=q.stack, track_angle=track)
            )
        if not groups:
            log.warning("tile %s: every pair failed; left out of the mosaic", tile.name)
    return fields


@dataclass(frozen=True)
class _Analysis:
    fields: list[CoseismicField]
    mosaic: Mosaic
    trace: F64
    source: str
    profiles: SlipProfiles


@log_runtime("mosaic, trace, slip")
def _analyse(config: JobConfig, fields: list[CoseismicField], chip_m: float) -> _Analysis:
    q = config.quake
    assert q is not None
    gap = q.profile_gap if q.profile_gap is not None else 0.5 * chip_m
    m = mosaic_fields(fields, crs=q.crs, resolution=q.resolution)
    source = q.trace or "detected from the offsets"
    try:
        trace = locate_trace(m, path=q.trace, crs=q.trace_crs)
        if q.track_correction:
            fields = [
                remove_track_artefacts(f, trace_on_grid(trace, m.grid, f.grid), near=gap) for f in fields
            ]
            m = mosaic_fields(fields, crs=q.crs, resolution=q.resolution)
            trace = locate_trace(m, path=q.trace, crs=q.trace_crs)
    except NoRuptureError as exc:
        raise NoRuptureError(
            f"{exc}. The quake job found no rupture in the offset mosaic: check quake.event_date, or give "
            "the trace as quake.trace"
        ) from None
    profiles = measure_slip(m, trace, spacing=q.profile_spacing, half_width=q.profile_half_width, gap=gap)
    log.info("rupture trace %s; fault-parallel slip %s", source, slip_summary(profiles))
    return _Analysis(fields, m, trace, source, profiles)


def _mosaic_dataset(result: QuakeResult) -> xr.Dataset:
    config, m = result.config, result.mosaic
    assert m is not None and config.quake is not None
    ds = m.to_dataset()
    dates = sorted({str(a.date) for t in result.tiles for a in t.stack.acquisitions})
    event = config.quake.event_date
    ds["img_pair_info"] = (
        (),
        np.int32(0),
        {
            "acquisition_date_img1": f"{dates[0]}T00:00:00",
            "acquisition_date_img2": f"{dates[-1]}T00:00:00",
            "date_center": f"{event}T00:00:00",
            "date_dt": float((np.datetime64(dates[-1]) - np.datetime64(dates[0])) / np.timedelta64(1, "D")),
        },
    )
    ds.attrs.update(
        title="geodeform co-seismic offsets (mosaic)",
        geodeform_preset=config.preset,
        geodeform_job=config.name,
        geodeform_event_date=str(event),
        geodeform_trace=result.trace_source,
        geodeform_matching=json.dumps(
            {**config.matching.model_dump(), "two_motion_px": config.quake.two_motion_px}
        ),
        geodeform_fields=json.dumps([f.name for f in result.fields]),
    )
    return ds


@log_runtime("products")
def _write_products(result: QuakeResult) -> None:
    out, config = result.run_dir, result.config
    assert result.mosaic is not None and result.trace is not None and result.profiles is not None
    attrs = {
        "geodeform_job": config.name,
        "geodeform_event_date": str(config.quake and config.quake.event_date),
    }
    for f in result.fields:
        suffix = "" if f.name == f.tile else f"_o{f.orbit}"
        write_field(f, out / "tiles" / f.tile / f"coseismic{suffix}.nc", attrs)
    ds = _mosaic_dataset(result)
    items = []
    if "netcdf" in config.output.formats:
        result.products["offsets_nc"] = write_netcdf(ds, out / "offsets.nc")
        if config.output.stac:
            items.append(write_stac_item(ds, out / "offsets.nc"))
    if "cog" in config.output.formats:
        result.products["offsets_tif"] = write_cog(ds, out / "offsets.tif", bands=("dx", "dy", "count"))
    props = {"source": result.trace_source, "event_date": str(config.quake and config.quake.event_date)}
    result.products["trace"] = write_trace_geojson(
        out / "trace.geojson", result.trace, result.mosaic.grid, properties=props
    )
    result.products["profiles"] = write_profiles_csv(out / "profiles.csv", result.profiles)
    if config.output.stac:
        result.products["catalog"] = write_catalog(out, config.name, items)


@log_runtime("report")
def _report(result: QuakeResult, extras: dict[str, Any]) -> None:
    config = result.config
    assert config.quake is not None
    pairs = pair_summaries(result.pairs)
    summary = {
        "tiles": str(len(result.tiles)),
        "pairs matched": f"{sum(o.status == 'ok' for o in result.pairs)} of {len(result.pairs)} "
        f"({result.pairs_computed} computed, {result.pairs_reused} reused)",
        "run time": human_time(result.seconds),
    }
    sections = []
    if result.mosaic is not None and result.trace is not None and result.profiles is not None:
        summary["fault-parallel slip"] = slip_summary(result.profiles)
        pixel_m = result.tiles[0].stack.pixel_m
        sections.append(
            quake_section(
                mosaic=result.mosaic,
                trace=result.trace,
                trace_source=result.trace_source,
                profiles=result.profiles,
                fields=result.fields,
                pixel_m=pixel_m,
                event_date=str(config.quake.event_date),
            )
        )
    summary.update(extras.get("summary", {}))
    inputs = ReportInputs(
        title=f"geodeform quake run: {config.name}",
        velocity=None,
        dates=sorted({str(a.date) for t in result.tiles for a in t.stack.acquisitions}),
        pairs=pairs,
        points=[],
        parameters=config.model_dump(mode="json"),
        summary=summary,
        crs=str(result.mosaic.grid.crs) if result.mosaic is not None else "",
        attribution=tuple(extras.get("attribution", ())),
        sections=sections,
    )
    result.products["report"] = write_report(inputs, result.run_dir)
    slip_png = result.run_dir / "quicklooks" / "slip.png"
    if slip_png.is_file():
        result.products["slip_plot"] = slip_png


def run_quake(
    plan: QuakePlan,
    out: Path,
    *,
    workers: int,
    match: PairMatcher,
    progress: StageProgress | None = None,
    on_estimate: Callable[[ResourceEstimate], None] | None = None,
    cache_dir: Path | None = None,
    report_extras: Callable[[RunResult], dict[str, Any]] | None = None,
    started: float | None = None,
) -> QuakeResult:
    """Run a planned quake job in ``out`` (which exists, with the run log set up): see the module.

    Parameters
    ----------
    plan
        :func:`~geodeform.workflows.quake_plan.plan_quake` of the job.
    out
        Run folder.
    workers
        Workers of the executor (for the estimate).
    match
        Matches the pair specs on the job's executor (:data:`PairMatcher`).
    progress, on_estimate, cache_dir, report_extras
        As :func:`geodeform.workflows.run_job` (stages ``read``, ``match``, ``products``).
    started
        ``time.perf_counter()`` when the job started (for the run time in the report).

    Raises
    ------
    NoDataError
        Every pair failed, or no rupture stands out of the mosaic (without a user trace).
    """
    t0 = time.perf_counter()
    config = plan.config
    tiles = _read_tiles(plan, out, progress, cache_dir)
    estimate = _estimate(config, tiles, workers)
    log.info(estimate.describe())
    if on_estimate:
        on_estimate(estimate)
    owned = [(spec, tile.name) for tile in tiles for spec in tile.specs]
    specs = [
        replace(s, index=k, attributes={**s.attributes, "tile": name}) for k, (s, name) in enumerate(owned)
    ]
    outcomes = match(specs)
    result = QuakeResult(out, config, tiles[0].stack, outcomes, estimate=estimate, tiles=tiles)
    if not any(o.status == "ok" for o in outcomes):
        error = all_failed(outcomes)
        if config.output.report:
            _report(result, {"summary": {"result": str(error)}})
        raise error
    result.fields = _stack(config, tiles, outcomes)
    chip_m = config.matching.chip_size * tiles[0].stack.pixel_m
    try:
        a = _analyse(config, result.fields, chip_m)
    except GeodeformError as exc:
        if config.output.report:
            _report(result, {"summary": {"result": str(exc)}})
        raise
    result.fields, result.mosaic, result.trace = a.fields, a.mosaic, a.trace
    result.trace_source, result.profiles = a.source, a.profiles
    _write_products(result)
    if progress:
        progress("products", 1, 1)
    result.seconds = time.perf_counter() - (started if started is not None else t0)
    if config.output.report:
        _report(result, report_extras(result) if report_extras else {})
    return result
