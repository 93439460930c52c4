"""``geodeform offsets``: correlate two georeferenced rasters and write a georeferenced offset product."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from geodeform.cli.app import app
from geodeform.errors import InvalidInputError

if TYPE_CHECKING:  # geodeform.io pulls rasterio/xarray in: imported lazily so that --help stays fast
    import xarray as xr

    from geodeform.io import AcquisitionDates, RasterPair

__all__ = ["offsets"]


class OutputFormat(str, enum.Enum):
    """Product file format."""

    netcdf = "netcdf"
    cog = "cog"


_SUFFIXES = {OutputFormat.netcdf: (".nc", ".nc4"), OutputFormat.cog: (".tif", ".tiff")}


def _output_format(out: Path, fmt: OutputFormat | None) -> OutputFormat:
    by_suffix = next((f for f, sfx in _SUFFIXES.items() if out.suffix.lower() in sfx), None)
    if fmt is None:
        return by_suffix or OutputFormat.netcdf
    if by_suffix is not None and by_suffix is not fmt:
        wanted = _SUFFIXES[fmt][0]
        raise InvalidInputError(
            f"-o {out.name} has a {out.suffix} suffix but --format is {fmt.value}; "
            f"use -o {out.with_suffix(wanted).name} or drop --format"
        )
    return fmt


def _resolve_dates(dates: str | None, pair: RasterPair) -> tuple[AcquisitionDates | None, str]:
    from geodeform.io import AcquisitionDates, acquisition_date, parse_dates_option

    if dates:
        return parse_dates_option(dates), "--dates"
    ref = acquisition_date(pair.reference.path, pair.reference.tags)
    sec = acquisition_date(pair.secondary.path, pair.secondary.tags)
    if ref is None or sec is None:
        missing = pair.reference.path.name if ref is None else pair.secondary.path.name
        return None, f"unknown for {missing}: velocities not computed (pass --dates REF,SEC)"
    return AcquisitionDates(ref, sec), "metadata / file names"


def _fill_values(pair: RasterPair, nodata: float | None) -> tuple[float, ...]:
    """Values to ignore: ``--nodata``, else 0 and the dtype maximum of integer sources without nodata."""
    if nodata is not None:
        return (float(nodata),)
    fills: set[float] = set()
    for band in (pair.reference, pair.secondary):
        dtype = np.dtype(band.source_dtype)
        if np.issubdtype(dtype, np.integer) and band.source_nodata is None:
            # Pixels were converted to float32, so the matcher no longer sees the integer fill defaults.
            fills.update((0.0, float(np.iinfo(dtype).max)))
    return tuple(sorted(fills))


def _match(
    pair: RasterPair,
    method: str,
    chip: int,
    step: int,
    search: int,
    nodata: float | None,
    prefilter: str | None,
) -> Any:
    from geodeform.offsets import match

    with Progress(
        TextColumn("matching"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:
        task = bar.add_task("matching", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        # Bad options raise InvalidInputError inside match(); anything else is a bug and should show.
        return match(
            pair.reference.data,
            pair.secondary.data,
            method=method,
            chip_size=chip,
            step=step,
            search_range=search,
            fill_values=_fill_values(pair, nodata),
            prefilter=prefilter,
            progress=progress,
        )


def _product(
    result: Any,
    pair: RasterPair,
    acq: Any,
    reference: Any,
    secondary: Any,
    *,
    method: str,
    chip: int,
    step: int,
    search: int,
    band: Any,
) -> Any:
    """The offset product (``geodeform.io.offset_dataset``) of one matched pair, with the processing
    settings: those asked for, overridden by the matcher's full, resolved ones, and the band."""
    from geodeform.io import offset_dataset

    processing: dict[str, Any] = {"method": method, "chip_size": chip, "step": step, "search_range": search}
    processing.update(getattr(result, "params", {}))  # the matcher's full, resolved settings win
    processing["band"] = band
    return offset_dataset(
        result,
        pair.reference.grid,
        dates=acq,
        reference=reference,
        secondary=secondary,
        step=step,
        processing=processing,
        reason_codes=_reason_codes(),
    )


def _reason_codes() -> dict[int, str] | None:
    try:
        from geodeform.offsets import Reason
    except ImportError:
        return None
    return {int(r): r.name for r in Reason}


def _fmt(value: float, unit: str) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g} {unit}"


def _summary(ds: xr.Dataset, dates_note: str, reprojected: bool) -> Table:
    valid = np.isfinite(ds["dx"].values) & np.isfinite(ds["dy"].values)
    table = Table(title="geodeform offsets", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("nodes", f"{ds.sizes['y']} x {ds.sizes['x']}, {valid.mean():.1%} valid")
    table.add_row("secondary", "warped onto the reference grid" if reprojected else "same grid as reference")
    with np.errstate(all="ignore"):
        for name, unit in (("dx", "m"), ("dy", "m"), ("v", "m/yr")):
            if name in ds:
                table.add_row(
                    f"median {name}",
                    _fmt(float(np.nanmedian(ds[name].values)) if valid.any() else float("nan"), unit),
                )
    if "date_dt" in ds:
        info = ds["img_pair_info"].attrs
        when = (
            f"{info['acquisition_date_img1']} -> {info['acquisition_date_img2']} ({float(ds['date_dt']):g} d)"
        )
        table.add_row("dates", f"{when}, from {dates_note}")
    else:
        table.add_row("dates", dates_note)
    if "date_dt" in ds and "v" not in ds:
        table.add_row("velocity", "not computed: both images have the same date")
    return table


@app.command("offsets")
def offsets(
    reference: Annotated[
        Path, typer.Argument(help="Reference (earlier) georeferenced raster, e.g. a GeoTIFF.")
    ],
    secondary: Annotated[
        Path, typer.Argument(help="Secondary (later) raster; warped onto the reference grid if grids differ.")
    ],
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
) -> None:
    """Correlate two georeferenced rasters and write offsets in metres (and velocities in m/yr).

    Offsets are the displacement from REFERENCE to SECONDARY.

    Signs: dx and vx are positive toward increasing map x (east), dy and vy toward increasing map y (north).

    Velocities need both acquisition dates (tags, YYYYMMDD in the file names, or --dates).

    Example: geodeform offsets S2_20200101_B04.tif S2_20200131_B04.tif -o vel.nc --chip 64 --step 16
    """
    from geodeform.io import read_pair, write_cog, write_netcdf, write_stac_item

    out_format = _output_format(output, fmt)
    pair = read_pair(reference, secondary, band=band)
    acq, dates_note = _resolve_dates(dates, pair)
    if acq is not None:
        acq.check_order()  # before the long matching, not after
    result = _match(pair, method, chip, step, search, nodata, prefilter)
    ds = _product(
        result, pair, acq, reference, secondary, method=method, chip=chip, step=step, search=search, band=band
    )
    written = [write_netcdf(ds, output) if out_format is OutputFormat.netcdf else write_cog(ds, output)]
    if stac:
        written.append(write_stac_item(ds, output))
    Console().print(_summary(ds, dates_note, pair.reprojected))
    for path in written:
        typer.echo(str(path))
