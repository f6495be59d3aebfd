//! Offline clients and connectors: push, pull, snapshot.

use crate::core::args;
use crate::offline::{pull, push};
use crate::pg::OrRaise;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Apply a batch of changes from client `client_id` to the endpoint (`system`,
/// `entity_type`). Returns per-change results.
#[pg_extern(volatile)]
fn sync_push(
    system: Option<&str>,
    entity_type: Option<&str>,
    changes: Option<JsonB>,
    client_id: Option<&str>,
    conflict_strategy: default!(Option<&str>, "'latest_wins'"),
) -> JsonB {
    const F: &str = "sync_push";
    let system = args::name(system, F, "system").or_raise();
    let entity_type = args::name(entity_type, F, "entity_type").or_raise();
    let changes = args::required(changes, F, "changes").or_raise().0;
    let client_id = args::client_id(client_id, F).or_raise();
    let strategy = args::required(conflict_strategy, F, "conflict_strategy").or_raise();
    push::sync_push(system, entity_type, changes, client_id, strategy)
}

/// The endpoint's change records after `cursor` (NULL: from now), at most
/// `max_changes`, leaving out the pushes of `client_id`.
#[pg_extern(volatile)]
fn sync_pull(
    system: Option<&str>,
    entity_type: Option<&str>,
    cursor: default!(Option<&str>, "NULL"),
    max_changes: default!(Option<i32>, "1000"),
    client_id: default!(Option<&str>, "NULL"),
) -> JsonB {
    const F: &str = "sync_pull";
    let system = args::name(system, F, "system").or_raise();
    let entity_type = args::name(entity_type, F, "entity_type").or_raise();
    let max = args::positive(max_changes, F, "max_changes").or_raise();
    let client_id = client_id.map(|c| args::client_id(Some(c), F).or_raise());
    pull::sync_pull(system, entity_type, cursor, max, client_id)
}

/// The endpoint's current rows by key after `after_key`, at most `max_rows`, with a
/// cursor to pull from on the first page.
#[pg_extern(volatile)]
fn sync_snapshot(
    system: Option<&str>,
    entity_type: Option<&str>,
    after_key: default!(Option<&str>, "NULL"),
    max_rows: default!(Option<i32>, "1000"),
) -> JsonB {
    const F: &str = "sync_snapshot";
    let system = args::name(system, F, "system").or_raise();
    let entity_type = args::name(entity_type, F, "entity_type").or_raise();
    let max = args::positive(max_rows, F, "max_rows").or_raise();
    pull::sync_snapshot(system, entity_type, after_key, max)
}
