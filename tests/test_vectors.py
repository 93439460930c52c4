"""geodeform.io.vectors: vector files in any OGR format, on real outlines (GLAFT Kaskawulsh, RGI-derived)."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyogrio")
pytest.importorskip("rasterio")

import pyogrio.raw
import rasterio
import shapely

from _shared import SHARED_DATA
from geodeform.errors import DataError, InvalidInputError, NoDataError
from geodeform.io import GeoGrid, read_mask
from geodeform.io.vectors import rasterize_vectors, read_vectors, vectors_on_grid
from geodeform.search import aoi_from_file, aoi_from_geojson

KASKA = SHARED_DATA / "glaft_kaskawulsh"
OUTLINE = KASKA / "glacier_V1_Kaskawulsh_s_inwardBuffer600m.shp"
BEDROCK = KASKA / "bedrock_V2.shp"


@pytest.fixture(scope="module")
def kaska_grid() -> GeoGrid:
    """The 60 m grid of the GLAFT velocity map (EPSG:32607) the outlines were drawn for."""
    if not KASKA.is_dir():
        pytest.skip(f"real data not found at {KASKA}")
    with rasterio.open(KASKA / "20180304-20180405_velo-raw_vx.tif") as src:
        return GeoGrid(crs=src.crs, transform=src.transform, shape=(src.height, src.width))


def _convert(src: Path, dst: Path, driver: str, **options: object) -> Path:
    """ogr2ogr-like copy of every feature of ``src`` (geometry and attributes) with pyogrio."""
    meta, _, geometry, fields = pyogrio.raw.read(src)
    pyogrio.raw.write(
        dst,
        geometry,
        fields,
        fields=meta["fields"],
        crs=options.pop("crs", meta["crs"]),
        geometry_type="MultiPolygon",  # shapefile "Polygon" layers hold multi-part polygons too
        promote_to_multi=True,
        driver=driver,
        **options,
    )
    return dst


@pytest.mark.parametrize("source", [OUTLINE, BEDROCK], ids=["glacier", "bedrock"])
def test_outlines_rasterise_identically_from_every_format(
    source: Path, kaska_grid: GeoGrid, tmp_path
) -> None:
    """Shapefile, GeoJSON, GeoPackage, FlatGeobuf and zipped shapefile give the same mask, pixel for pixel."""
    reference = read_mask(source, kaska_grid, what="masks.glacier")
    assert 0.01 < reference.mean() < 0.9  # a real outline on this grid, not an empty or full mask
    twins = [
        _convert(source, tmp_path / "outline.geojson", "GeoJSON"),
        _convert(source, tmp_path / "outline.gpkg", "GPKG"),
        _convert(source, tmp_path / "outline.fgb", "FlatGeobuf"),
    ]
    with zipfile.ZipFile(tmp_path / "outline.zip", "w") as zf:
        for part in source.parent.glob(source.stem + ".*"):
            zf.write(part, part.name)
    twins.append(tmp_path / "outline.zip")
    for twin in twins:
        assert np.array_equal(read_mask(twin, kaska_grid, what="masks.glacier"), reference), twin.name


def test_lonlat_twins_agree_to_the_pixel_edges(kaska_grid: GeoGrid, tmp_path) -> None:
    """RFC 7946 GeoJSON and KML are lon/lat: reprojected back to UTM they differ only at pixel edges."""
    reference = read_mask(OUTLINE, kaska_grid, what="masks.glacier")
    ll = read_vectors(OUTLINE).to_crs("EPSG:4326")
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": g.__geo_interface__} for g in ll.geometries
        ],
    }
    (tmp_path / "rfc.geojson").write_text(json.dumps(geojson))
    wkb = shapely.to_wkb(np.asarray(ll.geometries))
    pyogrio.raw.write(
        tmp_path / "outline.kml", wkb, [], fields=[], crs="EPSG:4326", geometry_type="Polygon", driver="KML"
    )
    for name in ("rfc.geojson", "outline.kml"):
        mask = read_mask(tmp_path / name, kaska_grid, what="masks.glacier")
        differ = mask != reference
        assert differ.mean() < 1e-3, name
        # only boundary pixels may flip: each differing pixel touches the outline's edge
        edge = reference ^ np.roll(reference, 1, 0) | reference ^ np.roll(reference, 1, 1)
        edge |= np.roll(edge, -1, 0) | np.roll(edge, -1, 1)
        assert edge[differ].all(), name


def test_no_crs_is_assumed_lonlat_only_when_it_fits(tmp_path, caplog) -> None:
    utm = shapely.box(600000, 6720000, 610000, 6730000)
    pyogrio.raw.write(
        tmp_path / "utm.shp", shapely.to_wkb(np.array([utm])), [], fields=[], geometry_type="Polygon"
    )
    assert not (tmp_path / "utm.prj").exists()
    with pytest.raises(
        InvalidInputError, match=r"masks\.stable: .*utm\.shp declares no CRS .*add one .*\.prj"
    ):
        read_vectors(tmp_path / "utm.shp", what="masks.stable")
    assert read_vectors(tmp_path / "utm.shp", crs="EPSG:32607").crs.to_epsg() == 32607
    lonlat = shapely.box(-139.0, 60.6, -138.5, 60.8)
    pyogrio.raw.write(
        tmp_path / "ll.shp", shapely.to_wkb(np.array([lonlat])), [], fields=[], geometry_type="Polygon"
    )
    with caplog.at_level(logging.WARNING):
        vec = read_vectors(tmp_path / "ll.shp", what="AOI")
    assert vec.crs.to_epsg() == 4326 and vec.crs_assumed
    assert "ll.shp declares no CRS" in caplog.text and "EPSG:4326 is assumed" in caplog.text


def test_empty_layer_missing_file_and_wrong_geometry(tmp_path) -> None:
    pyogrio.raw.write(
        tmp_path / "empty.gpkg", np.array([], dtype=object), [], fields=[], crs="EPSG:32607",
        geometry_type="Polygon", driver="GPKG",
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"masks\.glacier: layer 'empty' of .*empty\.gpkg is empty"):
        read_vectors(tmp_path / "empty.gpkg", what="masks.glacier")
    with pytest.raises(DataError, match=r"AOI: file .*gone\.kml not found"):
        read_vectors(tmp_path / "gone.kml", what="AOI")
    (tmp_path / "junk.gpkg").write_bytes(b"not a geopackage")
    with pytest.raises(DataError, match=r"cannot read .*junk\.gpkg as a vector file"):
        read_vectors(tmp_path / "junk.gpkg")
    line = shapely.LineString([(600000, 6720000), (610000, 6730000)])
    pyogrio.raw.write(
        tmp_path / "trace.gpkg", shapely.to_wkb(np.array([line])), [], fields=[], crs="EPSG:32607",
        geometry_type="LineString", driver="GPKG",
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="holds LineString but no polygon geometry"):
        read_vectors(tmp_path / "trace.gpkg", what="masks.stable")
    with pytest.raises(InvalidInputError, match="no layer 'faults'"):
        read_vectors(tmp_path / "trace.gpkg", layer="faults")


def test_rupture_trace_rasterises_as_a_connected_line(tmp_path) -> None:
    grid = GeoGrid(
        crs=rasterio.crs.CRS.from_epsg(32607),
        transform=rasterio.transform.from_origin(600000, 6730000, 100, 100),
        shape=(100, 100),
    )
    line = shapely.LineString([(600050, 6729950), (609950, 6720050)])  # the grid's diagonal
    pyogrio.raw.write(
        tmp_path / "trace.fgb", shapely.to_wkb(np.array([line])), [], fields=[], crs="EPSG:32607",
        geometry_type="LineString", driver="FlatGeobuf",
    )  # fmt: skip
    mask = rasterize_vectors(tmp_path / "trace.fgb", grid, kind="line", what="rupture trace")
    assert mask[np.arange(100), np.arange(100)].all()  # every diagonal pixel burnt, no gap
    assert mask.sum() < 3 * 100


def test_polygons_outside_the_grid_are_an_error_not_an_empty_mask(kaska_grid: GeoGrid, tmp_path) -> None:
    far = shapely.box(300000, 5000000, 310000, 5010000)
    pyogrio.raw.write(
        tmp_path / "far.gpkg", shapely.to_wkb(np.array([far])), [], fields=[], crs="EPSG:32607",
        geometry_type="Polygon", driver="GPKG",
    )  # fmt: skip
    with pytest.raises(NoDataError, match=r"masks\.stable: the geometries of .*far\.gpkg .* do not overlap"):
        read_mask(tmp_path / "far.gpkg", kaska_grid, what="masks.stable")
    # a polygon smaller than a pixel, between pixel centres: no silent empty mask either
    tiny = shapely.box(600001, 6730001, 600002, 6730002)
    pyogrio.raw.write(
        tmp_path / "tiny.gpkg", shapely.to_wkb(np.array([tiny])), [], fields=[], crs="EPSG:32607",
        geometry_type="Polygon", driver="GPKG",
    )  # fmt: skip
    assert vectors_on_grid(tmp_path / "tiny.gpkg", kaska_grid).geometries
    with pytest.raises(NoDataError, match="cover no pixel centre"):
        read_mask(tmp_path / "tiny.gpkg", kaska_grid, what="masks.stable")


def test_kml_aoi_equals_its_geojson_twin(tmp_path) -> None:
    ring = [(-138.7, 60.68), (-138.3, 60.68), (-138.3, 60.82), (-138.7, 60.82), (-138.7, 60.68)]
    coords = " ".join(f"{x},{y},0" for x, y in ring)
    (tmp_path / "aoi.kml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"<Placemark><name>AOI</name><Polygon><outerBoundaryIs><LinearRing><coordinates>{coords}"
        "</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark></Document></kml>"
    )
    twin = {"type": "Polygon", "coordinates": [ring]}
    kml, geojson = aoi_from_file(tmp_path / "aoi.kml"), aoi_from_geojson(twin)
    assert kml.epsg == geojson.epsg == 32607
    assert kml.geometry.symmetric_difference(geojson.geometry).area < 1e-12


def test_kml_aoi_selects_the_same_scenes_as_its_geojson_twin(tmp_path) -> None:
    """Against the local STAC API: the same AOI as KML and as GeoJSON gives the same scenes and AOI scores."""
    from _stac_helpers import BBOX, stac_url
    from geodeform.search import search

    west, south, east, north = BBOX
    ring = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    coords = " ".join(f"{x},{y}" for x, y in ring)
    (tmp_path / "aoi.kml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        f"<Placemark><Polygon><outerBoundaryIs><LinearRing><coordinates>{coords}</coordinates></LinearRing>"
        "</outerBoundaryIs></Polygon></Placemark></Document></kml>"
    )
    (tmp_path / "aoi.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    dates = {"start": "2023-08-11", "end": "2023-08-19"}
    kml = search("s2-l2a", aoi=tmp_path / "aoi.kml", catalog=stac_url(), **dates)
    geojson = search("s2-l2a", aoi=tmp_path / "aoi.geojson", catalog=stac_url(), **dates)
    assert kml.ids == geojson.ids and len(kml.ids) >= 3
    assert [s.aoi_cloud_pct for s in kml] == [s.aoi_cloud_pct for s in geojson]
