# shellcheck shell=bash
# quickstart.sh --bundle FILE: the Compose quickstart from an air-gap bundle, with no network.
# Sourced by quickstart.sh (after common.sh), never run. bundle_quickstart ends by running the
# bundle's own quickstart.sh against the registry it loaded the bundle into.
#
#   DIR/bundle/    the bundle: its entries checked (plain files and folders, no absolute path or
#                  `..`), extracted, then verified by its verify.sh; never written after, and
#                  verified again on every run
#   DIR/install/   the install: the bundle's compose/ copied in; .env and .secrets/ live here
#   the registry   --registry HOST (yours, e.g. registry.local:5000), or the bundle's own:
#                  support-registry, `docker load`ed from the bundle's OCI layout (checked by
#                  its config digest), run as container stella-bundle-registry on
#                  127.0.0.1:$STELLA_BUNDLE_REGISTRY_PORT (default 5000), its data in the
#                  volume stella-bundle-registry
#
# The steps, in order (a re-run extracts nothing, loads nothing twice, recreates nothing):
#   a. pre-flight, no side effect: the tools (tar, zstd, sha256sum, openssl, oras >= 1.2, docker)
#   b. the entries checked, then extracted into DIR/bundle (skipped when DIR/bundle holds this
#      bundle: same checksums.txt)
#   c. DIR/bundle/verify.sh: the signature over checksums.txt, then every file
#   d. the registry: yours, or the bundle's own started (or kept)
#   e. DIR/bundle/load.sh --to REGISTRY: every image by digest with its referrers
#   f. DIR/install/quickstart.sh --registry REGISTRY: the quickstart, every image from there

BUNDLE_REGISTRY_CONTAINER="${STELLA_BUNDLE_REGISTRY_CONTAINER:-stella-bundle-registry}"
BUNDLE_REGISTRY_VOLUME="${STELLA_BUNDLE_REGISTRY_VOLUME:-stella-bundle-registry}"

