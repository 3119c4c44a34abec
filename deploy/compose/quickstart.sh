#!/usr/bin/env bash
# StellaOps Compose quickstart: one command from a Docker host to a running, seeded StellaOps.
#
#   ./quickstart.sh                      pre-flight, .env, secrets, images, up, wait, report
#   ./quickstart.sh --check              only the pre-flight checks (changes nothing)
#   ./quickstart.sh --images build.json  pin the StellaOps images from a release's build document
#   ./quickstart.sh --registry HOST      take every image from a private registry, same digests
#   ./quickstart.sh --tls                also the tls profile: nginx terminating TLS for console and API
#   ./quickstart.sh --tls --tls-cert FILE --tls-key FILE   ... with your certificate (else a generated CA)
#   ./quickstart.sh --timeout SECONDS    how long to wait for readiness (default 300)
#   ./quickstart.sh --bundle FILE        air-gapped: verify the bundle, load it into a registry it
#                                        starts (or --registry HOST), run its quickstart from there
#                                        [--dir DIR] [--public-key cosign.pub] [--plain-http]
#
# The steps, in order (each safe to run twice; a re-run changes nothing):
#   1. pre-flight, no side effect: Docker and Compose versions, CPU/RAM/disk as Docker sees them,
#      the ports free, the images pinned by digest
#   2. .env from .env.example, once; --images / --registry pins written into it
#   3. secrets into .secrets/ (mode 0600), generated from /dev/urandom on the first run only;
#      with --tls, .secrets/tls-{cert,key}.pem (given, or signed by a generated CA: .secrets/tls-ca.pem)
#   4. images pulled, or skipped when present
#   5. docker compose up -d
#   6. readiness: every service healthy (or done), within the timeout; else a report per service
#   7. URLs and the admin credentials
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

MIN_DOCKER=20.10
MIN_COMPOSE=2.17
MIN_CPUS="${STELLA_MIN_CPUS:-2}"
MIN_MEM_GB="${STELLA_MIN_MEM_GB:-4}"
MIN_DISK_GB="${STELLA_MIN_DISK_GB:-10}"
PLACEHOLDER="sha256:0000000000000000000000000000000000000000000000000000000000000000"

check_only=0
images_doc=""
registry=""
tls_flag=0
tls_cert=""
tls_key=""
timeout=""
bundle=""
bundle_dir=""
public_key=""
plain_http=0
passthrough=()

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --check) check_only=1 ;;
    --images) images_doc="${2:?--images needs a build document (build.json)}"; shift ;;
    --registry) registry="${2:?--registry needs a host, e.g. registry.example.com:5000}"; shift ;;
    --tls) tls_flag=1; passthrough+=("$1") ;;
    --tls-cert) tls_cert="${2:?--tls-cert needs a PEM certificate file (the chain, leaf first)}"; passthrough+=("$1" "$(abs_path "$2")"); shift ;;
    --tls-key) tls_key="${2:?--tls-key needs the PEM private key file of --tls-cert}"; passthrough+=("$1" "$(abs_path "$2")"); shift ;;
    --timeout) timeout="${2:?--timeout needs seconds}"; passthrough+=("$1" "$2"); shift ;;
    --bundle) bundle="${2:?--bundle needs the bundle file (stella-bundle-vX.Y.Z.tar.zst)}"; shift ;;
    --dir) bundle_dir="${2:?--dir needs a directory (where the bundle is extracted and installed)}"; shift ;;
    --public-key) public_key="$(abs_path "${2:?--public-key needs the public key file of the release (cosign.pub)}")"; shift ;;
    --plain-http) plain_http=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
  shift
done
if [[ -n "$bundle" ]]; then
  [[ -z "$images_doc" ]] || die "--bundle and --images exclude each other: the bundle pins its own images"
  # shellcheck source-path=SCRIPTDIR
  . "$(dirname "${BASH_SOURCE[0]}")/lib/bundle.sh"
  b="$(basename "$bundle")"
  bundle_quickstart "$(abs_path "$bundle")" "${bundle_dir:-$PWD/${b%.tar.zst}}" "$registry" "$plain_http" "$public_key" "$check_only" "${passthrough[@]}"
