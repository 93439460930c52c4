"""``geodeform.search.search``: STAC search (pystac-client or a local folder), AOI filters and AOI scoring."""

from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timezone
from typing import Any

from geodeform.errors import DataError, GeodeformError, InvalidInputError, NoDataError
from geodeform.pairs import parse_months
from geodeform.search.area import AOI, make_aoi
from geodeform.search.catalogs import (
    CollectionSpec,
    resolve_catalog,
    resolve_collection,
    unknown_collection_error,
)
from geodeform.search.local import local_items
from geodeform.search.mgrs import parse_tile_id
from geodeform.search.results import Scene, SceneTable
from geodeform.search.scoring import score_asset, spectral_scores

__all__ = ["item_orbit", "item_tile", "parse_months", "search"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_ORBIT_RE = re.compile(r"_R(\d{3})_")
_TILE_RE = re.compile(r"(?:^|_)T?(\d{2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])(?:_|$)")


def _to_datetime(value: str | date | datetime | None, *, end: bool, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime.combine(value, time.max if end else time.min)
    else:
        text = str(value).strip()
        try:
            if len(text) == 10:
                dt = datetime.combine(date.fromisoformat(text), time.max if end else time.min)
            else:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInputError(f"{name} {text!r} is not a date: use YYYY-MM-DD (or ISO 8601)") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _in_months(month: int, window: tuple[int, int]) -> bool:
    first, last = window
    return first <= month <= last if first <= last else month >= first or month <= last


def item_orbit(props: dict[str, Any], item_id: str = "") -> int | None:
    """Relative orbit (Sentinel-1/2: ``sat:relative_orbit`` or ``_Rnnn_`` in the product name) or WRS path."""
    for key in ("sat:relative_orbit", "landsat:wrs_path", "s2:relative_orbit"):
        if props.get(key) not in (None, ""):
            return int(props[key])
    for text in (props.get("s2:product_uri"), props.get("s2:datatake_id"), item_id):
        match = _ORBIT_RE.search(str(text or ""))
        if match:
            return int(match.group(1))
    return None


def item_tile(props: dict[str, Any], item_id: str = "") -> str | None:
    """MGRS tile of an S2 item (``grid:code``, ``mgrs:*``, ``s2:mgrs_tile`` or the id), else ``None``."""
    code = str(props.get("grid:code") or "")
    if code.startswith("MGRS-"):
        return parse_tile_id(code[5:])
    if props.get("mgrs:utm_zone") is not None:
        return parse_tile_id(
            f"{props['mgrs:utm_zone']}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}"
        )
    if props.get("s2:mgrs_tile"):
        return parse_tile_id(str(props["s2:mgrs_tile"]))
    match = _TILE_RE.search(item_id)
    return parse_tile_id(match.group(1)) if match else None


def _item_datetime(item: Any) -> datetime:
    dt = item.datetime or item.common_metadata.start_datetime
    if dt is None:
        raise DataError(f"catalogue item {item.id} has no datetime")
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _scene(item: Any, aoi: AOI) -> Scene:
    props = item.properties
    cloud = props.get("eo:cloud_cover")
    return Scene(
        id=item.id,
        collection=item.collection_id or "",
        datetime=_item_datetime(item),
        platform=props.get("platform"),
        tile=item_tile(props, item.id),
        orbit=item_orbit(props, item.id),
        cloud_cover=None if cloud is None else float(cloud),
        aoi_coverage_pct=round(aoi.coverage(item.geometry), 3),
        assets={k: a.href for k, a in item.assets.items()},
        geometry=item.geometry,
        properties=props,
    )


def _open_client(url: str, timeout: float) -> Any:
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        return Client.open(url, timeout=timeout)
    except (APIError, requests.RequestException, OSError, ValueError) as exc:
        raise DataError(
            f"cannot reach the STAC catalogue at {url} ({type(exc).__name__}: {str(exc)[:200]}); check the "
            "URL and the network, or pick another with --catalog (earth-search, cdse, a folder)"
        ) from exc


def _check_collection(client: Any, cid: str) -> None:
    from pystac_client.exceptions import APIError

    try:
        found = client.get_collection(cid)
    except Exception as exc:  # 404 -> APIError; some servers answer 500 or malformed JSON
        if not isinstance(exc, APIError | ValueError | KeyError | OSError):
            raise
        found = None
    if found is None:
        try:
            available = [c.id for c in client.get_collections()]
        except Exception:
            available = None
        raise unknown_collection_error(cid, available)


def _remote_items(
    url: str,
    cid: str,
    spec: CollectionSpec | None,
    aoi: AOI,
    *,
    start: datetime | None,
    end: datetime | None,
    max_cloud: float | None,
    max_items: int,
    timeout: float,
) -> list[Any]:
    import requests
    from pystac_client.exceptions import APIError

    client = _open_client(url, timeout)
    if spec is None:
        _check_collection(client, cid)
    kwargs: dict[str, Any] = {
        "collections": [cid],
        "intersects": aoi.to_geojson(),
        "max_items": max_items,
        "limit": min(max_items, 100),
    }
    if start or end:
        kwargs["datetime"] = [start, end]
    if max_cloud is not None and (spec is None or spec.has_cloud_cover):
        if client.conforms_to("FILTER"):
            kwargs["filter"] = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]}
            kwargs["filter_lang"] = "cql2-json"
        elif client.conforms_to("QUERY"):
            kwargs["query"] = {"eo:cloud_cover": {"lte": max_cloud}}
    try:
        return list(client.search(**kwargs).items())
    except (APIError, requests.RequestException, OSError) as exc:
        raise DataError(
            f"the STAC search on {url} failed ({type(exc).__name__}: {str(exc)[:300]}); retry later or "
            "check the collection and filters"
        ) from exc


