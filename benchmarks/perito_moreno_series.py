"""Real-data run: the Perito Moreno series (GIV example, 23 Sentinel-2 frames, Jan-Mar 2020) through ``ice``.

Run:  nice .venv/bin/python benchmarks/perito_moreno_series.py [--work DIR] [--dates 20200101,...]

The frames are RGB JPEGs without georeferencing (GPL-3.0, ``../shared/data/perito_moreno_s2``; contains
modified Copernicus Sentinel data [2020]). They are written as GeoTIFFs into ``--work`` (never into the
repository) under a stated assumption: north up, 10 m pixels, UTM 18S (see ``tests/_real_scenes.py``);
black (0) is no data, band 1 (red) is matched, ``mask.jpg`` is the glacier outline. Speeds scale with the
assumed pixel size.

Prints what the preflight reported (one run), the pairs (ok, degraded with the reason, failed), and for
every ok pair the ratio of its trunk speed to the composite's (trunk: glacier nodes faster than the
composite's median on the glacier, seen by the pair). The target: no pair below 0.7 unless degraded.
``docs/scripts/gallery.py --perito WORK`` then draws the gallery figures from the finished run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

ATTRIBUTION = (
    "Perito Moreno frames: GIV example (Van Wyk de Vries & Wickert, GPL-3.0); contains modified Copernicus "
    "Sentinel data [2020]. Assumed 10 m pixels, north up."
)


def trunk_ratios(run: Path, glacier: np.ndarray) -> list[dict[str, object]]:
    """Per ok pair: median of (pair speed / composite speed) over the trunk nodes the pair saw."""
    import xarray as xr

    from geodeform.config import load_config
    from geodeform.workflows.plan import node_sample

    with xr.open_dataset(run / "velocity.nc") as vel:
        comp = vel["v"].values
        count = vel["count"].values
    config = load_config(run / "config.yaml")
    ice = node_sample(glacier, config).astype(bool)
    ice = ice[: comp.shape[0], : comp.shape[1]]
    seen = ice & np.isfinite(comp) & (count >= 3)
    trunk = seen & (comp >= np.nanmedian(comp[seen]))
    rows = []
    for path in sorted((run / "pairs").glob("*.nc")):
        with xr.open_dataset(path) as ds:
            v = ds["v"].values if "v" in ds else None
            degraded = str(ds.attrs.get("geodeform_degraded", ""))
            coreg = json.loads(ds.attrs.get("geodeform_coregistration", '{"source": "none"}'))["source"]
            network = json.loads(ds.attrs.get("geodeform_network_check", "{}"))
        if v is None:
            continue
        both = trunk & np.isfinite(v)
        ratio = float(np.median(v[both] / comp[both])) if both.sum() >= 20 else float("nan")
        rows.append(
            {"pair": path.stem[:21], "ratio": ratio, "nodes": int(both.sum()), "degraded": degraded,
             "coregistration": coreg, "network_ratio": network.get("ratio"),
             "network_nodes": network.get("nodes"), "network_flagged": bool(network.get("flagged"))}
        )  # fmt: skip
    return rows


def composite_without(result: object, flagged: set[str], v: np.ndarray, work: Path) -> None:
    """The composite inverted again without the flagged pairs (the job keeps them): how much it moves."""
    import tempfile

    from geodeform.workflows.products import invert_pairs

    keep = [p for p in result.pairs if f"{p.reference}_{p.secondary}" not in flagged]  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        inv = invert_pairs(result.config, result.stack, keep, None, Path(tmp) / "ts.zarr")  # type: ignore[attr-defined]
    w = inv.composite.v
    both = np.isfinite(v) & np.isfinite(w)
    change = np.abs(w[both] - v[both]) / np.maximum(v[both], 1.0)
    print(
        f"composite without the {len(flagged)} flagged pairs: median speed {np.median(w[both]):.0f} m/yr "
        f"(with them {np.median(v[both]):.0f} over the same {both.sum()} pixels); per-pixel change: median "
        f"{100 * np.median(change):.1f} %, 95th percentile {100 * np.percentile(change, 95):.1f} %"
    )


def main() -> None:
    import yaml
    from PIL import Image

    from _real_scenes import PERITO, PERITO_PIXEL_M, perito_moreno_inputs
    from geodeform.config import load_config
    from geodeform.workflows import run_job

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/geodeform-perito"))
    ap.add_argument("--dates", default=None, help="comma-separated YYYYMMDD subset (default: all 23)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not PERITO.is_dir():
        sys.exit(f"shared data not found: {PERITO}")
    frames, mask = perito_moreno_inputs(
        args.work / "inputs", dates=args.dates.split(",") if args.dates else None
    )
    job = {
        "name": "perito-moreno",
        "preset": "ice",
        "inputs": [str(f) for f in frames],
        "masks": {"glacier": str(mask)},
        "compute": {"cluster": "local", "workers": args.workers},
    }
    (args.work / "job.yaml").write_text(yaml.safe_dump(job))
    t0 = time.perf_counter()
    result = run_job(load_config(job), args.work / "run")
    print(ATTRIBUTION)
    print(f"{len(frames)} frames, {PERITO_PIXEL_M:g} m pixels assumed; run {time.perf_counter() - t0:.0f} s")
    print("\npreflight (one run):")
    for w in result.warnings:
        if not w.startswith(("network check", "date ")):
            print("  ", w)
    ok = [p for p in result.pairs if p.status == "ok"]
    degraded = [p for p in ok if p.degraded]
    failed = [p for p in result.pairs if p.status != "ok"]
    print(
        f"\npairs: {len(result.pairs)} formed, {len(ok)} ok ({len(degraded)} degraded), {len(failed)} failed"
    )
    for p in degraded:
        print(f"   degraded {p.reference} -> {p.secondary}: {p.degraded}")
    for p in failed:
        print(f"   failed   {p.reference} -> {p.secondary}: {p.message}")
    glacier = np.asarray(Image.open(PERITO / "mask.jpg").convert("L")) > 127
    rows = trunk_ratios(args.work / "run", glacier)
    ratios = np.array([r["ratio"] for r in rows], dtype=float)
    low = [r for r in rows if np.isfinite(r["ratio"]) and r["ratio"] < 0.7]
    unmarked = [r for r in low if not r["degraded"]]
    finite = ratios[np.isfinite(ratios)]
    print(
        f"\ntrunk speed / composite over {finite.size} pairs with >= 20 trunk nodes: median "
        f"{np.median(finite):.2f}, 5th percentile {np.percentile(finite, 5):.2f}, min {finite.min():.2f}; "
        f"below 0.7: {len(low)} "
        f"({len(unmarked)} not marked degraded)"
    )
    for r in low:
        print(f"   {r['pair']}: {r['ratio']:.2f} over {r['nodes']} nodes, {r['degraded'] or 'NOT degraded'}")
    flagged = [r for r in rows if r["network_flagged"]]
    print(f"\nnetwork check (each pair against the series, its dates left out): {len(flagged)} pairs flagged")
    for w in result.warnings:
        if w.startswith(("network check", "date ")):
            print("  ", w)
    for r in flagged:
        print(
            f"   {r['pair']}: {r['network_ratio']:.2f}x the network over {r['network_nodes']} nodes, "
            f"trunk ratio {r['ratio']:.2f}"
        )
    vel = result.velocity
    assert vel is not None
    v = vel["v"].values
    print(f"composite: median speed over its valid pixels {np.nanmedian(v[np.isfinite(v)]):.0f} m/yr")
    if flagged:
        composite_without(result, {str(r["pair"]) for r in flagged}, v, args.work)
    (args.work / "summary.json").write_text(
        json.dumps({"pairs": rows, "warnings": result.warnings}, indent=1)
    )


if __name__ == "__main__":
    main()
