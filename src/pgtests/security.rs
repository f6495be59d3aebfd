//! Who the engine acts as (src/security.rs): writes into a user table run as its owner
//! inside a security-restricted operation; only the engine tags writes with an origin;
//! registering, creating and running configs check the caller's rights. Autocommit
//! connections, so roles and grants behave as for a real application.

#[cfg(test)]
mod tests {
    use crate::pgtests::fixture::{fresh_role, Db};
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// The attack of issue 11: `owner` owns `{p}_evil.dst`, whose BEFORE trigger makes
    /// its owner a superuser when it runs as one, and records who it ran as. Returns
    /// the id of a config from `{p}.src` (the superuser's) to that table.
    fn evil_setup(db: &mut Db, p: &str, owner: &str) -> i64 {
        fresh_role(db, owner);
        db.exec(&format!(
            "DROP SCHEMA IF EXISTS {p} CASCADE;
             CREATE SCHEMA {p};
             CREATE TABLE {p}.src (id int PRIMARY KEY, name text);
             CREATE SCHEMA {p}_evil AUTHORIZATION {owner};
             SET ROLE {owner};
             CREATE TABLE {p}_evil.dst (id int PRIMARY KEY, name text, written_by text);
             CREATE FUNCTION {p}_evil.grab() RETURNS trigger LANGUAGE plpgsql AS $f$
             BEGIN
               IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                 EXECUTE 'ALTER ROLE {owner} SUPERUSER';
               END IF;
               NEW.written_by := current_user;
               RETURN NEW;
             END $f$;
             CREATE TRIGGER grab BEFORE INSERT OR UPDATE ON {p}_evil.dst
               FOR EACH ROW EXECUTE FUNCTION {p}_evil.grab();
             RESET ROLE;
             SELECT sync_register_table('{p}_src', 'contacts', '{p}.src');
             SELECT sync_register_table('{p}_dst', 'contacts', '{p}_evil.dst');
             SELECT sync_create_config('{p}', '{p}_src', '{p}_dst', 'contacts',
                                       '[{{\"source\": \"name\", \"target\": \"name\"}}]');
             UPDATE sync_configs SET enabled = false WHERE name = '{p}';
             INSERT INTO {p}.src VALUES (1, 'Ann');"
        ));
        db.json(&format!("SELECT id FROM sync_configs WHERE name = '{p}'"))["id"]
            .as_i64()
            .unwrap()
    }

    fn is_superuser(db: &mut Db, role: &str) -> serde_json::Value {
        db.json(&format!(
            "SELECT rolsuper AS s FROM pg_roles WHERE rolname = '{role}'"
        ))["s"]
            .clone()
    }

