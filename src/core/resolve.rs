//! The decisions of `sync_resolve_conflict` for a config's conflict, pure: which
//! choice, which merged values are acceptable, and what each side must hold
//! afterwards. The shell (`sync::conflicts`) loads the conflict and the rows, and writes
//! what this decides.

use crate::core::error::{Error, Result, SqlState};
use crate::core::mapping::values_equal;
use crate::core::merge::{ConflictKind, Row};
use crate::core::types::{Side, Sides};
use serde_json::Value;

/// A person's decision on a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// keep the source's value
    Source,
    /// keep the target's value
    Target,
    /// keep the values given in `merged`
    Merged,
}

pub const CHOICES: &[&str] = &["source", "target", "merged"];

impl Choice {
    /// The choice named `s`; 22023 listing the allowed ones otherwise.
    pub fn parse(s: &str) -> Result<Choice> {
        match s {
            "source" => Ok(Choice::Source),
            "target" => Ok(Choice::Target),
            "merged" => Ok(Choice::Merged),
            _ => Err(Error::invalid(format!(
                "unknown conflict choice \"{}\"; allowed: {}",
                crate::core::args::shown(s),
                CHOICES.join(", ")
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Choice::Source => "source",
            Choice::Target => "target",
            Choice::Merged => "merged",
        }
    }
}

/// The `merged` argument checked against `choice`: its object when the choice is
/// `Merged` (for an `UpdateUpdate` conflict, with a value for every field in
/// `fields`), None for the other choices. 22023 naming the problem.
pub fn merged_values(
    choice: Choice,
    merged: Option<&Value>,
    kind: Option<ConflictKind>,
    fields: &[String],
) -> Result<Option<Row>> {
    match (choice, merged) {
        (Choice::Merged, Some(Value::Object(m))) => {
            let missing: Vec<&str> = fields
                .iter()
                .filter(|f| !m.contains_key(*f))
                .map(String::as_str)
                .collect();
            if kind == Some(ConflictKind::UpdateUpdate) && !missing.is_empty() {
                return Err(Error::invalid(format!(
                    "merged must give a value for every conflicting field; missing: {}",
                    missing.join(", ")
                )));
            }
            Ok(Some(m.clone()))
        }
        (Choice::Merged, Some(_)) => Err(Error::invalid(
            "merged must be a JSON object of field -> value, e.g. {\"phone\": \"555-3\"}",
        )),
        (Choice::Merged, None) => Err(Error::invalid(
            "choice 'merged' needs the merged values, e.g. {\"phone\": \"555-3\"}",
        )),
        (_, Some(_)) => Err(Error::invalid(format!(
            "merged values are only used with choice 'merged', not '{}'",
            choice.name()
        ))),
        (_, None) => Ok(None),
    }
}

/// The fields `merged` may name for a conflict of `kind`: its own fields for an
/// update/update conflict, every mapped field (`all`) when a side was deleted. A value
/// for any other field would be silently dropped, so it is refused (22023).
pub fn check_merged_fields(
    merged: &Row,
    kind: ConflictKind,
    conflict_fields: &[String],
    all: &[String],
    conflict_id: i64,
) -> Result<()> {
    let allowed = if kind == ConflictKind::UpdateUpdate {
        conflict_fields
    } else {
        all
    };
    let unknown: Vec<&str> = merged
        .keys()
        .filter(|k| !allowed.contains(k))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "merged names field(s) {} that conflict {conflict_id} does not decide; allowed: {}",
            unknown.join(", "),
            allowed.join(", ")
        )))
    }
}

/// What a resolution writes, in target names.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// the decided values (only the conflict's fields for an update/update conflict,
    /// the whole entity otherwise); None: the entity is deleted on both sides
    pub decided: Option<Row>,
    /// each side as it must be afterwards; None: deleted (or, for a side that is gone,
    /// to be created from the other's values)
    pub want: Sides<Option<Row>>,
    /// only the conflict's fields are decided (update/update): the link's base is
    /// updated in place, other fields are left to the next run
    pub partial: bool,
}

