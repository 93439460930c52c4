"""Jobs on real distributed engines: an existing Dask cluster (by address or scheduler file) and a real
single-node SLURM (``scripts/services.d/slurm.sh``: slurmctld + slurmd on localhost), end to end from the CLI
and from the service's ``--compute``, with the faults a cluster has: a worker job cancelled mid-run, the job's
own process killed mid-run, a partition that does not exist, too little memory.

The SLURM tests need ``SLURM_CONF`` (``bash scripts/test.sh`` starts a SLURM and sets it): inside the test
command a SLURM that does not answer fails them; under plain pytest they skip and say why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

from distributed import Client

from _cluster import shifted_job
from _service_helpers import Server, add_users, auth, db_url, running, wait_final
from geodeform.config import load_config
from geodeform.errors import InvalidInputError
from geodeform.workflows import run_job

pytestmark = pytest.mark.slow

MAIN = (sys.executable, "-c", "from geodeform.cli import main; main()")
PARTITION = os.environ.get("GEODEFORM_TEST_SLURM_PARTITION", "debug")


def _slurm_problem() -> str | None:
    """Why no SLURM answers here (None when ``sinfo`` does)."""
    why = os.environ.get("GEODEFORM_TEST_SLURM_UNAVAILABLE")  # written by scripts/services.d/slurm.sh
    if why:
        return f"scripts/services.d/slurm.sh could not start SLURM: {why}"
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set: run the tests with bash scripts/test.sh, which starts a SLURM"
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH (Debian package slurm-client)"
    done = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, check=False, timeout=30)
    return None if done.returncode == 0 else f"sinfo fails: {done.stderr.strip()}"


@pytest.fixture
def needs_slurm() -> None:
    """Inside the test command (``GEODEFORM_TEST_ENV`` set by scripts/test.sh) a SLURM that does not answer
    fails the test: the command promised one. Elsewhere (plain pytest) the test skips, saying why."""
    problem = _slurm_problem()
    if problem is None:
        return
    if os.environ.get("GEODEFORM_TEST_ENV"):
        pytest.fail(f"no SLURM in the test command: {problem}", pytrace=False)
    pytest.skip(f"SLURM TESTS NOT RUN: {problem}")


def _slurm(name: str, **more: object) -> dict:
    slurm = {"queue": PARTITION, "cores": 1, "memory": "1GB", "jobs": 2, "walltime": "00:10:00"}
    return {"cluster": "slurm", "slurm": {**slurm, "start_timeout": 120, **more}}


def _our_jobs(name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "--name", f"geodeform-{name}", "-o", "%i"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out.split()


@pytest.fixture
def cleanup_jobs() -> Iterator[list[str]]:
    """Names of this test's jobs; their SLURM jobs left in the queue are cancelled afterwards (by name)."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["scancel", "--name", f"geodeform-{name}"], check=False)


def _products(run: Path) -> list[Path]:
    return sorted((run / "pairs").glob("*.nc"))


