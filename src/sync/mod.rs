//! One run of a config: `sync_execute` and the worker call `execute`.
//!
//! The run is a pipeline over batches of entity pairs:
//! 1. lock the config, take the snapshot window since its position (`mod.rs`);
//! 2. read the work list through a cursor, one row per changed side (`worklist`),
//!    folded into one item per pair (`core::plan::fold`);
//! 3. per batch (`run::Run::batch`): copy one-sided changes with one statement where
//!    the mapping allows (`fastpath`), load rows, bases, pending conflicts and change
//!    times (`load`), decide every write in pure code (`core::plan::plan`), apply it
//!    set-based (`apply`) in a subtransaction, retrying or isolating failing pairs
//!    (`isolate`);
//! 4. record the new position and the run, all in the caller's transaction: a crash
//!    redoes the run, never half of it.
//!
//! Statement text is built in `sql` (static statements in `sql/statements/`).

mod apply;
pub mod config;
pub mod conflicts;
mod fastpath;
mod isolate;
mod load;
mod run;
pub mod sql;
mod worklist;

pub use apply::{delete_rows, insert_rows, new_keys, update_rows};
pub use load::load_rows;
pub use sql::base_checksum_sql;

use crate::capture::changes;
use crate::core::cursor::Start;
use crate::core::plan::{self, WorkItem};
use crate::pg::db::{self, spi_fail};
use crate::pg::fail;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use pgrx::prelude::*;
use pgrx::{JsonB, PgMemoryContexts};
use run::Run;
use serde_json::{json, Value};

/// Advisory lock class for "a run of config N is in progress".
pub const LOCK_CLASS: i32 = 0x5359_4e43; // 'SYNC'

/// The counts of a run (its result) or of one applied batch.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub synced: i64,
    pub conflicts: i64,
    pub errors: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    /// pairs brought up to date by the one-statement column copy (`copy_across`), not
    /// the merge; part of `synced`/`updated`
    pub copied: i64,
    /// targets linked by this run (creates, matches), so later batches skip them
    pub new_targets: Vec<String>,
}

/// A jsonb parameter from a value built in Rust.
pub(crate) fn jsonb_arg(v: Value) -> JsonB {
    JsonB(v)
}

/// `sync_execute`: run config `config_id` now, recorded as started by `cron` when
/// pg_cron runs it and by `manual` otherwise. Returns the run result.
pub fn execute_now(config_id: i64) -> Value {
    // pg_cron runs jobs in a background worker of type pg_cron, or over a connection
    // named pg_cron: record such runs as started by cron
    let by = db::one::<String>(
        "SELECT CASE WHEN backend_type ILIKE 'pg_cron%' OR application_name = 'pg_cron' THEN 'cron' ELSE 'manual' END
           FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        &[],
    )
    .unwrap_or_else(|| "manual".into());
    execute(config_id, &by)
}

/// Run a config now. `started_by` is recorded in sync_runs (manual, worker, cron).
pub fn execute(config_id: i64, started_by: &str) -> Value {
    execute_run(config_id, started_by, None)
}

/// Run a config, completing the `sync_runs` row `run_id` if the caller recorded one
/// beforehand (the worker does, in its own transaction, so a run that dies is seen).
pub fn execute_run(config_id: i64, started_by: &str, run_id: Option<i64>) -> Value {
    let caller = security::current_user();
    security::as_extension_owner(|| run_as_extension_owner(caller, config_id, started_by, run_id))
}

