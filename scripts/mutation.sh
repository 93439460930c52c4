#!/usr/bin/env bash
# Mutation testing of the modules that guard results and security (a maintainer tool: not part of
# scripts/test.sh or CI). mutmut 3 breaks one function at a time (a flipped comparison, a changed constant,
# a removed call...) and runs the tests that reach it; a mutant no test notices "survives".
#
#   bash scripts/mutation.sh [MODULE...]       MODULE: a name of scripts/mutation/*.toml (all when none)
#   MUTANTS="name name..." bash scripts/mutation.sh MODULE    re-test only these mutants (e.g. the survivors
#                                              after adding tests; the others keep their verdicts)
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
CHILDREN="${MUTATION_CHILDREN:-2}"

if [ "$#" -eq 0 ]; then
  set -- $(cd scripts/mutation && ls ./*.toml | sed 's|^\./||; s|\.toml$||')
fi
for module in "$@"; do
  conf="scripts/mutation/$module.toml"
  [ -f "$conf" ] || { echo "no $conf" >&2; exit 2; }
  work="build/mutation/$module"
  mkdir -p "$work"
  rm -rf "$work/src" "$work/tests"
  # tracked and new (not ignored) files, with their modification times (mutmut re-tests changed files)
  git ls-files -z --cached --others --exclude-standard src tests pyproject.toml \
    | tar --null -T - -cf - | tar -xf - -C "$work"
  cat "$conf" >> "$work/pyproject.toml"
  echo "[mutation] $module: mutating $(sed -n 's/^only_mutate = //p' "$conf")"
  (cd "$work" && nice -n 5 "$MUTMUT" run --max-children "$CHILDREN" ${MUTANTS:-} > run.log 2>&1) || {
    tail -30 "$work/run.log" >&2
    echo "[mutation] $module: mutmut failed, see $work/run.log" >&2
    exit 1
  }
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
killed = sum(v in ("killed", "timeout") for v in status.values())
survived = [n for n, v in status.items() if v not in ("killed", "timeout")]
equiv = [n for n in survived if n in equivalent]
left = [n for n in survived if n not in equivalent]
stale = sorted(set(equivalent) - set(survived))
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
