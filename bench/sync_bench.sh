#!/usr/bin/env bash
# sync_execute cost: six figures, each against a baseline measured in the same run, in a
# throwaway PostgreSQL 15 (127.0.0.1:$BENCH_PORT, data in $BENCH_DIR).
#
# Two config pairs ("variants") take part in figures 1 and 2, each table 13 columns wide
# (the synced ones below, plus company, city, notes: text; amount: numeric; created_at,
# updated_at: timestamptz; attrs: jsonb; active: boolean):
#   identity  contacts (id, name, email, phone, score, ...) -> the same table: a NULL
#             mapping, so every changed pair goes through the column-copy statement
#   mapped    the README's example: people (id, full_name, email, phone, score, ...) ->
#             (id, firstname, lastname, email, phone, ...), full_name split into firstname
#             and lastname, email lowercased, phone and the 8 other columns copied: every
#             changed pair goes through the merge (the bench checks the run result's
#             `copied` is 0)
#
#   1. throughput: an UPDATE of all ROWS rows, then bring the other side up to date, vs native
#      logical replication (publication + subscription between two databases of the same
#      server) of the same UPDATE on a table of the source's shape. Both sides are timed
#      the same way, from the start of the source UPDATE:
#        fig1_<variant>_sync_vs_replication        sync_execute alone / replication (UPDATE
#                                                  start -> applied)             target <= 1.0
#        fig1_<variant>_end_to_end_vs_replication  (source UPDATE with capture + sync_execute)
#                                                  / replication                 target <= 1.5
#      medians of the rounds' ratios, ROUNDS1 alternating rounds. The identity variant also
#      prints the floor: the design's read of the changed entities and their links, and its
#      two writes per row, as bare statements (no figure).
#   2. cost follows changes: sync_execute after CHANGES updated rows, on a SMALL-row and a
#      BIG-row table pair, REPEATS times each.
#        fig2_<variant>_big_small_ratio            median(big) / median(small)   target <= 1.2
#   3. bounded memory: one sync_execute over a backlog of BIG changes (every row of the
#      identity big source updated); peak private memory of its backend (RssAnon, sampled
#      every 50 ms), next to a backend that ran count(*) over the same table.
#        fig3_backlog_peak_private_mb                                            target < 256
#   4. initial load: LOAD_ROWS rows into an empty target, sync_execute's first run vs a
#      native subscription's initial table copy (copy_data = true; CREATE SUBSCRIPTION ->
#      the table's state 'r') of a table of the same shape, LOAD_ROUNDS alternating rounds
#        fig4_initial_load_vs_copy_data            median of the rounds' ratios  target <= 3.0
#      and the floor: the rows, their change records and their links written by three bare
#      INSERT .. SELECT from prepared copies (no figure)
#   5. match_on load: two populated LOAD_ROWS-row tables (same contacts, other keys) linked
#      on an indexed email column by sync_execute's first run: printed in rows/s (no figure)
#   6. a real peer, Bucardo 5.6 (installed with apt when missing), on a cluster of its own:
#      a bidirectional sync of an UPDATE of all ROWS rows, UPDATE start -> arrived on the
#      other database, vs sync_engine's end to end on figure 1's identity pair
#        fig6_end_to_end_vs_bucardo                median / median               target <= 0.5
#      and the floor: figure 1's source UPDATE and floor over Bucardo's (no figure)
#   The initial loads' rates (rows/s) are printed as plain lines, not figures.
#
#   ROWS=100000      rows for figure 1           SMALL=10000 / BIG=1000000  figure 2 and 3 sizes
#   ROUNDS1=3        alternating rounds of figure 1 (per variant: replication, then sync)
#   CHANGES=15       rows updated per run (2)    REPEATS=15  runs per size and variant (2)
#   LOAD_LIMIT=180   seconds a BIG initial load may take; when the ROWS initial loads predict
#                    more, BIG is reduced to what fits (the output says so)
#   BENCH_DIR=/var/tmp/sync_engine_syncbench BENCH_PORT=55434
#   SKIP_INSTALL=1   do not rebuild/install the extension first (it must be a release build)
#   ONLY1=1          figure 1 only             ONLY16=1  figures 1 and 6 only
#   LOAD_ROWS=1000000 LOAD_ROUNDS=3  rows and rounds of figure 4 (and the rows of figure 5)
#   LOAD_LIMIT3=900  seconds a figure 4 or 5 load may take
#   BUCARDO=1        figure 6 (0 = skip it)  ROUNDS6=3  its rounds
#   BUCARDO_DIR=${BENCH_DIR}_bucardo BUCARDO_PORT=BENCH_PORT+50  Bucardo's cluster
#   STRICT=1         exit 1 when a target is missed
#   RAW=1            print every sync_execute result (jsonb) at the end
#
# Output (stdout only; nothing is written into the repository): the bench header (machine,
# date, commit, build), per-round lines, a summary per figure and its RESULT lines
# (scripts/lib.sh `result`).
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
LOAD_ROWS=${LOAD_ROWS:-1000000}
LOAD_ROUNDS=${LOAD_ROUNDS:-3}
LOAD_LIMIT3=${LOAD_LIMIT3:-900}
BUCARDO=${BUCARDO:-1}
ROUNDS6=${ROUNDS6:-3}
BUCARDO_DIR=${BUCARDO_DIR:-${BENCH_DIR:-/var/tmp/sync_engine_syncbench}_bucardo}
BENCH_DIR=${BENCH_DIR:-/var/tmp/sync_engine_syncbench}
BENCH_PORT=${BENCH_PORT:-55434}
MEM_TARGET_MB=256
BUCARDO_PORT=${BUCARDO_PORT:-$((BENCH_PORT + 50))}
for v in ROWS SMALL BIG CHANGES REPEATS ROUNDS1 LOAD_LIMIT LOAD_ROWS LOAD_ROUNDS LOAD_LIMIT3 ROUNDS6; do
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
bg_pids=()

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ((bucardo_started)) && bucardo_stop
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    bash scripts/cluster.sh stop "$BUCARDO_DIR" >/dev/null 2>&1 || true
    rm -rf -- "$work" "$bucardo_run"
}
bucardo_started=0
# Bucardo's pid directory (Bucardo lowercases the path it is given: keep it lowercase)
bucardo_run=/var/tmp/se_bucardo_run_$BUCARDO_PORT
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
    -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 \
    -c wal_retrieve_retry_interval=200ms >/dev/null

# sql [psql args...]: psql as postgres (database postgres unless -d), quiet, unaligned
sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# the benchmark's backends load a private copy of the library (scripts/lib.sh)
lib_so=$("$PG_CONFIG" --pkglibdir)/sync_engine.so
lib_info="$(stat -c '%y, %s bytes' "$lib_so")"
create_extension_private sql "$BENCH_DIR"
build=$(release_build sql)
bench_header sync_bench "$build (library $lib_so, $lib_info)" \
    "ROWS=$ROWS ROUNDS1=$ROUNDS1 SMALL=$SMALL BIG=$BIG CHANGES=$CHANGES REPEATS=$REPEATS LOAD_LIMIT=$LOAD_LIMIT LOAD_ROWS=$LOAD_ROWS LOAD_ROUNDS=$LOAD_ROUNDS BUCARDO=$BUCARDO ROUNDS6=$ROUNDS6"
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "inf" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
jget() { sed -E "s/.*\"$2\": *([^,}]*).*/\\1/" <<<"$1"; }
# wait_applied_sql MESSAGE: SQL creating wait_applied(check_sql, timeout_s), which waits
# (every 20 ms) until the query check_sql returns true and returns the epoch it did, or
# raises "MESSAGE within N s"
wait_applied_sql() {
    cat <<SQL
CREATE FUNCTION wait_applied(check_sql text, timeout_s float8) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
    ok boolean;
BEGIN
    LOOP
        EXECUTE check_sql INTO ok;
        IF ok THEN
            RETURN extract(epoch FROM clock_timestamp());
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION '$1 within % s', timeout_s;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$;
SQL
}


