"""The map page (``/map``) and its endpoints: in-process (TestClient, a real worker in-process) and, in a
browser, on a real `geodeform serve` with worker processes.

The page is driven by Python Playwright on Debian's chromium (``scripts/services.d/chromium.sh`` installs
it; no browser download): enter the token, look up scenes of a folder catalogue, draw an AOI box, submit an
``ice`` job on three small glacier images from the form, follow it to 100 %, see the velocity overlay and its
legend, click a point for its time series, download a product. Every request the page makes stays local.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer
from rasterio.transform import from_origin

from _map_products import write_products
from _service_helpers import Server, add_users, auth, db_url, running
from geodeform.demo import make_glacier_series
from geodeform.service.store import JobStore

CRS, ORIGIN, PIXEL = "EPSG:32607", (350000.0, 6700000.0), 30.0  # UTM 7N, near the St. Elias glaciers
SIZE = 160
TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def _write(path: Path, data: np.ndarray, *, dtype: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=dtype or data.dtype,
        crs=CRS,
        transform=from_origin(*ORIGIN, PIXEL, PIXEL),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(profile["dtype"]), 1)


def _write_data(root: Path) -> list[str]:
    """Three dates of the demo glacier (16 days apart) and an Earth Search-like folder catalogue."""
    series = make_glacier_series(n_dates=3)
    lines = []
    for img, when in zip(series.images, series.dates, strict=True):
        name = f"glacier/LC08_demo_{when:%Y%m%d}_B4.tif"
        _write(root / name, np.ascontiguousarray(img[:SIZE, :SIZE]))
        lines.append(f"{name} {when:%Y-%m-%d}")
    for k, day in enumerate(("20200106", "20200122")):
        scene = root / "scenes" / f"S2B_07VCG_{day}_0_L2A"
        _write(scene / "B04.tif", np.full((64, 64), 1000), dtype="uint16")
        scl = np.full((64, 64), 4, dtype="uint8")
        scl[: 16 * (k + 1)] = 9  # cloud (high probability) over the top quarter, then half
        _write(scene / "SCL.tif", scl)
    return lines


@pytest.fixture(scope="module")
def svc(service):
    """The in-process service with two users and the page's data in its data root."""
    lines = _write_data(service.data_root)
    tokens = {name: service.add_user(name) for name in ("alice", "bob")}
    return service, tokens, lines


def _ice_inputs(lines: list[str]) -> dict:
    return {
        "name": "api-job",
        "inputs": [{"path": p, "date": d} for p, d in (line.split() for line in lines)],
        "matching": {"step": 8},
        "output": {"report": False},
    }


@pytest.fixture(scope="module")
def product_job(svc):
    """A successful job of alice's whose velocity and time-series products hold known values (written by
    `_map_products`, recorded in the store as a worker records them); its id and the products."""
    service, tokens, _ = svc
    user = service.store.user_for_token(tokens["alice"])
    job = service.store.create_job(user.id, "ice", {})
    assert service.store.claim("test-worker").id == job.id
    products = write_products(service.jobs_dir / job.id)
    results = {
        "velocity_nc": {"name": "velocity.nc", "type": "application/x-netcdf", "title": "ice: velocity_nc"},
        "timeseries": {"name": "timeseries.nc", "type": "application/x-netcdf", "title": "ice: timeseries"},
    }
    assert service.store.finish(job.id, "test-worker", "successful", "finished", results)
    return job.id, products


def _center_lonlat() -> tuple[float, float]:
    x, y = ORIGIN[0] + PIXEL * SIZE / 2, ORIGIN[1] - PIXEL * SIZE / 2
    return Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)


def _fastest_lonlat(jobs_dir: Path, job_id: str) -> tuple[float, float]:
    """Lon/lat of the fastest node of a finished job, away from the grid's border (a border node's centre is
    half a cell from the overlay's edge, too close for a click placed by linear lon/lat interpolation).
    Read from the job's folder, not through the API."""
    with xr.open_dataset(jobs_dir / job_id / "velocity.nc", engine="h5netcdf") as ds:
        v = np.nan_to_num(ds["v"].values, nan=-1)
        v[[0, -1], :] = -1
        v[:, [0, -1]] = -1
        i, j = np.unravel_index(int(np.argmax(v)), v.shape)
        x, y = float(ds["x"][j]), float(ds["y"][i])
    return Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)


