//! Creating sync configs.

use crate::core::args;
use crate::pg::OrRaise;
use crate::sync::config::{self, NewConfig};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

/// Create the config `name` syncing `entity_type` between two registered systems.
/// Returns its id. Writes sync_configs; the caller needs SELECT, INSERT, UPDATE and
/// DELETE on both tables and becomes the config's owner.
#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn sync_create_config(
    name: Option<&str>,
    source_system: Option<&str>,
    target_system: Option<&str>,
    entity_type: Option<&str>,
    field_mapping: default!(Option<JsonB>, "NULL"),
    conflict_strategy: default!(Option<&str>, "'latest_wins'"),
    sync_direction: default!(Option<&str>, "'bidirectional'"),
    sync_interval: default!(Option<Interval>, "'5 minutes'"),
    match_on: default!(Option<Vec<Option<String>>>, "NULL"),
    target_entity_type: default!(Option<&str>, "NULL"),
) -> i64 {
    const F: &str = "sync_create_config";
    config::create(NewConfig {
        name: args::name(name, F, "name").or_raise(),
        source_system: args::name(source_system, F, "source_system").or_raise(),
        target_system: args::name(target_system, F, "target_system").or_raise(),
        entity_type: args::name(entity_type, F, "entity_type").or_raise(),
        field_mapping,
        conflict_strategy: args::required(conflict_strategy, F, "conflict_strategy").or_raise(),
        sync_direction: args::required(sync_direction, F, "sync_direction").or_raise(),
        sync_interval: args::required(sync_interval, F, "sync_interval").or_raise(),
        match_on: args::no_null_elements(match_on, F, "match_on").or_raise(),
        target_entity_type: args::optional_name(target_entity_type, F, "target_entity_type")
            .or_raise(),
    })
}
