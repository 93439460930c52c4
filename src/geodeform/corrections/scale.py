"""One pixel of displacement in the unit of a map: the scale of the filters' thresholds, which are in pixels.

A threshold of 0.1 px means 0.1 on pixel offsets, 1.5 m on a displacement map of 15 m pixels and 0.0047
m/day on a velocity map of 15 m pixels over 32 days. The scale is taken, in this order, from ``pixel=`` (the
caller knows it), from the map itself when it says (an :class:`xarray.DataArray` in pixels, or a geodeform
pair product through :func:`product_pixel`), or estimated from the map's static scatter when the caller asks
for it (``pixel="scatter"``, :func:`pixel_scale`). It is never guessed silently: a plain array without
``pixel=`` is refused with :class:`~geodeform.errors.UnknownPixelSizeError`. (An estimate from the scatter
shrinks with the scatter: on clean SAR pairs it made the filters' floors several times tighter than a pixel
and removed good nodes.)
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from geodeform.conventions import DAYS_PER_YEAR
from geodeform.corrections.coregistration import dominant_offset
from geodeform.errors import InvalidInputError, NoDataError, UnknownPixelSizeError

__all__ = ["Pixel", "PixelScale", "pixel_scale", "product_pixel", "resolve_pixel"]

PixelScale = float | Literal["scatter"] | None
"""``pixel=`` of the filters: a number (one pixel in the unit of the maps), ``"scatter"`` (estimated from
the static terrain's scatter, :func:`pixel_scale`), or None (from the maps' own metadata, else refused)."""

# One pixel of a map of unknown unit, in robust sigmas of its static terrain: sub-pixel matchers scatter by
# about an eighth of a pixel there (GLAFT's Kaskawulsh map: sigma 0.055 m/day for 15 m pixels over 32 days,
# i.e. 0.47 m/day per pixel; geodeform's ncc on real Sentinel-2 pairs: 0.05-0.15 px).
_PIXEL_PER_SIGMA = 8.0


class Pixel(NamedTuple):
    """One pixel of displacement in the unit of the maps (``value``) and where it came from (``source``:
    ``"given"``, ``"units"``: the maps are in pixels, or ``"scatter"``: estimated by choice)."""

    value: float
    source: Literal["given", "units", "scatter"]


_PIXEL_UNITS = {"px", "pixel", "pixels"}
_PER_YEAR = {"m/yr", "m yr-1", "m a-1", "m/a", "m/year"}
_PER_DAY = {"m/day", "m/d", "m d-1", "m day-1"}


def pixel_scale(dx: ArrayLike, dy: ArrayLike) -> float:
    """Estimate one pixel of displacement in the unit of a map from its static terrain's scatter.

    Estimated as 8 sigmas of the static terrain's scatter: sigma from the distances of the nodes to the
    dominant offset (:func:`geodeform.corrections.dominant_offset`, assuming static terrain holds at least a
    fifth of the nodes). It scales with the map, so a map in m/day and the same map in m/yr get thresholds
    in the same proportion; but it is an estimate that follows the map's noise (a clean map gets a small
    "pixel"). Use it only by choice (``pixel="scatter"``) when the pixel size or the time span is unknown.

    Raises
    ------
    NoDataError
        Fewer than 10 valid nodes, or a map without any spread.
    """
    dom = dominant_offset(dx, dy)
    if not dom.sigma > 0:
        raise NoDataError("dx/dy: the static nodes have no spread; give pixel= to filter this map")
    return _PIXEL_PER_SIGMA * dom.sigma


def _units(values: Any) -> str | None:
    attrs = getattr(values, "attrs", None)
    return None if not isinstance(attrs, dict) or "units" not in attrs else str(attrs["units"]).strip()


def resolve_pixel(dx: ArrayLike, dy: ArrayLike, pixel: PixelScale) -> Pixel:
    """One pixel of displacement in the unit of ``dx``/``dy`` and where it came from.

    Parameters
    ----------
    dx, dy
        The maps (numpy arrays, or :class:`xarray.DataArray` with a ``units`` attribute).
    pixel
        See :data:`PixelScale`.

    Returns
    -------
    Pixel
        The scale (> 0) and its source.

    Raises
    ------
    UnknownPixelSizeError
        ``pixel`` is None and the maps do not say their pixel size.
    InvalidInputError
        ``pixel`` is not a positive number or ``"scatter"``.
    """
    if pixel is None:
        units = {_units(dx), _units(dy)}
        if len(units) == 1 and units <= _PIXEL_UNITS:
            return Pixel(1.0, "units")
        said = "" if units == {None} else f" (units {sorted(str(u) for u in units)})"
        raise UnknownPixelSizeError(
            f"dx/dy{said}: the size of one pixel in the unit of the maps is not known, and the filters' "
            "thresholds are in pixels. Give pixel=: 1 for pixel offsets (geodeform.offsets.match), the pixel "
            "size for displacements in metres, pixel size / time span for velocities (15 m over 32 days: "
            "15 / 32 m/day); for a geodeform pair product, pixel=product_pixel(ds, 'vx'); or, by choice, "
            "pixel='scatter' to estimate it from the map's static terrain"
        )
    if isinstance(pixel, str):
        if pixel != "scatter":
            raise InvalidInputError(f"pixel: a number > 0, 'scatter' or None, got {pixel!r}")
        return Pixel(pixel_scale(dx, dy), "scatter")
    value = float(pixel)
    if not value > 0:
        raise InvalidInputError(f"pixel must be > 0 (one pixel in the unit of the maps), got {pixel!r}")
    return Pixel(value, "given")


def product_pixel(ds: xr.Dataset, variable: str) -> float:
    """One pixel of displacement in the unit of ``ds[variable]``, from a geodeform pair product's metadata.

    Parameters
    ----------
    ds
        A pair product (:func:`geodeform.io.offset_dataset`, or one read back from its NetCDF): its pixel size
        (attribute ``geodeform_pixel_m``, m), the variable's ``units`` and, for velocities, the time between
        the images (``date_dt``, days).
    variable
        ``dx``/``dy`` (m: the pixel size), ``vx``/``vy``/``v`` (m/yr: pixel size / span in years) or a
        variable in pixels (1).

    Raises
    ------
    UnknownPixelSizeError
        The product does not say its pixel size, the variable's unit is not one of those, or a velocity has
        no single time span (a composite or a time series): give ``pixel=`` yourself.
    """
    if variable not in ds.variables:
        raise InvalidInputError(f"variable {variable!r} is not in the dataset (has {sorted(ds.data_vars)})")
    units = _units(ds[variable]) or ""
    if units in _PIXEL_UNITS:
        return 1.0
    size = ds.attrs.get("geodeform_pixel_m")
    if size is None or not float(size) > 0:
        raise UnknownPixelSizeError(
            f"{variable}: the dataset has no pixel size (attribute geodeform_pixel_m of a geodeform pair "
            "product); give pixel= yourself"
        )
    if units == "m":
        return float(size)
    dt = ds["date_dt"] if "date_dt" in ds.variables else ds.attrs.get("date_dt")
    span = float(np.asarray(dt)) if dt is not None and np.asarray(dt).size == 1 else float("nan")
    if not span > 0:
        raise UnknownPixelSizeError(
            f"{variable} ({units}): one pixel of a velocity needs the pair's time span (date_dt), which this "
            "dataset does not have as a single value (a composite or a series?); give pixel= yourself"
        )
    if units in _PER_YEAR:
        return float(size) * DAYS_PER_YEAR / span
    if units in _PER_DAY:
        return float(size) / span
    raise UnknownPixelSizeError(f"{variable}: unit {units!r} not known here; give pixel= yourself")
