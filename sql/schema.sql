-- sync_engine schema. Objects land in the schema chosen by
-- CREATE EXTENSION sync_engine [SCHEMA s]; nothing here names a schema.

-- An endpoint binds (system, entity_type) to a table and its key column.
CREATE TABLE sync_endpoints (
    id          bigserial PRIMARY KEY,
    system      text        NOT NULL CHECK (system <> ''),
    entity_type text        NOT NULL CHECK (entity_type <> ''),
    relation    regclass    NOT NULL,
    key_column  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (system, entity_type),
    UNIQUE (relation)
);

-- This database's copy of the extension: one row, made by CREATE EXTENSION. A position
-- (sync_configs.position) is a snapshot of this database's transaction ids and indexes
-- this database's change_log; it is only valid where both came along. The row travels
-- with the data files (a physical copy, a standby, pg_upgrade, CREATE DATABASE ..
-- TEMPLATE) but not with pg_dump: it is not a configuration table, so a restore runs
-- CREATE EXTENSION and gets a new id, and positions carrying the old one are foreign.
CREATE TABLE sync_instance (
    id         uuid        NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    one_row    boolean     NOT NULL DEFAULT true UNIQUE CHECK (one_row)
);
INSERT INTO sync_instance DEFAULT VALUES;
GRANT SELECT ON sync_instance TO PUBLIC;

