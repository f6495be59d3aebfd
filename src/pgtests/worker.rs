//! The background worker, preloaded in the test cluster (see `pg_test` in lib.rs):
//! plain #[test]s with autocommit connections that wait for it.

#[cfg(test)]
mod tests {
    use crate::pgtests::fixture::{crm_hub, Db};
    use serde_json::json;
    use std::time::{Duration, Instant};

    /// Poll `sql` (a single-value query) until it returns `want`, up to 30 s.
    fn wait_for(db: &mut Db, sql: &str, want: serde_json::Value) -> serde_json::Value {
        wait_up_to(db, sql, want, 30)
    }

    fn wait_up_to(db: &mut Db, sql: &str, want: serde_json::Value, secs: u64) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let v = db.json(&format!("SELECT ({sql}) AS v"))["v"].clone();
            if v == want || start.elapsed() > Duration::from_secs(secs) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn schedule(db: &mut Db, cfg: i64) {
        db.exec(&format!(
            "UPDATE sync_configs SET enabled = true, sync_interval = '1 second', next_run_at = now() WHERE id = {cfg}"
        ));
    }

    #[test]
    fn the_worker_syncs_on_the_interval_without_any_call() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "w_basic", "latest_wins", "bidirectional", "NULL");
        schedule(&mut db, c);
        db.exec("INSERT INTO w_basic.crm (full_name, phone) VALUES ('Ann Lee', '1')");
        assert_eq!(
            wait_for(&mut db, "SELECT count(*) FROM w_basic.hub", json!(1)),
            json!(1)
        );
        db.exec("UPDATE w_basic.hub SET phone = '2'");
        assert_eq!(
            wait_for(&mut db, "SELECT phone FROM w_basic.crm", json!("2")),
            json!("2")
        );
        let s = db.json(&format!(
            "SELECT last_status, last_started_by, next_run_at > last_run_at AS scheduled, pending_conflicts
               FROM sync_status WHERE config_id = {c}"
        ));
        assert_eq!(
            s,
            json!({"last_status": "success", "last_started_by": "worker", "scheduled": true, "pending_conflicts": 0})
        );
        assert!(
            db.json(&format!("SELECT count(*) AS n FROM sync_runs WHERE config_id = {c} AND started_by = 'worker'"))["n"]
                .as_i64()
                .unwrap()
                >= 2
        );
    }

    #[test]
    fn a_disabled_config_does_not_run() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "w_off", "latest_wins", "bidirectional", "NULL");
        db.exec(&format!("UPDATE sync_configs SET sync_interval = '1 second', next_run_at = now() - interval '1 hour' WHERE id = {c}"));
        db.exec("INSERT INTO w_off.crm (full_name) VALUES ('Ann Lee')");
        // positive control: an enabled config, due after the disabled one, is synced by
        // the worker (due configs are taken in next_run_at order, so by then it has
        // passed over the disabled one)
        let on = crm_hub(&mut db, "w_on", "latest_wins", "bidirectional", "NULL");
        db.exec("INSERT INTO w_on.crm (full_name) VALUES ('Ann Lee')");
        schedule(&mut db, on);
        assert_eq!(
            wait_for(&mut db, "SELECT count(*) FROM w_on.hub", json!(1)),
            json!(1)
        );
        assert_eq!(db.json("SELECT count(*) AS n FROM w_off.hub")["n"], 0);
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_runs WHERE config_id = {c}"
            ))["n"],
            0
        );
    }

    #[test]
    fn a_failing_config_backs_off_and_the_others_keep_running() {
        let mut db = Db::new();
        let bad = crm_hub(&mut db, "w_bad", "latest_wins", "bidirectional", "NULL");
        let good = crm_hub(&mut db, "w_good", "latest_wins", "bidirectional", "NULL");
        db.exec("DROP TABLE w_bad.hub");
        schedule(&mut db, bad);
        schedule(&mut db, good);
        let failed = format!(
            "SELECT count(*) FROM sync_runs WHERE config_id = {bad} AND status = 'failed' AND error LIKE '%no longer exists%'"
        );
        assert_eq!(wait_for(&mut db, &failed, json!(1)), json!(1));
        db.exec("INSERT INTO w_good.crm (full_name) VALUES ('Still Syncing')");
        assert_eq!(
            wait_for(&mut db, "SELECT count(*) FROM w_good.hub", json!(1)),
            json!(1)
        );
        let s = db.json(&format!(
            "SELECT consecutive_failures >= 1 AS failing, next_run_at > now() AS backed_off, last_status
               FROM sync_status WHERE config_id = {bad}"
        ));
        assert_eq!(
            s,
            json!({"failing": true, "backed_off": true, "last_status": "failed"})
        );
        // no run is ever left 'running'
        assert_eq!(db.json(&format!("SELECT count(*) AS n FROM sync_runs WHERE config_id = {bad} AND status = 'running'"))["n"], 0);

        // the back-off: sync_interval * 2^failures, at most an hour, never less than the
        // interval. Each case: the failures so far and the interval, made due now; then
        // the delay the next failure sets.
        for (failures, interval, delay) in [
            (0, "1 second", 2),
            (1, "1 second", 4),
            (10, "1 second", 2048),
            (11, "1 second", 3600),
            (40, "1 second", 3600),
            (0, "2 hours", 7200),
        ] {
            db.exec(&format!(
                "UPDATE sync_configs SET consecutive_failures = {failures}, sync_interval = '{interval}',
                        next_run_at = now() - interval '1 hour' WHERE id = {bad}"
            ));
            let after = wait_for(
                &mut db,
                &format!("SELECT consecutive_failures FROM sync_configs WHERE id = {bad}"),
                json!(failures + 1),
            );
            assert_eq!(after, json!(failures + 1), "{interval} after {failures}");
            assert_eq!(
                db.json(&format!(
                    "SELECT extract(epoch FROM next_run_at - last_run_at)::int AS d FROM sync_configs WHERE id = {bad}"
                ))["d"],
                json!(delay),
                "{interval} after {failures} failures"
            );
        }
    }

    /// A config that is running elsewhere (a long manual sync_execute) is skipped by the
    /// worker, not counted as a failure, and run once it is free again.
    #[test]
    fn a_config_running_elsewhere_is_skipped_not_failed() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "w_busy", "latest_wins", "bidirectional", "NULL");
        // another session holds the config's run lock, as a long sync_execute does
        let mut other = Db::new();
        other.exec(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}, {c}::int);",
            crate::sync::LOCK_CLASS
        ));
        schedule(&mut db, c);
        db.exec("INSERT INTO w_busy.crm (full_name) VALUES ('Waits Its Turn')");
        // a second config, due after the busy one: once the worker has synced it, it
        // has tried the busy one (due configs are taken in next_run_at order)
        let free = crm_hub(&mut db, "w_free", "latest_wins", "bidirectional", "NULL");
        db.exec(&format!(
            "UPDATE sync_configs SET next_run_at = now() - interval '1 hour' WHERE id = {c};
             INSERT INTO w_free.crm (full_name) VALUES ('Goes First');"
        ));
        schedule(&mut db, free);
        assert_eq!(
            wait_for(&mut db, "SELECT count(*) FROM w_free.hub", json!(1)),
            json!(1)
        );
        std::thread::sleep(Duration::from_millis(1500));
        let s = db.json(&format!(
            "SELECT (SELECT count(*) FROM sync_runs WHERE config_id = {c} AND started_by = 'worker') AS worker_runs,
                    consecutive_failures FROM sync_configs WHERE id = {c}"
        ));
        assert_eq!(s, json!({"worker_runs": 0, "consecutive_failures": 0}));
        other.exec("COMMIT");
        assert_eq!(
            wait_for(&mut db, "SELECT count(*) FROM w_busy.hub", json!(1)),
            json!(1)
        );
        assert_eq!(
            db.json(&format!(
                "SELECT count(*) AS n FROM sync_runs WHERE config_id = {c} AND status = 'failed'"
            ))["n"],
            0
        );
    }

    /// pg_cron as the scheduler instead of the worker (Debian's pg_cron 1.4 runs jobs
    /// at minute granularity, so this waits for the next minute).
    #[test]
    fn a_pg_cron_job_syncs_and_its_runs_are_recorded() {
        let mut db = Db::new();
        db.exec("CREATE EXTENSION IF NOT EXISTS pg_cron");
        let c = crm_hub(&mut db, "w_cron", "latest_wins", "bidirectional", "NULL");
        db.exec("INSERT INTO w_cron.crm (full_name, phone) VALUES ('Cron Job', '1')");
        db.exec(&format!(
            "SELECT cron.schedule('sync-w-cron', '* * * * *', 'SELECT sync_execute({c})')"
        ));
        let n = wait_up_to(&mut db, "SELECT count(*) FROM w_cron.hub", json!(1), 150);
        db.exec("SELECT cron.unschedule('sync-w-cron')");
        assert_eq!(n, json!(1), "the cron job synced the new contact");
        let run = db.json(&format!(
            "SELECT status, started_by FROM sync_runs WHERE config_id = {c} ORDER BY id LIMIT 1"
        ));
        assert_eq!(run, json!({"status": "success", "started_by": "cron"}));
    }
}

