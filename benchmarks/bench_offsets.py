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
from pathlib import Path

import numpy as np


def _texture(size: int, dtype: type = np.float32) -> np.ndarray:
    from geodeform.demo import load_texture

    tex = load_texture().astype(dtype)
    reps = -(-size // tex.shape[0])
    # mirrored tiling keeps the texture continuous across tile seams
    tile = np.block([[tex, tex[:, ::-1]], [tex[::-1], tex[::-1, ::-1]]])
    return np.tile(tile, (reps, reps))[:size, :size]


def _peerbench() -> object | None:
    """The shared peer harness (../shared/peerbench), whose opencv_ncc adapter is the reference peer."""
    path = Path(__file__).resolve().parents[2] / "shared" / "peerbench"
    if not (path / "peerbench.py").exists():
        return None
    sys.path.insert(0, str(path))
    import peerbench

    return peerbench


def speed(size: int = 1024, repeats: int = 15) -> None:
    """Nodes/s of geodeform ``ncc`` and of peerbench's ``opencv_ncc`` adapter, same pairs, one thread,
    ``repeats`` alternated calls: best of each, and the ratio of each back-to-back pair of calls."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    pb = _peerbench()
    try:
        import cv2
    except ImportError:
        cv2 = None
    if pb is None or cv2 is None:
        print("speed: skipped (needs ../shared/peerbench and opencv-python-headless, e.g. its venv)")
        return
    from geodeform.offsets import match

    cv2.setNumThreads(1)
    tex = pb.read_image(pb.find_texture())
    chip, step = 32, 16
    print(
        "| case | search | opencv_ncc nodes/s | geodeform nodes/s | ratio of bests | paired ratio: lowest, "
        "10th pct, median |\n|---|---:|---:|---:|---:|---:|"
    )
    for name in pb.SYNTH:
        case = pb.make_synthetic(name, tex, size)
        search = int(np.ceil(case["dmax"])) + 4
        ref, sec = case["ref"], case["sec"]

        def peer(ref: np.ndarray = ref, sec: np.ndarray = sec, search: int = search) -> int:
            return int(np.asarray(pb.run_opencv_ncc(ref, sec, chip, step, search)[2]).size)

        def ours(ref: np.ndarray = ref, sec: np.ndarray = sec, search: int = search) -> int:
            return match(ref, sec, chip_size=chip, step=step, search_range=search, threads=1).dx.size

        fns = (peer, ours)
        nodes = [fn() for fn in fns]  # warm-up (JIT, caches)
        times = np.empty((repeats, 2))
        # alternate the two so that the host's speed swings (up to 2x on a shared VM, over seconds) hit
        # both alike; a back-to-back pair of calls sees nearly the same machine
        for r in range(repeats):
            for k, fn in enumerate(fns):
                t = time.perf_counter()
                fn()
                times[r, k] = time.perf_counter() - t
        best = times.min(axis=0)
        rates = [n / b for n, b in zip(nodes, best, strict=True)]
        paired = (nodes[1] / times[:, 1]) / (nodes[0] / times[:, 0])
        lo, p10, med = np.min(paired), np.percentile(paired, 10), np.median(paired)
        print(
            f"| {name} | {search} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[1] / rates[0]:.2f} | "
            f"{lo:.2f}, {p10:.2f}, {med:.2f} |"
        )


def scene(size: int = 10980, threads: int | None = None) -> None:
    from geodeform.offsets import match

    ref = _texture(size, np.uint16)  # real Landsat texture, mirrored tiles, uint16 like Sentinel-2 L1C/L2A
    # a sub-pixel shift without a full-scene FFT: the mean of two integer shifts is the image moved by
    # (2.5, -1) px (and smoothed by a symmetric [1, 1]/2 kernel, which does not move it)
    sec = np.roll(ref, (2, -1), (0, 1)).astype(np.uint32)
    sec += np.roll(ref, (3, -1), (0, 1))
    sec = (sec // 2).astype(np.uint16)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t = time.perf_counter()
    f = match(ref, sec, chip_size=32, step=16, search_range=8, threads=threads)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    ok = np.isfinite(f.dx)
    err = np.hypot(f.dx[ok] + 1, f.dy[ok] - 2.5)
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
