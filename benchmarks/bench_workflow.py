"""Workflow benchmarks: a Sentinel-2 tile pair through ``geodeform run``; a long series inverted from disk.

    python benchmarks/bench_workflow.py [--size 10980] [--workers 1] [--threads 2]
    python benchmarks/bench_workflow.py series [--dates 250] [--per-date 4] [--nodes 1000] [--keep DIR]
    python benchmarks/bench_workflow.py scaling [--slurm-jobs 1 2 4]   (SLURM_CONF set for the SLURM rows)

``scaling``: the same 15-pair job (the demo's six dates, ``ice`` preset) on a LocalCluster of 1 and 2 workers
and on 1, 2, 4 SLURM worker jobs of one core each; prints the wall time of each run, of its matching stage
and the speed-up against one local worker (each run in a fresh folder, so every pair is computed).

``series``: writes synthetic pair products (``dx``, ``dy`` in m of a known smooth flow plus noise, holes and a
few bad pairs) for ``dates`` dates, each paired with the next ``per-date`` ones, on a ``nodes`` x ``nodes``
grid, then inverts them with :func:`geodeform.timeseries.chunked.invert_products` (block by block from disk
into a Zarr store, then the NetCDF copy), and prints the time, the peak RSS of the process tree, the disk
used and the velocity error against the truth.

Writes the pair as GeoTIFFs (real Landsat texture, mirrored tiles, moved by a sub-pixel shift), then in one
process: times ``offsets.match`` alone on the pair (the peer: the job cannot be faster than its matcher),
runs the ``ice`` preset (step 16) job on it, and prints the job / matcher ratio, where the job's time went
(run.log stages and the pair's own stages), and the resource estimate printed before matching next to what
was measured: wall time, the peak of the summed RSS of the run's whole process tree (main process + any Dask
workers, sampled every 0.1 s) and the disk used by the run folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _tree_rss(proc) -> int:  # type: ignore[no-untyped-def]
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class _PeakRss:
    """Samples the summed RSS of this process and its children every 0.1 s in a thread, from ``start()``
    to ``stop()``: ``base`` (at the start) and ``peak`` in bytes."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.base = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self._me))
            time.sleep(0.1)

    def start(self) -> _PeakRss:
        self.base = _tree_rss(self._me)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _write_products(task: tuple) -> None:  # type: ignore[type-arg]
    """Write a share of the synthetic pair products (run in a process pool)."""
    from geodeform.io import write_netcdf

    template, items, n, seed = task
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] / n
    vx = 200 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.05)  # m/yr, a glacier-like bump
    vy = -0.5 * vx
    for path, dt_days, bad in items:
        years = dt_days / 365.25
        dx = vx * years + rng.normal(0, 0.5, (n, n))
        dy = vy * years + rng.normal(0, 0.5, (n, n))
        if bad:
            dx += 20.0  # a mis-registered pair
        hole = rng.random((n, n)) < 0.05
        dx[hole] = np.nan
        dy[hole] = np.nan
        ds = template.copy()
        ds["dx"] = (("y", "x"), np.round(dx, 2).astype(np.float32), template["dx"].attrs)
        ds["dy"] = (("y", "x"), np.round(dy, 2).astype(np.float32), template["dy"].attrs)
        write_netcdf(ds, path)


