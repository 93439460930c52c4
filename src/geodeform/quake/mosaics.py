"""Mosaic of displacement fields of several tiles onto one grid, also across UTM zones.

Each tile (east/north displacement in metres along the axes of its own projected CRS) is resampled onto
the target grid (bilinear) and its **vectors are turned into the target CRS's axes**: between two UTM zones
the grid north of one is rotated from the other's by the difference of their meridian convergences (about
3.6° across a zone boundary at 37° N), so reprojecting the two components as scalars would leave a 6 %
cross-talk between them. The rotation (and the small change of scale) is the Jacobian of the source →
target projection at every node, :func:`reprojection_jacobian`.

Tiles then get one constant bias each (east, north) so that they agree in their overlaps: the median
difference of every overlapping pair is an observation of ``b_i - b_j``, solved by least squares with the
area-weighted mean bias of each group of connected tiles held at zero (or one reference tile held fixed).
Finally overlaps are blended with weights that ramp from 0 at a tile's edge to 1 at ``feather`` inside it
(times ``1/σ²`` when every tile carries a 1-σ map), so no seam is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio import windows
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject, transform_bounds
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geodeform.errors import InvalidInputError
from geodeform.io import GeoGrid, apply_transform, dataset_grid
from geodeform.quake.errors import EmptyFieldError

__all__ = [
    "DisplacementTile",
    "Mosaic",
    "TileOverlap",
    "mosaic",
    "mosaic_grid",
    "reprojection_jacobian",
    "utm_crs",
]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DisplacementTile:
    """A displacement field on a georeferenced grid.

    Attributes
    ----------
    east, north
        (h, w) displacement along +x and +y of ``crs`` (east / north for UTM), metres; NaN = no data.
    crs
        Projected CRS of the grid.
    transform
        Affine transform of the grid (pixel corners, GDAL convention).
    sigma
        Optional (h, w) 1-σ of the displacement, metres (blending weights ``1/σ²``).
    name
        Label used in logs and in :attr:`Mosaic.biases`.
    """

    east: npt.NDArray[np.floating[Any]]
    north: npt.NDArray[np.floating[Any]]
    crs: CRS
    transform: Affine
    sigma: npt.NDArray[np.floating[Any]] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        e, n = np.asarray(self.east), np.asarray(self.north)
        if e.ndim != 2 or e.shape != n.shape:
            raise InvalidInputError(
                f"tile {self.name!r}: east and north must be 2-D arrays of one shape, got {e.shape}, "
                f"{n.shape}"
            )
        if self.sigma is not None and np.shape(self.sigma) != e.shape:
            raise InvalidInputError(
                f"tile {self.name!r}: sigma has shape {np.shape(self.sigma)}, not {e.shape}"
            )
        crs = CRS.from_user_input(self.crs)
        if not crs.is_projected:
            raise InvalidInputError(
                f"tile {self.name!r} is in {crs.to_string()}, not a projected CRS: displacements in "
                "metres need a projected grid (e.g. the tile's UTM zone)"
            )
        object.__setattr__(self, "crs", crs)

    @property
    def grid(self) -> GeoGrid:
        """The tile's grid."""
        return GeoGrid(self.crs, self.transform, np.shape(self.east))

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, *, name: str = "", error: str | None = None) -> DisplacementTile:
        """A tile from an offset product (:func:`geodeform.io.offset_dataset`: ``dx``/``dy`` in metres east /
        north and a ``mapping`` variable); ``error`` names an optional 1-σ variable in metres."""
        for var in ("dx", "dy"):
            if var not in ds:
                raise InvalidInputError(
                    f"dataset {name!r} has no {var!r} variable (metres east/north expected)"
                )
        g = dataset_grid(ds)
        sigma = None if error is None else np.asarray(ds[error].values, dtype=np.float64)
        return cls(np.asarray(ds["dx"].values), np.asarray(ds["dy"].values), g.crs, g.transform, sigma, name)