/// SIGKILL of the worker makes the postmaster reset every backend, so this test runs
/// on a throwaway cluster of its own (not the shared pgrx test cluster).
#[cfg(test)]
mod crash {
    use crate::pgtests::throwaway::Throwaway;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const DIR: &str = "/var/tmp/sync_engine_crash_test";
    const PORT: u16 = 55499;

    #[test]
    fn the_worker_reloads_on_sighup_and_a_killed_worker_restarts_with_no_run_half_done() {
        super::super::concurrent::cluster(); // the extension is installed by the framework
        let cluster = Throwaway::start(
            DIR,
            PORT,
            "-c sync_engine.database=postgres -c sync_engine.naptime=1",
        );
        let connect = || cluster.try_connect("postgres");
        let wait = |sql: &str, want: &str| cluster.wait("postgres", sql, want, 60);
        let value = crate::pgtests::throwaway::value;
        let mut c = connect().expect("connect to the crash-test cluster");
        c.batch_execute(
            "CREATE EXTENSION sync_engine;
             CREATE TABLE a (id serial PRIMARY KEY, v text);
             CREATE TABLE b (id serial PRIMARY KEY, v text);
             SELECT sync_register_table('a', 'x', 'a'), sync_register_table('b', 'x', 'b');
             SELECT sync_create_config('ab', 'a', 'b', 'x', sync_interval => '1 second');
             INSERT INTO a (v) VALUES ('before the crash');",
        )
        .unwrap();
        assert_eq!(wait("SELECT count(*) FROM b", "1"), "1", "the worker syncs");
        // SIGHUP: the worker rereads its settings; disabled, it leaves the config alone
        c.batch_execute("ALTER SYSTEM SET sync_engine.enabled = off")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
        std::thread::sleep(Duration::from_secs(2));
        c.batch_execute("INSERT INTO a (v) VALUES ('while paused')")
            .unwrap();
        // positive control: the scheduler went round its loop twice since the insert
        let since = value(&mut c, "clock_timestamp()");
        assert_eq!(
            wait(
                &format!("SELECT last_tick > '{since}'::timestamptz + interval '1.2 s' FROM sync_workers"),
                "true"
            ),
            "true",
            "the scheduler keeps ticking while paused"
        );
        assert_eq!(
            value(&mut c, "SELECT count(*) FROM b"),
            "1",
            "paused by sync_engine.enabled = off"
        );
        c.batch_execute("ALTER SYSTEM SET sync_engine.enabled = on")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
        assert_eq!(
            wait("SELECT count(*) FROM b", "2"),
            "2",
            "resumed after the reload"
        );
        // a run in progress when everything dies: the worker's run of 'ef' waits inside
        // a trigger on f for an advisory lock this session holds
        c.batch_execute(
            "CREATE TABLE e (id serial PRIMARY KEY, v text);
             CREATE TABLE f (id serial PRIMARY KEY, v text);
             CREATE FUNCTION f_wait() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END$$;
             CREATE TRIGGER f_wait BEFORE INSERT ON f FOR EACH ROW EXECUTE FUNCTION f_wait();
             SELECT sync_register_table('e', 'x', 'e'), sync_register_table('f', 'x', 'f');
             INSERT INTO e (v) SELECT 'in flight ' || g FROM generate_series(1, 3) g;
             SELECT pg_advisory_lock(4242);
             SELECT sync_create_config('ef', 'e', 'f', 'x', sync_interval => '1 second');",
        )
        .unwrap();
        let pid = value(
            &mut c,
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler'",
        );
        assert!(!pid.is_empty(), "the worker is running");
        assert_eq!(
            wait(
                &format!(
                    "SELECT a.wait_event = 'advisory' AND EXISTS (SELECT FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id
                                                                   WHERE c.name = 'ef' AND r.status = 'running')
                       FROM pg_stat_activity a WHERE a.pid = {pid}"
                ),
                "true"
            ),
            "true",
            "the worker's run of ef waits in the trigger"
        );
        // c (holding the lock) is closed by the reset, not before it

