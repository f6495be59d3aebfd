//! Notifications (src/notify): the SQL surface and emission inside rolled-back
//! transactions (#[pg_test]), and delivery by the notifier to real HTTP receivers and a
//! real redis-server, each in a throwaway cluster of its own (plain #[test]s) so its
//! settings (short retry schedules, timeouts, Redis) touch no other test.

#[pgrx::pg_schema]
mod tests {
    use crate::pgtests::util::*;
    use pgrx::prelude::*;

    const URL: &str = "'http://127.0.0.1:9/hook'";

    #[pg_test]
    fn bad_subscriptions_are_refused_with_a_reason() {
        let add = |url: &str, events: &str, secret: &str| {
            format!("SELECT sync_add_webhook({url}, {events}, {secret})")
        };
        let ev = "ARRAY['run.failed']";
        expect_error(
            &add("NULL", ev, "NULL"),
            "22004",
            &["sync_add_webhook: url must not be NULL"],
        );
        expect_error(
            &add(URL, "NULL", "NULL"),
            "22004",
            &["events must not be NULL"],
        );
        expect_error(
            &add(URL, "ARRAY['run.failed', NULL]", "NULL"),
            "22004",
            &["element 2 is NULL"],
        );
        expect_error(
            &add(URL, "ARRAY[]::text[]", "NULL"),
            "22023",
            &["at least one event type"],
        );
        expect_error(
            &add(URL, "ARRAY['run.done']", "NULL"),
            "22023",
            &["unknown event type \"run.done\"", "run.completed, run.failed, conflict.created, conflict.resolved, changes.available, delivery.dead"],
        );
        expect_error(
            &add("'ftp://example.com/x'", ev, "NULL"),
            "22023",
            &["invalid url", "\"ftp\""],
        );
        expect_error(&add("'not a url'", ev, "NULL"), "22023", &["invalid url"]);
        expect_error(
            &add("'http:///nohost'", ev, "NULL"),
            "22023",
            &["invalid url"],
        );
        expect_error(
            &add(URL, ev, "'s3cret'"),
            "22023",
            &["invalid secret", "whsec_"],
        );
        expect_error(
            &add(URL, ev, "'whsec_AAAA'"),
            "22023",
            &["invalid secret", "holds 3 bytes"],
        );
        expect_error(
            "SELECT sync_remove_webhook(NULL)",
            "22004",
            &["sync_remove_webhook: id must not be NULL"],
        );
        expect_error(
            "SELECT sync_remove_webhook(987654)",
            "42704",
            &["webhook 987654 does not exist"],
        );
        expect_error(
            "SELECT sync_redeliver(NULL)",
            "22004",
            &["sync_redeliver: delivery_id must not be NULL"],
        );
        expect_error(
            "SELECT sync_redeliver(987654)",
            "42704",
            &["delivery 987654 does not exist"],
        );
        expect_error(
            "SELECT sync_webhook_secret(987654)",
            "42704",
            &["webhook 987654 does not exist"],
        );
        assert_eq!(
            count("SELECT count(*) FROM sync_webhooks"),
            0,
            "nothing half-added"
        );
    }

