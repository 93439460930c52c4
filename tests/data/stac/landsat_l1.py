"""Landsat Collection 2 Level-1 test scenes with a known displacement, written at catalogue load time.

Three acquisitions of one WRS-2 path/row over a UTM 7N grid, made from the real Landsat-8 band-4 texture that
ships with geodeform (``geodeform/data/landsat8_b4_crop.npz``; USGS, public domain):

* ``red`` (30 m) is the texture, moved between dates by a known glacier flow (:func:`velocity`, still ground
  around it; quintic spline warp); ``pan`` (15 m, "B8") is the same image resampled by 2x2 cubic spline
  interpolation, so it has the pan band's grid but no more detail than the red band;
* ``qa_pixel`` (30 m) is Collection-2 "clear" (21824) everywhere, and fill (bit 0) where the image has none;
* the Landsat 7 acquisition has SLC-off scan-line gaps: wedge-shaped no-data stripes (0 in the bands, fill in
  QA_PIXEL) that are ~1 px wide near the centre of the swath and ~12 px wide at its edges, after 2003-05-31;
* a second Landsat 7 acquisition is 85 % gaps (the "mostly gaps" bad input).

``write_scenes(folder)`` writes the COGs and returns the items (Earth Search ``landsat-c2-l1`` style); the
tests import ``velocity`` and ``SCENES`` from here. Used by ``prepare_items.py``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

EPSG = 32607
WEST, NORTH = 500_010.0, 6_690_000.0  # upper-left corner of the 30 m grid, m
SIZE = 320  # 30 m pixels per side (9.6 km)
#: Fastest ground velocity, 30 m pixels per day (3 m/day, ~1100 m/yr).
PEAK_PX_PER_DAY = 0.1
PATH, ROW = 62, 17
#: id -> (platform, date, gap kind)
SCENES: dict[str, tuple[str, str, str]] = {
    "LC08_L1TP_062017_20210701_20210708_02_T1": ("landsat-8", "2021-07-01", "none"),
    "LE07_L1TP_062017_20210709_20210804_02_T1": ("landsat-7", "2021-07-09", "slc-off"),
    "LC08_L1TP_062017_20210717_20210726_02_T1": ("landsat-8", "2021-07-17", "none"),
    "LE07_L1TP_062017_20210725_20210820_02_T1": ("landsat-7", "2021-07-25", "mostly"),
}
CLEAR_QA, FILL_QA = 21824, 1


def _texture() -> np.ndarray:
    from geodeform.demo import load_texture

    return load_texture().astype(np.float64)


def velocity(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True ground velocity (dx, dy) in 30 m pixels per day at 30 m pixel coordinates (+dy = south): the
    demo's curved glacier, still ground around it."""
    from geodeform.demo import series_field

    return series_field(rows, cols, SIZE, PEAK_PX_PER_DAY)


def _moved(tex: np.ndarray, days: int) -> np.ndarray:
    """The texture with the ground moved by ``days`` of the true velocity (inverse mapping)."""
    from scipy import ndimage

    rr, cc = np.mgrid[0 : tex.shape[0], 0 : tex.shape[1]].astype(np.float64)
    pr, pc = rr.copy(), cc.copy()
    for _ in range(10):  # p = q - d(p)
        dx, dy = velocity(pr, pc)
        pr, pc = rr - days * dy, cc - days * dx
    return ndimage.map_coordinates(tex, [pr, pc], order=5, mode="mirror")


