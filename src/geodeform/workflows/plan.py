"""What a job matches: the pair network, each pair's search range, the stable ground, one PairSpec per pair.

Everything here runs once per job in the main process; the specs (plain data and paths) then go to the
workers. A spec's ``key`` hashes every input its product depends on, so a rerun reuses finished pairs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from rasterio.errors import CRSError

from geodeform.config import JobConfig, search_range_px
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.io import AcquisitionDates, parse_date, read_mask, slope_degrees, speed_on_grid
from geodeform.io.masks import (
    MaskCheck,
    MaskRole,
    check_mask,
    find_scene_mask,
    mask_footprint,
    ndwi_water,
    scene_water,
)
from geodeform.offsets import node_grid
from geodeform.pairs import PairNetwork, build_pairs
from geodeform.workflows.pair import PairSpec
from geodeform.workflows.stack import ImageStack, content_key

__all__ = [
    "StableGround",
    "build_network",
    "network_options",
    "node_sample",
    "pair_specs",
    "reference_node_speed",
    "search_ranges",
    "stable_ground",
    "stable_nodes",
]

log = logging.getLogger(__name__)


def network_options(config: JobConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`geodeform.pairs.build_pairs` for ``config.pairs``: every pair within the
    range, in acquisitions (``pairs.mode: acquisitions``) or days, with its direction and season."""
    p = config.pairs
    kw: dict[str, Any] = {"mode": "all", "direction": p.direction, "season": p.season}
    if p.mode == "acquisitions":
        kw.update(min_separation=int(p.min_range), max_separation=int(p.max_range))
    else:
        kw.update(min_days=p.min_range, max_days=p.max_range)
    return kw


def build_network(config: JobConfig, stack: ImageStack) -> PairNetwork:
    """The pairs of ``config.pairs`` over the stack's dates (within one orbit when ``same_orbit``)."""
    kw = network_options(config)
    orbits = stack.orbits
    if config.pairs.same_orbit and any(o is not None for o in orbits):
        kw["orbits"] = [-1 if o is None else o for o in orbits]
    return build_pairs(stack.dates, **kw)


def node_sample(mask: NDArray[Any], config: JobConfig) -> NDArray[Any]:
    """Value of a pixel map at the matcher's node centres (nearest pixel), shape of the node grid."""
    m = config.matching
    _, _, rc, cc = node_grid(mask.shape, (m.chip_size, m.chip_size), (m.step, m.step))
    return mask[np.ix_(np.rint(rc).astype(int), np.rint(cc).astype(int))]


@dataclass(frozen=True)
class StableGround:
    """The job's stable ground and water at the matcher's nodes, with what the mask checks found.

    Attributes
    ----------
    nodes
        True = stable ground (None: the config gives no mask, ``corrections.reference`` decides).
    water
        True = water (lakes, fjords), left out of the products; None without ``masks.water``.
    source
        What the stable ground is, in words (for the log and the report).
    warnings
        Named warnings of the mask checks (:func:`geodeform.io.masks.check_mask`).
    """

    nodes: NDArray[np.bool_] | None
    water: NDArray[np.bool_] | None
    source: str
    warnings: tuple[str, ...] = ()


class _Checked(NamedTuple):
    mask: NDArray[np.bool_]
    footprint: NDArray[np.bool_]
    check: MaskCheck


def _checked_mask(path: str, grid: Any, what: str, role: MaskRole) -> _Checked:
    mask = read_mask(path, grid, what=what)
    footprint = mask_footprint(path, grid)
    return _Checked(mask, footprint, check_mask(mask, grid, what=what, role=role, footprint=footprint))


