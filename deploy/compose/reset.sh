#!/usr/bin/env bash
# StellaOps Compose reset: removes the containers, the network, every volume (the database, the
# objects, the queue, the cache) and the local state (.env, .secrets/). There is no undo: take a
# backup first (./backup.sh). Asks you to type the project name, unless --yes.
#
#   ./reset.sh          asks
#   ./reset.sh --yes    does not ask (scripts, tests)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

yes=0
case "${1:-}" in
  --yes | -y) yes=1 ;;
  "") ;;
  -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (see --help)" ;;
esac

if ((yes == 0)); then
  warn "!!! This DELETES the StellaOps install '$PROJECT' in $STELLA_DIR:"
  warn "!!!   every container, the network, the volumes (database, objects, queue, cache) and .env and .secrets/."
  warn "!!! There is no undo. Take a backup first: ./backup.sh"
  [[ -t 0 ]] || die "not a terminal: type the project name interactively, or pass --yes"
  read -r -p "Type the project name ($PROJECT) to delete it: " answer
  [[ "$answer" == "$PROJECT" ]] || die "'$answer' is not '$PROJECT': nothing was deleted"
fi

COMPOSE_PROFILES="tls" compose down --volumes --remove-orphans --timeout 30 2>&1 | sed 's/^/    /'
rm -rf "$SECRETS_DIR" "$ENV_FILE"
left="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
[[ -z "$left" ]] || die "volumes left behind: $left"
say "reset: project $PROJECT removed (containers, network, volumes, .env, .secrets/)"
