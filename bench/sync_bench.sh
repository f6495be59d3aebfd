#!/usr/bin/env bash
# sync_execute cost: three figures, each against a baseline measured in the same run, in a
# throwaway PostgreSQL 15 (127.0.0.1:55434, /var/tmp/sync_engine_syncbench).
#
#   1. throughput: one sync_execute after a full-table UPDATE of ROWS rows vs. native
#      logical replication (publication + subscription between two databases of the same
#      server) applying the same UPDATE.      ratio = sync time / replication time, target <= 1.0
#   2. cost follows changes: sync_execute after CHANGES updated rows, on a SMALL-row and a
#      BIG-row table pair, REPEATS times each. ratio = median(big) / median(small), target <= 1.2
#   3. bounded memory: one sync_execute over a backlog of BIG changes (every row of the big
#      source updated); peak memory of its backend vs. a backend that ran count(*) over the
#      same table.                            target: peak private memory < 256 MB
#
#   ROWS=100000      rows for figure 1           SMALL=10000 / BIG=1000000  figure 2 and 3 sizes
#   ROUNDS1=3        alternating rounds of figure 1 (replication, then sync_execute)
#   CHANGES=15       rows updated per run (2)    REPEATS=15  runs per size (2)
#   LOAD_LIMIT=180   seconds the BIG initial load may take; when the ROWS initial load predicts
#                    more, BIG is reduced to what fits (the output says so)
#   SKIP_INSTALL=1   do not rebuild/install the extension first
#   ONLY1=1          figure 1 only
#   STRICT=1         exit 1 when a target is missed
#
# Output: bench/out/syncbench-<timestamp>/summary.txt (+ the raw sync_execute results).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

ROWS=${ROWS:-100000}
SMALL=${SMALL:-10000}
BIG=${BIG:-1000000}
CHANGES=${CHANGES:-15}
REPEATS=${REPEATS:-15}
ROUNDS1=${ROUNDS1:-3}
LOAD_LIMIT=${LOAD_LIMIT:-180}
BENCH_DIR=${BENCH_DIR:-/var/tmp/sync_engine_syncbench}
BENCH_PORT=${BENCH_PORT:-55434}
MEM_TARGET_MB=256
OUT=$REPO_ROOT/bench/out/syncbench-$(date +%Y%m%d-%H%M%S)
for v in ROWS SMALL BIG CHANGES REPEATS ROUNDS1 LOAD_LIMIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
((CHANGES <= SMALL)) || die "CHANGES ($CHANGES) must not exceed SMALL ($SMALL)"

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    bash scripts/install-ext.sh
fi

# files the postgres OS user writes (psql \o) and reads
work=$(mktemp -d /tmp/sync_engine_syncbench.XXXXXX)
chmod 777 "$work"
mkdir -p "$OUT"
bg_pids=()

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT
# forget_pid PID: a background job that was waited for is not killed at exit (its pid
# may belong to another process by then)
forget_pid() {
    local p keep=()
    for p in "${bg_pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    bg_pids=("${keep[@]}")
}

bash scripts/cluster.sh start "$BENCH_DIR" "$BENCH_PORT" \
    -c synchronous_commit=off -c shared_buffers=512MB -c max_wal_size=8GB -c checkpoint_timeout=30min \
    -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10

