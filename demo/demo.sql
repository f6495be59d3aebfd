-- sync_engine demo. Run it with scripts/demo.sh (a throwaway cluster, psql -X -q,
-- ON_ERROR_STOP). The story: a company CRM (crm.contacts) kept in two-way sync with
-- the mirror table of a HubSpot-style service (hubspot.contacts) and with a support
-- desk (support.contacts). Each numbered section is one step of that story.
--
-- Deterministic: ids come from fresh sequences, run results are shown without their
-- duration, and no timestamps are printed. The only reliance on time is the order of
-- edits: latest_wins compares change times, and every edit below is its own
-- (autocommit) statement, so a later statement has a later change time.

\set QUIET on
\pset null '-'
\pset border 2
\pset linestyle unicode
\pset footer off
SET client_min_messages = warning;

-- =====================================================================================
-- 0. Install
-- =====================================================================================
\echo
\echo '=== 0. Install the extension'
CREATE EXTENSION sync_engine;
SELECT extname AS extension, extversion AS version, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'sync_engine';

-- =====================================================================================
-- 1. Two systems, two key spaces, two shapes
-- =====================================================================================
\echo
\echo '=== 1. The CRM keeps contacts in crm.contacts (one full_name, serial ids);'
\echo '       a connector mirrors HubSpot into hubspot.contacts (first/last name, text ids)'
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (
    id        serial PRIMARY KEY,
    full_name text,
    email     text,
    phone     text
);
INSERT INTO crm.contacts (full_name, email, phone) VALUES
    ('Ada Lovelace', 'ada@example.com',         '555-0100'),
    ('Alan Turing',  'Alan.Turing@Example.com', '555-0101'),
    ('Grace Hoper',  'grace@example.com',       '555-0102');   -- sic: a typo in the name

CREATE SCHEMA hubspot;
CREATE SEQUENCE hubspot.contact_seq START 1001;
CREATE TABLE hubspot.contacts (
    id        text PRIMARY KEY DEFAULT 'hs-' || nextval('hubspot.contact_seq'),
    firstname text,
    lastname  text,
    email     text,
    phone     text
);
-- HubSpot already knows one contact the CRM does not
INSERT INTO hubspot.contacts (firstname, lastname, email, phone)
     VALUES ('Dorothy', 'Vaughan', 'dorothy@example.com', '555-0150');

\echo
\echo 'Register both tables as endpoints (each gets a capture trigger):'
SELECT sync_register_table('crm',     'contacts', 'crm.contacts')     AS crm_endpoint,
       sync_register_table('hubspot', 'contacts', 'hubspot.contacts') AS hubspot_endpoint;

\echo
\echo 'Config 1 "crm-to-hubspot": full_name <-> firstname + lastname (split / join),'
\echo 'email lowercased on the way to HubSpot, phone as is; strategy latest_wins.'
SELECT sync_create_config(
           'crm-to-hubspot', 'crm', 'hubspot', 'contacts',
           '[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
             {"source": "email", "target": "email", "transform": "lowercase"},
             {"source": "phone", "target": "phone"}]',
           'latest_wins') AS hs_cfg \gset
SELECT id, name, source_system || ' <-> ' || target_system AS endpoints, entity_type,
       conflict_strategy, sync_direction, sync_interval
  FROM sync_configs WHERE id = :hs_cfg;

-- Side-by-side views: each CRM row next to the row it is linked to on the other side
-- (sync_links); rows not linked yet stand alone.
CREATE SCHEMA demo;
CREATE VIEW demo.crm_vs_hubspot AS
SELECT c.id AS crm_id, c.full_name, c.email, c.phone,
       h.id AS hubspot_id, h.firstname, h.lastname, h.email AS hs_email, h.phone AS hs_phone
  FROM crm.contacts c
  FULL JOIN (SELECT h.*, l.source_id
               FROM hubspot.contacts h
               LEFT JOIN sync_links l
                      ON l.target_id = h.id
                     AND l.config_id = (SELECT id FROM sync_configs WHERE name = 'crm-to-hubspot')
            ) h ON h.source_id = c.id::text
 ORDER BY c.id NULLS LAST, h.id;

