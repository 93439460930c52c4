"""Tutorial "quake": a co-seismic job over three tiles on two UTM zones, from the command line.

Run from the repository root:  python docs/examples/quake.py [FOLDER]
It writes the pre- and post-event images of three overlapping tiles (the Landsat-8 texture shipped with
geodeform, each image with noise, misregistration, attitude jitter, and detector stripes after the event)
over a rupture whose right-lateral slip grows from 2 to 5 m along strike, and a job file; runs
``geodeform run quake.yaml``; and scores the products against the rupture it imposed. FOLDER (default: a
temporary folder) keeps the images, the job file and the run.
"""

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from pyproj import Transformer

from geodeform.demo import load_texture
from geodeform.io import apply_transform, dataset_grid
from geodeform.quake.synthetic import ground_rupture, make_scenes

PIXEL = 10.0  # m
# Tile centres (lon, lat): 384 x 384 px tiles overlapping by ~1.2 km; T2 straddles 36° E, T3 is in zone 37.
CENTRES = [(35.955, 37.50), (35.985, 37.505), (36.015, 37.51)]


def slip(s):
    """Right-lateral slip (m) at along-strike distance s (m) from the middle tile's centre."""
    return 3.5 + 1.5 * np.tanh(np.asarray(s) / 3000.0)


temporary = tempfile.TemporaryDirectory(prefix="quake-")  # removed at exit
folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(temporary.name)
rupture = ground_rupture(35.985, 37.505, azimuth=78.0, slip=slip, depth=8000.0)
scenes = make_scenes(load_texture(), CENTRES, rupture, shape=(384, 384), pixel_size=PIXEL, seed=1)

# The job file: what `geodeform init --preset quake` writes, with the images and the event date filled in.
job = {
    "name": "quake-tutorial",
    "preset": "quake",
    "inputs": scenes.write_inputs(folder / "images"),  # path, date and tile of every image
    "quake": {"event_date": scenes.event_date},
    "corrections": {"track_angle_deg": scenes.track_angle},  # stripes and jitter run along the track
}
(folder / "quake.yaml").write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
geodeform = [sys.executable, "-c", "from geodeform.cli import main; main()"]
# --cluster sync: match in this process (without it, compute.cluster: a Dask LocalCluster)
subprocess.run([*geodeform, "run", "quake.yaml", "--out", "run", "--cluster", "sync"], cwd=folder, check=True)
run = folder / "run"

# Score the products against the imposed rupture.
grid = dataset_grid(xr.open_dataset(run / "offsets.nc"))
to_lonlat = Transformer.from_crs(grid.crs.to_wkt(), "EPSG:4326", always_xy=True).transform
zones = sorted({t.crs.to_string() for t in scenes.tiles})
print(f"{len(scenes.tiles)} tiles on {' and '.join(zones)}, mosaic on {grid.crs.to_string()} {grid.shape}")

with open(run / "profiles.csv", encoding="utf-8") as fh:
    rows = [r for r in csv.DictReader(fh) if r["parallel_m"]]
col, row = (np.array([float(r[k]) for r in rows]) for k in ("col", "row"))
lon, lat = to_lonlat(*apply_transform(grid.transform, col + 0.5, row + 0.5))
truth = rupture.slip_at(lon, lat)
parallel = np.array([float(r["parallel_m"]) for r in rows])
rmse = np.sqrt(np.mean((parallel - truth) ** 2))
print(f"slip profiles: {len(rows)}, fault-parallel slip {parallel.min():.2f} to {parallel.max():.2f} m")
print(f"  truth {truth.min():.2f} to {truth.max():.2f} m; RMSE {rmse:.2f} m")

trace = np.asarray(json.loads((run / "trace.geojson").read_text())["geometry"]["coordinates"])
across = np.abs(rupture.local(trace[:, 0], trace[:, 1])[1]) / PIXEL
print(f"trace: {len(trace)} vertices, median distance to the true trace {np.median(across):.1f} px")
assert rmse <= 0.3 and np.median(across) <= 3.0
