//! sync_resolve_conflict for a conflict of a pushed change (sync_conflicts.client_id
//! set, no config). The client is the source side, the endpoint's table the target:
//! - 'source' writes the client's values (update_update: its fields; update_delete:
//!   re-creates the row; delete_update: deletes the row);
//! - 'target' keeps the table as it is;
//! - 'merged' writes the given values (update_update: one for every conflicting field;
//!   update_delete: re-creates the row with the client's values overlaid by them;
//!   delete_update: keeps the row, updated with them).
//!
//! A choice that would overwrite or delete an edit of the row made after the conflict
//! was recorded is refused (55000), as for a config's conflict.
//!
//! The write is an ordinary one (no origin), so it reaches every client's pull and
//! every config, the pushing client included. The caller needs SELECT and the write's
//! privilege (UPDATE, INSERT or DELETE) on the table.

use crate::capture::endpoints;
use crate::core::merge::ConflictKind;
use crate::core::resolve::{self, Choice};
use crate::core::types::Sides;
use crate::pg::bad;
use crate::pg::db::{self, spi_fail};
use crate::pg::fail;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use crate::pg::OrRaise;
use crate::sync::{delete_rows, insert_rows, load_rows, update_rows};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

/// ERROR 55000 when a choice would overwrite or delete an edit of the table's row made
/// after the conflict was recorded (`core::resolve::check_unseen_edits`, the table being
/// the target side): the row must still hold the conflict's `target_value`, i.e. the
/// conflicting fields (update_update) or the whole row (delete_update).
fn refuse_unseen_edits(
    c: &PushConflict,
    choice: &str,
    row: Option<&Map<String, Value>>,
    conflict_id: i64,
) {
    let kind = crate::sync::conflicts::recorded_kind(conflict_id, &c.kind);
    let recorded = match (&c.server_value, c.fields.as_slice()) {
        // check_unseen_edits takes a one-field update conflict's bare value
        (Value::Object(m), [f]) if kind == ConflictKind::UpdateUpdate => m.get(f).cloned(),
        (v @ Value::Object(_), _) => Some(v.clone()),
        _ => None,
    };
    let all: Vec<String> = match &c.server_value {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    resolve::check_unseen_edits(
        kind,
        Choice::parse(choice).or_raise(),
        &c.fields,
        &all,
        Sides::new(None, row),
        Sides::new(None, recorded.as_ref()),
        None,
        conflict_id,
    )
    .or_raise();
}

struct PushConflict {
    endpoint_id: i64,
    entity_id: String,
    kind: String,
    fields: Vec<String>,
    client_value: Value,
    /// the table's values when the conflict was recorded (target_value)
    server_value: Value,
    resolution: String,
    resolved_at: Option<String>,
}

/// Resolve conflict `conflict_id` when it is a push conflict; None when it is not
/// (a config's conflict: the caller resolves it). Runs as the extension's owner.
pub fn try_resolve(
    caller: pg_sys::Oid,
    caller_name: &str,
    conflict_id: i64,
    choice: &str,
    merged: &Option<JsonB>,
) -> Option<JsonB> {
    let schema = ext_schema();
    let c = Spi::connect(|c| {
        let t = c
            .select(
                &format!(
                    "SELECT endpoint_id, source_id, kind, fields, source_value, resolution, resolved_at::text, target_value
                       FROM {schema}.sync_conflicts WHERE id = $1 AND client_id IS NOT NULL FOR UPDATE"
                ),
                Some(1),
                &[conflict_id.into()],
            )
            .unwrap_or_else(|e| spi_fail(e));
        t.into_iter().next().map(|r| PushConflict {
            endpoint_id: db::col::<i64>(&r, 1).unwrap_or_default(),
            entity_id: db::col::<String>(&r, 2).unwrap_or_default(),
            kind: db::col::<String>(&r, 3).unwrap_or_default(),
            fields: db::col::<Vec<String>>(&r, 4).unwrap_or_default(),
            client_value: db::col::<JsonB>(&r, 5).map_or(Value::Null, |j| j.0),
            resolution: db::col::<String>(&r, 6).unwrap_or_default(),
            resolved_at: db::col::<String>(&r, 7),
            server_value: db::col::<JsonB>(&r, 8).map_or(Value::Null, |j| j.0),
        })
    })?;
    crate::sync::conflicts::require_pending(conflict_id, &c.resolution, c.resolved_at.as_deref());
    let merged = crate::sync::conflicts::merged_values(choice, merged, &c.kind, &c.fields);
    if let Some(m) = &merged {
        let unknown: Vec<&str> = m
            .keys()
            .filter(|k| !c.fields.contains(k))
            .map(|s| s.as_str())
            .collect();
        if !unknown.is_empty() {
            bad(format!(
                "merged names field(s) {} that conflict {conflict_id} does not decide; allowed: {}",
                unknown.join(", "),
                c.fields.join(", ")
            ));
        }
    }
    let e = endpoints::load_by_id(c.endpoint_id);
    let client = match &c.client_value {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let key = c.entity_id.clone();
    let row = load_rows(&e, std::slice::from_ref(&key)).remove(&key);
    refuse_unseen_edits(&c, choice, row.as_ref(), conflict_id);
    enum Act {
        Nothing,
        Update(Map<String, Value>),
        Insert(Map<String, Value>),
        Delete,
    }
    let act = match (c.kind.as_str(), choice) {
        (_, "target") => Act::Nothing,
        ("update_update", "source") => Act::Update(client),
        ("update_update", _) => Act::Update(merged.clone().unwrap_or_default()),
        ("update_delete", "source") => Act::Insert(client),
        ("update_delete", _) => {
            let mut v = client;
            v.extend(merged.clone().unwrap_or_default());
            Act::Insert(v)
        }
        ("delete_update", "source") => Act::Delete,
        _ => Act::Update(merged.clone().unwrap_or_default()),
    };
    let (name, mode) = match &act {
        Act::Nothing => ("SELECT", pg_sys::ACL_SELECT),
        Act::Update(_) => ("UPDATE", pg_sys::ACL_UPDATE),
        Act::Insert(_) if row.is_some() => ("UPDATE", pg_sys::ACL_UPDATE),
        Act::Insert(_) => ("INSERT", pg_sys::ACL_INSERT),
        Act::Delete => ("DELETE", pg_sys::ACL_DELETE),
    };
    security::require_table_privileges(
        caller,
        e.relid,
        &e.table,
        &[("SELECT", pg_sys::ACL_SELECT), (name, mode)],
        &format!(
            "resolve conflict {conflict_id} of \"{}\".\"{}\"",
            e.system, e.entity_type
        ),
    );
    let one = |m: Map<String, Value>| Map::from_iter([(key.clone(), Value::Object(m))]);
    match act {
        Act::Nothing => {}
        Act::Update(m) => {
            if row.is_none() {
                fail(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    &format!("the row \"{key}\" of sync conflict {conflict_id} was deleted since; resolve it with 'target'"),
                );
            }
            update_rows(&e, one(m));
        }
        Act::Insert(m) if row.is_some() => update_rows(&e, one(m)),
        Act::Insert(m) => {
            let cols: Vec<String> = m.keys().cloned().collect();
            insert_rows(&e, &cols, one(m));
        }
        Act::Delete => delete_rows(&e, std::slice::from_ref(&key)),
    }
    let resolved_value = match choice {
        "source" => c.client_value.clone(),
        "merged" => Value::Object(merged.unwrap_or_default()),
        _ => row.map_or(Value::Null, |r| {
            Value::Object(
                c.fields
                    .iter()
                    .map(|f| (f.clone(), r.get(f).cloned().unwrap_or(Value::Null)))
                    .collect(),
            )
        }),
    };
    crate::sync::conflicts::record_resolution(
        &schema,
        conflict_id,
        choice,
        &resolved_value,
        caller_name,
    );
    Some(JsonB(json!({
        "conflict_id": conflict_id, "resolution": choice, "resolved_value": resolved_value,
        "entity_id": key, "endpoint_id": e.id,
    })))
}