-- a run's result without its run id and duration (the only parts that vary)
CREATE FUNCTION demo.counts(r jsonb) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT (r - 'run_id' - 'config_id' - 'duration_ms')::text $$;

-- =====================================================================================
-- 2. Initial sync
-- =====================================================================================
\echo
\echo '=== 2. Initial sync: the first run loads every row of both tables'
\echo
\echo 'Before (nothing linked yet):'
SELECT * FROM demo.crm_vs_hubspot;

SELECT demo.counts(sync_execute(:hs_cfg)) AS "sync_execute(crm-to-hubspot)";

\echo 'After: the CRM contacts are in HubSpot (name split, email lowercased), and'
\echo 'Dorothy from HubSpot is in the CRM (names joined). Each pair is now linked:'
SELECT * FROM demo.crm_vs_hubspot;

-- =====================================================================================
-- 3. Edits on both sides, no conflict
-- =====================================================================================
\echo
\echo '=== 3. Edits on both sides of the same contact, plus a new contact in HubSpot'
SELECT sync_position() AS pos \gset

\echo '--- CRM: a rep fixes Grace''s phone'
UPDATE crm.contacts SET phone = '555-0199' WHERE full_name = 'Grace Hoper';
\echo '--- HubSpot: a colleague fixes the typo in Grace''s last name'
UPDATE hubspot.contacts SET lastname = 'Hopper' WHERE lastname = 'Hoper';
\echo '--- HubSpot: a new contact, Katherine Johnson'
INSERT INTO hubspot.contacts (firstname, lastname, email, phone)
     VALUES ('Katherine', 'Johnson', 'katherine@example.com', '555-0160');

\echo
\echo 'What the capture triggers recorded (sync_changes since the position taken before'
\echo 'the edits; an update lists only the columns it changed):'
SELECT c.system, c.entity_id, c.operation, f.key AS "column",
       f.value -> 'old' AS old, f.value -> 'new' AS new
  FROM sync_changes(:'pos', sync_position()) AS c
 CROSS JOIN LATERAL jsonb_each(c.fields) AS f
 ORDER BY c.id, f.key;

\echo
\echo 'Before the sync:'
SELECT * FROM demo.crm_vs_hubspot;

SELECT demo.counts(sync_execute(:hs_cfg)) AS "sync_execute(crm-to-hubspot)";

\echo 'After: Grace has both fixes on both sides (different fields, so no conflict),'
\echo 'Katherine is in the CRM:'
SELECT * FROM demo.crm_vs_hubspot;

-- =====================================================================================
-- 4. A conflict, resolved by latest_wins
-- =====================================================================================
\echo
\echo '=== 4. Both sides change Alan''s phone to different values; HubSpot edits later'
\echo '--- CRM:     555-0111'
UPDATE crm.contacts SET phone = '555-0111' WHERE full_name = 'Alan Turing';
\echo '--- HubSpot: 555-0222 (a later statement, so a later change time)'
UPDATE hubspot.contacts SET phone = '555-0222' WHERE lastname = 'Turing';

SELECT demo.counts(sync_execute(:hs_cfg)) AS "sync_execute(crm-to-hubspot)";

\echo 'The later edit (HubSpot) won on both sides:'
SELECT * FROM demo.crm_vs_hubspot WHERE full_name = 'Alan Turing';

\echo
\echo 'The conflict is on record, with the losing CRM value kept (nothing is lost):'
SELECT id, source_id AS crm_id, target_id AS hubspot_id, kind, fields, base_value AS base,
       source_value AS "crm value", target_value AS "hubspot value", resolution, resolved_by
  FROM sync_conflicts WHERE config_id = :hs_cfg ORDER BY id;

-- =====================================================================================
-- 5. A second mirror with manual conflict resolution
-- =====================================================================================
\echo
\echo '=== 5. The support desk mirrors contacts too (support.contacts); conflicts there'
\echo '       are queued for a person to decide (strategy manual)'
CREATE SCHEMA support;
CREATE SEQUENCE support.contact_seq START 501;
CREATE TABLE support.contacts (
    id        text PRIMARY KEY DEFAULT 'sup-' || nextval('support.contact_seq'),
    firstname text,
    lastname  text,
    email     text,
    phone     text
);
SELECT sync_register_table('support', 'contacts', 'support.contacts') AS support_endpoint;
SELECT sync_create_config(
           'crm-to-support', 'crm', 'support', 'contacts',
           '[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
             {"source": "email", "target": "email", "transform": "lowercase"},
             {"source": "phone", "target": "phone"}]',
           'manual') AS sup_cfg \gset

