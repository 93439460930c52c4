"""Before a job matches anything: the checks that stop jobs that cannot work, and the cost estimate.

:func:`check_files` runs before the run folder is created, :func:`preflight` once the images are on their
grid (no scene, identical scenes, blank or textureless images, a search range too small or too large for the
expected motion, a grid smaller than a chip), :func:`estimate_resources` prints time, memory and disk.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from numpy.typing import NDArray

from geodeform.config import JobConfig, search_range_px
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.offsets import grid_shape
from geodeform.pairs import PairNetwork
from geodeform.timeseries.chunked import INVERSION_MEMORY_BYTES
from geodeform.workflows.probe import PairProbe, invert_seconds
from geodeform.workflows.stack import ImageStack, read_image, sample_image

__all__ = [
    "NODES_PER_S_PER_THREAD",
    "PAIR_BYTES_PER_PIXEL",
    "ResourceEstimate",
    "check_files",
    "estimate_resources",
    "human_time",
    "preflight",
]

# Fallback only (no probe possible): throughput of the ncc matcher measured once (benchmarks/bench_offsets.py
# scene run: 469,225 nodes in 11.2 s on 2 cores, chip 32, search 16), nodes per second per thread.
NODES_PER_S_PER_THREAD = 20_000.0


@dataclass(frozen=True)
class ResourceEstimate:
    """Expected cost of a job on this machine (printed before it runs).

    Attributes
    ----------
    pairs, nodes_per_pair, workers
        Pairs of the job, matcher nodes per pair, pairs matched at once.
    seconds
        Expected wall time of the whole run, s (``elapsed`` included).
    peak_memory_bytes
        Expected peak memory of the run's whole process tree (this process and its local workers), bytes.
    disk_bytes
        Expected size of the run folder, bytes.
    pair_memory_bytes
        Expected peak memory of one worker process matching one pair, bytes.
    elapsed
        Seconds already spent (reading, checks, probe) when the estimate was made.
    calibrated
        True when scaled from a probe on this machine (:func:`~geodeform.workflows.probe.probe_pair`), False
        for the fallback throughputs (no probe possible).
    """

    pairs: int
    nodes_per_pair: int
    seconds: float
    peak_memory_bytes: int
    disk_bytes: int
    workers: int
    pair_memory_bytes: int = 0
    elapsed: float = 0.0
    calibrated: bool = False

    def describe(self) -> str:
        """One line for the console and the log: pairs, nodes, time, workers, memory, disk."""
        gib = self.peak_memory_bytes / 2**30
        mib_disk = self.disk_bytes / 2**20
        how = "from a probe on this machine" if self.calibrated else "uncalibrated"
        return (
            f"estimate ({how}): {self.pairs} pairs x {self.nodes_per_pair:,} nodes, "
            f"~{human_time(self.seconds)} on {self.workers} worker(s) ({human_time(self.elapsed)} done), "
            f"peak memory ~{gib:.1f} GiB ({self.pair_memory_bytes / 2**30:.1f} GiB per pair), "
            f"disk ~{mib_disk:.0f} MiB"
        )


def human_time(seconds: float) -> str:
    """A duration for people: seconds under 90 s, minutes under 1.5 h, else hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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


def _digest(img: NDArray[np.float32]) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(img)).cast("B")).hexdigest()


def preflight(config: JobConfig, stack: ImageStack, pairs: PairNetwork) -> list[str]:
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
    digests: dict[str, Any] = {}
    for a in acqs:
        img = sample_image(a.path)  # a quarter of the image; a failing check is confirmed on all of it
        valid, grad = _texture(img)
        if valid == 0 or grad == 0:
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
        digest = _digest(img)
        del img
        twin = digests.get(digest)
        if twin is not None and _digest(read_image(twin.path)) == _digest(read_image(a.path)):
            raise InvalidInputError(
                f"images {twin.id} and {a.id} ({a.date}) are identical: the same scene given twice; "
                "remove the duplicate"
            )
        digests[digest] = a
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


# Bytes per image pixel the pair chain holds at its peak beyond a probe strip: the reference and secondary
# as float32 (8) and the matcher's per-pixel validity and fill masks (~3); measured on a 10980^2 pair
# (benchmarks/bench_workflow.py: 1,677 MiB above the process for the tile, 454 MiB for a 1,024-row strip).
PAIR_BYTES_PER_PIXEL = 11.2


def _fallback_probe(config: JobConfig, stack: ImageStack) -> PairProbe:
    """What a probe would measure, from throughputs of a 2-core machine, when no probe could run."""
    m = config.matching
    rows, w = min(512, stack.grid.height), stack.grid.width
    nr, nc = grid_shape((rows, w), m.chip_size, m.step)
    nodes = nr * nc
    per_node = 1.0 / (NODES_PER_S_PER_THREAD * config.compute.threads)
    return PairProbe(
        rows=rows,
        width=w,
        nodes=nodes,
        search_range=16,
        stage_seconds={"read": rows * w * 3e-8, "match": nodes * per_node, "correct": nodes * 3e-6},
        base_rss=300 * 2**20,
        peak_increment=int(rows * w * PAIR_BYTES_PER_PIXEL + 150 * 2**20),
        product_bytes=nodes * 30,
        threads=config.compute.threads,
        cores=os.cpu_count() or 1,
    )


