"""The service behind a real reverse proxy: Debian's nginx running the documented server block
(``docs/guide/nginx-geodeform.conf``, only its ports, certificate and upstream substituted) with TLS and the
path prefix ``/geodeform``, in front of a real ``geodeform serve --root-path /geodeform``.

Checked through the proxy: every link the service writes carries the proxy's scheme, host and prefix; the
security headers (the service's and the proxy's HSTS); the API documentation page and its assets; and the map
page in Chromium submits a job, follows it to the end, shows its overlay and downloads a product, with every
request it makes going to the proxy under the prefix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from _service_helpers import Server, add_users, auth, db_url, free_port, running
from geodeform.cli.demo import _write_geotiff
from geodeform.demo import make_glacier_series

pytestmark = pytest.mark.slow  # nginx, `geodeform serve` with workers, Chromium and a whole job

PREFIX = "/geodeform"
CONF = Path(__file__).resolve().parents[1] / "docs" / "guide" / "nginx-geodeform.conf"


def _nginx() -> str:
    exe = os.environ.get("GEODEFORM_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).is_file():
        pytest.skip("nginx missing (scripts/services.d/nginx.sh installs Debian's nginx-light)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing (for the proxy's self-signed certificate)")
    return exe


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid one day: (certificate, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _nginx_conf(folder: Path, *, listen: int, upstream: int) -> Path:
    """The documented server block with this test's ports and certificate, in a main configuration of its
    own (no daemon, files under ``folder``)."""
    cert, key = _certificate(folder)
    server = CONF.read_text(encoding="utf-8")
    for old, new in (
        ("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
        ("proxy_pass http://127.0.0.1:8000/;", f"proxy_pass http://127.0.0.1:{upstream}/;"),
        ("/etc/ssl/geodeform/fullchain.pem", str(cert)),
        ("/etc/ssl/geodeform/privkey.pem", str(key)),
    ):
        assert server.count(old) == 1, f"{CONF.name} no longer holds {old!r}"
        server = server.replace(old, new)
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy"))
    conf = folder / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # its workers write the test's private folders
        + f"daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        + f"error_log {folder / 'error.log'} warn;\nevents {{ worker_connections 128; }}\n"
        + f"http {{\n    access_log {folder / 'access.log'};\n{temp}\n{server}\n}}\n",
        encoding="utf-8",
    )
    return conf


@contextlib.contextmanager
def _proxy(folder: Path, *, upstream: int) -> Iterator[str]:
    """nginx in front of 127.0.0.1:``upstream``; the service's public URL (https, with the prefix)."""
    exe = _nginx()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = _nginx_conf(folder, listen=port, upstream=upstream)
    check = subprocess.run([exe, "-t", "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")])
    assert check.returncode == 0, (folder / "error.log").read_text()
    proc = subprocess.Popen(
        [exe, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
        start_new_session=True,
    )
    url = f"https://127.0.0.1:{port}{PREFIX}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/conformance", verify=False, timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, (folder / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not answer"
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful stop of the master and its worker
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """`geodeform serve --root-path /geodeform` behind nginx; (public URL, server, alice's token, lines)."""
    tmp = tmp_path_factory.mktemp("proxy")
    data = tmp / "data"
    series = make_glacier_series(n_dates=3)
    lines = []
    for img, when in zip(series.images, series.dates, strict=True):
        name = f"glacier/LC08_demo_{when:%Y%m%d}_B4.tif"
        (data / "glacier").mkdir(parents=True, exist_ok=True)
        _write_geotiff(data / name, np.ascontiguousarray(img[:128, :128]), f"{when:%Y-%m-%d}")
        lines.append(f"{name} {when:%Y-%m-%d}")
    db = db_url("sqlite", tmp)
    (token,) = add_users(db, "alice")
    server = Server(db=db, data_root=data, jobs_dir=tmp / "jobs", workers=1, args=("--root-path", PREFIX))
    with running(server), _proxy(tmp / "nginx", upstream=server.port) as url:
        yield url, server, token, lines


def test_links_and_headers_through_the_proxy(proxied):
    url, _server, _token, _ = proxied
    with httpx.Client(verify=False, timeout=30) as c:
        landing = c.get(url + "/", headers={"Accept": "application/json"})
        assert landing.status_code == 200, landing.text
        hrefs = [link["href"] for link in landing.json()["links"]]
        assert hrefs and all(h.startswith(url + "/") for h in hrefs), hrefs
        # Security headers: the service's on every response, HSTS from the TLS end.
        for path in ("/", "/map", "/api.html", "/no-such-thing"):
            r = c.get(url + path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert "default-src 'self'" in r.headers["content-security-policy"], path
            assert r.headers["strict-transport-security"].startswith("max-age="), path
        # The bare prefix redirects into it; the OpenAPI document names the prefix as its server.
        bare = c.get(url)
        assert bare.status_code == 308 and bare.headers["location"].endswith(PREFIX + "/")
        assert c.get(url + "/openapi.json").json()["servers"][0]["url"] == PREFIX
        # The API documentation page and the assets it names, all through the prefix.
        api = c.get(url + "/api.html")
        assert api.status_code == 200 and 'src="api/static/' in api.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "api.js"):
            assert c.get(f"{url}/api/static/{asset}").status_code == 200, asset


def test_page_through_the_proxy_submits_follows_and_downloads(proxied, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, server, token, lines = proxied
    exe = os.environ.get("GEODEFORM_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).is_file():
        pytest.skip("chromium missing (scripts/services.d/chromium.sh installs Debian's)")
    requests, outside, errors = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(ignore_https_errors=True, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(30_000)
            expect.set_options(timeout=30_000)

            def only_proxy(route):
                requests.append(route.request.url)
                if route.request.url.startswith(url + "/"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_proxy)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + "/map")
            expect(page.locator("#preset option")).to_have_count(5)  # ice, slide, quake, survey, sar
            page.fill("#token", token)
            page.click("#token-save")
            expect(page.locator("#whoami")).to_have_text("token accepted")
            page.select_option("#preset", "ice")
            page.check("input[name=source][value=inputs]")
            page.fill("#name", "behind-proxy")
            page.fill("#inputs", "\n".join(lines))
            page.fill("#step", "8")
            page.click("#submit")
            expect(page.locator("#form-status")).to_contain_text("accepted")
            job = page.locator("#jobs li.job").first
            expect(job).to_contain_text("behind-proxy")
            expect(job).to_have_attribute("data-status", "successful", timeout=300_000)  # loaded 2-core hosts
            expect(page.locator("img.velocity-overlay")).to_be_visible()
            job_id = job.get_attribute("data-job-id")

            link = page.locator("#downloads a[data-output=velocity_nc]")
            assert link.get_attribute("href").startswith(url + "/jobs/")
            with page.expect_download() as info:
                link.click()
            download = info.value
            assert download.suggested_filename == "velocity.nc"
            assert Path(download.path()).read_bytes()[:4] == b"\x89HDF"
            context.close()
        finally:
            browser.close()
    assert not errors, errors
    assert not outside, outside
    assert any("/execution" in r for r in requests) and any("/results" in r for r in requests)
    # The job the page followed, asked for straight from the service: it ran and succeeded.
    direct = httpx.get(f"{server.url}/jobs/{job_id}", headers=auth(token))
    assert direct.json()["status"] == "successful", direct.text
