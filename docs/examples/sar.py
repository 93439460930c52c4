"""Tutorial "sar": amplitude offset tracking on a real Sentinel-1 image, then the whole sar chain.

Part 1 matches two geocoded amplitude images; part 2 runs ``geodeform run`` with ``preset: sar`` on two
Sentinel-1 GRD SAFE products of a real geometry (see below) and checks the line-of-sight product.

Run from the repository root:  python docs/examples/sar.py
Needs the shared data sets (GEODEFORM_DATA, default ../shared/data): a real Sentinel-1A IW GRD VV image,
multilooked, geocoded and calibrated by GAMMA (pyroSAR test data, 20 m, dB). There is no second date of the
same area in a redistributable form, so the second date is the same scene moved by a known shift, with
independent speckle on both dates (what decorrelates real SAR pairs).
"""

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from _synthetic import warp
from scipy import ndimage

from geodeform.config import load_config
from geodeform.offsets import match
from geodeform.sar import footprint, open_s1, radar_coordinates
from geodeform.sar.simulate import gamma_speckle, grd_from_template
from geodeform.sar.simulate import warp as warp_field
from geodeform.workflows import run_job

DATA = Path(os.environ.get("GEODEFORM_DATA", "../shared/data")) / "s1_grd" / "pyrosar_geocoded"
FILE = DATA / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
if not FILE.exists():
    print(f"skipped: {FILE} not found (set GEODEFORM_DATA)")
    sys.exit(0)

with rasterio.open(FILE) as src:
    db = src.read(1).astype(np.float64)  # backscatter, dB; no no-data pixel in this crop
intensity = 10 ** (db / 10)

TRUE_DX, TRUE_DY = 0.6, -0.4  # px (20 m): 12 m toward +columns (east), 8 m toward -rows (north)
LOOKS = 4  # equivalent number of looks of the speckle added to each date
rng = np.random.default_rng(0)


def speckled(img):
    """Multi-look intensity speckle: Gamma(L, 1/L) multiplicative noise, independent per date."""
    return img * rng.gamma(LOOKS, 1 / LOOKS, img.shape)


moved = warp(intensity, lambda r, c: (np.full_like(r, TRUE_DX), np.full_like(r, TRUE_DY)))
reference = 10 * np.log10(speckled(intensity))  # match in dB: speckle becomes additive
secondary = 10 * np.log10(speckled(np.clip(moved, 1e-6, None)))

print("method  median dx, dy (px)     RMSE (px)  valid")
for method, opts in (("ncc", {}), ("ncc", {"prefilter": "wallis"}), ("phase", {}), ("flow", {})):
    field = match(reference, secondary, method=method, chip_size=32, step=8, search_range=4, **opts)
    err = np.hypot(field.dx - TRUE_DX, field.dy - TRUE_DY)
    rmse = float(np.sqrt(np.nanmean(err**2)))
    name = method + ("+wallis" if opts else "")
    print(
        f"{name:12s} {np.nanmedian(field.dx):+.3f}, {np.nanmedian(field.dy):+.3f}    "
        f"{rmse:9.3f}  {field.coverage:5.0%}"
    )
    if method == "ncc" and not opts:
        assert abs(np.nanmedian(field.dx) - TRUE_DX) < 0.05 and abs(np.nanmedian(field.dy) - TRUE_DY) < 0.05

# --- Part 2: the sar chain (geodeform run, preset sar) on two GRD products of a real geometry -------------
# The annotation, calibration and noise XML of a real IW GRDH product (sarsen test data: orbit 22,
# descending, 10 m pixels) with the real amplitude of another IW GRD crop (rio-tiler-pds) written into a
# window of its measurement; the second date (12 days later) is the same ground moved by a known bump,
# with independent speckle (4.4 looks) on both dates.
S1 = DATA.parent
TEMPLATE = next((S1 / "sarsen_grd_metadata_only").glob("*.SAFE"))
AMPLITUDE = S1 / "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B/measurement/iw-vv.tiff"
with rasterio.open(AMPLITUDE) as src:
    amp = src.read(1).astype(np.float64)[200:680, 300:860]
h, w = amp.shape
rr, cc = np.mgrid[0:h, 0:w]
bump = np.exp(-(((rr - h / 2) / 55) ** 2 + ((cc - w / 2) / 70) ** 2))
dx, dy = 1.8 * bump, -1.2 * bump  # px: toward far range, against the flight direction
a1 = np.sqrt(gamma_speckle(amp**2, 4.4, rng))
a2 = np.sqrt(gamma_speckle(np.clip(warp_field(amp, dx, dy, order=3), 0, None) ** 2, 4.4, rng))
origin = (8000, 12000)  # where the crop sits in the 16705 x 26102 measurement
with tempfile.TemporaryDirectory() as tmp:
    s1 = grd_from_template(TEMPLATE, tmp, a1, origin=origin)
    s2 = grd_from_template(TEMPLATE, tmp, a2, origin=origin, cycles=1)
    window = open_s1(s1, polarisation="VV", window=(*origin, h, w))
    job = {
        "name": "sar-tutorial",
        "preset": "sar",
        "inputs": [{"path": str(s1), "date": "2021-12-23"}, {"path": str(s2), "date": "2022-01-04"}],
        "roi": list(footprint(window, whole=False).buffer(-0.008).bounds),  # inside the crop
        "matching": {"step": 16, "expected_max_speed": 1000.0},
        "compute": {"cluster": "sync"},
    }
    result = run_job(load_config(job), Path(tmp) / "run")
    with xr.open_dataset(result.pairs[0].path) as ds:
        at = radar_coordinates(window, result.stack.grid)
        tdx = ndimage.map_coordinates(dx, [at.rows, at.cols], order=1, cval=np.nan)
        tdy = ndimage.map_coordinates(dy, [at.rows, at.cols], order=1, cval=np.nan)
        los_truth = -tdx * 10.0 * np.sin(np.deg2rad(ds["incidence"].values))  # + towards the satellite
        err_los = ds["los"].values - los_truth
        err_az = ds["azimuth"].values - tdy * 10.0
        valid = float(np.isfinite(ds["los"].values).mean())
    rmse_los = float(np.sqrt(np.nanmean(err_los**2)))
    rmse_az = float(np.sqrt(np.nanmean(err_az**2)))
    print(
        f"sar chain, 1 pair, {result.stack.grid.shape[0]} x {result.stack.grid.shape[1]} map cells at 20 m: "
        f"LOS RMSE {rmse_los:.2f} m (peak {np.nanmax(np.abs(los_truth)):.1f} m), azimuth RMSE "
        f"{rmse_az:.2f} m (peak {np.nanmax(np.abs(tdy)) * 10:.1f} m), valid {valid:.0%}"
    )
    assert valid > 0.9 and rmse_los < 0.1 * np.nanmax(np.abs(los_truth)) and rmse_az < 1.2
