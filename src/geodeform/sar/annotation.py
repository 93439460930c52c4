"""Sentinel-1 Level-1 annotation XML: product information, geolocation grid, bursts, calibration, noise.

Follows the Sentinel-1 Product Specification (S1-RS-MDA-52-7441, ``s1-level-1-product.xsd``,
``s1-level-1-calibration.xsd``, ``s1-level-1-noise.xsd``). Line and pixel indices in the XML are 0-based
image coordinates of pixel **centres** (geodeform's convention: the centre of pixel (i, j) is at (i, j)).
Pure parsing: no raster is read here.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import RegularGridInterpolator

from geodeform.sar.errors import SarProductError

__all__ = [
    "SPEED_OF_LIGHT",
    "Annotation",
    "Burst",
    "CalibrationLUT",
    "GeolocationGrid",
    "NoiseLUT",
    "OrbitStateVectors",
    "read_annotation",
    "read_calibration",
    "read_noise",
    "relative_orbit",
]

SPEED_OF_LIGHT = 299_792_458.0  # m/s
PassDirection = Literal["ascending", "descending"]
# Relative orbit = ((absolute - offset) mod 175) + 1 (Sentinel-1 repeat cycle of 175 orbits).
_ORBIT_OFFSET = {"S1A": 73, "S1B": 27}


def relative_orbit(mission: str, absolute_orbit: int) -> int | None:
    """Relative orbit (track) number of a Sentinel-1 absolute orbit; None for an unknown mission."""
    off = _ORBIT_OFFSET.get(mission.upper())
    if off is None:
        return None
    return (absolute_orbit - off) % 175 + 1


def _parse(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SarProductError(
            f"{path}: cannot read the XML ({exc}); is it a complete Sentinel-1 product?"
        ) from exc


def _text(root: ET.Element, path: str, file: Path) -> str:
    node = root.find(path)
    if node is None or node.text is None:
        raise SarProductError(f"{file}: element {path} missing; not a Sentinel-1 Level-1 annotation file")
    return node.text.strip()


def _float(root: ET.Element, path: str, file: Path) -> float:
    return float(_text(root, path, file))


def _floats(text: str | None) -> NDArray[np.float64]:
    return np.array((text or "").split(), dtype=np.float64)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


@dataclass(frozen=True)
class GeolocationGrid:
    """The annotation's tie-point grid (``geolocationGrid``), on a rectilinear set of lines and pixels.

    Attributes
    ----------
    lines, pixels
        ``(nl,)``, ``(np,)`` increasing 0-based image coordinates of the tie points.
    latitude, longitude, height
        ``(nl, np)`` WGS84 degrees and metres (ellipsoidal height of the tie point).
    incidence_deg, elevation_deg
        ``(nl, np)`` incidence angle at the ground and off-nadir (elevation) angle at the antenna, degrees.
    slant_range_time
        ``(nl, np)`` two-way slant range time, seconds.
    azimuth_time
        ``(nl, np)`` zero-Doppler time of the tie point, seconds since the annotation's ``start_time``.
    """

    lines: NDArray[np.float64]
    pixels: NDArray[np.float64]
    latitude: NDArray[np.float64]
    longitude: NDArray[np.float64]
    height: NDArray[np.float64]
    incidence_deg: NDArray[np.float64]
    elevation_deg: NDArray[np.float64]
    slant_range_time: NDArray[np.float64]
    azimuth_time: NDArray[np.float64]

    def interpolate(
        self, field: NDArray[np.float64], rows: ArrayLike, cols: ArrayLike
    ) -> NDArray[np.float64]:
        """Bilinear interpolation of a ``(nl, np)`` grid field at image (rows, cols), extrapolated outside."""
        r, c = np.broadcast_arrays(np.asarray(rows, np.float64), np.asarray(cols, np.float64))
        f = RegularGridInterpolator(
            (self.lines, self.pixels), field, method="linear", bounds_error=False, fill_value=None
        )
        return np.asarray(f(np.stack([r.ravel(), c.ravel()], axis=-1)).reshape(r.shape))

    def incidence(self, rows: ArrayLike, cols: ArrayLike) -> NDArray[np.float64]:
        """Incidence angle (degrees from the vertical) at image (rows, cols)."""
        return self.interpolate(self.incidence_deg, rows, cols)


@dataclass(frozen=True)
class OrbitStateVectors:
    """Orbit state vectors of the annotation (``generalAnnotation/orbitList``), Earth-fixed (ECEF).

    Attributes
    ----------
    time
        ``(n,)`` seconds since the annotation's ``start_time``.
    position, velocity
        ``(n, 3)`` ECEF metres and metres per second.
    """

    time: NDArray[np.float64]
    position: NDArray[np.float64]
    velocity: NDArray[np.float64]

    def velocity_at(self, t: ArrayLike) -> NDArray[np.float64]:
        """Velocity ``(..., 3)`` at times ``t`` (seconds since ``start_time``), linear interpolation."""
        tt = np.asarray(t, np.float64)
        return np.stack([np.interp(tt, self.time, self.velocity[:, k]) for k in range(3)], axis=-1)


def _orbit(root: ET.Element, file: Path, start: datetime) -> OrbitStateVectors:
    rows = []
    for o in root.findall("generalAnnotation/orbitList/orbit"):
        t = (_time(_text(o, "time", file)) - start).total_seconds()
        pos = [float(_text(o, f"position/{a}", file)) for a in "xyz"]
        vel = [float(_text(o, f"velocity/{a}", file)) for a in "xyz"]
        rows.append([t, *pos, *vel])
    if len(rows) < 2:
        raise SarProductError(f"{file}: fewer than 2 orbit state vectors; the annotation is incomplete")
    a = np.array(sorted(rows))
    return OrbitStateVectors(a[:, 0], a[:, 1:4], a[:, 4:7])


@dataclass(frozen=True)
class Burst:
    """One TOPS burst of an SLC swath (``swathTiming/burstList/burst``).

    Attributes
    ----------
    index
        0-based burst number in the swath.
    first_line
        First image line of the burst (``index × linesPerBurst``).
    lines
        Lines per burst.
    azimuth_time
        Zero-Doppler time of the burst's first line (UTC, naive).
    first_valid_sample, last_valid_sample
        ``(lines,)`` first and last valid sample of every line; −1 for lines without valid data.
    """

    index: int
    first_line: int
    lines: int
    azimuth_time: datetime
    first_valid_sample: NDArray[np.int64]
    last_valid_sample: NDArray[np.int64]

    @property
    def valid_lines(self) -> tuple[int, int]:
        """``(first, stop)`` image lines with valid data (stop exclusive)."""
        ok = np.flatnonzero(self.first_valid_sample >= 0)
        if ok.size == 0:
            return (self.first_line, self.first_line)
        return (self.first_line + int(ok[0]), self.first_line + int(ok[-1]) + 1)


@dataclass(frozen=True)
class Annotation:
    """What geodeform uses from a Sentinel-1 product annotation file.

    Attributes
    ----------
    path
        The XML file.
    mission
        ``"S1A"``, ``"S1B"``, ``"S1C"``...
    product_type
        ``"GRD"`` or ``"SLC"``.
    mode
        ``"IW"``, ``"EW"``, ``"SM"`` (stripmap swaths S1-S6) or ``"WV"``.
    swath
        ``"IW"`` for a GRD, ``"IW1"``... for an SLC sub-swath, ``"S1"``... for stripmap.
    polarisation
        ``"VV"``, ``"VH"``, ``"HH"`` or ``"HV"``.
    pass_direction
        ``"ascending"`` or ``"descending"``.
    heading_deg
        ``platformHeading``: flight direction, degrees clockwise from north.
    absolute_orbit
        Absolute orbit number.
    start_time, stop_time
        First and last line times (UTC, naive).
    projection
        ``"Ground Range"`` (GRD) or ``"Slant Range"`` (SLC).
    range_pixel_spacing, azimuth_pixel_spacing
        Pixel spacing, metres (ground range for GRD, slant range for SLC).
    n_lines, n_samples
        Image size of the measurement.
    incidence_mid_swath_deg
        ``incidenceAngleMidSwath``, degrees.
    radar_frequency
        Hz (wavelength = c / f).
    slant_range_time
        Two-way slant range time of the first sample, seconds.
    azimuth_time_interval
        Seconds between lines.
    range_looks, azimuth_looks
        Number of looks of the processing (per sub-swath, largest), 1 for an SLC.
    geolocation
        The tie-point grid.
    orbit
        Orbit state vectors (Earth-fixed), times relative to ``start_time``.
    bursts
        TOPS bursts (SLC IW/EW), empty otherwise.
    lines_per_burst, samples_per_burst
        Burst size (0 without bursts).
    """

    path: Path
    mission: str
    product_type: str
    mode: str
    swath: str
    polarisation: str
    pass_direction: PassDirection
    heading_deg: float
    absolute_orbit: int
    start_time: datetime
    stop_time: datetime
    projection: str
    range_pixel_spacing: float
    azimuth_pixel_spacing: float
    n_lines: int
    n_samples: int
    incidence_mid_swath_deg: float
    radar_frequency: float
    slant_range_time: float
    azimuth_time_interval: float
    range_looks: int
    azimuth_looks: int
    geolocation: GeolocationGrid
    orbit: OrbitStateVectors
    bursts: tuple[Burst, ...]
    lines_per_burst: int
    samples_per_burst: int

    @property
    def wavelength(self) -> float:
        """Radar wavelength, metres."""
        return SPEED_OF_LIGHT / self.radar_frequency

    @property
    def incidence_range_deg(self) -> tuple[float, float]:
        """Smallest and largest incidence angle of the geolocation grid, degrees."""
        inc = self.geolocation.incidence_deg
        return (float(inc.min()), float(inc.max()))

    def heading(self, rows: ArrayLike, cols: ArrayLike) -> NDArray[np.float64]:
        """Local flight direction at image (rows, cols), degrees clockwise from north.

        The satellite's Earth-fixed velocity at the pixel's zero-Doppler time, expressed in the local
        east/north/up frame of the ground point (geolocation grid) and projected on the horizontal: the
        along-track (azimuth) direction of that pixel. ``heading_deg`` (``platformHeading``) is one value
        for the whole product; this one follows the pixel (the two differ by up to a few degrees).
        """
        g = self.geolocation
        t = g.interpolate(g.azimuth_time, rows, cols)
        lat = np.deg2rad(g.interpolate(g.latitude, rows, cols))
        lon = np.deg2rad(g.interpolate(g.longitude, rows, cols))
        v = self.orbit.velocity_at(t)
        east = -np.sin(lon) * v[..., 0] + np.cos(lon) * v[..., 1]
        north = (
            -np.sin(lat) * np.cos(lon) * v[..., 0]
            - np.sin(lat) * np.sin(lon) * v[..., 1]
            + np.cos(lat) * v[..., 2]
        )
        return np.asarray(np.rad2deg(np.arctan2(east, north)))

    @property
    def relative_orbit(self) -> int | None:
        """Relative orbit (track) number computed from the absolute orbit (None for an unknown mission)."""
        return relative_orbit(self.mission, self.absolute_orbit)


def _geolocation(root: ET.Element, file: Path, start: datetime) -> GeolocationGrid:
    pts = root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    if not pts:
        raise SarProductError(f"{file}: no geolocationGrid points; the annotation is incomplete")
    names = (
        "line",
        "pixel",
        "latitude",
        "longitude",
        "height",
        "incidenceAngle",
        "elevationAngle",
        "slantRangeTime",
    )
    table = np.array(
        [
            [float(_text(p, n, file)) for n in names]
            + [(_time(_text(p, "azimuthTime", file)) - start).total_seconds()]
            for p in pts
        ]
    )
    lines = np.unique(table[:, 0])
    pixels = np.unique(table[:, 1])
    if lines.size * pixels.size != len(pts):
        raise SarProductError(
            f"{file}: the geolocation grid is not rectilinear ({len(pts)} points on {lines.size} lines x "
            f"{pixels.size} pixels)"
        )
    li = np.searchsorted(lines, table[:, 0])
    pi = np.searchsorted(pixels, table[:, 1])
    fields = []
    for k in range(2, len(names) + 1):
        grid = np.full((lines.size, pixels.size), np.nan)
        grid[li, pi] = table[:, k]
        fields.append(grid)
    return GeolocationGrid(lines, pixels, *fields)


def _bursts(root: ET.Element, file: Path) -> tuple[tuple[Burst, ...], int, int]:
    lpb = int(root.findtext("swathTiming/linesPerBurst", "0"))
    spb = int(root.findtext("swathTiming/samplesPerBurst", "0"))
    out = []
    for k, b in enumerate(root.findall("swathTiming/burstList/burst")):
        first = _floats(b.findtext("firstValidSample")).astype(np.int64)
        last = _floats(b.findtext("lastValidSample")).astype(np.int64)
        if first.size != lpb or last.size != lpb:
            raise SarProductError(f"{file}: burst {k} has {first.size} valid-sample entries, not {lpb} lines")
        out.append(Burst(k, k * lpb, lpb, _time(_text(b, "azimuthTime", file)), first, last))
    return tuple(out), lpb, spb


def _looks(root: ET.Element, which: str) -> int:
    vals = [int(e.text) for e in root.findall(".//" + which) if e.text]
    return max(vals) if vals else 1


def read_annotation(path: str | os.PathLike[str]) -> Annotation:
    """Read a Sentinel-1 Level-1 product annotation file (``annotation/s1?-*.xml``).

    Parameters
    ----------
    path
        The XML file.

    Returns
    -------
    Annotation

    Raises
    ------
    SarProductError
        Unreadable XML or missing elements (not a Level-1 product annotation).
    """
    file = Path(path)
    root = _parse(file)
    if root.tag != "product":
        raise SarProductError(
            f"{file}: root element <{root.tag}>, expected <product>; not a product annotation"
        )
    info = "generalAnnotation/productInformation/"
    img = "imageAnnotation/imageInformation/"
    proc_r = root.find("imageAnnotation/processingInformation/swathProcParamsList")
    bursts, lpb, spb = _bursts(root, file)
    mode = _text(root, "adsHeader/mode", file)
    start = _time(_text(root, "adsHeader/startTime", file))
    return Annotation(
        path=file,
        mission=_text(root, "adsHeader/missionId", file),
        product_type=_text(root, "adsHeader/productType", file),
        mode="SM" if mode.startswith("S") and mode[1:].isdigit() else mode,
        swath=_text(root, "adsHeader/swath", file),
        polarisation=_text(root, "adsHeader/polarisation", file),
        pass_direction="ascending"
        if _text(root, info + "pass", file).lower() == "ascending"
        else "descending",
        heading_deg=_float(root, info + "platformHeading", file),
        absolute_orbit=int(_text(root, "adsHeader/absoluteOrbitNumber", file)),
        start_time=start,
        stop_time=_time(_text(root, "adsHeader/stopTime", file)),
        projection=_text(root, info + "projection", file),
        range_pixel_spacing=_float(root, img + "rangePixelSpacing", file),
        azimuth_pixel_spacing=_float(root, img + "azimuthPixelSpacing", file),
        n_lines=int(_text(root, img + "numberOfLines", file)),
        n_samples=int(_text(root, img + "numberOfSamples", file)),
        incidence_mid_swath_deg=_float(root, img + "incidenceAngleMidSwath", file),
        radar_frequency=_float(root, info + "radarFrequency", file),
        slant_range_time=_float(root, img + "slantRangeTime", file),
        azimuth_time_interval=_float(root, img + "azimuthTimeInterval", file),
        range_looks=_looks(proc_r, "rangeProcessing/numberOfLooks") if proc_r is not None else 1,
        azimuth_looks=_looks(proc_r, "azimuthProcessing/numberOfLooks") if proc_r is not None else 1,
        geolocation=_geolocation(root, file, start),
        orbit=_orbit(root, file, start),
        bursts=bursts,
        lines_per_burst=lpb,
        samples_per_burst=spb,
    )


def _vectors(
    root: ET.Element, vector_path: str, value_tag: str, file: Path
) -> list[tuple[float, NDArray[np.float64], NDArray[np.float64]]]:
    out = []
    for v in root.findall(vector_path):
        pix = _floats(v.findtext("pixel"))
        val = _floats(v.findtext(value_tag))
        if pix.size == 0 or pix.size != val.size:
            raise SarProductError(f"{file}: a {value_tag} vector has {val.size} values for {pix.size} pixels")
        out.append((float(_text(v, "line", file)), pix, val))
    return out


def _interp_vectors(
    vectors: list[tuple[float, NDArray[np.float64], NDArray[np.float64]]],
    rows: NDArray[np.float64],
    cols: NDArray[np.float64],
) -> NDArray[np.float64]:
    """LUT value at every (row, col) of a rows x cols window: linear in pixel per vector, then in line."""
    lines = np.array([v[0] for v in vectors])
    per_vector = np.stack([np.interp(cols, pix, val) for _, pix, val in vectors])  # (nv, ncols)
    k = np.clip(np.searchsorted(lines, rows, side="right") - 1, 0, max(lines.size - 2, 0))
    if lines.size == 1:
        return np.broadcast_to(per_vector[0], (rows.size, cols.size)).copy()
    f = np.clip((rows - lines[k]) / (lines[k + 1] - lines[k]), 0.0, 1.0)[:, None]
    return (1.0 - f) * per_vector[k] + f * per_vector[k + 1]


@dataclass(frozen=True)
class CalibrationLUT:
    """Calibration vectors of one measurement (``calibration-*.xml``).

    ``sigma0 = |DN|² / A²`` with ``A`` the ``sigmaNought`` LUT interpolated at the pixel (likewise ``beta0``,
    ``gamma0``), after thermal-noise subtraction from ``|DN|²``.

    Attributes
    ----------
    path
        The XML file.
    polarisation, swath
        From its header, to check it belongs to the measurement.
    vectors
        ``{"sigmaNought": [(line, pixels, values), ...], "betaNought": ..., "gamma": ...}``.
    """

    path: Path
    polarisation: str
    swath: str
    vectors: dict[str, list[tuple[float, NDArray[np.float64], NDArray[np.float64]]]]

    def lut(
        self, name: Literal["sigmaNought", "betaNought", "gamma"], rows: ArrayLike, cols: ArrayLike
    ) -> NDArray[np.float64]:
        """The LUT on the window of image ``rows`` x ``cols`` (1-D index arrays), shape (rows, cols)."""
        return _interp_vectors(self.vectors[name], np.asarray(rows, np.float64), np.asarray(cols, np.float64))


def read_calibration(path: str | os.PathLike[str]) -> CalibrationLUT:
    """Read a Sentinel-1 calibration annotation (``annotation/calibration/calibration-*.xml``).

    Raises
    ------
    SarProductError
        Unreadable XML or a file that is not a calibration annotation.
    """
    file = Path(path)
    root = _parse(file)
    if root.tag != "calibration":
        raise SarProductError(f"{file}: root element <{root.tag}>, expected <calibration>")
    vectors = {
        name: _vectors(root, "calibrationVectorList/calibrationVector", name, file)
        for name in ("sigmaNought", "betaNought", "gamma")
    }
    return CalibrationLUT(
        file, _text(root, "adsHeader/polarisation", file), _text(root, "adsHeader/swath", file), vectors
    )


@dataclass(frozen=True)
class NoiseLUT:
    """Thermal-noise vectors of one measurement (``noise-*.xml``), in |DN|² units.

    IPF ≥ 2.9 products give range vectors and per-sub-swath azimuth vectors (noise = range × azimuth);
    older products give range vectors only (``noiseVectorList``).

    Attributes
    ----------
    path
        The XML file.
    polarisation, swath
        From its header.
    range_vectors
        ``[(line, pixels, values), ...]``.
    azimuth_blocks
        ``[(first_line, last_line, first_sample, last_sample, lines, values), ...]`` (inclusive bounds).
    """

    path: Path
    polarisation: str
    swath: str
    range_vectors: list[tuple[float, NDArray[np.float64], NDArray[np.float64]]]
    azimuth_blocks: list[tuple[int, int, int, int, NDArray[np.float64], NDArray[np.float64]]]

    def noise(self, rows: ArrayLike, cols: ArrayLike) -> NDArray[np.float64]:
        """Noise power (|DN|²) on the window ``rows`` x ``cols`` (1-D index arrays)."""
        r = np.asarray(rows, np.float64)
        c = np.asarray(cols, np.float64)
        out = _interp_vectors(self.range_vectors, r, c)
        for l0, l1, s0, s1, lines, vals in self.azimuth_blocks:
            rs = (r >= l0) & (r <= l1)
            cs = (c >= s0) & (c <= s1)
            if rs.any() and cs.any():
                out[np.ix_(rs, cs)] *= np.interp(r[rs], lines, vals)[:, None]
        return out


def read_noise(path: str | os.PathLike[str]) -> NoiseLUT:
    """Read a Sentinel-1 noise annotation (``annotation/calibration/noise-*.xml``), old or new layout.

    Raises
    ------
    SarProductError
        Unreadable XML or a file that is not a noise annotation.
    """
    file = Path(path)
    root = _parse(file)
    if root.tag != "noise":
        raise SarProductError(f"{file}: root element <{root.tag}>, expected <noise>")
    rng = _vectors(root, "noiseRangeVectorList/noiseRangeVector", "noiseRangeLut", file)
    if not rng:
        rng = _vectors(root, "noiseVectorList/noiseVector", "noiseLut", file)  # IPF < 2.9
    blocks = []
    for b in root.findall("noiseAzimuthVectorList/noiseAzimuthVector"):
        lines = _floats(b.findtext("line"))
        vals = _floats(b.findtext("noiseAzimuthLut"))
        l0, l1, s0, s1 = (
            int(_text(b, t, file))
            for t in ("firstAzimuthLine", "lastAzimuthLine", "firstRangeSample", "lastRangeSample")
        )
        blocks.append((l0, l1, s0, s1, lines, vals))
    return NoiseLUT(
        file, _text(root, "adsHeader/polarisation", file), _text(root, "adsHeader/swath", file), rng, blocks
    )
