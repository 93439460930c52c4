"""What a job matches: the pair network, each pair's search range, the stable ground, one PairSpec per pair.

Everything here runs once per job in the main process; the specs (plain data and paths) then go to the
workers. A spec's ``key`` hashes every input its product depends on, so a rerun reuses finished pairs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geodeform.config import JobConfig, search_range_px
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import InvalidInputError
from geodeform.io import AcquisitionDates, parse_date, read_mask, slope_degrees, speed_on_grid
from geodeform.offsets import node_grid
from geodeform.pairs import PairNetwork, build_pairs
from geodeform.workflows.pair import PairSpec
from geodeform.workflows.stack import ImageStack, content_key

__all__ = [
    "build_network",
    "node_sample",
    "pair_specs",
    "reference_node_speed",
    "search_ranges",
    "stable_nodes",
]


def build_network(config: JobConfig, stack: ImageStack) -> PairNetwork:
    """The pairs of ``config.pairs`` over the stack's dates (within one orbit when ``same_orbit``)."""
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


def node_sample(mask: NDArray[Any], config: JobConfig) -> NDArray[Any]:
    """Value of a pixel map at the matcher's node centres (nearest pixel), shape of the node grid."""
    m = config.matching
    _, _, rc, cc = node_grid(mask.shape, (m.chip_size, m.chip_size), (m.step, m.step))
    return mask[np.ix_(np.rint(rc).astype(int), np.rint(cc).astype(int))]


def stable_nodes(config: JobConfig, stack: ImageStack) -> NDArray[np.bool_] | None:
    """Stable-ground mask at the nodes: ``masks.stable``, else outside ``masks.glacier``; minus DEM slopes
    steeper than ``steep_slope_deg``. None when the config gives none of them.

    Raises
    ------
    InvalidInputError
        A mask or DEM file missing or unreadable (the message names the config field).
    """
    grid = stack.grid
    stable: NDArray[np.bool_] | None = None
    if config.masks.stable:
        stable = read_mask(config.masks.stable, grid, what="masks.stable")
    elif config.masks.glacier:
        stable = ~read_mask(config.masks.glacier, grid, what="masks.glacier")
    if config.dem:
        if not Path(config.dem).is_file():
            raise InvalidInputError(f"dem: file {config.dem} not found")
        flat = slope_degrees(config.dem, grid) <= config.steep_slope_deg
        stable = flat if stable is None else stable & flat
    if stable is None:
        return None
    return node_sample(stable, config).astype(bool)


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


def pair_specs(config: JobConfig, stack: ImageStack, network: PairNetwork, run_dir: Path) -> list[PairSpec]:
    """One :class:`PairSpec` per pair of ``network``, writing ``<run_dir>/pairs/<ref>_<sec>_<key>.nc``."""
    stable = stable_nodes(config, stack)
    m = config.matching
    node_speed = (
        reference_node_speed(config, stack)
        if m.reference_velocity is not None and m.search_range is None
        else None
    )
    mdict = {"method": m.method, "chip_size": m.chip_size, "step": m.step, "prefilter": m.prefilter}
    cdict = config.corrections.model_dump()
    stable_digest = None if stable is None else hashlib.sha1(np.packbits(stable).tobytes()).hexdigest()
    specs = []
    for k, (i, j) in enumerate(network.pairs):
        a, b = stack.acquisitions[int(i)], stack.acquisitions[int(j)]
        dt = float((b.date - a.date) / np.timedelta64(1, "D"))
        sr = search_ranges(config, stack, dt, node_speed)
        key = content_key(a.key, b.key, mdict, cdict, np.asarray(sr).tolist(), stable_digest)
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
                threads=config.compute.threads,
                corrections=config.corrections,
                stable=stable,
                attributes={"preset": config.preset},
                key=key,
                index=k,
                errors="record",
            )
        )
    return specs
