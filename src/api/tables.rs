//! Registering tables as endpoints.

use crate::capture::endpoints;
use crate::core::args;
use crate::pg::regclass::Regclass;
use crate::pg::OrRaise;
use pgrx::prelude::*;

/// Register `relation` as the endpoint (`system`, `entity_type`), keyed by
/// `key_column` (NULL: its one-column primary key), and install the capture trigger.
/// Returns the endpoint id. Writes sync_endpoints; the caller must own the table.
#[pg_extern]
fn sync_register_table(
    system: Option<&str>,
    entity_type: Option<&str>,
    relation: Option<Regclass>,
    key_column: default!(Option<&str>, "NULL"),
) -> i64 {
    const F: &str = "sync_register_table";
    let system = args::name(system, F, "system").or_raise();
    let entity_type = args::name(entity_type, F, "entity_type").or_raise();
    let relation = args::required(relation, F, "relation").or_raise().open();
    // a column name is an identifier: at most 63 bytes
    let key_column = args::optional_name(key_column, F, "key_column").or_raise();
    endpoints::register_table(system, entity_type, relation, key_column)
}

/// Remove the endpoint (`system`, `entity_type`) and its triggers; refused while a
/// config uses it. Its change records stay until pruned.
#[pg_extern]
fn sync_unregister_table(system: Option<&str>, entity_type: Option<&str>) {
    const F: &str = "sync_unregister_table";
    let system = args::name(system, F, "system").or_raise();
    let entity_type = args::name(entity_type, F, "entity_type").or_raise();
    endpoints::unregister(system, entity_type)
}
