"""Where the shared data sets (``shared/data``, see its README) are: next to the checkout or above it
(worktrees live one level deeper than the main checkout). Tests that need them skip cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    """``$GEODEFORM_SHARED_DATA``, else the first ``shared/data`` folder beside the checkout or an ancestor.

    The path returned may not exist: tests that need it skip.
    """
    env = os.environ.get("GEODEFORM_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return here.parents[1].parent / "shared" / "data"


SHARED_DATA = shared_data()