def estimate_resources(
    config: JobConfig,
    stack: ImageStack,
    n_pairs: int,
    workers: int,
    probe: PairProbe | None = None,
    *,
    search_ranges: list[int] | None = None,
    pairs: PairNetwork | None = None,
    elapsed: float = 0.0,
    in_process: bool = False,
) -> ResourceEstimate:
    """Time, peak memory and disk of a run, scaled from a probe measured where the pairs run.

    Parameters
    ----------
    probe
        One strip of a pair of the job through the pair chain (:func:`~geodeform.workflows.probe.probe_pair`);
        None falls back to throughputs measured once on a 2-core machine (``calibrated=False``).
    search_ranges
        Largest search radius of each pair, px: matching time grows linearly with it (coarse-to-fine search).
    pairs
        The network, to time its inversion on this machine
        (:func:`~geodeform.workflows.probe.invert_seconds`).
    elapsed
        Seconds the run has already spent (reading, checks, probe), added to the time.
    in_process
        The pairs run in this process (``sync``): no worker process of their own.

    Notes
    -----
    Time: each stage's fixed cost (:attr:`~geodeform.workflows.probe.PairProbe.stage_fixed`) once per
    pair, plus its growing part: read scales with the pixels of the image, matching with the nodes (and
    the search radius), the corrections and writing with the nodes; pairs run ``workers`` at a time,
    slowed in proportion when their threads exceed the cores. Memory: the worker's measured memory and the
    strip's measured peak, plus :data:`PAIR_BYTES_PER_PIXEL` for the rest of the image; the inversion
    works in spatial chunks of bounded
    memory. Disk: the probe's product size per node.
    """
    calibrated = probe is not None
    p = probe if probe is not None else _fallback_probe(config, stack)
    m = config.matching
    h, w = stack.grid.shape
    nr, nc = grid_shape((h, w), m.chip_size, m.step)
    nodes = nr * nc
    fixed = sum(p.stage_fixed.values())
    st = {k: max(0.0, v - p.stage_fixed.get(k, 0.0)) for k, v in p.stage_seconds.items()}  # grows with size
    px_ratio = h * w / max(1, p.rows * p.width)
    node_ratio = nodes / max(1, p.nodes)
    radii = np.asarray(search_ranges or [p.search_range], dtype=np.float64)
    radius_factor = float(np.mean((2 * radii + 1) / (2 * max(p.search_range, 1) + 1)))
    post = sum(st.get(k, 0.0) for k in ("correct", "product", "write"))
    per_pair = fixed + st.get("read", 0.0) * px_ratio
    per_pair += (st.get("match", 0.0) * radius_factor + post) * node_ratio
    parallel = max(1, min(workers, n_pairs))
    if config.compute.cluster in ("local", "sync"):
        per_pair *= max(1.0, parallel * p.threads / max(1, p.cores))  # more threads than cores share them
    dates = len(stack.acquisitions)
    invert_s = 0.0
    if config.inversion.enabled and pairs is not None and n_pairs > 1:
        inv = config.inversion
        rate = invert_seconds(stack.dates, pairs.pairs, smoothing=inv.smoothing or None, robust=inv.robust)
        invert_s = rate * nodes
    write_per_node = st.get("write", 0.0) / max(1, p.nodes)
    products_s = write_per_node * nodes * (3 + 0.4 * dates)  # velocity nc + tif, series (nc + zarr)
    seconds = elapsed + math.ceil(n_pairs / parallel) * per_pair + invert_s + products_s
    pair_peak = p.base_rss + p.peak_increment + int(PAIR_BYTES_PER_PIXEL * max(0, h * w - p.rows * p.width))
    main = _main_rss()
    if in_process:
        tree = main + pair_peak - p.base_rss
    else:
        tree = main + parallel * pair_peak
    tree = max(tree, _main_peak(), main + INVERSION_MEMORY_BYTES)
    product_per_node = p.product_bytes / max(1, p.nodes)
    series = 4 * 4 * dates * nodes * 0.6 * 2 if config.inversion.enabled else 0  # nc + zarr, compressed
    disk = n_pairs * product_per_node * nodes + 3 * product_per_node * nodes + series
    return ResourceEstimate(
        pairs=n_pairs,
        nodes_per_pair=nodes,
        seconds=seconds,
        peak_memory_bytes=int(tree),
        disk_bytes=int(disk),
        workers=workers,
        pair_memory_bytes=int(pair_peak),
        elapsed=elapsed,
        calibrated=calibrated,
    )


def _main_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _main_peak() -> int:
    """Peak RSS of this process so far (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
