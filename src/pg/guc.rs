//! Settings (GUCs) of sync_engine.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// The one database to serve (the older setting, like pg_cron's cron.database_name);
/// `DATABASES` wins when it names any. Unset: every database with the extension.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Comma-separated databases the launcher starts schedulers in. Unset or empty:
/// `DATABASE` if set, else every database that has the extension.
pub static DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Seconds between the launcher's looks at pg_database (new databases, ended schedulers).
pub static LAUNCHER_NAPTIME: GucSetting<i32> = GucSetting::<i32>::new(10);
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
/// Most changes one sync_push call takes.
pub static PUSH_MAX_BATCH: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Hours a pushed change id is remembered (a batch re-sent later applies again).
pub static PUSH_ID_RETENTION_HOURS: GucSetting<i32> = GucSetting::<i32>::new(720);

pub fn init() {
    // a postmaster-level setting can only be defined while the library is preloaded
    // (defining it later, e.g. at CREATE EXTENSION, is a FATAL error); only the worker,
    // which needs preloading anyway, reads it
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"sync_engine.database",
            c"The one database in which a sync_engine scheduler runs configs.",
            c"Ignored when sync_engine.databases names any. Unset: every database that has the extension.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_string_guc(
        c"sync_engine.databases",
        c"Comma-separated databases in which sync_engine schedulers run configs.",
        c"Empty: sync_engine.database if set, else every database that has the extension.",
        &DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.launcher_naptime",
        c"Seconds between the launcher's looks for databases and ended schedulers.",
        c"CREATE EXTENSION and a scheduler's exit wake it at once.",
        &LAUNCHER_NAPTIME,
        1,
        3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
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
    GucRegistry::define_int_guc(
        c"sync_engine.push_max_batch",
        c"Most changes one sync_push call takes; a larger batch is refused whole.",
        c"",
        &PUSH_MAX_BATCH,
        1,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.push_id_retention",
        c"Hours sync_push remembers a pushed change id (a re-sent change is a duplicate).",
        c"Pruned by the worker and sync_prune, with change_log.",
        &PUSH_ID_RETENTION_HOURS,
        1,
        24 * 3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
    crate::notify::settings::init();
}

/// The value of a string setting, None when unset.
pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|c| c.to_string_lossy().into_owned())
}
