"""What a process is, and how its inputs are validated and described.

A :class:`Process` is

- ``inputs_model``: pydantic v2 model with ``extra="forbid"``; its JSON schema becomes the OGC input
  descriptions (:func:`input_descriptions`), its validation errors the 400 problems. Types are strict
  (:func:`strict_type_problems`): no boolean where a number is expected, no number where a string is;
- ``check(raw_inputs, context)``: what the schema cannot say (files in the caller's data scope, URLs on
  catalogue hosts, images, pixels and nodes within the server's limits), returning the same kind of problems;
- ``prepare(inputs, context)``: the inputs as they run on the server (paths resolved in the caller's scope);
- ``runner(inputs, context)``: does the work in a job process, writes its files into ``context.job_dir``
  and returns a :class:`RunOutcome` (:class:`RunContext`: ``progress(percent, message)`` reports progress,
  ``public(text)`` removes server folders from what the user will read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from geodeform.errors import GeodeformError
from geodeform.service.errors import Problem
from geodeform.service.paths import DataScope
from geodeform.service.settings import ServiceSettings

__all__ = [
    "Check",
    "InputContext",
    "JobCancelled",
    "LimitExceeded",
    "Prepare",
    "Process",
    "ProgressFn",
    "ResultFile",
    "RunContext",
    "RunOutcome",
    "Runner",
    "file_outputs",
    "input_descriptions",
    "result_files",
    "strict_type_problems",
    "validate_inputs",
]

ProgressFn = Callable[[float, "str | None"], None]


class JobCancelled(GeodeformError):
    """Raised inside a runner (by its progress callback) when the job was dismissed or lost."""


class LimitExceeded(GeodeformError):
    """A job went over one of the server's per-job limits while running (it fails and is not retried)."""


@dataclass(frozen=True)
class ResultFile:
    """One file a job produced, relative to its job folder."""

    name: str
    media_type: str
    title: str


@dataclass(frozen=True)
class RunOutcome:
    """What a runner produced: its files by output id, and the job's final message."""

    files: dict[str, ResultFile]
    message: str = "finished"


@dataclass(frozen=True)
class InputContext:
    """Who submits (their data scope) under which settings: what a process's checks need."""

    settings: ServiceSettings
    scope: DataScope


@dataclass(frozen=True)
class RunContext:
    """Where and how a runner works.

    Attributes
    ----------
    job_dir
        The job's own folder: every output goes there.
    progress
        ``progress(percent, message)``: stored in the job row.
    settings
        The service settings (limits, catalogue hosts, compute).
    public
        Removes server folders from a text the user will see (messages, configs, logs); they read the
        names they gave.
    """

    job_dir: Path
    progress: ProgressFn
    settings: ServiceSettings
    public: Callable[[str], str] = str


Runner = Callable[[Any, RunContext], RunOutcome]
Check = Callable[[Mapping[str, Any], InputContext], list[Problem]]
Prepare = Callable[[Any, InputContext], Any]


@dataclass(frozen=True)
class Process:
    """A process offered by the service (OGC API – Processes)."""

    id: str
    title: str
    description: str
    inputs_model: type[BaseModel]
    runner: Runner
    check: Check | None = None
    prepare: Prepare | None = None
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    version: str = "1.0.0"
    keywords: tuple[str, ...] = ()


def file_outputs(**outputs: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """OGC output descriptions of files transmitted by reference: ``{id: (title, media type)}``."""
    return {
        key: {
            "title": title,
            "schema": {"type": "string", "contentEncoding": "binary", "contentMediaType": media},
        }
        for key, (title, media) in outputs.items()
    }


def result_files(outputs: Mapping[str, Mapping[str, Any]], names: Mapping[str, str]) -> dict[str, ResultFile]:
    """The :class:`ResultFile` of each output of ``outputs`` (:func:`file_outputs`) by its file name."""
    return {
        key: ResultFile(name, outputs[key]["schema"]["contentMediaType"], outputs[key]["title"])
        for key, name in names.items()
    }


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc) or "inputs"