@dataclass(frozen=True)
class TileOverlap:
    """Agreement of two overlapping tiles on the target grid.

    Attributes
    ----------
    a, b
        Tile names.
    nodes
        Nodes where both are valid.
    before, after
        Median difference ``a - b`` (east, north), metres, before and after the bias adjustment.
    """

    a: str
    b: str
    nodes: int
    before: tuple[float, float]
    after: tuple[float, float]


@dataclass(frozen=True)
class Mosaic:
    """Result of :func:`mosaic`.

    Attributes
    ----------
    east, north
        Displacement along +x / +y of the target CRS (east / north for UTM), metres, float32; NaN = no data.
    weight
        Sum of the blending weights at every node (0 = no data).
    count
        Number of tiles with data at every node.
    grid
        Target grid.
    biases
        Bias added to every tile, name → (east, north), metres.
    overlaps
        Agreement of every overlapping pair.
    dropped
        Names of tiles left out (no finite value, or no overlap with the target grid).
    """

    east: F32
    north: F32
    weight: F32
    count: npt.NDArray[np.uint8]
    grid: GeoGrid
    biases: dict[str, tuple[float, float]]
    overlaps: tuple[TileOverlap, ...]
    dropped: tuple[str, ...] = field(default=())

    def to_dataset(self) -> xr.Dataset:
        """CF-1.8 Dataset: ``dx``/``dy`` in metres east/north (as :func:`geodeform.io.offset_dataset`),
        ``count``, ``weight``, a ``mapping`` grid-mapping variable, x/y node-centre coordinates."""
        g = self.grid
        crs = ProjCRS.from_user_input(g.crs.to_wkt())
        wkt = crs.to_wkt()
        t = g.transform
        mapping: dict[str, Any] = {
            "crs_wkt": wkt,
            "spatial_ref": wkt,
            "GeoTransform": " ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e)),
        }
        if g.crs.to_epsg() is not None:
            mapping["spatial_epsg"] = int(g.crs.to_epsg())
        dims = ("y", "x")
        attrs = lambda name, units: {"long_name": name, "units": units, "grid_mapping": "mapping"}  # noqa: E731
        data = {
            "dx": (dims, self.east, attrs("displacement along +x (east), mosaic", "m")),
            "dy": (dims, self.north, attrs("displacement along +y (north), mosaic", "m")),
            "count": (dims, self.count, attrs("tiles with data", "1")),
            "weight": (dims, self.weight, attrs("sum of blending weights", "1")),
            "mapping": ((), np.int32(0), mapping),
        }
        coords = {"x": ("x", g.x_coords(), {"axis": "X"}), "y": ("y", g.y_coords(), {"axis": "Y"})}
        biases = {f"bias_{k or i}": list(v) for i, (k, v) in enumerate(self.biases.items())}
        return xr.Dataset(
            data,
            coords=coords,
            attrs={"Conventions": "CF-1.8", "title": "geodeform displacement mosaic", **biases},
        )


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS of a point (EPSG 326xx north, 327xx south; standard 6° zones)."""
    zone = int(np.clip(np.floor((lon + 180.0) / 6.0) + 1, 1, 60))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def reprojection_jacobian(src_crs: Any, dst_crs: Any, x: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Matrices turning a small vector in ``src_crs`` axes into ``dst_crs`` axes, at target points.

    Parameters
    ----------
    src_crs, dst_crs
        Projected CRSs (anything :class:`rasterio.crs.CRS` accepts).
    x, y
        Points in ``dst_crs`` (any equal shape), CRS units.

    Returns
    -------
    ndarray, shape (..., 2, 2)
        ``J`` with ``[dE_dst, dN_dst] = J @ [dE_src, dN_src]``: the derivative of the src → dst projection
        at the source point that lands on (x, y) — the rotation by the difference of grid convergences times
        the ratio of scale factors.
    """
    xd = np.asarray(x, dtype=np.float64)
    yd = np.asarray(y, dtype=np.float64)
    s = CRS.from_user_input(src_crs)
    d = CRS.from_user_input(dst_crs)
    to_src = Transformer.from_crs(d.to_wkt(), s.to_wkt(), always_xy=True)
    to_dst = Transformer.from_crs(s.to_wkt(), d.to_wkt(), always_xy=True)
    xs, ys = to_src.transform(xd, yd)
    h = 50.0  # metres: central differences, exact to ~1e-12 for UTM's curvature
    out = np.empty((*xd.shape, 2, 2))
    for k, (ex, ey) in enumerate(((h, 0.0), (0.0, h))):
        xp, yp = to_dst.transform(xs + ex, ys + ey)
        xm, ym = to_dst.transform(xs - ex, ys - ey)
        out[..., 0, k] = (np.asarray(xp) - np.asarray(xm)) / (2 * h)
        out[..., 1, k] = (np.asarray(yp) - np.asarray(ym)) / (2 * h)
    return out