    #[test]
    fn a_table_owners_trigger_runs_as_the_owner_when_a_superuser_syncs() {
        let mut db = Db::new();
        let c = evil_setup(&mut db, "sec_esc", "sec_evil");
        let r = db.sync(c);
        assert_eq!(r["created"], json!(1), "{r}");
        // an update goes through the update path (not the column copy: the written
        // table's owner is not the extension's)
        db.exec("UPDATE sec_esc.src SET name = 'Ann Lee'");
        let r = db.sync(c);
        assert_eq!(r["updated"], json!(1), "{r}");
        assert_eq!(is_superuser(&mut db, "sec_evil"), json!(false));
        assert_eq!(
            db.rows("SELECT id, name, written_by FROM sec_esc_evil.dst"),
            json!([{"id": 1, "name": "Ann Lee", "written_by": "sec_evil"}]),
            "the trigger ran as the table's owner"
        );
        // the engine's own bookkeeping went on as the extension's owner
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_links WHERE config_id = {c}"
            ))["n"],
            json!(1)
        );
    }

    #[test]
    fn a_table_owners_trigger_runs_as_the_owner_when_the_worker_syncs() {
        let mut db = Db::new();
        let c = evil_setup(&mut db, "sec_wesc", "sec_wevil");
        db.exec(&format!(
            "UPDATE sync_configs SET enabled = true, sync_interval = '1 second', next_run_at = now() WHERE id = {c}"
        ));
        let start = Instant::now();
        while db.json("SELECT count(*) AS n FROM sec_wesc_evil.dst")["n"] != json!(1) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the worker did not sync"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        db.exec(&format!(
            "UPDATE sync_configs SET enabled = false WHERE id = {c}"
        ));
        assert_eq!(is_superuser(&mut db, "sec_wevil"), json!(false));
        assert_eq!(
            db.json("SELECT written_by FROM sec_wesc_evil.dst")["written_by"],
            json!("sec_wevil")
        );
    }

    #[test]
    fn a_forged_origin_is_recorded_as_an_ordinary_write_and_synced() {
        let mut db = Db::new();
        fresh_role(&mut db, "sec_app");
        let c = crate::pgtests::fixture::crm_hub(
            &mut db,
            "sec_forge",
            "latest_wins",
            "bidirectional",
            "NULL",
        );
        db.exec("INSERT INTO sec_forge.crm (full_name, phone) VALUES ('Ann Lee', '1')");
        db.sync(c);
        db.exec(
            "GRANT USAGE ON SCHEMA sec_forge TO sec_app; GRANT SELECT, UPDATE ON sec_forge.crm TO sec_app",
        );
        // the app role tags its session as the config's own writes, by every means a
        // role has (the setting the engine once used), then writes
        let mut app = Db::new();
        app.exec(&format!(
            "SET ROLE sec_app;
             DO $$ BEGIN
               PERFORM set_config('sync_engine.origin', 'sync_engine:config:{c}', false);
             EXCEPTION WHEN OTHERS THEN NULL; END $$;
             UPDATE sec_forge.crm SET phone = 'forged';
             RESET ROLE;"
        ));
        assert_eq!(
            db.rows(
                "SELECT origin FROM change_log WHERE system = 'sec_forge_crm' AND fields ? 'phone' AND operation = 'update'"
            ),
            json!([{"origin": null}])
        );
        let r = db.sync(c);
        assert_eq!(r["updated"], json!(1), "{r}");
        assert_eq!(
            db.json("SELECT phone FROM sec_forge.hub")["phone"],
            json!("forged")
        );
    }

    #[test]
    fn registering_creating_running_and_resolving_check_the_callers_rights() {
        let mut db = Db::new();
        for r in ["sec_integ", "sec_other", "sec_member"] {
            fresh_role(&mut db, r);
        }
        db.exec(
            "DROP SCHEMA IF EXISTS sec_priv CASCADE;
             CREATE SCHEMA sec_priv;
             CREATE TABLE sec_priv.crm (id int PRIMARY KEY, phone text);
             CREATE TABLE sec_priv.hub (id int PRIMARY KEY, phone text);
             GRANT USAGE ON SCHEMA sec_priv TO sec_integ, sec_other, sec_member;
             GRANT sec_integ TO sec_member;",
        );
        // registering needs ownership
        let e = db.err(
            "SET ROLE sec_integ; SELECT sync_register_table('sec_priv_crm', 'contacts', 'sec_priv.crm')",
        );
        assert!(
            e.starts_with("42501: permission denied to register it with sync_engine: must be the owner of sec_priv.crm"),
            "{e}"
        );
        db.exec(
            "RESET ROLE;
             ALTER TABLE sec_priv.crm OWNER TO sec_integ;
             SET ROLE sec_integ;
             SELECT sync_register_table('sec_priv_crm', 'contacts', 'sec_priv.crm');
             RESET ROLE;
             SELECT sync_register_table('sec_priv_hub', 'contacts', 'sec_priv.hub');",
        );
        // creating a config needs SELECT, INSERT, UPDATE and DELETE on both tables
        db.exec("RESET ROLE; GRANT SELECT, UPDATE ON sec_priv.hub TO sec_integ");
        let e = db.err(
            "SET ROLE sec_integ; SELECT sync_create_config('sec-priv', 'sec_priv_crm', 'sec_priv_hub', 'contacts', conflict_strategy => 'manual')",
        );
        assert_eq!(
            e,
            "42501: permission denied to create a sync config over it: role \"sec_integ\" lacks INSERT, DELETE on sec_priv.hub"
        );
        db.exec(
            "RESET ROLE; GRANT INSERT, DELETE ON sec_priv.hub TO sec_integ;
             SET ROLE sec_integ;
             SELECT sync_create_config('sec-priv', 'sec_priv_crm', 'sec_priv_hub', 'contacts', conflict_strategy => 'manual');
             RESET ROLE;
             UPDATE sync_configs SET enabled = false WHERE name = 'sec-priv';
             INSERT INTO sec_priv.crm VALUES (1, '1');",
        );
        let c =
            db.json("SELECT id, owner::text AS owner FROM sync_configs WHERE name = 'sec-priv'");
        assert_eq!(c["owner"], json!("sec_integ"));
        let c = c["id"].as_i64().unwrap();
        // the owner runs it (no grants on the extension's tables needed)...
        db.exec(&format!(
            "SET ROLE sec_integ; SELECT sync_execute({c}); RESET ROLE;"
        ));
        assert_eq!(
            db.json("SELECT phone FROM sec_priv.hub")["phone"],
            json!("1")
        );
        // ...another role may not, a member of the owner may
        let e = db.err(&format!("SET ROLE sec_other; SELECT sync_execute({c})"));
        assert_eq!(
            e,
            format!("42501: permission denied to run sync config {c} (\"sec-priv\"): role \"sec_other\" is not a member of its owner \"sec_integ\"")
        );
        db.exec(
            "RESET ROLE; UPDATE sec_priv.crm SET phone = 'a'; UPDATE sec_priv.hub SET phone = 'b';",
        );
        db.exec(&format!(
            "SET ROLE sec_member; SELECT sync_execute({c}); RESET ROLE;"
        ));
        let k = db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"
        ))["id"]
            .as_i64()
            .unwrap();
        let e = db.err(&format!(
            "SET ROLE sec_other; SELECT sync_resolve_conflict({k}, 'source')"
        ));
        assert!(
            e.starts_with("42501: permission denied to resolve conflict"),
            "{e}"
        );
        db.exec(&format!(
            "RESET ROLE; SET ROLE sec_member; SELECT sync_resolve_conflict({k}, 'source'); RESET ROLE;"
        ));
        assert_eq!(
            db.json(&format!(
                "SELECT resolved_by FROM sync_conflicts WHERE id = {k}"
            ))["resolved_by"],
            json!("sec_member")
        );
        assert_eq!(
            db.json("SELECT phone FROM sec_priv.hub")["phone"],
            json!("a")
        );
    }

    /// A role that may push puts a function on its search_path that matches a call the
    /// extension makes while acting as its owner (`unnest(text[])`, exactly, beats
    /// pg_catalog's polymorphic one wherever it is on the path). It must not run.
    #[test]
    fn a_function_on_the_callers_search_path_does_not_run_as_the_extension_owner() {
        let mut db = Db::new();
        fresh_role(&mut db, "sp_dev");
        db.exec(
            "DROP SCHEMA IF EXISTS sp CASCADE;
             CREATE SCHEMA sp;
             CREATE TABLE sp.t (id int PRIMARY KEY, v text);
             INSERT INTO sp.t VALUES (1, 'a');
             GRANT USAGE ON SCHEMA sp TO sp_dev;
             GRANT SELECT, UPDATE ON sp.t TO sp_dev;
             SELECT sync_register_table('sp_t', 'x', 'sp.t');
             CREATE SCHEMA sp_evil AUTHORIZATION sp_dev;",
        );
        db.exec(
            "SET ROLE sp_dev;
             CREATE FUNCTION sp_evil.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS
               $f$ ALTER ROLE sp_dev SUPERUSER; SELECT x FROM pg_catalog.unnest($1) x $f$;
             CREATE FUNCTION sp_evil.jsonb_object_keys(jsonb) RETURNS SETOF text LANGUAGE sql AS
               $f$ ALTER ROLE sp_dev SUPERUSER; SELECT x FROM pg_catalog.jsonb_object_keys($1) x $f$;
             SELECT set_config('search_path', 'sp_evil, ' || current_setting('search_path'), false);",
        );
        let r = db.json(
            r#"SELECT sync_push('sp_t', 'x', '[{"id": "c1", "entity_id": "1", "operation": "update",
                 "changed_at": "2026-01-01T00:00:00Z", "fields": {"v": {"old": "a", "new": "b"}}}]', 'sp_dev_phone') AS r"#,
        )["r"]
            .clone();
        db.exec("RESET ROLE; RESET search_path;");
        assert_eq!(r["applied"], 1, "{r}");
        assert_eq!(is_superuser(&mut db, "sp_dev"), json!(false));
        assert_eq!(db.json("SELECT v FROM sp.t WHERE id = 1")["v"], "b");
    }

    /// sync_push writes as the table's owner, past row-level security: a caller the
    /// table's policies restrict is refused, not let through.
    #[test]
    fn sync_push_refuses_a_caller_that_row_level_security_restricts() {
        let mut db = Db::new();
        fresh_role(&mut db, "sp_rls");
        db.exec(
            "DROP SCHEMA IF EXISTS sp_r CASCADE;
             CREATE SCHEMA sp_r;
             CREATE TABLE sp_r.t (id int PRIMARY KEY, v text, owner_role text);
             INSERT INTO sp_r.t VALUES (1, 'mine', 'sp_rls'), (2, 'not mine', 'someone');
             ALTER TABLE sp_r.t ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON sp_r.t USING (owner_role = current_user);
             GRANT USAGE ON SCHEMA sp_r TO sp_rls;
             GRANT SELECT, UPDATE ON sp_r.t TO sp_rls;
             SELECT sync_register_table('sp_r_t', 'x', 'sp_r.t');",
        );
        let e = db.err(
            r#"SET ROLE sp_rls;
               SELECT sync_push('sp_r_t', 'x', '[{"id": "c1", "entity_id": "2", "operation": "update",
                 "changed_at": "2026-01-01T00:00:00Z", "fields": {"v": {"old": "not mine", "new": "taken"}}}]', 'd1')"#,
        );
        db.exec("RESET ROLE");
        assert_eq!(
            e,
            "42501: sync_push: sp_r.t has row-level security enabled for role sp_rls; sync_push does not apply row-level security policies, so it refuses to write there (push as a role the policies do not restrict, or disable them for it)"
        );
        assert_eq!(
            db.json("SELECT v FROM sp_r.t WHERE id = 2")["v"],
            "not mine"
        );
    }

    /// sync_pull reads change records, and a config's runs read and write every row, as
    /// owners past row-level security: a caller the policies restrict is refused both,
    /// while sync_snapshot reads the rows under its policies.
    #[test]
    fn pull_and_configs_refuse_a_caller_that_row_level_security_restricts() {
        let mut db = Db::new();
        fresh_role(&mut db, "sp_rls2");
        db.exec(
            "DROP SCHEMA IF EXISTS sp_r2 CASCADE;
             CREATE SCHEMA sp_r2;
             CREATE TABLE sp_r2.t (id int PRIMARY KEY, v text, owner_role text);
             CREATE TABLE sp_r2.copy (id int PRIMARY KEY, v text, owner_role text);
             SELECT sync_register_table('sp_r2_t', 'x', 'sp_r2.t'), sync_register_table('sp_r2_c', 'x', 'sp_r2.copy');
             INSERT INTO sp_r2.t VALUES (1, 'mine', 'sp_rls2'), (2, 'secret', 'someone');
             ALTER TABLE sp_r2.t ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON sp_r2.t USING (owner_role = current_user);
             GRANT USAGE ON SCHEMA sp_r2 TO sp_rls2;
             GRANT SELECT, INSERT, UPDATE, DELETE ON sp_r2.t, sp_r2.copy TO sp_rls2;",
        );
        let pull = db.err(
            "SET ROLE sp_rls2;
             SELECT sync_pull('sp_r2_t', 'x', (sync_pull('sp_r2_t', 'x', NULL) ->> 'cursor'))",
        );
        db.exec("RESET ROLE");
        assert_eq!(
            pull,
            "42501: sync_pull: sp_r2.t has row-level security enabled for role sp_rls2; sync_pull does not apply row-level security policies, so it refuses to return its change records (pull as a role the policies do not restrict; sync_snapshot reads the rows under them)"
        );
        let config = db.err(
            "SET ROLE sp_rls2;
             SELECT sync_create_config('sp_r2_leak', 'sp_r2_t', 'sp_r2_c', 'x')",
        );
        db.exec("RESET ROLE");
        assert_eq!(
            config,
            "42501: sync_create_config: sp_r2.t has row-level security enabled for role sp_rls2; a sync reads and writes every row as the table's owner, past the policies, so it refuses to create a config over it (create it as a role the policies do not restrict)"
        );
        assert_eq!(
            db.json("SELECT count(*) AS n FROM sync_configs WHERE name = 'sp_r2_leak'")["n"],
            0
        );
        // the snapshot applies the policies: only the caller's own row
        db.exec("SET ROLE sp_rls2");
        let snap = db.json("SELECT sync_snapshot('sp_r2_t', 'x') -> 'rows' AS rows");
        db.exec("RESET ROLE");
        assert_eq!(snap["rows"].as_array().map(Vec::len), Some(1), "{snap}");
        // the table's owner (not restricted) still pulls
        let r = db.json(
            "SELECT sync_pull('sp_r2_t', 'x', (sync_pull('sp_r2_t', 'x', NULL) ->> 'cursor')) ? 'changes' AS ok",
        );
        assert_eq!(r["ok"], true);
    }
}
