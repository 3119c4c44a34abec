#!/usr/bin/env bash
# load.sh: verify this extracted StellaOps bundle, then copy every image into a private
# registry by digest, with its referrers (signatures, SBOMs, provenance) and legacy .sig
# tags, keeping every digest. Needs what verify.sh needs, plus oras (>= 1.2).
#
#   bundle/load.sh --to registry.local:5000 --public-key cosign.pub
#   bundle/load.sh --to 127.0.0.1:5000 --plain-http          # a registry without TLS
#
# Credentials: oras reads ~/.docker/config.json (oras login / docker login first).
# Re-running after an interruption copies only what is missing.
# The full loader (`stella-release bundle-load`) also re-verifies every image from the target.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
to="" key_args=()
# One transfer at a time: referrers share blobs (the empty config), and oras 1.2 can hang or
# panic when two of its goroutines push the same blob and the registry answers one with an error.
oras_args=(--concurrency 1)
usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --to) to=${2:?--to needs host:port}; shift 2 ;;
    --to=*) to=${1#*=}; shift ;;
    --public-key) key_args=(--public-key "${2:?--public-key needs a file}"); shift 2 ;;
    --plain-http) oras_args+=(--to-plain-http); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "load.sh: FAILED: $*" >&2; exit 1; }
[ -n "$to" ] || fail "--to host:port is required (the registry to load into)"
[[ "$to" =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || fail "--to $to is not host[:port]"
command -v timeout >/dev/null 2>&1 || fail "timeout (coreutils) is not installed"
command -v oras >/dev/null 2>&1 || fail "oras is not installed (https://oras.land; or use: stella-release bundle-load)"
v=$(oras version 2>/dev/null | sed -n 's/^Version: *//p')
case "$v" in 0.*|1.0.*|1.1.*) fail "oras $v is too old: 1.2 or later copies referrers from an OCI layout" ;; esac

"$here/verify.sh" "${key_args[@]}"

# images.txt: <repository path> <index digest> [<legacy tag> <legacy manifest digest>]…
n=0
while read -r path digest rest; do
  case "$path" in ''|'#'*) continue ;; esac
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "images.txt: bad digest $digest for $path"
  echo "load.sh: $to/$path@$digest"
  # </dev/null: oras must not read the list this loop reads.
  timeout 1800 oras cp -r "${oras_args[@]}" --from-oci-layout "$here/images@$digest" "$to/$path@$digest" </dev/null >/dev/null \
    || fail "oras cp of $path@$digest failed or timed out (re-run: what is there is not copied again)"
  read -r -a legacy <<<"$rest"
  for ((i = 0; i + 1 < ${#legacy[@]}; i += 2)); do
    tag=${legacy[i]} ldigest=${legacy[i + 1]}
    [[ "$tag" =~ ^sha256-[0-9a-f]{64}\.sig$ && "$ldigest" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "images.txt: bad legacy entry $tag $ldigest"
    timeout 600 oras cp "${oras_args[@]}" --from-oci-layout "$here/images@$ldigest" "$to/$path:$tag" </dev/null >/dev/null \
      || fail "oras cp of the legacy signature $path:$tag failed or timed out"
  done
  n=$((n + 1))
done <"$here/images.txt"
echo "load.sh: OK: $n images with their referrers in $to (digests unchanged)"
echo "load.sh: install from it: helm ... --set global.imageRegistry=$to, or the compose files with the image host replaced"
