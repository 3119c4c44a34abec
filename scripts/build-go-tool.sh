#!/usr/bin/env bash
# build-go-tool.sh: build one of this project's small Go tools (tools/<name>: our own main.go over a
# pinned Go module from the Go module proxy) once per version, cached outside the work tree, and
# print the binary's path. A warm run compiles nothing.
#
#   bash scripts/build-go-tool.sh <name> <pinned module>
#   bash scripts/build-go-tool.sh referrers-registry github.com/google/go-containerregistry
#
# Cache: ${STELLA_TOOL_CACHE:-/var/cache/stella-tools}/<name>/<version>-<key>/<name>, where <version>
# is the pinned module's version in tools/<name>/go.mod and <key> the sha256 of go.mod, go.sum and
# main.go. GOPATH/GOCACHE live under the same cache root. Built with `nice -n 19` (2 shared cores).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 <tool name> <pinned module>" >&2; exit 2; }
name=$1 module=$2
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$REPO_ROOT/tools/$name"
[ -f "$SRC/go.mod" ] || { echo "build-go-tool: no $SRC/go.mod" >&2; exit 2; }
CACHE_ROOT=${STELLA_TOOL_CACHE:-/var/cache/stella-tools}
key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
version=$(sed -n "s|^[[:space:]]*\(require \)\{0,1\}$module \(v[^ ]*\).*\$|\2|p" "$SRC/go.mod" | head -n 1)
[ -n "$version" ] || { echo "build-go-tool: $SRC/go.mod does not require $module" >&2; exit 2; }
out="$CACHE_ROOT/$name/$version-$key"
bin="$out/$name"
if [ -x "$bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build-go-tool: no go toolchain on PATH (needed to build $name)" >&2; exit 1; }
mkdir -p "$out"
export GOPATH="$CACHE_ROOT/go" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0
(cd "$SRC" && nice -n 19 go build -trimpath -ldflags '-s -w' -o "$bin.new.$$" .) >&2
mv -f "$bin.new.$$" "$bin"
printf '%s\n' "$bin"
