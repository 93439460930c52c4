"""What the service reads on a user's behalf, tested so that each known mutant of ``service/safety.py`` and of
the run-time path re-check fails a test (issue 27).

- An allowed catalogue host that resolves to a loopback, private or link-local address is refused, whether
  asked directly or through the API (the resolver is patched: no DNS at test time).
- Downloads refuse redirects and stop at the byte cap: a real HTTPS server on 127.0.0.1 (certificate from a
  test CA made by ``trustme``), the allowed host name routed to it by patching ``socket.create_connection``,
  while the resolver the check sees answers with a public address.
- A data file swapped for a symlink leading out of the data root between submission and run fails the job.
"""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _service_helpers import auth, resolve_host, route_to_local, write_pair
from _service_helpers import tls_server as serve_tls
from geodeform.errors import DataError, InvalidInputError
from geodeform.service.paths import DataScope, PathMask, resolve_input
from geodeform.service.safety import (
    check_relative,
    check_url,
    check_url_address,
    fetch_url,
    is_public_address,
    resolve_data_folder,
    resolve_data_path,
)

HOST = "stac.example.org"  # the allowed catalogue host of these tests
PUBLIC = "93.184.216.34"  # a global unicast address: what a harmless catalogue host resolves to
BODY = bytes(range(256)) * 12  # 3072 bytes served by /big.tif
OFFSETS = {"chip": 16, "step": 16, "search": 4}


@pytest.fixture(scope="module")
def service_settings():
    return {"catalogue_hosts": (HOST,)}


