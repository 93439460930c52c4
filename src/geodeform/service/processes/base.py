"""The processes the service offers: an id, a pydantic input model, a check and a runner.

This is the only module of the service that knows about geodeform's processing chains. A process is

- ``inputs_model``: pydantic v2 model with ``extra="forbid"``; its JSON schema becomes the OGC input
  descriptions, its validation errors the 400 problems;
- ``check(raw_inputs, settings)``: what the schema cannot say (files in data roots, URLs on catalogue hosts,
  image count and area limits), returning the same kind of problems;
- ``runner(inputs, job_dir, progress, settings)``: does the work in a worker process, writes its files into
  ``job_dir`` and returns ``{output id: ResultFile}``. ``progress(percent, message)`` stores progress in the
  job row and raises :class:`JobCancelled` once the job has been dismissed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from geodeform.errors import GeodeformError, InvalidInputError
from geodeform.service.safety import check_url, fetch_url, is_url, resolve_data_path
from geodeform.service.settings import ServiceSettings

__all__ = [
    "JobCancelled",
    "OffsetsInputs",
    "Problem",
    "Process",
    "ProgressFn",
    "ResultFile",
    "build_registry",
    "input_descriptions",
    "validate_inputs",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, "str | None"], None]


class JobCancelled(GeodeformError):
    """Raised inside a runner (by its progress callback) when the job was dismissed or lost."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs of an execution request."""

    input: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        """JSON form used in OGC exception documents."""
        return {"input": self.input, "problem": self.problem}


@dataclass(frozen=True)
class ResultFile:
    """One file a job produced, relative to its job folder."""

    name: str
    media_type: str
    title: str


Runner = Callable[[Any, Path, ProgressFn, ServiceSettings], dict[str, ResultFile]]
Check = Callable[[Mapping[str, Any], ServiceSettings], list[Problem]]


@dataclass(frozen=True)
class Process:
    """A process offered by the service (OGC API – Processes)."""

    id: str
    title: str
    description: str
    inputs_model: type[BaseModel]
    runner: Runner
    check: Check | None = None
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    version: str = "1.0.0"
    keywords: tuple[str, ...] = ()


def _unwrap_href(value: Any) -> Any:
    # OGC clients send file inputs either as a string or as a link object {"href": ...}.
    if isinstance(value, Mapping) and set(value) <= {"href", "type", "rel", "title"} and "href" in value:
        return value["href"]
    return value


