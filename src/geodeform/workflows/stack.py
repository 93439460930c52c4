"""The image stack of a job: every acquisition on one grid, written once into the run folder.

Workers (local processes or SLURM jobs) read the aligned images from ``<run>/images/`` by path, so the
stack is built once, resumes (an image already written with the same source key is reused) and never
travels through the scheduler.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.ops import unary_union

from geodeform.config import SearchConfig
from geodeform.errors import InvalidInputError, NoDataError
from geodeform.io import READ_THREADS, GeoGrid, atomic_output, band_index, read_grid, read_on_grid, window_vrt
from geodeform.io.aoi import SceneRef, aoi_grid, band_resolution, read_aoi
from geodeform.io.masks import SceneMask, read_mask, read_scene_mask, scene_mask
from geodeform.io.ortho import ImageCorrection, has_sensor_model, orthorectify, refine_rpc, sensor_grid
from geodeform.masks import scene_cloud_mask
from geodeform.search import AOI, aoi_from_tile, make_aoi
from geodeform.search import search as stac_search
from geodeform.search.scoring import QA_CLOUD_BITS, SCL_CLOUD_CLASSES, SCL_INVALID_CLASSES

__all__ = [
    "Acquisition",
    "ImageStack",
    "SceneGroup",
    "SceneSearch",
    "SensorInputs",
    "clearest_acquisitions",
    "content_key",
    "read_image",
    "sample_image",
    "search_filters",
    "search_scenes",
    "sensor_inputs",
    "stack_from_inputs",
    "stack_from_search",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Acquisition:
    """One date of the stack.

    Attributes
    ----------
    id
        Scene id(s) (``+``-joined for a mosaic of adjacent tiles) or input file name.
    date
        Acquisition date.
    orbit
        Relative orbit / track label (pairs are formed within one orbit), or None.
    path
        Aligned float32 GeoTIFF in the run folder (NaN = no data or masked cloud).
    valid_fraction
        Share of the grid with data.
    """

    id: str
    date: np.datetime64
    orbit: int | None
    path: Path
    valid_fraction: float
    key: str = ""
    sources: tuple[str, ...] = ()


@dataclass
class ImageStack:
    """All acquisitions of a job on one grid, sorted by date (then orbit)."""

    acquisitions: list[Acquisition]
    grid: GeoGrid
    pixel_m: float
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def dates(self) -> NDArray[np.datetime64]:
        return np.array([a.date for a in self.acquisitions], dtype="datetime64[D]")

    @property
    def orbits(self) -> list[int | None]:
        return [a.orbit for a in self.acquisitions]


def content_key(*parts: Any) -> str:
    """Short stable hash (16 hex digits) of JSON-able parts: keys products and images by their inputs."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def _write_image(path: Path, data: NDArray[np.float32], grid: GeoGrid, tags: dict[str, str]) -> None:
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="float32",
        crs=grid.crs,
        transform=grid.transform,
        nodata=np.nan,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="zstd",  # 3-4x faster than deflate at the same size for float32 + predictor 3
        zstd_level=1,
        predictor=3,
    )
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(np.float32), 1)
        dst.update_tags(**tags, VALID_FRACTION=f"{float(np.isfinite(data).mean()):.6f}")