def _resolver(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Make :data:`HOST` resolve to ``addresses`` (other names resolve as usual)."""
    resolve_host(monkeypatch, HOST, *addresses)


# ------------------------------------------------------------------------------------- SSRF (resolver)
@pytest.mark.parametrize(
    "addresses",
    [
        ("127.0.0.1",),
        ("::1",),
        ("10.1.2.3",),
        ("192.168.0.10",),
        ("172.16.5.5",),
        ("169.254.169.254",),  # cloud metadata service
        ("::ffff:127.0.0.1",),  # IPv4-mapped loopback
        ("fd00::1",),  # unique local
        (PUBLIC, "127.0.0.1"),  # one bad answer among good ones is enough
    ],
)
def test_an_allowed_host_resolving_to_an_internal_address_is_refused(monkeypatch, addresses) -> None:
    _resolver(monkeypatch, *addresses)
    with pytest.raises(InvalidInputError, match="non-public"):
        check_url(f"https://{HOST}/scene/B4.tif", [HOST])


def test_an_allowed_host_resolving_to_a_public_address_is_accepted(monkeypatch) -> None:
    _resolver(monkeypatch, PUBLIC)
    assert check_url(f"https://{HOST}/scene/B4.tif", [HOST]) == f"https://{HOST}/scene/B4.tif"


def test_the_api_refuses_an_allowed_host_that_resolves_to_loopback(service, monkeypatch) -> None:
    _, sec = write_pair(service.data_root, prefix="ssrf_")
    token = service.add_user("ssrf")
    url = f"https://{HOST}/scene/B4.tif"
    _resolver(monkeypatch, "127.0.0.1")
    r = service.client.post(
        "/processes/offsets/execution",
        json={"inputs": {"reference": url, "secondary": sec, **OFFSETS}},
        headers=auth(token),
    )
    assert r.status_code == 400, r.text
    problems = {p["input"]: p["problem"] for p in r.json()["problems"]}
    assert "non-public" in problems["reference"], problems
    _resolver(monkeypatch, PUBLIC)  # the same request on a public answer passes the check (then 201)
    r = service.client.post(
        "/processes/offsets/execution",
        json={"inputs": {"reference": url, "secondary": sec, **OFFSETS}},
        headers=auth(token),
    )
    assert r.status_code == 201, r.text
    # dismissed, so that no other test's worker tries to download it
    assert service.client.delete(f"/jobs/{r.json()['jobID']}", headers=auth(token)).status_code == 200


# ------------------------------------------------------------------------ downloads: redirects, byte cap
class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path == "/big.tif":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/huge.tif":  # 3 MiB: more than one read of the download loop
            self.send_response(200)
            self.send_header("Content-Length", str(3 << 20))
            self.end_headers()
            for _ in range(3):
                self.wfile.write(b"\0" * (1 << 20))
        elif self.path == "/endless.tif":  # no length, no end: only the byte cap stops the download
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * (1 << 16))
            except OSError:
                pass
        elif self.path == "/stall.tif":  # accepts, then never answers (within the client's timeout)
            time.sleep(3)
        elif self.path == "/moved.tif":
            self.send_response(302)
            self.send_header("Location", f"https://{HOST}:{self.server.server_port}/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:  # /secret: what a followed redirect would fetch
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secret")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[int, list[str], Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate for :data:`HOST`; (port, paths seen, CA file)."""
    seen: list[str] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    with serve_tls(HOST, handler, tmp_path_factory.mktemp("ca")) as (port, ca_file):
        yield port, seen, ca_file


@pytest.fixture
def routed(tls_server, monkeypatch) -> tuple[int, list[str]]:
    """:data:`HOST` resolves to a public address (the check passes) while connections to it reach the
    local HTTPS server, whose test CA is trusted; (port, paths seen)."""
    port, seen, ca_file = tls_server
    seen.clear()
    _resolver(monkeypatch, PUBLIC)
    route_to_local(monkeypatch, (HOST, PUBLIC), ca_file)
    return port, seen


def test_download_within_the_cap_arrives_whole(routed, tmp_path: Path) -> None:
    port, _ = routed
    dest = fetch_url(f"https://{HOST}:{port}/big.tif", tmp_path / "a.tif", hosts=[HOST], max_bytes=len(BODY))
    assert dest.read_bytes() == BODY  # exactly at the cap is allowed


def test_download_over_the_byte_cap_fails_and_leaves_no_file(routed, tmp_path: Path) -> None:
    port, _ = routed
    dest = tmp_path / "a.tif"
    with pytest.raises(DataError, match="byte limit"):
        fetch_url(f"https://{HOST}:{port}/big.tif", dest, hosts=[HOST], max_bytes=len(BODY) - 1)
    assert not dest.exists()


@pytest.mark.parametrize("path", ["/huge.tif", "/endless.tif"])
def test_download_stops_at_the_byte_cap_across_reads(routed, tmp_path: Path, path: str) -> None:
    port, _ = routed
    dest = tmp_path / "a.tif"
    with pytest.raises(DataError, match="byte limit"):
        fetch_url(f"https://{HOST}:{port}{path}", dest, hosts=[HOST], max_bytes=(3 << 20) // 2)
    assert not dest.exists()


def test_a_stalled_download_times_out(routed, tmp_path: Path) -> None:
    port, _ = routed
    dest = tmp_path / "a.tif"
    with pytest.raises(DataError, match="timed out"):
        fetch_url(f"https://{HOST}:{port}/stall.tif", dest, hosts=[HOST], max_bytes=10_000, timeout=0.5)
    assert not dest.exists()


def test_download_refuses_redirects(routed, tmp_path: Path) -> None:
    port, seen = routed
    dest = tmp_path / "a.tif"
    with pytest.raises(DataError, match="302"):
        fetch_url(f"https://{HOST}:{port}/moved.tif", dest, hosts=[HOST], max_bytes=10_000)
    assert seen == ["/moved.tif"]  # the redirect's target was never asked for
    assert not dest.exists()


def test_download_checks_the_host_before_connecting(tls_server, monkeypatch, tmp_path: Path) -> None:
    port, seen, _ = tls_server
    seen.clear()
    _resolver(monkeypatch, "127.0.0.1")
    with pytest.raises(InvalidInputError, match="non-public"):
        fetch_url(f"https://{HOST}:{port}/big.tif", tmp_path / "a.tif", hosts=[HOST], max_bytes=10_000)
    assert seen == []


def test_download_connects_to_the_address_it_checked(tls_server, monkeypatch, tmp_path: Path) -> None:
    # DNS rebinding: the host answers a public address to the check, then an internal one; the download must
    # connect to the checked address, never resolve the name a second time
    port, seen, ca_file = tls_server
    seen.clear()
    answers = iter([PUBLIC])
    real_resolve = socket.getaddrinfo

    def rebinding(host, p, *args, **kwargs):
        if str(host).lower() != HOST:
            return real_resolve(host, p, *args, **kwargs)
        addr = next(answers, "10.9.9.9")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (addr, p or 443))]

    connected: list[str] = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        host, p = address
        if str(host).lower() == HOST:  # what a connection by name does: resolve again
            host = rebinding(host, p)[0][4][0]
        connected.append(str(host))
        if host != PUBLIC:
            raise ConnectionRefusedError(f"{host} is internal (the rebinding target)")
        return real_connect(("127.0.0.1", p), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    dest = fetch_url(f"https://{HOST}:{port}/big.tif", tmp_path / "a.tif", hosts=[HOST], max_bytes=10_000)
    assert dest.read_bytes() == BODY  # the certificate was verified against the host name
    assert connected == [PUBLIC]
    assert seen == ["/big.tif"]


def test_check_url_address_names_the_checked_address(monkeypatch) -> None:
    _resolver(monkeypatch, PUBLIC)
    checked = check_url_address(f"https://{HOST.upper()}:8443/scene/B4.tif", [HOST])
    assert checked == (f"https://{HOST.upper()}:8443/scene/B4.tif", HOST, 8443, PUBLIC)
    assert check_url_address(f"https://{HOST}/x.tif", [HOST]).port == 443


# ------------------------------------------------------------------- run-time re-check of a data path
def _swap_for_symlink_out_of_the_root(service, name: str) -> None:
    """Replace the data file ``name`` by a symlink to a valid copy of it outside the data root."""
    outside = service.data_root.parent / f"outside_{name}"
    shutil.copy(service.data_root / name, outside)
    (service.data_root / name).unlink()
    (service.data_root / name).symlink_to(outside)


def _final(service, job: str, token: str) -> dict:
    return service.client.get(f"/jobs/{job}", headers=auth(token)).json()


def test_a_file_swapped_for_a_symlink_while_queued_fails_the_job(service) -> None:
    ref, sec = write_pair(service.data_root, prefix="swapq_")
    token = service.add_user("swapper_q")
    job = service.submit("offsets", {"reference": ref, "secondary": sec, **OFFSETS}, token)
    _swap_for_symlink_out_of_the_root(service, ref)  # after the submission's check, before the run
    service.run_jobs()
    doc = _final(service, job, token)
    assert doc["status"] == "failed", doc
    assert "data root" in doc.get("message", ""), doc


def test_a_file_swapped_after_the_workers_check_is_caught_when_read(service, monkeypatch) -> None:
    # the worker re-validates inputs when it starts a job; the file may still change between that check and
    # the read: the runner resolves the path again (a plain join would read the file outside the root)
    import geodeform.service.worker as worker_module

    ref, sec = write_pair(service.data_root, prefix="swapr_")
    token = service.add_user("swapper_r")
    job = service.submit("offsets", {"reference": ref, "secondary": sec, **OFFSETS}, token)
    validate = worker_module.validate_inputs

    def validate_then_swap(*args, **kwargs):
        out = validate(*args, **kwargs)
        if not (service.data_root / ref).is_symlink():
            _swap_for_symlink_out_of_the_root(service, ref)
        return out

    monkeypatch.setattr(worker_module, "validate_inputs", validate_then_swap)
    service.run_jobs()
    doc = _final(service, job, token)
    assert (service.data_root / ref).is_symlink()  # the swap happened after the worker's check
    assert doc["status"] == "failed", doc
    assert "data root" in doc.get("message", ""), doc


# ----------------------------------------------------------------- unit checks of safety.py (mutation run)
# Each case pins a rule of the module at its boundary, so that the mutants of ``scripts/mutation.sh safety``
# (a limit off by one, a dropped condition, a changed default port...) fail a test.
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a" * 255, True),  # the longest name allowed
        ("a" * 256, False),
        ("/".join(["d" * 200] * 5) + "/" + "f" * 19, True),  # 1019 + 5 separators = 1024 bytes
        ("/".join(["d" * 200] * 5) + "/" + "f" * 20, False),  # 1025 bytes
        ("é" * 127 + "a", True),  # 255 bytes of UTF-8 (128 characters)
        ("é" * 128, False),  # 256 bytes of UTF-8
        ("two words.tif", True),  # a space is not a control character
        ("a\x7fb.tif", False),  # DEL
        ("a\x1fb.tif", False),
        ("a\\b.tif", False),
        ("~root/x.tif", False),
        ("/etc/passwd", False),
        ("a/../b.tif", False),
        ("", False),
        ("scene\udcff.tif", True),  # a name with an undecodable byte (surrogate escape) is a name
    ],
)
def test_check_relative_limits(value: str, ok: bool) -> None:
    if ok:
        assert str(check_relative(value)) == value
    else:
        with pytest.raises(InvalidInputError):
            check_relative(value)