def _as_tile(t: DisplacementTile | xr.Dataset, k: int) -> DisplacementTile:
    if isinstance(t, DisplacementTile):
        return t if t.name else DisplacementTile(t.east, t.north, t.crs, t.transform, t.sigma, f"tile{k}")
    if isinstance(t, xr.Dataset):
        return DisplacementTile.from_dataset(t, name=f"tile{k}")
    raise InvalidInputError(
        f"tile {k} is a {type(t).__name__}; give DisplacementTile objects or xarray Datasets"
    )


def mosaic_grid(
    tiles: list[DisplacementTile], *, crs: Any | None = None, resolution: float | None = None
) -> GeoGrid:
    """North-up target grid covering every tile.

    Parameters
    ----------
    tiles
        Input tiles.
    crs
        Target CRS; default the UTM zone of the centre of the tiles' union (:func:`utm_crs`).
    resolution
        Cell size, target CRS units; default the finest tile cell size.

    Returns
    -------
    GeoGrid
        Bounds snapped outward to multiples of the resolution.
    """
    boxes = np.array([transform_bounds(t.crs, "EPSG:4326", *t.grid.bounds, densify_pts=21) for t in tiles])
    if crs is None:
        lon = 0.5 * (boxes[:, 0].min() + boxes[:, 2].max())
        lat = 0.5 * (boxes[:, 1].min() + boxes[:, 3].max())
        target = utm_crs(lon, lat)
    else:
        target = CRS.from_user_input(crs)
        if not target.is_projected:
            raise InvalidInputError(
                f"target CRS {target.to_string()} is not projected; give a UTM zone or similar"
            )
    res = resolution or min(min(abs(t.transform.a), abs(t.transform.e)) for t in tiles)
    if not res > 0:
        raise InvalidInputError(f"resolution must be > 0, got {resolution!r}")
    bb = np.array([transform_bounds(t.crs, target, *t.grid.bounds, densify_pts=21) for t in tiles])
    x0, y0 = np.floor(bb[:, 0].min() / res) * res, np.floor(bb[:, 1].min() / res) * res
    x1, y1 = np.ceil(bb[:, 2].max() / res) * res, np.ceil(bb[:, 3].max() / res) * res
    shape = (round((y1 - y0) / res), round((x1 - x0) / res))
    return GeoGrid(target, Affine(res, 0.0, x0, 0.0, -res, y1), shape)


@dataclass(frozen=True)
class _Placed:
    """A tile resampled onto its window of the target grid, in the target's axes."""

    name: str
    row: int
    col: int
    east: F64
    north: F64
    sigma: F64 | None
    weight: F64  # feathering ramp, 0 outside the footprint

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.east) & np.isfinite(self.north)

    def slices(self) -> tuple[slice, slice]:
        h, w = self.east.shape
        return slice(self.row, self.row + h), slice(self.col, self.col + w)