# --- endpoints ------------------------------------------------------------------------------------------


def test_page_and_assets_are_public_and_offline(svc):
    c = svc[0].client
    page = c.get("/map")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from outside
    # Relative URLs only (the page works under a proxy's path prefix: tests/test_service_proxy.py).
    assert not re.search(r'(href|src)="/', page.text)
    assert not re.search(r'(getJSON|api|fetch)\("/', c.get("/map/static/map.js").text)
    for asset in ("map.js", "map.css", "vendor/leaflet/leaflet.js", "vendor/leaflet/leaflet.css"):
        assert c.get(f"/map/static/{asset}").status_code == 200, asset
    assert c.get("/map/static/map.js").headers["content-type"] == "text/javascript; charset=utf-8"
    assert c.get("/map/static/vendor/leaflet/images/marker-icon.png").headers["content-type"] == "image/png"
    for bad in (
        "%2e%2e/app.py",
        "..%2fapp.py",
        "nothing.js",
        "vendor/leaflet/LICENSE",
        "%00",
        "a%5cb.js",
        ".x.js",
    ):
        r = c.get(f"/map/static/{bad}")
        assert r.status_code == 404, (bad, r.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/map/api/presets",
        "/map/api/tiles/07VCG",
        "/map/api/scenes?start=2020-01-01&end=2020-02-01&tile=07VCG",
        "/map/api/jobs/x/overlay.json",
        "/map/api/jobs/x/overlay.png",
        "/map/api/jobs/x/series?lon=0&lat=0",
    ],
)
def test_api_needs_a_token(svc, path):
    c = svc[0].client
    for headers in ({}, auth("not-a-token"), {"Authorization": "Basic abc"}):
        r = c.get(path, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["status"] == 401 and "Bearer" in r.headers["www-authenticate"]


def test_overlay_and_series_of_own_job(svc, product_job):
    service, tokens, _ = svc
    job, products = product_job
    c, a = service.client, auth(tokens["alice"])
    meta = c.get(f"/map/api/jobs/{job}/overlay.json", headers=a)
    assert meta.status_code == 200 and meta.headers["cache-control"] == "private, no-store"
    meta = meta.json()
    lon, lat = TO_LONLAT.transform(products.x.mean(), products.y.mean())
    w, s, e, n = meta["bounds"]
    assert w < lon < e and s < lat < n
    assert meta["units"] == "m/yr" and meta["min"] == 0 and meta["crs"] == "EPSG:32607"
    assert meta["data_min"] == np.nanmin(products.v) and meta["data_max"] == np.nanmax(products.v)
    assert meta["max"] == 40 and meta["colormap"] == "viridis"  # 98th percentile 39 m/yr, rounded up
    assert len(meta["stops"]) == 11 and meta["valid_pct"] == round(100 * np.isfinite(products.v).mean(), 1)
    assert meta["image"] == f"http://testserver/map/api/jobs/{job}/overlay.png"
    png = c.get(f"/map/api/jobs/{job}/overlay.png", headers=a)
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    i, j = 4, 7
    lon, lat = TO_LONLAT.transform(products.x[j], products.y[i])
    ts = c.get(f"/map/api/jobs/{job}/series", params={"lon": lon, "lat": lat}, headers=a).json()
    assert ts["dates"] == ["2020-01-06", "2020-01-22", "2020-02-07"] and ts["units"] == "m"
    assert ts["east"] == [round(float(x), 4) for x in products.east[:, i, j]]
    assert ts["north"] == [0.0, -0.5, -1.0] and ts["east_error"] == [0.25] * 3
    assert ts["node"]["x"] == products.x[j] and ts["node"]["crs"] == "EPSG:32607"
    assert ts["distance_m"] < 0.01 and ts["sign_convention"].startswith("east: + toward increasing map x")
    far = c.get(f"/map/api/jobs/{job}/series", params={"lon": 10, "lat": 10}, headers=a)
    assert far.status_code == 404 and far.json()["title"] == "No data here"


def test_map_views_of_a_job_without_the_product_are_404(svc, product_job):
    service, tokens, _ = svc
    a = auth(tokens["alice"])
    user = service.store.user_for_token(tokens["alice"])
    queued = service.store.create_job(user.id, "offsets", {})
    r = service.client.get(f"/map/api/jobs/{queued.id}/overlay.json", headers=a)
    assert r.status_code == 404 and r.json()["title"] == "Result not ready"
    assert service.client.delete(f"/jobs/{queued.id}", headers=a).status_code == 200
    # A job with a velocity map but no time series (an offsets job's NetCDF is drawn too).
    job = service.store.create_job(user.id, "offsets", {})
    assert service.store.claim("test-worker").id == job.id
    velocity_bytes = product_job[1].velocity.read_bytes()
    (service.jobs_dir / job.id).mkdir()
    (service.jobs_dir / job.id / "offsets.nc").write_bytes(velocity_bytes)
    results = {"netcdf": {"name": "offsets.nc", "type": "application/x-netcdf", "title": "offsets"}}
    assert service.store.finish(job.id, "test-worker", "successful", "finished", results)
    assert service.client.get(f"/map/api/jobs/{job.id}/overlay.json", headers=a).status_code == 200
    r = service.client.get(f"/map/api/jobs/{job.id}/series?lon=0&lat=0", headers=a)
    assert r.status_code == 404 and r.json()["detail"] == f"job {job.id} has no time series"


@pytest.mark.slow
def test_overlay_and_series_of_a_real_ice_job(svc):
    """A whole ice job on three glacier images, run by a worker in this process, then its map views."""
    service, tokens, lines = svc
    c, a = service.client, auth(tokens["alice"])
    doc = service.run("ice", _ice_inputs(lines), tokens["alice"])
    assert doc["status"] == "successful", doc
    done_job = doc["jobID"]
    lon, lat = _center_lonlat()
    meta = c.get(f"/map/api/jobs/{done_job}/overlay.json", headers=a).json()
    w, s, e, n = meta["bounds"]
    assert w < lon < e and s < lat < n
    assert meta["units"] == "m/yr" and meta["min"] == 0 and 0 < meta["max"] <= 2 * meta["data_max"]
    assert len(meta["stops"]) == 11 and meta["valid_pct"] > 50
    png = c.get(f"/map/api/jobs/{done_job}/overlay.png", headers=a)
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    fast = _fastest_lonlat(service.jobs_dir, done_job)
    ts = c.get(f"/map/api/jobs/{done_job}/series", params={"lon": fast[0], "lat": fast[1]}, headers=a).json()
    assert ts["dates"] == ["2020-01-06", "2020-01-22", "2020-02-07"]
    assert ts["east"][0] == 0 and ts["north"][0] == 0 and ts["units"] == "m"
    assert ts["distance_m"] < 1
    assert any(abs(v) > 1 for v in ts["east"] + ts["north"] if v is not None)  # the glacier moves


def test_other_users_job_is_not_found(svc, product_job):
    service, tokens, _ = svc
    done_job, _ = product_job
    c, bob = service.client, auth(tokens["bob"])
    lon, lat = _center_lonlat()
    for path in ("overlay.json", "overlay.png", f"series?lon={lon}&lat={lat}"):
        r = c.get(f"/map/api/jobs/{done_job}/{path}", headers=bob)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["title"] == "No such job"
    missing = c.get("/map/api/jobs/does-not-exist/overlay.json", headers=bob)
    assert missing.status_code == 404 and missing.json()["detail"] == r.json()["detail"].replace(
        done_job, "does-not-exist"
    )


@pytest.mark.parametrize(
    "query",
    [
        "lon=200&lat=0",
        "lon=0&lat=-91",
        "lon=abc&lat=0",
        "lon=nan&lat=0",
        "lon=inf&lat=0",
        "lat=0",
        "lon=1e400&lat=0",
        "lon=0&lat=0&lon=1",
    ],
)
def test_series_bad_point_is_400(svc, product_job, query):
    service, tokens, _ = svc
    done_job, _ = product_job
    r = service.client.get(f"/map/api/jobs/{done_job}/series?{query}", headers=auth(tokens["alice"]))
    if query == "lon=0&lat=0&lon=1":
        assert r.status_code in (200, 404)  # last value wins or the first; a valid point either way
        return
    assert r.status_code == 400, (query, r.text)
    assert r.json()["status"] == 400


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("bbox=1,2,3", "bbox"),
        ("bbox=10,0,5,1", "bbox"),
        ("bbox=a,b,c,d", "bbox"),
        ("bbox=nan,0,1,1", "bbox"),
        ("bbox=-170,-80,170,80", "bbox"),  # larger than the area limit
        ("", "bbox"),
        ("tile=07VCG&catalog=https://evil.example.com/stac", "catalog"),
        ("tile=07VCG&catalog=http://127.0.0.1:9/stac", "catalog"),
        ("tile=07VCG&catalog=../..", "catalog"),
        ("tile=07VCG&catalog=/etc", "catalog"),
        ("tile=07VCG&catalog=file:///etc", "catalog"),
        ("tile=07VCG&catalog=scenes%00", "catalog"),
        ("tile=07VCG&catalog=glacier/LC08_demo_20200106_B4.tif", "catalog"),
        ("tile=ZZ", None),
        ("tile=07VCG&collection=<script>", None),
        ("tile=07VCG&start=2020-13-01", None),
        ("tile=07VCG&end=2019-01-01", "start"),
    ],
)
def test_scenes_bad_input_is_400(svc, query, where):
    service, tokens, _ = svc
    base = "start=2020-01-01&end=2020-03-01&catalog=scenes"
    params = base + ("&" + query if query else "")
    if "start=2020-13" in query:
        params = "end=2020-03-01&" + query
    if "end=2019" in query:
        params = "start=2020-01-01&catalog=scenes&" + query
    r = service.client.get(f"/map/api/scenes?{params}", headers=auth(tokens["alice"]))
    assert r.status_code == 400, (query, r.status_code, r.text)
    doc = r.json()
    if where:
        assert doc["problems"][0]["input"] == where, doc


