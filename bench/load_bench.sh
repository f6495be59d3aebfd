#!/usr/bin/env bash
# Load (issue 17): pgbench writers on both endpoints of two bidirectional configs while the
# background worker syncs them every second, in a throwaway PostgreSQL 15
# (127.0.0.1:$BENCH_PORT, data in $BENCH_DIR, sync_engine preloaded, naptime 1 s,
# track_commit_timestamp on).
#
# Setup: two pairs of tables, crm.contacts <-> hub.contacts (same-named columns: the
# one-statement column copy) and crm.deals <-> hub.deals (a `trim` transform: the merge),
# each config `sync_interval = '1 second'`. ROWS rows are born on each side of each pair
# (and synced once before the load). During DURATION seconds two pgbench runs, one per side
# (CLIENTS clients each, RATE transactions/s each), each transaction one autocommit
# statement on a random table of its side: 30% INSERT of a new row, 70% UPDATE of a row
# born on that side (so the two sides never write the same row: no conflicts, every change
# must arrive). Every written value is a unique token ('a' || n on the crm side, 'b' || n on
# the hub side, from a sequence per side).
#
#   1. lost / duplicated: after the load the worker syncs until nothing is pending; then
#      lost = rows without a link + links missing a row + linked pairs whose values differ
#      + (expected rows - rows) per side, expected = born + inserted on either side;
#      duplicated = rows beyond expected + tokens held by two rows of a table + engine
#      writes of a token applied twice (change records of the engine's origin with the
#      same new value for the same table). A final explicit run of each config must
#      change nothing.                                           targets: lost = 0, duplicated = 0
#   2. commit-to-other-side latency: for every token that arrived (a write superseded on
#      its own side before a run read it never travels, by design), the commit time of the
#      engine's transaction that wrote it on the other side minus the commit time of the
#      writer's transaction (pg_xact_commit_timestamp of both change records' txids: the
#      server's commit clock, no sampling). p50 and p99 in seconds.
#                                                                 targets: p50 <= 3, p99 <= 5
#   3. worker memory: the scheduler backend's private memory (RssAnon of
#      /proc/<pid>/status) WARMUP seconds into the load vs at its end; ratio end/start.
#                                                                 target <= 1.5
#
#   DURATION=180 CLIENTS=2 RATE=40 ROWS=1000 WARMUP=15
#   QUICK=1          DURATION=30 WARMUP=8 (a quick check that it works)
#   BENCH_DIR=/var/tmp/fuzz_load_bench BENCH_PORT=56210
#   SKIP_INSTALL=1   do not rebuild/install the extension first (it must be a release build)
#   STRICT=1         exit 1 when a target is missed
# Output: the bench header, then one RESULT line per figure (scripts/lib.sh `result`).
# Run under the test lock: flock /tmp/sync_engine_pgtest.lock bash bench/load_bench.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

if [[ ${QUICK:-0} == 1 ]]; then
    DURATION=${DURATION:-30}
    WARMUP=${WARMUP:-8}
fi
DURATION=${DURATION:-180}
CLIENTS=${CLIENTS:-2}
RATE=${RATE:-40}
ROWS=${ROWS:-1000}
WARMUP=${WARMUP:-15}
BENCH_DIR=${BENCH_DIR:-/var/tmp/fuzz_load_bench}
BENCH_PORT=${BENCH_PORT:-56210}
for v in DURATION CLIENTS RATE ROWS WARMUP; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((WARMUP < DURATION)) || die "WARMUP ($WARMUP) must be shorter than DURATION ($DURATION)"

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    bash scripts/install-ext.sh
fi

work=$(mktemp -d /tmp/fuzz_load_bench.XXXXXX)
chmod 777 "$work"
pgbench_pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local p
    for p in "${pgbench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

bash scripts/cluster.sh start "$BENCH_DIR" "$BENCH_PORT" \
    -c shared_preload_libraries=sync_engine -c sync_engine.database=postgres -c sync_engine.naptime=1 \
    -c track_commit_timestamp=on -c shared_buffers=256MB -c max_wal_size=4GB
sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
# the library is preloaded (the worker), so every backend has $libdir/sync_engine.so
# mapped: a private copy (create_extension_private) would be a second copy in the same
# process (notify_bench.sh, preloaded too, does the same)
sql -c "CREATE EXTENSION sync_engine"
build=$(release_build sql)
bench_header load_bench "$build" "DURATION=$DURATION CLIENTS=$CLIENTS RATE=$RATE ROWS=$ROWS WARMUP=$WARMUP"

# hub keys start at 1e9, so a key tells which table it is from at a glance
sql >/dev/null <<SQL
CREATE SCHEMA crm;
CREATE SCHEMA hub;
CREATE SEQUENCE crm.tok;
CREATE SEQUENCE hub.tok;
CREATE TABLE crm.contacts (id bigserial PRIMARY KEY, born text NOT NULL, v text);
CREATE TABLE crm.deals (id bigserial PRIMARY KEY, born text NOT NULL, v text);
CREATE TABLE hub.contacts (id bigserial PRIMARY KEY, born text NOT NULL, v text);
CREATE TABLE hub.deals (id bigserial PRIMARY KEY, born text NOT NULL, v text);
ALTER SEQUENCE hub.contacts_id_seq RESTART 1000000001;
ALTER SEQUENCE hub.deals_id_seq RESTART 1000000001;
SELECT sync_register_table('crm', 'contacts', 'crm.contacts'), sync_register_table('hub', 'contacts', 'hub.contacts'),
       sync_register_table('crm', 'deals', 'crm.deals'), sync_register_table('hub', 'deals', 'hub.deals');
-- after registering: the born rows are captured inserts, as the load's are
INSERT INTO crm.contacts (born, v) SELECT 'a', 'a' || nextval('crm.tok') FROM generate_series(1, $ROWS);
INSERT INTO crm.deals (born, v) SELECT 'a', 'a' || nextval('crm.tok') FROM generate_series(1, $ROWS);
INSERT INTO hub.contacts (born, v) SELECT 'b', 'b' || nextval('hub.tok') FROM generate_series(1, $ROWS);
INSERT INTO hub.deals (born, v) SELECT 'b', 'b' || nextval('hub.tok') FROM generate_series(1, $ROWS);
SELECT sync_create_config('contacts', 'crm', 'hub', 'contacts', sync_interval => '1 second');
SELECT sync_create_config('deals', 'crm', 'hub', 'deals',
  '[{"source": "born", "target": "born"}, {"source": "v", "target": "v", "transform": "trim"}]',
  sync_interval => '1 second');
UPDATE sync_configs SET enabled = false;
SELECT sync_execute(id) FROM sync_configs ORDER BY id;
UPDATE sync_configs SET enabled = true, next_run_at = now();
VACUUM ANALYZE;
SQL
[[ $(sql -c "SELECT count(*) FROM sync_links") == $((4 * ROWS)) ]] || die "the initial load did not link every row"

