"""Writers for offset products: CF-1.8 NetCDF, Cloud-Optimized GeoTIFF, a STAC item per output, and chunked
Zarr stores of time series (written row block by row block, so their size never has to fit in memory).

Every writer is atomic (temporary file in the destination folder, then ``os.replace``): a failure never
leaves a partial file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dask
import h5netcdf
import numpy as np
import pystac
import rasterio
import rasterio.shutil
import xarray as xr
from numpy.typing import NDArray
from pystac.extensions.projection import ProjectionExtension
from rasterio.io import MemoryFile
from rasterio.warp import transform as warp_transform

from geodeform.conventions import ProductFormat
from geodeform.errors import InvalidInputError
from geodeform.io.atomic import DiskFullError, atomic_output
from geodeform.io.grid import GeoGrid, apply_transform
from geodeform.io.product import VELOCITY_LONG_NAMES, dataset_grid

__all__ = [
    "COG_BANDS",
    "COMPOSITE_VARIABLES",
    "PRODUCT_SUFFIXES",
    "SERIES_VARIABLES",
    "SeriesStore",
    "product_format",
    "series_netcdf",
    "update_netcdf_attrs",
    "write_catalog",
    "write_cog",
    "write_netcdf",
    "write_product",
    "write_stac_item",
]

COG_BANDS = ("dx", "dy", "v", "quality")
"""Bands of the GeoTIFF product, in order (``v`` only when the dates are known)."""

PRODUCT_SUFFIXES: dict[ProductFormat, tuple[str, ...]] = {"netcdf": (".nc", ".nc4"), "cog": (".tif", ".tiff")}
"""File suffixes of each product format, the usual one first."""

_FLOAT_ENCODING = {"dtype": "float32", "_FillValue": np.float32(np.nan), "zlib": True, "complevel": 4}
_DAYS_ENCODING = {"units": "days since 1970-01-01 00:00:00", "calendar": "standard", "dtype": "float64"}
"""Dates in every NetCDF product: float64 days (CF-1.8 has no 64-bit integer type)."""

_EDGE_POINTS = 6  # per footprint edge, so that curved edges in lon/lat stay close to the true outline


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a product Dataset as CF-1.8 NetCDF-4 (h5netcdf), atomically.

    Variables on the ``(y, x)`` grid (with any leading dimension, e.g. ``time``) are compressed, floats with
    NaN as ``_FillValue``; coordinates get no fill value and times are float64 days since 1970-01-01
    (the IOOS compliance checker's CF test passes on every product).

    Parameters
    ----------
    ds
        Dataset from :func:`geodeform.io.offset_dataset`, :func:`~geodeform.io.composite_dataset` or
        :func:`~geodeform.io.timeseries_dataset` (north-up / rectilinear grid, x/y coordinates).
    path
        Destination ``.nc`` file; replaced if it exists.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        If the grid is rotated (no 1-D x/y coordinates): write a GeoTIFF instead.
    """
    dataset_grid(ds)  # fails early on a Dataset without a usable grid mapping
    if "x" not in ds.coords or "y" not in ds.coords:
        raise InvalidInputError(
            "the product grid is rotated or sheared, which CF x/y coordinates cannot describe; "
            "use --format cog (GeoTIFF keeps any affine transform)"
        )
    encoding: dict[str, dict[str, Any]] = {}
    days = _DAYS_ENCODING
    for name, var in ds.variables.items():
        gridded = var.dims[-2:] == ("y", "x")
        if gridded and np.issubdtype(var.dtype, np.floating):
            encoding[str(name)] = dict(_FLOAT_ENCODING)
        elif gridded:
            encoding[str(name)] = {"zlib": True, "complevel": 4}
        elif name in ("x", "y"):
            encoding[str(name)] = {"_FillValue": None}  # CF: no fill value on coordinate variables
        elif np.issubdtype(var.dtype, np.datetime64):
            # float64 days, not int64 (CF-1.8 has no 64-bit integers); no fill value on a coordinate
            encoding[str(name)] = {**days, "_FillValue": None} if name in ds.dims else dict(days)
    out = Path(path)
    # Encoded in memory (a product is small: its nodes), written with one plain write: a full disk then
    # fails in that write, cleanly, never inside the HDF5 library with its file half-flushed.
    # (synchronous scheduler: on a Dask worker xarray would otherwise ask the scheduler for a write lock
    # named after the in-memory target, which it does not know)
    with dask.config.set(scheduler="synchronous"):
        payload = ds.to_netcdf(engine="h5netcdf", encoding=encoding)
    with atomic_output(out) as tmp:
        tmp.write_bytes(bytes(payload))
    return out