    #[pg_test]
    fn secrets_are_generated_or_kept_and_read_back_by_the_owner() {
        let id = Spi::get_one::<i64>(&format!(
            "SELECT sync_add_webhook({URL}, ARRAY['run.failed'])"
        ))
        .unwrap()
        .unwrap();
        let s = text(&format!("SELECT sync_webhook_secret({id})")).unwrap();
        let key = crate::notify::sign::secret_key(&s).expect("a valid whsec_ secret");
        assert!(key.len() >= 24, "{} random bytes", key.len());
        let other = Spi::get_one::<i64>(&format!(
            "SELECT sync_add_webhook({URL}, ARRAY['run.failed'])"
        ))
        .unwrap()
        .unwrap();
        assert_ne!(
            text(&format!("SELECT sync_webhook_secret({other})")).unwrap(),
            s
        );
        let mine = crate::notify::sign::secret_from_bytes(&[9u8; 24]);
        let kept = Spi::get_one::<i64>(&format!(
            "SELECT sync_add_webhook({URL}, ARRAY['run.failed', 'run.failed'], '{mine}')"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            text(&format!("SELECT sync_webhook_secret({kept})")).unwrap(),
            mine
        );
        assert_eq!(
            text(&format!(
                "SELECT events::text FROM sync_webhooks WHERE id = {kept}"
            ))
            .unwrap(),
            "{run.failed}",
            "repeats dropped"
        );
        Spi::run(&format!("SELECT sync_remove_webhook({kept})")).unwrap();
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM sync_webhooks WHERE id = {kept}"
            )),
            0
        );
    }

    #[pg_test]
    fn an_ordinary_role_reads_neither_secrets_nor_urls() {
        Spi::run(&format!(
            "CREATE ROLE notify_reader NOLOGIN;
             GRANT SELECT ON sync_runs, sync_conflicts TO notify_reader;
             SELECT sync_add_webhook({URL}, ARRAY['run.failed']);
             SET ROLE notify_reader;"
        ))
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM sync_runs WHERE false"),
            0,
            "the granted table reads"
        );
        for sql in [
            "SELECT url FROM sync_webhooks",
            "SELECT secret FROM sync_webhooks",
            "SELECT payload FROM sync_outbox",
            "SELECT * FROM sync_deliveries",
        ] {
            expect_error(sql, "42501", &["permission denied"]);
        }
        let id = "(SELECT 1)";
        expect_error(
            &format!("SELECT sync_webhook_secret({id})"),
            "42501",
            &["read a webhook's secret"],
        );
        expect_error(
            &format!("SELECT sync_add_webhook({URL}, ARRAY['run.failed'])"),
            "42501",
            &["add a webhook"],
        );
        expect_error(
            "SELECT sync_remove_webhook(1)",
            "42501",
            &["remove a webhook"],
        );
        expect_error("SELECT sync_redeliver(1)", "42501", &["redeliver"]);
        expect_error(
            "SHOW sync_engine.redis_url",
            "42501",
            &["sync_engine.redis_url"],
        );
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn delivered_rows_are_pruned_after_the_retention_and_dead_ones_kept() {
        let hook = Spi::get_one::<i64>(&format!(
            "SELECT sync_add_webhook({URL}, ARRAY['run.failed'])"
        ))
        .unwrap()
        .unwrap();
        // sync_engine.deliveries_retention: 168 hours by default
        Spi::run(&format!(
            "INSERT INTO sync_outbox (id, event_type, payload, created_at) VALUES
                 (-1, 'run.failed', '{{}}', now() - interval '200 hours'),
                 (-2, 'run.failed', '{{}}', now() - interval '200 hours'),
                 (-3, 'run.failed', '{{}}', now() - interval '1 hour');
             INSERT INTO sync_deliveries (webhook_id, event_id, event_type, status, delivered_at) VALUES
                 ({hook}, -1, 'run.failed', 'delivered', now() - interval '200 hours'),
                 ({hook}, -2, 'run.failed', 'dead', NULL),
                 ({hook}, -3, 'run.failed', 'delivered', now() - interval '1 hour');"
        ))
        .unwrap();
        let schema = crate::pg::quote::ext_schema();
        for sql in crate::notify::prune_sql(&schema, 100) {
            Spi::run(&sql).unwrap();
        }
        assert_eq!(
            text("SELECT string_agg(event_id || ':' || status, ' ' ORDER BY event_id) FROM sync_deliveries WHERE event_id < 0")
                .unwrap(),
            "-3:delivered -2:dead",
            "the old delivered row is pruned; the dead and the recent ones stay"
        );
        assert_eq!(
            text("SELECT string_agg(id::text, ' ' ORDER BY id) FROM sync_outbox WHERE id < 0")
                .unwrap(),
            "-3 -2",
            "an old event with no delivery left goes too"
        );
    }

    #[pg_test]
    fn events_are_written_with_the_run_and_only_when_wanted() {
        Spi::run(
            "CREATE TABLE ne_a (id int PRIMARY KEY, v text);
             CREATE TABLE ne_b (id int PRIMARY KEY, v text);
             SELECT sync_register_table('ne_a', 'x', 'ne_a'), sync_register_table('ne_b', 'x', 'ne_b');
             SELECT sync_create_config('ne', 'ne_a', 'ne_b', 'x');
             INSERT INTO ne_a VALUES (1, 'one');",
        )
        .unwrap();
        let cfg = Spi::get_one::<i64>("SELECT id FROM sync_configs WHERE name = 'ne'")
            .unwrap()
            .unwrap();
        Spi::run(&format!("SELECT sync_execute({cfg})")).unwrap();
        assert_eq!(
            count("SELECT count(*) FROM sync_outbox"),
            0,
            "nobody subscribed: no event written"
        );
        let hook = Spi::get_one::<i64>(&format!(
            "SELECT sync_add_webhook({URL}, ARRAY['run.completed'])"
        ))
        .unwrap()
        .unwrap();
        Spi::run("INSERT INTO ne_a VALUES (2, 'two')").unwrap();
        let run = json(&format!("SELECT sync_execute({cfg})"));
        let ev = json("SELECT payload FROM sync_outbox ORDER BY id DESC LIMIT 1");
        assert_eq!(ev["type"], "run.completed");
        assert!(ev["timestamp"].as_str().unwrap().ends_with('Z'), "{ev}");
        let d = &ev["data"];
        assert_eq!(d["run_id"], run["run_id"]);
        assert_eq!(d["config_id"], cfg);
        assert_eq!(d["config_name"], "ne");
        assert_eq!(d["status"], "success");
        assert_eq!(d["synced"], run["synced"]);
        assert_eq!(d["created"], run["created"]);
        assert!(d.get("error").is_some(), "error is present (null): {d}");
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM sync_deliveries WHERE webhook_id = {hook} AND status = 'pending' AND attempts = 0
                    AND event_type = 'run.completed'"
            )),
            1,
            "one delivery per event and subscription"
        );
        // a failure recorded by the worker (an UPDATE to 'failed') is a run.failed; nobody wants it here
        Spi::run(&format!(
            "INSERT INTO sync_runs (config_id, started_by) VALUES ({cfg}, 'worker');
             UPDATE sync_runs SET status = 'failed', error = 'boom' WHERE status = 'running'"
        ))
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM sync_outbox WHERE event_type = 'run.failed'"),
            0
        );
        Spi::run(&format!(
            "SELECT sync_add_webhook({URL}, ARRAY['run.failed'])"
        ))
        .unwrap();
        Spi::run(&format!(
            "INSERT INTO sync_runs (config_id, started_by) VALUES ({cfg}, 'worker');
             UPDATE sync_runs SET status = 'failed', error = 'boom' WHERE status = 'running'"
        ))
        .unwrap();
        let f = json("SELECT payload FROM sync_outbox WHERE event_type = 'run.failed'");
        assert_eq!(f["data"]["error"], "boom");
        assert_eq!(f["data"]["status"], "failed");
    }
}