def test_resolve_data_path_and_folder_search_the_roots_in_order(tmp_path: Path) -> None:
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for folder in (first, second / "sub", outside):
        folder.mkdir(parents=True)
    (second / "sub" / "b.tif").write_bytes(b"b")
    (first / "sub.tif").write_bytes(b"first")
    (second / "sub.tif").write_bytes(b"second")
    (outside / "secret.tif").write_bytes(b"secret")
    (first / "leak.tif").symlink_to(outside / "secret.tif")
    (first / "leakdir").symlink_to(outside)
    roots = [first, second]
    assert resolve_data_path("sub/b.tif", roots) == (second / "sub" / "b.tif").resolve()
    assert resolve_data_path("sub.tif", roots).read_bytes() == b"first"  # the first root wins
    assert resolve_data_folder("sub/", roots) == (second / "sub").resolve()
    assert resolve_data_folder("/", roots) == first.resolve()  # the root itself
    with pytest.raises(InvalidInputError, match="no file 'sub'"):
        resolve_data_path("sub", roots)  # a folder, not a file
    with pytest.raises(InvalidInputError, match=r"no folder 'sub\.tif'"):
        resolve_data_folder("sub.tif", roots)
    with pytest.raises(InvalidInputError, match="data root"):
        resolve_data_path("leak.tif", roots)
    with pytest.raises(InvalidInputError, match="data root"):
        resolve_data_folder("leakdir", roots)
    (second / "BOX").mkdir()
    (second / "two words").mkdir()
    assert resolve_data_folder("BOX/", roots) == (second / "BOX").resolve()
    assert resolve_data_folder("two words", roots) == (second / "two words").resolve()
    with pytest.raises(InvalidInputError, match="absolute paths are not allowed"):
        resolve_data_folder("/sub", roots)
    with pytest.raises(InvalidInputError, match=r"a folder name may not contain control characters \(NUL"):
        resolve_data_folder("sub\n", roots)
    with pytest.raises(InvalidInputError, match=r"'\.\.'"):
        resolve_data_path("sub/../sub.tif", roots)