def series(argv: list[str]) -> None:
    """The 250-date inversion benchmark (see the module docstring)."""
    import shutil
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import dataclass

    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from geodeform.io import GeoGrid, offset_dataset
    from geodeform.timeseries.chunked import invert_products

    ap = argparse.ArgumentParser(prog="bench_workflow.py series")
    ap.add_argument("--dates", type=int, default=250)
    ap.add_argument("--per-date", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--keep", type=Path, default=None, help="folder of products to reuse / keep")
    ap.add_argument("--write-only", action="store_true", help="only write the products (into --keep)")
    args = ap.parse_args(argv)
    n, step = args.nodes, 16
    folder = args.keep or Path(tempfile.mkdtemp(prefix="gd-series-"))
    folder.mkdir(parents=True, exist_ok=True)
    dates = np.datetime64("2018-01-01") + 6 * np.arange(args.dates)
    pairs = [(i, j) for i in range(args.dates) for j in range(i + 1, min(args.dates, i + 1 + args.per_date))]
    rng = np.random.default_rng(1)
    bad = rng.random(len(pairs)) < 0.02

    @dataclass
    class Field:
        rows: np.ndarray
        cols: np.ndarray
        dx: np.ndarray
        dy: np.ndarray
        quality: np.ndarray
        reason: np.ndarray

    z = np.zeros((n, n), np.float32)
    centres = 16 + step * np.arange(n, dtype=np.float64)
    image = GeoGrid(CRS.from_epsg(32607), from_origin(500000, 6800000, 10, 10), (16 * n + 32, 16 * n + 32))
    template = offset_dataset(Field(centres, centres, z, z, z + 1, z.astype(np.uint8)), image, step=step)
    template = template[["dx", "dy", "mapping"]]
    paths = [folder / f"pair_{i:03d}_{j:03d}.nc" for i, j in pairs]
    todo = [
        (p, float((dates[j] - dates[i]) / np.timedelta64(1, "D")), bool(b))
        for p, (i, j), b in zip(paths, pairs, bad, strict=True)
        if not p.is_file()
    ]
    t0 = time.perf_counter()
    if todo:
        shares = [(template, todo[k::2], n, k) for k in range(2)]
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_write_products, shares))
    print(f"{len(pairs)} pair products ({len(todo)} written in {time.perf_counter() - t0:.0f} s) in {folder}")
    products_disk = sum(p.stat().st_size for p in paths)
    if args.write_only:
        print(f"  disk: pair products {products_disk / 2**30:.2f} GiB")
        return
    load = os.getloadavg()[0]
    rss = _PeakRss().start()
    store = folder / "timeseries.zarr"
    t0 = time.perf_counter()
    c0 = time.process_time()

    def progress(done: int, total: int) -> None:
        print(
            f"  rows {done}/{total}: {time.perf_counter() - t0:.0f} s wall, "
            f"{time.process_time() - c0:.0f} s CPU, peak RSS so far {rss.peak / 2**30:.2f} GiB, "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )

    inv = invert_products(paths, dates, np.array(pairs), store, robust=True, progress=progress)
    invert_s = time.perf_counter() - t0
    invert_cpu = time.process_time() - c0
    from geodeform.io import series_netcdf

    t1 = time.perf_counter()
    series_netcdf(store, folder / "timeseries.nc")
    netcdf_s = time.perf_counter() - t1
    total_cpu = time.process_time() - c0
    rss.stop()
    store_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    nc_disk = (folder / "timeseries.nc").stat().st_size
    yy, xx = np.mgrid[0:n, 0:n] / n
    vx = 200 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.05)
    err = np.hypot(inv.composite.vx - vx, inv.composite.vy + 0.5 * vx)
    print(
        f"{args.dates} dates, {len(pairs)} pairs ({bad.sum()} mis-registered), {n} x {n} nodes, 2 cores; "
        f"load average at start {load:.1f}"
    )
    print(
        f"  inversion (blocks of {inv.chunk_rows} rows, from disk into Zarr): {invert_s:.0f} s wall, "
        f"{invert_cpu:.0f} s CPU; NetCDF copy of the series: {netcdf_s:.0f} s wall; "
        f"CPU of the whole run {total_cpu:.0f} s; load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(f"  peak RSS of the process tree {rss.peak / 2**30:.2f} GiB (before {rss.base / 2**30:.2f} GiB)")
    print(
        f"  disk: pair products {products_disk / 2**30:.2f} GiB, Zarr store {store_disk / 2**30:.2f} GiB, "
        f"NetCDF {nc_disk / 2**30:.2f} GiB"
    )
    print(
        f"  mean velocity vs truth: median error {np.nanmedian(err):.2f} m/yr, "
        f"99th percentile {np.nanpercentile(err, 99):.2f} m/yr, {np.isfinite(err).mean():.1%} of the nodes"
    )
    if args.keep is None:
        shutil.rmtree(folder)


def scaling(argv: list[str]) -> None:
    """The scaling table (see the module docstring)."""
    import re
    import shutil

    import yaml

    from geodeform.cli.demo import write_demo_inputs
    from geodeform.config import load_config
    from geodeform.demo import make_glacier_series
    from geodeform.workflows import run_job

    ap = argparse.ArgumentParser(prog="bench_workflow.py scaling")
    ap.add_argument("--slurm-jobs", type=int, nargs="*", default=[1, 2, 4])
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="gd-scaling-"))
    data = yaml.safe_load(write_demo_inputs(folder / "in", make_glacier_series(n_dates=6)).read_text())
    data["output"] = {"report": False}
    # The first run compiles the numba kernels (cached on disk): a warm-up, not counted.
    runs = [("warm-up", {"cluster": "local", "workers": 1, "threads": 1})]
    runs += [("local", {"cluster": "local", "workers": w, "threads": 1}) for w in (1, 2)]
    if os.environ.get("SLURM_CONF"):
        for jobs in args.slurm_jobs:
            slurm = {"cores": 1, "memory": "2GB", "jobs": jobs, "walltime": "00:20:00", "queue": "debug"}
            runs.append(("slurm", {"cluster": "slurm", "threads": 1, "slurm": slurm}))
    print(f"15-pair demo job, load average at start {os.getloadavg()[0]:.1f}")
    print("| backend | workers | wall (s) | matching stage (s) | speed-up of the matching stage |")
    print("|---|---:|---:|---:|---:|")
    first = None
    for k, (kind, compute) in enumerate(runs):
        run = folder / f"run{k}"
        result = run_job(load_config({**data, "name": f"scaling{k}", "compute": compute}), run)
        log = (run / "run.log").read_text()
        match_s = float(re.findall(r"stage match: ([0-9.]+) s", log)[-1])
        assert all(p.status == "ok" for p in result.pairs)
        if kind == "warm-up":
            continue
        first = first or match_s
        workers = compute.get("workers") or compute.get("slurm", {}).get("jobs")
        print(f"| {kind} | {workers} | {result.seconds:.1f} | {match_s:.1f} | {first / match_s:.2f} |")
    shutil.rmtree(folder)