-- One row per captured change. Written by the capture trigger (and by sync_push).
-- txid is the xid8 of the writing transaction: readers use snapshots, never ids or
-- timestamps, to decide what is new (see src/core/cursor.rs). id comes from a sequence and
-- is unique, but carries no index: every write to a registered table pays for each
-- index here, and nothing looks changes up by id (like PgQ's event tables).
CREATE TABLE change_log (
    id          bigserial   NOT NULL,
    system      text        NOT NULL,
    entity_type text        NOT NULL,
    entity_id   text        NOT NULL,
    operation   text        NOT NULL,
    fields      jsonb       NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    txid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    origin      text,
    checksum    text
);
ALTER SEQUENCE change_log_id_seq CACHE 64;
-- every role that writes to a registered table takes an id from this sequence through
-- the capture trigger; taking one grants nothing else (change_log itself stays closed)
GRANT USAGE ON SEQUENCE change_log_id_seq TO PUBLIC;
-- an append-and-prune log: vacuuming it because rows were inserted is wasted work
-- (the worker's pruning leaves dead rows, which still trigger autovacuum as usual)
ALTER TABLE change_log SET (autovacuum_vacuum_insert_threshold = -1);
CREATE INDEX change_log_txid_idx ON change_log (txid);

COMMENT ON TABLE change_log IS
  'sync_engine: one row per captured insert/update/delete of a registered table; fields = {"col": {"old": v, "new": v}} for changed columns only';

-- Configs: one sync job between two endpoints.
CREATE TABLE sync_configs (
    id                 bigserial   PRIMARY KEY,
    name               text        NOT NULL UNIQUE,
    source_system      text        NOT NULL,
    target_system      text        NOT NULL,
    entity_type        text        NOT NULL,
    target_entity_type text        NOT NULL,
    source_endpoint_id bigint      NOT NULL REFERENCES sync_endpoints(id),
    target_endpoint_id bigint      NOT NULL REFERENCES sync_endpoints(id),
    field_mapping      jsonb,
    conflict_strategy  text        NOT NULL DEFAULT 'latest_wins',
    sync_direction     text        NOT NULL DEFAULT 'bidirectional',
    sync_interval      interval    NOT NULL DEFAULT '5 minutes',
    match_on           text[],
    enabled            boolean     NOT NULL DEFAULT true,
    -- snapshot (pg_snapshot text) up to which changes have been consumed; NULL = never run
    position           text,
    -- the sync_instance (database) the position was taken in; any other one means the
    -- config was restored from a dump and its next run reconciles (see src/core/cursor.rs)
    position_instance  uuid,
    last_run_at        timestamptz,
    next_run_at        timestamptz NOT NULL DEFAULT now(),
    -- failed scheduled runs in a row; the worker backs off on them
    consecutive_failures integer   NOT NULL DEFAULT 0,
    -- the role that created the config; running it or resolving its conflicts needs
    -- this role's privileges (see src/pg/security.rs)
    owner              regrole     NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Links: which source key corresponds to which target key, plus the base (shadow copy
-- of the mapped values both sides agreed on, in target column names).
CREATE TABLE sync_links (
    config_id     bigint      NOT NULL REFERENCES sync_configs(id) ON DELETE CASCADE,
    source_id     text        NOT NULL,
    target_id     text        NOT NULL,
    base          jsonb       NOT NULL,
    base_checksum text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (config_id, source_id),
    UNIQUE (config_id, target_id)
) WITH (fillfactor = 50);  -- room for HOT updates of every base on a page (a full sync)

CREATE TABLE sync_runs (
    id           bigserial   PRIMARY KEY,
    config_id    bigint      NOT NULL REFERENCES sync_configs(id) ON DELETE CASCADE,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at timestamptz,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'success', 'partial', 'failed')),
    started_by   text        NOT NULL DEFAULT 'manual',
    result       jsonb,
    error        text
);
CREATE INDEX sync_runs_config_idx ON sync_runs (config_id, started_at DESC);

CREATE TABLE sync_conflicts (
    id             bigserial   PRIMARY KEY,
    config_id      bigint      NOT NULL REFERENCES sync_configs(id) ON DELETE CASCADE,
    run_id         bigint,
    source_id      text,
    target_id      text,
    kind           text        NOT NULL DEFAULT 'update_update'
                   CHECK (kind IN ('update_update', 'delete_update', 'update_delete')),
    fields         text[]      NOT NULL,
    source_value   jsonb,
    target_value   jsonb,
    base_value     jsonb,
    strategy       text        NOT NULL,
    resolution     text        NOT NULL DEFAULT 'pending'
                   CHECK (resolution IN ('pending', 'source', 'target', 'merged')),
    resolved_value jsonb,
    resolved_by    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);
CREATE INDEX sync_conflicts_pending_idx ON sync_conflicts (config_id) WHERE resolution = 'pending';

-- Entities that failed to apply; retried by every run until they succeed.
CREATE TABLE sync_errors (
    id         bigserial   PRIMARY KEY,
    config_id  bigint      NOT NULL REFERENCES sync_configs(id) ON DELETE CASCADE,
    run_id     bigint,
    source_id  text,
    target_id  text,
    message    text        NOT NULL,
    sqlstate   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    retried_at timestamptz,
    resolved   boolean     NOT NULL DEFAULT false
);
CREATE INDEX sync_errors_open_idx ON sync_errors (config_id) WHERE NOT resolved;

-- The background workers of the whole cluster, from the launcher's shared memory: one
-- row per database it tracks (none unless sync_engine is in shared_preload_libraries).
-- The Rust functions are declared here so the views below can use them.
CREATE FUNCTION sync_worker_states(
    OUT datid oid, OUT datname text, OUT state text, OUT pid int, OUT started_at timestamptz,
    OUT last_tick timestamptz, OUT last_error text, OUT last_error_at timestamptz,
    OUT last_exit text, OUT starts bigint, OUT start_failures bigint)
RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_worker_states_wrapper';
CREATE VIEW sync_workers AS SELECT * FROM sync_worker_states();

-- Once the CREATE EXTENSION commits, the launcher starts this database's scheduler.
CREATE FUNCTION sync_wake_launcher() RETURNS void
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_wake_launcher_wrapper';
-- waking the launcher is for the extension script (and its owner); nobody else needs it
REVOKE EXECUTE ON FUNCTION sync_wake_launcher() FROM PUBLIC;
SELECT sync_wake_launcher();

-- For analysts and DBAs: one row per config with its last run, lag and open work.
-- The origin tag of config N's writes (change_log.origin): the one definition, used by
-- the engine (src/sync/config.rs loads it with the config) and by sync_status.
CREATE FUNCTION sync_config_origin(config_id bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'sync_engine:config:' || config_id;

CREATE VIEW sync_status AS
SELECT c.id AS config_id,
       c.name,
       c.enabled,
       c.sync_interval,
       c.last_run_at,
       c.next_run_at,
       c.consecutive_failures,
       r.status AS last_status,
       r.started_by AS last_started_by,
       r.result AS last_result,
       r.error AS last_error,
       (SELECT now() - min(l.changed_at)
          FROM change_log l
         WHERE c.position IS NOT NULL
           AND c.position_instance = (SELECT i.id FROM sync_instance i)
           AND l.txid >= pg_snapshot_xmin(c.position::pg_snapshot)
           AND NOT pg_visible_in_snapshot(l.txid, c.position::pg_snapshot)
           AND ((l.system = c.source_system AND l.entity_type = c.entity_type)
             OR (l.system = c.target_system AND l.entity_type = c.target_entity_type))
           AND l.origin IS DISTINCT FROM sync_config_origin(c.id)) AS lag,
       (SELECT count(*) FROM sync_conflicts k WHERE k.config_id = c.id AND k.resolution = 'pending') AS pending_conflicts,
       (SELECT count(*) FROM sync_errors e WHERE e.config_id = c.id AND NOT e.resolved) AS open_errors,
       (SELECT count(*) FROM sync_runs f
         WHERE f.config_id = c.id AND f.status IN ('failed', 'partial') AND f.started_at > now() - interval '1 day')
         AS failed_runs_last_day,
       (SELECT w.pid FROM sync_worker_states() w
         WHERE w.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND w.state = 'running') AS scheduler_pid
  FROM sync_configs c
  LEFT JOIN LATERAL (SELECT * FROM sync_runs r WHERE r.config_id = c.id ORDER BY r.started_at DESC, r.id DESC LIMIT 1) r
         ON true;

-- pg_dump: the tables holding the user's setup and history are configuration tables, so
-- a dump carries their rows (and their sequences' values) and a restore puts them back
-- after CREATE EXTENSION. change_log is not: its transaction ids mean nothing in another
-- database, and a config restored with a foreign position reconciles every row through
-- its links instead (docs/operations.md "Backup and restore"). sync_instance is not either (see
-- above): that is how a restore is told apart from the original.
SELECT pg_catalog.pg_extension_config_dump('sync_endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('sync_endpoints_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync_configs', '');
SELECT pg_catalog.pg_extension_config_dump('sync_configs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync_links', '');
SELECT pg_catalog.pg_extension_config_dump('sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('sync_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync_conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('sync_conflicts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sync_errors', '');
SELECT pg_catalog.pg_extension_config_dump('sync_errors_id_seq', '');

-- Offline clients and connectors (sync_push / sync_pull / sync_snapshot, src/offline).
-- A conflict of a pushed change has no config: it belongs to an endpoint and a client.
-- source_* is the client's side (what it pushed), target_* the endpoint table's.
ALTER TABLE sync_conflicts
    ALTER COLUMN config_id DROP NOT NULL,
    ADD COLUMN endpoint_id bigint REFERENCES sync_endpoints(id) ON DELETE CASCADE,
    ADD COLUMN client_id   text,
    ADD COLUMN change_id   text,
    ADD CONSTRAINT sync_conflicts_one_origin CHECK (
        num_nonnulls(config_id, client_id) = 1
        AND (client_id IS NULL) = (endpoint_id IS NULL)
        AND (client_id IS NULL) = (change_id IS NULL));
CREATE INDEX sync_conflicts_push_pending_idx ON sync_conflicts (endpoint_id, client_id)
    WHERE resolution = 'pending' AND client_id IS NOT NULL;

-- The change ids a client pushed, per (endpoint, client): a batch sent again answers
-- "duplicate" for each. Written in the same transaction as the push's writes; pruned
-- after sync_engine.push_id_retention hours (with change_log).
CREATE TABLE sync_push_ids (
    endpoint_id bigint      NOT NULL REFERENCES sync_endpoints(id) ON DELETE CASCADE,
    client_id   text        NOT NULL,
    change_id   text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('applied', 'conflict', 'rejected')),
    -- the answer given the first time (the results element)
    result      jsonb,
    pushed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint_id, client_id, change_id)
);
CREATE INDEX sync_push_ids_pushed_at_idx ON sync_push_ids (pushed_at);

-- Per endpoint, the highest transaction id whose change records pruning deleted: a
-- pull cursor that has not passed it may have lost changes (answer: reset_required).
-- Not dumped: it describes this database's change_log, as positions do.
CREATE TABLE sync_log_horizon (
    system      text        NOT NULL,
    entity_type text        NOT NULL,
    pruned_txid xid8        NOT NULL,
    pruned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system, entity_type)
);
SELECT pg_catalog.pg_extension_config_dump('sync_push_ids', '');
