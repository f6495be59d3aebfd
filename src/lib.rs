//! sync_engine: bidirectional, conflict-aware data sync inside PostgreSQL.
//!
//! Functional core (plain Rust, unit-tested without Postgres): `cursor`, `rowjson`,
//! `mapping`, `merge`, `args` (the public functions' NULL and name checks). Imperative shell (SPI, triggers): `capture`, `endpoints`,
//! `changes`, `engine`, `conflicts`.

use pgrx::prelude::*;

pub mod args;
pub mod build_info;
pub mod capture;
pub mod changes;
pub mod config;
pub mod conflicts;
pub mod cursor;
pub mod db;
pub mod endpoints;
pub mod engine;
pub mod guc;
pub mod jsonb;
pub mod launch_plan;
pub mod launcher;
pub mod mapping;
pub mod merge;
pub mod notify;
pub mod offline;
pub mod origin;
pub mod rowjson;
pub mod security;
pub mod subxact;
pub mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/notify.sql", name = "notify", requires = ["schema"]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    capture::init();
    worker::register();
    notify::init();
}

/// Raise an ERROR with a SQLSTATE a caller can match on.
pub fn fail(code: PgSqlErrorCode, msg: &str) -> ! {
    ereport!(ERROR, code, msg.to_string());
}

/// The schema the extension was created in, quoted for use in SQL text.
pub fn ext_schema() -> String {
    let s = db::one::<String>(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'sync_engine'",
        &[],
    )
    .unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "extension sync_engine is not installed in this database",
        )
    });
    capture::quote_ident(&s)
}

/// Unquoted extension schema name.
pub fn ext_schema_raw() -> String {
    let q = ext_schema();
    q[1..q.len() - 1].replace("\"\"", "\"")
}

/// Quote a SQL string literal; one with a backslash as an escape string (`E'..'`), so
/// it reads the same whatever `standard_conforming_strings` says.
pub fn quote_literal(s: &str) -> String {
    let q = s.replace('\'', "''");
    if q.contains('\\') {
        format!("E'{}'", q.replace('\\', "\\\\"))
    } else {
        format!("'{q}'")
    }
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
