"""Orthorectification of images that come with RPCs (Pléiades, SPOT 6/7, WorldView, PlanetScope basic) or
only ground control points, onto a job grid, with a DEM; optional refinement of the sensor model against a
reference image.

For every pixel centre of the target grid, its longitude/latitude and its height (the DEM resampled
bilinearly onto the grid, metres; or one constant height where the terrain allows it) go through GDAL's RPC
transformer (rasterio's :class:`~rasterio.transform.RPCTransformer`) to image (row, col); an optional
:class:`ImageCorrection` (shift or affine in image space) is applied, and the image is resampled there
(cubic spline). GCP-only images use GDAL's GCP polynomial transformer (no terrain term: GCPs fix a plane).

Refinement (:func:`refine_rpc`), as COSI-Corr / CO-REGIS do: the orthorectified image is matched against a
reference image already on the grid (zero-normalised cross-correlation of chips, on stable ground only);
each node gives where the image really sees that ground point, and a shift or an affine in image space is
fitted by robust least squares, then iterated until it changes by less than 0.01 px.

Heights are used as given (RPCs expect ellipsoidal heights; a geoid-referenced DEM such as the Copernicus
DEM leaves an error of (geoid undulation) x (parallax per metre), which the refinement absorbs as a shift).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import rasterio
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.transform import GCPTransformer, RPCTransformer
from scipy import ndimage

from geodeform.errors import InvalidInputError, NoDataError
from geodeform.io.grid import GeoGrid
from geodeform.io.masks import raster_on_grid
from geodeform.io.raster import NotGeoreferencedError

__all__ = [
    "ImageCorrection",
    "OrthoImage",
    "Refinement",
    "has_sensor_model",
    "image_coordinates",
    "orthorectify",
    "parallax_px",
    "refine_rpc",
    "sensor_grid",
]

log = logging.getLogger(__name__)

CorrectionModel = Literal["shift", "affine"]
# Terrain parallax (px) over the RPC height range below which one constant height is good enough.
MAX_FLAT_PARALLAX_PX = 0.5


@dataclass(frozen=True)
class ImageCorrection:
    """An affine correction in image space: ``row' = r0 + r_row * row + r_col * col`` (same for columns).

    Rows and columns are 0-based pixel-centre coordinates of the raw image. The identity is
    ``ImageCorrection()``; a pure shift has only ``r0`` and ``c0``.
    """

    r0: float = 0.0
    r_row: float = 1.0
    r_col: float = 0.0
    c0: float = 0.0
    c_row: float = 0.0
    c_col: float = 1.0

    def apply(self, rows: NDArray[np.float64], cols: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        """Corrected (rows, cols)."""
        return (
            self.r0 + self.r_row * rows + self.r_col * cols,
            self.c0 + self.c_row * rows + self.c_col * cols,
        )

    def then(self, other: ImageCorrection) -> ImageCorrection:
        """This correction followed by ``other``."""
        a = np.array([[self.r_row, self.r_col, self.r0], [self.c_row, self.c_col, self.c0], [0, 0, 1.0]])
        b = np.array(
            [[other.r_row, other.r_col, other.r0], [other.c_row, other.c_col, other.c0], [0, 0, 1.0]]
        )
        m = b @ a
        return ImageCorrection(m[0, 2], m[0, 0], m[0, 1], m[1, 2], m[1, 0], m[1, 1])


class OrthoImage(NamedTuple):
    """An orthorectified band.

    Attributes
    ----------
    data
        float32 on ``grid``, NaN outside the image or where it has no data.
    grid
        The target grid.
    rows, cols
        Image coordinates (0-based pixel centres, corrected) each grid pixel was sampled at.
    """

    data: NDArray[np.float32]
    grid: GeoGrid
    rows: NDArray[np.float64]
    cols: NDArray[np.float64]


def has_sensor_model(path: str | os.PathLike[str]) -> bool:
    """True when a raster has no geotransform but RPCs or GCPs (it needs :func:`orthorectify`)."""
    with rasterio.open(path) as src:
        georeferenced = src.crs is not None and not src.transform.is_identity
        return not georeferenced and (bool(src.rpcs) or bool(src.gcps[0]))


def sensor_grid(path: str | os.PathLike[str], *, height: float | None = None) -> GeoGrid:
    """A north-up UTM grid covering an RPC or GCP image at about its own pixel size (metres, rounded to
    0.1 m): the job grid when no input image has a geotransform.

    The footprint is the image outline through the sensor model at ``height`` (default: the RPC mean
    height), so it is approximate where the relief is high; pixels of the grid the image does not see are
    no data after :func:`orthorectify`.

    Raises
    ------
    NotGeoreferencedError
        The raster has neither RPCs nor GCPs.
    """
    with rasterio.open(path) as src:
        rpcs, (gcps, gcp_crs), shape = src.rpcs, src.gcps, (src.height, src.width)
    rows = np.r_[np.linspace(0, shape[0], 9), np.full(9, shape[0]), np.linspace(shape[0], 0, 9), np.zeros(9)]
    cols = np.r_[np.zeros(9), np.linspace(0, shape[1], 9), np.full(9, shape[1]), np.linspace(shape[1], 0, 9)]
    if rpcs:
        z = rpcs.height_off if height is None else height
        with RPCTransformer(rpcs) as t:
            lon, lat = t.xy(rows, cols, zs=np.full(rows.size, z), offset="ul")
    elif gcps:
        with GCPTransformer(gcps) as t:
            x, y = t.xy(rows, cols, offset="ul")
        lon, lat = Transformer.from_crs(gcp_crs, "EPSG:4326", always_xy=True).transform(x, y)
    else:
        raise NotGeoreferencedError(f"{path} has neither a geotransform nor RPCs nor ground control points")
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    zone = int((float(np.mean(lon)) + 180) // 6) + 1
    epsg = (32600 if float(np.mean(lat)) >= 0 else 32700) + zone
    x, y = Transformer.from_crs("EPSG:4326", epsg, always_xy=True).transform(lon, lat)
    x, y = np.asarray(x), np.asarray(y)
    # pixel size: the image's mean ground spacing along its edges (each edge has 8 steps)
    edge = np.hypot(np.diff(x.reshape(4, 9), axis=1), np.diff(y.reshape(4, 9), axis=1)).sum(axis=1)
    pixel = round(
        float(np.mean([edge[0] / shape[0], edge[1] / shape[1], edge[2] / shape[0], edge[3] / shape[1]])), 1
    )
    x0, y1 = np.floor(x.min() / pixel) * pixel, np.ceil(y.max() / pixel) * pixel
    width = int(np.ceil((x.max() - x0) / pixel))
    height_px = int(np.ceil((y1 - y.min()) / pixel))
    return GeoGrid(
        crs=rasterio.crs.CRS.from_epsg(epsg),
        transform=rasterio.transform.from_origin(x0, y1, pixel, pixel),
        shape=(height_px, width),
    )


def parallax_px(rpcs: rasterio.rpc.RPC) -> float:
    """Image displacement (pixels) between the lowest and highest heights of an RPC's validity range."""
    t = RPCTransformer(rpcs)
    lo, hi = rpcs.height_off - rpcs.height_scale, rpcs.height_off + rpcs.height_scale
    r, c = t.rowcol([rpcs.long_off] * 2, [rpcs.lat_off] * 2, zs=[lo, hi], op=lambda v: v)
    return float(np.hypot(r[1] - r[0], c[1] - c[0]))