def _score(
    scenes: list[Scene], spec: CollectionSpec | None, aoi: AOI, progress: Progress | None, workers: int
) -> list[Scene]:
    if spec is None or (spec.mask_kind is None and not spec.spectral_fallback):
        return scenes
    kind = spec.mask_kind or "spectral"

    def one(scene: Scene) -> Scene:
        key = next((k for k in spec.mask_assets if k in scene.assets), None)
        spectral = key is None and spec.spectral_fallback and "red" in scene.assets
        if key is None and not spectral:
            return _replace(scene, note=f"no {spec.mask_kind} asset: AOI cloud not computed")
        try:
            if spectral:
                score = spectral_scores(scene, aoi)
            else:
                score = score_asset(scene.assets[key], kind, aoi)  # type: ignore[index]
        except GeodeformError as exc:
            log.warning("AOI scoring of %s failed: %s", scene.id, exc)
            return _replace(scene, note=f"AOI scoring failed: {exc}")
        cloud = None if math.isnan(score.cloud_pct) else round(score.cloud_pct, 3)
        return _replace(scene, aoi_cloud_pct=cloud, aoi_valid_pct=round(score.valid_pct, 3))

    done: list[Scene] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for scene in pool.map(one, scenes):
            done.append(scene)
            if progress is not None:
                progress(len(done), len(scenes))
    return done


def _replace(scene: Scene, **changes: Any) -> Scene:
    from dataclasses import replace

    return replace(scene, **changes)


def _best_per_orbit(scenes: Iterable[Scene], n: int) -> list[Scene]:
    groups: dict[int | None, list[Scene]] = defaultdict(list)
    for scene in scenes:
        groups[scene.orbit].append(scene)
    kept: list[Scene] = []
    for group in groups.values():
        kept.extend(sorted(group, key=lambda s: s.rank_key)[:n])
    return kept


