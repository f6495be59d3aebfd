//! What the README promises about runs, capture and installation, each end to end
//! through real autocommit connections (the shared pgrx test cluster).

#[cfg(test)]
mod tests {
    use crate::pgtests::fixture::{crm_hub, Db};
    use serde_json::{json, Value};

    /// Everything a run can leave behind for config `c`, to compare before and after.
    fn state(db: &mut Db, c: i64, p: &str) -> Value {
        db.json(&format!(
            "SELECT (SELECT jsonb_agg(l ORDER BY source_id) FROM sync_links l WHERE config_id = {c}) AS links,
                    (SELECT position FROM sync_configs WHERE id = {c}) AS position,
                    (SELECT count(*) FROM sync_runs WHERE config_id = {c}) AS runs,
                    (SELECT count(*) FROM sync_conflicts WHERE config_id = {c}) AS conflicts,
                    (SELECT count(*) FROM sync_errors WHERE config_id = {c}) AS errors,
                    (SELECT jsonb_agg(h ORDER BY id) FROM {p}.hub h) AS hub,
                    (SELECT jsonb_agg(r ORDER BY id) FROM {p}.crm r) AS crm"
        ))
    }

    /// Make inserts into `{p}.hub` wait for advisory lock `key` (held by another session);
    /// updates do not wait.
    fn hub_waits_for(db: &mut Db, p: &str, key: i64) {
        db.exec(&format!(
            "CREATE FUNCTION {p}.wait() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NEW; END$$;
             CREATE TRIGGER wait BEFORE INSERT ON {p}.hub FOR EACH ROW EXECUTE FUNCTION {p}.wait();"
        ));
    }

