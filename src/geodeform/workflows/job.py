"""``geodeform run``: search -> reads -> masks -> pairs -> matching -> corrections -> inversion -> products.

Every stage writes its results atomically into the run folder and keys them by a hash of their inputs and
settings, so a killed run, rerun with the same config, redoes only what is missing:

``<run>/config.yaml``            the resolved config (preset defaults filled in)
``<run>/run.log``                log of every run in this folder
``<run>/images/*.tif``           the acquisitions on the common grid (float32, NaN = no data / cloud)
``<run>/pairs/*.nc``             one corrected velocity product per pair (CF-1.8, ITS_LIVE names)
``<run>/velocity.nc|.tif``       mean-velocity composite (m/yr, +x east, +y north)
``<run>/timeseries.nc``          cumulative displacement per date (m) and its 1-sigma
``<run>/catalog.json``           STAC catalogue of the products
``<run>/report.html``            self-contained HTML report, PNG quicklooks in ``quicklooks/``
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geodeform.config import DAYS_PER_YEAR, JobConfig, config_to_yaml, search_range_px
from geodeform.errors import GeodeformError, InvalidInputError, NoDataError
from geodeform.workflows.stack import ImageStack, read_image, stack_from_inputs, stack_from_search

__all__ = [
    "PairOutcome",
    "ResourceEstimate",
    "RunResult",
    "check_files",
    "date_noise",
    "estimate_resources",
    "preflight",
    "process_pair",
    "run_job",
]

log = logging.getLogger("geodeform.workflows")

StageProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: read, match, invert, products."""

# Measured throughput of the ncc matcher (benchmarks/bench_offsets.py scene run: 469,225 nodes in 11.2 s on
# 2 cores, chip 32, search 16): nodes per second per thread at a search radius of 16 px.
NODES_PER_S_PER_THREAD = 20_000.0


@dataclass(frozen=True)
class PairOutcome:
    """What happened to one pair (also stored in the pair product's attributes for resume)."""

    index: int
    reference: str
    secondary: str
    dt_days: float
    status: str  # "ok" | "failed"
    path: str = ""
    computed: bool = True
    coverage: float = float("nan")
    stable_nmad_x: float = float("nan")
    stable_nmad_y: float = float("nan")
    rejected: float = float("nan")
    search_range: int = 0
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class ResourceEstimate:
    """Expected cost of a job on this machine (printed before it runs)."""

    pairs: int
    nodes_per_pair: int
    seconds: float
    peak_memory_bytes: int
    disk_bytes: int
    workers: int

    def describe(self) -> str:
        gib = self.peak_memory_bytes / 2**30
        mib_disk = self.disk_bytes / 2**20
        return (
            f"estimate: {self.pairs} pairs x {self.nodes_per_pair:,} nodes, ~{_human_time(self.seconds)} on "
            f"{self.workers} worker(s), peak memory ~{gib:.1f} GiB, disk ~{mib_disk:.0f} MiB"
        )


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
    timeseries: Any = None
    velocity: Any = None

    @property
    def pairs_computed(self) -> int:
        return sum(p.computed and p.status == "ok" for p in self.pairs)

    @property
    def pairs_reused(self) -> int:
        return sum((not p.computed) and p.status == "ok" for p in self.pairs)