# sql [psql args...]: psql as postgres (database postgres unless -d), quiet, unaligned
sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# The benchmark's backends load a private copy of the library: `cargo pgrx test` or
# install-ext.sh rewrite $libdir/sync_engine.so in place, and a backend that has the file
# mapped then dies with SIGBUS in the middle of a run. The copy is taken now, the
# extension's functions are pointed at it right after CREATE EXTENSION (in a session of
# its own, so no backend loads both files).
lib_so=$("$PG_CONFIG" --pkglibdir)/sync_engine.so
private_so=$BENCH_DIR/sync_engine.so
as_root install -m 0644 -o "$PG_OS_USER" -- "$lib_so" "$private_so"
lib_info="$(stat -c '%y, %s bytes' "$lib_so")"
sql <<SQL
CREATE EXTENSION sync_engine;
UPDATE pg_proc SET probin = '$private_so' WHERE probin = '\$libdir/sync_engine';
SQL
[[ $(sql -c "SELECT count(*) FROM pg_proc WHERE probin = '$private_so'") -gt 0 ]] || die "could not point sync_engine at $private_so"
build=$(release_build sql)
say "library: $lib_so ($lib_info), build $build"
now() { date +%s.%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "inf" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
jget() { sed -E "s/.*\"$2\": *([^,}]*).*/\\1/" <<<"$1"; }
verdict() { awk -v r="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "<=") ? (r <= t) : (r < t); print ok ? "met" : "NOT met" }'; }
missed=0

# the contacts table of figure 1, in SCHEMA.NAME, with n rows (0 = empty)
contacts_ddl() {
    local t=$1 n=$2
    echo "CREATE TABLE $t (id int PRIMARY KEY, name text, email text, phone text, score int);"
    if ((n > 0)); then
        echo "INSERT INTO $t SELECT g, 'name ' || g, 'user' || g || '@example.com', '+1-555-' || lpad((g % 10000000)::text, 7, '0'), g % 100 FROM generate_series(1, $n) g;"
    fi
}

# timed_sync CONFIG_ID [TIMEOUT_S] -> "duration_ms wall_ms result-json"; wall clock = the
# statement including its commit, measured by the server clock
timed_sync() {
    sql <<SQL
SET statement_timeout = '${2:-0}s';
SELECT clock_timestamp() AS t0 \\gset
SELECT sync_execute($1) AS r \\gset
SELECT (:'r'::jsonb ->> 'duration_ms') || ' ' || round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1) || ' ' || :'r';
SQL
}

# sync_checked LABEL CONFIG_ID -> same as timed_sync; dies if the run reports errors
sync_checked() {
    local res errs
    res=$(timed_sync "$2")
    echo "$1 ${res#* * }" >>"$OUT/sync_execute.log"
    errs=$(jget "$res" errors)
    [[ $errs == 0 ]] || die "$1: sync_execute reported $errs error(s): ${res#* * } (see sync_errors)"
    echo "$res"
}

# ---------------------------------------------------------------------------------------
# 1. throughput vs native logical replication
# ---------------------------------------------------------------------------------------
# Both sides are set up first, then ROUNDS1 rounds alternate: the replicated UPDATE
# (subscription enabled), then the sync_engine UPDATE + sync_execute (subscription
# disabled, so no walsender decodes our WAL while we are timed; before the next
# replicated round the slot is advanced past it, untimed).
say "figure 1: sync_engine setup, $ROWS rows"
{
    echo "CREATE SCHEMA src; CREATE SCHEMA dst;"
    contacts_ddl src.contacts "$ROWS"
    contacts_ddl dst.contacts 0
    echo "SELECT sync_register_table('bsrc', 'contacts', 'src.contacts') \\g /dev/null"
    echo "SELECT sync_register_table('bdst', 'contacts', 'dst.contacts') \\g /dev/null"
    echo "VACUUM ANALYZE src.contacts;"
} | sql
cfg1=$(sql -c "SELECT sync_create_config('bench_contacts', 'bsrc', 'bdst', 'contacts')")
out=$(sync_checked initial-load-contacts "$cfg1")
read -r _ load1_ms res <<<"$out"
[[ $(jget "$res" created) == "$ROWS" ]] || die "initial load created $(jget "$res" created) rows, want $ROWS: $res"
# the first incremental run reads the initial load's own change records (engine-origin, skipped)
out=$(sync_checked drain-contacts "$cfg1")
read -r _ drain1_ms _ <<<"$out"

say "figure 1: logical replication setup, $ROWS rows"
sql -c "CREATE DATABASE repl_pub" -c "CREATE DATABASE repl_sub"
contacts_ddl contacts "$ROWS" | sql -d repl_pub
contacts_ddl contacts "$ROWS" | sql -d repl_sub
conninfo="host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=repl_pub"
# a subscription to the same server cannot create its slot in CREATE SUBSCRIPTION (it would
# wait for itself): make the slot first
sql -d repl_pub <<SQL
CREATE PUBLICATION bench_pub FOR TABLE contacts;
SELECT pg_create_logical_replication_slot('bench_sub', 'pgoutput') \\g /dev/null
SQL
sql -d repl_sub <<SQL
CREATE SUBSCRIPTION bench_sub CONNECTION '$conninfo' PUBLICATION bench_pub
  WITH (copy_data = false, create_slot = false, slot_name = 'bench_sub', enabled = false);
-- waits (every 20 ms) until the row with the highest id has the score wanted; the apply
-- worker applies a transaction atomically, so one row tells when all of it is visible
CREATE FUNCTION wait_applied(want int, timeout_s float8) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
BEGIN
    LOOP
        PERFORM 1 FROM contacts WHERE id = $ROWS AND score = want;
        IF FOUND THEN
            RETURN extract(epoch FROM clock_timestamp());
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'subscriber did not apply the update within % s', timeout_s;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$;
SQL
# wait_walsender STATE: until the subscription's walsender is streaming (or gone: "")
wait_walsender() {
    local state i
    for ((i = 0; ; i++)); do
        state=$(sql -d repl_pub -c "SELECT state FROM pg_stat_replication WHERE application_name = 'bench_sub'")
        [[ $state == "$1" ]] && return 0
        ((i < 300)) || die "the subscription's walsender is '$state', not '$1', after 30 s (see $BENCH_DIR/postgres.log)"
        sleep 0.1
    done
}
repl=() repl_upd=() repl_lag=() syncw=() syncd=() sync_upd=() ratios=() floor=() floor_t=() floor_l=() floor_ratios=()
for ((r = 1; r <= ROUNDS1; r++)); do
    # replication: skip the WAL written since the last round, then stream
    sql -d repl_pub -c "VACUUM ANALYZE contacts" \
        -c "SELECT pg_replication_slot_advance('bench_sub', pg_current_wal_lsn())" >/dev/null
    sql -d repl_sub -c "VACUUM ANALYZE contacts" -c "ALTER SUBSCRIPTION bench_sub ENABLE"
    wait_walsender streaming
    sql -c "CHECKPOINT"
    want=$(sql -d repl_sub -c "SELECT score + 1 FROM contacts WHERE id = $ROWS")
    sql -d repl_sub -c "SELECT wait_applied($want, 600)" >"$work/applied" &
    waiter=$!
    bg_pids+=("$waiter")
    sleep 1
    out=$(sql -d repl_pub <<SQL
SELECT extract(epoch FROM clock_timestamp());
UPDATE contacts SET score = score + 1;
SELECT extract(epoch FROM clock_timestamp());
SQL
    )
    read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
    wait "$waiter" || die "waiting for the subscriber failed"
    forget_pid "$waiter"
    t2=$(cat "$work/applied")
    repl+=("$(ms_between "$t0" "$t2")") repl_upd+=("$(ms_between "$t0" "$t1")") repl_lag+=("$(ms_between "$t1" "$t2")")
    n=$(sql -d repl_sub -c "SELECT count(*) FROM contacts WHERE score = (id % 100) + $r")
    ((n == ROWS)) || die "round $r: subscriber has $n of $ROWS rows updated"
    sql -d repl_sub -c "ALTER SUBSCRIPTION bench_sub DISABLE"
    wait_walsender ""

    # sync_engine: the same UPDATE on the source, then one sync_execute. The slot is
    # moved to the end of the WAL first, as before a replicated round: otherwise it
    # keeps the checkpoint from recycling WAL segments, and ours (several times the
    # publisher's WAL) would all be created and zero-filled while we are timed
    sql -d repl_pub -c "SELECT pg_replication_slot_advance('bench_sub', pg_current_wal_lsn())" >/dev/null

    # the floor: only the two writes per row that the design requires of any sync of these
    # rows (the target UPDATE with its capture trigger writing the change record, and the
    # link's new base and checksum), as two bare statements with no reading or checking;
    # rolled back, then vacuumed away before the timed run
    sql -c "VACUUM ANALYZE" -c "CHECKPOINT"
    out=$(sql <<SQL
BEGIN;
SET LOCAL sync_engine.origin = 'sync_engine:config:$cfg1';
SELECT extract(epoch FROM clock_timestamp());
UPDATE dst.contacts SET score = score + 1;
SELECT extract(epoch FROM clock_timestamp());
UPDATE sync_links SET base = jsonb_set(base, '{score}', to_jsonb((base ->> 'score')::int + 1)),
       base_checksum = encode(sha256(convert_to(jsonb_set(base, '{score}', to_jsonb((base ->> 'score')::int + 1))::text, 'UTF8')), 'hex'),
       updated_at = now()
 WHERE config_id = $cfg1;
SELECT extract(epoch FROM clock_timestamp());
ROLLBACK;
SQL
    )
    read -r t0 t1 t2 <<<"$(tr '\n' ' ' <<<"$out")"
    floor_t+=("$(ms_between "$t0" "$t1")") floor_l+=("$(ms_between "$t1" "$t2")") floor+=("$(ms_between "$t0" "$t2")")
    floor_ratios+=("$(div "${floor[-1]}" "${repl[-1]}")")

    sql -c "VACUUM ANALYZE" -c "CHECKPOINT"
    out=$(sql <<SQL
SELECT extract(epoch FROM clock_timestamp());
UPDATE src.contacts SET score = score + 1;
SELECT extract(epoch FROM clock_timestamp());
SQL
    )
    read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
    sync_upd+=("$(ms_between "$t0" "$t1")")
    out=$(sync_checked "full-update-contacts-$r" "$cfg1")
    read -r d w res <<<"$out"
    [[ $(jget "$res" updated) == "$ROWS" ]] || die "sync_execute updated $(jget "$res" updated) rows, want $ROWS: $res"
    n=$(sql -c "SELECT count(*) FROM dst.contacts WHERE score = (id % 100) + $r")
    ((n == ROWS)) || die "round $r: target has $n of $ROWS rows updated"
    syncw+=("$w") syncd+=("$d") ratios+=("$(div "$w" "${repl[-1]}")")
    printf '    round %d  replication %8s ms  sync_execute %8s ms  ratio %s  (floor %s ms, ratio %s)\n' "$r" "${repl[-1]}" "$w" "${ratios[-1]}" "${floor[-1]}" "${floor_ratios[-1]}"
done
sql -d repl_sub -c "DROP SUBSCRIPTION bench_sub"
sql -c "DROP DATABASE repl_sub" -c "DROP DATABASE repl_pub"
repl_ms=$(median "${repl[@]}")
sync_wall_ms=$(median "${syncw[@]}")
ratio1=$(median "${ratios[@]}")
ratio1m=$(div "$sync_wall_ms" "$repl_ms")
ratio1b=$(div "$(awk -v a="$(median "${sync_upd[@]}")" -v b="$sync_wall_ms" 'BEGIN { print a + b }')" "$repl_ms")
v1=$(verdict "$ratio1" 1.0 "<=")
[[ $v1 == met ]] || missed=1
{
    echo
    echo "1. throughput: UPDATE of all $ROWS rows (score = score + 1), then bring the other side up to date; $ROUNDS1 alternating rounds, medians"
    printf '   %-44s %10s ms   (rounds %s)\n' "logical replication, UPDATE start -> applied" "$repl_ms" "${repl[*]}"
    printf '   %-44s %10s ms\n' "  of which the UPDATE on the publisher" "$(median "${repl_upd[@]}")"
    printf '   %-44s %10s ms\n' "  of which apply after the commit" "$(median "${repl_lag[@]}")"
    printf '   %-44s %10s ms   (rounds %s; duration_ms %s)\n' "sync_execute, wall clock incl. commit" "$sync_wall_ms" "${syncw[*]}" "${syncd[*]}"
    printf '   %-44s %10s ms   (not in the ratio)\n' "  source UPDATE with capture trigger" "$(median "${sync_upd[@]}")"
    echo "   ratio = sync_execute / replication, median of the rounds' ratios = $ratio1   (rounds ${ratios[*]}; target <= 1.0: $v1)"
    echo "   ratio of the medians = $ratio1m;  (source UPDATE + sync_execute) / replication = $ratio1b"
    echo "   initial load of $ROWS rows: ${load1_ms} ms; the next run (no changes) ${drain1_ms} ms"
    printf '   %-44s %10s ms   (rounds %s)\n' "floor: the design's two writes per row, bare" "$(median "${floor[@]}")" "${floor[*]}"
    printf '   %-44s %10s ms\n' "  target UPDATE + capture trigger" "$(median "${floor_t[@]}")"
    printf '   %-44s %10s ms\n' "  links: new base + checksum" "$(median "${floor_l[@]}")"
    echo "   floor / replication, median of the rounds = $(median "${floor_ratios[@]}")   (rounds ${floor_ratios[*]}): no sync_execute"
    echo "   can be faster than these two statements; above 1.0 the target cannot be met by this design"
} | tee "$OUT/fig1.txt"

if [[ ${ONLY1:-0} == 1 ]]; then
    cp "$OUT/fig1.txt" "$OUT/summary.txt"
    say "ONLY1=1: figures 2 and 3 skipped; summary: ${OUT#"$REPO_ROOT"/}/summary.txt"
    [[ ${STRICT:-0} == 1 ]] && ((missed)) && exit 1
    exit 0
fi

# ---------------------------------------------------------------------------------------
# 2. cost follows changes, not table size
# ---------------------------------------------------------------------------------------
rate=$(awk -v n="$ROWS" -v ms="$load1_ms" 'BEGIN { printf "%.0f", n / (ms / 1000) }')
big_note=""
fit=$(awk -v r="$rate" -v l="$LOAD_LIMIT" 'BEGIN { printf "%d", r * l }')
if ((fit < BIG)); then
    newbig=$(awk -v f="$fit" 'BEGIN { m = 10 ^ int(log(f) / log(10)); printf "%d", int(f / m) * m }')
    ((newbig > SMALL)) || newbig=$((SMALL * 2))
    big_note="BIG reduced from $BIG to $newbig: the initial load ran at $rate rows/s, so $BIG rows would take ~$((BIG / (rate > 0 ? rate : 1))) s > LOAD_LIMIT=$LOAD_LIMIT s"
    warn "$big_note"
    BIG=$newbig
fi
say "figure 2: pairs of $SMALL and $BIG rows"
for p in small big; do
    n=$SMALL
    [[ $p == big ]] && n=$BIG
    {
        contacts_ddl "src.$p" "$n"
        contacts_ddl "dst.$p" 0
        echo "SELECT sync_register_table('bsrc', '$p', 'src.$p') \\g /dev/null"
        echo "SELECT sync_register_table('bdst', '$p', 'dst.$p') \\g /dev/null"
        echo "VACUUM ANALYZE src.$p;"
    } | sql
done
cfg_small=$(sql -c "SELECT sync_create_config('bench_small', 'bsrc', 'bdst', 'small')")
cfg_big=$(sql -c "SELECT sync_create_config('bench_big', 'bsrc', 'bdst', 'big')")
out=$(sync_checked initial-load-small "$cfg_small")
read -r _ load_small_ms _ <<<"$out"
# the initial load is not linear in the row count: cap it at LOAD_LIMIT and halve the
# table until it fits (the rows deleted before the first run are not in any later window)
while :; do
    say "initial load of $BIG rows (~$((BIG / (rate > 0 ? rate : 1))) s at the $ROWS-row rate; limit $LOAD_LIMIT s)"
    if out=$(timed_sync "$cfg_big" "$LOAD_LIMIT" 2>"$work/load.err"); then
        echo "initial-load-big ${out#* * }" >>"$OUT/sync_execute.log"
        read -r _ load_big_ms res <<<"$out"
        break
    fi
    grep -q 'statement timeout' "$work/load.err" || die "initial load of $BIG rows failed: $(cat "$work/load.err")"
    newbig=$((BIG / 2))
    ((newbig > SMALL)) || die "initial load does not fit in LOAD_LIMIT=$LOAD_LIMIT s even for $BIG rows"
    big_note="${big_note:+$big_note; }BIG reduced from $BIG to $newbig: the initial load of $BIG rows did not finish within LOAD_LIMIT=$LOAD_LIMIT s"
    warn "$big_note"
    sql -c "DELETE FROM src.big WHERE id > $newbig" -c "VACUUM ANALYZE src.big"
    BIG=$newbig
done
[[ $(jget "$res" created) == "$BIG" ]] || die "initial load created $(jget "$res" created) rows, want $BIG: $res"
out=$(sync_checked drain-small "$cfg_small")
read -r _ drain_small_ms _ <<<"$out"
out=$(sync_checked drain-big "$cfg_big")
read -r _ drain_big_ms _ <<<"$out"
sql -c "VACUUM ANALYZE" -c "CHECKPOINT"

small_d=() small_w=() big_d=() big_w=()
for ((r = 1; r <= REPEATS; r++)); do
    for p in small big; do
        n=$SMALL cfg=$cfg_small
        [[ $p == big ]] && n=$BIG cfg=$cfg_big
        sql -c "UPDATE src.$p SET score = score + 1 WHERE id = ANY(ARRAY(
                  SELECT DISTINCT 1 + floor(random() * $n)::int FROM generate_series(1, $CHANGES * 4) LIMIT $CHANGES))"
        out=$(sync_checked "changes-$p-$r" "$cfg")
        read -r d w res <<<"$out"
        [[ $(jget "$res" updated) == "$CHANGES" ]] || die "$p run $r updated $(jget "$res" updated) rows, want $CHANGES: $res"
        if [[ $p == small ]]; then small_d+=("$d") small_w+=("$w"); else big_d+=("$d") big_w+=("$w"); fi
    done
    printf '    round %d  small %8s ms  big %8s ms  (wall clock)\n' "$r" "${small_w[-1]}" "${big_w[-1]}"