# --- strict types ---------------------------------------------------------------------------------------

_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPE.get(type(value), "unknown")


def _branches(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The alternatives of a schema node (``anyOf`` / ``oneOf`` flattened, ``$ref`` followed)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = {**defs.get(ref.split("/")[-1], {}), **{k: v for k, v in schema.items() if k != "$ref"}}
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        out: list[Mapping[str, Any]] = []
        for alt in alternatives:
            out += _branches(alt, defs)
        return out
    return [schema]


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    """JSON types a schema node allows; None when it does not say."""
    if "type" in schema:
        t = schema["type"]
        return set(t) if isinstance(t, list) else {t}
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values is not None:
        return {_json_type(v) for v in values} | (
            {"number"} if any(type(v) is int for v in values) else set()
        )
    return None


def _fits(kind: str, allowed: set[str], value: Any) -> bool:
    return (
        kind in allowed
        or (kind == "integer" and "number" in allowed)
        or (kind == "number" and "integer" in allowed and float(value).is_integer())
    )


def strict_type_problems(
    value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None, loc: str = ""
) -> list[Problem]:
    """Values whose JSON type the schema does not allow (``true`` for an integer, ``"16"`` for a number).

    pydantic's lax mode would turn ``true`` into 1 and ``"16"`` into 16; a request to this service must say
    what it means. Only types are checked here (ranges, patterns, unknown fields are pydantic's).

    Parameters
    ----------
    value
        The parsed JSON value.
    schema
        JSON schema of ``value`` (``$defs`` of the root schema in ``defs``).
    loc
        Dotted name of ``value`` in the request, used in the problems.
    """
    defs = schema.get("$defs", {}) if defs is None else defs
    kind = _json_type(value)
    branches = _branches(schema, defs)
    allowed: set[str] = set()
    for branch in branches:
        types = _types(branch)
        if types is None:
            return []  # unconstrained alternative: anything goes
        allowed |= types
    if not _fits(kind, allowed, value):
        want = " or ".join(_ARTICLE.get(t, f"a {t}") for t in sorted(allowed))
        return [Problem(loc or "inputs", f"must be {want}, not {_ARTICLE.get(kind, f'a {kind}')}")]
    branch = next(b for b in branches if _fits(kind, _types(b) or set(), value))
    problems: list[Problem] = []
    if isinstance(value, dict):
        props = branch.get("properties", {})
        extra = branch.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                problems += strict_type_problems(item, sub, defs, f"{loc}.{key}" if loc else str(key))
    elif isinstance(value, list):
        prefix, items = branch.get("prefixItems", []), branch.get("items")
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items if isinstance(items, Mapping) else None
            if sub is not None:
                problems += strict_type_problems(item, sub, defs, f"{loc}.{i}" if loc else str(i))
    return problems


def validate_inputs(
    process: Process, raw: Any, context: InputContext
) -> tuple[BaseModel | None, list[Problem]]:
    """Validate an execution request's ``inputs``: strict types, the schema and the process's own checks.

    Returns
    -------
    (model, problems)
        The validated inputs (None when there is any problem) and every problem found, one per input.
    """
    if not isinstance(raw, Mapping):
        return None, [Problem("inputs", "must be a JSON object")]
    problems = strict_type_problems(dict(raw), process.inputs_model.model_json_schema())
    if process.check is not None:
        problems += process.check(raw, context)
    model: BaseModel | None = None
    try:
        model = process.inputs_model.model_validate(dict(raw))
    except ValidationError as exc:
        problems += [Problem(_loc(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]
    unique: dict[str, Problem] = {}
    for p in problems:  # one problem per input: types first, then the process's checks, then pydantic
        unique.setdefault(p.input, p)
    problems = list(unique.values())
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
