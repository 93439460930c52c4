"""Make the figures of the real-data gallery (docs/gallery.md) from the shared data sets.

Run from the repository root (the data sets are read from ``../shared/data``, found as the tests find it):

    .venv/bin/python docs/scripts/gallery.py [--perito WORK] [--img DIR] [s2 kaskawulsh perito]

``s2``: the Sentinel-2 L2A crops (one pair 5 days apart with a cloudy second date, one clear pair);
``kaskawulsh``: the GLAFT map through the default filters in m/day and in m/yr; ``perito``: the figures of a
finished ``benchmarks/perito_moreno_series.py --work WORK`` run. Only figures derived from the data are
written (``--img``, default docs/img/gallery_*.png); no data file is copied into the repository. Prints the
numbers quoted in docs/gallery.md (tests/test_docs.py checks that the page shows the Kaskawulsh line).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
IMG = [ROOT / "docs" / "img"]  # where the figures go (--img)
sys.path.insert(0, str(ROOT / "tests"))

from _real_scenes import KASKAWULSH, PERITO, S2_CROPS  # noqa: E402

SENTINEL = "Contains modified Copernicus Sentinel data"


def save(fig: plt.Figure, name: str, credit: str) -> None:
    fig.text(0.01, 0.005, credit, fontsize=7, color="0.35", ha="left", va="bottom")
    IMG[0].mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG[0] / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {name}")


def _bare(ax: plt.Axes, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def s2_figures() -> None:
    """Offsets of the cloudy pair before (no mask, no filters) and now (SCL found, credibility filters)."""
    import rasterio
    import xarray as xr

    from geodeform.config import CorrectionsConfig
    from geodeform.workflows import PairSpec, process_pair

    clear, cloudy, other = (S2_CROPS / f"{n}_0_L2A" for n in ("S2B_33TWM_20230813", "S2A_33TWM_20230818",
                                                               "S2A_33TWM_20230815"))  # fmt: skip
    runs = {
        "raw": {"masks": ("none", "none"), "corrections": CorrectionsConfig(enabled=False)},
        "default": {},
    }
    offsets: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in runs.items():
            out = Path(tmp) / f"{name}.nc"
            process_pair(PairSpec(reference=str(clear / "B04.tif"), secondary=str(cloudy / "B04.tif"),
                                  outputs={"netcdf": str(out)}, **extra))  # type: ignore[arg-type]  # fmt: skip
            with xr.open_dataset(out) as ds:
                offsets[name] = np.hypot(ds["dx"].values, ds["dy"].values) / 120.0
        out = Path(tmp) / "clear.nc"
        process_pair(PairSpec(reference=str(clear / "B04.tif"), secondary=str(other / "B04.tif"),
                              outputs={"netcdf": str(out)}))  # fmt: skip
        with xr.open_dataset(out) as ds:
            clear_valid = float(np.isfinite(ds["dx"].values).mean())
    for name, off in offsets.items():
        ok = np.isfinite(off)
        print(f"s2 0813->0818 {name}: {ok.sum()} valid nodes, {(off[ok] > 1).mean():.1%} more than 1 px off")
    print(f"s2 0813->0815 (clear, other orbit): {clear_valid:.1%} of the nodes valid")
    with rasterio.open(cloudy / "B04.tif") as src:
        b04 = src.read(1).astype(float)
    with rasterio.open(cloudy / "SCL.tif") as src:
        scl = src.read(1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    axes[0].imshow(np.clip(b04 / np.percentile(b04, 99), 0, 1), cmap="gray")
    cloud = np.where(np.isin(scl, (3, 8, 9, 10)), 1.0, np.nan)
    orange = matplotlib.colors.ListedColormap(["#E69F00"])
    axes[0].imshow(cloud, cmap=orange, alpha=0.45, interpolation="nearest")
    _bare(axes[0], "2023-08-18 B04, SCL cloud + shadow in orange")
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.88")  # removed nodes in light grey
    for ax, name, title in (
        (axes[1], "raw", "before: no mask, no filters"),
        (axes[2], "default", "now: SCL + filters"),
    ):
        off = offsets[name]
        ok = np.isfinite(off)
        im = ax.imshow(off, cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        _bare(ax, f"{title}: {ok.sum()} nodes, {(off[ok] > 1).mean():.0%} > 1 px off")
    fig.colorbar(im, ax=axes[1:], fraction=0.025, label="|offset| (px; grey: removed); the ground is static")
    save(fig, "gallery_s2_cloudy.png", f"{SENTINEL} [2023] (Earth Search L2A, tile 33TWM, 120 m crops).")


def kaskawulsh_figures() -> None:
    """The GLAFT map through the default filters, in m/day and in m/yr."""
    import rasterio

    from geodeform.corrections import correct_offsets, filter_outliers

    maps = []
    for comp in ("vx", "vy"):
        with rasterio.open(KASKAWULSH / f"20180304-20180405_velo-raw_{comp}.tif") as src:
            band = src.read(1).astype(np.float64)
            maps.append(np.where(band == src.nodata, np.nan, band))
    day = filter_outliers(*maps, pixel=15 / 32)  # 15 m pixels over 32 days, in m/day
    year = filter_outliers(maps[0] * 365.25, maps[1] * 365.25, pixel=15 / 32 * 365.25)
    n = np.isfinite(maps[0]).sum()
    differ = int((np.isfinite(day.dx) != np.isfinite(year.dx)).sum())
    est = filter_outliers(*maps, pixel="scatter")  # by choice: estimated from the static terrain's scatter
    print(
        f"kaskawulsh: default filters keep {np.isfinite(day.dx).sum() / n:.2%} (m/day) and "
        f"{np.isfinite(year.dx).sum() / n:.2%} (m/yr); nodes differing: {differ}; "
        f"pixel='scatter' estimates {est.pixel:.3f} m/day (true 15 m / 32 d = {15 / 32:.3f}) and keeps "
        f"{np.isfinite(est.dx).sum() / n:.2%}"
    )
    rep = correct_offsets(*maps, pixel=15 / 32)
    for label, m in (("before", rep.before), ("after", rep.after)):
        print(f"kaskawulsh {label}: peak ({m.peak_x:+.4f}, {m.peak_y:+.4f}) m/day, delta ({m.delta_x:.3f}, "
              f"{m.delta_y:.3f}) m/day, NMAD ({m.nmad_x:.3f}, {m.nmad_y:.3f})")  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    speed = np.hypot(rep.dx, rep.dy)
    im = axes[0].imshow(speed, cmap="viridis", vmin=0, vmax=2, interpolation="nearest")
    fig.colorbar(im, ax=axes[0], fraction=0.03, label="speed (m/day)")
    _bare(axes[0], "corrected speed (plane on automatic stable ground)")
    kept = np.where(np.isfinite(maps[0]), np.isfinite(day.dx).astype(float), np.nan)
    axes[1].imshow(kept, cmap="RdYlBu", vmin=0, vmax=1, interpolation="nearest")
    _bare(axes[1], f"kept by the default filters, m/day: {np.isfinite(day.dx).sum() / n:.1%}")
    axes[2].imshow(np.where(np.isfinite(maps[0]), np.isfinite(year.dx).astype(float), np.nan), cmap="RdYlBu",
                   vmin=0, vmax=1, interpolation="nearest")  # fmt: skip
    _bare(axes[2], f"the same map in m/yr: {np.isfinite(year.dx).sum() / n:.1%} (19.0 % before #22)")
    save(
        fig,
        "gallery_kaskawulsh.png",
        "GLAFT Kaskawulsh map (MIT); Landsat 8 courtesy of the U.S. Geological Survey.",
    )


def perito_figures(work: Path) -> None:
    """Composite speed and per-pair trunk ratios of a finished Perito Moreno run."""
    import xarray as xr

    summary = json.loads((work / "summary.json").read_text())
    with xr.open_dataset(work / "run" / "velocity.nc") as ds:
        v, count = ds["v"].values, ds["count"].values
    rows = summary["pairs"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.6), width_ratios=[1.2, 1])
    im = axes[0].imshow(np.where(count >= 3, v, np.nan), cmap="viridis", vmin=0,
                        vmax=np.nanpercentile(v[count >= 3], 99), interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=axes[0], fraction=0.03, label="m/yr (10 m pixels assumed)")
    fig.subplots_adjust(wspace=0.3)
    _bare(axes[0], "Perito Moreno composite speed (pixels seen by >= 3 pairs)")
    ratio = np.array([r["ratio"] for r in rows], dtype=float)
    degraded = np.array([bool(r["degraded"]) for r in rows])
    idx = np.arange(len(rows))
    axes[1].plot(
        idx[~degraded], ratio[~degraded], "o", ms=4, color="#0072B2", label="co-registered on its own"
    )
    axes[1].plot(
        idx[degraded], ratio[degraded], "^", ms=6, color="#E69F00", label="degraded: job-level estimate"
    )
    axes[1].axhline(0.7, color="#D55E00", lw=1, ls="--", label="0.7 x composite")
    axes[1].axhline(1.0, color="0.5", lw=0.8)
    axes[1].set_ylim(0, 1.6)
    axes[1].set_xlabel("pair (date order)")
    axes[1].set_ylabel("trunk speed / composite")
    axes[1].legend(fontsize=8, loc="lower right")
    axes[1].set_title(f"{np.isfinite(ratio).sum()} pairs with >= 20 trunk nodes", fontsize=9)
    save(fig, "gallery_perito.png", "GIV Perito Moreno frames (GPL-3.0). " + SENTINEL + " [2020].")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="*", default=["s2", "kaskawulsh", "perito"])
    ap.add_argument("--perito", type=Path, default=Path("/tmp/geodeform-perito"))
    ap.add_argument("--img", type=Path, default=IMG[0], help="folder of the figures (default docs/img)")
    args = ap.parse_args()
    IMG[0] = args.img
    if "s2" in args.which:
        s2_figures()
    if "kaskawulsh" in args.which:
        kaskawulsh_figures()
    if "perito" in args.which and PERITO.is_dir():
        perito_figures(args.perito)


if __name__ == "__main__":
    main()
