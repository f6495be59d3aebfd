//! The scheduler: a background worker per database, started by the launcher
//! (`crate::worker::launcher`, when the library is in shared_preload_libraries), that runs every
//! enabled config whose interval has elapsed, records failures with back-off, and
//! prunes change_log and sync_runs.
//!
//! Each step is its own short transaction: the intent row of a run, the run itself
//! (everything of it commits together), the failure record. A run that dies leaves its
//! intent row 'running'; the worker marks such rows failed when it (re)starts.
//!
//! It exits (and tells the launcher why, in shared memory) when the extension is not
//! installed in its database or was dropped, on SIGTERM (cancelling the run in
//! progress, which is rolled back whole and redone by the next run),
//! and when the launcher no longer serves its database. The launcher starts it again
//! unless the extension is missing.

pub mod launcher;

use crate::pg::db;
use crate::pg::guc;
use crate::pg::subxact::{describe, SubxactError};
use crate::sync::{self, LOCK_CLASS};
use launcher::{SchedulerState, Tick};
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const WORKER_NAME: &str = "sync_engine scheduler";
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// From `_PG_init`: the shared registry and the launcher, when preloading.
pub fn register() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    launcher::register();
}

/// Run `f` in a transaction of its own; an ERROR aborts it and is returned.
pub(crate) fn in_txn<R>(f: impl FnOnce() -> R) -> Result<R, SubxactError> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let f = AssertUnwindSafe(f);
    let r = PgTryBuilder::new(AssertUnwindSafe(move || Ok((f.0)())))
        .catch_others(|e| Err(describe(&e)))
        .execute();
    unsafe {
        match &r {
            Ok(_) => {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Err(_) => pg_sys::AbortCurrentTransaction(),
        }
    }
    r
}

fn report(what: &str, e: &SubxactError) {
    let msg = format!("{what}: {} ({})", e.message, e.sqlstate);
    warning!("{WORKER_NAME}: {msg}");
    launcher::scheduler_error(&msg);
}

/// Set once SIGTERM has arrived (pg_terminate_backend, DROP DATABASE ... WITH (FORCE),
/// a fast shutdown).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether SIGTERM has arrived.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// SIGTERM: note it, then PostgreSQL's own `die`, so the next CHECK_FOR_INTERRUPTS
/// (inside a run too: a slow trigger, a long statement) ends the process with FATAL.
/// The run in progress is rolled back whole; its 'running' row is closed by the next
/// scheduler, whose next run redoes the work. A fast shutdown then takes no longer
/// than the statement in progress needs to notice.
unsafe extern "C-unwind" fn on_sigterm(signal: std::ffi::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
    unsafe { pg_sys::die(signal) };
}

/// The scheduler of one database; `arg` is the database's oid (set by the launcher).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn sync_engine_scheduler_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(on_sigterm)) };
    let dboid = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(dboid), None);
    if !launcher::scheduler_attach() {
        return; // the launcher no longer serves this database
    }
    // a catalog lookup: needs a transaction (and its resource owner)
    let db = in_txn(|| crate::pg::db::one::<String>("SELECT current_database()::text", &[]))
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut recovered = false;
    let mut last_prune: Option<Instant> = None;
    let mut announced = false;
    let (state, why) = loop {
        if launcher::scheduler_tick() == Tick::StopRequested {
            break (
                SchedulerState::Stopped,
                "stopped by the launcher: the database is no longer served (sync_engine.databases)",
            );
        }
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        match in_txn(|| crate::pg::db::one::<String>(EXT_SCHEMA_SQL, &[])) {
            Ok(Some(schema)) => {
                if !announced {
                    log!("{WORKER_NAME} started in database \"{db}\"");
                    announced = true;
                }
                let schema = crate::pg::quote::quote_ident(&schema);
                // the notifier delivers events whether or not scheduled runs are enabled
                crate::notify::deliver::ensure_running(&schema);
                if guc::ENABLED.get() {
                    if !recovered {
                        recovered = mark_dead_runs(&schema);
                    }
                    run_due(&schema);
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        mark_dead_runs(&schema);
                        prune(&schema);
                        last_prune = Some(Instant::now());
                    }
                }
            }
            Ok(None) => {
                break (
                    SchedulerState::NoExtension,
                    "sync_engine is not installed in the database (CREATE EXTENSION starts a scheduler)",
                )
            }
            Err(e) => report("looking for the extension", &e),
        }
        if stopping() {
            break (SchedulerState::Stopped, "terminated (SIGTERM)");
        }
        let nap = Duration::from_secs(guc::NAPTIME.get().max(1) as u64);
        if !BackgroundWorker::wait_latch(Some(nap)) || stopping() {
            break (SchedulerState::Stopped, "terminated (SIGTERM)");
        }
    };
    launcher::scheduler_exiting(state, why);
    if announced {
        log!("{WORKER_NAME} in database \"{db}\" exiting: {why}");
    }
}

