#!/usr/bin/env bash
# The one demo command: build and install sync_engine, start a throwaway PostgreSQL 15
# on 127.0.0.1:55432 (data in /var/tmp/sync_engine_demo), run demo/demo.sql, stop it.
#   KEEP=1 scripts/demo.sh   leave the cluster running afterwards
#                            (then: scripts/cluster.sh psql /var/tmp/sync_engine_demo 55432)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DEMO_DIR=${DEMO_DIR:-/var/tmp/sync_engine_demo}
DEMO_PORT=${DEMO_PORT:-55432}

bash scripts/setup.sh
bash scripts/install-ext.sh

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then
        say "cluster left running: scripts/cluster.sh psql $DEMO_DIR $DEMO_PORT"
    else
        bash scripts/cluster.sh stop "$DEMO_DIR" || true
    fi
}
trap cleanup EXIT
bash scripts/cluster.sh start "$DEMO_DIR" "$DEMO_PORT"

say "running demo/demo.sql"
echo
# the SQL goes in on stdin: the postgres OS user may not be able to read the checkout
bash scripts/cluster.sh psql "$DEMO_DIR" "$DEMO_PORT" -X -q -v ON_ERROR_STOP=1 \
    -P pager=off -f - <demo/demo.sql
echo
say "demo finished"