def _human_time(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- masks


def _raster_on_grid(path: str | Path, grid: Any, *, resampling: str, fill: float) -> NDArray[np.float64]:
    """Band 1 of a raster resampled onto ``grid`` (``fill`` outside it and on the raster's nodata)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    dst = np.full(grid.shape, fill, dtype=np.float64)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, 1),
            dst,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling[resampling],
            dst_nodata=fill,
        )
    return dst


def _read_mask_on_grid(path: str, grid: Any, *, what: str) -> NDArray[np.bool_]:
    """A polygon file (GeoJSON/any OGR vector in lon/lat or with its CRS) or a raster, as a bool grid."""
    import rasterio

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"masks.{what}: file {p} not found")
    if p.suffix.lower() in (".json", ".geojson"):
        from rasterio.features import rasterize
        from rasterio.warp import transform_geom

        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"masks.{what}: {p} is not valid GeoJSON ({exc})") from None
        feats = doc.get("features", [doc]) if isinstance(doc, dict) else []
        geoms = [f.get("geometry", f) for f in feats if isinstance(f, dict)]
        geoms = [g for g in geoms if g and g.get("type") in ("Polygon", "MultiPolygon")]
        if not geoms:
            raise InvalidInputError(f"masks.{what}: {p} holds no Polygon / MultiPolygon")
        src_crs = (doc.get("crs") or {}).get("properties", {}).get("name", "EPSG:4326")
        shapes = [(transform_geom(src_crs, grid.crs, g), 1) for g in geoms]
        out = rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")
        return out.astype(bool)
    try:
        dst = _raster_on_grid(p, grid, resampling="nearest", fill=0.0)
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidInputError(f"masks.{what}: cannot read {p} as a raster or GeoJSON ({exc})") from None
    return dst > 0.5


def _slope_deg(dem_path: str, grid: Any) -> NDArray[np.float64]:
    dem = _raster_on_grid(dem_path, grid, resampling="bilinear", fill=np.nan)
    gy, gx = np.gradient(dem, abs(grid.transform.e), abs(grid.transform.a))
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def _node_sample(mask: NDArray[Any], config: JobConfig) -> NDArray[Any]:
    """Value of a pixel mask at the matcher's node centres (nearest pixel)."""
    from geodeform.offsets._common import node_grid

    m = config.matching
    _, _, rc, cc = node_grid(mask.shape, (m.chip_size, m.chip_size), (m.step, m.step))
    return mask[np.ix_(np.rint(rc).astype(int), np.rint(cc).astype(int))]


def _stable_nodes(config: JobConfig, stack: ImageStack) -> NDArray[np.bool_] | None:
    """Stable-ground mask at the nodes: masks.stable, else outside masks.glacier; minus steep DEM slopes."""
    grid = stack.grid
    stable: NDArray[np.bool_] | None = None
    if config.masks.stable:
        stable = _read_mask_on_grid(config.masks.stable, grid, what="stable")
    elif config.masks.glacier:
        stable = ~_read_mask_on_grid(config.masks.glacier, grid, what="glacier")
    if config.dem:
        if not Path(config.dem).is_file():
            raise InvalidInputError(f"dem: file {config.dem} not found")
        flat = _slope_deg(config.dem, grid) <= config.steep_slope_deg
        stable = flat if stable is None else stable & flat
    if stable is None:
        return None
    return _node_sample(stable, config).astype(bool)


# ------------------------------------------------------------------------------------------- preflight


def _texture(img: NDArray[np.float32]) -> tuple[float, float]:
    """(valid fraction, median absolute column difference) of one image: 0 for a blank AOI.

    Computed on every 4th row (a full-tile median would cost seconds and says nothing more).
    """
    sub = img[::4]
    ok = np.isfinite(sub)
    if ok.sum() < 16:
        return float(ok.mean()), 0.0
    g = np.abs(np.diff(sub, axis=1))
    g = g[np.isfinite(g)]
    return float(ok.mean()), float(np.median(g)) if g.size else 0.0


def preflight(config: JobConfig, stack: ImageStack, pairs: Any) -> list[str]:
    """Fail fast on jobs that cannot give a result; return warnings for the log.

    Raises
    ------
    NoDataError
        Fewer than two usable acquisitions, or an image without data on the AOI.
    InvalidInputError
        Identical scenes, a textureless AOI, or a search range too small (or too large) for the expected
        motion.
    """
    warnings: list[str] = []
    acqs = stack.acquisitions
    if len(acqs) < 2:
        raise NoDataError(f"only {len(acqs)} acquisition(s); a job needs at least two dates")
    digests: dict[str, str] = {}
    for a in acqs:
        img = read_image(a.path)
        valid, grad = _texture(img)
        if valid == 0:
            raise NoDataError(
                f"image {a.id} ({a.date}) has no valid pixel on the AOI (no overlap or all cloud); remove it "
                "or move the AOI"
            )
        if grad == 0:
            raise InvalidInputError(
                f"image {a.id} ({a.date}) is textureless on the AOI (constant values): nothing to correlate; "
                "check the band and the AOI (snow-covered or saturated?)"
            )
        if valid < 0.2:
            warnings.append(f"image {a.id} ({a.date}) has only {valid:.0%} valid pixels on the AOI")
        digest = hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()
        del img
        if digest in digests:
            raise InvalidInputError(
                f"images {digests[digest]} and {a.id} ({a.date}) are identical: the same scene given twice; "
                "remove the duplicate"
            )
        digests[digest] = a.id
    m = config.matching
    dts = np.abs(pairs.dt_days) if len(pairs) else np.array([0.0])
    needed = search_range_px(
        m.model_copy(update={"search_range": None}), dt_days=float(dts.max()), pixel_m=stack.pixel_m
    )
    if m.search_range is not None and m.search_range < needed:
        raise InvalidInputError(
            f"matching.search_range = {m.search_range} px is too small for the expected motion: "
            f"{m.expected_max_speed:g} m/yr over {dts.max():.0f} days at {stack.pixel_m:g} m needs "
            f"{needed} px; "
            "raise matching.search_range, remove it (derived automatically) or lower pairs.max_range"
        )
    if m.search_range is None and needed > m.max_search_range:
        raise InvalidInputError(
            f"the longest pair ({dts.max():.0f} days) needs a search range of {needed} px for "
            f"{m.expected_max_speed:g} m/yr, above matching.max_search_range = {m.max_search_range}; lower "
            "pairs.max_range, give a matching.reference_velocity, or raise matching.max_search_range"
        )
    chip = m.chip_size
    h, w = stack.grid.shape
    if min(h, w) < chip + 2 * 2:
        raise InvalidInputError(
            f"the AOI grid is {h} x {w} px, too small for matching.chip_size = {chip}; enlarge the AOI or "
            "lower the chip size"
        )
    return warnings


def estimate_resources(config: JobConfig, stack: ImageStack, n_pairs: int, workers: int) -> ResourceEstimate:
    """Time, peak memory and disk of a run, from throughputs measured on a 2-core machine.

    Calibration (``benchmarks/bench_workflow.py``, one 10980 x 10980 Sentinel-2 tile pair): images read,
    aligned and checked at ~1e-7 s per pixel, ncc matching at :data:`NODES_PER_S_PER_THREAD`, per-pair
    reads + corrections + writes at ~3e-8 s per pixel + 1.5e-5 s per node; a worker peaks at ~3.5 image
    buffers (float32), the main process at ~1.5.
    """
    from geodeform.offsets import grid_shape

    m = config.matching
    h, w = stack.grid.shape
    nr, nc = grid_shape((h, w), m.chip_size, m.step)
    nodes = nr * nc
    days = config.pairs.max_range if config.pairs.mode == "days" else 30.0
    radius = m.search_range or search_range_px(m, dt_days=days, pixel_m=stack.pixel_m)
    cost = max(1.0, (2 * radius + 1) ** 2 / 33**2) ** 0.5  # coarse-to-fine search: sub-quadratic growth
    per_pair = (
        nodes * cost / (NODES_PER_S_PER_THREAD * config.compute.threads) + h * w * 3e-8 + nodes * 1.5e-5
    )
    parallel = max(1, min(workers, n_pairs))
    seconds = len(stack.acquisitions) * h * w * 1e-7 + math.ceil(n_pairs / parallel) * per_pair + 5.0
    image_bytes = h * w * 4
    peak = parallel * (3.5 * image_bytes + nodes * 200 + 150 * 2**20) + 1.5 * image_bytes + 300 * 2**20
    peak += n_pairs * nodes * 4 * 2 * 2  # the inversion holds dx, dy of every pair (float32, + a copy)
    disk = len(stack.acquisitions) * image_bytes // 2 + n_pairs * nodes * 4 * 12
    return ResourceEstimate(n_pairs, nodes, seconds, int(peak), int(disk), workers)


# ------------------------------------------------------------------------------------------ one pair


def _reason_codes() -> dict[int, str]:
    from geodeform.offsets import Reason

    return {int(r): r.name for r in Reason}


def process_pair(spec: dict[str, Any]) -> PairOutcome:
    """Match, georeference and correct one pair; write its product atomically (runs on a worker).

    ``spec`` holds only plain data and paths (picklable for Dask / SLURM). An existing product with the same
    key is reused without recomputation.
    """
    import xarray as xr

    from geodeform.corrections import correct_offsets
    from geodeform.io import AcquisitionDates, offset_dataset, write_netcdf
    from geodeform.offsets import match

    out = Path(spec["out"])
    base = dict(
        index=spec["index"],
        reference=spec["ref_date"],
        secondary=spec["sec_date"],
        dt_days=spec["dt_days"],
        path=str(out),
        search_range=int(np.max(spec["search_range"])),
    )
    if out.is_file():
        try:
            with xr.open_dataset(out, engine="h5netcdf") as ds:
                if ds.attrs.get("geodeform_pair_key") == spec["key"]:
                    stats = json.loads(ds.attrs["geodeform_pair_stats"])
                    return PairOutcome(**base, status="ok", computed=False, **stats)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("pair product %s unreadable (%s); recomputing", out, exc)
    t0 = time.perf_counter()
    ref = read_image(spec["ref_path"])
    sec = read_image(spec["sec_path"])
    m = spec["matching"]
    try:
        field_ = match(
            ref,
            sec,
            method=m["method"],
            chip_size=m["chip_size"],
            step=m["step"],
            search_range=spec["search_range"],
            prefilter=m["prefilter"],
            threads=spec["threads"],
        )
    except GeodeformError as exc:
        return PairOutcome(**base, status="failed", message=f"matching: {exc}")
    grid = spec["grid"]
    to_dt = lambda s: datetime.fromisoformat(s).replace(tzinfo=timezone.utc)  # noqa: E731
    dates = AcquisitionDates(to_dt(spec["ref_date"]), to_dt(spec["sec_date"]))
    stable = spec["stable"]
    processing = {
        "method": m["method"],
        "chip_size": m["chip_size"],
        "step": m["step"],
        "search_range": base["search_range"],
        "preset": spec["preset"],
    }
    finite = np.isfinite(field_.dx) & np.isfinite(field_.dy)
    coverage_raw = float(finite.mean())
    c = spec["corrections"]
    nmad_x = nmad_y = rejected = float("nan")
    used_stable = stable
    note = ""
    if c["enabled"] and finite.sum() >= 10:
        # Filters and co-registration work in pixels (their thresholds are in pixels), before georeferencing.
        kwargs = {
            "plane": c["plane"],
            "stripes": {"track_angle_deg": c["track_angle_deg"]} if c["stripes"] else None,
            "filters": {
                "quality": field_.quality,
                "min_quality": c["min_quality"],
                "n_mad": c["mad_threshold"],
            },
        }
        if stable is None and c["reference"] == "all":
            stable = np.ones(field_.dx.shape, dtype=bool)
        try:
            rep = correct_offsets(field_.dx, field_.dy, stable=stable, **kwargs)
        except GeodeformError as exc:
            if stable is None:
                return PairOutcome(**base, status="failed", message=f"corrections: {exc}")
            note = f"stable-ground mask unusable for this pair ({exc}); stable ground chosen automatically"
            log.warning("pair %s_%s: %s", spec["ref_date"], spec["sec_date"], note)
            rep = correct_offsets(field_.dx, field_.dy, stable=None, **kwargs)
        field_ = replace(field_, dx=rep.dx.astype(np.float32), dy=rep.dy.astype(np.float32))
        px_per_year = spec["pixel_m"] * DAYS_PER_YEAR / max(abs(dates.dt_days), 1e-9)
        nmad_x, nmad_y = float(rep.after.nmad_x) * px_per_year, float(rep.after.nmad_y) * px_per_year
        rejected = float(rep.filtering.rejected_fraction)
        used_stable = rep.stable
    ds = offset_dataset(
        field_,  # type: ignore[arg-type]  # the io Protocol declares settable attributes; ours is frozen
        grid,
        dates=dates,
        reference=spec["ref_name"],
        secondary=spec["sec_name"],
        stable_mask=used_stable,
        processing=processing,
        reason_codes=_reason_codes(),
    )
    coverage = float((np.isfinite(ds["vx"].values) & np.isfinite(ds["vy"].values)).mean())
    if coverage == 0:
        counts = ", ".join(f"{k} {v}" for k, v in field_.reason_counts().items())
        return PairOutcome(**base, status="failed", message=f"no valid node ({counts})")
    stats = {
        "coverage": coverage,
        "stable_nmad_x": nmad_x,
        "stable_nmad_y": nmad_y,
        "rejected": rejected,
        "seconds": time.perf_counter() - t0,
        "message": note,
    }
    ds.attrs["geodeform_pair_key"] = spec["key"]
    ds.attrs["geodeform_pair_stats"] = json.dumps(stats)
    ds.attrs["geodeform_coverage_before_filters"] = coverage_raw
    write_netcdf(ds, out)
    return PairOutcome(**base, status="ok", computed=True, **stats)


# -------------------------------------------------------------------------------------------- the job


def _setup_logging(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("geodeform")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _build_network(config: JobConfig, stack: ImageStack) -> Any:
    from geodeform.pairs import build_pairs

    p = config.pairs
    kw: dict[str, Any] = {"mode": "all", "direction": p.direction, "season": p.season}
    if p.mode == "acquisitions":
        kw.update(min_separation=int(p.min_range), max_separation=int(p.max_range))
    else:
        kw.update(min_days=p.min_range, max_days=p.max_range)
    orbits = stack.orbits
    if p.same_orbit and any(o is not None for o in orbits):
        kw["orbits"] = [-1 if o is None else o for o in orbits]
    return build_pairs(stack.dates, **kw)


def _search_ranges(
    config: JobConfig, stack: ImageStack, dt_days: float, node_speed: NDArray[np.float64] | None = None
) -> Any:
    """Search radius for one pair: an int, or per-node array from the reference velocity map.

    ``node_speed`` is the reference speed at the nodes (:func:`_reference_node_speed`), read once per run;
    it is read here when not given.
    """
    m = config.matching
    if m.reference_velocity is None or m.search_range is not None:
        return search_range_px(m, dt_days=dt_days, pixel_m=stack.pixel_m)
    nodes = _reference_node_speed(config, stack) if node_speed is None else node_speed
    metres = nodes * abs(dt_days) / DAYS_PER_YEAR + m.expected_max_displacement
    return np.maximum(2, np.ceil(1.5 * metres / stack.pixel_m) + 2).astype(np.int64)


def _reference_node_speed(config: JobConfig, stack: ImageStack) -> NDArray[np.float64]:
    """Speed (m/yr) of ``matching.reference_velocity`` at the nodes, bounded by ``expected_max_speed``
    (which also fills nodes without a reference value)."""
    m = config.matching
    assert m.reference_velocity is not None
    nodes = _node_sample(_reference_speed(m.reference_velocity, stack), config)
    return np.where(np.isfinite(nodes), np.minimum(nodes, m.expected_max_speed), m.expected_max_speed)


def _reference_speed(path: str, stack: ImageStack) -> NDArray[np.float64]:
    """Speed (m/yr) of a reference velocity map on the stack grid: NetCDF vx/vy or v, or a raster."""
    from rasterio.warp import Resampling, reproject

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"matching.reference_velocity: file {p} not found")
    grid = stack.grid
    if p.suffix != ".nc":
        return _raster_on_grid(p, grid, resampling="bilinear", fill=np.nan)
    import xarray as xr

    from geodeform.io import dataset_grid

    with xr.open_dataset(p, engine="h5netcdf") as ds:
        if "v" in ds:
            speed = ds["v"].values.astype(np.float64)
        elif "vx" in ds and "vy" in ds:
            speed = np.hypot(ds["vx"].values, ds["vy"].values).astype(np.float64)
        else:
            raise InvalidInputError(f"matching.reference_velocity: {p} has neither v nor vx/vy")
        src_grid = dataset_grid(ds)
    dst = np.full(grid.shape, np.nan)
    reproject(
        speed,
        dst,
        src_transform=src_grid.transform,
        src_crs=src_grid.crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        resampling=Resampling.bilinear,
        src_nodata=np.nan,
        dst_nodata=np.nan,
    )
    return dst


def _pair_specs(config: JobConfig, stack: ImageStack, network: Any, run_dir: Path) -> list[dict[str, Any]]:
    stable = _stable_nodes(config, stack)
    m = config.matching
    node_speed = (
        _reference_node_speed(config, stack)
        if m.reference_velocity is not None and m.search_range is None
        else None
    )
    mdict = {"method": m.method, "chip_size": m.chip_size, "step": m.step, "prefilter": m.prefilter}
    cdict = config.corrections.model_dump()
    specs = []
    for k, (i, j) in enumerate(network.pairs):
        a, b = stack.acquisitions[int(i)], stack.acquisitions[int(j)]
        dt = float((b.date - a.date) / np.timedelta64(1, "D"))
        sr = _search_ranges(config, stack, dt, node_speed)
        key = _hash(
            a.key,
            b.key,
            mdict,
            cdict,
            np.asarray(sr).tolist(),
            None if stable is None else hashlib.sha1(np.packbits(stable).tobytes()).hexdigest(),
        )
        specs.append(
            {
                "index": k,
                "key": key,
                "ref_path": str(a.path),
                "sec_path": str(b.path),
                "ref_name": a.id,
                "sec_name": b.id,
                "ref_date": str(a.date),
                "sec_date": str(b.date),
                "dt_days": dt,
                "search_range": sr,
                "matching": mdict,
                "corrections": cdict,
                "threads": config.compute.threads,
                "grid": stack.grid,
                "stable": stable,
                "preset": config.preset,
                "pixel_m": stack.pixel_m,
                "out": str(run_dir / "pairs" / f"{a.date}_{b.date}_{key[:8]}.nc"),
            }
        )
    return specs


def _invert(
    config: JobConfig, stack: ImageStack, outcomes: list[PairOutcome], progress: StageProgress | None
) -> tuple[Any, Any, Any]:
    """Load the ok pairs, invert them; returns (TimeSeriesResult, node GeoGrid, template Dataset)."""
    import xarray as xr

    from geodeform.io import dataset_grid
    from geodeform.timeseries import invert

    ok = [o for o in outcomes if o.status == "ok"]
    if not ok:
        raise _all_failed(outcomes)
    dates = stack.dates
    index = {str(d): n for n, d in enumerate(dates)}
    dx, dy, pairs, errs = [], [], [], []
    template = None
    for o in ok:
        with xr.open_dataset(o.path, engine="h5netcdf") as ds:
            dx.append(ds["dx"].values)
            dy.append(ds["dy"].values)
            if template is None:
                template = ds.load()
        pairs.append((index[o.reference], index[o.secondary]))
        err = np.nanmean([o.stable_nmad_x, o.stable_nmad_y]) * abs(o.dt_days) / DAYS_PER_YEAR
        errs.append(err if np.isfinite(err) and err > 0 else np.nan)
    assert template is not None
    grid = dataset_grid(template)
    w = config.inversion.weights
    weights: Any = None
    if w == "dt":
        weights = "dt"
    elif w == "error":
        e = np.asarray(errs, dtype=np.float64)
        if np.isfinite(e).any():
            e = np.where(np.isfinite(e), e, np.nanmedian(e))
            e = np.maximum(e, 0.1 * np.median(e))  # no pair gets more than 100x the median weight
            weights = 1.0 / e**2
    used = sorted({k for p in pairs for k in p})
    remap = {old: new for new, old in enumerate(used)}
    ts = invert(
        dates[used],
        np.array([(remap[a], remap[b]) for a, b in pairs], dtype=np.int64),
        np.stack(dx),
        np.stack(dy),
        weights=weights,
        smoothing=config.inversion.smoothing or None,
        robust=config.inversion.robust,
        progress=(lambda d, t: progress("invert", d, t)) if progress else None,
    )
    pair_idx = [(remap[a], remap[b]) for a, b in pairs]
    metres = [abs(o.dt_days) / DAYS_PER_YEAR for o in ok]
    ex = [o.stable_nmad_x * k for o, k in zip(ok, metres, strict=True)]
    ey = [o.stable_nmad_y * k for o, k in zip(ok, metres, strict=True)]
    ts = _with_date_noise(ts, pair_idx, np.asarray(ex), np.asarray(ey))
    return ts, grid, template


def date_noise(
    pairs: list[tuple[int, int]], pair_sigma: NDArray[np.float64], ndates: int
) -> NDArray[np.float64]:
    """Per-date noise s_k from per-pair errors, assuming sigma_ij² = s_i² + s_j² (non-negative least squares).

    Image-specific errors (noise, radiometry, geolocation of one date) are consistent around every loop of the
    pair network, so inversion residuals cannot reveal them; the stable-ground spread of each pair can.
    Dates without a finite pair error get the median.
    """
    from scipy.optimize import nnls

    ok = np.isfinite(pair_sigma)
    if not ok.any():
        return np.zeros(ndates)
    a = np.zeros((int(ok.sum()), ndates))
    for row, (i, j) in enumerate(p for p, good in zip(pairs, ok, strict=True) if good):
        a[row, i] = a[row, j] = 1.0
    s2, _ = nnls(a, pair_sigma[ok] ** 2)
    seen = a.any(axis=0)
    if seen.any():
        s2[~seen] = np.median(s2[seen])
    return np.sqrt(s2)


def _with_date_noise(
    ts: Any, pairs: list[tuple[int, int]], ex: NDArray[np.float64], ey: NDArray[np.float64]
) -> Any:
    """Add the per-date image noise to the series' 1-sigma (displacement since date 0 carries s_0 and s_k)
    and to the mean-velocity sigma (slope of a straight line through dates with noise s_k)."""
    n = len(ts.dates)
    years = (ts.dates - ts.dates[0]) / np.timedelta64(1, "D") / DAYS_PER_YEAR
    changes: dict[str, Any] = {}
    for comp, err in (("dx", ex), ("dy", ey)):
        s = date_noise(pairs, err, n)
        floor = np.sqrt(s[0] ** 2 + s**2)
        floor[0] = 0.0
        sig = getattr(ts, f"sigma_{comp}")
        if sig is None:
            continue
        changes[f"sigma_{comp}"] = np.sqrt(sig.astype(np.float64) ** 2 + floor[:, None, None] ** 2).astype(
            np.float32
        )
        centred = years - years.mean()
        if n >= 2 and np.ptp(years) > 0:
            slope_sigma = np.sqrt(np.sum(centred**2 * s**2)) / np.sum(centred**2)
            vname = "sigma_velocity_x" if comp == "dx" else "sigma_velocity_y"
            vsig = getattr(ts, vname)
            if vsig is not None:
                changes[vname] = np.sqrt(vsig.astype(np.float64) ** 2 + slope_sigma**2).astype(np.float32)
    return replace(ts, **changes)


def _all_failed(outcomes: list[PairOutcome]) -> NoDataError:
    shown = "; ".join(f"{o.reference} -> {o.secondary}: {o.message}" for o in outcomes[:3])
    more = f" (and {len(outcomes) - 3} more)" if len(outcomes) > 3 else ""
    return NoDataError(
        f"every pair failed to match: {shown}{more}. Lower search.max_aoi_cloud to drop cloudy images, "
        "widen the dates, or check the AOI"
    )


def _timeseries_dataset(ts: Any, grid: Any, template: Any) -> Any:
    import xarray as xr

    coords = {"time": ts.dates.astype("datetime64[ns]"), "y": template["y"], "x": template["x"]}
    attrs = dict(template.attrs)
    attrs.update(
        {
            "title": "geodeform displacement time series",
            "sign_convention": "east: + toward increasing map x; north: + toward increasing map y; "
            "cumulative displacement since the first date",
        }
    )
    for k in ("geodeform_pair_key", "geodeform_pair_stats", "geodeform_coverage_before_filters"):
        attrs.pop(k, None)
    gm = template["dx"].attrs.get("grid_mapping", "spatial_ref")
    names = {
        "east": (ts.dx, "cumulative displacement along +x (east)"),
        "north": (ts.dy, "cumulative displacement along +y (north)"),
        "east_error": (ts.sigma_dx, "1-sigma error of east"),
        "north_error": (ts.sigma_dy, "1-sigma error of north"),
    }
    dims = ("time", "y", "x")
    data = {
        k: (dims, v, {"units": "m", "long_name": text, "grid_mapping": gm}) for k, (v, text) in names.items()
    }
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds[gm] = template[gm]
    return ds


def _write_catalog(run_dir: Path, name: str, items: list[Path]) -> Path:
    from geodeform.io import atomic_output

    links = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"},
        {"rel": "self", "href": "./catalog.json", "type": "application/json"},
    ]
    links += [
        {"rel": "item", "href": "./" + p.relative_to(run_dir).as_posix(), "type": "application/geo+json"}
        for p in items
    ]
    doc = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": name,
        "description": f"geodeform products of job {name}",
        "links": links,
    }
    path = run_dir / "catalog.json"
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return path


