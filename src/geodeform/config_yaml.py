"""A job config as commented YAML: every field with its description, unit and value (``geodeform init``).

Works on any pydantic model (the :class:`geodeform.config.JobConfig` tree); :func:`config_to_yaml` is
re-exported by :mod:`geodeform.config`.
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Any

from pydantic import BaseModel

__all__ = ["config_to_yaml"]


def _yaml_scalar(value: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _emit(model: BaseModel, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for key, info in type(model).model_fields.items():
        value = getattr(model, key)
        desc = info.description or ""
        if isinstance(value, BaseModel):
            lines.append(f"{pad}# {desc}")
            lines.append(f"{pad}{key}:")
            _emit(value, indent + 1, lines)
            continue
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            lines.append(f"{pad}# {desc}")
            lines.append(f"{pad}{key}:")
            for item in value:
                sub: list[str] = []
                _emit(item, 0, sub)
                body = [s for s in sub if not s.lstrip().startswith("#")]
                lines.append(f"{pad}  - {body[0]}")
                lines.extend(f"{pad}    {s}" for s in body[1:])
            continue
        if isinstance(value, list) and not value and _item_model(info.annotation) is not None:
            lines.append(f"{pad}{key}: []  # {desc}")
            lines.extend(f"{pad}# {s}" for s in _item_example(_item_model(info.annotation), key))
            continue
        plain = value.isoformat() if isinstance(value, dt.date) else value
        if isinstance(plain, tuple):
            plain = list(plain)
        lines.append(f"{pad}{key}: {_yaml_scalar(plain)}  # {desc}")


def _item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of the items of a ``list[Model]`` field, else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and args and isinstance(args[0], type):
        return args[0] if issubclass(args[0], BaseModel) else None
    return None


def _item_example(model: type[BaseModel] | None, key: str) -> list[str]:
    """Commented lines showing the item format of an empty list field (e.g. ``inputs``)."""
    if model is None:
        return []
    lines = [f"  {key} items, one per line (replace the search section by them):"]
    first = True
    examples = {"path": "S2B_33TWM_20230813_0_L2A/B04.tif", "date": "2023-08-13"}
    for name, info in model.model_fields.items():
        lead = "  - " if first else "    "
        default = None if info.is_required() else info.default
        example = examples.get(name, _yaml_scalar(default))
        lines.append(f"{lead}{name}: {example}  # {info.description}")
        first = False
    lines.append("  or just the paths when their names carry the dates: - LC08_..._20200518_..._B4.TIF")
    return lines


def config_to_yaml(config: BaseModel) -> str:
    """The config as commented YAML (every field with its description, unit and value)."""
    lines = [
        "# geodeform job configuration (geodeform run THIS_FILE). Units and choices are in the comments.",
        "# Sentinel data: results contain modified Copernicus Sentinel data.",
    ]
    _emit(config, 0, lines)
    return "\n".join(lines) + "\n"
