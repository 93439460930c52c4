"""The Sentinel-1 chain: reading real annotation/LUTs and a synthetic SLC SAFE, tracking, geocoding, products.

Real data (skipped when ``shared/data`` is absent): the annotation, calibration and noise XML of a real IW
GRDH product (sarsen test data, Apache-2.0, metadata only) and two rio-tiler-pds GRD crops with their GCPs.
No real SLC exists in the shared data: SLC reading is tested on a small synthetic SAFE written by
``tests/_s1_safe.py`` from the structure of the real annotation.
"""

from __future__ import annotations

import shutil
import warnings
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from _s1_safe import SlcSpec, write_slc_safe
from _shared import shared_data
from geodeform.errors import GeodeformError, InvalidInputError
from geodeform.io import GeoGrid
from geodeform.offsets import Reason
from geodeform.sar import (
    IncompatiblePairError,
    MissingAnnotationError,
    SarProductError,
    check_pair,
    map_grid,
    match_amplitude,
    match_coherence,
    open_s1,
    radar_coordinates,
    radar_offsets,
    read_annotation,
    read_calibration,
    read_noise,
    sar_dataset,
    write_sar_product,
)
from geodeform.sar.simulate import complex_pair, gamma_speckle, warp
from geodeform.sar.speckle import enl, filter_intensity, oversample_complex

S1 = shared_data() / "s1_grd"
SARSEN = (
    S1
    / "sarsen_grd_metadata_only"
    / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
)
IW_CROP = S1 / "S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"
SM_CROP = S1 / "S1A_S1_GRDH_1SDV_20230809T020729_20230809T020754_049792_05FCE6_1175"
needs_sarsen = pytest.mark.skipif(not SARSEN.exists(), reason="shared/data/s1_grd not available")
needs_crops = pytest.mark.skipif(not IW_CROP.exists(), reason="shared/data/s1_grd not available")


def _ann_files() -> tuple[Path, Path, Path]:
    ann = next((SARSEN / "annotation").glob("s1b-*.xml"))
    cal = next((SARSEN / "annotation" / "calibration").glob("calibration-*.xml"))
    noise = next((SARSEN / "annotation" / "calibration").glob("noise-*.xml"))
    return ann, cal, noise


# --- the real annotation ---------------------------------------------------------------------------------
@needs_sarsen
def test_real_annotation_values_are_those_written_in_the_xml() -> None:
    path, _, _ = _ann_files()
    ann = read_annotation(path)
    root = ET.parse(path).getroot()  # read independently of the reader
    assert ann.heading_deg == float(root.findtext("generalAnnotation/productInformation/platformHeading"))
    incs = [float(p.findtext("incidenceAngle")) for p in root.iter("geolocationGridPoint")]
    assert ann.incidence_range_deg == (min(incs), max(incs))
    assert ann.range_pixel_spacing == float(
        root.findtext("imageAnnotation/imageInformation/rangePixelSpacing")
    )
    assert ann.azimuth_pixel_spacing == float(
        root.findtext("imageAnnotation/imageInformation/azimuthPixelSpacing")
    )
    assert (ann.n_lines, ann.n_samples) == (16705, 26102)
    assert (ann.mission, ann.product_type, ann.mode, ann.polarisation) == ("S1B", "GRD", "IW", "VV")
    assert ann.pass_direction == "descending" and ann.projection == "Ground Range"
    assert ann.relative_orbit == 22  # the manifest's relativeOrbitNumber
    assert (ann.range_looks, ann.azimuth_looks) == (5, 1)
    assert ann.bursts == ()
    # per-pixel incidence interpolates the grid exactly at its tie points
    g = ann.geolocation
    np.testing.assert_allclose(g.incidence(g.lines[3], g.pixels[7]), g.incidence_deg[3, 7])


@needs_sarsen
def test_pixel_heading_from_the_orbit_matches_the_grid_range_direction() -> None:
    """The orbit-derived along-track direction is perpendicular to the range direction of the tie points."""
    ann = read_annotation(_ann_files()[0])
    g = ann.geolocation
    lat0, lat1 = np.deg2rad(g.latitude[:, :-1]), np.deg2rad(g.latitude[:, 1:])
    dlon = np.deg2rad(g.longitude[:, 1:] - g.longitude[:, :-1])
    bearing = np.rad2deg(
        np.arctan2(
            np.sin(dlon) * np.cos(lat1),
            np.cos(lat0) * np.sin(lat1) - np.sin(lat0) * np.cos(lat1) * np.cos(dlon),
        )
    )
    lines = np.repeat(g.lines[:, None], g.pixels.size - 1, axis=1)
    mids = np.repeat(((g.pixels[:-1] + g.pixels[1:]) / 2)[None, :], g.lines.size, axis=0)
    heading = ann.heading(lines, mids)
    diff = (bearing - 90.0 - heading + 180.0) % 360.0 - 180.0
    assert np.abs(diff).max() < 0.3  # right-looking: range direction = heading + 90 degrees