def gaps(shape: tuple[int, int], kind: str) -> np.ndarray:
    """True in the scan-line gaps of an SLC-off image (``kind`` ``slc-off`` or ``mostly``), on any grid."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    scale = shape[1] / SIZE  # the pattern in 30 m pixels, whatever the grid
    if kind == "none":
        return np.zeros(shape, dtype=bool)
    u = (rows / scale + 0.12 * cols / scale) % 32.0  # stripes slightly tilted, 32 px (~one scan) apart
    edge = np.abs(cols / scale - SIZE / 2) / (SIZE / 2)
    width = 1.0 + 11.0 * edge if kind == "slc-off" else 27.0 + 0.0 * edge
    return u < width


def _write(path: Path, data: np.ndarray, pixel: float, dtype: str, nodata: int | None) -> None:
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": dtype,
        "crs": f"EPSG:{EPSG}",
        "transform": from_origin(WEST, NORTH, pixel, pixel),
        "compress": "deflate",
        "blocksize": 256,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(dtype), 1)
    tmp.replace(path)


def _footprint() -> tuple[list[float], dict[str, Any]]:
    from pyproj import Transformer

    to_ll = Transformer.from_crs(EPSG, 4326, always_xy=True)
    east, south = WEST + 30.0 * SIZE, NORTH - 30.0 * SIZE
    ring = [to_ll.transform(x, y) for x, y in ((WEST, NORTH), (east, NORTH), (east, south), (WEST, south))]
    ring.append(ring[0])
    lons, lats = zip(*ring, strict=True)
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return bbox, {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}


def bbox() -> list[float]:
    """Lon/lat box of the scenes."""
    return _footprint()[0]


def write_scenes(folder: Path) -> list[dict[str, Any]]:
    """Write the COGs of every scene under ``folder`` and return their STAC items."""
    from scipy import ndimage

    tex = _texture()[:SIZE, :SIZE]
    t0 = date.fromisoformat(SCENES[next(iter(SCENES))][1])
    box, geometry = _footprint()
    items = []
    for scene_id, (platform, day, kind) in SCENES.items():
        out = folder / scene_id
        out.mkdir(parents=True, exist_ok=True)
        red = np.clip(_moved(tex, (date.fromisoformat(day) - t0).days), 1, 65535)
        pan = np.clip(ndimage.zoom(red, 2, order=3, mode="mirror", grid_mode=True), 1, 65535)
        gap30, gap15 = gaps(red.shape, kind), gaps(pan.shape, kind)
        _write(out / "B4.TIF", np.where(gap30, 0, red), 30.0, "uint16", 0)
        _write(out / "B8.TIF", np.where(gap15, 0, pan), 15.0, "uint16", 0)
        _write(out / "QA_PIXEL.TIF", np.where(gap30, FILL_QA, CLEAR_QA), 30.0, "uint16", None)
        asset = {"type": "image/tiff; application=geotiff; profile=cloud-optimized"}
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "stac_extensions": [],
                "id": scene_id,
                "collection": "landsat-c2-l1",
                "geometry": geometry,
                "bbox": box,
                "properties": {
                    "datetime": f"{day}T20:30:00Z",
                    "platform": platform,
                    "instruments": ["oli", "tirs"] if platform == "landsat-8" else ["etm"],
                    "eo:cloud_cover": 0.0,
                    "landsat:wrs_type": "2",
                    "landsat:wrs_path": f"{PATH:03d}",
                    "landsat:wrs_row": f"{ROW:03d}",
                    "landsat:collection_category": "T1",
                    "landsat:collection_number": "02",
                },
                "links": [],
                "assets": {
                    "red": {**asset, "href": str(out / "B4.TIF"), "roles": ["data"]},
                    "pan": {**asset, "href": str(out / "B8.TIF"), "roles": ["data"]},
                    "qa_pixel": {**asset, "href": str(out / "QA_PIXEL.TIF"), "roles": ["cloud"]},
                },
            }
        )
    return items


def collection() -> dict[str, Any]:
    """The ``landsat-c2-l1`` collection (Earth Search id)."""
    return {
        "type": "Collection",
        "id": "landsat-c2-l1",
        "stac_version": "1.0.0",
        "description": "Landsat Collection 2 Level-1 (test scenes made from a real Landsat-8 texture)",
        "links": [],
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["1972-07-25T00:00:00Z", None]]},
        },
    }
