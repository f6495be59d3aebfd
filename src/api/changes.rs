//! Reading change records by snapshot position.

use crate::capture::changes;
use crate::core::args;
use crate::pg::OrRaise;
use pgrx::prelude::*;
use pgrx::JsonB;

/// The current read position (a snapshot, as text). Pass it as `until` now and as
/// `since` on the next read.
#[pg_extern(volatile)]
fn sync_position() -> String {
    changes::current_position().to_string()
}

/// Changes that became visible after `since` and are visible at `until`
/// (`since` NULL = from the beginning), optionally for one endpoint, in id order.
/// Consecutive windows never return a change twice and never skip one.
#[pg_extern(stable)]
#[allow(clippy::type_complexity)]
fn sync_changes(
    since: Option<&str>,
    until: Option<&str>,
    system: default!(Option<&str>, "NULL"),
    entity_type: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(system, String),
        name!(entity_type, String),
        name!(entity_id, String),
        name!(operation, String),
        name!(fields, JsonB),
        name!(changed_at, TimestampWithTimeZone),
        name!(txid, i64),
        name!(origin, Option<String>),
        name!(checksum, Option<String>),
    ),
> {
    const F: &str = "sync_changes";
    let until = args::required(until, F, "until").or_raise();
    let system = args::optional_name(system, F, "system").or_raise();
    let entity_type = args::optional_name(entity_type, F, "entity_type").or_raise();
    TableIterator::new(changes::changes(since, until, system, entity_type))
}