@needs_sarsen
def test_calibration_and_noise_luts_on_a_loose_measurement(tmp_path: Path) -> None:
    """sigma0 = (DN² − noise) / A², with A and the noise read from the real LUT XML independently."""
    ann, cal, noise = _ann_files()
    name = ann.stem
    folder = tmp_path / "loose"
    (folder / "annotation" / "calibration").mkdir(parents=True)
    (folder / "measurement").mkdir()
    shutil.copy(ann, folder / "annotation" / ann.name)
    shutil.copy(cal, folder / "annotation" / "calibration" / f"calibration-{name}.xml")
    shutil.copy(noise, folder / "annotation" / "calibration" / f"noise-{name}.xml")
    tiff = folder / "measurement" / f"{name}.tiff"
    prof = dict(
        driver="GTiff", width=26102, height=16705, count=1, dtype="uint16", tiled=True, compress="deflate"
    )
    dn = np.random.default_rng(0).integers(100, 400, (40, 50)).astype(np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tiff, "w", sparse_ok=True, **prof) as dst:  # full size, sparse: a few kB
            dst.write(dn, 1, window=Window(13000, 8000, 50, 40))
        img = open_s1(tiff, window=(8000, 13000, 40, 50))
        raw = open_s1(tiff, window=(8000, 13000, 40, 50), radiometry="dn")
    assert img.radiometry == "sigma0" and img.notes == ()
    np.testing.assert_array_equal(raw.data, dn.astype(np.float32))
    rows = 8000 + np.arange(40.0)
    cols = 13000 + np.arange(50.0)
    a = _lut_reference(cal, "sigmaNought", rows, cols)
    nz = _lut_reference(noise, "noiseRangeLut", rows, cols) * _azimuth_noise(noise, rows, cols)
    expected = (dn.astype(float) ** 2 - nz) / a**2
    np.testing.assert_allclose(img.data, np.where(expected > 0, expected, np.nan), rtol=1e-5)
    assert np.isfinite(img.incidence()).all() and img.incidence().shape == (40, 50)
    # without the noise LUT: calibrated, not denoised, and it says so
    (folder / "annotation" / "calibration" / f"noise-{name}.xml").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        img2 = open_s1(tiff, window=(8000, 13000, 40, 50))
    assert any("noise" in n for n in img2.notes)
    np.testing.assert_allclose(img2.data, dn.astype(float) ** 2 / a**2, rtol=1e-5)


