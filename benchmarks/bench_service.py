"""Web service benchmark: latency of ``GET /jobs`` with 10 000 jobs in the store, on SQLite and PostgreSQL.

    python benchmarks/bench_service.py                       # SQLite (temporary file)
    python benchmarks/bench_service.py --db postgresql://postgres@127.0.0.1:PORT/geodeform_service

The store gets ``--jobs`` jobs (default 10 000) spread over 10 users, 90 % of them owned by one user; a real
``geodeform serve`` (no workers) answers on 127.0.0.1 and one client measures each request sequentially:
first page, page 50 (offset 500), 100 per page, admin view of everyone's jobs, status filter. Prints p50 /
p95 / max in milliseconds. A PostgreSQL database given with ``--db`` is emptied first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(db: str, n_jobs: int) -> dict[str, str]:
    from geodeform.service.store import Job, JobStore, make_engine, migrate

    if db.startswith("postgres"):
        engine = make_engine(db)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS jobs, users, alembic_version CASCADE"))
        engine.dispose()
    migrate(db)
    store = JobStore(db)
    tokens = {f"user{i}": store.add_user(f"user{i}") for i in range(10)}
    tokens["admin"] = store.add_user("admin", role="admin")
    ids = {name: store.user_for_token(tok).id for name, tok in tokens.items()}
    t0 = dt.datetime(2026, 1, 1)
    statuses = ("successful", "failed", "dismissed", "accepted", "running")
    rows = []
    for i in range(n_jobs):
        owner = "user0" if i % 10 else f"user{1 + i % 9}"
        created = t0 + dt.timedelta(seconds=i)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "user_id": ids[owner],
                "process_id": "offsets",
                "status": statuses[i % 5],
                "progress": 100,
                "message": "finished",
                "inputs": json.dumps({"reference": "a.tif", "secondary": "b.tif", "chip": 32}),
                "results": json.dumps({"netcdf": {"name": "offsets.nc", "type": "application/x-netcdf"}}),
                "created": created,
                "updated": created,
                "attempts": 1,
                "dismiss_requested": False,
            }
        )
    with store.session() as s:
        s.execute(sa.insert(Job), rows)
    store.close()
    return tokens


def _measure(client: httpx.Client, path: str, token: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path, headers={"Authorization": f"Bearer {token}"})
        times.append(time.perf_counter() - t)
        r.raise_for_status()
    return times


def main() -> None:
    """Fill a store, serve it, time ``GET /jobs`` variants and print p50 / p95 / max."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--db", default=None, help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    db = args.db or f"sqlite:///{tmp / 'bench.db'}"
    t = time.perf_counter()
    tokens = _fill(db, args.jobs)
    print(f"store: {db.split('@')[-1]}  {args.jobs} jobs inserted in {time.perf_counter() - t:.1f} s")
    port = _free_port()
    cmd = [sys.executable, "-c", "from geodeform.cli import main; main()", "serve", "--port", str(port)]
    cmd += ["--db", db, "--workers", "0", "--jobs-dir", str(tmp / "jobs"), "--log-level", "warning"]
    server = subprocess.Popen(cmd, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/conformance").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        cases = [
            ("first page (limit 10), 9 000-job user", "/jobs", "user0"),
            ("page 51 (offset 500)", "/jobs?limit=10&offset=500", "user0"),
            ("100 per page", "/jobs?limit=100", "user0"),
            ("status filter", "/jobs?status=failed&limit=10", "user0"),
            ("admin, all 10 000 jobs", "/jobs?limit=10", "admin"),
            ("small user (111 jobs)", "/jobs", "user3"),
        ]
        print(f"{'GET /jobs':42s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
        with httpx.Client(base_url=base, timeout=30) as client:
            for label, path, who in cases:
                _measure(client, path, tokens[who], 5)  # warm-up
                times = sorted(_measure(client, path, tokens[who], args.repeat))
                p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
                print(f"{label:42s} {1e3 * p50:8.1f} {1e3 * p95:8.1f} {1e3 * times[-1]:8.1f}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