# bundle_quickstart FILE DIR REGISTRY PLAIN_HTTP PUBLIC_KEY CHECK_ONLY [quickstart.sh arguments…]
bundle_quickstart() {
  local file="$1" dir="$2" registry="$3" plain_http="$4" public_key="$5" check_only="$6"
  shift 6
  local problems=() t v
  say "StellaOps quickstart from the bundle $file"
  say "a. pre-flight"
  [[ -f "$file" && -r "$file" ]] || problems+=("--bundle $file: no such readable file (the release's stella-bundle-vX.Y.Z.tar.zst)")
  [[ "$(basename "$file")" == stella-bundle-*.tar.zst ]] || problems+=("--bundle $file: not a bundle's name (stella-bundle-<version>.tar.zst)")
  [[ -z "$public_key" || -r "$public_key" ]] || problems+=("--public-key $public_key: no such readable file (the release's cosign.pub)")
  for t in tar zstd sha256sum openssl find sort comm timeout docker; do
    command -v "$t" >/dev/null 2>&1 || problems+=("$t: not found. Fix: install it (Debian: apt-get install tar zstd coreutils openssl findutils docker.io)")
  done
  if ! command -v oras >/dev/null 2>&1; then
    problems+=("oras: not found (load.sh copies the images with it). Fix: install oras >= 1.2 (https://oras.land, a single static binary you can carry in)")
  else
    v="$(oras version 2>/dev/null | sed -n 's/^Version: *//p')"
    case "$v" in 0.* | 1.0.* | 1.1.*) problems+=("oras $v is too old: 1.2 or later copies referrers from an OCI layout") ;; esac
  fi
  if command -v docker >/dev/null 2>&1 && ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    problems+=("docker: the engine does not answer. Fix: start it (systemctl start docker), or point DOCKER_HOST at it")
  fi
  local port="${STELLA_BUNDLE_REGISTRY_PORT:-5000}"
  if [[ -z "$registry" ]]; then
    [[ "$port" =~ ^[0-9]+$ ]] || problems+=("STELLA_BUNDLE_REGISTRY_PORT=$port is not a port number")
    if ! docker inspect "$BUNDLE_REGISTRY_CONTAINER" >/dev/null 2>&1 && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      problems+=("port $port on 127.0.0.1 is in use: the bundle's registry listens there. Fix: STELLA_BUNDLE_REGISTRY_PORT=<free port>, or load into your registry with --registry HOST")
    fi
  fi
  if ((${#problems[@]})); then
    warn "pre-flight found ${#problems[@]} problem(s); nothing was changed:"
    for t in "${problems[@]}"; do warn "  - $t"; done
    exit 1
  fi
  say "    ok: $(command -v oras) ${v:-}, docker $(docker version --format '{{.Server.Version}}')"
  ((check_only)) && exit 0

  say "b. extract into $dir/bundle"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local want
  want="$(zstd -dcq -- "$file" | tar -xO checksums.txt 2>/dev/null | sha256sum | cut -d' ' -f1)" || true
  if [[ -f "$dir/bundle/checksums.txt" && "$(sha256sum <"$dir/bundle/checksums.txt" | cut -d' ' -f1)" == "$want" ]]; then
    say "    $dir/bundle holds this bundle already (same checksums.txt): not extracted again"
  else
    bundle_check_entries "$file"
    local tmp="$dir/.bundle.partial"
    rm -rf "$tmp" && mkdir -p "$tmp"
    zstd -dcq -- "$file" | tar -x --no-same-owner --no-same-permissions -C "$tmp" ||
      die "the bundle could not be extracted (truncated or damaged?): $file"
    rm -rf "$dir/bundle"
    mv "$tmp" "$dir/bundle"
    say "    extracted $(find "$dir/bundle" -type f | wc -l) files"
  fi

  say "c. verify"
  "$dir/bundle/verify.sh" ${public_key:+--public-key "$public_key"} | sed 's/^/    /' ||
    die "the bundle does not verify (above): nothing was loaded or started"
  local version
  version="$(sed -nE 's/^[[:space:]]*"version":[[:space:]]*"([^"]+)".*/\1/p' "$dir/bundle/bundle.json" | head -n 1)"

  say "d. registry"
  if [[ -n "$registry" ]]; then
    say "    yours: $registry"
  else
    registry="$(bundle_registry "$dir/bundle" "$port" "$version")"
    plain_http=1
  fi

  say "e. load into $registry"
  local load_args=(--to "$registry")
  ((plain_http)) && load_args+=(--plain-http)
  [[ -n "$public_key" ]] && load_args+=(--public-key "$public_key")
  "$dir/bundle/load.sh" "${load_args[@]}" 2>&1 | sed 's/^/    /'
  ((PIPESTATUS[0] == 0)) || die "loading into $registry failed (above); re-run: what is there is not copied again"

  say "f. the quickstart of $version, every image from $registry"
  mkdir -p "$dir/install"
  cp -R "$dir/bundle/compose/." "$dir/install/"
  exec bash "$dir/install/quickstart.sh" --registry "$registry" "$@"
}

# Refuses, before anything is written, a bundle whose entries are not plain files and folders
# with relative names inside the folder (the extraction must stay in DIR/bundle).
bundle_check_entries() {
  local bad
  bad="$(zstd -dcq -- "$1" | tar -tv -P --numeric-owner --quoting-style=escape |
    awk '{ name = $0; for (i = 1; i < 6; i++) sub(/^[^ ]+ +/, "", name)
           t = substr($1, 1, 1)
           if ((t != "-" && t != "d") || NF != 6 || name ~ /^\// || name ~ /(^|\/)\.\.(\/|$)/ || name !~ /^[A-Za-z0-9._\/+-]+$/) print $0 }' | head -n 3)" ||
    die "the bundle could not be read (truncated or damaged?): $1"
  [[ -z "$bad" ]] || die "the bundle holds entries that are not plain files inside the folder (refused, nothing extracted): $bad"
}

# The bundle's own registry, started or kept; prints its address (host:port).
bundle_registry() {
  local bundle="$1" port="$2" version="$3" state addr
  state="$(docker inspect --format '{{.State.Status}}' "$BUNDLE_REGISTRY_CONTAINER" 2>/dev/null || true)"
  if [[ -z "$state" ]]; then
    local arch line image
    arch="$(docker version --format '{{.Server.Arch}}')"
    line="$(awk -v p="linux/$arch" '$1 == "registry" && $3 == p' "$bundle/platforms.txt")"
    [[ -n "$line" ]] || die "the bundle has no registry image for linux/$arch (platforms.txt); load it into yours: --registry HOST"
    image="$(bundle_docker_load "$bundle" "$line" "$version")"
    docker run -d --name "$BUNDLE_REGISTRY_CONTAINER" --restart unless-stopped --read-only --cap-drop ALL \
      --security-opt no-new-privileges --user 65532:65532 -p "127.0.0.1:$port:5000" \
      -v "$BUNDLE_REGISTRY_VOLUME:/var/lib/registry" --label "io.stellaops.bundle=$version" "$image" >/dev/null ||
      die "docker run of the bundle's registry ($image) failed"
    warn "    started $BUNDLE_REGISTRY_CONTAINER ($image) on 127.0.0.1:$port, data in volume $BUNDLE_REGISTRY_VOLUME"
  elif [[ "$state" != running ]]; then
    docker start "$BUNDLE_REGISTRY_CONTAINER" >/dev/null || die "docker start $BUNDLE_REGISTRY_CONTAINER failed"
    warn "    started the existing $BUNDLE_REGISTRY_CONTAINER again"
  else
    warn "    $BUNDLE_REGISTRY_CONTAINER is running: kept"
  fi
  local i health
  for ((i = 0; i < 60; i++)); do
    health="$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$BUNDLE_REGISTRY_CONTAINER")"
    [[ "$health" == healthy ]] && break
    sleep 1
  done
  [[ "$health" == healthy ]] || die "the bundle's registry is not healthy after 60 s ($health): docker logs $BUNDLE_REGISTRY_CONTAINER"
  addr="$(docker port "$BUNDLE_REGISTRY_CONTAINER" 5000/tcp | head -n 1)"
  [[ -n "$addr" ]] || die "$BUNDLE_REGISTRY_CONTAINER publishes no port 5000"
  printf '%s' "${addr/0.0.0.0/127.0.0.1}"
}

# docker load of one platform image straight from the bundle's OCI layout (a docker-archive made
# of its config and layer blobs, no registry needed); prints the loaded image's ID after checking
# it is the config digest platforms.txt names.
bundle_docker_load() {
  local bundle="$1" version="$3" path platform config layers tag tmp got
  read -r _ path platform _ config layers <<<"$2"
  for got in "$config" $layers; do
    [[ "$got" =~ ^sha256:[0-9a-f]{64}$ ]] || die "platforms.txt: $got is not a digest"
    [[ -f "$bundle/images/blobs/sha256/${got#sha256:}" ]] || die "the bundle does not hold blob $got of $path (a differential bundle? load it into the registry that holds its base: --registry HOST)"
  done
  tag="${path}:bundle-${version}"
  tmp="$(mktemp -d)"
  {
    printf '[{"Config":"blobs/sha256/%s","RepoTags":["%s"],"Layers":[' "${config#sha256:}" "$tag"
    local first=1 l
    for l in $layers; do
      ((first)) || printf ','
      printf '"blobs/sha256/%s"' "${l#sha256:}"
      first=0
    done
    printf ']}]\n'
  } >"$tmp/manifest.json"
  # shellcheck disable=SC2046
  tar -c -C "$tmp" manifest.json -C "$bundle/images" "blobs/sha256/${config#sha256:}" $(for l in $layers; do printf 'blobs/sha256/%s ' "${l#sha256:}"; done) |
    docker load -q >/dev/null || {
    rm -rf "$tmp"
    die "docker load of the bundle's $path ($platform) failed"
  }
  rm -rf "$tmp"
  got="$(docker image inspect --format '{{.Id}}' "$tag")"
  [[ "$got" == "$config" ]] || die "docker load of $path gave image $got, not the bundle's $config"
  printf '%s' "$config"
}
