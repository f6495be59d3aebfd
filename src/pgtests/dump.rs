//! pg_dump / pg_restore of a database with syncs set up: the setup survives, and the
//! first run after a restore reconciles (plain #[test]s: pg_dump and pg_restore need
//! committed data and databases of their own).
//!
//! The source databases live in the shared pgrx test cluster; one restore goes into
//! another database of that cluster (same transaction id space, empty change_log), the
//! other into a throwaway cluster of its own (another system, far fewer transactions
//! behind it, so the old position is "ahead" of every snapshot there).

#[cfg(test)]
mod tests {
    use crate::pgtests::concurrent::cluster;
    use crate::pgtests::throwaway::Throwaway;
    use std::process::Command;

    const BIN: &str = "/usr/lib/postgresql/15/bin";
    /// the throwaway cluster of the cross-cluster test
    const OTHER_DIR: &str = "/var/tmp/se_dump_cluster";
    const OTHER_PORT: u16 = 56200;

    fn connect(port: u16, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host(host(port))
            .port(port)
            .user("postgres")
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {db} on port {port}: {e}"))
    }

    /// The pgrx test cluster listens on localhost, the throwaway one on 127.0.0.1 only.
    fn host(port: u16) -> &'static str {
        if port == OTHER_PORT {
            "127.0.0.1"
        } else {
            "localhost"
        }
    }

    fn test_port() -> u16 {
        let (mut c, _) = pgrx_tests::client().unwrap();
        let p: String = c
            .query_one("SELECT current_setting('port')", &[])
            .unwrap()
            .get(0);
        p.parse().unwrap()
    }

    fn value(c: &mut postgres::Client, sql: &str) -> String {
        c.query_one(&format!("SELECT ({sql})::text"), &[])
            .unwrap()
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
    }

    fn run(c: &mut postgres::Client) -> serde_json::Value {
        let v = value(
            c,
            "SELECT sync_execute((SELECT id FROM sync_configs WHERE name = 'crm_app'))",
        );
        serde_json::from_str(&v).unwrap()
    }

    fn recreate_db(port: u16, db: &str) {
        let mut c = connect(port, "postgres");
        // one statement per query: neither may run in a transaction block
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    }

    fn drop_db(port: u16, db: &str) {
        let mut c = connect(port, "postgres");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .unwrap();
    }

    fn tool(name: &str, args: &[&str]) {
        let out = Command::new(format!("{BIN}/{name}"))
            .args(args)
            .env("PGUSER", "postgres")
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out.status.success(),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A database with a config (manual conflicts, so one stays pending), 50 links, a
    /// pending conflict and three edits made after the last run: an update, an insert
    /// and a delete on the CRM side. Dumped with pg_dump -Fc into `file`. `burn_xids`
    /// transactions are spent first (pushing the positions' xids up).
    fn make_dumped_source(port: u16, db: &str, file: &str, burn_xids: u32) {
        recreate_db(port, db);
        let mut c = connect(port, db);
        // alone in its query: a DO block commits only outside a transaction block
        c.batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{burn_xids} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
        ))
        .unwrap();
        c.batch_execute(
            "CREATE EXTENSION sync_engine;
             CREATE TABLE crm_c (id serial PRIMARY KEY, name text, email text);
             CREATE TABLE app_c (id serial PRIMARY KEY, name text, email text);
             SELECT sync_register_table('crm', 'contacts', 'crm_c'),
                    sync_register_table('app', 'contacts', 'app_c');
             SELECT sync_create_config('crm_app', 'crm', 'app', 'contacts', conflict_strategy => 'manual');
             -- runs come from this test only, never from a scheduler
             UPDATE sync_configs SET enabled = false;
             INSERT INTO crm_c (name, email) SELECT 'n' || g, 'e' || g FROM generate_series(1, 50) g;",
        )
        .unwrap();
        assert_eq!(run(&mut c)["created"], 50);
        c.batch_execute(
            "UPDATE crm_c SET name = 'crm side' WHERE id = 7;
             UPDATE app_c SET name = 'app side' WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '7');",
        )
        .unwrap();
        assert_eq!(run(&mut c)["conflicts"], 1);
        // edits after the last run: the dump holds them, the change records do not travel
        c.batch_execute(
            "UPDATE crm_c SET email = 'before the dump' WHERE id = 2;
             INSERT INTO crm_c (name, email) VALUES ('created before the dump', 'e51');
             DELETE FROM crm_c WHERE id = 3;",
        )
        .unwrap();
        drop(c);
        let _ = std::fs::remove_file(file);
        tool(
            "pg_dump",
            &[
                "-h",
                host(port),
                "-p",
                &port.to_string(),
                "-Fc",
                "-f",
                file,
                db,
            ],
        );
    }

    /// Restore `file` into a new database `db` on `port` and check what a user relies
    /// on. Returns the restored config's position as the dump had it.
    fn restore_and_check(file: &str, port: u16, db: &str) -> String {
        recreate_db(port, db);
        tool(
            "pg_restore",
            &[
                "-h",
                host(port),
                "-p",
                &port.to_string(),
                "--no-owner",
                "-d",
                db,
                file,
            ],
        );
        let mut c = connect(port, db);
        c.batch_execute("UPDATE sync_configs SET enabled = false")
            .unwrap();
        // the setup came back
        assert_eq!(value(&mut c, "SELECT count(*) FROM sync_endpoints"), "2");
        assert_eq!(value(&mut c, "SELECT count(*) FROM sync_configs"), "1");
        assert_eq!(value(&mut c, "SELECT count(*) FROM sync_links"), "50");
        assert_eq!(
            value(
                &mut c,
                "SELECT count(*) FROM sync_conflicts WHERE resolution = 'pending'"
            ),
            "1"
        );
        assert_eq!(value(&mut c, "SELECT count(*) FROM sync_runs"), "2");
        // the endpoints point at the restored tables, whose capture triggers are back
        assert_eq!(
            value(
                &mut c,
                "SELECT string_agg(relation::text, ',' ORDER BY relation::text) FROM sync_endpoints"
            ),
            "app_c,crm_c"
        );
        assert_eq!(
            value(
                &mut c,
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'sync_engine_capture'"
            ),
            "2"
        );
        // loading the tables' rows fired no capture trigger (triggers come after the data)
        assert_eq!(value(&mut c, "SELECT count(*) FROM change_log"), "0");
        // the sequences came along: new rows do not collide with restored ones
        assert_eq!(
            value(
                &mut c,
                "SELECT (SELECT last_value FROM sync_runs_id_seq) >= (SELECT max(id) FROM sync_runs)
                    AND (SELECT last_value FROM sync_configs_id_seq) >= (SELECT max(id) FROM sync_configs)
                    AND (SELECT last_value FROM sync_endpoints_id_seq) >= (SELECT max(id) FROM sync_endpoints)
                    AND (SELECT last_value FROM sync_conflicts_id_seq) >= (SELECT max(id) FROM sync_conflicts)"
            ),
            "true"
        );
        let old_position = value(&mut c, "SELECT position FROM sync_configs");
        // the app row of crm row 3, deleted in the CRM before the dump
        let app_of_3 = value(
            &mut c,
            "SELECT target_id FROM sync_links WHERE source_id = '3'",
        );
        assert!(!app_of_3.is_empty());
        // an edit after the restore, on the other side
        c.batch_execute("UPDATE app_c SET email = 'after the restore' WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '10')")
            .unwrap();

        let r = run(&mut c);
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(r["created"], 1, "the row created before the dump: {r}");
        assert_eq!(r["deleted"], 1, "the row deleted before the dump: {r}");
        assert_eq!(
            value(&mut c, "SELECT email FROM app_c WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '2')"),
            "before the dump",
            "an edit made before the dump but not synced is not lost"
        );
        assert_eq!(
            value(&mut c, "SELECT email FROM crm_c WHERE id = 10"),
            "after the restore"
        );
        assert_eq!(
            value(
                &mut c,
                &format!("SELECT count(*) FROM app_c WHERE id = {app_of_3}")
            ),
            "0"
        );
        // nothing duplicated: one row per entity on each side, each linked once
        assert_eq!(value(&mut c, "SELECT count(*) FROM crm_c"), "50");
        assert_eq!(value(&mut c, "SELECT count(*) FROM app_c"), "50");
        assert_eq!(value(&mut c, "SELECT count(*) FROM sync_links"), "50");
        assert_eq!(
            value(
                &mut c,
                "SELECT count(*) FROM app_c WHERE name = 'created before the dump'"
            ),
            "1"
        );
        // the conflict waits for its decision, untouched
        assert_eq!(
            value(
                &mut c,
                "SELECT count(*) FROM sync_conflicts WHERE resolution = 'pending'"
            ),
            "1"
        );
        assert_eq!(
            value(&mut c, "SELECT name FROM crm_c WHERE id = 7")
                + "/"
                + &value(&mut c, "SELECT name FROM app_c WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '7')"),
            "crm side/app side"
        );

        assert_eq!(r["reconciled"], true, "the run says it reconciled: {r}");

        // the position is this database's now: the next runs are incremental
        let r = run(&mut c);
        assert_eq!(r["reconciled"], false, "{r}");
        assert_eq!(r["synced"], 0, "nothing new: {r}");
        c.batch_execute(
            "UPDATE crm_c SET email = 'later' WHERE id = 20;
             INSERT INTO app_c (name, email) VALUES ('new in app', 'x');",
        )
        .unwrap();
        let r = run(&mut c);
        assert_eq!(r["reconciled"], false, "{r}");
        assert_eq!(
            (r["updated"].clone(), r["created"].clone()),
            (1.into(), 1.into()),
            "{r}"
        );
        assert_eq!(
            value(&mut c, "SELECT email FROM app_c WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '20')"),
            "later"
        );
        assert_eq!(value(&mut c, "SELECT count(*) FROM crm_c"), "51");
        assert_eq!(value(&mut c, "SELECT count(*) FROM app_c"), "51");
        assert_eq!(value(&mut c, "SELECT count(*) FROM sync_links"), "51");
        old_position
    }

    #[test]
    fn a_dump_restored_into_another_database_keeps_the_setup_and_reconciles_once() {
        cluster();
        let port = test_port();
        let file = "/var/tmp/se_dump_same.dump";
        make_dumped_source(port, "se_dump_src", file, 0);
        restore_and_check(file, port, "se_dump_dst");
        // the original is untouched by the copy and carries on incrementally
        let mut c = connect(port, "se_dump_src");
        let r = run(&mut c);
        assert_eq!(r["reconciled"], false, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert_eq!(
            value(&mut c, "SELECT email FROM app_c WHERE id = (SELECT target_id::int FROM sync_links WHERE source_id = '2')"),
            "before the dump"
        );
        drop(c);
        drop_db(port, "se_dump_src");
        drop_db(port, "se_dump_dst");
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn a_dump_restored_into_another_cluster_keeps_the_setup_and_reconciles_once() {
        cluster(); // the extension is installed by the framework
        let port = test_port();
        let file = "/var/tmp/se_dump_other.dump";
        make_dumped_source(port, "se_dump_src2", file, 3000);
        drop_db(port, "se_dump_src2");

        // scheduled runs off: only the test's own runs touch the restored configs
        let _other = Throwaway::start(OTHER_DIR, OTHER_PORT, "-c sync_engine.enabled=off");
        let old_position = restore_and_check(file, OTHER_PORT, "se_dump_dst2");
        // another system: its transaction ids lag behind the old position's, which a
        // window could not be built from ("does not follow")
        let mut c = connect(OTHER_PORT, "se_dump_dst2");
        let here = value(&mut c, "SELECT pg_snapshot_xmax(pg_current_snapshot())");
        let there = value(
            &mut c,
            &format!("SELECT pg_snapshot_xmax('{old_position}'::pg_snapshot)"),
        );
        assert!(
            here.parse::<u64>().unwrap() < there.parse::<u64>().unwrap(),
            "the old position ({old_position}) is ahead of this cluster ({here})"
        );
        drop(c);
        let _ = std::fs::remove_file(file);
    }
}
