"""Read one band of a georeferenced raster, and a reference / secondary pair on the reference grid.

Pixels are returned as float32 with NaN where the source has no data (nodata value, mask, or outside the
secondary after reprojection).
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geodeform.errors import DataError, InvalidInputError, NoDataError
from geodeform.io.grid import GeoGrid

__all__ = [
    "READ_THREADS",
    "CorruptRasterError",
    "NoOverlapError",
    "NotGeoreferencedError",
    "RasterBand",
    "RasterPair",
    "band_index",
    "band_names",
    "fill_values",
    "gdal_path",
    "read_band",
    "read_grid",
    "read_on_grid",
    "read_pair",
    "window_vrt",
]

log = logging.getLogger(__name__)

READ_THREADS = "ALL_CPUS"
"""GDAL_NUM_THREADS of every read: GDAL decodes the compressed blocks of one read on all cores."""


class CorruptRasterError(DataError):
    """The file exists but GDAL cannot read it as a raster (truncated download, wrong format)."""


class NotGeoreferencedError(DataError):
    """The raster has no CRS / geotransform (plain image, or only GCPs), so it cannot be placed on Earth."""


class NoOverlapError(NoDataError):
    """Reference and secondary rasters do not share any ground area."""


@dataclass(frozen=True)
class RasterBand:
    """One band on its grid.

    Attributes
    ----------
    data
        (height, width) float32 pixel values, NaN = no data.
    grid
        CRS, transform and shape of ``data``.
    path
        File the band was read from.
    band
        1-based band index in that file.
    tags
        Dataset-level metadata tags (GDAL default domain), e.g. ``TIFFTAG_DATETIME``, ``ACQUISITION_DATE``.
    source_dtype
        Data type of the band in the file (e.g. ``"uint16"``): integer images often use 0 or the dtype
        maximum as undeclared fill values.
    source_nodata
        Declared nodata value of the band in the file (already turned into NaN in ``data``), or None.
    """

    data: NDArray[np.float32]
    grid: GeoGrid
    path: Path
    band: int
    tags: dict[str, str] = field(default_factory=dict)
    source_dtype: str = "float32"
    source_nodata: float | None = None


@dataclass(frozen=True)
class RasterPair:
    """Reference and secondary bands on the same (reference) grid.

    Attributes
    ----------
    reference, secondary
        Bands; ``secondary.grid == reference.grid``.
    reprojected
        True when the secondary was warped onto the reference grid.
    """

    reference: RasterBand
    secondary: RasterBand
    reprojected: bool


def _open(path: Path) -> rasterio.DatasetReader:
    if not path.exists():
        raise DataError(f"raster {str(path)!r} does not exist; check the path")
    try:
        with warnings.catch_warnings():  # we raise NotGeoreferencedError with a fix instead
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        unknown = "not recognized as being in a supported file format" in str(exc)
        if unknown and path.suffix.lower() not in {".tif", ".tiff", ".jp2", ".vrt"}:
            raise CorruptRasterError(
                f"{str(path)!r}: GDAL cannot read this format ({exc}). geodeform reads any single-band "
                "raster GDAL opens: GeoTIFF/COG, JPEG2000, VRT, ENVI, NetCDF/HDF5 subdatasets "
                "(NETCDF:file:var); "
                "convert it with `gdal_translate -of COG IN OUT.tif`"
            ) from exc
        raise CorruptRasterError(
            f"{str(path)!r} cannot be read as a raster ({exc}); check it is a complete GeoTIFF/COG "
            "(re-download or re-export it)"
        ) from exc


def _grid_of(src: rasterio.io.DatasetReaderBase, path: Path) -> GeoGrid:
    if src.crs is None or src.transform.is_identity:
        if src.gcps[0]:
            hint = "it only has ground control points; orthorectify it first (gdalwarp -t_srs EPSG:<utm>)"
        else:
            hint = "assign a CRS and geotransform first (e.g. gdal_translate -a_srs EPSG:<code> -a_ullr ...)"
        raise NotGeoreferencedError(f"{str(path)!r} is not georeferenced (no CRS or geotransform): {hint}")
    return GeoGrid(crs=src.crs, transform=src.transform, shape=(src.height, src.width))


def band_names(src: rasterio.io.DatasetReaderBase) -> list[list[str]]:
    """Names each band of an open raster answers to (lower case): its description, its ``BANDNAME`` /
    ``NAME`` tag and its colour interpretation (``red``, ``green``, ``blue``, ``gray``...)."""
    names = []
    for i in range(1, src.count + 1):
        found = [src.descriptions[i - 1] or ""]
        tags = src.tags(i)
        found += [tags.get(k, "") for k in ("BANDNAME", "NAME", "name", "band_name")]
        interp = src.colorinterp[i - 1].name
        if interp not in ("undefined", "gray"):
            found.append(interp)
        names.append([n.strip().lower() for n in found if n and n.strip()])
    return names


def band_index(src: rasterio.io.DatasetReaderBase, band: int | str, path: str | os.PathLike[str]) -> int:
    """1-based index of a band given by index or by name (case-insensitive; see :func:`band_names`).

    Raises
    ------
    InvalidInputError
        Index out of range, or no band (or several) with that name; the message lists the names found.
    """
    if isinstance(band, str) and band.strip().isdigit():
        band = int(band)
    if isinstance(band, int):
        if not 1 <= band <= src.count:
            raise InvalidInputError(f"band {band} requested but {str(path)!r} has bands 1..{src.count}")
        return band
    names = band_names(src)
    hits = [i + 1 for i, found in enumerate(names) if band.strip().lower() in found]
    if len(hits) == 1:
        return hits[0]
    listing = "; ".join(f"{i + 1}: {', '.join(n) or '(unnamed)'}" for i, n in enumerate(names))
    what = "several bands are" if hits else "no band is"
    raise InvalidInputError(
        f"{what} named {band!r} in {str(path)!r} (bands {listing}); give the band by its 1-based index or "
        "by one of these names"
    )


def _read_float(
    src: rasterio.io.DatasetReaderBase, band: int, path: Path, rows: tuple[int, int] | None = None
) -> NDArray[np.float32]:
    """The band (or its ``rows``) as float32, NaN where the file says no data (nodata, mask band, alpha)."""
    flags = src.mask_flag_enums[band - 1]
    window = None if rows is None else Window(0, rows[0], src.width, rows[1] - rows[0])
    try:
        with rasterio.Env(GDAL_NUM_THREADS=READ_THREADS):
            if MaskFlags.all_valid in flags or flags == [MaskFlags.nodata]:
                # No mask array to build: read straight into float32, then NaN the nodata value in place.
                data: NDArray[np.float32] = src.read(band, window=window, out_dtype="float32")
                nodata = src.nodatavals[band - 1]
                if MaskFlags.nodata in flags and nodata is not None and not np.isnan(nodata):
                    data[data == np.float32(nodata)] = np.nan
                return data
            masked = src.read(band, window=window, masked=True)
    except RasterioError as exc:
        raise CorruptRasterError(
            f"reading band {band} of {str(path)!r} failed ({exc}); the file is probably truncated or "
            "corrupt, re-download or re-export it"
        ) from exc
    return np.ma.filled(masked.astype(np.float32), np.nan)


def read_grid(path: str | os.PathLike[str], *, band: int | str = 1) -> GeoGrid:
    """The grid of a georeferenced raster, without reading its pixels.

    Raises
    ------
    DataError
        Missing, corrupt (``CorruptRasterError``) or non-georeferenced (``NotGeoreferencedError``) file.
    InvalidInputError
        ``band`` out of range.
    """
    p = Path(path)
    with _open(p) as src:
        band_index(src, band, p)
        return _grid_of(src, p)


def read_band(path: str | os.PathLike[str], *, band: int | str = 1) -> RasterBand:
    """Read one band of a georeferenced raster.

    Parameters
    ----------
    path
        Any GDAL-readable raster with a CRS and geotransform (GeoTIFF, COG, JP2 + .aux.xml, ...).
    band
        1-based band index, or a band name (description, ``BANDNAME`` tag or colour such as ``red``).

    Returns
    -------
    RasterBand
        float32 pixels (NaN where masked / nodata), grid and tags.

    Raises
    ------
    DataError
        Missing file. ``CorruptRasterError`` if unreadable, ``NotGeoreferencedError`` if not placed on Earth.
    InvalidInputError
        ``band`` out of range.
    """
    p = Path(path)
    with _open(p) as src:
        grid = _grid_of(src, p)
        band = band_index(src, band, p)
        data = _read_float(src, band, p)
        tags = dict(src.tags())
        dtype, nodata = src.dtypes[band - 1], src.nodatavals[band - 1]
    return RasterBand(
        data=data, grid=grid, path=p, band=band, tags=tags, source_dtype=dtype, source_nodata=nodata
    )


def _strip_grid(grid: GeoGrid, rows: tuple[int, int]) -> GeoGrid:
    return GeoGrid(
        crs=grid.crs,
        transform=grid.transform @ Affine.translation(0, rows[0]),
        shape=(rows[1] - rows[0], grid.width),
    )


def _read_on_grid(
    src: rasterio.io.DatasetReaderBase,
    band: int,
    path: Path,
    grid: GeoGrid,
    resampling: Resampling,
    warp: bool,
    rows: tuple[int, int] | None = None,
) -> NDArray[np.float32]:
    """The band on ``grid``: read as is when ``warp`` is False, else warped (``WarpedVRT``, NaN outside)."""
    if not warp:
        return _read_float(src, band, path, rows)
    # float32 + NaN fill so that pixels outside the source read as no data, not as 0.
    with WarpedVRT(
        src,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=resampling,
        dtype="float32",
        nodata=np.nan,
    ) as vrt:
        return _read_float(vrt, band, path, rows)


def _check_overlap(ref: GeoGrid, sec: GeoGrid, ref_path: Path, sec_path: Path) -> None:
    rx0, ry0, rx1, ry1 = ref.bounds
    try:
        sx0, sy0, sx1, sy1 = transform_bounds(sec.crs, ref.crs, *sec.bounds, densify_pts=21)
    except RasterioError as exc:  # e.g. a UTM footprint that cannot be expressed in the other CRS
        raise NoOverlapError(
            f"the footprint of {str(sec_path)!r} cannot be expressed in the CRS of {str(ref_path)!r} "
            f"({exc}); choose rasters over the same area"
        ) from exc
    if sx0 >= rx1 or sx1 <= rx0 or sy0 >= ry1 or sy1 <= ry0:
        raise NoOverlapError(
            f"{str(ref_path)!r} (bounds {tuple(round(v) for v in ref.bounds)}) and {str(sec_path)!r} "
            f"(bounds {tuple(round(v) for v in (sx0, sy0, sx1, sy1))} in the reference CRS) do not overlap; "
            "choose two rasters of the same area"
        )


def read_pair(
    reference: str | os.PathLike[str],
    secondary: str | os.PathLike[str],
    *,
    band: int | str = 1,
    resampling: Resampling = Resampling.cubic,
    rows: tuple[int, int] | None = None,
) -> RasterPair:
    """Read a reference / secondary pair on the reference grid.

    If the secondary's grid (CRS, transform or shape) differs from the reference's, it is warped onto the
    reference grid on the fly (``WarpedVRT``); reference pixels outside the secondary become NaN.

    Parameters
    ----------
    reference, secondary
        Georeferenced rasters of the same area.
    band
        1-based band index or band name (see :func:`read_band`) read from both files.
    resampling
        Kernel used when warping the secondary (cubic keeps sub-pixel detail better than bilinear).
    rows
        Only these reference rows ``(first, stop)`` (a strip of the pair, e.g. for a probe): the bands then
        have ``stop - first`` rows and their grid starts at row ``first``.

    Returns
    -------
    RasterPair

    Raises
    ------
    DataError
        Missing, corrupt (``CorruptRasterError``) or non-georeferenced (``NotGeoreferencedError``) input.
    NoOverlapError
        The footprints do not intersect, or the warped secondary has no valid pixel.
    """
    ref_path, sec_path = Path(reference), Path(secondary)
    with _open(ref_path) as rsrc, _open(sec_path) as ssrc:
        ref_grid, sec_grid = _grid_of(rsrc, ref_path), _grid_of(ssrc, sec_path)
        ref_band, sec_band = band_index(rsrc, band, ref_path), band_index(ssrc, band, sec_path)
        _check_overlap(ref_grid, sec_grid, ref_path, sec_path)
        reprojected = not sec_grid.same_as(ref_grid)
        if rows is not None:
            rows = (max(0, rows[0]), min(ref_grid.height, rows[1]))
        if reprojected:
            log.info("warping %s onto the grid of %s", sec_path, ref_path)
        # Both files at once: GDAL releases the GIL while it reads and decodes.
        with ThreadPoolExecutor(max_workers=2) as pool:
            ref_data = pool.submit(_read_float, rsrc, ref_band, ref_path, rows)
            sec_data = pool.submit(
                _read_on_grid, ssrc, sec_band, sec_path, ref_grid, resampling, reprojected, rows
            )
            ref = RasterBand(
                data=ref_data.result(),
                grid=ref_grid if rows is None else _strip_grid(ref_grid, rows),
                path=ref_path,
                band=ref_band,
                tags=dict(rsrc.tags()),
                source_dtype=rsrc.dtypes[ref_band - 1],
                source_nodata=rsrc.nodatavals[ref_band - 1],
            )
            data = sec_data.result()
        tags = dict(ssrc.tags())
        dtype, nodata = ssrc.dtypes[sec_band - 1], ssrc.nodatavals[sec_band - 1]
    if not np.isfinite(data[::64, ::64]).any() and not np.isfinite(data).any():  # a sample first: cheap
        raise NoOverlapError(
            f"{str(sec_path)!r} has no valid pixel on the grid of {str(ref.path)!r}; "
            "check that both rasters cover the same area and that nodata is set correctly"
        )
    sec = RasterBand(
        data=data,
        grid=ref.grid,
        path=sec_path,
        band=sec_band,
        tags=tags,
        source_dtype=dtype,
        source_nodata=nodata,
    )
    return RasterPair(reference=ref, secondary=sec, reprojected=reprojected)


def read_on_grid(
    path: str | os.PathLike[str],
    grid: GeoGrid,
    *,
    band: int | str = 1,
    resampling: Resampling = Resampling.cubic,
) -> NDArray[np.float32]:
    """One band of a raster on ``grid``: read as is when the grids agree, else warped onto it.

    Returns
    -------
    numpy.ndarray
        ``grid.shape`` float32, NaN where the file has no data or does not reach.

    Raises
    ------
    DataError
        Missing, corrupt or non-georeferenced file.
    NoOverlapError
        The raster has no valid pixel on ``grid``.
    """
    p = Path(path)
    with _open(p) as src:
        own = _grid_of(src, p)
        band = band_index(src, band, p)
        _check_overlap(grid, own, Path("the job grid"), p)
        data = _read_on_grid(src, band, p, grid, resampling, not own.same_as(grid))
    if not np.isfinite(data[::64, ::64]).any() and not np.isfinite(data).any():
        raise NoOverlapError(f"{str(p)!r} has no valid pixel on the job grid; check that it covers the area")
    return data


_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def window_vrt(
    path: str | os.PathLike[str],
    band: int | str,
    window: tuple[slice, slice],
    grid: GeoGrid,
    tags: dict[str, str] | None = None,
) -> str:
    """XML of a one-band GDAL VRT showing ``window`` (rows, cols) of band ``band`` of ``path`` as ``grid``.

    A few hundred bytes instead of a copy of the pixels: readers decode only the blocks of the window.
    ``grid`` must be the window's own grid (same CRS and pixel size, its origin at the window's corner).
    """
    p = Path(path).resolve()
    rows, cols = window
    with _open(p) as src:
        band = band_index(src, band, p)
        dtype = src.dtypes[band - 1]
        nodata = src.nodatavals[band - 1]
    t = grid.transform
    nodata_xml = "" if nodata is None else f"<NoDataValue>{nodata!r}</NoDataValue>"
    meta = "".join(f'<MDI key="{escape(str(k))}">{escape(str(v))}</MDI>' for k, v in (tags or {}).items())
    h, w = grid.shape
    return (
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">'
        f"<SRS>{escape(grid.crs.to_wkt())}</SRS>"
        f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"
        f"<Metadata>{meta}</Metadata>"
        f'<VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "Float32")}" band="1">{nodata_xml}'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(p))}</SourceFilename>'
        f"<SourceBand>{band}</SourceBand>"
        f'<SrcRect xOff="{cols.start}" yOff="{rows.start}" xSize="{w}" ySize="{h}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
        "</SimpleSource></VRTRasterBand></VRTDataset>\n"
    )


def fill_values(pair: RasterPair, nodata: float | None = None) -> tuple[float, ...]:
    """Pixel values the matcher should ignore in a pair read by :func:`read_pair`.

    Parameters
    ----------
    pair
        The pair; its bands are float32 with NaN where the files declare nodata.
    nodata
        A value to ignore given by the user (e.g. ``--nodata``): then only this one.

    Returns
    -------
    tuple of float
        ``(nodata,)`` when given; else 0 and the dtype maximum of integer sources without declared nodata
        (integer images often use them as undeclared fill); else empty.
    """
    if nodata is not None:
        return (float(nodata),)
    fills: set[float] = set()
    for band in (pair.reference, pair.secondary):
        dtype = np.dtype(band.source_dtype)
        if np.issubdtype(dtype, np.integer) and band.source_nodata is None:
            # Pixels were converted to float32, so the matcher no longer sees the integer fill defaults.
            fills.update((0.0, float(np.iinfo(dtype).max)))
    return tuple(sorted(fills))


def gdal_path(href: str) -> str:
    """Path GDAL opens for an asset href (``s3://`` and ``http(s)://`` go through /vsis3/ and /vsicurl/)."""
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return href.removeprefix("file://")
