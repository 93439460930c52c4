"""One process per workflow preset (``ice``, ``slide``, ``quake``, ``survey``, ``sar``): ``geodeform run``
as a job.

The inputs are the sections of a job config (:class:`geodeform.config.JobConfig`) laid over the preset's
defaults. Every path-valued field (:data:`PATH_FIELDS`) must name a file or folder in the caller's data
scope and is resolved there before the job runs (:func:`prepare_preset`); the server, not the user, chooses
where the work runs (``compute``).
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, model_validator

from geodeform import workflows  # the job chain: loaded where a job is checked or runs, on first use
from geodeform.config import PRESETS, ComputeConfig, JobConfig, MatchingConfig, PairsConfig, deep_merge
from geodeform.errors import GeodeformError, InvalidInputError
from geodeform.io import media_type
from geodeform.search.catalogs import CATALOGS
from geodeform.service.errors import Problem
from geodeform.service.paths import resolve_input
from geodeform.service.processes.base import (
    InputContext,
    LimitExceeded,
    Process,
    ResultFile,
    RunContext,
    Runner,
    RunOutcome,
    file_outputs,
)
from geodeform.service.processes.checks import (
    bbox_area_km2,
    catalog_problems,
    node_count,
    node_problems,
    path_problems,
    raster_shape,
)
from geodeform.service.safety import is_url
from geodeform.service.settings import ServiceSettings

if TYPE_CHECKING:
    from geodeform.workflows import ImageStack, ResourceEstimate

__all__ = ["NOT_PATHS", "PATH_FIELDS", "check_preset", "path_fields", "prepare_preset", "preset_processes"]

PATH_FIELDS: dict[str, Literal["file", "folder", "file_or_folder", "catalog"]] = {
    "inputs.*.path": "file_or_folder",  # a raster, or a Sentinel-1 .SAFE folder
    "inputs.*.mask": "file",  # or "none"
    "masks.water": "file",  # or "scl" / "ndwi"
    "dem": "file",
    "masks.glacier": "file",
    "masks.stable": "file",
    "matching.reference_velocity": "file",
    "search.aoi.geojson": "file",
    "quake.trace": "file",
    "search.catalog": "catalog",
}
"""Every field of a job config that names a file or folder (``*``: each item of a list), and its kind."""

NOT_PATHS = frozenset(
    {
        "name",
        "preset",
        "search.collection",
        "search.months",
        "search.band",
        "inputs.*.band",
        "ortho.model",
        "inputs.*.tile",
        "quake.crs",
        "quake.trace_crs",
        "search.aoi.tiles.*",
        "pairs.season.*",
        "compute.address",  # compute.* is replaced by the server's own (prepare_preset)
        "compute.scheduler_file",
        "compute.slurm.queue",
        "compute.slurm.account",
        "compute.slurm.walltime",
        "compute.slurm.memory",
        "compute.slurm.job_extra_directives.*",
    }
)
"""String fields of a job config that are not paths (the tests check that every string field is in one of
:data:`PATH_FIELDS` and this set, so that a new path field cannot skip the resolver)."""

# Progress (%) range of each stage of run_job.
_STAGES = {"read": (0.0, 20.0), "match": (20.0, 80.0), "invert": (80.0, 90.0), "products": (90.0, 100.0)}
_TITLES = {
    "ice": "Glacier flow (ice preset)",
    "slide": "Landslide creep (slide preset)",
    "quake": "Earthquake offsets (quake preset)",
    "survey": "Regional survey over several tiles (survey preset)",
    "sar": "Sentinel-1 GRD amplitude tracking, line of sight and east/north/up (sar preset)",
}
_DESCRIPTIONS = {
    "sar": "The `sar` workflow preset of `geodeform run`: Sentinel-1 GRD products (SAFE folders in the data "
    "roots, or a catalogue search) -> pairs within each relative orbit -> amplitude offset tracking in radar "
    "geometry -> corrections -> geocoded range / azimuth / line-of-sight products per pair (NetCDF, COG), "
    "per-track series and velocities, east/north/up velocity from ascending + descending tracks "
    "(sar.combine: enu), STAC catalogue.",
    "quake": "The `quake` workflow preset of `geodeform run`: pre- and post-event images of every tile "
    "(catalogue search or local files with a `tile` label, in the data roots) around `quake.event_date` -> "
    "pre x post pairs per tile and orbit, stacked -> one offset mosaic across tiles and UTM zones -> rupture "
    "trace (detected, or `quake.trace`) -> stripe/jitter correction -> slip profiles: offsets (NetCDF, COG), "
    "trace (GeoJSON), profiles (CSV), slip plot, STAC catalogue and HTML report.",
}
_OUTPUTS = file_outputs(
    velocity_nc=("Velocity (NetCDF)", "application/x-netcdf"),
    velocity_tif=("Velocity (COG)", "image/tiff; application=geotiff; profile=cloud-optimized"),
    timeseries=("Time series (NetCDF)", "application/x-netcdf"),
    catalog=("STAC catalogue", "application/json"),
    report=("HTML report", "text/html"),
)
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
_QUAKE_OUTPUTS = file_outputs(
    offsets_nc=("Co-seismic offset mosaic (NetCDF, m east/north)", "application/x-netcdf"),
    offsets_tif=("Co-seismic offset mosaic (COG)", _COG),
    trace=("Rupture trace (GeoJSON)", "application/geo+json"),
    profiles=("Slip profiles (CSV)", "text/csv"),
    slip_plot=("Slip along strike (PNG)", "image/png"),
    catalog=("STAC catalogue", "application/json"),
    report=("HTML report", "text/html"),
)
_TILE_PX = 10_980  # a Sentinel-2 MGRS tile at 10 m


def path_fields(doc: Any, pattern: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted name, value)`` of each field of ``doc`` (nested dicts and lists) matching ``pattern``."""
    head, _, rest = pattern.partition(".")
    if head == "*":
        items: list[tuple[str, Any]] = list(enumerate(doc)) if isinstance(doc, list) else []  # type: ignore[arg-type]
    else:
        items = [(head, doc[head])] if isinstance(doc, Mapping) and head in doc else []
    for key, value in items:
        name = f"{prefix}{key}"
        if rest:
            yield from path_fields(value, rest, name + ".")
        else:
            yield name, value