def _existing(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        with rasterio.open(path) as src:
            return src.tags().get("GEODEFORM_KEY") == key
    except rasterio.errors.RasterioIOError:
        return False


def read_image(path: str | Path) -> NDArray[np.float32]:
    """Read an aligned stack image (float32, NaN = no data: the raster's declared nodata and mask)."""
    with rasterio.open(path) as src:  # masked: a stack image may be an input as it is (uint8, nodata 0)
        return np.ma.filled(src.read(1, masked=True, out_dtype="float32"), np.nan).astype(
            np.float32, copy=False
        )


def sample_image(path: str | Path, *, every: int = 4) -> NDArray[np.float32]:
    """Every ``every``-th strip of block rows of an aligned image (float32, NaN = no data), stacked.

    Decodes only those blocks (a quarter of the image by default): enough for the statistics preflight
    checks (valid share, texture, a digest), whose failures are confirmed on the whole image.
    """
    with rasterio.open(path) as src:
        block = max(1, src.block_shapes[0][0])
        starts = range(0, src.height, block * every)
        with rasterio.Env(GDAL_NUM_THREADS=READ_THREADS):
            strips = [
                src.read(
                    1,
                    masked=True,
                    window=Window(0, r, src.width, min(block, src.height - r)),
                    out_dtype="float32",
                )
                for r in starts
            ]
    return np.ma.filled(np.ma.concatenate(strips), np.nan).astype(np.float32, copy=False)


def _valid_fraction(path: Path) -> float:
    """Share of pixels with data: the tag written with the image; 1 for an integer band without nodata or
    mask (every pixel is data); else counted on every 4th row and column."""
    with rasterio.open(path) as src:
        tag = src.tags().get("VALID_FRACTION")
        if tag is not None:
            return float(tag)
        if src.mask_flag_enums[0] == [MaskFlags.all_valid] and np.issubdtype(src.dtypes[0], np.integer):
            return 1.0
        h, w = src.height, src.width
        with rasterio.Env(GDAL_NUM_THREADS=READ_THREADS):
            sample = src.read(1, masked=True, out_shape=(max(1, h // 4), max(1, w // 4)), out_dtype="float32")
    return float((~np.ma.getmaskarray(sample) & np.isfinite(sample.data)).mean())


def _crop_to_roi(grid: GeoGrid, roi: Sequence[float]) -> tuple[GeoGrid, tuple[slice, slice]]:
    """The sub-grid of ``grid`` covering ``roi`` (west, south, east, north in degrees) and its slices."""
    xmin, ymin, xmax, ymax = transform_bounds("EPSG:4326", grid.crs, *roi)
    inv = ~grid.transform
    cols, rows = zip(*(inv @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)), strict=True)
    h, w = grid.shape
    r0, r1 = max(0, int(np.floor(min(rows)))), min(h, int(np.ceil(max(rows))))
    c0, c1 = max(0, int(np.floor(min(cols)))), min(w, int(np.ceil(max(cols))))
    if r1 - r0 < 8 or c1 - c0 < 8:
        raise InvalidInputError(
            f"roi {list(roi)} does not overlap the images (or covers fewer than 8 x 8 pixels); check its "
            "order (west, south, east, north, degrees) and that it lies inside the AOI"
        )
    sub = GeoGrid(
        crs=grid.crs, transform=grid.transform @ Affine.translation(c0, r0), shape=(r1 - r0, c1 - c0)
    )
    return sub, (slice(r0, r1), slice(c0, c1))


@dataclass(frozen=True)
class SensorInputs:
    """How input images with RPCs or only GCPs are put on the job grid (:func:`stack_from_inputs`).

    Attributes
    ----------
    dem
        DEM raster (m) for the orthorectification (the job's ``dem``); None: a constant height.
    options
        :class:`geodeform.config.OrthoConfig` (refinement, model, constant height).
    stable, moving
        Stable-ground / moving-ground (glacier) masks (paths, any OGR vector or raster): the refinement
        matches on ``stable``, else outside ``moving``, else everywhere.
    """

    dem: str | None = None
    options: Any = None
    stable: str | None = None
    moving: str | None = None

    @property
    def refine(self) -> bool:
        return bool(getattr(self.options, "refine", True))

    @property
    def height(self) -> float | None:
        return getattr(self.options, "height", None)

    def stable_on(self, grid: GeoGrid) -> NDArray[np.bool_] | None:
        if self.stable:
            return read_mask(self.stable, grid, what="masks.stable")
        if self.moving:
            return ~read_mask(self.moving, grid, what="masks.glacier")
        return None


def sensor_inputs(config: Any) -> SensorInputs:
    """The :class:`SensorInputs` of a job config: ``dem``, ``ortho``, ``masks.stable``, ``masks.glacier``."""
    masks = getattr(config, "masks", None)
    return SensorInputs(
        dem=getattr(config, "dem", None),
        options=getattr(config, "ortho", None),
        stable=getattr(masks, "stable", None),
        moving=getattr(masks, "glacier", None),
    )


def stack_from_inputs(
    inputs: Sequence[Any],
    run_dir: Path,
    *,
    progress: Progress | None = None,
    roi: Sequence[float] | None = None,
    sensor: SensorInputs | None = None,
) -> ImageStack:
    """Put local images (config ``inputs``) on the grid of the first (earliest) one, copying no pixel that
    need not be copied.

    An image already on the grid is used where it is (its path is the acquisition's path); a crop to the
    ROI or another band of it is a small VRT file in ``<run>/images`` that points into it; only an image on
    another grid is warped, once, into a float32 GeoTIFF there.

    An image with RPCs or only GCPs (no geotransform) is orthorectified onto the grid with ``sensor.dem``
    (:func:`geodeform.io.ortho.orthorectify`) and, unless it is the first image, its sensor model is refined
    against the first image on stable ground (``sensor.options.refine``). The grid is the first
    georeferenced image's; when no image has a geotransform, the first image's footprint in UTM at its own
    pixel size (:func:`geodeform.io.ortho.sensor_grid`).

    Each image's mask (``inputs[].mask``, else the scene's own SCL / QA_PIXEL next to the band) turns its
    cloud, shadow and no-data pixels into NaN.

    Raises
    ------
    DataError
        Missing, corrupt or non-georeferenced file (neither a geotransform nor RPCs nor GCPs).
    InvalidInputError
        An RPC image without a DEM where the terrain parallax exceeds 0.5 px (the message names the file
        and the fix).
    NoOverlapError
        An image does not overlap the first one.
    """
    items = sorted(inputs, key=lambda i: (i.date, i.orbit or 0))
    sensor = sensor or SensorInputs()
    modelled = [has_sensor_model(i.path) if Path(i.path).is_file() else False for i in items]
    georef = [i for i, m in zip(items, modelled, strict=True) if not m]
    if georef:
        source_grid = read_grid(georef[0].path, band=georef[0].band)
    else:
        source_grid = sensor_grid(items[0].path, height=sensor.height)
    grid = source_grid
    window = (slice(0, grid.height), slice(0, grid.width))
    if roi is not None:
        grid, window = _crop_to_roi(grid, roi)
    out = run_dir / "images"
    out.mkdir(parents=True, exist_ok=True)
    acqs: list[Acquisition] = []
    notes: list[str] = []
    for n, item in enumerate(items):
        src = Path(item.path)
        stat = src.stat() if src.is_file() else None
        cloud = scene_mask(src, getattr(item, "mask", None))  # given, or the scene's SCL / QA_PIXEL
        key = content_key(
            "input",
            str(src.resolve()),
            stat and stat.st_size,
            stat and stat.st_mtime_ns,
            item.band,
            str(grid.crs),
            tuple(grid.transform),
            grid.shape,
            *([] if cloud is None else [str(cloud.path.resolve()), cloud.kind]),
        )
        if modelled[n]:
            reference = acqs[0] if acqs and sensor.refine else None
            key = content_key(key, _sensor_key(sensor), reference and reference.key)
            path = _ortho_input(item, n, grid, out, key, sensor, reference, cloud=cloud, notes=notes)
        else:
            path = _aligned_input(item, n, source_grid, grid, window, out, key, cloud=cloud)
        acqs.append(
            Acquisition(
                src.name,
                np.datetime64(item.date, "D"),
                item.orbit,
                path,
                _valid_fraction(path),
                key,
                (str(src),),
            )
        )
        if cloud is not None:
            how = "found next to the band" if cloud.found else "given"
            notes.append(f"image {src.name}: mask {cloud.path.name} ({cloud.kind}, {how})")
        if progress:
            progress(n + 1, len(items))
    pixel_m = float(abs(grid.transform.a))
    return ImageStack(acqs, grid, pixel_m, "inputs", notes)


def _sensor_key(sensor: SensorInputs) -> list[Any]:
    dem = Path(sensor.dem) if sensor.dem else None
    stamp = dem.stat().st_mtime_ns if dem is not None and dem.is_file() else None
    opts = sensor.options.model_dump() if hasattr(sensor.options, "model_dump") else None
    return [dem and str(dem.resolve()), stamp, opts, sensor.stable, sensor.moving]


def _ortho_input(
    item: Any,
    n: int,
    grid: GeoGrid,
    out: Path,
    key: str,
    sensor: SensorInputs,
    reference: Acquisition | None,
    *,
    cloud: SceneMask | None,
    notes: list[str],
) -> Path:
    """Orthorectify an RPC / GCP image onto ``grid`` (refined against ``reference``) into ``<out>``."""
    src = Path(item.path)
    path = out / f"{item.date.isoformat()}_{n:03d}.tif"
    note = f"image {src.name}: orthorectified ({'DEM ' + Path(sensor.dem).name if sensor.dem else 'no DEM'})"
    if _existing(path, key):
        with rasterio.open(path) as ds:
            notes.append(ds.tags().get("ORTHO_NOTE", note))
        return path
    with rasterio.open(src) as ds:
        band = band_index(ds, item.band, src)
    correction = ImageCorrection()
    if reference is not None:
        model = getattr(sensor.options, "model", "shift")
        fit = refine_rpc(
            src,
            read_image(reference.path),
            grid,
            dem=sensor.dem,
            height=sensor.height,
            stable=sensor.stable_on(grid),
            model=model,
        )
        correction = fit.correction
        note += (
            f", RPCs refined against {reference.id} ({model}: {fit.correction.r0:+.2f} rows, "
            f"{fit.correction.c0:+.2f} cols; {fit.nodes} stable nodes, residual {fit.residual_px:.2f} px)"
        )
    ortho = orthorectify(src, grid, band=band, dem=sensor.dem, height=sensor.height, correction=correction)
    data = ortho.data
    if cloud is not None:
        data = np.where(read_scene_mask(cloud, grid), np.nan, data).astype(np.float32)
    log.info(note)
    notes.append(note)
    tags = {"GEODEFORM_KEY": key, "ACQUISITION_DATE": item.date.isoformat(), "ORTHO_NOTE": note}
    _write_image(path, data, grid, tags)
    return path


def _aligned_input(
    item: Any,
    n: int,
    source_grid: GeoGrid,
    grid: GeoGrid,
    window: tuple[slice, slice],
    out: Path,
    key: str,
    *,
    cloud: SceneMask | None = None,
) -> Path:
    """The path workers read ``item`` from on ``grid``: the file itself, a VRT window into it, or a warp.

    An image with a mask (``cloud``) is always written to a float32 GeoTIFF, its masked pixels NaN.
    """
    src = Path(item.path)
    same = read_grid(src, band=item.band).same_as(source_grid)
    with rasterio.open(src) as ds:
        band = band_index(ds, item.band, src)  # a band given by name -> its number
        flags = ds.mask_flag_enums[band - 1]
    simple_mask = MaskFlags.all_valid in flags or flags == [MaskFlags.nodata]
    if cloud is None and same and simple_mask and band == 1 and grid.same_as(source_grid):
        return src.resolve()
    if cloud is None and same and simple_mask:
        path = out / f"{item.date.isoformat()}_{n:03d}.vrt"
        if not _existing(path, key):
            with atomic_output(path) as tmp:
                tmp.write_text(window_vrt(src, band, window, grid, {"GEODEFORM_KEY": key}), encoding="utf-8")
        return path
    path = out / f"{item.date.isoformat()}_{n:03d}.tif"
    if not _existing(path, key):
        data = read_on_grid(src, grid, band=item.band)
        if cloud is not None:
            data = np.where(read_scene_mask(cloud, grid), np.nan, data).astype(np.float32)
        _write_image(path, data, grid, {"GEODEFORM_KEY": key, "ACQUISITION_DATE": item.date.isoformat()})
    return path


_MASK_BANDS = {"scl": "scl", "SCL": "scl", "qa_pixel": "qa", "QA_PIXEL": "qa"}
MAX_CLOUD_REFERENCES = 4
"""Other dates (the nearest in time) whose clear pixels form the clear-sky reference of a scene without a
mask band (multi-temporal cloud tests of :mod:`geodeform.masks`)."""


def _cloud_mask(
    scene: Any, grid: Any, cache_dir: Path | None, references: Sequence[Any] = ()
) -> NDArray[np.bool_] | None:
    """True where the scene's SCL / QA_PIXEL says cloud, shadow or no data; without such a band, where the
    FMask-style spectral tests of :mod:`geodeform.masks` find them (L1C, Landsat L1), multi-temporal when
    ``references`` (other dates) are given; None without either."""
    ref = SceneRef.from_any(scene)
    for band, kind in _MASK_BANDS.items():
        if band in ref.assets:
            raw = read_aoi(ref, band, grid, cache_dir=cache_dir, resampling="nearest")
            ok = np.isfinite(raw)
            codes = np.where(ok, raw, 0).astype(np.int64)
            if kind == "scl":
                bad = np.isin(codes, (*SCL_INVALID_CLASSES, *SCL_CLOUD_CLASSES))
            else:
                bits = sum(1 << b for b in QA_CLOUD_BITS) | 1
                bad = (codes & bits) != 0
            return bad | ~ok
    spectral = scene_cloud_mask(scene, grid, references=references, cache_dir=cache_dir)
    if spectral is not None and references:
        log.info(
            "scene %s: clouds by the multi-temporal tests against %d other date(s) on %.0f%% of the AOI",
            ref.id,
            len(references),
            100 * spectral.temporal_share,
        )
    return None if spectral is None else spectral.cloud_or_shadow | ~spectral.valid


def _aoi_filter(found: Sequence[Any], search: Any) -> list[Any]:
    """The scenes whose AOI cloud and valid-data percentages pass the search's limits; each scene left out
    is named on the console with the reason (e.g. a Landsat 7 image that is mostly scan-line gaps)."""
    kept = []
    for s in found:
        why = []
        if s.aoi_cloud_pct is not None and s.aoi_cloud_pct > search.max_aoi_cloud:
            why.append(f"{s.aoi_cloud_pct:.0f}% cloud on the AOI > max_aoi_cloud {search.max_aoi_cloud:g}%")
        if s.aoi_valid_pct is not None and s.aoi_valid_pct < search.min_valid:
            why.append(f"{s.aoi_valid_pct:.0f}% valid data on the AOI < min_valid {search.min_valid:g}%")
        if why:  # partial frames (swath edges, Landsat 7 gaps) warn; cloudy scenes are the common case
            level = logging.WARNING if "valid data" in why[-1] else logging.INFO
            log.log(level, "scene %s left out: %s", s.id, "; ".join(why))
        else:
            kept.append(s)
    return kept


SceneGroup = tuple[tuple[int | None, str], list[Any]]
"""Scenes of one acquisition: ``((orbit, "YYYY-MM-DD"), [scenes of that orbit and day])``."""


@dataclass(frozen=True)
class SceneSearch:
    """Scenes a catalogue search found over an area, grouped into acquisitions (output of
    :func:`search_scenes`).

    Attributes
    ----------
    area
        The area searched (:class:`geodeform.search.AOI`); images are read on its grid.
    groups
        Acquisitions that pass the AOI filters, clearest first: scenes of one orbit and day (adjacent tiles)
        form one acquisition.
    notes
        What the search found and kept, for the log.
    """

    area: AOI
    groups: list[SceneGroup]
    notes: tuple[str, ...] = ()


def search_filters(search: SearchConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`geodeform.search.search` for the dates, months, relative orbits and
    catalogue of ``search`` (the area and the cloud filters are the caller's)."""
    return {
        "start": search.start,
        "end": search.end,
        "months": search.months,
        "orbit": list(search.orbits) or None,
        "catalog": search.catalog,
    }


def search_scenes(search: Any, *, area: AOI | None = None) -> SceneSearch:
    """Query the catalogue of a search config, apply the AOI cloud filters and group scenes by orbit and day.

    Parameters
    ----------
    search
        :class:`geodeform.config.SearchConfig`.
    area
        Area searched instead of ``search.aoi`` (e.g. one tile of it); scenes are then kept when their tile
        is ``area.tile`` (if set).

    Returns
    -------
    SceneSearch
    """
    tiles = list(search.aoi.tiles)
    wanted = tiles if len(tiles) > 1 else []
    if area is None:
        area_kwargs: dict[str, Any] = {}
        if search.aoi.bbox is not None:
            area_kwargs["bbox"] = list(search.aoi.bbox)
        elif search.aoi.geojson is not None:
            area_kwargs["geojson"] = search.aoi.geojson
        if len(tiles) == 1:
            area_kwargs["tile"] = tiles[0]
        if tiles and len(tiles) > 1 and not area_kwargs:
            area = _union_of_tiles(tiles)
        else:
            area = make_aoi(**area_kwargs)
    elif area.tile is not None:
        wanted = [area.tile]
    table = stac_search(search.collection, aoi=area, max_cloud=search.max_cloud, **search_filters(search))
    # AOI cloud filters here, not in the search: scenes of collections without a cloud band (L1C, SAR,
    # local files) have no AOI score and are kept.
    found = list(table)
    scenes = _aoi_filter(found, search)
    unscored = sum(s.aoi_cloud_pct is None for s in scenes)
    if wanted:
        names = {t.upper().lstrip("0") for t in wanted}
        scenes = [s for s in scenes if s.tile is None or s.tile.upper().lstrip("0") in names]
    groups: dict[tuple[int | None, str], list[Any]] = {}
    for s in scenes:
        groups.setdefault((s.orbit, s.datetime.date().isoformat()), []).append(s)
    # The clearest groups first (the AOI cloud of their scenes).
    ranked = sorted(groups.items(), key=lambda kv: min(s.rank_key for s in kv[1]))
    note = (
        f"{len(found)} scenes found, {len(scenes)} pass the AOI filters ({unscored} without an AOI cloud "
        "score)"
    )
    return SceneSearch(area, ranked, (note,))


def clearest_acquisitions(found: SceneSearch, max_images: int) -> list[SceneGroup]:
    """The default choice: one orbit per day (the clearest), the ``max_images`` clearest days, by date."""
    best_per_day: dict[str, SceneGroup] = {}
    for kv in found.groups:  # clearest first
        best_per_day.setdefault(kv[0][1], kv)
    ranked = list(best_per_day.values())
    return sorted(ranked[:max_images], key=lambda kv: (kv[0][1], kv[0][0] or 0))


def stack_from_search(
    search: Any,
    run_dir: Path,
    *,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    roi: Sequence[float] | None = None,
    found: SceneSearch | None = None,
    chosen: list[SceneGroup] | None = None,
) -> ImageStack:
    """Search the catalogue, keep the clearest ``max_images`` over the AOI and read them on one grid.

    Scenes of one orbit and one day (adjacent MGRS tiles) are mosaicked into one acquisition, so products
    have no seam gaps.

    Parameters
    ----------
    search
        :class:`geodeform.config.SearchConfig`.
    run_dir
        Images go to ``<run_dir>/images``.
    found, chosen
        A search already made (:func:`search_scenes`) and the acquisitions of it to read (default
        :func:`clearest_acquisitions`), e.g. chosen around an event date.

    Raises
    ------
    NoDataError
        No scene matches (the message says after which filter) or fewer than two dates remain.
    """
    if found is None:
        found = search_scenes(search)
    area = found.area
    if chosen is None:
        chosen = clearest_acquisitions(found, search.max_images)
    if len({d for (_, d), _ in chosen}) < 2:
        raise NoDataError(
            f"only {len(chosen)} acquisition date(s) over the AOI between {search.start} and {search.end}: "
            f"{'; '.join(found.notes)} (max AOI cloud {search.max_aoi_cloud}%, min valid "
            f"{search.min_valid}%); widen the dates or relax search.max_aoi_cloud / search.min_valid"
        )
    first = chosen[0][1][0]
    res = search.resolution or band_resolution(SceneRef.from_any(first), search.band)
    agrid = aoi_grid(make_aoi(bbox=list(roi)) if roi is not None else area, res)
    shape = (agrid.height, agrid.width)
    grid = GeoGrid(crs=_crs(agrid.crs), transform=agrid.transform, shape=shape)
    out = run_dir / "images"
    out.mkdir(parents=True, exist_ok=True)
    acqs: list[Acquisition] = []
    for n, ((orbit, day), members) in enumerate(chosen):
        ids = tuple(sorted(str(s.id) for s in members))
        key = content_key("search", ids, search.band, agrid.key, search.mask_clouds)
        if search.mask_clouds and not all(_has_mask_band(s) for s in members):  # multi-temporal masks
            key = content_key(key, sorted(str(s.id) for s in _nearest_dates(chosen, day)))
        path = out / f"{day}_{orbit if orbit is not None else 'x'}.tif"
        if not _existing(path, key):
            mosaic = np.full(shape, np.nan, dtype=np.float32)
            for s in members:
                data = read_aoi(s, search.band, agrid, cache_dir=cache_dir, resampling="cubic")
                if search.mask_clouds:
                    bad = _cloud_mask(s, agrid, cache_dir, _nearest_dates(chosen, day))
                    if bad is not None:
                        data = np.where(bad, np.nan, data).astype(np.float32)
                fill = ~np.isfinite(mosaic) & np.isfinite(data)
                mosaic[fill] = data[fill]
            _write_image(
                path, mosaic, grid, {"GEODEFORM_KEY": key, "ACQUISITION_DATE": day, "SCENES": ",".join(ids)}
            )
        acqs.append(
            Acquisition("+".join(ids), np.datetime64(day, "D"), orbit, path, _valid_fraction(path), key, ids)
        )
        if progress:
            progress(n + 1, len(chosen))
    notes = [f"{'; '.join(found.notes)}, {len(chosen)} acquisitions kept (max_images={search.max_images})"]
    return ImageStack(acqs, grid, float(res), f"search {search.collection} @ {search.catalog}", notes)


def _has_mask_band(scene: Any) -> bool:
    return any(b in SceneRef.from_any(scene).assets for b in _MASK_BANDS)


def _nearest_dates(chosen: Sequence[SceneGroup], day: str) -> list[Any]:
    """Scenes of the other chosen dates nearest to ``day`` (at most :data:`MAX_CLOUD_REFERENCES` dates)."""
    target = np.datetime64(day, "D")
    others = [(abs(int((np.datetime64(d, "D") - target).astype(int))), m) for (_, d), m in chosen if d != day]
    others.sort(key=lambda t: t[0])
    return [s for _, members in others[:MAX_CLOUD_REFERENCES] for s in members]


def _crs(text: str) -> Any:
    return CRS.from_user_input(text)


def _union_of_tiles(tiles: Sequence[str]) -> Any:
    parts = [aoi_from_tile(t) for t in tiles]
    zones = {p.epsg for p in parts}
    if len(zones) > 1:
        raise InvalidInputError(
            f"aoi.tiles {', '.join(tiles)} span several UTM zones ({sorted(zones)}); one job needs one grid: "
            "split the survey per zone or give a bbox"
        )
    return AOI(unary_union([p.geometry for p in parts]), parts[0].epsg, "tiles " + ",".join(tiles), None)
