#!/usr/bin/env bash
# StellaOps Compose backup and restore: everything, offline, in one tarball.
#
#   ./backup.sh [--output FILE]        write backups/stellaops-<UTC time>.tar.gz (or FILE)
#   ./backup.sh --restore FILE         bring a backup back into an empty install, then start it
#
# A backup holds: postgres.sql (pg_dump of the database), objectstore.tar (the object store's
# data directory: every object), redis.tar (Redis's RDB/AOF), nats.tar (NATS JetStream's
# durable state), env (.env), secrets/ (.secrets/), config/ (otel-collector.yaml, tls/), and
# manifest.json + SHA256SUMS (every file's checksum). The services are stopped while their
# data is copied (a few seconds), so the copies agree with each other; then they start again.
# Restore verifies every checksum first and refuses a file the manifest does not list.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

mode=backup
output=""
stage=""
input=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --output) output="${2:?--output needs a file}"; shift ;;
    --restore) mode=restore; input="${2:?--restore needs a backup file}"; shift ;;
    -h | --help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

# The volumes whose data is copied as a tar of the service's data directory: service, path, file.
DATA_COPIES=("redis /data redis.tar" "object-store /data objectstore.tar" "nats /data nats.tar")
STELLA_SERVICES=(api console orchestrator task-runner conseiller excitator policy ledger export notify ai)

container_of() { compose ps -aq "$1" | head -n 1; }
pg_password() { cat "$SECRETS_DIR/postgres-password"; }
psql_in() { compose exec -T -e PGPASSWORD="$(pg_password)" postgres "$@" -h 127.0.0.1 -U stella -d stella; }

# The image the helper containers run (node, from the StellaOps API image).
helper_image() { docker inspect --format '{{.Config.Image}}' "$(container_of init)"; }

wait_healthy() {
  local svc="$1"
  for _ in $(seq 1 60); do
    [[ "$(docker inspect --format '{{.State.Health.Status}}' "$(container_of "$svc")" 2>/dev/null)" == healthy ]] && return 0
    sleep 1
  done
  die "$svc is not healthy after 60s (docker compose -p $PROJECT logs $svc)"
}

backup() {
  [[ -f "$ENV_FILE" && -d "$SECRETS_DIR" ]] || die "no install here ($ENV_FILE or .secrets/ missing): run ./quickstart.sh first"
  [[ -n "$(container_of postgres)" ]] || die "the stack has no postgres container: start it with ./quickstart.sh"
  local stamp
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  output="${output:-$STELLA_DIR/backups/$PROJECT-$stamp.tar.gz}"
  mkdir -p "$(dirname "$output")"
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  say "backup: stopping the StellaOps services (writes stop; the support services keep their data)"
  compose stop "${STELLA_SERVICES[@]}" >/dev/null 2>&1
  say "backup: PostgreSQL dump"
  compose up -d postgres >/dev/null 2>&1
  wait_healthy postgres
  psql_in pg_dump --no-owner --no-privileges >"$stage/postgres.sql"
  say "backup: stopping the support services (Redis, NATS and the object store flush to disk)"
  compose stop redis nats object-store >/dev/null 2>&1
  local copy svc path file
  for copy in "${DATA_COPIES[@]}"; do
    read -r svc path file <<<"$copy"
    docker cp "$(container_of "$svc"):$path/." - >"$stage/$file"
  done
  cp "$ENV_FILE" "$stage/env"
  mkdir -p "$stage/secrets" "$stage/config"
  cp -p "$SECRETS_DIR"/. "$stage/secrets/" -R
  cp "$STELLA_DIR/otel-collector.yaml" "$stage/config/"
  if [[ -d "$STELLA_DIR/tls" ]]; then cp -R "$STELLA_DIR/tls" "$stage/config/tls"; fi
  {
    printf '{\n  "format": "stellaops-compose-backup/1",\n  "project": "%s",\n  "created": "%s",\n  "images": {\n' "$PROJECT" "$stamp"
    compose ps -a --format '{{.Service}} {{.Image}}' | sort -u | sed -E 's/^([^ ]+) (.*)$/    "\1": "\2",/' | sed '$ s/,$//'
    printf '  }\n}\n'
  } >"$stage/manifest.json"
  (cd "$stage" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >"$stage.sums" && mv "$stage.sums" SHA256SUMS)
  (umask 077 && tar -C "$stage" -czf "$output" .)
  say "backup: starting the services again"
  compose up -d >/dev/null 2>&1
  say "backup: wrote $output ($(du -h "$output" | cut -f1); it holds the secrets: keep it safe)"
}

restore() {
  [[ -f "$input" ]] || die "--restore $input: no such file"
  input="$(cd "$(dirname "$input")" && pwd)/$(basename "$input")"
  if [[ -n "$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")" || -e "$SECRETS_DIR" || -e "$ENV_FILE" ]]; then
    die "this install is not empty (volumes of project $PROJECT, .env or .secrets/ exist): restore goes into an empty install; run ./reset.sh first"
  fi
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  tar -C "$stage" -xzf "$input" --no-same-owner
  (cd "$stage" && sha256sum --quiet -c SHA256SUMS) || die "$input: a checksum does not match SHA256SUMS: the backup is damaged"
  local extra
  extra="$(cd "$stage" && comm -23 <(find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort) <(awk '{print $2}' SHA256SUMS | LC_ALL=C sort))"
  [[ -z "$extra" ]] || die "$input holds files no checksum lists: $extra"
  grep -q '"format": "stellaops-compose-backup/1"' "$stage/manifest.json" || die "$input: not a StellaOps Compose backup (manifest.json format)"
  say "restore: settings, secrets, configuration"
  cp "$stage/env" "$ENV_FILE"
  (umask 077 && mkdir -p "$SECRETS_DIR" && cp -R "$stage/secrets/." "$SECRETS_DIR/" && chmod 0600 "$SECRETS_DIR"/*)
  if [[ -d "$stage/config/tls" ]]; then mkdir -p "$STELLA_DIR/tls" && cp -R "$stage/config/tls/." "$STELLA_DIR/tls/"; fi
  say "restore: PostgreSQL"
  compose up -d postgres >/dev/null 2>&1
  wait_healthy postgres
  psql_in psql -q -v ON_ERROR_STOP=1 >/dev/null <"$stage/postgres.sql"
  say "restore: Redis, NATS, object store data"
  compose create redis nats object-store >/dev/null 2>&1
  local copy svc path file volume image
  image="$(helper_image)"
  for copy in "${DATA_COPIES[@]}"; do
    read -r svc path file <<<"$copy"
    volume="$(docker inspect --format "{{range .Mounts}}{{if eq .Destination \"$path\"}}{{.Name}}{{end}}{{end}}" "$(container_of "$svc")")"
    [[ -n "$volume" ]] || die "$svc has no volume at $path"
    docker run --rm -i --user 0:0 --network none -v "$volume:/restore" -v "$STELLA_DIR/init:/init:ro" --entrypoint /nodejs/bin/node "$image" /init/stella-init.mjs untar /restore <"$stage/$file" | sed 's/^/    /'
  done
  say "restore: starting everything (./quickstart.sh)"
  "$STELLA_DIR/quickstart.sh"
}

"$mode"
