"""Make the figures of the documentation (docs/img/*.png) by running the tutorial scripts themselves.

Run from the repository root after changing a tutorial or the code it shows:

    .venv/bin/python docs/scripts/make_figures.py [NAME ...]     # NAME: demo ice slide quake survey sar

Each figure is drawn from the variables the tutorial script leaves behind (``runpy``), so a figure always
shows what the code computes. The PNGs are committed; the docs build does not re-make them (it would add
about a minute and matplotlib rendering differences to every CI run).
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
IMG = ROOT / "docs" / "img"
os.environ.setdefault("GEODEFORM_DATA", str(ROOT.parent / "shared" / "data"))


def run(name: str, *argv: str) -> dict:
    """Run docs/examples/<name>.py from the repository root and return its globals."""
    sys.path.insert(0, str(EXAMPLES))
    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = [str(EXAMPLES / f"{name}.py"), *argv]
    os.chdir(ROOT)
    try:
        return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        sys.path.remove(str(EXAMPLES))


def save(fig: plt.Figure, name: str) -> None:
    IMG.mkdir(exist_ok=True)
    fig.savefig(IMG / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote docs/img/{name}")


def panel(ax, data, title, cmap="viridis", **kw):
    im = ax.imshow(data, cmap=cmap, interpolation="nearest", **kw)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def demo() -> None:
    """The demo's own report quicklooks (made by geodeform.workflows.report), plus its inputs."""
    import shutil

    import rasterio

    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(sys.executable).with_name("geodeform")
        subprocess.run([str(exe), "demo", "--out", tmp, "--cluster", "sync"], check=True, capture_output=True)
        run("demo_explained", tmp)  # the page's script must run on what the figures show
        for name in ("velocity", "velocity_error", "truth", "series", "network"):
            shutil.copy(Path(tmp) / "run" / "quicklooks" / f"{name}.png", IMG / f"demo_{name}.png")
            print(f"wrote docs/img/demo_{name}.png (the demo report's quicklook)")
        inputs = sorted((Path(tmp) / "inputs").glob("LC08_demo_*_B4.tif"))
        fig, ax = plt.subplots(1, 3, figsize=(12, 3.8))
        with rasterio.open(inputs[0]) as src:
            lo, hi = np.percentile(src.read(1), [1, 99])
        for axis, path in zip(ax, (inputs[0], inputs[3], inputs[-1]), strict=True):
            with rasterio.open(path) as src:
                img = src.read(1)
            panel(axis, img, path.name, "gray", vmin=lo, vmax=hi * 1.15)
        with rasterio.open(Path(tmp) / "inputs" / "glacier_outline.tif") as src:
            ax[0].contour(src.read(1), levels=[0.5], colors="orange", linewidths=0.8)
        save(fig, "demo_inputs.png")


def ice() -> None:
    g = run("ice")
    fig, ax = plt.subplots(1, 4, figsize=(15, 3.6))
    truth = np.hypot(g["truth_vx"], g["truth_vy"])
    panel(ax[0], truth, "true speed (m/yr)", vmin=0, vmax=550)
    panel(ax[1], np.hypot(g["vx"], g["vy"]), "inverted mean speed (m/yr)", vmin=0, vmax=550)
    panel(ax[2], g["err_raw"], "error, no co-registration (m/yr)", "magma", vmin=0, vmax=40)
    panel(ax[3], g["err"], "error, co-registered (m/yr)", "magma", vmin=0, vmax=40)
    save(fig, "ice.png")
    ts, rows, cols = g["ts"], g["rows"], g["cols"]
    r, c = int(np.argmin(np.abs(rows - 288))), int(np.argmin(np.abs(cols - 150)))
    fig, axis = plt.subplots(figsize=(6, 3))
    days = g["days"]
    axis.errorbar(days, ts.dx[:, r, c] * 30, yerr=ts.sigma_dx[:, r, c] * 30, fmt="o-", label="inverted, east")
    truth_x = g["true_dx"][r, c] * g["PEAK"] * days * 30
    axis.plot(days, truth_x, "k--", label="truth")
    axis.set_xlabel("days since 2020-01-06")
    axis.set_ylabel("cumulative displacement (m)")
    axis.legend()
    axis.set_title(f"node at row {rows[r]:.0f}, col {cols[c]:.0f}", fontsize=9)
    save(fig, "ice_series.png")