/// Decide a conflict of `kind` with `choice`. `rows`: each side's current values in
/// target names (None: the row is gone), `merged` the checked merged values.
/// 55000 when an update/update conflict's row was deleted since it was recorded.
pub fn decide(
    kind: ConflictKind,
    choice: Choice,
    conflict_fields: &[String],
    rows: Sides<Option<&Row>>,
    merged: Option<&Row>,
    conflict_id: i64,
) -> Result<Decision> {
    let with_merged = |r: Option<&Row>| {
        r.cloned().map(|mut v| {
            v.extend(merged.cloned().unwrap_or_default());
            v
        })
    };
    let decided: Option<Row> = match kind {
        ConflictKind::UpdateUpdate => {
            if rows.source.is_none() || rows.target.is_none() {
                return Err(Error::new(
                    SqlState::ObjectNotInPrerequisiteState,
                    format!(
                        "a row of sync conflict {conflict_id} was deleted since the conflict was recorded; run sync_execute, which records the delete as a conflict of its own"
                    ),
                ));
            }
            // only the conflicting fields: every other field is left to the next run's
            // merge, so edits made since the conflict was recorded are never overwritten
            let from = match choice {
                Choice::Source => rows.source,
                Choice::Target => rows.target,
                Choice::Merged => merged,
            };
            Some(
                conflict_fields
                    .iter()
                    .map(|f| {
                        let v = from.and_then(|r| r.get(f)).cloned();
                        (f.clone(), v.unwrap_or(Value::Null))
                    })
                    .collect(),
            )
        }
        // source deleted, target updated
        ConflictKind::DeleteUpdate => match choice {
            Choice::Source => None,
            Choice::Target => rows.target.cloned(),
            Choice::Merged => with_merged(rows.target),
        },
        // source updated, target deleted
        ConflictKind::UpdateDelete => match choice {
            Choice::Target => None,
            Choice::Source => rows.source.cloned(),
            Choice::Merged => with_merged(rows.source),
        },
    };
    let partial = kind == ConflictKind::UpdateUpdate;
    let overlay = |r: Option<&Row>, vals: &Row| {
        r.cloned().map(|mut r| {
            r.extend(vals.clone());
            r
        })
    };
    let want = match &decided {
        Some(vals) if partial => Sides::new(overlay(rows.source, vals), overlay(rows.target, vals)),
        other => Sides::both(other.clone()),
    };
    Ok(Decision {
        decided,
        want,
        partial,
    })
}

