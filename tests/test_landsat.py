"""Landsat Collection 2 end to end: a job from the local STAC API on the 15 m pan band, with Landsat 7 gaps.

The scenes (``tests/data/stac/landsat_l1.py``) are made from geodeform's real Landsat-8 texture moved by a
known uniform displacement; the catalogue loader writes them next to the items it loads into pgstac.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from _stac_helpers import STAC_DATA, stac_url
from geodeform.config import load_config
from geodeform.io.aoi import SceneRef
from geodeform.workflows import run_job

sys.path.insert(0, str(STAC_DATA))
import landsat_l1 as L

pytestmark = pytest.mark.slow


def _job(**search: object) -> dict:
    box = L.bbox()
    return {
        "name": "landsat",
        "preset": "ice",
        "search": {
            "collection": "landsat-c2-l1",
            "catalog": stac_url(),
            "start": "2021-06-25",
            "end": "2021-07-31",
            "aoi": {"bbox": box},
            "band": "B8",
            **search,
        },
        "compute": {"cluster": "sync"},
        "pairs": {"min_range": 1, "max_range": 20, "same_orbit": False},
        "matching": {"step": 8},
        "output": {"report": False},
    }


def test_pan_band_job_with_slc_off_gaps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = run_job(load_config(_job()), tmp_path / "run")
    # The mostly-gaps Landsat 7 date (84 % fill) is left out by the AOI valid-data filter, and named.
    dates = [str(a.date) for a in result.stack.acquisitions]
    assert dates == ["2021-07-01", "2021-07-09", "2021-07-17"]
    assert "LE07_L1TP_062017_20210725_20210820_02_T1" in caplog.text
    assert abs(result.stack.grid.transform.a) == 15.0  # the pan band's grid
    ok = [p for p in result.pairs if p.status == "ok"]
    assert len(ok) == 3
    for p in ok:
        ds = xr.open_dataset(p.path)
        x, y = np.meshgrid(ds["x"].values, ds["y"].values)
        vx, vy = L.velocity((L.NORTH - y) / 30.0 - 0.5, (x - L.WEST) / 30.0 - 0.5)  # 30 m px / day
        truth_e, truth_n = 30.0 * vx * p.dt_days, -30.0 * vy * p.dt_days  # metres
        dx, dy = ds["dx"].values, ds["dy"].values
        good = np.isfinite(dx)
        assert good.mean() > 0.6, p
        err = np.hypot(dx - truth_e, dy - truth_n)[good]
        moving = (np.hypot(truth_e, truth_n) > 1.0)[good]
        for part in (moving, ~moving):  # moving ice and still ground, < 0.1 pan pixel RMSE each
            assert part.sum() > 200 and np.sqrt(np.mean(err[part] ** 2)) < 1.5, (
                p,
                np.sqrt(np.mean(err[part] ** 2)),
            )
        # No finite offset where the node lies in a scan-line gap: at the node in the reference, where it
        # lands in the secondary. A point on a gap's edge counts as inside.
        kinds = {d: k for _, d, k in L.SCENES.values()}
        gap = _in_gap(kinds[p.reference], x, y) | _in_gap(
            kinds[p.secondary], x + np.nan_to_num(dx), y + np.nan_to_num(dy)
        )
        assert gap.any() == ("2021-07-09" in (p.reference, p.secondary))
        assert not np.isfinite(dx[gap]).any()


def _in_gap(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether map points (m) touch a gap pixel of the 15 m band of a scene of this gap kind."""
    gaps = L.gaps((2 * L.SIZE, 2 * L.SIZE), kind)
    u, v = (x - L.WEST) / 15.0 - 0.5, (L.NORTH - y) / 15.0 - 0.5  # pixel-centre coordinates
    out = np.zeros(x.shape, dtype=bool)
    for r in (np.floor(v), np.ceil(v)):
        for c in (np.floor(u), np.ceil(u)):
            out |= gaps[np.clip(r, 0, 2 * L.SIZE - 1).astype(int), np.clip(c, 0, 2 * L.SIZE - 1).astype(int)]
    return out


def test_landsat_band_names() -> None:
    scene = SceneRef("x", None, {"pan": "p.tif", "red": "r.tif", "qa_pixel": "q.tif"})
    assert scene.href("B8") == ("pan", "p.tif")
    assert scene.href("B04") == ("red", "r.tif")
    with pytest.raises(Exception, match=r"no band 'B11'.*pan, qa_pixel, red"):
        scene.href("B11")
