"""The OGC API – Processes service: the app in-process (TestClient), jobs run by a real worker in-process.

OWSLib and the generated ``ogc-api-processes-client`` (neither written here) talk to it over real HTTP
(uvicorn in a thread); jobs run the offsets chain on real GeoTIFFs. What needs processes (a running worker
dismissed, the console script, server-side Dask compute) shares one real ``geodeform serve`` (started by the
console script) and is marked slow.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from _service_helpers import (
    PG_DSN,
    Server,
    add_user,
    auth,
    db_url,
    in_process_service,
    running,
    served_over_http,
    wait_final,
    write_pair,
)

OFFSETS = {"chip": 16, "step": 16, "search": 4}


@pytest.fixture(scope="module")
def service_settings():
    return {"max_body_bytes": 20000}


@pytest.fixture(scope="module")
def svc(service):
    """The in-process service with two users, an admin, a GeoTIFF pair and traps outside the data root."""
    ref, sec = write_pair(service.data_root)
    (service.data_root / "escape.tif").symlink_to("/etc/hostname")
    (service.data_root.parent / "outside.tif").write_bytes(b"not yours")
    tokens = {name: service.add_user(name) for name in ("alice", "bob")}
    tokens["root"] = service.add_user("root", admin=True)
    return service, tokens, {"reference": ref, "secondary": sec, **OFFSETS}


@pytest.fixture(scope="module")
def done_job(svc):
    """A successful offsets job of alice's."""
    service, tokens, inputs = svc
    doc = service.run("offsets", inputs, tokens["alice"])
    assert doc["status"] == "successful", doc
    return doc["jobID"]


@pytest.mark.slow
def test_users_add_prints_token_alone_on_last_line(tmp_path):
    token = add_user(str(tmp_path / "u.db"), "carol")
    assert len(token) >= 40 and " " not in token


