"""``geodeform search``: find scenes over an AOI and rank them by cloud cover computed on the AOI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from geodeform.cli.app import app

__all__ = ["search_command"]


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def _table(scenes: object, title: str) -> Table:
    table = Table(title=title)
    for name, justify in (
        ("id", "left"), ("date (UTC)", "left"), ("orbit", "right"), ("tile", "left"),
        ("meta cloud %", "right"), ("AOI cover %", "right"), ("AOI cloud %", "right"),
        ("AOI valid %", "right"), ("note", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in scenes:  # type: ignore[attr-defined]
        table.add_row(
            s.id, s.datetime.strftime("%Y-%m-%d %H:%M"), "-" if s.orbit is None else str(s.orbit),
            s.tile or "-", _pct(s.cloud_cover), _pct(s.aoi_coverage_pct), _pct(s.aoi_cloud_pct),
            _pct(s.aoi_valid_pct), s.note[:60],
        )  # fmt: skip
    return table


@app.command("search")
def search_command(
    *,
    collection: Annotated[
        str,
        typer.Option(
            "--collection",
            "-c",
            help="sentinel-2-l2a, sentinel-2-l1c, landsat-c2-l2, sentinel-1-grd or cop-dem-glo-30 "
            "(aliases: s2-l2a, s2-l1c, landsat, s1-grd, dem).",
        ),
    ] = "sentinel-2-l2a",
    bbox: Annotated[
        str | None, typer.Option(help="AOI bounding box W,S,E,N in degrees, e.g. 7.1,45.8,7.3,45.95.")
    ] = None,
    tile: Annotated[
        str | None,
        typer.Option(help="MGRS / Sentinel-2 tile id, e.g. 32TLR; with --bbox/--aoi keeps only that tile."),
    ] = None,
    aoi: Annotated[
        Path | None,
        typer.Option(
            help="AOI as a vector file: GeoJSON, KML, shapefile (.shp/.zip), GeoPackage, FlatGeobuf."
        ),
    ] = None,
    start: Annotated[str | None, typer.Option(help="First acquisition date, YYYY-MM-DD (inclusive).")] = None,
    end: Annotated[str | None, typer.Option(help="Last acquisition date, YYYY-MM-DD (inclusive).")] = None,
    months: Annotated[
        str | None, typer.Option(help="Season: month window FIRST-LAST, e.g. 6-9; 11-2 wraps the new year.")
    ] = None,
    max_cloud: Annotated[
        float | None, typer.Option(help="Max scene-wide metadata cloud cover (eo:cloud_cover), %.")
    ] = None,
    max_aoi_cloud: Annotated[
        float | None, typer.Option(help="Max cloud cover computed on the AOI (SCL / QA_PIXEL), %.")
    ] = None,
    min_valid: Annotated[float | None, typer.Option(help="Min valid-data share of the AOI, %.")] = None,
    min_coverage: Annotated[float, typer.Option(help="Min share of the AOI inside the footprint, %.")] = 0.0,
    orbit: Annotated[
        list[int] | None,
        typer.Option(help="Relative orbit (S1/S2) or WRS-2 path (Landsat); repeat for several."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Keep the N best scenes (least AOI cloud) per orbit.")
    ] = None,
    max_items: Annotated[int, typer.Option(help="Max items requested from the catalogue.")] = 500,
    catalog: Annotated[
        str | None,
        typer.Option(help="earth-search (default), cdse, a STAC API URL, or a local folder of rasters."),
    ] = None,
    no_score: Annotated[bool, typer.Option("--no-score", help="Skip AOI cloud scoring (faster).")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the table: OUT.geojson or OUT.csv.")
    ] = None,
) -> None:
    """Search a STAC catalogue over an AOI; rank scenes by cloud cover computed on the AOI itself.

    Cloud % is read from the SCL band (Sentinel-2 L2A) or QA_PIXEL (Landsat C2 L2) inside the AOI only:
    a scene 80 % cloudy can be clear over your glacier.

    Examples:

      geodeform search --tile 32TLR --start 2023-06-01 --end 2023-09-30 --limit 5 -o scenes.geojson

      geodeform search -c landsat --bbox 7.1,45.8,7.3,45.95 --months 6-9 --max-aoi-cloud 20 -o s.csv
    """
    from geodeform.search import search  # needs the geo extra: imported when the command runs

    console = Console()
    with Progress(
        TextColumn("AOI scoring"), BarColumn(), MofNCompleteColumn(), transient=True, console=console
    ) as bar:
        task = bar.add_task("score", total=None)
        table = search(
            collection,
            bbox=bbox,
            aoi=aoi,
            tile=tile,
            start=start,
            end=end,
            months=months,
            max_cloud=max_cloud,
            max_aoi_cloud=max_aoi_cloud,
            min_valid=min_valid,
            orbit=orbit or None,
            min_coverage=min_coverage,
            best_per_orbit=limit,
            max_items=max_items,
            catalog=catalog,
            score=not no_score,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(_table(table, f"{len(table)} scenes over {table.aoi.source if table.aoi else 'AOI'}"))
    if output is not None:
        typer.echo(str(table.write(output)))
