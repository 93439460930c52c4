"""A section a chain adds to the run report (:class:`ReportSection`), apart from the report's own code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ReportSection"]


@dataclass(frozen=True)
class ReportSection:
    """A section a chain adds to the report after the maps (e.g. the quake chain's slip along strike).

    Attributes
    ----------
    id, title
        HTML anchor (also the navigation link) and heading.
    figures
        ``(quicklook file name, PNG bytes, caption)``; each is also written to ``quicklooks/``.
    facts
        ``(name, value)`` lines of a table.
    head, rows
        A table of plain text (escaped here).
    """

    id: str
    title: str
    figures: Sequence[tuple[str, bytes, str]] = ()
    facts: Sequence[tuple[str, str]] = ()
    head: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()
