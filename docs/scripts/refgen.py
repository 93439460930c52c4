"""Render the reference pages of the documentation from the code itself (never hand-copied).

* :func:`cli_markdown`: every command and sub-command of the ``geodeform`` click/Typer app, with usage,
  help text and a table of its arguments and options (type, default, help);
* :func:`config_markdown`: every field of pydantic v2 models (type, unit, default, allowed values, help);
* :func:`api_modules`: the public modules whose docstrings become the API pages.

Used by ``docs/scripts/gen_ref.py`` (run by mkdocs-gen-files at build time) and by ``tests/test_docs.py``.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import re
import typing
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["api_modules", "cli_markdown", "config_markdown", "config_models"]

# Sub-packages that are not a user-facing API (the CLI has its own page).
# config_quake: its one model is documented where users meet it, geodeform.config (which re-exports it).
_API_SKIP = {"cli", "config_quake"}


def _cell(text: Any) -> str:
    """One Markdown table cell: no newlines, pipes escaped."""
    s = " ".join(str(text).split())
    return s.replace("|", "\\|") if s else "—"


def _code(text: Any) -> str:
    s = str(text)
    return f"`{s}`" if s else "—"


# --- API --------------------------------------------------------------------------------------------------


def api_modules(package: str = "geodeform") -> list[str]:
    """Public top-level modules and sub-packages of ``package`` (private ``_x`` and the CLI left out)."""
    pkg = importlib.import_module(package)
    names = [
        f"{package}.{m.name}"
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_") and m.name not in _API_SKIP
    ]
    return sorted(names)


def options_classes(module: str) -> list[str]:
    """``*Options`` dataclasses of the public sub-modules of a package (matcher options, etc.)."""
    mod = importlib.import_module(module)
    found: list[str] = []
    for m in pkgutil.iter_modules(getattr(mod, "__path__", [])):
        if m.name.startswith("_"):
            continue
        sub = importlib.import_module(f"{module}.{m.name}")
        for name, obj in vars(sub).items():
            if inspect.isclass(obj) and name.endswith("Options") and obj.__module__ == sub.__name__:
                found.append(f"{sub.__name__}.{name}")
    return sorted(found)


# --- CLI --------------------------------------------------------------------------------------------------


# Duck-typed on purpose: Typer >= 0.2x ships its own copy of click (``typer._click``), so isinstance checks
# against the ``click`` package would miss its commands.
Command = Any


def _walk(cmd: Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, cmd
    if getattr(cmd, "commands", None):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], (*path, name))


def _is_argument(p: Any) -> bool:
    return getattr(p, "param_type_name", "") == "argument"


def _annotation_type(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not None and args:
        return " | ".join(_annotation_type(a) for a in args)
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return " | ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation)).lower()


def _param_type(p: Any) -> str:
    if getattr(p, "is_flag", False):
        return "flag"
    t = getattr(p, "type", None)
    if t is not None:  # click proper
        if getattr(t, "choices", None):
            return " | ".join(str(c.value if isinstance(c, enum.Enum) else c) for c in t.choices)
        name = t.name.lower()
    else:  # Typer's own click copy keeps the Python annotation instead
        name = _annotation_type(getattr(getattr(p, "type_descriptor", None), "annotation", None))
    return f"{name}, repeatable" if getattr(p, "multiple", False) else name


def _param_default(p: Any) -> str:
    d = p.default
    if callable(d) or d is None or d == ():
        return "required" if p.required else "—"
    if isinstance(d, enum.Enum):
        d = d.value
    if isinstance(d, bool) and not _is_argument(p) and p.secondary_opts:
        return _code(p.opts[0] if d else p.secondary_opts[0])
    return _code(d)


def _param_names(p: Any) -> str:
    if _is_argument(p):
        return _code((p.metavar or p.name or "").upper())
    names = [*p.opts, *p.secondary_opts]
    return ", ".join(_code(n) for n in names)


def cli_markdown(command: Command, prog: str = "geodeform") -> str:
    """Markdown for a click command tree: one section per command, usage, help, parameter table."""
    out: list[str] = []
    for path, cmd in _walk(command, (prog,)):
        if getattr(cmd, "hidden", False):
            continue
        full = " ".join(path)
        level = "#" * min(len(path) + 1, 4)
        out.append(f"{level} `{full}`\n")
        usage = "[OPTIONS]" if any(not _is_argument(p) for p in cmd.params) else ""
        usage += "".join(f" {(p.metavar or p.name).upper()}" for p in cmd.params if _is_argument(p))
        if getattr(cmd, "commands", None):
            usage += " COMMAND [ARGS]..."
        out.append(f"```text\n{full} {usage.strip()}\n```\n")
        doc = inspect.cleandoc(cmd.help or cmd.short_help or "")
        if doc:
            out.append(doc.replace("\b\n", "") + "\n")
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        if params:
            out.append("| argument / option | type | default | description |")
            out.append("|---|---|---|---|")
            for p in params:
                help_text = _cell(getattr(p, "help", None) or "")
                out.append(
                    f"| {_param_names(p)} | {_cell(_param_type(p))} | {_param_default(p)} | {help_text} |"
                )
            out.append("")
        if getattr(cmd, "commands", None):
            listed = ", ".join(f"`{n}`" for n in sorted(cmd.commands))
            out.append(f"Sub-commands: {listed}.\n")
    return "\n".join(out)


def geodeform_command() -> Command:
    """The ``geodeform`` click command with every sub-command registered (what the console script runs)."""
    import typer

    import geodeform.cli as cli

    cli._register()
    return typer.main.get_command(cli.app)


# --- configuration ----------------------------------------------------------------------------------------

_UNIT_RE = re.compile(
    r"\[([^\]]+)\]\s*$|\(([^()]*?\b(?:px|pixels?|m|m/yr|days?|%|dB|deg|degrees|s)\b)\)\s*\.?$"
)
# Units named in descriptions ("Correlation window, pixels."), most specific first.
_UNIT_WORDS = (
    ("acquisitions or days", "acquisitions or days"),
    ("m/yr", "m/yr"),
    ("m/day", "m/day"),
    ("robust sigmas", "robust σ"),
    ("percent", "%"),
    ("pixels", "px"),
    ("metres", "m"),
    ("meters", "m"),
    ("degrees", "deg"),
    ("days", "days"),
    ("YYYY-MM-DD", "YYYY-MM-DD"),
)


def config_models(module: str = "geodeform.config") -> list[type]:
    """Pydantic models of ``module``: those in its ``__all__`` (in that order), else those defined there; []
    if it is absent."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            return []
        raise
    from pydantic import BaseModel

    listed = getattr(mod, "__all__", None)
    names = listed or list(vars(mod))
    models = []
    for name in names:
        obj = getattr(mod, name, None)
        # a model in __all__ counts wherever it is defined (re-exported, e.g. geodeform.config_quake)
        own = bool(listed) or obj.__module__.startswith(module) if inspect.isclass(obj) else False
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and own:
            models.append(obj)
    return models


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "literal"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        oname = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        if oname in ("Union", "UnionType"):
            return " | ".join(_type_name(a) for a in typing.get_args(annotation))
        if oname == "Annotated":
            return _type_name(typing.get_args(annotation)[0])
        return f"{oname}[{args}]"
    if inspect.isclass(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _allowed(annotation: Any, metadata: Iterable[Any]) -> str:
    values: list[str] = []
    for a in _flatten(annotation):
        if typing.get_origin(a) is typing.Literal:
            values += [f"`{v!r}`" for v in typing.get_args(a)]
        elif inspect.isclass(a) and issubclass(a, enum.Enum):
            values += [f"`{m.value!r}`" for m in a]
    for m in metadata:
        for attr, sym in (
            ("ge", "≥"),
            ("gt", ">"),
            ("le", "≤"),
            ("lt", "<"),
            ("min_length", "len ≥"),
            ("max_length", "len ≤"),
            ("pattern", "matches"),
        ):
            v = getattr(m, attr, None)
            if v is not None:
                values.append(f"{sym} `{v}`")
    return ", ".join(values)


def _flatten(annotation: Any) -> Iterator[Any]:
    origin = typing.get_origin(annotation)
    name = getattr(origin, "__name__", None) or str(origin)
    if origin is not None and (name in ("Union", "UnionType") or "Union" in name):
        for a in typing.get_args(annotation):
            yield from _flatten(a)
    else:
        yield annotation


def _unit(info: Any) -> str:
    """The unit of a field: ``json_schema_extra={"unit": ...}``, a trailing "(px)" / "[m]", or a unit word of
    the description; only for numeric and date fields (a path to a velocity map has no unit)."""
    import datetime

    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    for key in ("unit", "units"):
        if key in extra:
            return str(extra[key])
    desc = info.description or ""
    leaves = set()
    stack = [info.annotation]
    while stack:
        a = stack.pop()
        args = typing.get_args(a)
        if args:
            stack.extend(args)
        else:
            leaves.add(a)
    if not leaves & {int, float, datetime.date, datetime.datetime}:
        return ""
    m = _UNIT_RE.search(desc)
    if m:
        return m.group(1) or m.group(2)
    for word, unit in _UNIT_WORDS:
        if re.search(rf"(?<![\w/]){re.escape(word)}(?![\w/])", desc):
            return unit
    return ""


def _default(info: Any) -> str:
    from pydantic_core import PydanticUndefined

    if info.default is PydanticUndefined:
        if info.default_factory is not None:
            try:
                return _code(repr(info.default_factory()))
            except TypeError:  # factories that take the validated data
                return "computed"
        return "required"
    d = info.default
    if isinstance(d, enum.Enum):
        d = d.value
    return _code(repr(d))


def _nested_models(annotation: Any) -> Iterator[type]:
    from pydantic import BaseModel

    stack = [annotation]
    while stack:
        a = stack.pop()
        if inspect.isclass(a) and issubclass(a, BaseModel):
            yield a
        stack.extend(typing.get_args(a))


def _roots(models: Any) -> list[type]:
    """Models that no other model of the list nests (e.g. the job file) first, then the others."""
    fields = [i for model in models for i in model.model_fields.values()]
    nested = {m for i in fields for m in _nested_models(i.annotation)}
    return [m for m in models if m not in nested] + [m for m in models if m in nested]


def _anchor(path: str, model: type) -> str:
    """The id mkdocs' toc gives the heading "`path` (Model)"."""
    text = re.sub(r"[^\w\s-]", "", f"{path} ({model.__name__})").strip().lower()  # Python-Markdown's slugify
    return re.sub(r"[-\s]+", "-", text)


def config_markdown(models: Iterable[type], *, heading: str = "##") -> str:
    """Markdown tables, one per model, the top-level ones first and each nested model once, under the YAML
    path where it first appears: field, type, unit, default, allowed values, description."""
    out: list[str] = []
    seen: set[type] = set()
    models = list(models)
    roots = _roots(models)
    queue: list[tuple[type, str]] = [(m, "") for m in roots[:1]]
    while queue or any(m not in seen for m in roots):
        if not queue:  # a model that the first root does not reach
            queue.append((next(m for m in roots if m not in seen), ""))
        model, path = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        title = f"`{path}` ({model.__name__})" if path else f"`{model.__name__}`"
        out.append(f"{heading} {title}\n")
        doc = inspect.cleandoc(model.__doc__ or "")
        if doc and not doc.startswith("Usage docs:"):
            out.append(doc.split("\n\n")[0] + "\n")
        extra = model.model_config.get("extra")
        if extra == "forbid":
            out.append("Unknown keys are rejected.\n")
        out.append("| field | type | unit | default | allowed values | description |")
        out.append("|---|---|---|---|---|---|")
        for name, info in model.model_fields.items():
            key = info.alias or name
            sub_path = f"{path}.{key}" if path else key
            nested = list(_nested_models(info.annotation))
            default = f"section [`{sub_path}`](#{_anchor(sub_path, nested[0])})" if nested else _default(info)
            out.append(
                f"| `{key}` | {_cell(_type_name(info.annotation))} | {_cell(_unit(info))} | {default} "
                f"| {_cell(_allowed(info.annotation, info.metadata))} | {_cell(info.description or '')} |"
            )
            queue += [(m, sub_path) for m in nested if m not in seen and all(m is not q for q, _ in queue)]
        out.append("")
    return "\n".join(out)


# --- peer benchmark ---------------------------------------------------------------------------------------


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "—"


def peerbench_markdown(run: dict[str, Any], *, source: str) -> str:
    """Every method of a peerbench JSON run, one table per case, geodeform's row in bold."""
    args, versions = run.get("args", {}), run.get("versions", {})
    out = [
        f"Run of {run.get('date', '?')} on {run.get('machine', {}).get('cores', '?')} cores "
        f"({run.get('machine', {}).get('cpu', '?')}), {args.get('threads', '?')} thread(s) per method, "
        f"best of {args.get('repeats', '?')} timed repeats; chip {args.get('chip')}, "
        f"step {args.get('step')}, search {args.get('search')}. Source: `{source}`.\n",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if not k.startswith("cv2.")) + ".\n",
    ]
    cases = {c["case"]: c for c in run.get("cases", [])}
    by_case: dict[str, list[dict[str, Any]]] = {}
    for r in run.get("results", []):
        by_case.setdefault(r["case"], []).append(r)
    for case, rows in by_case.items():
        info = cases.get(case, {})
        desc = ", ".join(
            s
            for s in (
                info.get("kind"),
                info.get("truth_desc"),
                f"{info['snr_db']:g} dB" if info.get("snr_db") is not None else None,
                f"median CRLB {info['crlb_px_median']:.3f} px" if info.get("crlb_px_median") else None,
            )
            if s
        )
        out.append(f"### `{case}`\n")
        if desc:
            out.append(desc + "\n")
        out.append(
            "| method | RMSE px | median abs. error px | coverage % | bias dx, dy px | nodes/s | status |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---|")
        for r in sorted(rows, key=lambda r: (r.get("rmse_px") is None, r.get("rmse_px") or 0)):
            name = r.get("method", "?")
            cells = [
                f"**{name}**" if name == "geodeform" else name,
                _num(r.get("rmse_px"), ".3f"),
                _num(r.get("medae_px"), ".3f"),
                _num(r.get("coverage_pct"), ".1f"),
                f"{_num(r.get('bias_dx'), '+.3f')}, {_num(r.get('bias_dy'), '+.3f')}",
                _num(r.get("nodes_per_s"), ",.0f"),
                _cell(r.get("status", "")),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _flatten_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _model_default(model: Any, dotted: str) -> Any:
    from pydantic_core import PydanticUndefined

    value: Any = None
    for part in dotted.split("."):
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return "?"
        if info.default is not PydanticUndefined:
            value = info.default
        elif info.default_factory is not None:
            value = info.default_factory()
        else:
            return "required"
        nested = list(_nested_models(info.annotation))
        model = nested[0] if nested else None
    return value.value if isinstance(value, enum.Enum) else value


def presets_markdown(presets: dict[str, dict[str, Any]], root: type) -> str:
    """One row per setting a preset changes, one column per preset, and the model's own default."""
    flat = {name: _flatten_dict(p) for name, p in presets.items()}
    keys = sorted({k for f in flat.values() for k in f} - {"preset"})
    out = ["| setting | default | " + " | ".join(f"`{n}`" for n in presets) + " |"]
    out.append("|---|---|" + "---|" * len(presets))
    for k in keys:
        cells = [_code(repr(flat[n][k])) if k in flat[n] else "·" for n in presets]
        out.append(f"| `{k}` | {_code(repr(_model_default(root, k)))} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
