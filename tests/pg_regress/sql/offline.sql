-- Offline clients: snapshot pages, pushes (applied, duplicate, conflict, rejected), pulls
-- that leave out the client's own pushes, a cursor behind pruned records, refusals.
-- Cursors and server change times vary: they are shown as present, or left out.
CREATE DATABASE regress_offline TEMPLATE regress_base;
\c regress_offline
CREATE SCHEMA off;
CREATE TABLE off.contacts (id int PRIMARY KEY, name text NOT NULL, phone text CHECK (phone <> 'bad'));
INSERT INTO off.contacts VALUES (1, 'Ada', '555-0100'), (2, 'Grace', '555-0200'), (3, 'Alan', '555-0300');
SELECT sync_register_table('crm', 'contacts', 'off.contacts') AS endpoint;
-- a pull's changes without their ids and server times
CREATE FUNCTION off.changes(p jsonb) RETURNS jsonb LANGUAGE sql AS
  $$SELECT coalesce(jsonb_agg(c - 'id' - 'changed_at' ORDER BY n), '[]') FROM jsonb_array_elements(p -> 'changes') WITH ORDINALITY AS e(c, n)$$;

-- first contact: page the rows, two at a time; only the first page has a cursor
SELECT sync_snapshot('crm', 'contacts', max_rows => 2) AS page1 \gset
SELECT (:'page1'::jsonb) - 'cursor' AS page1, (:'page1'::jsonb) ? 'cursor' AS has_cursor;
SELECT (:'page1'::jsonb) ->> 'cursor' AS cursor \gset
SELECT sync_snapshot('crm', 'contacts', after_key => (:'page1'::jsonb) ->> 'after_key', max_rows => 2) AS page2;

-- push: an update, an insert, a change that breaks a CHECK, an update whose "old" is stale
-- while the office changed the row later (latest_wins: the office's value stays)
UPDATE off.contacts SET phone = '555-0399' WHERE id = 3;
SELECT sync_push('crm', 'contacts', '[
  {"id": "c1", "entity_id": "1", "operation": "update", "changed_at": "2026-01-01T10:00:00Z",
   "fields": {"phone": {"old": "555-0100", "new": "555-0111"}}},
  {"id": "c2", "entity_id": "4", "operation": "insert", "changed_at": 1767261600000,
   "fields": {"name": {"new": "Katherine"}, "phone": {"new": "555-0400"}}},
  {"id": "c3", "entity_id": "2", "operation": "update", "changed_at": "2026-01-01T10:00:00Z",
   "fields": {"phone": {"old": "555-0200", "new": "bad"}}},
  {"id": "c4", "entity_id": "3", "operation": "update", "changed_at": "2026-01-01T10:00:00Z",
   "fields": {"phone": {"old": "555-0300", "new": "555-0311"}}}]', 'phone-1');
SELECT id, name, phone FROM off.contacts ORDER BY id;
SELECT endpoint_id, client_id, change_id, kind, fields, source_value, target_value, base_value,
       strategy, resolution, resolved_by
  FROM sync_conflicts;
-- the same batch again: each change answers duplicate, nothing is written twice
SELECT sync_push('crm', 'contacts', '[
  {"id": "c1", "entity_id": "1", "operation": "update", "changed_at": "2026-01-01T10:00:00Z",
   "fields": {"phone": {"old": "555-0100", "new": "555-0111"}}},
  {"id": "c2", "entity_id": "4", "operation": "insert", "changed_at": 1767261600000,
   "fields": {"name": {"new": "Katherine"}, "phone": {"new": "555-0400"}}}]', 'phone-1')
  -> 'results' AS again;
SELECT client_id, change_id, status FROM sync_push_ids ORDER BY change_id;
SELECT entity_id, operation, fields, origin FROM change_log ORDER BY id;

-- pull from the snapshot's cursor: the office's edit, not phone-1's own pushes
SELECT sync_pull('crm', 'contacts', :'cursor', 10, 'phone-1') AS pulled \gset
SELECT off.changes(:'pulled') AS changes, (:'pulled'::jsonb) -> 'has_more' AS has_more;
-- another client gets everything, a page at a time
SELECT sync_pull('crm', 'contacts', :'cursor', 2, 'phone-2') AS p1 \gset
SELECT off.changes(:'p1') AS changes, (:'p1'::jsonb) -> 'has_more' AS has_more;
SELECT sync_pull('crm', 'contacts', (:'p1'::jsonb) ->> 'cursor', 2, 'phone-2') AS p2 \gset
SELECT off.changes(:'p2') AS changes, (:'p2'::jsonb) -> 'has_more' AS has_more;
-- nothing new: an empty page
SELECT off.changes(sync_pull('crm', 'contacts', (:'p2'::jsonb) ->> 'cursor', 2, 'phone-2')) AS changes;

-- refused, nothing applied or remembered
SELECT try($$SELECT sync_push('crm', 'contacts', '{"id": "x"}', 'phone-1')$$) AS error;
SELECT try($$SELECT sync_push('crm', 'contacts', '[{"id": "x1", "entity_id": "1", "operation": "update",
    "changed_at": "2026-01-01T10:00:00Z", "fields": {"email": {"new": "a@b"}}}]', 'phone-1')$$) AS error;
SELECT try($$SELECT sync_push('crm', 'contacts', '[{"id": "x1", "entity_id": "1", "operation": "merge",
    "changed_at": "2026-01-01T10:00:00Z", "fields": {}}]', 'phone-1')$$) AS error;
SELECT try($$SELECT sync_push('crm', 'contacts', '[{"id": "x1", "entity_id": "1", "operation": "update",
    "changed_at": "yesterday", "fields": {"phone": {"new": "1"}}}]', 'phone-1')$$) AS error;
SELECT try($$SELECT sync_push('crm', 'contacts', '[{"id": "x1", "entity_id": "1", "operation": "update",
    "changed_at": "2026-01-01T10:00:00Z", "fields": {"id": {"new": 9}}}]', 'phone-1')$$) AS error;
SELECT try($$SELECT sync_push('crm', 'contacts', '[]', 'phone-1', 'client_first')$$) AS error;
SELECT try($$SELECT sync_push('crm', 'contacts', '[]', NULL)$$) AS error;
SELECT try($$SELECT sync_push('crm', 'people', '[]', 'phone-1')$$) AS error;
SET sync_engine.push_max_batch = 1;
SELECT try($$SELECT sync_push('crm', 'contacts', '[{"id": "a", "entity_id": "1", "operation": "delete"},
    {"id": "b", "entity_id": "2", "operation": "delete"}]', 'phone-1')$$) AS error;
RESET sync_engine.push_max_batch;
SELECT try($$SELECT sync_pull('crm', 'contacts', 'junk')$$) AS error;
SELECT try(format($$SELECT sync_pull('crm', 'contacts', %L, 0)$$, :'cursor')) AS error;
SELECT try($$SELECT sync_snapshot('crm', 'contacts', max_rows => 0)$$) AS error;
SELECT count(*) AS remembered FROM sync_push_ids WHERE change_id LIKE 'x%' OR change_id IN ('a', 'b');

-- a cursor behind pruned records must resync
SELECT sync_prune('0 seconds') > 0 AS pruned;
SELECT sync_pull('crm', 'contacts', :'cursor', 10, 'phone-2') - 'message' - 'hint' AS pull;
