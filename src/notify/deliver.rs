//! The notifier: a background worker per database that delivers the outbox.
//!
//! - Started by the database's scheduler (`ensure_running`, at each of its ticks) while
//!   there is anything to deliver to: an enabled webhook, `sync_engine.redis_url`, or
//!   events still waiting for Redis. It ends when there is nothing (the scheduler
//!   starts it again when needed), when the extension is dropped, when the launcher no
//!   longer serves the database, and on SIGTERM. Only one runs per database (a slot in
//!   shared memory, `super::claim_slot`).
//! - Its main thread does every SPI call, each step in a short transaction of its own:
//!   read the due deliveries (and a batch for Redis), hand them to the sender threads
//!   (`super::http`, `super::stream`), record the outcomes. Nothing waits for a
//!   receiver: the loop polls the outcome channels every few milliseconds while
//!   requests are in flight, and otherwise sleeps on its latch, which `sync_emit` sets
//!   when a transaction with events commits.
//! - Delivery is at least once: a delivery sent but not yet recorded when the process
//!   ends is sent again (same webhook-id) by the next notifier.

use super::http::{Job, Limits, Outcome, Pool};
use super::schedule::{self, Next};
use super::sign;
use super::stream::{Entry, Streamer, Target};
use super::{available, settings};
use crate::pg::db;
use crate::worker::in_txn;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const NOTIFIER_NAME: &str = "sync_engine notifier";
/// Requests queued or in flight per receiver, per sender thread.
const QUEUE_PER_THREAD: usize = 64;
/// Events per Redis batch.
const STREAM_BATCH: i64 = 500;
/// The poll of the outcome channels while requests are in flight.
const POLL: Duration = Duration::from_millis(5);
/// The longest sleep: also the latency of a retry whose time came while asleep.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Wait after Redis failed before the next try.
const STREAM_RETRY: Duration = Duration::from_secs(1);

// --- the scheduler's side -------------------------------------------------------------

/// When this scheduler last registered a notifier.
static LAST_START: Mutex<Option<Instant>> = Mutex::new(None);

/// From the scheduler's loop (in no transaction): start this database's notifier if
/// none runs and there is anything to deliver. Reads sync_webhooks and sync_outbox.
pub fn ensure_running(schema: &str) {
    if super::notifier_running() {
        return;
    }
    {
        let last = LAST_START.lock().unwrap_or_else(|e| e.into_inner());
        // a notifier registered moments ago may not have claimed its slot yet
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return;
        }
    }
    let redis = settings::redis_url().is_some();
    let (needed, db) = match in_txn(|| {
        db::two::<bool, String>(
            &format!(
                "SELECT $1 OR EXISTS (SELECT 1 FROM {schema}.sync_webhooks WHERE enabled)
                        OR EXISTS (SELECT 1 FROM {schema}.sync_outbox WHERE stream_pending),
                        current_database()::text"
            ),
            &[redis.into()],
        )
    }) {
        Ok(Some((needed, db))) => (needed.unwrap_or(false), db.unwrap_or_default()),
        Ok(None) => (false, String::new()),
        Err(e) => {
            warning!(
                "{NOTIFIER_NAME}: looking for webhooks: {} ({})",
                e.message,
                e.sqlstate
            );
            (false, String::new())
        }
    };
    if !needed {
        return;
    }
    *LAST_START.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    let dboid = unsafe { pg_sys::MyDatabaseId };
    let started = BackgroundWorkerBuilder::new(&format!("{NOTIFIER_NAME} {db}"))
        .set_type(NOTIFIER_NAME)
        .set_function("sync_engine_notifier_main")
        .set_library("sync_engine")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None) // the scheduler starts it again
        .set_argument(Some(pg_sys::Datum::from(dboid)))
        .load_dynamic();
    if started.is_err() {
        warning!(
            "{NOTIFIER_NAME}: no background worker slot is free for the notifier of database \"{db}\" (max_worker_processes); events wait in the outbox, retrying"
        );
    }
}

