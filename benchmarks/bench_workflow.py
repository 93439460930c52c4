"""Workflow benchmark: one full Sentinel-2 tile pair (10980 x 10980 uint16) through ``geodeform run``.

    python benchmarks/bench_workflow.py [--size 10980] [--workers 1] [--threads 2]

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


def main() -> None:
    import psutil
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
        me = psutil.Process()
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _tree_rss(me))
                time.sleep(0.1)

        load = os.getloadavg()[0]
        base = _tree_rss(me)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        estimates = []
        result = run_job(config, folder / "run", on_estimate=estimates.append)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
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
            f"peak RSS of the process tree {peak[0] / 2**30:.2f} GiB "
            f"(estimate {100 * (est.peak_memory_bytes / peak[0] - 1):+.0f} %; before the run "
            f"{base / 2**30:.2f} GiB), disk {disk / 2**20:.0f} MiB (estimate {est.disk_bytes / 2**20:.0f} MiB); "
            f"coverage {pair.coverage:.3f}"
        )


if __name__ == "__main__":
    main()
