#!/usr/bin/env bash
# Mutation testing of the modules that guard results and security (a maintainer tool: not part of
# scripts/test.sh or CI). mutmut 3 breaks one function at a time (a flipped comparison, a changed constant,
# a removed call...) and runs the tests that reach it; a mutant no test notices "survives".
#
#   bash scripts/mutation.sh [MODULE...]       MODULE: a name of scripts/mutation/*.toml (all when none)
#   MUTANTS="name name..." bash scripts/mutation.sh MODULE    re-test only these mutants (e.g. the survivors
#                                              after adding tests; the others keep their verdicts)
#   SAMPLE=N bash scripts/mutation.sh MODULE   test a random sample of N mutants (fixed seed, listed in
#                                              build/mutation/MODULE/sample.txt) and report the kill rate of
#                                              the sample: a full run of a big module takes hours on a shared
#                                              machine. Verdicts already known are kept.
# Environment: MUTATION_CHILDREN (workers, default 1), MUTATION_NICE (default 10).
#
# Each module runs in its own scratch copy, build/mutation/MODULE/ (the working tree's src/, tests/ and
# pyproject.toml with scripts/mutation/MODULE.toml appended), scoped to the test files that cover it, so a
# run takes minutes. mutmut keeps its results there and re-tests only what changed on the next run.
# Numba kernels are not mutated (mutmut skips decorated functions).
# Output per module: killed / survived / listed as equivalent, and the diff of every survivor not listed in
# scripts/mutation/MODULE.equivalent ("mutant-name  reason" lines: survivors that change no behaviour).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "no .venv: run bash scripts/test.sh (or pip install -e '.[dev]') first" >&2; exit 2; }
"$PY" -c "import mutmut" 2>/dev/null || "$PY" -m pip install --quiet -e ".[dev,mutation]"
MUTMUT="$ROOT/.venv/bin/mutmut"
CHILDREN="${MUTATION_CHILDREN:-1}"  # one worker: the machine is shared
# numba's default threading layer here is GNU OpenMP, which is not fork-safe: a worker forked from mutmut's
# process (that ran the kernels to collect its stats) SIGTERMs itself at its first parallel kernel (every
# verdict was "suspicious"). The workqueue layer is fork-safe; one numba thread per worker.
RUN=(env NUMBA_THREADING_LAYER=workqueue NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-1}"
     nice -n "${MUTATION_NICE:-10}" "$MUTMUT" run --max-children "$CHILDREN")

if [ "$#" -eq 0 ]; then
  set -- $(cd scripts/mutation && ls ./*.toml | sed 's|^\./||; s|\.toml$||')
fi
for module in "$@"; do
  conf="scripts/mutation/$module.toml"
  [ -f "$conf" ] || { echo "no $conf" >&2; exit 2; }
  work="build/mutation/$module"
  mkdir -p "$work"
  rm -rf "$work/src" "$work/tests" "$work/sample.txt"
  # tracked and new (not ignored) files, with their modification times (mutmut re-tests changed files)
  git ls-files -z --cached --others --exclude-standard src tests pyproject.toml \
    | tar --null -T - -cf - | tar -xf - -C "$work"
  # numba's on-disk cache of the kernels (cache=True; valid while a source file keeps its size and mtime,
  # which tar and mutmut's copy keep): without it the first runs compile the kernels again (minutes).
  # Run the module's tests once in the worktree to fill it.
  find src -path '*/__pycache__/*.nb[ic]' -print0 | tar --null -T - -cf - | tar -xf - -C "$work"
  cat "$conf" >> "$work/pyproject.toml"
  echo "[mutation] $module: mutating $(grep -o 'src/[^"]*[.]py' "$conf" | tr '\n' ' ')"
  names="${MUTANTS:-}"
  if [ -n "${SAMPLE:-}" ]; then
    if [ -z "$names" ]; then
      # generate the mutants and collect the tests' stats (then mutmut stops: no mutant has this name)
      (cd "$work" && "${RUN[@]}" no-such-mutant > generate.log 2>&1) || true
    fi
    (cd "$work" && "$MUTMUT" results --all true > results.txt)
    unchecked="$("$PY" - "$work" "$SAMPLE" "$module" <<'PYEOF'
import pathlib
import random
import sys

work, n, module = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
status = {}
for line in (work / "results.txt").read_text().splitlines():
    name, _, verdict = line.strip().rpartition(": ")
    if name:
        status[name] = verdict
sample = sorted(random.Random(f"{module}-27").sample(sorted(status), min(n, len(status))))
(work / "sample.txt").write_text("\n".join(sample) + "\n")
print(" ".join(name for name in sample if status[name] == "not checked"))
PYEOF
)"
    names="${MUTANTS:-$unchecked}"
  fi
  if [ -z "${SAMPLE:-}" ] || [ -n "$names" ]; then
    # shellcheck disable=SC2086
    (cd "$work" && "${RUN[@]}" $names > run.log 2>&1) || {
      tail -30 "$work/run.log" >&2
      echo "[mutation] $module: mutmut failed, see $work/run.log" >&2
      exit 1
    }
  fi
  (cd "$work" && "$MUTMUT" results --all true > results.txt)
  "$PY" - "$module" "$work" <<'PYEOF'
import pathlib
import subprocess
import sys

module, work = sys.argv[1], pathlib.Path(sys.argv[2])
listed = pathlib.Path("scripts/mutation") / f"{module}.equivalent"
equivalent = {}
if listed.exists():
    for line in listed.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(" ")
            equivalent[name] = why.strip()
status = {}
for line in (work / "results.txt").read_text().splitlines():
    name, _, verdict = line.strip().rpartition(": ")
    if name:
        status[name] = verdict
sampled = work / "sample.txt"
if sampled.exists():  # SAMPLE=N: the kill rate of the random sample
    print(f"[mutation] {module}: a random sample of {len(sampled.read_text().split())} of its {len(status)} mutants")
    status = {name: status[name] for name in sampled.read_text().split()}
killed = sum(v in ("killed", "timeout") for v in status.values())
survived = [n for n, v in status.items() if v not in ("killed", "timeout")]
equiv = [n for n in survived if n in equivalent]
left = [n for n in survived if n not in equivalent]
stale = [] if sampled.exists() else sorted(set(equivalent) - set(survived))
total = len(status)
rate = killed / max(total - len(equiv), 1)
print(f"[mutation] {module}: {total} mutants, {killed} killed, {len(survived)} survived "
      f"({len(equiv)} listed as equivalent): kill rate {100 * rate:.1f} % "
      f"(killed / (mutants - equivalent); raw {100 * killed / max(total, 1):.1f} %)")
for name in left:
    diff = subprocess.run([str(pathlib.Path(".venv/bin/mutmut").resolve()), "show", name], cwd=work,
                          capture_output=True, text=True).stdout
    print(f"--- survivor ({status[name]}) {name}\n{diff}")
for name in stale:
    print(f"[mutation] {module}: {name} is listed as equivalent but did not survive (or no longer exists)")
PYEOF
done