done
msw=$(median "${small_w[@]}") mbw=$(median "${big_w[@]}")
msd=$(median "${small_d[@]}") mbd=$(median "${big_d[@]}")
ratio2=$(div "$mbw" "$msw")
ratio2d=$(div "$mbd" "$msd")
v2=$(verdict "$ratio2" 1.2 "<=")
[[ $v2 == met ]] || missed=1
{
    echo
    echo "2. cost follows changes: sync_execute after $CHANGES updated rows, median of $REPEATS"
    [[ -z $big_note ]] || echo "   NOTE: $big_note"
    printf '   %-10s %10s %14s %14s\n' rows "wall ms" "duration_ms" "initial load"
    printf '   %-10s %10s %14s %11s ms\n' "$SMALL" "$msw" "$msd" "$load_small_ms"
    printf '   %-10s %10s %14s %11s ms\n' "$BIG" "$mbw" "$mbd" "$load_big_ms"
    echo "   runs (wall ms): small ${small_w[*]}; big ${big_w[*]}"
    echo "   ratio = median(big) / median(small) = $ratio2   (target <= 1.2: $v2; by duration_ms: $ratio2d)"
    echo "   first run after the initial load (no changes): small ${drain_small_ms} ms, big ${drain_big_ms} ms"
} | tee "$OUT/fig2.txt"