def search(
    collection: str = "sentinel-2-l2a",
    *,
    bbox: Sequence[float] | str | None = None,
    aoi: str | os.PathLike[str] | dict[str, Any] | AOI | None = None,
    tile: str | None = None,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    months: str | Sequence[int] | None = None,
    max_cloud: float | None = None,
    max_aoi_cloud: float | None = None,
    min_valid: float | None = None,
    orbit: int | Sequence[int] | None = None,
    min_coverage: float = 0.0,
    best_per_orbit: int | None = None,
    max_items: int = 500,
    catalog: str | os.PathLike[str] | None = None,
    score: bool = True,
    timeout: float = 30.0,
    workers: int = 4,
    progress: Progress | None = None,
) -> SceneTable:
    """Search a STAC catalogue (or a local folder) over an AOI and score clouds on the AOI itself.

    Parameters
    ----------
    collection
        Friendly name (``sentinel-2-l2a``, ``sentinel-2-l1c``, ``landsat-c2-l2``, ``sentinel-1-grd``,
        ``cop-dem-glo-30``; aliases such as ``s2-l2a``, ``dem``), mapped to the catalogue's own id.
    bbox, aoi, tile
        Area of interest: ``bbox`` = (west, south, east, north) in degrees; ``aoi`` = vector file in any OGR
        format (GeoJSON, KML, shapefile, GeoPackage...), a GeoJSON dict or an :class:`AOI`; ``tile`` = MGRS id
        such as ``32TLR``. A tile with a bbox/AOI file keeps only scenes of
        that tile, and the AOI must intersect it.
    start, end
        Acquisition date range, inclusive (``YYYY-MM-DD`` or datetime; naive times are UTC).
    months
        Month window (season) within each year, e.g. ``"6-9"``; ``"11-2"`` wraps over the new year.
    max_cloud
        Maximum scene-wide metadata cloud cover ``eo:cloud_cover``, percent (sent to the server).
    max_aoi_cloud, min_valid
        Maximum AOI cloud % and minimum AOI valid-data % (from the SCL / QA_PIXEL band), percent.
    orbit
        Keep only these relative orbits (Sentinel-1/2) or WRS-2 paths (Landsat).
    min_coverage
        Minimum share of the AOI inside the scene footprint, percent.
    best_per_orbit
        Keep the N best scenes (lowest AOI cloud, then most valid data) of each orbit.
    max_items
        Cap on the items requested from the catalogue.
    catalog
        ``earth-search`` (default), ``cdse``, a STAC API URL, or a folder indexed on the fly (see
        :func:`geodeform.search.index_folder`).
    score
        Compute AOI cloud / valid-data % (reads the AOI window of the mask band of every scene).
    timeout
        HTTP timeout for catalogue requests, seconds.
    workers
        Parallel AOI-scoring reads.
    progress
        ``progress(done, total)`` called while scoring.

    Returns
    -------
    SceneTable
        Scenes sorted by time; ``.write("out.geojson" | "out.csv")``.

    Raises
    ------
    InvalidInputError
        Bad AOI, tile, dates (start after end), months or unknown collection.
    DataError
        Catalogue unreachable or failing.
    NoDataError
        No scene left; the message says after which filter.
    """
    area = aoi if isinstance(aoi, AOI) else make_aoi(bbox=bbox, geojson=aoi, tile=tile)
    t0, t1 = _date_range(start, end)
    window = parse_months(months)
    _check_counts(max_items, best_per_orbit)
    orbits = None if orbit is None else {int(orbit)} if isinstance(orbit, int) else {int(o) for o in orbit}
    location, preset = resolve_catalog(catalog)
    spec, cid = resolve_collection(collection, preset)

    if preset == "local":
        items = local_items(location, cid, area, t0, t1, max_cloud, max_items)
        if not items and spec is None:
            raise unknown_collection_error(cid)
    else:
        items = _remote_items(
            location,
            cid,
            spec,
            area,
            start=t0,
            end=t1,
            max_cloud=max_cloud,
            max_items=max_items,
            timeout=timeout,
        )

    stats = {"catalogue": len(items)}
    scenes = [_scene(item, area) for item in items]
    steps: list[tuple[str, Callable[[Scene], bool]]] = [
        ("tile", lambda s: area.tile is None or s.tile in (None, area.tile)),
        ("coverage", lambda s: s.aoi_coverage_pct > 0 and s.aoi_coverage_pct >= min_coverage),
        ("months", lambda s: window is None or _in_months(s.datetime.month, window)),
        ("orbit", lambda s: orbits is None or s.orbit in orbits),
        ("max_cloud", lambda s: max_cloud is None or s.cloud_cover is None or s.cloud_cover <= max_cloud),
    ]
    scenes = _apply(scenes, steps, stats)
    if score:
        scenes = _score(scenes, spec, area, progress, workers)
        scenes = _apply(scenes, _aoi_steps(max_aoi_cloud, min_valid), stats)
    if best_per_orbit is not None:
        scenes = _best_per_orbit(scenes, best_per_orbit)
        stats["best_per_orbit"] = len(scenes)
    if not scenes:
        raise NoDataError(_empty_message(cid, location, area, stats))
    return SceneTable(scenes, aoi=area, catalog=location, stats=stats)


def _date_range(
    start: str | date | datetime | None, end: str | date | datetime | None
) -> tuple[datetime | None, datetime | None]:
    """UTC datetimes of an inclusive date range (the end date up to its last second)."""
    t0 = _to_datetime(start, end=False, name="start date")
    t1 = _to_datetime(end, end=True, name="end date")
    if t0 and t1 and t0 > t1:
        raise InvalidInputError(
            f"start date {t0.date()} is after end date {t1.date()}; swap them (--start is the earlier date)"
        )
    return t0, t1


def _check_counts(max_items: int, best_per_orbit: int | None) -> None:
    if max_items < 1:
        raise InvalidInputError(f"max_items must be >= 1, got {max_items}")
    if best_per_orbit is not None and best_per_orbit < 1:
        raise InvalidInputError(f"best_per_orbit (--limit) must be >= 1, got {best_per_orbit}")


def _aoi_steps(
    max_aoi_cloud: float | None, min_valid: float | None
) -> list[tuple[str, Callable[[Scene], bool]]]:
    """The filters on the AOI scores (a scene without a score fails a filter that is set)."""
    return [
        (
            "max_aoi_cloud",
            lambda s: (
                max_aoi_cloud is None or (s.aoi_cloud_pct is not None and s.aoi_cloud_pct <= max_aoi_cloud)
            ),
        ),
        (
            "min_valid",
            lambda s: min_valid is None or (s.aoi_valid_pct is not None and s.aoi_valid_pct >= min_valid),
        ),
    ]


def _apply(
    scenes: list[Scene], steps: list[tuple[str, Callable[[Scene], bool]]], stats: dict[str, int]
) -> list[Scene]:
    for name, keep in steps:
        scenes = [s for s in scenes if keep(s)]
        stats[name] = len(scenes)
    return scenes


def _empty_message(cid: str, location: str, area: AOI, stats: dict[str, int]) -> str:
    if stats["catalogue"] == 0:
        return (
            f"no {cid} scenes in {location} over {area.source} {tuple(round(v, 4) for v in area.bbox)} for "
            "these dates/filters; widen the date range, raise --max-cloud or check the AOI (lon, lat order)"
        )
    previous, culprit = stats["catalogue"], "filters"
    for name, count in stats.items():
        if count == 0:
            culprit = name
            break
        previous = count
    return (
        f"no {cid} scenes left over {area.source}: the catalogue returned {stats['catalogue']}, and the "
        f"{culprit} filter removed the last {previous}; relax that filter"
    )
