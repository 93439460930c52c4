"""What a finished job writes: time-series inversion of its pairs, velocity composite, STAC catalogue, report.

``<run>/velocity.nc|.tif``  mean-velocity composite (m/yr, +x east, +y north)
``<run>/timeseries.nc``     cumulative displacement per date (m) and its 1-sigma
``<run>/catalog.json``      STAC catalogue of the products
``<run>/report.html``       self-contained HTML report, PNG quicklooks in ``quicklooks/``
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from geodeform.config import JobConfig
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import NoDataError
from geodeform.io import (
    SERIES_VARIABLES,
    atomic_output,
    composite_dataset,
    dataset_grid,
    series_netcdf,
    write_catalog,
    write_cog,
    write_netcdf,
    write_stac_item,
)
from geodeform.timeseries import TimeSeriesResult
from geodeform.timeseries.chunked import ChunkedInversion, NodeErrors, invert_products
from geodeform.workflows._timing import log_runtime
from geodeform.workflows.network import check_network
from geodeform.workflows.pair import PairOutcome
from geodeform.workflows.preflight import ResourceEstimate, human_time
from geodeform.workflows.report import PairSummary, PointSeries, ReportInputs, pick_points, write_report
from geodeform.workflows.stack import ImageStack
from geodeform.workflows.three_d import write_velocity_3d

__all__ = ["RunResult", "StageProgress", "all_failed", "invert_pairs", "write_products"]

log = logging.getLogger(__name__)

StageProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: read, match, invert, products."""


@dataclass
class RunResult:
    """Paths and figures of a finished run."""

    run_dir: Path
    config: JobConfig
    stack: ImageStack
    pairs: list[PairOutcome]
    products: dict[str, Path] = field(default_factory=dict)
    estimate: ResourceEstimate | None = None
    seconds: float = 0.0
    timeseries: TimeSeriesResult | None = None
    velocity: xr.Dataset | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def pairs_computed(self) -> int:
        """Pairs matched in this run."""
        return sum(p.computed and p.status == "ok" for p in self.pairs)

    @property
    def pairs_reused(self) -> int:
        """Pairs whose product a previous run had written."""
        return sum((not p.computed) and p.status == "ok" for p in self.pairs)


def all_failed(outcomes: list[PairOutcome]) -> NoDataError:
    """The error of a job none of whose pairs could be matched, naming the first failures."""
    shown = "; ".join(f"{o.reference} -> {o.secondary}: {o.message}" for o in outcomes[:3])
    more = f" (and {len(outcomes) - 3} more)" if len(outcomes) > 3 else ""
    return NoDataError(
        f"every pair failed to match: {shown}{more}. Lower search.max_aoi_cloud to drop cloudy images, "
        "widen the dates, or check the AOI"
    )


def _weights(mode: str, errs: list[float]) -> Any:
    if mode == "dt":
        return "dt"
    if mode == "error":
        e = np.asarray(errs, dtype=np.float64)
        if np.isfinite(e).any():
            e = np.where(np.isfinite(e), e, np.nanmedian(e))
            e = np.maximum(e, 0.1 * np.median(e))  # no pair gets more than 100x the median weight
            return 1.0 / e**2
    return None


def invert_pairs(
    config: JobConfig,
    stack: ImageStack,
    outcomes: list[PairOutcome],
    progress: StageProgress | None,
    store: Path,
) -> ChunkedInversion:
    """Invert the ok pairs' products, block by block from disk, into the Zarr store ``store``: the memory
    depends on the block (:data:`~geodeform.timeseries.chunked.INVERSION_MEMORY_BYTES`), not on the dates.

    Raises
    ------
    NoDataError
        No pair is ok.
    """
    ok = [o for o in outcomes if o.status == "ok"]
    if not ok:
        raise all_failed(outcomes)
    index = {str(d): n for n, d in enumerate(stack.dates)}
    pairs = [(index[o.reference], index[o.secondary]) for o in ok]
    errs: list[float] = []
    for o in ok:
        err = np.nanmean([o.stable_nmad_x, o.stable_nmad_y]) * abs(o.dt_days) / DAYS_PER_YEAR
        errs.append(float(err) if np.isfinite(err) and err > 0 else np.nan)
    used = sorted({k for q in pairs for k in q})
    remap = {old: new for new, old in enumerate(used)}
    pair_idx = np.array([(remap[a], remap[b]) for a, b in pairs], dtype=np.int64)
    years = np.array([abs(o.dt_days) / DAYS_PER_YEAR for o in ok])
    ex = np.array([o.stable_nmad_x for o in ok]) * years
    ey = np.array([o.stable_nmad_y for o in ok]) * years
    return invert_products(
        [o.path for o in ok],
        stack.dates[used],
        pair_idx,
        store,
        weights=_weights(config.inversion.weights, errs),
        smoothing=config.inversion.smoothing or None,
        robust=config.inversion.robust,
        pair_errors=(ex, ey),
        node_errors=_node_errors(config, ok),
        progress=(lambda d, t: progress("invert", d, t)) if progress else None,
    )


