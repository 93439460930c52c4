"""The ``offsets`` process: the offsets of one image pair (``geodeform offsets`` as a job)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from geodeform.errors import InvalidInputError
from geodeform.io import parse_dates_option
from geodeform.service.errors import Problem
from geodeform.service.processes.base import Process, ProgressFn, ResultFile, file_outputs
from geodeform.service.processes.checks import check_image, raster_problems, unwrap_href
from geodeform.service.safety import fetch_url, is_url, resolve_data_path
from geodeform.service.settings import ServiceSettings
from geodeform.workflows import PairSpec, process_pair

__all__ = ["OffsetsInputs", "offsets_process"]

ImageRef = Annotated[
    str,
    BeforeValidator(unwrap_href),
    Field(
        min_length=1,
        max_length=1024,
        description="Image: a path relative to a data root of the server (e.g. 'l8/LC08_20200106_B4.tif') "
        "or an https URL on a configured catalogue host; a link object {'href': ...} is accepted too.",
    ),
]

_DATES = re.compile(r"^\d{4}-\d{2}-\d{2},\d{4}-\d{2}-\d{2}$")


class OffsetsInputs(BaseModel):
    """Inputs of the ``offsets`` process (same options as ``geodeform offsets``)."""

    model_config = ConfigDict(extra="forbid", title="offsets inputs")

    reference: ImageRef
    secondary: ImageRef
    method: Literal["ncc", "phase", "flow"] = Field("ncc", description="Matcher of geodeform.offsets.match.")
    chip: int = Field(32, ge=8, le=512, description="Chip (template) size, reference pixels.")
    step: int = Field(16, ge=1, le=4096, description="Node spacing, reference pixels.")
    search: int = Field(16, ge=1, le=1024, description="Search range, +/- pixels around each node.")
    dates: str | None = Field(
        None,
        pattern=_DATES.pattern,
        description="Acquisition dates REF,SEC as YYYY-MM-DD,YYYY-MM-DD (default: metadata, file names).",
    )
    prefilter: Literal["wallis", "highpass", "gradient", "rank"] | None = Field(
        None, description="Pre-filter applied to both images before matching."
    )
    band: int = Field(1, ge=1, le=10_000, description="1-based band read from both images.")


def _check_offsets(raw: Mapping[str, Any], settings: ServiceSettings) -> list[Problem]:
    """Files, URLs and limits; on the raw inputs, so that these problems are listed with schema ones."""
    problems: list[Problem] = []
    band = raw.get("band", 1)
    for name in ("reference", "secondary"):
        value = unwrap_href(raw.get(name))
        if not isinstance(value, str) or not value:
            continue  # the schema reports it
        path, found = check_image(name, value, settings)
        problems += found
        if path is not None:
            problems += raster_problems(name, path, band if isinstance(band, int) else 1, settings)
    dates = raw.get("dates")
    if isinstance(dates, str) and _DATES.match(dates):
        try:
            parse_dates_option(dates).check_order()
        except (InvalidInputError, ValueError) as exc:
            problems.append(Problem("dates", str(exc)))
    return problems


def _local_copy(value: str, job_dir: Path, name: str, settings: ServiceSettings) -> Path:
    if is_url(value):
        dest = job_dir / "inputs" / f"{name}.tif"
        dest.parent.mkdir(exist_ok=True)
        return fetch_url(
            value, dest, hosts=settings.catalogue_hosts, max_bytes=settings.max_body_bytes * 1000
        )
    return resolve_data_path(value, settings.data_roots)  # again: the file system may have changed since


def _run_offsets(
    inputs: OffsetsInputs, job_dir: Path, progress: ProgressFn, settings: ServiceSettings
) -> dict[str, ResultFile]:
    """The ``geodeform offsets`` chain into ``job_dir``: NetCDF + COG + STAC item + JSON report."""
    t0 = time.monotonic()
    progress(1, "reading images")
    reference = _local_copy(inputs.reference, job_dir, "reference", settings)
    secondary = _local_copy(inputs.secondary, job_dir, "secondary", settings)
    def on_pair(stage: str, done: int, total: int) -> None:
        # 5 % when matching starts, 90 % when writing starts; raising here stops the chain (dismissal)
        if stage == "match":
            progress(5 + 85 * done / max(total, 1), f"matching {done}/{total}" if total else "matching")
        elif stage == "write" and done == 0:
            progress(90, "writing products")

    spec = PairSpec(
        reference=str(reference),
        secondary=str(secondary),
        outputs={"netcdf": str(job_dir / "offsets.nc"), "cog": str(job_dir / "offsets.tif")},
        stac=True,
        band=inputs.band,
        dates=inputs.dates,
        method=inputs.method,
        chip_size=inputs.chip,
        step=inputs.step,
        search_range=inputs.search,
        prefilter=inputs.prefilter,
        strip_rows=256,  # progress (and a dismissal check) every 256 image rows
    )
    out = process_pair(spec, progress=on_pair)
    report = {
        "process": "offsets",
        "inputs": inputs.model_dump(),
        "dates": out.dates_source,
        "nodes": list(out.summary.nodes) if out.summary is not None else None,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
        "seconds": round(time.monotonic() - t0, 3),
    }
    (job_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return {
        "netcdf": ResultFile("offsets.nc", "application/x-netcdf", "Offsets and velocities, CF-1.8 NetCDF"),
        "cog": ResultFile("offsets.tif", "image/tiff; application=geotiff; profile=cloud-optimized", "COG"),
        "stac": ResultFile("offsets.stac.json", "application/geo+json", "STAC item of the NetCDF product"),
        "report": ResultFile("report.json", "application/json", "Processing report"),
    }


_OUTPUTS = file_outputs(
    netcdf="Offsets and velocities (NetCDF)",
    cog="Offsets and velocities (COG)",
    stac="STAC item",
    report="Processing report",
)


def offsets_process() -> Process:
    """The ``offsets`` process."""
    return Process(
        id="offsets",
        title="Offsets of one image pair",
        description="Correlate two georeferenced images (sub-pixel offset tracking) and write offsets in "
        "metres (+x east, +y north) and velocities in m/yr as NetCDF and COG, with a STAC item.",
        inputs_model=OffsetsInputs,
        runner=_run_offsets,
        check=_check_offsets,
        outputs=_OUTPUTS,
        keywords=("offset tracking", "velocity"),
    )
