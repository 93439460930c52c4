#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost for the cluster tests (tests/test_cluster.py): Debian's
# slurm-wlm + munge, slurmctld and slurmd on 127.0.0.1, ProctrackType=proctrack/linuxproc, TaskPlugin=task/none.
#   bash scripts/services.d/slurm.sh STATE_DIR
# Idempotent: installs what is missing (apt), reuses daemons that answer with the same configuration,
# restarts them when the configuration changed, resumes a node left down or drained. One SLURM per machine
# (its ports are fixed): its files live in /var/tmp/geodeform-slurm, whatever worktree started it.
# Appends to STATE_DIR/services.env:
#   SLURM_CONF=/var/tmp/geodeform-slurm/slurm.conf   (read by sbatch, squeue, scancel, dask-jobqueue)
#   GEODEFORM_TEST_SLURM_PARTITION=debug
# Needs root (apt, munge key, daemons): as another user it reruns itself through `sudo -n` when allowed.
# When SLURM cannot start, it says why, loudly, and appends GEODEFORM_TEST_SLURM_UNAVAILABLE=<why> instead:
# the other tests still run, and the SLURM tests fail with that reason (they skip only outside the test
# command, under plain pytest).
set -eEuo pipefail  # -E: the ERR trap below also fires inside functions
STATE="$(mkdir -p "${1:?usage: slurm.sh STATE_DIR}" && cd "$1" && pwd)"
DIR=/var/tmp/geodeform-slurm
CONF="$DIR/slurm.conf"
PARTITION=debug
log() { echo "[slurm] $*"; }

unavailable() {  # why: recorded for the tests, printed in a banner, and the test command goes on
  local why="$1"
  {
    echo "[slurm] ************************************************************************"
    echo "[slurm] SLURM NOT STARTED: $why"
    echo "[slurm] the SLURM tests (tests/test_cluster.py) will FAIL with this reason"
    echo "[slurm] ************************************************************************"
  } >&2
  printf 'GEODEFORM_TEST_SLURM_UNAVAILABLE=%q\n' "$why" >> "$STATE/services.env"
  if [ -e /usr/sbin/policy-rc.d.geodeform ]; then  # an apt install that failed half-way: undo our policy
    cmp -s /usr/sbin/policy-rc.d.geodeform /usr/sbin/policy-rc.d && rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.geodeform
  fi
  exit 0
}
trap 'unavailable "command failed (exit $?) at line $LINENO of scripts/services.d/slurm.sh: $BASH_COMMAND"' ERR

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    log "not root: rerunning with sudo"
    exec sudo -n bash "${BASH_SOURCE[0]}" "$STATE"
  fi
  unavailable "not root and no password-less sudo: cannot install packages or start slurmctld/slurmd"
fi

install_packages() {
  if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] || [ ! -x /usr/bin/sbatch ] \
    || [ ! -x /usr/sbin/munged ]; then
    log "installing slurm-wlm + munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d: the packages must not try to start their (unconfigured) services through init scripts.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.geodeform
    chmod +x /usr/sbin/policy-rc.d.geodeform
    local had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ "$had_policy" = 1 ] || cp /usr/sbin/policy-rc.d.geodeform /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.geodeform
  fi
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile=/etc/munge/munge.key --force
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return
  fi
  log "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged --force </dev/null >/dev/null 2>&1
  for _ in $(seq 1 40); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    sleep 0.25
  done
  unavailable "munged does not answer (see /var/log/munge/munged.log)"
}

write_conf() {
  local host cpus mem
  host="$(hostname -s)"
  # At least 4 CPUs are declared (the kernel shares the real cores): tests and the scaling benchmark run
  # several one-core worker jobs at once on a 2-core machine.
  cpus="$(nproc)"
  [ "$cpus" -ge 4 ] || cpus=4
  mem="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/jobs"
  cat > "$DIR/slurm.conf.new" <<EOF
# Written by geodeform scripts/services.d/slurm.sh: a single-node test cluster on localhost.
ClusterName=geodeform
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if cmp -s "$DIR/slurm.conf.new" "$CONF"; then
    rm -f "$DIR/slurm.conf.new"
    CHANGED=0
  else
    mv "$DIR/slurm.conf.new" "$CONF"
    CHANGED=1
  fi
  HOST="$host"
}

daemon_alive() {  # pid file, program name
  local pid
  pid="$(cat "$1" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -qs "^$2" "/proc/$pid/comm"
}

stop_daemon() {  # pid file, program name: only ever signal our own daemon
  local pid
  pid="$(cat "$1" 2>/dev/null || true)"
  if daemon_alive "$1" "$2"; then
    kill "$pid" || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$1"
}

start_daemons() {
  export SLURM_CONF="$CONF"
  if [ "$CHANGED" = 1 ]; then
    stop_daemon "$DIR/slurmd.pid" slurmd
    stop_daemon "$DIR/slurmctld.pid" slurmctld
  fi
  if ! daemon_alive "$DIR/slurmctld.pid" slurmctld || ! scontrol ping 2>/dev/null | grep -q UP; then
    stop_daemon "$DIR/slurmctld.pid" slurmctld
    log "starting slurmctld"
    # -i: ignore a state file written by an older configuration instead of refusing to start.
    setsid /usr/sbin/slurmctld -i -f "$CONF" </dev/null >/dev/null 2>&1
  fi
  for _ in $(seq 1 80); do
    if scontrol ping 2>/dev/null | grep -q UP; then break; fi
    sleep 0.25
  done
  if ! scontrol ping 2>/dev/null | grep -q UP; then
    log "slurmctld does not answer; log:"
    tail -20 "$DIR/slurmctld.log" >&2 || true
    unavailable "slurmctld does not answer (log: $DIR/slurmctld.log)"
  fi
  if ! daemon_alive "$DIR/slurmd.pid" slurmd; then
    log "starting slurmd"
    setsid /usr/sbin/slurmd -f "$CONF" -N "$HOST" </dev/null >/dev/null 2>&1
  fi
}

wait_node() {
  local state
  for _ in $(seq 1 120); do
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1)"
    case "$state" in
      idle* | mixed* | allocated* | completing*) return ;;
      down* | drain* | fail*)
        scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.25
  done
  log "node $HOST is not ready (state: ${state:-none}); logs:"
  tail -20 "$DIR/slurmd.log" "$DIR/slurmctld.log" >&2 || true
  unavailable "node $HOST is not ready (state: ${state:-none}; logs: $DIR/slurmd.log)"
}

install_packages
start_munge
write_conf
start_daemons
wait_node
{
  echo "SLURM_CONF=$CONF"
  echo "GEODEFORM_TEST_SLURM_PARTITION=$PARTITION"
} >> "$STATE/services.env"
log "ready: node $HOST, partition $PARTITION ($CONF)"