    #[test]
    fn runs_refuse_isolation_levels_other_than_read_committed() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "cl_iso", "latest_wins", "bidirectional", "NULL");
        db.exec("INSERT INTO cl_iso.crm (full_name) VALUES ('Ann Lee')");
        let before = state(&mut db, c, "cl_iso");
        for level in ["REPEATABLE READ", "SERIALIZABLE"] {
            let e = db.err(&format!(
                "BEGIN ISOLATION LEVEL {level}; SELECT sync_execute({c});"
            ));
            db.exec("ROLLBACK");
            assert_eq!(
                e,
                format!(
                    "0A000: sync_execute must run at READ COMMITTED isolation, not {}",
                    level.to_lowercase()
                )
            );
        }
        assert_eq!(state(&mut db, c, "cl_iso"), before);
        assert_eq!(db.sync(c)["created"], 1);
    }

    #[test]
    fn a_rolled_back_run_leaves_links_position_runs_and_conflicts_as_they_were() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "cl_rb", "manual", "bidirectional", "NULL");
        db.exec(
            "INSERT INTO cl_rb.crm (full_name, phone) VALUES ('Ann Lee', '1'), ('Bob Ray', '2')",
        );
        db.sync(c);
        // a create, an update, a delete and a conflict for the next run
        db.exec(
            "INSERT INTO cl_rb.crm (full_name) VALUES ('Cy Doe');
             UPDATE cl_rb.crm SET phone = 'crm' WHERE id = 1;
             UPDATE cl_rb.hub SET phone = 'hub' WHERE firstname = 'Ann';
             DELETE FROM cl_rb.crm WHERE id = 2;",
        );
        let before = state(&mut db, c, "cl_rb");
        db.exec("BEGIN");
        let r = db.sync(c);
        assert_eq!(
            json!([r["created"], r["deleted"], r["conflicts"]]),
            json!([1, 1, 1]),
            "{r}"
        );
        assert_ne!(
            state(&mut db, c, "cl_rb"),
            before,
            "the run changed things in its transaction"
        );
        db.exec("ROLLBACK");
        assert_eq!(state(&mut db, c, "cl_rb"), before);
        // and the next run does the same work
        let r = db.sync(c);
        assert_eq!(
            json!([r["created"], r["deleted"], r["conflicts"]]),
            json!([1, 1, 1]),
            "{r}"
        );
    }

    /// A statement_timeout, and a cancel from another session, while the run waits in a
    /// trigger of the target: the run ends with 57014 and keeps nothing.
    #[test]
    fn a_timeout_or_cancel_mid_run_keeps_nothing() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "cl_cancel", "latest_wins", "bidirectional", "NULL");
        hub_waits_for(&mut db, "cl_cancel", 7101);
        db.exec(
            "INSERT INTO cl_cancel.crm (full_name) SELECT 'P ' || g FROM generate_series(1, 5) g",
        );
        let before = state(&mut db, c, "cl_cancel");
        // were the cancel taken for an error of one entity, the run would go on to wait
        // for the lock entity by entity: this ends that (and the test) in 10 s
        db.exec("SET lock_timeout = '10s'");
        let mut holder = Db::new();
        holder.exec("SELECT pg_advisory_lock(7101)");

        let e = db.err(&format!(
            "SET statement_timeout = '300ms'; SELECT sync_execute({c});"
        ));
        db.exec("RESET statement_timeout");
        assert_eq!(e, "57014: canceling statement due to statement timeout");
        assert_eq!(state(&mut db, c, "cl_cancel"), before);

        let pid = db.pid();
        let run = std::thread::spawn(move || {
            let e = db.err(&format!("SELECT sync_execute({c})"));
            (db, e)
        });
        let mut watcher = Db::new();
        watcher.wait_until_blocked(pid);
        watcher.exec(&format!("SELECT pg_cancel_backend({pid})"));
        let (mut db, e) = run.join().unwrap();
        assert_eq!(e, "57014: canceling statement due to user request");
        assert_eq!(state(&mut db, c, "cl_cancel"), before);

        holder.exec("SELECT pg_advisory_unlock(7101)");
        assert_eq!(db.sync(c)["created"], 5);
    }

    /// Row-level security's 42501 and a code a user trigger makes up are errors of that
    /// entity: recorded in sync_errors, the other rows synced, the run partial.
    #[test]
    fn row_level_security_and_user_trigger_errors_are_recorded_per_entity() {
        let mut db = Db::new();
        db.exec(
            "DO $$BEGIN CREATE ROLE cl_rls_owner; EXCEPTION WHEN duplicate_object THEN NULL; END$$;
             CREATE SCHEMA cl_rls;
             CREATE TABLE cl_rls.a (id int PRIMARY KEY, v text);
             CREATE TABLE cl_rls.b (id int PRIMARY KEY, v text);
             CREATE FUNCTION cl_rls.no_vip() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN IF NEW.v = 'vip' THEN RAISE EXCEPTION 'no vip rows here' USING ERRCODE = 'U0001'; END IF;
                       RETURN NEW; END$$;
             CREATE TRIGGER no_vip BEFORE INSERT ON cl_rls.b FOR EACH ROW EXECUTE FUNCTION cl_rls.no_vip();
             ALTER TABLE cl_rls.b ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY not_blocked ON cl_rls.b USING (true) WITH CHECK (v <> 'blocked');
             GRANT USAGE ON SCHEMA cl_rls TO cl_rls_owner;
             ALTER TABLE cl_rls.b OWNER TO cl_rls_owner;
             SELECT sync_register_table('cl_rls_a', 'x', 'cl_rls.a'), sync_register_table('cl_rls_b', 'x', 'cl_rls.b');
             SELECT sync_create_config('cl_rls', 'cl_rls_a', 'cl_rls_b', 'x');
             UPDATE sync_configs SET enabled = false WHERE name = 'cl_rls';
             INSERT INTO cl_rls.a VALUES (1, 'fine'), (2, 'blocked'), (3, 'vip'), (4, 'fine too');",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'cl_rls'")["id"]
            .as_i64()
            .unwrap();
        let r = db.sync(c);
        assert_eq!(json!([r["created"], r["errors"]]), json!([2, 2]), "{r}");
        assert_eq!(
            db.rows(&format!(
                "SELECT source_id, sqlstate, message FROM sync_errors WHERE config_id = {c} ORDER BY source_id"
            )),
            json!([
                {"source_id": "2", "sqlstate": "42501",
                 "message": "new row violates row-level security policy for table \"b\""},
                {"source_id": "3", "sqlstate": "XX000", "message": "no vip rows here"}
            ])
        );
        assert_eq!(
            db.json(&format!(
                "SELECT status FROM sync_runs WHERE config_id = {c} ORDER BY id DESC LIMIT 1"
            ))["status"],
            "partial"
        );
        assert_eq!(
            db.rows("SELECT id FROM cl_rls.b ORDER BY id"),
            json!([{"id": 1}, {"id": 4}])
        );
    }

    /// sync_resolve_conflict waits for a run of the conflict's config in progress, and
    /// then resolves against what that run committed.
    #[test]
    fn resolving_a_conflict_waits_for_a_running_run() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "cl_wait", "manual", "bidirectional", "NULL");
        db.exec("INSERT INTO cl_wait.crm (full_name, phone) VALUES ('Ann Lee', '1')");
        db.sync(c);
        db.exec(
            "UPDATE cl_wait.crm SET phone = 'crm' WHERE id = 1;
             UPDATE cl_wait.hub SET phone = 'hub' WHERE firstname = 'Ann';",
        );
        assert_eq!(db.sync(c)["conflicts"], 1);
        let conflict = db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"
        ))["id"]
            .as_i64()
            .unwrap();
        // a run in progress: it waits in a trigger of the mirror while creating Bob
        hub_waits_for(&mut db, "cl_wait", 7102);
        let mut holder = Db::new();
        holder.exec("SELECT pg_advisory_lock(7102)");
        db.exec("INSERT INTO cl_wait.crm (full_name) VALUES ('Bob Ray')");
        let run_pid = db.pid();
        let run = std::thread::spawn(move || {
            let r = db.sync(c);
            (db, r)
        });
        let mut watcher = Db::new();
        watcher.wait_until_blocked(run_pid);
        let mut resolver = Db::new();
        let resolver_pid = resolver.pid();
        let resolve = std::thread::spawn(move || {
            let r = resolver.json(&format!(
                "SELECT sync_resolve_conflict({conflict}, 'source') AS r"
            ));
            (resolver, r)
        });
        watcher.wait_until_blocked(resolver_pid);
        assert_eq!(
            watcher.json(&format!(
                "SELECT resolution FROM sync_conflicts WHERE id = {conflict}"
            ))["resolution"],
            "pending",
            "still waiting"
        );
        holder.exec("SELECT pg_advisory_unlock(7102)");
        let (mut db, r) = run.join().unwrap();
        assert_eq!(r["created"], 1, "{r}");
        resolve.join().unwrap();
        assert_eq!(
            db.json(&format!(
                "SELECT resolution FROM sync_conflicts WHERE id = {conflict}"
            ))["resolution"],
            "source"
        );
        assert_eq!(
            db.json("SELECT phone FROM cl_wait.hub WHERE firstname = 'Ann'")["phone"],
            "crm"
        );
    }

    /// target_to_source: the mirror is authoritative. Its creates, updates and deletes
    /// reach the CRM; CRM edits stay there; when both changed a field the mirror wins
    /// (recorded); a row deleted in the CRM comes back from the mirror.
    #[test]
    fn target_to_source_configs_flow_from_the_target_only() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "cl_t2s", "latest_wins", "target_to_source", "NULL");
        db.exec(
            "INSERT INTO cl_t2s.hub (firstname, lastname, phone) VALUES ('Ann', 'Lee', '1'), ('Bob', 'Ray', '2')",
        );
        let r = db.sync(c);
        assert_eq!(r["created"], 2, "{r}");
        assert_eq!(
            db.rows("SELECT full_name, phone FROM cl_t2s.crm ORDER BY full_name"),
            json!([{"full_name": "Ann Lee", "phone": "1"}, {"full_name": "Bob Ray", "phone": "2"}])
        );
        // a CRM edit stays in the CRM; a CRM create is not copied to the mirror
        db.exec(
            "UPDATE cl_t2s.crm SET email = 'ann@crm.io' WHERE full_name = 'Ann Lee';
             INSERT INTO cl_t2s.crm (full_name) VALUES ('Only Crm');",
        );
        let r = db.sync(c);
        assert_eq!(r["synced"], 0, "{r}");
        assert_eq!(db.json("SELECT count(*) AS n FROM cl_t2s.hub")["n"], 2);
        assert_eq!(
            db.json("SELECT email FROM cl_t2s.hub WHERE firstname = 'Ann'")["email"],
            Value::Null
        );
        // both change Ann's phone, the CRM later: the mirror still wins, recorded
        db.exec("UPDATE cl_t2s.hub SET phone = 'hub' WHERE firstname = 'Ann'");
        db.exec("UPDATE cl_t2s.crm SET phone = 'crm, later' WHERE full_name = 'Ann Lee'");
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 1, "{r}");
        assert_eq!(
            db.json("SELECT phone FROM cl_t2s.crm WHERE full_name = 'Ann Lee'")["phone"],
            "hub"
        );
        assert_eq!(
            db.json(&format!(
                "SELECT resolution, source_value FROM sync_conflicts WHERE config_id = {c}"
            )),
            json!({"resolution": "target", "source_value": "crm, later"})
        );
        // a mirror delete reaches the CRM; a CRM delete is undone
        db.exec("DELETE FROM cl_t2s.hub WHERE firstname = 'Bob'");
        db.exec("DELETE FROM cl_t2s.crm WHERE full_name = 'Ann Lee'");
        let r = db.sync(c);
        assert_eq!(json!([r["created"], r["deleted"]]), json!([1, 1]), "{r}");
        assert_eq!(
            db.rows("SELECT full_name, phone FROM cl_t2s.crm ORDER BY full_name"),
            json!([{"full_name": "Ann Lee", "phone": "hub"}, {"full_name": "Only Crm", "phone": null}])
        );
        let r = db.sync(c);
        assert_eq!(r["synced"], 0, "{r}");
    }

    /// update_delete: the source updated a row the target deleted. The later change
    /// wins: a later update re-creates the target row and relinks it, a later delete
    /// deletes the source row; both are recorded with the update's values.
    #[test]
    fn update_versus_delete_is_a_conflict_decided_by_time() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "cl_uvd", "latest_wins", "bidirectional", "NULL");
        db.exec(
            "INSERT INTO cl_uvd.crm (full_name, phone) VALUES ('Ann Lee', '1'), ('Bob Ray', '2')",
        );
        db.sync(c);
        // Ann: deleted in the mirror, then updated in the CRM -> the update wins
        db.exec("DELETE FROM cl_uvd.hub WHERE firstname = 'Ann'");
        db.exec("UPDATE cl_uvd.crm SET phone = '1-new' WHERE id = 1");
        // Bob: updated in the CRM, then deleted in the mirror -> the delete wins
        db.exec("UPDATE cl_uvd.crm SET phone = '2-new' WHERE id = 2");
        db.exec("DELETE FROM cl_uvd.hub WHERE firstname = 'Bob'");
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 2, "{r}");
        assert_eq!(
            db.rows("SELECT full_name, phone FROM cl_uvd.crm ORDER BY id"),
            json!([{"full_name": "Ann Lee", "phone": "1-new"}])
        );
        assert_eq!(
            db.rows("SELECT firstname, phone FROM cl_uvd.hub"),
            json!([{"firstname": "Ann", "phone": "1-new"}])
        );
        assert_eq!(
            db.rows(&format!(
                "SELECT kind, resolution, source_value FROM sync_conflicts WHERE config_id = {c} ORDER BY source_id"
            )),
            json!([
                {"kind": "update_delete", "resolution": "source", "source_value": {"phone": "1-new"}},
                {"kind": "update_delete", "resolution": "target", "source_value": {"phone": "2-new"}}
            ])
        );
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_links l JOIN cl_uvd.hub h ON h.id = l.target_id WHERE l.config_id = {c}"
            ))["n"],
            1,
            "Ann's new mirror row is linked"
        );
        let r = db.sync(c);
        assert_eq!(r["synced"], 0, "{r}");
    }

    /// Change records of a prepared transaction: all written before PREPARE (so they
    /// commit or roll back with it), with its xid.
    #[test]
    fn changes_are_captured_before_prepare_transaction() {
        let mut db = Db::new();
        db.exec(
            "CREATE TABLE cl_2pc (id int PRIMARY KEY, v text);
             SELECT sync_register_table('cl_2pc', 'x', 'cl_2pc');",
        );
        let n = "SELECT count(*) AS n, count(DISTINCT txid) AS txids FROM change_log WHERE system = 'cl_2pc'";
        // more than one batch of records, and a function's writes
        db.exec(
            "BEGIN;
             INSERT INTO cl_2pc SELECT g, 'v' FROM generate_series(1, 2500) g;
             DO $$BEGIN FOR i IN 1..10 LOOP UPDATE cl_2pc SET v = 'w' WHERE id = i; END LOOP; END$$;
             PREPARE TRANSACTION 'cl_2pc_a';",
        );
        assert_eq!(db.json(n), json!({"n": 0, "txids": 0}), "not committed yet");
        db.exec("COMMIT PREPARED 'cl_2pc_a'");
        assert_eq!(db.json(n), json!({"n": 2510, "txids": 1}));
        db.exec("BEGIN; UPDATE cl_2pc SET v = 'x'; PREPARE TRANSACTION 'cl_2pc_b';");
        db.exec("ROLLBACK PREPARED 'cl_2pc_b'");
        assert_eq!(db.json(n), json!({"n": 2510, "txids": 1}));
    }

    /// Big rows: a statement's records are written whenever they reach 16 MB, before a
    /// thousand of them, so a statement never holds more than that in memory. A trigger
    /// after the capture trigger sees them arrive during the statement (through this
    /// transaction's insert count of change_log: an assignment in a STABLE plpgsql
    /// function runs no statement and takes no new command id, so it does not make the
    /// records be written itself).
    #[test]
    fn big_records_are_written_at_the_16_mb_bound() {
        let mut db = Db::new();
        db.exec(
            "CREATE TABLE cl_big (id int PRIMARY KEY, v text);
             SELECT sync_register_table('cl_big', 'x', 'cl_big');
             CREATE FUNCTION cl_big_seen() RETURNS trigger LANGUAGE plpgsql STABLE AS
               $$DECLARE s text;
                 BEGIN s := set_config('cl_big.seen', coalesce(current_setting('cl_big.seen', true), '') || ' '
                                       || pg_stat_get_xact_tuples_inserted('change_log'::regclass), false);
                 RETURN NEW; END$$;
             CREATE TRIGGER zz_seen AFTER INSERT ON cl_big FOR EACH ROW EXECUTE FUNCTION cl_big_seen();",
        );
        db.exec("INSERT INTO cl_big SELECT g, repeat(chr(97 + g % 26), 1000000) FROM generate_series(1, 40) g");
        let seen: Vec<i64> = db.json("SELECT current_setting('cl_big.seen') AS s")["s"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(seen.len(), 40);
        assert_eq!(seen[0], 1, "the first record is written at once: {seen:?}");
        let during = *seen.iter().max().unwrap();
        assert!(
            (10..40).contains(&during),
            "records were written during the statement at about 16 MB each time: {seen:?}"
        );
        assert_eq!(
            db.json(
                "SELECT count(*) AS n, count(*) FILTER (WHERE length(fields->'v'->>'new') = 1000000) AS whole
                   FROM change_log WHERE system = 'cl_big'"
            ),
            json!({"n": 40, "whole": 40})
        );
    }

    /// change_log is written by hand (heap_multi_insert and index inserts): amcheck
    /// finds its heap and index consistent after bulk, single-row, aborted and
    /// subtransaction writes.
    #[test]
    fn change_log_passes_amcheck_after_every_kind_of_write() {
        let mut db = Db::new();
        db.exec(
            "CREATE EXTENSION IF NOT EXISTS amcheck;
             CREATE TABLE cl_am (id int PRIMARY KEY, v text);
             SELECT sync_register_table('cl_am', 'x', 'cl_am');
             INSERT INTO cl_am SELECT g, 'v' || g FROM generate_series(1, 3000) g;
             UPDATE cl_am SET v = v || '!' WHERE id % 3 = 0;
             INSERT INTO cl_am VALUES (5001, 'one');
             DO $$BEGIN
                 BEGIN INSERT INTO cl_am SELECT g, 'gone' FROM generate_series(6001, 7500) g;
                       RAISE EXCEPTION 'undo'; EXCEPTION WHEN OTHERS THEN NULL; END;
                 INSERT INTO cl_am VALUES (5002, 'kept');
             END$$;
             DELETE FROM cl_am WHERE id <= 100;",
        );
        let e = db.err(
            "BEGIN; INSERT INTO cl_am SELECT g, 'x' FROM generate_series(8001, 9000) g; SELECT 1/0;",
        );
        assert_eq!(e, "22012: division by zero");
        db.exec("ROLLBACK");
        assert_eq!(
            db.json("SELECT count(*) AS n FROM change_log WHERE system = 'cl_am'")["n"],
            3000 + 1000 + 1 + 1 + 100
        );
        let schema = db.json(
            "SELECT n.nspname AS s FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'sync_engine'",
        )["s"]
            .as_str()
            .unwrap()
            .to_string();
        db.exec(&format!(
            "SELECT bt_index_check(i.indexrelid, true)
               FROM pg_index i WHERE i.indrelid = '{schema}.change_log'::regclass"
        ));
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM verify_heapam('{schema}.change_log')"
            ))["n"],
            0,
            "no heap corruption"
        );
    }

    /// CREATE EXTENSION ... SCHEMA: every object lands there and the product works with
    /// that schema off the search_path (in a database of its own).
    #[test]
    fn the_extension_works_from_a_schema_of_its_own() {
        let mut db = Db::new();
        db.exec("DROP DATABASE IF EXISTS cl_schema_db WITH (FORCE)");
        db.exec("CREATE DATABASE cl_schema_db");
        let (port, user) = {
            let r = db.json("SELECT current_setting('port')::int AS port, current_user AS u");
            (
                r["port"].as_u64().unwrap() as u16,
                r["u"].as_str().unwrap().to_string(),
            )
        };
        let mut other = Db(postgres::Config::new()
            .host("localhost")
            .port(port)
            .user(&user)
            .dbname("cl_schema_db")
            .connect(postgres::NoTls)
            .expect("connect to cl_schema_db"));
        other.exec(
            "CREATE SCHEMA \"Sync Engine\";
             CREATE EXTENSION sync_engine SCHEMA \"Sync Engine\";
             CREATE TABLE a (id serial PRIMARY KEY, v text);
             CREATE TABLE b (id serial PRIMARY KEY, v text);
             SELECT \"Sync Engine\".sync_register_table('a', 'x', 'a'),
                    \"Sync Engine\".sync_register_table('b', 'x', 'b');
             SELECT \"Sync Engine\".sync_create_config('ab', 'a', 'b', 'x');
             INSERT INTO a (v) VALUES ('one'), ('two');
             UPDATE a SET v = 'three' WHERE id = 2;",
        );
        assert_eq!(
            other.json(
                "SELECT count(*) FILTER (WHERE n.nspname = 'Sync Engine') = count(*) AND count(*) >= 7 AS ok
                   FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sync_engine') AND d.deptype = 'e'"
            )["ok"],
            true,
            "every table, view and sequence of the extension is in its schema"
        );
        assert_eq!(
            other.json("SELECT to_regclass('public.change_log') IS NULL AS none")["none"],
            true
        );
        let r = other.json("SELECT \"Sync Engine\".sync_execute(1) AS r")["r"].clone();
        assert_eq!(r["created"], 2, "{r}");
        assert_eq!(
            other.rows("SELECT v FROM b ORDER BY id"),
            json!([{"v": "one"}, {"v": "three"}])
        );
        assert_eq!(
            other.json("SELECT count(*) AS n FROM \"Sync Engine\".change_log")["n"],
            5,
            "3 captured writes + 2 of the engine's"
        );
        drop(other);
        db.exec("DROP DATABASE cl_schema_db WITH (FORCE)");
    }
}
