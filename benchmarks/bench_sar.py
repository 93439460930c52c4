"""SAR-chain benchmarks: speckle tracking vs OpenCV, coherence tracking, decomposition, 4-D, slope-parallel.

    python benchmarks/bench_sar.py speckle      # Gamma speckle on real S1 GRD texture vs OpenCV NCC (log)
    python benchmarks/bench_sar.py coherence    # coherence tracking vs amplitude tracking, coherence 0.3-0.9
    python benchmarks/bench_sar.py decompose    # solve_enu: chi-square of asc/desc + optical, rank deficiency
    python benchmarks/bench_sar.py fourd        # invert_enu vs an oracle knowing the noise and the blunders
    python benchmarks/bench_sar.py slope        # slope-parallel up from east/north on a real DEM crop
    python benchmarks/bench_sar.py geocode      # GCP geocoding vs GDAL's own GCP warp on the real GRD crops

``speckle`` needs the shared peerbench (its ``opencv_ncc`` adapter is the peer) and opencv-python-headless,
which is not a geodeform dependency: ``.venv/bin/pip install opencv-python-headless`` for the benchmark.
The script puts this checkout's ``src/`` first on ``sys.path``. ``speckle``, ``slope`` and ``geocode`` need
the shared data. Numbers go to docs/benchmarks.md ("SAR chain").
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _shared() -> Path:
    for parent in ROOT.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared"
    return ROOT.parent / "shared"


SHARED = _shared()
GRD = SHARED / "data" / "s1_grd" / "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"


def _texture() -> np.ndarray:
    """Real Sentinel-1 IW GRD VV amplitude (rio-tiler-pds crop, 837 x 1280), the zero border cut off."""
    import rasterio

    with rasterio.open(GRD / "measurement" / "iw-vv.tiff") as src:
        amp = src.read(1).astype(np.float64)
    return amp[40 : 40 + 768, 100 : 100 + 1024]


def _field(r: np.ndarray, c: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Known smooth field, px: a 1.2 px drift plus a 1.5 px flow band (glacier-like), dy -0.7 +/- 0.8."""
    h, w = shape
    dx = 1.2 + 1.5 * np.exp(-(((c - w * 0.55) / (w * 0.2)) ** 2)) * np.sin(np.pi * r / h)
    dy = -0.7 + 0.8 * np.cos(2 * np.pi * c / w)
    return dx, dy


