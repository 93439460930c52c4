"""AOI reads: the area of interest of one band for each scene, warped onto one common grid, cached on disk.

The common grid is in the UTM zone of the AOI (the tile's zone for a tile AOI), north-up, with the band's
pixel size, and its edges snapped to multiples of that size so grids of overlapping AOIs line up. Each scene
is read through a rasterio ``WarpedVRT`` (only the blocks under the AOI are fetched from a COG), converted
to float32 with NaN for no data, and cached as a GeoTIFF keyed by item id + band + grid. Cache files are
written to a temporary name, checksummed (SHA-256 sidecar) and renamed, so a failed or interrupted download
never leaves a partial file; a cache file whose checksum does not match is discarded and read again. Remote
reads (``http(s)://``, ``s3://``) are retried with exponential back-off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geodeform.bands import S2_BAND_ASSETS
from geodeform.errors import DataError, InvalidInputError
from geodeform.io.atomic import atomic_output
from geodeform.io.raster import CorruptRasterError, NoOverlapError, NotGeoreferencedError, gdal_path

__all__ = [
    "AOIGrid",
    "SceneRef",
    "aoi_grid",
    "band_resolution",
    "default_cache_dir",
    "read_aoi",
    "read_aoi_stack",
]

log = logging.getLogger(__name__)

_REMOTE = ("http://", "https://", "s3://", "/vsicurl/", "/vsis3/")
# Sentinel-2 / Landsat band codes -> Earth Search asset keys, so users may say B04 or red.
_BAND_ALIASES = {
    **S2_BAND_ASSETS,
    "SR_B4": "red",
    "SR_B5": "nir08",
    "QA_PIXEL": "qa_pixel",
    "B8": "pan",  # Landsat 7/8/9 panchromatic, 15 m (the band ITS_LIVE matches)
    "PAN": "pan",
    "VV": "vv",
    "VH": "vh",
    "HH": "hh",
    "HV": "hv",
    "DEM": "data",
}


def default_cache_dir() -> Path:
    """``$GEODEFORM_CACHE`` or ``$XDG_CACHE_HOME/geodeform`` (``~/.cache/geodeform``), plus ``/aoi``."""
    base = (
        os.environ.get("GEODEFORM_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geodeform"
    )
    return Path(base) / "aoi"


@dataclass(frozen=True)
class AOIGrid:
    """A north-up grid: EPSG code, pixel size and upper-left corner (metres), shape.

    Attributes
    ----------
    epsg
        Projected CRS (UTM zone of the AOI).
    resolution
        Pixel size, metres (square pixels).
    x0, y0
        Map coordinates of the upper-left corner of the upper-left pixel, metres.
    width, height
        Columns and rows.
    """

    epsg: int
    resolution: float
    x0: float
    y0: float
    width: int
    height: int

    @property
    def crs(self) -> str:
        """``EPSG:nnnnn``."""
        return f"EPSG:{self.epsg}"

    @property
    def transform(self) -> Any:
        """Affine pixel -> map transform (+x east, -y down the rows)."""
        from affine import Affine

        return Affine(self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax), metres."""
        r = self.resolution
        return (self.x0, self.y0 - self.height * r, self.x0 + self.width * r, self.y0)

    @property
    def key(self) -> str:
        """Short stable hash of the grid, used in cache keys."""
        text = json.dumps([self.epsg, self.resolution, self.x0, self.y0, self.width, self.height])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def coords(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pixel-centre x (east) and y (north) coordinates, metres."""
        r = self.resolution
        cols = np.arange(self.width, dtype=np.float64) + 0.5
        rows = np.arange(self.height, dtype=np.float64) + 0.5
        return self.x0 + r * cols, self.y0 - r * rows


def aoi_grid(aoi: Any, resolution: float, *, epsg: int | None = None) -> AOIGrid:
    """The common grid covering an AOI: its UTM zone, ``resolution`` metres, edges snapped to the pixel size.

    Parameters
    ----------
    aoi
        :class:`geodeform.search.AOI`.
    resolution
        Pixel size, metres (> 0).
    epsg
        Override the AOI's UTM zone.
    """
    if not resolution or resolution <= 0 or not math.isfinite(resolution):
        raise InvalidInputError(f"grid resolution must be a positive number of metres, got {resolution!r}")
    code = epsg or aoi.epsg
    xmin, ymin, xmax, ymax = aoi.projected(code).bounds
    x0 = math.floor(xmin / resolution) * resolution
    y0 = math.ceil(ymax / resolution) * resolution
    width = max(1, math.ceil((xmax - x0) / resolution))
    height = max(1, math.ceil((y0 - ymin) / resolution))
    if width * height > 50_000_000:
        raise InvalidInputError(
            f"the AOI grid would be {width} x {height} pixels at {resolution:g} m; use a smaller AOI or a "
            "coarser resolution"
        )
    return AOIGrid(code, float(resolution), x0, y0, width, height)


@dataclass(frozen=True)
class SceneRef:
    """What an AOI read needs from a scene: id, acquisition time and asset hrefs."""

    id: str
    datetime: datetime | None
    assets: dict[str, str]

    @classmethod
    def from_any(cls, scene: Any) -> SceneRef:
        """From a :class:`geodeform.search.Scene`, a ``pystac.Item`` or a SceneRef."""
        if isinstance(scene, SceneRef):
            return scene
        assets = scene.assets
        hrefs = {k: (v if isinstance(v, str) else v.href) for k, v in assets.items()}
        return cls(str(scene.id), getattr(scene, "datetime", None), hrefs)

    def href(self, band: str) -> tuple[str, str]:
        """``(asset key, href)`` of a band given by asset key (``red``) or band code (``B04``)."""
        for key in (band, _BAND_ALIASES.get(band.upper(), ""), band.lower()):
            if key and key in self.assets:
                return key, self.assets[key]
        raise InvalidInputError(
            f"scene {self.id} has no band {band!r}; its assets are: {', '.join(sorted(self.assets))}"
        )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "item"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_path(cache_dir: Path, item_id: str, band: str, href: str, grid: AOIGrid, resampling: str) -> Path:
    # A local file may be rewritten in place (remote assets are immutable): its size and time are in the key.
    stamp: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        st = os.stat(href)
        stamp = [st.st_size, st.st_mtime_ns]
    key = hashlib.sha256(
        json.dumps([item_id, band, href, grid.key, resampling, *stamp]).encode()
    ).hexdigest()[:16]
    return cache_dir / _safe_name(item_id) / f"{_safe_name(band)}-{grid.key}-{key}.tif"


def _load_cached(path: Path) -> NDArray[np.float32] | None:
    import rasterio

    sidecar = path.with_name(path.name + ".sha256")
    if not (path.is_file() and sidecar.is_file()):
        return None
    if sidecar.read_text().split()[0] != _sha256(path):
        log.warning("cache file %s fails its checksum; reading the scene again", path)
        for stale in (path, sidecar):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        return None
    with rasterio.open(path) as src:
        return src.read(1).astype(np.float32)


def _store(path: Path, data: NDArray[np.float32], grid: AOIGrid, tags: dict[str, str]) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "float32",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": float("nan"),
        "compress": "deflate",
        "predictor": 3,
        "tiled": grid.width >= 256 and grid.height >= 256,
    }
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data, 1)
            dst.update_tags(**tags)
        digest = _sha256(tmp)
    sidecar = path.with_name(path.name + ".sha256")
    with atomic_output(sidecar) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n")


def _warp(href: str, grid: AOIGrid, resampling: str, *, fresh: bool = False) -> NDArray[np.float32]:
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds

    path = gdal_path(href)
    # GDAL remembers a failed /vsicurl/ request; a retry must bypass that cache or it fails at once.
    options = {"CPL_VSIL_CURL_NON_CACHED": path} if fresh else {}
    if href.startswith(_REMOTE):  # no directory listing per remote read; local sidecars (.aux.xml) count
        options["GDAL_DISABLE_READDIR_ON_OPEN"] = "EMPTY_DIR"
    with rasterio.Env(**options), rasterio.open(path) as src:
        if src.crs is None:
            raise NotGeoreferencedError(
                f"{href} has no CRS, so it cannot be placed on the AOI grid; use a georeferenced product"
            )
        left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds)
        if (
            right <= src.bounds.left
            or left >= src.bounds.right
            or top <= src.bounds.bottom
            or (bottom >= src.bounds.top)
        ):
            raise NoOverlapError(f"{href} does not overlap the AOI; drop this scene or check the AOI")
        vrt_opts = {
            "crs": grid.crs,
            "transform": grid.transform,
            "width": grid.width,
            "height": grid.height,
            "resampling": Resampling[resampling],
            "add_alpha": src.nodata is None,
        }
        with WarpedVRT(src, **vrt_opts) as vrt:
            values = vrt.read(1).astype(np.float32)
            valid = vrt.read_masks(1) > 0
    values[~valid] = np.nan
    return values


def read_aoi(
    scene: Any,
    band: str,
    grid: AOIGrid,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    resampling: str = "bilinear",
    retries: int = 3,
    backoff: float = 0.5,
) -> NDArray[np.float32]:
    """Read one band of one scene on ``grid`` (float32, NaN = no data), through the on-disk cache.

    Parameters
    ----------
    scene
        :class:`geodeform.search.Scene`, ``pystac.Item`` or :class:`SceneRef`.
    band
        Asset key (``red``, ``nir``, ``scl``, ``qa_pixel``) or band code (``B04``, ``SR_B4``).
    grid
        Target grid (see :func:`aoi_grid`).
    cache_dir
        Cache folder (default :func:`default_cache_dir`); ``False``-y strings are not accepted.
    resampling
        rasterio resampling name: ``bilinear`` (default), ``nearest`` (masks/classes), ``cubic``,
        ``average``...
    retries, backoff
        Remote reads are tried ``1 + retries`` times, sleeping ``backoff * 2**i`` seconds in between.

    Raises
    ------
    InvalidInputError
        Unknown band or resampling.
    NotGeoreferencedError, CorruptRasterError, NoOverlapError
        The raster has no CRS, cannot be decoded, or misses the AOI.
    DataError
        The remote read still fails after the retries (nothing is written to the cache).
    """
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    if resampling not in Resampling.__members__:
        raise InvalidInputError(
            f"unknown resampling {resampling!r}; use nearest, bilinear, cubic, average..."
        )
    ref = SceneRef.from_any(scene)
    key, href = ref.href(band)
    path = _cache_path(Path(cache_dir or default_cache_dir()), ref.id, key, href, grid, resampling)
    cached = _load_cached(path)
    if cached is not None:
        return cached
    remote = href.startswith(_REMOTE)
    attempts = 1 + max(0, retries) if remote else 1
    for attempt in range(attempts):
        try:
            data = _warp(href, grid, resampling, fresh=attempt > 0)
            break
        except (NotGeoreferencedError, NoOverlapError):
            raise
        except RasterioError as exc:
            if attempt + 1 < attempts:
                delay = backoff * 2**attempt
                log.warning(
                    "reading %s failed (%s); retry %d/%d in %.1f s",
                    href,
                    exc,
                    attempt + 1,
                    attempts - 1,
                    delay,
                )
                time.sleep(delay)
                continue
            if not remote and Path(href.removeprefix("file://")).is_file():
                raise CorruptRasterError(
                    f"cannot decode {href} (band {key} of {ref.id}): {exc}; the file is corrupt or no raster"
                ) from exc
            where = f"after {attempts} attempts" if remote else "(local file)"
            raise DataError(
                f"cannot read band {key} of {ref.id} from {href} {where}: {exc}; check the link or the "
                "network and retry (nothing was cached)"
            ) from exc
    tags = {"item_id": ref.id, "band": key, "href": href, "resampling": resampling}
    _store(path, data, grid, tags)
    return data


def band_resolution(ref: SceneRef, band: str) -> float:
    """Pixel size (metres) of ``band`` of a scene, read from its raster header.

    Raises
    ------
    InvalidInputError
        The raster is not in a projected CRS (its pixel size is not in metres).
    DataError
        The raster cannot be opened.
    """
    import rasterio
    from rasterio.errors import RasterioError

    _, href = ref.href(band)
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(gdal_path(href)) as src:
            if src.crs is None or not src.crs.is_projected:
                raise InvalidInputError(
                    f"{href} is not in a projected CRS, so its pixel size is not in metres; pass resolution="
                )
            return float(abs(src.res[0]))
    except RasterioError as exc:
        raise DataError(f"cannot open {href} to find the band's pixel size: {exc}") from exc


def _naive_utc(when: datetime | None) -> np.datetime64:
    if when is None:
        return np.datetime64("NaT", "ns")
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(when, "ns")


def read_aoi_stack(
    scenes: Sequence[Any],
    band: str,
    aoi: Any,
    *,
    resolution: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    resampling: str = "bilinear",
    retries: int = 3,
    backoff: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Read the AOI of one band for every scene, on one common grid.

    Parameters
    ----------
    scenes
        Scenes (``SceneTable``, list of ``Scene`` or ``pystac.Item``).
    band
        Asset key or band code, e.g. ``red`` / ``B04``.
    aoi
        :class:`geodeform.search.AOI`; the grid is in its UTM zone.
    resolution
        Pixel size in metres (default: the band's pixel size in the first scene).
    cache_dir, resampling, retries, backoff
        See :func:`read_aoi`.
    progress
        ``progress(done, total)`` after each scene.

    Returns
    -------
    xarray.DataArray
        float32 ``(time, y, x)``, NaN = no data; coords ``time``, ``item_id``, ``x``/``y`` pixel centres (m,
        +x east, +y north); attrs ``crs`` (``EPSG:n``), ``transform`` (GDAL order), ``band``, ``resolution``.
    """
    import xarray as xr

    refs = [SceneRef.from_any(s) for s in scenes]
    if not refs:
        raise InvalidInputError("no scenes to read; run a search first")
    res = resolution or band_resolution(refs[0], band)
    grid = aoi_grid(aoi, res)
    layers = []
    for i, ref in enumerate(refs):
        layers.append(
            read_aoi(
                ref, band, grid, cache_dir=cache_dir, resampling=resampling, retries=retries, backoff=backoff
            )
        )
        if progress is not None:
            progress(i + 1, len(refs))
    x, y = grid.coords()
    times = [_naive_utc(r.datetime) for r in refs]
    return xr.DataArray(
        np.stack(layers),
        dims=("time", "y", "x"),
        coords={"time": times, "item_id": ("time", [r.id for r in refs]), "x": x, "y": y},
        name=band,
        attrs={
            "crs": grid.crs,
            "transform": tuple(grid.transform.to_gdal()),
            "band": band,
            "resolution": grid.resolution,
            "nodata": "NaN",
        },
    )
