#!/usr/bin/env bash
# Golden SQL tests: tests/pg_regress/sql/<name>.sql run through PostgreSQL's pg_regress
# against a throwaway cluster (127.0.0.1:55437, /var/tmp/sync_engine_regress) with the
# sync_engine build currently installed; each output must equal
# tests/pg_regress/expected/<name>.out byte for byte. setup.sql runs first (CREATE
# EXTENSION, a helper, and the template database regress_base), then the others in name
# order: in one database, or (those that count ids) in a copy of regress_base of their own.
# REGRESS_PORT and REGRESS_DIR override the port and the data directory.
#
#   scripts/regress.sh            run them all (scripts/test.sh does, after the Rust tests)
#   scripts/regress.sh NAME...    run only these (setup always runs first)
#   ACCEPT=1 scripts/regress.sh   write every output to expected/ (review the diff!)
#
# Exits non-zero when an output differs; the differences are printed and kept in
# /var/tmp/sync_engine_regress.out/regression.diffs (REGRESS_DIR.out).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DIR=${REGRESS_DIR:-/var/tmp/sync_engine_regress}
PORT=${REGRESS_PORT:-55437}
OUTDIR=$DIR.out
PG_REGRESS=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress
[[ -x $PG_REGRESS ]] || die "pg_regress not found at $PG_REGRESS (Debian package postgresql-server-dev-$PG_MAJOR)"

tests=("$@")
if ((${#tests[@]} == 0)); then
    for f in tests/pg_regress/sql/*.sql; do
        n=$(basename "$f" .sql)
        [[ $n == setup ]] || tests+=("$n")
    done
fi

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() { bash scripts/cluster.sh stop "$DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
bash scripts/cluster.sh start "$DIR" "$PORT" -c client_min_messages=warning -c max_prepared_transactions=4 >/dev/null

as_root rm -rf -- "$OUTDIR"
as_root install -d -m 0777 -- "$OUTDIR"
# pg_regress reads sql/ and expected/ and writes results/ as the postgres OS user
inputs=$OUTDIR/input
mkdir -p "$inputs"
cp -r tests/pg_regress/sql tests/pg_regress/expected "$inputs/"
# the demo golden test runs the demo script itself (\i from the input directory)
cp demo/demo.sql "$inputs/demo.sql"
mkdir -p "$inputs/expected"
if [[ ${ACCEPT:-0} == 1 ]]; then
    for t in setup "${tests[@]}"; do touch "$inputs/expected/$t.out"; done
fi
chmod -R a+rwX "$OUTDIR"

set +e
as_pg env PGTZ=UTC PGDATESTYLE='ISO, MDY' "$PG_REGRESS" \
    --inputdir="$inputs" --outputdir="$OUTDIR" --host=127.0.0.1 --port="$PORT" --user=postgres \
    --dbname=sync_engine_regress setup "${tests[@]}"
rc=$?
set -e
if [[ ${ACCEPT:-0} == 1 ]]; then
    for t in setup "${tests[@]}"; do cp "$OUTDIR/results/$t.out" "tests/pg_regress/expected/$t.out"; done
    say "ACCEPT=1: wrote ${#tests[@]} + setup expected outputs to tests/pg_regress/expected/ (review them with git diff)"
    exit 0
fi
if ((rc != 0)); then
    [[ -f $OUTDIR/regression.diffs ]] && cat "$OUTDIR/regression.diffs"
    die "golden SQL tests failed (diffs: $OUTDIR/regression.diffs)"
fi
say "golden SQL tests: ${#tests[@]} passed"
