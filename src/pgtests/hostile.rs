//! Hostile input (issue 17).
//! - Identifiers with quotes, spaces, semicolons, dollar signs and upper case as
//!   schema, table, column, system, entity type, config and client names, and values
//!   that look like SQL: registered, synced both ways through a split/join mapping,
//!   pushed and pulled — never executed, always synced as data (a canary table that
//!   every injected statement would drop survives).
//! - Empty, oversized (100 KB) and malformed values, wrong JSON shapes and wrong types
//!   in every public function: an ERROR with a SQLSTATE naming the problem, and nothing
//!   of the sync's state changed. (NULLs and name lengths: args.rs.)

/// A SQL string literal (standard_conforming_strings is on).
#[cfg(test)]
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A quoted SQL identifier.
#[cfg(test)]
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod as_data {
    use super::{ident, lit};
    use crate::pgtests::fixture::Db;
    use serde_json::{json, Value};

    const SCHEMA: &str = "Ho \"stile\"; DROP TABLE hostile_canary; --";
    const SRC_TABLE: &str = "Con'tacts; DROP TABLE hostile_canary;--";
    const DST_TABLE: &str = "HubSpot \"Mirror\" $$";
    const SRC_SYSTEM: &str = "crm'); DROP TABLE hostile_canary; --";
    const DST_SYSTEM: &str = "Hub \"Spot\" \\ $$ $x$";
    const ENTITY: &str = "Contacts $x$;--";
    const DST_ENTITY: &str = "Con tacts' OR '1'='1";
    const CONFIG: &str = "cfg\"; DELETE FROM sync_configs; --";
    const CLIENT: &str = "dev'\"; DROP TABLE hostile_canary; --";
    // source columns (key first) and target columns (key first)
    const S_KEY: &str = "Id \"Key\"";
    const S_NAME: &str = "Full Name";
    const S_MAIL: &str = "e'mail";
    const S_PHONE: &str = "Phone;--";
    const S_NOTE: &str = "UPPER $$";
    const T_KEY: &str = "hs id";
    const T_FIRST: &str = "First \"Name\"";
    const T_LAST: &str = "last'name";
    const T_MAIL: &str = "E'Mail";
    const T_PHONE: &str = "Phone;--";
    const T_NOTE: &str = "note\\";

    fn q_src() -> String {
        format!("{}.{}", ident(SCHEMA), ident(SRC_TABLE))
    }
    fn q_dst() -> String {
        format!("{}.{}", ident(SCHEMA), ident(DST_TABLE))
    }

    /// The target's rows (without key), ordered by the mapped note.
    fn target_rows(db: &mut Db) -> Value {
        db.rows(&format!(
            "SELECT {f} AS first, {l} AS last, {m} AS mail, {p} AS phone, {n} AS note FROM {t} ORDER BY {n}",
            f = ident(T_FIRST),
            l = ident(T_LAST),
            m = ident(T_MAIL),
            p = ident(T_PHONE),
            n = ident(T_NOTE),
            t = q_dst()
        ))
    }

    fn source_rows(db: &mut Db) -> Value {
        db.rows(&format!(
            "SELECT {nm} AS name, {m} AS mail, {p} AS phone, {n} AS note FROM {t} ORDER BY {n}",
            nm = ident(S_NAME),
            m = ident(S_MAIL),
            p = ident(S_PHONE),
            n = ident(S_NOTE),
            t = q_src()
        ))
    }

    #[test]
    fn hostile_identifiers_and_values_are_synced_as_data_never_executed() {
        let mut db = Db::new();
        db.exec(&format!(
            "DROP TABLE IF EXISTS public.hostile_canary;
             CREATE TABLE public.hostile_canary (x int);
             DELETE FROM sync_configs WHERE name = {cfg};
             SELECT sync_unregister_table(system, entity_type) FROM sync_endpoints
              WHERE system IN ({ss}, {ds});
             DELETE FROM sync_clients WHERE client_id = {client};
             DROP SCHEMA IF EXISTS {schema} CASCADE;
             CREATE SCHEMA {schema};
             CREATE TABLE {src} ({sk} serial PRIMARY KEY, {sn} text, {sm} text, {sp} text, {snote} text);
             CREATE SEQUENCE {schema}.{seq};
             CREATE TABLE {dst} ({tk} text PRIMARY KEY DEFAULT 'hs-' || nextval('{seq_lit}'),
                                 {tf} text, {tl} text, {tm} text, {tp} text, {tn} text);",
            cfg = lit(CONFIG),
            ss = lit(SRC_SYSTEM),
            ds = lit(DST_SYSTEM),
            client = lit(CLIENT),
            schema = ident(SCHEMA),
            src = q_src(),
            dst = q_dst(),
            sk = ident(S_KEY),
            sn = ident(S_NAME),
            sm = ident(S_MAIL),
            sp = ident(S_PHONE),
            snote = ident(S_NOTE),
            seq = ident("seq'; --"),
            seq_lit = format!("{}.{}", ident(SCHEMA), ident("seq'; --")).replace('\'', "''"),
            tk = ident(T_KEY),
            tf = ident(T_FIRST),
            tl = ident(T_LAST),
            tm = ident(T_MAIL),
            tp = ident(T_PHONE),
            tn = ident(T_NOTE),
        ));
        let mapping = json!([
            {"source": S_NAME, "target": [T_FIRST, T_LAST], "transform": "split"},
            {"source": S_MAIL, "target": T_MAIL, "transform": "lowercase"},
            {"source": S_PHONE, "target": T_PHONE},
            {"source": S_NOTE, "target": T_NOTE}
        ]);
        // the config is created disabled in the same transaction: run by hand, never by
        // the worker (which would otherwise race this test's own sync_execute: 55P03)
        db.exec(&format!(
            "SELECT sync_register_table({ss}, {e}, {src});
             SELECT sync_register_table({ds}, {de}, {dst}, {tk});
             SELECT sync_create_config({cfg}, {ss}, {ds}, {e}, {m}, 'latest_wins', 'bidirectional',
                                       target_entity_type => {de});
             UPDATE sync_configs SET enabled = false WHERE name = {cfg};",
            ss = lit(SRC_SYSTEM),
            ds = lit(DST_SYSTEM),
            e = lit(ENTITY),
            de = lit(DST_ENTITY),
            src = lit(&q_src()),
            dst = lit(&q_dst()),
            tk = lit(T_KEY),
            cfg = lit(CONFIG),
            m = lit(&mapping.to_string()),
        ));
        let c =
            db.0.query_one("SELECT id FROM sync_configs WHERE name = $1", &[&CONFIG])
                .unwrap()
                .get::<_, i64>(0);

        // values that look like SQL, bound as parameters (what an application does)
        let big = "x'); DROP TABLE hostile_canary; --".repeat(3000); // ~100 KB
        let rows: Vec<[Option<&str>; 4]> = vec![
            [
                Some("Robert'); DROP TABLE hostile_canary; -- Tables"),
                Some("O'Brien@Example.COM"),
                Some("$$; SELECT pg_sleep(10); $$"),
                Some("1 zoë ǆ 🚀 \\n \\\\ % _ \\' \" E'\\x41'"),
            ],
            [Some(""), None, Some("'; --"), Some("2 empty and NULL")],
            [
                Some("Big Value"),
                Some("big@x.io"),
                Some(big.as_str()),
                Some("3 big"),
            ],
        ];
        for r in &rows {
            db.0.execute(
                &format!(
                    "INSERT INTO {} ({}, {}, {}, {}) VALUES ($1, $2, $3, $4)",
                    q_src(),
                    ident(S_NAME),
                    ident(S_MAIL),
                    ident(S_PHONE),
                    ident(S_NOTE)
                ),
                &[&r[0], &r[1], &r[2], &r[3]],
            )
            .unwrap();
        }
        let res = db.sync(c);
        assert_eq!(
            [&res["created"], &res["errors"]],
            [&json!(3), &json!(0)],
            "{res}"
        );
        assert_eq!(
            target_rows(&mut db),
            json!([
                {"first": "Robert');", "last": "DROP TABLE hostile_canary; -- Tables", "mail": "o'brien@example.com",
                 "phone": "$$; SELECT pg_sleep(10); $$", "note": "1 zoë ǆ 🚀 \\n \\\\ % _ \\' \" E'\\x41'"},
                {"first": null, "last": null, "mail": null, "phone": "'; --", "note": "2 empty and NULL"},
                {"first": "Big", "last": "Value", "mail": "big@x.io", "phone": big, "note": "3 big"}
            ]),
            "every value arrived as data"
        );

        // the other way: the target's edits come back, joined
        db.0.execute(
            &format!(
                "UPDATE {} SET {} = $1, {} = $2 WHERE {} = $3",
                q_dst(),
                ident(T_FIRST),
                ident(T_PHONE),
                ident(T_NOTE)
            ),
            &[
                &"Bobby\"; DROP TABLE hostile_canary; --",
                &"$q$ \\ $q$",
                &"1 zoë ǆ 🚀 \\n \\\\ % _ \\' \" E'\\x41'",
            ],
        )
        .unwrap();
        db.0.execute(
            &format!("DELETE FROM {} WHERE {} = $1", q_dst(), ident(T_NOTE)),
            &[&"3 big"],
        )
        .unwrap();
        let res = db.sync(c);
        assert_eq!(
            [&res["updated"], &res["deleted"], &res["errors"]],
            [&json!(1), &json!(1), &json!(0)],
            "{res}"
        );
        assert_eq!(
            source_rows(&mut db),
            json!([
                {"name": "Bobby\"; DROP TABLE hostile_canary; -- DROP TABLE hostile_canary; -- Tables",
                 "mail": "O'Brien@Example.COM", "phone": "$q$ \\ $q$", "note": "1 zoë ǆ 🚀 \\n \\\\ % _ \\' \" E'\\x41'"},
                {"name": "", "mail": null, "phone": "'; --", "note": "2 empty and NULL"}
            ])
        );

        // an offline client with hostile ids pushes hostile values into hostile columns
        let cursor: String =
            db.0.query_one(
                "SELECT sync_pull($1, $2)->>'cursor'",
                &[&SRC_SYSTEM, &ENTITY],
            )
            .unwrap()
            .get(0);
        let key: i32 =
            db.0.query_one(
                &format!(
                    "SELECT {} FROM {} WHERE {} = ''",
                    ident(S_KEY),
                    q_src(),
                    ident(S_NAME)
                ),
                &[],
            )
            .unwrap()
            .get(0);
        let change_id = "c'1\"; DROP TABLE hostile_canary; --";
        let changes = json!([{"id": change_id, "entity_id": key.to_string(), "operation": "update",
            "changed_at": "2026-01-01T00:00:00Z",
            "fields": {S_MAIL: {"old": null, "new": "X'); DROP TABLE hostile_canary; --@X.io"},
                       S_NOTE: {"old": "2 empty and NULL", "new": "2 $$ pushed $$"}}}]);
        let pushed: String =
            db.0.query_one(
                "SELECT sync_push($1, $2, $3::text::jsonb, $4)::text",
                &[&SRC_SYSTEM, &ENTITY, &changes.to_string(), &CLIENT],
            )
            .unwrap()
            .get(0);
        let pushed: Value = pushed.parse().unwrap();
        assert_eq!(pushed["applied"], 1, "{pushed}");
        assert_eq!(pushed["results"][0]["id"], change_id, "{pushed}");
        // sent again: the hostile change id is remembered as it is
        let again: String =
            db.0.query_one(
                "SELECT sync_push($1, $2, $3::text::jsonb, $4)::text",
                &[&SRC_SYSTEM, &ENTITY, &changes.to_string(), &CLIENT],
            )
            .unwrap()
            .get(0);
        let again: Value = again.parse().unwrap();
        assert_eq!(again["duplicates"], 1, "{again}");
        // another client's pull sees the change, with its columns' names as sent
        let pulled: String =
            db.0.query_one(
                "SELECT sync_pull($1, $2, $3, 100, 'someone else')::text",
                &[&SRC_SYSTEM, &ENTITY, &cursor],
            )
            .unwrap()
            .get(0);
        let pulled: Value = pulled.parse().unwrap();
        let ch = &pulled["changes"].as_array().expect("changes")[0];
        assert_eq!(
            ch["fields"][S_MAIL]["new"], "X'); DROP TABLE hostile_canary; --@X.io",
            "{pulled}"
        );
        assert_eq!(ch["origin"], format!("client:{CLIENT}"), "{pulled}");
        // its own pull leaves it out
        let own: String =
            db.0.query_one(
                "SELECT sync_pull($1, $2, $3, 100, $4)::text",
                &[&SRC_SYSTEM, &ENTITY, &cursor, &CLIENT],
            )
            .unwrap()
            .get(0);
        let own: Value = own.parse().unwrap();
        assert_eq!(own["changes"], json!([]), "{own}");
        let res = db.sync(c);
        assert_eq!(
            [&res["updated"], &res["errors"]],
            [&json!(1), &json!(0)],
            "{res}"
        );
        let snap: String =
            db.0.query_one(
                "SELECT sync_snapshot($1, $2, $3, 10)::text",
                &[
                    &DST_SYSTEM,
                    &DST_ENTITY,
                    &"'); DROP TABLE hostile_canary; --",
                ],
            )
            .unwrap()
            .get(0);
        let snap: Value = snap.parse().unwrap();
        let row = snap["rows"]
            .as_array()
            .or_else(|| snap["changes"].as_array())
            .unwrap_or_else(|| panic!("{snap}"))
            .iter()
            .find(|r| r.to_string().contains("pushed"))
            .cloned()
            .unwrap_or_else(|| panic!("the pushed row in the snapshot: {snap}"));
        assert!(
            row.to_string()
                .contains("x'); drop table hostile_canary; --@x.io"),
            "lowercased on its way: {row}"
        );

        // nothing was executed: the canary is there; nothing failed or conflicted
        assert_eq!(
            db.json("SELECT to_regclass('public.hostile_canary') IS NOT NULL AS there")["there"],
            true
        );
        assert_eq!(
            db.json(&format!(
                "SELECT (SELECT count(*) FROM sync_errors WHERE config_id = {c})
                      + (SELECT count(*) FROM sync_conflicts WHERE config_id = {c}) AS n"
            ))["n"],
            0
        );
        // the names are stored as given
        let names: Value = db
            .0
            .query_one(
                "SELECT jsonb_build_object('configs', (SELECT count(*) FROM sync_configs WHERE name = $1),
                        'endpoints', (SELECT count(*) FROM sync_endpoints WHERE system IN ($2, $3)),
                        'client', (SELECT count(*) FROM sync_clients WHERE client_id = $4),
                        'ids', (SELECT count(*) FROM sync_push_ids WHERE client_id = $4 AND change_id = $5))::text",
                &[&CONFIG, &SRC_SYSTEM, &DST_SYSTEM, &CLIENT, &change_id],
            )
            .unwrap()
            .get::<_, String>(0)
            .parse()
            .unwrap();
        assert_eq!(
            names,
            json!({"configs": 1, "endpoints": 2, "client": 1, "ids": 1})
        );
        db.exec(&format!(
            "DELETE FROM sync_configs WHERE id = {c};
             SELECT sync_unregister_table({ss}, {e}); SELECT sync_unregister_table({ds}, {de});
             DELETE FROM sync_clients WHERE client_id = {client};
             DROP SCHEMA {schema} CASCADE; DROP TABLE public.hostile_canary;",
            ss = lit(SRC_SYSTEM),
            ds = lit(DST_SYSTEM),
            e = lit(ENTITY),
            de = lit(DST_ENTITY),
            client = lit(CLIENT),
            schema = ident(SCHEMA),
        ));
    }
}

