"""The README's first command runs `geodeform demo`: it must work offline and report an honest error.

The demo checked here is the one run once for the test session from a fresh install of the wheel in a clean
venv (fixture ``wheel_demo``, tests/_wheel.py: ``geodeform demo --out demo-out --cluster sync``, the
README's first command with a fresh kernel cache), which tests/test_docs.py and tests/test_packaging.py read
too: one run of the demo proves all three, instead of a second run from the checkout (the Dask LocalCluster
it ran on is tested by tests/test_workflows.py and the tutorial script docs/examples/cluster.py).
"""

from __future__ import annotations

import re

import pytest

from _wheel import WheelDemo

pytest.importorskip("rasterio")
pytest.importorskip("xarray")


@pytest.mark.slow
def test_demo_runs_offline_and_recovers_the_known_flow(wheel_demo: WheelDemo) -> None:
    proc = wheel_demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    m = re.search(
        r"RMSE ([0-9.]+) m/yr \(([0-9.]+) px over the median pair span of (\d+) days\) over (\d+)%", last
    )
    assert m, last
    assert float(m.group(2)) <= 0.1  # px-equivalent, against the imposed glacier flow (issue #6 target)
    assert int(m.group(4)) >= 95
    run = proc.out / "run"
    for name in ("velocity.nc", "velocity.tif", "timeseries.nc", "catalog.json", "report.html", "run.log"):
        assert (run / name).is_file(), name
    assert len(list((run / "pairs").glob("*.nc"))) == 15  # 6 dates, every pair within 5-100 days
    assert f"report: {(run / 'report.html').resolve()}" in proc.stdout