def _window(tile: DisplacementTile, grid: GeoGrid) -> tuple[int, int, int, int, tuple[bool, ...]] | None:
    b = transform_bounds(tile.crs, grid.crs, *tile.grid.bounds, densify_pts=21)
    win = windows.from_bounds(*b, transform=grid.transform)
    r0, c0 = int(np.floor(win.row_off)) - 1, int(np.floor(win.col_off)) - 1
    r1 = int(np.ceil(win.row_off + win.height)) + 1
    c1 = int(np.ceil(win.col_off + win.width)) + 1
    clipped = (r0 < 0, r1 > grid.height, c0 < 0, c1 > grid.width)
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, grid.height), min(c1, grid.width)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, r1 - r0, c1 - c0, clipped


def _resample(
    values: npt.ArrayLike,
    tile: DisplacementTile,
    dst: Affine,
    shape: tuple[int, int],
    crs: CRS,
    how: Resampling,
) -> F64:
    out = np.full(shape, np.nan)
    reproject(
        np.asarray(values, dtype=np.float64),
        out,
        src_transform=tile.transform,
        src_crs=tile.crs,
        src_nodata=np.nan,
        dst_transform=dst,
        dst_crs=crs,
        dst_nodata=np.nan,
        resampling=how,
    )
    return out


def _jacobian_map(tile: DisplacementTile, dst: Affine, shape: tuple[int, int], crs: CRS) -> F64:
    """(h, w, 2, 2) Jacobian at every cell, from a coarse lattice (it varies over hundreds of km)."""
    h, w = shape
    stride = max(1, int(np.ceil(max(h, w) / 64)))
    rl = np.unique(np.r_[0:h:stride, h - 1]).astype(np.float64)
    cl = np.unique(np.r_[0:w:stride, w - 1]).astype(np.float64)
    cc, rr = np.meshgrid(cl + 0.5, rl + 0.5)
    x = dst.c + dst.a * cc + dst.b * rr
    y = dst.f + dst.d * cc + dst.e * rr
    jl = reprojection_jacobian(tile.crs, crs, x, y)
    out = np.empty((h, w, 2, 2))
    for i in range(2):
        for j in range(2):
            a = jl[..., i, j]
            a = np.array([np.interp(np.arange(w), cl, row) for row in a])  # along columns
            out[..., i, j] = np.array([np.interp(np.arange(h), rl, col) for col in a.T]).T
    return out


def _place(tile: DisplacementTile, grid: GeoGrid, feather: float) -> _Placed | None:
    win = _window(tile, grid)
    if win is None:
        return None
    r0, c0, h, w, clipped = win
    t = grid.transform
    x0, y0 = apply_transform(t, c0, r0)
    dst = Affine(t.a, t.b, float(x0), t.d, t.e, float(y0))
    args = (tile, dst, (h, w), grid.crs)
    east = _resample(tile.east, *args, Resampling.bilinear)
    north = _resample(tile.north, *args, Resampling.bilinear)
    sigma = None if tile.sigma is None else _resample(tile.sigma, *args, Resampling.bilinear)
    foot = np.isfinite(_resample(np.ones(np.shape(tile.east)), *args, Resampling.nearest))
    if tile.crs != grid.crs:
        jac = _jacobian_map(tile, dst, (h, w), grid.crs)
        east, north = (
            jac[..., 0, 0] * east + jac[..., 0, 1] * north,
            jac[..., 1, 0] * east + jac[..., 1, 1] * north,
        )
    # Distance to the footprint's edge; a side cut by the target grid is no tile edge.
    padded = np.pad(foot, 1)
    top, bottom, left, right = clipped
    if top:
        padded[0] = padded[1]
    if bottom:
        padded[-1] = padded[-2]
    if left:
        padded[:, 0] = padded[:, 1]
    if right:
        padded[:, -1] = padded[:, -2]
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    ramp = np.clip(dist / feather, 0.0, 1.0)
    weight = np.where(foot, ramp * ramp * (3.0 - 2.0 * ramp), 0.0)  # smoothstep
    return _Placed(tile.name, r0, c0, east, north, sigma, weight)


