#!/usr/bin/env bash
# Offline clients: push and pull cost, each figure against a baseline measured in the same
# run, in a throwaway PostgreSQL 15 (127.0.0.1:$BENCH_PORT, data in $BENCH_DIR).
#
#   1. push_vs_update: ROWS pushed updates in batches of BATCH (sync_push calls from one
#      client, each its own transaction) vs. the same rows updated with one UPDATE statement
#      per row from one client (psql, autocommit). ROUNDS alternating rounds, medians.
#      value = changes/s of sync_push / rows/s of the plain UPDATEs      target >= 0.5
#   2. pull_changes_per_s: a BACKLOG-change backlog (written in transactions of ROWS rows)
#      pulled from one cursor in pages of PAGE, each page its own statement from one client.
#      value = changes/s                                                  target >= 10000
#   3. pull_peak_mb: peak private memory (RssAnon, sampled every 50 ms and at the end) of
#      the backend that pulled the backlog.                               target < 64
#
#   ROWS=10000 BATCH=500 ROUNDS=3 BACKLOG=100000 PAGE=1000
#   BENCH_DIR=/var/tmp/se_offline_bench BENCH_PORT=56320
#   SKIP_INSTALL=1   do not rebuild/install the extension first (it must be a release build)
#   STRICT=1         exit 1 when a target is missed
#
# Output: the bench header (machine, date, commit, build), then one RESULT line per figure
# (scripts/lib.sh `result`: RESULT name=<id> value=<n> target=<op><n> met|not-met).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

ROWS=${ROWS:-10000}
BATCH=${BATCH:-500}
ROUNDS=${ROUNDS:-3}
BACKLOG=${BACKLOG:-100000}
PAGE=${PAGE:-1000}
BENCH_DIR=${BENCH_DIR:-/var/tmp/se_offline_bench}
BENCH_PORT=${BENCH_PORT:-56320}
for v in ROWS BATCH ROUNDS BACKLOG PAGE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((BACKLOG % ROWS == 0)) || die "BACKLOG ($BACKLOG) must be a multiple of ROWS ($ROWS)"

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    bash scripts/install-ext.sh
fi

work=$(mktemp -d /tmp/se_offline_bench.XXXXXX)
chmod 777 "$work"
sampler=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

bash scripts/cluster.sh start "$BENCH_DIR" "$BENCH_PORT" \
    -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min
sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# a private copy of the library (scripts/lib.sh: a test run rewriting the installed
# .so must not crash the benchmark's backends)
create_extension_private sql "$BENCH_DIR"
build=$(release_build sql)
bench_header offline_bench "$build" "ROWS=$ROWS BATCH=$BATCH ROUNDS=$ROUNDS BACKLOG=$BACKLOG PAGE=$PAGE"

sql >/dev/null <<SQL
CREATE SCHEMA bench;
CREATE TABLE bench.contacts (id int PRIMARY KEY, name text, phone text, score int);
INSERT INTO bench.contacts SELECT g, 'name ' || g, 'p0-' || g, g % 100 FROM generate_series(1, $ROWS) g;
SELECT sync_register_table('bench', 'contacts', 'bench.contacts');
VACUUM ANALYZE bench.contacts;
SQL

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# timed FILE: seconds psql takes to run FILE (one client, statement by statement)
timed() {
    local t0 t1
    t0=$(now)
    sql -f - <"$1" >/dev/null
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }'
}

