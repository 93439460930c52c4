"""Simulated SAR pairs with known truth, for tests, benchmarks and checking a processing chain.

* :func:`gamma_speckle` — multiplicative, unit-mean Gamma speckle of a given ENL on an intensity image (a
  multi-looked GRD);
* :func:`warp` — move an image by a known displacement field (``secondary(p + d(p)) = reference(p)``);
* :func:`complex_pair` — two complex (SLC-like) images of circular-Gaussian speckle with a given
  coherence, band-limited, the second shifted by a known sub-pixel offset;
* :func:`grd_from_template` — a Sentinel-1 GRD SAFE product whose metadata (annotation, calibration and
  noise LUTs, manifest) are those of a real product, moved by whole repeat cycles, and whose pixels are
  given: a second date of a real geometry with a known displacement field.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from numpy.typing import ArrayLike, NDArray
from rasterio.control import GroundControlPoint
from rasterio.windows import Window
from scipy import ndimage

from geodeform.errors import InvalidInputError
from geodeform.sar.annotation import read_annotation
from geodeform.sar.errors import MissingAnnotationError

__all__ = ["ComplexPair", "complex_pair", "gamma_speckle", "grd_from_template", "warp"]

REPEAT_DAYS = 12
"""Repeat cycle of one Sentinel-1 satellite, days (175 orbits)."""
_REPEAT_ORBITS = 175
_ISO = re.compile(r"(?<![\d])(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?")
_STAMP = re.compile(r"(\d{8}T\d{6})")
_STAMP_LOWER = re.compile(r"(\d{8}t\d{6})")


def gamma_speckle(intensity: ArrayLike, looks: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Multiply an intensity image by independent unit-mean Gamma speckle of shape ``looks`` (the ENL).

    Parameters
    ----------
    intensity
        Reflectivity (linear intensity, ≥ 0).
    looks
        Equivalent number of looks L > 0 (speckle variance 1 / L; 4.4 for Sentinel-1 IW GRDH).
    rng
        Random generator.
    """
    if looks <= 0:
        raise InvalidInputError(f"looks: must be > 0, got {looks}")
    x = np.asarray(intensity, dtype=np.float64)
    return x * rng.gamma(looks, 1.0 / looks, size=x.shape)


