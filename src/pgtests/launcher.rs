//! The launcher and its per-database schedulers, on throwaway clusters of their own:
//! these tests terminate workers, drop databases, fill every worker slot and stop the
//! server, none of which the shared pgrx test cluster may see.

use crate::pgtests::throwaway::Throwaway;
use std::time::Duration;

/// Create database `db` with the extension and a 1-second config `ab` from table a to
/// table b.
fn database_with_config(t: &Throwaway, db: &str) {
    t.exec("postgres", &format!("CREATE DATABASE {db}"));
    extension_with_config(t, db);
}

fn extension_with_config(t: &Throwaway, db: &str) {
    t.exec(
        db,
        "CREATE EXTENSION sync_engine;
         CREATE TABLE a (id serial PRIMARY KEY, v text);
         CREATE TABLE b (id serial PRIMARY KEY, v text);
         SELECT sync_register_table('a', 'x', 'a'), sync_register_table('b', 'x', 'b');
         SELECT sync_create_config('ab', 'a', 'b', 'x', sync_interval => '1 second');",
    );
}

/// Insert `v` into `db`'s table a and wait (up to `secs`) for the scheduler to sync it
/// into b.
fn syncs(t: &Throwaway, db: &str, v: &str, secs: u64) -> bool {
    t.exec(db, &format!("INSERT INTO a (v) VALUES ('{v}')"));
    t.wait(
        db,
        &format!("SELECT count(*) FROM b WHERE v = '{v}'"),
        "1",
        secs,
    ) == "1"
}

fn scheduler_pid(t: &Throwaway, db: &str) -> String {
    t.value(
        "postgres",
        &format!(
            "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
              WHERE backend_type = 'sync_engine scheduler' AND datname = '{db}'"
        ),
    )
}

/// The scheduler's row in `sync_workers` (read in database `from`), as "col=value" text.
fn worker_row(t: &Throwaway, from: &str, db: &str, cols: &str) -> String {
    t.value(
        from,
        &format!("SELECT concat_ws(' ', {cols}) FROM sync_workers WHERE datname = '{db}'"),
    )
}

#[test]
fn schedulers_follow_databases_restart_when_terminated_and_wait_for_a_free_slot() {
    crate::pgtests::concurrent::cluster(); // the framework installs the extension
                                           // three worker slots: the launcher and two schedulers. A launcher naptime of an hour
                                           // until the slot part: everything before it must be driven by events (a scheduler's
                                           // exit, CREATE EXTENSION), not by the periodic look.
    let t = Throwaway::start(
        "/var/tmp/se_launcher_test",
        56100,
        "-c sync_engine.naptime=1 -c max_worker_processes=3 \
         -c max_logical_replication_workers=0 -c max_parallel_workers_per_gather=0",
    );
    // (in postgresql.auto.conf: a server option would override the later ALTER SYSTEM)
    t.exec(
        "postgres",
        "ALTER SYSTEM SET sync_engine.launcher_naptime = 3600",
    );
    t.exec("postgres", "SELECT pg_reload_conf()");

    // two databases with the extension, each with a 1-second config: both sync
    database_with_config(&t, "app1");
    database_with_config(&t, "app2");
    assert!(syncs(&t, "app1", "one", 15), "app1 syncs");
    assert!(syncs(&t, "app2", "two", 15), "app2 syncs");
    let pid1 = scheduler_pid(&t, "app1");
    assert!(
        !pid1.is_empty() && !pid1.contains(','),
        "one scheduler in app1: {pid1:?}"
    );
    assert_eq!(
        t.value(
            "app1",
            "SELECT string_agg(datname || ':' || state, ' ' ORDER BY datname) FROM sync_workers"
        ),
        "app1:running app2:running postgres:no extension",
        "sync_workers shows every database the launcher tracks"
    );
    assert_eq!(
        t.value(
            "app1",
            "SELECT scheduler_pid FROM sync_status WHERE name = 'ab'"
        ),
        pid1
    );

    // pg_terminate_backend of the scheduler: a new one runs configs within seconds
    t.exec("postgres", &format!("SELECT pg_terminate_backend({pid1})"));
    assert!(
        syncs(&t, "app1", "after terminate", 10),
        "a new scheduler syncs"
    );
    let pid1b = scheduler_pid(&t, "app1");
    assert!(
        !pid1b.is_empty() && pid1b != pid1,
        "a new process: {pid1b:?}"
    );
    assert_eq!(
        worker_row(&t, "app1", "app1", "state, starts, last_exit"),
        "running 2 terminated (SIGTERM); a run in progress was rolled back"
    );

    // DROP DATABASE ... WITH (FORCE), CREATE DATABASE, CREATE EXTENSION (a restore):
    // configs of the new database run, with no server restart
    t.exec("postgres", "DROP DATABASE app2 WITH (FORCE)");
    database_with_config(&t, "app2");
    assert!(syncs(&t, "app2", "restored", 15), "the new app2 syncs");

    // DROP EXTENSION in one stops its scheduler; the other keeps going
    t.exec("app2", "DROP EXTENSION sync_engine CASCADE");
    assert_eq!(
        t.wait(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler' AND datname = 'app2'",
            "0",
            10
        ),
        "0",
        "app2's scheduler exits"
    );
    assert_eq!(
        worker_row(&t, "app1", "app2", "state, pid"),
        "no extension",
        "and says why"
    );
    assert!(syncs(&t, "app1", "still going", 10), "app1 keeps syncing");

    // one more database than worker slots: a WARNING once, a rising count, no loop
    database_with_config(&t, "app3"); // takes app2's slot
    assert!(syncs(&t, "app3", "three", 15), "app3 syncs");
    database_with_config(&t, "app4");
    assert_eq!(
        t.wait(
            "app1",
            "SELECT state FROM sync_workers WHERE datname = 'app4'",
            "waiting for a worker slot",
            10
        ),
        "waiting for a worker slot"
    );
    t.exec(
        "postgres",
        "ALTER SYSTEM SET sync_engine.launcher_naptime = 1",
    );
    t.exec("postgres", "SELECT pg_reload_conf()");
    assert_eq!(
        t.wait(
            "app1",
            "SELECT start_failures >= 3 FROM sync_workers WHERE datname = 'app4'",
            "true",
            15
        ),
        "true",
        "the launcher keeps trying, and counts"
    );
    let warning = "WARNING:  sync_engine launcher: no background worker slot is free for the scheduler of database \"app4\"";
    assert_eq!(
        t.log().matches(warning).count(),
        1,
        "one WARNING, not one per try"
    );
    assert_eq!(
        t.value(
            "app1",
            "SELECT string_agg(datname || ':' || starts, ' ' ORDER BY datname) FROM sync_workers WHERE state = 'no extension'"
        ),
        "app2:1 postgres:1",
        "databases without the extension are not probed again and again"
    );
    // a slot frees up: app4 gets its scheduler and syncs what waited
    t.exec("app3", "DROP EXTENSION sync_engine CASCADE");
    assert_eq!(
        t.value("app4", "SELECT count(*) FROM b"),
        "0",
        "nothing synced while waiting"
    );
    assert!(
        syncs(&t, "app4", "four", 20),
        "app4 syncs once a slot is free"
    );
    assert!(t
        .log()
        .contains("started the scheduler of database \"app4\" after"));
}

