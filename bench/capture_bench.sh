#!/usr/bin/env bash
# Capture-trigger overhead: pgbench throughput on registered tables vs identical plain
# ones, in a throwaway PostgreSQL 15 (127.0.0.1:$BENCH_PORT, data in $BENCH_DIR).
#
# Three workloads, each its own figure; each runs ROUNDS rounds of one plain and one
# registered ("sync") pgbench run, in ABBA order (odd rounds plain first, even rounds sync
# first), so neither table always runs in the same phase of the machine:
#   capture_single_row_ratio   pgbench-style accounts table (5 columns): UPDATE one row by
#                              key, one int column (+ the version column)    target >= 0.80
#   capture_multicol_text_ratio  contacts table (14 columns: text, numeric, timestamptz,
#                              jsonb, boolean): UPDATE one row by key, 4 text columns
#                              (+ version)                                   target >= 0.80
#   capture_insert_delete_ratio  contacts table: per transaction DELETE one row by key and
#                              INSERT it again (version + 1); each client works on its own
#                              keys, so no transaction waits for another    target >= 0.80
# value = median(sync tps) / median(plain tps).
#   capture_bulk_update_ratio  contacts table: one UPDATE of all BULK_ROWS rows (score, a numeric
#                              column, + version), registered vs unregistered copy; BULK_ROUNDS
#                              rounds in ABBA order, each UPDATE timed with its commit after a
#                              VACUUM and CHECKPOINT                        target <= 1.5
#                              value = median(sync ms) / median(plain ms)
# Plus, for the single-row UPDATE, the mixed figure (capture_single_row_mixed_ratio,
# target >= 0.80): MIXED_ROUNDS pgbench runs with both scripts (weight 1 each); ratio =
# plain latency / sync latency. Both tables see the same moments of the machine, so drift
# cancels; the sync table's extra WAL work is shared by both, which flatters it a little.
#
# Exactly-once check: every UPDATE bumps a `version` column and every re-INSERT carries the
# deleted row's version + 1, so after the runs each row of a registered table must have
# exactly the change records its version says: updates with new versions 1..version, and
# for the insert/delete table inserts with new versions 1..version and deletes with old
# versions 0..version-1. Any other count or version fails the bench (exit 1).
#
#   DURATION=20  seconds per pgbench run        ROUNDS=4   rounds per workload
#   CLIENTS=2    pgbench clients and threads    ROWS=100000 rows per table
#   MIXED_ROUNDS=5  runs of the mixed measurement (0 = skip it)
#   BULK_ROWS=100000 rows of the bulk-UPDATE tables   BULK_ROUNDS=5 its rounds (0 = skip it)
#   BENCH_DIR=/var/tmp/sync_engine_bench BENCH_PORT=55433
#   SKIP_INSTALL=1  do not rebuild/install the extension first (it must be a release build)
#   STRICT=1     exit 1 when a target is missed
# Output (stdout): the bench header (machine, date, commit, build), per-round tps, a summary
# table and one RESULT line per figure (scripts/lib.sh `result`). pgbench logs stay in a
# temporary directory, printed only when a run fails.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-4}
CLIENTS=${CLIENTS:-2}
ROWS=${ROWS:-100000}
MIXED_ROUNDS=${MIXED_ROUNDS:-5}
BULK_ROWS=${BULK_ROWS:-100000}
BULK_ROUNDS=${BULK_ROUNDS:-5}
BULK_TARGET=1.5
TARGET=0.80
BENCH_DIR=${BENCH_DIR:-/var/tmp/sync_engine_bench}
BENCH_PORT=${BENCH_PORT:-55433}
for v in MIXED_ROUNDS BULK_ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
for v in DURATION ROUNDS CLIENTS ROWS BULK_ROWS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((ROWS % CLIENTS == 0)) || die "ROWS ($ROWS) must be a multiple of CLIENTS ($CLIENTS)"

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    bash scripts/install-ext.sh
fi

# pgbench scripts and logs live where the postgres OS user can read them
work=$(mktemp -d /tmp/sync_engine_bench.XXXXXX)
chmod 755 "$work"

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

bash scripts/cluster.sh start "$BENCH_DIR" "$BENCH_PORT" \
    -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min >/dev/null

sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# a private copy of the library (scripts/lib.sh: a test run rewriting the installed
# .so must not crash the benchmark's backends)
create_extension_private sql "$BENCH_DIR"
build=$(release_build sql)
bench_header capture_bench "$build" "DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=$CLIENTS ROWS=$ROWS MIXED_ROUNDS=$MIXED_ROUNDS BULK_ROWS=$BULK_ROWS BULK_ROUNDS=$BULK_ROUNDS"

