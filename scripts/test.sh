#!/usr/bin/env bash
# The one test command: pure-Rust unit tests and #[pg_test] tests against a real
# PostgreSQL 15, both through `cargo pgrx test`. Exits non-zero on any failure.
#   scripts/test.sh              everything: Rust tests, then the golden SQL tests (scripts/regress.sh)
#   scripts/test.sh TESTNAME     only the Rust tests whose path contains TESTNAME
#   scripts/test.sh golden [NAME...]  only the golden SQL tests (ACCEPT=1 rewrites expected/)
# `cargo pgrx test` installs its debug build into the system PostgreSQL's directories;
# afterwards (also on failure or Ctrl-C) this script puts back the sync_engine files
# that were installed before (or removes the test build when there were none), and
# says so in one line.
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

# --- the installed sync_engine: saved now, put back after the tests -------------------
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
saved_dir=""
restore_pending=0
# the sync_engine files of the system PostgreSQL, one per line
installed_files() {
    local f
    for f in "$PKGLIBDIR"/sync_engine.so "$EXTDIR"/sync_engine.control "$EXTDIR"/sync_engine--*.sql; do
        [[ -e $f ]] && echo "$f"
    done
    return 0
}
# "release" or "debug" build of a .so, by its DWARF sections (cargo's release profile
# strips debug info; the dev profile used by `cargo pgrx test` keeps it)
so_profile() {
    if ! command -v readelf >/dev/null 2>&1; then echo "unknown"
    elif readelf -S "$1" 2>/dev/null | grep -q '\.debug_info'; then echo "debug"
    else echo "release"; fi
}
save_installed() {
    saved_dir=$(mktemp -d /tmp/sync_engine_installed.XXXXXX)
    local f
    while read -r f; do
        cp -p -- "$f" "$saved_dir/" || die "could not save $f before the tests"
    done < <(installed_files)
    restore_pending=1
}
# shellcheck disable=SC2317  # also invoked by the EXIT trap
restore_installed() {
    ((restore_pending)) || return 0
    restore_pending=0
    local f n=0 so_note=""
    # files the tests installed that were not there before (the saved ones are renamed
    # over theirs below)
    while read -r f; do
        [[ -e $saved_dir/$(basename "$f") ]] || as_root rm -f -- "$f"
    done < <(installed_files)
    for f in "$saved_dir"/*; do
        [[ -e $f ]] || continue
        local dest=$EXTDIR
        [[ $f == *.so ]] && dest=$PKGLIBDIR
        # a new file renamed into place: a backend that has the old one mapped keeps it
        as_root cp -p -- "$f" "$dest/.$(basename "$f").restore" &&
            as_root mv -f -- "$dest/.$(basename "$f").restore" "$dest/$(basename "$f")" ||
            { warn "could not put back $dest/$(basename "$f") (a copy stays in $saved_dir)"; return 1; }
        n=$((n + 1))
        [[ $f == *.so ]] && so_note=" ($(so_profile "$f") build, $(stat -c '%y' "$f" | cut -d. -f1))"
    done
    rm -rf -- "$saved_dir"
    if ((n > 0)); then
        say "put back the sync_engine installed before the tests$so_note: $n files in $PKGLIBDIR and $EXTDIR"
    else
        say "removed the test build of sync_engine from $PKGLIBDIR and $EXTDIR (none was installed before the tests)"
    fi
}
on_exit() {
    restore_installed || true
    stop_redis
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
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

# --- golden SQL tests only: scripts/test.sh golden [NAME...] --------------------------
if [[ ${1:-} == golden ]]; then
    shift
    save_installed
    say "cargo pgrx install (debug), then the golden SQL tests"
    cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
    set +e
    bash scripts/regress.sh "$@"
    rc=$?
    set -e
    restore_installed || rc=1
    exit "$rc"
fi

# --- the tests ----------------------------------------------------------------------
mkdir -p "$(dirname "$LOG")"
say "cargo pgrx test pg15 ${1:-} --runas $PG_OS_USER --pgdata $PGDATA_BASE  (log: ${LOG#"$REPO_ROOT"/})"
save_installed
set +e
cargo pgrx test pg15 ${1:+"$1"} --runas "$PG_OS_USER" --pgdata "$PGDATA_BASE" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
# the golden SQL tests (tests/pg_regress), with the build the Rust tests installed, when
# no filter was given
golden=""
if [[ -z ${1:-} ]]; then
    if bash scripts/regress.sh 2>&1 | tee -a "$LOG"; then
        golden=", golden SQL tests: $(ls tests/pg_regress/sql/*.sql | grep -vc '/setup.sql$') passed"
    else
        golden=", golden SQL tests: FAILED"
        rc=1
    fi
fi
set -e
restore_installed || rc=1

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
    echo "TEST SUMMARY: PASS - $passed passed, $failed failed, $ignored ignored in $suites test suites$golden (${elapsed}s)"
    exit 0
fi
((rc != 0)) || rc=1
echo "TEST SUMMARY: FAIL (exit $rc) - $passed passed, $failed failed, $ignored ignored in $suites test suites$golden (${elapsed}s); log: $LOG"
exit "$rc"
