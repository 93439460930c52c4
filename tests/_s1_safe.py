"""Small synthetic Sentinel-1 IW SLC (or GRD) SAFE products, written for the tests (no real SLC is available
here, and no real GRD of two dates or of two passes over one area).

The annotation, calibration and noise XML follow the element names and nesting of the real Level-1
annotation files (``s1-level-1-product.xsd``; compare the real GRD annotation in
``../shared/data/s1_grd/sarsen_grd_metadata_only``): ``adsHeader``,
``generalAnnotation/productInformation``, ``generalAnnotation/orbitList``,
``imageAnnotation/imageInformation``, ``imageAnnotation/processingInformation``,
``swathTiming`` with its ``burstList`` (TOPS bursts: ``linesPerBurst``, ``firstValidSample``...),
``geolocationGrid``. Values are those of an IW2 sub-swath, shrunk to a few hundred pixels. The
measurement is a CInt16 GeoTIFF with the geolocation grid as GCPs, like a real SLC measurement. With
``product_type="GRD"`` the product is a ground-range detected one (uint16 amplitude, no bursts); the
geometry is a flat Earth: line ``l``, sample ``p`` lie ``l * azimuth_spacing`` along the heading and
``p * range_spacing`` (ground range; slant range / sin(incidence) for an SLC) to its right from
(``lat0``, ``lon0``), see :func:`ground_position`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import ArrayLike
from rasterio.control import GroundControlPoint

R_EARTH = 6_371_000.0


@dataclass(frozen=True)
class SlcSpec:
    """What the synthetic product looks like."""

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


def _header(root: ET.Element, spec: SlcSpec, stop: datetime) -> None:
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


def ground_position(spec: SlcSpec, line: ArrayLike, pixel: ArrayLike) -> tuple[np.ndarray, ...]:
    """Latitude, longitude, incidence (degrees) of image points: a flat-Earth track at ``heading_deg``."""
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
    return lat, lon, inc


def _ground(spec: SlcSpec, line: float, pixel: float) -> tuple[float, float, float]:
    lat, lon, inc = ground_position(spec, line, pixel)
    return float(lat), float(lon), float(inc)


def _orbit(general: ET.Element, spec: SlcSpec) -> None:
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


def _annotation(spec: SlcSpec) -> ET.Element:
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


def _luts(spec: SlcSpec, kind: str, lines: int) -> ET.Element:
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


def _manifest(spec: SlcSpec) -> str:
    rel = spec.relative_orbit if spec.relative_orbit is not None else ((spec.absolute_orbit - 73) % 175) + 1
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" '
        'xmlns:safe="http://www.esa.int/safe/sentinel-1.0"><metadataSection>'
        '<metadataObject ID="measurementOrbitReference">'
        f'<metadataWrap><xmlData><safe:orbitReference><safe:orbitNumber type="start">{spec.absolute_orbit}'
        f'</safe:orbitNumber><safe:relativeOrbitNumber type="start">{rel}</safe:relativeOrbitNumber>'
        "</safe:orbitReference></xmlData></metadataWrap></metadataObject></metadataSection></xfdu:XFDU>\n"
    )


def write_slc_safe(folder: Path, spec: SlcSpec, data: np.ndarray) -> Path:
    """Write ``data`` (lines x samples of ``spec``: complex for an SLC, amplitude DN for a GRD) as a SAFE
    product in ``folder``; its path."""
    lines = spec.bursts * spec.lines_per_burst
    assert data.shape == (lines, spec.samples)
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
