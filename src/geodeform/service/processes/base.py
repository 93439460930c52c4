"""What a process is, and how its inputs are validated and described.

A :class:`Process` is

- ``inputs_model``: pydantic v2 model with ``extra="forbid"``; its JSON schema becomes the OGC input
  descriptions (:func:`input_descriptions`), its validation errors the 400 problems;
- ``check(raw_inputs, settings)``: what the schema cannot say (files in data roots, URLs on catalogue hosts,
  image count and area limits), returning the same kind of problems;
- ``runner(inputs, job_dir, progress, settings)``: does the work in a worker process, writes its files into
  ``job_dir`` and returns ``{output id: ResultFile}``. ``progress(percent, message)`` stores progress in the
  job row and raises :class:`JobCancelled` once the job has been dismissed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from geodeform.errors import GeodeformError
from geodeform.service.errors import Problem
from geodeform.service.settings import ServiceSettings

__all__ = [
    "Check",
    "JobCancelled",
    "Process",
    "ProgressFn",
    "ResultFile",
    "Runner",
    "file_outputs",
    "input_descriptions",
    "validate_inputs",
]

ProgressFn = Callable[[float, "str | None"], None]


class JobCancelled(GeodeformError):
    """Raised inside a runner (by its progress callback) when the job was dismissed or lost."""


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


def file_outputs(**titles: str) -> dict[str, dict[str, Any]]:
    """OGC output descriptions of outputs that are files, transmitted by reference: ``{id: title}``."""
    return {
        key: {"title": title, "schema": {"type": "string", "format": "uri"}} for key, title in titles.items()
    }


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc) or "inputs"


def validate_inputs(
    process: Process, raw: Any, settings: ServiceSettings
) -> tuple[BaseModel | None, list[Problem]]:
    """Validate an execution request's ``inputs``: the schema and the process's own checks, all problems.

    Returns
    -------
    (model, problems)
        The validated inputs (None when there is any problem) and every problem found.
    """
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
    """OGC input descriptions generated from a pydantic model's JSON schema (``$ref`` inlined)."""
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
