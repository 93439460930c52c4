"""Offset-engine benchmarks: throughput against OpenCV NCC in the same process, and a full-scene run.

    python benchmarks/bench_offsets.py speed        # geodeform ncc vs cv2.matchTemplate, one thread
    python benchmarks/bench_offsets.py scene        # 10980 x 10980 uint16 pair, step 16: time + peak RSS

``speed`` needs opencv-python-headless (the peer); it is skipped with a message when missing. The full
comparison against every peer (accuracy and speed) is ``../shared/peerbench`` (see docs/benchmarks.md).
"""

from __future__ import annotations

import os
import resource
import sys
import time

import numpy as np


def _texture(size: int, dtype: type = np.float32) -> np.ndarray:
    from geodeform.demo import load_texture

    tex = load_texture().astype(dtype)
    reps = -(-size // tex.shape[0])
    # mirrored tiling keeps the texture continuous across tile seams
    tile = np.block([[tex, tex[:, ::-1]], [tex[::-1], tex[::-1, ::-1]]])
    return np.tile(tile, (reps, reps))[:size, :size]


def speed(size: int = 1024, search: int = 5, repeats: int = 3) -> None:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    try:
        import cv2
    except ImportError:
        print("speed: skipped (pip install opencv-python-headless to compare with cv2.matchTemplate)")
        return
    from geodeform.offsets import match

    cv2.setNumThreads(1)
    ref = _texture(size)
    sec = np.roll(ref, (1, -2), (0, 1))
    chip, step = 32, 16

    def opencv() -> int:
        n = 0
        for r in range(search, size - chip - search + 1, step):
            for c in range(search, size - chip - search + 1, step):
                win = sec[r - search : r + chip + search, c - search : c + chip + search]
                cv2.minMaxLoc(cv2.matchTemplate(win, ref[r : r + chip, c : c + chip], cv2.TM_CCOEFF_NORMED))
                n += 1
        return n

    def ours() -> int:
        return match(ref, sec, chip_size=chip, step=step, search_range=search, threads=1).dx.size

    for fn in (opencv, ours):
        fn()  # warm-up (JIT, FFT plans)
    rates = {}
    for name, fn in (("opencv_ncc", opencv), ("geodeform_ncc", ours)):
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            n = fn()
            best = min(best, time.perf_counter() - t)
        rates[name] = n / best
        print(f"{name:14s} {n} nodes in {best:.3f} s = {n / best:,.0f} nodes/s (1 thread)")
    print(f"ratio geodeform/opencv: {rates['geodeform_ncc'] / rates['opencv_ncc']:.2f}")


def scene(size: int = 10980, threads: int | None = None) -> None:
    from geodeform.offsets import match

    ref = _texture(size, np.uint16)  # real Landsat texture, mirrored tiles, uint16 like Sentinel-2 L1C/L2A
    sec = np.roll(ref, (2, -1), (0, 1))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t = time.perf_counter()
    f = match(ref, sec, chip_size=32, step=16, search_range=8, threads=threads)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    ok = np.isfinite(f.dx)
    err = np.hypot(f.dx[ok] + 1, f.dy[ok] - 2)
    print(
        f"scene {size}x{size} uint16, step 16: {f.dx.size:,} nodes in {dt:.1f} s "
        f"({f.dx.size / dt:,.0f} nodes/s, {os.cpu_count()} cores), coverage {ok.mean():.3f}, "
        f"median error {np.median(err):.4f} px"
    )
    print(
        f"peak RSS {rss:.2f} GiB (inputs alone {2 * ref.nbytes / 2**30:.2f} GiB, "
        f"before matching {rss0:.2f} GiB)"
    )


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "speed"
    {"speed": speed, "scene": scene}[what]()
