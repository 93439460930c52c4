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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pyproj import Proj, Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.quake.mosaics import DisplacementTile, utm_crs

__all__ = [
    "RuptureModel",
    "SyntheticRupture",
    "SyntheticTiles",
    "ground_rupture",
    "make_rupture_pair",
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


def ground_rupture(
    lon0: float, lat0: float, *, azimuth: float = 60.0, slip: float = 5.0, depth: float = 10000.0
) -> GroundField:
    """A straight right-lateral screw dislocation through (lon0, lat0) as a ground displacement field.

    Parameters
    ----------
    lon0, lat0
        A point of the trace, degrees.
    azimuth
        Strike, degrees clockwise from true north.
    slip
        Right-lateral slip, metres.
    depth
        Depth of the slipping patch, metres.

    Returns
    -------
    callable (lon, lat) -> (east, north)
        Displacement in metres along true east and true north (not along any grid's axes).
    """
    a = np.radians(azimuth)
    strike = np.array([np.sin(a), np.cos(a)])  # (east, north)
    right = np.array([strike[1], -strike[0]])
    m_per_deg = 111_195.0

    def field(lon: F64, lat: F64) -> tuple[F64, F64]:
        e = (np.asarray(lon) - lon0) * m_per_deg * np.cos(np.radians(lat0))
        n = (np.asarray(lat) - lat0) * m_per_deg
        d = e * right[0] + n * right[1]
        f = np.arctan(depth / np.where(d == 0.0, 1e-9, d)) / np.pi
        return -slip * f * strike[0], -slip * f * strike[1]

    return field


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
