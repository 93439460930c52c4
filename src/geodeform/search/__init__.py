"""Finding scenes: STAC catalogues (Earth Search, Copernicus Data Space, any STAC API, a local folder),
MGRS tiles, and AOI scoring (cloud % and valid-data % computed on the area of interest, not the scene).

Typical use::

    from geodeform.search import search
    table = search("sentinel-2-l2a", tile="32TLR", start="2023-06-01", end="2023-09-30",
                   max_cloud=80, best_per_orbit=5)
    table.write("scenes.geojson")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geodeform.lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (geodeform.lazy)
    from geodeform.search.area import (
        AOI,
        aoi_from_bbox,
        aoi_from_file,
        aoi_from_geojson,
        aoi_from_tile,
        make_aoi,
        utm_epsg,
    )
    from geodeform.search.catalogs import CATALOGS, COLLECTIONS, CollectionSpec, resolve_collection
    from geodeform.search.local import index_folder
    from geodeform.search.mgrs import S2_TILE_SIZE, MGRSSquare, mgrs_square, parse_tile_id
    from geodeform.search.results import COLUMNS, Scene, SceneTable
    from geodeform.search.scoring import AOIScore, qa_pixel_scores, scl_scores, score_asset
    from geodeform.search.stac import item_orbit, item_tile, parse_months, search

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "area": (
            "AOI",
            "aoi_from_bbox",
            "aoi_from_file",
            "aoi_from_geojson",
            "aoi_from_tile",
            "make_aoi",
            "utm_epsg",
        ),
        "catalogs": (
            "CATALOGS",
            "COLLECTIONS",
            "CollectionSpec",
            "resolve_collection",
        ),
        "local": ("index_folder",),
        "mgrs": (
            "S2_TILE_SIZE",
            "MGRSSquare",
            "mgrs_square",
            "parse_tile_id",
        ),
        "results": (
            "COLUMNS",
            "Scene",
            "SceneTable",
        ),
        "scoring": (
            "AOIScore",
            "qa_pixel_scores",
            "scl_scores",
            "score_asset",
        ),
        "stac": (
            "item_orbit",
            "item_tile",
            "parse_months",
            "search",
        ),
    },
)

__all__ = [
    "AOI",
    "CATALOGS",
    "COLLECTIONS",
    "COLUMNS",
    "S2_TILE_SIZE",
    "AOIScore",
    "CollectionSpec",
    "MGRSSquare",
    "Scene",
    "SceneTable",
    "aoi_from_bbox",
    "aoi_from_file",
    "aoi_from_geojson",
    "aoi_from_tile",
    "index_folder",
    "item_orbit",
    "item_tile",
    "make_aoi",
    "mgrs_square",
    "parse_months",
    "parse_tile_id",
    "qa_pixel_scores",
    "resolve_collection",
    "scl_scores",
    "score_asset",
    "search",
    "utm_epsg",
]