def _pair_differences(a: _Placed, b: _Placed) -> tuple[int, F64]:
    """Nodes where both tiles are valid and the median difference a - b (east, north) there."""
    (ra, ca), (rb, cb) = (a.row, a.col), (b.row, b.col)
    r0, c0 = max(ra, rb), max(ca, cb)
    r1 = min(ra + a.east.shape[0], rb + b.east.shape[0])
    c1 = min(ca + a.east.shape[1], cb + b.east.shape[1])
    if r1 <= r0 or c1 <= c0:
        return 0, np.zeros(2)
    sa = (slice(r0 - ra, r1 - ra), slice(c0 - ca, c1 - ca))
    sb = (slice(r0 - rb, r1 - rb), slice(c0 - cb, c1 - cb))
    both = a.valid[sa] & b.valid[sb]
    n = int(both.sum())
    if n == 0:
        return 0, np.zeros(2)
    de = np.median(a.east[sa][both] - b.east[sb][both])
    dn = np.median(a.north[sa][both] - b.north[sb][both])
    return n, np.array([de, dn])


def _solve_biases(
    placed: list[_Placed], pairs: list[tuple[int, int, int, F64]], reference: int | None
) -> F64:
    """(T, 2) biases with b_i - b_j = -(median a_i - a_j) in every overlap, least squares."""
    t = len(placed)
    bias = np.zeros((t, 2))
    if not pairs:
        return bias
    ii = np.array([p[0] for p in pairs])
    jj = np.array([p[1] for p in pairs])
    _, label = connected_components(coo_matrix((np.ones(len(pairs)), (ii, jj)), shape=(t, t)), directed=False)
    area = np.array([float(p.valid.sum()) for p in placed])
    rows: list[F64] = []
    rhs: list[F64] = []
    for i, j, n, d in pairs:
        row = np.zeros(t)
        row[i], row[j] = np.sqrt(n), -np.sqrt(n)
        rows.append(row)
        rhs.append(-np.sqrt(n) * d)
    big = 1e3 * np.sqrt(max(p[2] for p in pairs))
    for g in np.unique(label):
        members = label == g
        row = np.zeros(t)
        if reference is not None and members[reference]:
            row[reference] = big
        else:
            row[members] = big * area[members] / area[members].sum()
        rows.append(row)
        rhs.append(np.zeros(2))
    sol, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return np.asarray(sol)


def mosaic(
    tiles: list[DisplacementTile | xr.Dataset],
    *,
    crs: Any | None = None,
    resolution: float | None = None,
    grid: GeoGrid | None = None,
    adjust: Literal["bias", "none"] = "bias",
    reference: str | None = None,
    feather: float | None = None,
    min_overlap: int = 50,
) -> Mosaic:
    """Mosaic displacement tiles onto one grid, turning vectors into its CRS and blending the overlaps.

    Parameters
    ----------
    tiles
        :class:`DisplacementTile` objects or offset products (:func:`geodeform.io.offset_dataset`), each
        in its own projected CRS (tiles of two UTM zones are fine), displacement in metres along +x / +y
        of that CRS. Datasets are named ``tile0``, ``tile1``... by position; build
        :meth:`DisplacementTile.from_dataset` yourself to name them.
    crs
        Target CRS; default the UTM zone of the centre of the area (:func:`utm_crs`). Ignored with ``grid``.
    resolution
        Target cell size, target CRS units; default the finest tile's. Ignored with ``grid``.
    grid
        Explicit target grid (north-up or not); default :func:`mosaic_grid` over all tiles.
    adjust
        ``"bias"`` adds one constant (east, north) per tile so that overlapping tiles agree (median of
        their differences), keeping the area-weighted mean bias of every group of connected tiles at zero;
        ``"none"`` leaves the tiles as they are.
    reference
        Name of a tile whose level is kept (e.g. the one co-registered on stable ground) instead of the
        mean.
    feather
        Distance over which a tile's weight ramps from 0 at its edge to 1, target CRS units. Default 16
        cells; keep it below the overlap width.
    min_overlap
        Fewest common valid nodes for an overlap to constrain the biases.

    Returns
    -------
    Mosaic
        ``east``/``north`` in metres along the target CRS's axes; biases and overlap statistics.

    Raises
    ------
    EmptyFieldError
        No tile has a finite value on the target grid.
    InvalidInputError
        Geographic or mismatched inputs, unknown ``reference`` or ``adjust``.
    """
    if not tiles:
        raise InvalidInputError("mosaic needs at least one tile")
    if adjust not in ("bias", "none"):
        raise InvalidInputError(f"adjust={adjust!r} is not known; use 'bias' or 'none'")
    items = [_as_tile(t, k) for k, t in enumerate(tiles)]
    names = [t.name for t in items]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"tile names must be unique, got {names}")
    if reference is not None and reference not in names:
        raise InvalidInputError(f"reference={reference!r} is not a tile name; use one of {names}")
    target = grid or mosaic_grid(items, crs=crs, resolution=resolution)
    cell = float(np.hypot(target.transform.a, target.transform.d))
    ramp = 16.0 if feather is None else max(feather / cell, 1e-6)
    placed, dropped = [], []
    for tile in items:
        p = _place(tile, target, ramp)
        if p is None or not p.valid.any():
            log.warning("tile %s has no valid displacement on the target grid: left out", tile.name)
            dropped.append(tile.name)
        else:
            placed.append(p)
    if not placed:
        raise EmptyFieldError(
            f"none of the {len(items)} tiles has a finite displacement on the target grid {target.shape}: "
            "check the matching of every tile and that the grid covers them"
        )
    return _blend(placed, target, adjust, reference, min_overlap, tuple(dropped))


