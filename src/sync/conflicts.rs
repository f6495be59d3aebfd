//! sync_resolve_conflict: apply a person's decision on a queued conflict to both sides
//! (as the engine, so nothing echoes), update the link's base, close the conflict.

use crate::capture::endpoints::Endpoint;
use crate::core::merge::{ConflictKind, Row};
use crate::core::plan;
use crate::core::resolve::{self, Choice, Decision};
use crate::core::types::Sides;
use crate::pg::db::{self, spi_fail};
use crate::pg::quote::ext_schema;
use crate::pg::security;
use crate::pg::OrRaise;
use crate::pg::{bad, fail};
use crate::sync::config;
use crate::sync::{
    base_checksum_sql, delete_rows, insert_rows, jsonb_arg, load_rows, new_keys, update_rows,
    LOCK_CLASS,
};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// Write `diff` (column -> value) to one row, if there is anything to write.
fn update_one(e: &Endpoint, id: &str, diff: Row) {
    if !diff.is_empty() {
        update_rows(
            e,
            serde_json::Map::from_iter([(id.to_string(), Value::Object(diff))]),
        );
    }
}

/// Create one row with a new key (or its partner's), returning the key.
fn insert_one(e: &Endpoint, cols: &[String], partner: &Option<String>, values: Row) -> String {
    let key = new_keys(e, std::slice::from_ref(partner)).remove(0);
    insert_rows(
        e,
        cols,
        serde_json::Map::from_iter([(key.clone(), Value::Object(values))]),
    );
    key
}

/// The `merged` argument of `sync_resolve_conflict`, checked against `choice`
/// (`core::resolve::merged_values`): its object when the choice is 'merged', None for
/// the other choices. ERROR 22023 naming the problem. Shared by config and push
/// conflicts; each checks the field names it allows itself.
pub fn merged_values(
    choice: &str,
    merged: &Option<JsonB>,
    kind: &str,
    fields: &[String],
) -> Option<serde_json::Map<String, Value>> {
    let choice = Choice::parse(choice).or_raise();
    resolve::merged_values(
        choice,
        merged.as_ref().map(|j| &j.0),
        ConflictKind::parse(kind),
        fields,
    )
    .or_raise()
}

struct Pending {
    config_id: i64,
    source_id: Option<String>,
    target_id: Option<String>,
    kind: String,
    fields: Vec<String>,
    resolution: String,
    resolved_at: Option<String>,
    /// each side's values as the conflict recorded them (target names)
    source_value: Option<Value>,
    target_value: Option<Value>,
}

fn load(schema: &str, id: i64) -> Pending {
    let row = Spi::connect(|c| {
        let t = c
            .select(
                &format!(
                    "SELECT config_id, source_id, target_id, kind, fields, resolution, resolved_at::text,
                            source_value, target_value
                       FROM {schema}.sync_conflicts WHERE id = $1 FOR UPDATE"
                ),
                Some(1),
                &[id.into()],
            )
            .unwrap_or_else(|e| spi_fail(e));
        t.into_iter().next().map(|r| Pending {
            config_id: db::col::<i64>(&r, 1).unwrap_or_default(),
            source_id: db::col::<String>(&r, 2),
            target_id: db::col::<String>(&r, 3),
            kind: db::col::<String>(&r, 4).unwrap_or_default(),
            fields: db::col::<Vec<String>>(&r, 5).unwrap_or_default(),
            resolution: db::col::<String>(&r, 6).unwrap_or_default(),
            resolved_at: db::col::<String>(&r, 7),
            source_value: db::col::<JsonB>(&r, 8).map(|j| j.0),
            target_value: db::col::<JsonB>(&r, 9).map(|j| j.0),
        })
    });
    row.unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            &format!("sync conflict {id} does not exist"),
        )
    })
}

/// Resolve a conflict: 'source' or 'target' takes that side's value, 'merged' takes
/// `merged` (an object with a value for every conflicting field).
pub fn resolve_conflict(conflict_id: i64, choice: &str, merged: Option<JsonB>) -> JsonB {
    Choice::parse(choice).or_raise();
    let caller = security::current_user();
    let caller_name = security::role_name(caller);
    security::as_extension_owner(|| resolve(caller, &caller_name, conflict_id, choice, merged))
}