update_rates=()
push_rates=()
for ((r = 1; r <= ROUNDS; r++)); do
    # plain: phone p<r-1>... -> u<r>-id, one UPDATE per row
    sql -c "SELECT format('UPDATE bench.contacts SET phone = %L WHERE id = %s;', 'u$r-' || g, g)
              FROM generate_series(1, $ROWS) g" >"$work/update.sql"
    t=$(timed "$work/update.sql")
    update_rates+=("$(awk -v n="$ROWS" -v t="$t" 'BEGIN { printf "%.1f", n / t }')")
    # push: u<r>-id -> q<r>-id, batches of BATCH
    sql -c "SELECT format('SELECT (sync_push(''bench'', ''contacts'', %L, ''bench-client''))->>''applied'';',
                          jsonb_agg(jsonb_build_object('id', 'r$r-' || g, 'entity_id', g::text, 'operation', 'update',
                                    'changed_at', floor(extract(epoch FROM now()) * 1000)::bigint,
                                    'fields', jsonb_build_object('phone', jsonb_build_object('old', 'u$r-' || g, 'new', 'q$r-' || g)))
                                    ORDER BY g))
              FROM generate_series(1, $ROWS) g GROUP BY (g - 1) / $BATCH ORDER BY (g - 1) / $BATCH" >"$work/push.sql"
    t=$(timed "$work/push.sql")
    push_rates+=("$(awk -v n="$ROWS" -v t="$t" 'BEGIN { printf "%.1f", n / t }')")
    applied=$(sql -c "SELECT count(*) FROM bench.contacts WHERE phone = 'q$r-' || id")
    [[ $applied == "$ROWS" ]] || die "round $r: $applied of $ROWS pushed updates applied"
    say "round $r: UPDATE ${update_rates[-1]} rows/s, sync_push ${push_rates[-1]} changes/s"
done
mu=$(median "${update_rates[@]}")
mp=$(median "${push_rates[@]}")
ratio=$(awk -v a="$mp" -v b="$mu" 'BEGIN { printf "%.3f", a / b }')
say "medians: UPDATE $mu rows/s, sync_push $mp changes/s"
result push_vs_update "$ratio" ">=" 0.5

# 2 + 3: a backlog of BACKLOG changes, pulled in pages of PAGE
cursor=$(sql -c "SELECT sync_pull('bench', 'contacts') ->> 'cursor'")
for ((i = 1; i <= BACKLOG / ROWS; i++)); do
    sql -c "UPDATE bench.contacts SET score = score + 1"
done
sql -c "VACUUM ANALYZE" -c "CHECKPOINT"
pages=$((BACKLOG / PAGE + 2))
{
    echo "\\set c '$cursor'"
    echo "\\set total 0"
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo "\\o $work/pull.pid"
    echo "SELECT :pid;"
    echo "\\o"
    echo "SELECT pg_sleep(0.3);"
    echo "SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset"
    for ((i = 0; i < pages; i++)); do
        echo "SELECT r->>'cursor' AS c, :total + jsonb_array_length(r->'changes') AS total FROM sync_pull('bench', 'contacts', :'c', $PAGE) r \\gset"
    done
    echo "SELECT :total || ' ' || (extract(epoch FROM clock_timestamp()) - :t0);"
    echo "\\setenv BPID :pid"
    echo "\\! cat /proc/\$BPID/status > $work/pull.status"
} >"$work/pull.sql"
sql -f - <"$work/pull.sql" >"$work/pull.out" &
spid=$!
pid=""
for ((i = 0; i < 200; i++)); do
    [[ -s $work/pull.pid ]] && pid=$(tr -d '[:space:]' <"$work/pull.pid") && [[ -n $pid ]] && break
    sleep 0.05
done
[[ -n $pid ]] || die "pull: no backend pid"
peak_anon=0
while kill -0 "$spid" 2>/dev/null; do
    a=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((${a:-0} > peak_anon)) && peak_anon=$a
    sleep 0.05
done
wait "$spid" || die "pull session failed: $(cat "$work/pull.out")"
read -r total secs < <(grep -E '^[0-9]+ ' "$work/pull.out" | tail -n 1)
[[ $total == "$BACKLOG" ]] || die "pulled $total changes, want $BACKLOG"
end_anon=$(awk '/^RssAnon:/ { print $2 }' "$work/pull.status")
((end_anon > peak_anon)) && peak_anon=$end_anon
hwm=$(awk '/^VmHWM:/ { print $2 }' "$work/pull.status")
rate=$(awk -v n="$total" -v t="$secs" 'BEGIN { printf "%.0f", n / t }')
say "pulled $total changes in ${secs}s ($((pages)) pulls of $PAGE); VmHWM $((hwm / 1024)) MB incl. shared buffers"
result pull_changes_per_s "$rate" ">=" 10000
result pull_peak_mb "$(awk -v k="$peak_anon" 'BEGIN { printf "%.1f", k / 1024 }')" "<" 64

if [[ ${STRICT:-0} == 1 ]] && ((RESULT_MISSED)); then exit 1; fi
