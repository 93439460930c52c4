"""The README's first command runs `geodeform demo`: it must work offline and report an honest error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rasterio")
pytest.importorskip("xarray")


@pytest.mark.slow
def test_demo_runs_offline_and_recovers_the_known_flow(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-c", "from geodeform.cli import main; main()", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    m = re.search(
        r"RMSE ([0-9.]+) m/yr \(([0-9.]+) px over the median pair span of (\d+) days\) over (\d+)%", last
    )
    assert m, last
    assert float(m.group(2)) <= 0.1  # px-equivalent, against the imposed glacier flow (issue #6 target)
    assert int(m.group(4)) >= 95
    run = out / "run"
    for name in ("velocity.nc", "velocity.tif", "timeseries.nc", "catalog.json", "report.html", "run.log"):
        assert (run / name).is_file(), name
    assert len(list((run / "pairs").glob("*.nc"))) == 15  # 6 dates, every pair within 5-100 days
    assert f"report: {(run / 'report.html').resolve()}" in proc.stdout
