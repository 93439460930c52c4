"""Band names shared by the catalogue and the readers: Sentinel-2 band codes -> Earth Search asset keys."""

from __future__ import annotations

__all__ = ["S2_BAND_ASSETS"]

S2_BAND_ASSETS: dict[str, str] = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
    "SCL": "scl",
    "TCI": "visual",
    "AOT": "aot",
    "WVP": "wvp",
}
