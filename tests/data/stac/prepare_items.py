"""Write the test catalogue as pgstac-loadable ndjson, with a few asset hrefs pointing at the local COGs.

Used by ``scripts/services.d/stac.sh`` (``python prepare_items.py OUT_DIR``). The item files in ``items/``
stay byte-identical to upstream; the changes made here, at load time, are:

* ``LOCAL_ASSETS``: assets of five scenes point at the small COGs in ``assets/`` (absolute paths of this
  checkout), so AOI scoring and AOI reads can open them offline;
* relative asset hrefs left by mapchete-eo's static catalogue (``B04.tif``) are kept: they resolve to no
  file, so tests that meet them exercise the "asset unreadable" path without any network access;
* relative ``self``/``root``/``parent`` links are dropped (the server writes its own);
* the USGS Landsat item of the QA_PIXEL crop (STAC 0.7, collection ``landsat-c2l2-sr``) is re-expressed as an
  Earth Search ``landsat-c2-l2`` item (asset keys ``qa_pixel``/``red``, zero-padded WRS path/row, datetime
  from its MTL);
* ``landsat_l1.py``: four Landsat Collection-2 L1 scenes (red, 15 m pan, QA_PIXEL; Landsat 7 gaps) with a
  known displacement, made from geodeform's shipped Landsat-8 texture and written under ``OUT_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import landsat_l1  # noqa: E402  (next to this file)

ASSETS = HERE / "assets"

LOCAL_ASSETS: dict[str, dict[str, str]] = {
    "S2B_33TWM_20230813_0_L2A": {"scl": "SCL.tif", "red": "B04.tif"},
    "S2A_33TWM_20230818_0_L2A": {"scl": "SCL.tif", "red": "B04.tif"},
    "S2A_33TWM_20230815_0_L2A": {"scl": "SCL.tif", "red": "B04.tif"},
    "S2A_29RKH_20200219_0_L2A": {"scl": "SCL.tif"},
}
LANDSAT_ID = "LC08_L2SP_001062_20201031_20201106_02_T2"


def _is_relative(href: str) -> bool:
    return "://" not in href and not href.startswith("/")


def _fix_item(item: dict) -> dict:
    for key, asset in item["assets"].items():
        local = LOCAL_ASSETS.get(item["id"], {}).get(key)
        if local:
            asset["href"] = str(ASSETS / item["id"] / local)
    item["links"] = [link for link in item.get("links", []) if not _is_relative(link["href"])]
    return item


def _landsat_item() -> dict:
    folder = ASSETS / LANDSAT_ID
    usgs = json.loads((folder / f"{LANDSAT_ID}_SR_stac.json").read_text())
    mtl = json.loads((folder / f"{LANDSAT_ID}_MTL.json").read_text())["LANDSAT_METADATA_FILE"]
    attrs = mtl["IMAGE_ATTRIBUTES"]
    when = f"{attrs['DATE_ACQUIRED']}T{attrs['SCENE_CENTER_TIME'][:8]}Z"
    props = usgs["properties"]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": LANDSAT_ID,
        "collection": "landsat-c2-l2",
        "geometry": usgs["geometry"],
        "bbox": usgs["bbox"],
        "properties": {
            "datetime": when,
            "platform": "landsat-8",
            "instruments": ["oli", "tirs"],
            "eo:cloud_cover": props["eo:cloud_cover"],
            "landsat:cloud_cover_land": props["landsat:cloud_cover_land"],
            "landsat:wrs_type": "2",
            "landsat:wrs_path": props["landsat:wrs_path"].zfill(3),
            "landsat:wrs_row": props["landsat:wrs_row"].zfill(3),
            "landsat:collection_category": props["landsat:collection_category"],
            "landsat:collection_number": props["landsat:collection_number"],
            "landsat:scene_id": props["landsat:scene_id"],
        },
        "links": [],
        "assets": {
            "qa_pixel": {
                "href": str(folder / f"{LANDSAT_ID}_QA_PIXEL.TIF"),
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["cloud"],
            },
            "red": {
                "href": usgs["assets"]["SR_B4.TIF"]["href"],
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            },
        },
    }


def fingerprint() -> str:
    """Hash of every input file and of this checkout's location (hrefs are absolute paths)."""
    digest = hashlib.sha256(str(HERE).encode())
    for path in sorted(HERE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(HERE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def main(out_dir: str) -> None:
    """Write ``collections.ndjson`` and ``items.ndjson`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "collections.ndjson", "w") as fh:
        for path in sorted((HERE / "collections").glob("*.json")):
            collection = json.loads(path.read_text())
            collection["links"] = []
            fh.write(json.dumps(collection) + "\n")
        fh.write(json.dumps(landsat_l1.collection()) + "\n")
    with open(out / "items.ndjson", "w") as fh:
        for path in sorted((HERE / "items").glob("*.ndjson")):
            for line in path.read_text().splitlines():
                if line.strip():
                    fh.write(json.dumps(_fix_item(json.loads(line))) + "\n")
        fh.write(json.dumps(_landsat_item()) + "\n")
        for item in landsat_l1.write_scenes(out / "landsat-c2-l1"):
            fh.write(json.dumps(item) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--fingerprint":
        print(fingerprint())
    else:
        main(sys.argv[1])
