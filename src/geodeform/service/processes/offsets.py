"""The ``offsets`` process: the offsets of one image pair (``geodeform offsets`` as a job)."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from geodeform import workflows  # PairSpec, process_pair: loaded in the job process, on first use
from geodeform.errors import InvalidInputError
from geodeform.io import parse_dates_option
from geodeform.service.errors import Problem
from geodeform.service.paths import resolve_input
from geodeform.service.processes.base import (
    InputContext,
    Process,
    RunContext,
    RunOutcome,
    file_outputs,
    result_files,
)
from geodeform.service.processes.checks import (
    check_image,
    node_count,
    node_problems,
    raster_shape,
    unwrap_href,
)
from geodeform.service.safety import fetch_url, is_url

__all__ = ["OffsetsInputs", "offsets_process"]

_IMAGE_HELP = (
    "Image: a path relative to a data root of the server (e.g. 'l8/LC08_20200106_B4.tif'), 'uploads/NAME' "
    "(a file you uploaded), 'jobs/JOB_ID/NAME' (a file of one of your jobs) or an https URL on a configured "
    "catalogue host; a link object {'href': ...} is accepted too."
)
ImageRef = Annotated[
    str,
    BeforeValidator(unwrap_href),
    Field(min_length=1, max_length=1024, description=_IMAGE_HELP),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": 1024},
                {
                    "type": "object",
                    "properties": {"href": {"type": "string", "minLength": 1, "maxLength": 1024}},
                    "required": ["href"],
                },
            ],
            "description": _IMAGE_HELP,
        }
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
        description="Acquisition dates REF,SEC as YYYY-MM-DD,YYYY-MM-DD (default: the images' metadata or "
        "file names; without dates only displacements are computed, no velocities).",
    )
    prefilter: Literal["wallis", "highpass", "gradient", "rank"] | None = Field(
        None, description="Pre-filter applied to both images before matching."
    )
    band: int = Field(1, ge=1, le=10_000, description="1-based band read from both images.")


def _int(raw: Mapping[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    return value if type(value) is int else default


def _check_offsets(raw: Mapping[str, Any], context: InputContext) -> list[Problem]:
    """Files, URLs and limits; on the raw inputs, so that these problems are listed with schema ones."""
    problems: list[Problem] = []
    band = _int(raw, "band", 1)
    for name in ("reference", "secondary"):
        value = unwrap_href(raw.get(name))
        if not isinstance(value, str) or not value:
            continue  # the schema reports it
        path, found = check_image(name, value, context)
        problems += found
        if path is not None:
            shape, found = raster_shape(name, path, band, context.settings)
            problems += found
            if name == "reference" and shape is not None and not found:
                nodes = node_count(shape, _int(raw, "chip", 32), max(1, _int(raw, "step", 16)))
                problems += node_problems("step", nodes, 1, context.settings)
    dates = raw.get("dates")
    if isinstance(dates, str) and _DATES.match(dates):
        try:
            parse_dates_option(dates).check_order()
        except (InvalidInputError, ValueError) as exc:
            problems.append(Problem("dates", str(exc)))
    return problems


def _prepare(inputs: OffsetsInputs, context: InputContext) -> OffsetsInputs:
    """File inputs as server paths in the caller's scope (URLs stay URLs: fetched by the job)."""
    update = {
        name: str(resolve_input(value, context.scope))
        for name in ("reference", "secondary")
        if not is_url(value := getattr(inputs, name))
    }
    return inputs.model_copy(update=update)


def _local_copy(value: str, name: str, context: RunContext) -> Path:
    if not is_url(value):
        return Path(value)  # resolved in the caller's scope by _prepare, just before this job started
    dest = context.job_dir / "inputs" / f"{name}.tif"
    dest.parent.mkdir(exist_ok=True)
    settings = context.settings
    return fetch_url(value, dest, hosts=settings.catalogue_hosts, max_bytes=settings.max_upload_bytes)


def _run_offsets(inputs: OffsetsInputs, context: RunContext) -> RunOutcome:
    """The ``geodeform offsets`` chain into the job folder: NetCDF + COG + STAC item + JSON report."""
    t0 = time.monotonic()
    job_dir, progress = context.job_dir, context.progress
    progress(1, "reading images")
    reference = _local_copy(inputs.reference, "reference", context)
    secondary = _local_copy(inputs.secondary, "secondary", context)

    def on_pair(stage: str, done: int, total: int) -> None:
        # 5 % when matching starts, 90 % when writing starts
        if stage == "match":
            progress(5 + 85 * done / max(total, 1), f"matching {done}/{total}" if total else "matching")
        elif stage == "write" and done == 0:
            progress(90, "writing products")

    spec = workflows.PairSpec(
        reference=str(reference),
        secondary=str(secondary),
        reference_name=context.public(str(reference)),
        secondary_name=context.public(str(secondary)),
        outputs={"netcdf": str(job_dir / "offsets.nc"), "cog": str(job_dir / "offsets.tif")},
        stac=True,
        band=inputs.band,
        dates=inputs.dates,
        method=inputs.method,
        chip_size=inputs.chip,
        step=inputs.step,
        search_range=inputs.search,
        prefilter=inputs.prefilter,
        strip_rows=256,  # progress every 256 image rows
    )
    out = workflows.process_pair(spec, progress=on_pair)
    velocities = out.dt_days == out.dt_days  # not NaN: both dates known
    message = (
        "finished"
        if velocities
        else (
            "finished: offsets in metres only, no velocities: the acquisition dates are unknown (not in the "
            "images' metadata or file names); give them in the 'dates' input as YYYY-MM-DD,YYYY-MM-DD"
        )
    )
    report = {
        "process": "offsets",
        "inputs": inputs.model_dump(),
        "dates": out.dates_source,
        "velocities": bool(velocities),
        "nodes": list(out.summary.nodes) if out.summary is not None else None,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
        "seconds": round(time.monotonic() - t0, 3),
    }
    text = context.public(json.dumps(report, indent=2, default=str))
    (job_dir / "report.json").write_text(text.replace("--dates", "the 'dates' input"))
    return RunOutcome(result_files(_OUTPUTS, _FILES), message)


_OUTPUTS = file_outputs(
    netcdf=("Offsets and velocities (NetCDF)", "application/x-netcdf"),
    cog=("Offsets and velocities (COG)", "image/tiff; application=geotiff; profile=cloud-optimized"),
    stac=("STAC item", "application/geo+json"),
    report=("Processing report", "application/json"),
)
_FILES = {"netcdf": "offsets.nc", "cog": "offsets.tif", "stac": "offsets.stac.json", "report": "report.json"}


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
        prepare=_prepare,
        outputs=_OUTPUTS,
        keywords=("offset tracking", "velocity"),
    )