VARIANTS=(identity mapped)
# the README's mapping ("Quick start"), the mapped variant's config, plus the other contact
# columns copied as they are
MAPPING='[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
  {"source": "email", "target": "email", "transform": "lowercase"},
  {"source": "phone", "target": "phone"}, {"source": "company", "target": "company"},
  {"source": "city", "target": "city"}, {"source": "notes", "target": "notes"},
  {"source": "amount", "target": "amount"}, {"source": "created_at", "target": "created_at"},
  {"source": "updated_at", "target": "updated_at"}, {"source": "attrs", "target": "attrs"},
  {"source": "active", "target": "active"}]'

# The contact columns beyond the synced ones (8 of mixed types: text, numeric, timestamptz,
# jsonb, boolean), so every table has the 13 columns of a real contacts table; their values
# for row g. Fixed times: the replication and sync_engine tables hold the same values.
EXTRA_COLS="company text, city text, notes text, amount numeric(10, 2), created_at timestamptz,
  updated_at timestamptz, attrs jsonb, active boolean"
EXTRA_VALS="'company ' || (g % 1000), 'city ' || (g % 500), 'notes about contact ' || g,
  (g % 10000) / 100.0, timestamptz '2026-01-01 00:00:00+00' - make_interval(days => g % 1000),
  timestamptz '2026-01-01 00:00:00+00', jsonb_build_object('source', 'import', 'tier', g % 3), g % 2 = 0"
# source_ddl VARIANT TABLE N [FIRST]: the source-shaped table TABLE of VARIANT with N rows
# (0 = empty) of ids FIRST.. (default 1); replication's publisher and subscriber tables, and
# Bucardo's, have this shape too
source_ddl() {
    local v=$1 t=$2 n=$3 first=${4:-1}
    local rows="FROM generate_series($first, $first + $n - 1) g"
    if [[ $v == identity ]]; then
        echo "CREATE TABLE $t (id int PRIMARY KEY, name text, email text, phone text, score int, $EXTRA_COLS);"
        ((n == 0)) || echo "INSERT INTO $t SELECT g, 'name ' || g, 'user' || g || '@example.com', '+1-555-' || lpad((g % 10000000)::text, 7, '0'), g % 100, $EXTRA_VALS $rows;"
    else
        echo "CREATE TABLE $t (id int PRIMARY KEY, full_name text, email text, phone text, score int, $EXTRA_COLS);"
        ((n == 0)) || echo "INSERT INTO $t SELECT g, 'First' || g || ' Last' || g, 'User' || g || '@Example.com', '+1-555-' || lpad((g % 10000000)::text, 7, '0'), g % 100, $EXTRA_VALS $rows;"
    fi
}
# target_ddl VARIANT TABLE: the (empty) target table of VARIANT
target_ddl() {
    if [[ $1 == identity ]]; then
        source_ddl identity "$2" 0
    else
        echo "CREATE TABLE $2 (id int PRIMARY KEY, firstname text, lastname text, email text, phone text, $EXTRA_COLS);"
    fi
}
# make_pair VARIANT NAME N -> the config id of a new pair src.NAME (N rows) -> dst.NAME
make_pair() {
    {
        source_ddl "$1" "src.$2" "$3"
        target_ddl "$1" "dst.$2"
        echo "SELECT sync_register_table('bsrc', '$2', 'src.$2') \\g /dev/null"
        echo "SELECT sync_register_table('bdst', '$2', 'dst.$2') \\g /dev/null"
        echo "VACUUM ANALYZE src.$2;"
    } | sql
    if [[ $1 == identity ]]; then
        sql -c "SELECT sync_create_config('bench_$2', 'bsrc', 'bdst', '$2')"
    else
        sql -v "m=$MAPPING" <<<"SELECT sync_create_config('bench_$2', 'bsrc', 'bdst', '$2', :'m')"
    fi
}
# full_update VARIANT TABLE R: the UPDATE of every row in round R (same statement for the
# sync source and the publisher); changes mapped fields only
full_update() {
    if [[ $1 == identity ]]; then
        echo "UPDATE $2 SET score = score + 1;"
    else
        echo "UPDATE $2 SET full_name = 'First' || id || ' Last' || id || '-r$3', email = 'User' || id || '-R$3@Example.com';"
    fi
}
# updated_rows VARIANT TABLE SIDE R -> SQL counting the rows of TABLE that hold round R's
# values (SIDE: source = a source-shaped table, target = the variant's target table)
updated_rows() {
    local v=$1 t=$2 side=$3 r=$4
    if [[ $v == identity ]]; then
        echo "SELECT count(*) FROM $t WHERE score = (id % 100) + $r"
    elif [[ $side == source ]]; then
        echo "SELECT count(*) FROM $t WHERE full_name = 'First' || id || ' Last' || id || '-r$r'"
    else
        echo "SELECT count(*) FROM $t WHERE firstname = 'First' || id AND lastname = 'Last' || id || '-r$r' AND email = 'user' || id || '-r$r@example.com'"
    fi
}
# applied_check VARIANT R -> SQL true once the subscriber's row with the highest id holds
# round R's values (the apply worker applies a transaction atomically)
applied_check() {
    if [[ $1 == identity ]]; then
        echo "SELECT EXISTS (SELECT 1 FROM contacts WHERE id = $ROWS AND score = ($ROWS % 100) + $2)"
    else
        echo "SELECT EXISTS (SELECT 1 FROM people WHERE id = $ROWS AND full_name LIKE '%-r$2')"
    fi
}
# small_update VARIANT TABLE N R: CHANGES distinct random rows of an N-row TABLE, changed
small_update() {
    local set="score = score + 1"
    [[ $1 == identity ]] || set="email = 'User' || id || '-c$4@Example.com'"
    echo "UPDATE $2 SET $set WHERE id = ANY(ARRAY(
            SELECT DISTINCT 1 + floor(random() * $3)::int FROM generate_series(1, $CHANGES * 4) LIMIT $CHANGES))"
}
# check_path VARIANT LABEL RESULT: the identity variant must take the column-copy path for
# every updated pair, the mapped one never
check_path() {
    local copied updated
    copied=$(jget "$3" copied) updated=$(jget "$3" updated)
    if [[ $1 == identity ]]; then
        [[ $copied == "$updated" ]] || warn "$2: only $copied of $updated updated pairs went through the column-copy statement"
    else
        [[ $copied == 0 ]] || die "$2: $copied pairs of the mapped config went through the column-copy statement, not the merge"
    fi
}
last() { echo "${@: -1}"; }
rate_of() { awk -v n="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.0f", n / (ms / 1000); else print "inf" }'; }
# finish: the raw results (RAW=1), then exit (1 under STRICT=1 when a target was missed)
finish() {
    if [[ ${RAW:-0} == 1 ]]; then
        echo
        echo "raw sync_execute results:"
        sed 's/^/   /' "$work/sync_execute.log"
    fi
    if [[ ${STRICT:-0} == 1 ]] && ((RESULT_MISSED)); then exit 1; fi
    exit 0
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
    echo "$1 ${res#* * }" >>"$work/sync_execute.log"
    errs=$(jget "$res" errors)
    [[ $errs == 0 ]] || die "$1: sync_execute reported $errs error(s): ${res#* * } (see sync_errors)"
    echo "$res"
}