        let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(killed.success());
        // the postmaster resets and restarts the worker, which goes on syncing
        let new_pid = wait(
            &format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler' AND pid <> {pid}"),
            "1",
        );
        assert_eq!(new_pid, "1", "a new worker process");
        assert_eq!(
            wait(
                "SELECT count(*) FROM sync_runs WHERE status = 'running'",
                "0"
            ),
            "0",
            "the dead run is closed"
        );
        assert_eq!(
            wait("SELECT count(*) FROM sync_runs WHERE status = 'failed' AND error LIKE '%ended without completing%'", "1"),
            "1"
        );
        assert_eq!(
            wait("SELECT count(*) FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id
                   WHERE c.name = 'ef' AND r.status = 'failed' AND r.error LIKE '%ended without completing%'", "1"),
            "1",
            "the killed run is the one closed"
        );
        // the next run (the lock died with its session) does everything once
        assert_eq!(
            wait("SELECT count(*) || '/' || count(DISTINCT v) FROM f", "3/3"),
            "3/3",
            "the interrupted run's rows arrive once"
        );
        let mut c = connect().unwrap();
        c.batch_execute("INSERT INTO a (v) VALUES ('after the crash')")
            .unwrap();
        assert_eq!(
            wait("SELECT count(*) FROM b", "3"),
            "3",
            "and keeps syncing"
        );
        assert_eq!(value(&mut c, "SELECT count(*) FROM f"), "3");

        // a fast shutdown while the worker is busy with due configs: it stops (it used
        // to lose the SIGTERM between two runs and keep going, so the shutdown never
        // completed), and the run in flight (cd's, waiting in d's trigger for a lock this
        // session holds) is rolled back whole. The server comes back paused, to look at
        // what the shutdown left.
        c.batch_execute(
            "CREATE TABLE c (id serial PRIMARY KEY, v text);
             CREATE TABLE d (id serial PRIMARY KEY, v text);
             CREATE TRIGGER d_wait BEFORE INSERT ON d FOR EACH ROW EXECUTE FUNCTION f_wait();
             SELECT sync_register_table('c', 'x', 'c'), sync_register_table('d', 'x', 'd');
             INSERT INTO a (v) SELECT 'bulk ' || g FROM generate_series(1, 30000) g;
             INSERT INTO c (v) SELECT 'bulk ' || g FROM generate_series(1, 3000) g;
             SELECT pg_advisory_lock(4242);
             SELECT sync_create_config('cd', 'c', 'd', 'x', sync_interval => '1 second');",
        )
        .unwrap();
        // read at the restart only (no reload before)
        c.batch_execute("ALTER SYSTEM SET sync_engine.enabled = off")
            .unwrap();
        let in_flight = "SELECT string_agg(r.id::text, ',') FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id
                          WHERE c.name = 'cd' AND r.status = 'running'";
        let pid = value(
            &mut c,
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler'",
        );
        assert_eq!(
            wait(
                &format!("SELECT wait_event = 'advisory' FROM pg_stat_activity WHERE pid = {pid}"),
                "true"
            ),
            "true",
            "the run of cd waits in d's trigger"
        );
        let run = value(&mut c, in_flight);
        assert!(!run.is_empty(), "cd's run is in progress");
        let started = Instant::now();
        let (stopped, _) = cluster.stop("fast");
        assert!(stopped, "the server stops");
        assert!(started.elapsed() < Duration::from_secs(60));
        drop(c);
        cluster.start_again();
        let mut c = connect().unwrap();
        assert_eq!(
            value(&mut c, "SELECT count(*) FROM d"),
            "0",
            "nothing of the run was kept"
        );
        assert_eq!(value(&mut c, in_flight), run, "its row is still 'running'");
        c.batch_execute("ALTER SYSTEM SET sync_engine.enabled = on")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
        assert_eq!(
            wait(
                &format!("SELECT status || ': ' || error FROM sync_runs WHERE id = {run}"),
                "failed: the run ended without completing (its session or the server stopped); nothing of it was applied, the next run redoes it"
            ),
            "failed: the run ended without completing (its session or the server stopped); nothing of it was applied, the next run redoes it"
        );
        assert_eq!(
            wait(
                "SELECT count(*) || '/' || count(DISTINCT v) FROM d",
                "3000/3000"
            ),
            "3000/3000",
            "the next run does it all, once"
        );
    }
}

