"""A curved strike-slip rupture with known slip, and a pre/post image pair built from a real texture.

Used by the tests, the benchmarks and the tutorials: the texture is real, the motion is imposed, so trace
positions and slip profiles can be scored against the truth.

Geometry (pixel coordinates, the centre of pixel (r, c) at (r, c)): the trace is the curve
``col = c0 + trend (row - r0) + bend H (((row - r0) / (H / 2))**2 - 1/3)`` crossing the image from the top
row to the bottom row. Its strike vector ``s`` points toward increasing rows; the right-hand normal ``n``
(as seen on a map with row 0 at the top) is ``(s_col, -s_row)`` in (row, col).

Displacement (right-lateral slip ``S(t)`` and opening ``O(t)`` in metres, ``t`` in [0, 1] from the top row
to the bottom row, distance ``d`` to the trace in metres, + on the right side): a screw dislocation of a
fault slipping from the surface down to ``depth``,

    u = (-S ŝ + O n) · arctan(depth / d) / π,

so each side moves by half the slip at the trace and the motion decays over ``depth`` away from it. The
fault-parallel offset across the trace is ``S`` (+ = right-lateral), the fault-normal one ``O`` (+ = opening).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
from pyproj import Proj, Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.io import atomic_output
from geodeform.quake.mosaics import DisplacementTile, utm_crs

__all__ = [
    "GroundRupture",
    "RuptureModel",
    "SceneTile",
    "SyntheticRupture",
    "SyntheticScenes",
    "SyntheticTiles",
    "grid_vectors",
    "ground_rupture",
    "make_rupture_pair",
    "make_scenes",
    "make_tiles",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RuptureModel:
    """A curved right-lateral rupture across an image of ``shape`` pixels of ``pixel_size`` metres.

    Attributes
    ----------
    shape
        (rows, cols) of the image.
    pixel_size
        Pixel size, metres.
    slip_range
        Smallest and largest right-lateral slip along strike, metres.
    opening
        Amplitude of the fault-normal offset along strike, metres (+ opening).
    depth
        Depth of the slipping patch, metres: the distance over which the motion decays away from the trace.
    trend
        Columns per row of the trace's mean direction (0: the trace runs along the columns).
    bend
        Sagitta of the trace's curvature as a fraction of the image height.
    """

    shape: tuple[int, int]
    pixel_size: float = 10.0
    slip_range: tuple[float, float] = (2.0, 5.0)
    opening: float = 0.5
    depth: float = 8000.0
    trend: float = 0.35
    bend: float = 0.08

    def __post_init__(self) -> None:
        h, w = self.shape
        if h < 16 or w < 16 or self.pixel_size <= 0 or self.depth <= 0:
            raise InvalidInputError("RuptureModel needs shape ≥ 16 × 16 px, pixel_size > 0 and depth > 0")

    def _col(self, rows: F64) -> F64:
        h, w = self.shape
        u = (rows - 0.5 * h) / (0.5 * h)
        return 0.5 * w + self.trend * (rows - 0.5 * h) + self.bend * h * (u**2 - 1.0 / 3.0)

    def _dcol(self, rows: F64) -> F64:
        h = self.shape[0]
        return self.trend + self.bend * h * 2.0 * (rows - 0.5 * h) / (0.5 * h) ** 2

    def trace(self, n: int = 200) -> F64:
        """(n, 2) (row, col) vertices of the trace from the top row to the bottom row of the image."""
        rows = np.linspace(0.0, self.shape[0] - 1.0, n)
        return np.c_[rows, self._col(rows)]

    def slip(self, t: npt.ArrayLike) -> tuple[F64, F64]:
        """Right-lateral slip and opening (metres) at ``t`` in [0, 1] (top row to bottom row)."""
        tt = np.asarray(t, dtype=np.float64)
        lo, hi = self.slip_range
        s = 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.sin(2.0 * np.pi * 0.8 * tt + 0.6)
        return s, self.opening * np.sin(2.0 * np.pi * tt)

    def locate(self, rows: npt.ArrayLike, cols: npt.ArrayLike) -> tuple[F64, F64, F64, F64]:
        """Nearest trace point of every (row, col): its ``t``, the signed distance (px, + right side) and the
        unit strike vector (s_row, s_col) there."""
        r = np.asarray(rows, dtype=np.float64)
        c = np.asarray(cols, dtype=np.float64)
        h = self.shape[0]
        curv = self.bend * h * 2.0 / (0.5 * h) ** 2  # second derivative of col(row)
        qr = r.ravel() + self.trend * (c.ravel() - self._col(r.ravel())) / (1.0 + self.trend**2)
        for _ in range(8):  # Newton on the distance's derivative along the curve (exact nearest point)
            f, df = self._col(qr) - c.ravel(), self._dcol(qr)
            qr = qr - ((qr - r.ravel()) + f * df) / (1.0 + df**2 + f * curv)
        qc = self._col(qr)
        dc = self._dcol(qr)
        norm = np.hypot(1.0, dc)
        sr, sc = 1.0 / norm, dc / norm
        # Distance along the right-hand normal (sc, -sr) of the nearest point.
        d = (r.ravel() - qr) * sc - (c.ravel() - qc) * sr
        t = qr / (self.shape[0] - 1.0)
        return t.reshape(r.shape), d.reshape(r.shape), sr.reshape(r.shape), sc.reshape(r.shape)

    def truth(self, rows: npt.ArrayLike, cols: npt.ArrayLike) -> tuple[F64, F64]:
        """True (dx, dy) in pixels at reference (row, col): a feature there moves to (row + dy, col + dx)."""
        t, d, sr, sc = self.locate(rows, cols)
        s, o = self.slip(t)
        dm = d * self.pixel_size
        f = np.arctan(self.depth / np.where(dm == 0.0, 1e-9, dm)) / np.pi
        # strike (sr, sc), right normal (sc, -sr): u = f (-s * strike + o * normal), in (row, col) metres
        urow = f * (-s * sr + o * sc)
        ucol = f * (-s * sc - o * sr)
        return ucol / self.pixel_size, urow / self.pixel_size


@dataclass(frozen=True)
class SyntheticRupture:
    """Pre- and post-event images (float32) of a :class:`RuptureModel`, with the artefacts added.

    Attributes
    ----------
    reference, secondary
        Pre- and post-event images on the same grid.
    model
        The rupture (truth).
    stripe_px
        Amplitude of the detector stripes added to the post-event image's geometry (px, ± along columns).
    jitter_px
        Amplitude of the along-track attitude jitter added to the post-event geometry (px, along rows).
    """

    reference: npt.NDArray[np.float32]
    secondary: npt.NDArray[np.float32]
    model: RuptureModel
    stripe_px: float
    jitter_px: float


def make_rupture_pair(
    texture: npt.ArrayLike,
    *,
    model: RuptureModel | None = None,
    snr_db: float = 30.0,
    stripe_px: float = 0.03,
    stripe_width: int = 160,
    stripe_gain: float = 0.005,
    jitter_px: float = 0.02,
    jitter_period: float = 140.0,
    seed: int = 0,
) -> SyntheticRupture:
    """Warp a real texture by a known rupture, with noise, detector stripes and attitude jitter.

    Parameters
    ----------
    texture
        2-D image (the pre-event scene); a real satellite band keeps the test honest.
    model
        Rupture; default :class:`RuptureModel` on the texture's shape at 10 m pixels.
    snr_db
        Signal-to-noise ratio of the independent Gaussian noise of both images, dB.
    stripe_px, stripe_width
        Detector stripes: the post-event geometry is shifted by ± ``stripe_px`` along the columns in
        alternating bands of ``stripe_width`` columns (push-broom detector misalignment).
    stripe_gain
        Radiometric gain of the same bands, ± (detector calibration residuals). A gain step is a
        brightness edge that does not move with the ground, so it biases the chips across it: ± 2 %
        already gives ~0.1 px errors along the band edges.
    jitter_px, jitter_period
        Attitude jitter: a sine of ``jitter_px`` amplitude and ``jitter_period`` rows along the rows.
    seed
        Noise seed.

    Returns
    -------
    SyntheticRupture
        ``secondary(p + u(p) + artefacts) = reference(p)``, both with noise.
    """
    tex = np.asarray(texture, dtype=np.float64)
    if tex.ndim != 2:
        raise InvalidInputError(f"texture must be a 2-D image, got shape {tex.shape}")
    mdl = model if model is not None else RuptureModel(tex.shape)
    if mdl.shape != tex.shape:
        raise InvalidInputError(f"model shape {mdl.shape} differs from the texture's {tex.shape}")
    rr, cc = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in tex.shape), indexing="ij")
    band = np.where((cc // stripe_width) % 2 == 0, 1.0, -1.0)

    def artefacts(r: F64, c: F64) -> tuple[F64, F64]:
        sdx = stripe_px * np.where((c // stripe_width) % 2 == 0, 1.0, -1.0)
        return sdx, jitter_px * np.sin(2.0 * np.pi * r / jitter_period)

    pr, pc = rr.copy(), cc.copy()
    for _ in range(12):  # inverse map by fixed-point iteration: p = q - u(p)
        dx, dy = mdl.truth(pr, pc)
        adx, ady = artefacts(pr, pc)
        pr, pc = rr - dy - ady, cc - dx - adx
    sec = ndimage.map_coordinates(tex, [pr, pc], order=5, mode="mirror") * (1.0 + stripe_gain * band)
    rng = np.random.default_rng(seed)
    sigma = tex.std() / 10 ** (snr_db / 20.0)
    ref = tex + rng.normal(0.0, sigma, tex.shape)
    sec = sec + rng.normal(0.0, sigma, tex.shape)
    return SyntheticRupture(ref.astype(np.float32), sec.astype(np.float32), mdl, stripe_px, jitter_px)


GroundField = Callable[[F64, F64], tuple[F64, F64]]

_M_PER_DEG = 111_195.0


@dataclass(frozen=True)
class GroundRupture:
    """A straight right-lateral screw dislocation on the ground (output of :func:`ground_rupture`).

    Calling it with (lon, lat) in degrees returns the displacement (east, north) in metres along true east
    and true north (not along any grid's axes).

    Attributes
    ----------
    lon0, lat0
        A point of the trace, degrees; along-strike distances are counted from it.
    azimuth
        Strike, degrees clockwise from true north.
    slip
        Right-lateral slip, metres: a constant, or a function of the along-strike distance (metres, + toward
        ``azimuth``).
    depth
        Depth of the slipping patch, metres.
    """

    lon0: float
    lat0: float
    azimuth: float = 60.0
    slip: float | Callable[[F64], F64] = 5.0
    depth: float = 10000.0

    def local(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[F64, F64]:
        """Along-strike distance from (lon0, lat0) and signed distance to the trace (+ right side), metres
        (a local tangent plane: exact enough over tens of kilometres)."""
        a = np.radians(self.azimuth)
        e = (np.asarray(lon, dtype=np.float64) - self.lon0) * _M_PER_DEG * np.cos(np.radians(self.lat0))
        n = (np.asarray(lat, dtype=np.float64) - self.lat0) * _M_PER_DEG
        return e * np.sin(a) + n * np.cos(a), e * np.cos(a) - n * np.sin(a)

    def slip_at(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> F64:
        """Right-lateral slip (metres) of the trace point nearest to (lon, lat)."""
        s, _ = self.local(lon, lat)
        return np.asarray(self.slip(s) if callable(self.slip) else np.full(s.shape, float(self.slip)))

    def __call__(self, lon: F64, lat: F64) -> tuple[F64, F64]:
        a = np.radians(self.azimuth)
        _, d = self.local(lon, lat)
        f = np.arctan(self.depth / np.where(d == 0.0, 1e-9, d)) / np.pi
        slip = self.slip_at(lon, lat)
        return -slip * f * np.sin(a), -slip * f * np.cos(a)


def ground_rupture(
    lon0: float,
    lat0: float,
    *,
    azimuth: float = 60.0,
    slip: float | Callable[[F64], F64] = 5.0,
    depth: float = 10000.0,
) -> GroundRupture:
    """A straight right-lateral screw dislocation through (lon0, lat0) as a ground displacement field.

    Parameters
    ----------
    lon0, lat0
        A point of the trace, degrees.
    azimuth
        Strike, degrees clockwise from true north.
    slip
        Right-lateral slip, metres, or a function of the along-strike distance from (lon0, lat0) (metres,
        + toward ``azimuth``) returning it: the fault-parallel offset across the trace there.
    depth
        Depth of the slipping patch, metres.

    Returns
    -------
    GroundRupture
        Callable (lon, lat) -> (east, north): displacement in metres along true east and true north; each
        side moves by half the slip at the trace.
    """
    return GroundRupture(lon0, lat0, azimuth, slip, depth)


@dataclass(frozen=True)
class SyntheticTiles:
    """Displacement tiles of a known ground field, each on its own UTM grid (output of :func:`make_tiles`).

    Attributes
    ----------
    tiles
        The tiles: the ground field turned into each grid's axes, plus a bias and noise.
    biases
        (east, north) bias added to every tile, metres along its own axes.
    field
        The ground field, (lon, lat) -> (true east, true north) metres.
    """

    tiles: tuple[DisplacementTile, ...]
    biases: tuple[tuple[float, float], ...]
    field: GroundField

    def truth(self, crs: Any, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[F64, F64]:
        """The ground field at points (x, y) of ``crs``, along that CRS's grid axes, metres."""
        return grid_vectors(self.field, crs, x, y)


def grid_vectors(field: GroundField, crs: Any, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[F64, F64]:
    """A ground field at points of a projected CRS, turned into its grid axes by the meridian convergence
    (pyproj's map factors; true north lies ``meridian_convergence`` degrees counter-clockwise of grid
    north, so grid components are the true ones rotated counter-clockwise by it), scaled by the
    meridional scale factor."""
    c = CRS.from_user_input(crs)
    lon, lat = Transformer.from_crs(c.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    lon, lat = np.asarray(lon), np.asarray(lat)
    te, tn = field(lon, lat)
    f = Proj(c.to_wkt()).get_factors(lon, lat)
    g = np.radians(np.asarray(f.meridian_convergence))
    k = np.asarray(f.meridional_scale)
    return k * (np.cos(g) * te - np.sin(g) * tn), k * (np.sin(g) * te + np.cos(g) * tn)


def make_tiles(
    centres: list[tuple[float, float]],
    field: GroundField,
    *,
    size: float | tuple[float, float] = 30000.0,
    cell: float = 100.0,
    biases: list[tuple[float, float]] | None = None,
    noise: float = 0.5,
    seed: int = 0,
) -> SyntheticTiles:
    """Rectangular tiles centred on (lon, lat) points, each on the north-up grid of its own UTM zone.

    Parameters
    ----------
    centres
        (lon, lat) of every tile centre, degrees.
    field
        Ground displacement, (lon, lat) -> (true east, true north) metres (e.g. :func:`ground_rupture`).
    size
        Tile side, or (north-south, east-west) extent, metres.
    cell
        Cell size, metres.
    biases
        (east, north) bias of every tile along its own axes, metres; default none.
    noise
        Standard deviation of the white noise of every component, metres.
    seed
        Noise seed.

    Returns
    -------
    SyntheticTiles
    """
    rng = np.random.default_rng(seed)
    bias = biases or [(0.0, 0.0)] * len(centres)
    height, width = (float(size), float(size)) if isinstance(size, (int, float)) else size
    nr, nc = round(height / cell), round(width / cell)
    tiles = []
    for k, ((lon, lat), (be, bn)) in enumerate(zip(centres, bias, strict=True)):
        crs = utm_crs(lon, lat)
        xc, yc = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True).transform(lon, lat)
        x0 = np.floor((xc - width / 2) / cell) * cell
        y1 = np.ceil((yc + height / 2) / cell) * cell
        xx, yy = np.meshgrid(x0 + cell * (np.arange(nc) + 0.5), y1 - cell * (np.arange(nr) + 0.5))
        e, nn = grid_vectors(field, crs, xx, yy)
        e = e + be + rng.normal(0.0, noise, e.shape)
        nn = nn + bn + rng.normal(0.0, noise, e.shape)
        tiles.append(DisplacementTile(e, nn, crs, Affine(cell, 0.0, x0, 0.0, -cell, y1), name=f"T{k + 1}"))
    return SyntheticTiles(tuple(tiles), tuple(bias), field)


@dataclass(frozen=True)
class SceneTile:
    """One tile of :class:`SyntheticScenes`: a real texture on its own UTM grid, one image per date.

    Attributes
    ----------
    name
        Tile label.
    crs, transform
        The tile's grid (north-up, ``pixel_size`` metres).
    images
        float32 images, one per date of :attr:`SyntheticScenes.dates` (pre-event ones unmoved, post-event
        ones moved by the ground field), each with its own noise, misregistration and jitter.
    track_angle
        Direction of the satellite track on this grid, degrees clockwise from grid north (the true
        ``track_angle`` minus the grid's meridian convergence).
    """

    name: str
    crs: CRS
    transform: Affine
    images: tuple[npt.NDArray[np.float32], ...]
    track_angle: float


@dataclass(frozen=True)
class SyntheticScenes:
    """Pre- and post-event images of several tiles over a known ground rupture (output of
    :func:`make_scenes`).

    Attributes
    ----------
    tiles
        The tiles, each on the UTM grid of its centre.
    dates
        ISO acquisition dates, shared by every tile.
    event_date
        ISO date of the event: images after it are moved by ``field``.
    field
        The ground rupture, (lon, lat) -> (true east, true north) metres.
    track_angle
        Direction of the satellite track, degrees clockwise from true north.
    """

    tiles: tuple[SceneTile, ...]
    dates: tuple[str, ...]
    event_date: str
    field: GroundField
    track_angle: float

    def truth(self, crs: Any, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[F64, F64]:
        """The ground field at points (x, y) of ``crs``, along that CRS's grid axes, metres."""
        return grid_vectors(self.field, crs, x, y)

    def write_inputs(self, folder: str | os.PathLike[str]) -> list[dict[str, str]]:
        """Write every image as a GeoTIFF (``<tile>_<date>.tif``, float32, the tile's CRS and transform) and
        return the ``inputs`` entries of a quake job (``path``, ``date``, ``tile``)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        inputs = []
        for tile in self.tiles:
            for day, img in zip(self.dates, tile.images, strict=True):
                path = out / f"{tile.name}_{day}.tif"
                profile = dict(
                    driver="GTiff",
                    width=img.shape[1],
                    height=img.shape[0],
                    count=1,
                    dtype="float32",
                    crs=tile.crs,
                    transform=tile.transform,
                )
                with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
                    dst.write(img, 1)
                inputs.append({"path": str(path), "date": day, "tile": tile.name})
        return inputs


def _convergence(crs: CRS, lon: float, lat: float) -> float:
    """Meridian convergence (degrees; true north this much counter-clockwise of grid north)."""
    return float(Proj(crs.to_wkt()).get_factors(lon, lat).meridian_convergence)


@dataclass(frozen=True)
class _Artefacts:
    """Geometric artefacts of one image, (row, col) -> displacement (px): a constant misregistration,
    jitter along the track (a sine of the along-track coordinate) and stripes across it (alternating bands
    of the across-track coordinate); ``angle`` is the track's direction on the grid, radians clockwise from
    up."""

    angle: float
    shift: tuple[float, float]
    phase: float
    jitter_px: float
    jitter_period: float
    stripe_px: float
    stripe_width: float

    def bands(self, r: F64, c: F64) -> F64:
        """+1 / -1 in alternating bands of the across-track coordinate."""
        u = c * np.cos(self.angle) + r * np.sin(self.angle)
        return np.where((u // self.stripe_width) % 2 == 0, 1.0, -1.0)

    def __call__(self, r: F64, c: F64) -> tuple[F64, F64]:
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        v = r * ca - c * sa  # along-track coordinate, px
        j = self.jitter_px * np.sin(2.0 * np.pi * v / self.jitter_period + self.phase)
        s = self.stripe_px * self.bands(r, c) if self.stripe_px else 0.0
        # along-track unit vector (-cos, sin), across-track (sin, cos), in (row, col)
        return self.shift[0] - j * ca + s * sa, self.shift[1] + j * sa + s * ca


def _warp(tex: F64, u_row: F64, u_col: F64, art: Callable[[F64, F64], tuple[F64, F64]]) -> F64:
    """``out(p + u(p) + art(p)) = tex(p)``: inverse map by fixed-point iteration, ``u`` interpolated."""
    rr, cc = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in tex.shape), indexing="ij")
    pr, pc = rr.copy(), cc.copy()
    for _ in range(10):
        ur = ndimage.map_coordinates(u_row, [pr, pc], order=1, mode="nearest")
        uc = ndimage.map_coordinates(u_col, [pr, pc], order=1, mode="nearest")
        ar, ac = art(pr, pc)
        pr, pc = rr - ur - ar, cc - uc - ac
    return np.asarray(ndimage.map_coordinates(tex, [pr, pc], order=5, mode="mirror"))


def make_scenes(
    texture: npt.ArrayLike,
    centres: list[tuple[float, float]],
    field: GroundField,
    *,
    shape: tuple[int, int] = (384, 384),
    pixel_size: float = 10.0,
    event_date: str = "2023-02-06",
    pre: int = 2,
    post: int = 2,
    interval_days: int = 5,
    snr_db: float = 30.0,
    stripe_px: float = 0.03,
    stripe_width: int = 160,
    stripe_gain: float = 0.005,
    jitter_px: float = 0.02,
    jitter_period: float = 140.0,
    misregistration_px: float = 0.1,
    track_angle: float = 12.0,
    seed: int = 0,
) -> SyntheticScenes:
    """Pre- and post-event images of several tiles, each on its own UTM grid, over a known ground field.

    Every tile takes a different orientation of the real ``texture`` (rotations and flips, cropped to
    ``shape``), so overlapping tiles do not share their noise or texture. Each image gets independent
    noise, a random constant misregistration and attitude jitter (a sine along the track of random phase);
    post-event images also carry detector stripes (± ``stripe_px`` across the track in bands of
    ``stripe_width`` pixels, with a ± ``stripe_gain`` radiometric gain), as a different sensor would. The
    ground field moves the post-event images: ``post(p + u(p)) = pre(p)`` with ``u`` the field turned into
    each grid's axes (:func:`grid_vectors`), in pixels.

    Parameters
    ----------
    texture
        2-D real image of at least ``shape`` pixels.
    centres
        (lon, lat) of every tile centre, degrees; each tile is on the UTM zone of its centre.
    field
        Ground displacement, (lon, lat) -> (true east, true north) metres (e.g. :func:`ground_rupture`).
    shape
        (rows, cols) of every tile.
    pixel_size
        Pixel size, metres.
    event_date
        ISO date of the event.
    pre, post
        Acquisitions before and after it, ``interval_days`` apart (the nearest one day from the event).
    snr_db
        Signal-to-noise ratio of each image's Gaussian noise, dB.
    stripe_px, stripe_width, stripe_gain
        Detector stripes of the post-event images.
    jitter_px, jitter_period
        Attitude jitter of every image: amplitude (px, along the track) and period (pixels along the track).
    misregistration_px
        Standard deviation of each image's constant misregistration, px per axis.
    track_angle
        Satellite track direction, degrees clockwise from true north (stripes run along it).
    seed
        Random seed.

    Returns
    -------
    SyntheticScenes
    """
    tex = np.asarray(texture, dtype=np.float64)
    h, w = shape
    if tex.ndim != 2 or tex.shape[0] < h or tex.shape[1] < w:
        raise InvalidInputError(f"texture of shape {tex.shape} is smaller than the tiles' {shape}")
    rng = np.random.default_rng(seed)
    event = np.datetime64(event_date, "D")
    days = [event - 1 - interval_days * k for k in range(pre)][::-1]
    days += [event + 1 + interval_days * k for k in range(post)]
    sigma = tex.std() / 10 ** (snr_db / 20.0)
    tiles = []
    for k, (lon, lat) in enumerate(centres):
        crs = utm_crs(lon, lat)
        variant = np.rot90(tex, k % 4)
        variant = variant[:, ::-1] if (k // 4) % 2 else variant
        img = np.ascontiguousarray(variant[:h, :w])
        xc, yc = Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True).transform(lon, lat)
        x0 = np.round((xc - w * pixel_size / 2) / pixel_size) * pixel_size
        y1 = np.round((yc + h * pixel_size / 2) / pixel_size) * pixel_size
        transform = Affine(pixel_size, 0.0, x0, 0.0, -pixel_size, y1)
        xx, yy = np.meshgrid(x0 + pixel_size * (np.arange(w) + 0.5), y1 - pixel_size * (np.arange(h) + 0.5))
        east, north = grid_vectors(field, crs, xx, yy)
        angle = track_angle - _convergence(crs, lon, lat)
        images = []
        for day in days:
            moved = bool(day > event)
            art = _Artefacts(
                np.radians(angle),
                tuple(rng.normal(0.0, misregistration_px, 2)),
                float(rng.uniform(0.0, 2.0 * np.pi)),
                jitter_px,
                jitter_period,
                stripe_px if moved else 0.0,
                stripe_width,
            )
            scale = 1.0 / pixel_size if moved else 0.0
            out = _warp(img, -north * scale, east * scale, art)
            if moved:
                out = out * (1.0 + stripe_gain * art.bands(*np.indices(out.shape, dtype=np.float64)))
            images.append((out + rng.normal(0.0, sigma, out.shape)).astype(np.float32))
        tiles.append(SceneTile(f"T{k + 1}", crs, transform, tuple(images), angle))
    return SyntheticScenes(tuple(tiles), tuple(str(d) for d in days), str(event), field, float(track_angle))