// --- the notifier -----------------------------------------------------------------------

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A uniform random number in [0, 1) (for the jitter).
fn uniform() -> f64 {
    let mut b = [0u8; 8];
    if !unsafe { pg_sys::pg_strong_random(b.as_mut_ptr().cast(), b.len()) } {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A delivery handed to a sender thread, not yet recorded.
struct InFlight {
    webhook_id: i64,
    attempts: i32,
}

/// The first 16 hex digits of this database's sync_instance id (SQL, alias `i`): part of
/// every webhook-id, so ids never repeat after DROP/CREATE EXTENSION or a restore.
const INSTANCE_HEX: &str = "left(replace(i.id::text, '-', ''), 16)";

struct Notifier {
    schema: String,
    pool: Pool,
    streamer: Option<Streamer>,
    in_flight: HashMap<i64, InFlight>,
    stream_in_flight: bool,
    stream_retry_at: Option<Instant>,
    stream_warned: bool,
    schedule: Vec<Duration>,
    schedule_text: String,
    last_tick: Option<Instant>,
    next_read: Instant,
}

enum Turn {
    Continue,
    Exit(&'static str),
}

fn report(what: &str, e: &crate::pg::subxact::SubxactError) {
    warning!("{NOTIFIER_NAME}: {what}: {} ({})", e.message, e.sqlstate);
}

impl Notifier {
    fn limits() -> Limits {
        Limits {
            connect_ms: settings::CONNECT_TIMEOUT_MS.get().max(1) as u64,
            total_ms: settings::TIMEOUT_MS.get().max(1) as u64,
            threads: settings::CONCURRENCY.get().max(1) as usize,
        }
    }

    /// Take a new `sync_engine.webhook_retry_schedule`; a malformed one is reported
    /// and the previous one kept.
    fn reload_schedule(&mut self) {
        let text = settings::retry_schedule();
        if text == self.schedule_text {
            return;
        }
        match schedule::parse_schedule(&text) {
            Ok(s) => self.schedule = s,
            Err(m) => warning!("{NOTIFIER_NAME}: {m}; keeping the previous schedule"),
        }
        self.schedule_text = text;
    }

    /// Record the outcomes that came back, in one transaction: the deliveries' new
    /// state, `delivery.dead` events, webhooks disabled by a 410.
    fn record(&mut self, outcomes: Vec<Outcome>) {
        let now = now_unix();
        let (mut ids, mut status, mut http, mut error, mut wait_ms, mut gone) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for o in &outcomes {
            let Some(f) = self.in_flight.remove(&o.delivery_id) else {
                continue;
            };
            let next = schedule::after_attempt(
                (f.attempts + 1).max(1) as u32,
                &o.attempt,
                &self.schedule,
                uniform(),
                now,
            );
            let (s, w) = match next {
                Next::Delivered => ("delivered", 0.0),
                Next::RetryAfter(d) => ("pending", d.as_secs_f64() * 1000.0),
                Next::Dead => ("dead", 0.0),
                Next::Unsubscribe => {
                    gone.push(o.webhook_id);
                    ("dead", 0.0)
                }
            };
            ids.push(o.delivery_id);
            status.push(s.to_string());
            http.push(match &o.attempt {
                schedule::Attempt::Answered { status, .. } => Some(*status as i32),
                schedule::Attempt::Failed(_) => None,
            });
            error.push(schedule::describe(&o.attempt));
            wait_ms.push(w);
        }
        if ids.is_empty() {
            return;
        }
        let schema = self.schema.clone();
        let r = in_txn(|| {
            // a 410 first: the subscription is off before any delivery.dead is raised (it
            // gets none), and its other pending deliveries are dead too (never sent now)
            if !gone.is_empty() {
                db::run(
                    &format!(
                        "UPDATE {schema}.sync_webhooks
                            SET enabled = false,
                                disabled_reason = 'the receiver answered 410 Gone at ' || clock_timestamp()::text || '; nothing more is delivered to it'
                          WHERE id = ANY($1)"
                    ),
                    &[gone.clone().into()],
                );
                db::run(
                    &format!(
                        "UPDATE {schema}.sync_deliveries
                            SET status = 'dead', last_error = 'not sent: the receiver answered 410 Gone to an earlier delivery'
                          WHERE webhook_id = ANY($1) AND status = 'pending' AND NOT (id = ANY($2))"
                    ),
                    &[gone.into(), ids.clone().into()],
                );
            }
            db::run(
                &format!(
                    "WITH done AS (
                        UPDATE {schema}.sync_deliveries d
                           SET status = u.status, attempts = d.attempts + 1, last_status = u.http_status,
                               last_error = u.error,
                               next_attempt_at = CASE WHEN u.status = 'pending'
                                   THEN clock_timestamp() + u.wait_ms * interval '1 millisecond' ELSE d.next_attempt_at END,
                               delivered_at = CASE WHEN u.status = 'delivered' THEN clock_timestamp() END
                          FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::float8[])
                               AS u(id, status, http_status, error, wait_ms)
                         WHERE d.id = u.id AND d.status = 'pending'
                     RETURNING d.*)
                     SELECT {schema}.sync_emit('delivery.dead', ARRAY(
                         SELECT jsonb_build_object('delivery_id', id, 'webhook_id', webhook_id, 'event_id', event_id,
                                    'event_type', event_type, 'attempts', attempts, 'last_status', last_status,
                                    'last_error', last_error)
                           FROM done WHERE status = 'dead' AND event_type <> 'delivery.dead' ORDER BY id))"
                ),
                &[ids.into(), status.into(), http.into(), error.into(), wait_ms.into()],
            );
        });
        if let Err(e) = r {
            // the deliveries stay pending and are sent again (at least once)
            report("recording webhook outcomes", &e);
        }
    }

    /// Read the due deliveries (as many as each receiver has room for) and hand them to
    /// the senders; also the next batch for Redis. Returns when to read again at the
    /// latest, or Exit.
    fn read_and_send(&mut self, tick: bool) -> Turn {
        let schema = self.schema.clone();
        let in_flight: Vec<i64> = self.in_flight.keys().copied().collect();
        let limits = Self::limits();
        let cap = limits.threads * QUEUE_PER_THREAD;
        let redis = settings::redis_url();
        let stream_now = redis.is_some()
            && !self.stream_in_flight
            && self.stream_retry_at.is_none_or(|t| Instant::now() >= t);
        let read = in_txn(|| {
            // gone: DROP EXTENSION
            db::one::<String>(crate::worker::EXT_SCHEMA_SQL, &[])?;
            if tick {
                available::tick(&schema);
            }
            let jobs = Spi::connect(|c| {
                let t = c
                    .select(
                        &format!(
                            "SELECT d.id, d.webhook_id, w.url, w.secret, d.event_id, e.payload::text, d.attempts,
                                    (SELECT {INSTANCE_HEX} FROM {schema}.sync_instance i)
                               FROM {schema}.sync_webhooks w
                              CROSS JOIN LATERAL (
                                    SELECT d.id, d.webhook_id, d.event_id, d.attempts FROM {schema}.sync_deliveries d
                                     WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                                       AND NOT (d.id = ANY ($1))
                                     ORDER BY d.next_attempt_at, d.id LIMIT $2) d
                               JOIN {schema}.sync_outbox e ON e.id = d.event_id
                              WHERE w.enabled
                              ORDER BY d.id"
                        ),
                        None,
                        &[in_flight.clone().into(), (cap as i64).into()],
                    )
                    .unwrap_or_else(|e| db::spi_fail(e));
                t.map(|r| {
                    (
                        Job {
                            delivery_id: db::col::<i64>(&r, 1).unwrap_or_default(),
                            webhook_id: db::col::<i64>(&r, 2).unwrap_or_default(),
                            url: db::col::<String>(&r, 3).unwrap_or_default(),
                            secret: db::col::<String>(&r, 4).unwrap_or_default(),
                            event_id: db::col::<i64>(&r, 5).unwrap_or_default(),
                            message_id: sign::message_id(
                                &db::col::<String>(&r, 8).unwrap_or_default(),
                                db::col::<i64>(&r, 5).unwrap_or_default(),
                            ),
                            body: db::col::<String>(&r, 6).unwrap_or_default(),
                        },
                        db::col::<i32>(&r, 7).unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>()
            });
            // the earliest retry still to come (ms from now)
            let next_due = db::one::<f64>(
                &format!(
                    "SELECT extract(epoch FROM min(d.next_attempt_at) - now())::float8 * 1000
                       FROM {schema}.sync_deliveries d JOIN {schema}.sync_webhooks w ON w.id = d.webhook_id
                      WHERE d.status = 'pending' AND w.enabled AND d.next_attempt_at > now()"
                ),
                &[],
            );
            let entries = if stream_now {
                Spi::connect(|c| {
                    let t = c
                        .select(
                            &format!(
                                "SELECT id, event_type, payload::text, (SELECT {INSTANCE_HEX} FROM {schema}.sync_instance i)
                                   FROM {schema}.sync_outbox WHERE stream_pending ORDER BY id LIMIT {STREAM_BATCH}"
                            ),
                            None,
                            &[],
                        )
                        .unwrap_or_else(|e| db::spi_fail(e));
                    t.map(|r| Entry {
                        event_id: db::col::<i64>(&r, 1).unwrap_or_default(),
                        message_id: sign::message_id(
                            &db::col::<String>(&r, 4).unwrap_or_default(),
                            db::col::<i64>(&r, 1).unwrap_or_default(),
                        ),
                        event_type: db::col::<String>(&r, 2).unwrap_or_default(),
                        payload: db::col::<String>(&r, 3).unwrap_or_default(),
                    })
                    .collect::<Vec<_>>()
                })
            } else {
                vec![]
            };
            let (enabled, idle) = if tick {
                let enabled = db::one::<Vec<i64>>(
                    &format!("SELECT coalesce(array_agg(id), '{{}}') FROM {schema}.sync_webhooks WHERE enabled"),
                    &[],
                )
                .unwrap_or_default();
                let stream_pending = db::one::<bool>(
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM {schema}.sync_outbox WHERE stream_pending)"
                    ),
                    &[],
                )
                .unwrap_or(false);
                let served = db::one::<bool>(
                    &format!("SELECT EXISTS (SELECT 1 FROM {schema}.sync_worker_states() s
                                     WHERE s.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))"),
                    &[],
                );
                let idle = enabled.is_empty() && !stream_pending;
                (Some(enabled), idle || served == Some(false))
            } else {
                (None, false)
            };
            Some((jobs, next_due, entries, enabled, idle))
        });
        let (jobs, next_due, entries, enabled, idle) = match read {
            Ok(Some(v)) => v,
            Ok(None) => return Turn::Exit("sync_engine is not installed in the database"),
            Err(e) => {
                report("reading the outbox", &e);
                self.next_read = Instant::now() + MAX_SLEEP;
                return Turn::Continue;
            }
        };
        if let Some(enabled) = enabled {
            self.pool.retain(&enabled);
        }
        let mut per_webhook: HashMap<i64, usize> = HashMap::new();
        for f in self.in_flight.values() {
            *per_webhook.entry(f.webhook_id).or_default() += 1;
        }
        for (job, attempts) in jobs {
            let n = per_webhook.entry(job.webhook_id).or_default();
            if *n >= cap {
                continue;
            }
            *n += 1;
            self.in_flight.insert(
                job.delivery_id,
                InFlight {
                    webhook_id: job.webhook_id,
                    attempts,
                },
            );
            self.pool.send(job, limits);
        }
        if let (Some(url), false) = (redis, entries.is_empty()) {
            let target = Target {
                url,
                stream: settings::redis_stream(),
                maxlen: settings::REDIS_MAXLEN.get() as i64,
            };
            self.streamer
                .get_or_insert_with(Streamer::default)
                .send(target, entries);
            self.stream_in_flight = true;
        }
        let wait = next_due
            .filter(|ms| *ms > 0.0)
            .map(|ms| Duration::from_millis(ms.ceil() as u64))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        self.next_read = Instant::now() + wait;
        if idle
            && self.in_flight.is_empty()
            && !self.stream_in_flight
            && settings::redis_url().is_none()
        {
            return Turn::Exit("nothing to deliver (no enabled webhook, no Redis)");
        }
        Turn::Continue
    }

    /// A Redis batch came back: mark its events streamed, or wait and try again.
    fn record_stream(&mut self, r: Result<Vec<i64>, String>) {
        self.stream_in_flight = false;
        match r {
            Ok(ids) => {
                if self.stream_warned {
                    log!("{NOTIFIER_NAME}: Redis reachable again; sending the events that waited");
                    self.stream_warned = false;
                }
                self.stream_retry_at = None;
                let schema = self.schema.clone();
                if let Err(e) = in_txn(|| {
                    db::run(
                        &format!("UPDATE {schema}.sync_outbox SET stream_pending = false WHERE id = ANY($1)"),
                        &[ids.into()],
                    )
                }) {
                    report("recording streamed events", &e);
                }
                self.next_read = Instant::now(); // more may wait
            }
            Err(m) => {
                if !self.stream_warned {
                    warning!("{NOTIFIER_NAME}: {m}; events wait in the outbox and are sent in order once Redis answers");
                    self.stream_warned = true;
                }
                self.stream_retry_at = Some(Instant::now() + STREAM_RETRY);
                self.next_read = self.next_read.min(Instant::now() + STREAM_RETRY);
            }
        }
    }
}

/// The notifier of one database; `arg` is the database's oid.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn sync_engine_notifier_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let dboid = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(dboid), None);
    if !super::claim_slot() {
        return; // another notifier serves the database
    }
    let schema = match in_txn(|| db::one::<String>(crate::worker::EXT_SCHEMA_SQL, &[])) {
        Ok(Some(s)) => crate::pg::quote::quote_ident(&s),
        _ => return,
    };
    let mut n = Notifier {
        schema,
        pool: Pool::default(),
        streamer: None,
        in_flight: HashMap::new(),
        stream_in_flight: false,
        stream_retry_at: None,
        stream_warned: false,
        // a malformed setting at start keeps the default, as a reload keeps the previous
        schedule: schedule::parse_schedule(schedule::DEFAULT_SCHEDULE)
            .expect("the default schedule parses"),
        schedule_text: String::from("\0"),
        last_tick: None,
        next_read: Instant::now(),
    };
    n.reload_schedule();
    log!("{NOTIFIER_NAME} started");
    let mut woken = true;
    let why = loop {
        if BackgroundWorker::sigterm_received() {
            break "terminated (SIGTERM)";
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            n.reload_schedule();
        }
        let outcomes: Vec<Outcome> = n.pool.outcomes.try_iter().collect();
        let recorded = !outcomes.is_empty();
        if recorded {
            n.record(outcomes);
        }
        let stream_result = n.streamer.as_ref().and_then(|s| s.results.try_recv().ok());
        if let Some(r) = stream_result {
            n.record_stream(r);
        }
        let naptime = Duration::from_secs(crate::pg::guc::NAPTIME.get().max(1) as u64);
        let tick = n.last_tick.is_none_or(|t| t.elapsed() >= naptime);
        if woken || recorded || tick || Instant::now() >= n.next_read {
            if tick {
                n.last_tick = Some(Instant::now());
            }
            if let Turn::Exit(why) = n.read_and_send(tick) {
                break why;
            }
        }
        let busy = !n.in_flight.is_empty() || n.stream_in_flight;
        let sleep = if busy {
            POLL
        } else {
            n.next_read
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), MAX_SLEEP)
        };
        let rc = unsafe {
            let rc = pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                sleep.as_millis() as std::ffi::c_long,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
            pg_sys::check_for_interrupts!();
            rc
        };
        woken = rc & pg_sys::WL_LATCH_SET as i32 != 0;
    };
    log!("{NOTIFIER_NAME} exiting: {why}");
}
