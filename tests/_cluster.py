"""Small real jobs for the cluster tests: dated GeoTIFFs of a real Landsat texture moved by a known shift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geodeform.demo import load_texture

SHIFT_PX = 1  # east, per 12-day step


def write_shifted_series(folder: Path, n_dates: int = 3, size: int = 192) -> list[dict[str, str]]:
    """``n_dates`` float32 GeoTIFFs 12 days apart, each ``SHIFT_PX`` pixel east of the last (10 m pixels)."""
    tex = load_texture()
    items = []
    for k in range(n_dates):
        path = folder / f"img{k}.tif"
        data = tex[40 : 40 + size, 60 - SHIFT_PX * k : 60 - SHIFT_PX * k + size].astype(np.float32)
        profile = dict(
            driver="GTiff",
            width=size,
            height=size,
            count=1,
            dtype="float32",
            crs="EPSG:32632",
            transform=from_origin(500000, 5000000, 10, 10),
        )
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
        items.append({"path": str(path), "date": str(np.datetime64("2021-07-01") + 12 * k)})
    return items


def shifted_job(folder: Path, name: str, n_dates: int = 3, **sections: Any) -> dict[str, Any]:
    """A job config (mapping) over :func:`write_shifted_series`: pairs up to 100 days, chip 16, step 16."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "name": name,
        "preset": "ice",
        "inputs": write_shifted_series(folder, n_dates),
        "matching": {"chip_size": 16, "step": 16, "expected_max_speed": 400.0},
        "pairs": {"min_range": 1, "max_range": 100},
        "output": {"report": False, "stac": False},
        **sections,
    }
