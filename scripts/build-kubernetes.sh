#!/usr/bin/env bash
# build-kubernetes.sh: build the official Kubernetes server components, etcd, CoreDNS and the pod
# sandbox (pause) program once per version, cached outside the work tree, and print the directory
# that holds them. A warm run compiles nothing.
#
#   bash scripts/build-kubernetes.sh            # build (or find) and print the binary directory
#   bash scripts/build-kubernetes.sh --check    # print the directory if built, else exit 3
#
# Sources (all pinned, all from the Go module proxy; see ../shared/guide/KUBERNETES.md):
#   tools/kubernetes/go.mod          k8s.io/kubernetes (kube-apiserver, kube-controller-manager,
#                                    kube-scheduler, kubelet, kube-proxy, kubeadm, kubectl) and
#                                    go.etcd.io/etcd/server/v3 (etcd), as `tool` lines of a wrapper
#                                    module that replaces every staging module by its v0.x release
#   tools/kubernetes/coredns/        our main over github.com/coredns/coredns (no forward plugin)
#   tools/kubernetes/pause/pause.c   our pod sandbox process, gcc -Os -static
#
# Cache: ${STELLA_TOOL_CACHE:-/var/cache/stella-tools}/kubernetes/<version>-<key>/, <version> the
# k8s.io/kubernetes version in tools/kubernetes/go.mod, <key> the sha256 of every source file above
# and of the build recipe (RECIPE below). GOPATH/GOCACHE are shared with scripts/build-go-tool.sh. CGO_ENABLED=0,
# `nice -n 10` (2 shared cores; a cold build takes 15-25 minutes).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$REPO_ROOT/tools/kubernetes"
CACHE_ROOT=${STELLA_TOOL_CACHE:-/var/cache/stella-tools}
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

version=$(sed -n 's|^[[:space:]]*\(require \)\{0,1\}k8s.io/kubernetes \(v[0-9][^ ]*\).*$|\2|p' "$SRC/go.mod" | head -n 1)
[ -n "$version" ] || { echo "build-kubernetes: $SRC/go.mod does not require k8s.io/kubernetes" >&2; exit 2; }
# RECIPE names how the binaries are built (flags, binary list): bump it when that changes.
RECIPE="recipe-1 CGO_ENABLED=0 -trimpath -s -w version-ldflags gcc-Os-static"
key=$( (cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/coredns/go.mod" "$SRC/coredns/go.sum" "$SRC/coredns/main.go" "$SRC/pause/pause.c"; echo "$RECIPE") | sha256sum | cut -c1-16)
out="$CACHE_ROOT/kubernetes/$version-$key"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm kubectl etcd coredns pause)

complete() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$out/$b" ] || return 1; done
}
if complete; then
  printf '%s\n' "$out"
  exit 0
fi
if [ "$CHECK" = 1 ]; then
  echo "build-kubernetes: $version not built yet (run: bash scripts/build-kubernetes.sh)" >&2
  exit 3
fi
command -v go >/dev/null || { echo "build-kubernetes: no go toolchain on PATH" >&2; exit 1; }
command -v gcc >/dev/null || { echo "build-kubernetes: no gcc on PATH (needed for the static pause program)" >&2; exit 1; }

mkdir -p "$out"
tmp="$out/.build.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
export GOPATH="$CACHE_ROOT/go" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-mod=readonly CGO_ENABLED=0
started=$(date +%s)
log() { printf 'build-kubernetes: %s (%ss)\n' "$*" "$(($(date +%s) - started))" >&2; }

# The version the components report (`kubectl version`, Helm's kubeVersion check, kubeadm): without
# these they say v0.0.0-master.
minor=${version#v*.}; minor=${minor%%.*}; major=${version#v}; major=${major%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

log "building Kubernetes $version into $out"
(cd "$SRC" && nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubectl) >&2
log "kubernetes components built"
(cd "$SRC" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2
log "etcd built"
(cd "$SRC/coredns" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .) >&2
log "coredns built"
nice -n 10 gcc -Os -static -o "$tmp/pause" "$SRC/pause/pause.c" >&2
strip "$tmp/pause" 2>/dev/null || true
for b in "${BINARIES[@]}"; do mv -f "$tmp/$b" "$out/$b"; done
log "done"
printf '%s\n' "$out"
