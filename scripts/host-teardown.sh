#!/usr/bin/env bash
# host-teardown.sh: stop what scripts/host-setup.sh started (dockerd, local registry), and
# nothing else: only processes whose pid files setup wrote in
# ${STELLA_HOST_STATE:-/var/tmp/stella-host}, and only while that pid still runs the same
# program. SIGTERM, a bounded wait, then SIGKILL. Safe to run twice or when nothing was started.
set -euo pipefail

STATE=${STELLA_HOST_STATE:-/var/tmp/stella-host}
TERM_WAIT=${STELLA_TEARDOWN_WAIT:-30}
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

say() { printf 'host-teardown: %s\n' "$*"; }

if [ ! -d "$STATE" ]; then
  say "nothing to stop (no $STATE)"
  exit 0
fi
# Do not race a host-setup that is starting things right now.
exec 9>"$STATE/.lock"
flock -w 900 9 || { say "ERROR: $STATE/.lock is held by another host-setup/teardown" >&2; exit 1; }

# pid_is <pid> <program name>: the pid is alive and runs that program.
pid_is() {
  local pid=$1 exe
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [ "${exe##*/}" = "$2" ]
}

# stop <name> <program>
stop() {
  local name=$1 prog=$2 f="$STATE/$1.pid" pid kids i
  if [ ! -f "$f" ]; then
    say "$name ... not started by host-setup (no pid file)"
    return 0
  fi
  pid=$(cat "$f" 2>/dev/null || true)
  if ! pid_is "$pid" "$prog"; then
    say "$name ... pid ${pid:-?} no longer running $prog (stale pid file removed)"
    rm -f "$f"
    return 0
  fi
  # Children (dockerd's managed containerd) belong to it: kill them too if it must be SIGKILLed.
  kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < TERM_WAIT * 4; i++)); do
    pid_is "$pid" "$prog" || break
    sleep 0.25
  done
  if pid_is "$pid" "$prog"; then
    say "$name ... pid $pid ignored SIGTERM for ${TERM_WAIT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
    for ((i = 0; i < 40; i++)); do
      pid_is "$pid" "$prog" || break
      sleep 0.25
    done
    if pid_is "$pid" "$prog"; then
      say "ERROR: $name pid $pid survived SIGKILL" >&2
      return 1
    fi
  fi
  rm -f "$f"
  say "$name ... stopped (pid $pid)"
}

rc=0
stop registry docker-registry || rc=1
stop dockerd dockerd || rc=1
exit "$rc"
