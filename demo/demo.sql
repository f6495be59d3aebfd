-- sync_engine demo. Run it with scripts/demo.sh (a throwaway cluster, psql -X -q,
-- ON_ERROR_STOP). Each section tells one step of the story; later sections will add
-- the mirror table of an outside service and a two-way sync between the two.

\set QUIET on
\pset null '(null)'
\pset border 2
\pset linestyle unicode
SET client_min_messages = warning;

-- =====================================================================================
-- 1. Install
-- =====================================================================================
\echo
\echo '=== 1. Install the extension'
CREATE EXTENSION sync_engine;
SELECT extname AS extension, extversion AS version, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'sync_engine';

-- =====================================================================================
-- 2. The company's own table: the CRM's contacts
-- =====================================================================================
\echo
\echo '=== 2. The CRM keeps its contacts in crm.contacts'
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (
    id         serial PRIMARY KEY,
    full_name  text,
    email      text,
    phone      text,
    updated_at timestamptz DEFAULT now()
);
INSERT INTO crm.contacts (full_name, email, phone) VALUES
    ('Ada Lovelace', 'ada@example.com',   '555-0100'),
    ('Alan Turing',  'alan@example.com',  '555-0101');
SELECT id, full_name, email, phone FROM crm.contacts ORDER BY id;

-- =====================================================================================
-- 3. Register it: an endpoint ('crm', 'contacts') with a capture trigger
-- =====================================================================================
\echo
\echo '=== 3. Register crm.contacts as endpoint (crm, contacts)'
SELECT sync_register_table('crm', 'contacts', 'crm.contacts') AS endpoint_id;
SELECT id, system, entity_type, relation, key_column FROM sync_endpoints ORDER BY id;

-- =====================================================================================
-- 4. Capture: every committed change becomes a change record
-- =====================================================================================
\echo
\echo '=== 4. Remember the read position, then change some contacts'
SELECT sync_position() AS pos \gset
\echo 'position (a transaction snapshot):' :pos

\echo
\echo '--- insert Grace Hopper'
INSERT INTO crm.contacts (full_name, email, phone)
     VALUES ('Grace Hopper', 'grace@example.com', '555-0102');

\echo '--- update Ada: new email and phone (two columns in one statement)'
UPDATE crm.contacts SET email = 'ada.lovelace@example.com', phone = '555-0199'
 WHERE full_name = 'Ada Lovelace';

\echo '--- update Alan with the values he already has (changes nothing)'
UPDATE crm.contacts SET email = email, phone = phone WHERE full_name = 'Alan Turing';

\echo '--- delete Alan'
DELETE FROM crm.contacts WHERE full_name = 'Alan Turing';

\echo
\echo 'The table now:'
SELECT id, full_name, email, phone FROM crm.contacts ORDER BY id;

-- =====================================================================================
-- 5. Read the changes since the remembered position
-- =====================================================================================
\echo
\echo '=== 5. sync_changes(since, until): what happened since that position'
\echo '    Three change records - the update that changed nothing left none. An update'
\echo '    lists only the columns it changed, each with its old and new value:'
SELECT c.id AS change_id,
       c.entity_id,
       c.operation,
       f.key AS "column",
       f.value -> 'old' AS old,
       f.value -> 'new' AS new
  FROM sync_changes(:'pos', sync_position()) AS c
 CROSS JOIN LATERAL jsonb_each(c.fields) AS f
 ORDER BY c.id, f.key;

\echo
\echo 'The update record as stored (origin NULL = an ordinary write, not the engine):'
SELECT entity_id,
       operation,
       jsonb_pretty(fields) AS fields,
       coalesce(origin, '(null)') AS origin,
       txid,
       left(checksum, 16) || '...' AS checksum
  FROM sync_changes(:'pos', sync_position(), 'crm', 'contacts')
 WHERE operation = 'update';

\echo
\echo 'Reading the same window again gives the same records; the next window starts empty:'
SELECT sync_position() AS pos2 \gset
SELECT (SELECT count(*) FROM sync_changes(:'pos', :'pos2')) AS "changes in (pos, pos2]",
       (SELECT count(*) FROM sync_changes(:'pos2', sync_position())) AS "changes after pos2";

-- =====================================================================================
-- (next: a mirror table for an outside service, a sync config with a field mapping,
--  sync_execute in both directions, and a conflict)
-- =====================================================================================
\echo
