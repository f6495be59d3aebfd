//! Running syncs, resolving conflicts, pruning.

use crate::core::args;
use crate::pg::OrRaise;
use crate::sync::{self, conflicts};
use crate::worker;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Run config `config_id` now, in the caller's transaction. Returns the run result
/// (`{"run_id","synced","conflicts","errors","created","updated","deleted","copied",
/// "duration_ms","reconciled"}`).
#[pg_extern(volatile)]
fn sync_execute(config_id: Option<i64>) -> JsonB {
    let config_id = args::required(config_id, "sync_execute", "config_id").or_raise();
    JsonB(sync::execute_now(config_id))
}

/// Resolve pending conflict `conflict_id` with `choice` (`source`, `target`, or
/// `merged` with the values in `merged`). Returns what was written.
#[pg_extern(volatile)]
fn sync_resolve_conflict(
    conflict_id: Option<i64>,
    choice: Option<&str>,
    merged: default!(Option<JsonB>, "NULL"),
) -> JsonB {
    const F: &str = "sync_resolve_conflict";
    let conflict_id = args::required(conflict_id, F, "conflict_id").or_raise();
    let choice = args::required(choice, F, "choice").or_raise();
    conflicts::resolve_conflict(conflict_id, choice, merged)
}

/// Delete change records older than `keep` (NULL: `sync_engine.log_retention`) that
/// every reader has passed. Returns how many were deleted.
#[pg_extern(volatile)]
fn sync_prune(keep: default!(Option<pgrx::datum::Interval>, "NULL")) -> i64 {
    worker::prune_now(keep)
}
