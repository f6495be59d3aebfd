//! Sync configs: creation (validated whole) and loading for a run.

use crate::capture::endpoints::{self, Endpoint};
use crate::core::mapping::Mapping;
use crate::core::merge::{Direction, Row, Strategy, ValueKind};
use crate::core::plan::Shape;
use crate::core::types::{Side, Sides};
use crate::pg::db;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use crate::pg::{bad, fail};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::collections::HashMap;

pub struct Config {
    pub id: i64,
    pub name: String,
    pub source: Endpoint,
    pub target: Endpoint,
    /// the mapping, and the value kinds of both tables' columns
    pub shape: Shape,
    pub strategy: Strategy,
    pub direction: Direction,
    /// target-space fields whose values identify the same entity on both sides
    pub match_on: Vec<String>,
    pub position: Option<String>,
    /// the role that created the config: running it or resolving its conflicts needs
    /// this role's privileges (INVALID when that role was dropped: superusers only)
    pub owner: pg_sys::Oid,
}

impl Config {
    /// A config built in memory, for unit tests of the statement builders.
    #[cfg(test)]
    pub fn for_tests(
        id: i64,
        source: Endpoint,
        target: Endpoint,
        shape: Shape,
        strategy: Strategy,
        direction: Direction,
    ) -> Config {
        Config {
            id,
            name: format!("config {id}"),
            source,
            target,
            shape,
            strategy,
            direction,
            match_on: vec![],
            position: None,
            owner: pg_sys::Oid::INVALID,
        }
    }

    /// The endpoint of `side`.
    pub fn endpoint(&self, side: Side) -> &Endpoint {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// Target-space fields in mapping order.
    pub fn fields(&self) -> Vec<String> {
        self.shape.fields()
    }
    /// Source row -> target-space values (`Shape::project`).
    pub fn project(&self, row: &Row) -> Result<Row, String> {
        self.shape.project(row)
    }
    /// Target-space values -> source columns (`Shape::unproject`).
    pub fn unproject(&self, row: &Row) -> Result<Row, String> {
        self.shape.unproject(row)
    }
    /// The source columns to write so the source holds `merged` (`Shape::source_changes`).
    pub fn source_changes(&self, merged: &Row, cur: &Row) -> Result<Row, String> {
        self.shape.source_changes(merged, cur)
    }

    /// The tag the engine's writes carry in change_log.origin: `origin_of(id)`.
    pub fn origin(&self) -> String {
        origin_of(self.id)
    }
}

/// Validate a mapping against both endpoints; NULL mapping = same-named columns.
fn resolve_mapping(
    mapping: Option<&serde_json::Value>,
    source: &Endpoint,
    target: &Endpoint,
) -> Mapping {
    let m = match mapping {
        None | Some(serde_json::Value::Null) => {
            let common: Vec<String> = source
                .columns
                .iter()
                .filter(|c| {
                    **c != source.key_column
                        && **c != target.key_column
                        && target.columns.contains(c)
                })
                .cloned()
                .collect();
            if common.is_empty() {
                bad(format!(
                    "{} and {} have no same-named columns besides their keys; pass a field_mapping",
                    source.table, target.table
                ));
            }
            Mapping::identity(&common)
        }
        Some(v) => Mapping::parse(v).unwrap_or_else(|e| bad(e.message)),
    };
    for (side, cols, e) in [
        ("source", m.source_columns(), source),
        ("target", m.target_columns(), target),
    ] {
        for c in cols {
            if !e.columns.contains(&c) {
                fail(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    &format!(
                        "field_mapping names {side} column \"{c}\", which {} does not have; its columns are: {}",
                        e.table,
                        e.columns.join(", ")
                    ),
                );
            }
            if c == e.key_column {
                bad(format!(
                    "field_mapping maps \"{c}\", the key of {}; keys are linked by the engine, not mapped",
                    e.table
                ));
            }
        }
    }
    m
}

/// match_on names may be source or target column names of the mapping; they are kept
/// as the target-space fields they feed.
fn resolve_match_on(names: &[String], m: &Mapping) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let unit = m
            .fields
            .iter()
            .find(|f| f.target.contains(n) || f.source.contains(n));
        match unit {
            Some(u) if u.target.contains(n) => out.push(n.clone()),
            Some(u) => out.extend(u.target.iter().cloned()),
            None => bad(format!(
                "match_on names \"{n}\", which is not a mapped field; mapped target fields are: {}",
                m.target_columns().join(", ")
            )),
        }
    }
    out.dedup();
    out
}

/// The checked arguments of `sync_create_config`.
pub struct NewConfig<'a> {
    pub name: &'a str,
    pub source_system: &'a str,
    pub target_system: &'a str,
    pub entity_type: &'a str,
    pub field_mapping: Option<JsonB>,
    pub conflict_strategy: &'a str,
    pub sync_direction: &'a str,
    pub sync_interval: Interval,
    pub match_on: Option<Vec<String>>,
    pub target_entity_type: Option<&'a str>,
}

/// `sync_create_config`: create the config described by `a` and return its id.
pub fn create(a: NewConfig<'_>) -> i64 {
    Strategy::parse(a.conflict_strategy).unwrap_or_else(|e| bad(e));
    Direction::parse(a.sync_direction).unwrap_or_else(|e| bad(e));
    let caller = security::current_user();
    security::as_extension_owner(|| create_config(caller, a))
}

