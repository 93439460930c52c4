"""Synthetic Sentinel-1 IW products (SAFE folders) of a flat-Earth geometry, with a known motion.

For tests, tutorials and checking a processing chain when no real pair of dates over one area is at hand:

* :func:`write_safe` writes a SAFE folder (annotation, calibration and noise XML, manifest, measurement with
  the geolocation grid as GCPs) of an SLC or a GRD; the XML follow the element names and nesting of the real
  Level-1 annotation (``s1-level-1-product.xsd``), the values are those of an IW sub-swath;
* :func:`ground_position` gives where its pixels lie (a flat-Earth track);
* :func:`grd_track` writes the GRD products of one track over an area at several dates, the ground moved by a
  known east/north/up velocity, with the real texture shipped with geodeform as reflectivity and independent
  speckle on every date.

The pixels are synthetic, the metadata are realistic but not those of a real product: use them to test a
chain and its settings against a truth, not to learn about the sensor. For a real product's metadata with
your own pixels, see :func:`geodeform.sar.simulate.grd_from_template`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from numpy.typing import ArrayLike, NDArray
from rasterio.control import GroundControlPoint

from geodeform.decompose import azimuth_vector, los_vector
from geodeform.errors import InvalidInputError
from geodeform.sar.simulate import REPEAT_DAYS, gamma_speckle, warp
from geodeform.synthetic import load_texture

__all__ = ["GroundPosition", "SafeSpec", "SyntheticTrack", "grd_track", "ground_position", "write_safe"]

R_EARTH = 6_371_000.0


@dataclass(frozen=True)
class SafeSpec:
    """What a synthetic Sentinel-1 IW product looks like (its annotation values).

    Attributes
    ----------
    mission
        ``"S1A"`` or ``"S1B"`` (sets the relative orbit computed from ``absolute_orbit``).
    polarisation, swath
        Written in the annotation and the file names.
    absolute_orbit
        Absolute orbit number; the relative orbit is ``((absolute - 73) % 175) + 1`` for S1A.
    relative_orbit
        Written in the manifest; default: computed from ``absolute_orbit`` like the real products.
    pass_direction
        ``"Ascending"`` or ``"Descending"``.
    heading_deg
        Flight direction, degrees clockwise from north.
    start
        Acquisition time of the first line (UTC).
    bursts, lines_per_burst
        TOPS bursts of an SLC; a GRD has ``bursts * lines_per_burst`` lines and no burst list.
    samples
        Pixels per line.
    range_spacing, azimuth_spacing
        Pixel spacing, metres (slant range for an SLC, ground range for a GRD).
    incidence_near, incidence_far
        Incidence angle at the first and last sample, degrees.
    lat0, lon0
        Position of line 0, sample 0, degrees.
    product_type
        ``"SLC"`` (complex measurement) or ``"GRD"`` (uint16 amplitude).
    """

    mission: str = "S1A"
    polarisation: str = "VV"
    swath: str = "IW2"
    absolute_orbit: int = 30_073  # relative orbit ((30073 - 73) % 175) + 1 = 76
    relative_orbit: int | None = None  # manifest value; default computed like the real products
    pass_direction: str = "Descending"
    heading_deg: float = -167.0
    start: datetime = datetime(2020, 6, 1, 5, 30, 0)
    bursts: int = 3
    lines_per_burst: int = 96
    samples: int = 256
    range_spacing: float = 2.329562  # slant range, m (IW SLC)
    azimuth_spacing: float = 13.97  # m
    incidence_near: float = 36.0
    incidence_far: float = 36.6
    lat0: float = 45.2
    lon0: float = 6.3
    product_type: str = "SLC"  # or "GRD"


def _sub(parent: ET.Element, tag: str, text: object | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrs)
    if text is not None:
        e.text = str(text)
    return e


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _header(root: ET.Element, spec: SafeSpec, stop: datetime) -> None:
    h = _sub(root, "adsHeader")
    for tag, val in (
        ("missionId", spec.mission),
        ("productType", spec.product_type),
        ("polarisation", spec.polarisation),
        ("mode", "IW"),
        ("swath", spec.swath),
        ("startTime", _iso(spec.start)),
        ("stopTime", _iso(stop)),
        ("absoluteOrbitNumber", spec.absolute_orbit),
        ("missionDataTakeId", 123456),
        ("imageNumber", "005"),
    ):
        _sub(h, tag, val)


class GroundPosition(NamedTuple):
    """Where image points of a synthetic product lie: latitude, longitude and incidence, degrees."""

    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    incidence: NDArray[np.float64]


def ground_position(spec: SafeSpec, line: ArrayLike, pixel: ArrayLike) -> GroundPosition:
    """Latitude, longitude, incidence (degrees) of image points of a product written by :func:`write_safe`.

    A flat-Earth track: line ``l``, sample ``p`` lie ``l * azimuth_spacing`` metres along ``heading_deg`` and
    ``p * range_spacing`` metres (ground range; slant range / sin(incidence) for an SLC) to its right (the
    radar looks right) from (``lat0``, ``lon0``).

    Parameters
    ----------
    spec
        The product.
    line, pixel
        Image coordinates (arrays of one shape), the centre of the first pixel at (0, 0).
    """
    line = np.asarray(line, dtype=float)
    pixel = np.asarray(pixel, dtype=float)
    h = np.deg2rad(spec.heading_deg)
    inc = spec.incidence_near + (spec.incidence_far - spec.incidence_near) * pixel / (spec.samples - 1)
    along = line * spec.azimuth_spacing
    across = pixel * spec.range_spacing  # ground range
    if spec.product_type == "SLC":
        across = across / np.sin(np.deg2rad(inc))
    # right-looking: range direction is heading + 90 degrees
    east = along * np.sin(h) + across * np.sin(h + np.pi / 2)
    north = along * np.cos(h) + across * np.cos(h + np.pi / 2)
    lat = spec.lat0 + np.rad2deg(north / R_EARTH)
    lon = spec.lon0 + np.rad2deg(east / (R_EARTH * np.cos(np.deg2rad(spec.lat0))))
    return GroundPosition(lat, lon, inc)


def _ground(spec: SafeSpec, line: float, pixel: float) -> tuple[float, float, float]:
    lat, lon, inc = ground_position(spec, line, pixel)
    return float(lat), float(lon), float(inc)


def _orbit(general: ET.Element, spec: SafeSpec) -> None:
    lat, lon = np.deg2rad(spec.lat0), np.deg2rad(spec.lon0)
    h = np.deg2rad(spec.heading_deg)
    v_enu = 7000.0 * np.array([np.sin(h), np.cos(h), 0.0])
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    v = v_enu[0] * east + v_enu[1] * north
    pos0 = (R_EARTH + 700e3) * up
    orbits = _sub(general, "orbitList", count="5")
    for k in range(-2, 3):
        o = _sub(orbits, "orbit")
        _sub(o, "time", _iso(spec.start + timedelta(seconds=10 * k)))
        _sub(o, "frame", "Earth Fixed")
        p = _sub(o, "position")
        vel = _sub(o, "velocity")
        for a, pv, vv in zip("xyz", pos0 + v * 10 * k, v, strict=True):
            _sub(p, a, f"{pv:.6e}")
            _sub(vel, a, f"{vv:.6e}")


def _annotation(spec: SafeSpec) -> ET.Element:
    lines = spec.bursts * spec.lines_per_burst
    dt = 2.055556e-03
    stop = spec.start + timedelta(seconds=lines * dt)
    root = ET.Element("product")
    _header(root, spec, stop)
    general = _sub(root, "generalAnnotation")
    info = _sub(general, "productInformation")
    _sub(info, "pass", spec.pass_direction)
    _sub(info, "timelinessCategory", "Fast-24h")
    _sub(info, "platformHeading", f"{spec.heading_deg:.15e}")
    _sub(info, "projection", "Slant Range" if spec.product_type == "SLC" else "Ground Range")
    _sub(info, "rangeSamplingRate", "6.434523812571428e+07")
    _sub(info, "radarFrequency", "5.405000454334350e+09")
    _sub(info, "azimuthSteeringRate", "1.590368784000000e+00")
    _orbit(general, spec)
    image = _sub(root, "imageAnnotation")
    ii = _sub(image, "imageInformation")
    for tag, val in (
        ("productFirstLineUtcTime", _iso(spec.start)),
        ("productLastLineUtcTime", _iso(stop)),
        ("slantRangeTime", "5.9e-03"),
        ("pixelValue", "Complex" if spec.product_type == "SLC" else "Detected"),
        ("outputPixels", "16 bit Signed Integer"),
        ("rangePixelSpacing", f"{spec.range_spacing:.6e}"),
        ("azimuthPixelSpacing", f"{spec.azimuth_spacing:.6e}"),
        ("azimuthTimeInterval", f"{dt:.15e}"),
        ("azimuthFrequency", "4.864863102995529e+02"),
        ("numberOfSamples", spec.samples),
        ("numberOfLines", lines),
        ("zeroDopMinusAcqTime", "2.0e+00"),
        ("incidenceAngleMidSwath", f"{(spec.incidence_near + spec.incidence_far) / 2:.15e}"),
    ):
        _sub(ii, tag, val)
    proc = _sub(image, "processingInformation")
    lst = _sub(proc, "swathProcParamsList", count="1")
    spp = _sub(lst, "swathProcParams")
    _sub(spp, "swath", spec.swath)
    for part in ("rangeProcessing", "azimuthProcessing"):
        e = _sub(spp, part)
        _sub(e, "windowType", "Hamming")
        _sub(e, "numberOfLooks", 1)
    timing = _sub(root, "swathTiming")
    _sub(timing, "linesPerBurst", spec.lines_per_burst)
    _sub(timing, "samplesPerBurst", spec.samples)
    grd = spec.product_type == "GRD"
    bl = _sub(timing, "burstList", count="0" if grd else str(spec.bursts))
    for b in range(0 if grd else spec.bursts):
        burst = _sub(bl, "burst")
        _sub(burst, "azimuthTime", _iso(spec.start + timedelta(seconds=b * spec.lines_per_burst * dt)))
        _sub(burst, "byteOffset", b * spec.lines_per_burst * spec.samples * 4)
        first = np.full(spec.lines_per_burst, 10)
        last = np.full(spec.lines_per_burst, spec.samples - 12)
        first[:6] = -1  # invalid first and last lines, as in real bursts
        last[:6] = -1
        first[-5:] = -1
        last[-5:] = -1
        _sub(burst, "firstValidSample", " ".join(map(str, first)), count=str(first.size))
        _sub(burst, "lastValidSample", " ".join(map(str, last)), count=str(last.size))
    grid = _sub(_sub(root, "geolocationGrid"), "geolocationGridPointList")
    glines = np.linspace(0, lines - 1, 4).round()
    gpix = np.linspace(0, spec.samples - 1, 5).round()
    grid.set("count", str(glines.size * gpix.size))
    for li in glines:
        for pj in gpix:
            lat, lon, inc = _ground(spec, li, pj)
            p = _sub(grid, "geolocationGridPoint")
            _sub(p, "azimuthTime", _iso(spec.start + timedelta(seconds=li * dt)))
            _sub(p, "slantRangeTime", f"{5.9e-3 + pj * 2 * spec.range_spacing / 299792458.0:.15e}")
            _sub(p, "line", int(li))
            _sub(p, "pixel", int(pj))
            _sub(p, "latitude", f"{lat:.15e}")
            _sub(p, "longitude", f"{lon:.15e}")
            _sub(p, "height", "0.0")
            _sub(p, "incidenceAngle", f"{inc:.15e}")
            _sub(p, "elevationAngle", f"{inc - 4.0:.15e}")
    return root


def _luts(spec: SafeSpec, kind: str, lines: int) -> ET.Element:
    root = ET.Element(kind)
    _header(root, spec, spec.start)
    pix = np.arange(0, spec.samples + 39, 40).clip(max=spec.samples - 1)
    if kind == "calibration":
        _sub(_sub(root, "calibrationInformation"), "absoluteCalibrationConstant", "1.0")
        vl = _sub(root, "calibrationVectorList", count="2")
        for line in (0, lines - 1):
            v = _sub(vl, "calibrationVector")
            _sub(v, "azimuthTime", _iso(spec.start))
            _sub(v, "line", line)
            _sub(v, "pixel", " ".join(map(str, pix)), count=str(pix.size))
            for tag, base in (("sigmaNought", 500.0), ("betaNought", 400.0), ("gamma", 480.0), ("dn", 400.0)):
                vals = base + 0.1 * pix
                _sub(v, tag, " ".join(f"{x:.6e}" for x in vals), count=str(pix.size))
    else:
        vl = _sub(root, "noiseRangeVectorList", count="2")
        for line in (0, lines - 1):
            v = _sub(vl, "noiseRangeVector")
            _sub(v, "azimuthTime", _iso(spec.start))
            _sub(v, "line", line)
            _sub(v, "pixel", " ".join(map(str, pix)), count=str(pix.size))
            _sub(v, "noiseRangeLut", " ".join("1.0e+01" for _ in pix), count=str(pix.size))
    return root


def _manifest(spec: SafeSpec) -> str:
    rel = spec.relative_orbit if spec.relative_orbit is not None else ((spec.absolute_orbit - 73) % 175) + 1
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" '
        'xmlns:safe="http://www.esa.int/safe/sentinel-1.0"><metadataSection>'
        '<metadataObject ID="measurementOrbitReference">'
        f'<metadataWrap><xmlData><safe:orbitReference><safe:orbitNumber type="start">{spec.absolute_orbit}'
        f'</safe:orbitNumber><safe:relativeOrbitNumber type="start">{rel}</safe:relativeOrbitNumber>'
        "</safe:orbitReference></xmlData></metadataWrap></metadataObject></metadataSection></xfdu:XFDU>\n"
    )


def write_safe(folder: str | os.PathLike[str], spec: SafeSpec, data: ArrayLike) -> Path:
    """Write a synthetic Sentinel-1 IW SAFE product: annotation, calibration, noise, manifest, measurement.

    The XML follow the element names and nesting of real Level-1 products (what :func:`geodeform.sar.open_s1`
    reads); the geolocation grid is that of :func:`ground_position` and is written as the measurement's GCPs.

    Parameters
    ----------
    folder
        Where the ``.SAFE`` folder is written (created).
    spec
        The product's geometry, orbit and date.
    data
        ``(bursts * lines_per_burst, samples)`` pixels: complex for an SLC, amplitude DN (≥ 0, rounded and
        clipped to uint16) for a GRD.

    Returns
    -------
    Path
        The new SAFE folder.

    Raises
    ------
    InvalidInputError
        ``data`` does not have the product's shape.
    """
    folder = Path(folder)
    data = np.asarray(data)
    lines = spec.bursts * spec.lines_per_burst
    if data.shape != (lines, spec.samples):
        raise InvalidInputError(
            f"data: shape {data.shape}, the product is {lines} x {spec.samples}; give that"
        )
    stamp = spec.start.strftime("%Y%m%dT%H%M%S")
    stop = (spec.start + timedelta(seconds=10)).strftime("%Y%m%dT%H%M%S")
    kind = "GRDH" if spec.product_type == "GRD" else "SLC_"
    safe = folder / f"{spec.mission}_IW_{kind}_1SDV_{stamp}_{stop}_{spec.absolute_orbit:06d}_036000_ABCD.SAFE"
    stem = (
        f"{spec.mission.lower()}-{spec.swath.lower()}-{spec.product_type.lower()}-{spec.polarisation.lower()}-"
        f"{stamp.lower()}-{stop.lower()}-{spec.absolute_orbit:06d}-036000-005"
    )
    for sub in ("annotation/calibration", "measurement"):
        (safe / sub).mkdir(parents=True, exist_ok=True)
    ann = _annotation(spec)
    ET.ElementTree(ann).write(safe / "annotation" / f"{stem}.xml", encoding="UTF-8", xml_declaration=True)
    for kind in ("calibration", "noise"):
        ET.ElementTree(_luts(spec, kind, lines)).write(
            safe / "annotation" / "calibration" / f"{kind}-{stem}.xml", encoding="UTF-8", xml_declaration=True
        )
    (safe / "manifest.safe").write_text(_manifest(spec), encoding="utf-8")
    gcps = []
    for p in ann.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint"):
        gcps.append(
            GroundControlPoint(
                row=float(p.findtext("line")) + 0.5,
                col=float(p.findtext("pixel")) + 0.5,
                x=float(p.findtext("longitude")),
                y=float(p.findtext("latitude")),
                z=0.0,
            )
        )
    profile = {
        "driver": "GTiff",
        "width": spec.samples,
        "height": lines,
        "count": 1,
        "dtype": "complex_int16" if spec.product_type == "SLC" else "uint16",
    }
    with rasterio.open(
        safe / "measurement" / f"{stem}.tiff", "w", gcps=gcps, crs=rasterio.crs.CRS.from_epsg(4326), **profile
    ) as dst:
        if spec.product_type == "SLC":
            dst.write(data.astype(np.complex64), 1)
        else:
            dst.write(np.clip(np.rint(data), 0, 65535).astype(np.uint16), 1)
    return safe


_ORBIT_OFFSET = {"S1A": 73, "S1B": 27}
_CYCLES_BEFORE = 171  # repeat cycles before the first product: absolute orbits of mid-2020 for S1A


@dataclass(frozen=True)
class SyntheticTrack:
    """The GRD products of one track written by :func:`grd_track`.

    Attributes
    ----------
    paths
        The SAFE folders, one per date, in date order.
    dates
        Their acquisition dates, ISO ``YYYY-MM-DD``.
    specs
        Their :class:`SafeSpec` (geometry, orbit, start time).
    relative_orbit
        The track's relative orbit.
    """

    paths: list[Path]
    dates: list[str]
    specs: list[SafeSpec]
    relative_orbit: int

    def inputs(self) -> list[dict[str, str]]:
        """The ``inputs`` entries of a job file (``path`` and ``date`` of every product)."""
        return [{"path": str(p), "date": d} for p, d in zip(self.paths, self.dates, strict=True)]


def _track_texture(
    texture: ArrayLike | None, size: int, seed: int, contrast_db: float
) -> NDArray[np.float64]:
    """Reflectivity (intensity) of a track: the texture turned by ``seed``, standardised and mapped to a
    backscatter of ``contrast_db`` dB standard deviation around an amplitude of 200 DN."""
    tex = np.asarray(load_texture() if texture is None else texture, dtype=np.float64)
    if tex.ndim != 2 or min(tex.shape) < size:
        raise InvalidInputError(f"texture: shape {tex.shape}, need a 2-D image of at least {size} x {size}")
    tex = np.rot90(tex, seed % 4)
    tex = tex[:, ::-1] if (seed // 4) % 2 else tex
    tex = tex[:size, :size]
    z = (tex - tex.mean()) / max(float(tex.std()), 1e-12)
    return (200.0 * 10 ** (contrast_db * z / 20.0)) ** 2


def _track_days(dates: Sequence[str]) -> list[int]:
    """Days of every date since the first, checked: increasing, whole repeat cycles apart."""
    days = [(date.fromisoformat(d) - date.fromisoformat(dates[0])).days for d in dates] if dates else []
    if not days or any(b <= a for a, b in pairwise(days)) or any(d % REPEAT_DAYS for d in days):
        raise InvalidInputError(
            f"dates: {list(dates)}; give increasing dates whole repeat cycles ({REPEAT_DAYS} days) apart, "
            "as one Sentinel-1 satellite acquires a track"
        )
    return days


def _track_spec(
    mission: str,
    relative_orbit: int,
    first_date: str,
    centre: tuple[float, float],
    heading_deg: float,
    incidence_deg: float,
    *,
    size: int,
    pixel_m: float,
) -> SafeSpec:
    """The first product of a :func:`grd_track`: centred on ``centre``, on ``relative_orbit``."""
    if mission not in _ORBIT_OFFSET:
        raise InvalidInputError(f"mission: {mission!r}; give one of {sorted(_ORBIT_OFFSET)}")
    if not 1 <= relative_orbit <= 175:
        raise InvalidInputError(f"relative_orbit: {relative_orbit}, must be in 1-175")
    ascending = abs(heading_deg) < 90
    h = np.deg2rad(heading_deg)
    half = (size - 1) / 2 * pixel_m  # metres from the first line and sample to the centre
    east = half * np.sin(h) + half * np.sin(h + np.pi / 2)
    north = half * np.cos(h) + half * np.cos(h + np.pi / 2)
    return SafeSpec(
        mission=mission,
        product_type="GRD",
        swath="IW",
        bursts=1,
        lines_per_burst=size,
        samples=size,
        range_spacing=pixel_m,
        azimuth_spacing=pixel_m,
        incidence_near=incidence_deg,
        incidence_far=incidence_deg + 0.3,
        heading_deg=heading_deg,
        pass_direction="Ascending" if ascending else "Descending",
        absolute_orbit=_ORBIT_OFFSET[mission] + relative_orbit - 1 + 175 * _CYCLES_BEFORE,
        lat0=float(centre[0] - np.rad2deg(north / R_EARTH)),
        lon0=float(centre[1] - np.rad2deg(east / (R_EARTH * np.cos(np.deg2rad(centre[0]))))),
        start=datetime.fromisoformat(first_date).replace(hour=17 if ascending else 5, minute=30),
    )


def grd_track(
    folder: str | os.PathLike[str],
    velocity: Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike],
    *,
    centre: tuple[float, float],
    dates: Sequence[str],
    heading_deg: float,
    incidence_deg: float,
    relative_orbit: int,
    size: int = 256,
    pixel_m: float = 10.0,
    looks: float = 4.4,
    texture: ArrayLike | None = None,
    contrast_db: float = 6.0,
    mission: str = "S1A",
    seed: int = 0,
) -> SyntheticTrack:
    """Write the Sentinel-1 GRD products of one track over an area, the ground moving at a known velocity.

    Every product is a ``size`` x ``size`` GRD (flat-Earth geometry, :func:`ground_position`) centred on
    ``centre``. Its reflectivity is a real texture (default: the Landsat-8 crop shipped with geodeform,
    turned and flipped by ``seed`` so that two tracks do not share it) mapped to a backscatter of
    ``contrast_db`` dB standard deviation (an optical texture is smoother than a radar scene: with its own
    contrast under 4.4-look speckle, offsets lock toward whole pixels), moved at each date by the ground
    displacement ``velocity * (date - dates[0])`` seen in this geometry: ``-(d · los) / sin(incidence)``
    ground-range pixels (+ far range) and ``d · azimuth`` lines (+ along the flight); each date gets
    independent Gamma speckle of ``looks`` looks. The measured offsets can then be scored against
    ``velocity``.

    Parameters
    ----------
    folder
        Where the SAFE folders are written (created).
    velocity
        Ground velocity, ``(lat, lon)`` in degrees -> ``(..., 3)`` array of [east, north, up], m/yr.
    centre
        (lat, lon) of the products' centre, degrees.
    dates
        ISO dates, increasing, whole repeat cycles (12 days) after the first.
    heading_deg
        Flight direction, degrees clockwise from north (about -12 ascending, -168 descending).
    incidence_deg
        Incidence angle at near range, degrees (it grows by 0.3 degrees across the product).
    relative_orbit
        Relative orbit (1-175) of the track.
    size
        Lines and samples of each product.
    pixel_m
        Ground-range and azimuth pixel spacing, metres.
    looks
        Equivalent number of looks of the speckle (4.4 for IW GRDH).
    texture
        2-D texture of at least ``size`` x ``size`` (any unit: it is standardised).
    contrast_db
        Standard deviation of the backscatter made from the texture, dB (a few dB on real scenes).
    mission
        ``"S1A"`` or ``"S1B"``.
    seed
        Random seed of the speckle and of the texture's orientation.

    Returns
    -------
    SyntheticTrack
        The products, their dates and specs.

    Raises
    ------
    InvalidInputError
        Dates not whole repeat cycles apart, an unknown mission, a relative orbit out of 1-175, a texture
        too small, or a velocity of the wrong shape.
    """
    days = _track_days(dates)
    spec = _track_spec(
        mission, relative_orbit, dates[0], centre, heading_deg, incidence_deg, size=size, pixel_m=pixel_m
    )
    first, absolute = spec.start, spec.absolute_orbit
    lines, pixels = np.mgrid[0:size, 0:size].astype(np.float64)
    where = ground_position(spec, lines, pixels)
    v = np.asarray(velocity(where.lat, where.lon), dtype=np.float64)
    if v.shape != (size, size, 3):
        raise InvalidInputError(f"velocity: returned shape {v.shape}; give (..., 3) [east, north, up] m/yr")
    reflectivity = _track_texture(texture, size, seed, contrast_db)
    rng = np.random.default_rng(seed)
    los = los_vector(heading_deg, where.incidence)
    sin_inc = np.sin(np.deg2rad(where.incidence))
    out = SyntheticTrack([], [], [], relative_orbit)
    for d, iso in zip(days, dates, strict=True):
        moved = v * d / 365.25  # metres since the first date
        dx = -np.einsum("...k,...k->...", moved, los) / sin_inc / pixel_m
        dy = np.einsum("...k,...k->...", moved, azimuth_vector(heading_deg)) / pixel_m
        image = warp(reflectivity, dx, dy, order=3) if d else reflectivity
        amplitude = np.sqrt(gamma_speckle(np.clip(image, 0, None), looks, rng))
        at = replace(spec, start=first + timedelta(days=d), absolute_orbit=absolute + 175 * d // REPEAT_DAYS)
        out.paths.append(write_safe(folder, at, amplitude))
        out.dates.append(str(iso))
        out.specs.append(at)
    return out