def warp(image: ArrayLike, dx: ArrayLike, dy: ArrayLike, *, order: int = 5) -> NDArray[np.float64]:
    """Move ``image`` by the displacement field (dx, dy) defined on its own grid.

    The output ``s`` satisfies ``s(p + d(p)) = image(p)`` (geodeform's sign convention: a feature at (row,
    col) of the reference appears at (row + dy, col + dx) of the secondary), found by fixed-point
    iteration of the inverse map; spline interpolation of ``order``, mirrored at the borders.

    Parameters
    ----------
    image
        ``(rows, cols)`` image.
    dx, dy
        Displacement in pixels, scalars or arrays of the image's shape, smooth (|∇d| < 1).
    order
        Spline order of the interpolation (1-5).
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    qr, qc = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    fx = np.broadcast_to(np.asarray(dx, dtype=np.float64), img.shape)
    fy = np.broadcast_to(np.asarray(dy, dtype=np.float64), img.shape)
    pr, pc = qr.copy(), qc.copy()
    for _ in range(10):
        ux = ndimage.map_coordinates(fx, [pr, pc], order=1, mode="nearest")
        uy = ndimage.map_coordinates(fy, [pr, pc], order=1, mode="nearest")
        pr, pc = qr - uy, qc - ux
    return np.asarray(ndimage.map_coordinates(img, [pr, pc], order=order, mode="mirror"))


class ComplexPair(NamedTuple):
    """Two simulated SLC-like images.

    Attributes
    ----------
    reference, secondary
        ``(rows, cols)`` complex64; ``secondary`` is the reference scene shifted by (dx, dy) px with a
        fraction of new speckle, so that the complex coherence of the pair is ``coherence``.
    dx, dy
        The imposed shift, px (a feature at (row, col) of the reference is at (row + dy, col + dx) of the
        secondary).
    coherence
        The imposed coherence.
    """

    reference: NDArray[np.complex64]
    secondary: NDArray[np.complex64]
    dx: float
    dy: float
    coherence: float


def _band_limit(z: NDArray[np.complex128], fraction: tuple[float, float]) -> NDArray[np.complex128]:
    F = np.fft.fft2(z)
    fy = np.abs(np.fft.fftfreq(z.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(z.shape[1]))[None, :]
    F[(fy > fraction[0] / 2) | (fx > fraction[1] / 2)] = 0
    return np.fft.ifft2(F)


def complex_pair(
    shape: tuple[int, int],
    coherence: float,
    dx: float,
    dy: float,
    rng: np.random.Generator,
    *,
    reflectivity: ArrayLike | None = None,
    bandwidth: tuple[float, float] = (0.8, 0.85),
) -> ComplexPair:
    """A pair of circular-Gaussian speckle images with a known coherence and a known constant shift.

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    coherence
        Complex coherence γ in [0, 1] between the two dates: ``s2 = γ s1 + √(1 − γ²) n`` before the shift.
    dx, dy
        Shift, px (Fourier shift, exact for the band-limited signal).
    rng
        Random generator.
    reflectivity
        Optional ``shape`` intensity scaling both images (``√R`` times the speckle), e.g. a real texture.
    bandwidth
        Occupied fraction of the sampling rate in (azimuth, range) (Sentinel-1 IW SLC: about 327/486 Hz in
        azimuth and 56.5/64.3 MHz in range; (0.8, 0.85) by default).
    """
    if not 0 <= coherence <= 1:
        raise InvalidInputError(f"coherence: must be in [0, 1], got {coherence}")
    h, w = shape

    def noise() -> NDArray[np.complex128]:
        z = (rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / np.sqrt(2)
        return _band_limit(z, bandwidth)

    s1 = noise()
    s2 = coherence * s1 + np.sqrt(1 - coherence**2) * noise()
    if reflectivity is not None:
        amp = np.sqrt(np.asarray(reflectivity, dtype=np.float64))
        s1 = s1 * amp
        s2 = s2 * amp
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    s2 = np.fft.ifft2(np.fft.fft2(s2) * np.exp(-2j * np.pi * (fx * dx + fy * dy)))
    return ComplexPair(
        s1.astype(np.complex64), s2.astype(np.complex64), float(dx), float(dy), float(coherence)
    )


def _shift_times(text: str, days: int) -> str:
    """Every ISO 8601 time stamp of an XML text moved by ``days``."""

    def move(m: re.Match[str]) -> str:
        t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S") + timedelta(days=days)
        return t.strftime("%Y-%m-%dT%H:%M:%S") + (m.group(2) or "")

    return _ISO.sub(move, text)


def _shift_name(name: str, days: int, orbit: int, new_orbit: int) -> str:
    """A SAFE or file name with its time stamps and 6-digit absolute orbit moved."""

    def move(m: re.Match[str], fmt: str) -> str:
        return (datetime.strptime(m.group(1), fmt) + timedelta(days=days)).strftime(fmt)

    name = _STAMP.sub(lambda m: move(m, "%Y%m%dT%H%M%S"), name)
    name = _STAMP_LOWER.sub(lambda m: move(m, "%Y%m%dt%H%M%S"), name)
    return name.replace(f"_{orbit:06d}_", f"_{new_orbit:06d}_").replace(
        f"-{orbit:06d}-", f"-{new_orbit:06d}-"
    )


def _shift_orbits(text: str, orbit: int, new_orbit: int) -> str:
    """Absolute orbit numbers of an annotation (``absoluteOrbitNumber``) or manifest (``orbitNumber``)."""
    return re.sub(
        rf"(<(?:[\w]+:)?(?:absoluteOrbitNumber|orbitNumber)(?: [^>]*)?>){orbit}<",
        rf"\g<1>{new_orbit}<",
        text,
    )


def grd_from_template(
    template: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    amplitude: ArrayLike,
    *,
    origin: tuple[int, int],
    cycles: int = 0,
    polarisation: str = "VV",
) -> Path:
    """Write a Sentinel-1 GRD SAFE product with a real product's metadata and the given pixels.

    The annotation, calibration and noise XML of ``template`` (a real SAFE folder; its measurement may be
    absent, as in metadata-only copies) are copied with every time stamp moved by ``cycles`` repeat cycles
    (12 days each) and the absolute orbit by 175 orbits per cycle, so the relative orbit, the geometry
    (geolocation grid, orbit, heading, incidence, pixel spacing) and the LUTs stay those of the real
    product. The measurement is a full-size tiled GeoTIFF (uint16 amplitude DN, the annotation's size,
    with the geolocation grid as GCPs) holding ``amplitude`` at ``origin`` and no data (0) elsewhere; the
    empty tiles are not stored, so the file stays small.

    Parameters
    ----------
    template
        A real Sentinel-1 GRD SAFE folder with ``annotation/`` (and ``annotation/calibration/``).
    folder
        Where the new ``.SAFE`` folder is written (created).
    amplitude
        ``(rows, cols)`` amplitude DN (≥ 0; rounded and clipped to uint16), e.g. a real texture moved by a
        known field (:func:`warp`) with speckle (:func:`gamma_speckle`).
    origin
        ``(row, col)`` of ``amplitude[0, 0]`` in the full measurement.
    cycles
        Repeat cycles after the template's date (0: the template's own date).
    polarisation
        The template's measurement to copy (``"VV"``...).

    Returns
    -------
    Path
        The new SAFE folder.

    Raises
    ------
    MissingAnnotationError
        No annotation of that polarisation in ``template``.
    InvalidInputError
        ``amplitude`` does not fit inside the measurement at ``origin``.
    """
    src = Path(template)
    pol = polarisation.lower()
    anns = sorted((src / "annotation").glob(f"*-{pol}-*.xml"))
    if not anns:
        raise MissingAnnotationError(
            f"{src}: no annotation/*-{pol}-*.xml; give a SAFE folder with its annotation"
        )
    ann = read_annotation(anns[0])
    amp = np.asarray(amplitude, dtype=np.float64)
    r0, c0 = origin
    if (
        amp.ndim != 2
        or r0 < 0
        or c0 < 0
        or r0 + amp.shape[0] > ann.n_lines
        or c0 + amp.shape[1] > ann.n_samples
    ):
        raise InvalidInputError(
            f"amplitude {amp.shape} at {origin} does not fit in the {ann.n_lines} x {ann.n_samples} "
            "measurement"
        )
    days = REPEAT_DAYS * cycles
    orbit = ann.absolute_orbit
    new_orbit = orbit + _REPEAT_ORBITS * cycles
    safe = Path(folder) / _shift_name(src.name, days, orbit, new_orbit)
    (safe / "annotation" / "calibration").mkdir(parents=True, exist_ok=True)
    (safe / "measurement").mkdir(exist_ok=True)

    def copy(path: Path, dest: Path) -> None:
        text = _shift_orbits(_shift_times(path.read_text(encoding="utf-8"), days), orbit, new_orbit)
        dest.write_text(text, encoding="utf-8")

    stem = anns[0].stem
    new_stem = _shift_name(stem, days, orbit, new_orbit)
    copy(anns[0], safe / "annotation" / f"{new_stem}.xml")
    for kind in ("calibration", "noise"):
        lut = src / "annotation" / "calibration" / f"{kind}-{stem}.xml"
        if lut.is_file():
            copy(lut, safe / "annotation" / "calibration" / f"{kind}-{new_stem}.xml")
    if (src / "manifest.safe").is_file():
        copy(src / "manifest.safe", safe / "manifest.safe")
    g = ann.geolocation
    gcps = [
        GroundControlPoint(
            row=float(li) + 0.5,
            col=float(pj) + 0.5,
            x=float(g.longitude[i, j]),
            y=float(g.latitude[i, j]),
            z=float(g.height[i, j]),
        )
        for i, li in enumerate(g.lines)
        for j, pj in enumerate(g.pixels)
    ]
    profile = {
        "driver": "GTiff",
        "width": ann.n_samples,
        "height": ann.n_lines,
        "count": 1,
        "dtype": "uint16",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "sparse_ok": True,
    }
    dn = np.clip(np.rint(np.nan_to_num(amp)), 0, 65535).astype(np.uint16)
    with rasterio.open(
        safe / "measurement" / f"{new_stem}.tiff", "w", gcps=gcps, crs="EPSG:4326", **profile
    ) as dst:
        dst.write(dn, 1, window=Window(c0, r0, dn.shape[1], dn.shape[0]))
    return safe
