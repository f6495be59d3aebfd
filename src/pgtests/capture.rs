#[pgrx::pg_schema]
mod tests {
    use crate::pgtests::util::*;
    use pgrx::prelude::*;
    use serde_json::json;

    fn setup_contacts(system: &str) {
        Spi::run(&format!(
            "CREATE TABLE {system}_contacts (
                id serial PRIMARY KEY, name text, score numeric, meta jsonb,
                seen_at timestamp, active boolean, visits int);
             SELECT sync_register_table('{system}', 'contacts', '{system}_contacts')"
        ))
        .unwrap();
    }

    /// A JSON number with its exact text (numbers keep their digits and scale)
    fn dec(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn changes(system: &str) -> serde_json::Value {
        json(&format!(
            "SELECT coalesce(jsonb_agg(jsonb_build_object('id', entity_id, 'op', operation, 'fields', fields,
                     'origin', origin, 'checksum', checksum IS NOT NULL) ORDER BY id), '[]')
               FROM change_log WHERE system = '{system}'"
        ))
    }

    /// Used by plain #[test]s to start the test cluster.
    #[pg_test]
    fn ready() {}

    #[pg_test]
    fn insert_update_delete_are_captured() {
        setup_contacts("cap1");
        Spi::run(
            "INSERT INTO cap1_contacts (name, score, meta, seen_at, active, visits)
             VALUES ('Ann', 1.50, '{\"tags\": [\"vip\"]}', '2026-01-02 03:04:05', true, NULL);
             UPDATE cap1_contacts SET name = 'Anne', score = 2, visits = 3 WHERE id = 1;
             UPDATE cap1_contacts SET name = 'Anne' WHERE id = 1;   -- changes nothing
             DELETE FROM cap1_contacts WHERE id = 1;",
        )
        .unwrap();
        let c = changes("cap1");
        let c = c.as_array().unwrap();
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0]["op"], "insert");
        assert_eq!(c[0]["id"], "1");
        assert_eq!(
            c[0]["fields"],
            json!({
                "id": {"old": null, "new": 1},
                "name": {"old": null, "new": "Ann"},
                "score": {"old": null, "new": dec("1.50")},
                "meta": {"old": null, "new": {"tags": ["vip"]}},
                "seen_at": {"old": null, "new": "2026-01-02 03:04:05"},
                "active": {"old": null, "new": true},
                "visits": {"old": null, "new": null}
            })
        );
        assert_eq!(c[0]["checksum"], true);
        assert_eq!(c[1]["op"], "update");
        assert_eq!(
            c[1]["fields"],
            json!({
                "name": {"old": "Ann", "new": "Anne"},
                "score": {"old": dec("1.50"), "new": 2},
                "visits": {"old": null, "new": 3}
            })
        );
        assert_eq!(c[2]["op"], "delete");
        assert_eq!(c[2]["fields"]["name"], json!({"old": "Anne", "new": null}));
        assert_eq!(c[2]["checksum"], false);
        assert_eq!(c[0]["origin"], serde_json::Value::Null);
    }

    #[pg_test]
    fn change_records_carry_txid_and_time() {
        setup_contacts("cap2");
        // the change time is the moment of the write: after a clock reading taken by an
        // earlier statement, before one taken by a later one (not the transaction's start)
        Spi::run("CREATE TEMP TABLE cap2_clock AS SELECT clock_timestamp() AS before").unwrap();
        Spi::run("INSERT INTO cap2_contacts (name) VALUES ('a'), ('b')").unwrap();
        assert_eq!(
            count(
                "SELECT count(*) FROM change_log, cap2_clock WHERE system = 'cap2'
                   AND txid = pg_current_xact_id()
                   AND changed_at > before AND changed_at > now() AND changed_at < clock_timestamp()"
            ),
            2
        );
    }

    #[pg_test]
    fn setting_nulls_and_json_and_timestamps() {
        setup_contacts("cap3");
        Spi::run(
            "INSERT INTO cap3_contacts (name, meta, seen_at) VALUES ('x', '{\"a\": 1}', '2026-05-05 10:00');
             UPDATE cap3_contacts SET name = NULL, meta = '{\"a\": 2, \"b\": null}', seen_at = NULL;",
        )
        .unwrap();
        let f =
            json("SELECT fields FROM change_log WHERE system = 'cap3' AND operation = 'update'");
        assert_eq!(
            f,
            json!({
                "name": {"old": "x", "new": null},
                "meta": {"old": {"a": 1}, "new": {"a": 2, "b": null}},
                "seen_at": {"old": "2026-05-05 10:00:00", "new": null}
            })
        );
    }

    /// The trigger builds `fields` as jsonb bytes itself; they must be exactly what
    /// jsonb_in makes of the same JSON text (else equality, indexes and operators on
    /// change_log.fields would misbehave). 40 columns: past jsonb's offset stride of 32.
    #[pg_test]
    fn prebuilt_fields_are_byte_identical_to_parsed_json() {
        use crate::capture::{jsonb_datum, numeric_image};
        use crate::core::rowjson::{self, ColKind, ColValue, Cols};
        let numbers = [
            "0",
            "-0.5",
            "1e+30",
            "123456789012345678901234567890.123456789",
            "-7",
            "NaN",
            "1.50",
            "100000000",
            "0.000001",
            "-Infinity",
            "2E-7",
            "9223372036854775807",
        ];
        let strings = [
            "",
            "Ann \"A\"\n",
            "Zo\u{eb} \u{1f680}",
            "tab\there",
            "back\\slash",
            "x",
        ];
        // JSON column texts: jsonb_out's form and a json column's (whitespace, escapes,
        // duplicate keys), nested, and past the offset stride
        let many: String = format!(
            "[{}]",
            (0..40)
                .map(|i| format!("{{\"n{i}\": {i}.5}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let json_texts = [
            "{\"a\": 1, \"tier\": 2, \"source\": \"import\"}",
            " { \"b\" : [ true , null , -0 , 1E+3 , 2.50e-7 ] , \"a\":{} } ",
            "\"caf\\u00e9 \\ud83d\\ude80 \\\"q\\\" \\\\ \\n\"",
            "{\"k\": 1, \"k\": {\"deep\": [[[[\"x\"]]]]}}",
            "[]",
            "123456789012345678901234567890.5",
            "null",
            "false",
            many.as_str(),
            "{\"zz\": \"long\", \"a\": \"short\", \"mm\": [1, [2, [3]]]}",
        ];
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut old: Vec<ColValue> = Vec::new();
        let mut new: Vec<ColValue> = Vec::new();
        for i in 0..40usize {
            // names of different lengths, not in jsonb's order
            names.push(format!("{}{}", ["zz", "a", "col_", "m"][i % 4], 40 - i));
            let (k, o, n) = match i % 5 {
                0 | 1 => (
                    ColKind::Number,
                    numbers[i % numbers.len()],
                    numbers[(i + 3) % numbers.len()],
                ),
                2 => (
                    ColKind::Text,
                    strings[i % strings.len()],
                    strings[(i + 1) % strings.len()],
                ),
                3 => (ColKind::Bool, "t", "f"),
                _ => (
                    ColKind::Json,
                    json_texts[i % json_texts.len()],
                    json_texts[(i / 5) % json_texts.len()],
                ),
            };
            kinds.push(k);
            old.push((i % 7 != 0).then(|| o.to_string()));
            new.push((i % 11 != 0).then(|| n.to_string()));
        }
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let live = vec![true; 40];
        let sorted: Vec<usize> = (0..40).collect();
        let cols = Cols {
            names: &name_refs,
            kinds: &kinds,
            live: &live,
            sorted: &sorted,
        };
        let changed: Vec<bool> = (0..40).map(|i| i % 3 != 1).collect();
        let records = [
            rowjson::insert_record(&cols, "1".into(), &new, Some(&mut numeric_image)),
            rowjson::update_record(
                &cols,
                "1".into(),
                &old,
                &new,
                &changed,
                Some(&mut numeric_image),
            ),
            rowjson::delete_record(&cols, "1".into(), &old, Some(&mut numeric_image)),
        ];
        for rec in &records {
            let image = rec
                .fields_jsonb
                .as_deref()
                .expect("every value parses: an image is built");
            unsafe {
                let ours = jsonb_datum(Some(image), &rec.fields).cast_mut_ptr::<pg_sys::varlena>();
                let parsed = jsonb_datum(None, &rec.fields).cast_mut_ptr::<pg_sys::varlena>();
                let bytes = |p: *mut pg_sys::varlena| {
                    std::slice::from_raw_parts(p.cast::<u8>(), pgrx::varlena::varsize_any(p))
                        .to_vec()
                };
                assert_eq!(
                    bytes(ours),
                    bytes(parsed),
                    "{} record: {}",
                    rec.operation,
                    rec.fields
                );
            }
        }
    }

    #[pg_test]
    fn checksum_follows_content() {
        setup_contacts("cap4");
        Spi::run(
            "INSERT INTO cap4_contacts (id, name) VALUES (1, 'same'), (2, 'same');
             UPDATE cap4_contacts SET name = 'other' WHERE id = 1;
             UPDATE cap4_contacts SET name = 'same' WHERE id = 1;",
        )
        .unwrap();
        let sums = json(
            "SELECT jsonb_agg(checksum ORDER BY id) FROM change_log WHERE system = 'cap4' AND entity_id = '1'",
        );
        let s = sums.as_array().unwrap();
        assert_eq!(s.len(), 3);
        assert_ne!(s[0], s[1]);
        assert_eq!(s[0], s[2], "same content, same checksum");
        assert_eq!(s[0].as_str().unwrap().len(), 64);
    }

    #[pg_test]
    fn a_role_cannot_tag_its_writes_as_the_engines() {
        setup_contacts("cap5");
        // whatever a session sets, an ordinary write is recorded without an origin
        Spi::run(
            "DO $$ BEGIN PERFORM set_config('sync_engine.origin', 'sync_engine:config:7', true);
                  EXCEPTION WHEN OTHERS THEN NULL; END $$;
             INSERT INTO cap5_contacts (name) VALUES ('user');",
        )
        .unwrap();
        let o = json("SELECT jsonb_agg(origin ORDER BY id) FROM change_log WHERE system = 'cap5'");
        assert_eq!(o, json!([null]));
        // the engine's tag (held in the backend, set only by its code) is recorded
        {
            let _tag = crate::capture::origin::tag_writes("sync_engine:config:7".into());
            Spi::run("INSERT INTO cap5_contacts (name) VALUES ('engine')").unwrap();
        }
        Spi::run("INSERT INTO cap5_contacts (name) VALUES ('user again')").unwrap();
        let o = json("SELECT jsonb_agg(origin ORDER BY id) FROM change_log WHERE system = 'cap5'");
        assert_eq!(o, json!([null, "sync_engine:config:7", null]));
    }

    #[pg_test]
    fn key_change_is_delete_plus_insert() {
        setup_contacts("cap6");
        Spi::run("INSERT INTO cap6_contacts (id, name) VALUES (1, 'a'); UPDATE cap6_contacts SET id = 5;").unwrap();
        let c = json(
            "SELECT jsonb_agg(jsonb_build_array(operation, entity_id) ORDER BY id) FROM change_log WHERE system = 'cap6'",
        );
        assert_eq!(
            c,
            json!([["insert", "1"], ["delete", "1"], ["insert", "5"]])
        );
        // the delete records the old row's every column, changed or not
        assert_eq!(
            json("SELECT fields FROM change_log WHERE system = 'cap6' AND operation = 'delete'"),
            json!({
                "id": {"old": 1, "new": null}, "name": {"old": "a", "new": null},
                "score": {"old": null, "new": null}, "meta": {"old": null, "new": null},
                "seen_at": {"old": null, "new": null}, "active": {"old": null, "new": null},
                "visits": {"old": null, "new": null}
            })
        );
    }

    #[pg_test]
    fn explicit_key_column_and_text_keys() {
        Spi::run(
            "CREATE TABLE cap7_people (email text NOT NULL UNIQUE, name text);
             SELECT sync_register_table('cap7', 'people', 'cap7_people', 'email');
             INSERT INTO cap7_people VALUES ('a@x.io', 'A');",
        )
        .unwrap();
        assert_eq!(
            text("SELECT entity_id FROM change_log WHERE system = 'cap7'").unwrap(),
            "a@x.io"
        );
    }

    #[pg_test]
    fn unregister_removes_the_trigger() {
        setup_contacts("cap8");
        Spi::run(
            "SELECT sync_unregister_table('cap8', 'contacts');
             INSERT INTO cap8_contacts (name) VALUES ('not captured');",
        )
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM change_log WHERE system = 'cap8'"),
            0
        );
        assert_eq!(
            count("SELECT count(*) FROM sync_endpoints WHERE system = 'cap8'"),
            0
        );
        assert_eq!(
            count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'cap8_contacts'::regclass"),
            0
        );
        expect_error(
            "SELECT sync_unregister_table('cap8', 'contacts')",
            "42704",
            &["cap8", "contacts"],
        );
        // registering again works after unregistering
        Spi::run("SELECT sync_register_table('cap8', 'contacts', 'cap8_contacts')").unwrap();
    }

    #[pg_test]
    fn an_ordinary_role_writing_a_registered_table_is_captured() {
        setup_contacts("cap10");
        Spi::run(
            "CREATE ROLE sync_engine_test_app;
             GRANT ALL ON cap10_contacts TO sync_engine_test_app;
             GRANT USAGE ON SEQUENCE cap10_contacts_id_seq TO sync_engine_test_app;
             SET LOCAL ROLE sync_engine_test_app;
             INSERT INTO cap10_contacts (name) VALUES ('written by the app');
             RESET ROLE;",
        )
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM change_log WHERE system = 'cap10'"),
            1
        );
        // the role itself still cannot touch the log
        Spi::run("SET LOCAL ROLE sync_engine_test_app").unwrap();
        let e = try_sql("DELETE FROM change_log");
        Spi::run("RESET ROLE").unwrap();
        assert!(
            e.is_some_and(|e| e.starts_with("42501")),
            "change_log stays closed to the app role"
        );
    }

    #[pg_test]
    fn change_log_changed_by_a_dba_is_still_written_correctly() {
        setup_contacts("cap11");
        // the first write takes the direct path and caches it
        Spi::run("INSERT INTO cap11_contacts (name) VALUES ('first')").unwrap();
        Spi::run(
            "CREATE INDEX cap11_partial_expr ON change_log ((fields->'name'->>'new')) WHERE system = 'cap11';
             CREATE TABLE cap11_seen (entity_id text);
             CREATE FUNCTION cap11_seen_fn() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN INSERT INTO cap11_seen VALUES (NEW.entity_id); RETURN NEW; END $f$;
             CREATE TRIGGER cap11_seen_tr AFTER INSERT ON change_log FOR EACH ROW EXECUTE FUNCTION cap11_seen_fn();
             INSERT INTO cap11_contacts (name) VALUES ('second'), ('third'), ('fourth');
             SET LOCAL enable_seqscan = off;",
        )
        .unwrap();
        // the first record after the change finds it on writing, the next ones when taken
        assert_eq!(
            count("SELECT count(*) FROM change_log WHERE system = 'cap11'"),
            4
        );
        // the expression index holds the new record, and the DBA's trigger saw it
        assert_eq!(
            count("SELECT count(*) FROM change_log WHERE system = 'cap11' AND fields->'name'->>'new' = 'second'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM cap11_seen"), 3);
    }

    /// (operation, entity id, the new value of v) of an item table's change records, in
    /// id order
    fn item_changes(system: &str) -> serde_json::Value {
        json(&format!(
            "SELECT coalesce(jsonb_agg(jsonb_build_array(operation, entity_id, fields->'v'->'new') ORDER BY id), '[]')
               FROM change_log WHERE system = '{system}'"
        ))
    }

    fn setup_items(system: &str, rows: i32) {
        Spi::run(&format!(
            "CREATE TABLE {system} (id int PRIMARY KEY, v int);
             SELECT sync_register_table('{system}', 'items', '{system}');
             INSERT INTO {system} SELECT g, 0 FROM generate_series(1, {rows}) g;"
        ))
        .unwrap();
    }

    #[pg_test]
    fn a_bulk_write_logs_every_row_once_in_order() {
        // records are written a thousand at a time and at the end of the statement
        setup_items("capbulk", 2500);
        Spi::run("UPDATE capbulk SET v = 1").unwrap();
        let r = json(
            "SELECT jsonb_build_object(
                 'n', count(*),
                 'inserts_in_order', count(*) FILTER (WHERE operation = 'insert' AND entity_id::int = rn),
                 'updates', count(DISTINCT entity_id) FILTER (WHERE operation = 'update'),
                 'inserts_first', max(id) FILTER (WHERE operation = 'insert') < min(id) FILTER (WHERE operation = 'update'))
               FROM (SELECT *, row_number() OVER (PARTITION BY operation ORDER BY id) AS rn
                       FROM change_log WHERE system = 'capbulk') c",
        );
        assert_eq!(
            r,
            json!({"n": 5000, "inserts_in_order": 2500, "updates": 2500, "inserts_first": true})
        );
    }

    #[pg_test]
    fn rows_copied_in_are_logged_before_the_next_statement() {
        setup_items("capcopy", 0);
        let file = format!("/tmp/sync_engine_capcopy_{}.csv", std::process::id());
        Spi::run(&format!(
            "COPY (SELECT g, g FROM generate_series(1, 1500) g) TO '{file}';
             COPY capcopy FROM '{file}';"
        ))
        .unwrap();
        std::fs::remove_file(&file).expect("the COPY file is ours to remove");
        assert_eq!(
            count(
                "SELECT count(*) FROM change_log WHERE system = 'capcopy' AND operation = 'insert'"
            ),
            1500
        );
    }

    #[pg_test]
    fn writes_undone_by_a_failed_statement_leave_no_records() {
        setup_items("capundo", 3);
        // a trigger after the capture fails on row 3: rows 1 and 2 were captured by then,
        // and their updates are undone with the statement
        Spi::run(
            "CREATE FUNCTION capundo_fail() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN IF NEW.id = 3 THEN RAISE EXCEPTION 'not 3'; END IF; RETURN NULL; END $f$;
             CREATE TRIGGER zz_fail AFTER UPDATE ON capundo FOR EACH ROW EXECUTE FUNCTION capundo_fail();
             DO $d$ BEGIN
                 BEGIN
                     UPDATE capundo SET v = 1;
                 EXCEPTION WHEN raise_exception THEN NULL;
                 END;
                 UPDATE capundo SET v = 2 WHERE id = 1;
             END $d$;",
        )
        .unwrap();
        assert_eq!(
            item_changes("capundo"),
            json!([
                ["insert", "1", 0],
                ["insert", "2", 0],
                ["insert", "3", 0],
                ["update", "1", 2]
            ])
        );
        assert_eq!(
            json("SELECT fields->'v' FROM change_log WHERE system = 'capundo' AND operation = 'update'"),
            json!({"old": 0, "new": 2})
        );
    }

    #[pg_test]
    fn a_nested_write_undone_in_a_trigger_keeps_the_outer_records() {
        setup_items("capouter", 3);
        setup_items("capinner", 1);
        // while the outer UPDATE's records are being taken, a trigger writes another
        // registered table in a block of its own: undone for row 2, kept for row 3
        Spi::run(
            "CREATE FUNCTION capouter_nested() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN
                   IF NEW.id >= 2 THEN
                       BEGIN
                           UPDATE capinner SET v = NEW.id;
                           IF NEW.id = 2 THEN RAISE EXCEPTION 'undo'; END IF;
                       EXCEPTION WHEN raise_exception THEN NULL;
                       END;
                   END IF;
                   RETURN NULL;
               END $f$;
             CREATE TRIGGER zz_nested AFTER UPDATE ON capouter FOR EACH ROW EXECUTE FUNCTION capouter_nested();
             UPDATE capouter SET v = 1;",
        )
        .unwrap();
        assert_eq!(
            json(
                "SELECT jsonb_agg(jsonb_build_array(system, entity_id, fields->'v'->'new') ORDER BY id)
                   FROM change_log WHERE system IN ('capouter', 'capinner') AND operation = 'update'"
            ),
            // in the order the writes happened
            json!([
                ["capouter", "1", 1],
                ["capouter", "2", 1],
                ["capouter", "3", 1],
                ["capinner", "1", 3]
            ])
        );
    }

    #[pg_test]
    fn a_trigger_on_change_log_that_writes_a_registered_table_is_captured_too() {
        // a DBA's trigger on change_log (records then go in through SPI) copies each
        // record of one table into another registered table, whose writes are captured
        // while the first table's records are being written
        setup_items("capre_a", 0);
        setup_items("capre_b", 0);
        Spi::run(
            "CREATE FUNCTION capre_fn() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN
                   IF NEW.system = 'capre_a' THEN
                       INSERT INTO capre_b VALUES (NEW.entity_id::int, 0);
                   END IF;
                   RETURN NEW;
               END $f$;
             CREATE TRIGGER capre_tr AFTER INSERT ON change_log FOR EACH ROW EXECUTE FUNCTION capre_fn();
             INSERT INTO capre_a SELECT g, 0 FROM generate_series(1, 1500) g;",
        )
        .unwrap();
        assert_eq!(
            json(
                "SELECT jsonb_object_agg(system, n) FROM (
                   SELECT system, count(DISTINCT entity_id) AS n FROM change_log
                    WHERE system IN ('capre_a', 'capre_b') AND operation = 'insert' GROUP BY system) c"
            ),
            json!({"capre_a": 1500, "capre_b": 1500})
        );
    }

    #[pg_test]
    fn truncate_is_refused() {
        setup_contacts("cap9");
        expect_error(
            "TRUNCATE cap9_contacts",
            "0A000",
            &["TRUNCATE", "sync_unregister_table"],
        );
    }

    fn nothing_registered(system: &str) {
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM sync_endpoints WHERE system = '{system}'"
            )),
            0
        );
    }

    #[pg_test]
    fn bad_registrations_are_refused_whole() {
        Spi::run(
            "CREATE TABLE bad_nopk (a int, b text);
             CREATE TABLE bad_twokey (a int, b int, PRIMARY KEY (a, b));
             CREATE TABLE bad_nullable (a int UNIQUE, b text);
             CREATE TABLE bad_ok (id int PRIMARY KEY, b text);
             CREATE VIEW bad_view AS SELECT * FROM bad_ok;",
        )
        .unwrap();
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_nopk')",
            "42P16",
            &["bad_nopk", "primary key"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_twokey')",
            "42P16",
            &["2 columns", "key_column"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_view')",
            "42809",
            &["bad_view", "view"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_missing')",
            "42P01",
            &["bad_missing"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_ok', 'nope')",
            "42703",
            &["nope", "bad_ok"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_nullable', 'a')",
            "42P16",
            &["nullable"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_nopk', 'a')",
            "42P16",
            &["unique index"],
        );
        expect_error(
            "SELECT sync_register_table('', 'x', 'bad_ok')",
            "22023",
            &["system"],
        );
        nothing_registered("bad");
        assert_eq!(
            count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bad_ok'::regclass"),
            0
        );

        Spi::run("SELECT sync_register_table('bad', 'x', 'bad_ok')").unwrap();
        expect_error(
            "SELECT sync_register_table('bad2', 'y', 'bad_ok')",
            "42710",
            &["already registered", "bad"],
        );
        expect_error(
            "SELECT sync_register_table('bad', 'x', 'bad_nopk', 'a')",
            "42710",
            &["already registered"],
        );
        nothing_registered("bad2");
        assert_eq!(
            count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bad_ok'::regclass"),
            2
        );
    }

    /// Our own transaction is still in progress, so its changes belong to no window yet
    /// (pg_current_snapshot() does not list the calling transaction as in progress, so
    /// sync_changes must leave it out by itself). Windows over committed changes are in
    /// src/pgtests/concurrent.rs.
    #[pg_test]
    fn changes_window_leaves_out_work_in_progress_and_refuses_bad_positions() {
        setup_contacts("win1");
        let p0 = text("SELECT sync_position()").unwrap();
        Spi::run("INSERT INTO win1_contacts (name) VALUES ('a')").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM change_log WHERE system = 'win1'"),
            1,
            "the change is recorded"
        );
        let p1 = text("SELECT sync_position()").unwrap();
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM sync_changes(NULL, '{p1}', 'win1')"
            )),
            0,
            "uncommitted work is not in any window"
        );
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM sync_changes('{p0}', '{p1}', 'win1')"
            )),
            0
        );
        expect_error(
            &format!("SELECT * FROM sync_changes('{p1}', 'garbage')"),
            "22023",
            &["invalid sync position"],
        );
        expect_error(
            "SELECT * FROM sync_changes('100:104:', '10:14:')",
            "22023",
            &["does not follow"],
        );
    }

    /// Two tables of the same shape, one written with multi-row statements, the other
    /// with the same changes one row per statement (a loop of single-row statements).
    fn setup_twins() {
        for system in ["captw_m", "captw_s"] {
            Spi::run(&format!(
                "CREATE TABLE {system} (id int PRIMARY KEY, name text, gone text, score numeric,
                     meta jsonb, seen_at timestamptz, active boolean, visits int, note varchar(20),
                     tags text[]);
                 SELECT sync_register_table('{system}', 'items', '{system}');"
            ))
            .unwrap();
        }
    }

    /// The values of twin row g (NULLs, JSON, numbers with a scale, arrays)
    const TWIN_ROW: &str = "g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'name \"' || g || E'\"\\n' END,
        'dropped ' || g, CASE WHEN g % 5 = 0 THEN NULL ELSE round(g / 3.0, 3) END,
        CASE WHEN g % 4 = 0 THEN NULL ELSE jsonb_build_object('g', g, 'n', jsonb_build_array(g, NULL, 'x')) END,
        timestamptz '2026-01-02 03:04:05+00' + g * interval '61 seconds',
        CASE WHEN g % 11 = 0 THEN NULL ELSE g % 3 = 0 END,
        CASE WHEN g % 2 = 0 THEN NULL ELSE g END, 'note ' || g, ARRAY['a', g::text]";

    /// Per entity, in order: the fields, operation, origin, txid and checksum of every
    /// change record of `system` (changed_at and id aside, which differ by nature)
    fn twin_records(system: &str) -> serde_json::Value {
        json(&format!(
            "SELECT coalesce(jsonb_agg(jsonb_build_array(entity_id, operation, fields, origin,
                     txid::text, checksum) ORDER BY entity_id, id), '[]')
               FROM change_log WHERE system = '{system}'"
        ))
    }

    #[pg_test]
    fn a_multi_row_statement_records_what_single_row_statements_do() {
        setup_twins();
        let multi = |sql: &str| Spi::run(&sql.replace("$T", "captw_m")).unwrap();
        // the same change, one statement per row: `sql` with $T the table and :g the row
        let single = |rows: &str, sql: &str| {
            Spi::run(&format!(
                "DO $d$ DECLARE r int; BEGIN
                     FOR r IN {rows} LOOP
                         EXECUTE replace({}, ':g', r::text);
                     END LOOP;
                 END $d$",
                pgrx::spi::quote_literal(sql.replace("$T", "captw_s"))
            ))
            .unwrap()
        };
        // inserts: 1500 rows in one statement, more than are written at once
        multi(&format!(
            "INSERT INTO $T SELECT {TWIN_ROW} FROM generate_series(1, 1500) g"
        ));
        single(
            "SELECT generate_series(1, 1500)",
            &format!("INSERT INTO $T SELECT {TWIN_ROW} FROM (SELECT :g AS g) s"),
        );
        // a dropped column in the middle of the row, from now on
        multi("ALTER TABLE $T DROP COLUMN gone");
        Spi::run("ALTER TABLE captw_s DROP COLUMN gone").unwrap();
        // updates: values to and from NULL, JSON edits, rows that do not change, key changes
        let update = "UPDATE $T SET name = CASE WHEN id % 3 = 0 THEN NULL ELSE coalesce(name, 'was null') || '!' END,
                          score = score + 1, meta = CASE WHEN id % 2 = 0 THEN coalesce(meta, '{}') || '{\"u\": [1, 2]}' ELSE meta END,
                          visits = CASE WHEN id % 6 = 0 THEN visits ELSE coalesce(visits, 0) + 1 END,
                          active = CASE WHEN id % 9 = 0 THEN NULL ELSE active END";
        multi(&format!("{update} WHERE id % 10 <> 9"));
        single(
            "SELECT id FROM captw_s WHERE id % 10 <> 9 ORDER BY id",
            &format!("{update} WHERE id = :g"),
        );
        multi("UPDATE $T SET name = name, note = note WHERE id % 10 = 9");
        single(
            "SELECT id FROM captw_s WHERE id % 10 = 9 ORDER BY id",
            "UPDATE $T SET name = name, note = note WHERE id = :g",
        );
        multi("UPDATE $T SET id = id + 100000 WHERE id % 50 = 0");
        single(
            "SELECT id FROM captw_s WHERE id % 50 = 0 ORDER BY id",
            "UPDATE $T SET id = id + 100000 WHERE id = :g",
        );
        // the engine's writes carry its origin tag, whatever the statement's size
        {
            let _tag = crate::capture::origin::tag_writes("sync_engine:config:42".into());
            multi("UPDATE $T SET tags = tags || 'tagged'::text WHERE id < 300");
            single(
                "SELECT id FROM captw_s WHERE id < 300 ORDER BY id",
                "UPDATE $T SET tags = tags || 'tagged'::text WHERE id = :g",
            );
        }
        // a subtransaction that aborts takes its records along; one that commits keeps them
        for (t, sub_a, sub_b) in [
            (
                "captw_m",
                "UPDATE captw_m SET visits = -1; INSERT INTO captw_m (id, name) SELECT g, 'undone' FROM generate_series(200001, 202000) g;",
                "UPDATE captw_m SET note = 'kept' WHERE id % 7 = 3;",
            ),
            (
                "captw_s",
                "FOR r IN SELECT id FROM captw_s ORDER BY id LOOP UPDATE captw_s SET visits = -1 WHERE id = r; END LOOP;
                 FOR r IN 200001..202000 LOOP INSERT INTO captw_s (id, name) VALUES (r, 'undone'); END LOOP;",
                "FOR r IN SELECT id FROM captw_s WHERE id % 7 = 3 ORDER BY id LOOP UPDATE captw_s SET note = 'kept' WHERE id = r; END LOOP;",
            ),
        ] {
            Spi::run(&format!(
                "DO $d$ DECLARE r int; BEGIN
                     BEGIN {sub_a} RAISE EXCEPTION 'undo'; EXCEPTION WHEN raise_exception THEN NULL; END;
                     BEGIN {sub_b} EXCEPTION WHEN division_by_zero THEN NULL; END;
                 END $d$"
            ))
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        }
        // deletes, NULLs and all
        multi("DELETE FROM $T WHERE id % 4 = 1");
        single(
            "SELECT id FROM captw_s WHERE id % 4 = 1 ORDER BY id",
            "DELETE FROM $T WHERE id = :g",
        );

        let (m, s) = (twin_records("captw_m"), twin_records("captw_s"));
        let n = m.as_array().unwrap().len();
        // 1500 inserts, 1350 updates, 30 key changes (60), 294 tagged, 214 kept, 375 deletes
        assert_eq!(
            n,
            1500 + 1350 + 60 + 294 + 214 + 375,
            "records of the multi-row statements"
        );
        for (i, (a, b)) in m
            .as_array()
            .unwrap()
            .iter()
            .zip(s.as_array().unwrap())
            .enumerate()
        {
            assert_eq!(
                a, b,
                "record {i} (per entity, in order): multi-row vs single-row"
            );
        }
        assert_eq!(m, s);
        assert_eq!(
            count(
                "SELECT count(*) FROM change_log WHERE system IN ('captw_m', 'captw_s')
                   AND (txid <> pg_current_xact_id() OR fields ? 'gone' AND operation <> 'insert'
                        OR fields -> 'visits' ->> 'new' = '-1' OR fields -> 'name' ->> 'new' = 'undone')"
            ),
            0,
            "this transaction's id; the dropped column gone from later records; nothing of the aborted block"
        );
        assert_eq!(
            count("SELECT count(*) FROM change_log WHERE system = 'captw_m' AND origin = 'sync_engine:config:42'"),
            294
        );
    }
}