fi
[[ -z "$bundle_dir$public_key" && "$plain_http" == 0 ]] || die "--dir, --public-key and --plain-http go with --bundle FILE"
[[ -z "$images_doc" || -f "$images_doc" ]] || die "--images $images_doc: no such file (the release's build document, e.g. dist/build.json)"
timeout="${timeout:-$(setting STELLA_QUICKSTART_TIMEOUT 300)}"
[[ -z "$tls_cert$tls_key" || ( -n "$tls_cert" && -n "$tls_key" ) ]] || die "--tls-cert and --tls-key go together (the certificate and its private key)"
[[ -z "$tls_cert" ]] || tls_flag=1
# The tls profile is sticky: --tls writes STELLA_TLS=1 into .env; STELLA_TLS=0 there turns it off.
tls="$tls_flag"
[[ "$tls" == 1 ]] || tls="$(setting STELLA_TLS 0)"
[[ "$tls" == 1 ]] || tls=0

# ---------------------------------------------------------------- 1. pre-flight (no side effect)

problems=()
notes=()
problem() { problems+=("$1"); }

# version_ge A B: A >= B for dotted versions (leading digits of each part).
version_ge() {
  local a b i
  IFS=. read -r -a a <<<"${1%%[-+]*}"
  IFS=. read -r -a b <<<"$2"
  for i in 0 1 2; do
    local x="${a[i]:-0}" y="${b[i]:-0}"
    x="${x%%[^0-9]*}" y="${y%%[^0-9]*}"
    ((10#${x:-0} > 10#${y:-0})) && return 0
    ((10#${x:-0} < 10#${y:-0})) && return 1
  done
  return 0
}

# The image references the run will use: "VAR REF" per line (after --images and --registry).
planned_images() {
  local var def ref
  while read -r var def; do
    [[ "$var" == STELLA_NGINX_IMAGE && $tls == 0 ]] && continue
    ref="$(setting "$var" "$def")"
    if [[ -n "$images_doc" ]]; then
      local svc from_doc
      svc="${var#STELLA_}"
      svc="${svc%_IMAGE}"
      svc="$(tr 'A-Z_' 'a-z-' <<<"$svc")"
      from_doc="$(doc_image "$svc")"
      [[ -n "$from_doc" ]] && ref="$from_doc"
    fi
    [[ -n "$registry" ]] && ref="$(relocate "$ref")"
    printf '%s %s\n' "$var" "$ref"
  done < <(image_defaults)
}

# The repository@digest of a service in the build document (pretty or compact JSON; no jq needed).
doc_image() {
  sed 's/[,{}]/\n/g' "$images_doc" | sed -nE 's/^[[:space:]]*"(service|repository|digest)":[[:space:]]*"([^"]*)".*/\1 \2/p' |
    awk -v want="$1" '$1=="service"{s=$2; r=""; d=""} $1=="repository"{r=$2} $1=="digest"&&s==want&&r!=""&&d==""{d=$2; print r "@" d; exit}'
}

# HOST/path@digest: the same repository path and digest in another registry.
relocate() {
  local ref="$1" path="${1%@*}" digest="${1#*@}" first
  first="${path%%/*}"
  if [[ "$path" == */* && ("$first" == *.* || "$first" == *:* || "$first" == localhost) ]]; then path="${path#*/}"; fi
  [[ "$ref" == *@* ]] || die "image $ref is not pinned by digest"
  printf '%s/%s@%s' "${registry%/}" "$path" "$digest"
}

preflight() {
  if ! command -v docker >/dev/null 2>&1; then
    problem "docker: not found. Fix: install Docker Engine >= $MIN_DOCKER (https://docs.docker.com/engine/install/; Debian: apt-get install docker.io docker-compose)."
    return
  fi
  local server
  if ! server="$(docker version --format '{{.Server.Version}}' 2>/dev/null)" || [[ -z "$server" ]]; then
    problem "docker: the engine does not answer ($(docker version 2>&1 | grep -iE 'cannot connect|permission denied|error' | head -n 1)). Fix: start it (systemctl start docker), or add your user to the docker group (usermod -aG docker \$USER, then log in again), or point DOCKER_HOST at it."
    return
  fi
  version_ge "$server" "$MIN_DOCKER" || problem "docker: engine $server is older than $MIN_DOCKER. Fix: upgrade Docker Engine."
  local cv
  if ! cv="$(docker compose version --short 2>/dev/null)"; then
    problem "docker compose: the Compose v2 plugin is missing. Fix: install docker-compose-plugin (Docker's packages) or docker-compose >= $MIN_COMPOSE (Debian 13); the old docker-compose v1 is not supported."
  else
    version_ge "${cv#v}" "$MIN_COMPOSE" || problem "docker compose: $cv is older than $MIN_COMPOSE (needed: service_completed_successfully, nested defaults). Fix: upgrade the Compose plugin."
  fi
  local ncpu mem root
  read -r ncpu mem root < <(docker info --format '{{.NCPU}} {{.MemTotal}} {{.DockerRootDir}}' 2>/dev/null || echo "0 0 /")
  # Below the recommended size (docs/install/overview.md) it runs, slower: a note, not a failure.
  ((ncpu >= 4)) || notes+=("Docker sees $ncpu CPUs; 4 are recommended (start-up is slower)")
  ((mem >= 8 * 1000 * 1000 * 1000)) || notes+=("Docker sees $((mem / 1000 / 1000)) MB of memory; 8 GB are recommended")
  ((ncpu >= MIN_CPUS)) || problem "cpu: Docker sees $ncpu CPUs, the quickstart needs $MIN_CPUS. Fix: give the Docker host (or Docker Desktop's VM) more CPUs."
  ((mem >= MIN_MEM_GB * 1000 * 1000 * 1000)) || problem "memory: Docker sees $((mem / 1000 / 1000)) MB, the quickstart needs ${MIN_MEM_GB} GB. Fix: add memory (Docker Desktop: Settings → Resources)."
  if [[ -d "$root" ]]; then
    local free_kb
    free_kb="$(df -Pk "$root" | awk 'NR==2{print $4}')"
    ((free_kb >= MIN_DISK_GB * 1000 * 1000)) || problem "disk: $((free_kb / 1000 / 1000)) GB free under Docker's data root $root, the quickstart needs ${MIN_DISK_GB} GB. Fix: free space (docker system prune) or move data-root."
  fi
  local addr var def port owned
  addr="$(publish_address)"
  owned="$(docker ps --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Ports}}' 2>/dev/null || true)"
  while read -r var def; do
    [[ "$var" == STELLA_TLS_* && $tls == 0 ]] && continue
    port="$(setting "$var" "$def")"
    [[ "$owned" == *":$port->"* ]] && continue
    if port_busy "$addr" "$port"; then
      problem "port $port ($var) on $addr is in use by another program$(port_owner "$port"). Fix: stop it, or set $var=<free port> in .env."
    fi
  done < <(port_defaults)
  local var ref
  while read -r var ref; do
    if [[ "$ref" != *@sha256:* ]]; then
      problem "image $var=$ref is not pinned by digest. Fix: use repository@sha256:… (quickstart.sh --images build.json writes them)."
    elif [[ "$ref" == *"@$PLACEHOLDER" ]]; then
      problem "image $var is not pinned yet (placeholder digest in $ref). Fix: pass the release's build document: ./quickstart.sh --images <release>/build.json$([[ "$var" == STELLA_NGINX_IMAGE ]] && printf ' (the tls profile: set STELLA_NGINX_IMAGE=<nginx image>@sha256:… in .env)')$([[ "$ref" != *stella-* ]] && printf ' (a support image: set %s in .env, or regenerate with deploy/support-images.lock.json)' "$var")."
    fi
  done < <(planned_images)
  if ((tls == 1)); then
    local f
    for f in $tls_cert $tls_key; do
      [[ -r "$f" ]] || problem "tls: $f cannot be read. Fix: give --tls-cert and --tls-key readable PEM files."
    done
    if [[ -z "$tls_cert" && ! -s "$SECRETS_DIR/tls-cert.pem" ]] && ! command -v openssl >/dev/null 2>&1; then
      problem "tls: no certificate (.secrets/tls-cert.pem) and no openssl to generate one. Fix: install openssl, or pass --tls-cert FILE --tls-key FILE."
    fi
  fi
}

port_busy() {
  local addr="$1" port="$2"
  if command -v ss >/dev/null 2>&1; then
    ss -ltnH "sport = :$port" 2>/dev/null | awk -v a="$addr" '{split($4, p, ":"); h=substr($4, 1, length($4)-length(p[length(p)])-1); if (a=="0.0.0.0" || h==a || h=="0.0.0.0" || h=="*" || h=="[::]") f=1} END{exit f?0:1}'
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  local who
  who="$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -oE 'users:\(\("[^"]+"' | head -n 1 | cut -d'"' -f2 || true)"
  [[ -n "$who" ]] && printf ' (%s)' "$who"
  return 0
}

say "StellaOps quickstart in $STELLA_DIR (project $PROJECT)"
say "1/7 pre-flight"
preflight
if ((${#problems[@]})); then
  warn "pre-flight found ${#problems[@]} problem(s); nothing was changed:"
  for p in "${problems[@]}"; do warn "  - $p"; done
  exit 1
fi
say "    ok: docker $(docker version --format '{{.Server.Version}}'), compose $(docker compose version --short), ports free, images pinned"
for n in "${notes[@]}"; do say "    note: $n"; done
if ((check_only)); then exit 0; fi

started=$(date +%s)

# ---------------------------------------------------------------- 2. .env (once) and image pins

say "2/7 settings"
if [[ ! -f "$ENV_FILE" ]]; then
  cp "$STELLA_DIR/.env.example" "$ENV_FILE"
  say "    wrote .env from .env.example (edit it, then re-run)"
else
  say "    .env kept"
fi
if [[ -n "$images_doc" || -n "$registry" ]]; then
  # Only what differs from the compose file's default (a later, regenerated compose file keeps its say).
  defaults="$(image_defaults)"
  while read -r var ref; do
    if grep -qxF "$var $ref" <<<"$defaults" && ! grep -qE "^${var}=" "$ENV_FILE"; then continue; fi
    set_env "$var" "$ref"
  done < <(planned_images)
  say "    image pins written to .env${images_doc:+ from $images_doc}${registry:+ (registry $registry)}"
fi

# ---------------------------------------------------------------- 3. secrets (first run only)

say "3/7 secrets"
random_token() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
(
  umask 077
  mkdir -p "$SECRETS_DIR"
  chmod 0700 "$SECRETS_DIR"
  made=()
  for spec in postgres-password:24 redis-password:24 object-store-access-key:10 object-store-secret-key:30 admin-password:12; do
    name="${spec%%:*}"
    if [[ ! -s "$SECRETS_DIR/$name" ]]; then
      random_token "${spec#*:}" >"$SECRETS_DIR/$name"
      made+=("$name")
    fi
    chmod 0600 "$SECRETS_DIR/$name"
  done
  if ((${#made[@]})); then say "    generated ${made[*]} in .secrets/ (0600)"; else say "    .secrets/ kept"; fi
)

# The tls profile's certificate: given (--tls-cert/--tls-key), kept, or generated once: a private CA
# (its certificate .secrets/tls-ca.pem, to trust; its key is deleted at once) signing a server
# certificate for localhost, 127.0.0.1, this host's name and STELLA_TLS_NAMES.
tls_material() {
  if [[ -n "$tls_cert" ]]; then
    if command -v openssl >/dev/null 2>&1; then
      [[ "$(openssl x509 -in "$tls_cert" -noout -pubkey 2>/dev/null)" == "$(openssl pkey -in "$tls_key" -pubout 2>/dev/null)" ]] ||
        die "--tls-key $tls_key is not the private key of --tls-cert $tls_cert (or one is not PEM). Fix: give the matching pair."
    fi
    (umask 077 && cp "$tls_key" "$SECRETS_DIR/tls-key.pem.new" && mv -f "$SECRETS_DIR/tls-key.pem.new" "$SECRETS_DIR/tls-key.pem")
    cp "$tls_cert" "$SECRETS_DIR/tls-cert.pem.new" && mv -f "$SECRETS_DIR/tls-cert.pem.new" "$SECRETS_DIR/tls-cert.pem"
    rm -f "$SECRETS_DIR/tls-ca.pem"
    say "    tls: using $tls_cert (copied to .secrets/tls-cert.pem, key .secrets/tls-key.pem 0600)"
  elif [[ -s "$SECRETS_DIR/tls-cert.pem" && -s "$SECRETS_DIR/tls-key.pem" ]]; then
    say "    tls: .secrets/tls-cert.pem kept"
  else
    local tmp sans name host_name
    tmp="$(mktemp -d)"
    sans="DNS:localhost,IP:127.0.0.1,IP:::1"
    host_name="$(hostname 2>/dev/null || true)"
    [[ -n "$host_name" && "$host_name" != localhost ]] && sans="$sans,DNS:$host_name"
    for name in $(setting STELLA_TLS_NAMES "" | tr ',' ' '); do
      if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then sans="$sans,IP:$name"; else sans="$sans,DNS:$name"; fi
    done
    (
      umask 077
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -sha256 \
        -subj "/O=StellaOps quickstart/CN=StellaOps quickstart CA ${host_name:-}" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2>"$tmp/err" &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj "/O=StellaOps quickstart/CN=localhost" \
          -keyout "$tmp/key.pem" -out "$tmp/csr.pem" 2>>"$tmp/err" &&
        printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$sans" >"$tmp/ext" &&
        openssl x509 -req -in "$tmp/csr.pem" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -set_serial "0x$(random_token 16)" \
          -days 397 -sha256 -extfile "$tmp/ext" -out "$tmp/cert.pem" 2>>"$tmp/err"
    ) || { cat "$tmp/err" >&2; rm -rf "$tmp"; die "tls: openssl could not generate the certificate (above). Fix: pass --tls-cert FILE --tls-key FILE."; }
    mv -f "$tmp/key.pem" "$SECRETS_DIR/tls-key.pem"
    mv -f "$tmp/cert.pem" "$SECRETS_DIR/tls-cert.pem"
    mv -f "$tmp/ca.pem" "$SECRETS_DIR/tls-ca.pem"
    rm -rf "$tmp"
    say "    tls: generated .secrets/tls-cert.pem ($sans), signed by a new CA: trust .secrets/tls-ca.pem"
  fi
  chmod 0600 "$SECRETS_DIR/tls-key.pem" "$SECRETS_DIR/tls-cert.pem"
  [[ ! -f "$SECRETS_DIR/tls-ca.pem" ]] || chmod 0600 "$SECRETS_DIR/tls-ca.pem"
}

if ((tls == 1)); then
  export COMPOSE_PROFILES=tls
  tls_material
  [[ "$(setting STELLA_TLS 0)" == 1 ]] || set_env STELLA_TLS 1
fi

# ---------------------------------------------------------------- 4. images

say "4/7 images"
pulled=0
present=0
failed=()
while read -r var ref; do
  if docker image inspect "$ref" >/dev/null 2>&1; then
    present=$((present + 1))
  elif docker pull -q "$ref" >/dev/null 2>"$STELLA_DIR/.pull.err"; then
    pulled=$((pulled + 1))
  else
    failed+=("$var=$ref: $(tail -n 1 "$STELLA_DIR/.pull.err")")
  fi
done < <(planned_images | sort -u -k2)
rm -f "$STELLA_DIR/.pull.err"
if ((${#failed[@]})); then
  warn "cannot pull:"
  for f in "${failed[@]}"; do warn "  - $f"; done
  die "images missing. Fix: check the registry is reachable and holds these digests (air-gapped: load the bundle into a local registry and pass --registry HOST)."
fi
say "    $pulled pulled, $present already present"

# ---------------------------------------------------------------- 5. up

say "5/7 docker compose up -d"
STELLA_PUBLISH_ADDRESS="$(publish_address)"
export STELLA_PUBLISH_ADDRESS
# With the tls profile the console's and the API's plain HTTP stay on loopback: nginx is the way in.
if ((tls == 1)); then
  STELLA_HTTP_PUBLISH_ADDRESS=127.0.0.1
else
  STELLA_HTTP_PUBLISH_ADDRESS="$(setting STELLA_HTTP_PUBLISH_ADDRESS "$STELLA_PUBLISH_ADDRESS")"
fi
export STELLA_HTTP_PUBLISH_ADDRESS
up_log="$(mktemp)"
if compose up -d --quiet-pull >"$up_log" 2>&1; then
  say "    containers created or recreated: $(grep -cE ' (Recreated|Created)$' "$up_log" || true)"
else
  # Not fatal here: the readiness report below names what is not ready, and why.
  warn "    docker compose up -d reported a failure:"
  grep -vE ' (Creating|Created|Starting|Started|Waiting|Healthy|Exited|Running)$' "$up_log" | tail -n 8 | sed 's/^/      /' >&2
fi
rm -f "$up_log"

# ---------------------------------------------------------------- 6. readiness

say "6/7 waiting for readiness (up to ${timeout}s)"
# "service state health exitcode port" per container of the project.
states() {
  local ids
  ids="$(compose ps -aq 2>/dev/null)"
  [[ -n "$ids" ]] || return 0
  # shellcheck disable=SC2086
  docker inspect --format '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}} {{index .Config.Labels "io.stellaops.ports"}}' $ids
}
ONE_SHOTS=" init object-store-init "
pending() {
  local svc state health code
  while read -r svc state health code _; do
    if [[ "$ONE_SHOTS" == *" $svc "* ]]; then
      [[ "$state" == exited && "$code" == 0 ]] || echo "$svc"
    elif [[ "$health" == none ]]; then
      [[ "$state" == running ]] || echo "$svc"
    else
      [[ "$state" == running && "$health" == healthy ]] || echo "$svc"
    fi
  done < <(states)
}
expected="$(compose config --services | sort)"
deadline=$(($(date +%s) + timeout))
while :; do
  running="$(states | awk '{print $1}' | sort)"
  left="$(pending)"
  missing_services="$(comm -23 <(echo "$expected") <(echo "$running"))"
  if [[ -z "$left" && -z "$missing_services" ]]; then break; fi
  if (($(date +%s) >= deadline)); then
    warn "not ready after ${timeout}s:"
    while read -r svc state health code port; do
      [[ " $(tr '\n' ' ' <<<"$left") " == *" $svc "* ]] || continue
      reason="$state, health $health"
      [[ "$state" == created ]] && reason="not started: a service it depends on is not ready (listed here)"
      [[ "$state" == exited ]] && reason="exited with $code: $(compose logs --no-color --no-log-prefix --tail 2 "$svc" 2>&1 | tail -n 1)"
      if [[ "$state" == running && "$port" == */tcp ]]; then
        # The service's own readiness report names the dependency that fails.
        deps="$(compose exec -T "$svc" /nodejs/bin/node -e "fetch('http://127.0.0.1:${port%%/*}/health/readiness').then(r=>r.json()).then(b=>console.log(b.checks.filter(c=>!c.ok).map(c=>c.name+': '+(c.error||'failing')).join('; ')||b.status),e=>console.log('no answer: '+e.message))" 2>&1 | tail -n 1)"
        reason="$reason; failing: $deps"
      fi
      warn "  - $svc: $reason"
    done < <(states)
    for svc in $missing_services; do warn "  - $svc: no container (see: docker compose -p $PROJECT logs $svc)"; done
    die "not ready: $(tr '\n' ' ' <<<"$left")(logs: docker compose -p $PROJECT logs <service>; troubleshooting: docs/install/compose-quickstart.md)"
  fi
  sleep 2
done
ready=$(date +%s)

# ---------------------------------------------------------------- 7. report

addr="$(publish_address)"
host="127.0.0.1"
[[ "$addr" != 0.0.0.0 ]] && host="$addr"
say "7/7 ready in $((ready - started))s: every service is healthy"
say ""
say "  Console   http://$host:$(setting STELLA_CONSOLE_PORT 8080)/"
say "  API       http://$host:$(setting STELLA_API_PORT 8081)/api/v1"
if ((tls == 1)); then
  say "  TLS       https://$host:$(setting STELLA_TLS_CONSOLE_PORT 8443)/ (console), https://$host:$(setting STELLA_TLS_API_PORT 8444)/api/v1 (API)"
  [[ -f "$SECRETS_DIR/tls-ca.pem" ]] && say "            certificate signed by the generated CA .secrets/tls-ca.pem (trust it: curl --cacert .secrets/tls-ca.pem …)"
  [[ "$addr" == 0.0.0.0 ]] && say "            plain HTTP (8080/8081) stays on 127.0.0.1; only the TLS ports face the network"
fi
say "  Admin     user admin, password in .secrets/admin-password: $(cat "$SECRETS_DIR/admin-password")"
say ""
say "  Backup: ./backup.sh   Restore: ./backup.sh --restore FILE   Remove everything: ./reset.sh"
