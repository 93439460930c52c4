"""What a finished job writes: time-series inversion of its pairs, velocity composite, STAC catalogue, report.

``<run>/velocity.nc|.tif``  mean-velocity composite (m/yr, +x east, +y north)
``<run>/timeseries.nc``     cumulative displacement per date (m) and its 1-sigma
``<run>/catalog.json``      STAC catalogue of the products
``<run>/report.html``       self-contained HTML report, PNG quicklooks in ``quicklooks/``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from geodeform.config import JobConfig
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import NoDataError
from geodeform.io import (
    GeoGrid,
    composite_dataset,
    dataset_grid,
    timeseries_dataset,
    write_catalog,
    write_cog,
    write_netcdf,
    write_stac_item,
)
from geodeform.timeseries import (
    TimeSeriesResult,
    add_date_noise,
    add_node_errors,
    invert,
    pair_sigma,
    velocity_composite,
)
from geodeform.workflows._timing import log_runtime
from geodeform.workflows.pair import PairOutcome
from geodeform.workflows.preflight import ResourceEstimate, human_time
from geodeform.workflows.report import PairSummary, PointSeries, ReportInputs, pick_points, write_report
from geodeform.workflows.stack import ImageStack
from geodeform.workflows.three_d import write_velocity_3d

__all__ = ["Inversion", "RunResult", "StageProgress", "all_failed", "invert_pairs", "write_products"]

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


class Inversion(NamedTuple):
    """A series inverted from a job's pair products, with the node grid and one product as template."""

    series: TimeSeriesResult
    grid: GeoGrid
    template: xr.Dataset


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
    config: JobConfig, stack: ImageStack, outcomes: list[PairOutcome], progress: StageProgress | None
) -> Inversion:
    """Load the ok pairs' products and invert them into a displacement series (m) with per-date noise.

    Raises
    ------
    NoDataError
        No pair is ok.
    """
    ok = [o for o in outcomes if o.status == "ok"]
    if not ok:
        raise all_failed(outcomes)
    index = {str(d): n for n, d in enumerate(stack.dates)}
    dx, dy, pairs = [], [], []
    errs: list[float] = []
    node_err: list[Any] = []  # per pair: the node's 1-sigma vector error (m) and chip height (m), if written
    template = None
    for o in ok:
        with xr.open_dataset(o.path, engine="h5netcdf") as ds:
            dx.append(ds["dx"].values)
            dy.append(ds["dy"].values)
            node_err.append(_node_error(ds, o.dt_days))
            if template is None:
                template = ds.load()
        pairs.append((index[o.reference], index[o.secondary]))
        err = np.nanmean([o.stable_nmad_x, o.stable_nmad_y]) * abs(o.dt_days) / DAYS_PER_YEAR
        errs.append(float(err) if np.isfinite(err) and err > 0 else np.nan)
    assert template is not None
    used = sorted({k for p in pairs for k in p})
    remap = {old: new for new, old in enumerate(used)}
    pair_idx = [(remap[a], remap[b]) for a, b in pairs]
    dx_all, dy_all = np.stack(dx), np.stack(dy)
    sigma = None
    if config.inversion.weights == "error" and all(e is not None for e in node_err):
        # per-node errors: the matcher's plus its displacement/strain part (timeseries.uncertainty)
        step = float(np.median(np.abs(np.diff(template["x"].values)))) if template.sizes["x"] > 1 else 1.0
        chip = np.stack([e[1] for e in node_err])
        chip = np.where(np.isfinite(chip), chip, config.matching.chip_size * step / config.matching.step)
        sigma = pair_sigma(dx_all, dy_all, np.stack([e[0] for e in node_err]), step=step, chip=chip)
    ts = invert(
        stack.dates[used],
        np.array(pair_idx, dtype=np.int64),
        dx_all,
        dy_all,
        weights=np.where(np.isfinite(sigma), 1.0 / np.fmax(sigma, 1e-6) ** 2, 0.0)
        if sigma is not None
        else _weights(config.inversion.weights, errs),
        smoothing=config.inversion.smoothing or None,
        robust=config.inversion.robust,
        progress=(lambda d, t: progress("invert", d, t)) if progress else None,
    )
    if sigma is not None:
        # image noise per node and date, and the shared displacement/strain part, into sigma and v_error
        ts = add_node_errors(ts, pair_idx, sigma, step=step, chip=np.nanmedian(chip, axis=0))
    else:
        years = [abs(o.dt_days) / DAYS_PER_YEAR for o in ok]
        ex = [o.stable_nmad_x * k for o, k in zip(ok, years, strict=True)]
        ey = [o.stable_nmad_y * k for o, k in zip(ok, years, strict=True)]
        ts = add_date_noise(ts, pair_idx, np.asarray(ex), np.asarray(ey))
    return Inversion(ts, dataset_grid(template), template)