def _grid_lonlat(grid: GeoGrid) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width].astype(np.float64)
    t = grid.transform
    x = t.c + t.a * (cols + 0.5) + t.b * (rows + 0.5)
    y = t.f + t.d * (cols + 0.5) + t.e * (rows + 0.5)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _heights(
    path: Path,
    rpcs: rasterio.rpc.RPC,
    grid: GeoGrid,
    dem: str | os.PathLike[str] | None,
    height: float | None,
) -> NDArray[np.float64] | float:
    if dem is not None:
        z = raster_on_grid(dem, grid, resampling="bilinear", fill=np.nan)
        if not np.isfinite(z).all():
            raise NoDataError(
                f"the DEM {dem} does not cover the whole grid of {path} ({np.isnan(z).mean():.0%} of the "
                "pixels have no height); give a DEM that covers the area (e.g. a larger Copernicus DEM crop)"
            )
        return z
    if height is not None:
        return float(height)
    parallax = parallax_px(rpcs)
    if parallax > MAX_FLAT_PARALLAX_PX:
        raise InvalidInputError(
            f"{path} has RPCs whose terrain parallax is {parallax:.1f} px over its height range "
            f"({rpcs.height_off - rpcs.height_scale:.0f}..{rpcs.height_off + rpcs.height_scale:.0f} m), so "
            "it cannot be orthorectified without a DEM; give one (job 'dem:' or dem=, e.g. the Copernicus "
            "DEM GLO-30 crop of the area), or height= if the area is really flat"
        )
    log.info("%s: terrain parallax %.2f px, orthorectified at the RPC mean height", path, parallax)
    return float(rpcs.height_off)


