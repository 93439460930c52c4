"""The service's processes in-process (``geodeform.service.processes``): validation, descriptions, limits,
the preparation of a job's inputs and the runners themselves on tiny real GeoTIFFs, without a worker.

The two preset jobs are marked slow (whole jobs, seconds each); the others are the fast tier. All are
the selection of the mutation run of ``service/processes/*.py``
(``scripts/mutation/processes.toml``): every function of the package is reached here in the test's own
process (the worker runs jobs in forked processes, which a mutation tool cannot see into), and the
runners' products are checked against the shift imposed on a real texture.
"""

from __future__ import annotations

import functools
import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field
from rasterio.transform import from_origin

from _imposed import fourier_shift
from _service_helpers import resolve_host, route_to_local, tls_server
from geodeform.config import PRESETS, JobConfig
from geodeform.conventions import DAYS_PER_YEAR
from geodeform.errors import DataError, InvalidInputError
from geodeform.offsets import grid_shape
from geodeform.service.errors import Problem
from geodeform.service.paths import DataScope
from geodeform.service.processes import (
    InputContext,
    LimitExceeded,
    OffsetsInputs,
    RunContext,
    bbox_area_km2,
    build_registry,
    input_descriptions,
    offsets_process,
    validate_inputs,
)
from geodeform.service.processes.base import (
    ResultFile,
    file_outputs,
    result_files,
    strict_type_problems,
)
from geodeform.service.processes.checks import (
    catalog_problems,
    check_image,
    node_count,
    node_problems,
    path_problems,
    raster_shape,
    unwrap_href,
)
from geodeform.service.processes.presets import (
    _dates_network,
    _limit_estimate,
    _no_path,
    _resolve,
    _set,
    check_preset,
    path_fields,
    prepare_preset,
    preset_processes,
)
from geodeform.service.settings import ServiceSettings
from geodeform.workflows.preflight import ResourceEstimate

PIXEL = 30.0  # m
SIZE = 128  # px
SHIFT = (0.75, -1.25)  # (dy, dx) px imposed on the secondary: +row is south, so -22.5 m north, -37.5 m east
DT_DAYS = 30.0


def _write(path: Path, image: np.ndarray, date: str | None, *, count: int = 1) -> None:
    profile = dict(
        driver="GTiff",
        width=image.shape[1],
        height=image.shape[0],
        count=count,
        dtype="float32",
        crs="EPSG:32607",
        transform=from_origin(350000.0, 6700000.0, PIXEL, PIXEL),
    )
    with rasterio.open(path, "w", **profile) as dst:
        for band in range(1, count + 1):
            dst.write(image.astype(np.float32), band)
        if date:
            dst.update_tags(ACQUISITION_DATE=date)


