"""The report's quicklooks of an earlier run of the folder, reused when drawn from the same inputs.

Drawing a figure (matplotlib, Agg) is most of the report's cost; a rerun of a finished job draws the same
figures from the same arrays. :class:`FigureCache` keys each figure by a hash of the drawing function, its
arguments and the figure code, and keeps ``quicklooks/.figures.json`` (name -> input key and the hash of
the PNG written for it). A figure is reused only when its key matches and the PNG on disk is still the
one recorded, so a run killed between writing a PNG and the index redraws it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geodeform.io import atomic_output

__all__ = ["FigureCache"]

INDEX = ".figures.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FigureCache:
    """PNG figures of ``folder`` (the quicklooks) reused when their inputs are unchanged."""

    def __init__(self, folder: Path, code: Path, salt: str = "") -> None:
        """``code``: the figure module (its text is part of every key); ``salt``: more of the key (the
        plotting library's version)."""
        self.folder = folder
        self.reused: set[str] = set()
        self._entries: dict[str, dict[str, str]] = {}
        self._code = _sha(code.read_bytes() + salt.encode())
        try:
            index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
            self._old: dict[str, dict[str, str]] = index if isinstance(index, dict) else {}
        except (OSError, ValueError):
            self._old = {}

    def draw(self, name: str, fn: Callable[..., bytes], *args: Any, **kwargs: Any) -> bytes:
        """``fn(*args, **kwargs)`` (PNG bytes), or the PNG ``name`` an earlier run drew from the same."""
        try:
            key = _sha(pickle.dumps((self._code, fn.__qualname__, args, kwargs), protocol=5))
        except (pickle.PicklingError, TypeError, AttributeError):
            return fn(*args, **kwargs)
        old = self._old.get(name, {})
        path = self.folder / name
        if old.get("inputs") == key and path.is_file():
            png = path.read_bytes()
            if _sha(png) == old.get("png"):
                self._entries[name] = old
                self.reused.add(name)
                return png
        png = fn(*args, **kwargs)
        self._entries[name] = {"inputs": key, "png": _sha(png)}
        return png

    def save(self, written: set[str]) -> None:
        """Record the figures in ``written`` (after their PNGs are on disk), atomically."""
        entries = {k: v for k, v in self._entries.items() if k in written}
        with atomic_output(self.folder / INDEX) as tmp:
            tmp.write_text(json.dumps(entries, sort_keys=True), encoding="utf-8")
