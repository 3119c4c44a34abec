#!/usr/bin/env bash
# build.sh: build tools/pss-check (the Pod Security Standards checker over the Kubernetes
# admission code, k8s.io/pod-security-admission) once per version, cached outside the work tree,
# and print the binary's path. A warm run compiles nothing. Same pattern as
# scripts/build-referrers-registry.sh.
#
#   bash tools/pss-check/build.sh      # prints e.g. /var/cache/stella-tools/pss-check/v0.37.2-<key>/pss-check
#
# Cache: ${STELLA_TOOL_CACHE:-/var/cache/stella-tools}/pss-check/<version>-<key>, where <key> is the
# sha256 of go.mod, go.sum and main.go (go.mod pins k8s.io/pod-security-admission). Built with
# `nice -n 19` and `go build -p 1` (the hosts have 2 shared cores).
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${STELLA_TOOL_CACHE:-/var/cache/stella-tools}
key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
version=$(sed -n 's/^[[:space:]]*k8s.io\/pod-security-admission \(v[^ ]*\)$/\1/p' "$SRC/go.mod")
out="$CACHE_ROOT/pss-check/${version:-unknown}-$key"
bin="$out/pss-check"
if [ -x "$bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "pss-check/build.sh: no go toolchain on PATH" >&2; exit 1; }
mkdir -p "$out"
export GOPATH="$CACHE_ROOT/go" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0
(cd "$SRC" && nice -n 19 go build -p 1 -trimpath -ldflags '-s -w' -o "$bin.new.$$" .) >&2
mv -f "$bin.new.$$" "$bin"
printf '%s\n' "$bin"
