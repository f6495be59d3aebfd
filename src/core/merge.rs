//! The three-way merge of one entity pair: current source values (projected into the
//! target's column names), current target values, and the link's base. Pure logic.
//!
//! Per field: changed on one side only -> copy across; changed on both to the same
//! value -> converged; to different values -> conflict, decided by the strategy. A
//! one-way config never writes its authoritative side: the receiving side's own edits
//! stay where they are and lose (recorded) when both sides changed.

use crate::core::mapping::values_equal;
use crate::core::types::Sides;
use serde_json::{Map, Value};
use std::collections::HashMap;

pub type Row = Map<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    SourceWins,
    TargetWins,
    LatestWins,
    Manual,
}

pub const STRATEGIES: &[&str] = &["source_wins", "target_wins", "latest_wins", "manual"];
pub const DIRECTIONS: &[&str] = &["bidirectional", "source_to_target", "target_to_source"];

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy, String> {
        match s {
            "source_wins" => Ok(Strategy::SourceWins),
            "target_wins" => Ok(Strategy::TargetWins),
            "latest_wins" => Ok(Strategy::LatestWins),
            "manual" => Ok(Strategy::Manual),
            _ => Err(format!(
                "unknown conflict strategy \"{}\"; allowed: {}",
                crate::core::args::shown(s),
                STRATEGIES.join(", ")
            )),
        }
    }

    /// The strategy's name, as `sync_configs.conflict_strategy` holds it.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::SourceWins => "source_wins",
            Strategy::TargetWins => "target_wins",
            Strategy::LatestWins => "latest_wins",
            Strategy::Manual => "manual",
        }
    }
}

/// The marker, in a pending conflict's field list, of a conflict about the whole
/// entity (a delete against an update): the pair waits for a person entirely.
pub const WHOLE_ENTITY: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Bidirectional,
    SourceToTarget,
    TargetToSource,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Direction, String> {
        match s {
            "bidirectional" => Ok(Direction::Bidirectional),
            "source_to_target" => Ok(Direction::SourceToTarget),
            "target_to_source" => Ok(Direction::TargetToSource),
            _ => Err(format!(
                "unknown sync direction \"{}\"; allowed: {}",
                crate::core::args::shown(s),
                DIRECTIONS.join(", ")
            )),
        }
    }
    pub fn to_target(self) -> bool {
        self != Direction::TargetToSource
    }
    pub fn to_source(self) -> bool {
        self != Direction::SourceToTarget
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Source,
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// both sides changed a field to different values
    UpdateUpdate,
    /// source deleted the entity, target updated it
    DeleteUpdate,
    /// source updated the entity, target deleted it
    UpdateDelete,
}

impl ConflictKind {
    pub const ALL: [ConflictKind; 3] = [
        ConflictKind::UpdateUpdate,
        ConflictKind::DeleteUpdate,
        ConflictKind::UpdateDelete,
    ];

    /// The kind's name, as `sync_conflicts.kind` holds it.
    pub fn name(self) -> &'static str {
        match self {
            ConflictKind::UpdateUpdate => "update_update",
            ConflictKind::DeleteUpdate => "delete_update",
            ConflictKind::UpdateDelete => "update_delete",
        }
    }

    /// The kind named `name` (`sync_conflicts.kind`).
    pub fn parse(name: &str) -> Option<ConflictKind> {
        ConflictKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Pending,
    Won(Side),
}