/// Delivery by the notifier, in throwaway clusters.
#[cfg(test)]
mod delivery {
    use crate::notify::sign;
    use crate::pgtests::receiver::{Receiver, Reply};
    use crate::pgtests::throwaway::{value, Throwaway};
    use std::time::{Duration, Instant};

    /// A cluster with the extension in database postgres, two registered tables
    /// crm.a / hub.b (a config `ab` from a to b, not scheduled) and fast worker ticks.
    fn cluster(dir: &'static str, port: u16, settings: &str) -> Throwaway {
        crate::pgtests::concurrent::cluster(); // the framework installs the extension
        let t = Throwaway::start(
            dir,
            port,
            &format!("-c sync_engine.naptime=1 -c sync_engine.webhook_retry_schedule=100ms,200ms {settings}"),
        );
        t.exec(
            "postgres",
            "CREATE EXTENSION sync_engine;
             CREATE TABLE a (id int PRIMARY KEY, v text);
             CREATE TABLE b (id int PRIMARY KEY, v text);
             SELECT sync_register_table('crm', 'x', 'a'), sync_register_table('hub', 'x', 'b');
             SELECT sync_create_config('ab', 'crm', 'hub', 'x', conflict_strategy => 'manual');
             UPDATE sync_configs SET enabled = false;",
        );
        t
    }

