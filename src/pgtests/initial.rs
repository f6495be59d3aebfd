//! The initial copy (a first run into an empty side, one statement) gives the same
//! rows, links, bases and change records as the merge path.

#[cfg(test)]
mod tests {
    use crate::pgtests::fixture::Db;
    use serde_json::json;

    const COLS: &str = "name text, amount numeric(10,2), seen timestamptz, doc jsonb, active boolean, tags text[], note json";

    #[test]
    fn an_initial_copy_records_what_the_merge_path_records() {
        let mut db = Db::new();
        db.exec(&format!(
            "CREATE SCHEMA il;
             CREATE TABLE il.s1 (id int PRIMARY KEY, {COLS});
             CREATE TABLE il.t1 (id int PRIMARY KEY, {COLS});
             CREATE TABLE il.s2 (id int PRIMARY KEY, {COLS});
             CREATE TABLE il.t2 (id int PRIMARY KEY, {COLS});
             INSERT INTO il.s1 SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'it''s ' || g END, g * 1.5,
                    timestamptz '2026-01-01 00:00+00' + g * interval '1 hour',
                    jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'x')), g % 2 = 0,
                    ARRAY['a', 'b' || g], ('{{\"b\":  1, \"a\" : [' || g || ']}}')::json
               FROM generate_series(1, 250) g;
             INSERT INTO il.s2 SELECT * FROM il.s1;
             -- a row already in t2 makes its config take the merge path
             INSERT INTO il.t2 (id, name) VALUES (999, 'already there');
             SELECT sync_register_table('il_s1', 'c', 'il.s1'), sync_register_table('il_t1', 'c', 'il.t1'),
                    sync_register_table('il_s2', 'c', 'il.s2'), sync_register_table('il_t2', 'c', 'il.t2');
             SELECT sync_create_config('il1', 'il_s1', 'il_t1', 'c'), sync_create_config('il2', 'il_s2', 'il_t2', 'c');
             UPDATE sync_configs SET enabled = false WHERE name IN ('il1', 'il2');",
        ));
        let id = |db: &mut Db, n: &str| {
            db.json(&format!("SELECT id FROM sync_configs WHERE name = '{n}'"))["id"]
                .as_i64()
                .unwrap()
        };
        let (c1, c2) = (id(&mut db, "il1"), id(&mut db, "il2"));
        let fast = db.sync(c1);
        assert_eq!(
            (&fast["created"], &fast["copied"], &fast["errors"]),
            (&json!(250), &json!(250), &json!(0)),
            "{fast}"
        );
        let merged = db.sync(c2);
        assert_eq!(
            (&merged["created"], &merged["copied"], &merged["errors"]),
            (&json!(251), &json!(0), &json!(0)),
            "{merged}"
        );
        // the same rows (a json column's text too)
        let rows = |db: &mut Db, t: &str| {
            db.rows(&format!(
                "SELECT id, name, amount, seen, doc, active, tags, note::text AS note
                   FROM il.{t} WHERE id <> 999 ORDER BY id"
            ))
        };
        assert_eq!(rows(&mut db, "t1"), rows(&mut db, "t2"));
        // the same links and bases, byte for byte
        let links = |db: &mut Db, c: i64| {
            db.rows(&format!(
                "SELECT source_id, target_id, base::text AS base, base_checksum FROM sync_links
                  WHERE config_id = {c} AND target_id <> '999' ORDER BY source_id::int"
            ))
        };
        let l1 = links(&mut db, c1);
        assert_eq!(l1.as_array().unwrap().len(), 250);
        assert_eq!(l1, links(&mut db, c2));
        // the same change records of the written rows, tagged with each config's origin
        let records = |db: &mut Db, sys: &str, c: i64| {
            db.rows(&format!(
                "SELECT entity_id, operation, fields::text AS fields, checksum,
                        origin = sync_config_origin({c}) AS engine
                   FROM change_log WHERE system = '{sys}' AND entity_id <> '999' ORDER BY entity_id::int"
            ))
        };
        let r1 = records(&mut db, "il_t1", c1);
        assert_eq!(r1.as_array().unwrap().len(), 250);
        assert!(r1
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["engine"] == json!(true)));
        assert_eq!(r1, records(&mut db, "il_t2", c2));
        // nothing is left for the next run, which reads its window as usual
        let again = db.sync(c1);
        assert_eq!(
            (&again["synced"], &again["created"], &again["errors"]),
            (&json!(0), &json!(0), &json!(0)),
            "{again}"
        );
        db.exec("UPDATE il.s1 SET name = 'changed' WHERE id = 3");
        let next = db.sync(c1);
        assert_eq!(next["updated"], json!(1), "{next}");
        assert_eq!(
            db.json("SELECT name FROM il.t1 WHERE id = 3")["name"],
            json!("changed")
        );
    }

    #[test]
    fn the_origin_tag_is_defined_alike_in_rust_and_sql() {
        let mut db = Db::new();
        assert_eq!(
            db.json("SELECT sync_config_origin(42) AS o")["o"],
            json!(crate::sync::config::origin_of(42))
        );
    }

    #[test]
    fn the_initial_copy_goes_to_the_empty_side_only() {
        let mut db = Db::new();
        db.exec(
            "CREATE SCHEMA il_rev;
             CREATE TABLE il_rev.s (id text PRIMARY KEY DEFAULT 'src-' || gen_random_uuid(), email text);
             CREATE TABLE il_rev.t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);
             INSERT INTO il_rev.t (email) SELECT 'u' || g || '@x' FROM generate_series(1, 40) g;
             SELECT sync_register_table('ilr_s', 'c', 'il_rev.s'), sync_register_table('ilr_t', 'c', 'il_rev.t');
             SELECT sync_create_config('ilr', 'ilr_s', 'ilr_t', 'c');
             SELECT sync_create_config('ilr_oneway', 'ilr_s', 'ilr_t', 'c', sync_direction => 'source_to_target');
             UPDATE sync_configs SET enabled = false WHERE name LIKE 'ilr%';",
        );
        let c = db.json("SELECT id FROM sync_configs WHERE name = 'ilr'")["id"]
            .as_i64()
            .unwrap();
        let oneway = db.json("SELECT id FROM sync_configs WHERE name = 'ilr_oneway'")["id"]
            .as_i64()
            .unwrap();
        // a one-way config never writes its source: nothing to copy to the target
        let r = db.sync(oneway);
        assert_eq!((&r["created"], &r["copied"]), (&json!(0), &json!(0)), "{r}");
        // the source is the empty side: copied there with its own keys
        let r = db.sync(c);
        assert_eq!(
            (&r["created"], &r["copied"]),
            (&json!(40), &json!(40)),
            "{r}"
        );
        assert_eq!(
            db.json(
                "SELECT count(*) AS n, count(*) FILTER (WHERE s.id LIKE 'src-%') AS keyed
                   FROM sync_links l JOIN il_rev.s s ON s.id = l.source_id
                   JOIN il_rev.t t ON t.id::text = l.target_id AND t.email = s.email
                  WHERE l.config_id = (SELECT id FROM sync_configs WHERE name = 'ilr')"
            ),
            json!({"n": 40, "keyed": 40})
        );
    }
}
