"""Catalogue presets and friendly collection names (Earth Search v1, Copernicus Data Space STAC)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from geodeform.errors import InvalidInputError

__all__ = [
    "CATALOGS",
    "COLLECTIONS",
    "CollectionSpec",
    "resolve_catalog",
    "resolve_collection",
]

#: Catalogue presets: name -> STAC API root URL.
CATALOGS: dict[str, str] = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "cdse": "https://stac.dataspace.copernicus.eu/v1",
    "usgs": "https://landsatlook.usgs.gov/stac-server",
}


@dataclass(frozen=True)
class CollectionSpec:
    """A collection known by a friendly name, with its id in each catalogue preset.

    Attributes
    ----------
    name
        Friendly name (Earth Search id), e.g. ``sentinel-2-l2a``.
    ids
        Catalogue preset name -> collection id there (``None``: not offered by that catalogue).
    mask_kind
        ``"scl"`` (Sentinel-2 L2A scene classification), ``"qa_pixel"`` (Landsat C2 bit flags) or ``None``
        (no per-pixel cloud band: AOI cloud % is not computed).
    mask_assets
        Asset keys tried, in order, for the mask band.
    spectral_fallback
        Scenes without a mask asset are scored (and masked in jobs) with the FMask-style spectral test of
        :mod:`geodeform.masks` from their red and near-infrared bands (optical collections).
    has_cloud_cover
        Whether items carry ``eo:cloud_cover`` (a metadata cloud filter makes sense).
    aliases
        Other accepted spellings (case-insensitive).
    """

    name: str
    title: str
    ids: dict[str, str | None]
    mask_kind: str | None = None
    mask_assets: tuple[str, ...] = ()
    spectral_fallback: bool = False
    has_cloud_cover: bool = True
    aliases: tuple[str, ...] = field(default=())


COLLECTIONS: dict[str, CollectionSpec] = {
    spec.name: spec
    for spec in (
        CollectionSpec(
            "sentinel-2-l2a",
            "Sentinel-2 Level-2A (surface reflectance, SCL)",
            {"earth-search": "sentinel-2-l2a", "cdse": "sentinel-2-l2a"},
            mask_kind="scl",
            mask_assets=("scl", "SCL_20m", "SCL_60m", "SCL"),
            spectral_fallback=True,
            aliases=("s2-l2a", "s2l2a", "s2_l2a", "sentinel2-l2a", "sentinel-2"),
        ),
        CollectionSpec(
            "sentinel-2-c1-l2a",
            "Sentinel-2 Level-2A, Collection 1 reprocessing",
            {"earth-search": "sentinel-2-c1-l2a", "cdse": "sentinel-2-l2a"},
            mask_kind="scl",
            mask_assets=("scl", "SCL_20m", "SCL"),
            aliases=("s2-c1-l2a",),
        ),
        CollectionSpec(
            "sentinel-2-l1c",
            "Sentinel-2 Level-1C (top-of-atmosphere; clouds from the FMask-style spectral test)",
            {"earth-search": "sentinel-2-l1c", "cdse": "sentinel-2-l1c"},
            spectral_fallback=True,
            aliases=("s2-l1c", "s2l1c", "s2_l1c", "sentinel2-l1c"),
        ),
        CollectionSpec(
            "landsat-c2-l2",
            "Landsat Collection 2 Level-2 (QA_PIXEL)",
            {"earth-search": "landsat-c2-l2", "cdse": None, "usgs": "landsat-c2l2-sr"},
            mask_kind="qa_pixel",
            mask_assets=("qa_pixel", "QA_PIXEL", "QA_PIXEL.TIF"),
            spectral_fallback=True,
            aliases=("landsat", "landsat-c2l2", "landsat-c2-l2-sr", "l8", "l9"),
        ),
        CollectionSpec(
            "landsat-c2-l1",
            "Landsat Collection 2 Level-1 (top of atmosphere; 15 m pan band B8; QA_PIXEL or spectral test)",
            {"earth-search": "landsat-c2-l1", "cdse": None, "usgs": "landsat-c2l1"},
            mask_kind="qa_pixel",
            mask_assets=("qa_pixel", "QA_PIXEL", "QA_PIXEL.TIF"),
            spectral_fallback=True,
            aliases=("landsat-l1", "landsat-c2l1", "landsat-c2-l1-toa"),
        ),
        CollectionSpec(
            "sentinel-1-grd",
            "Sentinel-1 GRD (C-band SAR)",
            {"earth-search": "sentinel-1-grd", "cdse": "sentinel-1-grd"},
            has_cloud_cover=False,
            aliases=("s1-grd", "s1grd", "s1_grd", "sentinel1-grd", "sentinel-1"),
        ),
        CollectionSpec(
            "cop-dem-glo-30",
            "Copernicus DEM GLO-30",
            {"earth-search": "cop-dem-glo-30", "cdse": "cop-dem-glo-30-dged-cog"},
            has_cloud_cover=False,
            aliases=("dem", "cop-dem", "copernicus-dem", "glo-30", "cop-dem-glo-30-dged-cog"),
        ),
    )
}


def resolve_catalog(catalog: str | os.PathLike[str] | None) -> tuple[str, str]:
    """Return ``(location, preset)`` for a catalogue given by preset name, URL or local folder.

    Parameters
    ----------
    catalog
        ``None`` (Earth Search), a preset name (``earth-search``, ``cdse``), a STAC API URL or a
        local folder.

    Returns
    -------
    tuple of str
        The URL (or folder path) and the preset whose collection ids apply: ``"local"`` for a folder;
        ``"earth-search"`` for any other URL (self-hosted catalogues usually copy Earth Search ids).
    """
    if catalog is None:
        return CATALOGS["earth-search"], "earth-search"
    text = str(catalog).strip()
    if text.lower() in CATALOGS:
        return CATALOGS[text.lower()], text.lower()
    for name, url in CATALOGS.items():
        if text.rstrip("/") == url:
            return url, name
    if text.startswith(("http://", "https://")):
        return text.rstrip("/"), "earth-search"
    if Path(text).is_dir():
        return text, "local"
    raise InvalidInputError(
        f"catalogue {text!r} is neither a preset ({', '.join(CATALOGS)}), an http(s) URL nor an existing "
        "folder; pass e.g. --catalog earth-search or --catalog https://host/stac/v1"
    )


def resolve_collection(name: str, preset: str) -> tuple[CollectionSpec | None, str]:
    """Map a friendly collection name to ``(spec, id in the catalogue)``.

    Returns ``(None, name)`` for a name that is not in :data:`COLLECTIONS` but looks like a raw collection id;
    the caller checks it against the catalogue.

    Raises
    ------
    InvalidInputError
        The collection is known but the catalogue preset does not offer it.
    """
    key = name.strip().lower()
    for spec in COLLECTIONS.values():
        if key == spec.name or key in spec.aliases:
            if preset == "local":
                return spec, spec.name
            cid = spec.ids.get(preset)
            if cid is None:
                offered = [p for p, i in spec.ids.items() if i]
                raise InvalidInputError(
                    f"collection {spec.name!r} is not offered by the {preset} catalogue; "
                    f"use --catalog {' or '.join(offered)}"
                )
            return spec, cid
    return None, name.strip()


def unknown_collection_error(name: str, available: list[str] | None = None) -> InvalidInputError:
    """The error for a collection name that neither the table nor the catalogue knows."""
    known = ", ".join(COLLECTIONS)
    extra = f"; the catalogue lists: {', '.join(sorted(available))}" if available else ""
    return InvalidInputError(f"unknown collection {name!r}: use one of {known}{extra}")
