"""Geometric co-registration of Sentinel-1 acquisitions of one track, through their ground control points.

Two GRD products of one relative orbit see the ground from the same orbit tube, but their radar grids differ
by where each slice starts (a shift of many lines) and by small range offsets. :func:`onto_reference`
resamples the secondary onto the reference's radar grid through the two products' GCPs (the annotation's
geolocation grid): reference pixel -> longitude/latitude (reference GCPs) -> secondary pixel (secondary
GCPs). Offsets measured afterwards are the ground motion plus what the GCPs get wrong (a smooth bias, removed
by co-registration on stable ground). :func:`radar_window` gives the part of a measurement to read for a
map grid.

Pixel convention: geodeform's (pixel centre (i, j) at (i, j)); GDAL's GCP row/col are ours + 0.5.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from rasterio.transform import GCPTransformer
from rasterio.warp import transform as warp_transform
from scipy import ndimage
from shapely.geometry import Polygon

from geodeform.io import GeoGrid
from geodeform.sar.errors import SarProductError
from geodeform.sar.reader import S1Image

__all__ = ["Resampled", "footprint", "onto_reference", "radar_window"]


def _gcp_check(image: S1Image) -> None:
    if not image.gcps:
        raise SarProductError(f"{image.path}: no ground control points; the image cannot be located")


Coords = tuple[NDArray[np.float64], NDArray[np.float64]]


def _to_radar(image: S1Image, lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Coords:
    """Full-measurement (row, col) pixel-centre coordinates of lon/lat points."""
    with GCPTransformer(list(image.gcps), tps=True) as tr:
        r, c = tr.rowcol(lon.ravel(), lat.ravel(), op=np.positive)
    shape = lon.shape
    return np.asarray(r, np.float64).reshape(shape) - 0.5, np.asarray(c, np.float64).reshape(shape) - 0.5


def _to_ground(
    image: S1Image, rows: NDArray[np.float64], cols: NDArray[np.float64]
) -> tuple[NDArray, NDArray]:
    """Longitude/latitude of full-measurement pixel-centre coordinates."""
    with GCPTransformer(list(image.gcps), tps=True) as tr:
        x, y = tr.xy(rows.ravel(), cols.ravel(), offset="center")
    return np.asarray(x, np.float64).reshape(rows.shape), np.asarray(y, np.float64).reshape(rows.shape)


def footprint(image: S1Image, *, whole: bool = True, samples: int = 17) -> Polygon:
    """Longitude/latitude outline of a product (``whole``) or of the window read (``whole=False``).

    Raises
    ------
    MissingAnnotationError
        ``whole`` without annotation (the measurement size is unknown).
    """
    _gcp_check(image)
    if whole:
        ann = image.require_annotation("the footprint of the whole product")
        r0, c0, h, w = 0, 0, ann.n_lines, ann.n_samples
    else:
        (r0, c0), (h, w) = image.window, image.data.shape
    u = np.linspace(0.0, 1.0, samples)
    rows = np.r_[u * 0, u, u * 0 + 1, u[::-1]] * (h - 1) + r0
    cols = np.r_[u, u * 0 + 1, u[::-1], u * 0] * (w - 1) + c0
    lon, lat = _to_ground(image, rows, cols)
    return Polygon(zip(lon.tolist(), lat.tolist(), strict=True))


def radar_window(
    image: S1Image, grid: GeoGrid, *, margin: int = 0, samples: int = 33
) -> tuple[int, int, int, int] | None:
    """The part of a measurement that covers a map grid: ``(row0, col0, rows, cols)``, or None outside it.

    Parameters
    ----------
    image
        The product (its annotation for the measurement size, its GCPs), e.g. opened with a 1 x 1 window.
    grid
        Map grid (any CRS).
    margin
        Radar pixels added on every side (half a chip plus the search range, for matching).
    samples
        Points per grid edge mapped into the radar grid (the mapping is smooth).

    Raises
    ------
    MissingAnnotationError
        Without annotation (the measurement size is unknown).
    """
    ann = image.require_annotation("finding the window of a map grid")
    _gcp_check(image)
    h, w = grid.shape
    t = grid.transform
    u = np.linspace(0.0, 1.0, samples)
    cc, rr = np.meshgrid(u * w, u * h)
    xs = t.a * cc + t.b * rr + t.c
    ys = t.d * cc + t.e * rr + t.f
    lon, lat = warp_transform(grid.crs, "EPSG:4326", xs.ravel().tolist(), ys.ravel().tolist())
    r, c = _to_radar(image, np.asarray(lon), np.asarray(lat))
    ok = np.isfinite(r) & np.isfinite(c)
    if not ok.any():
        return None
    r0 = max(0, int(np.floor(r[ok].min())) - margin)
    c0 = max(0, int(np.floor(c[ok].min())) - margin)
    r1 = min(ann.n_lines, int(np.ceil(r[ok].max())) + margin + 1)
    c1 = min(ann.n_samples, int(np.ceil(c[ok].max())) + margin + 1)
    if r1 - r0 < 2 or c1 - c0 < 2:
        return None
    return (r0, c0, r1 - r0, c1 - c0)


class Resampled(NamedTuple):
    """The secondary on the reference's radar grid.

    Attributes
    ----------
    data
        ``reference.data.shape`` float32 secondary pixels (intensity or amplitude as read), NaN where the
        secondary has no data.
    max_shift
        Largest distance between a reference pixel and its position in the secondary's window, pixels
        (after removing the windows' offsets): 0 for products of one geometry read on one window.
    resampled
        False when the mapping was an exact whole-pixel translation (the pixels were copied).
    """

    data: NDArray[np.float32]
    max_shift: float
    resampled: bool


def onto_reference(secondary: S1Image, reference: S1Image, *, step: int = 16) -> Resampled:
    """Resample ``secondary`` onto the radar grid of ``reference`` through both products' GCPs.

    Parameters
    ----------
    secondary, reference
        Real-valued (GRD) images of one track; the secondary's window must cover the reference's (plus
        the expected motion).
    step
        The mapping is computed every ``step`` reference pixels and interpolated bilinearly in between
        (it is smooth); the pixels are then interpolated bilinearly.

    Returns
    -------
    Resampled

    Raises
    ------
    SarProductError
        Complex (SLC) data, or an image without GCPs.
    """
    if secondary.is_complex or reference.is_complex:
        raise SarProductError("onto_reference: resampling complex SLC data needs a phase-preserving kernel")
    _gcp_check(secondary)
    _gcp_check(reference)
    h, w = reference.data.shape
    rs = np.unique(np.r_[np.arange(0, h, step), h - 1]).astype(np.float64)
    cs = np.unique(np.r_[np.arange(0, w, step), w - 1]).astype(np.float64)
    rr, cc = np.meshgrid(rs + reference.window[0], cs + reference.window[1], indexing="ij")
    if secondary.gcps == reference.gcps:
        sr, sc = rr, cc
    else:
        lon, lat = _to_ground(reference, rr, cc)
        sr, sc = _to_radar(secondary, lon, lat)
    sr = sr - secondary.window[0]
    sc = sc - secondary.window[1]
    dr = sr - (rr - reference.window[0])
    dc = sc - (cc - reference.window[1])
    if not (np.isfinite(dr).all() and np.isfinite(dc).all()):
        raise SarProductError(f"{secondary.path}: its GCPs do not map the reference window")
    max_shift = float(np.max(np.hypot(dr, dc)))
    data = np.asarray(secondary.data, dtype=np.float32)
    ir, ic = np.rint(dr[0, 0]), np.rint(dc[0, 0])
    if np.allclose(dr, ir, atol=1e-3) and np.allclose(dc, ic, atol=1e-3):
        out = np.full((h, w), np.nan, dtype=np.float32)
        r0, c0 = int(ir), int(ic)
        ys, xs = (
            slice(max(0, -r0), min(h, data.shape[0] - r0)),
            slice(max(0, -c0), min(w, data.shape[1] - c0)),
        )
        if ys.start < ys.stop and xs.start < xs.stop:
            out[ys, xs] = data[ys.start + r0 : ys.stop + r0, xs.start + c0 : xs.stop + c0]
        return Resampled(out, max_shift, False)
    fr = np.interp(np.arange(h), rs, np.arange(rs.size))
    fc = np.interp(np.arange(w), cs, np.arange(cs.size))
    grid_r, grid_c = np.meshgrid(fr, fc, indexing="ij")
    pr = ndimage.map_coordinates(sr, [grid_r, grid_c], order=1)
    pc = ndimage.map_coordinates(sc, [grid_r, grid_c], order=1)
    valid = np.isfinite(data)
    filled = np.where(valid, data, 0.0)
    out = ndimage.map_coordinates(filled, [pr, pc], order=1, mode="constant", cval=np.nan)
    weight = ndimage.map_coordinates(valid.astype(np.float32), [pr, pc], order=1, mode="constant", cval=0.0)
    out = np.where(weight > 0.999, out, np.nan).astype(np.float32)
    return Resampled(out, max_shift, True)
