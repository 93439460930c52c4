"""Where the test suite spends its time: a per-test timeline of wall and CPU seconds, per pytest-xdist worker.

With ``GEODEFORM_TEST_TIMELINE=DIR`` each test process (each xdist worker, or the one process) appends one
JSON line per test phase (setup, call, teardown) to ``DIR/<worker>.jsonl``: the node id, the worker, the
phase's start and end (Unix seconds) and its CPU seconds: this process, the children it has waited for, and
(Linux) the processes below it that are still there when the phase starts or ends, each with the children it
has waited for (a ``geodeform serve`` and its workers and job processes, a Dask cluster, chromium); not
services such as PostgreSQL or SLURM jobs, nor a process that ended unwaited in between. Without the last
part a test that waits on its server while the server computes looks idle. Loaded by ``conftest.py``;
without the variable it records nothing.

``python tests/_timeline.py DIR`` prints what each worker ran and when (file by file), where a worker waited
(a phase that took wall time but little CPU for its worker: a lock held by the other worker, a sleep), the
per-file totals and the tests that cost the most CPU. Wall times depend on the machine's load; CPU seconds
much less so, which makes them the figure to compare between runs on a shared machine.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV = "GEODEFORM_TEST_TIMELINE"
# A phase of WAIT_MIN_S seconds or more whose CPU share (CPU-s per wall s) is under WAIT_CPU_SHARE of its
# worker's share over the run waited (on a loaded machine every share is low: the worker's is the yardstick).
WAIT_CPU_SHARE = 0.2
WAIT_MIN_S = 5.0


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _below(pid: int) -> float:
    """CPU seconds of the live processes below ``pid`` (user + system, with their waited-for children)."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:  # gone, or no /proc (not Linux)
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids = fh.read().split()
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += sum(int(x) for x in fields[11:15]) / _TICK + _below(int(kid))
    return total


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + _below(os.getpid())


def _record(item: pytest.Item, phase: str, start: float, cpu: float) -> None:
    folder = os.environ.get(ENV)
    if not folder:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    line = {
        "worker": worker,
        "nodeid": item.nodeid,
        "file": item.path.name,
        "phase": phase,
        "start": start,
        "end": time.time(),
        "cpu": round(_cpu() - cpu, 3),
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    with (Path(folder) / f"{worker}.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    start, cpu = time.time(), _cpu()
    yield
    _record(item, "setup", start, cpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    start, cpu = time.time(), _cpu()
    yield
    _record(item, "call", start, cpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    start, cpu = time.time(), _cpu()
    yield
    _record(item, "teardown", start, cpu)


# --- the report ------------------------------------------------------------------------------------------


def load(folder: Path) -> list[dict[str, Any]]:
    """Every recorded phase of the run in ``folder``, oldest first."""
    rows = [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["start"])


def report(rows: list[dict[str, Any]], top: int = 25) -> str:
    """The run's timeline as text: per worker, per file, the waits; per-file totals; the costliest tests."""
    if not rows:
        return "no test phase recorded yet"
    t0 = min(r["start"] for r in rows)
    end = max(r["end"] for r in rows)
    out = [f"run: {end - t0:.0f} s wall, {sum(r['cpu'] for r in rows):.0f} CPU-s in the tests"]
    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_worker[r["worker"]].append(r)
    for worker, wrows in sorted(by_worker.items()):
        busy = sum(r["end"] - r["start"] for r in wrows)
        cpu = sum(r["cpu"] for r in wrows)
        last = max(r["end"] for r in wrows)
        out.append(
            f"\n{worker}: {len(wrows)} phases, {busy:.0f} s in tests ({cpu:.0f} CPU-s), "
            f"done at +{last - t0:.0f} s (idle {end - last:.0f} s at the end)"
        )
        files: dict[str, list[dict[str, Any]]] = {}
        for r in wrows:
            files.setdefault(r["file"], []).append(r)
        for name, frows in files.items():
            s, e = min(r["start"] for r in frows), max(r["end"] for r in frows)
            c = sum(r["cpu"] for r in frows)
            out.append(f"  +{s - t0:6.0f} .. +{e - t0:6.0f}  {e - s:6.1f} s  {c:6.1f} CPU-s  {name}")
        share = cpu / busy if busy else 1.0
        for r in wrows:
            wall = r["end"] - r["start"]
            if wall >= WAIT_MIN_S and r["cpu"] < WAIT_CPU_SHARE * share * wall:
                out.append(
                    f"  waited +{r['start'] - t0:.0f} s: {wall:.1f} s wall, {r['cpu']:.1f} CPU-s "
                    f"({r['phase']} {r['nodeid']})"
                )
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        totals[r["file"]][0] += r["end"] - r["start"]
        totals[r["file"]][1] += r["cpu"]
    out.append("\nper file (wall s, CPU-s), by wall:")
    for name, (wall, cpu) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        out.append(f"  {wall:7.1f} {cpu:7.1f}  {name}")
    out.append(f"\ncostliest {top} phases by CPU (wall s, CPU-s):")
    for r in sorted(rows, key=lambda r: -r["cpu"])[:top]:
        out.append(f"  {r['end'] - r['start']:7.1f} {r['cpu']:7.1f}  {r['phase']:8s} {r['nodeid']}")
    out.append(f"\nlongest {top} phases by wall (wall s, CPU-s):")
    for r in sorted(rows, key=lambda r: r["start"] - r["end"])[:top]:
        out.append(f"  {r['end'] - r['start']:7.1f} {r['cpu']:7.1f}  {r['phase']:8s} {r['nodeid']}")
    return "\n".join(out)


if __name__ == "__main__":
    print(report(load(Path(sys.argv[1]))))
