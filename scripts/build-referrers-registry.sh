#!/usr/bin/env bash
# build-referrers-registry.sh: build tools/referrers-registry (go-containerregistry's registry with
# the OCI 1.1 referrers API switched on) once per version, cached outside the work tree, and print
# the binary's path. A warm run compiles nothing.
#
#   bash scripts/build-referrers-registry.sh        # prints e.g. /var/cache/stella-tools/referrers-registry/<key>/referrers-registry
#
# Cache: ${STELLA_TOOL_CACHE:-/var/cache/stella-tools}/referrers-registry/<key>, where <key> is the
# sha256 of the wrapper's go.mod, go.sum and main.go (go.mod pins the go-containerregistry version).
# Go modules come from the Go module proxy; GOPATH/GOCACHE live under the same cache root.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$REPO_ROOT/tools/referrers-registry"
CACHE_ROOT=${STELLA_TOOL_CACHE:-/var/cache/stella-tools}
key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
version=$(sed -n 's/^require github.com\/google\/go-containerregistry \(v[^ ]*\)$/\1/p' "$SRC/go.mod")
out="$CACHE_ROOT/referrers-registry/${version:-unknown}-$key"
bin="$out/referrers-registry"
if [ -x "$bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build-referrers-registry: no go toolchain on PATH" >&2; exit 1; }
mkdir -p "$out"
export GOPATH="$CACHE_ROOT/go" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0
(cd "$SRC" && go build -trimpath -ldflags '-s -w' -o "$bin.new.$$" .) >&2
mv -f "$bin.new.$$" "$bin"
printf '%s\n' "$bin"