/// `execute_run` once running as the extension's owner: `caller` (who called) must
/// have the privileges of the config's owner. The run's writes into the two tables
/// each run as that table's owner (see `security::as_table_owner`).
fn run_as_extension_owner(
    caller: pg_sys::Oid,
    config_id: i64,
    started_by: &str,
    run_id: Option<i64>,
) -> Value {
    let iso = db::one::<String>("SELECT current_setting('transaction_isolation')", &[])
        .unwrap_or_default();
    if iso != "read committed" {
        fail(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("sync_execute must run at READ COMMITTED isolation, not {iso}"),
        );
    }
    let cfg = config::load(config_id);
    security::require_privileges_of(
        caller,
        cfg.owner,
        &format!("run sync config {config_id} (\"{}\")", cfg.name),
    );
    let locked = db::one::<bool>(
        "SELECT pg_try_advisory_xact_lock($1, $2::int)",
        &[LOCK_CLASS.into(), config_id.into()],
    )
    .unwrap_or(false);
    if !locked {
        fail(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            &format!(
                "sync config {config_id} (\"{}\") is already running in another session; runs of one config never overlap, try again when it finishes",
                cfg.name
            ),
        );
    }
    // re-read the position now that we hold the lock: a run that just finished moved it
    let cfg = config::load(config_id);
    let schema = ext_schema();
    let started = std::time::Instant::now();
    let cur = changes::current_position();
    // a position taken in another database (a restored dump) is not read from: the run
    // reconciles every row through the links, as an initial load does
    let start = changes::run_start(config_id, cfg.position.as_deref());
    let window = changes::window_from(&start, cur.clone());
    if start == Start::Reconcile {
        log!(
            "sync_engine: config {config_id} (\"{}\"): its position was taken in another database (restored from a dump?); this run compares every row through the existing links",
            cfg.name
        );
    }
    let run_id = match run_id {
        Some(id) => id,
        None => db::one::<i64>(
            &sql::statement(sql::statements::START_RUN, &schema),
            &[config_id.into(), started_by.into()],
        )
        .expect("run id"),
    };
    let tagged = crate::capture::origin::tag_writes(cfg.origin());
    let mut run = Run::new(&cfg, schema.clone(), run_id, &start, &window);
    let work_sql = match start {
        Start::After(_) => sql::work_sql(&cfg, &schema, &window),
        Start::InitialLoad | Start::Reconcile => sql::initial_work_sql(&cfg, &schema),
    };
    // a first run into an empty side copies every row in one statement where it can
    let copied_all = start == Start::InitialLoad && run.initial_copy().is_some();
    if !copied_all {
        work_through(&mut run, &work_sql, &cfg.origin());
    }

    debug1!(
        "sync_engine: config {config_id}: load {} ms, load+merge {} ms, apply {} ms",
        run.timing.load / 1000,
        run.timing.merge / 1000,
        run.timing.apply / 1000
    );
    let s = &run.stats;
    let duration_ms = started.elapsed().as_millis() as i64;
    let result = json!({
        "run_id": run_id, "config_id": config_id, "synced": s.synced, "conflicts": s.conflicts,
        "errors": s.errors, "created": s.created, "updated": s.updated, "deleted": s.deleted,
        "copied": s.copied, "duration_ms": duration_ms, "reconciled": start == Start::Reconcile,
    });
    drop(tagged);
    db::run(
        &sql::statement(sql::statements::FINISH_CONFIG, &schema),
        &[config_id.into(), cur.to_string().into()],
    );
    db::run(
        &sql::statement(sql::statements::FINISH_RUN, &schema),
        &[
            run_id.into(),
            (if s.errors > 0 { "partial" } else { "success" }).into(),
            JsonB(result.clone()).into(),
        ],
    );
    result
}

/// Read the work list `work_sql` through a cursor and hand each fetch, folded into one
/// item per pair, to `run.batch`. Each batch (its fetch included) works in a memory
/// context of its own, deleted afterwards: memory stays bounded however long the
/// backlog is.
/// - The work list hashes and sorts one row per changed entity: it gets at least
///   16 MB of work_mem for its first fetch, then the session's value again.
fn work_through(run: &mut Run<'_>, work_sql: &str, origin: &str) {
    let prev_work_mem = db::one::<String>("SELECT current_setting('work_mem')", &[]);
    db::run(
        "SELECT set_config('work_mem', '16MB', true)
          WHERE pg_size_bytes(current_setting('work_mem')) < 16 * 1024 * 1024",
        &[],
    );
    Spi::connect(|client| {
        let mut cursor = client
            .try_open_cursor(work_sql, &[run.cfg.id.into(), origin.into()])
            .unwrap_or_else(|e| spi_fail(e));
        // the work list is sorted by pair; rows of one pair are folded together, and
        // the last pair of a fetch waits for the next one, which may continue it
        let batch = i64::from(crate::pg::guc::BATCH_SIZE.get());
        let mut carry: Option<WorkItem> = None;
        let mut first = true;
        loop {
            let mut cx = PgMemoryContexts::new("sync_engine batch");
            let rows = unsafe { cx.switch_to(|_| worklist::fetch(&mut cursor, batch)) };
            if std::mem::take(&mut first) {
                // the first fetch ran the work list's sorts and hashes: the batches'
                // own statements get the session's work_mem again
                db::run(
                    "SELECT set_config('work_mem', $1, true)",
                    &[prev_work_mem.clone().unwrap_or_else(|| "4MB".into()).into()],
                );
            }
            let more = rows.len() == batch as usize;
            let (items, next) = plan::fold(carry.take(), rows, more);
            carry = next;
            if !items.is_empty() {
                unsafe { cx.switch_to(|_| run.batch(items)) };
            }
            drop(cx);
            if !more {
                break;
            }
        }
    });
}