def _set(doc: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


def _no_path(value: Any) -> bool:
    """A mask field's keyword, not a file name: ``none`` (no mask), ``scl`` / ``ndwi`` (water from the
    images' own bands)."""
    return isinstance(value, str) and value.strip().lower() in {"none", "scl", "ndwi"}


def _resolve(value: str, context: InputContext, kind: str) -> Path:
    """The file or folder ``value`` names in the caller's scope; ``file_or_folder``: a file, else a folder (a
    Sentinel-1 ``.SAFE`` product), with the file's message when neither exists."""
    if kind != "file_or_folder":
        return resolve_input(value, context.scope, kind="folder" if kind == "folder" else "file")
    try:
        return resolve_input(value, context.scope, kind="file")
    except InvalidInputError as exc:
        try:
            return resolve_input(value, context.scope, kind="folder")
        except InvalidInputError:
            raise exc from None


def _path_problems(raw: Mapping[str, Any], context: InputContext) -> list[Problem]:
    problems: list[Problem] = []
    for pattern, kind in PATH_FIELDS.items():
        for name, value in path_fields(raw, pattern):
            if _no_path(value):
                continue
            if kind == "catalog":
                problems += catalog_problems(value, context)
            elif kind == "file_or_folder":
                if isinstance(value, str):
                    try:
                        _resolve(value, context, kind)
                    except InvalidInputError as exc:
                        problems.append(Problem(name, str(exc)))
            else:
                problems += path_problems(name, value, context, kind=kind)
    return problems


def _merged(raw: Mapping[str, Any], defaults: Mapping[str, Any], section: str, model: type[BaseModel]) -> Any:
    values = {**model().model_dump(), **defaults.get(section, {})}
    given = raw.get(section)
    if isinstance(given, Mapping):
        values.update(given)
    return values


def _dates_network(inputs: list[Any], pairs: Mapping[str, Any]) -> int | None:
    """Pairs the network of local inputs will hold (from their dates and the pair settings); None if
    unknown."""
    try:
        config = JobConfig.model_validate({"name": "count", "inputs": inputs, "pairs": pairs})
    except ValueError:
        return None
    ordered = sorted(config.inputs, key=lambda i: (i.date, i.orbit or 0))
    stand_in = types.SimpleNamespace(
        dates=[i.date for i in ordered], orbits=[i.orbit for i in ordered], acquisitions=ordered
    )
    try:
        return len(workflows.build_network(config, cast("ImageStack", stand_in)))
    except (GeodeformError, ValueError):
        return None


def _size_problems(
    raw: Mapping[str, Any], context: InputContext, defaults: Mapping[str, Any]
) -> list[Problem]:
    """Images, pixels, area and matcher nodes within the server's limits (before any image is read)."""
    settings = context.settings
    matching = _merged(raw, defaults, "matching", MatchingConfig)
    chip, step = matching.get("chip_size"), matching.get("step")
    if type(chip) is not int or type(step) is not int or step < 1:
        return []  # the schema reports it
    inputs, search = raw.get("inputs"), raw.get("search")
    problems: list[Problem] = []
    if isinstance(inputs, list):
        if len(inputs) > settings.max_images:
            return [Problem("inputs", f"{len(inputs)} images; at most {settings.max_images} per job")]
        first = inputs[0] if inputs and isinstance(inputs[0], Mapping) else {}
        path = first.get("path")
        if isinstance(path, str):
            try:
                shape, problems = raster_shape(
                    "inputs.0.path", resolve_input(path, context.scope), 1, settings
                )
            except InvalidInputError:
                return []  # the path check reports it
            if shape is not None and not problems:
                pairs = _dates_network(inputs, _merged(raw, defaults, "pairs", PairsConfig)) or 1
                problems += node_problems("matching.step", node_count(shape, chip, step), pairs, settings)
    elif isinstance(search, Mapping):
        n = search.get("max_images")
        if type(n) is int and n > settings.max_images:
            problems.append(Problem("search.max_images", f"at most {settings.max_images} per job"))
        aoi = search.get("aoi") if isinstance(search.get("aoi"), Mapping) else {}
        area = bbox_area_km2(aoi.get("bbox"))
        if area is not None and area > settings.max_area_km2:
            problems.append(
                Problem("search.aoi.bbox", f"{area:.0f} km²; at most {settings.max_area_km2:g} km² per job")
            )
        elif area is not None:
            res = search.get("resolution") or (30.0 if "landsat" in str(search.get("collection")) else 10.0)
            side = int(1000 * area**0.5 / float(res)) if isinstance(res, (int, float)) and res > 0 else 0
            problems += node_problems("matching.step", node_count((side, side), chip, step), 1, settings)
        elif isinstance(aoi.get("tiles"), list) and aoi["tiles"]:
            side = _TILE_PX
            problems += node_problems("matching.step", node_count((side, side), chip, step), 1, settings)
    return problems


def check_preset(raw: Mapping[str, Any], context: InputContext, defaults: Mapping[str, Any]) -> list[Problem]:
    """Every path in the caller's scope, every URL on a catalogue host, every size within the limits."""
    return _path_problems(raw, context) + _size_problems(raw, context, defaults)


def prepare_preset(inputs: JobConfig, context: InputContext) -> JobConfig:
    """The config as it runs here: each path resolved in the caller's scope, compute chosen by the server."""
    settings = context.settings
    doc = inputs.model_dump(mode="json")
    for pattern, kind in PATH_FIELDS.items():
        for name, value in list(path_fields(doc, pattern)):
            if not isinstance(value, str) or _no_path(value):
                continue
            if kind == "catalog" and (is_url(value) or value.strip().lower() in CATALOGS):
                continue
            _set(doc, name, str(_resolve(value, context, "folder" if kind == "catalog" else kind)))
    compute = (
        ComputeConfig.model_validate(settings.compute)
        if settings.compute is not None
        else inputs.compute.model_copy(update={"cluster": "sync", "threads": 1})
    )
    doc["compute"] = compute.model_dump(mode="json")
    return type(inputs).model_validate(doc)


def _limit_estimate(settings: ServiceSettings) -> Any:
    def check(estimate: ResourceEstimate) -> None:
        if estimate.nodes_per_pair > settings.max_nodes_per_pair:
            raise LimitExceeded(
                f"{estimate.nodes_per_pair:,} matcher nodes per pair on the images found, more than this "
                f"server's limit of {settings.max_nodes_per_pair:,} (max_nodes_per_pair): raise "
                "matching.step or make the AOI smaller"
            )
        total = estimate.nodes_per_pair * estimate.pairs
        if total > settings.max_nodes_per_job:
            raise LimitExceeded(
                f"{estimate.pairs} pairs x {estimate.nodes_per_pair:,} nodes = {total:,} matcher nodes, more "
                f"than this server's limit of {settings.max_nodes_per_job:,} per job (max_nodes_per_job): "
                "raise matching.step, make the AOI smaller or make fewer pairs"
            )

    return check


def _preset_runner(preset: str) -> Runner:
    def run(config: JobConfig, context: RunContext) -> RunOutcome:
        job_dir, progress = context.job_dir, context.progress

        def on_stage(stage: str, done: int, total: int) -> None:
            lo, hi = _STAGES.get(stage, (0.0, 100.0))
            progress(lo + (hi - lo) * done / max(total, 1), f"{stage} {done}/{total}")

        result = workflows.run_job(
            config, job_dir, progress=on_stage, on_estimate=_limit_estimate(context.settings)
        )
        files: dict[str, ResultFile] = {}
        for key, path in result.products.items():
            rel = Path(path).resolve().relative_to(job_dir.resolve())
            files[key] = ResultFile(str(rel), media_type(rel, guess=False), f"{preset}: {key}")
        failed = [p for p in result.pairs if p.status != "ok"]
        message = "finished"
        if failed:
            message = f"finished: {len(result.pairs) - len(failed)} of {len(result.pairs)} pairs measured"
        main_product = "offsets_nc" if preset == "quake" else "velocity_nc"
        if main_product not in files:
            what = "offset mosaic" if preset == "quake" else "velocity map"
            message += f"; no {what} (see the report and run.log)"
        return RunOutcome(files, message)

    return run


def _preset_model(preset: str, defaults: dict[str, Any]) -> type[BaseModel]:
    """JobConfig with the preset's defaults laid underneath (the request may give any section partially)."""

    class PresetInputs(JobConfig):
        model_config = ConfigDict(extra="forbid", title=f"{preset} job")

        @model_validator(mode="before")
        @classmethod
        def _preset_defaults(cls, data: Any) -> Any:
            if isinstance(data, dict):
                return deep_merge({**defaults, "name": f"{preset}-job"}, data) | {"preset": preset}
            return data

    PresetInputs.__name__ = PresetInputs.__qualname__ = f"{preset.capitalize()}Inputs"
    return PresetInputs


def _checker(defaults: dict[str, Any]) -> Any:
    return lambda raw, context: check_preset(raw, context, defaults)


def preset_processes() -> list[Process]:
    """One process per workflow preset of :mod:`geodeform.config`."""
    return [
        Process(
            id=preset,
            title=_TITLES.get(preset, f"{preset} preset"),
            description=_DESCRIPTIONS.get(
                preset,
                f"The `{preset}` workflow preset of `geodeform run`: images (catalogue search or files: "
                "paths in the data roots, uploads/NAME, jobs/JOB_ID/NAME) -> pairs -> offsets -> "
                "corrections -> time series -> velocity products (NetCDF, COG), STAC catalogue and HTML "
                "report.",
            )
            + " Inputs are the sections of a job config; unspecified fields take the preset's values: "
            f"{json.dumps(defaults)}.",
            inputs_model=_preset_model(preset, defaults),
            runner=_preset_runner(preset),
            check=_checker(defaults),
            prepare=prepare_preset,
            outputs=_QUAKE_OUTPUTS if preset == "quake" else _OUTPUTS,
            keywords=("workflow", preset),
        )
        for preset, defaults in PRESETS.items()
    ]
