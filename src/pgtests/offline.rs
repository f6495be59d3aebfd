//! sync_push, sync_pull and sync_snapshot end to end, through real autocommit
//! connections (a device or connector calls them one statement at a time).

#[cfg(test)]
mod tests {
    use crate::pgtests::fixture::Db;
    use serde_json::{json, Value};

    /// `{p}.crm` (id int key, name, phone, score >= 0) registered as ('{p}', 'contacts'),
    /// with rows 1..=n (name 'c<i>', phone '555-<i>', score 0). A never-run config from it
    /// keeps its change records from being pruned by other tests' sync_prune.
    fn setup(db: &mut Db, p: &str, n: i32) {
        db.exec(&format!(
            "DROP SCHEMA IF EXISTS {p} CASCADE;
             CREATE SCHEMA {p};
             CREATE TABLE {p}.crm (id int PRIMARY KEY, name text, phone text,
                                   score int NOT NULL DEFAULT 0 CHECK (score >= 0));
             CREATE TABLE {p}.keep (id int PRIMARY KEY, name text, phone text, score int);
             INSERT INTO {p}.crm SELECT g, 'c' || g, '555-' || g, 0 FROM generate_series(1, {n}) g;
             SELECT sync_register_table('{p}', 'contacts', '{p}.crm');
             SELECT sync_register_table('{p}_keep', 'contacts', '{p}.keep');
             SELECT sync_create_config('{p}_keep', '{p}', '{p}_keep', 'contacts');
             UPDATE sync_configs SET enabled = false WHERE name = '{p}_keep';"
        ));
    }

    fn push_res(
        db: &mut Db,
        p: &str,
        changes: &Value,
        client: Option<&str>,
        strategy: &str,
    ) -> Result<Value, String> {
        db.0.query_one(
            "SELECT sync_push($1, 'contacts', $2::text::jsonb, $3, $4)::text",
            &[&p, &changes.to_string(), &client, &strategy],
        )
        .map(|r| r.get::<_, String>(0).parse().unwrap())
        .map_err(|e| {
            let d = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
            format!("{}: {}", d.code().code(), d.message())
        })
    }

    fn push(db: &mut Db, p: &str, changes: Value, client: &str, strategy: &str) -> Value {
        push_res(db, p, &changes, Some(client), strategy)
            .unwrap_or_else(|e| panic!("push {changes}: {e}"))
    }

    fn pull(db: &mut Db, p: &str, cursor: Option<&str>, max: i32, client: Option<&str>) -> Value {
        db.0.query_one(
            "SELECT sync_pull($1, 'contacts', $2, $3, $4)::text",
            &[&p, &cursor, &max, &client],
        )
        .unwrap_or_else(|e| panic!("pull: {e:?}"))
        .get::<_, String>(0)
        .parse()
        .unwrap()
    }

    /// Server clock in epoch milliseconds, `offset_ms` from now.
    fn now_ms(db: &mut Db, offset_ms: i64) -> i64 {
        let v = db.json("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS t");
        v["t"].as_i64().unwrap() + offset_ms
    }

    fn update(id: &str, entity: i64, col: &str, old: &str, new: &str, at: Value) -> Value {
        json!({"id": id, "entity_id": entity.to_string(), "operation": "update",
               "fields": {col: {"old": old, "new": new}}, "changed_at": at})
    }