def _blend(
    placed: list[_Placed],
    target: GeoGrid,
    adjust: str,
    reference: str | None,
    min_overlap: int,
    dropped: tuple[str, ...],
) -> Mosaic:
    pairs = []
    for i in range(len(placed)):
        for j in range(i + 1, len(placed)):
            n, d = _pair_differences(placed[i], placed[j])
            if n >= min_overlap:
                pairs.append((i, j, n, d))
    ref = next((k for k, p in enumerate(placed) if p.name == reference), None)
    bias = _solve_biases(placed, pairs, ref) if adjust == "bias" else np.zeros((len(placed), 2))
    overlaps = tuple(
        TileOverlap(
            placed[i].name,
            placed[j].name,
            n,
            (float(d[0]), float(d[1])),
            (float(d[0] + bias[i, 0] - bias[j, 0]), float(d[1] + bias[i, 1] - bias[j, 1])),
        )
        for i, j, n, d in pairs
    )
    use_sigma = all(p.sigma is not None for p in placed)
    shape = target.shape
    acc = np.zeros((3, *shape))
    count = np.zeros(shape, dtype=np.uint8)
    for k, p in enumerate(placed):
        ok = p.valid & (p.weight > 0)
        w = p.weight
        if use_sigma and p.sigma is not None:
            ok &= np.isfinite(p.sigma) & (p.sigma > 0)
            w = w / np.where(ok, p.sigma, 1.0) ** 2
        w = np.where(ok, w, 0.0)
        sl = p.slices()
        acc[0][sl] += w
        acc[1][sl] += w * np.where(ok, p.east + bias[k, 0], 0.0)
        acc[2][sl] += w * np.where(ok, p.north + bias[k, 1], 0.0)
        count[sl] += ok.astype(np.uint8)
    has = acc[0] > 0
    den = np.where(has, acc[0], 1.0)
    east = np.where(has, acc[1] / den, np.nan).astype(np.float32)
    north = np.where(has, acc[2] / den, np.nan).astype(np.float32)
    for o in overlaps:
        log.info(
            "overlap %s-%s: %d nodes, median difference %s m -> %s m", o.a, o.b, o.nodes, o.before, o.after
        )
    biases = {p.name: (float(bias[k, 0]), float(bias[k, 1])) for k, p in enumerate(placed)}
    return Mosaic(east, north, acc[0].astype(np.float32), count, target, biases, overlaps, dropped)
