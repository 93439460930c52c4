"""Sentinel-1 GRD scenes of a ``sar`` job from a catalogue search, made readable as local SAFE-like folders.

A STAC item of ``sentinel-1-grd`` (Earth Search layout) has one asset per measurement (``vv``, ``vh``, ``hh``,
``hv``) and the metadata XML of each polarisation (``schema-product-vv``: annotation,
``schema-calibration-vv``, ``schema-noise-vv``). :func:`materialise` turns one scene into what
:func:`geodeform.sar.open_s1` reads: local files are used where they are; ``http(s)`` XML assets are
downloaded once into a cache folder, and a remote measurement is referenced by a small local VRT (GDAL reads
only the window a job needs, through ``/vsicurl/``). Assets on ``s3://`` need AWS access GDAL can use: the
measurement is referenced through ``/vsis3/``, but the XML cannot be fetched without credentials, so such
scenes stop with a message saying to download the SAFE products and list them as ``inputs``.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import rasterio
import rasterio.shutil

from geodeform.config import SarConfig, SearchConfig
from geodeform.errors import DataError, NoDataError
from geodeform.io import atomic_output
from geodeform.sar import MissingAnnotationError
from geodeform.search import Scene, make_aoi
from geodeform.search import search as stac_search
from geodeform.workflows.stack import search_filters

__all__ = ["SceneFiles", "materialise", "scenes_from_search"]

log = logging.getLogger(__name__)

SceneFiles = tuple[str, dict[str, str | None]]
"""``(measurement path, {"annotation": ..., "calibration": ..., "noise": ...})`` for :func:`open_s1`."""


def _local(href: str) -> Path | None:
    parsed = urllib.parse.urlparse(href)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(href)
    return None


def _fetch(href: str, dest: Path, what: str, scene: str) -> Path:
    """A local copy of an XML asset (downloaded once)."""
    local = _local(href)
    if local is not None:
        if not local.is_file():
            raise DataError(f"{scene}: {what} asset {href} not found")
        return local
    if dest.is_file():
        return dest
    scheme = urllib.parse.urlparse(href).scheme
    if scheme not in ("http", "https"):
        raise DataError(
            f"{scene}: the {what} asset is at {href}, which needs credentials this job does not have; "
            "download the SAFE products (e.g. from the Copernicus Data Space) and list them as inputs"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(href, timeout=60) as r:
            body = r.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"{scene}: cannot download the {what} asset {href} ({exc})") from exc
    with atomic_output(dest) as tmp:
        tmp.write_bytes(body)
    return dest


def _measurement(href: str, dest: Path, scene: str) -> Path:
    """The measurement itself when local, else a local VRT that points at it through GDAL's network VSI."""
    local = _local(href)
    if local is not None:
        if not local.is_file():
            raise DataError(f"{scene}: measurement asset {href} not found")
        return local
    if dest.is_file():
        return dest
    parsed = urllib.parse.urlparse(href)
    if parsed.scheme in ("http", "https"):
        gdal = f"/vsicurl/{href}"
    elif parsed.scheme == "s3":
        gdal = f"/vsis3/{parsed.netloc}{parsed.path}"
    else:
        raise DataError(f"{scene}: measurement asset {href}: scheme {parsed.scheme!r} is not readable")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(dest) as tmp, rasterio.open(gdal) as src:
            rasterio.shutil.copy(src, tmp, driver="VRT")
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{scene}: cannot open the measurement {href} ({exc})") from exc
    return dest


