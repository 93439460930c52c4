"""Shared pieces of the web service tests: real `geodeform serve` processes, accounts, GeoTIFF pairs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from _cli import cli

PG_DSN = os.environ.get("GEODEFORM_TEST_PG_DSN", "")
FINAL = {"successful", "failed", "dismissed"}


def reset_pg(dsn: str) -> None:
    """Empty the PostgreSQL test database (tables of a previous run included)."""
    import sqlalchemy as sa

    from geodeform.service.store import make_engine

    engine = make_engine(dsn)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS jobs, users, alembic_version CASCADE"))
    engine.dispose()


def db_url(kind: str, tmp: Path) -> str:
    """A fresh, empty store of ``kind`` (``sqlite`` or ``postgresql``; the latter skips without a server)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'service.db'}"
    if not PG_DSN:
        pytest.skip("GEODEFORM_TEST_PG_DSN not set (PostgreSQL is started by scripts/test.sh)")
    reset_pg(PG_DSN)
    return PG_DSN


def write_pair(root: Path, *, size: int = 96, prefix: str = "") -> tuple[str, str]:
    """Two small georeferenced GeoTIFFs of the glacier demo (30 days apart) in ``root``; relative names."""
    from geodeform.cli.demo import _write_geotiff
    from geodeform.demo import make_glacier_pair

    pair = make_glacier_pair()
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
    from geodeform.service.store import JobStore, migrate

    migrate(db)
    store = JobStore(db)
    try:
        return [store.add_user(name) for name in names]
    finally:
        store.close()


@dataclass
class Server:
    """A running ``geodeform serve`` (subprocess) on 127.0.0.1."""

    db: str
    data_root: Path
    jobs_dir: Path
    args: tuple[str, ...] = ()
    workers: int = 2
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        """Start and wait until the landing page answers."""
        self.log = self.jobs_dir.parent / f"serve-{self.port}.log"
        cmd = [
            sys.executable,
            "-c",
            "from geodeform.cli import main; main()",
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
            time.sleep(0.2)
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
        time.sleep(0.2)