def _job_water(config: JobConfig, stack: ImageStack) -> NDArray[np.bool_] | None:
    """Water pixels: a mask file, or the images' SCL / QA water class (or NDWI) seen on half their dates."""
    w = config.masks.water
    if w is None:
        return None
    grid = stack.grid
    if w.lower() not in ("scl", "ndwi"):
        mask, footprint, check = _checked_mask(w, grid, "masks.water", "water")
        for note in check.warnings:
            log.warning(note)
        return mask & footprint
    sources = [a.sources[0] for a in stack.acquisitions if a.sources and Path(a.sources[0]).is_file()]
    if not sources:
        raise InvalidInputError(
            f"masks.water = {w}: needs the images as local files (inputs); give a water mask file instead"
        )
    votes = np.zeros(grid.shape, dtype=np.int32)
    seen = 0
    for band in sources:
        if w.lower() == "ndwi":
            water = ndwi_water(band, grid)
        else:
            found = find_scene_mask(band)
            water = None if found is None else scene_water(found, grid)
        if water is not None:
            votes += water
            seen += 1
    if seen == 0:
        raise InvalidInputError(
            "masks.water = scl: no SCL / QA_PIXEL next to the input images; give a water mask file or 'ndwi'"
        )
    return votes * 2 >= seen


def stable_ground(config: JobConfig, stack: ImageStack) -> StableGround:
    """Stable ground at the nodes: ``masks.stable``, else outside ``masks.glacier`` (where the glacier mask
    says anything); minus DEM slopes steeper than ``steep_slope_deg`` and water. Every mask is checked on the
    job grid first (overlap, CRS, emptiness).

    Raises
    ------
    InvalidInputError
        A mask or DEM file missing, unreadable, without CRS (the message names the config field).
    NoDataError
        A mask that does not overlap the images, a glacier mask over all of them, or no stable pixel left.
    """
    grid = stack.grid
    stable: NDArray[np.bool_] | None = None
    warnings: list[str] = []
    source = ""
    if config.masks.stable:
        stable, footprint, check = _checked_mask(config.masks.stable, grid, "masks.stable", "stable")
        stable = stable & footprint
        warnings += check.warnings
        source = f"masks.stable ({check.inside:.0%} of the grid)"
    elif config.masks.glacier:
        ice, footprint, check = _checked_mask(config.masks.glacier, grid, "masks.glacier", "glacier")
        stable = ~ice & footprint
        warnings += check.warnings
        source = f"outside masks.glacier ({1 - check.inside:.0%} of the grid)"
    if config.dem:
        if not Path(config.dem).is_file():
            raise InvalidInputError(f"dem: file {config.dem} not found")
        try:
            slope = slope_degrees(config.dem, grid)
        except CRSError:
            raise InvalidInputError(f"dem: {config.dem} has no CRS; georeference it first") from None
        if not np.isfinite(slope).any():
            raise NoDataError(f"dem: {config.dem} does not overlap the job grid; check the file and its CRS")
        flat = slope <= config.steep_slope_deg  # NaN (outside the DEM) is not flat
        stable = flat if stable is None else stable & flat
        source = (source + " and " if source else "") + f"DEM slopes <= {config.steep_slope_deg:g}°"
    water = _job_water(config, stack)
    if stable is not None and water is not None:
        stable = stable & ~water
    if stable is not None and not stable.any():
        raise NoDataError(
            f"no stable ground left on the job grid ({source}); check the masks (and masks.water) or the AOI"
        )
    for note in warnings:
        log.warning(note)
    nodes = None if stable is None else node_sample(stable, config).astype(bool)
    water_nodes = None if water is None else node_sample(water, config).astype(bool)
    if nodes is None:
        source = f"chosen per pair (corrections.reference = {config.corrections.reference})"
    return StableGround(nodes, water_nodes, source, tuple(warnings))


def stable_nodes(config: JobConfig, stack: ImageStack) -> NDArray[np.bool_] | None:
    """Stable-ground mask at the nodes (:func:`stable_ground`); None when the config gives no mask.

    Raises
    ------
    InvalidInputError, NoDataError
        See :func:`stable_ground`.
    """
    return stable_ground(config, stack).nodes


