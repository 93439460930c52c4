"""Hostile and careless input to the service, in-process: every path field sandboxed, strict types, limits
at submission, bodies that would have been 500s, and the OGC details (paging, filters, outputs, OpenAPI).

Every bad request must be a 4xx whose problems name the field; nothing of another user may be read.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from _service_helpers import auth, write_pair
from geodeform.config import JobConfig
from geodeform.offsets import grid_shape
from geodeform.service.processes.presets import NOT_PATHS, PATH_FIELDS

OFFSETS = {"chip": 16, "step": 16, "search": 4}
MASK = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        }
    ],
}


@pytest.fixture(scope="module")
def service_settings():
    return {
        "max_body_bytes": 200_000,
        "max_nodes_per_pair": 5_000,
        "max_nodes_per_job": 20_000,
        "max_images": 8,
    }


@pytest.fixture(scope="module")
def svc(service):
    """Two users and an admin, a pair, a mask and traps: a symlink out, a file beside the data root."""
    ref, sec = write_pair(service.data_root)
    (service.data_root / "masks").mkdir()
    (service.data_root / "masks" / "glacier.geojson").write_text(json.dumps(MASK))
    (service.data_root / "escape.tif").symlink_to("/etc/hostname")
    (service.data_root.parent / "outside.tif").write_bytes(b"not yours")
    tokens = {name: service.add_user(name) for name in ("alice", "bob")}
    return service, tokens, {"reference": ref, "secondary": sec, **OFFSETS}


def _post(service, process: str, body: Any, token: str, **kw):
    return service.client.post(f"/processes/{process}/execution", json=body, headers=auth(token), **kw)


def _problems(r) -> dict[str, str]:
    assert r.status_code == 400, (r.status_code, r.text)
    doc = r.json()
    assert doc["status"] == 400 and doc["detail"]
    return {p["input"]: p["problem"] for p in doc["problems"]}


def _ice(ref: str, sec: str, **sections: Any) -> dict[str, Any]:
    return {
        "inputs": [{"path": ref, "date": "2020-01-06"}, {"path": sec, "date": "2020-02-05"}],
        "matching": {"chip_size": 16, "step": 16},
        **sections,
    }


# --- one resolver for every path field --------------------------------------------------------------------

HOSTILE = [
    ("/etc/passwd", "absolute"),
    ("../outside.tif", "'..'"),
    ("masks/../../outside.tif", "'..'"),
    ("escape.tif", "symlink"),
    ("x" * 300 + ".tif", "longer than 255"),
    ("a/" * 600 + "b.tif", "longer than 1024"),
    ("/vsicurl/https://example.com/a.tif", "GDAL connection string"),
    ("NETCDF:velocity.nc:vx", "GDAL connection string"),
    ("file:///etc/passwd", "URL"),
    ("https://example.com/mask.geojson", "URL"),
    ("missing.geojson", "no file"),
    ("masks\x00.geojson", "control characters"),
    ("jobs/not-a-job/velocity.tif", "no successful job"),
    ("uploads/nothing.tif", "no file"),
]


@pytest.mark.parametrize("field", ["masks.glacier", "masks.stable", "matching.reference_velocity", "dem"])
@pytest.mark.parametrize(("value", "words"), HOSTILE)
def test_every_path_field_is_confined_and_named(svc, field, value, words):
    service, tokens, inputs = svc
    section, _, key = field.rpartition(".")
    job = _ice(inputs["reference"], inputs["secondary"])
    if section:
        job[section] = {**job.get(section, {}), key: value}
    else:
        job[key] = value
    problems = _problems(_post(service, "ice", {"inputs": job}, tokens["alice"]))
    assert words in problems[field], problems
    assert str(service.data_root) not in json.dumps(problems)  # no server folder in the answer


@pytest.mark.parametrize(("value", "words"), HOSTILE[:9])
def test_image_and_aoi_paths_are_confined(svc, value, words):
    service, tokens, inputs = svc
    r = _post(service, "offsets", {"inputs": {**inputs, "reference": value}}, tokens["alice"])
    assert words in _problems(r)["reference"] or "scheme" in _problems(r)["reference"]
    search = {"start": "2020-01-01", "end": "2020-02-01", "catalog": "scenes", "aoi": {"geojson": value}}
    problems = _problems(_post(service, "ice", {"inputs": {"search": search}}, tokens["alice"]))
    assert "search.aoi.geojson" in problems


def test_every_string_field_of_a_job_config_is_classified():
    """A new path field added to JobConfig must be added to PATH_FIELDS (or to NOT_PATHS if it is not one),
    or it would skip the resolver."""
    schema = JobConfig.model_json_schema()
    defs = schema["$defs"]
    found: set[str] = set()

    def walk(node: dict, name: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        for alt in node.get("anyOf", []):
            walk(alt, name)
        plain = node.get("format") not in ("date", "date-time") and "enum" not in node
        if node.get("type") == "string" and plain:
            found.add(name)
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{name}.{key}" if name else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{name}.*")
        for sub in node.get("prefixItems", []):
            walk(sub, f"{name}.*")

    walk(schema, "")
    unclassified = found - set(PATH_FIELDS) - NOT_PATHS
    assert not unclassified, f"classify these fields in service/processes/presets.py: {unclassified}"


def test_a_mask_relative_to_the_data_root_is_accepted(svc):
    service, tokens, inputs = svc
    job = _ice(inputs["reference"], inputs["secondary"], masks={"glacier": "masks/glacier.geojson"})
    r = _post(service, "ice", {"inputs": job}, tokens["alice"])
    assert r.status_code == 201, r.text
    assert service.client.delete(r.headers["Location"], headers=auth(tokens["alice"])).status_code == 200


def test_another_users_job_outputs_and_uploads_cannot_be_read(svc):
    service, tokens, inputs = svc
    doc = service.run("offsets", inputs, tokens["bob"])
    assert doc["status"] == "successful", doc
    bobs = f"jobs/{doc['jobID']}/offsets.tif"
    r = _post(service, "offsets", {"inputs": {**inputs, "reference": bobs}}, tokens["alice"])
    assert "no successful job" in _problems(r)["reference"]
    # ... but bob may use his own job's output as the input of his next job
    r = _post(service, "offsets", {"inputs": {**inputs, "reference": bobs, "band": 1}}, tokens["bob"])
    assert r.status_code == 201, r.text
    service.client.delete(r.headers["Location"], headers=auth(tokens["bob"]))


# --- strict types, bodies that used to be 500s ------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"step": True}, "step"),
        ({"step": "16"}, "step"),
        ({"chip": 16.5}, "chip"),
        ({"band": False}, "band"),
        ({"dates": 20200106}, "dates"),
        ({"reference": 7}, "reference"),
    ],
)
def test_types_are_strict(svc, patch, field):
    service, tokens, inputs = svc
    problems = _problems(_post(service, "offsets", {"inputs": {**inputs, **patch}}, tokens["alice"]))
    assert field in problems, problems


def test_preset_types_are_strict(svc):
    service, tokens, inputs = svc
    job = _ice(inputs["reference"], inputs["secondary"], matching={"step": True, "chip_size": "16"})
    job["pairs"] = {"max_range": True}
    job["inputs"][0]["band"] = True  # a band is a number or a name, never a boolean
    problems = _problems(_post(service, "ice", {"inputs": job}, tokens["alice"]))
    assert {"matching.step", "matching.chip_size", "pairs.max_range"} <= set(problems), problems
    assert any(p.startswith("inputs.0.band") for p in problems), problems
    assert "not a boolean" in problems["matching.step"]


def test_deep_json_huge_numbers_and_nan_are_400_naming_the_place(svc):
    service, tokens, inputs = svc
    h = {**auth(tokens["alice"]), "Content-Type": "application/json"}
    c = service.client
    deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = c.post("/processes/offsets/execution", content=deep, headers=h)
    assert r.status_code == 400 and "levels deep" in r.json()["detail"]
    huge = json.dumps({"inputs": {**inputs, "step": 0}}).replace('"step": 0', '"step": ' + "9" * 5000)
    r = c.post("/processes/offsets/execution", content=huge.encode(), headers=h)
    assert _problems(r)["inputs.step"].startswith("a number of 5000 characters")
    r = c.post("/processes/offsets/execution", content=b'{"inputs": {"step": NaN}}', headers=h)
    assert "inputs.step" in _problems(r)
    r = c.post("/processes/offsets/execution", content=b'{"inputs": {"step": 1e999}}', headers=h)
    assert "out of range" in _problems(r)["inputs.step"]
    r = c.post("/processes/offsets/execution", content=b"\xff\xfe", headers=h)
    assert r.status_code == 400


def test_overlong_names_anywhere_are_4xx(svc):
    service, tokens, inputs = svc
    c, a = service.client, auth(tokens["alice"])
    long = "x" * 300
    assert _problems(_post(service, "offsets", {"inputs": {**inputs, "reference": long}}, tokens["alice"]))
    for path in (f"/jobs/{long}", f"/jobs/{long}/results", f"/processes/{long}", f"/uploads/{long}.tif"):
        r = c.get(path, headers=a)
        assert 400 <= r.status_code < 500, (path, r.status_code)
    doc = service.run("offsets", inputs, tokens["alice"])
    r = c.get(f"/jobs/{doc['jobID']}/results/{long}", headers=a)
    assert r.status_code == 404
    assert c.get("/conformance").status_code == 200  # the server is still there


# --- limits at submission ---------------------------------------------------------------------------------


def test_more_nodes_than_the_limit_is_refused_at_submission(svc):
    service, tokens, inputs = svc
    problems = _problems(_post(service, "offsets", {"inputs": {**inputs, "step": 1}}, tokens["alice"]))
    assert "max_nodes_per_pair" in problems["step"] and "5,000" in problems["step"]
    job = _ice(inputs["reference"], inputs["secondary"], matching={"chip_size": 16, "step": 1})
    problems = _problems(_post(service, "ice", {"inputs": job}, tokens["alice"]))
    assert "max_nodes_per_pair" in problems["matching.step"]


def _bbox(area_km2: float) -> list[float]:
    """A square lon/lat box on the equator of this area (111.32 x 110.57 km per degree there)."""
    side = (area_km2 / (111.32 * 110.57)) ** 0.5
    return [10.0, -side / 2, 10.0 + side, side / 2]


def _search_problems(service, token: str, aoi: dict[str, Any], **search: Any) -> dict[str, str]:
    """The problems of an ``ice`` search job; the unknown field ``colour`` keeps it a 400 (no job queued),
    the size problems are listed beside it."""
    dates = {"start": "2023-06-01", "end": "2023-07-01"}
    job = {"search": {**dates, "aoi": aoi, **search}, "matching": {"chip_size": 16, "step": 16}}
    problems = _problems(_post(service, "ice", {"inputs": {**job, "colour": "red"}}, token))
    assert "colour" in problems
    return problems


def test_preset_image_and_area_limits_hold_at_the_limit_and_refuse_one_over(svc):
    service, tokens, inputs = svc
    token = tokens["alice"]
    small = {"bbox": _bbox(1.0)}
    assert "search.max_images" not in _search_problems(service, token, small, max_images=8)
    problems = _search_problems(service, token, small, max_images=9)
    assert problems["search.max_images"] == "at most 8 per job"
    assert "search.aoi.bbox" not in _search_problems(service, token, {"bbox": _bbox(49_900.0)})
    problems = _search_problems(service, token, {"bbox": _bbox(50_100.0)})
    assert problems["search.aoi.bbox"] == "50100 km²; at most 50000 km² per job"
    ref, sec = inputs["reference"], inputs["secondary"]
    for n, refused in ((8, False), (9, True)):
        local = [{"path": (ref, sec)[i % 2], "date": f"2020-0{1 + i % 9}-{10 + i}"} for i in range(n)]
        job = {"inputs": local, "matching": {"chip_size": 16, "step": 16}, "colour": "red"}
        problems = _problems(_post(service, "ice", {"inputs": job}, token))
        assert ("inputs" in problems) is refused, problems
    assert problems["inputs"] == "9 images; at most 8 per job"


def _side_over(chip: int = 16, step: int = 16) -> int:
    """The smallest square image (px) whose matcher grid exceeds 5,000 nodes (the module's limit)."""
    side = chip
    while grid_shape((side, side), chip, step)[0] ** 2 <= 5_000:
        side += 1
    return side


def test_preset_search_nodes_use_the_collection_resolution_at_the_limit(svc):
    # An AOI of A km² is 1000 sqrt(A) / resolution pixels a side: 10 m for Sentinel-2, 30 m for Landsat, or
    # the search's own resolution. One pixel over the node limit is refused, one under is not.
    service, tokens, _ = svc
    token = tokens["alice"]
    over = _side_over()

    def nodes_refused(side: int, res: float, **search: Any) -> bool:
        area = ((side + 0.5) * res / 1000.0) ** 2
        problems = _search_problems(service, token, {"bbox": _bbox(area)}, **search)
        assert "search.aoi.bbox" not in problems
        return "max_nodes_per_pair" in problems.get("matching.step", "")

    assert nodes_refused(over, 10.0) and not nodes_refused(over - 1, 10.0)
    landsat = {"collection": "landsat-c2-l2"}
    assert nodes_refused(over, 30.0, **landsat) and not nodes_refused(over - 1, 30.0, **landsat)
    assert nodes_refused(over, 20.0, resolution=20.0) and not nodes_refused(over - 1, 20.0, resolution=20.0)
    # an MGRS tile is 10,980 px a side; an AOI of unknown size (a GeoJSON) is not sized at submission
    problems = _search_problems(service, token, {"tiles": ["33UUP"]})
    assert "max_nodes_per_pair" in problems["matching.step"]
    assert "matching.step" not in _search_problems(service, token, {"geojson": "masks/glacier.geojson"})


def test_preset_job_node_limit_counts_the_pairs_of_the_network(svc):
    # chip 32, step 1 on the 96 px test images: 65 x 65 = 4,225 nodes per pair, under the 5,000 per pair;
    # one pair is within the 20,000 per job, a network of several pairs is not.
    service, tokens, inputs = svc
    ref, sec = inputs["reference"], inputs["secondary"]
    matching = {"chip_size": 32, "step": 1}
    for n, refused in ((2, False), (5, True)):
        local = [{"path": (ref, sec)[i % 2], "date": f"2020-0{1 + i}-06"} for i in range(n)]
        job = {"inputs": local, "matching": matching, "colour": "red"}
        problems = _problems(_post(service, "ice", {"inputs": job}, tokens["alice"]))
        assert ("matching.step" in problems) is refused, problems
    assert "max_nodes_per_job" in problems["matching.step"] and "x 4,225 nodes" in problems["matching.step"]


# --- OGC details ------------------------------------------------------------------------------------------


def test_outputs_selection_is_honoured(svc):
    service, tokens, inputs = svc
    c, a = service.client, auth(tokens["alice"])
    doc = service.run("offsets", inputs, tokens["alice"], outputs={"netcdf": {}})
    assert doc["status"] == "successful", doc
    res = c.get(f"/jobs/{doc['jobID']}/results", headers=a).json()
    assert set(res) == {"netcdf"}
    assert c.get(f"/jobs/{doc['jobID']}/results/cog", headers=a).status_code == 404
    bad = {"inputs": inputs, "outputs": {"nope": {}, "cog": {"transmissionMode": "value"}}, "response": "raw"}
    problems = _problems(_post(service, "offsets", bad, tokens["alice"]))
    assert {"outputs.nope", "outputs.cog.transmissionMode", "response"} <= set(problems)
    problems = _problems(_post(service, "offsets", {"inputs": inputs, "colour": 1}, tokens["alice"]))
    assert "colour" in problems


def test_outputs_are_described_with_their_media_type(svc):
    desc = svc[0].client.get("/processes/offsets").json()
    assert desc["outputs"]["netcdf"]["schema"]["contentMediaType"] == "application/x-netcdf"
    ice = svc[0].client.get("/processes/ice").json()
    assert ice["outputs"]["report"]["schema"]["contentMediaType"] == "text/html"


def test_process_list_is_paged(svc):
    c = svc[0].client
    first = c.get("/processes?limit=2").json()
    assert len(first["processes"]) == 2
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    second = c.get(nxt).json()
    assert not {p["id"] for p in first["processes"]} & {p["id"] for p in second["processes"]}
    assert c.get("/processes?limit=0").status_code == 400


def test_job_list_filters_by_datetime_and_duration(svc):
    service, tokens, inputs = svc
    c, a = service.client, auth(tokens["alice"])
    doc = service.run("offsets", inputs, tokens["alice"])
    created = doc["created"]
    ids = lambda q: {j["jobID"] for j in c.get(f"/jobs?limit=1000&{q}", headers=a).json()["jobs"]}  # noqa: E731
    assert doc["jobID"] in ids(f"datetime={created}/..")
    assert doc["jobID"] not in ids("datetime=../2000-01-01T00:00:00Z")
    assert doc["jobID"] in ids("minDuration=0")
    assert doc["jobID"] not in ids("minDuration=100000")
    assert doc["jobID"] in ids("maxDuration=100000")
    for bad in ("datetime=yesterday", "datetime=2030-01-01T00:00:00Z/2020-01-01T00:00:00Z", "minDuration=-1"):
        assert c.get(f"/jobs?{bad}", headers=a).status_code == 400, bad
    assert c.get("/jobs?minDuration=5&maxDuration=1", headers=a).status_code == 400


def test_conformance_claims_what_holds(svc):
    c = svc[0].client
    conf = set(c.get("/conformance").json()["conformsTo"])
    assert not any(x.endswith("/html") for x in conf)
    assert {"oas30", "job-list", "dismiss", "callback"} <= {x.rsplit("/", 1)[-1] for x in conf}


def test_openapi_is_3_0_with_the_responses_that_happen(svc):
    from openapi_spec_validator import validate

    doc = svc[0].client.get("/openapi.json").json()
    assert doc["openapi"] == "3.0.3"
    validate(doc)
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    text = json.dumps(doc)
    assert '"422"' not in text and "HTTPValidationError" not in text
    execute = doc["paths"]["/processes/{processId}/execution"]["post"]
    assert {"201", "400", "401", "404", "413", "429"} <= set(execute["responses"])
    assert execute["responses"]["201"]["links"]["GetStatus"]["operationId"] == "getStatus"
    assert "401" not in doc["paths"]["/processes"]["get"]["responses"]  # public
    status = doc["paths"]["/jobs/{jobId}"]["get"]
    assert {"401", "404"} <= set(status["responses"]) and status["security"] == [{"bearer": []}]


def test_api_page_and_landing_work_offline(svc):
    c = svc[0].client
    page = c.get("/api.html")
    assert page.status_code == 200 and "http" not in page.text  # no CDN: relative URLs only
    for asset in ("api/static/swagger-ui-bundle.js", "api/static/swagger-ui.css", "api/static/api.js"):
        r = c.get("/" + asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert c.get("/api/static/../app.py").status_code == 404
    landing = c.get("/").json()
    desc = next(link for link in landing["links"] if link["rel"] == "service-desc")
    assert desc["type"].endswith("version=3.0")


def test_security_headers_on_every_response(svc):
    c = svc[0].client
    for path in ("/", "/map", "/nowhere", "/api.html"):
        h = c.get(path).headers
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert "default-src 'self'" in h["content-security-policy"] and h["referrer-policy"] == "no-referrer"


def test_account_shows_limits_and_usage(svc):
    service, tokens, _ = svc
    doc = service.client.get("/account", headers=auth(tokens["alice"])).json()
    assert doc["name"] == "alice" and doc["limits"]["max_nodes_per_pair"] == 5_000
    assert doc["usage"]["disk_bytes"] >= 0 and doc["disk_left_bytes"] <= doc["limits"]["max_disk_bytes"]
    assert service.client.get("/account").status_code == 401


def test_a_job_without_dates_says_why_there_are_no_velocities(svc):
    service, tokens, inputs = svc
    for name in ("undated_a.tif", "undated_b.tif"):
        src = service.data_root / (inputs["reference"] if name.endswith("a.tif") else inputs["secondary"])
        import rasterio

        with rasterio.open(src) as s:
            profile, data = s.profile, s.read(1)
        with rasterio.open(service.data_root / name, "w", **profile) as dst:
            dst.write(data, 1)
    doc = service.run(
        "offsets", {**OFFSETS, "reference": "undated_a.tif", "secondary": "undated_b.tif"}, tokens["alice"]
    )
    assert doc["status"] == "successful"
    assert "no velocities" in doc["message"] and "'dates' input" in doc["message"]
    assert "--dates" not in doc["message"]
