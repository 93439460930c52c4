"""Request bodies as JSON, within limits: nesting depth, number sizes, finite numbers only.

Python's ``json`` would recurse 5,000 levels deep (``RecursionError``), parse a 5,000-digit integer (and then
fail deep inside with an interpreter message) and accept ``NaN`` / ``Infinity``; every one of these is a
400 here with a message that says which limit was hit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from geodeform.service.errors import EXCEPTIONS, OGCError, Problem

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "json_depth", "parse_json_object"]

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted."""
MAX_NUMBER_CHARS = 40
"""Longest number literal accepted (digits, sign, point and exponent)."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """Deepest nesting of ``[`` and ``{`` in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _invalid(detail: str, where: str = "body") -> OGCError:
    return OGCError(
        400, "Invalid JSON", detail, type_=f"{EXCEPTIONS}/invalid-json", problems=[Problem(where, detail)]
    )


class _Bad:
    """A number the service does not accept, kept in place so that the error can name where it was."""

    def __init__(self, why: str) -> None:
        self.why = why


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        return _Bad(f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted")
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"the number {text} is out of range")


def _integer(text: str) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        return _Bad(f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted")
    return int(text)


def _constant(name: str) -> Any:
    return _Bad(f"{name} is not a JSON number; only finite numbers are accepted")


def _bad_numbers(doc: Any, loc: str = "") -> list[Problem]:
    if isinstance(doc, _Bad):
        return [Problem(loc or "body", doc.why)]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    found: list[Problem] = []
    for key, value in items:
        found += _bad_numbers(value, f"{loc}.{key}" if loc else str(key))
    return found


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises
    ------
    OGCError
        400 when the body is not UTF-8 JSON, nests deeper than :data:`MAX_DEPTH`, holds a number longer
        than :data:`MAX_NUMBER_CHARS` characters, out of range, ``NaN`` or ``Infinity`` (each named by its
        place in the document, e.g. ``inputs.step``), or is not an object.
    """
    depth = json_depth(body)
    if depth > MAX_DEPTH:
        raise _invalid(f"the JSON nests {depth} levels deep; at most {MAX_DEPTH} are accepted")
    try:
        doc = json.loads(body, parse_float=_number, parse_int=_integer, parse_constant=_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid(f"the request body is not valid JSON: {exc}") from None
    bad = _bad_numbers(doc)
    if bad:
        raise OGCError(400, "Invalid JSON", bad[0].problem, type_=f"{EXCEPTIONS}/invalid-json", problems=bad)
    if not isinstance(doc, dict):
        raise OGCError(
            400,
            "Invalid execute request",
            "the request body must be a JSON object",
            problems=[Problem("body", "must be a JSON object")],
        )
    return doc