impl Resolution {
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Pending => "pending",
            Resolution::Won(Side::Source) => "source",
            Resolution::Won(Side::Target) => "target",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub fields: Vec<String>,
    pub source_value: Value,
    pub target_value: Value,
    pub base_value: Value,
    pub resolution: Resolution,
    pub resolved_value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// create the row with these values
    Insert(Row),
    /// for the target: only the fields to change; for the source: the whole merged
    /// row in target names (the shell maps it back and writes what differs)
    Update(Row),
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LinkAction {
    Keep,
    /// store (or create) the link with this base
    Upsert(Row),
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub target: Option<Write>,
    pub source: Option<Write>,
    pub link: LinkAction,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    fn nothing() -> Plan {
        Plan {
            target: None,
            source: None,
            link: LinkAction::Keep,
            conflicts: vec![],
        }
    }
    pub fn is_noop(&self) -> bool {
        self.target.is_none()
            && self.source.is_none()
            && self.link == LinkAction::Keep
            && self.conflicts.is_empty()
    }
}

/// When each side last changed each field (microseconds), from the change records.
#[derive(Debug, Clone, Default)]
pub struct Times {
    pub fields: HashMap<String, i64>,
    /// latest change of any kind to the entity (deletes included)
    pub last: Option<i64>,
}

pub struct Input<'a> {
    /// target-space field names, in mapping order
    pub fields: &'a [String],
    pub source: Option<&'a Row>,
    pub target: Option<&'a Row>,
    pub base: Option<&'a Row>,
    pub source_times: &'a Times,
    pub target_times: &'a Times,
    /// fields with a pending manual conflict: left alone until resolved
    pub pending: &'a [String],
    pub strategy: Strategy,
    pub direction: Direction,
}

fn get<'r>(row: Option<&'r Row>, f: &str) -> &'r Value {
    row.and_then(|r| r.get(f)).unwrap_or(&Value::Null)
}

