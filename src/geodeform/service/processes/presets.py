"""One process per workflow preset (``ice``, ``slide``, ``quake``, ``survey``, ``sar``): ``geodeform run``
as a job.

The inputs are the sections of a job config (:class:`geodeform.config.JobConfig`) laid over the preset's
defaults. Everything the config names must stay inside the data roots and catalogue hosts
(:func:`check_preset`); the server, not the user, chooses where the work runs (``compute``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from geodeform.config import PRESETS, ComputeConfig, JobConfig, deep_merge
from geodeform.errors import InvalidInputError
from geodeform.io import media_type
from geodeform.service.errors import Problem
from geodeform.service.processes.base import Process, ProgressFn, ResultFile, Runner, file_outputs
from geodeform.service.processes.checks import bbox_area_km2, catalog_problems, inside_roots, raster_problems
from geodeform.service.safety import is_url, resolve_data_folder, resolve_data_path
from geodeform.service.settings import ServiceSettings
from geodeform.workflows import run_job

__all__ = ["check_preset", "preset_processes"]

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
}
_OUTPUTS = file_outputs(
    velocity_nc="Velocity (NetCDF)",
    velocity_tif="Velocity (COG)",
    timeseries="Time series (NetCDF)",
    catalog="STAC catalogue",
    report="HTML report",
)


def check_preset(raw: Mapping[str, Any], settings: ServiceSettings) -> list[Problem]:
    """Everything a job config names must stay inside the data roots / configured catalogue hosts."""
    problems: list[Problem] = []
    inputs = raw.get("inputs")
    if isinstance(inputs, list):
        if len(inputs) > settings.max_images:
            problems.append(Problem("inputs", f"{len(inputs)} images; at most {settings.max_images} per job"))
        for i, item in enumerate(inputs):
            if isinstance(item, Mapping):
                path = item.get("path")
                if not isinstance(path, str):
                    continue
                try:
                    local = _input_path(path, settings)
                except InvalidInputError as exc:
                    problems.append(Problem(f"inputs.{i}.path", str(exc)))
                    continue
                if i == 0 and not problems and not local.is_dir():  # SAFE folders: checked by the sar chain
                    problems += raster_problems("inputs.0.path", local, 1, settings)
    problems += inside_roots("dem", raw.get("dem"), settings)
    search = raw.get("search")
    if isinstance(search, Mapping):
        problems += catalog_problems(search.get("catalog", "earth-search"), settings)
        aoi = search.get("aoi")
        if isinstance(aoi, Mapping):
            problems += inside_roots("search.aoi.geojson", aoi.get("geojson"), settings)
            area = bbox_area_km2(aoi.get("bbox"))
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


def _input_path(value: str, settings: ServiceSettings) -> Path:
    """An input image inside the data roots: a file, or a folder (a Sentinel-1 ``.SAFE`` product).

    Raises
    ------
    InvalidInputError
        Neither a file nor a folder inside the data roots (the file's message).
    """
    try:
        return resolve_data_path(value, settings.data_roots)
    except InvalidInputError as exc:
        try:
            return resolve_data_folder(value, settings.data_roots)
        except InvalidInputError:
            raise exc from None


def _server_side(config: JobConfig, settings: ServiceSettings) -> JobConfig:
    """The config as it runs here: paths made absolute inside the data roots, compute chosen by the server."""
    compute = (
        ComputeConfig.model_validate(settings.compute)
        if settings.compute is not None
        else config.compute.model_copy(update={"cluster": "sync", "threads": 1})
    )
    update: dict[str, Any] = {"compute": compute}
    roots = settings.data_roots
    if config.inputs:
        update["inputs"] = [
            i.model_copy(update={"path": str(_input_path(i.path, settings))}) for i in config.inputs
        ]
    if config.dem:
        update["dem"] = str(resolve_data_path(config.dem, roots))
    if config.search is not None:
        search = config.search
        if not is_url(search.catalog) and search.catalog.lower() not in ("earth-search", "cdse"):
            search = search.model_copy(update={"catalog": str(resolve_data_folder(search.catalog, roots))})
        if search.aoi.geojson:
            aoi = search.aoi.model_copy(update={"geojson": str(resolve_data_path(search.aoi.geojson, roots))})
            search = search.model_copy(update={"aoi": aoi})
        update["search"] = search
    return config.model_copy(update=update)


def _preset_runner(preset: str) -> Runner:
    def run(
        inputs: JobConfig, job_dir: Path, progress: ProgressFn, settings: ServiceSettings
    ) -> dict[str, ResultFile]:
        config = _server_side(inputs, settings)

        def on_stage(stage: str, done: int, total: int) -> None:
            lo, hi = _STAGES.get(stage, (0.0, 100.0))
            progress(lo + (hi - lo) * done / max(total, 1), f"{stage} {done}/{total}")

        result = run_job(config, job_dir, progress=on_stage)
        files: dict[str, ResultFile] = {}
        for key, path in result.products.items():
            rel = Path(path).resolve().relative_to(job_dir.resolve())
            files[key] = ResultFile(str(rel), media_type(rel, guess=False), f"{preset}: {key}")
        return files

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


def preset_processes() -> list[Process]:
    """One process per workflow preset of :mod:`geodeform.config`."""
    return [
        Process(
            id=preset,
            title=_TITLES.get(preset, f"{preset} preset"),
            description=_DESCRIPTIONS.get(
                preset,
                f"The `{preset}` workflow preset of `geodeform run`: images (catalogue search or local files "
                "in the data roots) -> pairs -> offsets -> corrections -> time series -> velocity products "
                "(NetCDF, COG), STAC catalogue and HTML report.",
            )
            + " Inputs are the sections of a job config; unspecified fields take the preset's values: "
            f"{json.dumps(defaults)}.",
            inputs_model=_preset_model(preset, defaults),
            runner=_preset_runner(preset),
            check=check_preset,
            outputs=_OUTPUTS,
            keywords=("workflow", preset),
        )
        for preset, defaults in PRESETS.items()
    ]