def test_scenes_of_a_folder_catalogue_with_aoi_cloud(svc):
    service, tokens, _ = svc
    c, a = service.client, auth(tokens["alice"])
    lon, lat = _center_lonlat()
    r = c.get(
        "/map/api/scenes",
        params={
            "catalog": "scenes",
            "start": "2020-01-01",
            "end": "2020-03-01",
            "bbox": f"{lon - 0.03},{lat - 0.01},{lon + 0.03},{lat + 0.01}",
        },
        headers=a,
    )
    assert r.status_code == 200, r.text
    scenes = r.json()["scenes"]
    assert [s["id"] for s in scenes] == ["S2B_07VCG_20200106_0_L2A", "S2B_07VCG_20200122_0_L2A"]
    assert all(s["tile"] == "07VCG" and s["aoi_cloud_pct"] is not None for s in scenes)
    assert str(service.data_root) not in r.text  # the server's folders stay private
    empty = c.get(
        "/map/api/scenes",
        params={"catalog": "scenes", "start": "2021-01-01", "end": "2021-02-01", "tile": "07VCG"},
        headers=a,
    )
    assert empty.status_code == 200 and empty.json()["scenes"] == []
    tile = c.get("/map/api/tiles/07vcg", headers=a).json()
    assert tile["properties"]["tile"] == "07VCG" and tile["geometry"]["type"] == "Polygon"