@pytest.fixture(scope="module")
def root(tmp_path_factory, texture) -> Path:
    """A data root: a dated pair with a known shift, the same pair undated, a 2-band image, a mask, a
    folder (a stand-in .SAFE product), a catalogue folder and a file that is no raster."""
    root = tmp_path_factory.mktemp("processes") / "data"
    root.mkdir()
    ref = texture[:SIZE, :SIZE]
    sec = fourier_shift(texture[: 2 * SIZE, : 2 * SIZE], *SHIFT)[:SIZE, :SIZE]
    _write(root / "ref.tif", ref, "2020-01-06")
    _write(root / "sec.tif", sec, "2020-02-05")
    _write(root / "undated_a.tif", ref, None)
    _write(root / "undated_b.tif", sec, None)
    _write(root / "two_bands.tif", ref, "2020-01-06", count=2)
    (root / "masks").mkdir()
    (root / "masks" / "glacier.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (root / "S1A_IW_GRDH_20200106.SAFE").mkdir()
    (root / "scenes").mkdir()
    (root / "notes.txt").write_text("not a raster")
    return root


CATALOGUE = "earth-search.aws.element84.com"  # the host of the earth-search preset


@pytest.fixture
def public_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """:data:`CATALOGUE` resolves to a public address (no DNS at test time); other names as usual."""
    resolve_host(monkeypatch, CATALOGUE, "93.184.216.34")


def _settings(root: Path, **limits: Any) -> ServiceSettings:
    return ServiceSettings(
        db="sqlite:///unused.db", jobs_dir=root.parent / "jobs", data_roots=(root,), **limits
    ).resolved()


def _context(root: Path, **limits: Any) -> InputContext:
    return InputContext(_settings(root, **limits), DataScope((root.resolve(),)))


class _Progress:
    """A runner's progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None]] = []

    def __call__(self, percent: float, message: str | None = None) -> None:
        self.calls.append((percent, message))


def _run_context(root: Path, job_dir: Path, progress: _Progress, **limits: Any) -> RunContext:
    job_dir.mkdir(parents=True)
    scope = DataScope((root.resolve(),))
    mask = scope.mask({job_dir.resolve(): "."})
    return RunContext(job_dir, progress, _settings(root, **limits), public=mask)


# --- the offsets process: its runner on a real pair -----------------------------------------------------


def _offsets_run(root: Path, tmp: Path, limits: dict[str, Any] | None = None, **inputs: Any):
    process = offsets_process()
    context = _context(root, **(limits or {}))
    raw = {"chip": 32, "step": 16, "search": 4, **inputs}
    model, problems = validate_inputs(process, raw, context)
    assert problems == [] and model is not None
    prepared = process.prepare(model, context)
    progress = _Progress()
    job_dir = tmp / "job"
    outcome = process.runner(prepared, _run_context(root, job_dir, progress, **(limits or {})))
    return outcome, job_dir, progress


def test_the_offsets_runner_measures_the_imposed_shift_in_metres_and_velocities(root, tmp_path):
    outcome, job_dir, progress = _offsets_run(root, tmp_path, reference="ref.tif", secondary="sec.tif")
    assert outcome.message == "finished"
    assert outcome.files == {
        "netcdf": ResultFile("offsets.nc", "application/x-netcdf", "Offsets and velocities (NetCDF)"),
        "cog": ResultFile(
            "offsets.tif",
            "image/tiff; application=geotiff; profile=cloud-optimized",
            "Offsets and velocities (COG)",
        ),
        "stac": ResultFile("offsets.stac.json", "application/geo+json", "STAC item"),
        "report": ResultFile("report.json", "application/json", "Processing report"),
    }
    for f in outcome.files.values():
        assert (job_dir / f.name).is_file(), f.name
    dy, dx = SHIFT
    with xr.open_dataset(job_dir / "offsets.nc") as ds:
        east, north = float(ds["dx"].median()), float(ds["dy"].median())
        vx, vy = float(ds["vx"].median()), float(ds["vy"].median())
        info = ds["img_pair_info"].attrs
        assert ds.attrs["geodeform_search_range"] == 4 and ds.attrs["geodeform_prefilter"] == "None"
    assert info["reference_image"] == "ref.tif" and info["secondary_image"] == "sec.tif"
    assert east == pytest.approx(dx * PIXEL, abs=0.1 * PIXEL)
    assert north == pytest.approx(-dy * PIXEL, abs=0.1 * PIXEL)
    assert vx == pytest.approx(east / DT_DAYS * DAYS_PER_YEAR, rel=0.05)
    assert vy == pytest.approx(north / DT_DAYS * DAYS_PER_YEAR, rel=0.05)
    report = json.loads((job_dir / "report.json").read_text())
    assert report["process"] == "offsets" and report["velocities"] is True
    assert report["dates"] == "metadata / file names"
    assert report["inputs"]["chip"] == 32 and report["inputs"]["method"] == "ncc"
    assert report["inputs"]["reference"] == "ref.tif"  # the name the user gave, not the server path
    assert report["nodes"] == list(grid_shape((SIZE, SIZE), 32, 16))
    assert report["seconds"] >= 0 and report["finished"].endswith("+00:00")
    assert str(root) not in (job_dir / "report.json").read_text()
    # progress: reading at 1 %, matching between 5 and 90 %, writing at 90 %, never backwards
    assert progress.calls[0] == (1, "reading images")
    percents = [p for p, _ in progress.calls]
    assert percents == sorted(percents)
    matching = [(p, m) for p, m in progress.calls if m and m.startswith("matching")]
    assert matching and all(5 <= p <= 90 for p, _ in matching)
    assert matching[0] == (5, "matching")  # the start (no strip done yet)
    assert any(m is not None and m.startswith("matching 1/") for _, m in matching)
    assert matching[-1][0] == pytest.approx(90)
    assert progress.calls[-1] == (90, "writing products")
    assert sum(m == "writing products" for _, m in progress.calls) == 1


def test_the_offsets_runner_without_dates_says_there_are_no_velocities(root, tmp_path):
    outcome, job_dir, _ = _offsets_run(root, tmp_path, reference="undated_a.tif", secondary="undated_b.tif")
    assert outcome.message.startswith("finished: offsets in metres only, no velocities")
    assert "'dates' input" in outcome.message
    report = json.loads((job_dir / "report.json").read_text())
    assert report["velocities"] is False
    assert (
        report["dates"]
        == "unknown for undated_a.tif: velocities not computed (pass the 'dates' input REF,SEC)"
    )
    assert "--dates" not in (job_dir / "report.json").read_text()
    with xr.open_dataset(job_dir / "offsets.nc") as ds:
        assert float(ds["dx"].median()) == pytest.approx(SHIFT[1] * PIXEL, abs=0.1 * PIXEL)
        assert "vx" not in ds


def test_the_offsets_runner_takes_dates_from_the_input(root, tmp_path):
    outcome, job_dir, _ = _offsets_run(
        root,
        tmp_path,
        reference="undated_a.tif",
        secondary="undated_b.tif",
        dates="2020-01-06,2020-03-06",
        prefilter="highpass",
        search=3,
    )
    assert outcome.message == "finished"
    report = json.loads((job_dir / "report.json").read_text())
    assert report["velocities"] is True and report["inputs"]["dates"] == "2020-01-06,2020-03-06"
    assert report["dates"] == "the 'dates' input"
    with xr.open_dataset(job_dir / "offsets.nc") as ds:
        # the matching options given reach the matcher
        assert ds.attrs["geodeform_prefilter"] == "highpass" and ds.attrs["geodeform_search_range"] == 3
        assert float(ds["vx"].median()) == pytest.approx(SHIFT[1] * PIXEL / 60.0 * DAYS_PER_YEAR, rel=0.05)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_root(root, tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """The data root served over HTTPS on 127.0.0.1 with a certificate for :data:`CATALOGUE` from a test CA
    (``trustme``); (port, CA file)."""
    handler = functools.partial(_QuietFiles, directory=root)
    with tls_server(CATALOGUE, handler, tmp_path_factory.mktemp("ca")) as served:
        yield served


@pytest.fixture
def catalogue_url(https_root, public_catalogue, monkeypatch) -> str:
    """The base URL of the data root on :data:`CATALOGUE`: the check sees a public address, connections to it
    reach the local HTTPS server, whose CA is trusted."""
    port, ca_file = https_root
    route_to_local(monkeypatch, (CATALOGUE, "93.184.216.34"), ca_file)
    return f"https://{CATALOGUE}:{port}"


def test_the_offsets_runner_fetches_an_image_url_into_the_job(root, tmp_path, catalogue_url):
    url = f"{catalogue_url}/sec.tif"
    limits = {"catalogue_hosts": (CATALOGUE,)}
    outcome, job_dir, _ = _offsets_run(root, tmp_path, limits, reference="ref.tif", secondary=url)
    assert outcome.message == "finished"  # the dates of the fetched file's tags
    assert (job_dir / "inputs" / "secondary.tif").read_bytes() == (root / "sec.tif").read_bytes()
    assert list((job_dir / "inputs").iterdir()) == [job_dir / "inputs" / "secondary.tif"]
    with xr.open_dataset(job_dir / "offsets.nc") as ds:
        assert float(ds["dx"].median()) == pytest.approx(SHIFT[1] * PIXEL, abs=0.1 * PIXEL)
    assert json.loads((job_dir / "report.json").read_text())["inputs"]["secondary"] == url


def test_the_offsets_runner_stops_a_download_over_the_upload_limit(root, tmp_path, catalogue_url):
    size = (root / "sec.tif").stat().st_size
    limits = {"catalogue_hosts": (CATALOGUE,), "max_upload_bytes": size - 1}
    with pytest.raises(DataError, match=f"larger than the {size - 1} byte limit"):
        _offsets_run(root, tmp_path, limits, reference="ref.tif", secondary=f"{catalogue_url}/sec.tif")
    assert not (tmp_path / "job" / "inputs" / "secondary.tif").exists()
    limits = {"catalogue_hosts": (CATALOGUE,), "max_upload_bytes": size}
    outcome, at_dir, _ = _offsets_run(
        root, tmp_path / "at", limits, reference=f"{catalogue_url}/sec.tif", secondary="sec.tif"
    )
    assert outcome.message == "finished"
    assert (at_dir / "inputs" / "reference.tif").is_file()


def test_offsets_inputs_are_prepared_as_server_paths_and_urls_stay(root):
    context = _context(root, catalogue_hosts=("stac.example.org",))
    inputs = OffsetsInputs(reference="ref.tif", secondary="https://stac.example.org/b.tif")
    prepared = offsets_process().prepare(inputs, context)
    assert prepared.reference == str((root / "ref.tif").resolve())
    assert prepared.secondary == "https://stac.example.org/b.tif"
    assert inputs.reference == "ref.tif"  # a copy: the validated inputs stay as given


# --- the offsets process's checks -----------------------------------------------------------------------


def _check(root: Path, raw: dict[str, Any], **limits: Any) -> dict[str, str]:
    problems = offsets_process().check(raw, _context(root, **limits))
    return {p.input: p.problem for p in problems}


def test_offsets_checks_name_each_image_and_limit(root):
    assert _check(root, {"reference": "ref.tif", "secondary": {"href": "sec.tif"}}) == {}
    problems = _check(root, {"reference": "missing.tif", "secondary": "notes.txt"})
    assert "no file" in problems["reference"]
    assert problems["secondary"] == "not a readable raster (GeoTIFF expected)"
    # not strings or empty: the schema reports them, the checks say nothing
    assert _check(root, {"reference": 5, "secondary": ""}) == {}
    problems = _check(root, {"reference": "https://elsewhere.org/a.tif", "secondary": "sec.tif"})
    assert "elsewhere.org" in problems["reference"] and "secondary" not in problems


def test_offsets_band_check_reads_the_band_input(root):
    assert _check(root, {"reference": "two_bands.tif", "secondary": "two_bands.tif", "band": 2}) == {}
    problems = _check(root, {"reference": "two_bands.tif", "secondary": "ref.tif", "band": 2})
    assert problems == {"band": "secondary has 1 band(s), band 2 asked"}
    # a band that is not an integer is the schema's to report: the check reads band 1
    assert _check(root, {"reference": "ref.tif", "secondary": "ref.tif", "band": True}) == {}
    assert _check(root, {"reference": "ref.tif", "secondary": "ref.tif", "band": "2"}) == {}


def test_offsets_node_limit_counts_the_reference_grid_at_the_limit(root):
    nodes = int(np.prod(grid_shape((SIZE, SIZE), 16, 4)))
    raw = {"reference": "ref.tif", "secondary": "sec.tif", "chip": 16, "step": 4}
    assert _check(root, raw, max_nodes_per_pair=nodes) == {}
    problems = _check(root, raw, max_nodes_per_pair=nodes - 1)
    assert problems["step"].startswith(f"{nodes:,} matcher nodes per pair")
    # defaults when chip and step are not integers (the schema reports them): chip 32, step 16
    default = int(np.prod(grid_shape((SIZE, SIZE), 32, 16)))
    bad = {"reference": "ref.tif", "secondary": "sec.tif", "chip": "16", "step": 4.0}
    assert _check(root, bad, max_nodes_per_pair=default) == {}
    assert "step" in _check(root, bad, max_nodes_per_pair=default - 1)
    # a step below 1 is counted as 1 (the schema refuses it), not as a crash
    ones = int(np.prod(grid_shape((SIZE, SIZE), 16, 1)))
    assert _check(root, {**raw, "step": 0}, max_nodes_per_pair=ones) == {}
    assert "step" in _check(root, {**raw, "step": 0}, max_nodes_per_pair=ones - 1)
    # the secondary's size is not counted twice; an unreadable reference is not counted at all
    assert "step" not in _check(root, {**raw, "reference": "notes.txt"}, max_nodes_per_pair=1)


def test_offsets_pixel_limit_at_the_limit(root):
    raw = {"reference": "ref.tif", "secondary": "sec.tif"}
    assert _check(root, raw, max_pixels=SIZE * SIZE) == {}
    problems = _check(root, raw, max_pixels=SIZE * SIZE - 1)
    assert problems["reference"] == (
        f"image is {SIZE} x {SIZE} pixels, more than this server's limit of {SIZE * SIZE - 1:,} pixels per "
        "image (max_pixels_per_image); crop it"
    )
    assert "secondary" in problems
    # an image over the limit is not sized further
    assert "step" not in _check(root, raw, max_pixels=SIZE * SIZE - 1, max_nodes_per_pair=1)


def test_offsets_dates_out_of_order_are_a_problem(root):
    raw = {"reference": "ref.tif", "secondary": "sec.tif"}
    assert _check(root, {**raw, "dates": "2020-01-06,2020-02-05"}) == {}
    problems = _check(root, {**raw, "dates": "2020-02-05,2020-01-06"})
    assert "dates" in problems and "2020" in problems["dates"]
    assert _check(root, {**raw, "dates": "2020-02-30,2020-03-01"})["dates"]  # no such day
    assert _check(root, {**raw, "dates": "January"}) == {}  # the schema's pattern reports it


# --- shared checks --------------------------------------------------------------------------------------


def test_unwrap_href_takes_only_link_objects():
    assert unwrap_href({"href": "a.tif"}) == "a.tif"
    assert unwrap_href({"href": "a.tif", "type": "image/tiff", "rel": "x", "title": "t"}) == "a.tif"
    assert unwrap_href({"href": "a.tif", "colour": "red"}) == {"href": "a.tif", "colour": "red"}
    assert unwrap_href({"type": "image/tiff"}) == {"type": "image/tiff"}
    assert unwrap_href("a.tif") == "a.tif"


def test_check_image_resolves_files_and_checks_urls(root):
    context = _context(root, catalogue_hosts=("stac.example.org",))
    assert check_image("reference", "ref.tif", context) == ((root / "ref.tif").resolve(), [])
    path, problems = check_image("secondary", "../outside.tif", context)
    assert path is None and problems[0].input == "secondary" and "'..'" in problems[0].problem
    path, problems = check_image("reference", "https://other.org/a.tif", context)
    assert path is None and "other.org" in problems[0].problem


def test_raster_shape_band_and_pixels(root):
    settings = _settings(root)
    assert raster_shape("reference", root / "two_bands.tif", 2, settings) == ((SIZE, SIZE), [])
    shape, problems = raster_shape("reference", root / "two_bands.tif", 3, settings)
    assert shape == (SIZE, SIZE) and problems == [Problem("band", "reference has 2 band(s), band 3 asked")]
    assert raster_shape("x", root / "notes.txt", 1, settings) == (
        None,
        [Problem("x", "not a readable raster (GeoTIFF expected)")],
    )
    assert raster_shape("x", root / "nowhere.tif", 1, settings)[0] is None


def test_path_problems_name_the_field(root):
    context = _context(root)
    assert path_problems("dem", "ref.tif", context) == []
    assert path_problems("dem", 3, context) == []  # the schema reports a non-string
    (problem,) = path_problems("dem", "nowhere.tif", context)
    assert problem.input == "dem" and "no file" in problem.problem
    assert path_problems("dem", "masks", context, kind="folder") == []
    assert "no folder" in path_problems("dem", "ref.tif", context, kind="folder")[0].problem


def test_catalog_problems_presets_urls_and_folders(root, public_catalogue):
    context = _context(root, catalogue_hosts=(CATALOGUE,))
    assert catalog_problems("earth-search", context) == []
    assert catalog_problems("  Earth-Search ", context) == []  # a preset name, any case and blanks
    assert catalog_problems(None, context) == []  # the schema reports a non-string
    assert catalog_problems("scenes", context) == []  # a folder of STAC items in the data root
    (problem,) = catalog_problems("cdse", context)  # a preset whose host is not allowed here
    assert problem.input == "search.catalog" and "stac.dataspace.copernicus.eu" in problem.problem
    (problem,) = catalog_problems("nowhere", context)
    assert problem.input == "search.catalog" and "no folder" in problem.problem
    assert catalog_problems("ref.tif", context)[0].input == "search.catalog"  # a file is no catalogue
    (problem,) = catalog_problems("https://elsewhere.org/stac", context)
    assert problem.input == "search.catalog" and "elsewhere.org" in problem.problem


def test_node_count_and_limits_at_their_boundaries(root):
    assert node_count((SIZE, SIZE), 32, 16) == int(np.prod(grid_shape((SIZE, SIZE), 32, 16)))
    assert node_count((40, 100), 16, 8) == int(np.prod(grid_shape((40, 100), 16, 8)))
    assert node_count((10, 10), 32, 16) == 0  # no chip fits
    assert node_count((SIZE, SIZE), 32, 0) == 0
    settings = _settings(root, max_nodes_per_pair=100, max_nodes_per_job=1_000)
    assert node_problems("step", 100, 10, settings) == []
    (problem,) = node_problems("step", 101, 1, settings)
    assert problem == Problem(
        "step",
        "101 matcher nodes per pair, more than this server's limit of 100 (max_nodes_per_pair): raise the "
        "step or crop the images",
    )
    (problem,) = node_problems("matching.step", 100, 11, settings)
    assert problem == Problem(
        "matching.step",
        "11 pairs x 100 nodes = 1,100 matcher nodes, more than this server's limit of 1,000 per job "
        "(max_nodes_per_job): raise the step, crop the images or make fewer pairs",
    )
    assert node_problems("step", 1_000, 1, settings)[0].problem.startswith("1,000 matcher nodes per pair")
    assert node_problems("step", 10, 100, settings) == []
    assert node_problems("step", 10, 101, settings)[0].problem.startswith("101 pairs x 10 nodes = 1,010")


def test_bbox_area_is_that_of_the_degrees_at_the_mid_latitude():
    assert bbox_area_km2([10, -0.5, 11, 0.5]) == pytest.approx(111.32 * 110.57, rel=1e-9)
    # at 60° a degree of longitude is half as long; the order of the corners does not matter
    assert bbox_area_km2((11, 60.5, 10, 59.5)) == pytest.approx(
        111.32 * np.cos(np.radians(60)) * 110.57, rel=1e-9
    )
    assert bbox_area_km2(["10", "0", "12", "2"]) == pytest.approx(
        2 * 111.32 * np.cos(np.radians(1)) * 2 * 110.57, rel=1e-9
    )
    for bad in (
        None,
        [1, 2, 3],
        [0, 0, 1, float("nan")],
        [0, 0, float("inf"), 1],
        ["a", 0, 1, 1],
        [0, 0, 1e400, 1],
    ):
        assert bbox_area_km2(bad) is None, bad


# --- strict types and validation ------------------------------------------------------------------------


class _Nested(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 1


class _Sample(BaseModel):
    model_config = ConfigDict(extra="forbid", title="sample")
    count: int = Field(1, description="How many.")
    ratio: float = 0.5
    name: str | None = None
    pair: tuple[int, str] = (1, "a")
    values: list[float] = []
    nested: _Nested = _Nested()
    table: dict[str, int] = {}
    choice: bool = False
    anything: Any = None


def _types(value: dict[str, Any]) -> dict[str, str]:
    return {p.input: p.problem for p in strict_type_problems(value, _Sample.model_json_schema())}


def test_strict_types_refuse_what_lax_mode_would_convert():
    assert _types({"count": 3, "ratio": 2, "name": None, "choice": True, "anything": [1, "x"]}) == {}
    assert _types({"ratio": 2.5, "count": 4.0}) == {}  # an integral float is an integer
    assert _types({"count": True}) == {"count": "must be an integer, not a boolean"}
    assert _types({"count": 2.5}) == {"count": "must be an integer, not a number"}
    assert _types({"ratio": "0.5"}) == {"ratio": "must be a number, not a string"}
    assert _types({"name": 3}) == {"name": "must be a null or a string, not an integer"}
    assert _types({"choice": 1}) == {"choice": "must be a boolean, not an integer"}
    assert _types({"values": {"a": 1}}) == {"values": "must be an array, not an object"}
    assert _types({"nested": []}) == {"nested": "must be an object, not an array"}
    assert _types({"count": object()}) == {"count": "must be an integer, not a unknown"}


def test_strict_types_name_the_place_inside_arrays_objects_and_refs():
    assert _types({"values": [1.0, 2, "3"]}) == {"values.2": "must be a number, not a string"}
    assert _types({"pair": ["1", 2]}) == {
        "pair.0": "must be an integer, not a string",
        "pair.1": "must be a string, not an integer",
    }
    assert _types({"pair": [1, "a", 3]}) == {}  # items past the prefix are pydantic's
    assert _types({"nested": {"size": "big"}}) == {"nested.size": "must be an integer, not a string"}
    assert _types({"nested": {"colour": 1}}) == {}  # unknown fields are pydantic's
    assert _types({"table": {"a": 1, "b": True}}) == {"table.b": "must be an integer, not a boolean"}
    assert strict_type_problems([1, "x"], {"type": "array", "items": {"type": "integer"}}) == [
        Problem("1", "must be an integer, not a string")
    ]
    assert strict_type_problems("x", {"type": "integer"}) == [
        Problem("inputs", "must be an integer, not a string")
    ]
    # enums and constants say their types; a number enum takes integers
    assert strict_type_problems(1, {"enum": ["a", "b"]}) == [
        Problem("inputs", "must be a string, not an integer")
    ]
    assert strict_type_problems(2, {"enum": [1.5, 2.5]}) == []
    assert strict_type_problems(2.5, {"enum": [1, 2]}) == []  # a number: pydantic says it is not one of them
    assert strict_type_problems(2.5, {"enum": ["a", 2]}) == []
    assert strict_type_problems(True, {"enum": [1, 2]}) == [
        Problem("inputs", "must be an integer or a number, not a boolean")
    ]
    assert strict_type_problems("x", {"const": 3}) == [
        Problem("inputs", "must be an integer or a number, not a string")
    ]
    assert strict_type_problems("x", {"description": "anything"}) == []


def test_strict_types_follow_refs_and_alternatives():
    defs = {"Size": {"type": "integer"}, "Name": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Size"}]}}
    schema = {"$ref": "#/$defs/Name", "$defs": defs}
    assert strict_type_problems("a", schema) == [] and strict_type_problems(3, schema) == []
    assert strict_type_problems(True, schema) == [
        Problem("inputs", "must be an integer or a string, not a boolean")
    ]
    assert strict_type_problems(None, {"oneOf": [{"type": "string"}, {"type": "null"}]}) == []
    # an unknown $ref constrains nothing
    assert strict_type_problems(True, {"$ref": "#/$defs/Missing"}, {}) == []
    assert strict_type_problems(True, {"$ref": "elsewhere.json#/Size"}, {}) == []
    # the object branch of an alternative is the one whose fields are checked
    schema = {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"href": {"type": "string"}}}]}
    assert strict_type_problems({"href": 1}, schema, loc="reference") == [
        Problem("reference.href", "must be a string, not an integer")
    ]


def test_validate_inputs_lists_one_problem_per_input_types_first(root):
    process = offsets_process()
    context = _context(root)
    assert validate_inputs(process, ["not", "an", "object"], context) == (
        None,
        [Problem("inputs", "must be a JSON object")],
    )
    model, problems = validate_inputs(
        process, {"reference": "ref.tif", "secondary": "missing.tif", "chip": "32", "step": 0}, context
    )
    found = {p.input: p.problem for p in problems}
    assert model is None and len(problems) == len(found) == 3
    assert found["chip"] == "must be an integer, not a string"  # the strict type, not pydantic's words
    assert "no file" in found["secondary"] and "greater than or equal to 1" in found["step"]
    model, problems = validate_inputs(process, {"reference": "ref.tif", "secondary": "sec.tif"}, context)
    assert problems == [] and isinstance(model, OffsetsInputs) and model.chip == 32
    model, problems = validate_inputs(process, {"reference": "ref.tif"}, context)
    assert model is None and [p.input for p in problems] == ["secondary"]
    model, problems = validate_inputs(
        process, {"reference": "ref.tif", "secondary": "sec.tif", "x": 1}, context
    )
    assert model is None and [p.input for p in problems] == ["x"]


# --- descriptions and the registry ----------------------------------------------------------------------


def test_input_descriptions_of_the_offsets_process():
    desc = input_descriptions(OffsetsInputs)
    assert list(desc) == list(OffsetsInputs.model_fields)
    assert desc["reference"]["minOccurs"] == 1 and desc["secondary"]["minOccurs"] == 1
    assert desc["chip"] == {
        "title": "Chip",
        "description": "Chip (template) size, reference pixels.",
        "schema": {"type": "integer", "default": 32, "minimum": 8, "maximum": 512},
        "minOccurs": 0,
        "maxOccurs": 1,
    }
    assert desc["reference"]["description"].startswith("Image: a path relative to a data root")
    assert "description" not in desc["reference"]["schema"] and "title" not in desc["reference"]["schema"]
    assert desc["reference"]["schema"]["anyOf"][0] == {"type": "string", "minLength": 1, "maxLength": 1024}


def test_input_descriptions_inline_refs_keep_local_keys_and_stop_on_cycles():
    class Leaf(BaseModel):
        size: int = Field(1, description="Leaf size.")

    class Node(BaseModel):
        child: Node | None = None

    class Tree(BaseModel):
        leaf: Leaf = Field(default_factory=Leaf, description="The leaf.")
        leaves: list[Leaf] = []
        child: Node | None = None

    desc = input_descriptions(Tree)
    assert "$ref" not in json.dumps(desc)
    assert desc["leaf"]["description"] == "The leaf."  # the field's own words over the referenced model's
    assert desc["leaf"]["schema"]["properties"]["size"]["description"] == "Leaf size."
    assert desc["leaves"]["schema"]["items"]["properties"]["size"]["default"] == 1
    assert desc["leaves"]["description"] == ""  # none given
    assert desc["child"]["title"] == "child"  # pydantic gives an optional model no title: its name
    # a self-reference is inlined to a bounded depth, then left empty
    text = json.dumps(desc["child"])
    assert text.count('"child"') >= 3 and len(text) < 200_000

    # no properties at all: nothing to describe; a property without a title is titled by its name
    class Empty(BaseModel):
        pass

    assert input_descriptions(Empty) == {}
    schema_title = input_descriptions(OffsetsInputs)["band"]["title"]
    assert schema_title == "Band"


def test_file_outputs_and_result_files():
    outputs = file_outputs(a=("A file", "text/plain"), b=("B file", "image/png"))
    assert outputs["a"] == {
        "title": "A file",
        "schema": {"type": "string", "contentEncoding": "binary", "contentMediaType": "text/plain"},
    }
    assert result_files(outputs, {"b": "b.png"}) == {"b": ResultFile("b.png", "image/png", "B file")}


def test_the_registry_offers_offsets_and_every_preset():
    registry = build_registry()
    assert list(registry) == ["offsets", *PRESETS]
    assert all(p.id == key for key, p in registry.items())
    offsets = registry["offsets"]
    assert offsets.inputs_model is OffsetsInputs and offsets.keywords == ("offset tracking", "velocity")
    assert set(offsets.outputs) == {"netcdf", "cog", "stac", "report"}
    assert offsets.title == "Offsets of one image pair" and "+x east, +y north" in offsets.description
    for process in preset_processes():
        preset = process.id
        assert process.keywords == ("workflow", preset)
        assert process.inputs_model.__name__ == f"{preset.capitalize()}Inputs"
        assert process.description.endswith(
            f"unspecified fields take the preset's values: {json.dumps(PRESETS[preset])}."
        )
        expected = {"offsets_nc", "offsets_tif", "trace", "profiles", "slip_plot", "catalog", "report"}
        if preset != "quake":
            expected = {"velocity_nc", "velocity_tif", "timeseries", "catalog", "report"}
        assert set(process.outputs) == expected
        assert process.title and process.title != f"{preset} preset"
        assert process.prepare is prepare_preset
    ice = registry["ice"]
    assert ice.title == "Glacier flow (ice preset)"
    assert "pairs -> offsets -> corrections -> time series" in ice.description
    assert registry["sar"].description.startswith("The `sar` workflow preset")
    assert registry["quake"].description.startswith("The `quake` workflow preset")


def test_preset_inputs_lay_the_preset_under_the_request():
    model = build_registry()["slide"].inputs_model
    job = model.model_validate({"inputs": [{"path": "a_20200101.tif"}, {"path": "b_20200301.tif"}]})
    assert job.preset == "slide" and job.name == "slide-job"
    assert job.matching.step == PRESETS["slide"]["matching"]["step"]
    job = model.model_validate(
        {"name": "mine", "preset": "ice", "matching": {"step": 4}, "inputs": job.inputs}
    )
    assert job.preset == "slide" and job.name == "mine" and job.matching.step == 4
    assert job.matching.chip_size == PRESETS["slide"]["matching"]["chip_size"]
    with pytest.raises(ValueError):
        model.model_validate("not a mapping")


# --- presets: path fields, preparation, limits ----------------------------------------------------------


def test_path_fields_walk_lists_and_sections():
    doc = {
        "inputs": [{"path": "a.tif", "mask": "none"}, {"path": "b.tif"}, "c.tif"],
        "masks": {"water": "w.tif"},
    }
    assert list(path_fields(doc, "inputs.*.path")) == [("inputs.0.path", "a.tif"), ("inputs.1.path", "b.tif")]
    assert list(path_fields(doc, "inputs.*.mask")) == [("inputs.0.mask", "none")]
    assert list(path_fields(doc, "masks.water")) == [("masks.water", "w.tif")]
    assert list(path_fields(doc, "masks.glacier")) == []
    assert list(path_fields({"inputs": "x"}, "inputs.*.path")) == []
    assert list(path_fields({"masks": None}, "masks.water")) == []
    assert list(path_fields(doc, "inputs", "top.")) == [("top.inputs", doc["inputs"])]
    _set(doc, "inputs.1.path", "/data/b.tif")
    _set(doc, "masks.water", "/data/w.tif")
    _set(doc, "inputs.2", "/data/c.tif")
    assert doc["inputs"][1]["path"] == "/data/b.tif" and doc["masks"]["water"] == "/data/w.tif"
    assert doc["inputs"][2] == "/data/c.tif"


def test_mask_keywords_are_not_paths():
    for word in ("none", "SCL", " ndwi ", "None"):
        assert _no_path(word), word
    for value in ("none.tif", "scl/mask.tif", "", None, 0):
        assert not _no_path(value), value


def test_resolve_file_or_folder(root):
    context = _context(root)
    assert _resolve("ref.tif", context, "file_or_folder") == (root / "ref.tif").resolve()
    safe = "S1A_IW_GRDH_20200106.SAFE"
    assert _resolve(safe, context, "file_or_folder") == (root / safe).resolve()
    assert _resolve("masks", context, "folder") == (root / "masks").resolve()
    assert (
        _resolve("masks/glacier.geojson", context, "file") == (root / "masks" / "glacier.geojson").resolve()
    )
    with pytest.raises(InvalidInputError, match="no file"):
        _resolve("nothing.tif", context, "file_or_folder")  # the file's message when neither exists
    with pytest.raises(InvalidInputError, match="no file"):
        _resolve(safe, context, "file")
    with pytest.raises(InvalidInputError, match="no folder"):
        _resolve("ref.tif", context, "folder")


def _ice(**sections: Any) -> dict[str, Any]:
    return {
        "inputs": [{"path": "ref.tif", "date": "2020-01-06"}, {"path": "sec.tif", "date": "2020-02-05"}],
        "matching": {"chip_size": 32, "step": 16},
        **sections,
    }


def _preset_check(root: Path, raw: dict[str, Any], preset: str = "ice", **limits: Any) -> dict[str, str]:
    problems = check_preset(raw, _context(root, **limits), PRESETS[preset])
    return {p.input: p.problem for p in problems}


def test_preset_checks_every_path_field(root):
    assert _preset_check(root, _ice(masks={"glacier": "masks/glacier.geojson", "water": "scl"})) == {}
    raw = _ice(masks={"glacier": "nowhere.geojson", "stable": "none"}, dem="../dem.tif")
    raw["inputs"][1]["mask"] = "masks"  # a folder, not a file
    problems = _preset_check(root, raw)
    assert set(problems) == {"masks.glacier", "dem", "inputs.1.mask"}
    assert "no file" in problems["masks.glacier"] and "'..'" in problems["dem"]
    raw = _ice()
    raw["inputs"][0]["path"] = "S1A_IW_GRDH_20200106.SAFE"  # a folder is a product (SAR)
    raw["inputs"][1]["path"] = "gone.SAFE"
    problems = _preset_check(root, raw)
    assert list(problems) == ["inputs.1.path"] and "no file" in problems["inputs.1.path"]
    raw = _ice()
    raw["inputs"][1]["path"] = 7  # the schema reports it
    assert "inputs.1.path" not in _preset_check(root, raw)
    search = {
        "start": "2020-01-01",
        "end": "2020-03-01",
        "catalog": "nowhere",
        "aoi": {"bbox": [0, 0, 0.1, 0.1]},
    }
    assert "no folder" in _preset_check(root, {"search": search})["search.catalog"]
    assert _preset_check(root, {"search": {**search, "catalog": "scenes"}}) == {}


def test_preset_sizes_count_the_network_and_the_first_image(root):
    nodes = int(np.prod(grid_shape((SIZE, SIZE), 32, 16)))
    assert _preset_check(root, _ice(), max_nodes_per_pair=nodes, max_nodes_per_job=nodes) == {}
    problems = _preset_check(root, _ice(), max_nodes_per_pair=nodes - 1)
    assert problems["matching.step"].startswith(f"{nodes:,} matcher nodes per pair")
    three = _ice()
    three["inputs"].append({"path": "ref.tif", "date": "2020-03-06"})
    # ice pairs: 5-100 days, forward: 3 pairs of 3 dates
    assert _dates_network(three["inputs"], {"mode": "days", "min_range": 5, "max_range": 100}) == 3
    assert _preset_check(root, three, max_nodes_per_job=3 * nodes) == {}
    problems = _preset_check(root, three, max_nodes_per_job=3 * nodes - 1)
    assert problems["matching.step"].startswith(f"3 pairs x {nodes:,} nodes")
    # the request's pairs over the preset's: neighbours only, 2 pairs of the 3 dates
    neighbours = {**three, "pairs": {"mode": "acquisitions", "min_range": 1, "max_range": 1}}
    assert _preset_check(root, neighbours, max_nodes_per_job=2 * nodes) == {}
    assert "matching.step" in _preset_check(root, neighbours, max_nodes_per_job=2 * nodes - 1)
    # the preset's matching under the request's: slide's step 8 without a matching section
    slide = {"inputs": three["inputs"]}
    slide_nodes = int(np.prod(grid_shape((SIZE, SIZE), 32, 8)))
    assert _preset_check(root, slide, "slide", max_nodes_per_pair=slide_nodes) == {}
    assert "matching.step" in _preset_check(root, slide, "slide", max_nodes_per_pair=slide_nodes - 1)
    # images over the pixel limit are named, not sized
    problems = _preset_check(root, _ice(), max_pixels=SIZE * SIZE - 1)
    assert "inputs.0.path" in problems and "matching.step" not in problems
    # what the schema or the path check reports is not sized here
    assert _preset_check(root, _ice(matching={"chip_size": "32", "step": 16}), max_nodes_per_pair=1) == {}
    assert _preset_check(root, _ice(matching={"chip_size": 32, "step": 0}), max_nodes_per_pair=1) == {}
    missing = _ice()
    missing["inputs"][0]["path"] = "nowhere.tif"
    assert list(_preset_check(root, missing, max_nodes_per_pair=1)) == ["inputs.0.path"]
    assert _preset_check(root, {"inputs": []}, max_nodes_per_pair=1) == {}
    # a network of unknown size (no dates) counts as one pair
    undated = {
        "inputs": [{"path": "ref.tif"}, {"path": "sec.tif"}],
        "matching": {"chip_size": 32, "step": 16},
    }
    assert "matching.step" not in _preset_check(root, undated, max_nodes_per_job=nodes)
    problems = _preset_check(root, undated, max_nodes_per_job=nodes - 1)
    assert problems["matching.step"].startswith(f"1 pairs x {nodes:,} nodes")
    assert _preset_check(root, {"inputs": ["ref.tif"]}, max_nodes_per_pair=1) == {}


def test_preset_sizes_without_preset_defaults_use_the_config_defaults(root):
    # a preset whose defaults lack the matching and pairs sections: the config's chip 32, step 16
    nodes = int(np.prod(grid_shape((SIZE, SIZE), 32, 16)))
    raw = {"inputs": _ice()["inputs"]}
    context = _context(root, max_nodes_per_pair=nodes)
    assert check_preset(raw, context, {}) == []
    (problem,) = check_preset(raw, _context(root, max_nodes_per_pair=nodes - 1), {})
    assert problem.input == "matching.step" and problem.problem.startswith(f"{nodes:,} matcher nodes")


def test_dates_network_counts_pairs_or_says_unknown():
    inputs = [{"path": "a.tif", "date": f"2020-0{m}-01"} for m in (1, 2, 3, 4)]
    assert _dates_network(inputs, {"mode": "acquisitions", "min_range": 1, "max_range": 1}) == 3
    assert _dates_network(inputs, {"mode": "acquisitions", "min_range": 1, "max_range": 3}) == 6
    # unordered dates are sorted first
    assert _dates_network(inputs[::-1], {"mode": "acquisitions", "min_range": 1, "max_range": 1}) == 3
    assert _dates_network([{"path": "undated.tif"}], {}) is None
    assert _dates_network(inputs, {"mode": "days", "min_range": 500, "max_range": 600}) in (None, 0)


def test_preset_search_sizes(root):
    search = {"start": "2020-01-01", "end": "2020-03-01", "aoi": {"bbox": [0, 0, 0.01, 0.01]}}
    assert _preset_check(root, {"search": search}, max_images=5, max_area_km2=2.0) == {}
    problems = _preset_check(root, {"search": {**search, "max_images": 6}}, max_images=5)
    assert problems == {"search.max_images": "at most 5 per job"}
    assert _preset_check(root, {"search": {**search, "max_images": 5}}, max_images=5) == {}
    assert _preset_check(root, {"search": {**search, "max_images": True}}, max_images=0) == {}
    area = bbox_area_km2(search["aoi"]["bbox"])
    problems = _preset_check(root, {"search": search}, max_area_km2=area * 0.99)
    assert problems == {"search.aoi.bbox": f"{area:.0f} km²; at most {area * 0.99:g} km² per job"}
    assert _preset_check(root, {"search": {**search, "aoi": "bbox"}}) == {}
    # an MGRS tile is sized as 10,980 px a side; no tile, no size
    tiles = {"start": "2020-01-01", "end": "2020-03-01"}
    tile_nodes = int(np.prod(grid_shape((10_980, 10_980), 32, 16)))
    assert (
        _preset_check(root, {"search": {**tiles, "aoi": {"tiles": ["33UUP"]}}}, max_nodes_per_pair=tile_nodes)
        == {}
    )
    problems = _preset_check(
        root, {"search": {**tiles, "aoi": {"tiles": ["33UUP"]}}}, max_nodes_per_pair=tile_nodes - 1
    )
    assert problems["matching.step"].startswith(f"{tile_nodes:,} matcher nodes per pair")
    assert _preset_check(root, {"search": {**tiles, "aoi": {"tiles": []}}}, max_nodes_per_pair=0) == {}
    # a resolution that is not a positive number counts as a 0-pixel AOI; 0 or none: the collection's
    for res in (-10, "ten"):
        assert _preset_check(root, {"search": {**search, "resolution": res}}, max_nodes_per_pair=0) == {}
    for res in (0, None):
        problems = _preset_check(root, {"search": {**search, "resolution": res}}, max_nodes_per_pair=0)
        assert "matching.step" in problems


def test_prepare_preset_resolves_every_path_and_chooses_the_compute(root):
    process = build_registry()["ice"]
    context = _context(root)
    raw = _ice(masks={"glacier": "masks/glacier.geojson", "water": "SCL"}, dem="ref.tif")
    raw["inputs"][1]["mask"] = "none"
    raw["compute"] = {"cluster": "local", "threads": 8}
    model, problems = validate_inputs(process, raw, context)
    assert problems == [] and model is not None
    job = prepare_preset(model, context)
    assert isinstance(job, JobConfig) and job.preset == "ice"
    assert [i.path for i in job.inputs] == [str((root / n).resolve()) for n in ("ref.tif", "sec.tif")]
    assert job.masks.glacier == str((root / "masks" / "glacier.geojson").resolve())
    assert job.masks.water == "SCL" and job.inputs[1].mask == "none"
    assert job.dem == str((root / "ref.tif").resolve())
    assert job.compute.cluster == "sync" and job.compute.threads == 1  # the server's choice, not the user's
    assert model.inputs[0].path == "ref.tif"  # the validated inputs stay as given
    served = _context(root, compute={"cluster": "local", "workers": 2, "threads": 2})
    job = prepare_preset(model, served)
    assert job.compute.cluster == "local" and job.compute.workers == 2 and job.compute.threads == 2


def test_prepare_preset_resolves_a_catalogue_folder_not_a_preset_or_url(root, public_catalogue):
    process = build_registry()["ice"]
    context = _context(root, catalogue_hosts=(CATALOGUE,))
    search = {"start": "2020-01-01", "end": "2020-03-01", "aoi": {"bbox": [0, 0, 0.1, 0.1]}}
    for catalog, expected in (
        ("scenes", str((root / "scenes").resolve())),
        ("Earth-Search", "Earth-Search"),
        ("https://earth-search.aws.element84.com/v1", "https://earth-search.aws.element84.com/v1"),
    ):
        model, problems = validate_inputs(process, {"search": {**search, "catalog": catalog}}, context)
        assert problems == [], problems
        assert prepare_preset(model, context).search.catalog == expected


def test_prepare_preset_refuses_a_path_swapped_for_a_symlink(root, tmp_path):
    process = build_registry()["ice"]
    context = _context(root)
    (root / "swap.tif").write_bytes((root / "ref.tif").read_bytes())
    raw = _ice()
    raw["inputs"][0]["path"] = "swap.tif"
    model, problems = validate_inputs(process, raw, context)
    assert problems == []
    (root / "swap.tif").unlink()
    (root / "swap.tif").symlink_to(tmp_path)
    try:
        with pytest.raises(InvalidInputError, match="symlink"):
            prepare_preset(model, context)
    finally:
        (root / "swap.tif").unlink()


def _estimate(nodes_per_pair: int, pairs: int) -> ResourceEstimate:
    return ResourceEstimate(
        pairs=pairs, nodes_per_pair=nodes_per_pair, seconds=1.0, peak_memory_bytes=1, disk_bytes=1, workers=1
    )


def test_the_run_time_limit_at_its_boundaries(root):
    check = _limit_estimate(_settings(root, max_nodes_per_pair=100, max_nodes_per_job=1_000))
    check(_estimate(100, 10))
    with pytest.raises(LimitExceeded) as info:
        check(_estimate(101, 1))
    assert str(info.value) == (
        "101 matcher nodes per pair on the images found, more than this server's limit of 100 "
        "(max_nodes_per_pair): raise matching.step or make the AOI smaller"
    )
    with pytest.raises(LimitExceeded) as info:
        check(_estimate(100, 11))
    assert str(info.value) == (
        "11 pairs x 100 nodes = 1,100 matcher nodes, more than this server's limit of 1,000 per job "
        "(max_nodes_per_job): raise matching.step, make the AOI smaller or make fewer pairs"
    )


# --- a preset's runner on a tiny job --------------------------------------------------------------------


def _preset_run(root: Path, tmp: Path, preset: str, raw: dict[str, Any], **run_limits: Any):
    """Validate and prepare ``raw`` under the default limits, run it under ``run_limits`` (the server's
    limits may have been lowered since the submission)."""
    process = build_registry()[preset]
    context = _context(root)
    model, problems = validate_inputs(process, raw, context)
    assert problems == [] and model is not None, problems
    progress = _Progress()
    job_dir = tmp / "job"
    run = _run_context(root, job_dir, progress, **run_limits)
    outcome = process.runner(process.prepare(model, context), run)
    return outcome, job_dir, progress


@pytest.mark.slow  # a whole job (seconds)
def test_the_ice_runner_makes_the_velocity_products_of_the_imposed_shift(root, tmp_path):
    outcome, job_dir, progress = _preset_run(root, tmp_path, "ice", _ice(corrections={"enabled": False}))
    assert outcome.message == "finished"
    assert {"velocity_nc", "velocity_tif", "catalog", "report"} <= set(outcome.files)
    for key, f in outcome.files.items():
        assert (job_dir / f.name).is_file() and not Path(f.name).is_absolute(), key
        assert f.title == f"ice: {key}"
    assert outcome.files["velocity_nc"].media_type == "application/x-netcdf"
    assert outcome.files["report"].media_type == "text/html"
    with xr.open_dataset(job_dir / outcome.files["velocity_nc"].name) as ds:
        vx = float(ds["vx"].median())
    assert vx == pytest.approx(SHIFT[1] * PIXEL / DT_DAYS * DAYS_PER_YEAR, rel=0.1)
    # progress by stage: reading in 0-20 %, matching in 20-80 %, inversion 80-90 %, products 90-100 %
    spans = {"read": (0, 20), "match": (20, 80), "invert": (80, 90), "products": (90, 100)}
    seen = set()
    for percent, message in progress.calls:
        stage = message.split()[0]
        lo, hi = spans.get(stage, (0, 100))
        assert lo <= percent <= hi, (percent, message)
        done, total = map(int, message.split()[1].split("/"))
        assert percent == pytest.approx(lo + (hi - lo) * done / max(total, 1))
        seen.add(stage)
    assert {"read", "match", "products"} <= seen


@pytest.mark.slow  # a whole job (seconds)
def test_a_preset_job_over_the_node_limits_stops_before_matching(root, tmp_path):
    nodes = int(np.prod(grid_shape((SIZE, SIZE), 32, 16)))
    with pytest.raises(LimitExceeded, match="max_nodes_per_pair"):
        _preset_run(root, tmp_path / "a", "ice", _ice(), max_nodes_per_pair=nodes - 1)
    with pytest.raises(LimitExceeded, match="max_nodes_per_job"):
        _preset_run(root, tmp_path / "b", "ice", _ice(), max_nodes_per_job=nodes - 1)
    assert not list((tmp_path / "b" / "job").glob("pairs/*.nc"))  # stopped before any pair was matched