def _wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode})")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# an existing Dask cluster ---------------------------------------------------------------------------------


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Dask scheduler and one worker started outside geodeform (as someone else's cluster would be)."""
    sched_file = tmp_path / "scheduler.json"
    py = (sys.executable, "-m")
    scheduler = subprocess.Popen(
        [*py, "distributed.cli.dask_scheduler", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
         "--port", "0", "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        _wait_for(sched_file.is_file, 60)
        worker = subprocess.Popen(
            [*py, "distributed.cli.dask_worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
             "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        address = json.loads(sched_file.read_text())["address"]
        yield address, sched_file
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(30)


def test_job_on_an_existing_dask_cluster_never_closes_it(dask_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, sched_file = dask_cluster
    data = shifted_job(tmp_path / "in", "on-dask", 4)
    config = load_config({**data, "compute": {"cluster": "address", "address": address}})
    result = run_job(config, tmp_path / "run")
    assert len(result.pairs) == 6 and all(p.status == "ok" for p in result.pairs)
    log = (tmp_path / "run" / "run.log").read_text()
    assert f"on the Dask cluster at {address}, 1 worker(s)" in log
    with Client(address, timeout=30) as client:  # still there, with its worker: geodeform did not own it
        assert len(client.scheduler_info()["workers"]) == 1
    # the same cluster through its scheduler file: the rerun reuses every pair
    config = load_config({**data, "compute": {"cluster": "address", "scheduler_file": str(sched_file)}})
    again = run_job(config, tmp_path / "run")
    assert again.pairs_reused == 6 and again.pairs_computed == 0


# SLURM ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("needs_slurm")
def test_slurm_settings_that_cannot_work_stop_before_any_job(tmp_path: Path, cleanup_jobs) -> None:  # type: ignore[no-untyped-def]
    name = f"bad-{os.getpid()}"
    data = shifted_job(tmp_path / "in", name, 3)
    cleanup_jobs.append(name)
    config = load_config({**data, "compute": _slurm(name, queue="no-such-partition")})
    with pytest.raises(InvalidInputError, match="partition 'no-such-partition' does not exist"):
        run_job(config, tmp_path / "run1")
    config = load_config({**data, "compute": _slurm(name, memory="50MB")})
    with pytest.raises(
        InvalidInputError, match=r"one pair needs about \d+\.\d+ GiB: set compute\.slurm\.memory"
    ):
        run_job(config, tmp_path / "run2")
    assert _our_jobs(name) == []  # nothing was submitted


@pytest.mark.usefixtures("needs_slurm")
def test_cli_run_on_slurm_killed_mid_run_then_resumed(tmp_path: Path, cleanup_jobs) -> None:  # type: ignore[no-untyped-def]
    name = f"cli-{os.getpid()}"
    cleanup_jobs.append(name)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(shifted_job(tmp_path / "in", name, 5, compute=_slurm(name))))
    run = tmp_path / "run"
    command = [*MAIN, "run", str(job), "-o", str(run), "--cluster", "slurm"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for(lambda: len(_products(run)) >= 2, 180, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the job's own process dies mid-run
        proc.wait()
    subprocess.run(["scancel", "--name", f"geodeform-{name}"], check=False)  # its orphaned worker jobs
    kept = len(_products(run))
    assert not list(run.rglob("*.tmp"))  # nothing half-written
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    log = (run / "run.log").read_text()
    assert "SLURM via dask-jobqueue, 2 job(s) x 1 core(s)" in log
    computed, reused, failed = _counts(done.stderr)
    assert failed == 0 and computed + reused == 10 and reused >= kept >= 2
    assert list((run / "slurm-logs").glob("*.err"))  # the worker jobs' own logs, in the run folder


@pytest.mark.usefixtures("needs_slurm")
def test_cancelled_slurm_worker_job_loses_no_pair(tmp_path: Path, cleanup_jobs) -> None:  # type: ignore[no-untyped-def]
    name = f"cancel-{os.getpid()}"
    cleanup_jobs.append(name)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(shifted_job(tmp_path / "in", name, 6, compute=_slurm(name))))
    run = tmp_path / "run"
    proc = subprocess.Popen([*MAIN, "run", str(job), "-o", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for(lambda: len(_products(run)) >= 1, 180, proc)
    jobs = _our_jobs(name)
    assert len(jobs) == 2
    subprocess.run(["scancel", jobs[0]], check=True)  # one worker job cancelled mid-run
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    computed, reused, failed = _counts(err)
    # The pair in flight on the cancelled job (one thread) may have written its product before the cancel
    # and be taken up again by the other worker, which then reuses that product: at most one reuse.
    assert failed == 0 and computed + reused == 15 and reused <= 1 and len(_products(run)) == 15
    assert "worker" in (run / "run.log").read_text().lower()


@pytest.mark.usefixtures("needs_slurm")
def test_service_compute_sends_preset_jobs_to_slurm(tmp_path: Path, cleanup_jobs) -> None:  # type: ignore[no-untyped-def]
    """``geodeform serve --compute FILE`` with a SLURM section: a preset job's pairs run as SLURM jobs."""
    name = f"service-{os.getpid()}"  # test runs sharing the SLURM cancel their own jobs only
    cleanup_jobs.append(name)
    data = tmp_path / "data"
    job = shifted_job(data, name, 2)
    compute = tmp_path / "compute.yaml"
    compute.write_text(yaml.safe_dump(_slurm(name, jobs=1)))  # one pair: one worker job is enough
    db = db_url("sqlite", tmp_path)
    (token,) = add_users(db, "alice")
    inputs = [{"path": Path(i["path"]).name, "date": i["date"]} for i in job["inputs"]]
    body = {k: v for k, v in job.items() if k not in ("name", "preset", "inputs")}
    server = Server(
        db=db, data_root=data, jobs_dir=tmp_path / "jobs", workers=1, args=("--compute", str(compute))
    )
    with running(server), httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post(
            "/processes/ice/execution", json={"inputs": {**body, "inputs": inputs}}, headers=auth(token)
        )
        assert r.status_code == 201, r.text
        doc = wait_final(c, r.headers["Location"], token, timeout=240)
        assert doc["status"] == "successful", doc
    logs = list((tmp_path / "jobs").rglob("run.log"))
    assert logs and "SLURM via dask-jobqueue" in logs[0].read_text()
    assert list((tmp_path / "jobs").rglob("slurm-logs/*.err"))


def _counts(stderr: str) -> tuple[int, int, int]:
    """(computed, reused, failed) from the last line ``geodeform run`` prints."""
    found = re.search(r"(\d+) pairs computed, (\d+) reused, (\d+) failed", " ".join(stderr.split()))
    assert found, stderr
    computed, reused, failed = (int(g) for g in found.groups())
    return computed, reused, failed