fn only(row: &Row, fields: &[String]) -> Row {
    fields
        .iter()
        .map(|f| (f.clone(), row.get(f).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// Who wins a conflict under the config's strategy and direction. None = manual.
fn winner(inp: &Input, source_at: Option<i64>, target_at: Option<i64>) -> Option<Side> {
    match inp.direction {
        Direction::SourceToTarget => return Some(Side::Source),
        Direction::TargetToSource => return Some(Side::Target),
        Direction::Bidirectional => {}
    }
    match inp.strategy {
        Strategy::SourceWins => Some(Side::Source),
        Strategy::TargetWins => Some(Side::Target),
        Strategy::Manual => None,
        // later change wins; unknown times count as oldest; a tie goes to the source
        Strategy::LatestWins => {
            if target_at.unwrap_or(i64::MIN) > source_at.unwrap_or(i64::MIN) {
                Some(Side::Target)
            } else {
                Some(Side::Source)
            }
        }
    }
}

pub fn merge(inp: &Input) -> Plan {
    if inp.pending.iter().any(|p| p == WHOLE_ENTITY) {
        // a delete conflict waits for a person
        return Plan::nothing();
    }
    match (inp.source, inp.target, inp.base) {
        (None, None, None) => Plan::nothing(),
        (None, None, Some(_)) => Plan {
            link: LinkAction::Remove,
            ..Plan::nothing()
        },
        (Some(s), None, None) if inp.direction.to_target() => {
            create_on(Side::Target, only(s, inp.fields))
        }
        (None, Some(t), None) if inp.direction.to_source() => {
            create_on(Side::Source, only(t, inp.fields))
        }
        (Some(_), None, None) | (None, Some(_), None) => Plan::nothing(),
        (None, Some(t), Some(b)) => deleted_on_one_side(inp, Side::Source, t, b),
        (Some(s), None, Some(b)) => deleted_on_one_side(inp, Side::Target, s, b),
        (Some(s), Some(t), base) => merge_fields(inp, s, t, base),
    }
}

/// A plan that writes `w` on one side and does `link` to the link.
fn on_side(side: Side, w: Write, link: LinkAction) -> Plan {
    let mut p = Plan {
        link,
        ..Plan::nothing()
    };
    match side {
        Side::Source => p.source = Some(w),
        Side::Target => p.target = Some(w),
    }
    p
}

/// Create the entity on `side` with these values and link it with them as the base.
fn create_on(side: Side, v: Row) -> Plan {
    on_side(side, Write::Insert(v.clone()), LinkAction::Upsert(v))
}

/// One side deleted a linked entity; the other side still has it (`alive`).
fn deleted_on_one_side(inp: &Input, deleted: Side, alive: &Row, base: &Row) -> Plan {
    let alive_side = if deleted == Side::Source {
        Side::Target
    } else {
        Side::Source
    };
    let delete_flows = match deleted {
        Side::Source => inp.direction.to_target(),
        Side::Target => inp.direction.to_source(),
    };
    let changed: Vec<String> = inp
        .fields
        .iter()
        .filter(|f| !values_equal(get(Some(alive), f), get(Some(base), f)))
        .cloned()
        .collect();
    let delete_write = |side: Side| on_side(side, Write::Delete, LinkAction::Remove);
    if changed.is_empty() {
        // untouched on the surviving side: the delete propagates; against the flow of a
        // one-way config the authoritative side re-creates the row it still has
        if delete_flows {
            return delete_write(alive_side);
        }
        return create_on(deleted, only(alive, inp.fields));
    }
    // delete vs update
    let win = winner(inp, inp.source_times.last, inp.target_times.last);
    let alive_vals = Value::Object(only(alive, &changed));
    let base_vals = Value::Object(only(base, &changed));
    let (kind, source_value, target_value) = match deleted {
        Side::Source => (ConflictKind::DeleteUpdate, Value::Null, alive_vals.clone()),
        Side::Target => (ConflictKind::UpdateDelete, alive_vals.clone(), Value::Null),
    };
    let mut conflict = Conflict {
        kind,
        fields: changed,
        source_value,
        target_value,
        base_value: base_vals,
        resolution: Resolution::Pending,
        resolved_value: Value::Null,
    };
    match win {
        None => Plan {
            conflicts: vec![conflict],
            ..Plan::nothing()
        },
        Some(w) if w == deleted => {
            conflict.resolution = Resolution::Won(w);
            let mut p = if delete_flows {
                delete_write(alive_side)
            } else {
                Plan {
                    link: LinkAction::Remove,
                    ..Plan::nothing()
                }
            };
            p.conflicts.push(conflict);
            p
        }
        Some(w) => {
            // the update wins: re-create the deleted side from the survivor
            conflict.resolution = Resolution::Won(w);
            conflict.resolved_value = alive_vals;
            Plan {
                conflicts: vec![conflict],
                ..create_on(deleted, only(alive, inp.fields))
            }
        }
    }
}

fn merge_fields(inp: &Input, s: &Row, t: &Row, base: Option<&Row>) -> Plan {
    // per field: what the target, the source (target names) and the base should hold,
    // borrowed; values are cloned only into what is written
    let mut merged: Vec<(&String, Sides<&Value>, &Value)> = Vec::with_capacity(inp.fields.len());
    let mut conflicts = Vec::new();
    for f in inp.fields {
        let (sv, tv) = (get(Some(s), f), get(Some(t), f));
        let bv = get(base, f);
        let pending = inp.pending.iter().any(|p| p == f);
        let s_changed = base.is_none() || !values_equal(sv, bv);
        let t_changed = base.is_none() || !values_equal(tv, bv);
        // (target, source, base)
        let (mt, ms, mb) = if pending {
            (tv, sv, bv)
        } else if values_equal(sv, tv) {
            (tv, sv, tv)
        } else if s_changed && !t_changed {
            if inp.direction.to_target() {
                (sv, sv, sv)
            } else {
                (tv, sv, tv)
            }
        } else if t_changed && !s_changed {
            if inp.direction.to_source() {
                (tv, tv, tv)
            } else {
                (tv, sv, sv)
            }
        } else {
            let sa = inp
                .source_times
                .fields
                .get(f)
                .copied()
                .or(inp.source_times.last);
            let ta = inp
                .target_times
                .fields
                .get(f)
                .copied()
                .or(inp.target_times.last);
            let win = winner(inp, sa, ta);
            let mut c = Conflict {
                kind: ConflictKind::UpdateUpdate,
                fields: vec![f.clone()],
                source_value: sv.clone(),
                target_value: tv.clone(),
                base_value: bv.clone(),
                resolution: Resolution::Pending,
                resolved_value: Value::Null,
            };
            let out = match win {
                None => (tv, sv, bv),
                Some(side) => {
                    let v = if side == Side::Source { sv } else { tv };
                    c.resolution = Resolution::Won(side);
                    c.resolved_value = v.clone();
                    // a one-way config leaves its authoritative side alone
                    let ms = if inp.direction.to_source() { v } else { sv };
                    let mt = if inp.direction.to_target() { v } else { tv };
                    (mt, ms, v)
                }
            };
            conflicts.push(c);
            out
        };
        merged.push((f, Sides::new(ms, mt), mb));
    }
    let target_changes: Row = merged
        .iter()
        .filter(|(f, v, _)| !values_equal(v.target, get(Some(t), f)))
        .map(|(f, v, _)| ((*f).clone(), v.target.clone()))
        .collect();
    let source_differs = merged
        .iter()
        .any(|(f, v, _)| !values_equal(v.source, get(Some(s), f)));
    let base_differs = match base {
        None => true,
        Some(b) => merged
            .iter()
            .any(|(f, _, mb)| !values_equal(mb, get(Some(b), f))),
    };
    Plan {
        target: (!target_changes.is_empty()).then_some(Write::Update(target_changes)),
        source: source_differs.then(|| {
            Write::Update(
                merged
                    .iter()
                    .map(|(f, v, _)| ((*f).clone(), v.source.clone()))
                    .collect(),
            )
        }),
        link: if base_differs {
            LinkAction::Upsert(
                merged
                    .iter()
                    .map(|(f, _, mb)| ((*f).clone(), (*mb).clone()))
                    .collect(),
            )
        } else {
            LinkAction::Keep
        },
        conflicts,
    }
}

/// The JSON shape a value takes in a column of the given kind, so that values moved
/// between columns of different types compare equal to what the column reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Number,
    Bool,
    Text,
    Other,
}

impl ValueKind {
    /// From a `format_type` name.
    pub fn of_type(t: &str) -> ValueKind {
        let t = t.split('(').next().unwrap_or(t).trim();
        match t {
            "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => {
                ValueKind::Number
            }
            "boolean" => ValueKind::Bool,
            "text" | "character varying" | "character" | "citext" | "name" => ValueKind::Text,
            _ => ValueKind::Other,
        }
    }
}

pub fn coerce(v: Value, kind: ValueKind) -> Value {
    match (kind, v) {
        (ValueKind::Number, Value::String(s)) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                Value::from(i)
            } else if let Ok(n) = serde_json::from_str::<serde_json::Number>(t) {
                // a decimal keeps all its digits
                Value::Number(n)
            } else if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Value::Number(n)
            } else {
                Value::String(s)
            }
        }
        (ValueKind::Bool, Value::String(s)) => match s.as_str() {
            "true" | "t" => Value::Bool(true),
            "false" | "f" => Value::Bool(false),
            _ => Value::String(s),
        },
        (ValueKind::Text, Value::Number(n)) => Value::String(n.to_string()),
        (ValueKind::Text, Value::Bool(b)) => Value::String(b.to_string()),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    fn fields() -> Vec<String> {
        vec!["name".into(), "email".into(), "phone".into()]
    }

    struct Case {
        s: Option<Row>,
        t: Option<Row>,
        b: Option<Row>,
        st: Times,
        tt: Times,
        pending: Vec<String>,
        strategy: Strategy,
        direction: Direction,
    }

    impl Case {
        fn new(s: Option<Value>, t: Option<Value>, b: Option<Value>) -> Case {
            Case {
                s: s.map(row),
                t: t.map(row),
                b: b.map(row),
                st: Times::default(),
                tt: Times::default(),
                pending: vec![],
                strategy: Strategy::LatestWins,
                direction: Direction::Bidirectional,
            }
        }
        fn strategy(mut self, s: Strategy) -> Case {
            self.strategy = s;
            self
        }
        fn direction(mut self, d: Direction) -> Case {
            self.direction = d;
            self
        }
        fn times(mut self, field: &str, s: i64, t: i64) -> Case {
            self.st.fields.insert(field.into(), s);
            self.tt.fields.insert(field.into(), t);
            self.st.last = Some(s);
            self.tt.last = Some(t);
            self
        }
        fn run(&self) -> Plan {
            let f = fields();
            merge(&Input {
                fields: &f,
                source: self.s.as_ref(),
                target: self.t.as_ref(),
                base: self.b.as_ref(),
                source_times: &self.st,
                target_times: &self.tt,
                pending: &self.pending,
                strategy: self.strategy,
                direction: self.direction,
            })
        }
    }

    fn base() -> Value {
        json!({"name": "Ann", "email": "a@x.io", "phone": "1"})
    }

    #[test]
    fn nothing_changed_is_a_noop() {
        let p = Case::new(Some(base()), Some(base()), Some(base())).run();
        assert!(p.is_noop(), "{p:?}");
    }

    #[test]
    fn one_sided_changes_copy_across_and_merge_per_field() {
        let s = json!({"name": "Anne", "email": "a@x.io", "phone": "1"});
        let t = json!({"name": "Ann", "email": "a@x.io", "phone": "2"});
        let p = Case::new(Some(s), Some(t), Some(base())).run();
        assert_eq!(p.target, Some(Write::Update(row(json!({"name": "Anne"})))));
        assert_eq!(
            p.source,
            Some(Write::Update(row(
                json!({"name": "Anne", "email": "a@x.io", "phone": "2"})
            )))
        );
        assert_eq!(
            p.link,
            LinkAction::Upsert(row(
                json!({"name": "Anne", "email": "a@x.io", "phone": "2"})
            ))
        );
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn same_change_on_both_sides_converges() {
        let v = json!({"name": "Anne", "email": "a@x.io", "phone": "1"});
        let p = Case::new(Some(v.clone()), Some(v.clone()), Some(base())).run();
        assert_eq!(p.target, None);
        assert_eq!(p.source, None);
        assert_eq!(p.link, LinkAction::Upsert(row(v)));
        assert!(p.conflicts.is_empty());
    }

    fn conflicting() -> Case {
        let s = json!({"name": "Src", "email": "a@x.io", "phone": "1"});
        let t = json!({"name": "Tgt", "email": "a@x.io", "phone": "9"});
        Case::new(Some(s), Some(t), Some(base()))
    }

    #[test]
    fn source_wins_keeps_the_losing_value() {
        let p = conflicting().strategy(Strategy::SourceWins).run();
        assert_eq!(p.target, Some(Write::Update(row(json!({"name": "Src"})))));
        assert_eq!(p.conflicts.len(), 1);
        let c = &p.conflicts[0];
        assert_eq!(c.fields, vec!["name"]);
        assert_eq!(c.target_value, json!("Tgt"), "losing value recorded");
        assert_eq!(c.base_value, json!("Ann"));
        assert_eq!(c.resolution, Resolution::Won(Side::Source));
        // the non-conflicting phone change from the target still flows to the source
        assert_eq!(
            p.source,
            Some(Write::Update(row(
                json!({"name": "Src", "email": "a@x.io", "phone": "9"})
            )))
        );
    }

    #[test]
    fn target_wins() {
        let p = conflicting().strategy(Strategy::TargetWins).run();
        assert_eq!(p.target, None);
        assert_eq!(
            p.source,
            Some(Write::Update(row(
                json!({"name": "Tgt", "email": "a@x.io", "phone": "9"})
            )))
        );
        assert_eq!(p.conflicts[0].source_value, json!("Src"));
        assert_eq!(p.conflicts[0].resolution, Resolution::Won(Side::Target));
    }

    #[test]
    fn latest_wins_uses_field_times() {
        let p = conflicting().times("name", 100, 200).run();
        assert_eq!(p.conflicts[0].resolution, Resolution::Won(Side::Target));
        let p = conflicting().times("name", 300, 200).run();
        assert_eq!(p.conflicts[0].resolution, Resolution::Won(Side::Source));
        assert_eq!(p.target, Some(Write::Update(row(json!({"name": "Src"})))));
        // tie and unknown times go to the source
        let p = conflicting().times("name", 5, 5).run();
        assert_eq!(p.conflicts[0].resolution, Resolution::Won(Side::Source));
        let p = conflicting().run();
        assert_eq!(p.conflicts[0].resolution, Resolution::Won(Side::Source));
    }

    #[test]
    fn manual_queues_and_leaves_the_field_alone() {
        let p = conflicting().strategy(Strategy::Manual).run();
        assert_eq!(p.conflicts[0].resolution, Resolution::Pending);
        assert_eq!(p.target, None, "the conflicting field is not written");
        // phone (target-only change) still flows; name keeps each side's value
        assert_eq!(
            p.source,
            Some(Write::Update(row(
                json!({"name": "Src", "email": "a@x.io", "phone": "9"})
            )))
        );
        assert_eq!(
            p.link,
            LinkAction::Upsert(row(json!({"name": "Ann", "email": "a@x.io", "phone": "9"})))
        );
    }

    #[test]
    fn pending_field_is_not_conflicted_again() {
        let mut c = conflicting().strategy(Strategy::Manual);
        c.pending = vec!["name".into()];
        let p = c.run();
        assert!(p.conflicts.is_empty());
        assert_eq!(p.target, None);
    }

    #[test]
    fn creates_in_both_directions() {
        let v = base();
        let p = Case::new(Some(v.clone()), None, None).run();
        assert_eq!(p.target, Some(Write::Insert(row(v.clone()))));
        assert_eq!(p.link, LinkAction::Upsert(row(v.clone())));
        let p = Case::new(None, Some(v.clone()), None).run();
        assert_eq!(p.source, Some(Write::Insert(row(v.clone()))));
        let p = Case::new(None, Some(v), None)
            .direction(Direction::SourceToTarget)
            .run();
        assert!(p.is_noop());
    }

    #[test]
    fn matched_rows_without_base_merge_as_conflicts_only_where_they_differ() {
        let s = json!({"name": "Ann", "email": "a@x.io", "phone": "1"});
        let t = json!({"name": "Ann", "email": "a@x.io", "phone": "2"});
        let p = Case::new(Some(s), Some(t), None)
            .strategy(Strategy::TargetWins)
            .run();
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].fields, vec!["phone"]);
        assert_eq!(
            p.link,
            LinkAction::Upsert(row(json!({"name": "Ann", "email": "a@x.io", "phone": "2"})))
        );
    }

    #[test]
    fn deletes_propagate_when_the_other_side_is_untouched() {
        let p = Case::new(None, Some(base()), Some(base())).run();
        assert_eq!(p.target, Some(Write::Delete));
        assert_eq!(p.link, LinkAction::Remove);
        let p = Case::new(Some(base()), None, Some(base())).run();
        assert_eq!(p.source, Some(Write::Delete));
        let p = Case::new(None, None, Some(base())).run();
        assert_eq!(p.link, LinkAction::Remove);
        assert!(p.target.is_none() && p.source.is_none());
    }

    #[test]
    fn delete_versus_update() {
        let t = json!({"name": "Ann", "email": "a@x.io", "phone": "7"});
        // source deleted at 100, target updated at 200: latest wins -> re-create source
        let mut c = Case::new(None, Some(t.clone()), Some(base()));
        c.st.last = Some(100);
        c.tt.last = Some(200);
        let p = c.run();
        assert_eq!(p.source, Some(Write::Insert(row(t.clone()))));
        assert_eq!(p.conflicts[0].kind, ConflictKind::DeleteUpdate);
        assert_eq!(p.conflicts[0].fields, vec!["phone"]);
        // source wins -> the delete goes through, the update is kept in the conflict
        let p = Case::new(None, Some(t.clone()), Some(base()))
            .strategy(Strategy::SourceWins)
            .run();
        assert_eq!(p.target, Some(Write::Delete));
        assert_eq!(p.conflicts[0].target_value, json!({"phone": "7"}));
        // manual -> nothing moves
        let p = Case::new(None, Some(t), Some(base()))
            .strategy(Strategy::Manual)
            .run();
        assert!(p.target.is_none() && p.source.is_none());
        assert_eq!(p.link, LinkAction::Keep);
        assert_eq!(p.conflicts[0].resolution, Resolution::Pending);
        // update on source vs delete on target
        let s = json!({"name": "Ann!", "email": "a@x.io", "phone": "1"});
        let p = Case::new(Some(s.clone()), None, Some(base()))
            .strategy(Strategy::SourceWins)
            .run();
        assert_eq!(p.target, Some(Write::Insert(row(s))));
        assert_eq!(p.conflicts[0].kind, ConflictKind::UpdateDelete);
    }

    #[test]
    fn whole_entity_pending_is_skipped() {
        let mut c = Case::new(None, Some(base()), Some(base()));
        c.pending = vec![WHOLE_ENTITY.into()];
        assert!(c.run().is_noop());
    }

    #[test]
    fn one_way_source_to_target() {
        let d = Direction::SourceToTarget;
        // target-only edit is neither copied back nor reverted
        let t = json!({"name": "Ann", "email": "a@x.io", "phone": "2"});
        let p = Case::new(Some(base()), Some(t), Some(base()))
            .direction(d)
            .run();
        assert_eq!(p.source, None);
        assert_eq!(p.target, None);
        // both changed: source wins regardless of strategy, loss recorded
        let p = conflicting()
            .direction(d)
            .strategy(Strategy::TargetWins)
            .run();
        assert_eq!(p.target, Some(Write::Update(row(json!({"name": "Src"})))));
        assert_eq!(p.source, None, "the authoritative side is never written");
        assert_eq!(p.conflicts[0].resolution, Resolution::Won(Side::Source));
        // a target delete does not flow back: the source re-creates the target row
        let p = Case::new(Some(base()), None, Some(base()))
            .direction(d)
            .run();
        assert_eq!(p.source, None);
        assert_eq!(p.target, Some(Write::Insert(row(base()))));
        assert_eq!(p.link, LinkAction::Upsert(row(base())));
    }

    #[test]
    fn one_way_target_to_source() {
        let d = Direction::TargetToSource;
        let s = json!({"name": "Anne", "email": "a@x.io", "phone": "1"});
        let p = Case::new(Some(s), Some(base()), Some(base()))
            .direction(d)
            .run();
        assert_eq!(p.target, None);
        let p = conflicting().direction(d).run();
        assert_eq!(p.target, None);
        assert_eq!(
            p.source,
            Some(Write::Update(row(
                json!({"name": "Tgt", "email": "a@x.io", "phone": "9"})
            )))
        );
        let p = Case::new(Some(base()), None, None).direction(d).run();
        assert!(p.is_noop(), "no creates against the flow");
    }

    #[test]
    fn coerce_matches_column_types() {
        assert_eq!(coerce(json!("42"), ValueKind::Number), json!(42));
        assert_eq!(coerce(json!("4.5"), ValueKind::Number), json!(4.5));
        assert_eq!(coerce(json!("abc"), ValueKind::Number), json!("abc"));
        assert_eq!(coerce(json!(7), ValueKind::Text), json!("7"));
        assert_eq!(coerce(json!("true"), ValueKind::Bool), json!(true));
        assert_eq!(coerce(json!(null), ValueKind::Number), json!(null));
        assert_eq!(ValueKind::of_type("numeric(10,2)"), ValueKind::Number);
        assert_eq!(ValueKind::of_type("character varying(20)"), ValueKind::Text);
    }

    #[test]
    fn names_read_back() {
        for s in STRATEGIES {
            assert_eq!(Strategy::parse(s).unwrap().name(), *s);
        }
        for k in ConflictKind::ALL {
            assert_eq!(ConflictKind::parse(k.name()), Some(k));
        }
        assert_eq!(ConflictKind::parse("update"), None);
    }

    #[test]
    fn parse_errors_list_allowed_values() {
        let e = Strategy::parse("newest").unwrap_err();
        assert!(e.contains("newest") && e.contains("latest_wins") && e.contains("manual"));
        let e = Direction::parse("both").unwrap_err();
        assert!(e.contains("both") && e.contains("source_to_target"));
    }
}