CREATE VIEW demo.crm_vs_support AS
SELECT c.id AS crm_id, c.full_name, c.email, c.phone,
       s.id AS support_id, s.firstname, s.lastname, s.email AS sup_email, s.phone AS sup_phone
  FROM crm.contacts c
  FULL JOIN (SELECT s.*, l.source_id
               FROM support.contacts s
               LEFT JOIN sync_links l
                      ON l.target_id = s.id
                     AND l.config_id = (SELECT id FROM sync_configs WHERE name = 'crm-to-support')
            ) s ON s.source_id = c.id::text
 ORDER BY c.id NULLS LAST, s.id;

SELECT demo.counts(sync_execute(:sup_cfg)) AS "sync_execute(crm-to-support), initial";
SELECT * FROM demo.crm_vs_support;

\echo
\echo '--- CRM:     Ada''s email -> ada@lovelace.org'
UPDATE crm.contacts SET email = 'ada@lovelace.org' WHERE full_name = 'Ada Lovelace';
\echo '--- support: Ada''s email -> ada.lovelace@example.com, and her phone -> 555-0177'
UPDATE support.contacts SET email = 'ada.lovelace@example.com' WHERE lastname = 'Lovelace';
UPDATE support.contacts SET phone = '555-0177' WHERE lastname = 'Lovelace';

SELECT demo.counts(sync_execute(:sup_cfg)) AS "sync_execute(crm-to-support)";

\echo 'The email conflict is queued and each side keeps its own email for now;'
\echo 'the phone (changed on one side only) synced anyway:'
SELECT * FROM demo.crm_vs_support WHERE crm_id = 1;

\echo
\echo 'The pending conflict:'
SELECT id, source_id AS crm_id, target_id AS support_id, kind, fields, base_value AS base,
       source_value AS "crm value", target_value AS "support value", strategy, resolution
  FROM sync_conflicts WHERE config_id = :sup_cfg AND resolution = 'pending' ORDER BY id;
SELECT id AS conflict_id FROM sync_conflicts
 WHERE config_id = :sup_cfg AND resolution = 'pending' ORDER BY id LIMIT 1 \gset

\echo
\echo 'A person decides: neither, Ada''s own domain wins'
SELECT jsonb_pretty(sync_resolve_conflict(:conflict_id, 'merged',
                                          '{"email": "ada@lovelace.org.uk"}'))
       AS "sync_resolve_conflict(merged)";
SELECT * FROM demo.crm_vs_support WHERE crm_id = 1;
SELECT id, fields, source_value AS "crm value", target_value AS "support value",
       resolution, resolved_value, resolved_by
  FROM sync_conflicts WHERE id = :conflict_id;

\echo
\echo 'The next run has nothing to do: the resolution''s writes do not echo back'
SELECT demo.counts(sync_execute(:sup_cfg)) AS "sync_execute(crm-to-support)";

\echo
\echo 'HubSpot sees the CRM''s new email like any other CRM change (config 1 does not'
\echo 'ignore what config 2 wrote), and a second run of each config is a no-op:'
SELECT demo.counts(sync_execute(:hs_cfg)) AS "sync_execute(crm-to-hubspot)";
SELECT * FROM demo.crm_vs_hubspot WHERE crm_id = 1;
SELECT name AS config, demo.counts(sync_execute(id)) AS "sync_execute, once more"
  FROM sync_configs ORDER BY id;

-- =====================================================================================
-- 6. The run history
-- =====================================================================================
\echo
\echo '=== 6. sync_runs: every run, with its status and counts'
SELECT r.id AS run, c.name AS config, r.status, r.started_by,
       demo.counts(r.result) AS result
  FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id
 ORDER BY r.id;
\echo
