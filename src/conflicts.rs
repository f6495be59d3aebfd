//! sync_resolve_conflict: apply a person's decision on a queued conflict to both sides
//! (as the engine, so nothing echoes), update the link's base, close the conflict.

use crate::config;
use crate::db::{self, spi_fail};
use crate::endpoints::Endpoint;
use crate::engine::{
    base_checksum_sql, delete_rows, insert_rows, jsonb_arg, load_rows, new_keys, update_rows,
    LOCK_CLASS,
};
use crate::merge::Row;
use crate::security;
use crate::{ext_schema, fail};
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

pub const CHOICES: &[&str] = &["source", "target", "merged"];

pub fn bad(msg: String) -> ! {
    fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, &msg)
}

/// The `merged` argument of `sync_resolve_conflict`, checked against `choice`: its object
/// when the choice is 'merged' (for an `update_update` conflict, with a value for every
/// field in `fields`), None for the other choices. ERROR 22023 naming the problem.
/// Shared by config and push conflicts; each checks the field names it allows itself.
pub fn merged_values(
    choice: &str,
    merged: &Option<JsonB>,
    kind: &str,
    fields: &[String],
) -> Option<serde_json::Map<String, Value>> {
    match (choice, merged) {
        ("merged", Some(JsonB(Value::Object(m)))) => {
            let missing: Vec<&str> = fields
                .iter()
                .filter(|f| !m.contains_key(*f))
                .map(|s| s.as_str())
                .collect();
            if kind == "update_update" && !missing.is_empty() {
                bad(format!(
                    "merged must give a value for every conflicting field; missing: {}",
                    missing.join(", ")
                ));
            }
            Some(m.clone())
        }
        ("merged", Some(_)) => bad(
            "merged must be a JSON object of field -> value, e.g. {\"phone\": \"555-3\"}".into(),
        ),
        ("merged", None) => {
            bad("choice 'merged' needs the merged values, e.g. {\"phone\": \"555-3\"}".into())
        }
        (_, Some(_)) => bad(format!(
            "merged values are only used with choice 'merged', not '{choice}'"
        )),
        (_, None) => None,
    }
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
            config_id: r.get::<i64>(1).ok().flatten().unwrap_or_default(),
            source_id: r.get::<String>(2).ok().flatten(),
            target_id: r.get::<String>(3).ok().flatten(),
            kind: r.get::<String>(4).ok().flatten().unwrap_or_default(),
            fields: r.get::<Vec<String>>(5).ok().flatten().unwrap_or_default(),
            resolution: r.get::<String>(6).ok().flatten().unwrap_or_default(),
            resolved_at: r.get::<String>(7).ok().flatten(),
            source_value: r.get::<JsonB>(8).ok().flatten().map(|j| j.0),
            target_value: r.get::<JsonB>(9).ok().flatten().map(|j| j.0),
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
#[pg_extern(volatile)]
fn sync_resolve_conflict(
    conflict_id: Option<i64>,
    choice: Option<&str>,
    merged: default!(Option<JsonB>, "NULL"),
) -> JsonB {
    const F: &str = "sync_resolve_conflict";
    let conflict_id = crate::args::required(conflict_id, F, "conflict_id");
    let choice = crate::args::required(choice, F, "choice");
    if !CHOICES.contains(&choice) {
        bad(format!(
            "unknown conflict choice \"{choice}\"; allowed: {}",
            CHOICES.join(", ")
        ));
    }
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
    if c.resolution != "pending" {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "sync conflict {conflict_id} is already resolved ({}, at {})",
                c.resolution,
                c.resolved_at.unwrap_or_default()
            ),
        );
    }
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
    let tagged = crate::origin::tag_writes(cfg.origin());
    let fields = cfg.fields();
    if let Some(m) = &merged {
        // a value for a field this conflict does not decide would be silently dropped
        let allowed: &[String] = if c.kind == "update_update" {
            &c.fields
        } else {
            &fields
        };
        let unknown: Vec<&str> = m
            .keys()
            .filter(|k| !allowed.contains(k))
            .map(|k| k.as_str())
            .collect();
        if !unknown.is_empty() {
            bad(format!(
                "merged names field(s) {} that conflict {conflict_id} does not decide; allowed: {}",
                unknown.join(", "),
                allowed.join(", ")
            ));
        }
    }

    let src_row = c
        .source_id
        .as_ref()
        .and_then(|s| load_rows(&cfg.source, std::slice::from_ref(s)).remove(s));
    let tgt_row = c
        .target_id
        .as_ref()
        .and_then(|t| load_rows(&cfg.target, std::slice::from_ref(t)).remove(t));
    let target_view = |r: &Row| -> Row {
        fields
            .iter()
            .map(|f| (f.clone(), r.get(f).cloned().unwrap_or(Value::Null)))
            .collect()
    };
    let src_proj = src_row
        .as_ref()
        .map(|r| cfg.project(r).unwrap_or_else(|e| bad(e)));
    let tgt_vals = tgt_row.as_ref().map(target_view);

    // the side this choice overwrites (or deletes) must still be as the conflict recorded
    // it: an edit made there since would be lost without a trace in sync_conflicts
    let loser = match (c.kind.as_str(), choice) {
        ("update_update", "source") => Some((false, &c.fields)),
        ("update_update", "target") => Some((true, &c.fields)),
        ("delete_update", "source") => Some((false, &fields)),
        ("update_delete", "target") => Some((true, &fields)),
        _ => None,
    };
    if let Some((is_source, check)) = loser {
        let (current, recorded, side) = if is_source {
            (src_proj.as_ref(), &c.source_value, "source")
        } else {
            (tgt_vals.as_ref(), &c.target_value, "target")
        };
        // a delete conflict records the changed fields; the others held the link's base
        let base = (c.kind != "update_update")
            .then(|| {
                db::one::<JsonB>(
                    &format!(
                        "SELECT base FROM {schema}.sync_links WHERE config_id = $1 AND (source_id = $2 OR target_id = $3) LIMIT 1"
                    ),
                    &[c.config_id.into(), c.source_id.clone().into(), c.target_id.clone().into()],
                )
            })
            .flatten()
            .and_then(|b| b.0.as_object().cloned());
        // an update_update conflict is one field, recorded as its bare value
        let recorded: Option<Row> = match recorded {
            Some(v) if c.kind == "update_update" && c.fields.len() == 1 => {
                Some(Row::from_iter([(c.fields[0].clone(), v.clone())]))
            }
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        };
        let edited = edited_since(check, current, recorded.as_ref(), base.as_ref());
        if let Some((f, now, then)) = edited.first() {
            let what = if c.kind == "update_update" {
                "overwrite that edit"
            } else {
                "delete the row with that edit"
            };
            fail(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                &format!(
                    "sync conflict {conflict_id}: the {side} row was changed after the conflict was recorded ({f} is now {now}, was {then}); resolving it as '{choice}' would {what}. Look at the current rows, then choose the other side or 'merged'"
                ),
            );
        }
    }

    // the entity as it should be afterwards, in target names; None = deleted
    let decided: Option<Row> = match c.kind.as_str() {
        "update_update" => {
            if src_proj.is_none() || tgt_vals.is_none() {
                fail(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    &format!(
                        "a row of sync conflict {conflict_id} was deleted since the conflict was recorded; run sync_execute, which records the delete as a conflict of its own"
                    ),
                );
            }
            // only the conflicting fields: every other field is left to the next run's
            // merge, so edits made since the conflict was recorded are never overwritten
            let vals: Row = c
                .fields
                .iter()
                .map(|f| {
                    let v = match choice {
                        "source" => src_proj.as_ref().and_then(|r| r.get(f)).cloned(),
                        "target" => tgt_vals.as_ref().and_then(|r| r.get(f)).cloned(),
                        _ => merged.as_ref().and_then(|m| m.get(f)).cloned(),
                    };
                    (f.clone(), v.unwrap_or(Value::Null))
                })
                .collect();
            Some(vals)
        }
        // source deleted, target updated
        "delete_update" => match choice {
            "source" => None,
            "target" => tgt_vals.clone(),
            _ => tgt_vals.clone().map(|mut v| {
                v.extend(merged.clone().unwrap_or_default());
                v
            }),
        },
        // source updated, target deleted
        _ => match choice {
            "target" => None,
            "source" => src_proj.clone(),
            _ => src_proj.clone().map(|mut v| {
                v.extend(merged.clone().unwrap_or_default());
                v
            }),
        },
    };

    let mut source_id = src_row.as_ref().and(c.source_id.clone());
    let mut target_id = tgt_row.as_ref().and(c.target_id.clone());
    let partial = c.kind == "update_update";
    let overlay = |r: &Option<Row>, vals: &Row| {
        r.clone().map(|mut r| {
            r.extend(vals.clone());
            r
        })
    };
    // each side as it should be afterwards (target names)
    let (want_src, want_tgt) = match &decided {
        Some(vals) if partial => (overlay(&src_proj, vals), overlay(&tgt_vals, vals)),
        other => (other.clone(), other.clone()),
    };
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
            let v = want_src.as_ref().expect("a decided row");
            match (&source_id, &src_row) {
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
                        &cfg.mapping.source_columns(),
                        &target_id,
                        want_src,
                    ));
                }
            }
            let v = want_tgt.as_ref().expect("a decided row");
            match (&target_id, &tgt_vals) {
                (Some(t), Some(cur)) => {
                    let diff: Row = v
                        .iter()
                        .filter(|(k, val)| {
                            !cur.get(*k)
                                .is_some_and(|c| crate::mapping::values_equal(c, val))
                        })
                        .map(|(k, val)| (k.clone(), val.clone()))
                        .collect();
                    update_one(&cfg.target, t, diff);
                }
                _ => {
                    target_id = Some(insert_one(&cfg.target, &fields, &source_id, v.clone()));
                }
            }
        }
    }
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
    let resolved_value = match &decided {
        Some(v) => Value::Object(
            c.fields
                .iter()
                .filter_map(|f| v.get(f).map(|x| (f.clone(), x.clone())))
                .collect(),
        ),
        None => Value::Null,
    };
    record_resolution(&schema, conflict_id, choice, &resolved_value, caller_name);
    drop(tagged);
    JsonB(json!({
        "conflict_id": conflict_id, "resolution": choice, "resolved_value": resolved_value,
        "source_id": source_id, "target_id": target_id, "deleted": decided.is_none(),
    }))
}

