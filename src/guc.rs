//! Settings (GUCs) of sync_engine.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Database the background worker works in (like pg_cron's cron.database_name).
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// Seconds the worker sleeps between looks at the configs.
pub static NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(5);
/// Master switch for the worker's scheduled runs.
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Hours change_log rows are kept (for audit) after every consumer has passed them.
pub static LOG_RETENTION_HOURS: GucSetting<i32> = GucSetting::<i32>::new(168);
/// Days of sync_runs history kept.
pub static RUNS_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
/// Rows deleted per pruning transaction.
pub static PRUNE_BATCH: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// Entity pairs a run reads, merges and writes at a time.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(5_000);

pub fn init() {
    // a postmaster-level setting can only be defined while the library is preloaded
    // (defining it later, e.g. at CREATE EXTENSION, is a FATAL error); only the worker,
    // which needs preloading anyway, reads it
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"sync_engine.database",
            c"Database in which the sync_engine background worker runs configs.",
            c"The worker waits until the extension exists there.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_int_guc(
        c"sync_engine.naptime",
        c"Seconds between the worker's looks at due configs.",
        c"",
        &NAPTIME,
        1,
        3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"sync_engine.enabled",
        c"Whether the background worker runs configs on their interval.",
        c"",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.log_retention",
        c"Hours change_log rows are kept after every config has consumed them.",
        c"",
        &LOG_RETENTION_HOURS,
        0,
        24 * 3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.runs_retention",
        c"Days of sync_runs history the worker keeps.",
        c"",
        &RUNS_RETENTION_DAYS,
        1,
        3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.batch_size",
        c"Entity pairs sync_execute reads, merges and writes at a time.",
        c"Bigger batches mean fewer statements and more memory per batch.",
        &BATCH_SIZE,
        1,
        100_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.prune_batch",
        c"Rows the worker deletes per pruning transaction.",
        c"",
        &PRUNE_BATCH,
        100,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
}
