# shellcheck shell=bash disable=SC2034
# Shared helpers for the scripts in this directory. Source it; do not run it.

PG_MAJOR=15
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=${PG_CONFIG:-$PG_BIN/pg_config}
PG_OS_USER=${PG_OS_USER:-postgres}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# progress line, error line, fatal error
say() { printf '==> %s\n' "$*"; }
warn() { printf '!!! %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

# Run a command as root (directly when we are root, otherwise through sudo).
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Run a command as the PostgreSQL OS user (initdb and postgres refuse root).
# Runs from / so a working directory the postgres user cannot enter (e.g. under
# /root) does not break initdb/pg_ctl.
as_pg() {
    if [[ $(id -un) == "$PG_OS_USER" ]]; then
        (cd / && "$@")
    elif [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && sudo -u "$PG_OS_USER" -- "$@")
    fi
}

# Like as_pg but keeps the caller's working directory (for client tools whose
# arguments may be relative paths).
as_pg_here() {
    if [[ $(id -un) == "$PG_OS_USER" ]]; then
        "$@"
    elif [[ $EUID -eq 0 ]]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        sudo -u "$PG_OS_USER" -- "$@"
    fi
}
