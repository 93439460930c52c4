#!/usr/bin/env bash
# Local STAC API for the search tests: PostgreSQL 15 + PostGIS + pgstac, served by `rustac serve --pgstac`.
#   bash scripts/services.d/stac.sh STATE_DIR
# Idempotent: installs what is missing (apt, pip into .venv), reuses a running cluster/server, reloads the
# catalogue only when tests/data/stac changed. Appends to STATE_DIR/services.env:
#   GEODEFORM_TEST_STAC_URL=http://127.0.0.1:PORT   GEODEFORM_TEST_PGSTAC_DSN=postgresql://...
#   GEODEFORM_TEST_PG_DSN=postgresql://.../geodeform_service   (database of the web service's tests)
# Works as root (the cluster runs as the `postgres` user) or as the postgres user itself.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$(mkdir -p "${1:?usage: stac.sh STATE_DIR}" && cd "$1" && pwd)"
PY="$ROOT/.venv/bin/python"
PGBIN=/usr/lib/postgresql/15/bin
DB=geodeform_stac
FIXTURES="$ROOT/tests/data/stac"
log() { echo "[stac] $*"; }

# The cluster lives outside the checkout: the postgres user must be able to reach it whatever the
# permissions of the clone's parent folders (/root, ...). One cluster per state dir.
KEY="$(printf %s "$STATE" | sha1sum | cut -c1-10)"
PGROOT="/var/tmp/geodeform-pgstac-$KEY"
PGDATA="$PGROOT/data"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_free() {
  "$PY" -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

pg_answers() {
  "$PY" - "postgresql://postgres@127.0.0.1:$1/postgres" <<'EOF' 2>/dev/null
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
EOF
}

install_packages() {
  if [ ! -x "$PGBIN/postgres" ] || [ ! -f /usr/share/postgresql/15/extension/postgis.control ]; then
    log "installing postgresql-15 + postgis (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-15-postgis-3 >/dev/null
  fi
  if [ ! -x "$ROOT/.venv/bin/rustac" ] || ! "$PY" -c 'import pypgstac, psycopg' 2>/dev/null; then
    log "installing pypgstac + rustac into .venv"
    "$PY" -m pip install --quiet "pypgstac[psycopg]>=0.9" "rustac>=0.9"
  fi
}

start_postgres() {
  mkdir -p "$PGROOT"
  chown postgres:postgres "$PGROOT" 2>/dev/null || true
  chmod 700 "$PGROOT"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA"
    rm -f "$PGROOT/loaded"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync -E UTF8 >/dev/null
  fi
  PGPORT="$(cat "$PGROOT/port" 2>/dev/null || true)"
  if [ -n "$PGPORT" ] && pg_answers "$PGPORT"; then
    return
  fi
  # A postmaster.pid left by a killed session may name a PID that another process has taken since.
  local pid
  pid="$(head -1 "$PGDATA/postmaster.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && ! grep -qs '^postgres' "/proc/$pid/comm"; then
    rm -f "$PGDATA/postmaster.pid"
  fi
  if [ -z "$PGPORT" ] || ! port_free "$PGPORT"; then PGPORT="$(free_port)"; fi
  echo "$PGPORT" > "$PGROOT/port"
  log "starting postgres on 127.0.0.1:$PGPORT"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGROOT/postgres.log" -w -t 60 start \
    -o "-p $PGPORT -k $PGROOT -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" >/dev/null
}

load_catalogue() {
  local admin="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
  DSN="postgresql://postgres@127.0.0.1:$PGPORT/$DB"
  local want have
  want="$("$PY" "$FIXTURES/prepare_items.py" --fingerprint)"
  have="$(cat "$PGROOT/loaded" 2>/dev/null || true)"
  if [ "$want" = "$have" ] && [ "$(item_count)" -gt 0 ]; then
    return
  fi
  log "loading pgstac schema and test catalogue into $DB"
  "$PY" - "$admin" "$DB" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{sys.argv[2]}"')
    conn.execute(f'ALTER DATABASE "{sys.argv[2]}" SET search_path TO pgstac, public')
EOF
  "$ROOT/.venv/bin/pypgstac" migrate --dsn "$DSN" >/dev/null
  local tmp="$PGROOT/ndjson"
  "$PY" "$FIXTURES/prepare_items.py" "$tmp"
  "$ROOT/.venv/bin/pypgstac" load collections "$tmp/collections.ndjson" --dsn "$DSN" --method upsert >/dev/null
  "$ROOT/.venv/bin/pypgstac" load items "$tmp/items.ndjson" --dsn "$DSN" --method upsert >/dev/null
  echo "$want" > "$PGROOT/loaded"
  # A server started on the old catalogue may cache collection lists: restart it.
  stop_rustac
}

item_count() {
  "$PY" - "$DSN" <<'EOF' 2>/dev/null || echo 0
import sys, psycopg
with psycopg.connect(sys.argv[1], connect_timeout=5) as conn:
    print(conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0])
EOF
}

is_rustac() {
  # Only ever signal our rustac server: a stale pid file may name another process by now.
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q "rustac serve"
}

answers() {
  "$PY" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/collections", timeout=2) as r:
        sys.exit(0 if r.status == 200 and b"sentinel-2-l2a" in r.read() else 1)
except Exception:
    sys.exit(1)
EOF
}

stop_rustac() {
  local pid
  pid="$(cat "$PGROOT/rustac.pid" 2>/dev/null || true)"
  if is_rustac "$pid"; then kill "$pid" || true; sleep 0.5; fi
  rm -f "$PGROOT/rustac.pid"
}

start_rustac() {
  local pid port
  pid="$(cat "$PGROOT/rustac.pid" 2>/dev/null || true)"
  port="$(cat "$PGROOT/rustac.port" 2>/dev/null || true)"
  if is_rustac "$pid" && [ -n "$port" ] && answers "http://127.0.0.1:$port"; then
    STAC_URL="http://127.0.0.1:$port"
    return
  fi
  stop_rustac
  port="$(free_port)"
  log "starting rustac serve on 127.0.0.1:$port"
  # setsid + closed fds: the server outlives this script without holding test.sh's pipes open.
  setsid "$ROOT/.venv/bin/rustac" serve --pgstac "$DSN" --addr "127.0.0.1:$port" \
    </dev/null >"$PGROOT/rustac.log" 2>&1 &
  echo $! > "$PGROOT/rustac.pid"
  echo "$port" > "$PGROOT/rustac.port"
  STAC_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    if answers "$STAC_URL"; then return; fi
    if ! is_rustac "$(cat "$PGROOT/rustac.pid")"; then break; fi
    sleep 0.25
  done
  log "rustac did not answer on $STAC_URL; log:"
  tail -20 "$PGROOT/rustac.log" >&2
  exit 1
}

create_service_db() {
  # The service tests run their alembic migrations in it and clean up after themselves.
  SERVICE_DSN="postgresql://postgres@127.0.0.1:$PGPORT/geodeform_service"
  "$PY" - "postgresql://postgres@127.0.0.1:$PGPORT/postgres" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'geodeform_service'").fetchone() is None:
        conn.execute('CREATE DATABASE "geodeform_service"')
EOF
}

install_packages
start_postgres
load_catalogue
start_rustac
create_service_db
{
  echo "GEODEFORM_TEST_STAC_URL=$STAC_URL"
  echo "GEODEFORM_TEST_PGSTAC_DSN=$DSN"
  echo "GEODEFORM_TEST_PG_DSN=$SERVICE_DSN"
} >> "$STATE/services.env"
log "ready: $STAC_URL (pgstac $DSN)"
