-- Each conflict strategy, and both one-way directions, on one story: a pair of contact
-- tables is loaded, then both sides change the same contact's phone (a conflict), the
-- target also changes a name (one side only: it syncs whatever the strategy), and the
-- source deletes a contact the target updates (a delete-vs-update conflict).
CREATE DATABASE regress_strategies TEMPLATE regress_base;
\c regress_strategies
CREATE SCHEMA st;
-- A source table st.<n>_src (ids 1, 2, ...) and a target st.<n>_tgt (ids 101, 102, ...),
-- registered as systems <n>_src and <n>_tgt, two contacts on the source, and config <n>.
CREATE FUNCTION st.pair(n text, strategy text, direction text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE st.%I (id serial PRIMARY KEY, name text, phone text)', n || '_src');
    EXECUTE format('CREATE SEQUENCE st.%I START 101', n || '_seq');
    EXECUTE format('CREATE TABLE st.%I (id int PRIMARY KEY DEFAULT nextval(%L), name text, phone text)',
                   n || '_tgt', 'st.' || n || '_seq');
    PERFORM sync_register_table(n || '_src', 'people', format('st.%I', n || '_src')::regclass);
    PERFORM sync_register_table(n || '_tgt', 'people', format('st.%I', n || '_tgt')::regclass);
    PERFORM sync_create_config(n, n || '_src', n || '_tgt', 'people', NULL, strategy, direction);
    EXECUTE format($q$INSERT INTO st.%I (name, phone) VALUES ('Ann', '555-0100'), ('Bob', '555-0200')$q$, n || '_src');
END $$;
-- The run result without its timing and ids.
CREATE FUNCTION st.run(n text) RETURNS jsonb LANGUAGE sql AS
  $$SELECT sync_execute(id) - 'duration_ms' - 'run_id' - 'config_id' FROM sync_configs WHERE name = n$$;
-- Both tables side by side, linked rows in one line.
CREATE FUNCTION st.show(n text, OUT src_id int, OUT src_name text, OUT src_phone text,
                        OUT tgt_id int, OUT tgt_name text, OUT tgt_phone text)
RETURNS SETOF record LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT s.id, s.name, s.phone, t.id, t.name, t.phone
           FROM (SELECT s.*, l.target_id FROM st.%I s
                   LEFT JOIN sync_links l ON l.source_id = s.id::text
                    AND l.config_id = (SELECT id FROM sync_configs WHERE name = %L)) s
           FULL JOIN st.%I t ON t.id::text = s.target_id
          ORDER BY coalesce(s.id, 1000), t.id', n || '_src', n, n || '_tgt');
END $$;
-- The config's conflicts.
CREATE FUNCTION st.conflicts(n text) RETURNS TABLE (source_id text, target_id text, kind text,
    fields text[], source_value jsonb, target_value jsonb, base_value jsonb, resolution text,
    resolved_value jsonb, resolved_by text)
LANGUAGE sql AS $$
    SELECT k.source_id, k.target_id, k.kind, k.fields, k.source_value, k.target_value, k.base_value,
           k.resolution, k.resolved_value, k.resolved_by
      FROM sync_conflicts k JOIN sync_configs c ON c.id = k.config_id
     WHERE c.name = n ORDER BY k.id
$$;
-- The edits of the story (each its own statement, so each has a later change time).
CREATE FUNCTION st.edit_source(n text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$UPDATE st.%I SET phone = '555-0111' WHERE id = 1$q$, n || '_src');
    EXECUTE format($q$DELETE FROM st.%I WHERE id = 2$q$, n || '_src');
END $$;
CREATE FUNCTION st.edit_target(n text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$UPDATE st.%I SET phone = '555-0122', name = 'Ann Lee' WHERE id = 101$q$, n || '_tgt');
    EXECUTE format($q$UPDATE st.%I SET phone = '555-0222' WHERE id = 102$q$, n || '_tgt');
END $$;

SELECT st.pair('sw', 'source_wins', 'bidirectional'), st.pair('tw', 'target_wins', 'bidirectional'),
       st.pair('ls', 'latest_wins', 'bidirectional'), st.pair('lt', 'latest_wins', 'bidirectional'),
       st.pair('mn', 'manual', 'bidirectional'),
       st.pair('st', 'source_wins', 'source_to_target'), st.pair('ts', 'source_wins', 'target_to_source');
SELECT name, conflict_strategy, sync_direction FROM sync_configs ORDER BY id;
-- the initial load copies both contacts to the target
SELECT st.run('sw');
SELECT * FROM st.show('sw');
SELECT st.run(n) FROM unnest(ARRAY['tw', 'ls', 'lt', 'mn', 'st']) n;
-- target_to_source: only the target's rows travel; the source's own rows stay, unlinked
SELECT st.run('ts');
SELECT * FROM st.show('ts');

-- source_wins: the source's phone on both sides; the target's new name still reaches
-- the source; the delete wins over the update
SELECT st.edit_source('sw');
SELECT st.edit_target('sw');
SELECT st.run('sw');
SELECT * FROM st.show('sw');
SELECT * FROM st.conflicts('sw');

-- target_wins: the target's phone; the updated contact is re-created on the source
SELECT st.edit_source('tw');
SELECT st.edit_target('tw');
SELECT st.run('tw');
SELECT * FROM st.show('tw');
SELECT * FROM st.conflicts('tw');

-- latest_wins, the target edited later: the target's phone, the updated contact stays
SELECT st.edit_source('lt');
SELECT st.edit_target('lt');
SELECT st.run('lt');
SELECT * FROM st.show('lt');
SELECT * FROM st.conflicts('lt');

-- latest_wins, the source edited later: the source's phone, the delete wins
SELECT st.edit_target('ls');
SELECT st.edit_source('ls');
SELECT st.run('ls');
SELECT * FROM st.show('ls');
SELECT * FROM st.conflicts('ls');

-- manual: both conflicts wait for a person; each side keeps its phone and its copy of
-- Bob; Ann's new name (one side only) still syncs
SELECT st.edit_source('mn');
SELECT st.edit_target('mn');
SELECT st.run('mn');
SELECT * FROM st.show('mn');
SELECT * FROM st.conflicts('mn');
-- a run changes nothing while they wait
SELECT st.run('mn');
SELECT * FROM st.show('mn');

-- source_to_target: the source is never written; the target's name edit stays there,
-- the conflicting phone and the delete go the source's way
SELECT st.edit_source('st');
SELECT st.edit_target('st');
SELECT st.run('st');
SELECT * FROM st.show('st');
SELECT * FROM st.conflicts('st');
-- a contact deleted on the receiving side is re-created from the authoritative side
DELETE FROM st.st_tgt WHERE id = 101;
SELECT st.run('st');
SELECT * FROM st.show('st');

-- target_to_source: what the target gains reaches the source; the source's own edits
-- stay there, and a conflicting field goes the target's way whatever the strategy
INSERT INTO st.ts_tgt (name, phone) VALUES ('Cy', '555-0300');
SELECT st.run('ts');
UPDATE st.ts_src SET phone = '555-0311', name = 'Cy Young' WHERE name = 'Cy';
UPDATE st.ts_tgt SET phone = '555-0322' WHERE name = 'Cy';
SELECT st.run('ts');
SELECT * FROM st.show('ts');
SELECT * FROM st.conflicts('ts');

-- every config: a second run has nothing to do
SELECT name, st.run(name) FROM sync_configs ORDER BY id;
