"""What a quake job measures, decided before anything is written: its tiles, the acquisitions around the
event in each tile and orbit, the pairs, and the checks of the user's trace.

A tile is a group of images on one grid: the images of one ``inputs[].tile`` label, or the scenes of one
MGRS tile of ``search.aoi.tiles`` (read on that tile's own UTM grid, so tiles of two UTM zones are fine), or
the whole search AOI when it names no tile. In every tile and orbit the ``quake.pre_images`` latest
acquisitions before ``quake.event_date`` are paired with the ``quake.post_images`` earliest after it
(:func:`geodeform.pairs.coseismic_pairs`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from geodeform.config import InputImage, JobConfig
from geodeform.errors import DataError, InvalidInputError, NoDataError
from geodeform.io import GeoGrid, apply_transform
from geodeform.pairs import PairNetwork, coseismic_pairs
from geodeform.quake import TraceOutsideError, read_trace, utm_crs
from geodeform.search import AOI, aoi_from_tile, make_aoi
from geodeform.workflows.pair import PairSpec
from geodeform.workflows.plan import pair_specs
from geodeform.workflows.stack import (
    ImageStack,
    SceneGroup,
    SceneSearch,
    clearest_acquisitions,
    search_scenes,
    sensor_inputs,
    stack_from_inputs,
    stack_from_search,
)

__all__ = ["QuakePlan", "QuakeTile", "TileSource", "plan_quake", "read_tile", "tile_pairs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileSource:
    """Where one tile's images come from, chosen before anything is written.

    Attributes
    ----------
    name
        Tile label (``inputs[].tile``, the MGRS id, or ``area``).
    footprint
        Outline of the tile's area, lon/lat (shapely polygon).
    inputs
        Local images of the tile used by the pairs (inputs mode).
    found, chosen
        The catalogue search over the tile and the acquisitions chosen around the event (search mode).
    """

    name: str
    footprint: Any
    inputs: tuple[InputImage, ...] = ()
    found: SceneSearch | None = None
    chosen: tuple[SceneGroup, ...] = ()


@dataclass(frozen=True)
class QuakePlan:
    """A checked quake job: its config and tiles (output of :func:`plan_quake`)."""

    config: JobConfig
    tiles: tuple[TileSource, ...]


@dataclass
class QuakeTile:
    """One tile of a running job: its images on their grid, the co-seismic pairs, their specs.

    Attributes
    ----------
    name
        Tile label.
    stack
        The tile's acquisitions on its grid (``<run>/tiles/<name>/images``).
    network
        Pre x post pairs around the event, per orbit.
    specs
        One :class:`~geodeform.workflows.pair.PairSpec` per pair (``<run>/tiles/<name>/pairs``).
    """

    name: str
    stack: ImageStack
    network: PairNetwork
    specs: list[PairSpec] = field(default_factory=list)


def _label(name: str) -> str:
    return f"tile {name}: " if name != "area" else ""


def _orbits(config: JobConfig, orbits: list[Any]) -> list[Any] | None:
    return orbits if config.pairs.same_orbit else None


def _network(config: JobConfig, dates: Any, orbits: list[Any], name: str) -> PairNetwork:
    q = config.quake
    assert q is not None  # the config validator requires it with preset quake
    if len(dates) < 2:
        raise NoDataError(
            f"{_label(name)}only {len(dates)} acquisition(s) pass the filters; a co-seismic pair needs one "
            "before and one after the event: widen the search dates or relax search.max_aoi_cloud"
        )
    return coseismic_pairs(
        dates,
        q.event_date,
        orbits=_orbits(config, orbits),
        pre=q.pre_images,
        post=q.post_images,
        max_days=q.max_days,
        label=_label(name),
    )


def _raster_footprint(path: str) -> Any:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise DataError(f"input {path} has no CRS: a quake job needs georeferenced images")
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    except RasterioIOError as exc:
        raise DataError(f"cannot read input {path}: {exc}") from exc
    return shapely.box(*bounds)


def _input_tiles(config: JobConfig) -> list[TileSource]:
    groups: dict[str | None, list[InputImage]] = {}
    for item in sorted(config.inputs, key=lambda i: (i.date, i.orbit or 0)):
        groups.setdefault(item.tile, []).append(item)
    out = []
    for tile, items in groups.items():
        name = tile or "area"
        net = _network(config, [i.date for i in items], [i.orbit for i in items], name)
        used = sorted({int(k) for k in net.pairs.ravel()})
        out.append(TileSource(name, _raster_footprint(items[0].path), tuple(items[k] for k in used)))
    return out


def _search_areas(config: JobConfig) -> list[AOI]:
    """One area per MGRS tile of the AOI (the tile's part of it, on the tile's own UTM zone), or the AOI."""
    s = config.search
    assert s is not None
    kwargs: dict[str, Any] = {}
    if s.aoi.bbox is not None:
        kwargs["bbox"] = list(s.aoi.bbox)
    elif s.aoi.geojson is not None:
        kwargs["geojson"] = s.aoi.geojson
    if not s.aoi.tiles:
        return [make_aoi(**kwargs)]
    whole = make_aoi(**kwargs).geometry if kwargs else None
    areas = []
    for tile in s.aoi.tiles:
        t = aoi_from_tile(tile)
        geom = t.geometry if whole is None else t.geometry.intersection(whole)
        if geom.is_empty:
            raise InvalidInputError(
                f"search.aoi.tiles: tile {t.tile} does not overlap the AOI; remove it or widen the AOI"
            )
        areas.append(AOI(geom, t.epsg, f"tile {t.tile}", t.tile))
    return areas


def _choose(config: JobConfig, found: SceneSearch, name: str) -> tuple[SceneGroup, ...]:
    days = clearest_acquisitions(found, len(found.groups))  # one orbit per day, by date
    net = _network(config, [d for (_, d), _ in days], [o for (o, _), _ in days], name)
    return tuple(days[k] for k in sorted({int(k) for k in net.pairs.ravel()}))


def _search_tiles(config: JobConfig) -> list[TileSource]:
    assert config.search is not None
    out = []
    for area in _search_areas(config):
        name = area.tile or "area"
        found = search_scenes(config.search, area=area)
        out.append(TileSource(name, area.geometry, found=found, chosen=_choose(config, found, name)))
    return out


def _check_trace(config: JobConfig, tiles: list[TileSource]) -> None:
    """The user's trace is readable, in a known CRS, and crosses the area of the tiles."""
    q = config.quake
    assert q is not None
    if q.trace is None:
        return
    if not Path(q.trace).is_file():
        raise InvalidInputError(
            f"quake.trace: file {q.trace} not found (paths are relative to the folder you run from)"
        )
    union = shapely.union_all([t.footprint for t in tiles])
    west, south, east, north = union.bounds
    crs = CRS.from_user_input(q.crs) if q.crs else utm_crs(0.5 * (west + east), 0.5 * (south + north))
    x0, y0, x1, y1 = transform_bounds("EPSG:4326", crs, *union.bounds, densify_pts=21)
    res = max(x1 - x0, y1 - y0) / 500.0  # a coarse grid over the area: only the crossing is checked
    shape = (int(np.ceil((y1 - y0) / res)) + 1, int(np.ceil((x1 - x0) / res)) + 1)
    grid = GeoGrid(crs, from_origin(x0, y1, res, res), shape)
    try:
        rc = read_trace(q.trace, grid, crs=q.trace_crs)
    except TraceOutsideError as exc:
        raise TraceOutsideError(f"quake.trace: {exc}") from None
    x, y = apply_transform(grid.transform, rc[:, 1] + 0.5, rc[:, 0] + 0.5)
    lon, lat = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    if not shapely.LineString(np.c_[lon, lat]).intersects(union):
        names = ", ".join(t.name for t in tiles)
        raise TraceOutsideError(
            f"quake.trace: {q.trace} does not cross the area of the images (tiles {names}; lon "
            f"{west:.3f}..{east:.3f}, lat {south:.3f}..{north:.3f}); check the trace's CRS (quake.trace_crs) "
            "or choose images that cover the rupture"
        )