def _md(*cells: object) -> str:
    """A markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(*names: str) -> str:
    """Header and alignment rows of a markdown table (first column left, the others right)."""
    return _md(*names) + "\n|---|" + "---:|" * (len(names) - 1)


def _score(rows, cols, dx, dy, shape, region=None):
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    tx, ty = _field(rr, cc, shape)
    e = np.hypot(dx - tx, dy - ty)
    inside = np.ones(e.shape, bool)
    if region is not None:
        inside = (rr >= region[0]) & (rr <= region[1]) & (cc >= region[2]) & (cc <= region[3])
    ok = np.isfinite(e) & inside
    return float(np.sqrt(np.mean(e[ok] ** 2))), float(np.median(e[ok])), float(ok.sum() / inside.sum())


def speckle(seeds: int = 3) -> None:
    """RMSE of match_amplitude and of OpenCV NCC on log-amplitude, same speckled pairs, same run."""
    sys.path.insert(0, str(SHARED / "peerbench"))
    try:
        import cv2  # noqa: F401
        import peerbench as pb
    except ImportError:
        print("speckle: skipped (needs ../shared/peerbench and opencv-python-headless, e.g. its venv)")
        return
    from geodeform.sar.simulate import gamma_speckle, warp
    from geodeform.sar.tracking import match_amplitude

    tex = _texture()
    shape = tex.shape
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    dxf, dyf = _field(rr, cc, shape)
    moved = np.clip(warp(tex, dxf, dyf, order=3), 0, None)
    refl1, refl2 = tex**2, moved**2
    search, step = 8, 32

    def run(looks: float, chip: int, variants: dict[str, dict]) -> dict[str, list]:
        out: dict[str, list] = {}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            a1 = np.sqrt(gamma_speckle(refl1, looks, rng))
            a2 = np.sqrt(gamma_speckle(refl2, looks, rng))
            t = time.perf_counter()
            rows, cols, dx, dy, _ = pb._ncc(
                np.log(a1 + 1e-3).astype(np.float32), np.log(a2 + 1e-3).astype(np.float32), chip, step, search
            )
            out.setdefault("opencv_ncc (log-amplitude)", []).append(
                (*_score(rows, cols, dx, dy, shape), time.perf_counter() - t)
            )
            region = (rows.min(), rows.max(), cols.min(), cols.max())
            for name, kw in variants.items():
                t = time.perf_counter()
                f = match_amplitude(a1, a2, chip_size=chip, step=step, search_range=search, **kw)
                out.setdefault(name, []).append(
                    (*_score(f.rows, f.cols, f.dx, f.dy, shape, region), time.perf_counter() - t)
                )
        return out

    def table(title: str, res: dict[str, list]) -> None:
        print(
            f"\n{title}\n\n"
            + _head("method", "RMSE px", "median px", "coverage", "ratio to opencv", "time s")
        )
        peer = np.mean([r[0] for r in res["opencv_ncc (log-amplitude)"]])
        for name, rows in res.items():
            m = np.mean(rows, axis=0)
            print(f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {m[0] / peer:.2f} | {m[3]:.2f} |")

    run(4.4, 64, {"warm-up": {}})  # JIT compile outside the timings
    table(
        "Speckle filters, ENL 4.4, chip 64 (3 seeds)",
        run(
            4.4,
            64,
            {
                "match_amplitude (log, no filter)": {"speckle_filter": "none"},
                "match_amplitude (log, boxcar 3)": {"speckle_filter": "boxcar", "filter_size": 3},
                "match_amplitude (log, boxcar 5)": {"speckle_filter": "boxcar", "filter_size": 5},
                "match_amplitude (log, lee 5)": {"speckle_filter": "lee", "filter_size": 5},
                "match_amplitude (amplitude, no filter)": {
                    "speckle_filter": "none",
                    "transform": "amplitude",
                },
                "match_amplitude (log, no filter, smoothing 0)": {"speckle_filter": "none", "smoothing": 0},
            },
        ),
    )
    print("\nCurve against the looks of the input (ENL), chip 64, no filter\n")
    print("| ENL | opencv RMSE | ours RMSE | ratio | ours coverage |\n|---:|---:|---:|---:|---:|")
    for looks in (1.0, 2.2, 4.4, 8.8):
        res = run(looks, 64, {"ours": {"speckle_filter": "none"}})
        p, o = np.mean(res["opencv_ncc (log-amplitude)"], axis=0), np.mean(res["ours"], axis=0)
        print(f"| {looks} | {p[0]:.3f} | {o[0]:.3f} | {o[0] / p[0]:.2f} | {o[2]:.3f} |")
    print("\nCurve against the chip size, ENL 4.4, no filter\n")
    print("| chip | opencv RMSE | ours RMSE | ratio | ours coverage |\n|---:|---:|---:|---:|---:|")
    for chip in (32, 48, 64, 96):
        res = run(4.4, chip, {"ours": {"speckle_filter": "none"}})
        p, o = np.mean(res["opencv_ncc (log-amplitude)"], axis=0), np.mean(res["ours"], axis=0)
        print(f"| {chip} | {p[0]:.3f} | {o[0]:.3f} | {o[0] / p[0]:.2f} | {o[2]:.3f} |")


def coherence(seeds: int = 4) -> None:
    """Coherence tracking vs amplitude tracking of circular-Gaussian speckle pairs, known sub-pixel shift."""
    from geodeform.sar.coherence import match_coherence
    from geodeform.sar.simulate import complex_pair
    from geodeform.sar.tracking import match_amplitude

    print("\nChip 64, step 32, 256 x 320 px, shift (0.37, -0.62) px, band 0.8 x 0.85, interior nodes\n")
    print(_head("coherence", "coherence tracking RMSE px", "measured coherence",
                "amplitude RMSE px (per node)",
                "amplitude, default smoothing", "time coh / amp s"))  # fmt: skip
    for coh in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        acc: dict[str, list] = {}
        for seed in range(seeds):
            p = complex_pair((256, 320), coh, 0.37, -0.62, np.random.default_rng(seed))
            sl = (slice(1, -1), slice(1, -1))
            t = time.perf_counter()
            f = match_coherence(p.reference, p.secondary, chip_size=64, step=32, search_range=4)
            acc.setdefault("tc", []).append(time.perf_counter() - t)
            acc.setdefault("coh", []).append(np.nanmean(np.hypot(f.dx - p.dx, f.dy - p.dy)[sl] ** 2))
            acc.setdefault("gamma", []).append(np.nanmedian(f.quality[sl]))
            t = time.perf_counter()
            g = match_amplitude(
                p.reference,
                p.secondary,
                chip_size=64,
                step=32,
                search_range=4,
                speckle_filter="none",
                smoothing=0,
            )
            acc.setdefault("ta", []).append(time.perf_counter() - t)
            acc.setdefault("amp", []).append(np.nanmean(np.hypot(g.dx - p.dx, g.dy - p.dy)[sl] ** 2))
            g2 = match_amplitude(
                p.reference, p.secondary, chip_size=64, step=32, search_range=4, speckle_filter="none"
            )
            acc.setdefault("amp_s", []).append(np.nanmean(np.hypot(g2.dx - p.dx, g2.dy - p.dy)[sl] ** 2))
        r = {k: float(np.mean(v)) for k, v in acc.items()}
        print(
            _md(
                coh, f"{np.sqrt(r['coh']):.4f}", f"{r['gamma']:.3f}", f"{np.sqrt(r['amp']):.4f}",
                f"{np.sqrt(r['amp_s']):.4f}", f"{r['tc']:.2f} / {r['ta']:.2f}",
            )
        )  # fmt: skip


def decompose(seeds: int = 5) -> None:
    """solve_enu on S1-like ascending/descending range + azimuth and optical east/north, with noise."""
    from geodeform.decompose import Observation, azimuth_vector, los_vector, solve_enu

    shape = (200, 200)
    chis, resid = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        truth = np.stack([rng.normal(0, 1, shape), rng.normal(0, 1, shape), rng.normal(0, 0.5, shape)], -1)
        inc_a = np.broadcast_to(np.linspace(30, 45, shape[1]), shape)
        obs = []
        for h, inc, sig in ((-12.0, inc_a, 0.02), (-168.0, inc_a[:, ::-1], 0.02)):
            obs.append(
                Observation(
                    (truth * los_vector(h, inc)).sum(-1) + rng.normal(0, sig, shape), "range", h, inc, sig
                )
            )
            obs.append(
                Observation(
                    (truth * azimuth_vector(h)).sum(-1) + rng.normal(0, 0.4, shape), "azimuth", h, sigma=0.4
                )
            )
        obs.append(Observation(truth[..., 0] + rng.normal(0, 0.3, shape), "east", sigma=0.3))
        obs.append(Observation(truth[..., 1] + rng.normal(0, 0.3, shape), "north", sigma=0.3))
        res = solve_enu(obs)
        err = np.stack([res.east, res.north, res.up], -1) - truth
        chis.append(
            float(np.einsum("...i,...ij,...j->...", err, np.linalg.inv(res.covariance), err).mean() / 3)
        )
        resid.append(float(np.nanmean(res.chi2 / res.dof)))
        if seed == 0:
            rms = np.sqrt(np.mean(err**2, axis=(0, 1)))
            sig = np.sqrt(np.mean([res.sigma(c) ** 2 for c in ("east", "north", "up")], axis=(1, 2)))
            print(f"\nRMSE E/N/U (m) {np.round(rms, 4)} vs propagated 1-sigma {np.round(sig, 4)}")
            for label, sub in (("range, one track", obs[:1]), ("range, asc + desc", [obs[0], obs[2]])):
                print(f"{label}: {solve_enu(sub).summary()}")
            print(
                "range asc + desc, assume_zero=('north',):",
                solve_enu([obs[0], obs[2]], assume_zero=("north",)).summary(),
            )
    print(f"chi-square per dof of the estimate vs truth, {seeds} seeds x 40000 px: {np.round(chis, 3)}")
    print(f"residual chi-square per dof (redundancy 3): {np.round(resid, 3)}")


def _series_sets(
    rng: np.random.Generator, shape: tuple[int, int], noise: float, oracle: bool, blunders: float = 0.03
):
    from geodeform.decompose import PairSet, los_vector

    t0 = np.datetime64("2021-01-01")
    ramp = np.linspace(0.5, 1.5, shape[1]) * np.ones(shape)

    def truth(d: np.ndarray) -> np.ndarray:
        t = (d - t0).astype(float)[:, None, None] / 365.25
        return np.stack([2.0 * t * ramp, -1.0 * t * ramp, 0.3 * np.sin(2 * np.pi * t) * ramp], -1)

    sets = []
    specs = (
        ("asc", 0, 12, 30, "range", -12.0, 34.0, 0.01 * noise),
        ("desc", 5, 12, 30, "range", -168.0, 41.0, 0.01 * noise),
        ("optical east", 3, 20, 18, "east", None, None, 0.25 * noise),
        ("optical north", 3, 20, 18, "north", None, None, 0.25 * noise),
    )
    for name, off, step, n, kind, h, inc, sig in specs:
        d = t0 + off + step * np.arange(n)
        p = np.array([(i, j) for i in range(n) for j in range(i + 1, min(n, i + 4))])
        u = los_vector(h, inc) if kind == "range" else np.eye(3)[0 if kind == "east" else 1]
        x = truth(d)
        val = ((x[p[:, 1]] - x[p[:, 0]]) * u).sum(-1) + rng.normal(0, sig, (p.shape[0], *shape))
        bad = rng.random(val.shape) < blunders
        blunder = rng.normal(0, 30 * sig, val.shape)
        val = np.where(bad, np.nan if oracle else val + blunder, val)
        sets.append(PairSet(d, p, val, kind, h, inc, sig if oracle else None, name))
    return sets, truth


def fourd(seeds: int = 3) -> None:
    """invert_enu (σ estimated, robust) vs an oracle given the true σ and the blunders removed."""
    from geodeform.decompose import invert_enu

    shape = (16, 16)
    print(f"\nasc (30 dates, 12 d) + desc (30, 12 d, offset 5 d) + optical E/N (18, 20 d), "
          "pairs to the 3 next, "
          f"{shape[0]}x{shape[1]} px, 3 % blunders (30 sigma); smoothing 1\n")  # fmt: skip
    print(_head("noise x", "sigma asc/opt (m)", "RMSE E ours / oracle", "N ours / oracle", "U ours / oracle",
                "worst ratio", "mean (err/sigma)^2 E,N,U", "time ours / oracle s"))  # fmt: skip
    for noise in (0.5, 1.0, 2.0):
        acc = []
        for seed in range(seeds):
            ours_sets, truth = _series_sets(np.random.default_rng(seed), shape, noise, oracle=False)
            oracle_sets, _ = _series_sets(np.random.default_rng(seed), shape, noise, oracle=True)
            t = time.perf_counter()
            ours = invert_enu(ours_sets, smoothing=1.0)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            oracle = invert_enu(oracle_sets, smoothing=1.0, robust=False)
            t2 = time.perf_counter() - t
            x = truth(ours.dates)
            row = []
            for k, c in enumerate(("east", "north", "up")):
                row.append(np.sqrt(np.nanmean((getattr(ours, c) - x[..., k]) ** 2)))
                row.append(np.sqrt(np.nanmean((getattr(oracle, c) - x[..., k]) ** 2)))
            z = [
                np.nanmean(((getattr(ours, c) - x[..., k]) / getattr(ours, f"sigma_{c}"))[1:] ** 2)
                for k, c in enumerate(("east", "north", "up"))
            ]
            acc.append([*row, *z, t1, t2])
        m = np.mean(acc, axis=0)
        worst = max(m[0] / m[1], m[2] / m[3], m[4] / m[5])
        print(
            _md(
                noise, f"{0.01 * noise:.3f} / {0.25 * noise:.3f}", f"{m[0]:.4f} / {m[1]:.4f}",
                f"{m[2]:.4f} / {m[3]:.4f}", f"{m[4]:.4f} / {m[5]:.4f}", f"{worst:.3f}",
                f"{m[6]:.2f}, {m[7]:.2f}, {m[8]:.2f}", f"{m[9]:.1f} / {m[10]:.1f}",
            )
        )  # fmt: skip


def slope() -> None:
    """Up from optical east/north + slope-parallel constraint on a steep real DEM crop (SRTM 3")."""
    import rasterio

    from geodeform.decompose import Observation, slope_aspect, slope_parallel, solve_enu

    path = SHARED / "data" / "dem" / "srtm_ref.tif"
    if not path.exists():
        print("slope: skipped (../shared/data/dem missing)")
        return
    with rasterio.open(path) as src:
        z = src.read(1, window=((720, 784), (512, 576))).astype(float)
        t = src.transform
    from scipy import ndimage

    lat = t.f + t.e * (720 + np.arange(64) + 0.5)
    row_m = abs(t.e) * 111_320.0
    col_m = abs(t.a) * 111_320.0 * np.cos(np.deg2rad(lat))[:, None]
    rr, cc = np.mgrid[0:64, 0:64]
    mag = 2.0 * np.exp(-(((rr - 32) / 12.8) ** 2 + ((cc - 32) / 10.7) ** 2))
    print(
        f'\nSRTM 3" crop 64 x 64 px ({row_m:.0f} x {col_m.mean():.0f} m), landslide up to 2 m, '
        "E/N noise 0.05 m\n"
    )
    print(_head("sliding surface", "DEM of the constraint", "pixels", "median rel. error of up",
                "within 20 %",
                "RMSE/RMS"))  # fmt: skip
    rng = np.random.default_rng(0)
    cases = (
        ("the DEM", "the DEM + 2 m noise", z, z + rng.normal(0, 2.0, z.shape)),
        ("the DEM", "the DEM", z, z),
        ("DEM smoothed σ=1 px", "the DEM", ndimage.gaussian_filter(z, 1.0), z),
        ("DEM smoothed σ=2 px", "the DEM", ndimage.gaussian_filter(z, 2.0), z),
    )
    for surf, con_label, ztrue, zcon in cases:
        tr = slope_aspect(ztrue, (row_m, col_m))
        con = slope_aspect(zcon, (row_m, col_m))
        a, s = np.deg2rad(tr.aspect_deg), np.deg2rad(tr.slope_deg)
        E, N, U = mag * np.cos(s) * np.sin(a), mag * np.cos(s) * np.cos(a), -mag * np.sin(s)
        r2 = np.random.default_rng(1)
        res = solve_enu([
            Observation(E + r2.normal(0, 0.05, z.shape), "east", sigma=0.05),
            Observation(N + r2.normal(0, 0.05, z.shape), "north", sigma=0.05),
            slope_parallel(con.slope_deg, con.aspect_deg, sigma=0.02),
        ])  # fmt: skip
        sel = (con.slope_deg > 10) & (mag > 0.5)
        rel = np.abs(res.up - U)[sel] / np.abs(U[sel])
        rr_ = np.sqrt(np.mean((res.up - U)[sel] ** 2)) / np.sqrt(np.mean(U[sel] ** 2))
        print(
            _md(
                surf,
                con_label,
                sel.sum(),
                f"{np.median(rel):.3f}",
                f"{np.mean(rel <= 0.2):.3f}",
                f"{rr_:.3f}",
            )
        )


def geocode() -> None:
    """Largest difference (radar px) between our GCP geocoding and GDAL's warp of the same index images."""
    from rasterio.warp import Resampling, reproject

    from geodeform.sar import map_grid, open_s1, radar_coordinates

    print("\n" + _head("product", "method", "map cell", "cells", "max |Δrow|", "max |Δcol|", "99th pct |Δ|"))
    for folder in sorted((SHARED / "data" / "s1_grd").glob("S1A_*")):
        img = open_s1(folder, polarisation="VH", require_annotation=False)
        h, w = img.data.shape
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
        for res in (500.0, 1000.0):
            grid = map_grid(img, res)
            for method, opts in (("tps", {"SRC_METHOD": "GCP_TPS"}), ("polynomial", {})):
                ours = radar_coordinates(img, grid, method=method)
                inner = (ours.rows > 6) & (ours.rows < h - 7) & (ours.cols > 6) & (ours.cols < w - 7)
                diffs = []
                for mine, index in ((ours.rows, rr), (ours.cols, cc)):
                    gdal = np.full(grid.shape, np.nan)
                    reproject(
                        index, gdal, gcps=list(img.gcps), src_crs="EPSG:4326", dst_crs=grid.crs,
                        dst_transform=grid.transform, dst_nodata=np.nan,
                        resampling=Resampling.bilinear, **opts,
                    )  # fmt: skip
                    diffs.append(np.abs(mine - gdal)[inner & np.isfinite(gdal)])
                pct = np.percentile(np.concatenate(diffs), 99)
                print(_md(folder.name[:16], method, f"{res:.0f} m", diffs[0].size, f"{diffs[0].max():.3f}",
                          f"{diffs[1].max():.3f}", f"{pct:.3f}"))  # fmt: skip


if __name__ == "__main__":
    cmds = {
        "speckle": speckle,
        "coherence": coherence,
        "decompose": decompose,
        "fourd": fourd,
        "slope": slope,
        "geocode": geocode,
    }
    names = sys.argv[1:] or list(cmds)
    for name in names:
        if name not in cmds:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {sorted(cmds)}")
        print(f"\n## {name}")
        cmds[name]()
