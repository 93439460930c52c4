"""Known displacement fields: glacier flow, landslide, fault rupture, constant shift.

A *field* is a function ``field(rows, cols) -> (dx, dy)`` giving the displacement in pixels at reference
pixel coordinates (the centre of pixel (r, c) is at (r, c)). Sign convention (the one of the whole package):
a feature at (row, col) of the reference appears at (row + dy, col + dx) of the secondary, so +dx points
toward increasing columns (east on a north-up image) and +dy toward increasing rows (south on a north-up
image).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from geodeform.errors import InvalidInputError
from geodeform.quake.synthetic import RuptureModel

__all__ = [
    "Field",
    "add",
    "constant",
    "fault",
    "glacier",
    "glacier_field",
    "landslide",
    "scale",
    "series_field",
]

F64 = npt.NDArray[np.float64]
Field = Callable[[F64, F64], tuple[F64, F64]]
"""``field(rows, cols) -> (dx, dy)``: displacement in pixels at reference (row, col)."""


def glacier_field(rows: npt.ArrayLike, cols: npt.ArrayLike, size: int, peak_px: float) -> tuple[F64, F64]:
    """A curved glacier flowing along the columns, at reference (row, col).

    Parameters
    ----------
    rows, cols
        Reference pixel coordinates (broadcast together).
    size
        Side of the square image, pixels: the glacier's centre line meanders around row ``size / 2``.
    peak_px
        Displacement on the centre line, pixels (Gaussian cross-profile of width ``0.15 size``).

    Returns
    -------
    tuple of ndarray
        (dx, dy) in pixels; +dx toward increasing columns, +dy toward increasing rows.
    """
    r = np.asarray(rows, float)
    c = np.asarray(cols, float)
    centre = 0.5 * size + 0.1 * size * np.sin(2 * np.pi * c / size)
    slope = 0.1 * size * 2 * np.pi / size * np.cos(2 * np.pi * c / size)
    mag = peak_px * np.exp(-0.5 * ((r - centre) / (0.15 * size)) ** 2)
    norm = np.sqrt(1 + slope**2)
    return mag / norm, mag * slope / norm


def series_field(
    rows: npt.ArrayLike, cols: npt.ArrayLike, size: int, peak: float, cutoff: float = 0.03
) -> tuple[F64, F64]:
    """:func:`glacier_field` with the tails below ``cutoff`` x ``peak`` set to zero (still ice-free ground).

    Same units and signs as :func:`glacier_field` (``peak`` in pixels, or pixels per day for a velocity).
    """
    dx, dy = glacier_field(rows, cols, size, peak)
    mag = np.hypot(dx, dy)
    scale_ = np.where(
        mag > cutoff * peak, (mag - cutoff * peak) / (1 - cutoff) / np.maximum(mag, 1e-300), 0.0
    )
    return dx * scale_, dy * scale_


def glacier(size: int, peak_px: float, *, still_ground: bool = False) -> Field:
    """The glacier of :func:`glacier_field` as a field on a ``size`` x ``size`` image.

    Parameters
    ----------
    size
        Image side, pixels.
    peak_px
        Displacement on the centre line, pixels.
    still_ground
        If True, the tails below 3 % of the peak are zero (:func:`series_field`): ground off the glacier
        does not move, which co-registration on stable ground needs.
    """
    if still_ground:
        return lambda rows, cols: series_field(rows, cols, size, peak_px)
    return lambda rows, cols: glacier_field(rows, cols, size, peak_px)


def landslide(
    centre: tuple[float, float], radius: float, peak_px: float, *, azimuth_deg: float = 90.0
) -> Field:
    """A landslide body moving as one block with a smooth edge.

    Parameters
    ----------
    centre
        (row, col) of the body's centre, pixels.
    radius
        Radius of the body, pixels: full motion inside ``0.5 radius``, none beyond ``1.5 radius``.
    peak_px
        Displacement of the body, pixels.
    azimuth_deg
        Direction of motion, degrees clockwise from north on a north-up image (90 = east = +dx,
        180 = south = +dy).

    Returns
    -------
    Field
        (dx, dy) in pixels at reference (row, col).
    """
    if radius <= 0:
        raise InvalidInputError(f"landslide radius must be > 0 px, got {radius}")
    az = np.deg2rad(azimuth_deg)
    ux, uy = np.sin(az), -np.cos(az)
    r0, c0 = centre

    def field(rows: F64, cols: F64) -> tuple[F64, F64]:
        d = np.hypot(np.asarray(rows, float) - r0, np.asarray(cols, float) - c0) / radius
        mag = peak_px * np.clip(1.5 - d, 0.0, 1.0)
        return mag * ux, mag * uy

    return field


def fault(
    shape: tuple[int, int],
    *,
    pixel_size: float = 10.0,
    slip_m: tuple[float, float] = (2.0, 5.0),
    opening_m: float = 0.5,
    depth_m: float = 8000.0,
) -> Field:
    """A curved right-lateral strike-slip rupture crossing the image from top to bottom.

    The model is :class:`geodeform.quake.synthetic.RuptureModel` (a screw dislocation slipping from the
    surface down to ``depth_m``): each side moves by half the slip at the trace, decaying away from it.

    Parameters
    ----------
    shape
        (rows, cols) of the image.
    pixel_size
        Pixel size, metres (converts the slip to pixels).
    slip_m
        Smallest and largest right-lateral slip along strike, metres.
    opening_m
        Amplitude of the fault-normal offset, metres (+ opening).
    depth_m
        Depth of the slipping patch, metres.

    Returns
    -------
    Field
        (dx, dy) in pixels at reference (row, col).
    """
    model = RuptureModel(
        tuple(shape), pixel_size=pixel_size, slip_range=slip_m, opening=opening_m, depth=depth_m
    )

    def field(rows: F64, cols: F64) -> tuple[F64, F64]:
        r, c = np.broadcast_arrays(np.asarray(rows, float), np.asarray(cols, float))
        return model.truth(r, c)

    return field


def constant(dx: float, dy: float) -> Field:
    """The same shift (dx, dy) pixels everywhere (a mis-registration, or a rigid block)."""
    return lambda rows, cols: (
        np.full(np.broadcast(rows, cols).shape, float(dx)),
        np.full(np.broadcast(rows, cols).shape, float(dy)),
    )


def scale(field: Field, factor: float) -> Field:
    """``factor`` x ``field`` (e.g. a velocity field times a time span)."""

    def scaled(rows: F64, cols: F64) -> tuple[F64, F64]:
        dx, dy = field(rows, cols)
        return factor * dx, factor * dy

    return scaled


def add(*fields: Field) -> Field:
    """The sum of the fields (e.g. a glacier plus a landslide on its margin)."""

    def total(rows: F64, cols: F64) -> tuple[F64, F64]:
        parts = [f(rows, cols) for f in fields]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    return total