# one pgbench script per side and table: 30% inserts, 70% updates of the side's own rows
script() { # script SIDE TOKEN_PREFIX TABLE FIRST_KEY
    local lo=$4 hi=$(($4 + ROWS - 1))
    cat <<SQL
\\set r random(1, 100)
\\if :r <= 30
INSERT INTO $1.$3 (born, v) VALUES ('$2', '$2' || nextval('$1.tok'));
\\else
\\set id random($lo, $hi)
UPDATE $1.$3 SET v = '$2' || nextval('$1.tok') WHERE id = :id;
\\endif
SQL
}
script crm a contacts 1 >"$work/a1.sql"
script crm a deals 1 >"$work/a2.sql"
script hub b contacts 1000000001 >"$work/b1.sql"
script hub b deals 1000000001 >"$work/b2.sql"
chmod 644 "$work"/*.sql # pgbench runs as the postgres user
pgb() { # pgb SIDE: one pgbench run writing that side's tables
    bash scripts/cluster.sh exec "$BENCH_DIR" "$BENCH_PORT" "$PG_BIN/pgbench" -n -c "$CLIENTS" -j 1 -R "$RATE" \
        -T "$DURATION" -f "$work/${1}1.sql@1" -f "$work/${1}2.sql@1" >"$work/pgbench_$1.out" 2>&1
}

worker_pid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler'")
[[ $worker_pid =~ ^[0-9]+$ ]] || die "no scheduler runs"
rss_anon() { as_root awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
say "load: $DURATION s, ${CLIENTS}x2 clients at ${RATE} tps per side; worker pid $worker_pid"
pgb a &
pgbench_pids+=($!)
pgb b &
pgbench_pids+=($!)
sleep "$WARMUP"
mem_start=$(rss_anon "$worker_pid")
for p in "${pgbench_pids[@]}"; do wait "$p" || die "pgbench failed: $(cat "$work"/pgbench_*.out)"; done
pgbench_pids=()
mem_end=$(rss_anon "$worker_pid")
[[ $(sql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler'") == "$worker_pid" ]] ||
    die "the scheduler was restarted during the load (its memory figure would mean nothing)"
for s in a b; do
    say "pgbench side $s: $(grep -E '^(number of transactions actually processed|tps)' "$work/pgbench_$s.out" | tr '\n' ' ')"
done

# drain: the worker syncs until no change is pending (lag is NULL for both configs)
for ((i = 0; i < 600; i++)); do
    [[ $(sql -c "SELECT bool_and(lag IS NULL) FROM sync_status") == t ]] && break
    sleep 0.2
done
[[ $(sql -c "SELECT bool_and(lag IS NULL) FROM sync_status") == t ]] || die "the worker did not catch up within 120 s"
# stop scheduling, wait for a run in flight, then one explicit run each: must change nothing
sql -c "UPDATE sync_configs SET enabled = false"
for ((i = 0; i < 300; i++)); do
    [[ $(sql -c "SELECT count(*) FROM sync_runs WHERE status = 'running'") == 0 ]] && break
    sleep 0.2
done
second=$(sql -c "SELECT string_agg(concat_ws(' ', r->'synced', r->'created', r->'updated', r->'deleted', r->'conflicts', r->'errors'), ' | ' ORDER BY id)
                   FROM sync_configs, sync_execute(id) r")
say "a final run of each config: $second (synced created updated deleted conflicts errors)"

sql >"$work/check.out" <<'SQL'
CREATE TEMP TABLE pairs AS
  SELECT * FROM (VALUES ('contacts', 'crm.contacts'::regclass, 'hub.contacts'::regclass),
                        ('deals', 'crm.deals'::regclass, 'hub.deals'::regclass)) p(name, s, t);
CREATE FUNCTION pg_temp.problems(cfg text, s regclass, t regclass) RETURNS TABLE (lost bigint, dup bigint)
LANGUAGE plpgsql AS $$
DECLARE
    cfg_id bigint := (SELECT c.id FROM sync_configs c WHERE c.name = cfg);
    born_and_inserted bigint;
    rs bigint; rt bigint; unlinked bigint; dangling bigint; differ bigint; twice_s bigint; twice_t bigint;
BEGIN
    -- every row born before the load, plus every insert either side's writers made
    SELECT count(*) INTO born_and_inserted FROM change_log l
     WHERE l.entity_type = cfg AND l.origin IS NULL AND l.operation = 'insert';
    EXECUTE format('SELECT count(*) FROM %s', s) INTO rs;
    EXECUTE format('SELECT count(*) FROM %s', t) INTO rt;
    EXECUTE format('SELECT (SELECT count(*) FROM %1$s x WHERE NOT EXISTS (SELECT FROM sync_links l WHERE l.config_id = %3$s AND l.source_id = x.id::text))
                         + (SELECT count(*) FROM %2$s y WHERE NOT EXISTS (SELECT FROM sync_links l WHERE l.config_id = %3$s AND l.target_id = y.id::text))',
                   s, t, cfg_id) INTO unlinked;
    EXECUTE format('SELECT count(*) FROM sync_links l WHERE l.config_id = %3$s
                       AND (NOT EXISTS (SELECT FROM %1$s x WHERE x.id::text = l.source_id)
                            OR NOT EXISTS (SELECT FROM %2$s y WHERE y.id::text = l.target_id))', s, t, cfg_id) INTO dangling;
    EXECUTE format('SELECT count(*) FROM sync_links l JOIN %1$s x ON x.id::text = l.source_id JOIN %2$s y ON y.id::text = l.target_id
                     WHERE l.config_id = %3$s AND (x.v, x.born) IS DISTINCT FROM (y.v, y.born)', s, t, cfg_id) INTO differ;
    EXECUTE format('SELECT count(*) - count(DISTINCT v) FROM %s', s) INTO twice_s;
    EXECUTE format('SELECT count(*) - count(DISTINCT v) FROM %s', t) INTO twice_t;
    lost := unlinked + dangling + differ + greatest(born_and_inserted - rs, 0) + greatest(born_and_inserted - rt, 0);
    dup := greatest(rs - born_and_inserted, 0) + greatest(rt - born_and_inserted, 0) + twice_s + twice_t
         + (SELECT coalesce(sum(n - 1), 0) FROM (
              SELECT count(*) AS n FROM change_log l
               WHERE l.entity_type = cfg AND l.origin = 'sync_engine:config:' || cfg_id
               GROUP BY l.system, l.fields->'v'->>'new' HAVING count(*) > 1) d);
    RAISE NOTICE '%: rows % / % (expected %), unlinked %, dangling links %, differing %, tokens twice % / %',
                 cfg, rs, rt, born_and_inserted, unlinked, dangling, differ, twice_s, twice_t;
    RETURN NEXT;
END $$;
SELECT sum(lost) || ' ' || sum(dup) FROM pairs, pg_temp.problems(name, s, t);
SQL
read -r lost dup <"$work/check.out"
say "lost $lost, duplicated $dup"

# latency: per token that reached the other side, commit(engine's write) - commit(writer's)
xid() { echo "pg_xact_commit_timestamp((($1)::text::bigint % 4294967296)::text::xid)"; }
lat=$(sql -c "WITH w AS (SELECT l.entity_type, l.system, l.fields->'v'->>'new' AS v, $(xid l.txid) AS at
                           FROM change_log l WHERE l.origin IS NULL AND l.fields ? 'v'
                            AND l.changed_at > (SELECT min(started_at) FROM sync_runs WHERE started_by = 'worker')),
                   e AS (SELECT l.entity_type, l.system, l.fields->'v'->>'new' AS v, $(xid l.txid) AS at
                           FROM change_log l WHERE l.origin LIKE 'sync_engine:%' AND l.fields ? 'v'),
                   d AS (SELECT extract(epoch FROM e.at - w.at) AS s FROM w JOIN e USING (entity_type, v) WHERE e.system <> w.system)
              SELECT count(*) || ' ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 3) || ' '
                     || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 3) || ' ' || round(max(s)::numeric, 3)
                FROM d")
read -r arrived p50 p99 pmax <<<"$lat"
writes=$(sql -c "SELECT count(*) FROM change_log WHERE origin IS NULL
                   AND changed_at > (SELECT min(started_at) FROM sync_runs WHERE started_by = 'worker')")
say "latency over $arrived arrived tokens (of $writes writes during the load; the rest were superseded before a run): p50 ${p50}s p99 ${p99}s max ${pmax}s"
say "worker RssAnon: $mem_start kB after ${WARMUP}s, $mem_end kB at the end"
mem_ratio=$(awk -v a="$mem_start" -v b="$mem_end" 'BEGIN { printf "%.3f", b / a }')
noop=0
[[ $second =~ ^(0\ 0\ 0\ 0\ 0\ 0(\ \|\ )?)+$ ]] || noop=1

result load_lost "$lost" "<=" 0
result load_duplicated "$dup" "<=" 0
result load_second_run_changes "$noop" "<=" 0
result load_latency_p50_s "$p50" "<=" 3
result load_latency_p99_s "$p99" "<=" 5
result load_worker_memory_ratio "$mem_ratio" "<=" 1.5
if [[ ${STRICT:-0} == 1 && $RESULT_MISSED == 1 ]]; then exit 1; fi