def slide() -> None:
    g = run("slide")
    res, t = g["result"], g["t"]
    fig, ax = plt.subplots(1, 4, figsize=(15, 3.4))
    panel(ax[0], g["images"][0], "first date (texture crop)", "gray")
    panel(ax[1], g["ts"].dx[-1], "east displacement, last date (px)", "RdBu_r", vmin=-1.2, vmax=1.2)
    for k in range(2):
        panel(ax[2 + k], res.maps[k], f"ICA map {k}", "RdBu_r")
    save(fig, "slide_maps.png")
    fig, axis = plt.subplots(figsize=(6, 3))
    for k in range(2):
        tf = res.time_functions[:, k]
        axis.plot(t * 12, (tf - tf.mean()) / tf.std(), "o-", label=f"ICA component {k}")
    for s, lab in ((g["creep"], "creep (truth)"), (g["surge"], "seasonal surge (truth)")):
        axis.plot(t * 12, (s - s.mean()) / s.std(), "k--" if "creep" in lab else "k:", label=lab)
    axis.set_xlabel("months since 2021-01-15")
    axis.set_ylabel("normalised amplitude")
    axis.legend(fontsize=7)
    save(fig, "slide_ica.png")


def quake() -> None:
    with tempfile.TemporaryDirectory() as tmp:  # the job's own quicklooks, from the tutorial's run
        run("quake", tmp)
        for name in ("offsets", "slip"):
            shutil.copyfile(Path(tmp) / "run" / "quicklooks" / f"{name}.png", IMG / f"quake_{name}.png")
    g = run("quake_pair")
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    panel(ax[0], g["post"], "post-event image", "gray")
    panel(ax[1], g["along"], "fault-parallel offset (px)", "RdBu_r", vmin=-1.2, vmax=1.2)
    d, along = g["d"].ravel(), g["along"].ravel()
    ax[2].plot(d, along, ".", ms=2, alpha=0.4, label="nodes")
    ax[2].plot(np.sort(d), -0.5 * g["SLIP"] * np.sign(np.sort(d)), "k-", label="truth")
    ax[2].set_xlabel("distance to the fault (px, + east)")
    ax[2].set_ylabel("fault-parallel offset (px)")
    ax[2].set_ylim(-1.6, 1.6)
    ax[2].legend(fontsize=8)
    save(fig, "quake.png")


def survey() -> None:
    g = run("survey")
    import rasterio

    folder = ROOT / "tests" / "data" / "stac" / "assets"
    scenes = sorted(g["table"], key=lambda s: s.datetime)
    fig, ax = plt.subplots(1, len(scenes), figsize=(4.2 * len(scenes), 3.8))
    for axis, s in zip(ax, scenes, strict=True):
        with rasterio.open(folder / s.id / "B04.tif") as src:
            red = src.read(1).astype(float)
        red[red == 0] = np.nan
        lo, hi = np.nanpercentile(red, [1, 99])
        panel(axis, red, f"{s.id[:24]}\nAOI cloud {s.aoi_cloud_pct:.1f} %", "gray", vmin=lo, vmax=hi)
    save(fig, "survey.png")


def sar() -> None:
    g = run("sar")
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    panel(ax[0], g["reference"], "reference, VV (dB), with speckle", "gray", vmin=-20, vmax=0)
    panel(ax[1], g["secondary"], "secondary, moved (0.6, -0.4) px", "gray", vmin=-20, vmax=0)
    panel(ax[2], g["field"].dx, "flow: measured dx (px)", "RdBu_r", vmin=0, vmax=1.2)
    save(fig, "sar.png")


FIGURES = {"demo": demo, "ice": ice, "slide": slide, "quake": quake, "survey": survey, "sar": sar}

if __name__ == "__main__":
    for name in sys.argv[1:] or FIGURES:
        FIGURES[name]()