def test_find_in_root_names_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InvalidInputError, match="cannot be read"):
        resolve_data_path("loop/x.tif", [tmp_path])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        (PUBLIC, True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("::ffff:93.184.216.34", True),  # IPv4-mapped: judged as its IPv4 address
        ("::ffff:10.0.0.1", False),
        ("224.0.1.1", False),  # global multicast (is_global alone says yes)
        ("ff0e::1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1: reserved (is_global alone says yes)
        ("fe80::1%eth0", False),  # link-local with a zone
        ("2001:db8::1%3", False),
        ("100.64.0.1", False),  # carrier-grade NAT
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"http://{HOST}/a.tif", "only https"),
        ("file:///etc/passwd", "'file'"),
        (f"//{HOST}/a.tif", r"'\(none\)'"),
        (f"https://user@{HOST}/a.tif", "^credentials in URLs are not allowed$"),
        (f"https://:secret@{HOST}/a.tif", "credentials in URLs are not allowed"),
        ("https:///a.tif", "^URL has no host$"),
        ("https://localhost/a.tif", "^URLs to loopback, private or link-local addresses are not allowed$"),
        ("https://tiles.localhost/a.tif", "URLs to loopback"),
        ("https://127.0.0.1/a.tif", "URLs to loopback"),
        ("https://[::1]/a.tif", "URLs to loopback"),
        ("https://10.0.0.1/a.tif", "URLs to loopback"),
        (f"https://{PUBLIC}/a.tif", "not a configured catalogue host"),
        ("https://other.example.org/a.tif", "not a configured catalogue host"),
        (f"https://{HOST}:99999/a.tif", "not a valid URL"),
    ],
)
def test_check_url_refuses(monkeypatch, url: str, words: str) -> None:
    _resolver(monkeypatch, PUBLIC)
    with pytest.raises(InvalidInputError, match=words):
        check_url(url, [HOST])