def test_public_documents_need_no_token(svc):
    c = svc[0].client
    landing = c.get("/")
    assert landing.status_code == 200
    rels = {link["rel"] for link in landing.json()["links"]}
    assert {"service-desc", "http://www.opengis.net/def/rel/ogc/1.0/processes"} <= rels
    page = c.get("/", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html") and "<h1>" in page.text
    assert page.text.startswith("<!doctype html>")
    conf = c.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conf
    ids = [p["id"] for p in c.get("/processes").json()["processes"]]
    assert "offsets" in ids
    desc = c.get("/processes/offsets").json()
    assert desc["inputs"]["chip"]["schema"]["minimum"] == 8
    assert desc["inputs"]["chip"]["schema"]["maximum"] == 512
    assert desc["inputs"]["reference"]["minOccurs"] == 1
    assert c.get("/openapi.json").json()["paths"]["/jobs/{jobId}"]


def test_unknown_route_and_method_are_ogc_documents(svc):
    c = svc[0].client
    r = c.get("/nowhere")
    assert r.status_code == 404 and r.json()["status"] == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = c.put("/processes")
    assert r.status_code == 405 and r.json()["title"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
def test_missing_or_wrong_token_is_401(svc, headers):
    service, _, inputs = svc
    c = service.client
    for r in (
        c.get("/jobs", headers=headers),
        c.post("/processes/offsets/execution", json={"inputs": inputs}, headers=headers),
    ):
        assert r.status_code == 401
        assert r.json()["status"] == 401 and r.json()["type"]
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_submission_is_committed_before_201(svc):
    """Poll right after each 201: the job is always there, under the standard `jobID` key."""
    service, tokens, inputs = svc
    c = service.client
    for _ in range(10):
        r = c.post(
            "/processes/offsets/execution",
            json={"inputs": inputs},
            headers={**auth(tokens["bob"]), "Prefer": "respond-async"},
        )
        assert r.status_code == 201
        assert r.headers["Preference-Applied"] == "respond-async"
        assert r.headers["Location"] == f"http://testserver/jobs/{r.json()['jobID']}"
        assert r.json()["jobID"] and "jobId" not in r.json()
        s = c.get(r.headers["Location"], headers=auth(tokens["bob"]))
        assert s.status_code == 200 and s.json()["jobID"] == r.json()["jobID"]
        assert s.json()["status"] == "accepted"
        assert c.delete(r.headers["Location"], headers=auth(tokens["bob"])).status_code == 200


def test_results_link_to_the_job_files(svc, done_job):
    service, tokens, _ = svc
    c, a = service.client, auth(tokens["alice"])
    status = c.get(f"/jobs/{done_job}", headers=a).json()
    assert status["progress"] == 100
    res = c.get(f"/jobs/{done_job}/results", headers=a).json()
    assert set(res) == {"netcdf", "cog", "stac", "report"}
    nc = c.get(res["netcdf"]["href"], headers=a)
    assert nc.status_code == 200 and nc.content[:4] == b"\x89HDF"
    assert nc.headers["content-type"] == "application/x-netcdf"
    cog = c.get(res["cog"]["href"], headers=a)
    assert cog.content[:4] in (b"II*\x00", b"II+\x00") and cog.headers["content-type"] == "image/tiff"
    item = c.get(res["stac"]["href"], headers=a).json()
    assert item["type"] == "Feature"
    # The item's relative asset href resolves against the results URL.
    asset = next(iter(item["assets"].values()))["href"]
    href = httpx.URL(res["stac"]["href"]).join(asset)
    assert c.get(href, headers=a).status_code == 200
    report = c.get(res["report"]["href"], headers=a).json()
    assert report["inputs"]["chip"] == 16


def test_other_users_jobs_are_404_and_admin_sees_all(svc, done_job):
    service, tokens, _ = svc
    c, bob = service.client, auth(tokens["bob"])
    for r in (
        c.get(f"/jobs/{done_job}", headers=bob),
        c.get(f"/jobs/{done_job}/results", headers=bob),
        c.get(f"/jobs/{done_job}/results/netcdf", headers=bob),
        c.delete(f"/jobs/{done_job}", headers=bob),
    ):
        assert r.status_code == 404 and r.json()["status"] == 404
    assert done_job not in {j["jobID"] for j in c.get("/jobs?limit=1000", headers=bob).json()["jobs"]}
    root = auth(tokens["root"])
    assert c.get(f"/jobs/{done_job}", headers=root).status_code == 200
    assert done_job in {j["jobID"] for j in c.get("/jobs?limit=1000", headers=root).json()["jobs"]}
    assert c.get(f"/jobs/{done_job}", headers=auth(tokens["alice"])).status_code == 200


def test_job_list_is_paged(svc, done_job):
    service, tokens, inputs = svc
    c, bob = service.client, auth(tokens["bob"])
    for _ in range(3):  # queued, then dismissed: listed, never run
        job = service.submit("offsets", inputs, tokens["bob"])
        assert c.delete(f"/jobs/{job}", headers=bob).status_code == 200
    first = c.get("/jobs?limit=2", headers=bob).json()
    assert len(first["jobs"]) == 2
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    second = c.get(nxt, headers=bob).json()
    assert not {j["jobID"] for j in first["jobs"]} & {j["jobID"] for j in second["jobs"]}
    assert any(link["rel"] == "prev" for link in second["links"])
    assert c.get("/jobs?limit=0", headers=bob).status_code == 400
    assert c.get("/jobs?status=bogus", headers=bob).status_code == 400


def _problems(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == 400 and body["type"] and body["title"] and body["detail"]
    return {p["input"]: p["problem"] for p in body["problems"]}


def test_bad_requests_are_400_with_each_problem_listed(svc):
    service, tokens, inputs = svc
    c = service.client
    h = {**auth(tokens["alice"]), "Content-Type": "application/json"}
    r = c.post("/processes/offsets/execution", content=b'{"inputs": {', headers=h)
    assert r.status_code == 400 and "JSON" in r.json()["title"]
    assert c.post("/processes/offsets/execution", content=b"[1, 2]", headers=h).status_code == 400
    r = c.post("/processes/nope/execution", json={"inputs": {}}, headers=h)
    assert r.status_code == 404 and r.json()["type"].endswith("no-such-process")
    bad = {
        **inputs,
        "chip": 4,
        "method": "magic",
        "step": 0,
        "colour": "red",
        "dates": "2020-02-01,2020-01-01",
    }
    problems = _problems(c.post("/processes/offsets/execution", json={"inputs": bad}, headers=h))
    assert {"chip", "method", "step", "colour", "dates"} <= set(problems)
    problems = _problems(c.post("/processes/offsets/execution", json={"inputs": {}}, headers=h))
    assert {"reference", "secondary"} <= set(problems)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("../outside.tif", "'..'"),
        ("sub/../../outside.tif", "'..'"),
        ("/etc/passwd", "absolute"),
        ("escape.tif", "symlink"),
        ("missing.tif", "no file"),
        ("file:///etc/passwd", "scheme"),
        ("http://example.com/a.tif", "scheme"),
        ("https://127.0.0.1/a.tif", "loopback"),
        ("https://localhost:8000/a.tif", "loopback"),
        ("https://[::1]/a.tif", "loopback"),
        ("https://10.0.0.7/a.tif", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://user:pw@example.com/a.tif", "credentials"),
        ("https://example.com/a.tif", "not a configured catalogue host"),
    ],
)
def test_inputs_cannot_point_outside_data_roots_or_to_internal_hosts(svc, value, words):
    service, tokens, inputs = svc
    r = service.client.post(
        "/processes/offsets/execution",
        json={"inputs": {**inputs, "reference": {"href": value}}},
        headers=auth(tokens["alice"]),
    )
    problems = _problems(r)
    assert words in problems["reference"], problems


def test_request_body_size_is_limited(svc):
    service, tokens, inputs = svc
    big = {"inputs": {**inputs, "pad": "x" * 30_000}}
    r = service.client.post("/processes/offsets/execution", json=big, headers=auth(tokens["alice"]))
    assert r.status_code == 413 and r.json()["status"] == 413


def test_downloads_serve_only_the_jobs_own_files(svc, done_job):
    service, tokens, _ = svc
    a = auth(tokens["alice"])
    for name in ("..%2F..%2Foutside.tif", "..%2Fservice.db", "%2Fetc%2Fpasswd", "inputs", "nope"):
        r = service.client.get(f"/jobs/{done_job}/results/{name}", headers=a)
        assert r.status_code == 404, (name, r.status_code)


def test_dismiss_queued_job_deletes_it(svc):
    service, tokens, inputs = svc
    c, a = service.client, auth(tokens["alice"])
    job = c.post("/processes/offsets/execution", json={"inputs": inputs}, headers=a).json()["jobID"]
    d = c.delete(f"/jobs/{job}", headers=a)
    assert d.status_code == 200 and d.json()["status"] == "dismissed"
    assert c.get(f"/jobs/{job}", headers=a).json()["status"] == "dismissed"
    r = c.get(f"/jobs/{job}/results", headers=a)
    assert r.status_code == 404 and r.json()["type"].endswith("no-such-job")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One real ``geodeform serve``, started by the installed console script, shared by the tests that need
    worker processes but stop none: one worker process, the operator's compute section (``--compute``: a
    Dask LocalCluster of one worker and one thread for preset jobs) and a heartbeat every 0.3 s (default
    2 s: the worker hears of a dismissal sooner, the test waits less). Its users come from
    ``geodeform users add``; stopped with SIGTERM at the end of the module, it must exit cleanly."""
    exe = Path(sys.executable).with_name("geodeform")
    if not exe.is_file():
        exe = Path(shutil.which("geodeform") or "")
    assert exe.is_file(), "the geodeform console script is not installed next to this Python"
    tmp = tmp_path_factory.mktemp("served")
    data = tmp / "data"
    data.mkdir()
    pair = write_pair(data)
    big = write_pair(data, size=512, prefix="big_")
    compute = tmp / "compute.yaml"
    compute.write_text("cluster: local\nworkers: 1\nthreads: 1\n")
    db = db_url("sqlite", tmp)
    token = add_user(db, "alice")
    args = ("--compute", str(compute), "--heartbeat", "0.3")
    server = Server(db=db, data_root=data, jobs_dir=tmp / "jobs", workers=1, command=(str(exe),), args=args)
    with running(server):
        yield server, token, pair, big
    # Ended by its SIGTERM within the grace period (uvicorn re-raises the signal once shut down), not killed.
    assert server.returncode in (0, -signal.SIGTERM), (
        f"geodeform serve did not stop on SIGTERM: {server.returncode}"
    )


@pytest.mark.slow
def test_dismiss_running_job_cancels_and_cleans(served):
    """A worker process is told of the dismissal at its next heartbeat and removes the job's folder."""
    server, token, _, (ref, sec) = served
    slow = {"reference": ref, "secondary": sec, "chip": 32, "step": 1, "search": 12}
    a = auth(token)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/processes/offsets/execution", json={"inputs": slow}, headers=a)
        job = r.json()["jobID"]
        for _ in range(300):
            if c.get(f"/jobs/{job}", headers=a).json()["status"] != "accepted":
                break
            time.sleep(0.1)
        d = c.delete(f"/jobs/{job}", headers=a)
        assert d.status_code == 200 and d.json()["status"] == "dismissed"
        doc = wait_final(c, f"/jobs/{job}", token)
        assert doc["status"] == "dismissed"
        assert c.get(f"/jobs/{job}/results", headers=a).status_code == 404
        # The worker stops at its next progress report and removes the job's folder.
        for _ in range(300):
            if not (server.jobs_dir / job).exists():
                break
            time.sleep(0.1)
        assert not (server.jobs_dir / job).exists()


def test_owslib_lists_and_executes(svc):
    from owslib.ogcapi.processes import Processes

    service, tokens, inputs = svc
    with served_over_http(service.client.app) as url:
        api = Processes(url, headers=auth(tokens["alice"]))
        assert "offsets" in [p["id"] for p in api.processes()]
        assert "chip" in api.process("offsets")["inputs"]
        doc = api.execute("offsets", inputs=inputs, async_=True)
    assert doc["status"] in {"accepted", "running"} and doc["jobID"]
    service.run_jobs()
    status = service.client.get(f"/jobs/{doc['jobID']}", headers=auth(tokens["alice"])).json()
    assert status["status"] == "successful"


def test_generated_ogc_client_jobs_status_results_dismiss(svc, done_job):
    import ogc_api_processes_client as oc
    from ogc_api_processes_client.api.dismiss_api import DismissApi
    from ogc_api_processes_client.api.job_list_api import JobListApi
    from ogc_api_processes_client.api.result_api import ResultApi
    from ogc_api_processes_client.api.status_api import StatusApi

    service, tokens, _ = svc
    with served_over_http(service.client.app) as url:
        client = oc.ApiClient(
            oc.Configuration(host=url),
            header_name="Authorization",
            header_value=f"Bearer {tokens['alice']}",
        )
        jobs = JobListApi(client).get_jobs()
        assert done_job in [j.job_id for j in jobs.jobs]
        status = StatusApi(client).get_status(done_job)
        assert status.status.value == "successful" and status.progress == 100
        results = ResultApi(client).get_result(done_job)
        hrefs = {k: v.actual_instance.href for k, v in results.items()}
        assert hrefs["netcdf"].endswith(f"/jobs/{done_job}/results/netcdf")
        dismissed = DismissApi(client).dismiss(done_job)
        assert dismissed.status.value == "dismissed"
        assert not (service.jobs_dir / done_job).exists()
        with pytest.raises(oc.exceptions.ApiException) as err:
            ResultApi(client).get_result(done_job)
        assert err.value.status == 404


@pytest.mark.skipif(not PG_DSN, reason="GEODEFORM_TEST_PG_DSN not set")
def test_postgresql_store_runs_jobs(tmp_path):
    with in_process_service(tmp_path, db=db_url("postgresql", tmp_path)) as service:
        ref, sec = write_pair(service.data_root)
        token = service.add_user("alice")
        doc = service.run("offsets", {"reference": ref, "secondary": sec, **OFFSETS}, token)
        assert doc["status"] == "successful", doc
        listed = service.client.get("/jobs", headers=auth(token)).json()["jobs"]
        assert [j["jobID"] for j in listed] == [doc["jobID"]]


def test_presets_are_processes_described_from_the_job_config(svc):
    c = svc[0].client
    ids = {p["id"] for p in c.get("/processes").json()["processes"]}
    assert {"offsets", "ice", "slide", "quake", "survey"} <= ids
    ice = c.get("/processes/ice").json()
    assert {"inputs", "search", "pairs", "matching", "output"} <= set(ice["inputs"])
    matching = ice["inputs"]["matching"]["schema"]
    assert matching["properties"]["chip_size"]["type"] == "integer"


@pytest.mark.slow
def test_ice_preset_job_on_local_images(svc):
    service, tokens, inputs = svc
    c, a = service.client, auth(tokens["alice"])
    job = {
        "inputs": [
            {"path": inputs["reference"], "date": "2020-01-06"},
            {"path": inputs["secondary"], "date": "2020-02-05"},
        ],
        "matching": {"chip_size": 16, "step": 16},
        "compute": {"cluster": "slurm"},  # the server decides where jobs run: ignored
    }
    doc = service.run("ice", job, tokens["alice"])
    assert doc["status"] == "successful", doc
    res = c.get(f"/jobs/{doc['jobID']}/results", headers=a).json()
    assert {"velocity_nc", "velocity_tif", "catalog", "report"} <= set(res)
    assert res["report"]["type"] == "text/html"
    assert c.get(res["velocity_nc"]["href"], headers=a).content[:4] == b"\x89HDF"
    report = c.get(res["report"]["href"], headers=a)
    assert report.status_code == 200 and "<html" in report.text.lower()
    # The STAC catalogue is browsable: its relative links resolve to files of the same job.
    catalog = c.get(res["catalog"]["href"], headers=a).json()
    child = next(link["href"] for link in catalog["links"] if link["rel"] in ("item", "child"))
    linked = c.get(httpx.URL(res["catalog"]["href"]).join(child), headers=a)
    assert linked.status_code == 200 and linked.json()["type"] in ("Feature", "Catalog", "Collection")


def test_preset_inputs_are_validated_like_the_cli_and_confined(svc):
    service, tokens, _ = svc
    c, bob = service.client, auth(tokens["bob"])
    bad = {
        "inputs": [{"path": "../outside.tif", "date": "2020-01-06"}, {"path": "/etc/passwd", "date": "soon"}],
        "dem": "escape.tif",
        "matching": {"chip_size": -1},
        "colour": "red",
    }
    problems = _problems(c.post("/processes/quake/execution", json={"inputs": bad}, headers=bob))
    assert {
        "inputs.0.path",
        "inputs.1.path",
        "inputs.1.date",
        "dem",
        "matching.chip_size",
        "colour",
    } <= set(problems)
    search = {
        "search": {
            "catalog": "file:///etc",
            "start": "2023-06-01",
            "end": "2023-07-01",
            "aoi": {"bbox": [-20, 40, 20, 70]},
        }
    }
    problems = _problems(c.post("/processes/ice/execution", json={"inputs": search}, headers=bob))
    assert "scheme" in problems["search.catalog"] and "km²" in problems["search.aoi.bbox"]
    # a NUL inside a nested path is a 400 naming the field, not a 500
    search["search"]["catalog"] = "scenes\u0000/x"
    response = c.post("/processes/ice/execution", json={"inputs": search}, headers=bob)
    assert response.status_code == 400
    assert "control characters" in _problems(response)["search.catalog"]


@pytest.mark.slow
def test_server_side_compute_runs_preset_jobs_on_a_dask_cluster(served, tmp_path, cli):
    """``geodeform serve --compute FILE``: the operator, not the user, sends jobs to Dask (or SLURM)."""
    server, token, (ref, sec), _ = served
    job = {
        "inputs": [{"path": ref, "date": "2020-01-06"}, {"path": sec, "date": "2020-02-05"}],
        "matching": {"chip_size": 16, "step": 16},
        "output": {"report": False},
    }
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/processes/ice/execution", json={"inputs": job}, headers=auth(token))
        assert r.status_code == 201, r.text
        doc = wait_final(c, r.headers["Location"], token, timeout=240)
        assert doc["status"] == "successful", doc
    # The job ran with the server's compute section (a single pair then runs in the job's own process: a
    # LocalCluster is started only for two or more pairs).
    configs = list((server.jobs_dir / doc["jobID"]).rglob("config.yaml"))
    assert configs, "the job wrote no config.yaml"
    ran = yaml.safe_load(configs[0].read_text())["compute"]
    assert (ran["cluster"], ran["workers"], ran["threads"]) == ("local", 1, 1), ran
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: cloud\n")
    # An unusable compute file stops `geodeform serve` before it serves (in this process: no server starts).
    res = cli("serve", "--db", f"sqlite:///{tmp_path / 'unused.db'}", "--compute", bad, cwd=tmp_path)
    assert res.code == 2 and "--compute" in res.stderr and "cluster" in res.stderr, res.output
    assert not (tmp_path / "geodeform-jobs").exists()


@pytest.mark.slow
def test_console_script_serves_and_runs_a_job(served):
    """Smoke test of the installed ``geodeform`` console script (the ``served`` server runs it): ``geodeform
    serve`` with a worker process, users from ``geodeform users add``, one offsets job from submission to
    download; its SIGTERM at the end of the module is checked by ``served``."""
    server, token, (ref, sec), _ = served
    assert server.command[0].endswith("geodeform")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        inputs = {"reference": ref, "secondary": sec, **OFFSETS}
        r = c.post("/processes/offsets/execution", json={"inputs": inputs}, headers=auth(token))
        assert r.status_code == 201, r.text
        doc = wait_final(c, r.headers["Location"], token)
        assert doc["status"] == "successful", doc
        nc = c.get(f"/jobs/{doc['jobID']}/results/netcdf", headers=auth(token))
        assert nc.status_code == 200 and nc.content[:4] == b"\x89HDF"