def image_coordinates(
    path: str | os.PathLike[str],
    grid: GeoGrid,
    *,
    dem: str | os.PathLike[str] | None = None,
    height: float | None = None,
    correction: ImageCorrection | None = None,
    gcp_order: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Image (row, col) seen at every pixel centre of ``grid`` (0-based pixel centres, float64).

    Parameters
    ----------
    path
        Raster with RPCs or GCPs.
    grid
        Target grid.
    dem, height
        Terrain heights, metres: a DEM raster (resampled bilinearly onto the grid), or one constant height.
        Neither: the RPC mean height, refused when the terrain parallax over the RPC's height range exceeds
        0.5 px.
    correction
        Image-space correction applied after the sensor model.
    gcp_order
        GCP-only images: GDAL's polynomial (order chosen by GDAL from the number of GCPs) for 1-3, a thin
        plate spline above.

    Raises
    ------
    NotGeoreferencedError
        The raster has neither RPCs nor GCPs.
    InvalidInputError
        RPC image without a DEM where the terrain demands one.
    NoDataError
        The DEM does not cover the grid.
    """
    p = Path(path)
    lon, lat = _grid_lonlat(grid)
    with rasterio.open(p) as src:
        rpcs, (gcps, gcp_crs) = src.rpcs, src.gcps
    if rpcs:
        z = _heights(p, rpcs, grid, dem, height)
        zs = np.broadcast_to(z, lon.shape)
        with RPCTransformer(rpcs) as t:
            r, c = t.rowcol(lon.ravel(), lat.ravel(), zs=zs.ravel(), op=lambda v: v)
    elif gcps:
        x, y = Transformer.from_crs("EPSG:4326", gcp_crs, always_xy=True).transform(lon, lat)
        with GCPTransformer(gcps, tps=gcp_order > 3) as t:
            r, c = t.rowcol(np.ravel(x), np.ravel(y), op=lambda v: v)
    else:
        raise NotGeoreferencedError(
            f"{p} has neither a geotransform nor RPCs nor ground control points; it cannot be placed on "
            "Earth (georeference it first, e.g. gdal_translate -gcp ... or a geotransform)"
        )
    rows = np.asarray(r, np.float64).reshape(grid.shape) - 0.5  # GDAL: pixel corners; here: centres
    cols = np.asarray(c, np.float64).reshape(grid.shape) - 0.5
    if correction is not None:
        rows, cols = correction.apply(rows, cols)
    return rows, cols


def _sample(
    image: NDArray[np.float32], rows: NDArray[np.float64], cols: NDArray[np.float64]
) -> NDArray[np.float32]:
    valid = np.isfinite(image)
    filled = np.where(valid, image, np.nanmean(image) if valid.any() else 0.0)
    out = ndimage.map_coordinates(filled, [rows, cols], order=3, mode="constant", cval=np.nan)
    # cubic support is 4 x 4 pixels: a no-data pixel within it makes the result no data
    bad = ndimage.map_coordinates(
        (~valid).astype(np.float32), [rows, cols], order=1, mode="constant", cval=1.0
    )
    out[bad > 0] = np.nan
    inside = (rows >= 0) & (cols >= 0) & (rows <= image.shape[0] - 1) & (cols <= image.shape[1] - 1)
    out[~inside] = np.nan
    return out.astype(np.float32)


def orthorectify(
    path: str | os.PathLike[str],
    grid: GeoGrid,
    *,
    band: int = 1,
    dem: str | os.PathLike[str] | None = None,
    height: float | None = None,
    correction: ImageCorrection | None = None,
) -> OrthoImage:
    """Orthorectify one band of an RPC or GCP image onto ``grid`` (cubic resampling, NaN = no data).

    Parameters
    ----------
    path
        Raster with RPCs (``.RPB``/``_RPC.TXT`` sidecar or embedded) or GCPs.
    grid
        Target grid (the job grid).
    band
        1-based band index.
    dem, height, correction
        See :func:`image_coordinates`.

    Returns
    -------
    OrthoImage

    Raises
    ------
    NoDataError
        The image does not overlap the grid.
    """
    rows, cols = image_coordinates(path, grid, dem=dem, height=height, correction=correction)
    with rasterio.open(path) as src:
        if not 1 <= band <= src.count:
            raise InvalidInputError(f"band {band} requested but {path} has bands 1..{src.count}")
        image = np.ma.filled(src.read(band, masked=True).astype(np.float32), np.nan)
    data = _sample(image, rows, cols)
    if not np.isfinite(data).any():
        raise NoDataError(
            f"{path} does not overlap the grid once orthorectified; check the AOI and the image"
        )
    return OrthoImage(data, grid, rows, cols)


def _match_nodes(
    ortho: NDArray[np.float32],
    reference: NDArray[np.float32],
    stable: NDArray[np.bool_],
    chip: int,
    step: int,
) -> tuple[NDArray[np.float64], ...]:
    """ZNCC of chips (integer search ±``chip // 4`` px, parabolic sub-pixel peak) at stable nodes.

    Returns (rows, cols, dy, dx) of the nodes that matched: a feature at (row, col) of the reference is at
    (row + dy, col + dx) of the ortho image.
    """
    half, radius = chip // 2, chip // 4
    out: list[tuple[float, float, float, float]] = []
    h, w = reference.shape
    for r in range(half + radius, h - half - radius, step):
        for c in range(half + radius, w - half - radius, step):
            if not stable[r, c]:
                continue
            ref = reference[r - half : r + half, c - half : c + half]
            win = ortho[r - half - radius : r + half + radius, c - half - radius : c + half + radius]
            if not (np.isfinite(ref).all() and np.isfinite(win).all()) or ref.std() == 0:
                continue
            scores = np.full((2 * radius + 1, 2 * radius + 1), -1.0)
            a = (ref - ref.mean()) / ref.std()
            for i in range(2 * radius + 1):
                for j in range(2 * radius + 1):
                    b = win[i : i + chip, j : j + chip]
                    s = b.std()
                    if s > 0:
                        scores[i, j] = float((a * (b - b.mean())).mean() / s)
            i, j = np.unravel_index(np.argmax(scores), scores.shape)
            if not (0 < i < 2 * radius and 0 < j < 2 * radius) or scores[i, j] < 0.5:
                continue
            di = _parabola(scores[i - 1, j], scores[i, j], scores[i + 1, j])
            dj = _parabola(scores[i, j - 1], scores[i, j], scores[i, j + 1])
            out.append((r, c, i - radius + di, j - radius + dj))
    if not out:
        return tuple(np.empty(0) for _ in range(4))
    return tuple(np.array(col, dtype=np.float64) for col in zip(*out, strict=True))


def _parabola(left: float, centre: float, right: float) -> float:
    den = left - 2 * centre + right
    return 0.0 if den == 0 else float(0.5 * (left - right) / den)


def _fit(
    src: tuple[NDArray[np.float64], NDArray[np.float64]],
    dst: tuple[NDArray[np.float64], NDArray[np.float64]],
    model: CorrectionModel,
) -> ImageCorrection:
    """Robust least squares of ``dst = A(src)`` (3 passes rejecting residuals over 3 robust sigmas)."""
    keep = np.ones(src[0].size, bool)
    for _ in range(3):
        if model == "shift":
            dr, dc = np.median((dst[0] - src[0])[keep]), np.median((dst[1] - src[1])[keep])
            corr = ImageCorrection(r0=float(dr), c0=float(dc))
        else:
            design = np.column_stack([np.ones(keep.sum()), src[0][keep], src[1][keep]])
            pr = np.linalg.lstsq(design, dst[0][keep], rcond=None)[0]
            pc = np.linalg.lstsq(design, dst[1][keep], rcond=None)[0]
            corr = ImageCorrection(*(float(v) for v in (*pr, *pc)))
        fr, fc = corr.apply(src[0], src[1])
        res = np.hypot(fr - dst[0], fc - dst[1])
        keep = res <= max(3 * 1.4826 * np.median(res), 0.05)
    return corr


@dataclass(frozen=True)
class Refinement:
    """Result of :func:`refine_rpc`: the correction, the nodes used and the residual after fitting (px)."""

    correction: ImageCorrection
    nodes: int
    residual_px: float
    iterations: int


def refine_rpc(
    path: str | os.PathLike[str],
    reference: NDArray[np.float32],
    grid: GeoGrid,
    *,
    dem: str | os.PathLike[str] | None = None,
    height: float | None = None,
    stable: NDArray[np.bool_] | None = None,
    model: CorrectionModel = "shift",
    chip: int = 32,
    step: int = 16,
    max_iterations: int = 5,
) -> Refinement:
    """Estimate an image-space correction of an RPC model so that its orthoimage lines up with ``reference``.

    Parameters
    ----------
    path
        RPC (or GCP) image.
    reference
        A reference image already on ``grid`` (float32, NaN = no data), e.g. the pre-event orthoimage.
    grid
        The common grid.
    dem, height
        Terrain (see :func:`image_coordinates`).
    stable
        Stable ground on ``grid`` (True = static); default: everywhere. Moving ground must be excluded, or the
        fit absorbs the deformation.
    model
        ``shift`` (2 parameters: the usual RPC bias) or ``affine`` (6).
    chip, step
        Chip size and node spacing of the matching, grid pixels.
    max_iterations
        Orthorectify-match-fit passes (stops when the update is below 0.01 px).

    Returns
    -------
    Refinement

    Raises
    ------
    NoDataError
        Fewer than 6 stable nodes matched (no texture, no overlap, or a bias beyond ``chip // 4`` px).
    """
    stable = np.ones(grid.shape, bool) if stable is None else stable
    correction, nodes, residual = ImageCorrection(), 0, float("nan")
    for it in range(1, max_iterations + 1):
        ortho = orthorectify(path, grid, dem=dem, height=height, correction=correction)
        r, c, dy, dx = _match_nodes(ortho.data, reference, stable, chip, step)
        nodes = r.size
        if nodes < 6:
            raise NoDataError(
                f"refining the RPCs of {path}: only {nodes} stable nodes matched the reference; check the "
                "overlap, the stable-ground mask, or orthorectify with a DEM first (the bias may exceed "
                f"{chip // 4} px)"
            )
        # The ortho pixel at (r + dy, c + dx) shows what the reference shows at (r, c): the image sees the
        # ground of (r, c) where the current model puts (r + dy, c + dx).
        seen = [ndimage.map_coordinates(a, [r + dy, c + dx], order=1) for a in (ortho.rows, ortho.cols)]
        now = [a[r.astype(int), c.astype(int)] for a in (ortho.rows, ortho.cols)]
        update = _fit((now[0], now[1]), (seen[0], seen[1]), model)
        correction = correction.then(update)
        fr, fc = update.apply(now[0], now[1])
        residual = float(np.median(np.hypot(fr - seen[0], fc - seen[1])))
        probe = np.array([0.0, float(ortho.rows.max())]), np.array([0.0, float(ortho.cols.max())])
        moved = np.hypot(*(np.subtract(update.apply(*probe), probe)))
        log.info("%s: refinement pass %d, %d nodes, update %.3f px", path, it, nodes, float(moved.max()))
        if moved.max() < 0.01:
            break
    return Refinement(correction, nodes, residual, it)