def plan_quake(config: JobConfig) -> QuakePlan:
    """Choose every tile's acquisitions around the event and check the trace; nothing is written.

    Raises
    ------
    InvalidInputError
        The event date outside the data range, a trace in an undeclared CRS or that does not cross the area.
    NoDataError
        A tile without a pre-event or a post-event acquisition (per orbit).
    """
    if config.quake is None:
        raise InvalidInputError("plan_quake needs a quake job (preset: quake, quake.event_date)")
    tiles = _input_tiles(config) if config.inputs else _search_tiles(config)
    _check_trace(config, tiles)
    for t in tiles:
        n = len(t.inputs) or len(t.chosen)
        log.info("%s%d acquisitions around the event %s", _label(t.name), n, config.quake.event_date)
    return QuakePlan(config, tuple(tiles))


def read_tile(
    config: JobConfig, tile: TileSource, out: Path, *, progress: Any = None, cache_dir: Path | None = None
) -> ImageStack:
    """The tile's chosen acquisitions on its grid, in ``<out>/tiles/<name>/images``."""
    folder = out / "tiles" / tile.name
    if tile.inputs:
        return stack_from_inputs(
            tile.inputs, folder, progress=progress, roi=config.roi, sensor=sensor_inputs(config)
        )
    assert config.search is not None and tile.found is not None
    return stack_from_search(
        config.search,
        folder,
        progress=progress,
        cache_dir=cache_dir,
        roi=config.roi,
        found=tile.found,
        chosen=list(tile.chosen),
    )


def tile_pairs(config: JobConfig, name: str, stack: ImageStack, out: Path) -> QuakeTile:
    """The tile's pre x post pairs and their specs (``<out>/tiles/<name>/pairs``)."""
    q = config.quake
    assert q is not None
    network = _network(config, stack.dates, stack.orbits, name)
    folder = out / "tiles" / name
    (folder / "pairs").mkdir(parents=True, exist_ok=True)
    specs = pair_specs(config, stack, network, folder, options={"two_motion_px": q.two_motion_px})
    return QuakeTile(name, stack, network, specs)
