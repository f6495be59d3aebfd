#!/usr/bin/env bash
# Notification cost, in a throwaway PostgreSQL 15 (127.0.0.1:56430, /var/tmp/se_notify_bench)
# with sync_engine preloaded, and a local receiver (bench/webhook_sink, answers 204):
#
#   1. signed webhook deliveries per second from the notifier to the receiver: EVENTS
#      events for one subscription, written in one transaction; rate = EVENTS / (last
#      delivered_at - commit).                                    target >= 2000/s
#   2. a 100-change sync_execute with 0 vs 3 subscriptions (run.completed,
#      conflict.created, changes.available): ROUNDS alternating rounds of each; before
#      each timed run the round waits until the notifier has delivered everything so far
#      (its work runs beside the runs, on another core, not inside them); the time of the
#      sync_execute statement on the server clock (the events are written inside it; the
#      time with the commit is printed beside it);
#      ratio = median(3 subscriptions) / median(0).                target <= 1.05
#
#   EVENTS=20000  ROUNDS=101 SKIP_INSTALL=1 (do not rebuild/install first)
#   STRICT=1      exit 1 when a target is missed
# Output: the bench header, then one RESULT line per figure (scripts/lib.sh `result`).
# Run under the test lock: flock /tmp/sync_engine_pgtest.lock bash bench/notify_bench.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT"

EVENTS=${EVENTS:-20000}
ROUNDS=${ROUNDS:-101}
BENCH_DIR=${BENCH_DIR:-/var/tmp/se_notify_bench}
BENCH_PORT=${BENCH_PORT:-56430}
for v in EVENTS ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    SETUP_SKIP_BUILD=1 bash scripts/setup.sh
    bash scripts/install-ext.sh
fi
say "building bench/webhook_sink"
cargo build -q --release --manifest-path bench/webhook_sink/Cargo.toml

work=$(mktemp -d /tmp/se_notify_bench.XXXXXX)
sink_pid=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ -n $sink_pid ]]; then kill "$sink_pid" 2>/dev/null || true; fi
    bash scripts/cluster.sh stop "$BENCH_DIR" >/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT

bench/webhook_sink/target/release/webhook_sink "$work/count" >"$work/port" &
sink_pid=$!
for _ in $(seq 50); do [[ -s $work/port ]] && break; sleep 0.1; done
sink_port=$(head -1 "$work/port")
[[ $sink_port =~ ^[0-9]+$ ]] || die "the receiver did not start"
url="http://127.0.0.1:$sink_port/hook"

bash scripts/cluster.sh start "$BENCH_DIR" "$BENCH_PORT" \
    -c shared_preload_libraries=sync_engine -c synchronous_commit=off -c shared_buffers=256MB \
    -c sync_engine.naptime=1 -c sync_engine.enabled=off
