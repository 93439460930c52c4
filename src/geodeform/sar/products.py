"""Geocoded SAR offset products: range, azimuth and line-of-sight metres with their geometry, on a map grid.

Variables (dims ``("y", "x")``, float32, NaN = no data):

``range``
    Offset along the image range axis, metres of that axis (ground range for a GRD, slant range for an SLC),
    + away from the satellite (increasing range).
``azimuth``
    Offset along the flight direction, metres, + along the flight.
``los``
    Displacement projected on the ground-to-satellite unit vector, metres, + **towards the satellite**.
``los_error``, ``azimuth_error``
    1-σ of ``los`` / ``azimuth`` from the matcher's predicted error, metres (NaN when it has none).
``incidence``, ``heading``
    Incidence angle (degrees from the vertical) and local flight direction (degrees clockwise from north).
``los_east``, ``los_north``, ``los_up``
    Components of the ground-to-satellite unit vector ``[−sin θ cos h, sin θ sin h, cos θ]``.
``quality``, ``reason``
    Matcher quality (0..1; the coherence for coherence tracking) and reason code (nearest node).

With :func:`geodeform.decompose.solve_enu`, ``los`` is the value of a ``range`` observation with
``heading`` / ``incidence`` as its geometry; ``azimuth`` that of an ``azimuth`` observation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike, NDArray

from geodeform.decompose import los_vector
from geodeform.errors import InvalidInputError
from geodeform.io import AcquisitionDates, GeoGrid, offset_dataset, write_cog, write_netcdf
from geodeform.offsets import Reason, reason_codes
from geodeform.sar.geocode import GcpMethod, map_grid, radar_coordinates, sample_nodes
from geodeform.sar.geometry import RadarOffsets
from geodeform.sar.reader import S1Image

__all__ = ["SAR_BANDS", "sar_dataset", "write_sar_product"]

SAR_BANDS: tuple[str, ...] = (
    "range",
    "azimuth",
    "los",
    "los_error",
    "incidence",
    "heading",
    "los_east",
    "los_north",
    "los_up",
    "quality",
)
"""Bands of the GeoTIFF product, in order."""

_ATTRS: dict[str, tuple[str, str]] = {
    "range": (
        "offset along the range axis (ground range for GRD, slant range for SLC), + away from the satellite",
        "m",
    ),
    "azimuth": ("offset along the flight direction, + along the flight", "m"),
    "los": ("displacement along the ground-to-satellite line of sight, + towards the satellite", "m"),
    "los_error": ("1-sigma of los from the matcher's predicted error", "m"),
    "azimuth_error": ("1-sigma of azimuth from the matcher's predicted error", "m"),
    "incidence": ("incidence angle from the vertical", "degree"),
    "heading": ("flight direction, clockwise from north", "degree"),
    "los_east": ("east component of the ground-to-satellite unit vector", "1"),
    "los_north": ("north component of the ground-to-satellite unit vector", "1"),
    "los_up": ("up component of the ground-to-satellite unit vector", "1"),
}


@dataclass
class _OnGrid:
    """A field already on the map grid (one node per cell), in the shape io.offset_dataset reads."""

    rows: NDArray[np.floating[Any]]
    cols: NDArray[np.floating[Any]]
    dx: NDArray[np.float32]
    dy: NDArray[np.float32]
    quality: NDArray[np.float32]
    reason: NDArray[np.uint8]


def sar_dataset(
    offsets: RadarOffsets,
    image: S1Image,
    *,
    grid: GeoGrid | None = None,
    resolution: float | None = None,
    dem: ArrayLike | str | os.PathLike[str] | None = None,
    method: GcpMethod = "tps",
    dates: AcquisitionDates | None = None,
    secondary: S1Image | None = None,
) -> xr.Dataset:
    """Geocode radar offsets onto a map grid as a CF product Dataset (see the module docstring).

    Parameters
    ----------
    offsets
        From :func:`geodeform.sar.radar_offsets`.
    image
        The reference image the offsets were measured on (GCPs, annotation).
    grid
        Map grid; default a UTM grid over the image at ``resolution``.
    resolution
        Cell size in metres when ``grid`` is not given.
    dem, method
        See :func:`geodeform.sar.geocode.radar_coordinates`.
    dates
        Acquisition dates, recorded in ``img_pair_info``.
    secondary
        The secondary image, recorded in ``img_pair_info``.

    Returns
    -------
    xarray.Dataset
        Ready for :func:`write_sar_product`.
    """
    if grid is None:
        if resolution is None:
            raise InvalidInputError("sar_dataset: give grid= or resolution= (metres) for the map grid")
        grid = map_grid(image, resolution)
    coords = radar_coordinates(image, grid, dem=dem, method=method)
    nr, nc = offsets.rows, offsets.cols

    def geo(values: ArrayLike, order: int = 1) -> NDArray[np.float32]:
        return sample_nodes(values, nr, nc, coords, order=order).astype(np.float32)  # type: ignore[arg-type]

    reason = geo(offsets.reason, order=0)
    outside = ~np.isfinite(reason)
    reason_u8 = np.where(outside, Reason.OUTSIDE, np.nan_to_num(reason)).astype(np.uint8)
    h, w = grid.shape
    base = _OnGrid(
        rows=np.arange(h, dtype=np.float64),
        cols=np.arange(w, dtype=np.float64),
        dx=np.full(grid.shape, np.nan, np.float32),
        dy=np.full(grid.shape, np.nan, np.float32),
        quality=np.nan_to_num(geo(offsets.quality)).astype(np.float32),
        reason=reason_u8,
    )
    ds = offset_dataset(
        base,
        grid,
        dates=dates,
        reference=image.path,
        secondary=None if secondary is None else secondary.path,
        step=1.0,
        reason_codes=reason_codes(),
    )
    ds = ds.drop_vars([v for v in ("dx", "dy", "vx", "vy", "v", "v_error") if v in ds.variables])
    inc = geo(offsets.incidence)
    head = geo(offsets.heading)
    unit = np.where(np.isfinite(inc)[..., None], los_vector(np.nan_to_num(head), np.nan_to_num(inc)), np.nan)
    fields = {
        "range": geo(offsets.range),
        "azimuth": geo(offsets.azimuth),
        "los": geo(offsets.los),
        "los_error": geo(offsets.los_error),
        "azimuth_error": geo(offsets.error_azimuth),
        "incidence": inc,
        "heading": head,
        "los_east": unit[..., 0].astype(np.float32),
        "los_north": unit[..., 1].astype(np.float32),
        "los_up": unit[..., 2].astype(np.float32),
    }
    for name, values in fields.items():
        long_name, units = _ATTRS[name]
        ds[name] = xr.Variable(
            ("y", "x"), values, {"long_name": long_name, "units": units, "grid_mapping": "mapping"}
        )
    ds.attrs.update(_global_attrs(image, offsets, coords.terrain_corrected, method))
    return ds


def _global_attrs(image: S1Image, offsets: RadarOffsets, terrain: bool, method: str) -> dict[str, Any]:
    ann = image.annotation
    return {
        "title": "geodeform SAR offset tracking product",
        "sign_convention": (
            "los: + towards the satellite (ground-to-satellite unit vector [-sin(inc) cos(head), "
            "sin(inc) sin(head), cos(inc)], right-looking); range: + away from the satellite along the image "
            "range axis; azimuth: + along the flight direction; heading clockwise from north"
        ),
        "sar_mission": image.mission,
        "sar_mode": image.mode,
        "sar_polarisation": image.polarisation,
        "sar_relative_orbit": -1 if image.relative_orbit is None else int(image.relative_orbit),
        "sar_pass": "" if ann is None else ann.pass_direction,
        "sar_range_projection": offsets.projection,
        "geocoding": f"GDAL GCP transformer ({method})"
        + (", terrain-corrected with a DEM" if terrain else ""),
    }


def write_sar_product(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a :func:`sar_dataset` as NetCDF (``.nc``) or a Cloud-Optimized GeoTIFF (``.tif``), atomically.

    The GeoTIFF holds the bands :data:`SAR_BANDS`, in order, each named by its description.

    Raises
    ------
    InvalidInputError
        Another file suffix.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix in (".nc", ".nc4"):
        return write_netcdf(ds, out)
    if suffix in (".tif", ".tiff"):
        return write_cog(ds, out, bands=SAR_BANDS)
    raise InvalidInputError(f"{out}: unknown product format; use a .nc (NetCDF) or .tif (COG) file name")
