"""Tutorial "slide": sub-pixel motion of a landslide, and telling its steady creep from its seasonal surges.

Run from the repository root:  python docs/examples/slide.py
Part 1 needs the shared data sets (GEODEFORM_DATA, default ../shared/data) and is skipped without them;
part 2 runs on the Landsat-8 texture shipped with geodeform.
"""

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import rasterio

from geodeform.decompose import ica
from geodeform.offsets import match
from geodeform.pairs import build_pairs
from geodeform.synthetic import image_series
from geodeform.timeseries import invert

# --- Part 1: real Sentinel-2 pairs with exact imposed sub-pixel shifts (Pandora2D, CNES) --------------------
DATA = Path(os.environ.get("GEODEFORM_DATA", "../shared/data")) / "pandora2d_s2"
if (DATA / "truth.csv").exists():
    print("pair                   truth dx, dy    measured dx, dy (median of the nodes)")
    for row in csv.DictReader(open(DATA / "truth.csv")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # bare crops
            ref = rasterio.open(DATA / row["file_ref"]).read(1)
            sec = rasterio.open(DATA / row["file_sec"]).read(1)
        # Small chips and a small search: slides move slowly, and 110 x 110 px crops leave few nodes.
        field = match(ref, sec, method="ncc", chip_size=32, step=16, search_range=4)
        mdx, mdy = np.nanmedian(field.dx), np.nanmedian(field.dy)
        tdx, tdy = float(row["true_dx_col"]), float(row["true_dy_row"])
        print(f"{row['file_ref'][:19]:22s} {tdx:+.2f}, {tdy:+.2f}     {mdx:+.3f}, {mdy:+.3f}")
        assert abs(mdx - tdx) < 0.03 and abs(mdy - tdy) < 0.03
else:
    print(f"part 1 skipped: {DATA} not found (set GEODEFORM_DATA)")

# --- Part 2: a year of monthly images, two landslide bodies, one creeping and one seasonal ------------------
SIZE = 256
dates = np.array([f"2021-{m:02d}-15" for m in range(1, 13)], dtype="datetime64[D]")
t = (dates - dates[0]).astype(float) / 365.25  # years since the first date
creep = 1.2 * t  # px: steady creep of the upper body, toward +columns (east)
surge = 0.4 * np.sin(2 * np.pi * t) ** 2  # px: the toe moves in the wet season and stops (rain-driven)


def body(rows, cols, r0, c0, radius):
    """Smooth landslide outline, 1 inside, 0 outside."""
    d = np.hypot(rows - r0, cols - c0) / radius
    return np.clip(1.5 - d, 0, 1)


def motion(k):
    def field(rows, cols):
        dx = creep[k] * body(rows, cols, 80, 90, 45) + surge[k] * body(rows, cols, 180, 160, 45)
        return dx, np.zeros_like(dx)

    return field


images = image_series([motion(k) for k in range(len(dates))], snr_db=30.0, size=SIZE).images
network = build_pairs(dates, mode="all", max_separation=2)
fields = [match(images[i], images[j], chip_size=32, step=8, search_range=4) for i, j in network.pairs]
dx = np.stack([f.dx for f in fields])
dy = np.stack([f.dy for f in fields])
# Cumulative displacement since the first date, px (robust inversion with its defaults).
ts = invert(dates, network.pairs, dx, dy)

# Spatial ICA of the east displacement: maps that vary independently, each with its own time function.
result = ica(ts.dx, n_components=2, mode="spatial")
for k in range(2):
    tf = result.time_functions[:, k]
    r_creep = abs(np.corrcoef(tf, creep)[0, 1])
    r_surge = abs(np.corrcoef(tf, surge)[0, 1])
    print(
        f"component {k}: {result.explained_variance[k]:.0%} of the variance, "
        f"correlation with creep {r_creep:.2f}, with the seasonal surge {r_surge:.2f}"
    )
best = [max(abs(np.corrcoef(result.time_functions[:, k], s)[0, 1]) for k in range(2)) for s in (creep, surge)]
assert min(best) > 0.95, best
