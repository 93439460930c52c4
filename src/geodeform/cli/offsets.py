"""``geodeform offsets``: correlate two georeferenced rasters and write a georeferenced offset product.

The work is :func:`geodeform.workflows.process_pair`; this module parses the options and renders the result.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from geodeform.cli.app import app

if TYPE_CHECKING:
    from geodeform.workflows import PairOutcome, PairSpec

__all__ = ["offsets"]


class OutputFormat(str, enum.Enum):
    """Product file format."""

    netcdf = "netcdf"
    cog = "cog"


def _fmt(value: float, unit: str) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g} {unit}"


def _px(value_m: float, pixel_m: float) -> str:
    return "" if not (np.isfinite(value_m) and np.isfinite(pixel_m)) else f" ({value_m / pixel_m:+.2f} px)"


def _speed(value: float) -> str:
    """A speed in the unit a reader expects: m/yr, and m/day for slow ones (a few m/yr are mm/day)."""
    if not np.isfinite(value):
        return "n/a"
    if abs(value) < 36.5:
        return f"{value:.3g} m/yr ({value / 365.25 * 1000:.3g} mm/day)"
    return f"{value:.4g} m/yr ({value / 365.25:.3g} m/day)"


def _summary(outcome: PairOutcome) -> Table:
    s = outcome.summary
    assert s is not None  # an ok, computed pair always has one
    table = Table(title="geodeform offsets", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("nodes", f"{s.nodes[0]} x {s.nodes[1]}, {s.valid_fraction:.1%} valid")
    removed = {k: v for k, v in s.reasons.items() if k != "OK"}
    if removed:
        table.add_row(
            "removed", ", ".join(f"{k} {v}" for k, v in sorted(removed.items(), key=lambda kv: -kv[1]))
        )
    table.add_row(
        "secondary", "warped onto the reference grid" if outcome.reprojected else "same grid as reference"
    )
    table.add_row("median dx", _fmt(s.median_dx, "m") + _px(s.median_dx, s.pixel_m))
    table.add_row("median dy", _fmt(s.median_dy, "m") + _px(s.median_dy, s.pixel_m))
    if s.has_velocity:
        table.add_row("median velocity", f"vx {_speed(s.median_vx)}, vy {_speed(s.median_vy)}")
        table.add_row("speed of the median", _speed(float(np.hypot(s.median_vx, s.median_vy))))
        if np.isfinite(s.px_per_year):
            table.add_row("1 pixel of offset", f"{_speed(s.px_per_year)} over this pair")
    if s.dt_days is not None:
        when = f"{s.reference_date} -> {s.secondary_date} ({s.dt_days:g} d)"
        table.add_row("dates", f"{when}, from {outcome.dates_source}")
        if not s.has_velocity:
            table.add_row("velocity", "not computed: both images have the same date")
    else:
        table.add_row("dates", outcome.dates_source)
    if s.degraded:
        table.add_row("degraded", s.degraded)
    return table


def _masks(given: list[str] | None) -> tuple[str | None, str | None]:
    """The (REF, SEC) masks of ``--mask`` given once (both images), twice, or not at all."""
    from geodeform.errors import InvalidInputError

    given = list(given or [])
    if len(given) > 2:
        raise InvalidInputError(
            f"--mask given {len(given)} times; give it once (both images) or twice (REF, SEC)"
        )
    return (given[0], given[-1]) if given else (None, None)


def _run(spec: PairSpec) -> PairOutcome:
    """Run the pair chain with a progress bar on the console."""
    from geodeform.workflows import process_pair

    with Progress(
        TextColumn("matching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:
        task = bar.add_task("matching", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "match" and total:
                bar.update(task, completed=done, total=total)

        # Bad inputs raise GeodeformError subclasses (one clear line from main()); anything else is a bug.
        return process_pair(spec, progress=progress)


@app.command("offsets")
def offsets(
    reference: Annotated[
        Path, typer.Argument(help="Reference (earlier) georeferenced raster, e.g. a GeoTIFF.")
    ],
    secondary: Annotated[
        Path, typer.Argument(help="Secondary (later) raster; warped onto the reference grid if grids differ.")
    ],
    *,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Product file: OUT.nc (NetCDF) or OUT.tif (COG).")
    ],
    method: Annotated[
        str, typer.Option(help="Matching method of geodeform.offsets.match (ncc, phase, flow).")
    ] = "ncc",
    chip: Annotated[int, typer.Option(help="Chip (template) size, reference pixels.")] = 32,
    step: Annotated[int, typer.Option(help="Node spacing, reference pixels.")] = 16,
    search: Annotated[int, typer.Option(help="Search range, +/- pixels around each node.")] = 16,
    fmt: Annotated[
        OutputFormat | None,
        typer.Option("--format", help="netcdf (CF-1.8, ITS_LIVE names) or cog; default from the -o suffix."),
    ] = None,
    dates: Annotated[
        str | None,
        typer.Option(
            help="Acquisition dates REF,SEC, e.g. 2020-01-01,2020-02-01 (default: metadata, file names)."
        ),
    ] = None,
    band: Annotated[int, typer.Option(help="1-based band read from both rasters.")] = 1,
    nodata: Annotated[
        float | None,
        typer.Option(
            help="Pixel value to ignore in both rasters (default: declared nodata; 0 and the "
            "dtype maximum for integer rasters without one)."
        ),
    ] = None,
    prefilter: Annotated[
        str | None,
        typer.Option(
            help="Pre-filter both images: wallis, highpass, gradient (orientation) or rank; for "
            "illumination, seasonal or sensor changes between the dates."
        ),
    ] = None,
    stac: Annotated[
        bool, typer.Option(help="Also write OUT.stac.json, a STAC item describing the product.")
    ] = True,
    mask: Annotated[
        list[str] | None,
        typer.Option(
            "--mask",
            help="Cloud / no-data mask: give it twice (REF then SEC) or once for both. A Sentinel-2 SCL, a "
            "Landsat QA_PIXEL, a raster with 1 = masked, or polygons; 'none' for no mask. Default: each "
            "scene's own SCL / QA_PIXEL when it sits next to the band.",
        ),
    ] = None,
    max_speed: Annotated[
        float | None,
        typer.Option(
            help="Largest expected speed, m/yr: nodes moving faster (by more than a pixel) are removed "
            "(reason SPEED). Needs the dates."
        ),
    ] = None,
    filters: Annotated[
        bool,
        typer.Option(
            help="Remove matches that are not credible, each with a reason code: low correlation, "
            "ambiguous peak, inconsistent with the neighbours, too fast."
        ),
    ] = True,
) -> None:
    """Correlate two georeferenced rasters and write offsets in metres (and velocities in m/yr).

    Offsets are the displacement from REFERENCE to SECONDARY.

    Signs: dx and vx are positive toward increasing map x (east), dy and vy toward increasing map y (north).

    Velocities need both acquisition dates (tags, YYYYMMDD in the file or folder names, or --dates).

    Clouds: each image's own SCL (Sentinel-2) or QA_PIXEL (Landsat) is used when it sits next to the band
    (Earth Search scene folders, SAFE, Landsat products), or give --mask. Nodes removed carry a reason code.

    Example: geodeform offsets S2_20200101_B04.tif S2_20200131_B04.tif -o vel.nc --chip 64 --step 16
    """
    # geodeform.workflows needs the geo extra (rasterio, xarray): imported when the command runs, so that
    # `geodeform --help` and the other sub-commands start without it.
    from geodeform.config import CorrectionsConfig
    from geodeform.io import product_format
    from geodeform.workflows import PairSpec

    spec = PairSpec(
        reference=str(reference),
        secondary=str(secondary),
        outputs={product_format(output, fmt.value if fmt else None): str(output)},
        stac=stac,
        band=band,
        dates=dates,
        method=method,  # type: ignore[arg-type]  # checked by the matcher, with the list of methods
        chip_size=chip,
        step=step,
        search_range=search,
        prefilter=prefilter,
        nodata=nodata,
        masks=_masks(mask),
        expected_speed=max_speed,
        # None: the credibility filters without the co-registration (one pair has no stable-ground mask)
        corrections=None if filters else CorrectionsConfig(enabled=False),
    )
    outcome = _run(spec)
    Console().print(_summary(outcome))
    for path in outcome.files:
        typer.echo(path)