/// `sync_resolve_conflict` once running as the extension's owner: `caller` (who called,
/// recorded as `resolved_by` by name) must have the privileges of the config's owner.
fn resolve(
    caller: pg_sys::Oid,
    caller_name: &str,
    conflict_id: i64,
    choice: &str,
    merged: Option<JsonB>,
) -> JsonB {
    // a conflict of a pushed change (no config) is resolved against its endpoint
    if let Some(r) =
        crate::offline::resolve::try_resolve(caller, caller_name, conflict_id, choice, &merged)
    {
        return r;
    }
    let schema = ext_schema();
    let c = load(&schema, conflict_id);
    require_pending(conflict_id, &c.resolution, c.resolved_at.as_deref());
    let merged = merged_values(choice, &merged, &c.kind, &c.fields);
    // never interleave with a run of the same config
    db::run(
        "SELECT pg_advisory_xact_lock($1, $2::int)",
        &[LOCK_CLASS.into(), c.config_id.into()],
    );
    let cfg = config::load(c.config_id);
    security::require_privileges_of(
        caller,
        cfg.owner,
        &format!(
            "resolve conflict {conflict_id} of sync config \"{}\"",
            cfg.name
        ),
    );
    let tagged = crate::capture::origin::tag_writes(cfg.origin());
    let fields = cfg.fields();
    let kind = recorded_kind(conflict_id, &c.kind);
    if let Some(m) = &merged {
        resolve::check_merged_fields(m, kind, &c.fields, &fields, conflict_id).or_raise();
    }
    let src_row = c
        .source_id
        .as_ref()
        .and_then(|s| load_rows(&cfg.source, std::slice::from_ref(s)).remove(s));
    let tgt_row = c
        .target_id
        .as_ref()
        .and_then(|t| load_rows(&cfg.target, std::slice::from_ref(t)).remove(t));
    let src_proj = src_row
        .as_ref()
        .map(|r| cfg.project(r).unwrap_or_else(|e| bad(e)));
    let tgt_vals = tgt_row
        .as_ref()
        .map(|r| plan::target_values(r.clone(), &fields));
    // an edit on the losing side since the conflict was recorded is never lost: a delete
    // conflict records the changed fields, the others held the link's base
    let base = (kind != ConflictKind::UpdateUpdate)
        .then(|| {
            db::one::<JsonB>(
                &format!(
                    "SELECT base FROM {schema}.sync_links WHERE config_id = $1 AND (source_id = $2 OR target_id = $3) LIMIT 1"
                ),
                &[c.config_id.into(), c.source_id.clone().into(), c.target_id.clone().into()],
            )
        })
        .flatten()
        .and_then(|b| match b.0 {
            Value::Object(m) => Some(m),
            _ => None,
        });
    resolve::check_unseen_edits(
        kind,
        Choice::parse(choice).or_raise(),
        &c.fields,
        &fields,
        Sides::new(src_proj.as_ref(), tgt_vals.as_ref()),
        Sides::new(c.source_value.as_ref(), c.target_value.as_ref()),
        base.as_ref(),
        conflict_id,
    )
    .or_raise();
    let Decision {
        decided,
        want,
        partial,
    } = resolve::decide(
        kind,
        Choice::parse(choice).or_raise(),
        &c.fields,
        Sides::new(src_proj.as_ref(), tgt_vals.as_ref()),
        merged.as_ref(),
        conflict_id,
    )
    .or_raise();

    let (source_id, target_id) = write_sides(
        &cfg,
        &c,
        &decided,
        &want,
        (src_row.as_ref(), tgt_vals.as_ref()),
    );
    write_link(&schema, &c, &decided, partial, (&source_id, &target_id));
    let resolved_value = resolve::resolved_value(decided.as_ref(), &c.fields);
    record_resolution(&schema, conflict_id, choice, &resolved_value, caller_name);
    drop(tagged);
    JsonB(json!({
        "conflict_id": conflict_id, "resolution": choice, "resolved_value": resolved_value,
        "source_id": source_id, "target_id": target_id, "deleted": decided.is_none(),
    }))
}

/// The kind conflict `conflict_id` records (`sync_conflicts.kind`); ERROR XX001 when it
/// is none of them. Shared by config and push conflicts.
pub fn recorded_kind(conflict_id: i64, kind: &str) -> ConflictKind {
    ConflictKind::parse(kind).unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            &format!("sync conflict {conflict_id} has an unknown kind \"{kind}\""),
        )
    })
}

/// ERROR 55000 unless conflict `conflict_id` is pending, naming its resolution and
/// when it was made (`resolution`, `resolved_at` as recorded). Shared by config and
/// push conflicts.
pub fn require_pending(conflict_id: i64, resolution: &str, resolved_at: Option<&str>) {
    if resolution != "pending" {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "sync conflict {conflict_id} is already resolved ({resolution}, at {})",
                resolved_at.unwrap_or_default()
            ),
        );
    }
}