pub(crate) const EXT_SCHEMA_SQL: &str = "SELECT n.nspname::text FROM pg_extension e \
     JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'sync_engine'";

/// Runs left 'running' by a session or worker that died: nobody holds their config's
/// run lock any more. Their work was rolled back; the next run redoes it.
fn mark_dead_runs(schema: &str) -> bool {
    let r = in_txn(|| {
        crate::pg::db::run(
            &format!(
                "UPDATE {schema}.sync_runs r SET status = 'failed', completed_at = clock_timestamp(),
                        error = 'the run ended without completing (its session or the server stopped); nothing of it was applied, the next run redoes it'
                  WHERE r.status = 'running' AND pg_try_advisory_xact_lock({LOCK_CLASS}, r.config_id::int)"
            ),
            &[],
        )
    });
    match r {
        Ok(()) => true,
        Err(e) => {
            report("marking dead runs", &e);
            false
        }
    }
}

fn run_due(schema: &str) {
    let due = in_txn(|| {
        Spi::connect(|c| {
            let t = c
                .select(
                    &format!(
                        "SELECT id FROM {schema}.sync_configs WHERE enabled AND next_run_at <= now() ORDER BY next_run_at, id"
                    ),
                    None,
                    &[],
                )
                .unwrap_or_else(|e| crate::pg::db::spi_fail(e));
            t.filter_map(|r| db::col::<i64>(&r, 1))
                .collect::<Vec<i64>>()
        })
    });
    let due = match due {
        Ok(d) => d,
        Err(e) => return report("listing due configs", &e),
    };
    for id in due {
        if stopping() {
            return;
        }
        run_one(schema, id);
    }
}

fn run_one(schema: &str, config_id: i64) {
    let intent = in_txn(|| {
        crate::pg::db::one::<i64>(
            &format!(
                "INSERT INTO {schema}.sync_runs (config_id, started_by)
                 SELECT id, 'worker' FROM {schema}.sync_configs WHERE id = $1 RETURNING id"
            ),
            &[config_id.into()],
        )
    });
    let run_id = match intent {
        Ok(Some(id)) => id,
        Ok(None) => return, // config deleted meanwhile
        Err(e) => return report(&format!("starting config {config_id}"), &e),
    };
    match in_txn(|| sync::execute_run(config_id, "worker", Some(run_id))) {
        Ok(_) => {}
        Err(e) if e.code == pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE => {
            // a run started elsewhere (sync_execute, pg_cron) is in progress: not a failure
            if let Err(e) = in_txn(|| {
                crate::pg::db::run(
                    &format!("DELETE FROM {schema}.sync_runs WHERE id = $1"),
                    &[run_id.into()],
                )
            }) {
                report("dropping a skipped run", &e);
            }
        }
        Err(err) => {
            let recorded = in_txn(|| {
                crate::pg::db::run(
                    &format!(
                        "UPDATE {schema}.sync_runs SET status = 'failed', completed_at = clock_timestamp(), error = $2
                          WHERE id = $1"
                    ),
                    &[run_id.into(), err.message.clone().into()],
                );
                // back off: interval * 2^failures, at most an hour (or the interval if longer)
                crate::pg::db::run(
                    &format!(
                        "UPDATE {schema}.sync_configs
                            SET consecutive_failures = consecutive_failures + 1, last_run_at = now(),
                                next_run_at = now() + greatest(sync_interval,
                                    least(sync_interval * power(2, least(consecutive_failures + 1, 16)), interval '1 hour'))
                          WHERE id = $1"
                    ),
                    &[config_id.into()],
                );
            });
            if let Err(e) = recorded {
                report(&format!("recording the failure of config {config_id}"), &e);
            }
        }
    }
}

