"""Tutorial "survey": find the usable scenes over an area, per orbit, ranked by the cloud cover on the area
itself, pair them per orbit and match the best pair.

Run from the repository root:  python docs/examples/survey.py [FOLDER]
FOLDER is a local catalogue (a folder of Sentinel-2 / Landsat scenes); the default is the three real
Sentinel-2 L2A scenes of tile 33TWM (whole tile decimated to 240 m) kept in tests/data/stac/assets. On your
own data, replace ``catalog=FOLDER`` with ``catalog="earth-search"`` (or "cdse", or any STAC API URL).
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from geodeform.io.aoi import read_aoi_stack
from geodeform.offsets import match
from geodeform.pairs import build_pairs
from geodeform.search import search

FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/data/stac/assets")
BBOX = (15.5, 46.2, 15.9, 46.5)  # W, S, E, N degrees: the area of interest, inside tile 33TWM

# --- 1. search: every Sentinel-2 L2A scene over the AOI, cloud cover computed on the AOI (SCL band) --------
table = search("s2-l2a", bbox=BBOX, start="2023-08-01", end="2023-08-31", catalog=FOLDER)
print("scene                      orbit  scene cloud %  AOI cloud %  AOI valid %")
for s in table:
    print(f"{s.id:26s} {s.orbit!s:>5} {s.cloud_cover!s:>13} {s.aoi_cloud_pct:12.1f} {s.aoi_valid_pct:12.1f}")

# --- 2. keep the scenes clear on the AOI and pair them, per orbit when the orbit is known -------------------
clear = search("s2-l2a", bbox=BBOX, start="2023-08-01", end="2023-08-31", catalog=FOLDER, max_aoi_cloud=20)
scenes = sorted(clear, key=lambda s: s.datetime)
dates = np.array([np.datetime64(s.datetime.replace(tzinfo=None), "D") for s in scenes])
orbits = [s.orbit for s in scenes]  # None here: Earth Search folder names carry no orbit (see the page)
network = build_pairs(dates, mode="all", orbits=orbits if None not in orbits else None)
print(f"{len(scenes)} of {len(table)} scenes are clear on the AOI; {len(network)} pair(s):")
for (i, j), dt in zip(network.pairs, network.dt_days, strict=True):
    print(f"  {scenes[i].id} -> {scenes[j].id} ({dt:.0f} days)")

# --- 3. read the red band of the pair on one AOI grid (UTM, band resolution), and match it ------------------
with tempfile.TemporaryDirectory() as cache:
    stack = read_aoi_stack([scenes[i] for i in network.pairs[0]], "B04", table.aoi, cache_dir=cache)
print(f"AOI stack: {dict(stack.sizes)}, {abs(float(stack.x[1] - stack.x[0])):.0f} m pixels")
field = match(stack[0].values, stack[1].values, chip_size=16, step=8, search_range=3)
print(
    f"offsets between the two dates: median dx {np.nanmedian(field.dx):+.3f} px, "
    f"dy {np.nanmedian(field.dy):+.3f} px over {field.coverage:.0%} of the nodes"
)

cloud = {s.id: s.aoi_cloud_pct for s in table}
assert cloud["S2B_33TWM_20230813_0_L2A"] < 20 < cloud["S2A_33TWM_20230818_0_L2A"]
assert len(network) == 1 and abs(np.nanmedian(field.dx)) < 0.2 and abs(np.nanmedian(field.dy)) < 0.2