/// `sync_create_config` once running as the extension's owner; `caller` (who called)
/// needs SELECT, INSERT, UPDATE and DELETE on both tables and becomes the owner.
/// Writes sync_configs.
fn create_config(caller: pg_sys::Oid, a: NewConfig<'_>) -> i64 {
    let NewConfig {
        name,
        source_system,
        target_system,
        entity_type,
        field_mapping,
        conflict_strategy,
        sync_direction,
        sync_interval,
        match_on,
        target_entity_type,
    } = a;
    let target_et = target_entity_type.unwrap_or(entity_type);
    let source = endpoints::load(source_system, entity_type);
    let target = endpoints::load(target_system, target_et);
    for e in [&source, &target] {
        security::require_table_privileges(
            caller,
            e.relid,
            &e.table,
            &security::SYNC_PRIVILEGES,
            "create a sync config over it",
        );
        // runs read and write every row as the table's owner
        if security::row_security_restricts(caller, e.relid) {
            fail(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                &format!(
                    "sync_create_config: {} has row-level security enabled for role {}; a sync reads and writes every row as the table's owner, past the policies, so it refuses to create a config over it (create it as a role the policies do not restrict)",
                    e.table,
                    security::role_name(caller)
                ),
            );
        }
    }
    if source.id == target.id {
        bad(format!("source and target are the same endpoint ({source_system}.{entity_type}); a config syncs two different tables"));
    }
    let mapping = resolve_mapping(field_mapping.as_ref().map(|j| &j.0), &source, &target);
    let match_on = match_on.unwrap_or_default();
    resolve_match_on(&match_on, &mapping);
    let positive =
        db::one::<bool>("SELECT $1 > interval '0'", &[sync_interval.into()]).unwrap_or(false);
    if !positive {
        bad("sync_interval must be positive, e.g. '5 minutes'".into());
    }
    let schema = ext_schema();
    if db::one::<i64>(
        &format!("SELECT id FROM {schema}.sync_configs WHERE name = $1"),
        &[name.into()],
    )
    .is_some()
    {
        fail(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            &format!("a sync config named \"{name}\" already exists"),
        );
    }
    db::one::<i64>(
        &format!(
            "INSERT INTO {schema}.sync_configs (name, source_system, target_system, entity_type, target_entity_type,
                 source_endpoint_id, target_endpoint_id, field_mapping, conflict_strategy, sync_direction,
                 sync_interval, match_on, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::oid::regrole) RETURNING id"
        ),
        &[
            name.into(),
            source_system.into(),
            target_system.into(),
            entity_type.into(),
            target_et.into(),
            source.id.into(),
            target.id.into(),
            field_mapping.into(),
            conflict_strategy.into(),
            sync_direction.into(),
            sync_interval.into(),
            (if match_on.is_empty() { None } else { Some(match_on) }).into(),
            caller.into(),
        ],
    )
    .expect("INSERT RETURNING gives a row")
}

/// The origin tag of config `id`'s writes (change_log.origin). sql/schema.sql's
/// `sync_config_origin(id)` says the same for SQL (the sync_status view); a test keeps
/// the two equal.
/// - Built here, not read from SQL: a database created by an older build of this
///   version runs with this library too.
pub fn origin_of(id: i64) -> String {
    format!("sync_engine:config:{id}")
}

/// Each column of `e` by name, with the kind of value its type holds.
fn column_kinds(e: &Endpoint) -> HashMap<String, ValueKind> {
    e.columns
        .iter()
        .zip(&e.column_types)
        .map(|(c, t)| (c.clone(), ValueKind::of_type(t)))
        .collect()
}

/// Load a config for a run; ERROR when it does not exist.
pub fn load(id: i64) -> Config {
    let schema = ext_schema();
    let sql = format!(
        "SELECT name, source_endpoint_id, target_endpoint_id, field_mapping, conflict_strategy,
                sync_direction, match_on, position, owner::oid AS owner
           FROM {schema}.sync_configs WHERE id = $1"
    );
    let row = Spi::connect(|client| {
        let t = client
            .select(&sql, Some(1), &[id.into()])
            .unwrap_or_else(|e| db::spi_fail(e));
        t.into_iter().next().map(|r| {
            let text = |name: &str| db::named::<String>(&r, name).unwrap_or_default();
            (
                [
                    text("name"),
                    text("conflict_strategy"),
                    text("sync_direction"),
                ],
                Sides::new(
                    db::named::<i64>(&r, "source_endpoint_id").unwrap_or_default(),
                    db::named::<i64>(&r, "target_endpoint_id").unwrap_or_default(),
                ),
                db::named::<JsonB>(&r, "field_mapping").map(|j| j.0),
                db::named::<Vec<String>>(&r, "match_on").unwrap_or_default(),
                db::named::<String>(&r, "position"),
                db::named::<pg_sys::Oid>(&r, "owner"),
            )
        })
    });
    let Some(([name, strategy, direction], endpoint_ids, mapping, match_on, position, owner)) = row
    else {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            &format!("sync config {id} does not exist"),
        );
    };
    let source = endpoints::load_by_id(endpoint_ids.source);
    let target = endpoints::load_by_id(endpoint_ids.target);
    let mapping = resolve_mapping(mapping.as_ref(), &source, &target);
    let match_on = resolve_match_on(&match_on, &mapping);
    let shape = Shape {
        mapping,
        kinds: Sides::new(column_kinds(&source), column_kinds(&target)),
    };
    Config {
        id,
        name,
        source,
        target,
        shape,
        strategy: Strategy::parse(&strategy).unwrap_or_else(|e| bad(e)),
        direction: Direction::parse(&direction).unwrap_or_else(|e| bad(e)),
        match_on,
        position,
        owner: owner.unwrap_or(pg_sys::Oid::INVALID),
    }
}
