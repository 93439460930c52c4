"""The quake chain after matching: stacked co-seismic fields per tile and orbit, the stripe/jitter
correction that keeps the slip, the mosaic of all tiles, the rupture trace and the slip profiles.

Sign conventions: fields and products are displacements in metres along +x (east) and +y (north) of their
CRS, from the pre-event to the post-event images; fault-parallel slip is + for right-lateral motion,
fault-normal slip + for opening (:mod:`geodeform.quake.profiles`).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xarray as xr
from pyproj import Proj, Transformer
from rasterio.transform import Affine

from geodeform.errors import NoDataError
from geodeform.io import GeoGrid, apply_transform, dataset_grid, write_netcdf
from geodeform.quake import (
    DisplacementTile,
    Mosaic,
    SlipProfiles,
    detect_trace,
    grid_components,
    mosaic,
    mosaic_grid,
    read_trace,
    slip_profiles,
    track_artefacts,
)

__all__ = [
    "CoseismicField",
    "grid_track_angle",
    "locate_trace",
    "measure_slip",
    "mosaic_fields",
    "remove_track_artefacts",
    "stack_pairs",
    "trace_on_grid",
    "write_field",
]

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CoseismicField:
    """The co-seismic displacement of one tile and orbit, stacked from its pre x post pairs.

    Attributes
    ----------
    name
        ``<tile>`` or ``<tile>-o<orbit>`` when the tile has several orbits.
    tile, orbit
        Tile label and orbit (None without orbit labels).
    east, north
        (h, w) displacement along +x / +y of the tile's CRS, metres; NaN where fewer than half of the pairs
        have a value.
    spread
        (h, w) standard deviation of the pairs about their mean, metres (NaN with one pair): the scatter the
        stack beats down.
    pairs
        Number of pairs stacked.
    grid
        Node grid (the tile's CRS).
    track_angle
        Direction of the satellite track on the grid, degrees clockwise from grid north.
    correction_rms
        Root-mean-square of the stripe/jitter correction removed, metres (NaN when none was).
    """

    name: str
    tile: str
    orbit: int | None
    east: F64
    north: F64
    spread: F64
    pairs: int
    grid: GeoGrid
    track_angle: float
    correction_rms: float = math.nan


def grid_track_angle(grid: GeoGrid, track_angle: float) -> float:
    """A track direction (degrees clockwise from true north) on a projected grid: minus the meridian
    convergence at the grid's centre (clockwise from grid north)."""
    x0, y0, x1, y1 = grid.bounds
    lon, lat = Transformer.from_crs(grid.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(
        0.5 * (x0 + x1), 0.5 * (y0 + y1)
    )
    return float(track_angle - Proj(grid.crs.to_wkt()).get_factors(lon, lat).meridian_convergence)


def stack_pairs(
    paths: list[str],
    *,
    tile: str,
    orbit: int | None,
    name: str,
    how: Literal["median", "mean"],
    track_angle: float,
) -> CoseismicField:
    """Stack the co-seismic pair products of one tile and orbit node by node.

    Parameters
    ----------
    paths
        Pair products (:func:`geodeform.io.offset_dataset` NetCDF: ``dx``/``dy`` in metres east/north) on
        one node grid.
    tile, orbit, name
        Labels of the result.
    how
        ``"median"`` or ``"mean"`` of the pairs at every node; nodes valid in fewer than half of the pairs
        are NaN.
    track_angle
        Satellite track, degrees clockwise from true north (turned into the grid's axes).

    Returns
    -------
    CoseismicField
    """
    east, north = [], []
    grid = None
    for p in paths:
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            east.append(np.asarray(ds["dx"].values, dtype=np.float64))
            north.append(np.asarray(ds["dy"].values, dtype=np.float64))
            g = dataset_grid(ds)
        if grid is not None and not g.same_as(grid):
            raise NoDataError(f"{name}: pair {p} is on another grid than the first pair; rerun the job")
        grid = g
    assert grid is not None
    e, n = np.stack(east), np.stack(north)
    ok = np.isfinite(e) & np.isfinite(n)
    count = ok.sum(axis=0)
    keep = count >= max(1, math.ceil(len(paths) / 2))
    reduce = np.nanmedian if how == "median" else np.nanmean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN nodes stay NaN
        se, sn = reduce(np.where(ok, e, np.nan), axis=0), reduce(np.where(ok, n, np.nan), axis=0)
        spread = np.sqrt(np.nanvar(e, axis=0, ddof=1) + np.nanvar(n, axis=0, ddof=1))
    spread_map = np.where(count >= 2, spread, np.nan)
    return CoseismicField(
        name,
        tile,
        orbit,
        np.where(keep, se, np.nan),
        np.where(keep, sn, np.nan),
        spread_map,
        len(paths),
        grid,
        grid_track_angle(grid, track_angle),
    )


def trace_on_grid(trace: F64, src: GeoGrid, dst: GeoGrid) -> F64:
    """(row, col) vertices of a trace on ``src`` turned into (row, col) of ``dst`` (cell centre (i, j) at
    (i, j)), through map coordinates (any CRS)."""
    x, y = apply_transform(src.transform, trace[:, 1] + 0.5, trace[:, 0] + 0.5)
    xd, yd = Transformer.from_crs(src.crs.to_wkt(), dst.crs.to_wkt(), always_xy=True).transform(x, y)
    c, r = apply_transform(~dst.transform, np.asarray(xd), np.asarray(yd))
    return np.c_[np.asarray(r) - 0.5, np.asarray(c) - 0.5]


def remove_track_artefacts(field: CoseismicField, trace: F64, *, near: float) -> CoseismicField:
    """Remove detector stripes and jitter from one tile's field, estimated against a smooth model of the
    deformation on each side of the trace (:func:`geodeform.quake.track_artefacts`), so the slip is kept.

    Parameters
    ----------
    field
        Stacked field of one tile and orbit.
    trace
        (N, 2) (row, col) of the trace on the field's grid (it may run outside the grid).
    near
        Nodes closer to the trace (metres; chips that straddle it) are left out of the estimate.
    """
    cell = float(math.hypot(field.grid.transform.a, field.grid.transform.d))
    dx, dy = grid_components(field.east, field.north, field.grid.transform)
    fix = track_artefacts(dx, dy, trace, pixel_size=cell, track_angle=field.track_angle, near=near)
    # back to map axes: the inverse of grid_components on a north-up grid is (dx, -dy)
    t = field.grid.transform
    a = np.array([[t.a, t.b], [t.d, t.e]]) / cell
    east = field.east - (a[0, 0] * fix.dx + a[0, 1] * fix.dy)
    north = field.north - (a[1, 0] * fix.dx + a[1, 1] * fix.dy)
    log.info("%s: stripes and jitter removed, rms %.3f m", field.name, fix.rms)
    return replace(field, east=east, north=north, correction_rms=fix.rms)


def _aligned_grid(fields: list[CoseismicField], crs: Any, resolution: float | None) -> GeoGrid:
    """:func:`geodeform.quake.mosaic_grid`, shifted to the node lattice of a field already in the target
    CRS at the target cell (so its nodes are not resampled), and grown by a cell to still cover all."""
    tiles = [DisplacementTile(f.east, f.north, f.grid.crs, f.grid.transform, name=f.name) for f in fields]
    g = mosaic_grid(tiles, crs=crs, resolution=resolution)
    res = g.transform.a
    same = [f for f in fields if f.grid.crs == g.crs and np.isclose(abs(f.grid.transform.a), res)]
    if not same:
        return g
    ft = same[0].grid.transform
    dx = (ft.c - g.transform.c) % res
    dy = (ft.f - g.transform.f) % res
    t = Affine(res, 0.0, g.transform.c + dx - res, 0.0, -res, g.transform.f + dy)
    return GeoGrid(g.crs, t, (g.height + 2, g.width + 2))


def mosaic_fields(
    fields: list[CoseismicField], *, crs: Any = None, resolution: float | None = None
) -> Mosaic:
    """All tiles' fields on one grid (one CRS, also across UTM zones), biases adjusted in the overlaps and
    overlaps feathered (:func:`geodeform.quake.mosaic`)."""
    tiles = [DisplacementTile(f.east, f.north, f.grid.crs, f.grid.transform, name=f.name) for f in fields]
    return mosaic(tiles, grid=_aligned_grid(fields, crs, resolution))


def _cell(m: Mosaic) -> float:
    return float(math.hypot(m.grid.transform.a, m.grid.transform.d))


def locate_trace(m: Mosaic, *, path: str | None = None, crs: str | None = None) -> F64:
    """The rupture trace on the mosaic's grid: the user's file (:func:`geodeform.quake.read_trace`), or the
    line along which the mosaic steps (:func:`geodeform.quake.detect_trace`)."""
    if path is not None:
        return read_trace(path, m.grid, crs=crs)
    dx, dy = grid_components(m.east, m.north, m.grid.transform)
    return detect_trace(dx, dy, pixel_size=_cell(m))


def measure_slip(m: Mosaic, trace: F64, *, spacing: float, half_width: float, gap: float) -> SlipProfiles:
    """Slip profiles across the trace on the mosaic (:func:`geodeform.quake.slip_profiles`), metres."""
    dx, dy = grid_components(m.east, m.north, m.grid.transform)
    return slip_profiles(dx, dy, trace, spacing=spacing, half_width=half_width, pixel_size=_cell(m), gap=gap)


def write_field(field: CoseismicField, path: Path, attrs: dict[str, Any]) -> Path:
    """One tile's stacked (and corrected) field as CF NetCDF: ``dx``/``dy`` (m east/north), ``spread``."""
    valid = np.isfinite(field.east) & np.isfinite(field.north)
    ds = Mosaic(
        field.east.astype(np.float32),
        field.north.astype(np.float32),
        valid.astype(np.float32),
        valid.astype(np.uint8),
        field.grid,
        {},
        (),
    ).to_dataset()
    ds = ds.drop_vars(["weight"])
    spread_attrs = {"long_name": "scatter of the stacked pairs", "units": "m", "grid_mapping": "mapping"}
    ds["spread"] = (("y", "x"), field.spread.astype(np.float32), spread_attrs)
    ds.attrs.update(
        title=f"geodeform co-seismic field {field.name}",
        geodeform_pairs=field.pairs,
        geodeform_track_angle_grid_deg=field.track_angle,
        geodeform_track_correction_rms_m=field.correction_rms,
        **attrs,
    )
    return write_netcdf(ds, path)
