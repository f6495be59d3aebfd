-- sync_engine notifications: the outbox, webhook subscriptions and their deliveries,
-- and the triggers that write events in the same transaction as what they describe
-- (see src/notify/mod.rs and docs/notify.md).

-- Webhook subscriptions. Holds receiver URLs and secrets: readable by the extension's
-- owner only (no grants; sync_webhook_secret reads a secret back).
CREATE TABLE sync_webhooks (
    id              bigserial   PRIMARY KEY,
    url             text        NOT NULL,
    events          text[]      NOT NULL,
    secret          text        NOT NULL,
    -- false once the receiver answered 410 Gone; nothing more is delivered to it
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every event, once; payload is the Standard Webhooks body {"type","timestamp","data"}.
-- stream_pending: still to be XADDed to Redis (set when sync_engine.redis_url was set).
CREATE TABLE sync_outbox (
    id             bigserial   PRIMARY KEY,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    stream_pending boolean     NOT NULL DEFAULT false
);
CREATE INDEX sync_outbox_stream_idx ON sync_outbox (id) WHERE stream_pending;
-- the worker's pruning reads the events older than the retention, not the whole outbox
CREATE INDEX sync_outbox_created_idx ON sync_outbox (created_at);

-- One row per event and subscription. For DBAs to query (no URL or secret in it).
CREATE TABLE sync_deliveries (
    id              bigserial   PRIMARY KEY,
    webhook_id      bigint      NOT NULL REFERENCES sync_webhooks(id) ON DELETE CASCADE,
    event_id        bigint      NOT NULL REFERENCES sync_outbox(id) ON DELETE CASCADE,
    event_type      text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_deliveries_due_idx ON sync_deliveries (webhook_id, next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX sync_deliveries_event_idx ON sync_deliveries (event_id);
CREATE INDEX sync_deliveries_delivered_idx ON sync_deliveries (delivered_at)
    WHERE status = 'delivered';

-- Where changes.available last looked: one row, the snapshot up to which changes were
-- announced (NULL: nobody listens; the next listener starts from then).
CREATE TABLE sync_notify_state (
    one_row  boolean NOT NULL DEFAULT true PRIMARY KEY CHECK (one_row),
    position text
);
INSERT INTO sync_notify_state DEFAULT VALUES;

-- Whether sync_engine.redis_url is set (read in C: the setting is superuser-only).
CREATE FUNCTION sync_notify_redis_enabled() RETURNS boolean
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_notify_redis_enabled_wrapper';
-- Once the transaction commits, wake this database's notifier.
CREATE FUNCTION sync_notify_wake() RETURNS void
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_notify_wake_wrapper';
REVOKE ALL ON FUNCTION sync_notify_redis_enabled() FROM PUBLIC;
REVOKE ALL ON FUNCTION sync_notify_wake() FROM PUBLIC;

-- Whether an event of type p_type has anyone to go to: a webhook subscribed to it, or
-- Redis.
CREATE FUNCTION sync_event_wanted(p_type text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp AS $$
    SELECT sync_notify_redis_enabled()
        OR EXISTS (SELECT 1 FROM sync_webhooks w WHERE w.enabled AND p_type = ANY (w.events))
$$;

-- Write events of type p_type, one per element of p_data (in order), to the outbox,
-- with a delivery per subscribed webhook. Nothing when nobody wants them.
CREATE FUNCTION sync_emit(p_type text, p_data jsonb[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp AS $$
DECLARE
    v_stream boolean := sync_notify_redis_enabled();
    v_ts text := to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
BEGIN
    IF coalesce(cardinality(p_data), 0) = 0 THEN
        RETURN;
    END IF;
    IF NOT v_stream AND NOT EXISTS (SELECT 1 FROM sync_webhooks w WHERE w.enabled AND p_type = ANY (w.events)) THEN
        RETURN;
    END IF;
    WITH ev AS (
        INSERT INTO sync_outbox (event_type, payload, stream_pending)
        SELECT p_type, jsonb_build_object('type', p_type, 'timestamp', v_ts, 'data', u.d), v_stream
          FROM unnest(p_data) WITH ORDINALITY AS u(d, n)
         ORDER BY u.n
        RETURNING id)
    INSERT INTO sync_deliveries (webhook_id, event_id, event_type)
    SELECT w.id, ev.id, p_type
      FROM ev CROSS JOIN sync_webhooks w
     WHERE w.enabled AND p_type = ANY (w.events)
     ORDER BY ev.id, w.id;
    PERFORM sync_notify_wake();
END $$;
REVOKE ALL ON FUNCTION sync_emit(text, jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION sync_event_wanted(text) FROM PUBLIC;

-- run.completed / run.failed: a run reaching its final status (by whoever writes it:
-- the run itself, the worker recording a failure, the recovery of dead runs).
CREATE FUNCTION sync_runs_notify() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp AS $$
DECLARE
    v_type text := CASE WHEN NEW.status = 'failed' THEN 'run.failed' ELSE 'run.completed' END;
BEGIN
    IF sync_event_wanted(v_type) THEN
        PERFORM sync_emit(v_type, ARRAY[
            coalesce(NEW.result, '{}'::jsonb) || jsonb_build_object(
                'run_id', NEW.id,
                'config_id', NEW.config_id,
                'config_name', (SELECT c.name FROM sync_configs c WHERE c.id = NEW.config_id),
                'status', NEW.status,
                'started_by', NEW.started_by,
                'started_at', NEW.started_at,
                'completed_at', NEW.completed_at,
                'error', NEW.error)]);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_runs_notify_insert AFTER INSERT ON sync_runs
    FOR EACH ROW WHEN (NEW.status IN ('success', 'partial', 'failed'))
    EXECUTE FUNCTION sync_runs_notify();
CREATE TRIGGER sync_runs_notify_update AFTER UPDATE ON sync_runs
    FOR EACH ROW WHEN (NEW.status IN ('success', 'partial', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION sync_runs_notify();

-- conflict.created (every inserted conflict, auto-resolved ones with their resolution)
-- and conflict.resolved (a pending conflict getting a resolution). The data is the
-- row as JSON (conflict_id for id), so columns added later come along.
CREATE FUNCTION sync_conflicts_notify_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp AS $$
BEGIN
    -- a statement trigger also fires for an INSERT of no rows
    IF EXISTS (SELECT 1 FROM sync_conflict_rows_new) AND sync_event_wanted('conflict.created') THEN
        PERFORM sync_emit('conflict.created', ARRAY(
            SELECT jsonb_build_object('conflict_id', n.id) || (to_jsonb(n) - 'id')
              FROM sync_conflict_rows_new n ORDER BY n.id));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_conflicts_notify_insert AFTER INSERT ON sync_conflicts
    REFERENCING NEW TABLE AS sync_conflict_rows_new
    FOR EACH STATEMENT EXECUTE FUNCTION sync_conflicts_notify_insert();

CREATE FUNCTION sync_conflicts_notify_resolved() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp AS $$
BEGIN
    IF sync_event_wanted('conflict.resolved') THEN
        PERFORM sync_emit('conflict.resolved', ARRAY[
            jsonb_build_object('conflict_id', NEW.id) || (to_jsonb(NEW) - 'id')]);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_conflicts_notify_resolved AFTER UPDATE ON sync_conflicts
    FOR EACH ROW WHEN (OLD.resolution = 'pending' AND NEW.resolution <> 'pending')
    EXECUTE FUNCTION sync_conflicts_notify_resolved();

-- pg_dump: subscriptions are the user's setup (their secrets included); deliveries and
-- the outbox are transient and are not dumped.
SELECT pg_catalog.pg_extension_config_dump('sync_webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('sync_webhooks_id_seq', '');
