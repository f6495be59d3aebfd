-- What analysts and DBAs query: sync_status, sync_workers, sync_runs, sync_errors,
-- sync_conflicts, and the events and deliveries a webhook subscription gets.
CREATE DATABASE regress_views TEMPLATE regress_base;
\c regress_views
-- the shape of the two views
SELECT table_name, column_name, data_type FROM information_schema.columns
 WHERE table_name IN ('sync_status', 'sync_workers') ORDER BY table_name, ordinal_position;
-- without the library preloaded there is no launcher, so no worker rows
SELECT count(*) AS workers FROM sync_workers;

CREATE SCHEMA vw;
CREATE TABLE vw.crm (id serial PRIMARY KEY, name text, phone text);
CREATE TABLE vw.hub (id serial PRIMARY KEY, name text, phone text CHECK (phone ~ '^[0-9-]+$'));
SELECT sync_register_table('crm', 'contacts', 'vw.crm') AS crm_endpoint,
       sync_register_table('hub', 'contacts', 'vw.hub') AS hub_endpoint;
SELECT sync_create_config('crm_to_hub', 'crm', 'hub', 'contacts', conflict_strategy => 'manual',
                          sync_interval => '1 hour') AS config_id;
-- a subscriber to every event type; nothing delivers in this cluster (no notifier), so
-- the events and deliveries stay where a DBA can see them
SELECT sync_add_webhook('http://127.0.0.1:9/hook',
    ARRAY['run.completed', 'run.failed', 'conflict.created', 'conflict.resolved', 'delivery.dead']) AS webhook_id;
CREATE VIEW vw.status AS
SELECT config_id, name, enabled, sync_interval, last_run_at IS NOT NULL AS has_run,
       next_run_at IS NOT NULL AS scheduled, consecutive_failures, last_status, last_started_by,
       last_result - 'duration_ms' - 'run_id' AS last_result, last_error, lag IS NOT NULL AS lagging,
       pending_conflicts, open_errors, failed_runs_last_day, scheduler_pid
  FROM sync_status;
-- never run: no status, no lag (no position yet)
SELECT * FROM vw.status;

INSERT INTO vw.crm (name, phone) VALUES ('Ann', '555-0001'), ('Bob', 'call me');
SELECT sync_execute(1) - 'duration_ms' - 'run_id' AS result;
-- Bob's phone fails the hub's CHECK: a partial run with one open error
SELECT * FROM vw.status;
SELECT run_id, source_id, target_id, sqlstate, message, resolved FROM sync_errors ORDER BY id;

-- a change not yet synced shows as lag; a conflict as pending
UPDATE vw.crm SET phone = '555-1001' WHERE id = 1;
-- (the hub's keys come from its serial, which the failed first try of the batch used too)
UPDATE vw.hub SET phone = '555-2001' WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '1');
SELECT lagging, pending_conflicts FROM vw.status;
SELECT sync_execute(1) - 'duration_ms' - 'run_id' AS result;
SELECT * FROM vw.status;

-- fixing Bob's phone: the next run retries him and closes the error (run 2's failure
-- replaced run 1's row; the row closed by his success has retried_at)
UPDATE vw.crm SET phone = '555-0002' WHERE id = 2;
SELECT sync_execute(1) - 'duration_ms' - 'run_id' AS result;
SELECT run_id, source_id, sqlstate, resolved, retried_at IS NOT NULL AS retried FROM sync_errors ORDER BY id;
SELECT sync_resolve_conflict(1, 'target') AS resolved;
SELECT * FROM vw.status;
SELECT id, status, started_by, completed_at IS NOT NULL AS completed,
       result - 'duration_ms' - 'run_id' AS result, error
  FROM sync_runs ORDER BY id;

-- change_log tells the engine's writes (sync_config_origin) from the users'
SELECT sync_config_origin(1) AS origin;
SELECT system, operation, origin IS NOT DISTINCT FROM sync_config_origin(1) AS by_the_engine, count(*)
  FROM change_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- the events, in order, and one delivery of each to the subscriber
SELECT e.id, e.event_type, e.payload ->> 'type' AS type,
       (e.payload -> 'data') - 'duration_ms' - 'started_at' - 'completed_at' - 'created_at' - 'resolved_at' AS data
  FROM sync_outbox e ORDER BY e.id;
SELECT id, webhook_id, event_id, event_type, status, attempts, last_status, last_error, delivered_at
  FROM sync_deliveries ORDER BY id;
SELECT id, url, events, enabled, disabled_reason, secret LIKE 'whsec_%' AS has_secret FROM sync_webhooks;
SELECT sync_remove_webhook(1);
SELECT count(*) AS deliveries FROM sync_deliveries;
-- without a subscriber, no event is written
SELECT count(*) AS events_before FROM sync_outbox \gset
UPDATE vw.crm SET name = 'Ann Lee' WHERE id = 1;
SELECT sync_execute(1) - 'duration_ms' - 'run_id' AS result;
SELECT count(*) - :events_before AS new_events FROM sync_outbox;
