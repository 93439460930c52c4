"""Before a job matches anything: the checks that stop jobs that cannot work, and the cost estimate.

:func:`check_files` runs before the run folder is created, :func:`preflight` once the images are on their
grid: :func:`drop_unusable` checks every image in one pass (no data, constant, no texture, duplicates) and
drops the unusable ones with a warning (``preflight.drop_bad_images``), :func:`preflight` checks the search
range and the grid, :func:`estimate_resources` prints time, memory and disk.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
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
    "ImageCheck",
    "ResourceEstimate",
    "check_files",
    "check_images",
    "drop_unusable",
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
        digest = hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()
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