def _lut_reference(path: Path, tag: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear LUT from the XML vectors (rows between vectors, columns within each vector)."""
    root = ET.parse(path).getroot()
    vecs = [v for v in root.iter() if v.find(tag) is not None]
    lines = np.array([float(v.findtext("line")) for v in vecs])
    per = np.array(
        [
            np.interp(
                cols, np.array(v.findtext("pixel").split(), float), np.array(v.findtext(tag).split(), float)
            )
            for v in vecs
        ]
    )
    out = np.empty((rows.size, cols.size))
    for i, r in enumerate(rows):
        k = np.searchsorted(lines, r, side="right") - 1
        f = (r - lines[k]) / (lines[k + 1] - lines[k])
        out[i] = (1 - f) * per[k] + f * per[k + 1]
    return out


def _azimuth_noise(path: Path, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    root = ET.parse(path).getroot()
    out = np.ones((rows.size, cols.size))
    for b in root.iter("noiseAzimuthVector"):
        s0, s1 = int(b.findtext("firstRangeSample")), int(b.findtext("lastRangeSample"))
        sel = (cols >= s0) & (cols <= s1)
        lut = np.interp(
            rows,
            np.array(b.findtext("line").split(), float),
            np.array(b.findtext("noiseAzimuthLut").split(), float),
        )
        out[:, sel] = lut[:, None]
    return out


@needs_sarsen
def test_lut_readers_and_a_metadata_only_safe() -> None:
    _, cal, noise = _ann_files()
    c = read_calibration(cal)
    n = read_noise(noise)
    assert (c.polarisation, c.swath, n.polarisation) == ("VV", "IW", "VV")
    assert len(n.azimuth_blocks) == 3  # IPF >= 2.9: one azimuth noise vector per sub-swath
    with pytest.raises(SarProductError, match="no measurement"):
        open_s1(SARSEN)
    with pytest.raises(SarProductError, match="expected <product>"):
        read_annotation(cal)


# --- the real GRD crops: GCPs and geocoding ---------------------------------------------------------------
@needs_crops
@pytest.mark.parametrize("product", [IW_CROP, SM_CROP], ids=["IW", "stripmap"])
def test_gcp_geocoding_agrees_with_gdal_warp_within_a_pixel(product: Path) -> None:
    img = open_s1(product, polarisation="VH", require_annotation=False)
    assert img.annotation is None and img.notes and len(img.gcps) > 100
    grid = map_grid(img, 1000.0)
    assert grid.crs.to_epsg() in (32643, 32740)  # the UTM zone of the footprint
    h, w = img.data.shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    for method, opts in (("tps", {"SRC_METHOD": "GCP_TPS"}), ("polynomial", {})):
        ours = radar_coordinates(img, grid, method=method)  # type: ignore[arg-type]
        for mine, index in ((ours.rows, rr), (ours.cols, cc)):
            gdal = np.full(grid.shape, np.nan)
            reproject(
                index, gdal, gcps=list(img.gcps), src_crs="EPSG:4326", dst_crs=grid.crs,
                dst_transform=grid.transform, dst_nodata=np.nan, resampling=Resampling.bilinear, **opts,
            )  # fmt: skip
            # GDAL's bilinear kernel widens to the cell footprint (5 radar pixels here): away from the edges
            inner = (ours.rows > 6) & (ours.rows < h - 7) & (ours.cols > 6) & (ours.cols < w - 7)
            diff = np.abs(mine - gdal)[inner & np.isfinite(gdal)]
            assert diff.size > 0.5 * inner.sum()
            assert diff.max() < 1.0, (method, diff.max())  # radar pixels (~200 m) < map pixels (1 km)


@needs_crops
@pytest.mark.slow
def test_amplitude_tracking_of_speckled_real_grd_texture() -> None:
    with rasterio.open(IW_CROP / "measurement" / "iw-vv.tiff") as src:
        amp = src.read(1, window=Window(300, 200, 256, 256)).astype(float)
    rr, cc = np.mgrid[0:256, 0:256]
    dx = 1.3 + 0.6 * np.sin(rr / 60.0)
    dy = -0.4 + 0.3 * np.cos(cc / 50.0)
    moved = np.clip(warp(amp, dx, dy, order=3), 0, None)
    rng = np.random.default_rng(2)
    a1 = np.sqrt(gamma_speckle(amp**2, 4.4, rng))
    a2 = np.sqrt(gamma_speckle(moved**2, 4.4, rng))
    field = match_amplitude(a1, a2, chip_size=64, step=32, search_range=6, speckle_filter="none")
    r, c = field.grid()
    err = np.hypot(field.dx - (1.3 + 0.6 * np.sin(r / 60.0)), field.dy - (-0.4 + 0.3 * np.cos(c / 50.0)))
    assert field.coverage > 0.9
    assert float(np.sqrt(np.nanmean(err**2))) < 0.3
    assert field.params["sar_preparation"]["transform"] == "log"


# --- the synthetic SLC --------------------------------------------------------------------------------------
def _slc_pair(tmp_path: Path, coherence: float = 0.8, **spec2: object) -> tuple[Path, Path, object]:
    spec = SlcSpec()
    lines = spec.bursts * spec.lines_per_burst
    pair = complex_pair((lines, spec.samples), coherence, 0.4, -0.3, np.random.default_rng(0))
    ref = write_slc_safe(tmp_path / "ref", spec, pair.reference * 300)
    later = {"start": spec.start + timedelta(days=12), **spec2}
    sec = write_slc_safe(tmp_path / "sec", SlcSpec(**later), pair.secondary * 300)  # type: ignore[arg-type]
    return ref, sec, pair


def test_synthetic_slc_safe_reading_and_bursts(tmp_path: Path) -> None:
    ref, _, pair = _slc_pair(tmp_path)
    img = open_s1(ref, polarisation="VV", swath="IW2")
    dn = open_s1(ref, polarisation="VV", swath="IW2", radiometry="dn")
    assert img.is_complex and img.product_type == "SLC" and img.mode == "IW"
    assert img.relative_orbit == 76 and img.pass_direction == "descending"
    np.testing.assert_allclose(
        np.abs(dn.data),
        np.abs(np.round(pair.reference.real * 300) + 1j * np.round(pair.reference.imag * 300)),
        atol=1e-3,
    )
    # calibrated complex values: |z|² / A² with A = 500 + 0.1 pixel (the synthetic sigmaNought LUT)
    a = 500.0 + 0.1 * np.arange(img.data.shape[1])
    np.testing.assert_allclose(np.abs(img.data), np.abs(dn.data) / a[None, :], rtol=1e-5)
    np.testing.assert_allclose(img.heading(np.array([100.0]), np.array([128.0])), -167.0, atol=0.05)
    np.testing.assert_allclose(img.incidence(np.array([0.0, 0.0]), np.array([0.0, 255.0])), [36.0, 36.6])
    burst = img.burst(1)
    assert burst.data.shape == (96, 256) and burst.burst.first_line == 96
    assert (
        burst.valid[:6].sum() == 0 and burst.valid[6:-5, 10:-11].all() and np.isnan(burst.amplitude[0]).all()
    )
    with pytest.raises(SarProductError, match="does not exist"):
        img.burst(3)
    with pytest.raises(SarProductError, match="match polarisation"):
        open_s1(ref, polarisation="HH")


def test_coherence_tracking_recovers_the_shift_and_the_coherence(tmp_path: Path) -> None:
    ref_p, sec_p, _ = _slc_pair(tmp_path, coherence=0.8)
    ref = open_s1(ref_p, polarisation="VV", swath="IW2")
    sec = open_s1(sec_p, polarisation="VV", swath="IW2")
    field = match_coherence(ref, sec, chip_size=48, step=32, search_range=3)
    assert field.method == "coherence" and field.coverage == 1.0
    assert abs(np.median(field.dx) - 0.4) < 0.02 and abs(np.median(field.dy) + 0.3) < 0.02
    assert abs(np.median(field.quality) - 0.8) < 0.05
    ro = radar_offsets(field, ref)
    # slant range: +0.4 px is a range increase, so the line of sight (towards the satellite) is negative
    np.testing.assert_allclose(np.median(ro.range), 0.4 * 2.329562, atol=0.05)
    np.testing.assert_allclose(ro.los, -ro.range)
    np.testing.assert_allclose(np.median(ro.azimuth), -0.3 * 13.97, atol=0.3)


@pytest.mark.slow
def test_slc_amplitude_tracking_and_los_products(tmp_path: Path) -> None:
    ref_p, sec_p, _ = _slc_pair(tmp_path, coherence=0.8)
    ref = open_s1(ref_p, polarisation="VV", swath="IW2")
    sec = open_s1(sec_p, polarisation="VV", swath="IW2")
    amp = match_amplitude(ref, sec, chip_size=48, step=32, search_range=3)  # oversampled SLC amplitude
    assert abs(np.nanmedian(amp.dx) - 0.4) < 0.05 and amp.params["sar_preparation"]["oversample"] == 2
    ro = radar_offsets(match_coherence(ref, sec, chip_size=48, step=32, search_range=3), ref)
    ds = sar_dataset(ro, ref, resolution=20.0, secondary=sec)
    tif = write_sar_product(ds, tmp_path / "los.tif")
    nc = write_sar_product(ds, tmp_path / "los.nc")
    with rasterio.open(tif) as src:
        assert src.descriptions[:3] == ("range", "azimuth", "los") and src.crs.to_epsg() == 32632
        los = src.read(3)
    assert np.nanmedian(los) < 0 and np.isfinite(los).mean() > 0.3
    assert nc.stat().st_size > 0 and "towards the satellite" in ds["los"].attrs["long_name"]
    unit = np.stack([ds["los_east"], ds["los_north"], ds["los_up"]], -1)
    ok = np.isfinite(unit).all(-1)
    np.testing.assert_allclose(np.linalg.norm(unit[ok], axis=-1), 1.0, atol=1e-6)
    assert (np.asarray(ds["reason"])[~np.isfinite(np.asarray(ds["los"]))] != Reason.OK).any()
    with pytest.raises(InvalidInputError, match="format"):
        write_sar_product(ds, tmp_path / "los.png")


def test_dem_terrain_correction_moves_cells_along_range(tmp_path: Path) -> None:
    ref, _, _ = _slc_pair(tmp_path)
    img = open_s1(ref, polarisation="VV", swath="IW2")
    grid = map_grid(img, 30.0)
    flat = radar_coordinates(img, grid)
    high = radar_coordinates(img, grid, dem=np.full(grid.shape, 100.0))
    inc = np.deg2rad(img.incidence(flat.rows, flat.cols))
    shift = -100.0 * np.cos(inc) / 2.329562  # slant-range pixels a 100 m high point is nearer
    ok = np.isfinite(high.cols) & np.isfinite(flat.cols)
    np.testing.assert_allclose((high.cols - flat.cols)[ok], shift[ok], rtol=1e-6)
    np.testing.assert_allclose(high.rows[ok], flat.rows[ok])
    assert high.terrain_corrected and not flat.terrain_corrected


# --- bad input ---------------------------------------------------------------------------------------------
def test_mismatched_pairs_are_refused(tmp_path: Path) -> None:
    ref_p, _, _ = _slc_pair(tmp_path / "a")
    ref = open_s1(ref_p, polarisation="VV", swath="IW2")
    for change, word in (
        ({"polarisation": "VH"}, "polarisation"),
        ({"absolute_orbit": 30_074}, "relative orbit"),
        ({"mission": "S2A", "relative_orbit": 76}, "sensor"),
    ):
        _, sec_p, _ = _slc_pair(tmp_path / word.replace(" ", "_"), **change)
        sec = open_s1(sec_p, polarisation=str(change.get("polarisation", "VV")), swath="IW2")
        with pytest.raises(IncompatiblePairError, match=word):
            check_pair(ref, sec)
        with pytest.raises(IncompatiblePairError, match=word):
            match_coherence(ref, sec)
    with pytest.raises(IncompatiblePairError, match="S1Image"):
        match_amplitude(ref, np.ones(ref.data.shape))  # an optical image is not a Sentinel-1 image
    with pytest.raises(InvalidInputError, match="complex"):
        match_coherence(np.ones((64, 64)), np.ones((64, 64)))
    with pytest.raises(InvalidInputError, match="one is complex"):
        match_amplitude(np.ones((64, 64), complex), np.ones((64, 64)))
    with pytest.raises(InvalidInputError, match="dB"):
        match_amplitude(-np.ones((64, 64)), np.ones((64, 64)))
    assert issubclass(IncompatiblePairError, (GeodeformError, ValueError))


@needs_crops
def test_missing_annotation_and_other_product_errors(tmp_path: Path) -> None:
    loose = tmp_path / "iw-vv.tiff"
    shutil.copy(IW_CROP / "measurement" / "iw-vv.tiff", loose)
    with pytest.raises(MissingAnnotationError, match="annotation"):
        open_s1(loose)
    grd = open_s1(loose, require_annotation=False)
    with pytest.raises(MissingAnnotationError, match="incidence"):
        grd.incidence()
    with pytest.raises(MissingAnnotationError):
        radar_coordinates(grd, map_grid(grd, 1000.0), dem=np.zeros(map_grid(grd, 1000.0).shape))
    ref_p, _, _ = _slc_pair(tmp_path / "slc")
    slc = open_s1(ref_p, polarisation="VV", swath="IW2")
    with pytest.raises(IncompatiblePairError):
        check_pair(slc, grd)  # SLC vs GRD of another track
    # an annotation that does not describe the measurement
    ann = next((ref_p / "annotation").glob("*.xml"))
    with pytest.raises(SarProductError, match="describes"):
        open_s1(loose, annotation=ann)
    with pytest.raises(MissingAnnotationError):
        open_s1(loose, annotation=tmp_path / "nope.xml")
    assert isinstance(grd.data, np.ndarray) and issubclass(SarProductError, OSError)
    assert isinstance(map_grid(grd, 1000.0), GeoGrid)


# --- speckle kernels ---------------------------------------------------------------------------------------
def test_speckle_filters_and_oversampling() -> None:
    rng = np.random.default_rng(0)
    flat = gamma_speckle(np.ones((200, 200)), 4.4, rng)
    assert abs(enl(flat) - 4.4) < 0.3
    assert enl(filter_intensity(flat, "boxcar", size=3)[2:-2, 2:-2]) > 3 * 4.4
    edge = np.ones((100, 100))
    edge[:, 50:] = 10.0
    lee = filter_intensity(gamma_speckle(edge, 4.4, rng), "lee", size=5, looks=4.4)
    assert np.median(lee[:, 55:]) > 8 and np.median(lee[:, :45]) < 1.5  # the edge is kept
    z = complex_pair((64, 80), 1.0, 0.0, 0.0, rng).reference
    up = oversample_complex(z, 2)
    np.testing.assert_allclose(np.abs(up[::2, ::2]), np.abs(z), rtol=1e-4, atol=1e-5)
    with pytest.raises(InvalidInputError, match="speckle_filter"):
        filter_intensity(flat, "median")  # type: ignore[arg-type]
