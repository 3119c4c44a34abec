#!/usr/bin/env bash
# dagger-engine.sh: build a Dagger engine, CLI and the engine's helper binaries from the Go module
# github.com/dagger/dagger through the wrapper module tools/dagger, cached outside the work tree by
# version; a warm run compiles nothing.
#
#   bash scripts/dagger-engine.sh build    # build what the Go module proxy lets us build; print the cache dir
#   bash scripts/dagger-engine.sh status   # say whether an engine can be built here, and why not (exit 3)
#   bash scripts/dagger-engine.sh image    # the engine image (Debian root + the binaries), loaded into the host Docker
#   eval "$(bash scripts/dagger-engine.sh up)"   # start an engine; prints the client's environment
#   STELLA_DAGGER_RUN_ID=<id> bash scripts/dagger-engine.sh down [--purge]   # stop only what that run started
#
# STELLA_DAGGER_BIN_DIR=<dir>: take dagger-engine and dagger (same version) from <dir> instead of
# the cache, for status/image/up; the helpers always come from this script's own build.
#
# STATUS (found 2026-12-01, see tools/dagger/README.md): the engine and the CLI cannot be built here.
# The Go module proxy answers 403 "This module version is not available" for modules in their
# import graphs (github.com/vito/dang/v2, github.com/vito/tuist, github.com/vito/tuist/teav1,
# github.com/vito/midterm at the pinned pseudo-version) and for github.com/dagger/dagger@v0.21.9
# itself; it serves github.com/dagger/dagger@v0.21.8. `build` builds the helper binaries (dagger-init,
# dnsname, dialstdio, runc, the CNI plugins), then checks the engine and CLI module graphs and
# exits 3 naming each refused module. Nothing here stubs or fakes a missing module.
#
# Cache: ${STELLA_TOOL_CACHE:-/var/cache/stella-tools}/dagger/<version>-<key>/, <key> = sha256 of the
# wrapper's go.mod, go.sum and distconsts stand-in. GOPATH/GOCACHE live under the same cache root.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$REPO_ROOT/tools/dagger"
CACHE_ROOT=${STELLA_TOOL_CACHE:-/var/cache/stella-tools}
version=$(sed -n 's/^require github.com\/dagger\/dagger \(v[^ ]*\).*/\1/p' "$SRC/go.mod")
key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/distconsts/go.mod" "$SRC/distconsts/consts.go" | sha256sum | cut -c1-16)
out="$CACHE_ROOT/dagger/${version:?no dagger version in tools/dagger/go.mod}-$key"

export GOPATH="$CACHE_ROOT/go" GOMODCACHE="$CACHE_ROOT/go/pkg/mod" GOCACHE="$CACHE_ROOT/go-build"
export GOFLAGS=-mod=readonly GOTOOLCHAIN=local
# Two shared cores: stay out of the way of everything else (override with STELLA_GO_PARALLEL=2).
GO_P=${STELLA_GO_PARALLEL:-1}
export GOMAXPROCS=${GOMAXPROCS:-$GO_P}

LDFLAGS="-s -w -X github.com/dagger/dagger/engine.Version=$version -X github.com/dagger/dagger/engine.Tag=$version"
TAGS=dfexcludepatterns,dfparents

log() { printf 'dagger-engine: %s\n' "$*" >&2; }

# name  package  cgo
HELPERS=(
  "dagger-init github.com/dagger/dagger/cmd/init 0"
  "dnsname github.com/dagger/dagger/cmd/dnsname 0"
  "dialstdio github.com/dagger/dagger/cmd/dialstdio 0"
  "cni/bridge github.com/containernetworking/plugins/plugins/main/bridge 0"
  "cni/host-local github.com/containernetworking/plugins/plugins/ipam/host-local 0"
  "cni/loopback github.com/containernetworking/plugins/plugins/main/loopback 0"
  "cni/firewall github.com/containernetworking/plugins/plugins/meta/firewall 0"
)
# runc: not from Dagger's module graph (there its cilium/ebpf is newer than the
# opencontainers/cgroups runc pins accepts: `info.RunCount undefined`), but from runc's own go.mod,
# as Dagger's engine build does. Its nsenter is C (a cgo constructor), so CGO_ENABLED=1, linked
# against the engine image's Debian glibc; with the `seccomp` tag (the engine gives every container
# a seccomp profile: without it runc fails "config provided but seccomp not supported"), so it
# needs Debian's libseccomp-dev to build and libseccomp2 (in the engine image) to run.
RUNC_VERSION=$(sed -n 's/^\tgithub.com\/opencontainers\/runc \(v[^ ]*\).*/\1/p' "$SRC/go.mod")
MAIN=(
  "dagger github.com/dagger/dagger/cmd/dagger"
  "dagger-engine github.com/dagger/dagger/cmd/engine"
)