/// Mark conflict `conflict_id` resolved: `choice`, the value that was kept, who and when.
/// Writes sync_conflicts (in the caller's transaction). Shared by config and push
/// conflicts.
pub fn record_resolution(
    schema: &str,
    conflict_id: i64,
    choice: &str,
    resolved_value: &Value,
    caller_name: &str,
) {
    db::run(
        &format!(
            "UPDATE {schema}.sync_conflicts SET resolution = $2, resolved_value = $3, resolved_at = now(),
                    resolved_by = $4
              WHERE id = $1"
        ),
        &[
            conflict_id.into(),
            choice.into(),
            jsonb_arg(resolved_value.clone()).into(),
            caller_name.into(),
        ],
    );
}

/// The link of a resolved conflict `c`: for an update/update conflict (`partial`) the
/// decided fields go into the base in place; otherwise the old link is dropped and,
/// when the entity lives on, a link of the rows `now` (source id, target id) is written
/// with the decided values as its base. Writes sync_links.
fn write_link(
    schema: &str,
    c: &Pending,
    decided: &Option<Row>,
    partial: bool,
    now: (&Option<String>, &Option<String>),
) {
    let (source_id, target_id) = now;
    if partial {
        let vals = decided.clone().unwrap_or_default();
        db::run(
            &format!(
                "UPDATE {schema}.sync_links SET base = base || $3, base_checksum = {}, updated_at = now()
                  WHERE config_id = $1 AND source_id = $2",
                base_checksum_sql("base || $3")
            ),
            &[
                c.config_id.into(),
                c.source_id.clone().into(),
                jsonb_arg(Value::Object(vals)).into(),
            ],
        );
    } else {
        // the link: drop the old one, write the agreed base
        db::run(
        &format!("DELETE FROM {schema}.sync_links WHERE config_id = $1 AND (source_id = $2 OR target_id = $3)"),
        &[c.config_id.into(), c.source_id.clone().into(), c.target_id.clone().into()],
    );
        if let (Some(v), Some(s), Some(t)) = (&decided, &source_id, &target_id) {
            db::run(
            &format!(
                "INSERT INTO {schema}.sync_links (config_id, source_id, target_id, base, base_checksum)
                 VALUES ($1, $2, $3, $4, {})",
                base_checksum_sql("$4")
            ),
            &[c.config_id.into(), s.clone().into(), t.clone().into(), jsonb_arg(Value::Object(v.clone())).into()],
        );
        }
    }
}

/// Write both sides of a resolved conflict `c` as `want` says (`decided` None: delete
/// both rows). `rows`: the current source row and target values (None: gone); a side
/// that is gone is created. Returns the (source id, target id) afterwards.
fn write_sides(
    cfg: &config::Config,
    c: &Pending,
    decided: &Option<Row>,
    want: &Sides<Option<Row>>,
    rows: (Option<&Row>, Option<&Row>),
) -> (Option<String>, Option<String>) {
    let (src_row, tgt_vals) = rows;
    let fields = cfg.fields();
    let mut source_id = src_row.and(c.source_id.clone());
    let mut target_id = tgt_vals.and(c.target_id.clone());
    match &decided {
        None => {
            if let Some(s) = &source_id {
                delete_rows(&cfg.source, std::slice::from_ref(s));
            }
            if let Some(t) = &target_id {
                delete_rows(&cfg.target, std::slice::from_ref(t));
            }
            source_id = None;
            target_id = None;
        }
        Some(_) => {
            let v = want.source.as_ref().expect("a decided row");
            match (&source_id, src_row) {
                (Some(s), Some(cur)) => {
                    update_one(
                        &cfg.source,
                        s,
                        cfg.source_changes(v, cur).unwrap_or_else(|e| bad(e)),
                    );
                }
                _ => {
                    let want_src = cfg.unproject(v).unwrap_or_else(|e| bad(e));
                    source_id = Some(insert_one(
                        &cfg.source,
                        &cfg.shape.mapping.source_columns(),
                        &target_id,
                        want_src,
                    ));
                }
            }
            let v = want.target.as_ref().expect("a decided row");
            match (&target_id, tgt_vals) {
                (Some(t), Some(cur)) => update_one(&cfg.target, t, resolve::changed_fields(v, cur)),
                _ => {
                    target_id = Some(insert_one(&cfg.target, &fields, &source_id, v.clone()));
                }
            }
        }
    }
    (source_id, target_id)
}