def update_netcdf_attrs(path: str | os.PathLike[str], attrs: Mapping[str, str]) -> Path:
    """Set global attributes of a NetCDF-4 product written by :func:`write_netcdf`, atomically, leaving its
    variables byte for byte as they are.

    The file is copied next to itself, the attributes are set in the copy through h5netcdf (as
    :func:`write_netcdf` sets them through xarray) and the copy replaces the file: no decoding and encoding
    of the variables, which is what a rewrite of the whole Dataset costs.
    """
    out = Path(path)
    with atomic_output(out) as tmp:
        shutil.copyfile(out, tmp)
        with h5netcdf.File(tmp, "r+") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
    return out


def _band_tags(ds: xr.Dataset) -> dict[str, str]:
    tags = {k: str(v) for k, v in ds.attrs.items()}
    if "img_pair_info" in ds.variables:
        tags.update({k.upper(): str(v) for k, v in ds["img_pair_info"].attrs.items()})
    return tags


def write_cog(ds: xr.Dataset, path: str | os.PathLike[str], *, bands: tuple[str, ...] = COG_BANDS) -> Path:
    """Write a product Dataset as a multi-band Cloud-Optimized GeoTIFF, atomically.

    Bands (float32, nodata NaN, DEFLATE, 256 px tiles, averaged overviews while the image is larger than a
    tile): ``dx``, ``dy`` (m, +east / +north), ``v`` (m/yr, when dates are known), ``quality`` (0..1).
    Each band carries its name as description and its unit; acquisition dates go in dataset tags.

    Parameters
    ----------
    ds
        Dataset from :func:`geodeform.io.offset_dataset` (any affine grid, rotated included).
    path
        Destination ``.tif`` file; replaced if it exists.
    bands
        Variables written as bands, in order, when present (e.g. ``("vx", "vy", "v", "v_error")`` for a
        velocity composite).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    grid = dataset_grid(ds)
    names = [n for n in bands if n in ds.variables]
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(names),
        "dtype": "float32",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": np.nan,
    }
    out = Path(path)
    with MemoryFile() as mem, mem.open(**profile) as staging:
        for i, name in enumerate(names, start=1):
            staging.write(ds[name].values.astype(np.float32), i)
            staging.set_band_description(i, name)
            staging.set_band_unit(i, str(ds[name].attrs.get("units", "")))
            staging.update_tags(i, long_name=str(ds[name].attrs.get("long_name", name)))
        staging.update_tags(**_band_tags(ds))
        with atomic_output(out) as tmp:
            rasterio.shutil.copy(
                staging,
                tmp,
                driver="COG",
                compress="DEFLATE",
                predictor="YES",
                blocksize=256,
                overviews="IGNORE_EXISTING",
                overview_resampling="AVERAGE",
            )
    return out


def _footprint_lonlat(grid: GeoGrid) -> list[tuple[float, float]]:
    h, w = grid.shape
    t = np.linspace(0.0, 1.0, _EDGE_POINTS)[:-1]
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    xs, ys = apply_transform(grid.transform, cols, rows)
    lons, lats = warp_transform(grid.crs, "EPSG:4326", list(xs), list(ys))
    ring = [(float(x), float(y)) for x, y in zip(lons, lats, strict=True)]
    return [*ring, ring[0]]


def _item_times(ds: xr.Dataset) -> tuple[datetime | None, dict[str, Any]]:
    info = ds["img_pair_info"].attrs if "img_pair_info" in ds.variables else {}
    if "acquisition_date_img1" not in info:
        # Acquisition time unknown: STAC requires a datetime, the processing time is the honest fallback.
        return datetime.now(timezone.utc), {"geodeform:acquisition_dates_known": False}
    start = datetime.fromisoformat(str(info["acquisition_date_img1"]).replace("Z", "+00:00"))
    end = datetime.fromisoformat(str(info["acquisition_date_img2"]).replace("Z", "+00:00"))
    center = datetime.fromisoformat(str(info["date_center"]).replace("Z", "+00:00"))
    return center, {
        "start_datetime": pystac.utils.datetime_to_str(start),
        "end_datetime": pystac.utils.datetime_to_str(end),
        "geodeform:date_dt_days": float(info["date_dt"]),
    }


def _quality_props(ds: xr.Dataset) -> dict[str, Any]:
    """Item properties saying how far the product can be trusted: degraded (why), co-registration source."""
    props: dict[str, Any] = {}
    degraded = str(ds.attrs.get("geodeform_degraded", ""))
    if "geodeform_degraded" in ds.attrs:
        props["geodeform:degraded"] = bool(degraded)
        if degraded:
            props["geodeform:degraded_reason"] = degraded
    record = ds.attrs.get("geodeform_coregistration")
    if record:
        try:
            props["geodeform:coregistration"] = json.loads(str(record)).get("source")
        except ValueError:
            pass
    if str(ds.attrs.get("geodeform_status", "")) == "failed":  # set aside by the job: not used
        props["geodeform:status"] = "failed"
        props["geodeform:failed_reason"] = str(ds.attrs.get("geodeform_failed", ""))
    return props


def write_stac_item(
    ds: xr.Dataset,
    data_path: str | os.PathLike[str],
    item_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a STAC item describing one product file, atomically.

    The item has the lon/lat footprint of the node grid, ``datetime`` = midpoint of the acquisitions with
    ``start_datetime`` / ``end_datetime`` = the two dates, ``geodeform:degraded`` (and
    ``geodeform:degraded_reason``) and ``geodeform:coregistration`` for pair products (and
    ``geodeform:status`` = ``failed`` with ``geodeform:failed_reason`` for a product the job set aside), the
    projection extension (``proj:code`` / EPSG, ``proj:transform``, ``proj:shape``, ``proj:bbox``) and one
    ``data`` asset whose href is relative to the item file.

    Parameters
    ----------
    ds
        The Dataset that was written to ``data_path``.
    data_path
        The product file (``.nc`` or ``.tif``); its suffix chooses the media type.
    item_path
        Where to write the item; default ``<data_path without suffix>.stac.json``.

    Returns
    -------
    pathlib.Path
        The item path.
    """
    data = Path(data_path)
    item_file = Path(item_path) if item_path is not None else data.with_suffix(".stac.json")
    grid = dataset_grid(ds)
    ring = _footprint_lonlat(grid)
    lons, lats = zip(*ring, strict=True)
    when, time_props = _item_times(ds)
    item = pystac.Item(
        id=data.stem,
        geometry={"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        bbox=[min(lons), min(lats), max(lons), max(lats)],
        datetime=when,
        properties={
            **time_props,
            **_quality_props(ds),
            "created": pystac.utils.datetime_to_str(datetime.now(timezone.utc)),
        },
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = grid.crs.to_epsg()
    if epsg is not None:
        proj.epsg = epsg
    else:
        proj.wkt2 = grid.crs.to_wkt()
    proj.transform = list(grid.transform)[:6]
    proj.shape = [grid.height, grid.width]
    proj.bbox = list(grid.bounds)
    is_netcdf = data.suffix.lower() in (".nc", ".nc4", ".netcdf")
    if is_netcdf:
        variables = [str(n) for n, v in ds.data_vars.items() if v.dims == ("y", "x")]
    else:
        variables = [b for b in COG_BANDS if b in ds.variables]
    item.add_asset(
        "data",
        pystac.Asset(
            href=str(data.resolve()),
            media_type=pystac.MediaType.NETCDF if is_netcdf else pystac.MediaType.COG,
            roles=["data"],
            title="offsets / velocities",
            description="variables: " + ", ".join(variables),
        ),
    )
    item.set_self_href(str(item_file.resolve()))
    item.make_asset_hrefs_relative()
    payload = json.dumps(item.to_dict(include_self_link=False), indent=2)
    with atomic_output(item_file) as tmp:
        tmp.write_text(payload + "\n", encoding="utf-8")
    return item_file


def product_format(path: str | os.PathLike[str], fmt: ProductFormat | None = None) -> ProductFormat:
    """The format a product file is written in: ``fmt``, else the one its suffix names, else NetCDF.

    Raises
    ------
    InvalidInputError
        ``fmt`` contradicts the suffix (e.g. ``x.nc`` with ``"cog"``): the message gives the right name.
    """
    out = Path(path)
    by_suffix = next((f for f, sfx in PRODUCT_SUFFIXES.items() if out.suffix.lower() in sfx), None)
    if fmt is None:
        return by_suffix or "netcdf"
    if fmt not in PRODUCT_SUFFIXES:
        raise InvalidInputError(f"product format {fmt!r} unknown; use one of {list(PRODUCT_SUFFIXES)}")
    if by_suffix is not None and by_suffix != fmt:
        wanted = out.with_suffix(PRODUCT_SUFFIXES[fmt][0]).name
        raise InvalidInputError(
            f"-o {out.name} has a {out.suffix} suffix but --format is {fmt}; use -o {wanted} or drop --format"
        )
    return fmt


def write_product(ds: xr.Dataset, path: str | os.PathLike[str], fmt: ProductFormat) -> Path:
    """Write a product Dataset in ``fmt`` (:func:`write_netcdf` or :func:`write_cog`), atomically."""
    return write_netcdf(ds, path) if fmt == "netcdf" else write_cog(ds, path)


def write_catalog(folder: str | os.PathLike[str], name: str, items: list[Path]) -> Path:
    """Write ``<folder>/catalog.json``, a STAC catalogue of ``items`` (files inside ``folder``), atomically.

    Parameters
    ----------
    folder
        Root of the catalogue; item links are relative to it.
    name
        Catalogue id (e.g. the job name).
    items
        STAC item files (:func:`write_stac_item`) inside ``folder``.
    """
    root = Path(folder)
    links = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"},
        {"rel": "self", "href": "./catalog.json", "type": "application/json"},
    ]
    links += [
        {"rel": "item", "href": "./" + p.relative_to(root).as_posix(), "type": "application/geo+json"}
        for p in items
    ]
    doc = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": name,
        "description": f"geodeform products of job {name}",
        "links": links,
    }
    path = root / "catalog.json"
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
    return path