def test_check_url_accepts_any_case_and_names_unresolvable_hosts(monkeypatch) -> None:
    _resolver(monkeypatch, PUBLIC)
    assert check_url(f"HTTPS://{HOST}/a.tif", [HOST.upper()]) == f"HTTPS://{HOST}/a.tif"
    assert check_url(f"https://{PUBLIC}/a.tif", [PUBLIC]) == f"https://{PUBLIC}/a.tif"  # a public literal

    def fail(host, port, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(InvalidInputError, match="does not resolve"):
        check_url(f"https://{HOST}/a.tif", [HOST])
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])
    with pytest.raises(InvalidInputError, match="non-public"):
        check_url(f"https://{HOST}/a.tif", [HOST])


def test_check_url_asks_the_resolver_for_the_urls_port_over_tcp(monkeypatch) -> None:
    asked = []

    def resolver(host, port, *args, **kwargs):
        asked.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    check_url(f"https://{HOST}:8443/a.tif", [HOST])
    check_url(f"https://{HOST}/a.tif", [HOST])
    assert asked == [(HOST, 8443), (HOST, 443)]


def test_a_failed_download_names_the_url_and_leaves_no_file(routed, tmp_path: Path) -> None:
    port, _ = routed
    dest = tmp_path / "a.tif"
    url = f"https://{HOST}:{port + 1 if port < 65535 else port - 1}/big.tif"  # nothing listens there
    with pytest.raises(DataError, match=f"could not fetch {url}"):
        fetch_url(url, dest, hosts=[HOST], max_bytes=10_000)
    assert not dest.exists()


# ------------------------------------------------------------------ unit checks of paths.py (mutation run)
def _scope(tmp_path: Path) -> tuple[DataScope, Path, Path, Path]:
    root, outside = tmp_path / "data", tmp_path / "outside"
    uploads, job = root / "users" / "u1", tmp_path / "jobs" / "j1"
    for folder in (root / "sub", uploads, job, outside):
        folder.mkdir(parents=True)
    (root / "sub" / "a.tif").write_bytes(b"a")
    (uploads / "mine.tif").write_bytes(b"mine")
    (job / "velocity.tif").write_bytes(b"v")
    (outside / "secret.tif").write_bytes(b"s")
    (uploads / "leak.tif").symlink_to(outside / "secret.tif")
    scope = DataScope(roots=(root.resolve(),), uploads=uploads.resolve(),
                      job_dir=lambda job_id: job.resolve() if job_id == "j1" else None)  # fmt: skip
    return scope, root.resolve(), uploads.resolve(), job.resolve()


def test_resolve_input_reads_roots_uploads_and_own_jobs(tmp_path: Path) -> None:
    scope, root, uploads, job = _scope(tmp_path)
    assert resolve_input("sub/a.tif", scope) == root / "sub" / "a.tif"
    assert resolve_input("uploads/mine.tif", scope) == uploads / "mine.tif"
    assert resolve_input("jobs/j1/velocity.tif", scope) == job / "velocity.tif"
    assert resolve_input("sub/", scope, kind="folder") == root / "sub"
    assert resolve_input("uploads", scope, kind="folder") == uploads
    assert resolve_input("jobs/j1/", scope, kind="folder") == job


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        ("uploads/leak.tif", "file", "data root"),  # a symlink out of the uploads
        ("uploads/none.tif", "file", "no file 'uploads/none.tif' in your uploads"),
        ("jobs", "file", "no successful job ''"),
        ("jobs/j2/velocity.tif", "file", "no successful job 'j2'"),
        ("jobs/j1", "file", "names a folder, not a file"),
        ("uploads", "file", "names a folder, not a file"),
        ("jobs/j1/none.tif", "file", "in the outputs of job j1"),
        ("sub/a.tif", "folder", "no folder 'sub/a.tif' in the data roots"),
        ("sub", "file", "no file 'sub' in the data roots"),
        ("<VRTDataset>", "file", "GDAL connection string"),
        ("/vsizip/a.zip/b.tif", "file", "GDAL connection string"),
        ("NETCDF:v.nc:vx", "file", "GDAL connection string"),
        ("https://stac.example.org/a.tif", "file", "URL"),
    ],
)
def test_resolve_input_refuses(tmp_path: Path, value: str, kind: str, words: str) -> None:
    scope, *_ = _scope(tmp_path)
    with pytest.raises(InvalidInputError, match=re.escape(words)):
        resolve_input(value, scope, kind=kind)


def test_resolve_input_without_uploads_finds_no_upload(tmp_path: Path) -> None:
    scope, *_ = _scope(tmp_path)
    bare = DataScope(roots=scope.roots)
    with pytest.raises(InvalidInputError, match="in your uploads"):
        resolve_input("uploads/mine.tif", bare)
    with pytest.raises(InvalidInputError, match="no successful job 'j1'"):
        resolve_input("jobs/j1/velocity.tif", bare)


def test_path_mask_shows_public_names_only(tmp_path: Path) -> None:
    scope, root, uploads, job = _scope(tmp_path)
    mask = scope.mask({job: ".", job.parent: "jobs"})
    # the uploads folder lies inside the data root: the deepest folder is replaced first
    assert mask(f"cannot read {uploads}/mine.tif") == "cannot read uploads/mine.tif"
    assert mask(f"cannot read {root}/sub/a.tif") == "cannot read sub/a.tif"
    assert (
        mask(f"wrote {job}/velocity.tif and {job.parent}/j2/x.tif")
        == "wrote ./velocity.tif and jobs/j2/x.tif"
    )
    assert mask(f"no folder {root}") == "no folder ."
    assert mask(f"no folder {uploads}, sorry") == "no folder uploads, sorry"
    # a folder whose name only starts like a masked one is left alone (and says nothing of the root)
    assert mask(f"see {root}2/x and {root}-old") == f"see {root}2/x and {root}-old"
    # "/" or "" is never masked (that would rewrite every path), and the folders after it still are
    everything = PathMask((("/", ""), ("", "x"), (str(root), "")))
    assert (
        everything(f"cannot write / (read-only): {root}/sub/a.tif") == "cannot write / (read-only): sub/a.tif"
    )
