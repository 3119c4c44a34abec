#!/usr/bin/env bash
# host-teardown.sh: stop what ONE run of scripts/host-setup.sh started, and nothing else.
#
#   STELLA_HOST_RUN_ID=<id> bash scripts/host-teardown.sh      (or: bash scripts/host-teardown.sh <id>)
#
# The run's record is ${STELLA_HOST_STATE:-/var/tmp/stella-host}/runs/<id>/ (host-setup prints the
# id; .ci/run chooses it and passes it to both). For each daemon recorded in <svc>.pid there
# (referrers-registry, registry, dockerd): if that pid still runs the same program (same start
# time, same executable) it is stopped — SIGTERM, a bounded wait, then SIGKILL — unless another
# LIVE run (its owner process still runs) recorded that it uses it: then the daemon is handed to
# that run (its record moves there) and keeps running, and that run's teardown stops it. What the
# run found already running (<svc>.uses) is never stopped. Without a run id nothing is stopped.
# Safe to run twice or when nothing was started.
set -euo pipefail

STATE=${STELLA_HOST_STATE:-/var/tmp/stella-host}
TERM_WAIT=${STELLA_TEARDOWN_WAIT:-30}
RUN_ID=${1:-${STELLA_HOST_RUN_ID:-}}
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

say() { printf 'host-teardown: %s\n' "$*"; }

if [ -z "$RUN_ID" ]; then
  say "no run id (STELLA_HOST_RUN_ID or the first argument): nothing stopped. Runs recorded in $STATE/runs:" >&2
  ls -1 "$STATE/runs" 2>/dev/null | sed 's/^/  /' >&2 || true
  exit 2
fi
[[ "$RUN_ID" =~ ^[A-Za-z0-9._-]+$ ]] || { say "ERROR: bad run id: $RUN_ID" >&2; exit 2; }
RUN_DIR="$STATE/runs/$RUN_ID"
if [ ! -d "$RUN_DIR" ]; then
  say "run $RUN_ID: nothing to stop (no $RUN_DIR)"
  exit 0
fi
# Do not race a host-setup that is starting or adopting things right now.
exec 9>"$STATE/.lock"
flock -w 900 9 || { say "ERROR: $STATE/.lock is held by another host-setup/teardown" >&2; exit 1; }

proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
# ident_alive "<pid> <start>[ <exe>]": that very process still runs (same start time, same program).
ident_alive() {
  local pid start exe got
  read -r pid start exe <<<"$1"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  [ "$(proc_start "$pid")" = "$start" ] || return 1
  if [ -n "$exe" ]; then
    got=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
    [ "${got% (deleted)}" = "$exe" ] || return 1
  fi
}
run_live() { [ -f "$1/owner" ] && ident_alive "$(cat "$1/owner" 2>/dev/null)"; }

# heir <svc> <"pid start">: a live run other than this one that uses that very process.
heir() {
  local d
  for d in "$STATE"/runs/*/; do
    d=${d%/}
    [ "$d" != "$RUN_DIR" ] && [ -f "$d/$1.uses" ] || continue
    [ "$(cat "$d/$1.uses")" = "$2" ] || continue
    if run_live "$d"; then printf '%s\n' "$d"; return 0; fi
  done
  return 1
}

# stop <svc>
stop() {
  local name=$1 f="$RUN_DIR/$1.pid" rec pid start exe to kids i
  if [ ! -f "$f" ]; then
    if [ -f "$RUN_DIR/$name.uses" ]; then
      say "$name ... not started by run $RUN_ID (it used one that was already running): left running"
    else
      say "$name ... not started by run $RUN_ID"
    fi
    return 0
  fi
  rec=$(cat "$f" 2>/dev/null || true)
  read -r pid start exe <<<"$rec"
  if ! ident_alive "$rec"; then
    say "$name ... pid ${pid:-?} no longer runs ${exe:-?} (stale record removed)"
    rm -f "$f"
    return 0
  fi
  if to=$(heir "$name" "$pid $start"); then
    mv -f "$f" "$to/$name.pid"
    rm -f "$to/$name.uses"
    say "$name ... pid $pid is used by live run ${to##*/}: left running, handed to that run's teardown"
    return 0
  fi
  # Children (dockerd's managed containerd) belong to it: kill them too if it must be SIGKILLed.
  kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < TERM_WAIT * 4; i++)); do
    ident_alive "$rec" || break
    sleep 0.25
  done
  if ident_alive "$rec"; then
    say "$name ... pid $pid ignored SIGTERM for ${TERM_WAIT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
    for ((i = 0; i < 40; i++)); do
      ident_alive "$rec" || break
      sleep 0.25
    done
    if ident_alive "$rec"; then
      say "ERROR: $name pid $pid survived SIGKILL" >&2
      return 1
    fi
  fi
  rm -f "$f"
  say "$name ... stopped (pid $pid, started by run $RUN_ID)"
}

rc=0
stop referrers-registry || rc=1
stop registry || rc=1
stop dockerd || rc=1
if [ "$rc" = 0 ]; then
  rm -rf "$RUN_DIR"
  say "run $RUN_ID ended"
fi
exit "$rc"
