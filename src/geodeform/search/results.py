"""Search results: one :class:`Scene` per catalogue item, in a :class:`SceneTable` (GeoJSON / CSV)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from geodeform.errors import InvalidInputError
from geodeform.io.atomic import atomic_output
from geodeform.search.area import AOI

__all__ = ["COLUMNS", "Scene", "SceneTable"]

#: Table columns, in order (CSV header; GeoJSON feature properties).
COLUMNS = (
    "id",
    "collection",
    "datetime",
    "platform",
    "tile",
    "orbit",
    "cloud_cover",
    "aoi_coverage_pct",
    "aoi_cloud_pct",
    "aoi_valid_pct",
    "note",
)


@dataclass(frozen=True)
class Scene:
    """One scene found over the AOI.

    Attributes
    ----------
    id, collection
        Catalogue item id and collection id.
    datetime
        Acquisition time (UTC).
    orbit
        Relative orbit (Sentinel-1/2) or WRS-2 path (Landsat); ``None`` when unknown.
    cloud_cover
        Scene-wide cloud cover from the metadata (``eo:cloud_cover``), percent.
    aoi_coverage_pct
        Share of the AOI inside the scene footprint, percent.
    aoi_cloud_pct, aoi_valid_pct
        Cloud and valid-data shares computed on the AOI from the SCL / QA_PIXEL band, percent; ``None`` when
        the collection has no such band or scoring was skipped / failed (see ``note``).
    assets
        Asset key -> href.
    geometry
        Footprint, GeoJSON (lon/lat).
    """

    id: str
    collection: str
    datetime: dt.datetime
    platform: str | None = None
    tile: str | None = None
    orbit: int | None = None
    cloud_cover: float | None = None
    aoi_coverage_pct: float = 100.0
    aoi_cloud_pct: float | None = None
    aoi_valid_pct: float | None = None
    note: str = ""
    assets: Mapping[str, str] = field(default_factory=dict, repr=False)
    geometry: Mapping[str, Any] | None = field(default=None, repr=False)
    properties: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def rank_key(self) -> tuple[float, float, float, dt.datetime]:
        """Sort key, best first: lowest AOI cloud (else metadata cloud), most valid data, most coverage."""
        cloud = self.aoi_cloud_pct if _num(self.aoi_cloud_pct) else self.cloud_cover
        cloud = cloud if _num(cloud) else 100.0
        valid = self.aoi_valid_pct if _num(self.aoi_valid_pct) else 100.0
        return (round(float(cloud), 6), -float(valid), -self.aoi_coverage_pct, self.datetime)  # type: ignore[arg-type]

    def row(self) -> dict[str, Any]:
        """The table columns of this scene as a dict (datetime as ISO 8601 text)."""
        values = {name: getattr(self, name) for name in COLUMNS}
        values["datetime"] = self.datetime.isoformat().replace("+00:00", "Z")
        return values


def _num(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


class SceneTable(Sequence[Scene]):
    """Scenes found by :func:`geodeform.search.search`, sorted by acquisition time.

    Behaves as a read-only sequence of :class:`Scene`; ``write()`` saves it as GeoJSON or CSV.

    Attributes
    ----------
    aoi
        The area of interest searched.
    catalog
        Catalogue URL or local folder.
    stats
        Counts after each filtering stage (``catalogue``, ``coverage``, ``orbit``, ...), to explain results.
    """

    def __init__(
        self,
        scenes: Sequence[Scene],
        *,
        aoi: AOI | None = None,
        catalog: str = "",
        stats: Mapping[str, int] | None = None,
    ) -> None:
        self._scenes = tuple(sorted(scenes, key=lambda s: (s.datetime, s.id)))
        self.aoi = aoi
        self.catalog = catalog
        self.stats = dict(stats or {})

    @overload
    def __getitem__(self, index: int) -> Scene: ...
    @overload
    def __getitem__(self, index: slice) -> SceneTable: ...
    def __getitem__(self, index: int | slice) -> Scene | SceneTable:
        if isinstance(index, slice):
            return SceneTable(self._scenes[index], aoi=self.aoi, catalog=self.catalog, stats=self.stats)
        return self._scenes[index]

    def __len__(self) -> int:
        return len(self._scenes)

    def __iter__(self) -> Iterator[Scene]:
        return iter(self._scenes)

    def __repr__(self) -> str:
        return f"SceneTable({len(self)} scenes, catalog={self.catalog!r})"

    @property
    def ids(self) -> list[str]:
        """Item ids, in table order."""
        return [s.id for s in self._scenes]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per scene with the :data:`COLUMNS`."""
        return [s.row() for s in self._scenes]

    def to_geojson(self) -> dict[str, Any]:
        """A GeoJSON FeatureCollection: scene footprints with the table columns and asset hrefs."""
        features = []
        for scene in self._scenes:
            props = scene.row()
            props["assets"] = dict(scene.assets)
            features.append(
                {"type": "Feature", "id": scene.id, "geometry": scene.geometry, "properties": props}
            )
        doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
        if self.aoi is not None:
            doc["aoi"] = {"source": self.aoi.source, "geometry": self.aoi.to_geojson()}
        doc["catalog"] = self.catalog
        return doc

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the table atomically: ``.geojson``/``.json`` (FeatureCollection) or ``.csv``.

        Raises
        ------
        InvalidInputError
            Unsupported suffix.
        """
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix not in (".geojson", ".json", ".csv"):
            raise InvalidInputError(f"cannot write {out.name}: use a .geojson, .json or .csv file name")
        with atomic_output(out) as tmp:
            if suffix == ".csv":
                with open(tmp, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
                    writer.writeheader()
                    for row in self.rows():
                        writer.writerow({k: "" if v is None else v for k, v in row.items()})
            else:
                tmp.write_text(json.dumps(self.to_geojson(), indent=1, default=str))
        return out
