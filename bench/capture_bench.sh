#!/usr/bin/env bash
# Capture-trigger overhead: pgbench UPDATE throughput on a registered table vs. an
# identical plain one, in a throwaway PostgreSQL 15 (127.0.0.1:55433,
# /var/tmp/sync_engine_bench). Rounds alternate plain, sync, plain, sync, ...
#
#   DURATION=20  seconds per pgbench run        ROUNDS=3   rounds (one plain + one sync run each)
#   CLIENTS=2    pgbench clients and threads    ROWS=100000 rows per table
#   SKIP_INSTALL=1  do not rebuild/install the extension first
#   STRICT=1     exit 1 when a ratio is below the target
#
#   MIXED_ROUNDS=5  runs of the mixed measurement (0 = skip it)
#
# Two figures, target >= 0.80 for both:
#   alternating  median(sync tps) / median(plain tps) over separate runs, one table per
#                run. What the target names, but this VM's speed drifts by +-15% between
#                runs, so single rounds range widely.
#   mixed        one pgbench run with both scripts (weight 1 each: every client picks one
#                of the two UPDATEs per transaction): throughput ratio = plain latency /
#                sync latency (with a fixed number of clients, tps = clients / latency).
#                Both tables see the same moments of the machine, so drift cancels; the
#                sync table's extra WAL work is shared by both, which flatters it a little.
# Logs of every run: bench/out/capture-<timestamp>/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-2}
ROWS=${ROWS:-100000}
TARGET=0.80
BENCH_DIR=${BENCH_DIR:-/var/tmp/sync_engine_bench}
BENCH_PORT=${BENCH_PORT:-55433}
OUT=$REPO_ROOT/bench/out/capture-$(date +%Y%m%d-%H%M%S)
MIXED_ROUNDS=${MIXED_ROUNDS:-5}
[[ $MIXED_ROUNDS =~ ^[0-9]+$ ]] || die "MIXED_ROUNDS must be a non-negative integer (got '$MIXED_ROUNDS')"
for v in DURATION ROUNDS CLIENTS ROWS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    bash scripts/install-ext.sh
fi

# pgbench scripts live where the postgres OS user can read them
work=$(mktemp -d /tmp/sync_engine_bench.XXXXXX)
chmod 755 "$work"
mkdir -p "$OUT"

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

bash scripts/cluster.sh start "$BENCH_DIR" "$BENCH_PORT" \
    -c synchronous_commit=off -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min

sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

lib_so=$("$PG_CONFIG" --pkglibdir)/sync_engine.so
sql -c "CREATE EXTENSION sync_engine"
build=$(release_build sql)
header="sync_engine capture bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, library $lib_so ($(stat -c '%y, %s bytes' "$lib_so"), build $build)"
say "$header"

say "loading acc_plain and acc_sync ($ROWS rows each)"
sql <<SQL
CREATE TABLE acc_plain (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE acc_sync  (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
INSERT INTO acc_plain SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, $ROWS) g;
INSERT INTO acc_sync  SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, $ROWS) g;
SELECT sync_register_table('bench', 'acc', 'acc_sync') \\g /dev/null
VACUUM ANALYZE acc_plain;
VACUUM ANALYZE acc_sync;
CHECKPOINT;
SQL

for t in acc_plain acc_sync; do
    cat >"$work/$t.sql" <<PGB
\\set aid random(1, $ROWS)
\\set delta random(-5000, 5000)
UPDATE $t SET abalance = abalance + :delta WHERE aid = :aid;
PGB
    chmod 644 "$work/$t.sql"
done