def _node_error(ds: xr.Dataset, dt_days: float) -> tuple[Any, Any] | None:
    """A pair product's per-node 1-sigma vector error (m, the matcher's ``offset_error``) and chip height
    (m, NaN = none), or None when it has no ``offset_error``."""
    if "offset_error" not in ds or not dt_days:
        return None
    err = ds["offset_error"].values.astype(np.float64)
    chip = np.full(err.shape, np.nan)
    if "chip_size_height" in ds:
        h = ds["chip_size_height"].values.astype(np.float64)
        chip = np.where(h > 0, h, np.nan)
    return err, chip


@log_runtime("invert + products")
def write_products(config: JobConfig, result: RunResult, progress: StageProgress | None) -> None:
    """Velocity composite, time series, STAC catalogue (and COG) in the run folder; fills ``result``."""
    out = result.run_dir
    ok = [o for o in result.pairs if o.status == "ok"]
    items: list[Path] = []
    if config.output.stac:
        for o in ok:
            with xr.open_dataset(o.path, engine="h5netcdf") as ds:
                items.append(write_stac_item(ds.load(), o.path))
    if config.inversion.enabled and len(ok) >= 1:
        ts, grid, template = invert_pairs(config, result.stack, result.pairs, progress)
        pair_errors = [np.hypot(o.stable_nmad_x, o.stable_nmad_y) / np.sqrt(2) for o in ok]
        finite = [e for e in pair_errors if np.isfinite(e)]
        vel = composite_dataset(
            velocity_composite(ts), grid, fill_error=float(np.median(finite)) if finite else None
        )
        vel.attrs["geodeform_preset"] = config.preset
        vel.attrs["geodeform_job"] = config.name
        vel.attrs["geodeform_matching"] = json.dumps(config.matching.model_dump())
        vel.attrs["geodeform_search_range_px"] = json.dumps(
            {f"{o.reference}_{o.secondary}": o.search_range for o in ok}
        )
        result.timeseries, result.velocity = ts, vel
        result.products["timeseries"] = write_netcdf(timeseries_dataset(ts, template), out / "timeseries.nc")
    elif ok:
        with xr.open_dataset(ok[0].path, engine="h5netcdf") as ds:
            result.velocity = ds.load()
    else:
        raise all_failed(result.pairs)
    velocity = result.velocity
    if "netcdf" in config.output.formats:
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


def _points(result: RunResult, extras: dict[str, Any]) -> list[PointSeries]:
    """The time series at a few telling points of the velocity map (with the truth when ``extras`` has it)."""
    vel, ts = result.velocity, result.timeseries
    if ts is None or vel is None:
        return []
    xs, ys = vel["x"].values, vel["y"].values
    truth = extras.get("truth_series")
    points = []
    for name, x, y in pick_points(vel):
        j, i = int(np.argmin(np.abs(xs - x))), int(np.argmin(np.abs(ys - y)))
        te, tn = truth(x, y, ts.dates) if truth else (None, None)
        assert ts.dy is not None and ts.sigma_dy is not None  # a job always inverts both components
        points.append(
            PointSeries(
                name,
                float(x),
                float(y),
                [str(d) for d in ts.dates],
                ts.dx[:, i, j],
                ts.dy[:, i, j],
                ts.sigma_dx[:, i, j],
                ts.sigma_dy[:, i, j],
                te,
                tn,
            )
        )
    return points


@log_runtime("report")
def write_run_report(result: RunResult, extras: dict[str, Any]) -> Path:
    """The HTML report of a run (:func:`geodeform.workflows.report.write_report`); recorded in ``result``.

    ``extras`` may hold ``summary`` (more lines of the summary table), ``truth_series``
    (``f(x, y, dates) -> (east, north)``), ``speed_truth`` and ``attribution``.
    """
    pairs = [
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
        for o in result.pairs
    ]
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