def test_presets_give_form_defaults(svc):
    service, tokens, _ = svc
    doc = service.client.get("/map/api/presets", headers=auth(tokens["bob"])).json()["presets"]
    assert set(doc) == {"ice", "slide", "quake", "survey", "sar"}
    assert doc["quake"]["pairs"]["mode"] == "acquisitions" and doc["ice"]["matching"]["chip_size"] == 32


# --- the page in a browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(chromium_browser):  # type: ignore[no-untyped-def]
    return chromium_browser  # the shared fixture of conftest.py


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real `geodeform serve` with a worker process, its users and the page's data (one worker: the page's
    jobs run one after the other; a second worker process and its job fork server cost ~7 CPU-s to start)."""
    tmp = tmp_path_factory.mktemp("page")
    data = tmp / "data"
    lines = _write_data(data)
    db = db_url("sqlite", tmp)
    tokens = dict(zip(("alice", "bob"), add_users(db, "alice", "bob"), strict=True))
    with running(Server(db=db, data_root=data, jobs_dir=tmp / "jobs", workers=1)) as server:
        yield server, tokens, lines


@pytest.mark.slow
def test_page_end_to_end(served, chromium, tmp_path):
    server, tokens, lines = served
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)  # the first scene search indexes the folder and imports a lot
    outside, errors = [], []

    def only_local(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/map")
    expect(page.locator("#preset option")).to_have_count(5)  # ice, slide, quake, survey, sar

    # The token, once; a wrong one is refused.
    page.fill("#token", "wrong")
    page.click("#token-save")
    expect(page.locator("#whoami")).to_have_text("token refused")
    page.fill("#token", tokens["alice"])
    page.click("#token-save")
    expect(page.locator("#whoami")).to_have_text("token accepted")
    page.select_option("#preset", "ice")
    expect(page.locator("#pairs-max")).to_have_value("100")

    # An AOI box drawn with the mouse fills W/S/E/N.
    page.click("#draw-box")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 400, box["y"] + 380, steps=5)
    page.mouse.up()
    west, east = float(page.input_value("#bbox-w")), float(page.input_value("#bbox-e"))
    assert west < east

    # Scenes of the folder catalogue with their AOI cloud %.
    lon, lat = _center_lonlat()
    for field, value in zip(
        ("w", "s", "e", "n"), (lon - 0.03, lat - 0.01, lon + 0.03, lat + 0.01), strict=True
    ):
        page.fill(f"#bbox-{field}", f"{value:.4f}")
    page.fill("#catalog", "scenes")
    page.fill("#start", "2020-01-01")
    page.fill("#end", "2020-03-01")
    page.click("#find-scenes")
    rows = page.locator("#scenes tbody tr")
    expect(rows).to_have_count(2)
    assert rows.first.locator("td").nth(1).text_content() == "07VCG"
    float(rows.first.locator("td").nth(4).text_content())  # AOI cloud %, a number

    # A bad form is answered with the problems, in the page.
    page.check("input[name=source][value=inputs]")
    page.fill("#name", "page job")
    page.fill("#inputs", lines[0])
    page.click("#submit")
    expect(page.locator("#form-status")).to_have_class("status error")
    assert "name" in page.text_content("#form-status")

    # The job from the form: three images on the server, small chips.
    page.fill("#name", "page-e2e")
    page.fill("#inputs", "\n".join(lines))
    page.fill("#step", "8")
    page.click("#submit")
    expect(page.locator("#form-status")).to_contain_text("accepted")
    job = page.locator("#jobs li.job").first
    expect(job).to_contain_text("page-e2e")
    expect(job).to_have_attribute("data-status", "successful", timeout=90_000)
    expect(job.locator(".bar")).to_have_attribute("aria-valuenow", "100")

    # Its velocity overlay and legend (shown on success), then a click for the time series.
    overlay = page.locator("img.velocity-overlay")
    expect(overlay).to_be_visible()
    expect(page.locator("#legend")).to_contain_text("m/yr")
    assert float(page.text_content("#legend .legend-min")) == 0
    # Click the fastest node (the overlay spans its bounds; linear is close enough over 5 km).
    job_id = job.get_attribute("data-job-id")
    meta = httpx.get(f"{server.url}/map/api/jobs/{job_id}/overlay.json", headers=auth(tokens["alice"])).json()
    w, s, e, n = meta["bounds"]
    lon, lat = _fastest_lonlat(server.jobs_dir, job_id)
    ob = overlay.bounding_box()
    page.mouse.click(
        ob["x"] + ob["width"] * (lon - w) / (e - w), ob["y"] + ob["height"] * (n - lat) / (n - s)
    )
    expect(page.locator("#chart svg polyline.east")).to_have_count(1)
    expect(page.locator("#chart svg circle.north-pt")).to_have_count(3)
    expect(page.locator("#chart-title")).to_contain_text("Time series at")

    # Download links of the products; one downloaded with the token.
    links = page.locator("#downloads a.download")
    names = {links.nth(i).get_attribute("data-output") for i in range(links.count())}
    assert {"velocity_nc", "velocity_tif", "timeseries", "catalog", "report"} <= names
    with page.expect_download() as info:
        page.click("#downloads a[data-output=velocity_nc]")
    download = info.value
    assert download.suggested_filename == "velocity.nc"
    assert Path(download.path()).read_bytes()[:4] == b"\x89HDF"

    shot = tmp_path / "service-page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    target = os.environ.get("GEODEFORM_PAGE_SCREENSHOT")  # e.g. docs/img/service-page.png
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)

    # A catalogue-search job from the same form (AOI box, folder catalogue), then cancelled from its row.
    page.check("input[name=source][value=search]")
    page.fill("#name", "page-search")
    with page.expect_request(lambda r: r.method == "POST" and "/execution" in r.url) as sent:
        page.click("#submit")
    body = json.loads(sent.value.post_data)["inputs"]
    assert body["search"]["catalog"] == "scenes" and len(body["search"]["aoi"]["bbox"]) == 4
    assert body["search"]["start"] == "2020-01-01" and body["matching"]["step"] == 8
    assert body["pairs"] == {"mode": "days", "min_range": 5, "max_range": 100, "direction": "forward"}
    row = page.locator("#jobs li.job", has_text="page-search")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.dismiss").click()
    expect(row).to_have_attribute("data-status", re.compile("dismissed|failed"))
    context.close()
    assert not errors, errors
    assert not outside, outside


@pytest.mark.slow
def test_page_masks_dem_reset_and_job_paging(served, chromium):
    server, tokens, lines = served
    from playwright.sync_api import expect

    # Bob has 23 jobs (made in the store, dismissed at once): the list shows 20 and pages to the rest.
    store = JobStore(server.db)
    try:
        bob = store.get_user("bob")
        assert bob is not None
        for _ in range(23):
            job = store.create_job(bob.id, "ice", {"name": "paged"})
            assert job is not None
            store.request_dismiss(job.id)
    finally:
        store.close()
    page = chromium.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url + "/map")
    expect(page.locator("#preset option")).to_have_count(5)  # ice, slide, quake, survey, sar
    page.fill("#token", tokens["bob"])
    page.click("#token-save")
    expect(page.locator("#jobs li.job")).to_have_count(20)
    expect(page.locator("#jobs-newer")).to_be_disabled()
    page.click("#jobs-older")
    expect(page.locator("#jobs li.job")).to_have_count(3)
    expect(page.locator("#jobs-range")).to_have_text("21–23")
    expect(page.locator("#jobs-older")).to_be_disabled()
    page.click("#jobs-newer")
    expect(page.locator("#jobs li.job")).to_have_count(20)

    # Mask and DEM fields go into the job; a missing mask is answered in the page, naming the field.
    page.select_option("#preset", "ice")
    page.check("input[name=source][value=inputs]")
    page.fill("#name", "masked")
    page.fill("#inputs", "\n".join(lines))
    page.fill("#mask-glacier", "masks/no-such-mask.gpkg")
    page.fill("#dem", "dem/no-such-dem.tif")
    page.fill("#step", "12")
    with page.expect_request(lambda r: r.method == "POST" and "/execution" in r.url) as sent:
        page.click("#submit")
    body = json.loads(sent.value.post_data)["inputs"]
    assert body["masks"] == {"glacier": "masks/no-such-mask.gpkg"} and body["dem"] == "dem/no-such-dem.tif"
    status = page.locator("#form-status")
    expect(status).to_have_class("status error")
    expect(status).to_contain_text("masks.glacier")
    assert str(server.data_root) not in status.text_content()  # no server folder in what a user reads

    # Reset: the preset's defaults again, the optional fields empty, the message gone.
    page.click("#form-reset")
    expect(page.locator("#step")).to_have_value("16")
    for field in ("#mask-glacier", "#dem", "#inputs"):
        expect(page.locator(field)).to_have_value("")
    expect(page.locator("#preset")).to_have_value("ice")
    expect(status).to_have_text("")
    page.context.close()
