"""Tutorial "sar": amplitude offset tracking on a real Sentinel-1 image, with fresh speckle on each date.

Run from the repository root:  python docs/examples/sar.py
Needs the shared data sets (GEODEFORM_DATA, default ../shared/data): a real Sentinel-1A IW GRD VV image,
multilooked, geocoded and calibrated by GAMMA (pyroSAR test data, 20 m, dB). There is no second date of the
same area in a redistributable form, so the second date is the same scene moved by a known shift, with
independent speckle on both dates (what decorrelates real SAR pairs).
"""

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from _synthetic import warp

from geodeform.offsets import match

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
