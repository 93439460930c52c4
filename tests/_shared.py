"""Where the shared data sets are (``../shared/data`` next to the checkout, or two levels up from a worktree
in ``<project>/wt/<name>``); tests that need them skip cleanly when none is found."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (p for p in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if p.is_dir()),
    ROOT.parent / "shared" / "data",
)
