# shellcheck shell=bash
# Shared by quickstart.sh, backup.sh and reset.sh: where things are, how compose is called,
# how .env is read. Sourced, never run.

STELLA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STELLA_DIR
ENV_FILE="$STELLA_DIR/.env"
export SECRETS_DIR="$STELLA_DIR/.secrets"
PROJECT="${COMPOSE_PROJECT_NAME:-stellaops}"

say() { printf '%s\n' "$*"; }
# An absolute path for PATH (relative to the current directory), whether or not it exists.
abs_path() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
warn() { printf '%s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# docker compose in the install directory (COMPOSE_FILE, when set, adds override files).
compose() { (cd "$STELLA_DIR" && docker compose -p "$PROJECT" "$@"); }

# The value of VAR: the environment first, then an uncommented VAR= line of .env, else $2.
setting() {
  local name="$1" fallback="${2:-}" line
  if [[ -n "${!name:-}" ]]; then
    printf '%s' "${!name}"
    return
  fi
  if [[ -f "$ENV_FILE" ]] && line="$(grep -E "^${name}=" "$ENV_FILE" | tail -n 1)" && [[ -n "$line" ]]; then
    line="${line#*=}"
    line="${line%\"}"
    line="${line#\"}"
    if [[ -n "$line" ]]; then
      printf '%s' "$line"
      return
    fi
  fi
  printf '%s' "$fallback"
}

# Sets VAR=value in .env (replacing an uncommented line, or appending); leaves the file untouched when it already says so.
set_env() {
  local name="$1" value="$2" tmp
  if grep -qxF "${name}=${value}" "$ENV_FILE"; then return; fi
  tmp="$(mktemp "$ENV_FILE.XXXXXX")"
  grep -vE "^${name}=" "$ENV_FILE" >"$tmp" || true
  printf '%s=%s\n' "$name" "$value" >>"$tmp"
  chmod --reference="$ENV_FILE" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
  mv "$tmp" "$ENV_FILE"
}

# Every image variable of docker-compose.yml with its default: "VAR DEFAULT" per line.
image_defaults() {
  sed -nE 's/^ +image: \$\{([A-Z0-9_]+):-([^}$]+)\}$/\1 \2/p' "$STELLA_DIR/docker-compose.yml"
}

# The published ports: "VAR DEFAULT" per line (from the ports: entries of docker-compose.yml).
port_defaults() {
  grep -oE '\$\{STELLA_[A-Z_]+_PORT:-[0-9]+\}' "$STELLA_DIR/docker-compose.yml" | sed -E 's/^\$\{([A-Z_]+):-([0-9]+)\}$/\1 \2/' | sort -u
}

# The address ports bind to: 0.0.0.0 with EXPOSE_PUBLIC=1, else STELLA_PUBLISH_ADDRESS, else 127.0.0.1.
publish_address() {
  if [[ "$(setting EXPOSE_PUBLIC 0)" == 1 ]]; then
    printf '0.0.0.0'
  else
    setting STELLA_PUBLISH_ADDRESS 127.0.0.1
  fi
}
