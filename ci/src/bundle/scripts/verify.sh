#!/usr/bin/env bash
# verify.sh: check this extracted StellaOps bundle offline — the signature over checksums.txt,
# then every file against checksums.txt, and that no file was added. Needs bash, coreutils
# (sha256sum, find) and openssl. Exit 0 only when everything holds.
#
#   mkdir bundle && tar --zstd -xf stella-bundle-v1.4.0.tar.zst -C bundle --no-same-owner
#   bundle/verify.sh --public-key cosign.pub      # the key you obtained from the release page
#   bundle/verify.sh                              # the bundle's own key: integrity, not origin
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
key=""
usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --public-key) key=${2:?--public-key needs a file}; shift 2 ;;
    --public-key=*) key=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "verify.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "verify.sh: FAILED: $*" >&2; exit 1; }

# Pre-flight: only what the check needs, each named with its fix.
for t in sha256sum find sort openssl; do
  command -v "$t" >/dev/null 2>&1 || fail "$t is not installed (install coreutils / findutils / openssl)"
done
cd "$here"
for f in checksums.txt checksums.txt.sig; do [ -f "$f" ] || fail "$f is missing: the bundle is not signed, or was extracted incompletely"; done
if [ -n "$key" ]; then
  case "$key" in /*) ;; *) key="$OLDPWD/$key" ;; esac
  [ -f "$key" ] || fail "public key $key: no such file"
  origin="the given key $key"
else
  key="$here/keys/cosign.pub"
  [ -f "$key" ] || fail "no --public-key given and keys/cosign.pub is missing"
  origin="the bundle's own key (integrity only: pass --public-key with the key from the release page to check origin)"
fi

# 1. The signature over checksums.txt (bundle.sig holds the same signature as a Sigstore bundle).
openssl dgst -sha256 -verify "$key" -signature checksums.txt.sig checksums.txt >/dev/null 2>&1 \
  || fail "checksums.txt is not signed by $key (changed after signing, or signed by another key)"
echo "verify.sh: signature over checksums.txt verifies with $origin"

# 2. No links or special files; every file listed, and listed once.
odd=$(find . ! -type f ! -type d -printf '%P\n' | head -5)
[ -z "$odd" ] || fail "links or special files are not part of the bundle: $odd"
listed=$(sed -E 's/^[0-9a-f]{64}  //' checksums.txt | sort)
present=$(find . -type f ! -path ./checksums.txt ! -path ./checksums.txt.sig ! -path ./bundle.sig -printf '%P\n' | LC_ALL=C sort)
extra=$(comm -13 <(printf '%s\n' "$listed" | LC_ALL=C sort) <(printf '%s\n' "$present") | head -5)
[ -z "$extra" ] || fail "files not in checksums.txt (added after signing): $extra"
missing=$(comm -23 <(printf '%s\n' "$listed" | LC_ALL=C sort) <(printf '%s\n' "$present") | head -5)
[ -z "$missing" ] || fail "files in checksums.txt but not here: $missing"

# 3. Every file's content.
sha256sum --strict --quiet -c checksums.txt || fail "a file differs from checksums.txt (see the lines above)"
echo "verify.sh: OK: $(wc -l <checksums.txt) files match checksums.txt; none added, none missing"
