"""The ``sar`` preset: Sentinel-1 GRD amplitude tracking per relative orbit, geocoded LOS products, E/N/U.

``geodeform run`` of a job with ``preset: sar`` (or a ``sar:`` section) comes here from
:func:`geodeform.workflows.run_job`. The chain:

1. **scenes**: local ``inputs`` (SAFE folders or measurement TIFFs with their annotation XML) or a search of
   ``sentinel-1-grd`` over the AOI; each product's annotation gives its date, relative orbit, pass,
   geometry and GCPs (no annotation: :class:`~geodeform.sar.MissingAnnotationError`);
2. **map grid**: the ROI (else the search AOI, else the overlap of the scenes' footprints) in UTM at
   ``sar.resolution``; each scene is read only on the radar window that covers it (plus a matching margin);
3. **pairs** within each relative orbit (``pairs``), checked in pairs (sensor, mode, product type,
   polarisation, orbit, spacing: :func:`geodeform.sar.check_pair`);
4. **preflight**: at least one pair per job, search ranges, and a geometry that resolves every component
   when ``sar.combine: enu`` (else an error naming the free component);
5. **matching** on the workers (:mod:`geodeform.workflows.sar_pair`): one geocoded product per pair;
6. **products** (:mod:`geodeform.workflows.sar_products`): line-of-sight and azimuth series and mean
   velocities per track, optional east/north/up series and velocity, STAC catalogue.

Run folder::

    <run>/pairs/ORBIT_REF_SEC_KEY.nc|.tif  one geocoded product per pair: range, azimuth, los (m), geometry
    <run>/track_ORBIT.nc|.tif              per track: los / azimuth series (m) and mean velocities (m/yr)
    <run>/enu_series.nc                    east / north / up series (m) of every track inverted jointly
    <run>/enu_velocity.nc|.tif             east / north / up velocity (m/yr), 1-sigma, reason codes
    <run>/catalog.json, config.yaml, run.log
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.crs import CRS

from geodeform.config import JobConfig, SarConfig, search_range_px
from geodeform.decompose import Observation, solve_enu
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.io import GeoGrid
from geodeform.io.aoi import aoi_grid
from geodeform.pairs import build_pairs
from geodeform.parallel import executor
from geodeform.sar import (
    IncompatiblePairError,
    MissingAnnotationError,
    S1Image,
    check_pair,
    footprint,
    open_s1,
    radar_window,
)
from geodeform.search import make_aoi
from geodeform.workflows._timing import log_runtime
from geodeform.workflows.pair import PairOutcome
from geodeform.workflows.plan import network_options
from geodeform.workflows.preflight import NODES_PER_S_PER_THREAD, ResourceEstimate
from geodeform.workflows.products import RunResult, all_failed
from geodeform.workflows.sar_pair import SarPairSpec, SarScene, process_sar_pair
from geodeform.workflows.sar_products import write_sar_products
from geodeform.workflows.sar_search import scenes_from_search
from geodeform.workflows.stack import Acquisition, ImageStack, content_key

__all__ = [
    "SarPlan",
    "check_geometry",
    "check_sar_files",
    "match_sar_pairs",
    "plan_sar_job",
    "run_sar_job",
    "sar_scenes",
]

log = logging.getLogger("geodeform.workflows")

Stage = Callable[[str, int, int], None]


@dataclass
class SarPlan:
    """What a ``sar`` job will match, decided in the main process before any matching.

    Attributes
    ----------
    scenes
        Every acquisition, sorted by (date, orbit), with its radar window.
    grid
        The map grid of every product.
    pairs
        ``(reference, secondary)`` indices into ``scenes``, within one relative orbit.
    search_ranges
        Search radius of each pair, radar pixels.
    specs
        One :class:`~geodeform.workflows.sar_pair.SarPairSpec` per pair.
    estimate
        Expected time, memory and disk.
    notes
        Things said to the log (e.g. scenes read without calibration).
    """

    scenes: list[SarScene]
    grid: GeoGrid
    pairs: list[tuple[int, int]]
    search_ranges: list[int]
    specs: list[SarPairSpec]
    estimate: ResourceEstimate
    notes: list[str]


def _check_files(config: JobConfig) -> None:
    named = [(f"inputs[{k}].path", i.path) for k, i in enumerate(config.inputs)]
    named += [
        ("dem", config.dem),
        ("masks.stable", config.masks.stable),
        ("masks.glacier", config.masks.glacier),
    ]
    missing = [f"{f}: {p} not found" for f, p in named if p and not Path(p).exists()]
    if missing:
        raise InvalidInputError("; ".join(missing) + " (paths are relative to the folder you run from)")
    if config.masks.stable or config.masks.glacier:
        raise InvalidInputError(
            "masks: the sar preset chooses stable ground from the offsets (corrections.reference: auto) or "
            "uses every node (all); stable-ground masks in radar geometry are not supported yet: remove "
            "masks.stable / masks.glacier"
        )


def _metadata(path: str, sar: SarConfig, label: str, **files: str | None) -> S1Image:
    """A product's annotation and GCPs, without reading its pixels.

    Raises
    ------
    MissingAnnotationError
        Naming the input and what to give instead (a measurement TIFF alone has no geometry).
    """
    try:
        return open_s1(path, polarisation=sar.polarisation, window=(0, 0, 1, 1), radiometry="dn", **files)
    except MissingAnnotationError as exc:
        raise MissingAnnotationError(
            f"{label}: {exc.args[0].split(';')[0]}; the sar chain needs the annotation XML for the dates, "
            "orbit, heading, incidence and pixel spacing: give the whole SAFE folder (or the measurement "
            "TIFF inside its SAFE layout, with annotation/ next to measurement/)"
        ) from None


def _scene(meta: S1Image, path: str, files: dict[str, str | None], label: str) -> SarScene:
    ann = meta.require_annotation("the sar chain (geometry, dates, orbit)")
    if ann.product_type != "GRD":
        raise InvalidInputError(
            f"{label}: {meta.path.name} is a Sentinel-1 {ann.product_type}; the sar preset tracks GRD "
            "amplitude (SLC pairs: geodeform.sar.match_coherence / match_amplitude in Python)"
        )
    if meta.relative_orbit is None:
        raise InvalidInputError(f"{label}: the relative orbit of {meta.path.name} is unknown")
    start = ann.start_time
    rows = np.array([ann.n_lines / 2.0])
    cols = np.array([ann.n_samples / 2.0])
    return SarScene(
        id=_product_name(meta),
        date=start.date().isoformat(),
        start=start.isoformat(),
        orbit=int(meta.relative_orbit),
        pass_direction=ann.pass_direction,
        path=path,
        annotation=files.get("annotation"),
        calibration=files.get("calibration"),
        noise=files.get("noise"),
        window=(0, 0, 0, 0),
        pixel_m=float(min(ann.range_pixel_spacing, ann.azimuth_pixel_spacing)),
        heading=float(ann.heading(rows, cols)[0]),
        incidence=float(ann.geolocation.incidence(rows, cols)[0]),
        mission=meta.mission,
        product_type=ann.product_type,
        mode=meta.mode,
    )


def _product_name(meta: S1Image) -> str:
    for p in (meta.path, *meta.path.parents):
        if p.suffix.upper() == ".SAFE":
            return p.stem
    return meta.path.stem


def sar_scenes(
    config: JobConfig, run_dir: Path, *, cache_dir: Path | None = None
) -> list[tuple[SarScene, S1Image]]:
    """The job's Sentinel-1 acquisitions (local inputs or a catalogue search), sorted by date and orbit.

    Raises
    ------
    MissingAnnotationError
        A product without its annotation XML.
    InvalidInputError
        A date or orbit in ``inputs`` that the product contradicts, an SLC, two products of one orbit and
        date.
    NoDataError
        A search that finds nothing usable.
    """
    sar = config.sar or SarConfig()
    found: list[tuple[SarScene, S1Image]] = []
    if config.inputs:
        for k, item in enumerate(config.inputs):
            meta = _metadata(item.path, sar, f"inputs[{k}]")
            scene = _scene(meta, item.path, {}, f"inputs[{k}]")
            if scene.date != item.date.isoformat():
                raise InvalidInputError(
                    f"inputs[{k}].date: {item.date} but {scene.id} was acquired on {scene.date}; fix the date"
                )
            if item.orbit is not None and item.orbit != scene.orbit:
                raise InvalidInputError(
                    f"inputs[{k}].orbit: {item.orbit} but {scene.id} is on relative orbit {scene.orbit}; "
                    "remove the orbit (it is read from the product) or fix it"
                )
            found.append((scene, meta))
    else:
        assert config.search is not None  # the config validator requires search or inputs
        for path, files in scenes_from_search(config.search, sar, run_dir, cache_dir=cache_dir):
            meta = _metadata(path, sar, "search", **files)
            found.append((_scene(meta, path, files, "search"), meta))
    found.sort(key=lambda sm: (sm[0].start, sm[0].orbit))
    seen: dict[tuple[int, str], str] = {}
    for scene, _ in found:
        other = seen.setdefault((scene.orbit, scene.date), scene.id)
        if other != scene.id:
            raise InvalidInputError(
                f"{other} and {scene.id} are two acquisitions of relative orbit {scene.orbit} on "
                f"{scene.date}; keep one (slices of one pass are not mosaicked: choose the one that covers "
                "the ROI)"
            )
    return found


def _map_grid(config: JobConfig, metas: list[S1Image]) -> GeoGrid:
    sar = config.sar or SarConfig()
    if config.roi is not None:
        area = make_aoi(bbox=list(config.roi))
    elif config.search is not None and (config.search.aoi.bbox or config.search.aoi.geojson):
        a = config.search.aoi
        area = make_aoi(bbox=list(a.bbox) if a.bbox else None, geojson=a.geojson)
    else:
        common = footprint(metas[0])
        for m in metas[1:]:
            common = common.intersection(footprint(m))
        if common.is_empty:
            raise NoDataError("the products do not overlap; give products of one area (or set roi)")
        area = make_aoi(bbox=list(common.bounds))
        log.info("no roi: the map grid covers the overlap of the %d products (set roi to crop)", len(metas))
    g = aoi_grid(area, sar.resolution)
    return GeoGrid(crs=CRS.from_epsg(g.epsg), transform=g.transform, shape=(g.height, g.width))


def _network(config: JobConfig, scenes: list[SarScene]) -> list[tuple[int, int]]:
    """Pairs within each relative orbit (``config.pairs``), as indices into ``scenes``."""
    p = config.pairs
    kw = network_options(config)
    pairs: list[tuple[int, int]] = []
    for orbit in sorted({s.orbit for s in scenes}):
        idx = [k for k, s in enumerate(scenes) if s.orbit == orbit]
        if len(idx) < 2:
            continue
        try:
            net = build_pairs(np.array([scenes[k].date for k in idx], dtype="datetime64[D]"), **kw)
        except InvalidInputError:  # no pair within this orbit's limits: said below if no orbit has one
            continue
        pairs += [(idx[int(a)], idx[int(b)]) for a, b in net.pairs]
    if not pairs:
        per_orbit = "; ".join(
            f"relative orbit {o}: " + ", ".join(s.date for s in scenes if s.orbit == o)
            for o in sorted({s.orbit for s in scenes})
        )
        raise NoDataError(
            f"no pair: pairs are formed within one relative orbit, {p.min_range:g}-{p.max_range:g} "
            f"{p.mode} apart ({per_orbit}); add acquisitions of one orbit or widen pairs.min_range / "
            "max_range"
        )
    return pairs


def check_geometry(config: JobConfig, scenes: list[SarScene]) -> None:
    """With ``sar.combine: enu``, stop when the tracks cannot resolve east, north and up.

    Raises
    ------
    InvalidInputError
        Naming the unconstrained component(s), the tracks and the fixes.
    """
    sar = config.sar or SarConfig()
    if sar.combine != "enu":
        return
    tracks = {s.orbit: s for s in scenes}
    obs = []
    for s in tracks.values():
        obs.append(Observation(0.0, "range", heading_deg=s.heading, incidence_deg=s.incidence))
        if sar.use_azimuth:
            obs.append(Observation(0.0, "azimuth", heading_deg=s.heading))
    res = solve_enu(obs, assume_zero=tuple(sar.assume_zero))
    free = [
        c for c, f in zip(("east", "north", "up"), np.atleast_1d(res.unconstrained).ravel(), strict=True) if f
    ]
    if free:
        names = ", ".join(f"relative orbit {o} ({s.pass_direction})" for o, s in tracks.items())
        which = free[0] if len(free) == 1 else ", ".join(free[:-1]) + " and " + free[-1]
        direction = ", ".join(f"{v:+.2f}" for v in np.asarray(res.free_direction).ravel()[:3])
        raise InvalidInputError(
            f"sar.combine: enu cannot resolve {which} from {names} with "
            f"{'range and azimuth' if sar.use_azimuth else 'range only'} offsets (the direction [E, N, U] = "
            f"[{direction}] is free); add a track of another heading (ascending + descending), keep "
            "sar.use_azimuth: true, or list the component(s) in sar.assume_zero"
        )


def _pair_checks(config: JobConfig, metas: list[S1Image], pairs: list[tuple[int, int]]) -> None:
    for a, b in pairs:
        check_pair(metas[a], metas[b], same_size=False)
    pols = {m.polarisation for m in metas}
    if len(pols) > 1 and config.sar is not None:
        raise IncompatiblePairError(
            f"the products hold different polarisations {sorted(pols)}; sar.polarisation is "
            f"{config.sar.polarisation}: give products of that polarisation"
        )


def _estimate(
    config: JobConfig, scenes: list[SarScene], grid: GeoGrid, n_pairs: int, workers: int
) -> ResourceEstimate:
    m = config.matching
    pixels = max(s.window[2] * s.window[3] for s in scenes)
    nodes = max(
        1, (max(s.window[2] for s in scenes) // m.step) * (max(s.window[3] for s in scenes) // m.step)
    )
    cells = grid.shape[0] * grid.shape[1]
    per_pair = nodes * (m.chip_size / 32) ** 2 / NODES_PER_S_PER_THREAD + pixels * 2e-7 + cells * 3e-6 + 1.0
    parallel = max(1, min(workers, n_pairs))
    seconds = math.ceil(n_pairs / parallel) * per_pair + len(scenes) * 0.5 + 5.0
    peak = parallel * (pixels * 4 * 10 + cells * 4 * 20 + 150 * 2**20) + 300 * 2**20
    disk = n_pairs * cells * 4 * 12
    return ResourceEstimate(n_pairs, nodes, seconds, int(peak), int(disk), workers)


def plan_sar_job(config: JobConfig, run_dir: Path, *, workers: int, cache_dir: Path | None = None) -> SarPlan:
    """Scenes, map grid, pairs, windows, checks and pair specs of a ``sar`` job (nothing matched yet).

    Raises
    ------
    InvalidInputError, NoDataError, DataError
        Every preflight failure, with what to do.
    """
    _check_files(config)
    found = sar_scenes(config, run_dir, cache_dir=cache_dir)
    scenes = [s for s, _ in found]
    metas = [m for _, m in found]
    pairs = _network(config, scenes)
    _pair_checks(config, metas, pairs)
    check_geometry(config, scenes)
    grid = _map_grid(config, metas)
    m = config.matching
    ranges = []
    for a, b in pairs:
        dt = (np.datetime64(scenes[b].date) - np.datetime64(scenes[a].date)) / np.timedelta64(1, "D")
        r = search_range_px(m, dt_days=float(dt), pixel_m=scenes[a].pixel_m)
        if m.search_range is None and r > m.max_search_range:
            raise InvalidInputError(
                f"pair {scenes[a].date} -> {scenes[b].date} needs a search range of {r} px for "
                f"{m.expected_max_speed:g} m/yr, above matching.max_search_range = {m.max_search_range}; "
                "lower pairs.max_range or raise matching.max_search_range"
            )
        ranges.append(r)
    margin = m.chip_size // 2 + max(ranges) + 2
    for k, (scene, meta) in enumerate(found):
        win = radar_window(meta, grid, margin=margin)
        if win is None or min(win[2], win[3]) < m.chip_size + 4:
            raise NoDataError(
                f"{scene.id} ({scene.date}) does not cover the map grid (roi / AOI); remove it or move the "
                "roi"
            )
        scenes[k] = replace(scene, window=win)
    specs = _specs(config, scenes, pairs, ranges, grid, run_dir)
    notes = [f"{s.id}: {n}" for s, meta in zip(scenes, metas, strict=True) for n in meta.notes]
    est = _estimate(config, scenes, grid, len(pairs), workers)
    return SarPlan(scenes, grid, pairs, ranges, specs, est, notes)


def _specs(
    config: JobConfig,
    scenes: list[SarScene],
    pairs: list[tuple[int, int]],
    ranges: list[int],
    grid: GeoGrid,
    run_dir: Path,
) -> list[SarPairSpec]:
    sar = config.sar or SarConfig()
    m = config.matching
    dem_key = None
    if config.dem:
        st = os.stat(config.dem)
        dem_key = (str(Path(config.dem).resolve()), st.st_size, st.st_mtime_ns)
    out = []
    for k, ((a, b), r) in enumerate(zip(pairs, ranges, strict=True)):
        ref, sec = scenes[a], scenes[b]
        settings = (
            ref,
            sec,
            sar.model_dump(),
            m.method,
            m.chip_size,
            m.step,
            r,
            config.corrections.model_dump(),
            str(grid.crs),
            tuple(grid.transform),
            grid.shape,
            dem_key,
        )
        key = content_key(*settings)
        stem = run_dir / "pairs" / f"{ref.orbit:03d}_{ref.date}_{sec.date}_{key[:8]}"
        outputs: dict[Any, str] = {}
        for fmt in config.output.formats:
            if fmt in ("netcdf", "cog"):
                outputs[fmt] = str(stem.with_suffix(".nc" if fmt == "netcdf" else ".tif"))
        outputs = dict(sorted(outputs.items(), key=lambda kv: kv[0] != "netcdf"))
        if "netcdf" not in outputs:  # the per-track inversion reads the NetCDF products
            outputs = {"netcdf": str(stem.with_suffix(".nc")), **outputs}
        out.append(
            SarPairSpec(
                index=k,
                reference=ref,
                secondary=sec,
                sar=sar,
                method=m.method,
                chip_size=m.chip_size,
                step=m.step,
                search_range=r,
                corrections=config.corrections,
                grid=grid,
                dem=config.dem,
                outputs=outputs,
                stac=config.output.stac,
                key=key,
                attributes={
                    "preset": config.preset,
                    "job": config.name,
                    "relative_orbit": ref.orbit,
                    "pass": ref.pass_direction,
                },
            )
        )
    return out


@log_runtime("match")
def match_sar_pairs(
    config: JobConfig, plan: SarPlan, workers: int, progress: Stage | None
) -> list[PairOutcome]:
    """Every pair of the plan through :func:`~geodeform.workflows.sar_pair.process_sar_pair`."""
    c = config.compute
    outcomes: list[PairOutcome | None] = [None] * len(plan.specs)
    if progress:
        progress("match", 0, len(plan.specs))
    with executor(c.cluster, workers=workers, threads=c.threads, slurm=c.slurm) as ex:
        log.info("matching %d SAR pairs on %s", len(plan.specs), ex.description)
        for done, (k, outcome) in enumerate(ex.map(process_sar_pair, plan.specs), start=1):
            outcomes[k] = outcome
            if outcome.status == "ok":
                log.info(
                    "pair %s_%s (orbit %d) %s in %.1f s (coverage %.0f%%)",
                    outcome.reference,
                    outcome.secondary,
                    plan.specs[k].reference.orbit,
                    "computed" if outcome.computed else "reused",
                    outcome.seconds,
                    100 * outcome.coverage,
                )
            else:
                log.warning("pair %s_%s failed: %s", outcome.reference, outcome.secondary, outcome.message)
            if progress:
                progress("match", done, len(plan.specs))
    return [o for o in outcomes if o is not None]


def scene_dates(scenes: list[SarScene]) -> NDArray[np.datetime64]:
    """Acquisition dates of the scenes, ``datetime64[D]``."""
    return np.array([s.date for s in scenes], dtype="datetime64[D]")


def check_sar_files(config: JobConfig) -> None:
    """Every path a ``sar`` job names exists (inputs may be SAFE folders), before anything is written.

    Raises
    ------
    InvalidInputError
        Naming each missing path and its field, or an unsupported option.
    """
    _check_files(config)


def run_sar_job(
    config: JobConfig,
    run_dir: Path,
    *,
    workers: int,
    progress: Stage | None = None,
    on_estimate: Callable[[ResourceEstimate], None] | None = None,
    cache_dir: Path | None = None,
) -> RunResult:
    """The ``sar`` chain in ``run_dir`` (see the module docstring); :func:`~geodeform.workflows.run_job`
    sets up the folder and the log, then calls this.

    Raises
    ------
    InvalidInputError, NoDataError, DataError
        Preflight failures (see :func:`plan_sar_job`), or every pair failing.
    """
    if progress:
        progress("read", 0, 1)
    plan = plan_sar_job(config, run_dir, workers=workers, cache_dir=cache_dir)
    if progress:
        progress("read", 1, 1)
    tracks = sorted({(s.orbit, s.pass_direction) for s in plan.scenes})
    log.info(
        "%d Sentinel-1 scenes on %d track(s) (%s), %d pairs, map grid %d x %d at %g m",
        len(plan.scenes), len(tracks), ", ".join(f"{o} {p}" for o, p in tracks), len(plan.pairs),
        *plan.grid.shape, abs(plan.grid.transform.a),
    )  # fmt: skip
    for note in plan.notes:
        log.warning(note)
    log.info(plan.estimate.describe())
    if on_estimate:
        on_estimate(plan.estimate)
    (run_dir / "pairs").mkdir(exist_ok=True)
    outcomes = match_sar_pairs(config, plan, workers, progress)
    acquisitions = [
        Acquisition(id=s.id, date=np.datetime64(s.date), orbit=s.orbit, path=Path(s.path), valid_fraction=1.0)
        for s in plan.scenes
    ]
    pixel = abs(plan.grid.transform.a)
    stack = ImageStack(acquisitions, plan.grid, pixel, "sentinel-1", notes=plan.notes)
    result = RunResult(run_dir, config, stack, outcomes, estimate=plan.estimate)
    if not any(o.status == "ok" for o in outcomes):
        raise all_failed(outcomes)
    orbits = [plan.specs[o.index].reference.orbit for o in outcomes]
    products, track_products, enu = write_sar_products(config, plan.scenes, outcomes, orbits, run_dir)
    result.products.update(products)
    result.velocity = enu if enu is not None else track_products[0].dataset
    if config.output.report:
        log.info("report: the HTML report is not written for the sar preset yet (products and log are)")
    if progress:
        progress("products", 1, 1)
    return result
