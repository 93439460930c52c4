"""Offset products as xarray Datasets with ITS_LIVE-like names, ready for the NetCDF / COG / STAC writers.

Variables (dims ``("y", "x")``, one value per matching node, NaN = invalid):

``dx``, ``dy``
    Displacement in metres along +map x (east for UTM) and +map y (north for UTM), reference -> secondary.
``vx``, ``vy``, ``v``
    Velocity components and magnitude, m/yr (Julian year), only when both acquisition dates are known and
    differ.
``v_error``
    Velocity error estimate, m/yr (see :func:`offset_dataset`).
``quality``
    Matcher quality in [0, 1] (1 = best). ``reason``: reason code per node (int8, CF ``flag_values``).
``chip_size_height``, ``chip_size_width``
    Size of the chip that measured each node, m (int32, 0 = no value; ITS_LIVE's are uint16, which CF
    allows only from CF-1.9 while the products declare CF-1.8), when the matcher reports it.
``offset_error``
    The matcher's predicted 1-sigma error of each node's offset vector, m, when it predicts one (``ncc``):
    the per-node error that weights a series inversion (:mod:`geodeform.timeseries.uncertainty`).
``dx_unsmoothed``, ``dy_unsmoothed``, ``offset_error_unsmoothed``, ``smoothing_gain``
    When the matcher smoothed the field (``ncc`` with ``smoothing`` > 0): each node's own chip's
    displacement (m, as ``dx``/``dy``, with the same corrections) and its predicted 1-sigma vector error (m)
    before the smoothing, and ``smoothing_gain`` = ``offset_error / offset_error_unsmoothed`` (1): the share
    of a per-chip random error the smoothing leaves in the value. A series uses them to scale the
    matcher's systematic error (:func:`geodeform.timeseries.pair_sigma`'s ``gain``) and to take the
    unsmoothed values on still ground next to moving ice (:func:`geodeform.timeseries.margin_nodes`).
``mapping``
    CF grid-mapping variable (``crs_wkt``, ``spatial_ref``, ``GeoTransform``, CF projection attributes).
``img_pair_info``
    Scalar carrying the acquisition dates of both images as attributes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xarray as xr
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.transform import Affine

from geodeform import __version__
from geodeform.errors import InvalidInputError
from geodeform.io.dates import DAYS_PER_YEAR, AcquisitionDates
from geodeform.io.grid import GeoGrid, node_grid, pixel_offsets_to_map

__all__ = [
    "VELOCITY_LONG_NAMES",
    "OffsetField",
    "ProductSummary",
    "dataset_grid",
    "offset_dataset",
    "speed",
    "summarize_product",
    "timeseries_dataset",
]

_GRID_MAPPING = "mapping"
# Below this many valid samples a robust spread is meaningless.
_MIN_ERROR_SAMPLES = 10
# Normalised median absolute deviation: NMAD = 1.4826 * MAD estimates the std of Gaussian noise.
_NMAD = 1.4826


class OffsetField(Protocol):
    """What :func:`geodeform.offsets.match` returns (only these attributes are used)."""

    rows: NDArray[np.floating[Any]]
    cols: NDArray[np.floating[Any]]
    dx: NDArray[np.float32]
    dy: NDArray[np.float32]
    quality: NDArray[np.float32]
    reason: NDArray[np.uint8]


VELOCITY_LONG_NAMES = {
    "vx": "mean velocity along +x (east)",
    "vy": "mean velocity along +y (north)",
    "v": "mean velocity magnitude",
    "vx_error": "1-sigma error of vx",
    "vy_error": "1-sigma error of vy",
    "v_error": "velocity magnitude error (component errors projected on the flow direction)",
}
"""CF ``long_name`` of each variable of a mean-velocity product (composite or time-series store)."""


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mapping_attrs(grid: GeoGrid) -> dict[str, Any]:
    crs = ProjCRS.from_user_input(grid.crs.to_wkt())
    attrs: dict[str, Any] = {}
    try:
        attrs.update(crs.to_cf())
    except Exception:  # some CRSs have no CF form; crs_wkt below still defines them
        attrs["crs_wkt"] = crs.to_wkt()
    wkt = attrs.get("crs_wkt", crs.to_wkt())
    attrs["crs_wkt"] = wkt
    attrs["spatial_ref"] = wkt  # read by GDAL and by ITS_LIVE tools
    epsg = grid.crs.to_epsg()
    if epsg is not None:
        attrs["spatial_epsg"] = int(epsg)
    t = grid.transform
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    return attrs


def _nmad(values: NDArray[np.float64]) -> float:
    v = values[np.isfinite(values)]
    if v.size < _MIN_ERROR_SAMPLES:
        return float("nan")
    return float(_NMAD * np.median(np.abs(v - np.median(v))))


def _component_error(field: NDArray[np.float32], stable: NDArray[np.bool_] | None) -> float:
    f = field.astype(np.float64)
    if stable is not None:
        on_stable = _nmad(f[stable])
        if np.isfinite(on_stable):
            return on_stable
        # too few stable nodes with data (a cloudy pair): the neighbour noise below, rather than no error
    # Noise of neighbouring nodes, assuming the motion itself is smooth at the node spacing:
    # the difference of two nodes with independent errors has sqrt(2) times their std.
    diffs = np.concatenate([np.diff(f, axis=0).ravel(), np.diff(f, axis=1).ravel()])
    return _nmad(diffs) / float(np.sqrt(2.0))


def _var(data: NDArray[Any], long_name: str, units: str | None, **extra: Any) -> xr.Variable:
    attrs: dict[str, Any] = {"long_name": long_name, "grid_mapping": _GRID_MAPPING}
    if units is not None:
        attrs["units"] = units
    attrs.update(extra)
    return xr.Variable(("y", "x"), data, attrs)


def _global_attrs(title: str, **more: str) -> dict[str, Any]:
    """CF global attributes of a product: conventions, title, software, creation time and history, then
    ``more``."""
    now = _iso(datetime.now(timezone.utc))
    attrs: dict[str, Any] = {
        "Conventions": "CF-1.8",
        "title": title,
        "source": f"geodeform {__version__}",
        "date_created": now,
        "history": f"{now} {title} written by geodeform {__version__}",
    }
    attrs.update(more)
    return attrs


def _check_node_shapes(result: OffsetField, stable_mask: NDArray[np.bool_] | None, grid: GeoGrid) -> None:
    fields: dict[str, Any] = {
        "dx": result.dx,
        "dy": result.dy,
        "quality": result.quality,
        "reason": result.reason,
    }
    if stable_mask is not None:
        fields["stable_mask"] = stable_mask
    for name, values in fields.items():
        if np.shape(values) != grid.shape:
            raise InvalidInputError(
                f"{name} has shape {np.shape(values)} but there are {grid.shape} node rows x cols"
            )


def offset_dataset(
    result: OffsetField,
    image_grid: GeoGrid,
    *,
    dates: AcquisitionDates | None = None,
    reference: str | os.PathLike[str] | None = None,
    secondary: str | os.PathLike[str] | None = None,
    stable_mask: NDArray[np.bool_] | None = None,
    step: float | None = None,
    processing: Mapping[str, Any] | None = None,
    reason_codes: Mapping[int, str] | None = None,
) -> xr.Dataset:
    """Georeference an offset field and convert it to metres (and m/yr when dates are known).

    Parameters
    ----------
    result
        Matcher output: node centres ``rows``/``cols`` (0-based reference pixels), ``dx``/``dy`` in pixels
        (feature at (row, col) in the reference appears at (row + dy, col + dx) in the secondary),
        ``quality`` in [0, 1], ``reason`` codes.
    image_grid
        Grid of the reference image the matcher ran on.
    dates
        Acquisition dates. With a positive time span, ``vx``, ``vy``, ``v``, ``v_error`` are added.
    reference, secondary
        Input file names, recorded in ``img_pair_info``.
    stable_mask
        Optional boolean node mask of stable ground. Errors are then the NMAD of ``dx``/``dy`` on it
        (ITS_LIVE's stable-surface approach). Without it, the per-component error is the NMAD of the
        differences between neighbouring nodes divided by sqrt(2): a random-noise estimate that assumes the
        motion is smooth at the node spacing and misses systematic errors.
    step
        Node spacing in pixels, only needed for a single row/column of nodes.
    processing
        Matcher settings (method, chip size, ...) stored as ``geodeform_<key>`` global attributes.
    reason_codes
        Meaning of each ``reason`` code (e.g. ``{0: "OK", 1: "MASKED"}``), written as CF
        ``flag_values`` / ``flag_meanings``.

    Returns
    -------
    xarray.Dataset
        See the module docstring for the variables; x/y coordinates are the node centres in CRS units
        (only for north-up / rectilinear grids).

    Raises
    ------
    InvalidInputError
        Inconsistent shapes, irregular nodes, geographic CRS, or a secondary older than the reference.
    """
    grid = node_grid(image_grid, result.rows, result.cols, step=step)
    _check_node_shapes(result, stable_mask, grid)
    disp = pixel_offsets_to_map(result.dx, result.dy, image_grid.transform, crs=image_grid.crs)
    stable = None if stable_mask is None else np.asarray(stable_mask, dtype=bool)
    enough = stable is not None and int(np.isfinite(disp.east[stable]).sum()) >= _MIN_ERROR_SAMPLES
    err_method = "stable-ground NMAD" if enough else "neighbour-difference NMAD / sqrt(2)"

    variables: dict[str, xr.Variable] = {
        "dx": _var(
            disp.east,
            "displacement along +x (east), reference to secondary",
            "m",
            error=_component_error(disp.east, stable),
            error_description=err_method,
        ),
        "dy": _var(
            disp.north,
            "displacement along +y (north), reference to secondary",
            "m",
            error=_component_error(disp.north, stable),
            error_description=err_method,
        ),
    }
    pair_attrs: dict[str, Any] = {
        "reference_image": "" if reference is None else Path(reference).name,
        "secondary_image": "" if secondary is None else Path(secondary).name,
    }
    if dates is not None:
        dates.check_order()
        pair_attrs.update(_date_attrs(dates))
        if dates.dt_days > 0:
            variables.update(
                _velocities(
                    disp.east,
                    disp.north,
                    dates.dt_days,
                    stable,
                    err_method,
                    _node_error_m(result, image_grid),
                )
            )
        variables.update(_date_vars(dates))

    unit_range = np.array([0, 1], dtype=np.float32)
    quality = np.asarray(result.quality, dtype=np.float32)
    variables["quality"] = _var(quality, "matching quality (1 = best)", "1", valid_range=unit_range)
    variables["reason"] = _reason_var(np.asarray(result.reason, dtype=np.int8), reason_codes)
    variables.update(_chip_sizes(result, image_grid))
    if (node_error := _node_error_m(result, image_grid)) is not None:
        variables["offset_error"] = _var(
            (node_error * np.sqrt(2.0)).astype(np.float32),
            "matcher's predicted 1-sigma error of the offset vector at each node",
            "m",
        )
    variables.update(_unsmoothed(result, image_grid))
    variables[_GRID_MAPPING] = xr.Variable((), np.int32(0), _mapping_attrs(grid))
    variables["img_pair_info"] = xr.Variable((), np.int32(0), pair_attrs)

    coords = _xy_coords(grid) if grid.is_rectilinear else {}
    attrs = _global_attrs(
        "geodeform offset tracking product",
        sign_convention="dx,vx: + toward increasing map x (east); dy,vy: + toward increasing map y (north); "
        "displacement from the reference to the secondary image",
    )
    attrs["geodeform_pixel_m"] = _pixel_size(image_grid)
    for key, value in (processing or {}).items():
        attrs[f"geodeform_{key}"] = _attr_value(value)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _date_attrs(dates: AcquisitionDates) -> dict[str, Any]:
    return {
        "acquisition_date_img1": _iso(dates.reference),
        "acquisition_date_img2": _iso(dates.secondary),
        "date_center": _iso(dates.center),
        "date_dt": dates.dt_days,
    }


def _date_vars(dates: AcquisitionDates) -> dict[str, xr.Variable]:
    center = np.datetime64(dates.center.replace(tzinfo=None), "ns")
    return {
        "date_dt": xr.Variable(
            (), np.float64(dates.dt_days), {"long_name": "time between images", "units": "days"}
        ),
        "date_center": xr.Variable((), center, {"long_name": "midpoint of the two acquisitions"}),
    }


def _reason_var(reason: NDArray[np.int8], codes: Mapping[int, str] | None) -> xr.Variable:
    # int8 ("byte"), not uint8: unsigned types are CF only from CF-1.9, and the products declare CF-1.8
    flags: dict[str, Any] = {}
    if codes:
        values = sorted(codes)
        flags = {
            "flag_values": np.array(values, dtype=np.int8),
            "flag_meanings": " ".join(codes[c].replace(" ", "_") for c in values),
        }
    return _var(reason, "why a node is invalid (matcher reason code)", None, **flags)


def _attr_value(value: Any) -> Any:
    """A NetCDF-storable attribute: numbers and strings as is, bools as 0/1, the rest as text."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value)
    return str(value)


def _chip_sizes(result: Any, grid: GeoGrid) -> dict[str, xr.Variable]:
    """ITS_LIVE's ``chip_size_height``/``chip_size_width``: the chip behind each value, m (int32, 0 = none:
    no unsigned types under CF-1.8), when the matcher reports it (``chip_height``/``chip_width``, px)."""
    t = grid.transform
    out = {}
    for name, attr, pixel, axis in (
        ("chip_size_height", "chip_height", float(np.hypot(t.d, t.e)), "y"),
        ("chip_size_width", "chip_width", float(np.hypot(t.a, t.b)), "x"),
    ):
        px = getattr(result, attr, None)
        if px is None:
            continue
        size = np.where(np.isfinite(px), np.rint(np.asarray(px, np.float64) * pixel), 0.0)
        out[name] = _var(
            np.clip(size, 0, np.iinfo(np.int32).max).astype(np.int32),
            f"{name.split('_')[-1]} of the matching chip (template) behind each value",
            "m",
            _FillValue=np.int32(0),
            chip_size_coordinates=f"image projection geometry: {name.split('_')[-1]} = {axis}",
            **{f"{axis}_pixel_size": pixel},
        )
    return out


def _pixel_size(grid: GeoGrid) -> float:
    """The side of a square of a pixel's area, map units (m): the pixel size of a rotated or sheared grid."""
    t = grid.transform
    return float(np.sqrt(abs(t.a * t.e - t.b * t.d)))


def _node_error_m(result: Any, grid: GeoGrid) -> NDArray[np.float64] | None:
    """Per-component 1-sigma error (map units) from the matcher's per-node vector error in pixels, if any."""
    err = getattr(result, "error", None)
    if err is None or not np.isfinite(err).any():
        return None
    return np.asarray(err, np.float64) / np.sqrt(2.0) * _pixel_size(grid)


def _unsmoothed(result: Any, grid: GeoGrid) -> dict[str, xr.Variable]:
    """Each node's own chip's displacement and error before the matcher's smoothing, and the smoothing's
    gain, when the matcher reports them (``smoothing_dx``/``smoothing_dy``/``error_unsmoothed``, px)."""
    own_error = getattr(result, "error_unsmoothed", None)
    if own_error is None or any(getattr(result, k, None) is None for k in ("smoothing_dx", "smoothing_dy")):
        return {}
    # an OffsetField's own-chip values and gain (dx - smoothing_dx, error / error_unsmoothed)
    own = pixel_offsets_to_map(result.dx_unsmoothed, result.dy_unsmoothed, grid.transform, crs=grid.crs)
    pixel = _pixel_size(grid)
    return {
        "dx_unsmoothed": _var(
            own.east, "displacement along +x (east) of the node's own chip, before smoothing", "m"
        ),
        "dy_unsmoothed": _var(
            own.north, "displacement along +y (north) of the node's own chip, before smoothing", "m"
        ),
        "offset_error_unsmoothed": _var(
            (np.asarray(own_error, np.float64) * pixel).astype(np.float32),
            "matcher's predicted 1-sigma error of the node's own chip's offset vector, before smoothing",
            "m",
        ),
        "smoothing_gain": _var(
            result.smoothing_gain,
            "offset_error over offset_error_unsmoothed: share of a per-chip error left by the smoothing",
            "1",
        ),
    }


def _velocities(
    east: NDArray[np.float32],
    north: NDArray[np.float32],
    dt_days: float,
    stable: NDArray[np.bool_] | None,
    err_method: str,
    node_error_m: NDArray[np.float64] | None = None,
) -> dict[str, xr.Variable]:
    per_year = DAYS_PER_YEAR / dt_days
    vx = (east * per_year).astype(np.float32)
    vy = (north * per_year).astype(np.float32)
    v = np.hypot(vx, vy).astype(np.float32)
    ex, ey = _component_error(vx, stable), _component_error(vy, stable)
    # ITS_LIVE's v_error: component errors projected on the flow direction.
    with np.errstate(invalid="ignore", divide="ignore"):
        along = np.sqrt((ex * vx) ** 2 + (ey * vy) ** 2) / v
    v_error = np.where(v > 0, along, np.hypot(ex, ey) / np.sqrt(2.0)).astype(np.float32)
    if node_error_m is not None:
        # the matcher's predicted per-node error (texture, noise, decorrelation) where it exceeds the scene's
        v_error = np.fmax(v_error, (node_error_m * per_year).astype(np.float32))
        err_method = f"larger of {err_method} and the matcher's predicted per-node error"
    v_error[~np.isfinite(v)] = np.nan
    return {
        "vx": _var(vx, "velocity along +x (east)", "m/yr", error=ex, error_description=err_method),
        "vy": _var(vy, "velocity along +y (north)", "m/yr", error=ey, error_description=err_method),
        "v": _var(v, "velocity magnitude", "m/yr"),
        "v_error": _var(v_error, "velocity magnitude error", "m/yr", error_description=err_method),
    }


def _xy_coords(grid: GeoGrid) -> dict[str, xr.Variable]:
    crs = grid.crs
    if crs.is_projected:
        units = "m" if crs.linear_units_factor[1] == 1.0 else crs.linear_units
        x_attrs = {
            "standard_name": "projection_x_coordinate",
            "long_name": "x coordinate of projection",
            "units": units,
            "axis": "X",
        }
        y_attrs = {
            "standard_name": "projection_y_coordinate",
            "long_name": "y coordinate of projection",
            "units": units,
            "axis": "Y",
        }
    else:
        x_attrs = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
        y_attrs = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
    return {
        "x": xr.Variable("x", grid.x_coords(), x_attrs),
        "y": xr.Variable("y", grid.y_coords(), y_attrs),
    }


def dataset_grid(ds: xr.Dataset) -> GeoGrid:
    """Grid of a product Dataset, from its ``mapping`` variable (``crs_wkt`` / ``GeoTransform``).

    Raises
    ------
    InvalidInputError
        If the Dataset has no usable ``mapping`` variable.
    """
    if _GRID_MAPPING not in ds.variables:
        raise InvalidInputError(
            "the dataset has no 'mapping' grid-mapping variable; build it with geodeform.io.offset_dataset()"
        )
    attrs = ds[_GRID_MAPPING].attrs
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    gt = attrs.get("GeoTransform")
    if not wkt or not gt:
        raise InvalidInputError("the 'mapping' variable needs crs_wkt and GeoTransform attributes")
    c, a, b, f, d, e = (float(v) for v in str(gt).split())
    shape = (int(ds.sizes["y"]), int(ds.sizes["x"]))
    return GeoGrid(crs=CRS.from_wkt(wkt), transform=Affine(a, b, c, d, e, f), shape=shape)


def composite_dataset(
    composite: Any, grid: GeoGrid, *, units: str = "m/yr", fill_error: float | None = None
) -> xr.Dataset:
    """CF-1.8 Dataset of a mean-velocity composite (:func:`geodeform.timeseries.velocity_composite`).

    Parameters
    ----------
    composite
        A ``VelocityComposite``: ``vx``, ``vy``, ``v``, ``vx_error``, ``vy_error``, ``v_error``, ``count``,
        ``start``, ``end``. Its velocities must already be in map units per year with +x east and +y north,
        i.e. the series was inverted from the ``dx``/``dy`` (m) of offset products, not from pixels.
    grid
        Grid of the composite's pixels (e.g. :func:`dataset_grid` of one of the offset products).
    units
        Velocity units written in the attributes.
    fill_error
        1-sigma error of one pair's velocity component (``units``), e.g. the median stable-ground NMAD of
        the pairs: valid pixels whose inversion gave no error (too few pairs to measure a scatter) get
        ``fill_error / sqrt(count)`` instead of NaN, so every valid pixel has a ``v_error``. None: left NaN.

    Raises
    ------
    InvalidInputError
        When the arrays do not have the grid's shape.
    """
    fields = {
        k: np.asarray(getattr(composite, k)) for k in ("vx", "vy", "v", "vx_error", "vy_error", "v_error")
    }
    for name, values in fields.items():
        if values.shape != grid.shape:
            raise InvalidInputError(f"composite.{name} has shape {values.shape}, the grid is {grid.shape}")
    filled = np.zeros(grid.shape, dtype=bool)
    if fill_error is not None and np.isfinite(fill_error):
        valid = np.isfinite(fields["v"])
        n = np.maximum(np.asarray(composite.count, np.float64), 1.0)
        for k in ("vx_error", "vy_error", "v_error"):
            gap = valid & ~np.isfinite(fields[k])
            filled |= gap
            fields[k] = np.where(gap, fill_error / np.sqrt(n), fields[k])
    variables = {k: _var(v.astype(np.float32), VELOCITY_LONG_NAMES[k], units) for k, v in fields.items()}
    if filled.any():
        note = (
            f"{int(filled.sum())} pixels without an inversion scatter take one pair's error "
            f"({fill_error:.3g} {units}) / sqrt(pairs used)"
        )
        for k in ("vx_error", "vy_error", "v_error"):
            variables[k].attrs["comment"] = note
    variables["count"] = _var(np.asarray(composite.count, np.int32), "image pairs used", "1")
    variables[_GRID_MAPPING] = xr.Variable((), np.int32(0), _mapping_attrs(grid))
    start = np.datetime64(composite.start, "D")
    end = np.datetime64(composite.end, "D")
    attrs = _global_attrs(
        "geodeform velocity composite",
        time_coverage_start=str(start),
        time_coverage_end=str(end),
        sign_convention="vx: + toward increasing map x (east); vy: + toward increasing map y (north)",
    )
    coords = _xy_coords(grid) if grid.is_rectilinear else {}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


_SERIES_ATTRS = (
    "geodeform_method",
    "geodeform_chip_size",
    "geodeform_step",
    "geodeform_band",
    "geodeform_prefilter",
    "geodeform_preset",
    "geodeform_pixel_m",
    "geodeform_stable_ground",
)


def timeseries_dataset(series: Any, template: xr.Dataset) -> xr.Dataset:
    """CF-1.8 Dataset of a displacement time series on the node grid of an offset product.

    Parameters
    ----------
    series
        A :class:`geodeform.timeseries.TimeSeriesResult` inverted from the ``dx``/``dy`` (m) of offset
        products: ``dates``, ``dx``, ``dy``, ``sigma_dx``, ``sigma_dy`` of shape (time, y, x).
    template
        One of those offset products: its coordinates and grid mapping are copied, and the settings every
        pair shares (method, chip, step, band, preset, pixel size), not its own (search range, dates, key).

    Returns
    -------
    xarray.Dataset
        ``east``, ``north`` (cumulative displacement since the first date, m, +x east, +y north) and their
        1-sigma errors ``east_error``, ``north_error`` (m), dims ``(time, y, x)``.
    """
    time = xr.Variable(
        "time",
        series.dates.astype("datetime64[ns]"),
        {"standard_name": "time", "long_name": "acquisition date", "axis": "T"},
    )
    coords = {"time": time, "y": template["y"], "x": template["x"]}
    attrs = _global_attrs(
        "geodeform displacement time series",
        sign_convention="east: + toward increasing map x; north: + toward increasing map y; "
        "cumulative displacement since the first date",
    )
    # the settings every pair shares; per-pair ones (search range, key, dates, masks...) stay in the pairs
    attrs.update({k: v for k, v in template.attrs.items() if k in _SERIES_ATTRS})
    gm = template["dx"].attrs.get("grid_mapping", "spatial_ref")
    names = {
        "east": (series.dx, "cumulative displacement along +x (east)"),
        "north": (series.dy, "cumulative displacement along +y (north)"),
        "east_error": (series.sigma_dx, "1-sigma error of east"),
        "north_error": (series.sigma_dy, "1-sigma error of north"),
    }
    dims = ("time", "y", "x")
    data = {
        k: (dims, v, {"units": "m", "long_name": text, "grid_mapping": gm}) for k, (v, text) in names.items()
    }
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds[gm] = template[gm]
    return ds


def speed(ds: xr.Dataset) -> NDArray[np.float64] | None:
    """Speed (m/yr) of a velocity product: its ``v``, else ``hypot(vx, vy)``; None when it has neither."""
    if "v" in ds.variables:
        return np.asarray(ds["v"].values).astype(np.float64)
    if "vx" in ds.variables and "vy" in ds.variables:
        return np.hypot(ds["vx"].values, ds["vy"].values).astype(np.float64)
    return None


@dataclass(frozen=True)
class ProductSummary:
    """Headline numbers of an offset product (what ``geodeform offsets`` prints).

    Attributes
    ----------
    nodes
        Node rows and columns.
    valid_fraction
        Share of nodes with finite ``dx`` and ``dy``.
    median_dx, median_dy
        Median displacement of the valid nodes, m (+x east, +y north); NaN without a valid node.
    median_v
        Median speed of the valid nodes, m/yr; NaN without a valid node or without velocities. Noise makes
        every speed positive, so on ground that does not move this is the noise level, not a motion: see
        ``median_vx`` / ``median_vy``.
    has_velocity
        Whether the product holds velocities (both dates known and different).
    reference_date, secondary_date
        Acquisition times (ISO 8601, UTC) when known, else None.
    dt_days
        Secondary minus reference, days, when the dates are known, else None.
    median_vx, median_vy
        Median velocity components of the valid nodes, m/yr (+x east, +y north); NaN without velocities.
    pixel_m
        Pixel size of the matched images, metres (NaN when the product does not record it).
    reasons
        Nodes per reason code name (``{"OK": 3000, "CLOUD": 120, ...}``), empty without a ``reason`` variable.
    degraded
        Why the product is less reliable than usual (``geodeform_degraded``), or empty.
    """

    nodes: tuple[int, int]
    valid_fraction: float
    median_dx: float
    median_dy: float
    median_v: float
    has_velocity: bool
    reference_date: str | None = None
    secondary_date: str | None = None
    dt_days: float | None = None
    median_vx: float = float("nan")
    median_vy: float = float("nan")
    pixel_m: float = float("nan")
    reasons: Mapping[str, int] = dataclasses.field(default_factory=dict)
    degraded: str = ""

    @property
    def px_per_year(self) -> float:
        """Speed (m/yr) that one pixel of offset means over this pair (NaN without dates or pixel size)."""
        if self.dt_days is None or not self.dt_days or not np.isfinite(self.pixel_m):
            return float("nan")
        return float(self.pixel_m * DAYS_PER_YEAR / abs(self.dt_days))


def summarize_product(ds: xr.Dataset) -> ProductSummary:
    """The :class:`ProductSummary` of an offset product (:func:`offset_dataset`)."""
    valid = np.isfinite(ds["dx"].values) & np.isfinite(ds["dy"].values)

    def median(name: str) -> float:
        if name not in ds or not valid.any():
            return float("nan")
        with np.errstate(all="ignore"):
            return float(np.nanmedian(ds[name].values))

    dated = "date_dt" in ds
    info = ds["img_pair_info"].attrs if dated else {}
    reasons: dict[str, int] = {}
    if "reason" in ds.variables:
        names = str(ds["reason"].attrs.get("flag_meanings", "")).split()
        codes = [int(c) for c in np.atleast_1d(ds["reason"].attrs.get("flag_values", []))]
        lookup = dict(zip(codes, names, strict=False))
        values, counts = np.unique(ds["reason"].values, return_counts=True)
        reasons = {lookup.get(int(v), str(int(v))): int(n) for v, n in zip(values, counts, strict=True)}
    return ProductSummary(
        nodes=(int(ds.sizes["y"]), int(ds.sizes["x"])),
        valid_fraction=float(valid.mean()),
        median_dx=median("dx"),
        median_dy=median("dy"),
        median_v=median("v"),
        has_velocity="v" in ds,
        reference_date=str(info["acquisition_date_img1"]) if dated else None,
        secondary_date=str(info["acquisition_date_img2"]) if dated else None,
        dt_days=float(ds["date_dt"]) if dated else None,
        median_vx=median("vx"),
        median_vy=median("vy"),
        pixel_m=float(ds.attrs.get("geodeform_pixel_m", np.nan)),
        reasons=reasons,
        degraded=str(ds.attrs.get("geodeform_degraded", "")),
    )