/// Bad values into every public function, in one rolled-back transaction.
#[pgrx::pg_schema]
mod tests {
    use crate::pgtests::util::*;
    use pgrx::prelude::*;

    fn setup() {
        Spi::run(
            "CREATE TABLE hb_a (id int PRIMARY KEY, v text, n int);
             CREATE TABLE hb_b (id int PRIMARY KEY, v text, n int);
             CREATE TABLE hb_c (id int PRIMARY KEY, v text);
             CREATE VIEW hb_view AS SELECT * FROM hb_c;
             CREATE SEQUENCE hb_seq;
             SELECT sync_register_table('hb_a', 'things', 'hb_a');
             SELECT sync_register_table('hb_b', 'things', 'hb_b');
             SELECT sync_create_config('hb_cfg', 'hb_a', 'hb_b', 'things');",
        )
        .unwrap();
    }

    /// The sync's state for the test's names: endpoints, configs, runs, links, errors,
    /// conflicts, remembered pushes, clients, webhooks, change records, triggers.
    fn state() -> String {
        text(
            "SELECT concat_ws(' | ',
                (SELECT string_agg(to_jsonb(e)::text, ',' ORDER BY id) FROM sync_endpoints e WHERE system LIKE 'hb%'),
                (SELECT string_agg(to_jsonb(c)::text, ',' ORDER BY id) FROM sync_configs c WHERE name LIKE 'hb%'),
                (SELECT count(*) FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id WHERE c.name LIKE 'hb%'),
                (SELECT count(*) FROM sync_links l JOIN sync_configs c ON c.id = l.config_id WHERE c.name LIKE 'hb%'),
                (SELECT count(*) FROM sync_errors r JOIN sync_configs c ON c.id = r.config_id WHERE c.name LIKE 'hb%'),
                (SELECT count(*) FROM sync_conflicts r JOIN sync_configs c ON c.id = r.config_id WHERE c.name LIKE 'hb%'),
                (SELECT count(*) FROM sync_push_ids WHERE client_id LIKE 'hb%'),
                (SELECT count(*) FROM sync_clients WHERE client_id LIKE 'hb%'),
                (SELECT count(*) FROM sync_webhooks WHERE url LIKE '%/hb'),
                (SELECT count(*) FROM change_log WHERE system LIKE 'hb%'),
                (SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('hb_a'::regclass, 'hb_b'::regclass, 'hb_c'::regclass)))",
        )
        .unwrap_or_default()
    }

    /// (the call, its SQLSTATE, a fragment of its message naming the problem)
    fn cases() -> Vec<(String, &'static str, &'static str)> {
        let k100 = format!("'{}'", "x".repeat(100_000));
        let push = |changes: &str, client: &str, strategy: &str| {
            format!("SELECT sync_push('hb_a', 'things', {changes}, {client}, {strategy})")
        };
        let upd = r#"[{"id": "c1", "entity_id": "1", "operation": "update", "changed_at": "2026-01-01T00:00:00Z", "fields": {"v": {"old": null, "new": "x"}}}]"#;
        let mapping = |m: &str| {
            format!("SELECT sync_create_config('hb_cfg2', 'hb_a', 'hb_b', 'things', '{m}')")
        };
        let create = |arg: &str| {
            format!("SELECT sync_create_config('hb_cfg2', 'hb_a', 'hb_b', 'things', {arg})")
        };
        let hook = |url: &str, events: &str, secret: &str| {
            format!("SELECT sync_add_webhook({url}, {events}, {secret})")
        };
        let ev = "ARRAY['run.completed']";
        vec![
            // sync_register_table
            ("SELECT sync_register_table('', 'things', 'hb_c')".into(), "22023", "system must be a non-empty name"),
            ("SELECT sync_register_table('hb_c', '', 'hb_c')".into(), "22023", "entity_type must be a non-empty name"),
            ("SELECT sync_register_table('hb_c', 'things', 'hb_nope')".into(), "42P01", "hb_nope"),
            ("SELECT sync_register_table('hb_c', 'things', '')".into(), "42602", "invalid name syntax"),
            (format!("SELECT sync_register_table('hb_c', 'things', {k100})"), "42P01", "does not exist"),
            ("SELECT sync_register_table('hb_c', 'things', 'hb_view')".into(), "42809", "is a view"),
            ("SELECT sync_register_table('hb_c', 'things', 'hb_seq')".into(), "42809", "is not a table"),
            ("SELECT sync_register_table('hb_c', 'things', 'hb_c', 'v')".into(), "42P16", "cannot be the sync key"),
            ("SELECT sync_register_table('hb_c', 'things', 'hb_c', ''''); DROP TABLE hb_c; --')".into(), "42703", "does not exist"),
            ("SELECT sync_register_table('hb_a2', 'things', 'hb_a')".into(), "42710", "already registered"),
            ("SELECT sync_register_table('hb_a', 'things', 'hb_c')".into(), "42710", "already registered"),
            // sync_unregister_table
            ("SELECT sync_unregister_table('hb_nope', 'things')".into(), "42704", "hb_nope"),
            ("SELECT sync_unregister_table('hb_a', 'things')".into(), "2BP01", "hb_cfg"),
            (format!("SELECT sync_unregister_table({k100}, 'things')"), "22001", "system is 100000 bytes long"),
            // sync_create_config: mapping shapes
            (mapping("\"a string\""), "22023", "field_mapping"),
            (mapping("{}"), "22023", "field_mapping"),
            (mapping("[1]"), "22023", "field_mapping"),
            (mapping("[]"), "22023", "field_mapping"),
            (mapping("[{\"source\": \"v\"}]"), "22023", "target"),
            (mapping("[{\"target\": \"v\"}]"), "22023", "source"),
            (mapping("[{\"source\": 5, \"target\": \"v\"}]"), "22023", "source"),
            (mapping("[{\"source\": \"v\", \"target\": {\"a\": 1}}]"), "22023", "target"),
            (mapping("[{\"source\": \"nope\", \"target\": \"v\"}]"), "42703", "nope"),
            (mapping("[{\"source\": \"v\", \"target\": \"nope\"}]"), "42703", "nope"),
            (mapping("[{\"source\": \"v\", \"target\": \"v\", \"transform\": \"rot13\"}]"), "22023", "rot13"),
            (mapping("[{\"source\": \"v\", \"target\": \"v\", \"transform\": 7}]"), "22023", "transform"),
            (mapping("[{\"source\": \"v\", \"target\": [\"v\", \"n\"]}]"), "22023", "split"),
            (mapping("[{\"source\": \"v\", \"target\": \"v\"}, {\"source\": \"n\", \"target\": \"v\"}]"), "22023", "v"),
            (mapping("[{\"source\": \"v\", \"target\": \"v\", \"reverse_transform\": \"nope\"}]"), "22023", "nope"),
            (create("'[{\"source\": \"id\", \"target\": \"id\"}]'"), "22023", "key"),
            (create("conflict_strategy => ''"), "22023", "unknown conflict strategy"),
            (create("conflict_strategy => 'SOURCE_WINS'"), "22023", "unknown conflict strategy"),
            (create(&format!("conflict_strategy => {k100}")), "22023", "unknown conflict strategy"),
            (create("sync_direction => 'sideways'"), "22023", "unknown sync direction"),
            (create("sync_direction => ''"), "22023", "unknown sync direction"),
            (create("sync_interval => '0 seconds'"), "22023", "sync_interval"),
            (create("sync_interval => '-1 minute'"), "22023", "sync_interval"),
            (create("sync_interval => 'soon'"), "22007", "soon"),
            (create("match_on => ARRAY['nope']"), "22023", "nope"),
            (create("match_on => ARRAY['']"), "22023", "match_on"),
            (create("target_entity_type => 'nope'"), "42704", "nope"),
            ("SELECT sync_create_config('hb_cfg2', 'hb_nope', 'hb_b', 'things')".into(), "42704", "hb_nope"),
            ("SELECT sync_create_config('hb_cfg2', 'hb_a', 'hb_a', 'things')".into(), "22023", "same endpoint"),
            ("SELECT sync_create_config('hb_cfg', 'hb_a', 'hb_b', 'things')".into(), "42710", "hb_cfg"),
            // sync_execute
            ("SELECT sync_execute(0)".into(), "42704", "0"),
            ("SELECT sync_execute(-1)".into(), "42704", "-1"),
            ("SELECT sync_execute('abc')".into(), "22P02", "abc"),
            ("SELECT sync_execute('1; DROP TABLE hb_a')".into(), "22P02", "DROP TABLE"),
            // sync_resolve_conflict
            ("SELECT sync_resolve_conflict(987654, 'source')".into(), "42704", "987654"),
            ("SELECT sync_resolve_conflict(987654, '')".into(), "22023", "unknown conflict choice"),
            ("SELECT sync_resolve_conflict(987654, 'SOURCE')".into(), "22023", "unknown conflict choice"),
            (format!("SELECT sync_resolve_conflict(987654, {k100})"), "22023", "unknown conflict choice"),
            ("SELECT sync_resolve_conflict(987654, 'merged', '[1, 2]')".into(), "42704", "987654"),
            // sync_push
            (push("'null'", "'hb-dev'", "'latest_wins'"), "22023", "JSON array"),
            (push("'\"str\"'", "'hb-dev'", "'latest_wins'"), "22023", "JSON array"),
            (push("'{}'", "'hb-dev'", "'latest_wins'"), "22023", "JSON array"),
            (push("'[null]'", "'hb-dev'", "'latest_wins'"), "22023", "change 1"),
            (push("'[[]]'", "'hb-dev'", "'latest_wins'"), "22023", "change 1"),
            (push("'[\"x\"]'", "'hb-dev'", "'latest_wins'"), "22023", "change 1"),
            (push(&format!("'{}'", upd.replace("\"c1\"", "[7]")), "'hb-dev'", "'latest_wins'"), "22023", "id"),
            (push(&format!("'{}'", upd.replace("\"1\"", &format!("\"{}\"", "9".repeat(100_000)))), "'hb-dev'", "'latest_wins'"), "22P02", "does not fit key column"),
            (push(&format!("'{}'", upd.replace("\"fields\": {", "\"fields\": {\"n\": {\"new\": \"many\"}, ")), "'hb-dev'", "'latest_wins'"), "22023", "field \"n\" has no \"old\" value"),
            (push(&format!("'{}'", upd.replace("{\"old\": null, \"new\": \"x\"}", "\"x\"")), "'hb-dev'", "'latest_wins'"), "22023", "\"v\""),
            (push(&format!("'{}'", upd.replace("\"2026-01-01T00:00:00Z\"", "true")), "'hb-dev'", "'latest_wins'"), "22023", "changed_at"),
            (push(&format!("'{}'", upd.replace("\"2026-01-01T00:00:00Z\"", "\"\"")), "'hb-dev'", "'latest_wins'"), "22023", "changed_at"),
            (push(&format!("'{}'", upd.replace("\"update\"", "\"\"")), "'hb-dev'", "'latest_wins'"), "22023", "operation"),
            (push(&format!("'{upd}'"), "''", "'latest_wins'"), "22023", "client_id must be a non-empty name"),
            (push(&format!("'{upd}'"), &k100, "'latest_wins'"), "22001", "client_id is 100000 bytes long"),
            (push(&format!("'{upd}'"), "'hb-dev'", "''"), "22023", "unknown conflict strategy"),
            (push(&format!("'{upd}'"), "'hb-dev'", &k100), "22023", "unknown conflict strategy"),
            (push("'not json'", "'hb-dev'", "'latest_wins'"), "22P02", "json"),
            (push(&format!("'{upd}'"), "'hb-dev'", "'latest_wins'").replace("'hb_a'", "''"), "22023", "system must be a non-empty name"),
            // sync_pull and sync_snapshot
            ("SELECT sync_pull('hb_a', 'things', '')".into(), "22023", "cursor"),
            (format!("SELECT sync_pull('hb_a', 'things', {k100})"), "22023", "cursor"),
            ("SELECT sync_pull('hb_a', 'things', 'sp1''; DROP TABLE hb_a; --')".into(), "22023", "cursor"),
            ("SELECT sync_pull('hb_a', 'things', NULL, -1)".into(), "22023", "max_changes must be at least 1"),
            ("SELECT sync_pull('hb_a', 'things', NULL, 10, '')".into(), "22023", "client_id must be a non-empty name"),
            (format!("SELECT sync_pull('hb_a', 'things', NULL, 10, {k100})"), "22001", "client_id is 100000 bytes long"),
            ("SELECT sync_pull('', 'things')".into(), "22023", "system must be a non-empty name"),
            ("SELECT sync_snapshot('hb_a', 'things', 'abc')".into(), "22P02", "after_key \"abc\" does not fit key column \"id\" (integer)"),
            (format!("SELECT sync_snapshot('hb_a', 'things', {k100})"), "22P02", "(100000 bytes)\" does not fit"),
            ("SELECT sync_snapshot('hb_a', 'things', NULL, -5)".into(), "22023", "max_rows must be at least 1"),
            ("SELECT sync_snapshot('hb_nope', 'things')".into(), "42704", "hb_nope"),
            // webhooks
            (hook("''", ev, "NULL"), "22023", "invalid url"),
            (hook(&k100, ev, "NULL"), "22023", "invalid url"),
            (hook("'javascript:alert(1)'", ev, "NULL"), "22023", "invalid url"),
            (hook("'http://127.0.0.1:9/hb'", "ARRAY[]::text[]", "NULL"), "22023", "invalid events"),
            (hook("'http://127.0.0.1:9/hb'", "ARRAY['']", "NULL"), "22023", "unknown event type"),
            (hook("'http://127.0.0.1:9/hb'", "ARRAY['run.completed''; --']", "NULL"), "22023", "unknown event type"),
            (hook("'http://127.0.0.1:9/hb'", ev, "''"), "22023", "invalid secret"),
            (hook("'http://127.0.0.1:9/hb'", ev, "'whsec_!!!'"), "22023", "invalid secret"),
            (hook("'http://127.0.0.1:9/hb'", ev, &k100), "22023", "invalid secret"),
            ("SELECT sync_remove_webhook(-1)".into(), "42704", "webhook -1 does not exist"),
            ("SELECT sync_redeliver(-1)".into(), "42704", "delivery -1 does not exist"),
            ("SELECT sync_webhook_secret(-1)".into(), "42704", "webhook -1 does not exist"),
            // sync_changes, sync_prune
            ("SELECT * FROM sync_changes('garbage', sync_position())".into(), "22023", "garbage"),
            ("SELECT * FROM sync_changes(NULL, '')".into(), "22023", ""),
            (format!("SELECT * FROM sync_changes(NULL, {k100})"), "22023", ""),
            ("SELECT * FROM sync_changes(sync_position(), '1:1:')".into(), "22023", ""),
            ("SELECT * FROM sync_changes(NULL, sync_position(), '')".into(), "22023", "system must be a non-empty name"),
            ("SELECT sync_prune('-1 hour')".into(), "22023", "keep must not be negative"),
            ("SELECT sync_prune('later')".into(), "22007", "later"),
        ]
    }

    #[pg_test]
    fn bad_values_in_every_function_are_refused_whole() {
        setup();
        let mut wrong = Vec::new();
        let mut checked = 0;
        for (sql, code, frag) in cases() {
            checked += 1;
            let before = state();
            let shown = if sql.len() > 300 {
                format!("{}...", &sql[..300])
            } else {
                sql.clone()
            };
            match try_sql(&sql) {
                None => wrong.push(format!("{shown}: succeeded, expected {code}")),
                Some(e) => {
                    if !e.starts_with(code) || !e.contains(frag) {
                        let e = if e.len() > 400 {
                            format!("{}...", &e[..400])
                        } else {
                            e
                        };
                        wrong.push(format!("{shown}: {e}  (expected {code} with {frag:?})"));
                    } else if e.len() > 1000 {
                        wrong.push(format!(
                            "{shown}: a message of {} bytes (an oversized value echoed whole)",
                            e.len()
                        ));
                    }
                }
            }
            let after = state();
            if after != before {
                wrong.push(format!("{shown}: changed the state: {before} -> {after}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {checked} cases:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        assert_eq!(checked, cases().len());
    }
}
