#!/usr/bin/env bash
# Build sync_engine (release) and install it into the system PostgreSQL 15, so any
# cluster of that installation (e.g. the throwaway ones of scripts/cluster.sh) can
# CREATE EXTENSION sync_engine. Safe to rerun: it overwrites the installed files.
#   VERBOSE=1   show the full cargo output
# Note: `cargo pgrx test` installs a test build into the same place; rerun this after it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

[[ -x $PG_CONFIG ]] || die "$PG_CONFIG missing: run scripts/setup.sh"
cargo pgrx --version >/dev/null 2>&1 || die "cargo-pgrx missing: run scripts/setup.sh"

args=(install --release --pg-config "$PG_CONFIG")
# the extension directories belong to root
[[ $EUID -eq 0 ]] || args+=(--sudo)

say "cargo pgrx ${args[*]}"
if [[ ${VERBOSE:-0} == 1 ]]; then
    cargo pgrx "${args[@]}"
else
    # hide the per-crate "Compiling ..." lines; errors and warnings still show
    set +e
    cargo pgrx "${args[@]}" 2>&1 | grep -Ev '^[[:space:]]+Compiling '
    rc=${PIPESTATUS[0]}
    set -e
    ((rc == 0)) || die "cargo pgrx install failed (exit $rc)"
fi
say "installed sync_engine into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"