/// Pruning deletes change records of every endpoint in the database, so it runs on a
/// cluster of its own (in the shared test cluster it would delete other tests'
/// records). `prune_batch` is 100 (its minimum), so every deletion below takes several
/// batches.
#[cfg(test)]
mod prune {
    use crate::pgtests::throwaway::{value, Throwaway};

    const DIR: &str = "/var/tmp/se_prune_test";
    const PORT: u16 = 56110;

    #[test]
    fn pruning_removes_only_what_every_config_has_consumed_and_old_runs() {
        super::super::concurrent::cluster(); // the extension is installed by the framework
        let cluster = Throwaway::start(
            DIR,
            PORT,
            "-c sync_engine.database=postgres -c sync_engine.naptime=1 -c sync_engine.prune_batch=100",
        );
        let mut c = cluster.connect("postgres");
        let mut q = |sql: &str| value(&mut c, sql);
        cluster.exec(
            "postgres",
            "CREATE EXTENSION sync_engine;
             CREATE TABLE crm (id serial PRIMARY KEY, v text);
             CREATE TABLE hub1 (id serial PRIMARY KEY, v text);
             CREATE TABLE hub2 (id serial PRIMARY KEY, v text);
             SELECT sync_register_table('crm', 'x', 'crm'), sync_register_table('hub1', 'x', 'hub1'),
                    sync_register_table('hub2', 'x', 'hub2');
             SELECT sync_create_config('c1', 'crm', 'hub1', 'x'), sync_create_config('c2', 'crm', 'hub2', 'x');
             UPDATE sync_configs SET enabled = false;
             INSERT INTO crm (v) SELECT 'v' || g FROM generate_series(1, 250) g;",
        );
        let left = "SELECT string_agg(system || ':' || n, ' ' ORDER BY system)
                      FROM (SELECT system, count(*) AS n FROM change_log GROUP BY system) s";
        let sync = |name: &str| {
            format!("SELECT sync_execute(id) IS NOT NULL FROM sync_configs WHERE name = '{name}'")
        };
        assert_eq!(q("current_setting('sync_engine.prune_batch')"), "100");
        assert_eq!(q(&sync("c1")), "true");
        // c2 has not read crm's records yet, and c1's own writes to hub1 are consumed only
        // by its next run (it passes its own transaction once that has committed)
        assert_eq!(q("sync_prune('0 seconds')"), "0");
        assert_eq!(q(left), "crm:250 hub1:250");
        assert_eq!(q(&sync("c2")), "true");
        assert_eq!(
            q("sync_prune('0 seconds')"),
            "250",
            "crm's records, in three batches"
        );
        assert_eq!(q(left), "hub1:250 hub2:250");
        // the retention keeps consumed records for audit
        assert_eq!(q(&sync("c1")), "true");
        assert_eq!(q(&sync("c2")), "true");
        assert_eq!(q("sync_prune('1 hour')"), "0");
        assert_eq!(q(left), "hub1:250 hub2:250");
        assert_eq!(q("sync_prune()"), "0", "default: sync_engine.log_retention");
        assert_eq!(q("sync_prune('0 seconds')"), "500");

        // sync_runs older than sync_engine.runs_retention (30 days) go, in batches, by
        // the scheduler; younger ones stay
        cluster.exec(
            "postgres",
            "INSERT INTO sync_runs (config_id, started_at, completed_at, status, started_by)
             SELECT c.id, now() - make_interval(days => d), now() - make_interval(days => d), 'success', 'worker'
               FROM sync_configs c, (SELECT 31 + g % 400 FROM generate_series(1, 250) g UNION ALL VALUES (29), (29)) v(d)
              WHERE c.name = 'c1'",
        );
        assert_eq!(
            cluster.wait(
                "postgres",
                "SELECT count(*) FROM sync_runs WHERE started_at < now() - interval '30 days'",
                "0",
                40
            ),
            "0",
            "old runs are pruned, in three batches"
        );
        assert_eq!(
            cluster.value(
                "postgres",
                "SELECT count(*) FROM sync_runs WHERE started_at < now() - interval '28 days'"
            ),
            "2",
            "runs within the retention stay"
        );
    }
}