build_one() { # name pkg cgo
  local name=$1 pkg=$2 cgo=$3 bin="$out/bin/$1"
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { log "no go toolchain on PATH"; exit 1; }
  mkdir -p "$(dirname "$bin")"
  local t0=$SECONDS
  (cd "$SRC" && CGO_ENABLED=$cgo nice -n 19 go build -p "$GO_P" -trimpath -tags "$TAGS" -ldflags "$LDFLAGS" -o "$bin.new.$$" "$pkg") >&2
  mv -f "$bin.new.$$" "$bin"
  log "built $name in $((SECONDS - t0)) s"
}

build_runc() {
  local bin="$out/bin/runc"
  [ -x "$bin" ] && return 0
  dpkg-query -W -f '${Status}' libseccomp-dev 2>/dev/null | grep -q 'ok installed' || apt-get install -y libseccomp-dev pkg-config >&2
  local t0=$SECONDS tmp; tmp=$(mktemp -d)
  (cd "$tmp" && GOFLAGS= GOBIN="$tmp" CGO_ENABLED=1 nice -n 19 go install -p "$GO_P" -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION") >&2
  mv -f "$tmp/runc" "$bin"; rm -rf "$tmp"
  log "built runc $RUNC_VERSION in $((SECONDS - t0)) s"
}

# What stops a package's import graph from loading: one line per module the proxy refuses
# ("module@version: 403 Forbidden"), or any other load error as go reports it (e.g. no network).
refused_modules() { # pkg
  local errs
  errs=$(cd "$SRC" && go list -e -deps -f '{{with .Error}}{{.Err}}{{end}}' "$1" 2>&1 | grep -v '^go: downloading' | grep -v '^[[:space:]]*$' || true)
  [ -z "$errs" ] && return 0
  local refused
  refused=$(grep -oE '[A-Za-z0-9._/-]+@v[A-Za-z0-9.+-]+: reading https?://[^ ]+: 40[34][^"]*' <<<"$errs" | sed -E 's/: reading [^ ]+: / /' | sort -u)
  if [ -n "$refused" ]; then printf '%s\n' "$refused"; else sort -u <<<"$errs" | head -5; fi
}

engine_blockers() {
  local pkg name blockers=""
  for entry in "${MAIN[@]}"; do
    read -r name pkg <<<"$entry"
    [ -x "$out/bin/$name" ] && continue
    local r; r=$(refused_modules "$pkg")
    [ -n "$r" ] && blockers+="$name ($pkg) cannot load its import graph:"$'\n'"$(sed 's/^/  /' <<<"$r")"$'\n'
  done
  printf '%s' "$blockers"
}

# ---------------------------------------------------------------------------------------------
# The engine image and a running engine (only once dagger-engine and dagger exist).
# Binaries: the helpers always from $out/bin; dagger-engine and dagger from $out/bin, or from
# STELLA_DAGGER_BIN_DIR (a directory holding both, e.g. an engine built elsewhere at the same version).
BIN_DIR=${STELLA_DAGGER_BIN_DIR:-$out/bin}
SUITE=bookworm
MIRROR=${STELLA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUN_ROOT=${STELLA_DAGGER_RUN_ROOT:-/var/tmp/stella-dagger}
ENGINE_IMAGE="stella-dagger-engine:$version"
STATE_VOLUME="stella-dagger-state-$version"

# Keyed by the image recipe (this function's text) and the binaries it packs, not by the whole script.
engine_key() { { declare -f build_image; cat "$BIN_DIR/dagger-engine" "$BIN_DIR/dagger" "$out/bin/dagger-init" "$out/bin/runc"; } | sha256sum | cut -c1-16; }

# A Debian root (debootstrap minbase + dnsmasq, iptables, ca-certificates), the engine at
# /usr/local/bin, the helpers where the engine looks for them; loaded into the host Docker as
# $ENGINE_IMAGE. Cached as a tarball keyed by this script and the binaries.
build_image() {
  for b in dagger-engine dagger; do
    [ -x "$BIN_DIR/$b" ] || { log "no $BIN_DIR/$b: run 'bash scripts/dagger-engine.sh build' first ('status' says why it cannot be built)"; exit 3; }
  done
  local k tar; k=$(engine_key); tar="$CACHE_ROOT/dagger/engine-image-$version-$k.tar"
  if [ "$(docker image inspect -f '{{index .Config.Labels "stella.key"}}' "$ENGINE_IMAGE" 2>/dev/null)" = "$k" ]; then return 0; fi
  if [ -f "$tar" ]; then docker load -i "$tar" >&2; return 0; fi
  command -v debootstrap >/dev/null || apt-get install -y debootstrap >&2
  local t0=$SECONDS work; work=$(mktemp -d /var/tmp/stella-dagger-engine-image.XXXXXX)
  local root="$work/root"
  debootstrap --variant=minbase --include=dnsmasq-base,iptables,ca-certificates,libseccomp2 --arch=amd64 "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/*
  install -m 0755 "$BIN_DIR/dagger-engine" "$BIN_DIR/dagger" "$out/bin/dagger-init" "$out/bin/runc" "$out/bin/dialstdio" "$root/usr/local/bin/"
  install -d "$root/opt/cni/bin" "$root/etc/dagger" "$root/var/lib/dagger" "$root/run/dagger" "$root/usr/local/share/ca-certificates"
  install -m 0755 "$out"/bin/cni/* "$out/bin/dnsname" "$root/opt/cni/bin/"
  # The engine points /usr/bin/iptables* at /usr/bin/xtables-{legacy,nft}-multi; Debian has them in /usr/sbin.
  ln -sf /usr/sbin/xtables-legacy-multi "$root/usr/bin/xtables-legacy-multi"
  ln -sf /usr/sbin/xtables-nft-multi "$root/usr/bin/xtables-nft-multi"
  # Trust anchors the engine adds to every container it runs (this machine's egress CA, if any):
  # the image is built and used on this machine only, never pushed.
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
  fi
  tar --numeric-owner --sort=name --mtime=@0 -C "$root" -cf "$work/rootfs.tar" .
  docker import --change 'ENTRYPOINT ["/usr/local/bin/dagger-engine", "--config", "/etc/dagger/engine.toml"]' \
    --change 'VOLUME ["/var/lib/dagger"]' --change "LABEL stella.key=$k" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/rootfs.tar" "$ENGINE_IMAGE" >&2
  docker save -o "$tar.new" "$ENGINE_IMAGE" && mv -f "$tar.new" "$tar"
  rm -rf "$work"
  log "built engine image $ENGINE_IMAGE in $((SECONDS - t0)) s"
}

# up: a registry mirror container serving the local registry's data read-only (the library/*
# images scripts/dagger-images.sh pushed), then the engine, privileged, both on a Docker network
# of the run's own (the engine has its own network namespace: its CNI bridge and iptables rules
# stay inside it, none on the host), with engine.toml mirroring docker.io to that mirror. The engine socket is bind-mounted to the host.
# Prints shell exports for the client; records what it started in $RUN_ROOT/<id>/state.
cmd_up() {
  build_image
  local id=${STELLA_DAGGER_RUN_ID:-$(date +%s)-$$}
  local dir="$RUN_ROOT/$id"
  mkdir -p "$dir/run" "$dir/config" "$dir/ca"
  # The CAs the engine adds to every container it runs, read at each exec: this machine's (its
  # egress CA) plus whatever a test drops here ($STELLA_DAGGER_CA_DIR) for a registry of its own.
  cp /usr/local/share/ca-certificates/*.crt "$dir/ca/" 2>/dev/null || true
  local regdata=${STELLA_REGISTRY_ROOT:-/var/lib/stella-registry}
  local mirror_image=${STELLA_REGISTRY:-127.0.0.1:5000}/library/registry:2
  docker image inspect "$mirror_image" >/dev/null 2>&1 || { log "no $mirror_image: run 'bash scripts/dagger-images.sh build' first"; exit 1; }
  local net="stella-dagger-$id" mirror="stella-dagger-mirror-$id" engine="stella-dagger-engine-$id"
  # Names, not ids, are recorded (before starting), so a start that fails half-way is removed too.
  printf 'container=%s\ncontainer=%s\nnetwork=%s\n' "$engine" "$mirror" "$net" >"$dir/state"
  # A network of this run's own (Docker picks a free subnet and NATs it; its bridge is not docker0,
  # which this script never touches): the mirror and the engine, and the gateway address (the
  # host's end) where a test can serve something the engine's containers reach.
  docker network create --label "stella.dagger.run=$id" "$net" >/dev/null
  local gateway
  gateway=$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$net")
  docker run -d --name "$mirror" --network "$net" --label "stella.dagger.run=$id" -v "$regdata:/var/lib/registry:ro" "$mirror_image" >/dev/null
  local mip
  mip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$mirror")
  printf '%s\n' 'debug = true' '[registry."docker.io"]' "  mirrors = [\"$mip:5000\"]" "[registry.\"$mip:5000\"]" '  http = true' '  insecure = true' >"$dir/config/engine.toml"
  # Privileged, less CAP_SYS_RESOURCE: this VM's bounding set lacks it, and `--privileged` (which
  # asks for every capability) fails there ("unable to apply caps: operation not permitted").
  # So: every other capability, no seccomp/AppArmor profile, /proc and /sys unmasked and the
  # cgroup hierarchy (v1 here) writable, as --privileged would give.
  local priv=(--privileged)
  local capbnd; capbnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
  if [ $(( (0x$capbnd >> 24) & 1 )) = 0 ]; then # bit 24: CAP_SYS_RESOURCE
    priv=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined --security-opt apparmor=unconfined
      --security-opt systempaths=unconfined --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --device /dev/fuse)
  fi
  docker run -d "${priv[@]}" --name "$engine" --network "$net" --label "stella.dagger.run=$id" \
    -v "$STATE_VOLUME:/var/lib/dagger" -v "$dir/run:/run/dagger" -v "$dir/config/engine.toml:/etc/dagger/engine.toml:ro" \
    -v "$dir/ca:/usr/local/share/ca-certificates:ro" "$ENGINE_IMAGE" >/dev/null ||
    { log "engine did not start (run $id; stop it with STELLA_DAGGER_RUN_ID=$id $0 down)"; exit 1; }
  local t0=$SECONDS
  until [ -S "$dir/run/engine.sock" ]; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$engine")" != true ] || [ $((SECONDS - t0)) -gt 120 ]; then
      docker logs --tail 40 "$engine" >&2
      log "engine did not start (run $id; stop it with STELLA_DAGGER_RUN_ID=$id $0 down)"
      exit 1
    fi
    sleep 0.5
  done
  log "engine $ENGINE_IMAGE up in $((SECONDS - t0)) s (run $id; docker.io mirrored to $mip:5000)"
  {
    echo "export STELLA_DAGGER_RUN_ID='$id'"
    echo "export _EXPERIMENTAL_DAGGER_RUNNER_HOST='unix://$dir/run/engine.sock'"
    echo "export _EXPERIMENTAL_DAGGER_CLI_BIN='$BIN_DIR/dagger'"
    echo "export STELLA_DAGGER_ENGINE_CONTAINER='$engine'"
    echo "export STELLA_DAGGER_CA_DIR='$dir/ca'"
    echo "export STELLA_DAGGER_GATEWAY='$gateway'"
  } | tee "$dir/env.sh"
}

# down: remove only the containers this run started (by id); keep the state volume (the engine's
# cache) unless --purge.
cmd_down() {
  local id=${STELLA_DAGGER_RUN_ID:?set STELLA_DAGGER_RUN_ID to the run to stop}
  local dir="$RUN_ROOT/$id"
  [ -f "$dir/state" ] || { log "no run $id"; exit 1; }
  while IFS='=' read -r kind name; do
    [ -n "$name" ] || continue
    case $kind in
      container | mirror | engine) docker rm -f "$name" >/dev/null 2>&1 || true ;;
      network) docker network rm "$name" >/dev/null 2>&1 || true ;;
    esac
  done <"$dir/state"
  if [ "${1:-}" = --purge ]; then docker volume rm "$STATE_VOLUME" >/dev/null 2>&1 || true; fi
  rm -rf "$dir"
  log "run $id stopped"
}

want=$(sed -n 's/.*"engineVersion": *"\(v[^"]*\)".*/\1/p' "$REPO_ROOT/dagger.json")

case "${1:-build}" in
  build)
    for entry in "${HELPERS[@]}"; do build_one $entry; done
    build_runc
    blockers=$(engine_blockers)
    if [ -n "$blockers" ]; then
      log "BLOCKED: the Dagger engine and CLI cannot be built from the Go module proxy here."
      printf '%s\n' "$blockers" >&2
      log "dagger.json names $want; the wrapper builds $version (the proxy refuses github.com/dagger/dagger@$want)."
      log "helper binaries are in $out/bin"
      exit 3
    fi
    for entry in "${MAIN[@]}"; do read -r name pkg <<<"$entry"; build_one "$name" "$pkg" 0; done
    printf '%s\n' "$out"
    ;;
  status)
    if [ -x "$BIN_DIR/dagger-engine" ] && [ -x "$BIN_DIR/dagger" ]; then echo "built: $BIN_DIR"; exit 0; fi
    blockers=$(engine_blockers)
    if [ -n "$blockers" ]; then printf 'blocked: %s\n' "$blockers"; exit 3; fi
    echo "buildable, not built: bash scripts/dagger-engine.sh build"; exit 1
    ;;
  image) build_image; echo "$ENGINE_IMAGE" ;;
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  *) echo "usage: $0 build|status|image|up|down [--purge]" >&2; exit 2 ;;
esac