def main() -> None:
    import rasterio
    from rasterio.transform import from_origin

    from geodeform.config import load_config, search_range_px
    from geodeform.demo import load_texture
    from geodeform.io import fill_values, read_pair
    from geodeform.offsets import match
    from geodeform.workflows import run_job

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    n = args.size
    tex = load_texture()
    tile = np.block([[tex, tex[:, ::-1]], [tex[::-1], tex[::-1, ::-1]]])
    reps = -(-n // tile.shape[0])
    ref = np.tile(tile, (reps, reps))[:n, :n]
    # secondary: a half-pixel shift (mean of two integer rolls) -> every node moves 0.5 px down, 1 px left
    sec = ((np.roll(ref, (0, -1), (0, 1)).astype(np.uint32) + np.roll(ref, (1, -1), (0, 1))) // 2).astype(
        np.uint16
    )
    with tempfile.TemporaryDirectory(prefix="gd-bench-") as tmp:
        folder = Path(tmp)
        inputs = []
        for name, img, day in (("ref", ref, "2023-07-01"), ("sec", sec, "2023-07-11")):
            path = folder / f"{name}.tif"
            profile = dict(
                driver="GTiff",
                width=n,
                height=n,
                count=1,
                dtype="uint16",
                crs="EPSG:32632",
                transform=from_origin(300000, 5100000, 10, 10),
                tiled=True,
                compress="deflate",
            )
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(img, 1)
            inputs.append({"path": str(path), "date": day})
        del ref, sec
        config = load_config(
            {
                "name": "bench",
                "preset": "ice",
                "inputs": inputs,
                "compute": {"cluster": "local", "workers": args.workers, "threads": args.threads},
                "output": {"report": False},
            }
        )
        m = config.matching
        radius = search_range_px(m, dt_days=10, pixel_m=10.0)
        pair = read_pair(inputs[0]["path"], inputs[1]["path"])
        kw = dict(chip_size=m.chip_size, step=m.step, search_range=radius, threads=args.threads)
        match(pair.reference.data[:512], pair.secondary.data[:512], **kw)  # kernels loaded, as in the job
        t0 = time.perf_counter()
        field = match(pair.reference.data, pair.secondary.data, fill_values=fill_values(pair), **kw)
        match_s = time.perf_counter() - t0
        del pair, field
        load = os.getloadavg()[0]
        rss = _PeakRss().start()
        t0 = time.perf_counter()
        estimates = []
        result = run_job(config, folder / "run", on_estimate=estimates.append)
        wall = time.perf_counter() - t0
        rss.stop()
        print((folder / "run" / "run.log").read_text())
        disk = sum(p.stat().st_size for p in (folder / "run").rglob("*") if p.is_file())
        est = estimates[0]
        pair = result.pairs[0]
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in pair.stage_seconds.items())
        print(
            f"tile pair {n} x {n} uint16, step 16 (search {radius} px), {args.workers} worker(s) x "
            f"{args.threads} thread(s); load average at start {load:.1f}"
        )
        print(
            f"  offsets.match alone: {match_s:.1f} s; job: {wall:.1f} s = {wall / match_s:.2f} x the matcher"
        )
        print(f"  the pair's stages: {stages}")
        print(f"  {est.describe()}")
        print(
            f"  measured: {wall:.0f} s wall (estimate {100 * (est.seconds / wall - 1):+.0f} %), "
            f"peak RSS of the process tree {rss.peak / 2**30:.2f} GiB "
            f"(estimate {100 * (est.peak_memory_bytes / rss.peak - 1):+.0f} %; before the run "
            f"{rss.base / 2**30:.2f} GiB), disk {disk / 2**20:.0f} MiB "
            f"(estimate {est.disk_bytes / 2**20:.0f} MiB); "
            f"coverage {pair.coverage:.3f}"
        )


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["series"]:
        series(sys.argv[2:])
    elif sys.argv[1:2] == ["scaling"]:
        scaling(sys.argv[2:])
    else:
        main()
