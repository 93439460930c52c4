"""Before a job matches anything: the checks that stop jobs that cannot work, and the cost estimate.

:func:`check_files` runs before the run folder is created, :func:`preflight` once the images are on their
grid: :func:`drop_unusable` checks every image in one pass (no data, constant, no texture, duplicates) and
drops the unusable ones with a warning (``preflight.drop_bad_images``), :func:`preflight` checks the search
range and the grid, :func:`estimate_resources` prints time, memory and disk.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
from numpy.typing import NDArray

from geodeform.config import JobConfig, search_range_px
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.offsets import grid_shape
from geodeform.pairs import PairNetwork
from geodeform.timeseries.chunked import INVERSION_MEMORY_BYTES
from geodeform.workflows.probe import PairProbe, invert_seconds
from geodeform.workflows.stack import ImageStack, read_image

__all__ = [
    "NODES_PER_S_PER_THREAD",
    "PAIR_BYTES_PER_PIXEL",
    "SMALL_JOB_SECONDS",
    "ImageCheck",
    "ResourceEstimate",
    "check_files",
    "check_images",
    "drop_unusable",
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
        (f"inputs[{k}].mask", i.mask)
        for k, i in enumerate(config.inputs)
        if i.mask and i.mask.strip().lower() != "none"
    ]
    water = config.masks.water
    named += [("masks.water", water)] if water and water.lower() not in ("scl", "ndwi") else []
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


# Side of the blocks (px) whose contrast the texture test measures: about a matcher chip.
_BLOCK = 32
# A block is textured when its standard deviation exceeds this share of the series' typical block's.
_TEXTURE_SHARE = 0.5
# An image whose data is textured on less than this share is reported as partly usable (kept).
_PARTLY = 0.85


@dataclass(frozen=True)
class ImageCheck:
    """What the preflight found on one image of the stack.

    Attributes
    ----------
    id, date
        The acquisition.
    valid
        Share of the grid with data, 0-1.
    textured
        Share of the grid with data *and* contrast (32-px blocks whose standard deviation exceeds half the
        series' typical block's), 0-1: what the matcher can use.
    problem
        Why the image is unusable, in plain words (None when usable).
    warning
        Why it is only partly usable (None otherwise).
    """

    id: str
    date: str
    valid: float
    textured: float
    problem: str | None = None
    warning: str | None = None


def _block_std(img: NDArray[np.float32]) -> NDArray[np.float64]:
    """Standard deviation of every 32 x 32 block that is at least half valid (NaN for the others)."""
    h, w = img.shape
    b = min(_BLOCK, h, w)
    blocks = (
        img[: h // b * b, : w // b * b]
        .reshape(h // b, b, w // b, b)
        .swapaxes(1, 2)
        .reshape(h // b, w // b, -1)
    )
    ok = np.isfinite(blocks).mean(axis=-1) >= 0.5
    out = np.full(ok.shape, np.nan)
    if ok.any():
        out[ok] = np.nanstd(blocks[ok], axis=-1)
    return out


def check_images(config: JobConfig, stack: ImageStack) -> list[ImageCheck]:
    """Every image checked in one pass: no data, constant values, no texture (cloud, haze), duplicates.

    The texture test is relative to the series (a block is textured when its contrast exceeds half that of
    the series' typical block), so it holds for 8-bit JPEG frames as for 16-bit reflectances. An image with
    less than ``preflight.min_valid`` of the grid both covered and textured is unusable; one whose data is
    textured on less than 85 % is partly usable (kept, with a warning).
    """
    stats = []
    digests: dict[str, str] = {}
    for a in stack.acquisitions:
        img = read_image(a.path)
        valid = float(np.isfinite(img).mean())
        lo, hi = (float(np.nanmin(img)), float(np.nanmax(img))) if valid > 0 else (np.nan, np.nan)
        digest = _digest(img)
        stats.append((a, valid, lo, hi, _block_std(img), digests.get(digest)))
        digests.setdefault(digest, f"{a.id} ({a.date})")
        del img
    typical = np.nanmedian([np.nanmedian(s[4]) if np.isfinite(s[4]).any() else np.nan for s in stats])
    out = []
    for a, valid, lo, hi, blocks, twin in stats:
        textured = float(np.nansum(blocks > _TEXTURE_SHARE * typical) / blocks.size) if blocks.size else 0.0
        problem = warning = None
        if valid == 0:
            problem = "no data on the AOI (outside the scene, or every pixel masked as cloud / no data)"
        elif hi == lo:
            problem = f"textureless: constant values (every valid pixel is {lo:g})"
        elif twin is not None:
            problem = f"identical to image {twin}: the same scene given twice"
        elif textured < config.preflight.min_valid:
            problem = (
                f"textureless: only {textured:.0%} of the AOI has contrast ({valid:.0%} has data): cloud, "
                "haze, shadow or fresh snow over the rest"
            )
        elif textured < _PARTLY * valid:
            warning = (
                f"partly usable: {1 - textured / valid:.0%} of its data has no contrast (cloud, haze, shadow "
                f"or snow); {textured:.0%} of the AOI is matched"
            )
        elif valid < 0.2:
            warning = f"only {valid:.0%} of the AOI has data"
        out.append(ImageCheck(a.id, str(a.date), valid, textured, problem, warning))
    return out


def drop_unusable(config: JobConfig, stack: ImageStack) -> tuple[ImageStack, list[str]]:
    """The stack without its unusable images (:func:`check_images`), and the warnings to log.

    With ``preflight.drop_bad_images`` (the default) unusable images are dropped with a warning naming each
    and its reason; otherwise, or when fewer than two usable images remain, the job stops listing them all.

    Raises
    ------
    NoDataError
        Fewer than two images, or no usable one because none has data.
    InvalidInputError
        Unusable images (listed with their reasons) and dropping is off or leaves fewer than two.
    """
    acqs = stack.acquisitions
    if len(acqs) < 2:
        raise NoDataError(f"only {len(acqs)} acquisition(s); a job needs at least two dates")
    checks = check_images(config, stack)
    bad = [c for c in checks if c.problem]
    warnings = [f"image {c.id} ({c.date}) {c.warning}" for c in checks if c.warning]
    if not bad:
        return stack, warnings
    listing = "; ".join(f"{c.id} ({c.date}): {c.problem}" for c in bad)
    left = len(acqs) - len(bad)
    if not config.preflight.drop_bad_images or left < 2:
        why = (
            "set preflight.drop_bad_images: true to drop them and go on"
            if left >= 2
            else f"{left} usable image(s) left; a job needs two: remove them, move the AOI or add dates"
        )
        error = NoDataError if all(c.problem.startswith("no data") for c in bad) else InvalidInputError  # type: ignore[union-attr]
        raise error(f"{len(bad)} of {len(acqs)} images are unusable: {listing}. {why}")
    dropped = {c.id for c in bad}
    warnings = [f"image dropped, {c.id} ({c.date}): {c.problem}" for c in bad] + warnings
    kept = replace(stack, acquisitions=[a for a in acqs if a.id not in dropped])
    return kept, warnings


def _digest(img: NDArray[np.float32]) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(img)).cast("B")).hexdigest()


def preflight(config: JobConfig, stack: ImageStack, pairs: PairNetwork) -> list[str]:
    """Fail fast on jobs that cannot give a result; return warnings for the log.

    The images themselves are checked by :func:`drop_unusable` (run it first: it may drop some); here the
    search range and the grid size.

    Raises
    ------
    NoDataError
        Fewer than two acquisitions, or no pair.
    InvalidInputError
        A search range too small (or too large) for the expected motion, or a grid smaller than a chip.
    """
    warnings: list[str] = []
    acqs = stack.acquisitions
    if len(acqs) < 2:
        raise NoDataError(f"only {len(acqs)} acquisition(s); a job needs at least two dates")
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


SMALL_JOB_SECONDS = 30.0
"""A job whose matching the array-size model (:func:`estimate_resources` without a probe, throughputs of a
2-core machine) puts under this many seconds runs without a probe: the probe's three strips of a pair cost
about as much as one or two of its pairs (a 576 x 576 px demo pair: 896 rows of strips), more than what a
calibrated estimate of a job that short is worth; the memory and disk checks use the model's figures."""


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
