"""The one-pair chain the ``offsets`` process runs: read, date, match, build the product, write it.

The same chain as ``geodeform offsets``, into a job folder: offsets.nc (CF-1.8), offsets.tif (COG) and
offsets.stac.json. It stands alone in this module so that the process can switch to the library's single
pair chain (``geodeform.workflows.pair.process_pair``) by replacing :func:`run_pair_chain` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from geodeform.io import (
    AcquisitionDates,
    RasterPair,
    acquisition_date,
    offset_dataset,
    parse_dates_option,
    read_pair,
    write_cog,
    write_netcdf,
    write_stac_item,
)
from geodeform.offsets import Reason, match

__all__ = ["ChainOutput", "fill_values", "resolve_dates", "run_pair_chain"]


@dataclass(frozen=True)
class ChainOutput:
    """What :func:`run_pair_chain` wrote.

    Attributes
    ----------
    dataset
        The offset product (``geodeform.io.offset_dataset``): dx, dy in metres (+x east, +y north) and,
        with dates, vx, vy, v in m/yr.
    dates_note
        Where the acquisition dates came from, or why velocities were not computed.
    files
        Paths of the NetCDF, COG and STAC item written, by kind (``netcdf``, ``cog``, ``stac``).
    """

    dataset: xr.Dataset
    dates_note: str
    files: dict[str, Path]


def resolve_dates(dates: str | None, pair: RasterPair) -> tuple[AcquisitionDates | None, str]:
    """Acquisition dates from ``REF,SEC`` text, else from the images' tags and names; and their source."""
    if dates:
        return parse_dates_option(dates), "--dates"
    ref = acquisition_date(pair.reference.path, pair.reference.tags)
    sec = acquisition_date(pair.secondary.path, pair.secondary.tags)
    if ref is None or sec is None:
        missing = pair.reference.path.name if ref is None else pair.secondary.path.name
        return None, f"unknown for {missing}: velocities not computed (pass --dates REF,SEC)"
    return AcquisitionDates(ref, sec), "metadata / file names"


def fill_values(pair: RasterPair, nodata: float | None) -> tuple[float, ...]:
    """Values to ignore: ``nodata``, else 0 and the dtype maximum of integer sources without nodata."""
    if nodata is not None:
        return (float(nodata),)
    fills: set[float] = set()
    for band in (pair.reference, pair.secondary):
        dtype = np.dtype(band.source_dtype)
        if np.issubdtype(dtype, np.integer) and band.source_nodata is None:
            # Pixels were converted to float32, so the matcher no longer sees the integer fill defaults.
            fills.update((0.0, float(np.iinfo(dtype).max)))
    return tuple(sorted(fills))


def run_pair_chain(
    reference: Path,
    secondary: Path,
    out_dir: Path,
    *,
    method: Literal["ncc", "phase", "flow"],
    chip: int,
    step: int,
    search: int,
    band: int,
    dates: str | None,
    prefilter: Literal["wallis", "highpass", "gradient", "rank"] | None,
    progress: Callable[[float, str], None],
) -> ChainOutput:
    """Match one pair and write ``offsets.nc``, ``offsets.tif`` and ``offsets.stac.json`` into ``out_dir``.

    ``progress(percent, message)`` is called from 5 % (matching starts) to 90 % (writing starts); it may
    raise to stop the chain (the service's dismissal).
    """
    pair = read_pair(reference, secondary, band=band)
    acq, dates_note = resolve_dates(dates, pair)
    if acq is not None:
        acq.check_order()
    progress(5, "matching")

    def on_match(done: int, total: int) -> None:
        progress(5 + 85 * done / max(total, 1), f"matching {done}/{total}")

    result: Any = match(  # Any: the io OffsetField protocol is stricter than the matcher's frozen result
        pair.reference.data,
        pair.secondary.data,
        method=method,
        chip_size=chip,
        step=step,
        search_range=search,
        fill_values=fill_values(pair, None),
        prefilter=prefilter,
        progress=on_match,
        strip_rows=256,  # progress (and a dismissal check) every 256 image rows
    )
    progress(90, "writing products")
    processing: dict[str, Any] = {"method": method, "chip_size": chip, "step": step, "search_range": search}
    processing.update(getattr(result, "params", {}))  # the matcher's full, resolved settings win
    processing["band"] = band
    ds = offset_dataset(
        result,
        pair.reference.grid,
        dates=acq,
        reference=reference,
        secondary=secondary,
        step=step,
        processing=processing,
        reason_codes={int(r): r.name for r in Reason},
    )
    files = {
        "netcdf": write_netcdf(ds, out_dir / "offsets.nc"),
        "cog": write_cog(ds, out_dir / "offsets.tif"),
        "stac": write_stac_item(ds, out_dir / "offsets.nc", out_dir / "offsets.stac.json"),
    }
    return ChainOutput(ds, dates_note, files)