# ---------------------------------------------------------------------------------------
# 3. bounded memory over a backlog of BIG changes
# ---------------------------------------------------------------------------------------
say "figure 3: backlog of $BIG changes"
sql -c "UPDATE src.big SET score = score + 1"
sql -c "VACUUM ANALYZE" -c "CHECKPOINT"

# mem_session SQL LABEL: runs SQL in one session that first writes its backend pid to
# $work/LABEL.pid; a sampler records RssAnon/VmRSS every 50 ms; at the end the session
# itself writes its /proc status (VmHWM = peak RSS) to $work/LABEL.status
mem_session() {
    local body=$1 label=$2 spid
    rm -f "$work/$label.pid" "$work/$label.samples"
    sql >"$work/$label.out" <<SQL &
\\o $work/$label.pid
SELECT pg_backend_pid();
\\o
SELECT pg_backend_pid() AS pid \\gset
\\setenv BPID :pid
SELECT pg_sleep(0.3);
$body
\\! cat /proc/\$BPID/status > $work/$label.status
SQL
    spid=$!
    bg_pids+=("$spid")
    local pid=""
    for ((i = 0; i < 200; i++)); do
        [[ -s $work/$label.pid ]] && pid=$(tr -d '[:space:]' <"$work/$label.pid") && [[ -n $pid ]] && break
        sleep 0.05
    done
    [[ -n $pid ]] || die "$label: no backend pid"
    while kill -0 "$spid" 2>/dev/null; do
        awk '/^(RssAnon|VmRSS):/ { printf "%s %s ", $1, $2 } END { print "" }' "/proc/$pid/status" 2>/dev/null >>"$work/$label.samples" || true
        sleep 0.05
    done
    wait "$spid" || die "$label: the session failed (output: $(cat "$work/$label.out"))"
    forget_pid "$spid"
}
kb() { awk -v f="$2:" '$1 == f { print $2 }' "$1"; }
peak_sampled() { awk -v f="$2:" '{ for (i = 1; i < NF; i += 2) if ($i == f && $(i + 1) > m) m = $(i + 1) } END { print m + 0 }' "$1"; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a + 0 : b + 0 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

mem_session "SELECT count(*) FROM src.big;" base
mem_session "SELECT clock_timestamp() AS t0 \\gset
SELECT sync_execute($cfg_big);
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1);" backlog
res=$(grep '^{' "$work/backlog.out")
backlog_wall=$(grep -E '^[0-9.]+$' "$work/backlog.out" | tail -n 1)
echo "backlog-big $res" >>"$OUT/sync_execute.log"
[[ $(jget "$res" errors) == 0 ]] || die "backlog run reported errors: $res"
[[ $(jget "$res" updated) == "$BIG" ]] || die "backlog run updated $(jget "$res" updated) rows, want $BIG: $res"
base_hwm=$(kb "$work/base.status" VmHWM)
base_shmem=$(kb "$work/base.status" RssShmem)
base_anon=$(max "$(kb "$work/base.status" RssAnon)" "$(peak_sampled "$work/base.samples" RssAnon)")
backlog_hwm=$(kb "$work/backlog.status" VmHWM)
backlog_shmem=$(kb "$work/backlog.status" RssShmem)
anon_peak=$(max "$(kb "$work/backlog.status" RssAnon)" "$(peak_sampled "$work/backlog.samples" RssAnon)")
ratio3=$(div "$backlog_hwm" "$base_hwm")
v3=$(verdict "$(mb "$anon_peak")" "$MEM_TARGET_MB" "<")
v3h=$(verdict "$(mb "$backlog_hwm")" "$MEM_TARGET_MB" "<")
[[ $v3 == met ]] || missed=1
{
    echo
    echo "3. bounded memory: one sync_execute over $BIG changes (every row of the $BIG-row source updated)"
    printf '   %-26s %12s %12s %16s %14s\n' backend "VmHWM MB" "RssShmem MB" "RssAnon peak MB" "samples"
    printf '   %-26s %12s %12s %16s %14s\n' "count(*) over the table" "$(mb "$base_hwm")" "$(mb "$base_shmem")" \
        "$(mb "$base_anon")" "$(wc -l <"$work/base.samples")"
    printf '   %-26s %12s %12s %16s %14s\n' "sync_execute (backlog)" "$(mb "$backlog_hwm")" "$(mb "$backlog_shmem")" \
        "$(mb "$anon_peak")" "$(wc -l <"$work/backlog.samples")"
    echo "   ratio = VmHWM(sync_execute) / VmHWM(count(*)) = $ratio3"
    echo "   peak private memory (RssAnon, sampled every 50 ms) $(mb "$anon_peak") MB   (target < $MEM_TARGET_MB MB: $v3)"
    echo "   peak RSS incl. shared buffers touched (VmHWM) $(mb "$backlog_hwm") MB   (< $MEM_TARGET_MB MB: $v3h)"
    echo "   the run: ${backlog_wall} ms wall clock, $res"
} | tee "$OUT/fig3.txt"

{
    echo "sync_engine sync bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, library $lib_so ($lib_info, build $build), ROWS=$ROWS ROUNDS1=$ROUNDS1 SMALL=$SMALL BIG=$BIG CHANGES=$CHANGES REPEATS=$REPEATS"
    cat "$OUT/fig1.txt" "$OUT/fig2.txt" "$OUT/fig3.txt"
    echo
    echo "raw sync_execute results: ${OUT#"$REPO_ROOT"/}/sync_execute.log"
} >"$OUT/summary.txt"
cp "$OUT/summary.txt" "$REPO_ROOT/bench/out/sync_bench.txt"
say "summary: ${OUT#"$REPO_ROOT"/}/summary.txt (copied to bench/out/sync_bench.txt)"

if [[ ${STRICT:-0} == 1 ]] && ((missed)); then
    exit 1
fi
