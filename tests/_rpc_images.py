"""Synthetic RPC images from a real DEM (Copernicus GLO-30 crop, Grenoble) and a real Landsat texture through
a known sensor model (shared by test_ortho.py and the job tests of test_workflows.py).

The image is simulated backwards (image pixel -> ground, iterating on the DEM height with GDAL's RPC
inverse); the truth is the forward RPC at the exact (bilinear, native DEM grid) height.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer
from scipy import ndimage

from _shared import SHARED_DATA

DEM = SHARED_DATA / "dem" / "Copernicus_DSM_10_N45_00_E005_00_DEM.tif"
UTM31 = rasterio.crs.CRS.from_epsg(32631)
PIXEL = 20.0
N = 256
# Ground grid over the Chartreuse / Grésivaudan (relief 200-2000 m): UTM 31N, 20 m, 256 x 256.
X0, Y0 = 720000.0, 5020000.0
IMAGE_SHAPE = (330, 330)


def rpc_model(line_off: float = 160.0, samp_off: float = 160.0) -> RPC:
    """A pushbroom-like RPC: ~20 m pixels, rotated 8°, looking 25° off-nadir across track, mild curvature."""
    zero = [0.0] * 20
    samp_num, line_num = list(zero), list(zero)
    # RPC00B term order: 1, L, P, H, LP, LH, PH, L², P², H², ...
    samp_num[1], samp_num[2], samp_num[3], samp_num[7] = 1.0, 0.14, 0.16, 0.01
    line_num[1], line_num[2], line_num[3], line_num[8] = 0.14, -1.0, 0.02, -0.01
    return RPC(
        height_off=1100.0, height_scale=1000.0, lat_off=45.2752, lat_scale=0.03,
        long_off=5.8374, long_scale=0.042, line_off=line_off, line_scale=166.0,
        samp_off=samp_off, samp_scale=164.0, line_num_coeff=line_num, line_den_coeff=[1.0, *zero[1:]],
        samp_num_coeff=samp_num, samp_den_coeff=[1.0, *zero[1:]],
    )  # fmt: skip


def dem_height():  # type: ignore[no-untyped-def]
    """Exact bilinear height (m) at lon/lat from the DEM's own grid (pixel-is-area, centres at +0.5)."""
    with rasterio.open(DEM) as src:
        z = src.read(1).astype(np.float64)
        inv = ~src.transform

    def at(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        col, row = inv @ (np.asarray(lon), np.asarray(lat))
        return ndimage.map_coordinates(z, [np.asarray(row) - 0.5, np.asarray(col) - 0.5], order=1)

    return at


def ground_positions(height, shape=IMAGE_SHAPE):  # type: ignore[no-untyped-def]
    """(row, col) on the ground grid seen by every image pixel of the true sensor model (float64 arrays)."""
    true = rpc_model()
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    with RPCTransformer(true) as t:
        z = np.full(rows.size, true.height_off)
        for _ in range(12):  # image pixel -> ground at the DEM height (fixed point, parallax < 1)
            lon, lat = t.xy(rows.ravel(), cols.ravel(), zs=z, offset="center")
            z = height(np.asarray(lon), np.asarray(lat))
    x, y = Transformer.from_crs("EPSG:4326", UTM31, always_xy=True).transform(lon, lat)
    return (Y0 - np.asarray(y)) / PIXEL - 0.5, (np.asarray(x) - X0) / PIXEL - 0.5


def write_rpc_image(path: Path, ground: np.ndarray, positions, rpc: RPC, shape=IMAGE_SHAPE) -> Path:  # type: ignore[no-untyped-def]
    """Sample ``ground`` (on the ground grid) at ``positions`` and write it with ``rpc`` (no geotransform)."""
    gr, gc = positions
    image = ndimage.map_coordinates(ground, [gr, gc], order=3, mode="constant", cval=np.nan).reshape(shape)
    profile = dict(driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="float32", nodata=np.nan)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.astype(np.float32), 1)
        dst.rpcs = rpc
    return path
