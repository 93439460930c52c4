"""geodeform.io.ortho: a synthetic RPC image made from a real DEM (Copernicus GLO-30 crop, Grenoble) and a
real Landsat texture through a known sensor model, so the true image position of every ground pixel is known.

The image is simulated backwards (image pixel -> ground, iterating on the DEM height with GDAL's RPC
inverse), orthorectification goes forwards; the truth is the forward RPC at the exact (bilinear, native
DEM grid) height.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio")

import rasterio
from pyproj import Transformer
from rasterio.rpc import RPC
from rasterio.transform import RPCTransformer, from_origin
from scipy import ndimage

from _shared import SHARED_DATA
from geodeform.demo import load_texture
from geodeform.errors import InvalidInputError
from geodeform.io import GeoGrid
from geodeform.io.ortho import ImageCorrection, image_coordinates, orthorectify, parallax_px, refine_rpc
from geodeform.io.raster import NotGeoreferencedError

DEM = SHARED_DATA / "dem" / "Copernicus_DSM_10_N45_00_E005_00_DEM.tif"
UTM31 = rasterio.crs.CRS.from_epsg(32631)
PIXEL = 20.0
N = 256
# Grid over the Chartreuse / Grésivaudan (relief 200-2000 m): UTM 31N, 20 m, 256 x 256.
X0, Y0 = 720000.0, 5020000.0


def _rpc(line_off: float = 160.0, samp_off: float = 160.0) -> RPC:
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


def _dem_height():  # type: ignore[no-untyped-def]
    """Exact bilinear height (m) at lon/lat from the DEM's own grid (pixel-is-area, centres at +0.5)."""
    with rasterio.open(DEM) as src:
        z = src.read(1).astype(np.float64)
        inv = ~src.transform

    def at(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        col, row = inv @ (np.asarray(lon), np.asarray(lat))
        return ndimage.map_coordinates(z, [np.asarray(row) - 0.5, np.asarray(col) - 0.5], order=1)

    return at


@pytest.fixture(scope="module")
def scene(tmp_path_factory):  # type: ignore[no-untyped-def]
    if not DEM.is_file():
        pytest.skip(f"real DEM not found at {DEM}")
    folder = tmp_path_factory.mktemp("ortho")
    grid = GeoGrid(crs=UTM31, transform=from_origin(X0, Y0, PIXEL, PIXEL), shape=(N, N))
    texture = load_texture()[:N, :N].astype(np.float64)  # the ground, on the grid
    height = _dem_height()
    true = _rpc()
    shape = (330, 330)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    to_utm = Transformer.from_crs("EPSG:4326", UTM31, always_xy=True)
    with RPCTransformer(true) as t:
        z = np.full(rows.size, true.height_off)
        for _ in range(12):  # image pixel -> ground at the DEM height (fixed point, parallax < 1)
            lon, lat = t.xy(rows.ravel(), cols.ravel(), zs=z, offset="center")
            z = height(np.asarray(lon), np.asarray(lat))
    x, y = to_utm.transform(lon, lat)
    gr, gc = (Y0 - np.asarray(y)) / PIXEL - 0.5, (np.asarray(x) - X0) / PIXEL - 0.5
    image = ndimage.map_coordinates(texture, [gr, gc], order=3, mode="constant", cval=np.nan).reshape(shape)
    paths = {}
    for name, rpc in (("true", true), ("biased", _rpc(line_off=160.0 + 1.0, samp_off=160.0 + 2.8))):
        path = folder / f"{name}.tif"  # a 3 px RPC bias: (1.0, 2.8) px, |bias| = 2.97 px
        profile = dict(
            driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="float32", nodata=np.nan
        )
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(image.astype(np.float32), 1)
            dst.rpcs = rpc
        paths[name] = path
    # Truth: where each grid pixel centre is seen in the image (forward RPC at the exact height).
    gx, gy = np.meshgrid(X0 + PIXEL * (np.arange(N) + 0.5), Y0 - PIXEL * (np.arange(N) + 0.5))
    glon, glat = Transformer.from_crs(UTM31, "EPSG:4326", always_xy=True).transform(gx, gy)
    with RPCTransformer(true) as t:
        tr, tc = t.rowcol(glon.ravel(), glat.ravel(), zs=height(glon.ravel(), glat.ravel()), op=lambda v: v)
    truth = (np.asarray(tr).reshape(N, N) - 0.5, np.asarray(tc).reshape(N, N) - 0.5)
    return {"grid": grid, "texture": texture.astype(np.float32), "truth": truth, **paths}


def _errors(rows: np.ndarray, cols: np.ndarray, truth) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.hypot(rows - truth[0], cols - truth[1])


def test_rpc_image_orthorectified_with_a_dem_lands_on_the_truth(scene) -> None:  # type: ignore[no-untyped-def]
    grid, truth = scene["grid"], scene["truth"]
    assert parallax_px(_rpc()) > 20  # the terrain matters: 16 % of 164 px per 1000 m of height
    ortho = orthorectify(scene["true"], grid, dem=DEM)
    err = _errors(ortho.rows, ortho.cols, truth)
    print(f"ortho error: median {np.median(err):.3f} px, {(err < 0.2).mean():.1%} < 0.2 px")
    assert (err < 0.2).mean() >= 0.95 and np.median(err) < 0.05
    # and the pixels: the orthoimage is the ground texture (inside the image footprint)
    inside = np.isfinite(ortho.data)
    assert inside.mean() > 0.9
    assert np.corrcoef(ortho.data[inside], scene["texture"][inside])[0, 1] > 0.97
    # without the DEM, at the mean height: tens of pixels off on the mountains
    flat = image_coordinates(scene["true"], grid, height=1100.0)
    assert np.percentile(_errors(*flat, truth), 95) > 5


@pytest.mark.slow
def test_refinement_removes_a_3px_rpc_bias(scene) -> None:  # type: ignore[no-untyped-def]
    grid, truth = scene["grid"], scene["truth"]
    biased = orthorectify(scene["biased"], grid, dem=DEM)
    before = _errors(biased.rows, biased.cols, truth)
    assert np.median(before) == pytest.approx(np.hypot(1.0, 2.8), abs=0.1)
    fit = refine_rpc(scene["biased"], scene["texture"], grid, dem=DEM, model="shift")
    after = orthorectify(scene["biased"], grid, dem=DEM, correction=fit.correction)
    err = _errors(after.rows, after.cols, truth)
    print(
        f"bias {np.median(before):.2f} px -> {np.median(err):.3f} px, {(err < 0.2).mean():.1%} < 0.2 px"
    )
    assert fit.nodes > 50 and np.median(err) < 0.1 and (err < 0.2).mean() >= 0.95
    affine = refine_rpc(scene["biased"], scene["texture"], grid, dem=DEM, model="affine")
    err = _errors(*image_coordinates(scene["biased"], grid, dem=DEM, correction=affine.correction), truth)
    assert (err < 0.2).mean() >= 0.95


def test_bad_inputs(scene, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grid = scene["grid"]
    with pytest.raises(InvalidInputError, match=r"true\.tif has RPCs whose terrain parallax is .* give one"):
        orthorectify(scene["true"], grid)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(NotGeoreferencedError, match="neither a geotransform nor RPCs"):
        orthorectify(plain, grid)
    assert ImageCorrection(r0=1.0).then(ImageCorrection(c0=2.0)) == ImageCorrection(r0=1.0, c0=2.0)
