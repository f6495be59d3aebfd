//! sync_execute end to end, through real autocommit connections (each statement its
//! own transaction, as an application or the worker would run them).

#[cfg(test)]
pub mod tests {
    use crate::pgtests::fixture::{crm_hub, Db};
    use serde_json::{json, Value};

    /// How many of config `c`'s sync_errors rows match `filter` (SQL, "true" for all).
    fn error_count(db: &mut Db, c: i64, filter: &str) -> Value {
        db.json(&format!(
            "SELECT count(*) AS n FROM sync_errors WHERE config_id = {c} AND {filter}"
        ))["n"]
            .clone()
    }

    fn counts(r: &Value) -> Value {
        json!([
            r["created"],
            r["updated"],
            r["deleted"],
            r["conflicts"],
            r["errors"]
        ])
    }

    #[test]
    fn creates_updates_and_split_join_flow_both_ways_without_echo() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_basic", "latest_wins", "bidirectional", "NULL");
        db.exec("INSERT INTO e_basic.crm (full_name, email, phone) VALUES ('Ada Lovelace', 'Ada@Example.COM', '555-1'), ('Madonna', NULL, NULL)");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([2, 0, 0, 0, 0]), "{r}");
        assert_eq!(
            db.rows("SELECT id, firstname, lastname, email FROM e_basic.hub ORDER BY id"),
            json!([
                {"id": "hs-1000", "firstname": "Ada", "lastname": "Lovelace", "email": "ada@example.com"},
                {"id": "hs-1001", "firstname": "Madonna", "lastname": null, "email": null}
            ])
        );
        // edits on both sides, different fields of the same entity: both survive
        db.exec("UPDATE e_basic.hub SET lastname = 'King' WHERE id = 'hs-1000'");
        db.exec("UPDATE e_basic.crm SET phone = '555-2' WHERE id = 1");
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 0, "{r}");
        assert_eq!(r["copied"], 0, "left to the merge: {r}");
        assert_eq!(
            db.json("SELECT full_name, phone, email FROM e_basic.crm WHERE id = 1"),
            json!({"full_name": "Ada King", "phone": "555-2", "email": "Ada@Example.COM"}),
            "a lossy transform (lowercase) never rewrites a source column nobody changed"
        );
        assert_eq!(
            db.json("SELECT phone, lastname FROM e_basic.hub WHERE id = 'hs-1000'"),
            json!({"phone": "555-2", "lastname": "King"})
        );
        // a create on the mirror side arrives in the CRM with a CRM key
        db.exec("INSERT INTO e_basic.hub (firstname, lastname, email) VALUES ('Grace', 'Hopper', 'g@navy.mil')");
        let r = db.sync(c);
        assert_eq!(r["created"], 1, "{r}");
        assert_eq!(
            db.json("SELECT full_name, email FROM e_basic.crm WHERE id = 3"),
            json!({"full_name": "Grace Hopper", "email": "g@navy.mil"})
        );
        // the engine's own writes never come back
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 0]), "echo: {r}");
        assert_eq!(r["synced"], 0);
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_links WHERE config_id = {c}"
            ))["n"],
            3
        );
        // deletes propagate
        db.exec("DELETE FROM e_basic.crm WHERE id = 2");
        let r = db.sync(c);
        assert_eq!(r["deleted"], 1, "{r}");
        assert_eq!(db.json("SELECT count(*) AS n FROM e_basic.hub")["n"], 2);
        let run = db.json(&format!(
            "SELECT status, started_by FROM sync_runs WHERE id = {}",
            r["run_id"]
        ));
        assert_eq!(run, json!({"status": "success", "started_by": "manual"}));
    }

    fn conflict_case(p: &str, strategy: &str, target_later: bool) -> (Db, i64) {
        let mut db = Db::new();
        let c = crm_hub(&mut db, p, strategy, "bidirectional", "NULL");
        db.exec(&format!(
            "INSERT INTO {p}.crm (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.io', '555-1')"
        ));
        db.sync(c);
        if target_later {
            db.exec(&format!(
                "UPDATE {p}.crm SET phone = '555-SRC' WHERE id = 1"
            ));
            db.exec(&format!(
                "UPDATE {p}.hub SET phone = '555-TGT', email = 'ann@new.io'"
            ));
        } else {
            db.exec(&format!(
                "UPDATE {p}.hub SET phone = '555-TGT', email = 'ann@new.io'"
            ));
            db.exec(&format!(
                "UPDATE {p}.crm SET phone = '555-SRC' WHERE id = 1"
            ));
        }
        (db, c)
    }

    fn phones(db: &mut Db, p: &str) -> Value {
        db.json(&format!(
            "SELECT (SELECT phone FROM {p}.crm) AS crm, (SELECT phone FROM {p}.hub) AS hub,
                    (SELECT email FROM {p}.crm) AS crm_email"
        ))
    }

    #[test]
    fn strategies_decide_per_field_and_keep_the_loser() {
        for (p, strategy, target_later, winner) in [
            ("e_sw", "source_wins", true, "555-SRC"),
            ("e_tw", "target_wins", false, "555-TGT"),
            ("e_lw1", "latest_wins", true, "555-TGT"),
            ("e_lw2", "latest_wins", false, "555-SRC"),
        ] {
            let (mut db, c) = conflict_case(p, strategy, target_later);
            let r = db.sync(c);
            assert_eq!(r["conflicts"], 1, "{p}: {r}");
            assert_eq!(
                phones(&mut db, p),
                json!({"crm": winner, "hub": winner, "crm_email": "ann@new.io"}),
                "{p}"
            );
            let conflict = db.json(&format!(
                "SELECT fields, source_value, target_value, base_value, resolution, resolved_value
                   FROM sync_conflicts WHERE config_id = {c}"
            ));
            let loser = if winner == "555-SRC" {
                "555-TGT"
            } else {
                "555-SRC"
            };
            assert_eq!(conflict["fields"], json!(["phone"]));
            assert_eq!(conflict["base_value"], json!("555-1"));
            assert_eq!(conflict["resolved_value"], json!(winner));
            let kept = [&conflict["source_value"], &conflict["target_value"]];
            assert!(
                kept.contains(&&json!(loser)),
                "{p}: losing value kept: {conflict}"
            );
            assert_eq!(
                conflict["resolution"],
                if winner == "555-SRC" {
                    "source"
                } else {
                    "target"
                }
            );
            let r = db.sync(c);
            assert_eq!(
                counts(&r),
                json!([0, 0, 0, 0, 0]),
                "{p}: converged, no echo: {r}"
            );
        }
    }

    #[test]
    fn latest_wins_uses_field_times_even_for_an_entity_changed_many_times() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_hot", "latest_wins", "bidirectional", "NULL");
        db.exec("INSERT INTO e_hot.crm (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.io', '555-1')");
        db.sync(c);
        // the CRM changes its email among 100 phone changes (more change records than
        // the work list carries per entity), the mirror changes the email after the
        // CRM did but before the CRM's last change: the mirror's email is the later one
        db.exec(
            "DO $$ BEGIN
               FOR i IN 1..69 LOOP UPDATE e_hot.crm SET phone = '555-S' || i WHERE id = 1; END LOOP;
               UPDATE e_hot.crm SET email = 'ann@crm.io' WHERE id = 1;
             END $$",
        );
        db.exec("UPDATE e_hot.hub SET email = 'ann@hub.io'");
        db.exec(
            "DO $$ BEGIN
               FOR i IN 70..100 LOOP UPDATE e_hot.crm SET phone = '555-S' || i WHERE id = 1; END LOOP;
             END $$",
        );
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 1, "{r}");
        assert_eq!(r["copied"], 0, "left to the merge: {r}");
        assert_eq!(
            db.json("SELECT phone, email FROM e_hot.crm WHERE id = 1"),
            json!({"phone": "555-S100", "email": "ann@hub.io"})
        );
        assert_eq!(
            db.json("SELECT phone, email FROM e_hot.hub"),
            json!({"phone": "555-S100", "email": "ann@hub.io"})
        );
    }

    #[test]
    fn partitioned_targets_write_only_the_rows_meant() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_part;
             CREATE TABLE e_part.src (id int PRIMARY KEY, v text);
             CREATE TABLE e_part.dst (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
             CREATE TABLE e_part.dst_1 PARTITION OF e_part.dst FOR VALUES FROM (1) TO (100);
             CREATE TABLE e_part.dst_2 PARTITION OF e_part.dst FOR VALUES FROM (100) TO (200);
             SELECT sync_register_table('e_part_src', 'x', 'e_part.src');
             SELECT sync_register_table('e_part_dst', 'x', 'e_part.dst');
             SELECT sync_create_config('e_part', 'e_part_src', 'e_part_dst', 'x');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_part';
             INSERT INTO e_part.src VALUES (1, 'one'), (101, 'hundred and one');",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_part'")["id"]
            .as_i64()
            .unwrap();
        // one transaction creates both rows: same xmin, and each is the first row of its
        // partition (same ctid)
        let r = db.sync(c);
        assert_eq!(r["created"], 2, "{r}");
        db.exec("UPDATE e_part.src SET v = 'ONE' WHERE id = 1");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 1, 0, 0, 0]), "{r}");
        assert_eq!(
            db.rows("SELECT id, v FROM e_part.dst ORDER BY id"),
            json!([{"id": 1, "v": "ONE"}, {"id": 101, "v": "hundred and one"}])
        );
        db.exec("DELETE FROM e_part.src WHERE id = 1");
        let r = db.sync(c);
        assert_eq!(r["deleted"], 1, "{r}");
        assert_eq!(
            db.rows("SELECT id, v FROM e_part.dst ORDER BY id"),
            json!([{"id": 101, "v": "hundred and one"}])
        );
    }

    #[test]
    fn manual_conflicts_wait_and_each_choice_resolves() {
        for (p, choice, merged, expect) in [
            ("e_m_src", "source", "NULL", "555-SRC"),
            ("e_m_tgt", "target", "NULL", "555-TGT"),
            (
                "e_m_mrg",
                "merged",
                "'{\"phone\": \"555-BOTH\"}'",
                "555-BOTH",
            ),
        ] {
            let (mut db, c) = conflict_case(p, "manual", true);
            let r = db.sync(c);
            assert_eq!(r["conflicts"], 1, "{r}");
            // conflicting field left alone, the rest merged
            assert_eq!(
                phones(&mut db, p),
                json!({"crm": "555-SRC", "hub": "555-TGT", "crm_email": "ann@new.io"})
            );
            let id = db.json(&format!(
                "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"
            ))["id"]
                .clone();
            // the queue is not re-filled while it waits
            db.exec(&format!("UPDATE {p}.crm SET full_name = 'Ann Lee-Smith'"));
            let r = db.sync(c);
            assert_eq!(r["conflicts"], 0, "{r}");
            let res = db.json(&format!(
                "SELECT sync_resolve_conflict({id}, '{choice}', {merged}) AS r"
            ));
            assert_eq!(res["r"]["resolution"], choice);
            assert_eq!(
                phones(&mut db, p),
                json!({"crm": expect, "hub": expect, "crm_email": "ann@new.io"}),
                "{p}"
            );
            assert_eq!(
                db.json(&format!(
                    "SELECT resolution, resolved_value FROM sync_conflicts WHERE id = {id}"
                )),
                json!({"resolution": choice, "resolved_value": {"phone": expect}})
            );
            let r = db.sync(c);
            assert_eq!(
                counts(&r),
                json!([0, 0, 0, 0, 0]),
                "resolution does not echo: {r}"
            );
            let e = db.err(&format!("SELECT sync_resolve_conflict({id}, 'source')"));
            assert!(
                e.starts_with("55000") && e.contains("already resolved"),
                "{e}"
            );
        }
        let mut db = Db::new();
        let e = db.err("SELECT sync_resolve_conflict(999999, 'source')");
        assert!(e.starts_with("42704") && e.contains("999999"), "{e}");
        let e = db.err("SELECT sync_resolve_conflict(1, 'mine')");
        assert!(
            e.starts_with("22023") && e.contains("source, target, merged"),
            "{e}"
        );
    }

    #[test]
    fn resolving_takes_current_values_and_touches_only_the_conflicting_field() {
        let (mut db, c) = conflict_case("e_m_fresh", "manual", true);
        assert_eq!(db.sync(c)["conflicts"], 1);
        // edits after the conflict was queued: a newer phone and an email not yet synced
        db.exec("UPDATE e_m_fresh.crm SET phone = '555-NEWER', email = 'ann@newest.io'");
        let id = db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"
        ))["id"]
            .clone();
        let e = db.err(&format!("SELECT sync_resolve_conflict({id}, 'merged', '{{\"phone\": \"1\", \"phnoe\": \"2\"}}')"));
        assert!(e.starts_with("22023") && e.contains("phnoe"), "{e}");
        db.json(&format!(
            "SELECT sync_resolve_conflict({id}, 'source') AS r"
        ));
        assert_eq!(
            phones(&mut db, "e_m_fresh"),
            json!({"crm": "555-NEWER", "hub": "555-NEWER", "crm_email": "ann@newest.io"}),
            "the source's current value wins and the unsynced email edit is kept"
        );
        db.sync(c);
        assert_eq!(
            db.json("SELECT email FROM e_m_fresh.hub")["email"],
            "ann@newest.io"
        );
    }

    #[test]
    fn delete_versus_update_is_a_conflict() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_dvu", "latest_wins", "bidirectional", "NULL");
        db.exec(
            "INSERT INTO e_dvu.crm (full_name, phone) VALUES ('Ann Lee', '1'), ('Bob Ray', '2')",
        );
        db.sync(c);
        // 1: deleted in CRM, then updated in the mirror -> the update is later and wins
        db.exec("DELETE FROM e_dvu.crm WHERE id = 1");
        db.exec("UPDATE e_dvu.hub SET phone = '1-new' WHERE firstname = 'Ann'");
        // 2: updated in the mirror, then deleted in CRM -> the delete wins
        db.exec("UPDATE e_dvu.hub SET phone = '2-new' WHERE firstname = 'Bob'");
        db.exec("DELETE FROM e_dvu.crm WHERE id = 2");
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 2, "{r}");
        assert_eq!(
            db.rows("SELECT full_name, phone FROM e_dvu.crm ORDER BY id"),
            json!([{"full_name": "Ann Lee", "phone": "1-new"}])
        );
        assert_eq!(
            db.rows("SELECT firstname FROM e_dvu.hub"),
            json!([{"firstname": "Ann"}])
        );
        assert_eq!(
            db.rows(&format!("SELECT kind, resolution, target_value FROM sync_conflicts WHERE config_id = {c} ORDER BY id")),
            json!([
                {"kind": "delete_update", "resolution": "target", "target_value": {"phone": "1-new"}},
                {"kind": "delete_update", "resolution": "source", "target_value": {"phone": "2-new"}}
            ])
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 0]), "{r}");
    }

    #[test]
    fn match_on_links_an_initial_load_without_duplicates() {
        let mut db = Db::new();
        let c = crm_hub(
            &mut db,
            "e_match",
            "source_wins",
            "bidirectional",
            "ARRAY['email']",
        );
        db.exec(
            "INSERT INTO e_match.crm (full_name, email, phone)
               SELECT 'Person ' || g, 'P' || g || '@x.io', '555-' || g FROM generate_series(1, 1200) g;
             INSERT INTO e_match.hub (firstname, lastname, email, phone)
               SELECT 'Person', g::text, 'p' || g || '@x.io', CASE WHEN g = 7 THEN '999' ELSE '555-' || g END
                 FROM generate_series(1, 1000) g;
             INSERT INTO e_match.hub (firstname, lastname, email) VALUES ('Only', 'Mirror', 'only@x.io');",
        );
        let r = db.sync(c);
        assert_eq!(
            r["created"], 201,
            "200 CRM-only rows + 1 mirror-only row: {r}"
        );
        assert_eq!(r["conflicts"], 1, "row 7's phone differs: {r}");
        assert_eq!(db.json("SELECT count(*) AS n FROM e_match.hub")["n"], 1201);
        assert_eq!(db.json("SELECT count(*) AS n FROM e_match.crm")["n"], 1201);
        assert_eq!(
            db.json("SELECT phone FROM e_match.hub WHERE email = 'p7@x.io'")["phone"],
            "555-7"
        );
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_links WHERE config_id = {c}"
            ))["n"],
            1201
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 0]), "{r}");
    }

    #[test]
    fn a_matched_pair_that_fails_is_not_duplicated_by_a_later_batch() {
        let mut db = Db::new();
        let c = crm_hub(
            &mut db,
            "e_mfail",
            "source_wins",
            "bidirectional",
            "ARRAY['email']",
        );
        db.exec(
            "INSERT INTO e_mfail.crm (full_name, email, phone)
               SELECT 'Person ' || g, 'p' || g || '@x.io', CASE WHEN g = 7 THEN '1234567890' ELSE '555-' || g END
                 FROM generate_series(1, 100) g;
             INSERT INTO e_mfail.hub (firstname, lastname, email, phone)
               SELECT 'Person', g::text, 'p' || g || '@x.io', '555-' || g FROM generate_series(1, 100) g;
             ALTER TABLE e_mfail.hub ADD CONSTRAINT short_phone CHECK (length(phone) < 9);
             SET sync_engine.batch_size = 30;",
        );
        // row 7 matches, but its phone cannot be written to the mirror; the mirror
        // row comes again as an unlinked target in a later batch
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 1]), "{r}");
        assert_eq!(
            db.json("SELECT count(*) AS n FROM e_mfail.crm")["n"],
            100,
            "no duplicate of row 7"
        );
        assert_eq!(db.json("SELECT count(*) AS n FROM e_mfail.hub")["n"], 100);
        db.exec("ALTER TABLE e_mfail.hub DROP CONSTRAINT short_phone");
        let r = db.sync(c);
        assert_eq!(
            counts(&r),
            json!([0, 1, 0, 1, 0]),
            "the retry links it (its phone differs: a conflict source_wins decides) and updates it: {r}"
        );
        assert_eq!(
            db.json("SELECT phone FROM e_mfail.hub WHERE email = 'p7@x.io'")["phone"],
            "1234567890"
        );
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_links WHERE config_id = {c}"
            ))["n"],
            100
        );
        assert_eq!(db.json("SELECT count(*) AS n FROM e_mfail.crm")["n"], 100);
    }

    #[test]
    fn one_way_configs_respect_their_direction() {
        let mut db = Db::new();
        let c = crm_hub(
            &mut db,
            "e_oneway",
            "latest_wins",
            "source_to_target",
            "NULL",
        );
        db.exec("INSERT INTO e_oneway.crm (full_name, phone) VALUES ('Ann Lee', '1')");
        db.sync(c);
        db.exec("UPDATE e_oneway.hub SET phone = 'mirror edit'; INSERT INTO e_oneway.hub (firstname) VALUES ('Nobody')");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 0]), "{r}");
        assert_eq!(
            db.json("SELECT count(*) AS n, max(phone) AS phone FROM e_oneway.crm"),
            json!({"n": 1, "phone": "1"})
        );
        db.exec("UPDATE e_oneway.crm SET phone = 'crm edit'");
        let r = db.sync(c);
        assert_eq!(r["updated"], 1, "{r}");
        assert_eq!(
            db.json("SELECT phone FROM e_oneway.hub WHERE firstname = 'Ann'")["phone"],
            "crm edit"
        );
        // deleting on the receiving side does not delete the source: the row comes back
        db.exec("DELETE FROM e_oneway.hub WHERE firstname = 'Ann'");
        let r = db.sync(c);
        assert_eq!(r["created"], 1, "{r}");
        assert_eq!(db.json("SELECT count(*) AS n FROM e_oneway.crm")["n"], 1);
        assert_eq!(
            db.json("SELECT phone FROM e_oneway.hub WHERE firstname = 'Ann'")["phone"],
            "crm edit"
        );
        assert_eq!(counts(&db.sync(c)), json!([0, 0, 0, 0, 0]));
    }

    /// A link left behind for a target key that a create now hands out again is
    /// replaced by the new pair's link, not kept (and the new link not lost).
    #[test]
    fn a_stale_link_of_a_reused_key_is_replaced() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_stale", "latest_wins", "bidirectional", "NULL");
        // past the initial load (which would see the stale link and drop it itself)
        db.sync(c);
        db.exec(&format!(
            "INSERT INTO sync_links (config_id, source_id, target_id, base, base_checksum)
             VALUES ({c}, '999', 'hs-1000', '{{}}', 'x')"
        ));
        db.exec("INSERT INTO e_stale.crm (full_name) VALUES ('Ada Lovelace')");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([1, 0, 0, 0, 0]), "{r}");
        assert_eq!(
            db.rows(&format!(
                "SELECT source_id, target_id FROM sync_links WHERE config_id = {c} ORDER BY 1"
            )),
            json!([{"source_id": "1", "target_id": "hs-1000"}])
        );
        // and the pair syncs through that link
        db.exec("UPDATE e_stale.hub SET phone = '555-9' WHERE id = 'hs-1000'");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 1, 0, 0, 0]), "{r}");
        assert_eq!(
            db.json("SELECT phone FROM e_stale.crm WHERE id = 1")["phone"],
            "555-9"
        );
    }

    /// A pair whose link an earlier batch of the same run replaced (its target key was
    /// handed out again to a created row) is not merged with a row that now belongs to
    /// another pair: both its entities are looked at again by the next run.
    #[test]
    fn a_pair_whose_link_an_earlier_batch_replaced_waits_for_the_next_run() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_relink", "latest_wins", "bidirectional", "NULL");
        db.sync(c);
        db.exec(&format!(
            "INSERT INTO sync_links (config_id, source_id, target_id, base, base_checksum)
             VALUES ({c}, '999', 'hs-1000', '{{\"firstname\": \"Zed\"}}', 'x');
             INSERT INTO e_relink.crm (full_name, phone) VALUES ('Ada Lovelace', '1');
             INSERT INTO e_relink.crm (id, full_name, phone) VALUES (999, 'Zed Old', '9');"
        ));
        // one pair per batch: Ada ('1') is created first and takes hs-1000, whose link
        // to '999' goes; then comes '999'
        db.exec("SET sync_engine.batch_size = 1");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([1, 0, 0, 0, 1]), "{r}");
        assert_eq!(
            db.json("SELECT firstname, lastname, phone FROM e_relink.hub WHERE id = 'hs-1000'"),
            json!({"firstname": "Ada", "lastname": "Lovelace", "phone": "1"})
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([1, 0, 0, 0, 0]), "{r}");
        assert_eq!(
            db.rows(&format!(
                "SELECT l.source_id, h.firstname FROM sync_links l JOIN e_relink.hub h ON h.id = l.target_id
                  WHERE l.config_id = {c} ORDER BY 1"
            )),
            json!([{"source_id": "1", "firstname": "Ada"}, {"source_id": "999", "firstname": "Zed"}])
        );
        assert_eq!(counts(&db.sync(c)), json!([0, 0, 0, 0, 0]));
    }

    #[test]
    fn a_failing_entity_is_recorded_and_retried() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_err", "latest_wins", "bidirectional", "NULL");
        db.exec("ALTER TABLE e_err.hub ADD CONSTRAINT short_phone CHECK (length(phone) < 6)");
        db.exec("INSERT INTO e_err.crm (full_name, phone) VALUES ('Ok One', '1'), ('Too Long', '1234567890'), ('Ok Two', '2')");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([2, 0, 0, 0, 1]), "{r}");
        assert_eq!(
            db.json(&format!(
                "SELECT status FROM sync_runs WHERE id = {}",
                r["run_id"]
            ))["status"],
            "partial"
        );
        let e = db.json(&format!(
            "SELECT source_id, message FROM sync_errors WHERE config_id = {c} AND NOT resolved"
        ));
        assert_eq!(e["source_id"], "2");
        assert!(
            e["message"].as_str().unwrap().contains("short_phone"),
            "{e}"
        );
        // fixed on the target: the next run retries it without any new change
        db.exec("ALTER TABLE e_err.hub DROP CONSTRAINT short_phone");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([1, 0, 0, 0, 0]), "{r}");
        assert_eq!(error_count(&mut db, c, "NOT resolved"), 0);
        assert_eq!(db.json("SELECT count(*) AS n FROM e_err.hub")["n"], 3);
    }

    /// Updates reach columns of every kind with the value they had: arrays and JSON
    /// keep their structure, numeric(10,2) its scale, a numeric all its digits (more
    /// than a double holds), an enum its label, bit(4) and char(6) their length, and
    /// a value too long for the target's varchar(5), char(6) or a domain over
    /// varchar(3) is an error, never silently cut.
    #[test]
    fn updates_keep_every_column_type_and_never_truncate() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_types;
             CREATE TYPE e_types.mood AS ENUM ('sad', 'ok', 'happy');
             CREATE DOMAIN e_types.short AS varchar(3);
             CREATE TABLE e_types.a (id int PRIMARY KEY, tags text[], meta jsonb, note json,
                 price numeric(10,2), code text, mood e_types.mood, at timestamptz, flag boolean, big numeric,
                 ch text, dv text, bits bit(4));
             CREATE TABLE e_types.b (id int PRIMARY KEY, tags text[], meta jsonb, note json,
                 price numeric(10,2), code varchar(5), mood e_types.mood, at timestamptz, flag boolean, big numeric,
                 ch char(6), dv e_types.short, bits bit(4));
             SELECT sync_register_table('e_types_a', 'things', 'e_types.a');
             SELECT sync_register_table('e_types_b', 'things', 'e_types.b');
             SELECT sync_create_config('e_types', 'e_types_a', 'e_types_b', 'things');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_types';
             INSERT INTO e_types.a VALUES
               (1, '{x,y}', '{\"k\": [1, 2]}', '\"s\"', 1.5, 'abc', 'ok', '2026-01-02 03:04:05+00', true,
                123456789012345678901234567890.123, 'abcdef', 'ab', B'1010'),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_types'")["id"]
            .as_i64()
            .unwrap();
        // json has no equality (and keeps its spacing): compared as jsonb
        let same = "SELECT count(*) AS n FROM (
                        SELECT id, tags, meta, note::jsonb, price, code, mood, at, flag, big::text, ch, dv, bits FROM e_types.a
                        EXCEPT SELECT id, tags, meta, note::jsonb, price, code, mood, at, flag, big::text, ch::text, dv::text, bits
                          FROM e_types.b) d";
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([2, 0, 0, 0, 0]), "{r}");
        assert_eq!(db.json(same)["n"], 0);
        // every column of both rows changes: row 2 from NULLs, row 1 to NULLs or new values
        db.exec(
            "UPDATE e_types.a SET tags = '{\"a b\",NULL,\"c,d\"}', meta = '\"just a string\"', note = '[1, {\"z\": null}]',
                 price = 12345678.9, code = 'xy', mood = 'happy', at = '2030-12-31 23:59:59.5+00', flag = false,
                 big = 98765432109876.1234567891, ch = 'xy', dv = 'xyz', bits = B'0110'
              WHERE id = 2;
             UPDATE e_types.a SET tags = '{}', meta = '{\"n\": 1.50, \"s\": \"x\"}', note = NULL, price = NULL,
                 code = NULL, mood = 'sad', at = NULL, flag = NULL, big = 98765432109876.1234567892,
                 ch = 'uvwxyz', dv = NULL, bits = B'0001'
              WHERE id = 1;",
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 2, 0, 0, 0]), "{r}");
        assert_eq!(
            db.json(same)["n"],
            0,
            "{}",
            db.rows("SELECT * FROM e_types.b ORDER BY id")
        );
        assert_eq!(
            db.json("SELECT price::text AS p, meta #>> '{}' AS m FROM e_types.b WHERE id = 2"),
            json!({"p": "12345678.90", "m": "just a string"})
        );
        // too long for varchar(5), for char(6), for a domain over varchar(3): an error
        // for each of those rows, the target keeps its values
        db.exec(
            "UPDATE e_types.a SET code = 'much too long' WHERE id = 2;
             INSERT INTO e_types.a (id, ch) VALUES (3, 'abc');",
        );
        db.sync(c);
        db.exec(
            "UPDATE e_types.a SET ch = 'seven!!' WHERE id = 3;
             UPDATE e_types.a SET dv = 'abcd' WHERE id = 1;",
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 3]), "{r}");
        assert_eq!(
            db.rows("SELECT id, code, ch, dv FROM e_types.b ORDER BY id"),
            json!([{"id": 1, "code": null, "ch": "uvwxyz", "dv": null},
                   {"id": 2, "code": "xy", "ch": "xy    ", "dv": "xyz"},
                   {"id": 3, "code": null, "ch": "abc   ", "dv": null}])
        );
        let e = db.rows(&format!(
            "SELECT message FROM sync_errors WHERE config_id = {c} AND NOT resolved"
        ));
        assert_eq!(e.as_array().unwrap().len(), 3, "{e}");
        for m in e.as_array().unwrap() {
            assert!(m["message"].as_str().unwrap().contains("too long"), "{e}");
        }
    }

    /// A json value spelling a NUL ("\u0000") cannot become text or jsonb: that
    /// entity is an error (nothing invalid is written), the others sync. (Only rows
    /// that were there before registering can hold one: the capture trigger refuses
    /// such a write, as change_log.fields is jsonb.)
    #[test]
    fn a_json_nul_is_an_error_for_that_entity_only() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_nul;
             CREATE TABLE e_nul.a (id int PRIMARY KEY, note json);
             CREATE TABLE e_nul.b (id int PRIMARY KEY, note text);
             INSERT INTO e_nul.a VALUES (1, '\"x\\u0000y\"'), (2, '\"fine\"');
             SELECT sync_register_table('e_nul_a', 'notes', 'e_nul.a');
             SELECT sync_register_table('e_nul_b', 'notes', 'e_nul.b');
             SELECT sync_create_config('e_nul', 'e_nul_a', 'e_nul_b', 'notes');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_nul';",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_nul'")["id"]
            .as_i64()
            .unwrap();
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([1, 0, 0, 0, 1]), "{r}");
        assert_eq!(
            db.rows("SELECT id, note FROM e_nul.b ORDER BY id"),
            json!([{"id": 2, "note": "fine"}])
        );
        let e = db.json(&format!(
            "SELECT source_id, message FROM sync_errors WHERE config_id = {c} AND NOT resolved"
        ));
        assert_eq!(e["source_id"], "1", "{e}");
        assert!(e["message"].as_str().unwrap().contains("Unicode"), "{e}");
        // a write of such a value to a registered table is refused whole
        let err = db.err("UPDATE e_nul.a SET note = '\"a\\u0000\"' WHERE id = 2");
        assert!(err.starts_with("22P05"), "{err}");
    }

    #[test]
    fn a_long_transaction_committing_after_a_run_is_synced_by_the_next() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_long", "latest_wins", "bidirectional", "NULL");
        db.exec(
            "INSERT INTO e_long.crm (full_name, phone) VALUES ('Ann Lee', '1'), ('Bob Ray', '2')",
        );
        db.sync(c);
        let mut long = Db::new();
        long.exec("BEGIN; UPDATE e_long.crm SET phone = 'late' WHERE id = 1;");
        db.exec("UPDATE e_long.crm SET phone = 'early' WHERE id = 2");
        let r = db.sync(c);
        assert_eq!(r["updated"], 1, "{r}");
        long.exec("COMMIT");
        let r = db.sync(c);
        assert_eq!(r["updated"], 1, "the late commit is picked up: {r}");
        assert_eq!(
            db.rows("SELECT phone FROM e_long.hub ORDER BY id"),
            json!([{"phone": "late"}, {"phone": "early"}])
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 0]), "{r}");
    }

    #[test]
    fn a_row_changed_while_a_run_writes_it_is_not_overwritten() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_race", "latest_wins", "bidirectional", "NULL");
        db.exec(
            "INSERT INTO e_race.crm (full_name, phone) VALUES ('Ann Lee', '1'), ('Bob Ray', '2')",
        );
        db.sync(c);
        db.exec("UPDATE e_race.crm SET full_name = 'Ann Smith', phone = '11' WHERE id = 1");
        db.exec("UPDATE e_race.crm SET phone = '22' WHERE id = 2");
        // another session is in the middle of changing Ann's mirror row
        let mut other = Db::new();
        other.exec("BEGIN; UPDATE e_race.hub SET email = 'ann@hub.io' WHERE id = 'hs-1000'");
        let runner = db.pid();
        let run = std::thread::spawn(move || {
            let r = db.sync(c);
            (db, r)
        });
        // the run reads Ann's row, then its write waits for the other session
        Db::new().wait_until_blocked(runner);
        other.exec("COMMIT");
        let (mut db, r) = run.join().unwrap();
        assert_eq!(
            counts(&r),
            json!([0, 1, 0, 0, 1]),
            "Bob synced, Ann deferred: {r}"
        );
        let e = db.json(&format!(
            "SELECT target_id, message FROM sync_errors WHERE config_id = {c} AND NOT resolved"
        ));
        assert_eq!(e["target_id"], "hs-1000", "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("changed in another transaction"),
            "{e}"
        );
        assert_eq!(
            db.json(
                "SELECT firstname, lastname, phone, email FROM e_race.hub WHERE id = 'hs-1000'"
            ),
            json!({"firstname": "Ann", "lastname": "Lee", "phone": "1", "email": "ann@hub.io"}),
            "the other session's write is not overwritten"
        );
        // the next run merges both edits
        let r = db.sync(c);
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(
            db.json(
                "SELECT firstname, lastname, phone, email FROM e_race.hub WHERE id = 'hs-1000'"
            ),
            json!({"firstname": "Ann", "lastname": "Smith", "phone": "11", "email": "ann@hub.io"})
        );
        assert_eq!(
            db.json("SELECT full_name, phone, email FROM e_race.crm WHERE id = 1"),
            json!({"full_name": "Ann Smith", "phone": "11", "email": "ann@hub.io"})
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 0, 0, 0, 0]), "{r}");
    }

    /// A config that copies columns as they are (same names, same types): pairs that
    /// changed on one side only are copied by one set-based statement, which must
    /// still behave like the merge: the base follows, a failing row is an error of its
    /// own, a row changed behind the engine's back is a conflict (its value kept), a
    /// row changed while the run writes it is merged, and nothing echoes.
    #[test]
    fn column_copy_configs_copy_one_sided_changes_like_the_merge() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_copy;
             CREATE TABLE e_copy.a (id int PRIMARY KEY, name text, price numeric(10,2), tags text[],
                 meta jsonb, note json, at timestamptz, internal text);
             CREATE TABLE e_copy.b (id int PRIMARY KEY, name text, price numeric(10,2) CHECK (price >= 0),
                 tags text[], meta jsonb, note json, at timestamptz);
             SELECT sync_register_table('e_copy_a', 'items', 'e_copy.a');
             SELECT sync_register_table('e_copy_b', 'items', 'e_copy.b');
             SELECT sync_create_config('e_copy', 'e_copy_a', 'e_copy_b', 'items');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_copy';
             INSERT INTO e_copy.a
             SELECT g, 'item ' || g, g * 1.5, ARRAY['t' || g], jsonb_build_object('n', g), '{\"x\": 1}',
                    '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', 'i'
               FROM generate_series(1, 4) g;",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_copy'")["id"]
            .as_i64()
            .unwrap();
        let cols = "name, price, tags, meta, note::jsonb, at";
        let same = format!(
            "SELECT count(*) AS n FROM (SELECT id, {cols} FROM e_copy.a EXCEPT SELECT id, {cols} FROM e_copy.b) d"
        );
        // the base is what both sides hold, its checksum that of its jsonb text
        let bases_ok = format!(
            "SELECT count(*) FILTER (WHERE l.base = to_jsonb(b) - 'id'
                     AND l.base_checksum = encode(sha256(convert_to(l.base::text, 'UTF8')), 'hex')) AS ok,
                    count(*) AS n
               FROM sync_links l JOIN e_copy.b b ON b.id::text = l.target_id WHERE l.config_id = {c}"
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([4, 0, 0, 0, 0]));
        // the first run into the empty side is the initial copy: one statement
        assert_eq!(r["copied"], 4, "the initial copy creates the rows: {r}");
        assert_eq!(db.json(&bases_ok), json!({"ok": 4, "n": 4}));

        // every mapped column of rows 1-2 changes; row 3 breaks the target's CHECK; row 4
        // changes a column the mapping leaves out (nothing to sync)
        db.exec(
            "UPDATE e_copy.a SET name = name || '!', price = price * 100, tags = tags || '{new}'::text[],
                 meta = meta || '{\"m\": [1, 2.50]}', note = '[true, null]', at = at + interval '1 day'
              WHERE id <= 2;
             UPDATE e_copy.a SET price = -1 WHERE id = 3;
             UPDATE e_copy.a SET internal = 'changed' WHERE id = 4;",
        );
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 2, 0, 0, 1]), "{r}");
        assert_eq!(r["synced"], 2, "{r}");
        assert_eq!(
            r["copied"], 0,
            "the copy statement failed on row 3, so the merge took all three: {r}"
        );
        assert_eq!(db.json(&same)["n"], 1, "only row 3 differs");
        assert_eq!(db.json(&bases_ok), json!({"ok": 4, "n": 4}));
        let e = db.json(&format!(
            "SELECT source_id, sqlstate, message FROM sync_errors WHERE config_id = {c} AND NOT resolved"
        ));
        assert_eq!(e["source_id"], "3", "{e}");
        assert_eq!(e["sqlstate"], "23514", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("check constraint"),
            "{e}"
        );
        // fixed at the source: the retry goes through and the error is resolved
        db.exec("UPDATE e_copy.a SET price = 3 WHERE id = 3");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 1, 0, 0, 0]));
        assert_eq!(r["copied"], 1, "copied by the statement: {r}");
        assert_eq!(db.json(&same)["n"], 0);
        assert_eq!(error_count(&mut db, c, "NOT resolved"), 0);
        // the other way round, and no echo
        db.exec("UPDATE e_copy.b SET name = 'from b', meta = NULL WHERE id = 1");
        let r = db.sync(c);
        assert_eq!(counts(&r), json!([0, 1, 0, 0, 0]));
        assert_eq!(r["copied"], 1, "copied by the statement: {r}");
        assert_eq!(
            db.json("SELECT name, meta FROM e_copy.a WHERE id = 1"),
            json!({"name": "from b", "meta": null})
        );
        assert_eq!(counts(&db.sync(c)), json!([0, 0, 0, 0, 0]));
        assert_eq!(db.json(&bases_ok), json!({"ok": 4, "n": 4}));

        // a target write that bypassed capture: the target no longer holds the base, so
        // a source change is not simply copied over it; the merge sees both and records
        // the losing value
        db.exec(
            "SET session_replication_role = replica;
             UPDATE e_copy.b SET name = 'behind the back' WHERE id = 2;
             RESET session_replication_role;
             UPDATE e_copy.a SET name = 'source edit' WHERE id = 2;",
        );
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 1, "{r}");
        assert_eq!(
            db.json(&format!(
                "SELECT target_value, resolution FROM sync_conflicts WHERE config_id = {c} AND source_id = '2'"
            )),
            json!({"target_value": "behind the back", "resolution": "source"})
        );
        // the same for a number (compared as a value) and an array (compared as jsonb):
        // the copy leaves these rows to the merge, which keeps the target's values
        db.exec(
            "SET session_replication_role = replica;
             UPDATE e_copy.b SET price = 7.25 WHERE id = 1;
             UPDATE e_copy.b SET tags = '{bypass}' WHERE id = 3;
             RESET session_replication_role;
             UPDATE e_copy.a SET name = name || '?' WHERE id IN (1, 3);",
        );
        let r = db.sync(c);
        assert_eq!(r["conflicts"], 0, "{r}");
        assert_eq!(
            db.json("SELECT array_agg(price::text ORDER BY id) AS p, array_agg(tags[1] ORDER BY id) AS t FROM e_copy.a WHERE id IN (1, 3)"),
            json!({"p": ["7.25", "3.00"], "t": ["t1", "bypass"]})
        );
        assert_eq!(db.json(&same)["n"], 0);
        // a base written under another TimeZone no longer matches the row's jsonb image:
        // the pair goes through the merge, which finds the same time on both sides (no
        // conflict) and copies the change
        db.exec(
            "SET TimeZone = 'Asia/Kolkata'; UPDATE e_copy.a SET name = 'in Kolkata' WHERE id = 3;",
        );
        let r = db.sync(c);
        db.exec("RESET TimeZone");
        assert_eq!(counts(&r), json!([0, 1, 0, 0, 0]), "{r}");
        assert_eq!(db.json(&same)["n"], 0);
        // and back: the base is rewritten with this session's time zone
        db.exec("UPDATE e_copy.a SET name = 'item 3' WHERE id = 3");
        assert_eq!(counts(&db.sync(c)), json!([0, 1, 0, 0, 0]));
        assert_eq!(db.json(&bases_ok), json!({"ok": 4, "n": 4}));

        // a target row being changed while the run copies to it: the copy waits, sees the
        // row no longer holds the base and leaves it to the merge, which keeps both edits
        db.exec("UPDATE e_copy.a SET price = 42 WHERE id = 4");
        let mut other = Db::new();
        other.exec("BEGIN; UPDATE e_copy.b SET tags = '{other}' WHERE id = 4");
        let runner = db.pid();
        let run = std::thread::spawn(move || {
            let r = db.sync(c);
            (db, r)
        });
        Db::new().wait_until_blocked(runner);
        other.exec("COMMIT");
        let (mut db, r) = run.join().unwrap();
        assert_eq!(counts(&r), json!([0, 2, 0, 0, 0]), "{r}");
        assert_eq!(
            r["copied"], 0,
            "the copy found a new version and left it: {r}"
        );
        for t in ["a", "b"] {
            assert_eq!(
                db.json(&format!(
                    "SELECT price::text AS price, tags FROM e_copy.{t} WHERE id = 4"
                )),
                json!({"price": "42.00", "tags": ["other"]}),
                "{t}"
            );
        }
        assert_eq!(counts(&db.sync(c)), json!([0, 0, 0, 0, 0]));
        assert_eq!(db.json(&same)["n"], 0);
        assert_eq!(db.json(&bases_ok), json!({"ok": 4, "n": 4}));
    }

    /// An error that is about the run rather than about a row (here: a trigger on the
    /// target that reads a field its table does not have) ends the run with that
    /// error; it is not recorded once per entity, and nothing of the run is kept.
    #[test]
    fn an_error_about_the_run_not_the_rows_ends_the_run() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_runerr;
             CREATE TABLE e_runerr.a (id int PRIMARY KEY, name text);
             CREATE TABLE e_runerr.b (id int PRIMARY KEY, name text);
             SELECT sync_register_table('e_runerr_a', 'items', 'e_runerr.a');
             SELECT sync_register_table('e_runerr_b', 'items', 'e_runerr.b');
             SELECT sync_create_config('e_runerr', 'e_runerr_a', 'e_runerr_b', 'items');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_runerr';
             INSERT INTO e_runerr.a VALUES (1, 'one'), (2, 'two');",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_runerr'")["id"]
            .as_i64()
            .unwrap();
        assert_eq!(counts(&db.sync(c)), json!([2, 0, 0, 0, 0]));
        db.exec(
            "CREATE FUNCTION e_runerr.broken() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.name := NEW.nickname; RETURN NEW; END $$;
             CREATE TRIGGER broken BEFORE UPDATE ON e_runerr.b FOR EACH ROW EXECUTE FUNCTION e_runerr.broken();
             UPDATE e_runerr.a SET name = upper(name);",
        );
        let e = db.err(&format!("SELECT sync_execute({c})"));
        assert!(
            e.starts_with("42703: record \"new\" has no field \"nickname\""),
            "{e}"
        );
        assert_eq!(error_count(&mut db, c, "true"), 0);
        db.exec("DROP TRIGGER broken ON e_runerr.b");
        assert_eq!(counts(&db.sync(c)), json!([0, 2, 0, 0, 0]));
        assert_eq!(
            db.rows("SELECT id, name FROM e_runerr.b ORDER BY id"),
            json!([{"id": 1, "name": "ONE"}, {"id": 2, "name": "TWO"}])
        );
    }

    /// One-way column-copy configs copy only their way.
    #[test]
    fn column_copy_configs_respect_their_direction() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_copy1;
             CREATE TABLE e_copy1.a (id int PRIMARY KEY, name text);
             CREATE TABLE e_copy1.b (id int PRIMARY KEY, name text);
             SELECT sync_register_table('e_copy1_a', 'items', 'e_copy1.a');
             SELECT sync_register_table('e_copy1_b', 'items', 'e_copy1.b');
             SELECT sync_create_config('e_copy1', 'e_copy1_a', 'e_copy1_b', 'items',
                                       sync_direction => 'source_to_target');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_copy1';
             INSERT INTO e_copy1.a VALUES (1, 'one'), (2, 'two');",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_copy1'")["id"]
            .as_i64()
            .unwrap();
        assert_eq!(counts(&db.sync(c)), json!([2, 0, 0, 0, 0]));
        db.exec(
            "UPDATE e_copy1.a SET name = 'ONE' WHERE id = 1;
             UPDATE e_copy1.b SET name = 'TWO' WHERE id = 2;",
        );
        // the target's edit does not flow back (and is not undone: one_way_configs_...)
        assert_eq!(counts(&db.sync(c)), json!([0, 1, 0, 0, 0]));
        assert_eq!(
            db.rows("SELECT id, name FROM e_copy1.a ORDER BY id"),
            json!([{"id": 1, "name": "ONE"}, {"id": 2, "name": "two"}])
        );
        assert_eq!(
            db.rows("SELECT id, name FROM e_copy1.b ORDER BY id"),
            json!([{"id": 1, "name": "ONE"}, {"id": 2, "name": "TWO"}])
        );
        assert_eq!(counts(&db.sync(c)), json!([0, 0, 0, 0, 0]));
    }

    #[test]
    fn concurrent_runs_of_one_config_never_overlap() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "e_lock", "latest_wins", "bidirectional", "NULL");
        let mut other = Db::new();
        other.exec(&format!("BEGIN; SELECT sync_execute({c});"));
        let e = db.err(&format!("SELECT sync_execute({c})"));
        assert!(
            e.starts_with("55P03") && e.contains("already running"),
            "{e}"
        );
        other.exec("COMMIT");
        db.sync(c);
    }

    #[test]
    fn keys_whose_text_cast_differs_from_their_output_still_sync() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA e_char;
             CREATE TABLE e_char.a (code char(3) PRIMARY KEY, name text);
             CREATE TABLE e_char.b (code char(3) PRIMARY KEY, name text);
             SELECT sync_register_table('e_char_a', 'country', 'e_char.a');
             SELECT sync_register_table('e_char_b', 'country', 'e_char.b');
             SELECT sync_create_config('e_char', 'e_char_a', 'e_char_b', 'country');
             UPDATE sync_configs SET enabled = false WHERE name = 'e_char';
             INSERT INTO e_char.a VALUES ('AB', 'Alphabet');",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'e_char'")["id"]
            .as_i64()
            .unwrap();
        assert_eq!(db.sync(c)["created"], 1);
        db.exec("UPDATE e_char.a SET name = 'Renamed' WHERE code = 'AB'");
        let r = db.sync(c);
        assert_eq!(r["updated"], 1, "{r}");
        assert_eq!(db.json("SELECT name FROM e_char.b")["name"], "Renamed");
    }

    #[test]
    fn bad_configs_are_refused_whole() {
        let mut db = Db::new();
        crm_hub(&mut db, "e_bad", "latest_wins", "bidirectional", "NULL");
        let mk = |args: &str| format!("SELECT sync_create_config('bad', {args})");
        for (args, code, frag) in [
            ("'nope', 'e_bad_hub', 'contacts'", "42704", "nope"),
            ("'e_bad_crm', 'e_bad_hub', 'deals'", "42704", "deals"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', conflict_strategy => 'newest'", "22023", "newest"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', sync_direction => 'both'", "22023", "source_to_target"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', '[{\"source\": \"nickname\", \"target\": \"email\"}]'", "42703", "nickname"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', '[{\"source\": \"email\", \"target\": \"mail\"}]'", "42703", "mail"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', '[{\"source\": \"email\", \"target\": \"email\", \"transform\": \"rot13\"}]'", "22023", "rot13"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', '{\"source\": \"email\"}'", "22023", "array"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', match_on => ARRAY['zip']", "22023", "zip"),
            ("'e_bad_crm', 'e_bad_hub', 'contacts', sync_interval => '-1 minute'", "22023", "positive"),
            ("'e_bad_crm', 'e_bad_crm', 'contacts'", "22023", "same endpoint"),
        ] {
            let e = db.err(&mk(args));
            assert!(e.starts_with(code) && e.contains(frag), "{args}: {e}");
        }
        assert_eq!(
            db.json("SELECT count(*) AS n FROM sync_configs WHERE name = 'bad'")["n"],
            0
        );
        let e = db.err("SELECT sync_create_config('e_bad', 'e_bad_crm', 'e_bad_hub', 'contacts')");
        assert!(e.starts_with("42710"), "duplicate name: {e}");
        let e = db.err("SELECT sync_execute(987654)");
        assert!(e.starts_with("42704") && e.contains("987654"), "{e}");
        let e = db.err("SELECT sync_unregister_table('e_bad_crm', 'contacts')");
        assert!(e.starts_with("2BP01") && e.contains("e_bad"), "{e}");
    }
}
