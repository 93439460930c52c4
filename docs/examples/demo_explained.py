"""Getting started, step 2: open the products of ``geodeform demo --out demo-out`` and check them against
the known flow.

Run from the folder where you ran the demo:  python docs/examples/demo_explained.py [demo-out]
"""

import sys
from pathlib import Path

import numpy as np
import xarray as xr

from geodeform.demo import PIXEL_M, make_glacier_series

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo-out")
run = out / "run"  # the run folder: products, pairs, report, log, the config used

# The mean velocity: CF-1.8 NetCDF, ITS_LIVE names, m/yr, +x east, +y north.
vel = xr.open_dataset(run / "velocity.nc")
print(vel.attrs["sign_convention"])
span = f"{vel.attrs['time_coverage_start']} -> {vel.attrs['time_coverage_end']}"
print(f"{span}, preset {vel.attrs['geodeform_preset']}")
for name in ("vx", "v", "v_error", "count"):
    print(f"  {name:8s} [{vel[name].attrs.get('units', '')}] {vel[name].attrs.get('long_name', '')}")

# The displacement time series: metres east/north since the first date, with 1-sigma errors.
ts = xr.open_dataset(run / "timeseries.nc")
print(f"time series: {ts.sizes['time']} dates, variables {sorted(v for v in ts.data_vars if v != 'mapping')}")
pairs = sorted((run / "pairs").glob("*.nc"))
print(f"{len(pairs)} pair products, e.g. {pairs[0].name}")

# The truth: node centres (map metres) back to pixels of the first image, then the known flow there.
x0, y0 = 717345.0, -2776995.0  # upper-left corner of the demo grid (UTM 21S, EPSG:32721)
cols = (vel["x"].values - x0) / PIXEL_M - 0.5  # pixel (i, j) has its centre at (i, j)
rows = (y0 - vel["y"].values) / PIXEL_M - 0.5
series = make_glacier_series()  # the same series as the demo (fixed seed)
vx_px, vy_px = series.velocity(rows[:, None], cols[None, :])  # px/day, +dy = down the image = south
true_vx = vx_px * PIXEL_M * 365.25  # m/yr, east
true_vy = -vy_px * PIXEL_M * 365.25  # m/yr, north: a +row offset is a move to the south
err = np.hypot(vel["vx"].values - true_vx, vel["vy"].values - true_vy)
valid = np.isfinite(err)
rmse = float(np.sqrt(np.mean(err[valid] ** 2)))
print(
    f"velocity error vs truth: RMSE {rmse:.1f} m/yr over {valid.mean():.0%} of the nodes; "
    f"median predicted v_error {float(vel['v_error'].median()):.1f} m/yr"
)
assert rmse < 60 and valid.mean() > 0.9
