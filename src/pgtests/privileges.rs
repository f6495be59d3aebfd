//! Privileges (issue 17): an application role that may write its table is captured,
//! but cannot run syncs, change configs, links or change_log, read webhook secrets, or
//! make its writes invisible to the sync; and a client id belongs to the role that
//! pushed with it first (`sync_clients`, src/offline/clients.rs). Autocommit
//! connections, so roles and grants behave as for a real application. The checks of
//! register/create/run/resolve by a config's owner and members are in security.rs.

#[cfg(test)]
mod tests {
    use crate::pgtests::fixture::{fresh_role, Db};
    use serde_json::{json, Value};

    /// What the sync's state is: configs, links, endpoints, webhooks, change_log of the
    /// test's systems, the capture triggers of its tables.
    fn state(db: &mut Db, p: &str) -> Value {
        db.json(&format!(
            "SELECT (SELECT jsonb_agg(to_jsonb(c) ORDER BY id) FROM sync_configs c WHERE name LIKE '{p}%') AS configs,
                    (SELECT jsonb_agg(to_jsonb(l) ORDER BY source_id) FROM sync_links l
                       JOIN sync_configs c ON c.id = l.config_id WHERE c.name LIKE '{p}%') AS links,
                    (SELECT jsonb_agg(to_jsonb(e) ORDER BY id) FROM sync_endpoints e WHERE system LIKE '{p}%') AS endpoints,
                    (SELECT jsonb_agg(to_jsonb(w) ORDER BY id) FROM sync_webhooks w WHERE url LIKE '%/{p}') AS webhooks,
                    (SELECT jsonb_agg(to_jsonb(l) ORDER BY id) FROM change_log l WHERE system LIKE '{p}%') AS log,
                    (SELECT jsonb_agg(tgname || ':' || tgenabled::text ORDER BY tgname) FROM pg_trigger
                      WHERE tgrelid IN ('{p}.crm'::regclass, '{p}.hub'::regclass)) AS triggers"
        ))
    }

