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

# release_build PSQL: the build of sync_engine a bench cluster loaded, e.g.
# "release 0.1.0" (sync_engine_build_info(), through the psql wrapper function PSQL, in a
# database with the extension). Dies unless it is a release build: a debug build (what
# `cargo pgrx test` installs) runs 3-4 times slower, so its figures mean nothing.
# Use as `build=$(release_build sql)` under `set -e`.
release_build() {
    local info
    info=$("$1" -c "SELECT (i ->> 'profile') || ' ' || (i ->> 'version') FROM sync_engine_build_info() i" 2>/dev/null) ||
        info="unknown (no sync_engine_build_info(): a build older than this script)"
    [[ $info == release\ * ]] ||
        die "the installed sync_engine is not a release build (build: $info); benchmarks refuse to run against it. Install the release build: bash scripts/install-ext.sh (or run without SKIP_INSTALL=1)"
    echo "$info"
}
