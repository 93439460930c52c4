"""Local catalogue: index a folder of rasters into STAC items (rio-stac) and search them like a STAC API.

Recognised layouts (one STAC item per scene, assets keyed with Earth Search names):

* Sentinel-2 SAFE folders (``S2B_MSIL2A_20230813T095559_N0509_R122_T33TWM_....SAFE``): every ``*.jp2`` of
  ``GRANULE/*/IMG_DATA`` (``..._B04_10m.jp2`` -> ``red``, ``..._SCL_20m.jp2`` -> ``scl``);
* loose Sentinel-2 band files named like ``T33TWM_20230813T095559_B04_10m.jp2``;
* Earth Search scene folders (``S2B_33TWM_20230813_0_L2A/B04.tif``, ``SCL.tif``);
* Landsat Collection 2 files (``LC08_L2SP_001062_20201031_20201106_02_T2_SR_B4.TIF``, ``..._QA_PIXEL.TIF``);
* any other GeoTIFF / COG: one item per file (collection ``local``, asset ``data``), dated from an 8-digit
  date in its name, else its TIFF date tag, else its modification time.

Files without a CRS are skipped with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from geodeform.bands import S2_BAND_ASSETS
from geodeform.errors import DataError, InvalidInputError
from geodeform.search.area import AOI

__all__ = ["index_folder", "local_items"]

log = logging.getLogger(__name__)

_S2_BANDS = S2_BAND_ASSETS
_LANDSAT_BANDS = {
    "SR_B1": "coastal",
    "SR_B2": "blue",
    "SR_B3": "green",
    "SR_B4": "red",
    "SR_B5": "nir08",
    "SR_B6": "swir16",
    "SR_B7": "swir22",
    "QA_PIXEL": "qa_pixel",
    "QA_RADSAT": "qa_radsat",
    "B1": "coastal",
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B5": "nir08",
    "B6": "swir16",
    "B7": "swir22",
    "B8": "pan",
    "ST_B10": "lwir11",
}
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
_SAFE_RE = re.compile(r"^(S2[ABCD])_MSI(L1C|L2A)_(\d{8}T\d{6})_N\d{4}_R(\d{3})_T(\d{2}[A-Z]{3})_.*\.SAFE$")
_S2_FILE_RE = re.compile(r"^T(\d{2}[A-Z]{3})_(\d{8}T\d{6})_(B\d[\dA]|SCL|TCI|AOT|WVP)(?:_\d+m)?\.jp2$", re.I)
_ES_DIR_RE = re.compile(r"^(S2[ABCD])_(\d{2}[A-Z]{3})_(\d{8})_\d+_(L1C|L2A)$")
_LANDSAT_RE = re.compile(
    r"^(L[COTEM]0\d)_(L\d[A-Z]{2})_(\d{3})(\d{3})_(\d{8})_\d{8}_\d{2}_(T1|T2|RT)_(.+)\.TIF$", re.I
)
_DATE_RE = re.compile(r"(?<!\d)(\d{8})(?:T(\d{6}))?(?!\d)")


def _utc(text: str, fmt: str) -> datetime:
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)


def _new_item(
    first: Path, item_id: str, when: datetime, collection: str, props: dict[str, Any], assets: dict[str, Path]
) -> Any:
    import pystac
    import rasterio
    from rio_stac import create_stac_item

    try:
        with rasterio.open(first) as src:
            if src.crs is None:
                log.warning("skipping %s: no CRS (not georeferenced)", first)
                return None
            item = create_stac_item(
                src,
                input_datetime=when,
                collection=collection,
                id=item_id,
                properties=props,
                asset_name=next(k for k, p in assets.items() if p == first),
                asset_href=str(first),
                asset_roles=["data"],
                with_proj=True,
            )
    except rasterio.errors.RasterioIOError as exc:
        log.warning("skipping %s: %s", first, exc)
        return None
    for key, path in assets.items():
        if key not in item.assets:
            media = pystac.MediaType.JPEG2000 if path.suffix.lower() == ".jp2" else pystac.MediaType.GEOTIFF
            item.add_asset(key, pystac.Asset(href=str(path), media_type=media, roles=["data"]))
    return item


def _safe_item(safe: Path) -> Any:
    m = _SAFE_RE.match(safe.name)
    assert m
    platform, level, when, orbit, tile = m.groups()
    assets: dict[str, Path] = {}
    for jp2 in sorted(safe.glob("GRANULE/*/IMG_DATA/**/*.jp2")):
        band = re.search(r"_(B\d[\dA]|SCL|TCI|AOT|WVP)(?:_(\d+)m)?\.jp2$", jp2.name)
        if band and _S2_BANDS.get(band.group(1)) not in assets:  # R10m before R20m before R60m
            assets[_S2_BANDS[band.group(1)]] = jp2
    if not assets:
        log.warning("skipping %s: no band file under GRANULE/*/IMG_DATA", safe)
        return None
    props = {
        "platform": f"sentinel-{platform[2:].lower()}",
        "constellation": "sentinel-2",
        "grid:code": f"MGRS-{tile}",
        "s2:product_uri": safe.name,
        "sat:relative_orbit": int(orbit),
    }
    item_id = f"{platform}_{tile}_{when[:8]}_0_{level}"
    first = assets.get("red") or next(iter(assets.values()))
    return _new_item(
        first, item_id, _utc(when, "%Y%m%dT%H%M%S"), f"sentinel-2-{level.lower()}", props, assets
    )


def _grouped_items(files: list[Path]) -> list[Any]:
    groups: dict[tuple[str, ...], dict[str, Path]] = defaultdict(dict)
    rest: list[Path] = []
    for path in files:
        s2 = _S2_FILE_RE.match(path.name)
        es = _ES_DIR_RE.match(path.parent.name)
        ls = _LANDSAT_RE.match(path.name)
        if s2:
            groups[("s2", s2.group(1), s2.group(2))][_S2_BANDS[s2.group(3).upper()]] = path
        elif es and path.stem.upper() in _S2_BANDS:
            groups[("es", path.parent.name)][_S2_BANDS[path.stem.upper()]] = path
        elif ls and ls.group(7).upper() in _LANDSAT_BANDS:
            product = path.name[: -len(ls.group(7)) - len(path.suffix) - 1]
            groups[("landsat", product)][_LANDSAT_BANDS[ls.group(7).upper()]] = path
        else:
            rest.append(path)
    items = []
    for key, assets in groups.items():
        first = assets.get("red") or next(iter(assets.values()))
        if key[0] == "s2":
            tile, when = key[1], key[2]
            level = "l2a" if "scl" in assets else "l1c"
            props = {"constellation": "sentinel-2", "grid:code": f"MGRS-{tile}"}
            items.append(
                _new_item(
                    first,
                    f"T{tile}_{when}",
                    _utc(when, "%Y%m%dT%H%M%S"),
                    f"sentinel-2-{level}",
                    props,
                    assets,
                )
            )
        elif key[0] == "es":
            m = _ES_DIR_RE.match(key[1])
            assert m
            platform, tile, day, level = m.groups()
            props = {
                "platform": f"sentinel-{platform[2:].lower()}",
                "constellation": "sentinel-2",
                "grid:code": f"MGRS-{tile}",
            }
            acquired = _utc(day, "%Y%m%d")
            known = _sibling_item_properties(first.parent)
            if known:
                props.update({k: v for k, v in known.items() if k in _KEPT_PROPERTIES})
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    acquired = datetime.fromisoformat(str(known["datetime"]).replace("Z", "+00:00"))
            items.append(_new_item(first, key[1], acquired, f"sentinel-2-{level.lower()}", props, assets))
        else:
            m = _LANDSAT_RE.match(first.name)
            assert m
            sensor, level, path_, row, day = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5)
            props = {
                "platform": f"landsat-{int(sensor[2:])}",
                "landsat:wrs_path": path_,
                "landsat:wrs_row": row,
            }
            collection = "landsat-c2-l2" if level.upper().startswith("L2") else "landsat-c2-l1"
            items.append(_new_item(first, key[1], _utc(day, "%Y%m%d"), collection, props, assets))
    for path in rest:
        items.append(_generic_item(path))
    return [item for item in items if item is not None]


# Scene metadata worth keeping from a STAC item stored next to the rasters (its hrefs are not used).
_KEPT_PROPERTIES = (
    "eo:cloud_cover",
    "sat:relative_orbit",
    "sat:orbit_state",
    "s2:product_uri",
    "s2:datatake_id",
    "s2:mgrs_tile",
    "platform",
)


def _sibling_item_properties(scene_dir: Path) -> dict[str, Any]:
    """Properties of ``<scene>/<scene>.json`` (the scene's own STAC item, as Earth Search downloads keep it):
    orbit and scene cloud cover, which the folder name does not carry. Empty when absent or unreadable."""
    path = scene_dir / f"{scene_dir.name}.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    if (
        not isinstance(doc, dict)
        or doc.get("id") != scene_dir.name
        or not isinstance(doc.get("properties"), dict)
    ):
        return {}
    return dict(doc["properties"])


def _generic_item(path: Path) -> Any:
    import rasterio

    when = None
    m = _DATE_RE.search(path.stem)
    if m:
        try:
            when = _utc(m.group(1) + (m.group(2) or "000000"), "%Y%m%d%H%M%S")
        except ValueError:
            when = None
    if when is None:
        try:
            with rasterio.open(path) as src:
                tag = src.tags().get("TIFFTAG_DATETIME")
            when = _utc(tag, "%Y:%m:%d %H:%M:%S") if tag else None
        except (rasterio.errors.RasterioIOError, ValueError):
            when = None
    props: dict[str, Any] = {}
    if when is None:
        when = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        props["geodeform:datetime_source"] = "file modification time"
    return _new_item(path, path.stem, when, "local", props, {"data": path})


def index_folder(folder: str | os.PathLike[str]) -> list[Any]:
    """Index a folder (recursively) into STAC items, one per recognised scene or per other raster.

    Parameters
    ----------
    folder
        Folder holding SAFE products, Earth Search scene folders, Landsat files or GeoTIFF/COG files.

    Returns
    -------
    list of pystac.Item
        Items with absolute asset hrefs, ``proj:`` metadata (rio-stac) and a lon/lat footprint.

    Raises
    ------
    DataError
        The folder does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"local catalogue folder {str(root)!r} does not exist")
    items = []
    safes = sorted(p for p in root.rglob("*.SAFE") if p.is_dir() and _SAFE_RE.match(p.name))
    for safe in safes:
        items.append(_safe_item(safe))
    files = sorted(
        p.resolve()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in _RASTER_SUFFIXES and not any(s in p.parents for s in safes)
    )
    items.extend(_grouped_items(files))
    return [item for item in items if item is not None]


def local_items(
    folder: str | os.PathLike[str],
    collection: str,
    aoi: AOI,
    start: datetime | None,
    end: datetime | None,
    max_cloud: float | None,
    max_items: int,
) -> list[Any]:
    """Items of a folder matching collection, AOI (footprint intersects), date range and metadata cloud."""
    from shapely.geometry import shape

    items = index_folder(folder)
    known = {item.collection_id for item in items}
    if items and collection not in known and collection != "local":
        raise InvalidInputError(
            f"collection {collection!r} not found in {folder}; it holds: {', '.join(sorted(map(str, known)))}"
        )
    found = []
    for item in items:
        if item.collection_id != collection:
            continue
        when = item.datetime
        if (start and when < start) or (end and when > end):
            continue
        cloud = item.properties.get("eo:cloud_cover")
        if max_cloud is not None and cloud is not None and cloud > max_cloud:
            continue
        if not shape(item.geometry).intersects(aoi.geometry):
            continue
        found.append(item)
    return found[:max_items]
