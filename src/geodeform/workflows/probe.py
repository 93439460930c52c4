"""Short measurements on the machine that runs a job, from which its time and memory are estimated.

:func:`probe_pair` runs one strip of a real pair of the job through the whole pair chain
(:func:`~geodeform.workflows.pair.process_pair`: read, match, correct, build, write) on a worker, timing
each stage and sampling the process memory; :func:`invert_seconds` times the inversion of the job's pair
network on a few synthetic pixels. :func:`~geodeform.workflows.preflight.estimate_resources` scales both to
the job.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil
from numpy.typing import NDArray

from geodeform.io import read_grid
from geodeform.offsets import grid_shape
from geodeform.timeseries import TimeSeriesWarning, invert
from geodeform.workflows.pair import PairSpec, process_pair

__all__ = ["PairProbe", "invert_seconds", "probe_pair"]

_PROBE_ROWS = 512  # image rows of the measured strip (full width): ~5 % of a Sentinel-2 tile
_SMALL_ROWS = 128  # a second, shorter strip: what does not grow with the rows (opening, encoding) shows


@dataclass(frozen=True)
class PairProbe:
    """One strip of a pair through the pair chain, measured where the job's pairs run.

    Attributes
    ----------
    rows, width
        Image rows and columns of the strip.
    nodes
        Matcher nodes of the strip.
    search_range
        Largest search radius of the probed pair, pixels.
    stage_seconds
        Seconds of each stage of the strip (``read``, ``match``, ``correct``, ``product``, ``write``).
    stage_fixed
        The part of each stage's seconds that does not grow with the rows (file opening, encoding,
        fits of a fixed size...): the intercept of a line through this strip and a shorter one, clipped to
        ``[0, seconds of the shorter strip]``. The rest scales with the pair's size.
    base_rss
        Memory of the worker process before the strip, bytes.
    peak_increment
        Peak memory of the worker during the strip above ``base_rss``, bytes (sampled every 10 ms).
    product_bytes
        Size of the strip's pair product (NetCDF), bytes.
    threads
        Matcher threads.
    cores
        Cores the worker process sees.
    seconds
        Wall time of the whole probe (warm-up included).
    """

    rows: int
    width: int
    nodes: int
    search_range: int
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    stage_fixed: Mapping[str, float] = field(default_factory=dict)
    base_rss: int = 0
    peak_increment: int = 0
    product_bytes: int = 0
    threads: int = 1
    cores: int = 1
    seconds: float = 0.0


class _PeakSampler:
    """Largest RSS of this process while the ``with`` block runs."""

    def __init__(self, every: float = 0.01) -> None:
        self._proc = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._every)

    def __enter__(self) -> _PeakSampler:
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def probe_pair(spec: PairSpec) -> PairProbe:
    """Measure one full-width strip of ``spec`` through the pair chain (runs on a worker; ``spec`` picklable).

    A short warm-up strip first loads the compiled kernels, so the measured strips see what every later
    pair of the worker sees; a shorter strip then a full one are timed, to separate each stage's fixed
    cost from the part that grows with the pair. The strips' products go to a temporary folder next to
    the pair's output and are deleted.
    """
    t0 = time.perf_counter()
    grid = read_grid(spec.reference, band=spec.band)
    h, w = grid.shape
    radius = int(np.max(spec.search_range))
    margin = spec.chip_size + 2 * spec.step
    rows = min(h, max(_PROBE_ROWS, 4 * margin))
    first = max(0, (h - rows) // 2) // spec.step * spec.step  # node rows then line up with the pair's
    out_dir = Path(next(iter(spec.outputs.values()))).parent
    nr, nc = grid_shape((rows, w), spec.chip_size, spec.step)
    stable = spec.stable
    if stable is not None:
        k = first // spec.step
        stable = stable[k : k + nr] if stable.shape[0] >= k + nr else None
    with tempfile.TemporaryDirectory(prefix=".probe-", dir=out_dir) as tmp:
        common = {"key": None, "stac": False, "errors": "record", "index": -1, "stable": stable}
        warm = min(h, max(256, 2 * margin))  # the matcher's strip paths of the probe, compiled or loaded

        def head(n_rows: int) -> NDArray[np.bool_] | None:  # the stable-ground rows of a shorter strip
            return None if stable is None else stable[: grid_shape((n_rows, w), spec.chip_size, spec.step)[0]]

        process_pair(
            replace(
                spec,
                rows=(first, first + warm),
                outputs={"netcdf": f"{tmp}/w.nc"},
                **{**common, "stable": head(warm)},
            )
        )
        small = min(rows, max(_SMALL_ROWS, 2 * margin))
        short = process_pair(
            replace(
                spec,
                rows=(first, first + small),
                outputs={"netcdf": f"{tmp}/s.nc"},
                **{**common, "stable": head(small)},
            )
        )
        with _PeakSampler() as sampler:
            base = psutil.Process().memory_info().rss
            outcome = process_pair(
                replace(spec, rows=(first, first + rows), outputs={"netcdf": f"{tmp}/p.nc"}, **common)
            )
        product = Path(f"{tmp}/p.nc")
        size = product.stat().st_size if product.is_file() else 0
    fixed = {
        k: _intercept(small, short.stage_seconds.get(k, 0.0), rows, v)
        for k, v in outcome.stage_seconds.items()
    }
    return PairProbe(
        rows=rows,
        width=w,
        nodes=nr * nc,
        search_range=radius,
        stage_seconds=dict(outcome.stage_seconds),
        stage_fixed=fixed,
        base_rss=base,
        peak_increment=max(0, sampler.peak - base),
        product_bytes=size,
        threads=spec.threads or (os.cpu_count() or 1),
        cores=os.cpu_count() or 1,
        seconds=time.perf_counter() - t0,
    )


def _intercept(rows_a: int, seconds_a: float, rows_b: int, seconds_b: float) -> float:
    """Seconds at zero rows of the line through two strips' timings, within ``[0, min(a, b)]``."""
    if rows_b <= rows_a:
        return 0.0
    at_zero = (rows_b * seconds_a - rows_a * seconds_b) / (rows_b - rows_a)
    return float(min(max(at_zero, 0.0), seconds_a, seconds_b))