/// The fields of `fields` whose `current` value (the row a resolution would overwrite or
/// delete, in target names) is not the value it had when the conflict was recorded: its
/// `recorded` value, or for a field the conflict did not record, the link's `base` (a
/// field not in either is not compared). Returns (field, current, then) in `fields` order;
/// empty when `current` is None (the row is gone: nothing to lose).
pub fn edited_since(
    fields: &[String],
    current: Option<&Row>,
    recorded: Option<&Row>,
    base: Option<&Row>,
) -> Vec<(String, Value, Value)> {
    let Some(current) = current else {
        return vec![];
    };
    fields
        .iter()
        .filter_map(|f| {
            let then = recorded
                .and_then(|r| r.get(f))
                .or_else(|| base.and_then(|b| b.get(f)))?;
            let now = current.get(f).cloned().unwrap_or(Value::Null);
            (!crate::mapping::values_equal(&now, then)).then(|| (f.clone(), now, then.clone()))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::edited_since;
    use serde_json::{json, Value};

    fn row(v: Value) -> crate::merge::Row {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fuzz_found_an_edit_after_the_conflict_is_found_against_the_recorded_value_or_the_base() {
        let fields: Vec<String> = ["email", "phone", "name"].map(String::from).to_vec();
        let recorded = row(json!({"email": "a@x", "phone": "1"}));
        let base = row(json!({"email": "old@x", "phone": "0", "name": "Ann"}));
        let same = row(json!({"email": "a@x", "phone": "1", "name": "Ann"}));
        assert!(edited_since(&fields, Some(&same), Some(&recorded), Some(&base)).is_empty());
        // a recorded field changed again
        let later = row(json!({"email": "b@x", "phone": "1", "name": "Ann"}));
        assert_eq!(
            edited_since(&fields, Some(&later), Some(&recorded), Some(&base)),
            vec![("email".to_string(), json!("b@x"), json!("a@x"))]
        );
        // a field the conflict did not record changed: compared with the base
        let other = row(json!({"email": "a@x", "phone": "1", "name": "Bob"}));
        assert_eq!(
            edited_since(&fields, Some(&other), Some(&recorded), Some(&base)),
            vec![("name".to_string(), json!("Bob"), json!("Ann"))]
        );
        // without a base only the recorded fields count; a missing column is NULL
        assert!(edited_since(&fields, Some(&other), Some(&recorded), None).is_empty());
        let gone = row(json!({"phone": "1"}));
        assert_eq!(
            edited_since(&fields, Some(&gone), Some(&recorded), None),
            vec![("email".to_string(), Value::Null, json!("a@x"))]
        );
        // numbers compare by value; a deleted row has nothing to lose
        let n = row(json!({"phone": 1.0}));
        assert!(edited_since(
            &fields[1..2],
            Some(&row(json!({"phone": 1}))),
            Some(&n),
            None
        )
        .is_empty());
        assert!(edited_since(&fields, None, Some(&recorded), Some(&base)).is_empty());
    }
}
