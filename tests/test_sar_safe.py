"""Synthetic Sentinel-1 products (geodeform.sar.safe): what the reader finds in them, and the motion they
carry against the velocity they were made with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geodeform.decompose import azimuth_vector, los_vector
from geodeform.errors import InvalidInputError
from geodeform.sar import match_amplitude, open_s1, radar_offsets
from geodeform.sar.safe import SafeSpec, grd_track, ground_position, write_safe

VELOCITY = np.array([300.0, -200.0, -150.0])  # m/yr, east north up: about 1 px in 12 days at 10 m


def _constant(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.broadcast_to(VELOCITY, (*np.shape(lat), 3))


def test_grd_track_products_read_back_with_their_orbit_date_and_geometry(tmp_path: Path) -> None:
    track = grd_track(tmp_path, _constant, centre=(45.2, 6.3), dates=["2020-06-01", "2020-06-13"],
                      heading_deg=-168.0, incidence_deg=41.0, relative_orbit=95, size=96, seed=3)  # fmt: skip
    assert track.relative_orbit == 95 and track.dates == ["2020-06-01", "2020-06-13"]
    assert track.inputs() == [
        {"path": str(p), "date": d} for p, d in zip(track.paths, track.dates, strict=True)
    ]
    for path, day in zip(track.paths, track.dates, strict=True):
        image = open_s1(path, polarisation="VV")
        assert image.relative_orbit == 95 and image.pass_direction == "descending"
        assert image.start_time is not None and image.start_time.date().isoformat() == day
        assert image.data.shape == (96, 96) and image.radiometry == "sigma0"
        assert np.isclose(float(image.heading(48, 48)), -168.0, atol=0.5)
        assert 41.0 <= float(image.incidence(48, 48)) <= 41.3
    # the centre of the product is where it was asked for
    mid = ground_position(track.specs[0], 47.5, 47.5)
    assert abs(float(mid.lat) - 45.2) < 1e-6 and abs(float(mid.lon) - 6.3) < 1e-6


@pytest.mark.slow  # ~5 s: writes and matches a 192 x 192 pair
def test_grd_track_pair_carries_the_imposed_velocity(tmp_path: Path) -> None:
    track = grd_track(tmp_path, _constant, centre=(45.2, 6.3), dates=["2020-06-01", "2020-06-13"],
                      heading_deg=-12.0, incidence_deg=34.0, relative_orbit=44, size=192, seed=1)  # fmt: skip
    ref, sec = (open_s1(p, polarisation="VV") for p in track.paths)
    field = match_amplitude(ref, sec, chip_size=48, step=16, search_range=4)
    offsets = radar_offsets(field, ref)
    moved = VELOCITY * 12 / 365.25  # metres over the pair
    true_los = np.einsum("...k,k->...", los_vector(-12.0, offsets.incidence), moved)
    true_az = float(azimuth_vector(-12.0) @ moved)
    assert np.isfinite(offsets.los).mean() > 0.9
    assert abs(np.nanmedian(offsets.los - true_los)) < 0.3  # metres, of about 8.7 m along the LOS
    assert abs(np.nanmedian(offsets.azimuth) - true_az) < 0.3  # of about 8.5 m along the flight
    assert abs(true_az) > 5 and np.nanmax(np.abs(true_los)) > 3  # the motion is there to be measured


def test_bad_track_and_product_inputs_are_named(tmp_path: Path) -> None:
    ok = dict(centre=(45.2, 6.3), heading_deg=-12.0, incidence_deg=34.0, relative_orbit=44, size=32)
    with pytest.raises(InvalidInputError, match=r"whole repeat cycles \(12 days\)"):
        grd_track(tmp_path, _constant, dates=["2020-06-01", "2020-06-10"], **ok)
    with pytest.raises(InvalidInputError, match="relative_orbit: 200"):
        grd_track(tmp_path, _constant, dates=["2020-06-01"], **{**ok, "relative_orbit": 200})
    with pytest.raises(InvalidInputError, match=r"velocity: returned shape \(32, 32\)"):
        grd_track(tmp_path, lambda lat, lon: lat, dates=["2020-06-01"], **ok)
    with pytest.raises(InvalidInputError, match="at least 600 x 600"):
        grd_track(tmp_path, _constant, dates=["2020-06-01"], **{**ok, "size": 600})
    spec = SafeSpec(product_type="GRD", bursts=1, lines_per_burst=16, samples=16)
    with pytest.raises(InvalidInputError, match=r"data: shape \(8, 16\), the product is 16 x 16"):
        write_safe(tmp_path, spec, np.zeros((8, 16)))
