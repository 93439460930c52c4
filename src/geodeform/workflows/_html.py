"""Small HTML helpers of the run report (escaping, numbers, dates, tables, inline figures)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

_DASH = "–"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = "{:.3g}") -> str:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return _DASH if not math.isfinite(f) else fmt.format(f)


def _pct(value: Any) -> str:
    return _num(100 * float(value) if value is not None else math.nan, "{:.1f}")


def _parse_date(value: Any) -> datetime | None:
    text = str(value).strip()
    if not text:
        return None
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            d = datetime.fromisoformat(str(np.datetime64(text, "s")))
        except ValueError:
            return None
    return d.astimezone(timezone.utc).replace(tzinfo=None) if d.tzinfo else d


def _short_date(value: Any) -> str:
    d = _parse_date(value)
    return str(value) if d is None else d.strftime("%Y-%m-%d")


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if hasattr(value, "model_dump"):  # a pydantic config model
        value = value.model_dump()
    if isinstance(value, Mapping):
        if not value and prefix:
            yield prefix, "{}"
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    elif isinstance(value, (list, tuple)):
        yield prefix, ", ".join(str(v) for v in value) if value else "[]"
    else:
        yield prefix, "null" if value is None else value


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """An HTML table; ``head`` is escaped here, cells must already be HTML-safe."""
    attr = f' class="{cls}"' if cls else ""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table{attr}>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _kv_table(rows: Sequence[tuple[str, str]], cls: str = "kv") -> str:
    body = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">\n<tbody>\n{body}\n</tbody>\n</table>'


def _img(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )
