"""Shared pieces of the web service tests: the app in-process, real `geodeform serve` processes, accounts,
GeoTIFF pairs.

Most tests use :class:`InProcessService` (the ``service`` fixture of ``conftest.py``): the application on a
temporary SQLite store behind a ``TestClient``, with jobs run by a real
:class:`~geodeform.service.worker.Worker` in the test's process. :class:`Server` (a ``geodeform serve``
subprocess with worker processes) is kept for what needs processes: kills, restarts, dismissal of a running
worker, the browser and the console script.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
import trustme
import uvicorn
from fastapi.testclient import TestClient

from _cli import cli
from geodeform.cli.demo import _write_geotiff
from geodeform.demo import DemoPair, make_glacier_pair
from geodeform.service.app import create_app
from geodeform.service.notify import deliver_due
from geodeform.service.settings import ServiceSettings
from geodeform.service.store import JobStore, make_engine, migrate, normalise_db_url
from geodeform.service.worker import Worker

PG_DSN = os.environ.get("GEODEFORM_TEST_PG_DSN", "")
FINAL = {"successful", "failed", "dismissed"}
_PG_OWN: list[str] = []  # the database of this test process, once made (see _own_pg_database)


def _own_pg_database(dsn: str) -> str:
    """A database of this test process only, next to ``dsn``'s on the same server: ``<name>_<pid>``, made on
    first use and dropped when the process exits.

    Two test processes (pytest-xdist's workers, or two test runs sharing the services) each empty their
    database before a test; on one shared database they would drop each other's tables mid-test."""
    if _PG_OWN:
        return _PG_OWN[0]
    url = sa.engine.make_url(normalise_db_url(dsn))
    name = f"{url.database}_{os.getpid()}"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))  # a pid reused since
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()

    def drop() -> None:
        engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    atexit.register(drop)
    _PG_OWN.append(url.set(database=name).render_as_string(hide_password=False))
    return _PG_OWN[0]


def reset_pg(dsn: str) -> None:
    """Empty the PostgreSQL test database (tables of a previous run included)."""
    engine = make_engine(dsn)
    with engine.begin() as conn:
        # Every table of the schema, whatever migrations created them (not a fixed list that goes stale).
        names = sa.inspect(conn).get_table_names()
        if names:
            conn.execute(sa.text("DROP TABLE IF EXISTS " + ", ".join(f'"{n}"' for n in names) + " CASCADE"))
    engine.dispose()


def db_url(kind: str, tmp: Path) -> str:
    """A fresh, empty store of ``kind`` (``sqlite`` or ``postgresql``; the latter skips without a server)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'service.db'}"
    if not PG_DSN:
        pytest.skip("GEODEFORM_TEST_PG_DSN not set (PostgreSQL is started by scripts/test.sh)")
    dsn = _own_pg_database(PG_DSN)
    reset_pg(dsn)
    return dsn


@functools.cache
def _glacier_pair() -> DemoPair:
    """The glacier demo pair, built once per test process (about 1 CPU-s each time), read-only."""
    pair = make_glacier_pair()
    for image in (pair.reference, pair.secondary):
        image.flags.writeable = False
    return pair


def write_pair(root: Path, *, size: int = 96, prefix: str = "") -> tuple[str, str]:
    """Two small georeferenced GeoTIFFs of the glacier demo (30 days apart) in ``root``; relative names."""
    pair = _glacier_pair()
    ref, sec = f"{prefix}LC08_20200106_B4.tif", f"{prefix}LC08_20200205_B4.tif"
    _write_geotiff(root / ref, np.ascontiguousarray(pair.reference[:size, :size]), "2020-01-06")
    _write_geotiff(root / sec, np.ascontiguousarray(pair.secondary[:size, :size]), "2020-02-05")
    return ref, sec


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_user(db: str, name: str, *, admin: bool = False) -> str:
    """``geodeform users add``: the token is the last line of its output."""
    res = cli("users", "add", name, "--db", db, *(["--admin"] if admin else []))
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def add_users(db: str, *names: str) -> list[str]:
    """Accounts created straight in the store (faster than one CLI process each); their tokens."""
    migrate(db)
    store = JobStore(db)
    try:
        return [store.add_user(name) for name in names]
    finally:
        store.close()


class Receiver:
    """An HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it; the first ``fail`` answers 500."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[tuple[str, dict, dict]] = []
        self.fail = fail
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                else:
                    outer.received.append((self.path, body, dict(self.headers)))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[dict]:
        return [body for p, body, _ in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Server:
    """A running ``geodeform serve`` (subprocess) on 127.0.0.1."""

    db: str
    data_root: Path
    jobs_dir: Path
    args: tuple[str, ...] = ()
    workers: int = 2
    # --poll: an idle worker looks at the queue, and serve reaps and notifies, every `poll` s. The default
    # 0.5 s: shorter, jobs start ~0.15 s sooner on average, but each look is a store query (~2 ms CPU):
    # an idle server with two workers took ~2 % of a core at 0.5 s, ~8 % at 0.1 s, and the servers of
    # the suite live for minutes on a 2-core machine whose other tests need that CPU.
    poll: float = 0.5
    command: tuple[str, ...] = (sys.executable, "-c", "from geodeform.cli import main; main()")
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    returncode: int | None = None  # of the last stop (-9: killed after the SIGTERM's grace period)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        """Start and wait until the landing page answers."""
        self.log = self.jobs_dir.parent / f"serve-{self.port}.log"
        cmd = [
            *self.command,
            "serve",
            "--port",
            str(self.port),
            "--db",
            self.db,
            "--workers",
            str(self.workers),
            "--jobs-dir",
            str(self.jobs_dir),
            "--data-root",
            str(self.data_root),
            "--log-level",
            "warning",
            "--poll",
            str(self.poll),
            *self.args,
        ]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"geodeform serve exited:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/conformance", timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"geodeform serve did not answer:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM (workers hand their jobs back), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.returncode = self.proc.returncode
            with contextlib.suppress(ProcessLookupError):  # workers left behind, if any: not ours to keep
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (children of the server)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server`` and stop it afterwards."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


def auth(token: str) -> dict[str, str]:
    """Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


def wait_final(client: httpx.Client, job_url: str, token: str, timeout: float = 120.0) -> dict:
    """Poll a job until it is successful, failed or dismissed; its last status document."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(job_url, headers=auth(token))
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["status"] in FINAL or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


@dataclass
class InProcessService:
    """The application in this process on its own store, a ``TestClient`` on it, and a way to run its jobs.

    Attributes
    ----------
    settings
        The app's settings (resolved folders under a temporary folder).
    store
        The app's job store (users are made straight in it: :meth:`add_user`).
    client
        ``TestClient`` of the app (base URL ``http://testserver``).
    """

    settings: ServiceSettings
    store: JobStore
    client: TestClient

    @property
    def data_root(self) -> Path:
        """The (only) data root: write the test's input files here."""
        return self.settings.data_roots[0]

    @property
    def jobs_dir(self) -> Path:
        """Folder of the jobs' outputs."""
        return self.settings.jobs_dir

    def add_user(self, name: str, *, admin: bool = False, email: str | None = None) -> str:
        """A new account in the store; its token."""
        return self.store.add_user(name, role="admin" if admin else "user", email=email)

    def deliver(self) -> int:
        """Send the notifications that are due (webhooks, e-mail); how many were sent."""
        return deliver_due(self.store, self.settings)

    def run_jobs(self) -> int:
        """Run every queued job to its end with a real worker, in this process; how many ran."""
        worker = Worker(self.settings, name="test-worker")
        ran = 0
        try:
            while worker.run_one():
                ran += 1
        finally:
            worker.store.close()
        return ran

    def submit(self, process: str, inputs: dict[str, Any], token: str, **request: Any) -> str:
        """Submit a job (must answer 201); its id. ``request``: more of the execute request (outputs...)."""
        body = {"inputs": inputs, **request}
        r = self.client.post(f"/processes/{process}/execution", json=body, headers=auth(token))
        assert r.status_code == 201, r.text
        return str(r.json()["jobID"])

    def run(self, process: str, inputs: dict[str, Any], token: str, **request: Any) -> dict[str, Any]:
        """Submit a job, run the queue, and return the job's final status document."""
        job_id = self.submit(process, inputs, token, **request)
        self.run_jobs()
        doc: dict[str, Any] = self.client.get(f"/jobs/{job_id}", headers=auth(token)).json()
        return doc


@contextlib.contextmanager
def in_process_service(tmp: Path, db: str | None = None, **settings: Any) -> Iterator[InProcessService]:
    """An :class:`InProcessService` on a new SQLite store under ``tmp`` (or on ``db``), data root
    ``tmp/data``; ``settings`` override :class:`ServiceSettings` fields."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    db = db or f"sqlite:///{tmp / 'service.db'}"
    migrate(db)
    resolved = ServiceSettings(db=db, jobs_dir=tmp / "jobs", data_roots=(data,), **settings).resolved()
    resolved.jobs_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(db)
    try:
        with TestClient(create_app(resolved, store=store)) as client:
            yield InProcessService(resolved, store, client)
    finally:
        store.close()


@contextlib.contextmanager
def served_over_http(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 from a thread of this process (for HTTP clients that cannot
    use a ``TestClient``); its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


# --- catalogue hosts for the download tests: a name that resolves to a chosen address, served locally -----


def resolve_host(monkeypatch: pytest.MonkeyPatch, host: str, *addresses: str) -> None:
    """Make ``host`` resolve to ``addresses`` (IPv4 or IPv6; no DNS at test time); other names as usual."""
    real = socket.getaddrinfo

    def fake(name, port, *args, **kwargs):
        if str(name).lower() != host:
            return real(name, port, *args, **kwargs)
        out = []
        for addr in addresses:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port or 443, 0, 0) if family == socket.AF_INET6 else (addr, port or 443)
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@contextlib.contextmanager
def tls_server(host: str, handler: Any, folder: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 running ``handler`` with a certificate for ``host`` from a test CA
    (``trustme``, its certificate written to ``folder``); (port, CA file)."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(ctx)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, ca_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def route_to_local(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], ca_file: Path) -> None:
    """Connections to ``names`` (host names or addresses) reach 127.0.0.1 on the same port, and the test
    CA in ``ca_file`` is trusted: a :func:`tls_server` answers for them."""
    real = socket.create_connection

    def connect(address, *args, **kwargs):
        if str(address[0]).lower() in names:
            return real(("127.0.0.1", address[1]), *args, **kwargs)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
