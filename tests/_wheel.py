"""The wheel of this checkout installed in a clean virtual environment, and the demo run from it, made
once per test session (fixtures ``wheel_venv`` and ``wheel_demo`` in conftest.py; used by
tests/test_docs.py, tests/test_demo.py and tests/test_packaging.py). Safe under pytest-xdist: the first
worker makes them, the others wait for it and reuse them.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import geodeform

ROOT = Path(__file__).resolve().parents[1]


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Any]) -> Any:
    """``make(folder)`` once per test session, even with several pytest-xdist workers, and its result
    (JSON-able) for every caller.

    The first caller runs it under a file lock in a folder shared by the session's workers (the parent of the
    worker's base temporary folder under xdist); the others wait for the lock and read the result. A failure
    is recorded too, so that every test that needs it fails with the same message, without trying again.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # .../popen-gwN -> the session's folder, shared by the workers
    done = root / f"{name}.json"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not done.exists():
            folder = root / name
            folder.mkdir(exist_ok=True)
            try:
                result = {"ok": True, "value": make(folder)}
            except (Exception, pytest.fail.Exception) as exc:  # recorded, failed below
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            done.write_text(json.dumps(result))
        result = json.loads(done.read_text())
    if not result["ok"]:
        pytest.fail(f"{name} (made once for the test session) failed: {result['error']}", pytrace=False)
    return result["value"]


@dataclass(frozen=True)
class WheelVenv:
    """The sdist and the wheel of this checkout (``python -m build``: the wheel is built from the sdist), and
    a clean virtual environment where geodeform comes only from the wheel (its dependencies are this
    environment's, through a ``.pth`` line: no download)."""

    sdist: Path
    wheel: Path
    venv: Path
    python: Path  # the venv's interpreter
    bin: Path  # its scripts folder (python, geodeform)


def make_wheel_venv(folder: Path) -> dict[str, str]:
    def run(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    dist, venv = folder / "dist", folder / "venv"
    # --no-isolation: build with the setuptools/wheel of this environment (dev extra), so no download.
    # Building the wheel from the sdist (the default) proves the sdist is complete.
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)], 300)
    v = geodeform.__version__
    sdist, wheel = dist / f"geodeform-{v}.tar.gz", dist / f"geodeform-{v}-py3-none-any.whl"
    assert sdist.exists() and wheel.exists(), sorted(p.name for p in dist.iterdir())
    # Without pip (its ensurepip install was most of this fixture's CPU): this environment's pip installs the
    # wheel into the venv (`pip --python`), the venv holds geodeform and nothing else of its own.
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = run([str(py), "-c", code], 60).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]  # this environment's site-packages; the .pth adds it last
    (Path(site) / "_geodeform_test_deps.pth").write_text(deps + "\n")
    run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-deps", str(wheel)],
        300,
    )
    return {
        "sdist": str(sdist),
        "wheel": str(wheel),
        "venv": str(venv),
        "python": str(py),
        "bin": str(bindir),
    }


@dataclass(frozen=True)
class WheelDemo:
    """``geodeform demo --out OUT --cluster sync`` run once from the wheel's console script, in ``cwd``."""

    cwd: Path
    out: Path
    returncode: int
    stdout: str
    stderr: str


def run_wheel_demo(folder: Path, venv: WheelVenv) -> dict[str, Any]:
    """``geodeform demo --out demo-out --cluster sync`` from the wheel's console script, in ``folder``."""
    # --cluster sync: the demo's workflow in this one process, so numba compiles the wheel's kernels once
    # (a fresh install has no kernel cache; two Dask workers would each compile them).
    args = [str(venv.bin / "geodeform"), "demo", "--out", "demo-out", "--cluster", "sync"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # ~2.5 min of CPU with a fresh kernel cache; the timeout only catches a hang, even on a crowded machine
    proc = subprocess.run(args, capture_output=True, text=True, cwd=folder, env=env, timeout=2400)
    return {
        "cwd": str(folder),
        "out": str(folder / "demo-out"),
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr[-5000:],
    }
