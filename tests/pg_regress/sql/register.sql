-- Registering tables: what a DBA sees.
CREATE SCHEMA reg;
CREATE TABLE reg.contacts (id serial PRIMARY KEY, name text, email text);
SELECT sync_register_table('reg_crm', 'contacts', 'reg.contacts') > 0 AS registered;
SELECT system, entity_type, relation, key_column FROM sync_endpoints WHERE system = 'reg_crm';
SELECT try($$SELECT sync_register_table('reg_crm', 'contacts', 'reg.contacts')$$);
SELECT try($$SELECT sync_register_table('reg_x', 'contacts', 'reg.nope')$$);
SELECT try($$SELECT sync_register_table(NULL, 'contacts', 'reg.contacts')$$);
-- a table without a usable key, a view, a missing key column
CREATE TABLE reg.nokey (a int, b text);
CREATE VIEW reg.v AS SELECT * FROM reg.contacts;
SELECT try($$SELECT sync_register_table('reg_nokey', 'x', 'reg.nokey')$$) AS error;
SELECT try($$SELECT sync_register_table('reg_view', 'x', 'reg.v')$$) AS error;
-- a number that names no relation
SELECT try($$SELECT sync_register_table('reg_gone', 'x', 4000000000::oid::regclass)$$) AS error;
CREATE TABLE reg.other (id int PRIMARY KEY, code text, ref text UNIQUE);
SELECT try($$SELECT sync_register_table('reg_col', 'x', 'reg.other', 'nope')$$) AS error;
SELECT try($$SELECT sync_register_table('reg_col', 'x', 'reg.other', 'code')$$) AS error;
SELECT try($$SELECT sync_register_table('reg_col', 'x', 'reg.other', 'ref')$$) AS error;
SELECT try($$SELECT sync_register_table('', 'x', 'reg.contacts')$$) AS error;
SELECT try(format($$SELECT sync_register_table(%L, 'x', 'reg.other')$$, repeat('s', 64))) AS error;
SELECT try($$SELECT sync_register_table('reg_x', 'x', NULL)$$) AS error;
-- only the table's owner registers it
CREATE ROLE regress_not_owner;
GRANT USAGE ON SCHEMA reg TO regress_not_owner;
SET ROLE regress_not_owner;
SELECT try($$SELECT sync_register_table('reg_x', 'x', 'reg.other')$$) AS error;
RESET ROLE;
REVOKE USAGE ON SCHEMA reg FROM regress_not_owner;
DROP ROLE regress_not_owner;
-- nothing of the refused calls was created
SELECT count(*) AS endpoints FROM sync_endpoints WHERE system LIKE 'reg_%';
-- capture: what change_log holds for an insert, an update and a delete
INSERT INTO reg.contacts (name, email) VALUES ('Ann Lee', 'ann@example.com');
UPDATE reg.contacts SET email = 'ann@crm.io' WHERE id = 1;
DELETE FROM reg.contacts WHERE id = 1;
SELECT entity_id, operation, fields, origin, checksum IS NOT NULL AS has_checksum
  FROM change_log WHERE system = 'reg_crm' ORDER BY id;
SELECT try($$TRUNCATE reg.contacts$$) AS error;
-- an update that changes nothing records nothing; a key update is a delete and an insert
INSERT INTO reg.contacts (id, name) VALUES (10, 'Bo');
UPDATE reg.contacts SET name = 'Bo' WHERE id = 10;
UPDATE reg.contacts SET id = 11 WHERE id = 10;
SELECT entity_id, operation, fields FROM change_log WHERE system = 'reg_crm' AND entity_id IN ('10', '11') ORDER BY id;
-- change_log.fields is jsonb, which cannot hold \u0000: such a json value is refused
CREATE TABLE reg.docs (id int PRIMARY KEY, body json);
SELECT sync_register_table('reg_docs', 'docs', 'reg.docs') > 0 AS registered;
SELECT try($q$INSERT INTO reg.docs VALUES (1, '{"a": "x\u0000y"}')$q$) AS error;
SELECT count(*) AS docs FROM reg.docs;
SELECT sync_unregister_table('reg_docs', 'docs');
-- unregistering drops the triggers; later writes are not captured
SELECT sync_unregister_table('reg_crm', 'contacts');
INSERT INTO reg.contacts (name) VALUES ('Not Captured');
SELECT count(*) AS records FROM change_log WHERE system = 'reg_crm' AND entity_id = '2';
SELECT try($$SELECT sync_unregister_table('reg_crm', 'contacts')$$) AS error;