    fn add_webhook(c: &mut postgres::Client, url: &str, events: &str) -> i64 {
        value(
            c,
            &format!("SELECT sync_add_webhook('{url}', ARRAY[{events}])"),
        )
        .parse()
        .unwrap()
    }

    fn sync(c: &mut postgres::Client) -> serde_json::Value {
        value(c, "SELECT sync_execute(1)").parse().unwrap()
    }

    #[test]
    fn webhooks_are_signed_retried_and_tell_of_runs_conflicts_and_changes() {
        let t = cluster("/var/tmp/se_notify_signed", 56401, "");
        let mut c = t.connect("postgres");
        let runs = Receiver::start();
        let secret = sign::secret_from_bytes(b"0123456789abcdefghijklmnopqrstuv");
        let hook: i64 = value(
            &mut c,
            &format!(
                "SELECT sync_add_webhook('{}', ARRAY['run.completed'], '{secret}')",
                runs.url()
            ),
        )
        .parse()
        .unwrap();
        // 500, 500, then 200: delivered on the third attempt, same webhook-id each time
        runs.script(&[Reply::Status(500), Reply::Status(500)]);
        c.batch_execute("INSERT INTO a VALUES (1, 'one')").unwrap();
        let first = sync(&mut c);
        let got = runs.wait_for(30, |r| r.len() >= 3);
        assert_eq!(got.len(), 3, "three attempts");
        let id = got[0].header("webhook-id").to_string();
        let instance = value(
            &mut c,
            "SELECT left(replace(id::text, '-', ''), 16) FROM sync_instance",
        );
        assert!(id.starts_with(&format!("evt_{instance}_")), "{id}");
        for r in &got {
            assert_eq!(
                r.header("webhook-id"),
                id,
                "the same webhook-id on every retry"
            );
            let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
            assert!((ts - chrono_now()).abs() < 60, "a current Unix timestamp");
            assert!(
                sign::verify(
                    &secret,
                    &id,
                    ts,
                    r.body.as_bytes(),
                    r.header("webhook-signature")
                ),
                "the receiver verifies the signature with the secret"
            );
            assert!(!sign::verify(
                &sign::secret_from_bytes(&[1u8; 32]),
                &id,
                ts,
                r.body.as_bytes(),
                r.header("webhook-signature")
            ));
            assert_eq!(r.header("content-type"), "application/json");
        }
        // the retries waited about the schedule (100 ms, 200 ms, +-10 %)
        let gap1 = got[1].at - got[0].at;
        let gap2 = got[2].at - got[1].at;
        assert!(
            gap1 >= Duration::from_millis(85) && gap2 >= Duration::from_millis(175),
            "{gap1:?} {gap2:?}"
        );
        let body = got[2].json();
        assert_eq!(body["type"], "run.completed");
        assert_eq!(body["data"]["run_id"], first["run_id"]);
        assert_eq!(body["data"]["created"], 1);
        assert_eq!(
            t.wait(
                "postgres",
                &format!("SELECT status || ' ' || attempts || ' ' || last_status FROM sync_deliveries WHERE webhook_id = {hook}"),
                "delivered 3 200",
                10
            ),
            "delivered 3 200"
        );

        // a rolled-back run is never delivered; the next committed one is
        c.batch_execute(
            "INSERT INTO a VALUES (2, 'two'); BEGIN; SELECT sync_execute(1); ROLLBACK;",
        )
        .unwrap();
        let second = sync(&mut c);
        let got = runs.wait_for(10, |r| {
            r.iter()
                .any(|q| q.json()["data"]["run_id"] == second["run_id"])
        });
        let run_ids: Vec<i64> = got
            .iter()
            .map(|r| r.json()["data"]["run_id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            run_ids,
            vec![first["run_id"].as_i64().unwrap(); 3]
                .into_iter()
                .chain([second["run_id"].as_i64().unwrap()])
                .collect::<Vec<_>>(),
            "the rolled-back run (id in between) never arrives"
        );
        assert!(second["run_id"].as_i64().unwrap() > first["run_id"].as_i64().unwrap() + 1);

        // conflicts: created (manual strategy: pending), then resolved
        let other = Receiver::start();
        add_webhook(
            &mut c,
            &other.url(),
            "'conflict.created', 'conflict.resolved', 'changes.available'",
        );
        c.batch_execute(
            "UPDATE a SET v = 'crm side' WHERE id = 1; UPDATE b SET v = 'hub side' WHERE id = 1;",
        )
        .unwrap();
        sync(&mut c);
        let created = other.wait_for(10, |r| {
            r.iter().any(|q| q.json()["type"] == "conflict.created")
        });
        let ev = created
            .iter()
            .find(|q| q.json()["type"] == "conflict.created")
            .expect("conflict.created")
            .json();
        let conflict = ev["data"]["conflict_id"].as_i64().unwrap();
        assert_eq!(ev["data"]["config_id"], 1);
        assert_eq!(ev["data"]["source_id"], "1");
        assert_eq!(ev["data"]["fields"], serde_json::json!(["v"]));
        assert_eq!(ev["data"]["resolution"], "pending");
        assert_eq!(ev["data"]["source_value"], "crm side");
        assert_eq!(ev["data"]["target_value"], "hub side");
        value(
            &mut c,
            &format!("SELECT sync_resolve_conflict({conflict}, 'source')"),
        );
        let resolved = other.wait_for(10, |r| {
            r.iter().any(|q| q.json()["type"] == "conflict.resolved")
        });
        let ev = resolved
            .iter()
            .find(|q| q.json()["type"] == "conflict.resolved")
            .unwrap()
            .json();
        assert_eq!(ev["data"]["conflict_id"], conflict);
        assert_eq!(ev["data"]["resolution"], "source");
        assert!(ev["data"]["resolved_by"].is_string());

        // changes.available: one event for the endpoint with the count and a window
        // sync_changes reads
        std::thread::sleep(Duration::from_millis(2500)); // earlier writes announced
        let before = other.of_type("changes.available").len();
        c.batch_execute("INSERT INTO a VALUES (10, 'x'), (11, 'y'), (12, 'z')")
            .unwrap();
        let got = other.wait_for(10, |_| {
            other.of_type("changes.available")[before..]
                .iter()
                .any(|q| q.json()["data"]["system"] == "crm")
        });
        let news: Vec<_> = other.of_type("changes.available")[before..]
            .iter()
            .map(|q| q.json())
            .filter(|j| j["data"]["system"] == "crm")
            .collect();
        assert_eq!(news.len(), 1, "one event for three rows: {got:?}");
        let d = &news[0]["data"];
        assert_eq!(d["count"], 3);
        assert_eq!(d["entity_type"], "x");
        let n = value(
            &mut c,
            &format!(
                "SELECT string_agg(entity_id, ',' ORDER BY id) FROM sync_changes('{}', '{}', 'crm', 'x')",
                d["since"].as_str().unwrap(),
                d["until"].as_str().unwrap()
            ),
        );
        assert_eq!(n, "10,11,12", "the window holds the three changes");

        // a scheduled run that fails: its transaction aborts, the worker records the
        // failure in a transaction of its own, and that raises run.failed
        let failures = Receiver::start();
        add_webhook(&mut c, &failures.url(), "'run.failed'");
        c.batch_execute(
            "CREATE TABLE f1 (id int PRIMARY KEY, v text); CREATE TABLE f2 (id int PRIMARY KEY, v text);
             SELECT sync_register_table('f1', 'z', 'f1'), sync_register_table('f2', 'z', 'f2');
             SELECT sync_create_config('fails', 'f1', 'f2', 'z', sync_interval => '1 hour');
             ALTER TABLE f2 DROP COLUMN v;
             INSERT INTO f1 VALUES (1, 'x');",
        )
        .unwrap();
        let got = failures.wait_for(15, |q| !q.is_empty());
        let ev = got.first().expect("a run.failed event").json();
        assert_eq!(ev["type"], "run.failed");
        assert_eq!(ev["data"]["status"], "failed");
        assert_eq!(ev["data"]["config_name"], "fails");
        assert_eq!(ev["data"]["started_by"], "worker");
        assert!(
            ev["data"]["error"]
                .as_str()
                .is_some_and(|e| e.contains('v')),
            "{ev}"
        );
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn dead_and_hanging_receivers_delay_nobody_and_dead_letters_can_be_redelivered() {
        let t = cluster(
            "/var/tmp/se_notify_dead",
            56410,
            "-c sync_engine.webhook_timeout=1500 -c sync_engine.webhook_connect_timeout=300",
        );
        let mut c = t.connect("postgres");
        // a long schedule from the server options, shortened by a reload
        let reload = |c: &mut postgres::Client, schedule: &str| {
            c.batch_execute(&format!(
                "ALTER SYSTEM SET sync_engine.webhook_retry_schedule = '{schedule}'"
            ))
            .unwrap();
            c.batch_execute("SELECT pg_reload_conf()").unwrap();
        };
        reload(&mut c, "1h");
        let fast = Receiver::start();
        let hanging = Receiver::start();
        hanging.default_reply(Reply::Hang(Duration::from_secs(3)));
        let dead_port = Receiver::free_port();
        let dead_url = format!("http://127.0.0.1:{dead_port}/hook");
        let gone = Receiver::start();
        gone.default_reply(Reply::Status(410));
        let busy = Receiver::start();
        busy.script(&[Reply::RetryAfter(503, "1".into())]);
        add_webhook(&mut c, &busy.url(), "'run.completed'");
        // (the hanging one first: its deliveries come before the fast one's)
        let hang_hook = add_webhook(&mut c, &hanging.url(), "'run.completed'");
        add_webhook(&mut c, &fast.url(), "'run.completed', 'delivery.dead'");
        let dead_hook = add_webhook(&mut c, &dead_url, "'run.completed'");
        let gone_hook = add_webhook(&mut c, &gone.url(), "'run.completed'");
        reload(&mut c, "100ms,200ms");
        assert_eq!(
            t.wait(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sync_engine notifier'",
                "1",
                10
            ),
            "1",
            "the scheduler started a notifier"
        );
        // a config the worker runs every second, all along
        c.batch_execute(
            "CREATE TABLE w1 (id int PRIMARY KEY, v text); CREATE TABLE w2 (id int PRIMARY KEY, v text);
             SELECT sync_register_table('w1', 'y', 'w1'), sync_register_table('w2', 'y', 'w2');
             SELECT sync_create_config('w', 'w1', 'w2', 'y', sync_interval => '1 second');",
        )
        .unwrap();
        // five runs: each call returns at once, and the fast receiver gets each soon
        let mut slowest = Duration::ZERO;
        for i in 0..5 {
            c.batch_execute(&format!("INSERT INTO a VALUES ({i}, 'v')"))
                .unwrap();
            let started = Instant::now();
            let r = sync(&mut c);
            slowest = slowest.max(started.elapsed());
            let run = r["run_id"].clone();
            let got = fast.wait_for(5, |q| q.iter().any(|x| x.json()["data"]["run_id"] == run));
            let arrived = got
                .iter()
                .find(|x| x.json()["data"]["run_id"] == run)
                .map(|x| x.at);
            let lag = arrived.map(|a| a.saturating_duration_since(started));
            assert!(
                lag.is_some_and(|l| l < Duration::from_millis(1000)),
                "run {run} reached the fast receiver in {lag:?} while another one hangs"
            );
        }
        assert!(
            slowest < Duration::from_millis(1000),
            "sync_execute took {slowest:?}"
        );
        // a 503 with Retry-After: 1 is retried after a second, not after the schedule's 100 ms
        let first = busy.wait_for(10, |q| {
            q.len() >= 2
                && q[1..]
                    .iter()
                    .any(|x| x.header("webhook-id") == q[0].header("webhook-id"))
        });
        let again = first[1..]
            .iter()
            .find(|x| x.header("webhook-id") == first[0].header("webhook-id"))
            .expect("the 503 is retried");
        let gap = again.at - first[0].at;
        assert!(
            gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
            "Retry-After honoured: {gap:?}"
        );
        // the hanging receiver's attempts time out
        let e = t.wait(
            "postgres",
            &format!("SELECT bool_or(last_error LIKE '%timeout%') FROM sync_deliveries WHERE webhook_id = {hang_hook}"),
            "true",
            20,
        );
        assert_eq!(e, "true", "a hanging receiver times out");
        // the dead one: dead after 3 attempts, and a delivery.dead event says so
        let dead_id: i64 = value(
            &mut c,
            &format!("SELECT min(id) FROM sync_deliveries WHERE webhook_id = {dead_hook}"),
        )
        .parse()
        .unwrap();
        assert_eq!(
            t.wait(
                "postgres",
                &format!("SELECT status || ' ' || attempts || ' ' || (last_status IS NULL) FROM sync_deliveries WHERE id = {dead_id}"),
                "dead 3 true",
                20
            ),
            "dead 3 true",
            "dead after three attempts"
        );
        let deads = fast.wait_for(10, |q| {
            q.iter().any(|x| {
                x.json()["type"] == "delivery.dead" && x.json()["data"]["delivery_id"] == dead_id
            })
        });
        let ev = deads
            .iter()
            .map(|x| x.json())
            .find(|j| j["type"] == "delivery.dead" && j["data"]["delivery_id"] == dead_id)
            .expect("a delivery.dead event");
        assert_eq!(ev["data"]["webhook_id"], dead_hook);
        assert_eq!(ev["data"]["attempts"], 3);
        assert_eq!(ev["data"]["event_type"], "run.completed");
        assert!(ev["data"]["last_error"].is_string());
        // 410: the subscription is disabled after one attempt
        assert_eq!(
            t.wait(
                "postgres",
                &format!("SELECT enabled FROM sync_webhooks WHERE id = {gone_hook}"),
                "false",
                10
            ),
            "false"
        );
        std::thread::sleep(Duration::from_millis(1500));
        let answered_410 = gone.requests().len();
        c.batch_execute("INSERT INTO a VALUES (100, 'v')").unwrap();
        sync(&mut c);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            gone.requests().len(),
            answered_410,
            "nothing more after the 410"
        );
        // the worker's runs went on meanwhile
        assert!(
            value(&mut c, "SELECT count(*) FROM sync_runs r JOIN sync_configs c ON c.id = r.config_id WHERE c.name = 'w' AND r.status = 'success'")
                .parse::<i64>()
                .unwrap()
                >= 3,
            "scheduled runs were not held up"
        );
        // the receiver comes back: a redelivery reaches it
        // (later runs' deliveries to it, still being retried, may arrive too: count the
        // requests of the dead delivery's event only)
        let dead_msg = value(
            &mut c,
            &format!(
                "SELECT 'evt_' || (SELECT left(replace(i.id::text, '-', ''), 16) FROM sync_instance i) || '_' || event_id
                   FROM sync_deliveries WHERE id = {dead_id}"
            ),
        );
        let back = Receiver::start_on(dead_port);
        value(&mut c, &format!("SELECT sync_redeliver({dead_id})"));
        let of_dead = |q: &[crate::pgtests::receiver::Request]| {
            q.iter()
                .filter(|r| r.header("webhook-id") == dead_msg)
                .count()
        };
        let got = back.wait_for(10, |q| of_dead(q) >= 1);
        assert_eq!(of_dead(&got), 1, "redelivered once");
        assert_eq!(
            t.wait(
                "postgres",
                &format!(
                    "SELECT status || ' ' || attempts FROM sync_deliveries WHERE id = {dead_id}"
                ),
                "delivered 1",
                10
            ),
            "delivered 1"
        );
        let err = c.batch_execute(&format!(
            "SELECT sync_redeliver((SELECT min(id) FROM sync_deliveries WHERE webhook_id = {gone_hook}))"
        ));
        let err = err.expect_err("redelivering to a disabled webhook is refused");
        assert_eq!(err.as_db_error().unwrap().code().code(), "55000");
    }

    /// A redis-server of the test's own on `port`, stopped when dropped.
    struct Redis {
        child: std::process::Child,
        port: u16,
    }

    impl Redis {
        fn start(port: u16) -> Redis {
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (scripts/setup.sh installs it)");
            let r = Redis { child, port };
            let start = Instant::now();
            while r.conn().is_none() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis-server on {port} did not come up"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            r
        }
        fn conn(&self) -> Option<redis::Connection> {
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
                .ok()?
                .get_connection()
                .ok()
        }
        /// (id, type, payload) of every entry of the stream.
        fn entries(&self, stream: &str) -> Vec<(String, String, serde_json::Value)> {
            let mut c = self.conn().expect("redis connection");
            let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .query(&mut c)
                .unwrap();
            v.into_iter()
                .map(|(_, fields)| {
                    let get = |k: &str| {
                        fields
                            .iter()
                            .find(|(f, _)| f == k)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    (
                        get("id"),
                        get("type"),
                        serde_json::from_str(&get("payload")).unwrap_or_default(),
                    )
                })
                .collect()
        }
        fn wait_entries(&self, stream: &str, n: usize) -> Vec<(String, String, serde_json::Value)> {
            let start = Instant::now();
            loop {
                let e = self.entries(stream);
                if e.len() >= n || start.elapsed() > Duration::from_secs(15) {
                    return e;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn events_go_to_a_redis_stream_and_wait_while_redis_is_down() {
        // a port nothing listens on now (a redis-server left behind by an interrupted
        // run must not be mistaken for ours)
        let redis_port = Receiver::free_port();
        let redis = Redis::start(redis_port);
        let t = cluster(
            "/var/tmp/se_notify_redis",
            56420,
            &format!("-c sync_engine.redis_url=redis://127.0.0.1:{redis_port}/ -c sync_engine.redis_stream=se_test -c sync_engine.redis_maxlen=1000"),
        );
        let mut c = t.connect("postgres");
        c.batch_execute("INSERT INTO a VALUES (1, 'one')").unwrap();
        let r1 = sync(&mut c);
        let e = redis.wait_entries("se_test", 1);
        let runs: Vec<_> = e.iter().filter(|x| x.1 == "run.completed").collect();
        assert_eq!(runs.len(), 1, "{e:?}");
        assert!(
            runs[0].0.starts_with("evt_"),
            "the entry carries the event id"
        );
        assert_eq!(runs[0].2["type"], "run.completed");
        assert_eq!(runs[0].2["data"]["run_id"], r1["run_id"]);
        // Redis stops: runs go on, events wait in the outbox
        drop(redis);
        let mut ids = vec![r1["run_id"].as_i64().unwrap()];
        for i in 2..5 {
            c.batch_execute(&format!("INSERT INTO a VALUES ({i}, 'v')"))
                .unwrap();
            let started = Instant::now();
            let r = sync(&mut c);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "a run is not held up by Redis"
            );
            ids.push(r["run_id"].as_i64().unwrap());
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            value(&mut c, "SELECT count(*) FROM sync_outbox WHERE stream_pending AND event_type = 'run.completed'"),
            "3",
            "the events wait"
        );
        // Redis is back: they arrive, in order
        let redis = Redis::start(redis_port);
        let e = redis.wait_entries("se_test", 3);
        let got: Vec<i64> = e
            .iter()
            .filter(|x| x.1 == "run.completed")
            .map(|x| x.2["data"]["run_id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, ids[1..].to_vec(), "the waiting events, in order");
        assert_eq!(
            t.wait(
                "postgres",
                "SELECT count(*) FROM sync_outbox WHERE stream_pending",
                "0",
                10
            ),
            "0"
        );
    }
}
