-- Runs, conflicts and their resolution, on the config of configs.sql (manual strategy).
-- The run result without its timing and ids.
CREATE FUNCTION run() RETURNS jsonb LANGUAGE sql AS
  $$SELECT sync_execute(id) - 'duration_ms' - 'run_id' - 'config_id' FROM sync_configs WHERE name = 'crm_to_hub'$$;
INSERT INTO cfg.crm (full_name, email, phone) VALUES ('Ann Lee', 'Ann@Example.COM', '555-0100'),
                                                     ('Bob Ray', NULL, '555-0101');
SELECT run();
SELECT id, firstname, lastname, email, phone FROM cfg.hub ORDER BY id;
-- nothing new: nothing to do
SELECT run();
-- both sides edit Ann's phone: a pending conflict; her other fields still sync
UPDATE cfg.crm SET phone = '555-0199', full_name = 'Ann Smith' WHERE id = 1;
UPDATE cfg.hub SET phone = '555-0142' WHERE id = 'hs-1000';
SELECT run();
SELECT kind, fields, source_value, target_value, base_value, strategy, resolution
  FROM sync_conflicts ORDER BY id;
SELECT firstname, lastname, phone FROM cfg.hub WHERE id = 'hs-1000';
SELECT full_name, phone FROM cfg.crm WHERE id = 1;
SELECT name, last_status, pending_conflicts FROM sync_status;
-- bad resolutions change nothing
SELECT try($$SELECT sync_resolve_conflict(1, 'both')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(999, 'source')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(1, 'merged')$$) AS error;
SELECT try($$SELECT sync_resolve_conflict(NULL, 'source')$$) AS error;
-- a person decides on a third value
SELECT sync_resolve_conflict(1, 'merged', '{"phone": "555-0111"}') - 'resolved_at' AS resolved;
SELECT resolution, resolved_value, resolved_by FROM sync_conflicts WHERE id = 1;
SELECT phone FROM cfg.hub WHERE id = 'hs-1000';
SELECT phone FROM cfg.crm WHERE id = 1;
SELECT regexp_replace(try($$SELECT sync_resolve_conflict(1, 'source')$$), 'at [^)]*', 'at <time>') AS error;
SELECT run();
-- a delete travels; a failing entity is recorded, not the run
ALTER TABLE cfg.hub ADD CONSTRAINT phone_format CHECK (phone ~ '^[0-9-]+$');
DELETE FROM cfg.crm WHERE id = 2;
INSERT INTO cfg.crm (full_name, phone) VALUES ('Cy Bad', 'call me');
SELECT run();
SELECT source_id, sqlstate, message FROM sync_errors WHERE NOT resolved;
SELECT id, firstname FROM cfg.hub ORDER BY id;
SELECT status, started_by, result - 'duration_ms' - 'run_id' - 'config_id' AS result, error
  FROM sync_runs ORDER BY id;
SELECT try($$SELECT sync_execute(999)$$) AS error;
SELECT try($$SELECT sync_execute(NULL)$$) AS error;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT try($$SELECT run()$$) AS error;
ROLLBACK;