    fn log_count(db: &mut Db, p: &str) -> i64 {
        db.json(&format!(
            "SELECT count(*) AS n FROM change_log WHERE system = '{p}'"
        ))["n"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn offline_device_edit_against_office_edit_under_each_strategy() {
        let mut db = Db::new();
        let p = "off_strat";
        setup(&mut db, p, 6);
        // the office edits every contact's phone now
        db.exec(&format!("UPDATE {p}.crm SET phone = phone || '-office'"));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let newer = json!(now_ms(&mut db, -5));
        let older = json!("2020-01-01T00:00:00Z");
        let r = push(
            &mut db,
            p,
            json!([
                update(
                    "old-edit",
                    1,
                    "phone",
                    "555-1",
                    "555-1-device",
                    older.clone()
                ),
                update(
                    "new-edit",
                    2,
                    "phone",
                    "555-2",
                    "555-2-device",
                    newer.clone()
                ),
            ]),
            "dev1",
            "latest_wins",
        );
        assert_eq!(
            (r["applied"].clone(), r["conflicts"].clone()),
            (json!(0), json!(2)),
            "{r}"
        );
        assert_eq!(
            r["results"][0]["winner"], "server",
            "an older device edit loses to a newer office edit: {r}"
        );
        assert_eq!(
            r["results"][1]["winner"], "client",
            "a newer device edit wins: {r}"
        );
        assert_eq!(
            db.rows(&format!(
                "SELECT phone FROM {p}.crm WHERE id <= 2 ORDER BY id"
            )),
            json!([{"phone": "555-1-office"}, {"phone": "555-2-device"}])
        );
        // the pushed write is recorded with the client's origin and the device's time
        let rec = db.json(&format!(
            "SELECT origin, floor(extract(epoch FROM changed_at) * 1000)::bigint AS ms FROM change_log
              WHERE system = '{p}' AND entity_id = '2' ORDER BY id DESC LIMIT 1"
        ));
        assert_eq!(rec, json!({"origin": "client:dev1", "ms": newer}));

        for (id, strategy, winner, phone) in [
            (3, "client_wins", "client", "555-3-device"),
            (4, "server_wins", "server", "555-4-office"),
            (5, "manual", "pending", "555-5-office"),
        ] {
            let r = push(
                &mut db,
                p,
                json!([update(
                    &format!("s{id}"),
                    id,
                    "phone",
                    &format!("555-{id}"),
                    &format!("555-{id}-device"),
                    newer.clone()
                )]),
                "dev1",
                strategy,
            );
            assert_eq!(r["results"][0]["status"], "conflict", "{strategy}: {r}");
            assert_eq!(r["results"][0]["winner"], winner, "{strategy}: {r}");
            assert_eq!(
                db.json(&format!("SELECT phone FROM {p}.crm WHERE id = {id}"))["phone"],
                phone,
                "{strategy}"
            );
        }
        // every conflict is kept with both values and the base, resolved ones included
        let e = db.json(&format!(
            "SELECT id FROM sync_endpoints WHERE system = '{p}'"
        ))["id"]
            .clone();
        assert_eq!(
            db.rows(&format!(
                "SELECT source_id, kind, fields, source_value, target_value, base_value, strategy, resolution, client_id, config_id
                   FROM sync_conflicts WHERE endpoint_id = {e} ORDER BY id"
            )),
            json!([
                {"source_id": "1", "kind": "update_update", "fields": ["phone"], "source_value": {"phone": "555-1-device"},
                 "target_value": {"phone": "555-1-office"}, "base_value": {"phone": "555-1"}, "strategy": "latest_wins",
                 "resolution": "target", "client_id": "dev1", "config_id": null},
                {"source_id": "2", "kind": "update_update", "fields": ["phone"], "source_value": {"phone": "555-2-device"},
                 "target_value": {"phone": "555-2-office"}, "base_value": {"phone": "555-2"}, "strategy": "latest_wins",
                 "resolution": "source", "client_id": "dev1", "config_id": null},
                {"source_id": "3", "kind": "update_update", "fields": ["phone"], "source_value": {"phone": "555-3-device"},
                 "target_value": {"phone": "555-3-office"}, "base_value": {"phone": "555-3"}, "strategy": "client_wins",
                 "resolution": "source", "client_id": "dev1", "config_id": null},
                {"source_id": "4", "kind": "update_update", "fields": ["phone"], "source_value": {"phone": "555-4-device"},
                 "target_value": {"phone": "555-4-office"}, "base_value": {"phone": "555-4"}, "strategy": "server_wins",
                 "resolution": "target", "client_id": "dev1", "config_id": null},
                {"source_id": "5", "kind": "update_update", "fields": ["phone"], "source_value": {"phone": "555-5-device"},
                 "target_value": {"phone": "555-5-office"}, "base_value": {"phone": "555-5"}, "strategy": "manual",
                 "resolution": "pending", "client_id": "dev1", "config_id": null},
            ])
        );
        // the manual one is resolved like any conflict: the client's value is written
        let cid = r_conflict_id(&mut db, e.as_i64().unwrap(), "5");
        let r = db.json(&format!(
            "SELECT sync_resolve_conflict({cid}, 'source') AS r"
        ))["r"]
            .clone();
        assert_eq!(r["resolution"], "source", "{r}");
        assert_eq!(
            db.json(&format!("SELECT phone FROM {p}.crm WHERE id = 5"))["phone"],
            "555-5-device"
        );
        assert_eq!(
            db.json(&format!(
                "SELECT resolution FROM sync_conflicts WHERE id = {cid}"
            ))["resolution"],
            "source"
        );
        let again = db.err(&format!("SELECT sync_resolve_conflict({cid}, 'target')"));
        assert!(
            again.starts_with("55000") && again.contains("already resolved"),
            "{again}"
        );

        // a device clock in 2030 is clamped to the server's, and the clamp is answered
        let r = push(
            &mut db,
            p,
            json!([update(
                "future",
                6,
                "name",
                "c6",
                "six",
                json!("2030-01-01T00:00:00Z")
            )]),
            "dev1",
            "latest_wins",
        );
        let res = &r["results"][0];
        assert_eq!(res["status"], "applied", "{r}");
        assert_eq!(
            res["changed_at_clamped"]["sent"], "2030-01-01T00:00:00Z",
            "{r}"
        );
        let late = db.json(&format!(
            "SELECT changed_at <= now() AS ok FROM change_log WHERE system = '{p}' AND entity_id = '6' ORDER BY id DESC LIMIT 1"
        ));
        assert_eq!(late["ok"], true);
    }

    fn r_conflict_id(db: &mut Db, endpoint: i64, entity: &str) -> i64 {
        db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE endpoint_id = {endpoint} AND source_id = '{entity}' AND resolution = 'pending'"
        ))["id"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn offline_untouched_field_applies_beside_a_conflicting_one() {
        let mut db = Db::new();
        let p = "off_mixed";
        setup(&mut db, p, 1);
        db.exec(&format!("UPDATE {p}.crm SET phone = 'office' WHERE id = 1"));
        let r = push(
            &mut db,
            p,
            json!([{"id": "m1", "entity_id": 1, "operation": "update",
            "fields": {"phone": {"old": "555-1", "new": "device"}, "name": {"old": "c1", "new": "Ann"},
                       "score": {"old": 0, "new": 0}},
            "changed_at": "2021-05-05T10:00:00+02:00"}]),
            "dev1",
            "server_wins",
        );
        assert_eq!(r["results"][0]["status"], "conflict", "{r}");
        assert_eq!(
            r["results"][0]["conflicts"][0]["fields"],
            json!(["phone"]),
            "{r}"
        );
        assert_eq!(
            db.json(&format!(
                "SELECT name, phone, score FROM {p}.crm WHERE id = 1"
            )),
            json!({"name": "Ann", "phone": "office", "score": 0})
        );
        // the record of the write holds the field that applied, at the device's time
        assert_eq!(
            db.json(&format!(
                "SELECT fields, changed_at = '2021-05-05T08:00:00Z' AS at FROM change_log
                  WHERE system = '{p}' AND origin = 'client:dev1'"
            )),
            json!({"fields": {"name": {"old": "c1", "new": "Ann"}}, "at": true})
        );
    }

    /// Resolving a push conflict never loses an edit of the row made after the conflict
    /// was recorded: a choice that would overwrite it (update_update) or delete the row
    /// with it (delete_update) is refused with 55000 and nothing is written.
    #[test]
    fn offline_resolving_a_push_conflict_keeps_a_later_edit() {
        let mut db = Db::new();
        let p = "off_later";
        setup(&mut db, p, 2);
        db.exec(&format!(
            "UPDATE {p}.crm SET phone = 'office' WHERE id = 1;
             UPDATE {p}.crm SET name = 'office' WHERE id = 2;"
        ));
        let t = json!("2021-05-05T10:00:00Z");
        let r = push(
            &mut db,
            p,
            json!([update("u1", 1, "phone", "555-1", "device", t.clone()),
                   {"id": "d2", "entity_id": "2", "operation": "delete", "changed_at": t}]),
            "dev1",
            "manual",
        );
        let cid = |i: usize| {
            r["results"][i]["conflict_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{r}"))
        };
        let (update_cid, delete_cid) = (cid(0), cid(1));
        // the office edits both rows again before anyone resolves
        db.exec(&format!(
            "UPDATE {p}.crm SET phone = 'office again' WHERE id = 1;
             UPDATE {p}.crm SET name = 'office again' WHERE id = 2;"
        ));
        let e = db.err(&format!(
            "SELECT sync_resolve_conflict({update_cid}, 'source')"
        ));
        assert!(
            e.starts_with("55000") && e.contains(r#"(phone is now "office again", was "office")"#),
            "{e}"
        );
        let e = db.err(&format!(
            "SELECT sync_resolve_conflict({delete_cid}, 'source')"
        ));
        assert!(
            e.starts_with("55000") && e.contains(r#"(name is now "office again", was "office")"#),
            "{e}"
        );
        assert_eq!(
            db.rows(&format!("SELECT id, name, phone FROM {p}.crm ORDER BY id")),
            json!([{"id": 1, "name": "c1", "phone": "office again"},
                   {"id": 2, "name": "office again", "phone": "555-2"}])
        );
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_conflicts WHERE id IN ({update_cid}, {delete_cid}) AND resolution = 'pending'"
            ))["n"],
            2
        );
        // choices that lose nothing go through
        db.json(&format!(
            "SELECT sync_resolve_conflict({update_cid}, 'merged', '{{\"phone\": \"both\"}}') AS r"
        ));
        db.json(&format!(
            "SELECT sync_resolve_conflict({delete_cid}, 'target') AS r"
        ));
        assert_eq!(
            db.rows(&format!("SELECT id, name, phone FROM {p}.crm ORDER BY id")),
            json!([{"id": 1, "name": "c1", "phone": "both"},
                   {"id": 2, "name": "office again", "phone": "555-2"}])
        );
    }

