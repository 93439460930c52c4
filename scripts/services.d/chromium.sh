#!/usr/bin/env bash
# Debian's chromium for the map page test (tests/test_service_page.py drives it with Python Playwright).
#   bash scripts/services.d/chromium.sh STATE_DIR
# Idempotent: apt-get installs chromium only when /usr/bin/chromium is missing (never `playwright install`).
# Under CI=true a missing chromium (failed install included) is an error, never a silent skip.
# Appends GEODEFORM_TEST_CHROMIUM=/usr/bin/chromium to STATE_DIR/services.env when it is there.
set -euo pipefail
STATE="$(mkdir -p "${1:?usage: chromium.sh STATE_DIR}" && cd "$1" && pwd)"
BIN=/usr/bin/chromium
log() { echo "[chromium] $*"; }

if [ ! -x "$BIN" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ! apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; then
      log "apt-get install chromium FAILED"
    fi
  else
    log "chromium missing and apt-get unavailable (not root?)"
  fi
fi
if [ ! -x "$BIN" ]; then
  case "${CI:-}" in
    1 | true | TRUE | True | yes)
      log "ERROR: no chromium at $BIN under CI=true: the page test would not run"
      exit 1
      ;;
  esac
  log "WARNING: no chromium at $BIN: the page test will skip (it fails under CI=true)"
fi
if [ -x "$BIN" ]; then
  echo "GEODEFORM_TEST_CHROMIUM=$BIN" >> "$STATE/services.env"
  log "ready: $BIN"
fi