#[test]
fn a_fast_stop_during_a_run_rolls_it_back_and_a_terminated_launcher_comes_back() {
    crate::pgtests::concurrent::cluster();
    let t = Throwaway::start(
        "/var/tmp/se_launcher_stop_test",
        56101,
        "-c sync_engine.naptime=1 -c sync_engine.launcher_naptime=2",
    );
    // a run that takes 10 s: each row the engine writes into b waits 0.2 s
    extension_with_config(&t, "postgres");
    t.exec(
        "postgres",
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON b FOR EACH ROW EXECUTE FUNCTION slow();
         INSERT INTO a (v) SELECT 'row ' || g FROM generate_series(1, 50) g;",
    );
    assert_eq!(
        t.wait(
            "postgres",
            "SELECT count(*) FROM sync_runs WHERE status = 'running'",
            "1",
            15
        ),
        "1",
        "a run is in progress"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (stopped, took) = t.stop("fast");
    assert!(stopped, "the server stops");
    assert!(
        took < Duration::from_secs(4),
        "fast, without waiting for the run to end: {took:?}"
    );

    t.start_again();
    assert_eq!(
        t.value("postgres", "SELECT count(*) FROM b"),
        "0",
        "nothing of the interrupted run was kept"
    );
    assert_eq!(
        t.wait(
            "postgres",
            "SELECT count(*) FROM sync_runs WHERE status = 'failed' AND error LIKE '%ended without completing%'",
            "1",
            10
        ),
        "1",
        "its run is recorded as failed"
    );
    assert_eq!(
        t.wait("postgres", "SELECT count(*) FROM b", "50", 40),
        "50",
        "the next run redoes it whole"
    );
    assert_eq!(
        t.value(
            "postgres",
            "SELECT (SELECT count(DISTINCT v) FROM b) || ' ' || (SELECT count(*) FROM sync_links)"
        ),
        "50 50"
    );
    t.exec("postgres", "DROP TRIGGER slow ON b");

    // the launcher, terminated, comes back (its restart time) and takes over the
    // running scheduler: once that is terminated too, a new one syncs
    let launcher = t.value(
        "postgres",
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync_engine launcher'",
    );
    assert!(!launcher.is_empty(), "a launcher runs");
    let scheduler = scheduler_pid(&t, "postgres");
    t.exec(
        "postgres",
        &format!("SELECT pg_terminate_backend({launcher})"),
    );
    let back = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync_engine launcher' AND pid <> {launcher}"
    );
    assert_eq!(t.wait("postgres", &back, "1", 15), "1", "a new launcher");
    assert_eq!(
        scheduler_pid(&t, "postgres"),
        scheduler,
        "the scheduler ran on"
    );
    t.exec(
        "postgres",
        &format!("SELECT pg_terminate_backend({scheduler})"),
    );
    assert!(
        syncs(&t, "postgres", "after both", 15),
        "and is restarted by the new launcher"
    );
    assert_ne!(scheduler_pid(&t, "postgres"), scheduler);
}