    #[test]
    fn offline_resent_batch_is_all_duplicates_and_a_rejected_change_is_remembered() {
        let mut db = Db::new();
        let p = "off_dup";
        setup(&mut db, p, 3);
        let batch = json!([
            update("u1", 1, "phone", "555-1", "111", json!(1_700_000_000_000i64)),
            {"id": "i1", "entity_id": "10", "operation": "insert", "fields": {"name": {"new": "new"}}, "changed_at": 1_700_000_000_000i64},
            {"id": "d1", "entity_id": "3", "operation": "delete", "changed_at": 1_700_000_000_000i64},
            {"id": "bad", "entity_id": "2", "operation": "update", "fields": {"score": {"old": 0, "new": -1}}, "changed_at": 1_700_000_000_000i64},
            {"id": "gone", "entity_id": "99", "operation": "delete", "changed_at": 1_700_000_000_000i64},
        ]);
        let r = push(&mut db, p, batch.clone(), "dev1", "latest_wins");
        assert_eq!(
            (
                r["applied"].clone(),
                r["duplicates"].clone(),
                r["conflicts"].clone(),
                r["rejected"].clone()
            ),
            (json!(4), json!(0), json!(0), json!(1)),
            "{r}"
        );
        let statuses: Vec<Value> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["status"].clone())
            .collect();
        assert_eq!(
            statuses,
            vec![
                json!("applied"),
                json!("applied"),
                json!("applied"),
                json!("rejected"),
                json!("applied")
            ],
            "in order: {r}"
        );
        assert_eq!(r["results"][3]["id"], "bad");
        assert_eq!(r["results"][3]["sqlstate"], "23514", "{r}");
        assert!(
            r["results"][3]["reason"]
                .as_str()
                .unwrap()
                .contains("crm_score_check"),
            "{r}"
        );
        let state = db.rows(&format!("SELECT * FROM {p}.crm ORDER BY id"));
        assert_eq!(
            state,
            json!([
                {"id": 1, "name": "c1", "phone": "111", "score": 0},
                {"id": 2, "name": "c2", "phone": "555-2", "score": 0},
                {"id": 10, "name": "new", "phone": null, "score": 0},
            ])
        );
        let n = log_count(&mut db, p);
        // sent again (a dropped connection): nothing applies twice
        let again = push(&mut db, p, batch, "dev1", "latest_wins");
        assert_eq!(
            (again["applied"].clone(), again["duplicates"].clone()),
            (json!(0), json!(5)),
            "{again}"
        );
        assert_eq!(
            again["results"][3],
            json!({"id": "bad", "status": "duplicate", "first_status": "rejected"})
        );
        assert_eq!(log_count(&mut db, p), n, "no new change records");
        assert_eq!(
            db.rows(&format!("SELECT * FROM {p}.crm ORDER BY id")),
            state
        );
        // ids are per client: another device's "u1" is its own change
        let other = push(
            &mut db,
            p,
            json!([update(
                "u1",
                1,
                "phone",
                "111",
                "222",
                json!(1_700_000_000_000i64)
            )]),
            "dev2",
            "latest_wins",
        );
        assert_eq!(other["applied"], 1, "{other}");
        // the same id twice in one batch: the second is a duplicate
        let twice = push(
            &mut db,
            p,
            json!([
                update("t", 2, "name", "c2", "x", json!(1_700_000_000_000i64)),
                update("t", 2, "name", "x", "y", json!(1_700_000_000_000i64)),
            ]),
            "dev1",
            "latest_wins",
        );
        assert_eq!(
            (twice["applied"].clone(), twice["duplicates"].clone()),
            (json!(1), json!(1)),
            "{twice}"
        );
        assert_eq!(
            db.json(&format!("SELECT name FROM {p}.crm WHERE id = 2"))["name"],
            "x"
        );
    }

    #[test]
    fn offline_edge_cases_insert_existing_update_missing_delete_vs_update() {
        let mut db = Db::new();
        let p = "off_edge";
        setup(&mut db, p, 3);
        let t = json!(now_ms(&mut db, -60_000));
        // an insert of a key that exists is an update against old = null
        let r = push(
            &mut db,
            p,
            json!([{"id": "i", "entity_id": "1", "operation": "insert",
            "fields": {"name": {"new": "c1"}, "phone": {"new": "x"}}, "changed_at": t}]),
            "dev",
            "server_wins",
        );
        assert_eq!(
            r["results"][0]["status"], "conflict",
            "name converged, phone conflicts: {r}"
        );
        assert_eq!(r["results"][0]["conflicts"][0]["fields"], json!(["phone"]));
        // an update of a row the server deleted: update_delete; latest_wins against the delete
        db.exec(&format!("DELETE FROM {p}.crm WHERE id = 2"));
        let r = push(
            &mut db,
            p,
            json!([update("u", 2, "phone", "555-2", "back", t.clone())]),
            "dev",
            "latest_wins",
        );
        assert_eq!(
            r["results"][0]["conflicts"][0]["kind"], "update_delete",
            "{r}"
        );
        assert_eq!(
            r["results"][0]["winner"], "server",
            "the delete is later: {r}"
        );
        assert_eq!(
            db.json(&format!("SELECT count(*) AS n FROM {p}.crm WHERE id = 2"))["n"],
            0
        );
        let r = push(
            &mut db,
            p,
            json!([update("u2", 2, "phone", "555-2", "back", t.clone())]),
            "dev",
            "client_wins",
        );
        assert_eq!(r["results"][0]["winner"], "client", "{r}");
        assert_eq!(
            db.json(&format!("SELECT name, phone FROM {p}.crm WHERE id = 2")),
            json!({"name": null, "phone": "back"}),
            "re-created"
        );
        // a delete of a row someone changed after the device deleted it: delete_update
        db.exec(&format!("UPDATE {p}.crm SET name = 'office' WHERE id = 3"));
        let r = push(
            &mut db,
            p,
            json!([{"id": "d", "entity_id": 3, "operation": "delete", "changed_at": t}]),
            "dev",
            "latest_wins",
        );
        assert_eq!(
            r["results"][0]["conflicts"][0]["kind"], "delete_update",
            "{r}"
        );
        assert_eq!(r["results"][0]["winner"], "server", "{r}");
        assert_eq!(
            db.json(&format!("SELECT count(*) AS n FROM {p}.crm WHERE id = 3"))["n"],
            1
        );
        let r = push(
            &mut db,
            p,
            json!([{"id": "d2", "entity_id": 3, "operation": "delete", "changed_at": t}]),
            "dev",
            "manual",
        );
        let cid = r["results"][0]["conflict_id"].as_i64().unwrap();
        db.json(&format!(
            "SELECT sync_resolve_conflict({cid}, 'source') AS r"
        ));
        assert_eq!(
            db.json(&format!("SELECT count(*) AS n FROM {p}.crm WHERE id = 3"))["n"],
            0,
            "resolved for the delete"
        );
        // a delete of a missing row: applied (idempotent)
        let r = push(
            &mut db,
            p,
            json!([{"id": "d3", "entity_id": 3, "operation": "delete", "changed_at": t}]),
            "dev",
            "latest_wins",
        );
        assert_eq!(r["results"][0]["status"], "applied", "{r}");
    }

    #[test]
    fn offline_pushed_insert_update_and_delete_reach_the_other_endpoint() {
        let mut db = Db::new();
        let p = "off_flow";
        setup(&mut db, p, 1);
        let cfg = db.json(&format!(
            "SELECT id FROM sync_configs WHERE name = '{p}_keep'"
        ))["id"]
            .as_i64()
            .unwrap();
        let r = db.sync(cfg);
        assert_eq!(r["created"], 1, "initial load: {r}");
        let t = json!(now_ms(&mut db, -1000));
        push(
            &mut db,
            p,
            json!([{"id": "1", "entity_id": 7, "operation": "insert",
            "fields": {"name": {"new": "Grace"}, "phone": {"new": "555-7"}}, "changed_at": t},
            update("2", 1, "phone", "555-1", "555-9", t.clone())]),
            "dev",
            "latest_wins",
        );
        let r = db.sync(cfg);
        assert_eq!(
            (
                r["created"].clone(),
                r["updated"].clone(),
                r["conflicts"].clone()
            ),
            (json!(1), json!(1), json!(0)),
            "{r}"
        );
        assert_eq!(
            db.rows(&format!("SELECT id, name, phone FROM {p}.keep ORDER BY id")),
            json!([{"id": 1, "name": "c1", "phone": "555-9"}, {"id": 7, "name": "Grace", "phone": "555-7"}])
        );
        let t = now_ms(&mut db, 0);
        push(
            &mut db,
            p,
            json!([{"id": "3", "entity_id": 7, "operation": "delete", "changed_at": t}]),
            "dev",
            "latest_wins",
        );
        let r = db.sync(cfg);
        assert_eq!(r["deleted"], 1, "{r}");
        assert_eq!(
            db.json(&format!("SELECT count(*) AS n FROM {p}.keep WHERE id = 7"))["n"],
            0
        );
        // and the engine's writes to the other side do not come back to the pushed table
        let r = db.sync(cfg);
        assert_eq!(
            (
                r["created"].clone(),
                r["updated"].clone(),
                r["deleted"].clone()
            ),
            (json!(0), json!(0), json!(0)),
            "{r}"
        );
    }

    fn drain(
        db: &mut Db,
        p: &str,
        cursor: &mut String,
        max: i32,
        client: Option<&str>,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let r = pull(db, p, Some(cursor), max, client);
            let ch = r["changes"].as_array().unwrap_or_else(|| panic!("{r}"));
            assert!(ch.len() <= max as usize, "at most max_changes: {r}");
            out.extend(ch.iter().cloned());
            *cursor = r["cursor"].as_str().unwrap().to_string();
            if r["has_more"] == false {
                return out;
            }
        }
    }

    #[test]
    fn offline_pull_pages_while_another_connection_writes_each_change_once() {
        let mut reader = Db::new();
        let mut writer = Db::new();
        let mut long = Db::new();
        let p = "off_pull";
        setup(&mut reader, p, 0);
        let start = pull(&mut reader, p, None, 3, None);
        assert_eq!(
            (start["has_more"].clone(), start["changes"].clone()),
            (json!(false), json!([])),
            "NULL = from now"
        );
        let mut cursor = start["cursor"].as_str().unwrap().to_string();
        // a transaction that began first and commits last
        long.exec(&format!(
            "BEGIN; INSERT INTO {p}.crm (id, name) VALUES (1000, 'late')"
        ));
        let mut written = vec![];
        for i in 1..=7 {
            writer.exec(&format!("INSERT INTO {p}.crm (id, name) VALUES ({i}, 'w')"));
            written.push(i.to_string());
        }
        // page through, with the writer adding more between pages
        let mut got: Vec<String> = vec![];
        let mut i = 100;
        loop {
            let r = pull(&mut reader, p, Some(&cursor), 3, None);
            let ch = r["changes"].as_array().unwrap();
            assert!(ch.len() <= 3);
            got.extend(
                ch.iter()
                    .map(|c| c["entity_id"].as_str().unwrap().to_string()),
            );
            cursor = r["cursor"].as_str().unwrap().to_string();
            if i < 104 {
                writer.exec(&format!(
                    "INSERT INTO {p}.crm (id, name) VALUES ({i}, 'between')"
                ));
                written.push(i.to_string());
                i += 1;
            }
            if r["has_more"] == false && i >= 104 {
                break;
            }
        }
        let ids = |v: Vec<Value>| -> Vec<String> {
            v.iter()
                .map(|c| c["entity_id"].as_str().unwrap().to_string())
                .collect()
        };
        got.extend(ids(drain(&mut reader, p, &mut cursor, 3, None)));
        assert!(
            !got.contains(&"1000".to_string()),
            "not committed yet: {got:?}"
        );
        long.exec("COMMIT");
        written.push("1000".into());
        // a sequence or timestamp cursor would have passed the late change by now
        let late = ids(drain(&mut reader, p, &mut cursor, 3, None));
        assert_eq!(
            late,
            vec!["1000".to_string()],
            "the late commit comes with the next pull"
        );
        got.extend(late);
        assert_eq!(
            drain(&mut reader, p, &mut cursor, 3, None),
            Vec::<Value>::new(),
            "and never again"
        );
        let mut sorted_got = got.clone();
        sorted_got.sort();
        let mut sorted_written = written.clone();
        sorted_written.sort();
        assert_eq!(
            sorted_got, sorted_written,
            "every change exactly once across pages: got {got:?}"
        );
        // the changes carry what a client needs
        let one = pull(&mut reader, p, Some(&cursor), 10, None);
        assert_eq!(one["changes"], json!([]));
        writer.exec(&format!("UPDATE {p}.crm SET phone = 'p' WHERE id = 1"));
        let one = pull(
            &mut reader,
            p,
            Some(one["cursor"].as_str().unwrap()),
            10,
            None,
        );
        let c = &one["changes"][0];
        assert_eq!(
            (
                c["entity_id"].clone(),
                c["operation"].clone(),
                c["fields"].clone(),
                c["origin"].clone()
            ),
            (
                json!("1"),
                json!("update"),
                json!({"phone": {"old": null, "new": "p"}}),
                Value::Null
            ),
            "{one}"
        );
        assert!(c["id"].is_i64() && c["changed_at"].is_string(), "{one}");
    }

    #[test]
    fn offline_own_pushes_are_not_pulled_back() {
        let mut db = Db::new();
        let p = "off_own";
        setup(&mut db, p, 2);
        let c0 = pull(&mut db, p, None, 100, Some("dev1"))["cursor"]
            .as_str()
            .unwrap()
            .to_string();
        let t = now_ms(&mut db, 0);
        push(
            &mut db,
            p,
            json!([update("a", 1, "phone", "555-1", "dev", json!(t))]),
            "dev1",
            "latest_wins",
        );
        db.exec(&format!("UPDATE {p}.crm SET name = 'office' WHERE id = 2"));
        let ids = |v: &Value| -> Vec<(String, Value)> {
            v["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["entity_id"].as_str().unwrap().to_string(),
                        c["origin"].clone(),
                    )
                })
                .collect()
        };
        let mine = pull(&mut db, p, Some(&c0), 100, Some("dev1"));
        assert_eq!(ids(&mine), vec![("2".to_string(), Value::Null)], "{mine}");
        let other = pull(&mut db, p, Some(&c0), 100, Some("dev2"));
        assert_eq!(
            ids(&other),
            vec![
                ("1".to_string(), json!("client:dev1")),
                ("2".to_string(), Value::Null)
            ],
            "{other}"
        );
        let all = pull(&mut db, p, Some(&c0), 100, None);
        assert_eq!(ids(&all).len(), 2);
    }

    #[test]
    fn offline_pruned_cursor_answers_reset_then_snapshot_resyncs() {
        let mut db = Db::new();
        let mut other = Db::new();
        let p = "off_prune";
        // no config on this endpoint: its records are prunable
        db.exec(&format!(
            "DROP SCHEMA IF EXISTS {p} CASCADE; CREATE SCHEMA {p};
             CREATE TABLE {p}.crm (id text PRIMARY KEY, name text);
             INSERT INTO {p}.crm SELECT 'k' || lpad(g::text, 2, '0'), 'n' || g FROM generate_series(1, 5) g;
             SELECT sync_register_table('{p}', 'contacts', '{p}.crm');"
        ));
        let c0 = pull(&mut db, p, None, 100, None)["cursor"]
            .as_str()
            .unwrap()
            .to_string();
        db.exec(&format!(
            "UPDATE {p}.crm SET name = 'changed' WHERE id = 'k01'"
        ));
        let fresh = pull(&mut db, p, Some(&c0), 100, None);
        assert_eq!(
            fresh["changes"].as_array().map(Vec::len),
            Some(1),
            "{fresh}"
        );
        // another test's open transaction holds back what may be pruned: retry a while
        let mut left = json!(1);
        for _ in 0..100 {
            db.json("SELECT sync_prune('0 seconds') AS n");
            left = db.json(&format!(
                "SELECT count(*) AS n FROM change_log WHERE system = '{p}'"
            ))["n"]
                .clone();
            if left == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(left, 0, "pruned");
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_log_horizon WHERE system = '{p}'"
            ))["n"],
            1,
            "the prune horizon is recorded"
        );
        let r = pull(&mut db, p, Some(&c0), 100, None);
        assert_eq!(
            (r["reset_required"].clone(), r["reason"].clone()),
            (json!(true), json!("pruned")),
            "{r}"
        );
        assert!(r.get("changes").is_none(), "{r}");
        // resync: page the rows; a write between pages is pulled from the first page's cursor
        let first = db.json(&format!(
            "SELECT sync_snapshot('{p}', 'contacts', NULL, 2) AS r"
        ))["r"]
            .clone();
        assert_eq!(
            first["rows"],
            json!([
                {"entity_id": "k01", "values": {"name": "changed"}}, {"entity_id": "k02", "values": {"name": "n2"}}
            ]),
            "{first}"
        );
        assert_eq!(first["has_more"], true);
        let mut cursor = first["cursor"].as_str().unwrap().to_string();
        other.exec(&format!("UPDATE {p}.crm SET name = 'during' WHERE id = 'k01'; INSERT INTO {p}.crm VALUES ('k00', 'new')"));
        let mut keys: Vec<Value> = first["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["entity_id"].clone())
            .collect();
        let mut after = first["after_key"].as_str().unwrap().to_string();
        loop {
            let page = db.json(&format!(
                "SELECT sync_snapshot('{p}', 'contacts', '{after}', 2) AS r"
            ))["r"]
                .clone();
            assert!(
                page.get("cursor").is_none(),
                "only the first page has a cursor: {page}"
            );
            keys.extend(
                page["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["entity_id"].clone()),
            );
            if page["has_more"] == false {
                break;
            }
            after = page["after_key"].as_str().unwrap().to_string();
        }
        assert_eq!(
            keys,
            vec![
                json!("k01"),
                json!("k02"),
                json!("k03"),
                json!("k04"),
                json!("k05")
            ]
        );
        let missed = drain(&mut db, p, &mut cursor, 100, None);
        let ids: Vec<Value> = missed.iter().map(|c| c["entity_id"].clone()).collect();
        assert_eq!(
            ids,
            vec![json!("k01"), json!("k00")],
            "what changed after the snapshot's position: {missed:?}"
        );
    }

    #[test]
    fn offline_malformed_input_refuses_the_whole_batch() {
        let mut db = Db::new();
        let p = "off_bad";
        setup(&mut db, p, 2);
        let good = update(
            "good",
            1,
            "phone",
            "555-1",
            "applied?",
            json!("2024-01-01T00:00:00Z"),
        );
        let with = |extra: Value| -> Value {
            let mut c = update(
                "c2",
                2,
                "phone",
                "555-2",
                "x",
                json!("2024-01-01T00:00:00Z"),
            );
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            json!([good, c])
        };
        let before_rows = db.rows(&format!("SELECT * FROM {p}.crm ORDER BY id"));
        let before_log = log_count(&mut db, p);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(Value, Option<&str>, &str, &str, &[&str])> = vec![
            (
                json!({"not": "an array"}),
                Some("dev"),
                "latest_wins",
                "22023",
                &["must be a JSON array"],
            ),
            (
                with(json!({"id": null})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 has no \"id\""],
            ),
            (
                with(json!({"entity_id": null})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 (id \"c2\")", "entity_id"],
            ),
            (
                with(json!({"operation": null})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 (id \"c2\")", "operation"],
            ),
            (
                with(json!({"operation": "upsert"})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 (id \"c2\")", "unknown operation \"upsert\""],
            ),
            (
                with(json!({"fields": {"email": {"old": 1, "new": 2}}})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 (id \"c2\")", "unknown column \"email\""],
            ),
            (
                with(json!({"fields": {"id": {"old": 2, "new": 3}}})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 (id \"c2\")", "key column"],
            ),
            (
                with(json!({"fields": {"score": {"old": 0, "new": "lots"}}})),
                Some("dev"),
                "latest_wins",
                "22P02",
                &["change 2 (id \"c2\")", "\"score\"", "integer"],
            ),
            (
                with(json!({"entity_id": "two"})),
                Some("dev"),
                "latest_wins",
                "22P02",
                &["change 2 (id \"c2\")", "entity_id \"two\""],
            ),
            (
                with(json!({"changed_at": "last tuesday"})),
                Some("dev"),
                "latest_wins",
                "22023",
                &["change 2 (id \"c2\")", "changed_at"],
            ),
            (
                with(json!({})),
                None,
                "latest_wins",
                "22004",
                &["sync_push: client_id must not be NULL"],
            ),
            (
                with(json!({})),
                Some("dev"),
                "source_wins",
                "22023",
                &["unknown conflict strategy \"source_wins\""],
            ),
        ];
        for (changes, client, strategy, code, fragments) in cases {
            let e = push_res(&mut db, p, &changes, client, strategy)
                .expect_err(&format!("{changes} should be refused"));
            assert!(e.starts_with(code), "{changes}: {e}");
            for f in fragments {
                assert!(e.contains(f), "{changes}: {e} should mention {f}");
            }
        }
        let e = db.err("SELECT sync_push('nope', 'contacts', '[]', 'dev')");
        assert!(e.starts_with("42704") && e.contains("nope"), "{e}");
        db.exec("SET sync_engine.push_max_batch = 1");
        let e = push_res(&mut db, p, &with(json!({})), Some("dev"), "latest_wins").unwrap_err();
        assert!(e.starts_with("54000") && e.contains("at most 1"), "{e}");
        db.exec("RESET sync_engine.push_max_batch");
        // nothing was applied and no id remembered: the corrected batch goes through
        assert_eq!(
            db.rows(&format!("SELECT * FROM {p}.crm ORDER BY id")),
            before_rows
        );
        assert_eq!(log_count(&mut db, p), before_log);
        assert_eq!(db.json("SELECT count(*) AS n FROM sync_push_ids WHERE client_id = 'dev' AND change_id IN ('good', 'c2')")["n"], 0);
        let r = push(&mut db, p, with(json!({})), "dev", "latest_wins");
        assert_eq!(r["applied"], 2, "{r}");
        // pull's bad arguments
        for (sql, code, frag) in [
            (
                format!("SELECT sync_pull('{p}', 'contacts', 'not-a-cursor')"),
                "22023",
                "not one sync_pull returned",
            ),
            (
                format!("SELECT sync_pull('{p}', 'contacts', NULL, 0)"),
                "22023",
                "max_changes must be at least 1",
            ),
            (
                "SELECT sync_pull('nope', 'contacts')".to_string(),
                "42704",
                "nope",
            ),
            (
                format!("SELECT sync_snapshot('{p}', 'contacts', NULL, 0)"),
                "22023",
                "max_rows must be at least 1",
            ),
        ] {
            let e = db.err(&sql);
            assert!(e.starts_with(code) && e.contains(frag), "{sql}: {e}");
        }
        // a cursor of another endpoint
        let c = pull(&mut db, &format!("{p}_keep"), None, 1, None)["cursor"]
            .as_str()
            .unwrap()
            .to_string();
        let e = db.err(&format!("SELECT sync_pull('{p}', 'contacts', '{c}')"));
        assert!(
            e.starts_with("22023") && e.contains("another endpoint"),
            "{e}"
        );
    }

    #[test]
    fn offline_role_without_privileges_gets_42501_never_rows() {
        let mut db = Db::new();
        let p = "off_priv";
        setup(&mut db, p, 2);
        db.exec(
            "DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'off_nobody') THEN
                 EXECUTE 'DROP OWNED BY off_nobody CASCADE'; EXECUTE 'DROP ROLE off_nobody';
               END IF;
               IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'off_reader') THEN
                 EXECUTE 'DROP OWNED BY off_reader CASCADE'; EXECUTE 'DROP ROLE off_reader';
               END IF;
             END $$;
             CREATE ROLE off_nobody NOLOGIN; CREATE ROLE off_reader NOLOGIN;",
        );
        db.exec(&format!(
            "GRANT USAGE ON SCHEMA {p} TO off_reader; GRANT SELECT ON {p}.crm TO off_reader;"
        ));
        let c0 = pull(&mut db, p, None, 10, None)["cursor"]
            .as_str()
            .unwrap()
            .to_string();
        db.exec(&format!("UPDATE {p}.crm SET name = 'secret' WHERE id = 1"));
        let change = json!([update(
            "x",
            1,
            "phone",
            "555-1",
            "hack",
            json!("2024-01-01T00:00:00Z")
        )])
        .to_string();
        for (role, sql, lacks) in [
            (
                "off_nobody",
                format!("SELECT sync_pull('{p}', 'contacts', '{c0}')"),
                "SELECT",
            ),
            (
                "off_nobody",
                format!("SELECT sync_snapshot('{p}', 'contacts')"),
                "SELECT",
            ),
            (
                "off_nobody",
                format!("SELECT sync_push('{p}', 'contacts', '{change}', 'dev')"),
                "SELECT, UPDATE",
            ),
            (
                "off_reader",
                format!("SELECT sync_push('{p}', 'contacts', '{change}', 'dev')"),
                "lacks UPDATE",
            ),
        ] {
            let e = db.err(&format!("SET ROLE {role}; {sql}"));
            db.exec("RESET ROLE");
            assert!(
                e.starts_with("42501") && e.contains(lacks),
                "{role} {sql}: {e}"
            );
            assert!(!e.contains("secret"));
        }
        // the reader may pull and read the snapshot
        db.exec("SET ROLE off_reader");
        let r = pull(&mut db, p, Some(&c0), 10, None);
        db.exec("RESET ROLE");
        assert_eq!(r["changes"][0]["fields"]["name"]["new"], "secret", "{r}");
        assert_eq!(
            db.json(&format!("SELECT phone FROM {p}.crm WHERE id = 1"))["phone"],
            "555-1",
            "nothing pushed"
        );
    }
    #[test]
    fn offline_the_same_batch_pushed_twice_at_once_applies_once() {
        let mut a = Db::new();
        let p = "off_race";
        setup(&mut a, p, 2);
        let batch = json!([
            update(
                "r1",
                1,
                "phone",
                "555-1",
                "A",
                json!("2024-01-01T00:00:00Z")
            ),
            update("r2", 2, "name", "c2", "B", json!("2024-01-01T00:00:00Z")),
        ]);
        a.exec("BEGIN");
        let first = push(&mut a, p, batch.clone(), "dev", "latest_wins");
        assert_eq!(first["applied"], 2, "{first}");
        // the second connection waits for the first one's claim of the ids...
        let b = std::thread::spawn({
            let batch = batch.clone();
            move || {
                let mut b = Db::new();
                push(&mut b, "off_race", batch, "dev", "latest_wins")
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(
            !b.is_finished(),
            "the second push waits for the first to commit"
        );
        a.exec("COMMIT");
        // ...and then answers duplicate for each, writing nothing
        let second = b.join().unwrap();
        assert_eq!(
            (second["applied"].clone(), second["duplicates"].clone()),
            (json!(0), json!(2)),
            "{second}"
        );
        assert_eq!(
            a.rows(&format!("SELECT name, phone FROM {p}.crm ORDER BY id")),
            json!([{"name": "c1", "phone": "A"}, {"name": "B", "phone": "555-2"}])
        );
        assert_eq!(log_count(&mut a, p), 2, "one change record per change");
        // a manual conflict resolved with merged values
        a.exec(&format!("UPDATE {p}.crm SET phone = 'office' WHERE id = 1"));
        let r = push(
            &mut a,
            p,
            json!([update(
                "r3",
                1,
                "phone",
                "A",
                "device",
                json!("2024-01-01T00:00:00Z")
            )]),
            "dev",
            "manual",
        );
        let cid = r["results"][0]["conflict_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{r}"));
        let e = a.err(&format!(
            "SELECT sync_resolve_conflict({cid}, 'merged', '{{\"name\": \"x\"}}')"
        ));
        assert!(
            e.starts_with("22023") && e.contains("missing: phone"),
            "{e}"
        );
        let res = a.json(&format!(
            "SELECT sync_resolve_conflict({cid}, 'merged', '{{\"phone\": \"both\"}}') AS r"
        ))["r"]
            .clone();
        assert_eq!(res["resolved_value"], json!({"phone": "both"}), "{res}");
        assert_eq!(
            a.json(&format!("SELECT phone FROM {p}.crm WHERE id = 1"))["phone"],
            "both"
        );
        // the resolution is an ordinary change: the pushing client pulls it too
        assert_eq!(
            a.json(&format!(
                "SELECT origin FROM change_log WHERE system = '{p}' ORDER BY id DESC LIMIT 1"
            ))["origin"],
            Value::Null
        );
    }
}
