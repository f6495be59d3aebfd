//! The background workers' state and wake-up (internal functions, declared in
//! sql/schema.sql).

use crate::worker::launcher;
use pgrx::prelude::*;

/// The scheduler of every database, from shared memory (the `sync_workers` view).
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)]
fn sync_worker_states() -> TableIterator<
    'static,
    (
        name!(datid, pg_sys::Oid),
        name!(datname, String),
        name!(state, String),
        name!(pid, Option<i32>),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(last_tick, Option<TimestampWithTimeZone>),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<TimestampWithTimeZone>),
        name!(last_exit, Option<String>),
        name!(starts, i64),
        name!(start_failures, i64),
    ),
> {
    TableIterator::new(launcher::worker_states())
}

/// Once the current transaction commits, wake the launcher so it starts this
/// database's scheduler.
#[pg_extern(sql = false, volatile)]
fn sync_wake_launcher() {
    launcher::wake_launcher_at_commit()
}
