"""geodeform.parallel and the job's guards around it: bad cluster settings, memory and disk (fast tier).

The real clusters (SLURM, an existing Dask scheduler) are exercised end to end in tests/test_cluster.py.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("distributed")


from _cluster import shifted_job
from geodeform.config import load_config
from geodeform.errors import InvalidInputError
from geodeform.io import DiskFullError, atomic_output
from geodeform.parallel import ClusterError, Executor, executor
from geodeform.workflows import run_job


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small real job (three dated, shifted images; three pairs) as a config mapping."""
    return shifted_job(tmp_path_factory.mktemp("tiny"), "tiny", 3)


def test_unreachable_scheduler_is_a_clear_error_before_anything_runs(demo_job: dict, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with pytest.raises(ClusterError, match=r"no Dask scheduler answers at tcp://127\.0\.0\.1") as err:
        with executor("address", address=address, connect_timeout=1):
            pass
    assert isinstance(err.value, ConnectionError)
    config = load_config(
        {**demo_job, "compute": {"cluster": "address", "address": address, "connect_timeout": 1}}
    )
    with pytest.raises(ClusterError, match="check the address"):
        run_job(config, tmp_path / "run")
    assert not list((tmp_path / "run" / "pairs").glob("*.nc"))  # nothing half-written, nothing matched
    with pytest.raises(InvalidInputError, match="scheduler_file"):
        with executor("address", scheduler_file=str(tmp_path / "none.json")):
            pass


def test_address_cluster_needs_exactly_one_target(demo_job: dict) -> None:
    with pytest.raises(InvalidInputError, match=r"exactly one of compute\.address"):
        load_config({**demo_job, "compute": {"cluster": "address"}})
    with pytest.raises(InvalidInputError, match=r"compute\.address"):
        load_config({**demo_job, "compute": {"cluster": "address", "address": "10.0.0.5:8786"}})
    c = load_config({**demo_job, "compute": {"cluster": "address", "scheduler_file": "/shared/s.json"}})
    assert c.compute.scheduler_file == "/shared/s.json"


def test_worker_memory_below_one_pair_stops_and_says_how_much() -> None:
    ex = Executor(None, "3 SLURM jobs", 3, memory_limit=2**30)
    ex.check_memory(2**29)  # enough: no error
    with pytest.raises(InvalidInputError, match=r"1.00 GiB each, but one pair needs about 2.50 GiB"):
        ex.check_memory(int(2.5 * 2**30))


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs (needs root and mount); skips elsewhere."""
    folder = tmp_path / "disk"
    folder.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        gc.collect()  # a writer's file handle left by the failed write closes while its disk is there
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_disk_full_while_writing_leaves_nothing_and_says_so(small_disk: Path) -> None:
    with pytest.raises(DiskFullError, match="filled up while writing") as err:
        with atomic_output(small_disk / "big.bin") as tmp:
            tmp.write_bytes(os.urandom(2 * 2**20))
    assert isinstance(err.value, OSError)
    assert os.listdir(small_disk) == []  # no partial file, no temporary left


@pytest.mark.slow  # two `geodeform run` processes (the failed NetCDF writer's handle dies with its process)
def test_job_on_a_full_disk_stops_clearly_and_the_rerun_completes(small_disk: Path, demo_job: dict) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 48 * 1024))
    job = small_disk.parent / "job.yaml"
    job.write_text(yaml.safe_dump({**demo_job, "compute": {"cluster": "sync"}}))
    main = "from geodeform.cli import main; main()"
    command = [sys.executable, "-c", main, "run", str(job), "-o", str(small_disk / "run")]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode == 2, failed.stderr
    said = " ".join(failed.stderr.split())  # rich wraps long lines
    assert re.search(r"nothing was matched yet|nothing half-written was kept", said), said
    assert not list(small_disk.rglob("*.nc")) and not list(small_disk.rglob("*.tmp"))
    filler.unlink()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "3 pairs computed" in done.stderr


def test_uncalibrated_fallback_estimate_still_sizes_a_tile(demo_job: dict, tmp_path: Path) -> None:
    """Without a probe (nothing to compute) the estimate falls back to the array-size model."""
    from geodeform.io import GeoGrid
    from geodeform.workflows.preflight import PAIR_BYTES_PER_PIXEL, estimate_resources
    from geodeform.workflows.stack import ImageStack

    grid = GeoGrid(crs=None, transform=None, shape=(10980, 10980))  # type: ignore[arg-type]
    stack = ImageStack([], grid, 10.0, "test")
    est = estimate_resources(load_config(demo_job), stack, 1, 1)
    assert not est.calibrated
    assert est.pair_memory_bytes > PAIR_BYTES_PER_PIXEL * 10980**2
    assert np.isfinite(est.seconds) and est.seconds > 0


def test_probe_fixed_costs_are_counted_once_per_pair_not_scaled(demo_job: dict) -> None:
    """A stage cost that does not grow with the strip (file opening, encoding) is not multiplied by the
    tile's size: two probes with the same growing part and different fixed parts differ by that part."""
    from geodeform.io import GeoGrid
    from geodeform.workflows.preflight import estimate_resources
    from geodeform.workflows.probe import PairProbe
    from geodeform.workflows.stack import ImageStack

    stack = ImageStack([], GeoGrid(crs=None, transform=None, shape=(10240, 10240)), 10.0, "test")  # type: ignore[arg-type]
    config = load_config({**demo_job, "compute": {"cluster": "sync"}})
    grow = {"read": 1.0, "match": 4.0, "correct": 0.5, "product": 0.1, "write": 0.2}
    fixed = {"correct": 3.0, "write": 2.0}
    plain = PairProbe(rows=512, width=10240, nodes=32 * 640, search_range=8, stage_seconds=grow)
    both = PairProbe(
        rows=512,
        width=10240,
        nodes=32 * 640,
        search_range=8,
        stage_seconds={k: v + fixed.get(k, 0.0) for k, v in grow.items()},
        stage_fixed=fixed,
    )
    a = estimate_resources(config, stack, 1, 1, plain, in_process=True)
    b = estimate_resources(config, stack, 1, 1, both, in_process=True)
    assert b.seconds - a.seconds == pytest.approx(5.0, rel=1e-6)  # once, not 20x (the tile is 20 strips)
