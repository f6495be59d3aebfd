//! search_path and shadowing (issue 17): every statement the extension runs — from its
//! SQL functions, the capture trigger, the scheduler and the notifier — resolves names
//! in pg_catalog and its own schema only. A schema of hostile objects (functions and
//! operators with the built-ins' exact or better-matching signatures, tables and views
//! named like the extension's) is put on the caller's path *before* pg_catalog, or made
//! the database's default path for the workers; each hostile object counts its calls
//! in a sequence (not rolled back with an error), which must stay unused.

/// SQL making schema `s` of hostile objects. Every function calls `s.hit(name)` (which
/// takes a value of `s.hits` and logs the name in `s.calls`), then does what the
/// built-in does, so that a statement resolving it still works and the count tells.
#[cfg(test)]
pub fn hostile_schema_sql(s: &str) -> String {
    let mut sql = format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE;
         CREATE SCHEMA {s};
         GRANT USAGE ON SCHEMA {s} TO PUBLIC;
         CREATE SEQUENCE {s}.hits;
         GRANT USAGE, SELECT, UPDATE ON SEQUENCE {s}.hits TO PUBLIC;
         CREATE TABLE {s}.calls (name text, by_role text DEFAULT current_user);
         GRANT INSERT, SELECT ON {s}.calls TO PUBLIC;
         CREATE FUNCTION {s}.hit(n text) RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN
           PERFORM pg_catalog.nextval('{s}.hits');
           BEGIN INSERT INTO {s}.calls (name) VALUES (n);
           EXCEPTION WHEN OTHERS THEN NULL; END;
           RETURN true;
         END $f$;
"
    );
    // (name, arguments, return type, the built-in's call)
    let functions: &[(&str, &str, &str, &str)] = &[
        ("now", "", "timestamptz", "pg_catalog.now()"),
        (
            "clock_timestamp",
            "",
            "timestamptz",
            "pg_catalog.clock_timestamp()",
        ),
        (
            "pg_backend_pid",
            "",
            "integer",
            "pg_catalog.pg_backend_pid()",
        ),
        (
            "pg_current_snapshot",
            "",
            "pg_snapshot",
            "pg_catalog.pg_current_snapshot()",
        ),
        (
            "pg_current_xact_id",
            "",
            "xid8",
            "pg_catalog.pg_current_xact_id()",
        ),
        (
            "pg_current_xact_id_if_assigned",
            "",
            "xid8",
            "pg_catalog.pg_current_xact_id_if_assigned()",
        ),
        (
            "pg_visible_in_snapshot",
            "a xid8, b pg_snapshot",
            "boolean",
            "pg_catalog.pg_visible_in_snapshot(a, b)",
        ),
        (
            "pg_snapshot_xmin",
            "a pg_snapshot",
            "xid8",
            "pg_catalog.pg_snapshot_xmin(a)",
        ),
        (
            "pg_try_advisory_xact_lock",
            "a integer, b integer",
            "boolean",
            "pg_catalog.pg_try_advisory_xact_lock(a, b)",
        ),
        ("lower", "a text", "text", "pg_catalog.lower(a)"),
        ("upper", "a text", "text", "pg_catalog.upper(a)"),
        ("btrim", "a text", "text", "pg_catalog.btrim(a)"),
        (
            "format",
            "a text, b text",
            "text",
            "pg_catalog.format(a, b)",
        ),
        ("nextval", "a regclass", "bigint", "pg_catalog.nextval(a)"),
        ("sha256", "a bytea", "bytea", "pg_catalog.sha256(a)"),
        (
            "encode",
            "a bytea, b text",
            "text",
            "pg_catalog.encode(a, b)",
        ),
        (
            "convert_to",
            "a text, b name",
            "bytea",
            "pg_catalog.convert_to(a, b)",
        ),
        ("to_jsonb", "a text", "jsonb", "pg_catalog.to_jsonb(a)"),
        (
            "jsonb_build_object",
            "a text, b text",
            "jsonb",
            "pg_catalog.jsonb_build_object(a, b)",
        ),
        (
            "power",
            "a integer, b integer",
            "double precision",
            "pg_catalog.power(a, b)",
        ),
        (
            "current_setting",
            "a text",
            "text",
            "pg_catalog.current_setting(a)",
        ),
        (
            "current_database",
            "",
            "name",
            "pg_catalog.current_database()",
        ),
        (
            "cardinality",
            "a anyarray",
            "integer",
            "pg_catalog.cardinality(a)",
        ),
        (
            "array_length",
            "a anyarray, b integer",
            "integer",
            "pg_catalog.array_length(a, b)",
        ),
        (
            "jsonb_populate_record",
            "a anyelement, b jsonb",
            "anyelement",
            "pg_catalog.jsonb_populate_record(a, b)",
        ),
    ];
    for (name, args, ret, call) in functions {
        sql.push_str(&format!(
            "CREATE FUNCTION {s}.{name}({args}) RETURNS {ret} LANGUAGE plpgsql AS $f$
             BEGIN PERFORM {s}.hit('{name}'); RETURN {call}; END $f$;\n"
        ));
    }
    // set-returning ones
    sql.push_str(&format!(
        "CREATE FUNCTION {s}.jsonb_each(a jsonb, OUT key text, OUT value jsonb) RETURNS SETOF record
           LANGUAGE plpgsql AS $f$ BEGIN PERFORM {s}.hit('jsonb_each');
           RETURN QUERY SELECT * FROM pg_catalog.jsonb_each(a); END $f$;
         CREATE FUNCTION {s}.jsonb_object_keys(a jsonb) RETURNS SETOF text
           LANGUAGE plpgsql AS $f$ BEGIN PERFORM {s}.hit('jsonb_object_keys');
           RETURN QUERY SELECT * FROM pg_catalog.jsonb_object_keys(a); END $f$;
         CREATE FUNCTION {s}.unnest(a text[]) RETURNS SETOF text
           LANGUAGE plpgsql AS $f$ BEGIN PERFORM {s}.hit('unnest');
           RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $f$;
         CREATE FUNCTION {s}.generate_series(a integer, b integer) RETURNS SETOF integer
           LANGUAGE plpgsql AS $f$ BEGIN PERFORM {s}.hit('generate_series');
           RETURN QUERY SELECT * FROM pg_catalog.generate_series(a, b); END $f$;
         CREATE FUNCTION {s}.generate_series(a bigint, b bigint) RETURNS SETOF bigint
           LANGUAGE plpgsql AS $f$ BEGIN PERFORM {s}.hit('generate_series');
           RETURN QUERY SELECT * FROM pg_catalog.generate_series(a, b); END $f$;\n"
    ));
    // operators: (name, left, right, the built-in operator's function)
    let operators: &[(&str, &str, &str, &str, &str)] = &[
        ("eq_text", "=", "text", "text", "a OPERATOR(pg_catalog.=) b"),
        (
            "eq_int8",
            "=",
            "bigint",
            "bigint",
            "a OPERATOR(pg_catalog.=) b",
        ),
        (
            "eq_int4",
            "=",
            "integer",
            "integer",
            "a OPERATOR(pg_catalog.=) b",
        ),
        (
            "ne_text",
            "<>",
            "text",
            "text",
            "a OPERATOR(pg_catalog.<>) b",
        ),
        (
            "cat_text",
            "||",
            "text",
            "text",
            "a OPERATOR(pg_catalog.||) b",
        ),
        (
            "get_text",
            "->>",
            "jsonb",
            "text",
            "a OPERATOR(pg_catalog.->>) b",
        ),
        (
            "get_json",
            "->",
            "jsonb",
            "text",
            "a OPERATOR(pg_catalog.->) b",
        ),
        (
            "has_key",
            "?",
            "jsonb",
            "text",
            "a OPERATOR(pg_catalog.?) b",
        ),
        (
            "ge_xid8",
            ">=",
            "xid8",
            "xid8",
            "a OPERATOR(pg_catalog.>=) b",
        ),
        ("lt_xid8", "<", "xid8", "xid8", "a OPERATOR(pg_catalog.<) b"),
        (
            "lt_tstz",
            "<",
            "timestamptz",
            "timestamptz",
            "a OPERATOR(pg_catalog.<) b",
        ),
        (
            "le_tstz",
            "<=",
            "timestamptz",
            "timestamptz",
            "a OPERATOR(pg_catalog.<=) b",
        ),
        (
            "tstz_plus",
            "+",
            "timestamptz",
            "interval",
            "a OPERATOR(pg_catalog.+) b",
        ),
        (
            "tstz_minus",
            "-",
            "timestamptz",
            "interval",
            "a OPERATOR(pg_catalog.-) b",
        ),
        // no built-in takes (bigint, interval): a better match than float8 * interval
        (
            "int8_times_interval",
            "*",
            "bigint",
            "interval",
            "a::float8 OPERATOR(pg_catalog.*) b",
        ),
    ];
    for (f, op, l, r, body) in operators {
        let ret = match *op {
            "||" => "text",
            "->>" => "text",
            "->" => "jsonb",
            "+" | "-" => "timestamptz",
            "*" => "interval",
            _ => "boolean",
        };
        sql.push_str(&format!(
            "CREATE FUNCTION {s}.{f}(a {l}, b {r}) RETURNS {ret} LANGUAGE plpgsql AS $f$
             BEGIN PERFORM {s}.hit('{op}'); RETURN {body}; END $f$;
             CREATE OPERATOR {s}.{op} (LEFTARG = {l}, RIGHTARG = {r}, FUNCTION = {s}.{f});\n"
        ));
    }
    // relations named like the extension's and the catalogs it reads: a read counts
    for rel in [
        "change_log",
        "sync_configs",
        "sync_endpoints",
        "sync_links",
        "sync_runs",
        "sync_conflicts",
        "sync_errors",
        "sync_push_ids",
        "sync_clients",
        "sync_instance",
        "sync_webhooks",
        "sync_outbox",
        "sync_deliveries",
        "pg_stat_activity",
        "pg_extension",
        "pg_class",
    ] {
        sql.push_str(&format!(
            "CREATE VIEW {s}.{rel} AS SELECT 1 AS x WHERE {s}.hit('{rel}');\n"
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::hostile_schema_sql;
    use crate::pgtests::fixture::{Db, MAPPING};
    use serde_json::{json, Value};

    const EVIL: &str = "sh_evil";
    /// The caller's path while a step runs: the hostile schema first, pg_catalog after
    /// it (so even exact-signature built-ins lose), the extension's schema last.
    const HOSTILE_PATH: &str = "SET search_path = sh_evil, pg_catalog, public";

    fn hits(db: &mut Db) -> Value {
        db.exec("RESET search_path; RESET ROLE");
        db.json(&format!(
            "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {EVIL}.hits) AS hits,
                    (SELECT coalesce(jsonb_agg(DISTINCT name), '[]') FROM {EVIL}.calls) AS names"
        ))
    }

    /// Run `steps` with the hostile path, then assert that nothing of the hostile schema
    /// was used. The steps themselves use nothing it shadows (ids are literals).
    fn hostile(db: &mut Db, what: &str, steps: &str) {
        db.exec(&format!("{HOSTILE_PATH}; {steps}"));
        let h = hits(db);
        assert_eq!(
            h["hits"], 0,
            "{what}: the extension resolved objects of the caller's hostile schema: {h}"
        );
    }

    #[test]
    fn every_public_function_resolves_names_in_pg_catalog_and_its_schema_only() {
        let mut db = Db::new();
        db.exec(&hostile_schema_sql(EVIL));
        db.exec(
            "DROP SCHEMA IF EXISTS sh CASCADE;
             CREATE SCHEMA sh;
             CREATE TABLE sh.crm (id serial PRIMARY KEY, full_name text, email text, phone text);
             CREATE SEQUENCE sh.hub_seq START 1000;
             CREATE TABLE sh.hub (id text PRIMARY KEY DEFAULT 'hs-' || nextval('sh.hub_seq'),
                                  firstname text, lastname text, email text, phone text);
             DELETE FROM sync_clients WHERE client_id = 'sh-dev';",
        );
        // the control: the hostile schema does catch a plain call
        db.exec(&format!("{HOSTILE_PATH}; SELECT now()"));
        assert_eq!(hits(&mut db)["hits"], 1, "the hostile now() catches a call");
        db.exec(&format!(
            "ALTER SEQUENCE {EVIL}.hits RESTART; TRUNCATE {EVIL}.calls"
        ));

        hostile(
            &mut db,
            "register and create a config",
            &format!(
                "SELECT sync_register_table('sh_crm', 'contacts', 'sh.crm');
                 SELECT sync_register_table('sh_hub', 'contacts', 'sh.hub');
                 SELECT sync_create_config('sh', 'sh_crm', 'sh_hub', 'contacts', '{MAPPING}',
                                           'manual', 'bidirectional', match_on => ARRAY['email']);
                 -- disabled in the same transaction, with the usual path: run by hand,
                 -- never by the worker (which would race this test's own runs: 55P03)
                 RESET search_path;
                 UPDATE sync_configs SET enabled = false WHERE name = 'sh';"
            ),
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'sh'")["id"]
            .as_i64()
            .unwrap();
        // creates (the key default through format()), updates, a conflict, deletes
        hostile(
            &mut db,
            "sync_execute creating rows",
            &format!(
                "INSERT INTO sh.crm (full_name, email, phone) VALUES ('Ada Lovelace', 'Ada@X.io', '1'), ('Bo Di', 'bo@x.io', '2');
                 SELECT sync_execute({c});"
            ),
        );
        assert_eq!(
            db.rows("SELECT firstname, lastname, email FROM sh.hub ORDER BY email"),
            json!([{"firstname": "Ada", "lastname": "Lovelace", "email": "ada@x.io"},
                   {"firstname": "Bo", "lastname": "Di", "email": "bo@x.io"}])
        );
        hostile(
            &mut db,
            "sync_execute updating, deleting and queueing a conflict",
            &format!(
                "UPDATE sh.hub SET phone = '9' WHERE email OPERATOR(pg_catalog.=) 'bo@x.io';
                 UPDATE sh.crm SET full_name = 'Ada King' WHERE email OPERATOR(pg_catalog.=) 'Ada@X.io';
                 UPDATE sh.crm SET email = 'c@x.io' WHERE full_name OPERATOR(pg_catalog.=) 'Bo Di';
                 UPDATE sh.hub SET email = 'd@x.io' WHERE firstname OPERATOR(pg_catalog.=) 'Bo';
                 SELECT sync_execute({c});"
            ),
        );
        let k = db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"
        ))["id"]
            .as_i64()
            .expect("a pending conflict");
        hostile(
            &mut db,
            "sync_resolve_conflict",
            &format!("SELECT sync_resolve_conflict({k}, 'merged', '{{\"email\": \"e@x.io\"}}');"),
        );
        hostile(
            &mut db,
            "deletes",
            &format!("DELETE FROM sh.crm WHERE full_name OPERATOR(pg_catalog.=) 'Ada King'; SELECT sync_execute({c});"),
        );
        assert_eq!(
            db.rows("SELECT firstname, email, phone FROM sh.hub ORDER BY email"),
            json!([{"firstname": "Bo", "email": "e@x.io", "phone": "9"}])
        );
        // offline clients, changes, webhooks, pruning
        let bo = db.json("SELECT id FROM sh.crm")["id"].as_i64().unwrap();
        hostile(
            &mut db,
            "sync_push, sync_pull, sync_snapshot",
            &format!(
                r#"SELECT sync_push('sh_crm', 'contacts', '[{{"id": "p1", "entity_id": "{bo}", "operation": "update",
                      "changed_at": "2026-01-01T00:00:00Z", "fields": {{"phone": {{"old": "9", "new": "10"}}}}}},
                     {{"id": "p2", "entity_id": "77", "operation": "insert", "changed_at": 1767225600000,
                      "fields": {{"full_name": {{"new": "New Person"}}}}}}]', 'sh-dev', 'latest_wins');
                   SELECT sync_push('sh_crm', 'contacts', '[{{"id": "p1", "entity_id": "{bo}", "operation": "update",
                      "changed_at": "2026-01-01T00:00:00Z", "fields": {{"phone": {{"old": "9", "new": "10"}}}}}}]', 'sh-dev', 'manual');
                   SELECT sync_pull('sh_crm', 'contacts', (sync_pull('sh_crm', 'contacts')) OPERATOR(pg_catalog.->>) 'cursor', 10, 'sh-dev');
                   SELECT sync_snapshot('sh_crm', 'contacts', NULL, 10);"#
            ),
        );
        assert_eq!(
            db.json(&format!("SELECT phone FROM sh.crm WHERE id = {bo}"))["phone"],
            "10"
        );
        hostile(
            &mut db,
            "sync_changes, sync_position, sync_status, sync_prune",
            "SELECT count(*) FROM sync_changes(NULL, sync_position(), 'sh_crm', 'contacts');
             SELECT count(*) FROM sync_status;
             SELECT sync_prune('1 hour');",
        );
        hostile(
            &mut db,
            "webhooks",
            "SELECT sync_webhook_secret(sync_add_webhook('http://127.0.0.1:9/sh', ARRAY['run.failed']));",
        );
        let w = db
            .json("SELECT max(id) AS id FROM sync_webhooks WHERE url = 'http://127.0.0.1:9/sh'")
            ["id"]
            .as_i64()
            .unwrap();
        hostile(
            &mut db,
            "sync_remove_webhook",
            &format!("SELECT sync_remove_webhook({w});"),
        );
        let e = db.err(&format!("{HOSTILE_PATH}; SELECT sync_redeliver(987654321)"));
        assert!(e.starts_with("42704"), "{e}");
        assert_eq!(hits(&mut db)["hits"], 0, "sync_redeliver");
        db.exec(&format!("DELETE FROM sync_configs WHERE id = {c}"));
        hostile(
            &mut db,
            "sync_unregister_table",
            "SELECT sync_unregister_table('sh_crm', 'contacts'); SELECT sync_unregister_table('sh_hub', 'contacts');",
        );
        db.exec("DELETE FROM sync_clients WHERE client_id = 'sh-dev'");
    }

    /// The capture trigger runs as the writer, with the writer's search_path. Its usual
    /// path is SQL-free; when a DBA has changed change_log (here: a trigger on it) the
    /// records go in through SPI, which must name nothing the writer's path could
    /// shadow (`$n * interval` has no exact built-in: a (bigint, interval) operator
    /// anywhere on the path wins) and must not need a grant on change_log.
    #[test]
    fn the_capture_triggers_spi_path_writes_as_the_extension_owner_with_its_path() {
        let mut db = Db::new();
        db.exec(&hostile_schema_sql("sht_evil"));
        db.exec(
            "DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sht_app') THEN
                 EXECUTE 'DROP OWNED BY sht_app CASCADE'; EXECUTE 'DROP ROLE sht_app';
               END IF;
             END $$;
             CREATE ROLE sht_app NOLOGIN;
             DROP SCHEMA IF EXISTS sht CASCADE;
             CREATE SCHEMA sht;
             CREATE TABLE sht.t (id int PRIMARY KEY, v text);
             GRANT USAGE ON SCHEMA sht TO sht_app;
             GRANT SELECT, INSERT, UPDATE, DELETE ON sht.t TO sht_app;
             SELECT sync_register_table('sht_t', 'x', 'sht.t');",
        );
        // one transaction: the DBA's trigger on change_log is seen by nobody else
        let mut tx = db.0.transaction().unwrap();
        tx.batch_execute(
            "CREATE TABLE sht.seen (entity_id text);
             CREATE FUNCTION sht.seen_fn() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN INSERT INTO sht.seen VALUES (NEW.entity_id); RETURN NEW; END $f$;
             CREATE TRIGGER sht_seen AFTER INSERT ON change_log FOR EACH ROW EXECUTE FUNCTION sht.seen_fn();
             SET LOCAL ROLE sht_app;
             SET LOCAL search_path = sht_evil, pg_catalog, public;
             INSERT INTO sht.t VALUES (1, 'a'), (2, 'b');
             UPDATE sht.t SET v = 'c' WHERE id OPERATOR(pg_catalog.=) 1;
             DELETE FROM sht.t WHERE id OPERATOR(pg_catalog.=) 2;
             RESET ROLE;
             RESET search_path;",
        )
        .unwrap_or_else(|e| panic!("the app role's writes: {e:?}"));
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM change_log WHERE system = 'sht_t'),
                        (SELECT count(*) FROM sht.seen),
                        (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sht_evil.hits)",
                &[],
            )
            .unwrap();
        let (records, seen, hits): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        tx.rollback().unwrap();
        assert_eq!(records, 4, "two inserts, an update, a delete");
        assert_eq!(seen, 4, "through the SPI path (the DBA's trigger saw them)");
        assert_eq!(hits, 0, "nothing of the writer's hostile path ran");
        db.exec("SELECT sync_unregister_table('sht_t', 'x')");
    }
}