def _stac_items(ok: list[PairOutcome]) -> list[Path]:
    """The pairs' STAC items, written by the workers with the products (written here when missing, or
    older than their product: a pair co-registered afterwards at job level, see ``coregister_pending``)."""
    items = []
    for o in ok:
        item = Path(o.path).with_suffix(".stac.json")
        if not item.is_file() or item.stat().st_mtime_ns < Path(o.path).stat().st_mtime_ns:
            with xr.open_dataset(o.path, engine="h5netcdf") as ds:
                item = write_stac_item(ds.load(), o.path)
        items.append(item)
    return items


def _node_errors(config: JobConfig, ok: list[PairOutcome]) -> NodeErrors | None:
    """Per-node error weighting (``inversion.weights: error``) when every product has the matcher's
    ``offset_error`` (m); None otherwise (per-pair weights and per-date noise)."""
    if config.inversion.weights != "error" or not all(o.dt_days for o in ok):
        return None
    for o in ok:
        # two names of the product, read with h5py: opening it whole through xarray costs ~150 ms CPU
        with h5py.File(o.path, "r") as f:
            if "offset_error" not in f:
                return None
            x = f["x"][()]
    step = float(np.median(np.abs(np.diff(x)))) if x.size > 1 else 1.0
    scale = tuple(float(o.noise_scale) for o in ok)
    return NodeErrors.calibrated(
        config.matching.smoothing_model,
        step=step,
        chip=config.matching.chip_size * step / config.matching.step,
        noise_scale=scale if any(np.isfinite(scale)) else None,
    )


@log_runtime("invert + products")
def write_products(config: JobConfig, result: RunResult, progress: StageProgress | None) -> None:
    """Velocity composite, time series (Zarr + NetCDF), STAC catalogue (and COG) in the run folder; fills
    ``result``."""
    out = result.run_dir
    ok = [o for o in result.pairs if o.status == "ok"]
    items: list[Path] = _stac_items(ok) if config.output.stac else []
    if config.inversion.enabled and len(ok) >= 2:
        inv = invert_pairs(config, result.stack, result.pairs, progress, out / "timeseries.zarr")
        check = check_network(result.pairs, inv.store, series=inv.series)
        result.pairs = check.pairs
        result.warnings += check.warnings
        with xr.open_dataset(ok[0].path, engine="h5netcdf") as first:
            grid = dataset_grid(first)
        pair_errors = [np.hypot(o.stable_nmad_x, o.stable_nmad_y) / np.sqrt(2) for o in ok]
        finite = [e for e in pair_errors if np.isfinite(e)]
        vel = composite_dataset(inv.composite, grid, fill_error=float(np.median(finite)) if finite else None)
        vel.attrs["geodeform_preset"] = config.preset
        vel.attrs["geodeform_job"] = config.name
        vel.attrs["geodeform_matching"] = json.dumps(config.matching.model_dump())
        vel.attrs["geodeform_search_range_px"] = json.dumps(
            {f"{o.reference}_{o.secondary}": o.search_range for o in ok}
        )
        result.timeseries, result.velocity = inv.series, vel
        result.products["timeseries_zarr"] = inv.store
        result.products["timeseries"] = series_netcdf(inv.store, out / "timeseries.nc")
    elif ok:
        if config.inversion.enabled:
            log.info("one pair: its product is the velocity map (nothing to invert)")
        with xr.open_dataset(ok[0].path, engine="h5netcdf") as ds:
            result.velocity = ds.load()
    else:
        raise all_failed(result.pairs)
    velocity = result.velocity
    if "netcdf" in config.output.formats and result.timeseries is None and len(ok) == 1:
        with atomic_output(out / "velocity.nc") as tmp:  # the pair's product, already encoded: copied
            shutil.copyfile(ok[0].path, tmp)
        result.products["velocity_nc"] = out / "velocity.nc"
        if config.output.stac:
            items.append(write_stac_item(velocity, out / "velocity.nc"))
    elif "netcdf" in config.output.formats:
        result.products["velocity_nc"] = write_netcdf(velocity, out / "velocity.nc")
        if config.output.stac:
            items.append(write_stac_item(velocity, out / "velocity.nc"))
    if "cog" in config.output.formats:
        result.products["velocity_tif"] = write_cog(
            velocity, out / "velocity.tif", bands=("vx", "vy", "v", "v_error")
        )
    if config.three_d and config.dem:
        result.products.update(
            write_velocity_3d(velocity, config.dem, result.stack.grid, out, config.output.formats)
        )
    if config.output.stac:
        result.products["catalog"] = write_catalog(out, config.name, items)
    if progress:
        progress("products", 1, 1)