def invert_seconds(
    dates: NDArray[np.datetime64],
    pairs: NDArray[np.int64],
    *,
    smoothing: float | None,
    robust: bool,
    pixels: int = 1024,
) -> float:
    """Seconds per pixel of inverting the network ``pairs`` over ``dates`` (dx and dy), timed on
    ``pixels`` synthetic pixels (a steady motion plus noise) on this machine."""
    if len(pairs) == 0:
        return 0.0
    used = np.unique(pairs)
    remap = {int(old): new for new, old in enumerate(used)}
    p = np.array([[remap[int(a)], remap[int(b)]] for a, b in pairs], dtype=np.int64)
    t = (dates[used] - dates[used][0]).astype(np.float64)
    rng = np.random.default_rng(0)
    dt = (t[p[:, 1]] - t[p[:, 0]])[:, None]
    dx = (dt * 0.1 + rng.normal(0, 0.5, (len(p), pixels))).astype(np.float32)
    dy = (dt * -0.05 + rng.normal(0, 0.5, (len(p), pixels))).astype(np.float32)
    with warnings.catch_warnings():  # about the synthetic pixels, not the user's data: not shown
        warnings.simplefilter("ignore", TimeSeriesWarning)
        invert(dates[used], p, dx[:, :16], dy[:, :16], smoothing=smoothing, robust=robust)  # compile / load
        start = time.perf_counter()
        invert(dates[used], p, dx, dy, smoothing=smoothing, robust=robust, return_residuals=False)
        return (time.perf_counter() - start) / pixels
