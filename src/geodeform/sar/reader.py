"""Reading Sentinel-1 GRD and SLC measurements (SAFE folders or loose TIFFs) with their annotation.

:func:`open_s1` returns an :class:`S1Image`: the pixels (amplitude or calibrated backscatter for a GRD,
complex values for an SLC), the annotation (orbit direction, heading, incidence per pixel, pixel spacing,
bursts), the ground control points, and what was done to the pixels (calibration, noise removal) or could
not be done (missing LUT), in ``notes``.

File layout searched, for a measurement ``.../measurement/NAME.tiff``:

* annotation: ``.../annotation/NAME.xml``, else ``NAME.xml`` next to the TIFF;
* calibration and noise: ``.../annotation/calibration/{calibration,noise}-NAME.xml``, else next to the
  annotation or the TIFF;
* relative orbit: ``manifest.safe`` of the SAFE folder when present, else computed from the absolute orbit.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.control import GroundControlPoint
from rasterio.windows import Window

from geodeform.sar.annotation import (
    Annotation,
    Burst,
    CalibrationLUT,
    NoiseLUT,
    read_annotation,
    read_calibration,
    read_noise,
)
from geodeform.sar.annotation import relative_orbit as orbit_number
from geodeform.sar.errors import IncompatiblePairError, MissingAnnotationError, SarProductError

__all__ = ["BurstImage", "Radiometry", "S1Image", "check_pair", "find_measurements", "open_s1"]

log = logging.getLogger(__name__)

Radiometry = Literal["sigma0", "beta0", "gamma0", "dn"]
_LUT_NAME: dict[str, Literal["sigmaNought", "betaNought", "gamma"]] = {
    "sigma0": "sigmaNought",
    "beta0": "betaNought",
    "gamma0": "gamma",
}
# S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B
_SAFE_NAME = re.compile(
    r"(?P<mission>S1[A-D])_(?P<mode>IW|EW|WV|S[1-6])_(?P<ptype>GRD|SLC)[FHM_]?_\d(?P<cls>[SA])(?P<pol>SH|SV|DH|DV|HH|VV)"
    r"_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<orbit>\d{6})_"
)


@dataclass(frozen=True)
class BurstImage:
    """The pixels of one TOPS burst of an SLC.

    Attributes
    ----------
    burst
        Its annotation (lines, valid samples, time).
    data
        ``(lines, samples)`` complex64; NaN outside the burst's valid lines and samples.
    valid
        ``(lines, samples)`` True on the valid samples.
    """

    burst: Burst
    data: NDArray[np.complex64]
    valid: NDArray[np.bool_]

    @property
    def amplitude(self) -> NDArray[np.float32]:
        """``|data|`` (NaN outside the valid samples)."""
        return np.abs(self.data).astype(np.float32)


@dataclass(frozen=True)
class S1Image:
    """A Sentinel-1 measurement (or a window of it) with its geometry.

    Attributes
    ----------
    data
        ``(rows, cols)`` float32 (GRD: amplitude DN, or calibrated backscatter *intensity* in linear units for
        ``radiometry`` sigma0 / beta0 / gamma0, NaN where the noise-corrected power is ≤ 0 or no data) or
        complex64 (SLC: complex DN, or complex values scaled by 1 / A so that ``|z|²`` is the calibrated
        intensity).
    radiometry
        ``"dn"`` (uncalibrated) or the calibrated quantity.
    annotation
        Parsed annotation, or None when read with ``require_annotation=False`` and none was found.
    gcps
        Ground control points in GDAL's convention (``row``, ``col`` = pixel-corner coordinates of the full
        measurement; geodeform's pixel centre (i, j) is GDAL's (i + 0.5, j + 0.5)), EPSG:4326.
    window
        ``(row0, col0)`` of ``data[0, 0]`` in the full measurement.
    path
        The measurement file.
    mission, mode, product_type, polarisation
        E.g. ``"S1A"``, ``"IW"``, ``"GRD"``, ``"VV"`` (from the annotation, else the file/folder name).
    relative_orbit
        Track number (manifest, else computed from the absolute orbit), None when unknown.
    start_time
        Acquisition start (UTC, naive), None when unknown.
    notes
        What was not done and why (e.g. ``"no noise LUT: thermal noise not removed"``).
    """

    data: NDArray[np.float32] | NDArray[np.complex64]
    radiometry: Radiometry
    annotation: Annotation | None
    gcps: tuple[GroundControlPoint, ...]
    window: tuple[int, int]
    path: Path
    mission: str
    mode: str
    product_type: str
    polarisation: str
    relative_orbit: int | None
    start_time: datetime | None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_complex(self) -> bool:
        """True for SLC data (complex values)."""
        return bool(np.iscomplexobj(self.data))

    @property
    def pass_direction(self) -> str | None:
        """``"ascending"``, ``"descending"``, or None without annotation."""
        return None if self.annotation is None else self.annotation.pass_direction

    def pixel_coordinates(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """1-D full-measurement row and column indices of ``data`` (pixel centres)."""
        h, w = self.data.shape
        return np.arange(h, dtype=np.float64) + self.window[0], np.arange(w, dtype=np.float64) + self.window[
            1
        ]

    def require_annotation(self, what: str) -> Annotation:
        """The annotation, or a :class:`MissingAnnotationError` saying that ``what`` needs it."""
        if self.annotation is None:
            raise MissingAnnotationError(
                f"{self.path}: {what} needs the annotation XML, which was not found; pass annotation=PATH "
                "to open_s1 (annotation/NAME.xml of the SAFE product)"
            )
        return self.annotation

    def incidence(
        self, rows: NDArray[np.float64] | None = None, cols: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """Incidence angle (degrees) at ``data``-relative (rows, cols), default every pixel.

        Raises
        ------
        MissingAnnotationError
            Without annotation.
        """
        ann = self.require_annotation("the incidence angle")
        r, c = self._grid(rows, cols)
        return ann.geolocation.incidence(r, c)

    def heading(
        self, rows: NDArray[np.float64] | None = None, cols: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """Local flight direction (degrees clockwise from north) at ``data``-relative (rows, cols).

        See :meth:`geodeform.sar.annotation.Annotation.heading`.
        """
        ann = self.require_annotation("the heading")
        r, c = self._grid(rows, cols)
        return ann.heading(r, c)

    def burst(self, index: int) -> BurstImage:
        """The pixels of SLC burst ``index`` (0-based), its invalid lines and samples NaN.

        Raises
        ------
        SarProductError
            Not an SLC with bursts, an unknown burst, or a window that does not hold the whole burst.
        """
        ann = self.require_annotation("burst access")
        if not ann.bursts or not self.is_complex:
            raise SarProductError(f"{self.path}: no TOPS bursts (not an IW/EW SLC measurement)")
        if not 0 <= index < len(ann.bursts):
            raise SarProductError(f"{self.path}: burst {index} does not exist; there are {len(ann.bursts)}")
        b = ann.bursts[index]
        r0 = b.first_line - self.window[0]
        whole = self.window[1] == 0 and self.data.shape[1] == ann.n_samples
        if r0 < 0 or r0 + b.lines > self.data.shape[0] or not whole:
            raise SarProductError(
                f"{self.path}: burst {index} is not inside the window read; open without window="
            )
        data = np.array(self.data[r0 : r0 + b.lines], dtype=np.complex64)
        cols = np.arange(data.shape[1])[None, :]
        valid = (b.first_valid_sample[:, None] >= 0) & (cols >= b.first_valid_sample[:, None])
        valid &= cols <= b.last_valid_sample[:, None]
        data[~valid] = np.nan
        return BurstImage(burst=b, data=data, valid=valid)

    def _grid(
        self, rows: NDArray[np.float64] | None, cols: NDArray[np.float64] | None
    ) -> tuple[NDArray[np.float64], ...]:
        if rows is None or cols is None:
            rr, cc = self.pixel_coordinates()
            return tuple(np.meshgrid(rr, cc, indexing="ij"))
        return (np.asarray(rows, np.float64) + self.window[0], np.asarray(cols, np.float64) + self.window[1])


def _safe_root(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.suffix.upper() == ".SAFE" or (p / "manifest.safe").exists():
            return p
    return None


def find_measurements(safe: str | os.PathLike[str]) -> list[Path]:
    """Measurement TIFFs of a SAFE folder, sorted by name (empty when the measurement folder is missing)."""
    folder = Path(safe) / "measurement"
    return sorted(p for p in folder.glob("*.tif*") if p.is_file()) if folder.is_dir() else []


def _select(safe: Path, polarisation: str | None, swath: str | None) -> Path:
    tiffs = find_measurements(safe)
    if not tiffs:
        raise SarProductError(
            f"{safe}: no measurement/*.tiff in this SAFE folder (metadata-only copy?); read the annotation "
            "with geodeform.sar.annotation.read_annotation, or give the full product"
        )
    keep = [
        t
        for t in tiffs
        if (polarisation is None or f"-{polarisation.lower()}" in t.stem.lower())
        and (
            swath is None
            or f"-{swath.lower()}-" in t.stem.lower()
            or t.stem.lower().startswith(swath.lower())
        )
    ]
    if len(keep) != 1:
        names = ", ".join(t.name for t in tiffs)
        raise SarProductError(
            f"{safe}: {len(keep)} measurements match polarisation={polarisation!r}, swath={swath!r} among "
            f"[{names}]; choose one with polarisation= (e.g. 'VV') and, for an SLC, swath= (e.g. 'IW2')"
        )
    return keep[0]


def _sibling(tiff: Path, prefix: str) -> Path | None:
    """``annotation/[prefix]NAME.xml`` of a measurement, looked up in the SAFE layout and next to the TIFF."""
    name = f"{prefix}{tiff.stem}.xml"
    sub = "annotation/calibration" if prefix else "annotation"
    for cand in (
        tiff.parent.parent / sub / name,
        tiff.parent / name,
        tiff.parent.parent / "annotation" / name,
    ):
        if cand.is_file():
            return cand
    return None


def _manifest_orbit(safe: Path | None) -> int | None:
    if safe is None or not (safe / "manifest.safe").is_file():
        return None
    try:
        root = ET.parse(safe / "manifest.safe").getroot()
    except ET.ParseError:
        return None
    for e in root.iter():
        if e.tag.endswith("relativeOrbitNumber") and e.text:
            return int(e.text)
    return None


def _name_info(tiff: Path, safe: Path | None) -> dict[str, object]:
    """Mission, mode, product type, start time and orbit from the SAFE name (no annotation)."""
    for candidate in (safe.name if safe else "", tiff.parent.parent.name, tiff.parent.name):
        m = _SAFE_NAME.match(candidate)
        if m:
            mission = m["mission"]
            return {
                "mission": mission,
                "mode": "SM" if m["mode"].startswith("S") and m["mode"] != "S" else m["mode"],
                "product_type": m["ptype"],
                "start_time": datetime.strptime(m["start"], "%Y%m%dT%H%M%S"),
                "relative_orbit": orbit_number(mission, int(m["orbit"])),
            }
    return {}


def _gcps_from_grid(ann: Annotation) -> tuple[GroundControlPoint, ...]:
    g = ann.geolocation
    out = []
    for i, line in enumerate(g.lines):
        for j, pixel in enumerate(g.pixels):
            out.append(
                GroundControlPoint(
                    row=float(line) + 0.5,
                    col=float(pixel) + 0.5,
                    x=float(g.longitude[i, j]),
                    y=float(g.latitude[i, j]),
                    z=float(g.height[i, j]),
                    id=f"{i}_{j}",
                )
            )
    return tuple(out)


def _resolve(
    path: Path, polarisation: str | None, swath: str | None, annotation: str | os.PathLike[str] | None
) -> tuple[Path, Path | None, Path | None]:
    """(measurement TIFF, annotation XML or None, SAFE root or None)."""
    if path.is_dir():
        tiff = _select(path, polarisation, swath)
    elif path.is_file():
        tiff = path
    else:
        raise SarProductError(f"{path}: no such file or SAFE folder")
    ann = Path(annotation) if annotation is not None else _sibling(tiff, "")
    if ann is not None and not ann.is_file():
        raise MissingAnnotationError(f"{ann}: annotation file not found")
    return tiff, ann, _safe_root(tiff)


def _explicit(path: str | os.PathLike[str] | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise SarProductError(f"{p}: {what} file not found")
    return p


def _check_lut(lut: CalibrationLUT | NoiseLUT, ann: Annotation) -> None:
    if lut.polarisation != ann.polarisation or lut.swath != ann.swath:
        raise SarProductError(
            f"{lut.path}: LUT of {lut.polarisation}/{lut.swath} does not belong to the {ann.polarisation}/"
            f"{ann.swath} measurement; keep each measurement's own calibration and noise files"
        )


def _radiometric(
    dn: NDArray[np.float32] | NDArray[np.complex64],
    rows: NDArray[np.float64],
    cols: NDArray[np.float64],
    tiff: Path,
    ann: Annotation,
    radiometry: Radiometry,
    denoise: bool,
    *,
    calibration: Path | None = None,
    noise: Path | None = None,
) -> tuple[NDArray[np.float32] | NDArray[np.complex64], Radiometry, list[str]]:
    """Calibrated intensity (GRD) or scaled complex values (SLC), or the DN when the LUT is missing."""
    notes: list[str] = []
    if radiometry == "dn":
        return dn, "dn", notes
    cal_path = calibration or _sibling(tiff, "calibration-")
    if cal_path is None:
        notes.append(f"no calibration LUT (calibration-{tiff.stem}.xml): pixels left as DN, not {radiometry}")
        return dn, "dn", notes
    cal = read_calibration(cal_path)
    _check_lut(cal, ann)
    a = cal.lut(_LUT_NAME[radiometry], rows, cols)
    power = np.abs(dn).astype(np.float64) ** 2
    noise_path = (noise or _sibling(tiff, "noise-")) if denoise else None
    if denoise and noise_path is None:
        notes.append(f"no noise LUT (noise-{tiff.stem}.xml): thermal noise not removed")
    elif noise_path is not None:
        lut = read_noise(noise_path)
        _check_lut(lut, ann)
        power = power - lut.noise(rows, cols)
    if np.iscomplexobj(dn):  # noise power cannot be subtracted from complex values: calibration only
        return (dn / a).astype(np.complex64), radiometry, notes
    with np.errstate(invalid="ignore"):
        out = np.where(power > 0, power / a**2, np.nan)
    return out.astype(np.float32), radiometry, notes


def _read_window(
    tiff: Path, window: tuple[int, int, int, int] | None
) -> tuple[np.ndarray, list[Any], tuple[int, int], Window]:
    """The measurement's pixels on ``window`` (all when None), its TIFF GCPs, full size and the window."""
    try:
        with rasterio.open(tiff) as src:
            h, w = src.height, src.width
            win = Window(0, 0, w, h) if window is None else Window(window[1], window[0], window[3], window[2])
            if (
                win.col_off < 0
                or win.row_off < 0
                or win.col_off + win.width > w
                or win.row_off + win.height > h
            ):
                raise SarProductError(f"{tiff}: window {window} is outside the {h} x {w} measurement")
            raw = src.read(1, window=win)
            tif_gcps, _ = src.gcps
    except rasterio.errors.RasterioIOError as exc:
        raise SarProductError(f"{tiff}: cannot read the measurement ({exc})") from exc
    return raw, list(tif_gcps), (h, w), win