# ---------------------------------------------------------------------------------------
# 6. (run last, defined here) Bucardo, a trigger-based multi-source sync, on a cluster of
# its own (127.0.0.1:$BUCARDO_PORT, data in $BUCARDO_DIR): databases buc_a and buc_b hold
# the identity contacts table (ROWS rows, 13 columns), one bidirectional sync (both
# databases sources, conflict_strategy bucardo_latest, autokick). Per round, in
# alternating order: the UPDATE of every row on one database (buc_a in odd rounds, buc_b
# in even ones), timed from its start to its arrival on the other (polled every 20 ms);
# and sync_engine's end to end on figure 1's identity pair (source UPDATE with capture,
# then sync_execute). fig6_end_to_end_vs_bucardo = median(sync_engine) / median(Bucardo).
# ---------------------------------------------------------------------------------------
bucardo_cli() {
    bucardo --dbhost 127.0.0.1 --dbport "$BUCARDO_PORT" --dbuser bucardo --dbname bucardo --quiet "$@"
}
# bucardo_stop: stop the daemons started by this bench (its pid files), waiting for them
bucardo_stop() {
    local f p i
    bucardo_cli stop >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
        p=""
        for f in "$bucardo_run"/*.pid; do
            # a daemon removes its pid file as it exits
            p=$(cat "$f" 2>/dev/null) || continue
            kill -0 "$p" 2>/dev/null && break
            p=""
        done
        [[ -n $p ]] || break
        sleep 0.1
    done
    bucardo_started=0
}
bucardo_figure() {
    local missing=() pkg
    for pkg in bucardo libdbd-pg-perl postgresql-plperl-$PG_MAJOR; do
        dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "figure 6: installing ${missing[*]} (apt)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            die "could not install ${missing[*]}"
    fi
    say "figure 6: Bucardo $(bucardo --version 2>/dev/null | awk '{ print $NF; exit }') on 127.0.0.1:$BUCARDO_PORT, $ROWS rows"
    bash scripts/cluster.sh start "$BUCARDO_DIR" "$BUCARDO_PORT" \
        -c synchronous_commit=off -c shared_buffers=512MB -c max_wal_size=8GB -c checkpoint_timeout=30min >/dev/null
    bsql() { bash scripts/cluster.sh psql "$BUCARDO_DIR" "$BUCARDO_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
    rm -rf -- "$bucardo_run"
    install -d -m 0777 "$bucardo_run" "$work/bucardo" "$work/bucardo/log"
    (cd "$work" && bucardo install --batch --dbhost 127.0.0.1 --dbport "$BUCARDO_PORT" --dbuser postgres \
        --dbname postgres --pid-dir "$bucardo_run" >"$work/bucardo/install.log" 2>&1) ||
        die "bucardo install failed: $(tail -n 5 "$work/bucardo/install.log")"
    bsql -c "CREATE DATABASE buc_a" -c "CREATE DATABASE buc_b"
    local db
    for db in buc_a buc_b; do
        { source_ddl identity contacts "$ROWS"; echo "VACUUM ANALYZE contacts;"; } | bsql -d "$db"
        bsql -d "$db" <<SQL
$(wait_applied_sql "Bucardo did not deliver the update")
SQL
    done
    {
        bucardo_cli add db A dbname=buc_a host=127.0.0.1 port="$BUCARDO_PORT" user=postgres &&
            bucardo_cli add db B dbname=buc_b host=127.0.0.1 port="$BUCARDO_PORT" user=postgres &&
            bucardo_cli add table public.contacts db=A relgroup=bench &&
            bucardo_cli add sync bench relgroup=bench dbs=A:source,B:source conflict_strategy=bucardo_latest autokick=1 &&
            bucardo_cli set log_level=terse
    } >>"$work/bucardo/install.log" 2>&1 || die "bucardo setup failed: $(tail -n 5 "$work/bucardo/install.log")"
    bucardo_started=1
    (cd "$work" && bucardo_cli start --log-destination "$work/bucardo/log" "sync_bench" >>"$work/bucardo/install.log" 2>&1) ||
        die "bucardo start failed: $(tail -n 5 "$work/bucardo/install.log")"
    local i
    for ((i = 0; ; i++)); do
        bsql -d bucardo -c "SELECT 1 FROM bucardo.syncrun WHERE sync = 'bench' AND ended IS NOT NULL" 2>/dev/null | grep -q 1 && break
        ((i < 600)) || die "Bucardo's sync did not come up in 60 s (log: $(tail -n 5 "$work/bucardo/log/log.bucardo"))"
        sleep 0.1
    done
    local r from to t0 t1 t2 out n su w res
    buc=() buc_upd=() buc_lag=() se=()
    for ((r = 1; r <= ROUNDS6; r++)); do
        from=buc_a to=buc_b
        ((r % 2 == 1)) || { from=buc_b to=buc_a; }
        local order=(bucardo sync_engine)
        ((r % 2 == 1)) || order=(sync_engine bucardo)
        for side in "${order[@]}"; do
            if [[ $side == bucardo ]]; then
                bsql -d buc_a -c "VACUUM ANALYZE contacts"
                bsql -d buc_b -c "VACUUM ANALYZE contacts" -c "CHECKPOINT"
                bsql -d "$to" -v "q=SELECT EXISTS (SELECT 1 FROM contacts WHERE id = $ROWS AND score = ($ROWS % 100) + $r)" \
                    <<<"SELECT wait_applied(:'q', 600)" >"$work/buc_applied" &
                waiter=$!
                bg_pids+=("$waiter")
                sleep 0.5
                out=$(bsql -d "$from" <<SQL
SELECT extract(epoch FROM clock_timestamp());
UPDATE contacts SET score = score + 1;
SELECT extract(epoch FROM clock_timestamp());
SQL
                )
                read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
                wait "$waiter" || die "round $r: waiting for Bucardo's delivery to $to failed"
                forget_pid "$waiter"
                t2=$(cat "$work/buc_applied")
                n=$(bsql -d "$to" -c "SELECT count(*) FROM contacts WHERE score = (id % 100) + $r")
                ((n == ROWS)) || die "round $r: $to has $n of $ROWS rows updated by Bucardo"
                buc+=("$(ms_between "$t0" "$t2")") buc_upd+=("$(ms_between "$t0" "$t1")") buc_lag+=("$(ms_between "$t1" "$t2")")
            else
                sql -c "VACUUM ANALYZE src.contacts" -c "VACUUM ANALYZE dst.contacts" -c "CHECKPOINT"
                out=$(sql <<SQL
SELECT extract(epoch FROM clock_timestamp());
UPDATE src.contacts SET score = score + 1;
SELECT extract(epoch FROM clock_timestamp());
SQL
                )
                read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
                su=$(ms_between "$t0" "$t1")
                out=$(sync_checked "bucardo-round-$r" "${cfg1[identity]}")
                read -r _ w res <<<"$out"
                [[ $(jget "$res" updated) == "$ROWS" ]] || die "round $r: sync_execute updated $(jget "$res" updated) rows, want $ROWS: $res"
                se+=("$(awk -v a="$su" -v b="$w" 'BEGIN { printf "%.1f", a + b }')")
            fi
        done
        printf '    round %d  Bucardo %s -> %s %10s ms (UPDATE %s ms, then %s ms to arrive)  sync_engine %10s ms\n' \
            "$r" "$from" "$to" "${buc[-1]}" "${buc_upd[-1]}" "${buc_lag[-1]}" "${se[-1]}"
    done
    bucardo_stop
    bash scripts/cluster.sh stop "$BUCARDO_DIR" >/dev/null
    echo
    echo "6. a real peer: Bucardo, bidirectional sync of an UPDATE of all $ROWS rows (13 columns); $ROUNDS6 rounds, medians"
    printf '   %-46s %10s ms   (rounds %s)\n' "Bucardo: UPDATE start -> arrived on the other" "$(median "${buc[@]}")" "${buc[*]}"
    printf '   %-46s %10s ms\n' "  of which the UPDATE with Bucardo's triggers" "$(median "${buc_upd[@]}")"
    printf '   %-46s %10s ms\n' "  of which delivery after the commit" "$(median "${buc_lag[@]}")"
    printf '   %-46s %10s ms   (rounds %s)\n' "sync_engine: source UPDATE + sync_execute" "$(median "${se[@]}")" "${se[*]}"
    # shellcheck disable=SC2086  # a space-separated list of numbers
    fe=$(awk -v a="$(median ${sync_upd[identity]})" -v b="$(median "${floor[@]}")" 'BEGIN { printf "%.1f", a + b }')
    printf '   %-46s %10s ms\n' "floor: source UPDATE + figure 1's floor" "$fe"
    echo "   floor / Bucardo = $(div "$fe" "$(median "${buc[@]}")"): figure 1's medians (source UPDATE with capture, and the"
    echo "   floor's read and two writes per row) over Bucardo's; above 0.5 the figure 6 target cannot be met by this design"
    result fig6_end_to_end_vs_bucardo "$(div "$(median "${se[@]}")" "$(median "${buc[@]}")")" "<=" 0.5
}

# ---------------------------------------------------------------------------------------
# 1. throughput vs native logical replication
# ---------------------------------------------------------------------------------------
# Both sides are set up first, then ROUNDS1 rounds; in each, per variant: the replicated
# UPDATE (subscription enabled), then the sync_engine UPDATE + sync_execute (subscription
# disabled, so no walsender decodes our WAL while we are timed; before the next replicated
# round the slot is advanced past it, untimed).
sql -c "CREATE SCHEMA src" -c "CREATE SCHEMA dst"
declare -A cfg1 load1_ms drain1_ms
for v in "${VARIANTS[@]}"; do
    say "figure 1: sync_engine setup ($v), $ROWS rows"
    t=contacts
    [[ $v == identity ]] || t=people
    cfg1[$v]=$(make_pair "$v" "$t" "$ROWS")
    out=$(sync_checked "initial-load-$v" "${cfg1[$v]}")
    read -r _ ms res <<<"$out"
    load1_ms[$v]=$ms
    [[ $(jget "$res" created) == "$ROWS" ]] || die "initial load ($v) created $(jget "$res" created) rows, want $ROWS: $res"
    # the first incremental run reads the initial load's own change records (engine-origin, skipped)
    out=$(sync_checked "drain-$v" "${cfg1[$v]}")
    read -r _ ms _ <<<"$out"
    drain1_ms[$v]=$ms
done

say "figure 1: logical replication setup, $ROWS rows per table"
sql -c "CREATE DATABASE repl_pub" -c "CREATE DATABASE repl_sub"
for db in repl_pub repl_sub; do
    { source_ddl identity contacts "$ROWS"; source_ddl mapped people "$ROWS"; } | sql -d "$db"
done
conninfo="host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=repl_pub"
# a subscription to the same server cannot create its slot in CREATE SUBSCRIPTION (it would
# wait for itself): make the slot first
sql -d repl_pub <<SQL
CREATE PUBLICATION bench_pub FOR TABLE contacts, people;
SELECT pg_create_logical_replication_slot('bench_sub', 'pgoutput') \\g /dev/null
SQL
sql -d repl_sub <<SQL
CREATE SUBSCRIPTION bench_sub CONNECTION '$conninfo' PUBLICATION bench_pub
  WITH (copy_data = false, create_slot = false, slot_name = 'bench_sub', enabled = false);
-- waits (every 20 ms) until the query CHECK returns true; returns the epoch it did
$(wait_applied_sql "subscriber did not apply the update")
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
# per variant: space-separated values, one per round
declare -A repl repl_upd repl_lag syncw syncd sync_upd ratios e2e_ratios
floor=() floor_t=() floor_l=() floor_r=() floor_ratios=() floor_e2e_ratios=()
for ((r = 1; r <= ROUNDS1; r++)); do
    for v in "${VARIANTS[@]}"; do
        t=contacts
        [[ $v == identity ]] || t=people
        # replication: skip the WAL written since the last round, then stream
        sql -d repl_pub -c "VACUUM ANALYZE $t" \
            -c "SELECT pg_replication_slot_advance('bench_sub', pg_current_wal_lsn())" >/dev/null
        sql -d repl_sub -c "VACUUM ANALYZE $t" -c "ALTER SUBSCRIPTION bench_sub ENABLE"
        wait_walsender streaming
        sql -c "CHECKPOINT"
        sql -d repl_sub -v "q=$(applied_check "$v" "$r")" <<<"SELECT wait_applied(:'q', 600)" >"$work/applied" &
        waiter=$!
        bg_pids+=("$waiter")
        sleep 1
        out=$(sql -d repl_pub <<SQL
SELECT extract(epoch FROM clock_timestamp());
$(full_update "$v" "$t" "$r")
SELECT extract(epoch FROM clock_timestamp());
SQL
        )
        read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
        wait "$waiter" || die "waiting for the subscriber failed"
        forget_pid "$waiter"
        t2=$(cat "$work/applied")
        rt=$(ms_between "$t0" "$t2")
        repl[$v]+=" $rt" repl_upd[$v]+=" $(ms_between "$t0" "$t1")" repl_lag[$v]+=" $(ms_between "$t1" "$t2")"
        n=$(sql -d repl_sub -c "$(updated_rows "$v" "$t" source "$r")")
        ((n == ROWS)) || die "round $r ($v): subscriber has $n of $ROWS rows updated"
        sql -d repl_sub -c "ALTER SUBSCRIPTION bench_sub DISABLE"
        wait_walsender ""

        # sync_engine: the same UPDATE on the source, then one sync_execute. The slot is
        # moved to the end of the WAL first, as before a replicated round: otherwise it
        # keeps the checkpoint from recycling WAL segments, and ours (several times the
        # publisher's WAL) would all be created and zero-filled while we are timed
        sql -d repl_pub -c "SELECT pg_replication_slot_advance('bench_sub', pg_current_wal_lsn())" >/dev/null

        if [[ $v == identity ]]; then
            # the floor: only the two writes per row that the design requires of any sync
            # of these rows (the target UPDATE with its capture trigger writing the change
            # record, and the link's new base and checksum), as two bare statements with no
            # reading or checking; rolled back, then vacuumed away before the timed run
            sql -c "VACUUM ANALYZE" -c "CHECKPOINT"
            out=$(sql <<SQL
BEGIN;
SET LOCAL sync_engine.origin = 'sync_engine:config:${cfg1[identity]}';
SELECT extract(epoch FROM clock_timestamp());
UPDATE dst.contacts SET score = score + 1;
SELECT extract(epoch FROM clock_timestamp());
UPDATE sync_links SET base = jsonb_set(base, '{score}', to_jsonb((base ->> 'score')::int + 1)),
       base_checksum = encode(sha256(convert_to(jsonb_set(base, '{score}', to_jsonb((base ->> 'score')::int + 1))::text, 'UTF8')), 'hex'),
       updated_at = now()
 WHERE config_id = ${cfg1[identity]};
SELECT extract(epoch FROM clock_timestamp());
ROLLBACK;
SQL
            )
            read -r t0 t1 t2 <<<"$(tr '\n' ' ' <<<"$out")"
            floor_t+=("$(ms_between "$t0" "$t1")") floor_l+=("$(ms_between "$t1" "$t2")")
        fi

        sql -c "VACUUM ANALYZE" -c "CHECKPOINT"
        out=$(sql <<SQL
SELECT extract(epoch FROM clock_timestamp());
$(full_update "$v" "src.$t" "$r")
SELECT extract(epoch FROM clock_timestamp());
SQL
        )
        read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
        su=$(ms_between "$t0" "$t1")
        out=$(sync_checked "full-update-$v-$r" "${cfg1[$v]}")
        read -r d w res <<<"$out"
        [[ $(jget "$res" updated) == "$ROWS" ]] || die "sync_execute ($v) updated $(jget "$res" updated) rows, want $ROWS: $res"
        check_path "$v" "round $r" "$res"
        n=$(sql -c "$(updated_rows "$v" "dst.$t" target "$r")")
        ((n == ROWS)) || die "round $r ($v): target has $n of $ROWS rows updated"
        sync_upd[$v]+=" $su" syncw[$v]+=" $w" syncd[$v]+=" $d"
        if [[ $v == identity ]]; then
            # the floor's read: the changed entities of the source UPDATE (its change
            # records, one row per entity) and their links, as one bare statement; after
            # the timed run, so that it warms nothing for it
            x=$(sql -c "SELECT max(txid) FROM change_log WHERE system = 'bsrc' AND entity_type = '$t'")
            out=$(sql <<SQL
SELECT extract(epoch FROM clock_timestamp());
SELECT count(*) FROM (SELECT c.entity_id, max(c.changed_at) FROM change_log c
   WHERE c.txid = '$x'::xid8 AND c.system = 'bsrc' AND c.entity_type = '$t' GROUP BY c.entity_id) ch
  JOIN sync_links l ON l.config_id = ${cfg1[identity]} AND l.source_id = ch.entity_id;
SELECT extract(epoch FROM clock_timestamp());
SQL
            )
            read -r t0 n t1 <<<"$(tr '\n' ' ' <<<"$out")"
            ((n == ROWS)) || die "round $r: the floor's read found $n of $ROWS changed entities"
            floor_r+=("$(ms_between "$t0" "$t1")")
            floor+=("$(awk -v a="${floor_t[-1]}" -v b="${floor_l[-1]}" -v c="${floor_r[-1]}" 'BEGIN { printf "%.1f", a + b + c }')")
            floor_ratios+=("$(div "${floor[-1]}" "$rt")")
            floor_e2e_ratios+=("$(div "$(awk -v a="$su" -v b="${floor[-1]}" 'BEGIN { print a + b }')" "$rt")")
        fi
        ratios[$v]+=" $(div "$w" "$rt")"
        e2e_ratios[$v]+=" $(div "$(awk -v a="$su" -v b="$w" 'BEGIN { print a + b }')" "$rt")"
        # shellcheck disable=SC2086  # the lists are space-separated numbers
        printf '    round %d  %-8s  replication %8s ms  source UPDATE %8s ms  sync_execute %8s ms  ratio %s  end to end %s\n' \
            "$r" "$v" "$rt" "$su" "$w" "$(last ${ratios[$v]})" "$(last ${e2e_ratios[$v]})"
    done
    printf '    round %d  floor     %8s ms, ratio %s\n' "$r" "${floor[-1]}" "${floor_ratios[-1]}"
done
sql -d repl_sub -c "DROP SUBSCRIPTION bench_sub"
sql -c "DROP DATABASE repl_sub" -c "DROP DATABASE repl_pub"

echo
echo "1. throughput: UPDATE of all $ROWS rows, then bring the other side up to date; $ROUNDS1 rounds, medians"
# shellcheck disable=SC2086  # the lists are space-separated numbers
for v in "${VARIANTS[@]}"; do
    if [[ $v == identity ]]; then
        echo "   identity (column copy): contacts, UPDATE ... SET score = score + 1"
    else
        echo "   mapped (merge, the README's mapping): people, UPDATE ... SET full_name = .., email = .."
    fi
    printf '   %-46s %10s ms   (rounds%s)\n' "logical replication, UPDATE start -> applied" "$(median ${repl[$v]})" "${repl[$v]}"
    printf '   %-46s %10s ms\n' "  of which the UPDATE on the publisher" "$(median ${repl_upd[$v]})"
    printf '   %-46s %10s ms\n' "  of which apply after the commit" "$(median ${repl_lag[$v]})"
    printf '   %-46s %10s ms   (rounds%s)\n' "source UPDATE with capture trigger" "$(median ${sync_upd[$v]})" "${sync_upd[$v]}"
    printf '   %-46s %10s ms   (rounds%s; duration_ms%s)\n' "sync_execute, wall clock incl. commit" "$(median ${syncw[$v]})" "${syncw[$v]}" "${syncd[$v]}"
    echo "   sync_execute / replication: rounds${ratios[$v]}"
    echo "   (source UPDATE + sync_execute) / replication: rounds${e2e_ratios[$v]}"
    echo "   initial load of $ROWS rows: ${load1_ms[$v]} ms ($(rate_of "$ROWS" "${load1_ms[$v]}") rows/s); the next run (no changes) ${drain1_ms[$v]} ms"
done
printf '   %-46s %10s ms   (rounds %s)\n' "floor (identity): the design's read + two writes per row, bare" "$(median "${floor[@]}")" "${floor[*]}"
printf '   %-46s %10s ms\n' "  read: changed entities and their links" "$(median "${floor_r[@]}")"
printf '   %-46s %10s ms\n' "  target UPDATE + capture trigger" "$(median "${floor_t[@]}")"
printf '   %-46s %10s ms\n' "  links: new base + checksum" "$(median "${floor_l[@]}")"
echo "   floor / replication, median of the rounds = $(median "${floor_ratios[@]}")   (rounds ${floor_ratios[*]}): no sync_execute"
echo "   can be faster than these three statements; above 1.0 the sync_execute target cannot be met by this design"
echo "   (source UPDATE + floor) / replication, median of the rounds = $(median "${floor_e2e_ratios[@]}")   (rounds ${floor_e2e_ratios[*]}):"
echo "   above 1.5 the end-to-end target cannot be met by this design"
# shellcheck disable=SC2086
for v in "${VARIANTS[@]}"; do
    result "fig1_${v}_sync_vs_replication" "$(median ${ratios[$v]})" "<=" 1.0
    result "fig1_${v}_end_to_end_vs_replication" "$(median ${e2e_ratios[$v]})" "<=" 1.5
done

if [[ ${ONLY1:-0} == 1 ]]; then
    say "ONLY1=1: figures 2 to 6 skipped"
    finish
fi
if [[ ${ONLY16:-0} == 1 ]]; then
    say "ONLY16=1: figures 2 to 5 skipped"
    [[ $BUCARDO != 1 ]] || bucardo_figure
    finish
fi

# ---------------------------------------------------------------------------------------
# 2. cost follows changes, not table size
# ---------------------------------------------------------------------------------------
# the slower variant's initial-load rate predicts the BIG loads
rate=$(rate_of "$ROWS" "${load1_ms[identity]}")
r2=$(rate_of "$ROWS" "${load1_ms[mapped]}")
rate=$(awk -v a="$rate" -v b="$r2" 'BEGIN { printf "%d", (a + 0 < b + 0) ? a : b }')
declare -A big_n big_note cfg_small cfg_big load_small_ms load_big_ms drain_small_ms drain_big_ms
fit=$(awk -v r="$rate" -v l="$LOAD_LIMIT" 'BEGIN { printf "%d", r * l }')
note=""
if ((fit < BIG)); then
    newbig=$(awk -v f="$fit" 'BEGIN { m = 10 ^ int(log(f) / log(10)); printf "%d", int(f / m) * m }')
    ((newbig > SMALL)) || newbig=$((SMALL * 2))
    note="BIG reduced from $BIG to $newbig: the initial loads ran at $rate rows/s (the slower variant), so $BIG rows would take ~$((BIG / (rate > 0 ? rate : 1))) s > LOAD_LIMIT=$LOAD_LIMIT s"
    warn "$note"
    BIG=$newbig
fi
for v in "${VARIANTS[@]}"; do
    say "figure 2 ($v): pairs of $SMALL and $BIG rows"
    big_n[$v]=$BIG big_note[$v]=$note
    cfg_small[$v]=$(make_pair "$v" "${v}_small" "$SMALL")
    cfg_big[$v]=$(make_pair "$v" "${v}_big" "$BIG")
    out=$(sync_checked "initial-load-$v-small" "${cfg_small[$v]}")
    read -r _ ms _ <<<"$out"
    load_small_ms[$v]=$ms
    # the initial load is not linear in the row count: cap it at LOAD_LIMIT and halve the
    # table until it fits (the rows deleted before the first run are not in any later window)
    while :; do
        n=${big_n[$v]}
        say "initial load of $n rows ($v; ~$((n / (rate > 0 ? rate : 1))) s at the $ROWS-row rate; limit $LOAD_LIMIT s)"
        if out=$(timed_sync "${cfg_big[$v]}" "$LOAD_LIMIT" 2>"$work/load.err"); then
            echo "initial-load-$v-big ${out#* * }" >>"$work/sync_execute.log"
            read -r _ ms res <<<"$out"
            load_big_ms[$v]=$ms
            break
        fi
        grep -q 'statement timeout' "$work/load.err" || die "initial load of $n rows ($v) failed: $(cat "$work/load.err")"
        newbig=$((n / 2))
        ((newbig > SMALL)) || die "initial load ($v) does not fit in LOAD_LIMIT=$LOAD_LIMIT s even for $n rows"
        big_note[$v]="${big_note[$v]:+${big_note[$v]}; }big table reduced from $n to $newbig rows: its initial load did not finish within LOAD_LIMIT=$LOAD_LIMIT s"
        warn "${big_note[$v]}"
        sql -c "DELETE FROM src.${v}_big WHERE id > $newbig" -c "VACUUM ANALYZE src.${v}_big"
        big_n[$v]=$newbig
    done
    [[ $(jget "$res" created) == "${big_n[$v]}" ]] || die "initial load ($v) created $(jget "$res" created) rows, want ${big_n[$v]}: $res"
    out=$(sync_checked "drain-$v-small" "${cfg_small[$v]}")
    read -r _ ms _ <<<"$out"
    drain_small_ms[$v]=$ms
    out=$(sync_checked "drain-$v-big" "${cfg_big[$v]}")
    read -r _ ms _ <<<"$out"
    drain_big_ms[$v]=$ms
done
sql -c "VACUUM ANALYZE" -c "CHECKPOINT"

declare -A small_d small_w big_d big_w
for ((r = 1; r <= REPEATS; r++)); do
    line="    round $r"
    for v in "${VARIANTS[@]}"; do
        for p in small big; do
            n=$SMALL cfg=${cfg_small[$v]}
            [[ $p == big ]] && n=${big_n[$v]} cfg=${cfg_big[$v]}
            sql -c "$(small_update "$v" "src.${v}_$p" "$n" "$r")"
            out=$(sync_checked "changes-$v-$p-$r" "$cfg")
            read -r d w res <<<"$out"
            [[ $(jget "$res" updated) == "$CHANGES" ]] || die "$v $p run $r updated $(jget "$res" updated) rows, want $CHANGES: $res"
            check_path "$v" "$v $p run $r" "$res"
            if [[ $p == small ]]; then small_d[$v]+=" $d" small_w[$v]+=" $w"; else big_d[$v]+=" $d" big_w[$v]+=" $w"; fi
            line+=$(printf '  %s %s %8s ms' "$v" "$p" "$w")
        done
    done
    echo "$line  (wall clock)"
done
echo
echo "2. cost follows changes: sync_execute after $CHANGES updated rows, median of $REPEATS"
# shellcheck disable=SC2086  # the lists are space-separated numbers
for v in "${VARIANTS[@]}"; do
    echo "   $v"
    [[ -z ${big_note[$v]} ]] || echo "   NOTE: ${big_note[$v]}"
    printf '   %-10s %10s %14s %14s %12s\n' rows "wall ms" "duration_ms" "initial load" "rows/s"
    printf '   %-10s %10s %14s %11s ms %12s\n' "$SMALL" "$(median ${small_w[$v]})" "$(median ${small_d[$v]})" "${load_small_ms[$v]}" "$(rate_of "$SMALL" "${load_small_ms[$v]}")"
    printf '   %-10s %10s %14s %11s ms %12s\n' "${big_n[$v]}" "$(median ${big_w[$v]})" "$(median ${big_d[$v]})" "${load_big_ms[$v]}" "$(rate_of "${big_n[$v]}" "${load_big_ms[$v]}")"
    echo "   runs (wall ms): small${small_w[$v]}; big${big_w[$v]}"
    echo "   by duration_ms: $(div "$(median ${big_d[$v]})" "$(median ${small_d[$v]})")"
    echo "   first run after the initial load (no changes): small ${drain_small_ms[$v]} ms, big ${drain_big_ms[$v]} ms"
done
# shellcheck disable=SC2086
for v in "${VARIANTS[@]}"; do
    result "fig2_${v}_big_small_ratio" "$(div "$(median ${big_w[$v]})" "$(median ${small_w[$v]})")" "<=" 1.2
done

# ---------------------------------------------------------------------------------------
# 3. bounded memory over a backlog of BIG changes
# ---------------------------------------------------------------------------------------
BIG=${big_n[identity]}
say "figure 3: backlog of $BIG changes"
sql -c "UPDATE src.identity_big SET score = score + 1"
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

mem_session "SELECT count(*) FROM src.identity_big;" base
mem_session "SELECT clock_timestamp() AS t0 \\gset
SELECT sync_execute(${cfg_big[identity]});
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 1);" backlog
res=$(grep '^{' "$work/backlog.out")
backlog_wall=$(grep -E '^[0-9.]+$' "$work/backlog.out" | tail -n 1)
echo "backlog-identity-big $res" >>"$work/sync_execute.log"
[[ $(jget "$res" errors) == 0 ]] || die "backlog run reported errors: $res"
[[ $(jget "$res" updated) == "$BIG" ]] || die "backlog run updated $(jget "$res" updated) rows, want $BIG: $res"
base_hwm=$(kb "$work/base.status" VmHWM)
base_shmem=$(kb "$work/base.status" RssShmem)
base_anon=$(max "$(kb "$work/base.status" RssAnon)" "$(peak_sampled "$work/base.samples" RssAnon)")
backlog_hwm=$(kb "$work/backlog.status" VmHWM)
backlog_shmem=$(kb "$work/backlog.status" RssShmem)
anon_peak=$(max "$(kb "$work/backlog.status" RssAnon)" "$(peak_sampled "$work/backlog.samples" RssAnon)")
echo
echo "3. bounded memory: one sync_execute over $BIG changes (every row of the $BIG-row identity source updated)"
printf '   %-26s %12s %12s %16s %14s\n' backend "VmHWM MB" "RssShmem MB" "RssAnon peak MB" "samples"
printf '   %-26s %12s %12s %16s %14s\n' "count(*) over the table" "$(mb "$base_hwm")" "$(mb "$base_shmem")" \
    "$(mb "$base_anon")" "$(wc -l <"$work/base.samples")"
printf '   %-26s %12s %12s %16s %14s\n' "sync_execute (backlog)" "$(mb "$backlog_hwm")" "$(mb "$backlog_shmem")" \
    "$(mb "$anon_peak")" "$(wc -l <"$work/backlog.samples")"
echo "   VmHWM(sync_execute) / VmHWM(count(*)) = $(div "$backlog_hwm" "$base_hwm")"
echo "   peak RSS incl. shared buffers touched (VmHWM) $(mb "$backlog_hwm") MB"
echo "   the run: ${backlog_wall} ms wall clock, $res"
result fig3_backlog_peak_private_mb "$(mb "$anon_peak")" "<" "$MEM_TARGET_MB"

# ---------------------------------------------------------------------------------------
# 4. initial load vs a native subscription's initial table copy; 5. match_on load
# ---------------------------------------------------------------------------------------
# Per round, in alternating order: a subscription with copy_data = true of a fresh
# LOAD_ROWS-row table into an empty one (CREATE SUBSCRIPTION -> the table's state 'r'),
# and sync_execute's first run on a fresh identity pair of LOAD_ROWS rows into an empty
# target. Each round's tables are dropped (or left alone) after it.
sql -c "CREATE DATABASE load_pub" -c "CREATE DATABASE load_sub"
sql -d load_sub <<SQL
CREATE FUNCTION wait_ready(sub text, timeout_s float8) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout_s);
BEGIN
    LOOP
        IF EXISTS (SELECT 1 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
                    WHERE s.subname = sub AND r.srsubstate = 'r') THEN
            RETURN extract(epoch FROM clock_timestamp());
        END IF;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the initial copy did not finish within % s', timeout_s;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$;
SQL
load_conninfo="host=127.0.0.1 port=$BENCH_PORT user=postgres dbname=load_pub"
# copy_data_ms R -> ms from CREATE SUBSCRIPTION to the table's initial copy done
copy_data_ms() {
    local r=$1 out
    { source_ddl identity "copy_r$r" "$LOAD_ROWS"; echo "VACUUM ANALYZE copy_r$r;"
      echo "CREATE PUBLICATION copy_pub_r$r FOR TABLE copy_r$r;"
      echo "SELECT pg_create_logical_replication_slot('copy_sub_r$r', 'pgoutput') \\g /dev/null"; } | sql -d load_pub
    source_ddl identity "copy_r$r" 0 | sql -d load_sub
    sql -c "CHECKPOINT"
    out=$(sql -d load_sub <<SQL
SELECT extract(epoch FROM clock_timestamp());
CREATE SUBSCRIPTION copy_sub_r$r CONNECTION '$load_conninfo' PUBLICATION copy_pub_r$r
  WITH (copy_data = true, create_slot = false, slot_name = 'copy_sub_r$r');
SELECT wait_ready('copy_sub_r$r', $LOAD_LIMIT3);
SQL
    ) || die "round $r: the subscription's initial copy failed (see $BENCH_DIR/postgres.log)"
    read -r t0 t1 <<<"$(tr '\n' ' ' <<<"$out")"
    n=$(sql -d load_sub -c "SELECT count(*) FROM copy_r$r")
    ((n == LOAD_ROWS)) || die "round $r: the subscription copied $n of $LOAD_ROWS rows"
    sql -d load_sub -c "DROP SUBSCRIPTION copy_sub_r$r" -c "DROP TABLE copy_r$r"
    sql -d load_pub -c "DROP PUBLICATION copy_pub_r$r" -c "DROP TABLE copy_r$r"
    ms_between "$t0" "$t1"
}
# engine_load_ms R -> ms of sync_execute's first run (the initial load) on a fresh pair
engine_load_ms() {
    local r=$1 cfg out res ms
    cfg=$(make_pair identity "load_r$r" "$LOAD_ROWS")
    sql -c "CHECKPOINT"
    out=$(timed_sync "$cfg" "$LOAD_LIMIT3" 2>"$work/load3.err") ||
        die "round $r: the initial load of $LOAD_ROWS rows failed: $(cat "$work/load3.err")"
    echo "initial-load3-r$r ${out#* * }" >>"$work/sync_execute.log"
    read -r _ ms res <<<"$out"
    [[ $(jget "$res" errors) == 0 ]] || die "round $r: the initial load reported errors: $res"
    [[ $(jget "$res" created) == "$LOAD_ROWS" ]] || die "round $r: the initial load created $(jget "$res" created) rows, want $LOAD_ROWS: $res"
    echo "$ms $(load_floor_ms "$r")"
}
# load_floor_ms R -> "rows log links" ms: the floor of round R's load, after it: the three
# writes the design requires of any initial load of these rows (the target rows, one
# change record each, one link each with its base and checksum), as bare INSERT .. SELECT
# into fresh copies of the target, change_log and sync_links (their indexes, fillfactor
# and foreign key; no trigger), from copies of what the load wrote, prepared untimed.
# Fresh, empty copies flatter the floor (small btrees), so it is a lower bound.
load_floor_ms() {
    local r=$1 out
    sql <<SQL
CREATE TABLE floor_rows (LIKE dst.load_r$r INCLUDING ALL);
CREATE TABLE floor_log (LIKE change_log INCLUDING ALL);
CREATE TABLE floor_links (LIKE sync_links INCLUDING ALL,
    FOREIGN KEY (config_id) REFERENCES sync_configs (id) ON DELETE CASCADE) WITH (fillfactor = 50);
CREATE TABLE staged_log AS SELECT * FROM change_log WHERE system = 'bdst' AND entity_type = 'load_r$r';
CREATE TABLE staged_links AS SELECT l.* FROM sync_links l JOIN sync_configs c ON c.id = l.config_id
  WHERE c.name = 'bench_load_r$r';
VACUUM ANALYZE staged_log; VACUUM ANALYZE staged_links; CHECKPOINT;
SQL
    out=$(sql <<SQL
SELECT extract(epoch FROM clock_timestamp());
INSERT INTO floor_rows SELECT * FROM src.load_r$r;
SELECT extract(epoch FROM clock_timestamp());
INSERT INTO floor_log SELECT * FROM staged_log;
SELECT extract(epoch FROM clock_timestamp());
INSERT INTO floor_links SELECT * FROM staged_links;
SELECT extract(epoch FROM clock_timestamp());
SELECT (SELECT count(*) FROM floor_log) || ' ' || (SELECT count(*) FROM floor_links);
SQL
    )
    read -r t0 t1 t2 t3 nl nk <<<"$(tr '\n' ' ' <<<"$out")"
    ((nl == LOAD_ROWS && nk == LOAD_ROWS)) || die "round $r: the floor wrote $nl change records and $nk links, want $LOAD_ROWS each"
    sql -c "DROP TABLE floor_rows, floor_log, floor_links, staged_log, staged_links" -c "CHECKPOINT"
    echo "$(ms_between "$t0" "$t1") $(ms_between "$t1" "$t2") $(ms_between "$t2" "$t3")"
}
say "figure 4: initial load of $LOAD_ROWS rows into an empty table; $LOAD_ROUNDS rounds (alternating order)"
load_copy=() load_engine=() load_ratios=() lf=() lf_rows=() lf_log=() lf_links=() lf_ratios=()
for ((r = 1; r <= LOAD_ROUNDS; r++)); do
    if ((r % 2 == 1)); then
        c=$(copy_data_ms "$r")
        out=$(engine_load_ms "$r")
    else
        out=$(engine_load_ms "$r")
        c=$(copy_data_ms "$r")
    fi
    read -r e fr fg fk <<<"$out"
    load_copy+=("$c") load_engine+=("$e") load_ratios+=("$(div "$e" "$c")")
    lf_rows+=("$fr") lf_log+=("$fg") lf_links+=("$fk")
    lf+=("$(awk -v a="$fr" -v b="$fg" -v c="$fk" 'BEGIN { printf "%.1f", a + b + c }')")
    lf_ratios+=("$(div "${lf[-1]}" "$c")")
    printf '    round %d  subscription copy_data %10s ms  sync_execute %10s ms  ratio %s  floor %s ms, ratio %s\n' \
        "$r" "$c" "$e" "${load_ratios[-1]}" "${lf[-1]}" "${lf_ratios[-1]}"
done
sql -c "DROP DATABASE load_sub" -c "DROP DATABASE load_pub"

# 5. match_on: both tables hold the same LOAD_ROWS contacts under different keys (target
# ids start at 10,000,001); the match column (email) is indexed on both sides
say "figure 5: match_on load of two populated $LOAD_ROWS-row tables"
{
    source_ddl identity src.match_load "$LOAD_ROWS"
    source_ddl identity dst.match_load 0
    echo "INSERT INTO dst.match_load SELECT id + 10000000, name, email, phone, score, company, city, notes, amount, created_at, updated_at, attrs, active FROM src.match_load;"
    echo "CREATE INDEX ON src.match_load (email); CREATE INDEX ON dst.match_load (email);"
    echo "SELECT sync_register_table('bsrc', 'match_load', 'src.match_load') \\g /dev/null"
    echo "SELECT sync_register_table('bdst', 'match_load', 'dst.match_load') \\g /dev/null"
    echo "VACUUM ANALYZE src.match_load; VACUUM ANALYZE dst.match_load; CHECKPOINT;"
} | sql
cfg_match=$(sql -c "SELECT sync_create_config('bench_match_load', 'bsrc', 'bdst', 'match_load', match_on => ARRAY['email'])")
match_note="" match_rate=""
if out=$(timed_sync "$cfg_match" "$LOAD_LIMIT3" 2>"$work/match.err"); then
    echo "match-load ${out#* * }" >>"$work/sync_execute.log"
    read -r _ match_ms match_res <<<"$out"
    [[ $(jget "$match_res" errors) == 0 ]] || die "match_on load reported errors: $match_res"
    [[ $(jget "$match_res" created) == 0 ]] || die "match_on load created $(jget "$match_res" created) rows, want 0 (every row has its match): $match_res"
    links=$(sql -c "SELECT count(*) FROM sync_links WHERE config_id = $cfg_match")
    ((links == LOAD_ROWS)) || die "match_on load made $links links, want $LOAD_ROWS"
    match_rate=$(rate_of "$LOAD_ROWS" "$match_ms")
else
    grep -q 'statement timeout' "$work/match.err" || die "match_on load failed: $(cat "$work/match.err")"
    match_note="did not finish within LOAD_LIMIT3=$LOAD_LIMIT3 s"
fi

echo
echo "4. initial load: $LOAD_ROWS rows (13 columns) into an empty table; $LOAD_ROUNDS rounds, medians"
printf '   %-46s %10s ms   (rounds %s)\n' "subscription with copy_data, create -> ready" "$(median "${load_copy[@]}")" "${load_copy[*]}"
printf '   %-46s %10s ms   (rounds %s)\n' "sync_execute (initial load), wall clock" "$(median "${load_engine[@]}")" "${load_engine[*]}"
echo "   sync_execute: $(rate_of "$LOAD_ROWS" "$(median "${load_engine[@]}")") rows/s; copy_data: $(rate_of "$LOAD_ROWS" "$(median "${load_copy[@]}")") rows/s"
echo "   sync_execute / copy_data: rounds ${load_ratios[*]}"
printf '   %-46s %10s ms   (rounds %s)\n' "floor: the design's three writes per row, bare" "$(median "${lf[@]}")" "${lf[*]}"
printf '   %-46s %10s ms\n' "  the target rows (no trigger)" "$(median "${lf_rows[@]}")"
printf '   %-46s %10s ms\n' "  their change records" "$(median "${lf_log[@]}")"
printf '   %-46s %10s ms\n' "  their links (base, checksum, foreign key)" "$(median "${lf_links[@]}")"
echo "   floor / copy_data, median of the rounds = $(median "${lf_ratios[@]}")   (rounds ${lf_ratios[*]}): no initial load"
echo "   can be faster than these three statements; above 3.0 the figure 4 target cannot be met by this design"
echo "5. match_on load: two populated $LOAD_ROWS-row tables linked on email (no rows created)"
if [[ -n $match_rate ]]; then
    echo "   sync_execute ${match_ms} ms: $match_rate rows/s"
    echo "   the run: $match_res"
else
    echo "   sync_execute $match_note"
fi
result fig4_initial_load_vs_copy_data "$(median "${load_ratios[@]}")" "<=" 3.0

# ---------------------------------------------------------------------------------------
# 6. a real peer: Bucardo
# ---------------------------------------------------------------------------------------
if [[ $BUCARDO == 1 ]]; then
    bucardo_figure
fi
finish
