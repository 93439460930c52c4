"""Where the first run's numba compilation goes: the demo run with an empty kernel cache, per kernel.

    python benchmarks/bench_compile.py [--method ncc] [--top 30] [--warm] [--json FILE]

Runs ``geodeform demo --cluster sync`` (every pair in one process) in a child interpreter whose numba cache
(``NUMBA_CACHE_DIR``) is a new empty folder, with a listener on numba's ``numba:compile`` events; prints the
child's wall time and CPU time (user + system), the compile time in total, and per kernel: the number of
type specialisations compiled, the time spent compiling it (self: without the kernels it called that were
compiled on the way, which count under their own name), the LLVM part of that time and the signatures.
``--warm`` runs the demo a second time on the same, now filled, cache (load time only). The demo's last
line is printed, so a change that cuts compile time can be checked for the same answer.

CPU time is the robust number on a shared machine (wall time grows with the load); compile time is
measured inside the child by ``time.process_time`` around each compile, so it is CPU time too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def _child(out: str, method: str, report: str) -> None:
    """Run the demo in this process with the compile listener installed; write the events to ``report``."""
    from numba.core import event

    records: list[dict[str, object]] = []
    stack: list[dict[str, object]] = []

    class Compiles(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: event.Event) -> None:
            disp = ev.data["dispatcher"]
            fn = disp.py_func
            stack.append(
                {
                    "name": f"{fn.__module__}.{fn.__qualname__}",
                    "sig": ", ".join(str(a) for a in ev.data["args"]),
                    "t0": time.process_time(),
                    "w0": time.perf_counter(),
                    "children": 0.0,
                    "llvm": 0.0,
                }
            )

        def on_end(self, ev: event.Event) -> None:
            rec = stack.pop()
            total = time.process_time() - float(rec.pop("t0"))  # type: ignore[arg-type]
            rec["wall"] = time.perf_counter() - float(rec.pop("w0"))  # type: ignore[arg-type]
            rec["total"] = total
            rec["self"] = total - float(rec.pop("children"))  # type: ignore[arg-type]
            if stack:
                stack[-1]["children"] = float(stack[-1]["children"]) + total  # type: ignore[arg-type]
            records.append(rec)

    class Llvm(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: event.Event) -> None:
            self.t0 = time.process_time()

        def on_end(self, ev: event.Event) -> None:
            if stack:
                stack[-1]["llvm"] = float(stack[-1]["llvm"]) + time.process_time() - self.t0  # type: ignore[arg-type]

    event.register("numba:compile", Compiles())
    event.register("numba:llvm_lock", Llvm())
    from geodeform.cli import main

    t0 = time.process_time()
    try:
        sys.argv = ["geodeform", "demo", "--cluster", "sync", "--method", method, "--out", out]
        main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        Path(report).write_text(
            json.dumps({"records": records, "cpu_in_process": time.process_time() - t0}), encoding="utf-8"
        )


def _run(cache: Path, out: Path, method: str, report: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of one child run, and its last line of output."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "_child", str(out), method, str(report)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(proc.returncode)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]  # result lines (progress: stderr)
    return wall, cpu, lines[-1] if lines else ""


def _table(records: list[dict], top: int) -> None:
    per: dict[str, dict] = defaultdict(lambda: {"self": 0.0, "llvm": 0.0, "sigs": []})
    for r in records:
        p = per[r["name"]]
        p["self"] += r["self"]
        p["llvm"] += r["llvm"]
        p["sigs"].append((r["self"], r["sig"]))
    total = sum(p["self"] for p in per.values())
    print(f"compiled: {len(records)} specialisations of {len(per)} kernels, {total:.1f} CPU-s of compiling")
    print(f"{'kernel':58s} {'n':>3s} {'self s':>7s} {'llvm s':>7s} {'share':>6s}")
    for name, p in sorted(per.items(), key=lambda kv: -kv[1]["self"])[:top]:
        short = name.replace("geodeform.", "")
        print(f"{short:58s} {len(p['sigs']):3d} {p['self']:7.2f} {p['llvm']:7.2f} {p['self'] / total:6.1%}")
        if len(p["sigs"]) > 1:
            for s, sig in sorted(p["sigs"], reverse=True):
                print(f"    {s:6.2f}  ({sig[:140]})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="ncc")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--warm", action="store_true", help="then run again on the filled cache")
    ap.add_argument("--json", type=Path, help="keep the compile records (JSON) here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="geodeform-compile-") as tmp:
        cache, report = Path(tmp) / "numba-cache", Path(tmp) / "compiles.json"
        cache.mkdir()
        wall, cpu, last = _run(cache, Path(tmp) / "cold", args.method, report)
        data = json.loads(report.read_text(encoding="utf-8"))
        if args.json:
            args.json.write_text(json.dumps(data, indent=1), encoding="utf-8")
        print(f"cold cache: wall {wall:.1f} s, CPU {cpu:.1f} s")
        print(f"  last line: {last}")
        _table(data["records"], args.top)
        if args.warm:
            wall, cpu, last = _run(cache, Path(tmp) / "warm", args.method, report)
            n = len(json.loads(report.read_text(encoding="utf-8"))["records"])
            print(f"warm cache: wall {wall:.1f} s, CPU {cpu:.1f} s, {n} specialisations compiled")
            print(f"  last line: {last}")


if __name__ == "__main__":
    main()