# run_one TABLE LOGNAME -> prints "tps transactions"
run_one() {
    local t=$1 log=$2
    sql -c "VACUUM $t" -c "CHECKPOINT"
    if ! bash scripts/cluster.sh exec "$BENCH_DIR" "$BENCH_PORT" "$PG_BIN/pgbench" \
        -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -f "$work/$t.sql" >"$log" 2>&1; then
        cat "$log" >&2
        die "pgbench on $t failed"
    fi
    local tps tx
    tps=$(awk '/^tps = / { print $3; exit }' "$log")
    tx=$(awk -F': *' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$log")
    [[ -n $tps && -n $tx ]] || { cat "$log" >&2; die "could not parse pgbench output ($log)"; }
    echo "$tps $tx"
}

plain=() sync=()
sync_tx=0
say "pgbench: $ROUNDS rounds x (plain, sync), ${DURATION}s each, $CLIENTS clients"
for ((r = 1; r <= ROUNDS; r++)); do
    res=$(run_one acc_plain "$OUT/round$r-plain.log")
    read -r tps _ <<<"$res"
    plain+=("$tps")
    printf '    round %d  plain %10.1f tps\n' "$r" "$tps"
    res=$(run_one acc_sync "$OUT/round$r-sync.log")
    read -r tps tx <<<"$res"
    sync+=("$tps")
    sync_tx=$((sync_tx + tx))
    printf '    round %d  sync  %10.1f tps\n' "$r" "$tps"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mp=$(median "${plain[@]}")
ms=$(median "${sync[@]}")
ratio=$(awk -v s="$ms" -v p="$mp" 'BEGIN { printf "%.3f", s / p }')
ok=$(awk -v r="$ratio" -v t="$TARGET" 'BEGIN { print (r >= t) ? 1 : 0 }')

# mixed: both scripts in one run; per-script latency averages from pgbench's report
mixed=() mixed_lines=()
if ((MIXED_ROUNDS > 0)); then
    say "pgbench: $MIXED_ROUNDS mixed runs (both tables in one run), ${DURATION}s each"
fi
for ((r = 1; r <= MIXED_ROUNDS; r++)); do
    log=$OUT/mixed$r.log
    sql -c "VACUUM acc_plain" -c "VACUUM acc_sync" -c "CHECKPOINT"
    if ! bash scripts/cluster.sh exec "$BENCH_DIR" "$BENCH_PORT" "$PG_BIN/pgbench" \
        -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -f "$work/acc_plain.sql@1" -f "$work/acc_sync.sql@1" >"$log" 2>&1; then
        cat "$log" >&2
        die "mixed pgbench run failed"
    fi
    # the per-script sections come in -f order: plain, then sync
    read -r lp ls < <(awk '/^SQL script/ { n++ } n && /latency average = / { l[n] = $(NF - 1) } END { print l[1], l[2] }' "$log")
    [[ -n $lp && -n $ls ]] || { cat "$log" >&2; die "could not parse the mixed pgbench output ($log)"; }
    m=$(awk -v p="$lp" -v s="$ls" 'BEGIN { printf "%.3f", p / s }')
    mixed+=("$m")
    mixed_lines+=("$(printf '  %-7s %14s %14s %8s' "$r" "$lp" "$ls" "$m")")
    printf '    mixed %d  plain %s ms  sync %s ms  ratio %s\n' "$r" "$lp" "$ls" "$m"
done
mixed_ok=1
if ((MIXED_ROUNDS > 0)); then
    mm=$(median "${mixed[@]}")
    mixed_ok=$(awk -v r="$mm" -v t="$TARGET" 'BEGIN { print (r >= t) ? 1 : 0 }')
fi
logged=$(sql -c "SELECT count(*) FROM change_log WHERE system = 'bench' AND entity_type = 'acc'")
{
    echo "$header"
    echo
    echo "capture overhead: UPDATE one row by key, pgbench -c $CLIENTS -j $CLIENTS -T $DURATION, $ROWS rows"
    echo "alternating runs (one table per run):"
    printf '  %-7s %14s %14s %8s\n' round "plain tps" "sync tps" "sync/plain"
    for ((i = 0; i < ROUNDS; i++)); do
        printf '  %-7s %14.1f %14.1f %8s\n' "$((i + 1))" "${plain[i]}" "${sync[i]}" \
            "$(awk -v s="${sync[i]}" -v p="${plain[i]}" 'BEGIN { printf "%.3f", s / p }')"
    done
    printf '  %-7s %14.1f %14.1f\n' median "$mp" "$ms"
    echo "  ratio = median(sync tps) / median(plain tps) = $ratio   (target >= $TARGET: $( ((ok)) && echo met || echo NOT met))"
    if ((MIXED_ROUNDS > 0)); then
        echo "mixed runs (both tables in one run; ratio = plain latency / sync latency):"
        printf '  %-7s %14s %14s %8s\n' run "plain ms" "sync ms" "ratio"
        printf '%s\n' "${mixed_lines[@]}"
        echo "  ratio = median = $mm   (target >= $TARGET: $( ((mixed_ok)) && echo met || echo NOT met))"
    fi
    echo "change_log rows for bench.acc: $logged (alternating sync runs committed $sync_tx updates; those with delta 0 change nothing and are not captured)"
    echo "pgbench logs: ${OUT#"$REPO_ROOT"/}"
} | tee "$OUT/summary.txt"
if ((logged == 0)); then
    die "no change records: the capture trigger did not run"
fi
if [[ ${STRICT:-0} == 1 ]] && ((!ok || !mixed_ok)); then
    exit 1
fi