sql() { bash scripts/cluster.sh psql "$BENCH_DIR" "$BENCH_PORT" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
sql -c "CREATE EXTENSION sync_engine"
build=$(release_build sql)
bench_header notify_bench "$build" "EVENTS=$EVENTS ROUNDS=$ROUNDS"
say "receiver on 127.0.0.1:$sink_port"
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
wait_for() { # wait_for SQL WANT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [[ $(sql -c "$1") == "$2" ]] && return 0
        sleep 0.1
    done
    die "timed out waiting for: $1 = $2 (got $(sql -c "$1"))"
}

# --- 1. deliveries per second ------------------------------------------------------------
sql -c "SELECT sync_add_webhook('$url', ARRAY['run.failed'])" >/dev/null
wait_for "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync_engine notifier'" 1 20
sql <<SQL
SELECT sync_emit('run.failed', array_agg(jsonb_build_object('run_id', g, 'config_id', 1, 'status', 'failed',
                 'error', 'bench event ' || g)))
  FROM generate_series(1, $EVENTS) g;
SQL
wait_for "SELECT count(*) FROM sync_deliveries WHERE status = 'delivered'" "$EVENTS" 300
rate=$(sql -c "SELECT round($EVENTS / extract(epoch FROM max(delivered_at) - min(created_at)))::bigint FROM sync_deliveries")
sleep 0.5 # the receiver writes its count every 200 ms
received=$(cat "$work/count")
say "figure 1: $EVENTS signed deliveries, $rate/s (the receiver counted $received requests)"
result webhook_deliveries_per_s "$rate" ">=" 2000
sql -c "SELECT sync_remove_webhook(id) FROM sync_webhooks" >/dev/null
# figure 2 starts from empty notification tables, as figure 1 never ran
sql -c "TRUNCATE sync_deliveries, sync_outbox" -c "VACUUM ANALYZE"

# --- 2. sync_execute with 0 vs 3 subscriptions -------------------------------------------
sql >/dev/null <<SQL
CREATE TABLE src (id int PRIMARY KEY, name text, email text, score int);
CREATE TABLE dst (id int PRIMARY KEY, name text, email text, score int);
INSERT INTO src SELECT g, 'name ' || g, 'u' || g || '@example.com', 0 FROM generate_series(1, 100) g;
SELECT sync_register_table('bsrc', 'contacts', 'src'), sync_register_table('bdst', 'contacts', 'dst');
SELECT sync_create_config('bench', 'bsrc', 'bdst', 'contacts');
SELECT sync_execute(1);
SQL
for _ in 1 2 3; do
    sql -c "SELECT sync_add_webhook('$url', ARRAY['delivery.dead'])" >/dev/null
done
SUBS="ARRAY['run.completed', 'conflict.created', 'changes.available']"
# round N_SUBS: the SQL of one round, in the session all rounds share (as the scheduler's
# runs do: plans cached after the first). Prints "N_SUBS ms".
# bench_quiet(avail_before, want_avail): waits (10 ms steps, at most 10 s) until no
# delivery is pending and, when the round subscribes to changes.available, until the
# notifier's tick has raised it for this round's UPDATE. So the notifier's own work of
# this round (its tick, the HTTP requests, recording them) is never inside the timed
# window; on a 2-core machine it would otherwise compete for the CPU there.
sql <<'SQL'
CREATE FUNCTION bench_quiet(avail_before bigint, want_avail boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 s';
    -- a tick comes every naptime (1 s); the first look at an endpoint only sets where
    -- the next one starts, so an event may not come: then stop waiting for it
    tick_by timestamptz := clock_timestamp() + interval '2.5 s';
BEGIN
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM sync_deliveries WHERE status = 'pending')
              AND (NOT want_avail OR clock_timestamp() > tick_by
                   OR (SELECT count(*) FROM sync_outbox WHERE event_type = 'changes.available') > avail_before);
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the notifier did not finish the round''s deliveries within 10 s';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SQL
round() {
    if (($1 > 0)); then
        echo "UPDATE sync_webhooks SET events = $SUBS \\g /dev/null"
    else
        echo "UPDATE sync_webhooks SET events = ARRAY['delivery.dead'] \\g /dev/null"
    fi
    cat <<SQL
SELECT count(*) AS avail FROM sync_outbox WHERE event_type = 'changes.available' \\gset
UPDATE src SET score = score + 1;
SELECT bench_quiet(:avail, $1 > 0) \\g /dev/null
SELECT pg_sleep(0.05) \\g /dev/null
SELECT clock_timestamp() AS t0 \\gset
SELECT sync_execute(1) IS NOT NULL AS ok, clock_timestamp() AS t1 \\gset
SELECT '$1 ' || round((extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz) * 1000)::numeric, 2)
       || ' ' || round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 2);
SQL
}
{
    round 0; round 3 # warm-up
    for ((i = 1; i <= ROUNDS; i++)); do round 0; round 3; done
} | sql >"$work/rounds"
mapfile -t zero < <(tail -n +3 "$work/rounds" | awk '$1 == 0 { print $2 }')
mapfile -t three < <(tail -n +3 "$work/rounds" | awk '$1 == 3 { print $2 }')
mapfile -t zero_c < <(tail -n +3 "$work/rounds" | awk '$1 == 0 { print $3 }')
mapfile -t three_c < <(tail -n +3 "$work/rounds" | awk '$1 == 3 { print $3 }')
((${#zero[@]} == ROUNDS && ${#three[@]} == ROUNDS)) || die "expected $ROUNDS rounds of each, got: $(tr '\n' ' ' <"$work/rounds")"
m0=$(median "${zero[@]}")
m3=$(median "${three[@]}")
ratio=$(awk -v a="$m3" -v b="$m0" 'BEGIN { printf "%.3f", a / b }')
delivered=$(sql -c "SELECT count(*) FROM sync_deliveries WHERE status = 'delivered'")
say "figure 2: 100-change sync_execute, median of $ROUNDS: ${m0} ms with 0 subscriptions, ${m3} ms with 3 ($delivered deliveries made meanwhile)"
say "  0: ${zero[*]}"
say "  3: ${three[*]}"
m0c=$(median "${zero_c[@]}")
m3c=$(median "${three_c[@]}")
say "  with the commit and the next statement (the notifier, woken by the commit, then works beside it on this 2-core machine): ${m0c} ms vs ${m3c} ms, ratio $(awk -v a="$m3c" -v b="$m0c" 'BEGIN { printf "%.3f", a / b }')"
result sync_with_3_webhooks_ratio "$ratio" "<=" 1.05
if [[ ${STRICT:-0} == 1 ]] && ((RESULT_MISSED)); then exit 1; fi