/// One bounded batch of change records that every config using their endpoint has
/// consumed (visible in its position) and that are older than `keep`.
fn prune_log_sql(schema: &str, keep: &str, batch: i64) -> String {
    format!(
        "DELETE FROM {schema}.change_log WHERE ctid = ANY(ARRAY(
            SELECT l.ctid FROM {schema}.change_log l
             WHERE l.changed_at < now() - {keep}::interval
               AND l.txid < pg_snapshot_xmin(pg_current_snapshot())
               AND NOT EXISTS (
                   SELECT 1 FROM {schema}.sync_configs c
                    WHERE ((c.source_system = l.system AND c.entity_type = l.entity_type)
                        OR (c.target_system = l.system AND c.target_entity_type = l.entity_type))
                      AND (c.position IS NULL OR NOT pg_visible_in_snapshot(l.txid, c.position::pg_snapshot)))
             ORDER BY l.txid LIMIT {batch}))"
    )
}

fn prune_runs_sql(schema: &str, days: i32, batch: i64) -> String {
    format!(
        "DELETE FROM {schema}.sync_runs WHERE id IN (
            SELECT id FROM {schema}.sync_runs
             WHERE status <> 'running' AND started_at < now() - make_interval(days => {days})
             LIMIT {batch})"
    )
}

fn delete_batch(sql: &str) -> i64 {
    Spi::connect_mut(|c| c.update(sql, None, &[]).map(|t| t.len() as i64))
        .unwrap_or_else(|e| crate::pg::db::spi_fail(e))
}

/// Prune change_log now, in the caller's transaction: records every config using
/// their endpoint has consumed, older than `keep` (default: sync_engine.log_retention
/// hours). Returns how many were deleted. The worker does the same in the background.
pub fn prune_now(keep: Option<pgrx::datum::Interval>) -> i64 {
    let schema = crate::pg::quote::ext_schema();
    let keep = match keep {
        Some(i) => {
            let (text, negative) = crate::pg::db::two::<String, bool>(
                "SELECT $1::text, $1 < interval '0'",
                &[i.into()],
            )
            .unwrap_or((None, None));
            let text = text.unwrap_or_default();
            if negative == Some(true) {
                crate::pg::fail(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    &format!("sync_prune: keep must not be negative (got {text}); e.g. '1 day', or NULL for sync_engine.log_retention"),
                );
            }
            crate::pg::quote::quote_literal(&text)
        }
        None => format!("'{} hours'", guc::LOG_RETENTION_HOURS.get()),
    };
    let batch = guc::PRUNE_BATCH.get() as i64;
    let sql = crate::offline::prune::with_horizon(&schema, &prune_log_sql(&schema, &keep, batch));
    let mut total = 0;
    loop {
        let n = delete_batch(&sql);
        total += n;
        if n < batch {
            break;
        }
    }
    let ids = crate::offline::prune::push_ids_sql(&schema, batch);
    while delete_batch(&ids) == batch {}
    total
}

/// Background pruning: bounded batches, each in its own transaction.
fn prune(schema: &str) {
    let batch = guc::PRUNE_BATCH.get() as i64;
    let keep = format!("'{} hours'", guc::LOG_RETENTION_HOURS.get());
    let mut steps = vec![
        crate::offline::prune::with_horizon(schema, &prune_log_sql(schema, &keep, batch)),
        prune_runs_sql(schema, guc::RUNS_RETENTION_DAYS.get(), batch),
        crate::offline::prune::push_ids_sql(schema, batch),
    ];
    steps.extend(crate::notify::prune_sql(schema, batch));
    for sql in steps {
        for _ in 0..100 {
            if stopping() {
                return;
            }
            match in_txn(|| delete_batch(&sql)) {
                Ok(n) if n == batch => continue,
                Ok(_) => break,
                Err(e) => {
                    report("pruning", &e);
                    break;
                }
            }
        }
    }
}
