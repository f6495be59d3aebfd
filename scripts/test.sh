#!/usr/bin/env bash
# The one test command: pure-Rust unit tests and #[pg_test] tests against a real
# PostgreSQL 15, both through `cargo pgrx test`. Exits non-zero on any failure.
#   scripts/test.sh [TESTNAME]   optional filter passed to cargo pgrx test
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

PGDATA_BASE=/var/tmp/sync_engine_test_pgdata
REDIS_PORT=6379
LOG=$REPO_ROOT/target/test.log
started=$SECONDS

bash scripts/setup.sh

# --- Redis (for notification tests) -----------------------------------------------
redis_started=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
stop_redis() {
    if ((redis_started)); then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
}
trap stop_redis EXIT
if [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true) == PONG ]]; then
    say "redis already answering on 127.0.0.1:$REDIS_PORT"
else
    say "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir /var/tmp --pidfile /var/tmp/sync_engine_test_redis.pid --logfile /var/tmp/sync_engine_test_redis.log
    redis_started=1
    for _ in $(seq 50); do
        [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true) == PONG ]] && break
        sleep 0.1
    done
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true) == PONG ]] \
        || die "redis-server did not come up (log: /var/tmp/sync_engine_test_redis.log)"
fi

# --- fresh PGDATA parent, owned by the postgres user -------------------------------
# cargo pgrx test creates $PGDATA_BASE/15-<pid> as the --runas user; stop servers
# left behind by an interrupted run before removing their directories.
if [[ -d $PGDATA_BASE ]]; then
    for d in "$PGDATA_BASE"/*/; do
        [[ -f $d/postmaster.pid ]] || continue
        say "stopping stale test server in $d"
        as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    as_root rm -rf -- "$PGDATA_BASE"
fi
as_root install -d -m 0755 -o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")" -- "$PGDATA_BASE"

# --- the tests ----------------------------------------------------------------------
mkdir -p "$(dirname "$LOG")"
say "cargo pgrx test pg15 ${1:-} --runas $PG_OS_USER --pgdata $PGDATA_BASE  (log: ${LOG#"$REPO_ROOT"/})"
set +e
cargo pgrx test pg15 ${1:+"$1"} --runas "$PG_OS_USER" --pgdata "$PGDATA_BASE" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e

# --- summary ------------------------------------------------------------------------
# sum the "test result: ok. 12 passed; 0 failed; 1 ignored; ..." lines of all test suites
read -r passed failed ignored suites < <(
    sed 's/\x1b\[[0-9;]*m//g' "$LOG" | awk '
        /^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i) ~ /^passed;?$/) p += $(i-1)
                if ($(i) ~ /^failed;?$/) f += $(i-1)
                if ($(i) ~ /^ignored;?$/) g += $(i-1)
            }
            s++
        }
        END { printf "%d %d %d %d\n", p, f, g, s }'
)
elapsed=$((SECONDS - started))
if ((rc == 0 && failed == 0 && suites > 0)); then
    echo "TEST SUMMARY: PASS - $passed passed, $failed failed, $ignored ignored in $suites test suites (${elapsed}s)"
    exit 0
fi
((rc != 0)) || rc=1
echo "TEST SUMMARY: FAIL (exit $rc) - $passed passed, $failed failed, $ignored ignored in $suites test suites (${elapsed}s); log: $LOG"
exit "$rc"
