#!/usr/bin/env bash
# A field worker's phone and the office edit the same contact; the phone reconnects,
# pushes its queue, pulls what changed, and the script prints what happened.
# Runs on a throwaway PostgreSQL 15 (127.0.0.1:$PORT, data in $DIR), stopped afterwards.
#
#   bash examples/offline_device/run.sh
#   SKIP_INSTALL=1   use the sync_engine already installed (else: release build + install)
#   DIR=/var/tmp/sync_engine_offline_example PORT=55436   where the cluster lives
#   KEEP=1           leave the cluster running
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO_ROOT"

DIR=${DIR:-/var/tmp/sync_engine_offline_example}
PORT=${PORT:-55436}

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    bash scripts/setup.sh
    bash scripts/install-ext.sh
fi
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then
        say "cluster left running: scripts/cluster.sh psql $DIR $PORT"
    else
        bash scripts/cluster.sh stop "$DIR" >/dev/null || true
    fi
}
trap cleanup EXIT
bash scripts/cluster.sh start "$DIR" "$PORT" >/dev/null

# the SQL goes in on stdin: the postgres OS user may not be able to read the checkout
bash scripts/cluster.sh psql "$DIR" "$PORT" -X -q -v ON_ERROR_STOP=1 -P pager=off -f - <<'SQL'
\pset footer off
CREATE EXTENSION sync_engine;
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (id int PRIMARY KEY, name text NOT NULL, phone text, city text);
INSERT INTO crm.contacts VALUES (1, 'Ada Lovelace', '555-0100', 'London'),
                                (2, 'Grace Hopper', '555-0200', 'Arlington');
SELECT sync_register_table('crm', 'contacts', 'crm.contacts') AS endpoint \gset

\echo '== 1. The phone downloads the contacts (sync_snapshot) and keeps the cursor'
SELECT sync_snapshot('crm', 'contacts') AS snap \gset
SELECT r->>'entity_id' AS id, r->'values'->>'name' AS name, r->'values'->>'phone' AS phone,
       r->'values'->>'city' AS city
  FROM jsonb_array_elements((:'snap'::jsonb)->'rows') r;
SELECT (:'snap'::jsonb)->>'cursor' AS cursor \gset

\echo '== 2. The phone goes offline. Ten minutes ago the worker changed Ada''s phone and city;'
\echo '      they sit in the phone''s queue with the time of the edit.'
SELECT jsonb_build_array(
  jsonb_build_object('id', 'phone-7f3a-1', 'entity_id', '1', 'operation', 'update',
    'changed_at', to_char((now() - interval '10 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'fields', jsonb_build_object('phone', jsonb_build_object('old', '555-0100', 'new', '555-0111'),
                                 'city',  jsonb_build_object('old', 'London', 'new', 'Cambridge'))),
  jsonb_build_object('id', 'phone-7f3a-2', 'entity_id', '3', 'operation', 'insert',
    'changed_at', to_char((now() - interval '9 minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'fields', jsonb_build_object('name', jsonb_build_object('new', 'Katherine Johnson'),
                                 'phone', jsonb_build_object('new', '555-0300')))
) AS queue \gset
SELECT c->>'id' AS change, c->>'operation' AS op, c->>'entity_id' AS contact, c->>'changed_at' AS edited_at,
       c->'fields' AS fields
  FROM jsonb_array_elements(:'queue'::jsonb) c;

\echo '== 3. Meanwhile (five minutes later, now) the office changes Ada''s phone too'
UPDATE crm.contacts SET phone = '555-0199' WHERE id = 1;
SELECT id, name, phone, city FROM crm.contacts ORDER BY id;

\echo '== 4. The phone reconnects and pushes its queue (latest_wins: the later edit wins, per field)'
SELECT sync_push('crm', 'contacts', :'queue'::jsonb, 'phone-7f3a') AS pushed \gset
SELECT (:'pushed'::jsonb)->>'applied' AS applied, (:'pushed'::jsonb)->>'conflicts' AS conflicts,
       (:'pushed'::jsonb)->>'duplicates' AS duplicates, (:'pushed'::jsonb)->>'rejected' AS rejected;
SELECT r->>'id' AS change, r->>'status' AS status, r->>'winner' AS winner, r->>'conflict_id' AS conflict
  FROM jsonb_array_elements((:'pushed'::jsonb)->'results') r;
\echo '   The office''s phone number is newer than the phone''s edit, so it stays; the city'
\echo '   (changed only on the phone) applied; the new contact was created.'
SELECT id, name, phone, city FROM crm.contacts ORDER BY id;
\echo '   The losing value is kept:'
SELECT id, kind, fields, source_value AS phone_side, target_value AS office_side, base_value AS base, resolution
  FROM sync_conflicts ORDER BY id;

\echo '== 5. The phone pulls what changed since its cursor (never its own pushes)'
SELECT sync_pull('crm', 'contacts', :'cursor', 100, 'phone-7f3a') AS pulled \gset
SELECT c->>'entity_id' AS contact, c->>'operation' AS op, c->'fields' AS fields,
       coalesce(c->>'origin', '(office)') AS origin
  FROM jsonb_array_elements((:'pulled'::jsonb)->'changes') c;

SELECT (:'pulled'::jsonb)->>'has_more' AS has_more;

\echo '== 6. The connection dropped before the phone saw the answer: it sends the queue again'
SELECT r->>'id' AS change, r->>'status' AS status
  FROM jsonb_array_elements((sync_push('crm', 'contacts', :'queue'::jsonb, 'phone-7f3a'))->'results') r;
SELECT count(*) AS change_records_of_the_phone FROM change_log WHERE origin = 'client:phone-7f3a';
SQL