/// The columns of `want` whose values differ from the current row `cur`.
pub fn changed_fields(want: &Row, cur: &Row) -> Row {
    want.iter()
        .filter(|(k, v)| !cur.get(*k).is_some_and(|c| values_equal(c, v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The value recorded as kept (`sync_conflicts.resolved_value`): the decided values of
/// the conflict's fields, or NULL for a delete.
pub fn resolved_value(decided: Option<&Row>, conflict_fields: &[String]) -> Value {
    match decided {
        Some(v) => Value::Object(
            conflict_fields
                .iter()
                .filter_map(|f| v.get(f).map(|x| (f.clone(), x.clone())))
                .collect(),
        ),
        None => Value::Null,
    }
}

/// The fields of `fields` whose `current` value (the row a resolution would overwrite or
/// delete, in target names) is not the value it had when the conflict was recorded: its
/// `recorded` value, or for a field the conflict did not record, the link's `base` (a
/// field in neither is not compared). Returns (field, current, then) in `fields` order;
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
            (!values_equal(&now, then)).then(|| (f.clone(), now, then.clone()))
        })
        .collect()
}

/// Refuse a choice that would lose an edit made on the losing side after the conflict
/// was recorded (found by the fuzzer: nothing kept the lost value). The side a `Source`
/// or `Target` choice overwrites (an update/update conflict's field) or deletes (the
/// updated row of a delete conflict) must still hold what the conflict recorded for it:
/// `recorded` is each side's `source_value`/`target_value` (an update/update conflict
/// records its one field's bare value); fields a delete conflict did not record held the
/// link's `base`. `rows`: each side's current values in target names, `all` the mapped
/// fields. `Merged` (the person gives the values) and choices that lose nothing pass.
/// 55000 naming the side, the field, its current and its recorded value.
#[allow(clippy::too_many_arguments)]
pub fn check_unseen_edits(
    kind: ConflictKind,
    choice: Choice,
    conflict_fields: &[String],
    all: &[String],
    rows: Sides<Option<&Row>>,
    recorded: Sides<Option<&Value>>,
    base: Option<&Row>,
    conflict_id: i64,
) -> Result<()> {
    let (side, fields) = match (kind, choice) {
        (ConflictKind::UpdateUpdate, Choice::Source) => (Side::Target, conflict_fields),
        (ConflictKind::UpdateUpdate, Choice::Target) => (Side::Source, conflict_fields),
        (ConflictKind::DeleteUpdate, Choice::Source) => (Side::Target, all),
        (ConflictKind::UpdateDelete, Choice::Target) => (Side::Source, all),
        _ => return Ok(()),
    };
    let recorded: Option<Row> = match *recorded.get(side) {
        Some(v) if kind == ConflictKind::UpdateUpdate && conflict_fields.len() == 1 => {
            Some(Row::from_iter([(conflict_fields[0].clone(), v.clone())]))
        }
        Some(Value::Object(m)) => Some(m.clone()),
        _ => None,
    };
    let base = if kind == ConflictKind::UpdateUpdate {
        None
    } else {
        base
    };
    let edited = edited_since(fields, *rows.get(side), recorded.as_ref(), base);
    let Some((f, now, then)) = edited.first() else {
        return Ok(());
    };
    let what = if kind == ConflictKind::UpdateUpdate {
        "overwrite that edit"
    } else {
        "delete the row with that edit"
    };
    Err(Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!(
            "sync conflict {conflict_id}: the {} row was changed after the conflict was recorded ({f} is now {now}, was {then}); resolving it as '{}' would {what}. Look at the current rows, then choose the other side or 'merged'",
            match side {
                Side::Source => "source",
                Side::Target => "target",
            },
            choice.name()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn f(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn choices_parse_and_list_the_allowed_ones() {
        for c in CHOICES {
            assert_eq!(Choice::parse(c).unwrap().name(), *c);
        }
        let e = Choice::parse("mine").unwrap_err();
        assert_eq!(e.state.code(), "22023");
        assert_eq!(
            e.message,
            "unknown conflict choice \"mine\"; allowed: source, target, merged"
        );
    }

    #[test]
    fn merged_values_must_fit_the_choice() {
        let uu = Some(ConflictKind::UpdateUpdate);
        let fields = f(&["phone", "email"]);
        let m = json!({"phone": "1", "email": "e"});
        assert_eq!(
            merged_values(Choice::Merged, Some(&m), uu, &fields),
            Ok(Some(row(m.clone())))
        );
        let table: [(Choice, Option<Value>, &str); 4] = [
            (
                Choice::Merged,
                Some(json!({"phone": "1"})),
                "merged must give a value for every conflicting field; missing: email",
            ),
            (
                Choice::Merged,
                Some(json!([1])),
                "merged must be a JSON object of field -> value, e.g. {\"phone\": \"555-3\"}",
            ),
            (
                Choice::Merged,
                None,
                "choice 'merged' needs the merged values, e.g. {\"phone\": \"555-3\"}",
            ),
            (
                Choice::Source,
                Some(m.clone()),
                "merged values are only used with choice 'merged', not 'source'",
            ),
        ];
        for (choice, merged, msg) in table {
            let e = merged_values(choice, merged.as_ref(), uu, &fields).unwrap_err();
            assert_eq!((e.state.code(), e.message.as_str()), ("22023", msg));
        }
        // a delete conflict's merged values need not name every field
        let dk = Some(ConflictKind::DeleteUpdate);
        assert!(merged_values(Choice::Merged, Some(&json!({"phone": "1"})), dk, &fields).is_ok());
        assert_eq!(merged_values(Choice::Target, None, uu, &fields), Ok(None));
    }

    #[test]
    fn merged_may_name_only_the_fields_the_conflict_decides() {
        let all = f(&["phone", "email", "name"]);
        let m = row(json!({"phone": "1", "name": "x"}));
        let e = check_merged_fields(&m, ConflictKind::UpdateUpdate, &f(&["phone"]), &all, 7)
            .unwrap_err();
        assert_eq!(
            e.message,
            "merged names field(s) name that conflict 7 does not decide; allowed: phone"
        );
        assert!(check_merged_fields(&m, ConflictKind::DeleteUpdate, &f(&["*"]), &all, 7).is_ok());
    }

    #[test]
    fn an_update_conflict_decides_its_fields_only() {
        let s = row(json!({"phone": "s", "email": "a"}));
        let t = row(json!({"phone": "t", "email": "b"}));
        let fields = f(&["phone"]);
        let rows = Sides::new(Some(&s), Some(&t));
        let d = decide(
            ConflictKind::UpdateUpdate,
            Choice::Target,
            &fields,
            rows.clone(),
            None,
            1,
        )
        .unwrap();
        assert_eq!(d.decided, Some(row(json!({"phone": "t"}))));
        assert!(d.partial);
        // each side keeps its other fields
        assert_eq!(
            d.want.source,
            Some(row(json!({"phone": "t", "email": "a"})))
        );
        assert_eq!(d.want.target, Some(t.clone()));
        let m = row(json!({"phone": "m"}));
        let d = decide(
            ConflictKind::UpdateUpdate,
            Choice::Merged,
            &fields,
            rows,
            Some(&m),
            1,
        )
        .unwrap();
        assert_eq!(d.decided, Some(m));
        // a row deleted since: refused, the next run records that delete
        let e = decide(
            ConflictKind::UpdateUpdate,
            Choice::Source,
            &fields,
            Sides::new(Some(&s), None),
            None,
            9,
        )
        .unwrap_err();
        assert_eq!(e.state.code(), "55000");
        assert!(e
            .message
            .starts_with("a row of sync conflict 9 was deleted"));
    }

    #[test]
    fn a_delete_conflict_deletes_or_keeps_the_whole_entity() {
        let t = row(json!({"phone": "t", "email": "b"}));
        let rows = Sides::new(None, Some(&t));
        let all = f(&["*"]);
        let deleted = decide(
            ConflictKind::DeleteUpdate,
            Choice::Source,
            &all,
            rows.clone(),
            None,
            1,
        )
        .unwrap();
        assert_eq!(deleted.decided, None);
        assert_eq!(deleted.want, Sides::new(None, None));
        let kept = decide(
            ConflictKind::DeleteUpdate,
            Choice::Target,
            &all,
            rows.clone(),
            None,
            1,
        )
        .unwrap();
        assert_eq!(kept.want, Sides::both(Some(t.clone())));
        assert!(!kept.partial);
        let m = row(json!({"phone": "m"}));
        let merged = decide(
            ConflictKind::DeleteUpdate,
            Choice::Merged,
            &all,
            rows,
            Some(&m),
            1,
        )
        .unwrap();
        assert_eq!(
            merged.decided,
            Some(row(json!({"phone": "m", "email": "b"})))
        );
        let s = row(json!({"phone": "s"}));
        let gone = decide(
            ConflictKind::UpdateDelete,
            Choice::Target,
            &all,
            Sides::new(Some(&s), None),
            None,
            1,
        )
        .unwrap();
        assert_eq!(gone.decided, None);
    }

    #[test]
    fn the_kept_value_and_the_diff() {
        let d = row(json!({"phone": "1", "email": "e"}));
        assert_eq!(
            resolved_value(Some(&d), &f(&["phone"])),
            json!({"phone": "1"})
        );
        assert_eq!(resolved_value(None, &f(&["phone"])), Value::Null);
        let cur = row(json!({"phone": "1", "email": "old"}));
        assert_eq!(changed_fields(&d, &cur), row(json!({"email": "e"})));
    }

    #[test]
    fn fuzz_found_an_edit_after_the_conflict_is_found_against_the_recorded_value_or_the_base() {
        let fields = f(&["email", "phone", "name"]);
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

    #[test]
    fn fuzz_found_a_choice_that_would_lose_a_later_edit_is_refused() {
        let all = f(&["email", "phone", "name"]);
        let phone = f(&["phone"]);
        // update/update: the target changed the field again after the conflict
        let s = row(json!({"phone": "2a"}));
        let t = row(json!({"phone": "3"}));
        let (rs, rt) = (json!("2a"), json!("2b"));
        let rows = Sides::new(Some(&s), Some(&t));
        let rec = Sides::new(Some(&rs), Some(&rt));
        let uu = ConflictKind::UpdateUpdate;
        let e = check_unseen_edits(
            uu,
            Choice::Source,
            &phone,
            &all,
            rows.clone(),
            rec.clone(),
            None,
            5,
        )
        .unwrap_err();
        assert_eq!(e.state.code(), "55000");
        assert_eq!(
            e.message,
            "sync conflict 5: the target row was changed after the conflict was recorded (phone is now \"3\", was \"2b\"); resolving it as 'source' would overwrite that edit. Look at the current rows, then choose the other side or 'merged'"
        );
        // the side that changed may win; merged values are the person's
        assert!(check_unseen_edits(
            uu,
            Choice::Target,
            &phone,
            &all,
            rows.clone(),
            rec.clone(),
            None,
            5
        )
        .is_ok());
        assert!(check_unseen_edits(uu, Choice::Merged, &phone, &all, rows, rec, None, 5).is_ok());
        // update/delete: deleting the source, whose other field changed since (the base)
        let base = row(json!({"email": "old@x", "phone": "0", "name": "Ann"}));
        let rec = json!({"email": "a@x"});
        let changed = row(json!({"email": "a@x", "phone": "4", "name": "Ann"}));
        let ud = ConflictKind::UpdateDelete;
        let e = check_unseen_edits(
            ud,
            Choice::Target,
            &f(&["email"]),
            &all,
            Sides::new(Some(&changed), None),
            Sides::new(Some(&rec), None),
            Some(&base),
            6,
        )
        .unwrap_err();
        assert!(
            e.message.contains("the source row was changed")
                && e.message.contains("phone is now \"4\", was \"0\"")
                && e.message.contains("would delete the row with that edit"),
            "{}",
            e.message
        );
        // as recorded: the delete goes through; keeping the row loses nothing
        let same = row(json!({"email": "a@x", "phone": "0", "name": "Ann"}));
        let ok = |choice, r: &Row| {
            check_unseen_edits(
                ud,
                choice,
                &f(&["email"]),
                &all,
                Sides::new(Some(r), None),
                Sides::new(Some(&rec), None),
                Some(&base),
                6,
            )
        };
        assert!(ok(Choice::Target, &same).is_ok());
        assert!(ok(Choice::Source, &changed).is_ok());
        // delete/update: the same for the target
        let e = check_unseen_edits(
            ConflictKind::DeleteUpdate,
            Choice::Source,
            &f(&["phone"]),
            &all,
            Sides::new(None, Some(&changed)),
            Sides::new(None, Some(&json!({"phone": "4"}))),
            Some(&base),
            7,
        )
        .unwrap_err();
        assert!(
            e.message.contains("the target row was changed")
                && e.message.contains("email is now \"a@x\", was \"old@x\""),
            "{}",
            e.message
        );
    }
}