# Zarr time-series stores -----------------------------------------------------------------------------------

SERIES_VARIABLES = ("east", "north", "east_error", "north_error")
"""Cumulative displacement series of a store, dims ``(time, y, x)``, metres (+x east, +y north)."""

COMPOSITE_VARIABLES = ("vx", "vy", "v", "vx_error", "vy_error", "v_error", "count")
"""Mean-velocity composite of a store, dims ``(y, x)``, m/yr (``count``: pairs used)."""

_SERIES_NAMES = {
    "east": "cumulative displacement along +x (east)",
    "north": "cumulative displacement along +y (north)",
    "east_error": "1-sigma error of east",
    "north_error": "1-sigma error of north",
    **VELOCITY_LONG_NAMES,
    "count": "image pairs used",
}


class SeriesStore:
    """A chunked Zarr store of a displacement time series and its velocity composite, written by row blocks.

    ITS_LIVE serves its datacubes the same way: one Zarr store, chunked in space, readable lazily by
    ``xarray.open_zarr``. Variables: :data:`SERIES_VARIABLES` ``(time, y, x)`` in metres and
    :data:`COMPOSITE_VARIABLES` ``(y, x)`` in m/yr, CF attributes and the ``mapping`` grid-mapping variable of
    the pair products. The store is built in a temporary folder next to ``path`` and moved onto it by
    :meth:`close`: a run stopped half-way leaves no store that looks finished.

    Parameters
    ----------
    path
        Destination folder (``timeseries.zarr``); replaced by :meth:`close` if it exists.
    template
        One pair product (:func:`geodeform.io.offset_dataset`): coordinates, grid mapping and attributes.
    dates
        ``(ndates,)`` dates of the series.
    chunk_rows
        Node rows per chunk: every :meth:`write` covers whole chunks (the last may be shorter).
    """

    def __init__(
        self, path: str | os.PathLike[str], template: xr.Dataset, dates: Any, *, chunk_rows: int
    ) -> None:
        import dask.array as da

        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise InvalidInputError(f"output folder {str(self.path.parent)!r} does not exist")
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        ny, nx = int(template.sizes["y"]), int(template.sizes["x"])
        times = np.asarray(dates, dtype="datetime64[ns]")
        gm = template["dx"].attrs.get("grid_mapping", "mapping")
        rows = max(1, min(chunk_rows, ny))
        cols = min(nx, 512)
        variables: dict[str, Any] = {}
        encoding: dict[str, Any] = {}
        for name in (*SERIES_VARIABLES, *COMPOSITE_VARIABLES):
            series = name in SERIES_VARIABLES
            dims = ("time", "y", "x") if series else ("y", "x")
            shape = (times.size, ny, nx) if series else (ny, nx)
            chunks = (times.size, rows, cols) if series else (rows, cols)
            dtype = np.int32 if name == "count" else np.float32
            units = "m" if series else ("1" if name == "count" else "m/yr")
            attrs = {"units": units, "long_name": _SERIES_NAMES[name], "grid_mapping": gm}
            variables[name] = (dims, da.zeros(shape, dtype=dtype, chunks=chunks), attrs)
            encoding[name] = {"chunks": chunks}
            if dtype == np.float32:
                encoding[name]["_FillValue"] = np.float32(np.nan)
        attrs = {k: v for k, v in template.attrs.items() if not str(k).startswith("geodeform_pair")}
        attrs.pop("geodeform_coverage_before_filters", None)
        attrs.update(
            title="geodeform displacement time series and mean velocity",
            sign_convention="east, vx: + toward increasing map x; north, vy: + toward increasing map y; "
            "east/north: cumulative displacement since the first date",
        )
        coords = {"time": ("time", times, {"standard_name": "time"}), "y": template["y"], "x": template["x"]}
        ds = xr.Dataset(variables, coords=coords, attrs=attrs)
        ds[gm] = template[gm]
        ds.to_zarr(self._tmp, compute=False, encoding=encoding, zarr_format=2, consolidated=True)
        self._gm = gm
        self.chunk_rows = rows

    def write(self, rows: slice, values: Mapping[str, NDArray[Any]]) -> None:
        """Write node rows ``rows`` of every variable (``values[name]`` shaped like that block)."""
        data = {
            name: (("time", "y", "x") if name in SERIES_VARIABLES else ("y", "x"), np.asarray(v))
            for name, v in values.items()
        }
        xr.Dataset(data).to_zarr(self._tmp, region={"y": rows}, zarr_format=2)

    def close(self) -> Path:
        """Move the finished store onto ``path`` (an older store there is removed first)."""
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.{os.getpid()}.old")
            os.replace(self.path, old)
            shutil.rmtree(old)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the unfinished store."""
        shutil.rmtree(self._tmp, ignore_errors=True)


def series_netcdf(store: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copy the time series of a :class:`SeriesStore` into a CF-1.8 NetCDF file, chunk by chunk, atomically.

    The file holds :data:`SERIES_VARIABLES` (``time, y, x``) and the grid mapping, compressed, with the
    store's chunks (memory bounded by one chunk, whatever the number of dates).
    """
    out = Path(path)
    size = sum(f.stat().st_size for f in Path(store).rglob("*") if f.is_file())
    free = shutil.disk_usage(out.parent).free
    if free < size:  # checked before: HDF5 does not fail cleanly when the disk fills up under it
        raise DiskFullError(
            f"writing {str(out)!r} needs about {size / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free: free "
            f"some space and rerun (the Zarr store {store} is complete)"
        )
    with xr.open_zarr(store, consolidated=True) as ds:
        gm = ds["east"].attrs.get("grid_mapping", "mapping")
        sub = ds[[*SERIES_VARIABLES, gm]]
        encoding: dict[str, Any] = {}
        for name in SERIES_VARIABLES:
            chunks = tuple(c[0] for c in sub[name].chunks) if sub[name].chunks else None
            encoding[name] = {**_FLOAT_ENCODING, "chunksizes": chunks}
        for name in ("x", "y"):
            encoding[name] = {"_FillValue": None}
        # the store keeps int64 days; CF-1.8 has no 64-bit integers: float64 days, as the other products
        encoding["time"] = {**_DAYS_ENCODING, "_FillValue": None}
        with atomic_output(out) as tmp:
            sub.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return out
