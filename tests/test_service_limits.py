"""Per-job limits enforced while a job runs, in-process with real job processes: the memory cap, the wall
time, a dismissal that stops a running job at once; and other jobs still run afterwards."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from _service_helpers import auth, write_pair
from geodeform.demo import load_texture
from geodeform.service.settings import MiB
from geodeform.service.worker import Worker

pytestmark = pytest.mark.slow  # real job processes on images of a few thousand pixels

SMALL = {"chip": 16, "step": 16, "search": 4}


@pytest.fixture(scope="module")
def service_settings():
    return {"max_job_memory_bytes": 200 * MiB, "max_nodes_per_pair": 10**9, "max_nodes_per_job": 10**9}


@pytest.fixture(scope="module")
def svc(service):
    ref, sec = write_pair(service.data_root)
    tex = load_texture().astype(np.float32)
    big = np.tile(tex, (6, 6))  # 3456 x 3456 px of real texture, 48 MB per image as float32
    profile = dict(
        driver="GTiff",
        width=big.shape[1],
        height=big.shape[0],
        count=1,
        dtype="float32",
        crs="EPSG:32607",
        transform=from_origin(350000.0, 6700000.0, 10.0, 10.0),
    )
    for name, shift in (("big_20200106.tif", 0), ("big_20200205.tif", 2)):
        with rasterio.open(service.data_root / name, "w", **profile) as dst:
            dst.write(np.roll(big, shift, axis=1), 1)
    token = service.add_user("alice")
    return service, token, {"reference": ref, "secondary": sec, **SMALL}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_job_over_the_memory_cap_fails_with_that_reason_and_others_still_run(svc):
    service, token, small = svc
    heavy = {"reference": "big_20200106.tif", "secondary": "big_20200205.tif", "chip": 64, "step": 2}
    doc = service.run("offsets", {**heavy, "search": 64}, token)
    assert doc["status"] == "failed", doc
    assert "max_job_memory_bytes" in doc["message"] and "200 MiB" in doc["message"], doc["message"]
    job = service.store.get_job(doc["jobID"])
    assert job.attempts == 1  # not retried
    assert service.client.get("/conformance").status_code == 200
    assert service.run("offsets", small, token)["status"] == "successful"


def test_a_job_over_the_wall_time_fails_with_that_reason(svc):
    service, token, _ = svc
    job_id = service.submit(
        "offsets", {"reference": "big_20200106.tif", "secondary": "big_20200205.tif", "step": 8}, token
    )
    # Only the wall time may stop it: the module's 200 MiB cap is for the memory test (a 3456 px pair at
    # step 8 can reach it before one second has passed).
    settings = dataclasses.replace(service.settings, max_job_seconds=1.0, max_job_memory_bytes=4096 * MiB)
    worker = Worker(settings, name="short-worker")
    try:
        assert worker.run_one()
    finally:
        worker.store.close()
    doc = service.client.get(f"/jobs/{job_id}", headers=auth(token)).json()
    assert doc["status"] == "failed" and "max_job_seconds" in doc["message"], doc
    assert service.store.get_job(job_id).attempts == 1


def test_dismissing_a_running_job_stops_its_process(svc):
    service, token, _ = svc
    slow = {"reference": "big_20200106.tif", "secondary": "big_20200205.tif", "step": 4, "search": 32}
    job_id = service.submit("offsets", slow, token)
    worker = Worker(dataclasses.replace(service.settings, heartbeat_s=0.2), name="dismiss-worker")
    runner = threading.Thread(target=worker.run_one)
    runner.start()
    deadline = time.monotonic() + 120
    while (pid := worker.job_pid) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid is not None, "the job process never started"
    time.sleep(1.0)  # well into its work
    d = service.client.delete(f"/jobs/{job_id}", headers=auth(token))
    assert d.status_code == 200
    runner.join(60)  # the job alone would run for minutes: the worker ends it at its next heartbeat
    worker.store.close()
    assert not runner.is_alive() and not _alive(pid)
    doc = service.client.get(f"/jobs/{job_id}", headers=auth(token)).json()
    assert doc["status"] == "dismissed" and not (service.jobs_dir / job_id).exists()
