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
from rasterio.transform import RPCTransformer, from_origin

from _rpc_images import DEM, PIXEL, UTM31, X0, Y0, N, dem_height, ground_positions, rpc_model, write_rpc_image
from geodeform.demo import load_texture
from geodeform.errors import InvalidInputError
from geodeform.io import GeoGrid
from geodeform.io.ortho import ImageCorrection, image_coordinates, orthorectify, parallax_px, refine_rpc
from geodeform.io.raster import NotGeoreferencedError

_rpc, _dem_height = rpc_model, dem_height


@pytest.fixture(scope="module")
def scene(tmp_path_factory):  # type: ignore[no-untyped-def]
    if not DEM.is_file():
        pytest.skip(f"real DEM not found at {DEM}")
    folder = tmp_path_factory.mktemp("ortho")
    grid = GeoGrid(crs=UTM31, transform=from_origin(X0, Y0, PIXEL, PIXEL), shape=(N, N))
    texture = load_texture()[:N, :N].astype(np.float64)  # the ground, on the grid
    height = _dem_height()
    true = _rpc()
    positions = ground_positions(height)
    paths = {}
    for name, rpc in (("true", true), ("biased", _rpc(line_off=160.0 + 1.0, samp_off=160.0 + 2.8))):
        # a 3 px RPC bias: (1.0, 2.8) px, |bias| = 2.97 px
        paths[name] = write_rpc_image(folder / f"{name}.tif", texture, positions, rpc)
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
    print(f"bias {np.median(before):.2f} px -> {np.median(err):.3f} px, {(err < 0.2).mean():.1%} < 0.2 px")
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
