"""Getting started, step 2: open the product of ``geodeform demo --out demo-out`` and check it against the
known flow.

Run from the folder where you ran the demo:  python docs/examples/demo_explained.py [demo-out]
"""

import sys
from pathlib import Path

import numpy as np
import xarray as xr

from geodeform.demo import PIXEL_M, make_glacier_pair

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo-out")
ds = xr.open_dataset(out / "demo_velocity.nc")

# What is in the product: CF-1.8 NetCDF, ITS_LIVE names, metres and m/yr, +x east, +y north.
print(ds.attrs["sign_convention"])
info = ds["img_pair_info"].attrs
print(f"{info['acquisition_date_img1']} -> {info['acquisition_date_img2']}, {float(ds['date_dt']):.0f} days")
for name in ("dx", "vx", "v", "v_error", "quality"):
    print(f"  {name:8s} [{ds[name].attrs.get('units', '')}] {ds[name].attrs['long_name']}")

# Why some nodes are NaN: the reason code of every node (0 = valid).
flags = ds["reason"].attrs
meanings = dict(zip(flags["flag_values"].tolist(), flags["flag_meanings"].split(), strict=True))
codes, counts = np.unique(ds["reason"].values, return_counts=True)
print("nodes per reason:", {meanings.get(int(c), int(c)): int(n) for c, n in zip(codes, counts, strict=True)})

# The truth: node centres (map metres) back to reference pixels, then the known flow there.
x0, y0 = 717345.0, -2776995.0  # upper-left corner of the demo grid (UTM 21S with negative northings)
cols = (ds["x"].values - x0) / PIXEL_M - 0.5  # pixel (i, j) has its centre at (i, j)
rows = (y0 - ds["y"].values) / PIXEL_M - 0.5
pair = make_glacier_pair()  # the same pair as the demo (fixed seed)
true_dx, true_dy = pair.truth(rows[:, None], cols[None, :])  # pixels, +dy = down the image = south
years = float(ds["date_dt"]) / 365.25
true_vx = true_dx * PIXEL_M / years  # m/yr, east
true_vy = -true_dy * PIXEL_M / years  # m/yr, north: a +row offset is a move to the south
err = np.hypot(ds["vx"].values - true_vx, ds["vy"].values - true_vy)
valid = np.isfinite(err)
rmse = float(np.sqrt(np.mean(err[valid] ** 2)))
print(
    f"velocity error vs truth: RMSE {rmse:.1f} m/yr over {valid.mean():.0%} of the nodes; "
    f"median predicted v_error {float(ds['v_error'].median()):.1f} m/yr"
)
assert rmse < 50 and valid.mean() > 0.9
