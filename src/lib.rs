//! sync_engine: bidirectional, conflict-aware data sync inside PostgreSQL.
//!
//! A functional core and an imperative shell (see docs/architecture.md):
//! - `api`: the SQL surface, thin (argument checks, then a call into a module below);
//! - `core`: plain Rust without pgrx: merge, batch plan, mapping, cursors, checksums;
//! - `sync`: one run of a config (work list -> load -> plan -> apply);
//! - `capture`: the capture trigger, endpoints, change windows;
//! - `offline`: sync_push / sync_pull / sync_snapshot;
//! - `notify`: the outbox, webhooks and Redis, the notifier worker;
//! - `worker`: the launcher and per-database schedulers;
//! - `pg`: SPI helpers, subtransactions, settings, roles, quoting, errors.

use pgrx::prelude::*;

pub mod api;
pub mod capture;
pub mod core;
pub mod notify;
pub mod offline;
pub mod pg;
pub mod sync;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/notify.sql", name = "notify", requires = ["schema"]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::guc::init();
    capture::init();
    worker::register();
    notify::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod pgtests;

/// This module is required by `cargo pgrx test` invocations.
/// It must be visible at the root of your extension crate.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'sync_engine,pg_cron'",
            "cron.database_name = 'pgrx_tests'",
            "cron.use_background_workers = on",
            "max_worker_processes = 16",
            "max_prepared_transactions = 8",
            "sync_engine.database = 'pgrx_tests'",
            "sync_engine.naptime = 1",
        ]
    }
}