def reference_node_speed(config: JobConfig, stack: ImageStack) -> NDArray[np.float64]:
    """Speed (m/yr) of ``matching.reference_velocity`` at the nodes, bounded by ``expected_max_speed``
    (which also fills nodes without a reference value)."""
    m = config.matching
    if m.reference_velocity is None:
        raise InvalidInputError("matching.reference_velocity is not set: no reference speed to sample")
    speed = speed_on_grid(m.reference_velocity, stack.grid, what="matching.reference_velocity")
    nodes = node_sample(speed, config)
    return np.where(np.isfinite(nodes), np.minimum(nodes, m.expected_max_speed), m.expected_max_speed)


def search_ranges(
    config: JobConfig, stack: ImageStack, dt_days: float, node_speed: NDArray[np.float64] | None = None
) -> int | NDArray[np.int64]:
    """Search radius (px) for one pair: an int, or one per node from the reference velocity map.

    ``node_speed`` is the reference speed at the nodes (:func:`reference_node_speed`), read once per run;
    it is read here when not given.
    """
    m = config.matching
    if m.reference_velocity is None or m.search_range is not None:
        return search_range_px(m, dt_days=dt_days, pixel_m=stack.pixel_m)
    nodes = reference_node_speed(config, stack) if node_speed is None else node_speed
    metres = nodes * abs(dt_days) / DAYS_PER_YEAR + m.expected_max_displacement
    return np.maximum(2, np.ceil(1.5 * metres / stack.pixel_m) + 2).astype(np.int64)


def pair_specs(
    config: JobConfig,
    stack: ImageStack,
    network: PairNetwork,
    run_dir: Path,
    ground: StableGround | None = None,
    *,
    options: dict[str, Any] | None = None,
) -> list[PairSpec]:
    """One :class:`PairSpec` per pair of ``network``, writing ``<run_dir>/pairs/<ref>_<sec>_<key>.nc``.

    ``ground`` is the job's :func:`stable_ground` (computed here when not given); ``options`` are more matcher
    options (:attr:`PairSpec.options`).
    """
    ground = stable_ground(config, stack) if ground is None else ground
    stable, water = ground.nodes, ground.water
    m = config.matching
    node_speed = (
        reference_node_speed(config, stack)
        if m.reference_velocity is not None and m.search_range is None
        else None
    )
    mdict = {"method": m.method, "chip_size": m.chip_size, "step": m.step, "prefilter": m.prefilter}
    if m.smoothing_model != "plane":  # the default adds nothing to the key: earlier products are reused
        options = {**(options or {}), "smoothing_model": m.smoothing_model}
    if options:
        mdict["options"] = dict(options)
    cdict = config.corrections.model_dump()
    digests = [
        None if a is None else hashlib.sha1(np.packbits(a).tobytes()).hexdigest() for a in (stable, water)
    ]
    specs = []
    for k, (i, j) in enumerate(network.pairs):
        a, b = stack.acquisitions[int(i)], stack.acquisitions[int(j)]
        dt = float((b.date - a.date) / np.timedelta64(1, "D"))
        sr = search_ranges(config, stack, dt, node_speed)
        key = content_key(a.key, b.key, mdict, cdict, np.asarray(sr).tolist(), *digests, m.expected_max_speed,
                          m.expected_max_displacement)  # fmt: skip
        specs.append(
            PairSpec(
                reference=str(a.path),
                secondary=str(b.path),
                outputs={"netcdf": str(run_dir / "pairs" / f"{a.date}_{b.date}_{key[:8]}.nc")},
                stac=config.output.stac,  # written by the worker with the product: written once
                dates=AcquisitionDates(parse_date(str(a.date)), parse_date(str(b.date))),
                reference_name=a.id,
                secondary_name=b.id,
                method=m.method,
                chip_size=m.chip_size,
                step=m.step,
                search_range=sr,
                prefilter=m.prefilter,
                options=dict(options or {}),
                threads=config.compute.threads,
                corrections=config.corrections,
                stable=stable,
                water=water,
                masks=("none", "none"),  # the stack images are already masked (inputs[].mask, SCL, QA_PIXEL)
                expected_speed=m.expected_max_speed,
                expected_displacement=m.expected_max_displacement,
                attributes={"preset": config.preset, "stable_ground": ground.source},
                key=key,
                index=k,
                errors="record",
            )
        )
    return specs
