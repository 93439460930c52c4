"""Georeferenced grids: the image grid of a raster, the node grid of an offset field, pixel -> metre offsets.

Conventions
-----------
Pixel coordinates are 0-based (row, col) with the **centre** of pixel (r, c) at integer (r, c); the affine
``transform`` maps the pixel *corner* coordinates (col, row) to map (x, y) (GDAL / rasterio convention), so
the centre of pixel (r, c) is at ``transform * (c + 0.5, r + 0.5)``.

Offsets: a feature at (row, col) in the reference appears at (row + dy, col + dx) in the secondary. In map
units the displacement is ``[dE, dN] = A @ [dx, dy]`` with ``A`` the 2x2 linear part of the transform,
``+E`` = increasing map x (east for UTM), ``+N`` = increasing map y (north for UTM). On a north-up 10 m grid
(``A = [[10, 0], [0, -10]]``) a +1 row shift is -10 m north, a +1 column shift is +10 m east.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from rasterio.crs import CRS
from rasterio.transform import Affine

from geodeform.errors import InvalidInputError

__all__ = ["GeoGrid", "MapOffsets", "apply_transform", "node_grid", "pixel_offsets_to_map"]

# Spacing of node centres may carry float noise from the matcher; beyond this it is not a regular grid.
_SPACING_RTOL = 1e-6


def apply_transform(transform: Affine, cols: ArrayLike, rows: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """Map (x, y) of pixel-corner coordinates (cols, rows), without Affine operators (their API changed).

    Returns
    -------
    tuple of ndarray
        ``(x, y)`` in CRS units, shaped like the broadcast of ``cols`` and ``rows``.
    """
    c = np.asarray(cols, dtype=np.float64)
    r = np.asarray(rows, dtype=np.float64)
    t = transform
    return (t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f)


@dataclass(frozen=True)
class GeoGrid:
    """A raster grid on Earth.

    Attributes
    ----------
    crs
        Coordinate reference system of the map coordinates.
    transform
        Affine transform from pixel-corner (col, row) to map (x, y), in CRS units (metres for UTM).
    shape
        (height, width) in pixels.
    """

    crs: CRS
    transform: Affine
    shape: tuple[int, int]

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def is_rectilinear(self) -> bool:
        """True when rows run along map y and columns along map x (no rotation / shear)."""
        return bool(self.transform.b == 0 and self.transform.d == 0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the four outer pixel corners, in CRS units."""
        h, w = self.shape
        xs, ys = apply_transform(self.transform, [0, w, 0, w], [0, 0, h, h])
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))

    def x_coords(self) -> NDArray[np.float64]:
        """Map x of the pixel-column centres (rectilinear grids only), CRS units."""
        self._require_rectilinear()
        t = self.transform
        return np.asarray(t.c + t.a * (np.arange(self.width) + 0.5), dtype=np.float64)

    def y_coords(self) -> NDArray[np.float64]:
        """Map y of the pixel-row centres (rectilinear grids only), CRS units."""
        self._require_rectilinear()
        t = self.transform
        return np.asarray(t.f + t.e * (np.arange(self.height) + 0.5), dtype=np.float64)

    def same_as(self, other: GeoGrid, *, atol: float = 1e-9) -> bool:
        """True when both grids have the same CRS, shape and (almost) the same transform."""
        return (
            self.shape == other.shape
            and self.crs == other.crs
            and self.transform.almost_equals(other.transform, precision=atol)
        )

    def _require_rectilinear(self) -> None:
        if not self.is_rectilinear:
            raise InvalidInputError(
                f"the grid transform {tuple(self.transform)[:6]} is rotated or sheared, so it has no 1-D x/y "
                "coordinates; write a GeoTIFF (--format cog) or resample onto a north-up grid first"
            )


@dataclass(frozen=True)
class MapOffsets:
    """Offsets in map units.

    Attributes
    ----------
    east, north
        Displacement along +map x (east for UTM) and +map y (north for UTM), metres, NaN where invalid.
    """

    east: NDArray[np.float32]
    north: NDArray[np.float32]