/// The scheduler and the notifier: their own sessions take the database's default
/// search_path, which the database owner sets. A cluster of its own (the default path
/// of a database is a server-wide change for its sessions).
#[cfg(test)]
mod worker_tests {
    use super::hostile_schema_sql;
    use crate::pgtests::throwaway::{value, Throwaway};

    const DIR: &str = "/var/tmp/hostile_worker_path";
    const PORT: u16 = 56301;

    /// Poll `sql` on `c` (whose search_path is safe) until it gives `want`, up to 60 s.
    fn wait_on(c: &mut postgres::Client, sql: &str, want: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let got = value(c, sql);
            if got == want || start.elapsed() > std::time::Duration::from_secs(60) {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    #[test]
    fn the_workers_resolve_names_in_pg_catalog_whatever_the_databases_default_path() {
        super::super::concurrent::cluster(); // the extension is installed by the framework
        let cluster = Throwaway::start(
            DIR,
            PORT,
            "-c sync_engine.database=postgres -c sync_engine.naptime=1 -c sync_engine.log_retention=0",
        );
        cluster.exec(
            "postgres",
            &format!(
                "{}
                 ALTER DATABASE postgres SET search_path = wk_evil, pg_catalog, public;",
                hostile_schema_sql("wk_evil")
            ),
        );
        let mut c = cluster.connect("postgres");
        // this session's own statements must not use the hostile schema either
        c.batch_execute(
            "SET search_path = public;
             CREATE EXTENSION sync_engine;
             CREATE TABLE a (id serial PRIMARY KEY, v text);
             CREATE TABLE b (id text PRIMARY KEY DEFAULT 'b-' || nextval('a_id_seq'), v text);
             CREATE TABLE broken (id int PRIMARY KEY, v text);
             SELECT sync_register_table('a', 'x', 'a'), sync_register_table('b', 'x', 'b'),
                    sync_register_table('broken', 'x', 'broken');
             SELECT sync_create_config('ab', 'a', 'b', 'x', sync_interval => '1 second');
             SELECT sync_create_config('broken', 'a', 'broken', 'x', sync_interval => '1 second');
             DROP TABLE broken;
             SELECT sync_add_webhook('http://127.0.0.1:9/hostile', ARRAY['run.completed', 'run.failed']);
             INSERT INTO a (v) VALUES ('one'), ('two');",
        )
        .unwrap();
        assert_eq!(
            wait_on(&mut c, "SELECT count(*) FROM b", "2"),
            "2",
            "the worker syncs"
        );
        c.batch_execute("UPDATE b SET v = 'three' WHERE v = 'two'; DELETE FROM a WHERE v = 'one';")
            .unwrap();
        assert_eq!(
            wait_on(&mut c, "SELECT string_agg(v, ',') FROM a", "three"),
            "three",
            "updates and deletes flow back"
        );
        assert_eq!(
            wait_on(
                &mut c,
                "SELECT count(*) > 0 FROM sync_runs r JOIN sync_configs g ON g.id = r.config_id
                  WHERE g.name = 'broken' AND r.status = 'failed' AND g.consecutive_failures > 0",
                "true"
            ),
            "true",
            "the failing config's failure is recorded and its back-off computed"
        );
        assert_eq!(
            wait_on(
                &mut c,
                "SELECT bool_or(attempts > 0) FROM sync_deliveries",
                "true"
            ),
            "true",
            "the notifier tried the receiver"
        );
        // the scheduler pruned (every 10 s; the retention is 0): b's records, which its
        // only config has consumed, are gone
        assert_eq!(
            wait_on(
                &mut c,
                "SELECT count(*) FROM change_log WHERE system = 'b'",
                "0"
            ),
            "0",
            "pruning ran"
        );
        let hits = value(
            &mut c,
            "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM wk_evil.hits) || ' ' ||
                    (SELECT coalesce(string_agg(DISTINCT name, ','), '') FROM wk_evil.calls)",
        );
        assert_eq!(
            hits, "0 ",
            "the workers used the database's hostile default path"
        );
        // the control: a new session does take the hostile default
        let mut fresh = cluster.connect("postgres");
        value(&mut fresh, "SELECT now()");
        drop(fresh);
        assert_eq!(
            value(&mut c, "SELECT last_value FROM wk_evil.hits"),
            "1",
            "a session with the database's default path calls the hostile now()"
        );
    }
}