    #[test]
    fn an_application_role_is_captured_but_cannot_run_change_or_hide_from_the_sync() {
        let mut db = Db::new();
        let p = "pv";
        fresh_role(&mut db, "pv_app");
        db.exec(&format!(
            "DROP SCHEMA IF EXISTS {p} CASCADE;
             DELETE FROM sync_webhooks WHERE url LIKE '%/{p}';
             CREATE SCHEMA {p};
             CREATE TABLE {p}.crm (id serial PRIMARY KEY, name text, phone text);
             CREATE TABLE {p}.hub (id serial PRIMARY KEY, name text, phone text);
             GRANT USAGE ON SCHEMA {p} TO pv_app;
             GRANT SELECT, INSERT, UPDATE, DELETE ON {p}.crm TO pv_app;
             GRANT USAGE ON SEQUENCE {p}.crm_id_seq TO pv_app;
             SELECT sync_register_table('{p}_crm', 'contacts', '{p}.crm');
             SELECT sync_register_table('{p}_hub', 'contacts', '{p}.hub');
             SELECT sync_create_config('{p}', '{p}_crm', '{p}_hub', 'contacts', conflict_strategy => 'manual');
             UPDATE sync_configs SET enabled = false WHERE name = '{p}';
             SELECT sync_add_webhook('http://127.0.0.1:9/{p}', ARRAY['run.completed']);
             INSERT INTO {p}.crm (name, phone) VALUES ('Ann', '1');"
        ));
        let c = db.json(&format!("SELECT id FROM sync_configs WHERE name = '{p}'"))["id"]
            .as_i64()
            .unwrap();
        let w = db.json(&format!(
            "SELECT id FROM sync_webhooks WHERE url = 'http://127.0.0.1:9/{p}'"
        ))["id"]
            .as_i64()
            .unwrap();
        db.sync(c);
        db.exec(&format!(
            "UPDATE {p}.crm SET phone = 'crm'; UPDATE {p}.hub SET phone = 'hub';"
        ));
        db.sync(c);
        let k = db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"
        ))["id"]
            .as_i64()
            .expect("a pending conflict");
        let before = state(&mut db, p);

        // (what the app role tries, the SQLSTATE, a fragment of the message)
        let attempts: Vec<(String, &str, &str)> = vec![
            // running, configuring, resolving
            (format!("SELECT sync_execute({c})"), "42501", "permission denied to run sync config"),
            (
                format!("SELECT sync_create_config('{p}2', '{p}_crm', '{p}_hub', 'contacts')"),
                "42501",
                "lacks SELECT, INSERT, UPDATE, DELETE on pv.hub",
            ),
            (format!("SELECT sync_resolve_conflict({k}, 'source')"), "42501", "permission denied to resolve conflict"),
            (format!("UPDATE sync_configs SET enabled = true WHERE id = {c}"), "42501", "sync_configs"),
            (format!("DELETE FROM sync_configs WHERE id = {c}"), "42501", "sync_configs"),
            (
                format!("INSERT INTO sync_configs (name, source_system, target_system, entity_type, target_entity_type, source_endpoint_id, target_endpoint_id, owner)
                         SELECT 'x', source_system, target_system, entity_type, target_entity_type, source_endpoint_id, target_endpoint_id, 'pv_app' FROM sync_configs WHERE id = {c}"),
                "42501",
                "sync_configs",
            ),
            (format!("UPDATE sync_links SET base = '{{}}' WHERE config_id = {c}"), "42501", "sync_links"),
            (format!("DELETE FROM sync_links WHERE config_id = {c}"), "42501", "sync_links"),
            (format!("UPDATE sync_conflicts SET resolution = 'source' WHERE id = {k}"), "42501", "sync_conflicts"),
            (format!("SELECT sync_unregister_table('{p}_crm', 'contacts')"), "42501", "must be the owner of pv.crm"),
            (format!("SELECT sync_register_table('{p}_other', 'contacts', '{p}.crm')"), "42501", "must be the owner of pv.crm"),
            // change_log: no direct writes, no reads
            (
                format!("INSERT INTO change_log (system, entity_type, entity_id, operation, fields) VALUES ('{p}_crm', 'contacts', '1', 'update', '{{}}')"),
                "42501",
                "change_log",
            ),
            (format!("UPDATE change_log SET origin = 'sync_engine:config:{c}' WHERE system = '{p}_crm'"), "42501", "change_log"),
            (format!("DELETE FROM change_log WHERE system = '{p}_crm'"), "42501", "change_log"),
            ("TRUNCATE change_log".into(), "42501", "change_log"),
            ("SELECT count(*) FROM change_log".into(), "42501", "change_log"),
            ("SELECT sync_prune('0 seconds')".into(), "42501", "permission denied for table"),
            ("ALTER TABLE change_log DISABLE TRIGGER ALL".into(), "42501", "change_log"),
            // webhooks and their secrets
            ("SELECT secret FROM sync_webhooks".into(), "42501", "sync_webhooks"),
            (format!("SELECT sync_webhook_secret({w})"), "42501", "permission denied to read a webhook's secret"),
            (
                format!("SELECT sync_add_webhook('http://127.0.0.1:9/{p}', ARRAY['run.completed'])"),
                "42501",
                "permission denied to add a webhook",
            ),
            (format!("SELECT sync_remove_webhook({w})"), "42501", "permission denied to remove a webhook"),
            (format!("UPDATE sync_webhooks SET url = 'http://evil.example/' WHERE id = {w}"), "42501", "sync_webhooks"),
            // making its writes invisible: replication role, the trigger, TRUNCATE
            ("SET session_replication_role = replica".into(), "42501", "session_replication_role"),
            (format!("ALTER TABLE {p}.crm DISABLE TRIGGER sync_engine_capture"), "42501", "must be owner of table crm"),
            (format!("ALTER TABLE {p}.crm DISABLE TRIGGER ALL"), "42501", "must be owner of table crm"),
            (format!("DROP TRIGGER sync_engine_capture ON {p}.crm"), "42501", "must be owner of relation crm"),
            (format!("TRUNCATE {p}.crm"), "42501", "permission denied for table crm"),
        ];
        let mut wrong = Vec::new();
        for (sql, code, fragment) in &attempts {
            let e = db.err(&format!("SET ROLE pv_app; {sql}"));
            db.exec("RESET ROLE");
            if !(e.starts_with(code) && e.contains(fragment)) {
                wrong.push(format!(
                    "{sql}: {e} (expected {code} mentioning {fragment})"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "the app role's attempts:\n{}",
            wrong.join("\n")
        );
        assert_eq!(attempts.len(), 28);
        assert_eq!(state(&mut db, p), before, "nothing changed by any attempt");

        // what the role can do: set settings (none tags a write), then write. Every
        // write is captured without an origin and reaches the other side.
        db.exec(&format!(
            "SET ROLE pv_app;
             DO $$ BEGIN
               PERFORM set_config('sync_engine.origin', 'sync_engine:config:{c}', false);
             EXCEPTION WHEN OTHERS THEN NULL; END $$;
             INSERT INTO {p}.crm (name, phone) VALUES ('Bo', '2');
             UPDATE {p}.crm SET name = 'Ann Lee' WHERE name = 'Ann';
             DELETE FROM {p}.crm WHERE name = 'Bo';
             INSERT INTO {p}.crm (name) VALUES ('Cy');
             RESET ROLE;"
        ));
        assert_eq!(
            db.rows(&format!(
                "SELECT operation, origin FROM change_log WHERE system = '{p}_crm' AND id > {}
                  ORDER BY id",
                before["log"]
                    .as_array()
                    .and_then(|l| l.last())
                    .map(|l| l["id"].as_i64().unwrap())
                    .unwrap()
            )),
            json!([{"operation": "insert", "origin": null}, {"operation": "update", "origin": null},
                   {"operation": "delete", "origin": null}, {"operation": "insert", "origin": null}])
        );
        let r = db.sync(c);
        assert_eq!(
            [&r["created"], &r["updated"]],
            [&json!(1), &json!(1)],
            "{r}"
        );
        assert_eq!(
            db.rows(&format!("SELECT name FROM {p}.hub ORDER BY name")),
            json!([{"name": "Ann Lee"}, {"name": "Cy"}])
        );
        db.exec(&format!("SELECT sync_remove_webhook({w})"));
    }

    /// Push `changes` (JSON text) to `{p}_t` as `role` with `client`; the result or
    /// "SQLSTATE: message".
    fn push_as(
        db: &mut Db,
        role: &str,
        p: &str,
        client: &str,
        changes: &str,
    ) -> Result<Value, String> {
        db.exec(&format!("SET ROLE {role}"));
        let r = db.0.query_one(
            &format!("SELECT sync_push('{p}_t', 'x', $1::text::jsonb, $2)::text"),
            &[&changes, &client],
        );
        let out = match r {
            Ok(row) => Ok(row.get::<_, String>(0).parse::<Value>().unwrap()),
            Err(e) => {
                let d = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
                Err(format!("{}: {}", d.code().code(), d.message()))
            }
        };
        db.exec("RESET ROLE");
        out
    }

    fn update(id: &str, entity: i32, old: &str, new: &str) -> String {
        json!([{"id": id, "entity_id": entity.to_string(), "operation": "update",
                "changed_at": "2026-01-01T00:00:00Z", "fields": {"v": {"old": old, "new": new}}}])
        .to_string()
    }

    #[test]
    fn a_client_id_belongs_to_the_role_that_pushed_with_it_first() {
        let mut db = Db::new();
        let p = "pc";
        for r in ["pc_alice", "pc_bob", "pc_carol", "pc_dave"] {
            fresh_role(&mut db, r);
        }
        db.exec(&format!(
            "DROP SCHEMA IF EXISTS {p} CASCADE;
             DELETE FROM sync_clients WHERE client_id LIKE '{p}-%';
             CREATE SCHEMA {p};
             CREATE TABLE {p}.t (id int PRIMARY KEY, v text);
             CREATE TABLE {p}.h (id int PRIMARY KEY, v text);
             INSERT INTO {p}.t VALUES (1, 'a'), (2, 'b');
             GRANT USAGE ON SCHEMA {p} TO pc_alice, pc_bob, pc_carol, pc_dave;
             GRANT SELECT, UPDATE ON {p}.t TO pc_alice, pc_bob, pc_carol;
             GRANT SELECT ON {p}.t TO pc_dave;
             GRANT pc_alice TO pc_carol;
             SELECT sync_register_table('{p}_t', 'x', '{p}.t');
             SELECT sync_register_table('{p}_h', 'x', '{p}.h');
             SELECT sync_create_config('{p}', '{p}_t', '{p}_h', 'x');
             UPDATE sync_configs SET enabled = false WHERE name = '{p}';"
        ));
        let c = db.json(&format!("SELECT id FROM sync_configs WHERE name = '{p}'"))["id"]
            .as_i64()
            .unwrap();
        let owner = |db: &mut Db, client: &str| {
            db.json(&format!(
                "SELECT (SELECT owner::text FROM sync_clients WHERE client_id = '{client}') AS o"
            ))["o"]
                .clone()
        };
        let log = |db: &mut Db| {
            db.json(&format!(
                "SELECT count(*) AS n FROM change_log WHERE system = '{p}_t'"
            ))["n"]
                .as_i64()
                .unwrap()
        };

        // alice's first push binds the id to her
        let r = push_as(
            &mut db,
            "pc_alice",
            p,
            "pc-phone",
            &update("a1", 1, "a", "alice"),
        )
        .unwrap();
        assert_eq!(r["applied"], 1, "{r}");
        assert_eq!(owner(&mut db, "pc-phone"), json!("pc_alice"));

        // bob cannot push as her client: not the id she will use next (her push would be
        // answered "duplicate"), not a change her pulls would leave out as her own
        let n = log(&mut db);
        let e = push_as(
            &mut db,
            "pc_bob",
            p,
            "pc-phone",
            &update("a2", 2, "b", "bob"),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "42501: permission denied to push as client \"pc-phone\": the client id belongs to role \"pc_alice\" (the first to push with it), and role \"pc_bob\" is not a member of it; use a client id of your own, or have the extension's owner rebind it (UPDATE sync_clients SET owner = ... WHERE client_id = ...)"
        );
        assert_eq!(log(&mut db), n, "nothing written");
        assert_eq!(
            db.json(&format!("SELECT v FROM {p}.t WHERE id = 2"))["v"],
            "b"
        );
        assert_eq!(
            db.json("SELECT count(*) AS n FROM sync_push_ids WHERE client_id = 'pc-phone' AND change_id = 'a2'")["n"],
            0,
            "the change id was not claimed"
        );
        // nor pull as her client
        let e = db.err(&format!(
            "SET ROLE pc_bob; SELECT sync_pull('{p}_t', 'x', NULL, 10, 'pc-phone')"
        ));
        db.exec("RESET ROLE");
        assert!(
            e.starts_with("42501: permission denied to pull as client \"pc-phone\""),
            "{e}"
        );
        // her next push applies (the id was not taken)
        let r = push_as(
            &mut db,
            "pc_alice",
            p,
            "pc-phone",
            &update("a2", 2, "b", "alice"),
        )
        .unwrap();
        assert_eq!(r["applied"], 1, "{r}");
        // a member of her role may use it
        let r = push_as(
            &mut db,
            "pc_carol",
            p,
            "pc-phone",
            &update("a3", 1, "alice", "carol"),
        )
        .unwrap();
        assert_eq!(r["applied"], 1, "{r}");
        assert_eq!(owner(&mut db, "pc-phone"), json!("pc_alice"));

        // bob's own id: bound to him; his pushes are synced like any other write
        let r = push_as(
            &mut db,
            "pc_bob",
            p,
            "pc-tablet",
            &update("b1", 2, "alice", "bob"),
        )
        .unwrap();
        assert_eq!(r["applied"], 1, "{r}");
        assert_eq!(owner(&mut db, "pc-tablet"), json!("pc_bob"));
        let r = db.sync(c);
        assert_eq!(r["created"], 2, "{r}");
        assert_eq!(
            db.rows(&format!("SELECT id, v FROM {p}.h ORDER BY id")),
            json!([{"id": 1, "v": "carol"}, {"id": 2, "v": "bob"}])
        );

        // a push refused for the role's privileges, or for its batch, binds nothing
        let e = push_as(
            &mut db,
            "pc_dave",
            p,
            "pc-new",
            &update("d1", 1, "carol", "dave"),
        )
        .unwrap_err();
        assert!(e.starts_with("42501") && e.contains("lacks UPDATE"), "{e}");
        // (an entity id that is no integer: refused after the id was bound, undone with it)
        let bad = update("b9", 1, "carol", "x").replace("\"1\"", "\"one\"");
        let e = push_as(&mut db, "pc_bob", p, "pc-new", &bad).unwrap_err();
        assert!(e.starts_with("22P02"), "{e}");
        assert_eq!(owner(&mut db, "pc-new"), Value::Null);

        // the extension's owner rebinds an id; a superuser may use any
        db.exec("UPDATE sync_clients SET owner = 'pc_bob' WHERE client_id = 'pc-phone'");
        let r = push_as(
            &mut db,
            "pc_bob",
            p,
            "pc-phone",
            &update("b2", 2, "bob", "bob again"),
        )
        .unwrap();
        assert_eq!(r["applied"], 1, "{r}");
        let e = push_as(
            &mut db,
            "pc_alice",
            p,
            "pc-phone",
            &update("a4", 1, "carol", "x"),
        )
        .unwrap_err();
        assert!(
            e.starts_with("42501") && e.contains("belongs to role \"pc_bob\""),
            "{e}"
        );
        let me = db.json("SELECT current_user AS u")["u"]
            .as_str()
            .unwrap()
            .to_string();
        let r = push_as(
            &mut db,
            &me,
            p,
            "pc-phone",
            &update("s1", 1, "carol", "admin"),
        )
        .unwrap();
        assert_eq!(r["applied"], 1, "{r}");
        db.exec(&format!(
            "DELETE FROM sync_clients WHERE client_id LIKE '{p}-%'"
        ));
    }
}