# contacts_ddl NAME [N]: the 14-column contacts table of the text, insert/delete and bulk
# workloads, with N rows (default ROWS)
contacts_ddl() {
    cat <<SQL
CREATE TABLE $1 (id int PRIMARY KEY, first_name text, last_name text, email text, phone text,
  company text, city text, notes text, score numeric(10, 2), created_at timestamptz,
  updated_at timestamptz, attrs jsonb, active boolean, version int NOT NULL DEFAULT 0);
INSERT INTO $1 SELECT g, 'first' || g, 'last' || g, 'user' || g || '@example.com',
  '+1-555-' || lpad(g::text, 7, '0'), 'company ' || (g % 1000), 'city ' || (g % 500),
  'notes about contact ' || g, (g % 10000) / 100.0, now() - make_interval(days => g % 1000),
  now(), jsonb_build_object('source', 'import', 'tier', g % 3), g % 2 = 0, 0
  FROM generate_series(0, ${2:-$ROWS} - 1) g;
SQL
}
say "loading 3 pairs of tables ($ROWS rows each)$( ((BULK_ROUNDS == 0)) || echo " and the bulk pair ($BULK_ROWS rows)")"
{
    for t in acc_plain acc_sync; do
        echo "CREATE TABLE $t (aid int PRIMARY KEY, bid int, abalance int, filler char(84), version int NOT NULL DEFAULT 0);"
        echo "INSERT INTO $t SELECT g, g / 100000 + 1, 0, '', 0 FROM generate_series(0, $ROWS - 1) g;"
    done
    for t in ct_plain ct_sync cd_plain cd_sync; do contacts_ddl "$t"; done
    if ((BULK_ROUNDS > 0)); then
        for t in bk_plain bk_sync; do contacts_ddl "$t" "$BULK_ROWS"; done
        echo "SELECT sync_register_table('bench', 'bulk', 'bk_sync') \\g /dev/null"
    fi
    echo "SELECT sync_register_table('bench', 'acc', 'acc_sync') \\g /dev/null"
    echo "SELECT sync_register_table('bench', 'contacts', 'ct_sync') \\g /dev/null"
    echo "SELECT sync_register_table('bench', 'churn', 'cd_sync') \\g /dev/null"
    echo "VACUUM ANALYZE; CHECKPOINT;"
} | sql

# the pgbench scripts, one per workload and table: $work/<workload>_<plain|sync>.sql
for side in plain sync; do
    cat >"$work/single_$side.sql" <<PGB
\\set aid random(0, $((ROWS - 1)))
\\set delta random(-5000, 5000)
UPDATE acc_$side SET abalance = abalance + :delta, version = version + 1 WHERE aid = :aid;
PGB
    cat >"$work/text_$side.sql" <<PGB
\\set id random(0, $((ROWS - 1)))
\\set n random(1, 1000000000)
UPDATE ct_$side SET first_name = 'first ' || :n, email = 'user' || :n || '@example.org',
  city = 'city ' || (:n % 997), notes = 'notes, edited ' || :n || ' ' || repeat('x', 40),
  version = version + 1 WHERE id = :id;
PGB
    # client c only touches the keys k with k % CLIENTS = c: the DELETE always finds its row
    cat >"$work/churn_$side.sql" <<PGB
\\set k random(0, $((ROWS / CLIENTS - 1)))
\\set id :client_id + $CLIENTS * :k
BEGIN;
DELETE FROM cd_$side WHERE id = :id RETURNING version AS v \\gset
INSERT INTO cd_$side VALUES (:id, 'first' || :id, 'last' || :id, 'user' || :id || '@example.com',
  '+1-555-' || lpad(:id::text, 7, '0'), 'company ' || (:id % 1000), 'city ' || (:id % 500),
  'notes about contact ' || :id, (:id % 10000) / 100.0, now(), now(),
  jsonb_build_object('source', 'churn', 'tier', :id % 3), :id % 2 = 0, :v + 1);