def check_files(config: JobConfig) -> None:
    """Every file the config names exists (inputs, masks, DEM, reference velocity, local catalogue).

    Raises
    ------
    InvalidInputError
        Naming the field and the missing path, before the run folder is created.
    """
    named: list[tuple[str, str | None]] = [(f"inputs[{k}].path", i.path) for k, i in enumerate(config.inputs)]
    named += [
        ("masks.glacier", config.masks.glacier),
        ("masks.stable", config.masks.stable),
        ("dem", config.dem),
        ("matching.reference_velocity", config.matching.reference_velocity),
    ]
    if config.search is not None and config.search.aoi.geojson:
        named.append(("search.aoi.geojson", config.search.aoi.geojson))
    missing = [
        f"{field}: file {path} not found" for field, path in named if path and not Path(path).is_file()
    ]
    if missing:
        raise InvalidInputError("; ".join(missing) + " (paths are relative to the folder you run from)")


def _workers(config: JobConfig, override: int | None) -> int:
    c = config.compute
    if c.cluster == "sync":
        return 1
    if c.cluster == "slurm":
        return c.slurm.jobs * max(1, c.slurm.cores // c.threads)
    return override or c.workers or max(1, (os.cpu_count() or 1) // c.threads)


def run_job(
    config: JobConfig,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    progress: StageProgress | None = None,
    on_estimate: Callable[[ResourceEstimate], None] | None = None,
    report_extras: Callable[[RunResult], dict[str, Any]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a job end to end; rerunning it in the same folder resumes.

    Parameters
    ----------
    config
        Validated job config (:func:`geodeform.config.load_config`).
    run_dir
        Output folder (default ``runs/<name>``).
    progress
        ``progress(stage, done, total)`` for stages ``read``, ``match``, ``invert``, ``products``.
    on_estimate
        Called with the resource estimate before matching starts.
    report_extras
        Called with the finished result; returns extra report fields (``summary``, ``truth``, ...).

    Raises
    ------
    InvalidInputError, NoDataError, DataError
        Preflight failures and bad inputs, with a message naming the problem and the fix.
    """
    t_start = time.perf_counter()
    check_files(config)  # before anything is written
    out = Path(run_dir) if run_dir is not None else Path("runs") / config.name
    out.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(out)
    try:
        from geodeform.io import atomic_output

        with atomic_output(out / "config.yaml") as tmp:
            tmp.write_text(config_to_yaml(config), encoding="utf-8")
        log.info("run %s in %s", config.name, out.resolve())
        stage = (lambda name: lambda d, t: progress(name, d, t)) if progress else (lambda name: None)
        if config.inputs:
            stack = stack_from_inputs(config.inputs, out, progress=stage("read"), roi=config.roi)
        else:
            assert config.search is not None
            stack = stack_from_search(
                config.search,
                out,
                progress=stage("read"),
                cache_dir=Path(cache_dir) if cache_dir else None,
                roi=config.roi,
            )
        log.info(
            "stage read: %d images on a %d x %d grid in %.1f s",
            len(stack.acquisitions),
            *stack.grid.shape,
            time.perf_counter() - t_start,
        )
        for note in stack.notes:
            log.info(note)
        network = _build_network(config, stack)
        for w in preflight(config, stack, network):
            log.warning(w)
        workers = _workers(config, None)
        estimate = estimate_resources(config, stack, len(network), workers)
        log.info(estimate.describe())
        if on_estimate:
            on_estimate(estimate)
        (out / "pairs").mkdir(exist_ok=True)
        specs = _pair_specs(config, stack, network, out)
        outcomes: list[PairOutcome | None] = [None] * len(specs)
        from geodeform.parallel import executor

        c = config.compute
        done = 0
        t_match = time.perf_counter()
        if progress:
            progress("match", 0, len(specs))
        with executor(c.cluster, workers=workers, threads=c.threads, slurm=c.slurm) as ex:
            log.info("matching %d pairs on %s", len(specs), ex.description)
            for k, outcome in ex.map(process_pair, specs):
                outcomes[k] = outcome
                done += 1
                verb = "computed" if outcome.computed else "reused"
                if outcome.status == "ok":
                    log.info(
                        "pair %s_%s %s in %.1f s (coverage %.0f%%)",
                        outcome.reference,
                        outcome.secondary,
                        verb,
                        outcome.seconds,
                        100 * outcome.coverage,
                    )
                else:
                    log.warning(
                        "pair %s_%s failed: %s", outcome.reference, outcome.secondary, outcome.message
                    )
                if progress:
                    progress("match", done, len(specs))
        final = [o for o in outcomes if o is not None]
        result = RunResult(out, config, stack, final, estimate=estimate)
        log.info("stage match: %d pairs in %.1f s", len(final), time.perf_counter() - t_match)
        t_products = time.perf_counter()
        if not any(o.status == "ok" for o in final):
            error = _all_failed(final)
            if config.output.report:  # the report says which pair failed and why
                _report(result, {"summary": {"result": str(error)}})
            raise error
        _products(config, result, progress)
        log.info("stage invert + products: %.1f s", time.perf_counter() - t_products)
        result.seconds = time.perf_counter() - t_start
        if config.output.report:
            t_report = time.perf_counter()
            _report(result, report_extras(result) if report_extras else {})
            log.info("stage report: %.1f s", time.perf_counter() - t_report)
        log.info(
            "run %s finished in %.1f s: %d pairs computed, %d reused",
            config.name,
            result.seconds,
            result.pairs_computed,
            result.pairs_reused,
        )
        return result
    except Exception:
        log.exception("run %s stopped", config.name)
        raise
    finally:
        logging.getLogger("geodeform").removeHandler(handler)
        handler.close()


def _products(config: JobConfig, result: RunResult, progress: StageProgress | None) -> None:
    """Velocity composite, time series, STAC catalogue (and COG) in the run folder."""
    import xarray as xr

    from geodeform.io import atomic_output, composite_dataset, write_cog, write_netcdf, write_stac_item
    from geodeform.timeseries import velocity_composite

    out = result.run_dir
    ok = [o for o in result.pairs if o.status == "ok"]
    items: list[Path] = []
    if config.output.stac:
        for o in ok:
            with xr.open_dataset(o.path, engine="h5netcdf") as ds:
                items.append(write_stac_item(ds.load(), o.path))
    if config.inversion.enabled and len(ok) >= 1:
        ts, grid, template = _invert(config, result.stack, result.pairs, progress)
        comp = velocity_composite(ts)
        vel = composite_dataset(comp, grid)
        vel.attrs["geodeform_preset"] = config.preset
        vel.attrs["geodeform_job"] = config.name
        m = config.matching
        vel.attrs["geodeform_matching"] = json.dumps(m.model_dump())
        vel.attrs["geodeform_search_range_px"] = json.dumps(
            {f"{o.reference}_{o.secondary}": o.search_range for o in ok}
        )
        result.timeseries, result.velocity = ts, vel
        tsd = _timeseries_dataset(ts, grid, template)
        with atomic_output(out / "timeseries.nc") as tmp:
            tsd.to_netcdf(tmp, engine="h5netcdf")
        result.products["timeseries"] = out / "timeseries.nc"
    elif ok:
        with xr.open_dataset(ok[0].path, engine="h5netcdf") as ds:
            vel = ds.load()
        result.velocity = vel
    else:
        raise _all_failed(result.pairs)
    if "netcdf" in config.output.formats:
        result.products["velocity_nc"] = write_netcdf(result.velocity, out / "velocity.nc")
        if config.output.stac:
            items.append(write_stac_item(result.velocity, out / "velocity.nc"))
    if "cog" in config.output.formats:
        result.products["velocity_tif"] = write_cog(
            result.velocity, out / "velocity.tif", bands=("vx", "vy", "v", "v_error")
        )
    if config.output.stac:
        result.products["catalog"] = _write_catalog(out, config.name, items)
    if progress:
        progress("products", 1, 1)


def _report(result: RunResult, extras: dict[str, Any]) -> None:
    from geodeform.workflows.report import PairSummary, PointSeries, ReportInputs, pick_points, write_report

    vel = result.velocity
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
        )
        for o in result.pairs
    ]
    points = []
    ts = result.timeseries
    if ts is not None and vel is not None:
        xs, ys = vel["x"].values, vel["y"].values
        for name, x, y in pick_points(vel):
            j, i = int(np.argmin(np.abs(xs - x))), int(np.argmin(np.abs(ys - y)))
            truth = extras.get("truth_series")
            te, tn = truth(x, y, ts.dates) if truth else (None, None)
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
    summary = {
        "images": str(len(result.stack.acquisitions)),
        "pairs matched": f"{sum(o.status == 'ok' for o in result.pairs)} of {len(result.pairs)} "
        f"({result.pairs_computed} computed, {result.pairs_reused} reused)",
        "run time": _human_time(result.seconds),
    }
    if result.estimate:
        summary["estimate"] = result.estimate.describe().removeprefix("estimate: ")
    summary.update(extras.get("summary", {}))
    inputs = ReportInputs(
        title=f"geodeform {result.config.preset} run: {result.config.name}",
        velocity=vel,
        dates=[str(a.date) for a in result.stack.acquisitions],
        pairs=pairs,
        points=points,
        parameters=result.config.model_dump(mode="json"),
        summary=summary,
        crs=str(result.stack.grid.crs),
        attribution=tuple(extras.get("attribution", ())),
        speed_truth=extras.get("speed_truth"),
    )
    result.products["report"] = write_report(inputs, result.run_dir)
