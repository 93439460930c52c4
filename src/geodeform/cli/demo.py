"""``geodeform demo``: the full ``ice`` workflow, offline, on shipped data with a known truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import yaml
from rich.console import Console

from geodeform.cli.app import app
from geodeform.cli.run import progress_bars
from geodeform.config import PRESETS, load_config
from geodeform.conventions import DAYS_PER_YEAR

__all__ = ["demo", "write_demo_inputs"]

ORIGIN = (717345.0, -2776995.0)  # crop corner, m (UTM 21, negative northings as Landsat: EPSG:32621)
CRS = "EPSG:32621"


def _write_geotiff(path: Path, data: np.ndarray, date: str, nodata: float | None = 0) -> None:
    # rasterio, geodeform.io and geodeform.demo need the geo extra: imported when the command runs.
    import rasterio
    from rasterio.transform import from_origin

    from geodeform.demo import PIXEL_M
    from geodeform.io import atomic_output

    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=CRS,
        transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M),
        nodata=nodata,
    )
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
        if date:
            dst.update_tags(ACQUISITION_DATE=date)


def write_demo_inputs(out: Path, series: Any, method: str = "ncc") -> Path:
    """Write the series as GeoTIFFs, the glacier outline raster and ``job.yaml``; return the config path."""
    from geodeform.io import atomic_output  # needs the geo extra: imported when the command runs

    images = out / "inputs"
    images.mkdir(parents=True, exist_ok=True)
    inputs = []
    for img, when in zip(series.images, series.dates, strict=True):
        path = images / f"LC08_demo_{when:%Y%m%d}_B4.tif"
        if not path.exists():
            _write_geotiff(path, img, f"{when:%Y-%m-%d}")
        inputs.append({"path": str(path.resolve()), "date": f"{when:%Y-%m-%d}"})
    glacier = images / "glacier_outline.tif"
    if not glacier.exists():
        _write_geotiff(glacier, series.glacier().astype(np.uint8), "", nodata=None)
    job = {
        "name": "demo-ice",
        "preset": "ice",
        "inputs": inputs,
        "masks": {"glacier": str(glacier.resolve())},
        "matching": {**PRESETS["ice"]["matching"], "method": method, "step": 8},
        "compute": {"cluster": "local"},
    }
    config = out / "job.yaml"
    with atomic_output(config) as tmp:
        tmp.write_text(
            "# The demo job: the ice preset on the shipped series (edit and rerun with geodeform run).\n"
            + yaml.safe_dump(job, sort_keys=False),
            encoding="utf-8",
        )
    return config


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo inputs, run and report.")] = Path(
        "demo-out"
    ),
    method: Annotated[str, typer.Option(help="Matcher: ncc, phase or flow.")] = "ncc",
    cluster: Annotated[str, typer.Option(help="local (Dask LocalCluster) or sync (this process).")] = "local",
) -> None:
    """Run the ice workflow offline on a glacier series with a known flow, then print its error.

    Six Landsat-like dates 16 days apart are built from a real Landsat-8 texture moved by a known flow (up
    to 1460 m/yr at 30 m), each with its own radiometric change and noise, one with a saturated cloud. The
    ``ice`` preset pairs them (5-100 days), matches, corrects on stable ground (outside the glacier
    outline), inverts the network and writes the velocity map, time series, STAC catalogue and the HTML
    report. The last line is the error of the recovered mean velocity against the truth.
    """
    # The geo extra's chain (rasterio, xarray, the synthetic fields' SciPy and numba): imported when the
    # command runs, so that `geodeform --help`, `init` and `serve` do not pay ~1 s for it.
    from geodeform.demo import PIXEL_M, make_glacier_series
    from geodeform.workflows import run_job

    t0 = time.perf_counter()
    console = Console(stderr=True)
    series = make_glacier_series()
    config_path = write_demo_inputs(out, series, method)
    job = load_config(config_path)
    if cluster != "local":
        data = job.model_dump(mode="json")
        data["compute"]["cluster"] = cluster
        job = load_config(data)
    console.print(
        f"demo inputs: {len(series.images)} images in {out / 'inputs'}, config {config_path} "
        "(Contains modified Landsat-8 data courtesy of the U.S. Geological Survey)"
    )

    def truth_velocity(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = (x - ORIGIN[0]) / PIXEL_M - 0.5
        rows = (ORIGIN[1] - y) / PIXEL_M - 0.5
        vx, vy = series.velocity(rows, cols)  # px/day, +dy = south
        return vx * PIXEL_M * DAYS_PER_YEAR, -vy * PIXEL_M * DAYS_PER_YEAR

    def extras(result: Any) -> dict[str, Any]:
        import xarray as xr

        vel = result.velocity
        tvx, tvy = truth_velocity(vel["x"].values[None, :], vel["y"].values[:, None])
        speed = xr.DataArray(np.hypot(tvx, tvy), dims=("y", "x"), coords={"y": vel["y"], "x": vel["x"]})

        def series_truth(x: float, y: float, dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            vx, vy = truth_velocity(np.asarray(x), np.asarray(y))
            years = (dates - dates[0]) / np.timedelta64(1, "D") / DAYS_PER_YEAR
            return float(vx) * years, float(vy) * years

        return {
            "speed_truth": speed,
            "truth_series": series_truth,
            "summary": {"velocity vector error vs truth": _error_text(vel, tvx, tvy, result)},
            "attribution": ("Contains modified Landsat-8 data courtesy of the U.S. Geological Survey",),
        }

    with progress_bars(console) as progress:
        result = run_job(
            job,
            out / "run",
            progress=progress,
            on_estimate=lambda e: console.print(e.describe()),
            report_extras=extras,
        )
    vel = result.velocity
    assert vel is not None  # run_job raises when no velocity could be computed
    tvx, tvy = truth_velocity(vel["x"].values[None, :], vel["y"].values[:, None])
    typer.echo(f"report: {result.products['report'].resolve()}")
    typer.echo(f"demo finished in {time.perf_counter() - t0:.0f} s")
    typer.echo(f"velocity error vs truth: {_error_text(vel, tvx, tvy, result)}")


def _error_text(vel: Any, tvx: np.ndarray, tvy: np.ndarray, result: Any) -> str:
    """RMSE of the mean velocity vs the truth, m/yr and pixels over the median pair span."""
    from geodeform.demo import PIXEL_M  # needs the geo extra: imported when the command runs

    err = np.hypot(vel["vx"].values - tvx, vel["vy"].values - tvy)
    valid = np.isfinite(err)
    rmse = float(np.sqrt(np.mean(err[valid] ** 2))) if valid.any() else float("nan")
    dt = float(np.median([abs(p.dt_days) for p in result.pairs if p.status == "ok"]))
    px = rmse * dt / DAYS_PER_YEAR / PIXEL_M
    peak = float(np.nanmax(np.hypot(tvx, tvy)))
    return (
        f"RMSE {rmse:.1f} m/yr ({px:.3f} px over the median pair span of {dt:.0f} days) over "
        f"{valid.mean():.0%} of the nodes (peak speed {peak:.0f} m/yr)"
    )
