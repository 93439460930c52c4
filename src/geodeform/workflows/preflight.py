"""Before a job matches anything: the checks that stop jobs that cannot work, and the cost estimate.

:func:`check_files` runs before the run folder is created, :func:`preflight` once the images are on their
grid (no scene, identical scenes, blank or textureless images, a search range too small or too large for the
expected motion, a grid smaller than a chip), :func:`estimate_resources` prints time, memory and disk.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geodeform.config import JobConfig, search_range_px
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.offsets import grid_shape
from geodeform.pairs import PairNetwork
from geodeform.workflows.stack import ImageStack, read_image

__all__ = [
    "NODES_PER_S_PER_THREAD",
    "ResourceEstimate",
    "check_files",
    "estimate_resources",
    "human_time",
    "preflight",
]

# Measured throughput of the ncc matcher (benchmarks/bench_offsets.py scene run: 469,225 nodes in 11.2 s on
# 2 cores, chip 32, search 16): nodes per second per thread at a search radius of 16 px.
NODES_PER_S_PER_THREAD = 20_000.0


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
        """One line for the console and the log: pairs, nodes, time, workers, memory, disk."""
        gib = self.peak_memory_bytes / 2**30
        mib_disk = self.disk_bytes / 2**20
        return (
            f"estimate: {self.pairs} pairs x {self.nodes_per_pair:,} nodes, ~{human_time(self.seconds)} on "
            f"{self.workers} worker(s), peak memory ~{gib:.1f} GiB, disk ~{mib_disk:.0f} MiB"
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
