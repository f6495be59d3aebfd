//! Crash safety (issue 17): a session's `sync_execute` killed mid-run (pg_terminate_backend,
//! SIGKILL), and the server restarted in immediate mode during runs (a session's and the
//! worker's), during a `sync_push` and during webhook delivery. Afterwards nothing is
//! half-applied, no run is left `running`, the next run does everything once, and every
//! event is delivered at least once, always under the same `webhook-id`.
//!
//! Each test has a throwaway cluster of its own (SIGKILL resets every session of a
//! cluster; a restart stops all of them). A run or push is held in flight by a trigger
//! that waits for an advisory lock another session holds (never by sleeping); the tests
//! see it waiting in `pg_stat_activity`. The worker's SIGKILL and a fast shutdown during
//! its run are in `worker.rs` (`crash`).

#[cfg(test)]
mod tests {
    use crate::pgtests::receiver::{Receiver, Reply};
    use crate::pgtests::throwaway::{value, Throwaway};
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    /// The advisory lock the hold triggers wait for.
    const HOLD: i64 = 7001;

    /// Tables a -> b with config `ab` (not scheduled), and `hold()`, a trigger function
    /// that waits for the advisory lock HOLD (shared, so it passes once nobody holds it).
    fn setup(t: &Throwaway) {
        t.exec(
            "postgres",
            &format!(
                "CREATE EXTENSION sync_engine;
                 CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS
                   $$BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD}); RETURN NEW; END$$;
                 CREATE TABLE a (id serial PRIMARY KEY, v text);
                 CREATE TABLE b (id serial PRIMARY KEY, v text);
                 CREATE TRIGGER hold BEFORE INSERT ON b FOR EACH ROW EXECUTE FUNCTION hold();
                 SELECT sync_register_table('a', 'x', 'a'), sync_register_table('b', 'x', 'b');
                 SELECT sync_create_config('ab', 'a', 'b', 'x');
                 UPDATE sync_configs SET enabled = false;"
            ),
        );
    }

    /// A connection holding the lock HOLD (session level) and its pid.
    fn holder(t: &Throwaway) -> postgres::Client {
        let mut c = t.connect("postgres");
        c.batch_execute(&format!("SELECT pg_advisory_lock({HOLD})"))
            .unwrap();
        c
    }

    /// Start `sql` on a new connection in a thread; returns the backend's pid and the
    /// thread (its result: the error text, or the value).
    fn in_flight(
        t: &Throwaway,
        sql: &str,
    ) -> (
        i32,
        std::thread::JoinHandle<Result<String, postgres::Error>>,
    ) {
        let mut c = t.connect("postgres");
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let sql = sql.to_string();
        let h = std::thread::spawn(move || {
            c.query_one(&format!("SELECT ({sql})::text"), &[])
                .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        });
        (pid, h)
    }

    /// Wait until backend `pid` waits for an advisory lock (the hold trigger).
    fn held(t: &Throwaway, pid: i32) {
        assert_eq!(
            t.wait(
                "postgres",
                &format!("SELECT wait_event = 'advisory' FROM pg_stat_activity WHERE pid = {pid}"),
                "true",
                30
            ),
            "true",
            "backend {pid} waits in the hold trigger"
        );
    }

    /// A run's counts: created updated deleted conflicts errors.
    fn sync(c: &mut postgres::Client, config: &str) -> String {
        value(
            c,
            &format!(
                "SELECT concat_ws(' ', r->'created', r->'updated', r->'deleted', r->'conflicts', r->'errors')
                   FROM sync_execute((SELECT id FROM sync_configs WHERE name = '{config}')) r"
            ),
        )
    }

    /// What a run left behind: b's rows (count/distinct), links, runs by status, position.
    fn state(c: &mut postgres::Client) -> String {
        value(
            c,
            "SELECT (SELECT count(*) || '/' || count(DISTINCT v) FROM b) || ' links ' || (SELECT count(*) FROM sync_links)
                    || ' runs ' || coalesce((SELECT string_agg(status || ':' || n, ',' ORDER BY status)
                                               FROM (SELECT status, count(*) n FROM sync_runs GROUP BY status) s), '-')",
        )
    }

    fn position(c: &mut postgres::Client) -> String {
        value(
            c,
            "SELECT coalesce(position, 'never') FROM sync_configs WHERE name = 'ab'",
        )
    }

    #[test]
    fn crash_a_killed_or_terminated_sync_execute_and_an_immediate_restart_leave_nothing_half_done()
    {
        crate::pgtests::concurrent::cluster(); // the framework installs the extension
        let t = Throwaway::start(
            "/var/tmp/fuzz_crash_runs",
            56201,
            "-c sync_engine.database=postgres -c sync_engine.naptime=1",
        );
        setup(&t);
        t.exec(
            "postgres",
            "INSERT INTO a (v) SELECT 'first ' || g FROM generate_series(1, 5) g",
        );

        // 1. SIGKILL of the backend running sync_execute: the postmaster resets every session
        let lock = holder(&t);
        let (pid, run) = in_flight(&t, "SELECT sync_execute(1)");
        held(&t, pid);
        assert!(std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        assert!(
            run.join().unwrap().is_err(),
            "the killed run returns no result"
        );
        drop(lock); // closed by the reset
        assert_eq!(
            t.wait("postgres", "SELECT 1", "1", 60),
            "1",
            "the server is back"
        );
        let mut c = t.connect("postgres");
        assert_eq!(
            state(&mut c),
            "0/0 links 0 runs -",
            "nothing of the killed run was kept"
        );
        assert_eq!(position(&mut c), "never");
        assert_eq!(
            sync(&mut c, "ab"),
            "5 0 0 0 0",
            "the next run does all of it"
        );
        assert_eq!(sync(&mut c, "ab"), "0 0 0 0 0", "once");
        assert_eq!(state(&mut c), "5/5 links 5 runs success:2");

        // 2. pg_terminate_backend of the backend running sync_execute
        c.batch_execute(
            "INSERT INTO a (v) SELECT 'second ' || g FROM generate_series(1, 3) g;
             UPDATE a SET v = v || ' changed' WHERE id = 1;",
        )
        .unwrap();
        let before = position(&mut c);
        let mut lock = holder(&t);
        let (pid, run) = in_flight(&t, "SELECT sync_execute(1)");
        held(&t, pid);
        assert_eq!(
            value(&mut lock, &format!("SELECT pg_terminate_backend({pid})")),
            "true"
        );
        let err = run.join().unwrap().expect_err("the terminated run fails");
        assert!(
            err.as_db_error().is_none_or(|d| d.code().code() == "57P01"),
            "terminated: {err}"
        );
        assert_eq!(
            state(&mut c),
            "5/5 links 5 runs success:2",
            "nothing of the terminated run was kept"
        );
        assert_eq!(
            value(
                &mut c,
                "SELECT string_agg(v, ',') FROM b WHERE v LIKE 'first 1%'"
            ),
            "first 1",
            "the update did not arrive"
        );
        assert_eq!(position(&mut c), before, "the position did not move");
        lock.batch_execute(&format!("SELECT pg_advisory_unlock({HOLD})"))
            .unwrap();
        assert_eq!(
            sync(&mut c, "ab"),
            "3 1 0 0 0",
            "the next run does all of it"
        );
        assert_eq!(sync(&mut c, "ab"), "0 0 0 0 0", "once");
        assert_eq!(state(&mut c), "8/8 links 8 runs success:4");

        // 3. restart in immediate mode while a session's run (ab) and a worker's run (cd,
        // whose 'running' row the worker committed first) are in flight
        c.batch_execute(
            "CREATE TABLE c (id serial PRIMARY KEY, v text);
             CREATE TABLE d (id serial PRIMARY KEY, v text);
             CREATE TRIGGER hold BEFORE INSERT ON d FOR EACH ROW EXECUTE FUNCTION hold();
             SELECT sync_register_table('c', 'x', 'c'), sync_register_table('d', 'x', 'd');
             INSERT INTO c (v) SELECT 'worker ' || g FROM generate_series(1, 4) g;
             INSERT INTO a (v) SELECT 'third ' || g FROM generate_series(1, 2) g;",
        )
        .unwrap();
        let lock = holder(&t);
        c.batch_execute(
            "SELECT sync_create_config('cd', 'c', 'd', 'x', sync_interval => '1 second')",
        )
        .unwrap();
        let worker = value(
            &mut c,
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sync_engine scheduler'",
        );
        held(&t, worker.parse().unwrap());
        let worker_run = value(
            &mut c,
            "SELECT r.id FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id WHERE c.name = 'cd' AND r.status = 'running'",
        );
        assert!(
            !worker_run.is_empty(),
            "the worker's run of cd is in flight"
        );
        let (pid, run) = in_flight(&t, "SELECT sync_execute(1)");
        held(&t, pid);
        // come back paused, to see what the crash left
        c.batch_execute("ALTER SYSTEM SET sync_engine.enabled = off")
            .unwrap();
        // the lock's session ends with the server, not before (the run would go on)
        let (stopped, _) = t.stop("immediate");
        assert!(stopped, "the server stops");
        drop((c, lock));
        assert!(run.join().unwrap().is_err());
        t.start_again();
        let mut c = t.connect("postgres");
        assert_eq!(
            state(&mut c),
            format!("8/8 links 8 runs running:1,success:4"),
            "nothing of either run was kept; the worker's row still says running"
        );
        assert_eq!(value(&mut c, "SELECT count(*) FROM d"), "0");
        c.batch_execute("ALTER SYSTEM SET sync_engine.enabled = on")
            .unwrap();
        c.batch_execute("SELECT pg_reload_conf()").unwrap();
        assert_eq!(
            t.wait(
                "postgres",
                &format!("SELECT status || ': ' || error FROM sync_runs WHERE id = {worker_run}"),
                "failed: the run ended without completing (its session or the server stopped); nothing of it was applied, the next run redoes it",
                30
            ),
            "failed: the run ended without completing (its session or the server stopped); nothing of it was applied, the next run redoes it",
            "the dead run is closed"
        );
        assert_eq!(
            t.wait(
                "postgres",
                "SELECT count(*) || '/' || count(DISTINCT v) FROM d",
                "4/4",
                30
            ),
            "4/4",
            "the worker's next run does all of it, once"
        );
        assert_eq!(sync(&mut c, "ab"), "2 0 0 0 0", "and the session's");
        assert_eq!(sync(&mut c, "ab"), "0 0 0 0 0");
        assert_eq!(
            value(
                &mut c,
                "SELECT count(*) FROM sync_runs WHERE status = 'running'"
            ),
            "0",
            "no run left running"
        );
        assert_eq!(
            value(
                &mut c,
                "SELECT (SELECT count(*) FROM b) || ' ' || (SELECT count(*) FROM d) || ' '
                        || (SELECT count(*) FROM sync_links)"
            ),
            "10 4 14"
        );
    }

    #[test]
    fn crash_an_immediate_restart_during_a_push_or_a_webhook_delivery_loses_and_doubles_nothing() {
        crate::pgtests::concurrent::cluster();
        let t = Throwaway::start(
            "/var/tmp/fuzz_crash_push",
            56202,
            "-c sync_engine.naptime=1 -c sync_engine.webhook_timeout=60000 \
             -c sync_engine.webhook_retry_schedule=100ms,200ms,400ms",
        );
        setup(&t);
        t.exec(
            "postgres",
            "CREATE TABLE p (id int PRIMARY KEY, phone text);
             INSERT INTO p VALUES (1, 'p1'), (2, 'p2'), (3, 'p3');
             SELECT sync_register_table('dev', 'x', 'p');
             CREATE TRIGGER hold BEFORE UPDATE ON p FOR EACH ROW EXECUTE FUNCTION hold();",
        );

        // 1. a push in flight (its first write waits in p's trigger)
        let batch = r#"[{"id": "k1", "entity_id": "1", "operation": "update", "changed_at": 1772356860000, "fields": {"phone": {"old": "p1", "new": "q1"}}},
                        {"id": "k2", "entity_id": "2", "operation": "update", "changed_at": 1772356860000, "fields": {"phone": {"old": "p2", "new": "q2"}}},
                        {"id": "k3", "entity_id": "3", "operation": "delete", "changed_at": 1772356860000}]"#;
        let push = format!(
            "SELECT concat_ws(' ', r->'applied', r->'duplicates', r->'conflicts', r->'rejected')
               FROM sync_push('dev', 'x', '{batch}', 'phone-1') r"
        );
        let lock = holder(&t);
        let (pid, pushing) = in_flight(&t, &push);
        held(&t, pid);
        let (stopped, _) = t.stop("immediate");
        assert!(stopped);
        drop(lock); // ended with the server, not before (the push would go on)
        assert!(pushing.join().unwrap().is_err(), "the push got no answer");
        t.start_again();
        let mut c = t.connect("postgres");
        let pushed =
            "SELECT (SELECT string_agg(id || '=' || phone, ',' ORDER BY id) FROM p) || ' ids '
                             || (SELECT count(*) FROM sync_push_ids) || ' records '
                             || (SELECT count(*) FROM change_log WHERE origin = 'client:phone-1')";
        assert_eq!(
            value(&mut c, pushed),
            "1=p1,2=p2,3=p3 ids 0 records 0",
            "nothing of the push was kept, and no id remembered"
        );
        assert_eq!(value(&mut c, &push), "3 0 0 0", "sent again, it applies");
        assert_eq!(
            value(&mut c, &push),
            "0 3 0 0",
            "and a third time, duplicates"
        );
        assert_eq!(value(&mut c, pushed), "1=q1,2=q2 ids 3 records 3");

        // 2. webhook delivery in flight: the receiver holds the first request without
        // answering (the timeout is a minute), the others are answered
        let rx = Receiver::start();
        rx.script(&[Reply::Hang(Duration::from_secs(30))]);
        value(
            &mut c,
            &format!(
                "SELECT sync_add_webhook('{}', ARRAY['run.completed'])",
                rx.url()
            ),
        );
        let mut runs = vec![];
        for i in 1..=3 {
            c.batch_execute(&format!("INSERT INTO a (v) VALUES ('event {i}')"))
                .unwrap();
            runs.push(value(&mut c, "SELECT sync_execute(1)->>'run_id'"));
        }
        let got = rx.wait_for(30, |r| r.len() >= 3);
        assert_eq!(got.len(), 3, "three deliveries attempted, one held");
        // the answered ones are recorded (after their answers); the held one is not
        let recorded = t.wait(
            "postgres",
            "SELECT count(*) FILTER (WHERE status = 'delivered') || ' ' || count(*) FROM sync_deliveries",
            "2 3",
            10,
        );
        assert!(
            recorded == "2 3" || recorded == "0 3" || recorded == "1 3",
            "the held one is not delivered: {recorded}"
        );
        drop(c);
        let (stopped, _) = t.stop("immediate");
        assert!(stopped);
        t.start_again();
        assert_eq!(
            t.wait(
                "postgres",
                "SELECT count(*) FROM sync_deliveries WHERE status = 'delivered'",
                "3",
                60
            ),
            "3",
            "every event delivered after the restart"
        );
        let all = rx.requests();
        assert!(all.len() >= 4, "the held one was sent again: {}", all.len());
        // per event (its run): one webhook-id on every attempt, and one body
        let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
        let mut bodies: HashMap<String, HashSet<String>> = HashMap::new();
        for r in &all {
            let run = r.json()["data"]["run_id"].to_string();
            ids.entry(run.clone())
                .or_default()
                .insert(r.header("webhook-id").to_string());
            bodies.entry(run).or_default().insert(r.body.clone());
        }
        let mut seen: Vec<String> = ids.keys().cloned().collect();
        seen.sort();
        let mut want = runs.clone();
        want.sort();
        assert_eq!(seen, want, "every run's event arrived");
        for (run, set) in &ids {
            assert_eq!(
                set.len(),
                1,
                "run {run}: one webhook-id on every attempt: {set:?}"
            );
            assert_eq!(bodies[run].len(), 1, "run {run}: the same body");
        }
        let distinct: HashSet<&String> = ids.values().flatten().collect();
        assert_eq!(distinct.len(), 3, "three events, three webhook-ids");
    }
}