END;
PGB
done
chmod 644 "$work"/*.sql

# pgbench_run LOG SCRIPT...: one pgbench run of DURATION seconds; dies (printing its log) if
# it fails
pgbench_run() {
    local log=$1
    shift
    local f args=()
    for f in "$@"; do args+=(-f "$work/$f"); done
    if ! bash scripts/cluster.sh exec "$BENCH_DIR" "$BENCH_PORT" "$PG_BIN/pgbench" \
        -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" "${args[@]}" >"$log" 2>&1; then
        cat "$log" >&2
        die "pgbench $* failed"
    fi
}

# run_one WORKLOAD SIDE -> prints "tps transactions"
run_one() {
    local log=$work/$1_$2_$RANDOM.log tps tx
    sql -c "VACUUM" -c "CHECKPOINT"
    pgbench_run "$log" "$1_$2.sql"
    tps=$(awk '/^tps = / { print $3; exit }' "$log")
    tx=$(awk -F': *' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$log")
    [[ -n $tps && -n $tx ]] || { cat "$log" >&2; die "could not parse pgbench output ($log)"; }
    echo "$tps $tx"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "inf" }'; }

declare -A fig_name fig_desc fig_rows fig_ratio
fig_name=([single]=capture_single_row_ratio [text]=capture_multicol_text_ratio [churn]=capture_insert_delete_ratio)
fig_desc=([single]="UPDATE 1 row by key, 1 int column + version (5-column table)"
    [text]="UPDATE 1 row by key, 4 text columns + version (14-column table)"
    [churn]="DELETE + INSERT 1 row by key in one transaction (14-column table)")
workloads=(single text churn)
for w in "${workloads[@]}"; do
    say "$w: ${fig_desc[$w]}; $ROUNDS rounds (ABBA order), ${DURATION}s runs, $CLIENTS clients"
    plain=() sync=() ratios=() lines=()
    for ((r = 1; r <= ROUNDS; r++)); do
        order=(plain sync)
        ((r % 2 == 1)) || order=(sync plain)
        for side in "${order[@]}"; do
            res=$(run_one "$w" "$side")
            read -r tps _ <<<"$res"
            if [[ $side == plain ]]; then p=$tps; else s=$tps; fi
        done
        plain+=("$p") sync+=("$s") ratios+=("$(div "$s" "$p")")
        lines+=("$(printf '    %-6s %-11s %12.1f %12.1f %10s' "$r" "${order[0]} first" "$p" "$s" "${ratios[-1]}")")
        echo "${lines[-1]}"
    done
    mp=$(median "${plain[@]}") ms=$(median "${sync[@]}")
    fig_ratio[$w]=$(div "$ms" "$mp")
    fig_rows[$w]=$(printf '%s\n' "${lines[@]}")
    fig_rows[$w]+=$'\n'"$(printf '    %-6s %-11s %12.1f %12.1f %10s   (median of the rounds %s)' median "" "$mp" "$ms" "${fig_ratio[$w]}" "$(median "${ratios[@]}")")"
done

# mixed: both single-row scripts in one run; per-script latency averages from pgbench
mixed=() mixed_lines=()
if ((MIXED_ROUNDS > 0)); then
    say "single: $MIXED_ROUNDS mixed runs (both tables in one run), ${DURATION}s each"
fi
for ((r = 1; r <= MIXED_ROUNDS; r++)); do
    log=$work/mixed$r.log
    sql -c "VACUUM acc_plain" -c "VACUUM acc_sync" -c "CHECKPOINT"
    pgbench_run "$log" "single_plain.sql@1" "single_sync.sql@1"
    # the per-script sections come in -f order: plain, then sync
    read -r lp ls < <(awk '/^SQL script/ { n++ } n && /latency average = / { l[n] = $(NF - 1) } END { print l[1], l[2] }' "$log")
    [[ -n $lp && -n $ls ]] || { cat "$log" >&2; die "could not parse the mixed pgbench output ($log)"; }
    mixed+=("$(div "$lp" "$ls")")
    mixed_lines+=("$(printf '    %-6s %12s %12s %10s' "$r" "$lp" "$ls" "${mixed[-1]}")")
    echo "${mixed_lines[-1]}"
done

# bulk: one UPDATE of every row of bk_plain / bk_sync per run, timed with its commit by the
# server clock (two statements in one session around it)
bulk_ms() { # TABLE -> ms
    sql -c "VACUUM ANALYZE $1" -c "CHECKPOINT"
    sql <<SQL | awk 'NR == 1 { a = $1 } NR == 2 { printf "%.1f", ($1 - a) * 1000 }'
SELECT extract(epoch FROM clock_timestamp());
UPDATE $1 SET score = score + 1, version = version + 1;
SELECT extract(epoch FROM clock_timestamp());
SQL
}
bulk_plain=() bulk_sync=() bulk_ratios=() bulk_lines=()
if ((BULK_ROUNDS > 0)); then
    say "bulk: UPDATE all $BULK_ROWS rows (score + version) of the 14-column table; $BULK_ROUNDS rounds (ABBA order)"
fi
for ((r = 1; r <= BULK_ROUNDS; r++)); do
    order=(plain sync)
    ((r % 2 == 1)) || order=(sync plain)
    for side in "${order[@]}"; do
        ms=$(bulk_ms "bk_$side")
        if [[ $side == plain ]]; then p=$ms; else s=$ms; fi
    done
    bulk_plain+=("$p") bulk_sync+=("$s") bulk_ratios+=("$(div "$s" "$p")")
    bulk_lines+=("$(printf '    %-6s %-11s %12.1f %12.1f %10s' "$r" "${order[0]} first" "$p" "$s" "${bulk_ratios[-1]}")")
    echo "${bulk_lines[-1]}"
done

# where the bulk time goes: the last round's records written again as one bare INSERT ..
# SELECT into a copy of change_log (same columns and index), after a VACUUM and CHECKPOINT
bulk_write_ms=""
if ((BULK_ROUNDS > 0)); then
    sql <<SQL
CREATE TABLE bk_records AS SELECT * FROM change_log WHERE system = 'bench' AND entity_type = 'bulk'
  ORDER BY id DESC LIMIT $BULK_ROWS;
CREATE TABLE bk_log_copy (LIKE change_log INCLUDING ALL);
VACUUM ANALYZE bk_records;
CHECKPOINT;
SQL
    bulk_write_ms=$(sql <<SQL | awk 'NR == 1 { a = $1 } NR == 2 { printf "%.1f", ($1 - a) * 1000 }'
SELECT extract(epoch FROM clock_timestamp());
INSERT INTO bk_log_copy SELECT * FROM bk_records;
SELECT extract(epoch FROM clock_timestamp());
SQL
    )
    sql -c "DROP TABLE bk_records, bk_log_copy"
fi

# exactly-once check, per row of each registered table (see the header)
check_updates() { # TABLE KEY ENTITY_TYPE -> rows whose change records do not match
    sql <<SQL
WITH c AS (
  SELECT entity_id, count(*) AS n, count(*) FILTER (WHERE operation = 'update') AS u,
         count(DISTINCT (fields -> 'version' ->> 'new')::int) AS nv,
         min((fields -> 'version' ->> 'new')::int) AS lo, max((fields -> 'version' ->> 'new')::int) AS hi
    FROM change_log WHERE system = 'bench' AND entity_type = '$3' GROUP BY entity_id)
SELECT count(*) FROM $1 t FULL JOIN c ON c.entity_id = t.$2::text
 WHERE t.$2 IS NULL OR coalesce(c.n, 0) <> t.version OR coalesce(c.u, 0) <> t.version
    OR coalesce(c.nv, 0) <> t.version OR (t.version > 0 AND (c.lo <> 1 OR c.hi <> t.version))
SQL
}
check_churn() { # -> rows of cd_sync whose insert/delete records do not match
    sql <<SQL
WITH c AS (
  SELECT entity_id, count(*) AS n,
         count(DISTINCT (fields -> 'version' ->> 'new')::int) FILTER (WHERE operation = 'insert') AS ni,
         min((fields -> 'version' ->> 'new')::int) FILTER (WHERE operation = 'insert') AS ilo,
         max((fields -> 'version' ->> 'new')::int) FILTER (WHERE operation = 'insert') AS ihi,
         count(DISTINCT (fields -> 'version' ->> 'old')::int) FILTER (WHERE operation = 'delete') AS nd,
         min((fields -> 'version' ->> 'old')::int) FILTER (WHERE operation = 'delete') AS dlo,
         max((fields -> 'version' ->> 'old')::int) FILTER (WHERE operation = 'delete') AS dhi
    FROM change_log WHERE system = 'bench' AND entity_type = 'churn' GROUP BY entity_id)
SELECT count(*) FROM cd_sync t FULL JOIN c ON c.entity_id = t.id::text
 WHERE t.id IS NULL OR coalesce(c.n, 0) <> 2 * t.version OR coalesce(c.ni, 0) <> t.version
    OR coalesce(c.nd, 0) <> t.version
    OR (t.version > 0 AND (c.ilo <> 1 OR c.ihi <> t.version OR c.dlo <> 0 OR c.dhi <> t.version - 1))
SQL
}
bad_single=$(check_updates acc_sync aid acc)
bad_text=$(check_updates ct_sync id contacts)
bad_churn=$(check_churn)
bad_bulk=0 n_bulk=0
if ((BULK_ROUNDS > 0)); then
    bad_bulk=$(check_updates bk_sync id bulk)
    n_bulk=$(sql -c "SELECT sum(version) FROM bk_sync")
fi
counts=$(sql -F ' ' -c "SELECT (SELECT sum(version) FROM acc_sync), (SELECT sum(version) FROM ct_sync),
    (SELECT sum(version) FROM cd_sync), (SELECT count(*) FROM change_log WHERE system = 'bench')")
read -r n_single n_text n_churn n_log <<<"$counts"

echo
echo "capture overhead, pgbench -c $CLIENTS -j $CLIENTS -T $DURATION, $ROWS rows per table, synchronous_commit=off"
for w in "${workloads[@]}"; do
    echo "  $w: ${fig_desc[$w]}"
    printf '    %-6s %-11s %12s %12s %10s\n' round order "plain tps" "sync tps" "sync/plain"
    echo "${fig_rows[$w]}"
    echo "    ratio = median(sync tps) / median(plain tps) = ${fig_ratio[$w]}"
done
if ((MIXED_ROUNDS > 0)); then
    echo "  single, mixed runs (both tables in one run; ratio = plain latency / sync latency):"
    printf '    %-6s %12s %12s %10s\n' run "plain ms" "sync ms" ratio
    printf '%s\n' "${mixed_lines[@]}"
    echo "    ratio = median = $(median "${mixed[@]}")"
fi
if ((BULK_ROUNDS > 0)); then
    echo "  bulk: UPDATE of all $BULK_ROWS rows, SET score = score + 1, version = version + 1 (14-column table)"
    printf '    %-6s %-11s %12s %12s %10s\n' round order "plain ms" "sync ms" "sync/plain"
    printf '%s\n' "${bulk_lines[@]}"
    bulk_ratio=$(div "$(median "${bulk_sync[@]}")" "$(median "${bulk_plain[@]}")")
    printf '    %-6s %-11s %12s %12s %10s   (median of the rounds %s)\n' median "" "$(median "${bulk_plain[@]}")" \
        "$(median "${bulk_sync[@]}")" "$bulk_ratio" "$(median "${bulk_ratios[@]}")"
    echo "    ratio = median(sync ms) / median(plain ms) = $bulk_ratio"
    echo "    where the time goes: writing the $BULK_ROWS records alone (a bare INSERT .. SELECT of them into a"
    echo "    copy of change_log) takes $bulk_write_ms ms, so one change_log row per changed row costs at least"
    echo "    (plain + that) / plain = $(div "$(awk -v a="$(median "${bulk_plain[@]}")" -v b="$bulk_write_ms" 'BEGIN { print a + b }')" "$(median "${bulk_plain[@]}")");"
    echo "    the rest is the trigger's (output functions, the record's jsonb and checksum, the AFTER trigger queue)"
fi
echo "  exactly-once check: $n_single committed single-row updates, $n_text text updates, $n_churn delete+insert"
echo "    transactions, $n_bulk bulk row updates on the registered tables; $n_log change records in all."
echo "    Rows whose records do not match their version: single $bad_single, text $bad_text,"
echo "    insert/delete $bad_churn, bulk $bad_bulk"
for w in "${workloads[@]}"; do
    result "${fig_name[$w]}" "${fig_ratio[$w]}" ">=" "$TARGET"
done
if ((MIXED_ROUNDS > 0)); then
    result capture_single_row_mixed_ratio "$(median "${mixed[@]}")" ">=" "$TARGET"
fi
if ((BULK_ROUNDS > 0)); then
    result capture_bulk_update_ratio "$bulk_ratio" "<=" "$BULK_TARGET"
fi
((bad_single == 0 && bad_text == 0 && bad_churn == 0 && bad_bulk == 0)) ||
    die "exactly-once check failed: $bad_single + $bad_text + $bad_churn + $bad_bulk rows whose change records do not match their committed changes"
((n_single > 0 && n_text > 0 && n_churn > 0)) || die "a workload committed nothing on its registered table"
if [[ ${STRICT:-0} == 1 ]] && ((RESULT_MISSED)); then
    exit 1
fi
