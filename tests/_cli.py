"""Run the ``geodeform`` command line in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``geodeform ARGS`` as a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from geodeform.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