def open_s1(
    path: str | os.PathLike[str],
    *,
    polarisation: str | None = None,
    swath: str | None = None,
    annotation: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    noise: str | os.PathLike[str] | None = None,
    radiometry: Radiometry = "sigma0",
    denoise: bool = True,
    window: tuple[int, int, int, int] | None = None,
    require_annotation: bool = True,
) -> S1Image:
    """Read a Sentinel-1 GRD or SLC measurement with its annotation, calibrated when the LUT is there.

    Parameters
    ----------
    path
        A ``.SAFE`` folder, or a measurement TIFF (inside a SAFE folder, or loose with its annotation XML
        next to it or given as ``annotation``).
    polarisation, swath
        Which measurement of a SAFE folder (e.g. ``"VV"``; ``"IW2"`` for an SLC). Needed when several match.
    annotation
        The annotation XML, when it is not where the SAFE layout puts it.
    calibration, noise
        The calibration and noise LUT XML, when they are not where the SAFE layout puts them.
    radiometry
        ``"sigma0"`` (default), ``"beta0"`` or ``"gamma0"``: calibrated intensity (linear, not dB) when the
        calibration LUT is found (otherwise DN, with a note); ``"dn"``: the stored values.
    denoise
        Subtract the thermal noise (noise LUT) from the intensity before calibration (GRD).
    window
        ``(row0, col0, rows, cols)`` of the measurement to read; default all of it.
    require_annotation
        When False, a measurement without annotation is read anyway (GCPs from the TIFF, no heading or
        incidence, DN values), with a note; when True (default) it is an error.

    Returns
    -------
    S1Image

    Raises
    ------
    MissingAnnotationError
        No annotation found (and ``require_annotation``), or ``annotation`` does not exist.
    SarProductError
        No measurement, several candidate measurements, unreadable TIFF or XML, or a measurement whose size
        differs from its annotation's.
    """
    if radiometry not in ("sigma0", "beta0", "gamma0", "dn"):
        raise SarProductError(f"radiometry={radiometry!r}; use 'sigma0', 'beta0', 'gamma0' or 'dn'")
    tiff, ann_path, safe = _resolve(Path(path), polarisation, swath, annotation)
    notes: list[str] = []
    ann = read_annotation(ann_path) if ann_path is not None else None
    if ann is None:
        if require_annotation:
            raise MissingAnnotationError(
                f"{tiff}: annotation {tiff.stem}.xml not found (looked in ../annotation/ and next to the "
                "TIFF); heading, incidence and pixel spacing are unknown. Pass annotation=PATH, or "
                "require_annotation=False to read the pixels and GCPs only"
            )
        notes.append("no annotation: heading, incidence, pixel spacing and calibration unknown")
    raw, tif_gcps, (h, w), win = _read_window(tiff, window)
    if ann is not None and (ann.n_lines, ann.n_samples) != (h, w):
        raise SarProductError(
            f"{tiff}: measurement is {h} x {w} but its annotation describes {ann.n_lines} x {ann.n_samples}; "
            "the TIFF was resampled or belongs to another product"
        )
    dn = raw.astype(np.complex64) if np.iscomplexobj(raw) else raw.astype(np.float32)
    row0, col0 = int(win.row_off), int(win.col_off)
    info = _name_info(tiff, safe)
    if ann is not None:
        rows = np.arange(dn.shape[0], dtype=np.float64) + row0
        cols = np.arange(dn.shape[1], dtype=np.float64) + col0
        luts = {
            "calibration": _explicit(calibration, "calibration LUT"),
            "noise": _explicit(noise, "noise LUT"),
        }
        data, radio, more = _radiometric(dn, rows, cols, tiff, ann, radiometry, denoise, **luts)
        notes += more
        gcps = _gcps_from_grid(ann)
        info.update(
            mission=ann.mission, mode=ann.mode, product_type=ann.product_type, start_time=ann.start_time
        )
        info["relative_orbit"] = _manifest_orbit(safe) or ann.relative_orbit
        pol = ann.polarisation
    else:
        data, radio, gcps = dn, "dn", tuple(tif_gcps)
        if not gcps:
            raise SarProductError(
                f"{tiff}: no GCPs in the TIFF and no annotation; the image cannot be located"
            )
        pol = _polarisation_from_name(tiff)
    for note in notes:
        log.warning("%s: %s", tiff.name, note)
    return S1Image(
        data=data,
        radiometry=radio,
        annotation=ann,
        gcps=tuple(gcps),
        window=(row0, col0),
        path=tiff,
        mission=str(info.get("mission", "")),
        mode=str(info.get("mode", "")),
        product_type=str(info.get("product_type", "GRD" if not np.iscomplexobj(raw) else "SLC")),
        polarisation=pol,
        relative_orbit=info.get("relative_orbit"),  # type: ignore[arg-type]
        start_time=info.get("start_time"),  # type: ignore[arg-type]
        notes=tuple(notes),
    )


