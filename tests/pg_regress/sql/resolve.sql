-- Resolving conflicts by hand: 'source', 'target', 'merged', delete conflicts, a pushed
-- change's conflict, and every refusal (which changes nothing).
CREATE DATABASE regress_resolve TEMPLATE regress_base;
\c regress_resolve
CREATE SCHEMA rs;
CREATE TABLE rs.crm (id serial PRIMARY KEY, full_name text, email text, phone text);
CREATE SEQUENCE rs.hub_seq START 1000;
CREATE TABLE rs.hub (id text PRIMARY KEY DEFAULT 'hs-' || nextval('rs.hub_seq'), firstname text,
                     lastname text, email text, phone text);
SELECT sync_register_table('crm', 'contacts', 'rs.crm') AS crm_endpoint,
       sync_register_table('hub', 'contacts', 'rs.hub') AS hub_endpoint;
SELECT sync_create_config('crm_to_hub', 'crm', 'hub', 'contacts',
  '[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
    {"source": "email", "target": "email", "transform": "lowercase"},
    {"source": "phone", "target": "phone"}]',
  conflict_strategy => 'manual') AS config_id;
CREATE FUNCTION rs.run() RETURNS jsonb LANGUAGE sql AS
  $$SELECT sync_execute(1) - 'duration_ms' - 'run_id' - 'config_id'$$;
CREATE VIEW rs.both AS
SELECT c.id AS crm_id, c.full_name, c.email, c.phone, h.id AS hub_id, h.firstname, h.lastname,
       h.email AS hub_email, h.phone AS hub_phone
  FROM rs.crm c
  FULL JOIN (SELECT h.*, l.source_id FROM rs.hub h LEFT JOIN sync_links l ON l.target_id = h.id) h
         ON h.source_id = c.id::text
 ORDER BY c.id NULLS LAST, h.id;
INSERT INTO rs.crm (full_name, email, phone) VALUES
  ('Ann Lee', 'ann@example.com', '555-0001'), ('Bob Ray', 'bob@example.com', '555-0002'),
  ('Cy Dale', 'cy@example.com', '555-0003'), ('Di Fox', 'di@example.com', '555-0004'),
  ('Ed Gray', 'ed@example.com', '555-0005');
SELECT rs.run();

-- six conflicts (one per field): a phone each for Ann and Bob, email and phone for Cy,
-- Di deleted in the CRM while the hub updates her, Ed updated in the CRM while the hub
-- deletes him
UPDATE rs.crm SET phone = '555-1001' WHERE id = 1;
UPDATE rs.crm SET phone = '555-1002' WHERE id = 2;
UPDATE rs.crm SET phone = '555-1003', email = 'cy@crm.example' WHERE id = 3;
DELETE FROM rs.crm WHERE id = 4;
UPDATE rs.crm SET phone = '555-1005' WHERE id = 5;
UPDATE rs.hub SET phone = '555-2001' WHERE id = 'hs-1000';
UPDATE rs.hub SET phone = '555-2002' WHERE id = 'hs-1001';
UPDATE rs.hub SET phone = '555-2003', email = 'cy@hub.example' WHERE id = 'hs-1002';
UPDATE rs.hub SET phone = '555-2004' WHERE id = 'hs-1003';
DELETE FROM rs.hub WHERE id = 'hs-1004';
SELECT rs.run();
SELECT id, source_id, target_id, kind, fields, source_value, target_value, base_value, resolution
  FROM sync_conflicts ORDER BY id;
SELECT * FROM rs.both;

-- refused, nothing changes
SELECT try($$SELECT sync_resolve_conflict(1, 'crm')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(1, NULL)$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(1, 'source', '{"phone": "555-9"}')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(3, 'merged')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(3, 'merged', '{"phone": "555-9"}')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(3, 'merged', '{"email": "x@y", "lastname": "X"}')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(3, 'merged', '["x@y"]')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(5, 'merged', '{"nope": 1}')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(99, 'target')$$) AS error;
CREATE ROLE regress_outsider;
SET ROLE regress_outsider;
SELECT try($$SELECT sync_resolve_conflict(1, 'source')$$) AS error;
RESET ROLE;
DROP ROLE regress_outsider;
SELECT count(*) AS pending FROM sync_conflicts WHERE resolution = 'pending';
SELECT * FROM rs.both;

-- 'source' takes the CRM's current phone for Ann, on both sides; an edit made since
-- the conflict (her name) is left for the next run
UPDATE rs.crm SET full_name = 'Ann Smith' WHERE id = 1;
SELECT sync_resolve_conflict(1, 'source') AS resolved;
SELECT * FROM rs.both WHERE crm_id = 1;
-- 'target' takes the hub's phone for Bob
SELECT sync_resolve_conflict(2, 'target') AS resolved;
-- 'merged': a third value for Cy's email; 'target' for his phone
SELECT sync_resolve_conflict(3, 'merged', '{"email": "cy@example.org"}') AS resolved;
SELECT sync_resolve_conflict(4, 'target') AS resolved;
-- Di: deleted in the CRM, updated in the hub; 'target' keeps her and re-creates her in the CRM
SELECT sync_resolve_conflict(5, 'target') AS resolved;
-- Ed: updated in the CRM, deleted in the hub; 'target' deletes him on both sides
SELECT sync_resolve_conflict(6, 'target') AS resolved;
SELECT id, resolution, resolved_value, resolved_by, resolved_at IS NOT NULL AS has_time
  FROM sync_conflicts ORDER BY id;
SELECT * FROM rs.both;
SELECT source_id, target_id, base FROM sync_links ORDER BY source_id::int;
SELECT regexp_replace(try($$SELECT sync_resolve_conflict(2, 'source')$$), 'at [^)]*', 'at <time>') AS error;
-- the resolutions do not echo back; Ann's new name arrives
SELECT rs.run();
SELECT * FROM rs.both;
SELECT rs.run();

-- a pushed change's conflict: 'source' writes the client's value as an ordinary write
-- (no origin), so every client pulls it, the pushing one too
SELECT sync_push('hub', 'contacts', '[{"id": "p1", "entity_id": "hs-1000", "operation": "update",
    "changed_at": "2026-01-01T00:00:00Z", "fields": {"phone": {"old": "555-0000", "new": "555-4000"}}}]',
    'phone-1', 'manual') -> 'results' AS push;
SELECT id, config_id, endpoint_id, client_id, change_id, kind, fields, source_value, target_value,
       base_value, resolution
  FROM sync_conflicts WHERE client_id IS NOT NULL;
SELECT phone FROM rs.hub WHERE id = 'hs-1000';
SELECT sync_resolve_conflict(7, 'source') AS resolved;
SELECT phone FROM rs.hub WHERE id = 'hs-1000';
SELECT entity_id, operation, fields, origin FROM change_log
 WHERE system = 'hub' ORDER BY id DESC LIMIT 1;
SELECT id, resolution, resolved_value, resolved_by FROM sync_conflicts WHERE id = 7;
-- and the next run brings it to the CRM
SELECT rs.run();
SELECT * FROM rs.both WHERE crm_id = 1;