def _regular_spacing(centres: NDArray[np.float64], name: str, step: float | None) -> float:
    if centres.ndim != 1 or centres.size == 0:
        raise InvalidInputError(f"node {name} must be a non-empty 1-D array of pixel centres")
    if centres.size == 1:
        if step is None:
            raise InvalidInputError(
                f"only one node {name[:-1]}: pass step= to give the node spacing in pixels"
            )
        return float(step)
    diffs = np.diff(centres)
    spacing = float(diffs.mean())
    if spacing <= 0 or not np.allclose(diffs, spacing, rtol=_SPACING_RTOL, atol=1e-9):
        raise InvalidInputError(f"node {name} must be increasing and evenly spaced to form a grid")
    return spacing


def node_grid(image: GeoGrid, rows: ArrayLike, cols: ArrayLike, *, step: float | None = None) -> GeoGrid:
    """Georeference the node grid of an offset field.

    Parameters
    ----------
    image
        Grid of the reference image the nodes were computed on.
    rows, cols
        1-D node centres in 0-based reference pixel coordinates (pixel centre = integer index), evenly
        spaced and increasing.
    step
        Node spacing in pixels; only needed when there is a single node row or column.

    Returns
    -------
    GeoGrid
        Grid with one cell per node, each cell centred on its node and ``spacing`` pixels wide, in the
        image's CRS (so a rotated image gives a rotated node grid).
    """
    r = np.asarray(rows, dtype=np.float64)
    c = np.asarray(cols, dtype=np.float64)
    row_step = _regular_spacing(r, "rows", step)
    col_step = _regular_spacing(c, "cols", step)
    # Corner of node cell (0, 0) in image pixel-corner coordinates: node centre + 0.5 - half a cell.
    x0, y0 = apply_transform(image.transform, c[0] + 0.5 - col_step / 2, r[0] + 0.5 - row_step / 2)
    t = image.transform
    transform = Affine(t.a * col_step, t.b * row_step, float(x0), t.d * col_step, t.e * row_step, float(y0))
    return GeoGrid(crs=image.crs, transform=transform, shape=(r.size, c.size))


def _metres_per_unit(crs: CRS | None) -> float:
    if crs is None:
        return 1.0
    if crs.is_geographic:
        raise InvalidInputError(
            f"the grid CRS {crs.to_string()} is geographic (degrees), so offsets cannot be given in metres; "
            "reproject the rasters to a projected CRS (e.g. their UTM zone) first"
        )
    factor = crs.linear_units_factor[1]
    return float(factor)


def pixel_offsets_to_map(
    dx: ArrayLike, dy: ArrayLike, transform: Affine, *, crs: CRS | None = None
) -> MapOffsets:
    """Convert pixel offsets to map displacements in metres.

    Parameters
    ----------
    dx, dy
        Pixel offsets (same shape): a feature at (row, col) in the reference appears at
        (row + dy, col + dx) in the secondary. NaN = invalid.
    transform
        Affine transform of the *image* grid (pixel size), any rotation / shear allowed: only its 2x2
        linear part ``[[a, b], [d, e]]`` is used, ``dE = a*dx + b*dy``, ``dN = d*dx + e*dy``.
    crs
        CRS of the transform; when given, map units are converted to metres (e.g. US survey feet) and a
        geographic CRS is rejected. When None, map units are taken as metres.

    Returns
    -------
    MapOffsets
        ``east`` (+ = increasing map x) and ``north`` (+ = increasing map y), metres, float32. On a north-up
        10 m grid, ``dy = +1`` gives ``north = -10``.
    """
    dxa = np.asarray(dx, dtype=np.float64)
    dya = np.asarray(dy, dtype=np.float64)
    if dxa.shape != dya.shape:
        raise InvalidInputError(f"dx and dy shapes differ: {dxa.shape} vs {dya.shape}")
    k = _metres_per_unit(crs)
    east = k * (transform.a * dxa + transform.b * dya)
    north = k * (transform.d * dxa + transform.e * dya)
    return MapOffsets(east=east.astype(np.float32), north=north.astype(np.float32))
