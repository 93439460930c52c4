#!/usr/bin/env bash
# Debian's nginx for the reverse-proxy test (tests/test_service_proxy.py starts its own nginx from this binary,
# with the configuration of docs/guide/nginx-geodeform.conf, TLS and a path prefix; nothing runs as a daemon).
#   bash scripts/services.d/nginx.sh STATE_DIR
# Idempotent: apt-get installs nginx-light only when no nginx binary is there; the package's own service is
# not started. Appends GEODEFORM_TEST_NGINX=/usr/sbin/nginx to STATE_DIR/services.env when it is there.
set -euo pipefail
STATE="$(mkdir -p "${1:?usage: nginx.sh STATE_DIR}" && cd "$1" && pwd)"
BIN=/usr/sbin/nginx
log() { echo "[nginx] $*"; }

if [ ! -x "$BIN" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing nginx-light (apt)"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d 101: the package's post-install must not start a system-wide nginx on port 80
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nginx-light openssl >/dev/null || true
    rm -f /usr/sbin/policy-rc.d
  else
    log "nginx missing and apt-get unavailable (not root?): the proxy test will skip"
  fi
fi
if [ -x "$BIN" ]; then
  echo "GEODEFORM_TEST_NGINX=$BIN" >> "$STATE/services.env"
  log "ready: $BIN"
fi