def _series_at(result: RunResult, i: int, j: int) -> tuple[list[str], list[Any]]:
    """Dates and (east, north, east sigma, north sigma) of node (i, j): from memory, else from the store."""
    ts = result.timeseries
    if ts is not None:
        assert ts.dy is not None and ts.sigma_dy is not None  # a job always inverts both components
        layers = [ts.dx[:, i, j], ts.dy[:, i, j], ts.sigma_dx[:, i, j], ts.sigma_dy[:, i, j]]
        return [str(d) for d in ts.dates], layers
    with xr.open_zarr(result.products["timeseries_zarr"], consolidated=True) as ds:
        node = ds[list(SERIES_VARIABLES)].isel(y=i, x=j).load()
        dates = [str(d) for d in node["time"].values.astype("datetime64[D]")]
        return dates, [node[k].values for k in SERIES_VARIABLES]


def _points(result: RunResult, extras: dict[str, Any]) -> list[PointSeries]:
    """The time series at a few telling points of the velocity map (with the truth when ``extras`` has it)."""
    vel = result.velocity
    if vel is None or (result.timeseries is None and "timeseries_zarr" not in result.products):
        return []
    xs, ys = vel["x"].values, vel["y"].values
    truth = extras.get("truth_series")
    points = []
    for name, x, y in pick_points(vel):
        j, i = int(np.argmin(np.abs(xs - x))), int(np.argmin(np.abs(ys - y)))
        dates, (east, north, sig_e, sig_n) = _series_at(result, i, j)
        te, tn = truth(x, y, np.array(dates, dtype="datetime64[D]")) if truth else (None, None)
        points.append(PointSeries(name, float(x), float(y), dates, east, north, sig_e, sig_n, te, tn))
    return points


def pair_summaries(outcomes: Sequence[PairOutcome]) -> list[PairSummary]:
    """The report's row of each pair outcome (status, coverage, stable-ground scatter, why degraded)."""
    return [
        PairSummary(
            o.reference,
            o.secondary,
            o.dt_days,
            o.status,
            o.coverage,
            o.stable_nmad_x,
            o.stable_nmad_y,
            o.rejected,
            o.message,
            o.degraded,
        )
        for o in outcomes
    ]


@log_runtime("report")
def write_run_report(result: RunResult, extras: dict[str, Any]) -> Path:
    """The HTML report of a run (:func:`geodeform.workflows.report.write_report`); recorded in ``result``.

    ``extras`` may hold ``summary`` (more lines of the summary table), ``truth_series``
    (``f(x, y, dates) -> (east, north)``), ``speed_truth`` and ``attribution``.
    """
    pairs = pair_summaries(result.pairs)
    summary = {
        "images": str(len(result.stack.acquisitions)),
        "pairs matched": f"{sum(o.status == 'ok' for o in result.pairs)} of {len(result.pairs)} "
        f"({result.pairs_computed} computed, {result.pairs_reused} reused)",
        "run time": human_time(result.seconds),
    }
    if result.estimate:
        summary["estimate"] = result.estimate.describe().removeprefix("estimate: ")
    summary.update(extras.get("summary", {}))
    inputs = ReportInputs(
        title=f"geodeform {result.config.preset} run: {result.config.name}",
        velocity=result.velocity,
        dates=[str(a.date) for a in result.stack.acquisitions],
        pairs=pairs,
        points=_points(result, extras),
        parameters=result.config.model_dump(mode="json"),
        summary=summary,
        crs=str(result.stack.grid.crs),
        attribution=tuple(extras.get("attribution", ())),
        speed_truth=extras.get("speed_truth"),
        notes=tuple(result.warnings),
    )
    path = write_report(inputs, result.run_dir)
    result.products["report"] = path
    return path
