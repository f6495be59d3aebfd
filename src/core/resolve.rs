//! The decisions of `sync_resolve_conflict` for a config's conflict, pure: which
//! choice, which merged values are acceptable, and what each side must hold
//! afterwards. The shell (`sync::conflicts`) loads the conflict and the rows, and writes
//! what this decides.

use crate::core::error::{Error, Result, SqlState};
use crate::core::mapping::values_equal;
use crate::core::merge::{ConflictKind, Row};
use crate::core::types::Sides;
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
                "unknown conflict choice \"{s}\"; allowed: {}",
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
}