ImageRef = Annotated[
    str,
    BeforeValidator(_unwrap_href),
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


def _check_image(name: str, value: str, settings: ServiceSettings) -> tuple[Path | None, list[Problem]]:
    try:
        if is_url(value):
            check_url(value, settings.catalogue_hosts)
            return None, []
        return resolve_data_path(value, settings.data_roots), []
    except InvalidInputError as exc:
        return None, [Problem(name, str(exc))]


def _raster_problems(name: str, path: Path, band: int, settings: ServiceSettings) -> list[Problem]:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            problems = []
            if src.width * src.height > settings.max_pixels:
                problems.append(
                    Problem(
                        name,
                        f"image is {src.width} x {src.height} pixels, more than the {settings.max_pixels} "
                        "pixel area limit of this server; crop it",
                    )
                )
            if band > src.count:
                problems.append(Problem("band", f"{name} has {src.count} band(s), band {band} asked"))
            return problems
    except RasterioError:
        return [Problem(name, "not a readable raster (GeoTIFF expected)")]


def _check_offsets(raw: Mapping[str, Any], settings: ServiceSettings) -> list[Problem]:
    """Files, URLs and limits; on the raw inputs, so that these problems are listed with schema ones."""
    problems: list[Problem] = []
    band = raw.get("band", 1)
    for name in ("reference", "secondary"):
        value = _unwrap_href(raw.get(name))
        if not isinstance(value, str) or not value:
            continue  # the schema reports it
        path, found = _check_image(name, value, settings)
        problems += found
        if path is not None:
            problems += _raster_problems(name, path, band if isinstance(band, int) else 1, settings)
    dates = raw.get("dates")
    if isinstance(dates, str) and _DATES.match(dates):
        from geodeform.io import parse_dates_option

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
    from geodeform.cli.offsets import _fill_values, _product, _resolve_dates
    from geodeform.io import read_pair, write_cog, write_netcdf, write_stac_item
    from geodeform.offsets import match

    t0 = time.monotonic()
    progress(1, "reading images")
    reference = _local_copy(inputs.reference, job_dir, "reference", settings)
    secondary = _local_copy(inputs.secondary, job_dir, "secondary", settings)
    pair = read_pair(reference, secondary, band=inputs.band)
    acq, dates_note = _resolve_dates(inputs.dates, pair)
    if acq is not None:
        acq.check_order()
    progress(5, "matching")

    def on_match(done: int, total: int) -> None:
        progress(5 + 85 * done / max(total, 1), f"matching {done}/{total}")

    result: Any = match(  # Any: the io OffsetField protocol is stricter than the matcher's frozen result
        pair.reference.data,
        pair.secondary.data,
        method=inputs.method,
        chip_size=inputs.chip,
        step=inputs.step,
        search_range=inputs.search,
        fill_values=_fill_values(pair, None),
        prefilter=inputs.prefilter,
        progress=on_match,
        strip_rows=256,  # progress (and a dismissal check) every 256 image rows
    )
    progress(90, "writing products")
    ds = _product(
        result,
        pair,
        acq,
        reference,
        secondary,
        method=inputs.method,
        chip=inputs.chip,
        step=inputs.step,
        search=inputs.search,
        band=inputs.band,
    )
    write_netcdf(ds, job_dir / "offsets.nc")
    write_cog(ds, job_dir / "offsets.tif")
    write_stac_item(ds, job_dir / "offsets.nc", job_dir / "offsets.stac.json")
    report = {
        "process": "offsets",
        "inputs": inputs.model_dump(),
        "dates": dates_note,
        "nodes": [int(ds.sizes["y"]), int(ds.sizes["x"])],
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


_OFFSETS_OUTPUTS = {
    "netcdf": {"title": "Offsets and velocities (NetCDF)", "schema": {"type": "string", "format": "uri"}},
    "cog": {"title": "Offsets and velocities (COG)", "schema": {"type": "string", "format": "uri"}},
    "stac": {"title": "STAC item", "schema": {"type": "string", "format": "uri"}},
    "report": {"title": "Processing report", "schema": {"type": "string", "format": "uri"}},
}


def _offsets_process() -> Process:
    return Process(
        id="offsets",
        title="Offsets of one image pair",
        description="Correlate two georeferenced images (sub-pixel offset tracking) and write offsets in "
        "metres (+x east, +y north) and velocities in m/yr as NetCDF and COG, with a STAC item.",
        inputs_model=OffsetsInputs,
        runner=_run_offsets,
        check=_check_offsets,
        outputs=_OFFSETS_OUTPUTS,
        keywords=("offset tracking", "velocity"),
    )


_STAGES = {"read": (0.0, 20.0), "match": (20.0, 80.0), "invert": (80.0, 90.0), "products": (90.0, 100.0)}
_MEDIA = {
    ".nc": "application/x-netcdf",
    ".tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    ".json": "application/json",
    ".html": "text/html",
}


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _inside_roots(
    where: str, value: Any, settings: ServiceSettings, *, folder: bool = False
) -> list[Problem]:
    if not isinstance(value, str):
        return []
    try:
        if folder:
            _resolve_folder(value, settings)
        else:
            resolve_data_path(value, settings.data_roots)
    except InvalidInputError as exc:
        return [Problem(where, str(exc))]
    return []


def _resolve_folder(value: str, settings: ServiceSettings) -> Path:
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInputError("a folder name may not contain control characters (NUL, newline, ...)")
    marker = value.rstrip("/") + "/."
    for root in settings.data_roots:
        real = (root / value).resolve()
        if real.is_dir() and real.is_relative_to(root.resolve()):
            return real
    resolve_data_path(marker, settings.data_roots)  # raises with the reason (.., absolute, symlink)
    raise InvalidInputError(f"no folder {value!r} in the data roots")


def _catalog_problems(catalog: Any, settings: ServiceSettings) -> list[Problem]:
    if not isinstance(catalog, str):
        return []
    from geodeform.search.catalogs import CATALOGS

    url = CATALOGS.get(catalog.strip().lower(), catalog)
    try:
        if is_url(url):
            check_url(url, settings.catalogue_hosts)
        else:
            _resolve_folder(url, settings)
    except InvalidInputError as exc:
        return [Problem("search.catalog", str(exc))]
    return []


def _bbox_km2(bbox: Any) -> float | None:
    import math

    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    lat = math.radians((s + n) / 2)
    return abs(e - w) * 111.32 * math.cos(lat) * abs(n - s) * 110.57


def _check_preset(raw: Mapping[str, Any], settings: ServiceSettings) -> list[Problem]:
    """Everything a job config names must stay inside the data roots / configured catalogue hosts."""
    problems: list[Problem] = []
    inputs = raw.get("inputs")
    if isinstance(inputs, list):
        if len(inputs) > settings.max_images:
            problems.append(Problem("inputs", f"{len(inputs)} images; at most {settings.max_images} per job"))
        for i, item in enumerate(inputs):
            if isinstance(item, Mapping):
                problems += _inside_roots(f"inputs.{i}.path", item.get("path"), settings)
                path = item.get("path")
                if i == 0 and isinstance(path, str) and not problems:
                    problems += _raster_problems(
                        "inputs.0.path", resolve_data_path(path, settings.data_roots), 1, settings
                    )
    problems += _inside_roots("dem", raw.get("dem"), settings)
    search = raw.get("search")
    if isinstance(search, Mapping):
        problems += _catalog_problems(search.get("catalog", "earth-search"), settings)
        aoi = search.get("aoi")
        if isinstance(aoi, Mapping):
            problems += _inside_roots("search.aoi.geojson", aoi.get("geojson"), settings)
            area = _bbox_km2(aoi.get("bbox"))
            if area is not None and area > settings.max_area_km2:
                problems.append(
                    Problem(
                        "search.aoi.bbox", f"{area:.0f} km²; at most {settings.max_area_km2:g} km² per job"
                    )
                )
        n = search.get("max_images")
        if isinstance(n, int) and n > settings.max_images:
            problems.append(Problem("search.max_images", f"at most {settings.max_images} per job"))
    return problems


def _server_side(config: Any, settings: ServiceSettings) -> Any:
    """The config as it runs here: paths made absolute inside the data roots, compute chosen by the server."""
    from geodeform.config import ComputeConfig

    compute = (
        ComputeConfig.model_validate(settings.compute)
        if settings.compute is not None
        else config.compute.model_copy(update={"cluster": "sync", "threads": 1})
    )
    update: dict[str, Any] = {"compute": compute}
    if config.inputs:
        update["inputs"] = [
            i.model_copy(update={"path": str(resolve_data_path(i.path, settings.data_roots))})
            for i in config.inputs
        ]
    if config.dem:
        update["dem"] = str(resolve_data_path(config.dem, settings.data_roots))
    if config.search is not None:
        search = config.search
        if not is_url(search.catalog) and search.catalog.lower() not in ("earth-search", "cdse"):
            search = search.model_copy(update={"catalog": str(_resolve_folder(search.catalog, settings))})
        if search.aoi.geojson:
            aoi = search.aoi.model_copy(
                update={"geojson": str(resolve_data_path(search.aoi.geojson, settings.data_roots))}
            )
            search = search.model_copy(update={"aoi": aoi})
        update["search"] = search
    return config.model_copy(update=update)


def _preset_runner(preset: str) -> Runner:
    def run(
        inputs: Any, job_dir: Path, progress: ProgressFn, settings: ServiceSettings
    ) -> dict[str, ResultFile]:
        from geodeform.workflows import run_job

        config = _server_side(inputs, settings)

        def on_stage(stage: str, done: int, total: int) -> None:
            lo, hi = _STAGES.get(stage, (0.0, 100.0))
            progress(lo + (hi - lo) * done / max(total, 1), f"{stage} {done}/{total}")

        result = run_job(config, job_dir, progress=on_stage)
        files: dict[str, ResultFile] = {}
        for key, path in result.products.items():
            rel = Path(path).resolve().relative_to(job_dir.resolve())
            media = _MEDIA.get(rel.suffix.lower(), "application/octet-stream")
            files[key] = ResultFile(str(rel), media, f"{preset}: {key}")
        return files

    return run


def _preset_model(preset: str, defaults: Mapping[str, Any]) -> type[BaseModel]:
    """JobConfig with the preset's defaults laid underneath (the request may give any section partially)."""
    from geodeform.config import JobConfig

    class PresetInputs(JobConfig):
        model_config = ConfigDict(extra="forbid", title=f"{preset} job")

        @model_validator(mode="before")
        @classmethod
        def _preset_defaults(cls, data: Any) -> Any:
            if isinstance(data, Mapping):
                return _deep_merge({**defaults, "name": f"{preset}-job"}, data) | {"preset": preset}
            return data

    PresetInputs.__name__ = PresetInputs.__qualname__ = f"{preset.capitalize()}Inputs"
    return PresetInputs


def _preset_processes() -> list[Process]:
    """One process per workflow preset of :mod:`geodeform.config` (absent: none)."""
    try:
        from geodeform.config import PRESETS
    except ImportError:
        return []
    titles = {
        "ice": "Glacier flow (ice preset)",
        "slide": "Landslide creep (slide preset)",
        "quake": "Earthquake offsets (quake preset)",
        "survey": "Regional survey over several tiles (survey preset)",
    }
    out = []
    for preset, defaults in PRESETS.items():
        out.append(
            Process(
                id=preset,
                title=titles.get(preset, f"{preset} preset"),
                description=f"The `{preset}` workflow preset of `geodeform run`: images (catalogue search or "
                "local files in the data roots) -> pairs -> offsets -> corrections -> time series -> "
                "velocity products (NetCDF, COG), STAC catalogue and HTML report. Inputs are the sections of "
                f"a job config; unspecified fields take the preset's values: {json.dumps(defaults)}.",
                inputs_model=_preset_model(preset, defaults),
                runner=_preset_runner(preset),
                check=_check_preset,
                outputs={
                    "velocity_nc": {
                        "title": "Velocity (NetCDF)",
                        "schema": {"type": "string", "format": "uri"},
                    },
                    "velocity_tif": {
                        "title": "Velocity (COG)",
                        "schema": {"type": "string", "format": "uri"},
                    },
                    "timeseries": {
                        "title": "Time series (NetCDF)",
                        "schema": {"type": "string", "format": "uri"},
                    },
                    "catalog": {"title": "STAC catalogue", "schema": {"type": "string", "format": "uri"}},
                    "report": {"title": "HTML report", "schema": {"type": "string", "format": "uri"}},
                },
                keywords=("workflow", preset),
            )
        )
    return out


def build_registry() -> dict[str, Process]:
    """All processes this installation offers, by id."""
    procs = [_offsets_process(), *_preset_processes()]
    return {p.id: p for p in procs}


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc) or "inputs"


def validate_inputs(
    process: Process, raw: Any, settings: ServiceSettings
) -> tuple[BaseModel | None, list[Problem]]:
    """Validate an execution request's ``inputs``: the schema and the process's own checks, all problems."""
    if not isinstance(raw, Mapping):
        return None, [Problem("inputs", "must be a JSON object")]
    problems: list[Problem] = []
    model: BaseModel | None = None
    try:
        model = process.inputs_model.model_validate(dict(raw))
    except ValidationError as exc:
        problems += [Problem(_loc(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]
    if process.check is not None:
        problems += process.check(raw, settings)
    return (None if problems else model), problems


def _inline_refs(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    if depth > 20:
        return {}
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs.get(ref.split("/")[-1], {})
            merged = {
                **_inline_refs(target, defs, depth + 1),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
            return merged
        return {k: _inline_refs(v, defs, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs, depth + 1) for v in node]
    return node


def input_descriptions(model: type[BaseModel]) -> dict[str, Any]:
    """OGC input descriptions generated from a pydantic model's JSON schema."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = _inline_refs(prop, defs)
        out[name] = {
            "title": prop.get("title", name),
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
            "minOccurs": 1 if name in required else 0,
            "maxOccurs": 1,
        }
    return out
