"""Workflow benchmark: one full Sentinel-2 tile pair (10980 x 10980 uint16) through ``geodeform run``.

    python benchmarks/bench_workflow.py [--size 10980] [--workers 1] [--threads 2]

Writes the pair as GeoTIFFs (real Landsat texture, mirrored tiles, moved by a sub-pixel shift plus a glacier
flow), runs the ``ice`` preset (step 16) through a Dask LocalCluster, and prints the resource estimate next
to what was measured: wall time and the peak of the summed RSS of the run's whole process tree (main process
+ Dask workers, sampled every 0.1 s), plus the disk used by the run folder.
"""

from __future__ import annotations

import argparse
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

    from geodeform.config import load_config
    from geodeform.demo import glacier_field, load_texture
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
    del glacier_field
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
        me = psutil.Process()
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _tree_rss(me))
                time.sleep(0.1)

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
        print(f"tile pair {n} x {n} uint16, step 16, {args.workers} worker(s) x {args.threads} thread(s)")
        print(f"  {est.describe()}")
        print(
            f"  measured: {wall:.0f} s wall (matching + corrections of the pair {pair.seconds:.0f} s), "
            f"peak RSS of the process tree {peak[0] / 2**30:.2f} GiB "
            f"(before the run {base / 2**30:.2f} GiB), "
            f"disk {disk / 2**20:.0f} MiB; coverage {pair.coverage:.3f}"
        )


if __name__ == "__main__":
    main()