def _polarisation_from_name(tiff: Path) -> str:
    m = re.search(r"-(vv|vh|hh|hv)(-|$)", tiff.stem.lower())
    return m.group(1).upper() if m else ""


def check_pair(reference: S1Image, secondary: S1Image, *, same_size: bool = True) -> None:
    """Check that two Sentinel-1 images can be matched in their own radar geometry.

    Same mission family and acquisition mode, product type, polarisation, relative orbit (so the same
    pass direction and viewing geometry) and pixel spacing; for SLCs, the same swath; with ``same_size``,
    the same pixel array size (the images read on one window). ``same_size=False`` checks two products
    before their windows are read and co-registered (:func:`geodeform.sar.coregister.onto_reference`).

    Raises
    ------
    IncompatiblePairError
        Naming the first difference and what to do.
    """
    if not isinstance(reference, S1Image) or not isinstance(secondary, S1Image):
        raise IncompatiblePairError(
            "check_pair: both images must be S1Image objects from geodeform.sar.open_s1; other sensors "
            "cannot be matched in Sentinel-1 radar geometry"
        )
    checks: list[tuple[str, object, object, str]] = [
        ("sensor", reference.mission[:2], secondary.mission[:2], "match images of one sensor family"),
        ("acquisition mode", reference.mode, secondary.mode, "match IW with IW, stripmap with stripmap"),
        ("product type", reference.product_type, secondary.product_type, "match GRD with GRD, SLC with SLC"),
        ("polarisation", reference.polarisation, secondary.polarisation,
         "open both with the same polarisation="),
        ("relative orbit", reference.relative_orbit, secondary.relative_orbit,
         "radar-geometry matching needs one track: pair acquisitions of one relative orbit, and combine "
         "tracks after geocoding (geodeform.decompose)"),
    ]  # fmt: skip
    ra, sa = reference.annotation, secondary.annotation
    if ra is not None and sa is not None:
        checks += [
            ("pass direction", ra.pass_direction, sa.pass_direction, "pair acquisitions of one track"),
            ("swath", ra.swath, sa.swath, "open both with the same swath="),
            ("range pixel spacing", round(ra.range_pixel_spacing, 3), round(sa.range_pixel_spacing, 3),
             "resample one image onto the other's spacing"),
            ("azimuth pixel spacing", round(ra.azimuth_pixel_spacing, 3), round(sa.azimuth_pixel_spacing, 3),
             "resample one image onto the other's spacing"),
        ]  # fmt: skip
    for what, a, b, fix in checks:
        if a is None or b is None or a == "" or b == "":
            continue
        if a != b:
            raise IncompatiblePairError(
                f"reference and secondary differ in {what}: {a!r} ({reference.path.name}) vs {b!r} "
                f"({secondary.path.name}); {fix}"
            )
    if same_size and reference.data.shape != secondary.data.shape:
        raise IncompatiblePairError(
            f"reference {reference.data.shape} and secondary {secondary.data.shape} differ in size; read the "
            "same window of both (window=) or co-register the secondary onto the reference grid first"
        )
