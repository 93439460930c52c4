"""Real-scene fixtures read from the shared data sets (``shared/data``; tests skip when it is absent).

The Perito Moreno series (GIV example, GPL-3.0, contains modified Copernicus Sentinel data [2020]) is a set
of RGB JPEGs without georeferencing; :func:`perito_moreno_inputs` writes them as GeoTIFFs into a temporary
folder (never into the repository), black (0, outside the GIV crop polygon) as no data, under a stated
assumption: north up, 10 m pixels (Sentinel-2's native 10 m bands), UTM 18S with the image centre on the
glacier front (50.50 S, 73.05 W). Speeds scale with the assumed pixel size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from _shared import SHARED_DATA

PERITO = SHARED_DATA / "perito_moreno_s2"
S2_CROPS = SHARED_DATA / "s2_l2a_crops"
KASKAWULSH = SHARED_DATA / "glaft_kaskawulsh"

PERITO_PIXEL_M = 10.0
"""Assumed pixel size of the Perito Moreno frames, metres (undocumented upstream)."""
PERITO_CRS = "EPSG:32718"
PERITO_CENTRE_LONLAT = (-73.05, -50.50)


def perito_origin() -> tuple[float, float]:
    """Upper-left corner (x, y) of the assumed grid, UTM 18S metres."""
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", PERITO_CRS, always_xy=True).transform(*PERITO_CENTRE_LONLAT)
    return float(x) - 1731 / 2 * PERITO_PIXEL_M, float(y) + 1231 / 2 * PERITO_PIXEL_M


def perito_moreno_inputs(
    folder: Path, *, dates: list[str] | None = None, window: tuple[slice, slice] | None = None
) -> tuple[list[Path], Path]:
    """The Perito Moreno frames (all, or those of ``dates``, ``YYYYMMDD``) as 3-band GeoTIFFs in ``folder``,
    and the glacier mask as a 1-band GeoTIFF (1 = ice, ``mask.jpg`` thresholded at 127); ``window`` (rows,
    cols) crops them all (the georeferencing follows)."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    x0, y0 = perito_origin()
    rows, cols = window if window is not None else (slice(0, None), slice(0, None))
    x0, y0 = x0 + (cols.start or 0) * PERITO_PIXEL_M, y0 - (rows.start or 0) * PERITO_PIXEL_M
    transform = from_origin(x0, y0, PERITO_PIXEL_M, PERITO_PIXEL_M)
    frames = sorted(p for p in PERITO.glob("2020*.jpg") if dates is None or p.stem in dates)

    def write(path: Path, data: np.ndarray, nodata: int | None = 0) -> None:
        bands = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
        profile = dict(driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=bands.dtype, crs=PERITO_CRS, transform=transform, nodata=nodata)  # fmt: skip
        if not path.is_file():
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(bands)

    out = []
    for jpg in frames:
        tif = folder / f"perito_moreno_{jpg.stem}.tif"
        write(tif, np.asarray(Image.open(jpg).convert("RGB"))[rows, cols])
        out.append(tif)
    mask = folder / "perito_moreno_glacier.tif"
    ice = np.asarray(Image.open(PERITO / "mask.jpg").convert("L")) > 127
    write(mask, ice[rows, cols].astype(np.uint8), None)
    return out, mask
