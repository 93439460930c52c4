#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing, then runs them.
#   bash scripts/test.sh [pytest args...]
# Steps: .venv at the repo root (created if absent) with geodeform[dev]; the system services the tests use
# (scripts/services.d/*.sh: each installs and starts one service, idempotently); then ruff and pytest.
# pytest includes the documentation: tests/test_docs.py runs every tutorial script and `mkdocs build --strict`,
# tests/test_packaging.py builds the sdist and wheel and runs the demo from the wheel in a clean venv (the one
# demo run that tests/test_demo.py checks against the truth).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade "pip>=23.2"
.venv/bin/python -m pip install --quiet -e ".[dev]"

export GEODEFORM_TEST_ENV="$ROOT/.test-env"
mkdir -p "$GEODEFORM_TEST_ENV"
: > "$GEODEFORM_TEST_ENV/services.env"
for svc in scripts/services.d/*.sh; do
  [ -e "$svc" ] || continue
  echo "[test] service: $svc"
  bash "$svc" "$GEODEFORM_TEST_ENV"
done
set -a
# shellcheck disable=SC1091
. "$GEODEFORM_TEST_ENV/services.env"
set +a

export NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true  # silence mkdocs-material's banner (not a warning)
.venv/bin/python -m ruff check src tests benchmarks docs/examples docs/scripts
# Whole test files on two pytest-xdist workers (module fixtures stay on one worker), the longest files first,
# but the tests that need the built wheel as one chain on one worker, started first (tests/conftest.py: the
# order and the scheduler); GEODEFORM_TEST_WORKERS=0 runs them in this process.
# GEODEFORM_TEST_TIMELINE=DIR records each test's wall and CPU seconds (python tests/_timeline.py DIR).
.venv/bin/python -m pytest -n "${GEODEFORM_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