def materialise(scene: Scene, sar: SarConfig, folder: Path) -> SceneFiles:
    """The files :func:`geodeform.sar.open_s1` needs for one searched scene (see the module docstring).

    Raises
    ------
    DataError
        No measurement of ``sar.polarisation``, an unreadable or unreachable asset.
    MissingAnnotationError
        No annotation asset for that polarisation.
    """
    pol = sar.polarisation.lower()
    assets = dict(scene.assets)
    if pol not in assets:
        have = sorted(k for k in assets if k in ("vv", "vh", "hh", "hv"))
        raise DataError(
            f"{scene.id}: no {sar.polarisation} measurement (it has {', '.join(have) or 'none'}); set "
            "sar.polarisation to one it has, or drop the scene (search.orbits)"
        )
    ann_href = assets.get(f"schema-product-{pol}")
    if ann_href is not None:
        # Earth Search's schema-product-* points at the RFI report (annotation/rfi/rfi-iw-vv.xml), not the
        # product annotation next to it (annotation/iw-vv.xml)
        ann_href = ann_href.replace("/annotation/rfi/rfi-", "/annotation/")
    if ann_href is None:
        raise MissingAnnotationError(
            f"{scene.id}: no annotation asset (schema-product-{pol}); the geometry is unknown. Give the SAFE "
            "product as an input instead"
        )
    base = folder / scene.id
    stem = Path(urllib.parse.urlparse(ann_href).path).stem or f"{pol}"
    files: dict[str, str | None] = {
        "annotation": str(_fetch(ann_href, base / "annotation" / f"{stem}.xml", "annotation", scene.id))
    }
    for kind in ("calibration", "noise"):
        href = assets.get(f"schema-{kind}-{pol}")
        files[kind] = (
            None
            if href is None
            else str(_fetch(href, base / "calibration" / f"{kind}-{stem}.xml", kind, scene.id))
        )
    measurement = _measurement(assets[pol], base / "measurement" / f"{stem}.vrt", scene.id)
    return str(measurement), files


def scenes_from_search(
    search: SearchConfig, sar: SarConfig, run_dir: Path, *, cache_dir: Path | None = None
) -> list[SceneFiles]:
    """Search ``sentinel-1-grd`` over the AOI; keep per relative orbit and date the scene covering most of it.

    Per relative orbit, the ``search.max_images`` dates whose scenes cover the most of the AOI are kept.

    Raises
    ------
    NoDataError
        Nothing found, or no relative orbit with two dates (the message lists the orbits and dates found).
    """
    a = search.aoi
    area = make_aoi(
        bbox=list(a.bbox) if a.bbox else None, geojson=a.geojson, tile=a.tiles[0] if a.tiles else None
    )
    table = stac_search(search.collection, aoi=area, score=False, **search_filters(search))
    best: dict[tuple[int | None, str], Scene] = {}
    for s in table:
        key = (s.orbit, s.datetime.date().isoformat())
        if key not in best or s.aoi_coverage_pct > best[key].aoi_coverage_pct:
            best[key] = s
    orbits = sorted({o for o, _ in best}, key=lambda o: -1 if o is None else o)
    chosen: list[Scene] = []
    for o in orbits:
        group = sorted((s for (oo, _), s in best.items() if oo == o), key=lambda s: -s.aoi_coverage_pct)
        chosen += sorted(group[: search.max_images], key=lambda s: s.datetime)
    if not any(sum(1 for s in chosen if s.orbit == o) >= 2 for o in orbits):
        found = "; ".join(
            f"relative orbit {o}: "
            + ", ".join(
                f"{d} ({sum(1 for s in table if (s.orbit, s.datetime.date().isoformat()) == (o, d))} "
                "scene(s))"
                for (oo, d) in sorted(best)
                if oo == o
            )
            for o in orbits
        )
        raise NoDataError(
            f"no relative orbit has two dates between {search.start} and {search.end} over the AOI "
            f"({found}); pairs are formed within one orbit: widen the dates"
        )
    folder = (cache_dir or run_dir / "scenes").resolve()
    out = []
    for s in chosen:
        if s.aoi_coverage_pct < 99.0:
            log.warning("%s covers %.0f%% of the AOI", s.id, s.aoi_coverage_pct)
        out.append(materialise(s, sar, folder))
    return out
