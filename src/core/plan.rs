//! Every decision a run makes about one batch of entity pairs, as pure functions.
//!
//! The shell (`sync`) reads rows and change records and hands them here; what comes
//! back says what to write. In the order a batch uses them:
//! - `fold`: one work item per pair from the work list's rows (one per changed side);
//! - `Pending`: which pairs wait for a person (manual conflicts);
//! - `copy_direction`: which pairs the one-statement column copy may bring up to date;
//! - `attach_bases`: the links' bases, and the pairs whose link moved meanwhile;
//! - `skip_linked_by_earlier_batches`, `match_wanted`, `assign_matches`,
//!   `apply_matches`: free targets matched to new sources on `match_on`;
//! - `time_requests`, `source_times_by_field`: per-field change times for latest_wins;
//! - `plan`: the three-way merge of each pair (`merge::merge`), as writes in each
//!   table's own columns (`Op`);
//! - `split_raced`: the retry after a concurrent write;
//! - `link_changes`: which links to update, drop and insert after the writes.

use crate::core::mapping::{values_equal, Mapping};
use crate::core::merge::{
    self, coerce, Conflict, Direction, Input, LinkAction, Plan, Row, Strategy, Times, ValueKind,
    Write,
};
use crate::core::types::{Side, Sides};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The marker, in a pending conflict's field list, of a conflict about the whole
/// entity (a delete against an update): the pair waits entirely.
pub const WHOLE_ENTITY: &str = merge::WHOLE_ENTITY;

/// One entity pair to look at, from the work list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkItem {
    pub ids: Sides<Option<String>>,
    /// latest change of each side in the window (microseconds since the epoch)
    pub last: Sides<Option<i64>>,
    /// the pair's change records (ctids), for per-field times when both sides changed
    /// and the strategy compares times; at most `CHANGE_TIDS` per side
    pub change_tids: Vec<String>,
    /// false when a side had more change records than that (then the times are read
    /// by scanning the window for the entity)
    pub change_tids_complete: bool,
    /// the link's ctid when the pair is linked (then both ids are set)
    pub link: Option<String>,
    /// the link's base, attached for the pairs that go through the merge
    pub base: Option<Row>,
}

impl WorkItem {
    fn same_pair(&self, o: &WorkItem) -> bool {
        self.ids == o.ids
    }

    /// Fold another work-list row of the same pair into this one.
    fn absorb(&mut self, o: WorkItem) {
        self.last.source = self.last.source.max(o.last.source);
        self.last.target = self.last.target.max(o.last.target);
        self.change_tids.extend(o.change_tids);
        self.change_tids_complete &= o.change_tids_complete;
        if self.link.is_none() {
            self.link = o.link;
        }
    }
}

/// Fold a fetch of the work list (sorted by pair) into one item per pair.
/// `carry`: the last pair of the previous fetch; `more`: whether another fetch
/// follows. Returns the items of this batch and the pair to carry into the next one
/// (the last, which the next fetch may continue).
pub fn fold(
    carry: Option<WorkItem>,
    rows: Vec<WorkItem>,
    more: bool,
) -> (Vec<WorkItem>, Option<WorkItem>) {
    let mut items: Vec<WorkItem> = Vec::with_capacity(rows.len() + 1);
    items.extend(carry);
    for it in rows {
        match items.last_mut() {
            Some(last) if last.same_pair(&it) => last.absorb(it),
            _ => items.push(it),
        }
    }
    let carry = if more { items.pop() } else { None };
    (items, carry)
}

/// A pending manual conflict of a config: its pair, and its fields (`WHOLE_ENTITY`
/// for a delete conflict).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingConflict {
    pub ids: Sides<Option<String>>,
    pub fields: Vec<String>,
}

/// The pending manual conflicts of a batch's entities, found by either key.
pub struct Pending {
    list: Vec<PendingConflict>,
    by: HashMap<(Side, String), Vec<usize>>,
}

impl Pending {
    pub fn new(list: Vec<PendingConflict>) -> Self {
        let mut by: HashMap<(Side, String), Vec<usize>> = HashMap::new();
        for (i, c) in list.iter().enumerate() {
            for side in Side::BOTH {
                if let Some(id) = c.ids.get(side) {
                    by.entry((side, id.clone())).or_default().push(i);
                }
            }
        }
        Pending { list, by }
    }

    /// Whether the entity `id` of `side` has a pending conflict.
    pub fn waits(&self, side: Side, id: &str) -> bool {
        self.by.contains_key(&(side, id.to_string()))
    }

    /// The fields waiting for a person in the pair `ids` (a conflict found by both
    /// keys counts once).
    pub fn fields_of(&self, ids: &Sides<Option<String>>) -> Vec<String> {
        let mut hits: Vec<usize> = Side::BOTH
            .into_iter()
            .filter_map(|side| self.by.get(&(side, ids.get(side).clone()?)))
            .flatten()
            .copied()
            .collect();
        hits.sort_unstable();
        hits.dedup();
        hits.iter()
            .flat_map(|&i| self.list[i].fields.iter().cloned())
            .collect()
    }
}

/// The side the column copy may write for `item`: a linked pair that changed on one
/// side only and waits for no person is copied to the other side. None: the pair goes
/// through the merge.
pub fn copy_direction(item: &WorkItem, pending: &Pending) -> Option<Side> {
    let (s, t) = item.ids.pair()?;
    item.link.as_ref()?;
    if pending.waits(Side::Source, s) || pending.waits(Side::Target, t) {
        return None;
    }
    match (item.last.source, item.last.target) {
        (Some(_), None) => Some(Side::Target),
        (None, Some(_)) => Some(Side::Source),
        _ => None,
    }
}

/// Attach to each linked item its link's base from `bases` (source id -> (target
/// id, base), as read now). A linked item whose link is gone or now pairs its source
/// with another target (an earlier batch of this run dropped or replaced it: a key
/// handed out again) is taken out; its pair is returned, to be retried next run.
pub fn attach_bases(
    items: &mut Vec<WorkItem>,
    mut bases: HashMap<String, (String, Row)>,
) -> Vec<Sides<Option<String>>> {
    let mut relinked = Vec::new();
    items.retain_mut(|it| {
        if it.link.is_none() {
            return true;
        }
        match it.ids.source.as_ref().and_then(|s| bases.remove(s)) {
            Some((t, b)) if it.ids.target.as_ref() == Some(&t) => {
                it.base = Some(b);
                true
            }
            _ => {
                relinked.push(std::mem::take(&mut it.ids));
                false
            }
        }
    });
    relinked
}

/// Leave out the unlinked target-only items whose target an earlier batch of this
/// run linked (by a match or a create): that pair is handled.
pub fn skip_linked_by_earlier_batches(
    items: Vec<WorkItem>,
    linked: &HashSet<String>,
) -> Vec<WorkItem> {
    items
        .into_iter()
        .filter(|it| {
            !(it.base.is_none()
                && it.ids.source.is_none()
                && it.ids.target.as_ref().is_some_and(|t| linked.contains(t)))
        })
        .collect()
}

/// A source row mapped to target space: None when the source row is gone, an error
/// when a transform fails on it.
pub type Projected = Option<Result<Row, String>>;

/// The pairs (by index) that look for an existing target on `match_on`: new sources
/// (no link, no target) whose values could be mapped; with those values.
pub fn match_wanted(pairs: &[WorkItem], projected: &[Projected]) -> Vec<(usize, Row)> {
    pairs
        .iter()
        .zip(projected)
        .enumerate()
        .filter(|(_, (p, _))| p.base.is_none() && p.ids.target.is_none())
        .filter_map(|(i, (_, proj))| match proj {
            Some(Ok(row)) => Some((i, row.clone())),
            _ => None,
        })
        .collect()
}

/// Targets already paired with a linked source in this batch: not free to match.
pub fn taken_targets(pairs: &[WorkItem]) -> HashSet<String> {
    pairs
        .iter()
        .filter(|p| p.base.is_some())
        .filter_map(|p| p.ids.target.clone())
        .collect()
}

/// Choose the match of each wanting pair from the candidates `found` ((pair index,
/// target key), sorted by index, then key): the first candidate of each pair that no
/// other pair took and that is not in `taken`. Returns pair index -> target key.
pub fn assign_matches(
    found: impl IntoIterator<Item = (usize, String)>,
    taken: &HashSet<String>,
) -> HashMap<usize, String> {
    let mut used = taken.clone();
    let mut out = HashMap::new();
    for (n, k) in found {
        if out.contains_key(&n) || used.contains(&k) {
            continue;
        }
        used.insert(k.clone());
        out.insert(n, k);
    }
    out
}

/// Give each matched pair its target, and leave out the target-only items of this
/// batch whose target a source just matched (that pair handles it). Returns the
/// pairs and their projections, in order.
pub fn apply_matches(
    mut pairs: Vec<WorkItem>,
    projected: Vec<Projected>,
    matches: &HashMap<usize, String>,
) -> (Vec<WorkItem>, Vec<Projected>) {
    let matched: HashSet<&String> = matches.values().collect();
    let absorbed: Vec<bool> = pairs
        .iter()
        .map(|p| {
            p.ids.source.is_none() && p.ids.target.as_ref().is_some_and(|t| matched.contains(t))
        })
        .collect();
    for (&i, t) in matches {
        pairs[i].ids.target = Some(t.clone());
    }
    pairs
        .into_iter()
        .zip(projected)
        .zip(absorbed)
        .filter(|(_, absorbed)| !absorbed)
        .map(|(p, _)| p)
        .unzip()
}

/// Which change records to read for per-field times: only pairs that changed on both
/// sides can conflict. `by_window`: the run reads a window (not an initial load).
/// Returns the records' ctids (where the work list had them all) and, per side, the
/// entities whose records must be found by scanning the window.
pub fn time_requests(pairs: &[WorkItem], by_window: bool) -> (Vec<String>, Sides<Vec<String>>) {
    let mut tids = Vec::new();
    let mut scan: Sides<Vec<String>> = Sides::default();
    for p in pairs
        .iter()
        .filter(|p| p.last.source.is_some() && p.last.target.is_some())
    {
        if by_window && !p.change_tids_complete {
            scan.source.extend(p.ids.source.clone());
            scan.target.extend(p.ids.target.clone());
        } else {
            tids.extend(p.change_tids.iter().cloned());
        }
    }
    (tids, scan)
}

/// Per-field change times of the entities: (side, id) -> column -> microseconds.
pub type FieldTimes = HashMap<(Side, String), HashMap<String, i64>>;

/// Source change times keyed by target field: the fields of a mapping unit share the
/// latest time of its source columns.
pub fn source_times_by_field(mapping: &Mapping, t: &Times) -> Times {
    let mut out = Times {
        fields: HashMap::new(),
        last: t.last,
    };
    if t.fields.is_empty() {
        return out;
    }
    for unit in &mapping.fields {
        let at = unit
            .source
            .iter()
            .filter_map(|c| t.fields.get(c))
            .max()
            .copied();
        if let Some(at) = at {
            for f in &unit.target {
                out.fields.insert(f.clone(), at);
            }
        }
    }
    out
}

/// How values cross between a config's two tables: the mapping, and the kind of value
/// each column holds (for coercion to its type).
#[derive(Debug, Clone)]
pub struct Shape {
    pub mapping: Mapping,
    /// per side: column name -> kind of its type
    pub kinds: Sides<HashMap<String, ValueKind>>,
}

impl Shape {
    fn kind(&self, side: Side, col: &str) -> ValueKind {
        self.kinds
            .get(side)
            .get(col)
            .copied()
            .unwrap_or_else(|| ValueKind::of_type(""))
    }

    /// Target-space fields in mapping order.
    pub fn fields(&self) -> Vec<String> {
        self.mapping.target_columns()
    }

    /// Source row -> target-space values, coerced to the target columns' types.
    pub fn project(&self, row: &Row) -> Result<Row, String> {
        let m = self.mapping.to_target(row).map_err(|e| e.message)?;
        Ok(m.into_iter()
            .map(|(k, v)| {
                let kind = self.kind(Side::Target, &k);
                (k, coerce(v, kind))
            })
            .collect())
    }

    /// Target-space values -> source columns, coerced to the source columns' types.
    pub fn unproject(&self, row: &Row) -> Result<Row, String> {
        let m = self.mapping.to_source(row).map_err(|e| e.message)?;
        Ok(m.into_iter()
            .map(|(k, v)| {
                let kind = self.kind(Side::Source, &k);
                (k, coerce(v, kind))
            })
            .collect())
    }

    /// The source columns to write so the source holds `merged` (target names): only
    /// the mapping units whose values really differ from the current source row `cur`,
    /// so a lossy transform (lowercase, trim) never rewrites a column nobody changed.
    pub fn source_changes(&self, merged: &Row, cur: &Row) -> Result<Row, String> {
        let now = self.project(cur)?;
        let want = self.unproject(merged)?;
        let null = Value::Null;
        let mut out = Row::new();
        for unit in &self.mapping.fields {
            let differs = unit.target.iter().any(|f| {
                !values_equal(merged.get(f).unwrap_or(&null), now.get(f).unwrap_or(&null))
            });
            if !differs {
                continue;
            }
            for c in &unit.source {
                let v = want.get(c).cloned().unwrap_or(Value::Null);
                if !cur.get(c).is_some_and(|x| values_equal(x, &v)) {
                    out.insert(c.clone(), v);
                }
            }
        }
        Ok(out)
    }
}

/// Which version of a row a run read: its ctid (to find it fast) and xmin (to be sure
/// it is still that version: a TID scan does not re-check its ctid after waiting for a
/// concurrent writer, a filter on xmin is re-checked), and the partition (or
/// inheritance child) holding it, since a ctid is only unique within one heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub ctid: String,
    pub xmin: String,
    pub tableoid: String,
}

/// A row as a run read it: its version (which guards the write-back) and the columns
/// the mapping uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRow {
    pub version: Version,
    pub row: Row,
}

/// What to do for one entity pair, in each table's own column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub ids: Sides<Option<String>>,
    /// (source id, target id) of the link before this run
    pub old_link: Option<(String, String)>,
    /// the version of each side's row the run read: writes are guarded by it, so a
    /// row changed by someone else since is never overwritten
    pub versions: Sides<Option<Version>>,
    pub writes: Sides<Option<Write>>,
    pub link: LinkAction,
    pub conflicts: Vec<Conflict>,
}

/// Everything the merge of one batch needs, as the shell read it.
pub struct Batch<'a> {
    pub shape: &'a Shape,
    pub strategy: Strategy,
    pub direction: Direction,
    /// the pairs, after matching
    pub pairs: &'a [WorkItem],
    /// each pair's source row in target space (same order as `pairs`)
    pub projected: Vec<Projected>,
    /// source rows by key (the columns the mapping reads)
    pub source_rows: &'a HashMap<String, ReadRow>,
    /// target rows by key (the mapped fields); each belongs to one pair
    pub target_rows: HashMap<String, ReadRow>,
    pub pending: &'a Pending,
    pub field_times: &'a FieldTimes,
}

/// A pair the plan could not handle, with the reason (recorded in sync_errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub ids: Sides<Option<String>>,
    pub message: String,
}

/// What a batch writes.
#[derive(Debug, Default)]
pub struct BatchPlan {
    pub ops: Vec<Op>,
    pub failed: Vec<Failure>,
}

/// The target row's mapped fields only, each present (NULL when the row lacks it).
pub fn target_values(mut row: Row, fields: &[String]) -> Row {
    // (a row read whole, e.g. for more than 50 fields, has other columns too)
    row.retain(|k, _| fields.contains(k));
    for f in fields {
        if !row.contains_key(f) {
            row.insert(f.clone(), Value::Null);
        }
    }
    row
}

/// Merge each pair of the batch and turn each plan that does something into an `Op`.
/// A pair whose source could not be mapped, or whose merged values cannot be mapped
/// back to the source, fails alone.
pub fn plan(b: Batch<'_>) -> BatchPlan {
    let fields = b.shape.fields();
    let mut target_rows = b.target_rows;
    let mut out = BatchPlan::default();
    for (p, proj) in b.pairs.iter().zip(b.projected) {
        let source = match proj {
            Some(Ok(r)) => Some(r),
            Some(Err(message)) => {
                out.failed.push(Failure {
                    ids: p.ids.clone(),
                    message,
                });
                continue;
            }
            None => None,
        };
        // each target row belongs to one pair: take it
        let (target, target_version) =
            match p.ids.target.as_ref().and_then(|t| target_rows.remove(t)) {
                Some(ReadRow { version, row }) => {
                    (Some(target_values(row, &fields)), Some(version))
                }
                None => (None, None),
            };
        let pending = b.pending.fields_of(&p.ids);
        let times = |side: Side| Times {
            fields: match p.ids.get(side) {
                Some(id) if !b.field_times.is_empty() => b
                    .field_times
                    .get(&(side, id.clone()))
                    .cloned()
                    .unwrap_or_default(),
                _ => HashMap::new(),
            },
            last: *p.last.get(side),
        };
        let source_times = source_times_by_field(&b.shape.mapping, &times(Side::Source));
        let target_times = times(Side::Target);
        let merged = merge::merge(&Input {
            fields: &fields,
            source: source.as_ref(),
            target: target.as_ref(),
            base: p.base.as_ref(),
            source_times: &source_times,
            target_times: &target_times,
            pending: &pending,
            strategy: b.strategy,
            direction: b.direction,
        });
        if merged.is_noop() {
            continue;
        }
        let source_read = p.ids.source.as_ref().and_then(|s| b.source_rows.get(s));
        let old_link = p.base.as_ref().and_then(|_| {
            let (s, t) = p.ids.pair()?;
            Some((s.clone(), t.clone()))
        });
        match to_op(
            b.shape,
            merged,
            p.ids.clone(),
            old_link,
            source_read,
            target_version,
        ) {
            Ok(op) => out.ops.push(op),
            Err(message) => out.failed.push(Failure {
                ids: p.ids.clone(),
                message,
            }),
        }
    }
    out
}

/// Turn a target-space plan into writes in each table's own columns: the source's
/// insert mapped back, its update reduced to the columns that really change.
fn to_op(
    shape: &Shape,
    plan: Plan,
    ids: Sides<Option<String>>,
    old_link: Option<(String, String)>,
    source_read: Option<&ReadRow>,
    target_version: Option<Version>,
) -> Result<Op, String> {
    let source_write = match plan.source {
        Some(Write::Insert(v)) => Some(Write::Insert(shape.unproject(&v)?)),
        Some(Write::Update(v)) => {
            let diff = match source_read {
                Some(cur) => shape.source_changes(&v, &cur.row)?,
                None => shape.unproject(&v)?,
            };
            (!diff.is_empty()).then_some(Write::Update(diff))
        }
        other => other,
    };
    Ok(Op {
        ids,
        old_link,
        versions: Sides::new(source_read.map(|r| r.version.clone()), target_version),
        writes: Sides::new(source_write, plan.target),
        link: plan.link,
        conflicts: plan.conflicts,
    })
}

/// Split ops after a batch's writes found rows changed by someone else (`raced`:
/// (side, key) of each): the ops touching one of them (recorded as errors, retried
/// next run) and the rest (applied together once more).
pub fn split_raced(ops: Vec<Op>, raced: &[(Side, String)]) -> (Vec<Op>, Vec<Op>) {
    ops.into_iter().partition(|o| {
        raced
            .iter()
            .any(|(side, key)| o.ids.get(*side).as_deref() == Some(key.as_str()))
    })
}

/// How the links change after a batch's writes.
#[derive(Debug, Default, PartialEq)]
pub struct LinkChanges<'a> {
    /// links kept whose base changes: (source id, new base)
    pub bases: Vec<(&'a str, &'a Row)>,
    /// links to delete, by key of each side
    pub dropped: Sides<Vec<String>>,
    /// links to insert: (source id, target id, base)
    pub added: Vec<(&'a str, &'a str, &'a Row)>,
}

/// The link changes of `ops`, whose pairs now have the keys `ids` (creates filled in
/// the new keys). A link kept for the same pair has its base updated in place; a link
/// removed, or replaced by one of another pair, is dropped and the new one added.
pub fn link_changes<'a>(ops: &'a [Op], ids: &'a [Sides<Option<String>>]) -> LinkChanges<'a> {
    let mut out = LinkChanges::default();
    for (o, now) in ops.iter().zip(ids) {
        let same = match (&o.old_link, now.pair()) {
            (Some((os, ot)), Some((s, t))) => os == s && ot == t,
            _ => false,
        };
        match (&o.link, &now.source) {
            (LinkAction::Keep, _) => {}
            (LinkAction::Upsert(base), Some(s)) if same => out.bases.push((s, base)),
            (link, _) => {
                if let Some((os, ot)) = &o.old_link {
                    out.dropped.source.push(os.clone());
                    out.dropped.target.push(ot.clone());
                }
                if let (LinkAction::Upsert(base), Some((s, t))) = (link, now.pair()) {
                    out.added.push((s, t, base));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mapping::Mapping;
    use serde_json::json;

    fn ids(s: Option<&str>, t: Option<&str>) -> Sides<Option<String>> {
        Sides::new(s.map(String::from), t.map(String::from))
    }

    fn item(s: Option<&str>, t: Option<&str>) -> WorkItem {
        WorkItem {
            ids: ids(s, t),
            change_tids_complete: true,
            ..Default::default()
        }
    }

    fn row(v: Value) -> Row {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn version(n: &str) -> Version {
        Version {
            ctid: format!("(0,{n})"),
            xmin: "700".into(),
            tableoid: "16384".into(),
        }
    }

    fn identity(cols: &[&str]) -> Shape {
        let entries: Vec<Value> = cols
            .iter()
            .map(|c| json!({"source": c, "target": c}))
            .collect();
        Shape {
            mapping: Mapping::parse(&Value::Array(entries)).unwrap(),
            kinds: Sides::default(),
        }
    }

    fn split_join() -> Shape {
        Shape {
            mapping: Mapping::parse(&json!([
                {"source": "full_name", "target": ["first", "last"], "transform": "split"},
                {"source": "email", "target": "email", "transform": "lowercase"}
            ]))
            .unwrap(),
            kinds: Sides::default(),
        }
    }

    #[test]
    fn fold_joins_the_rows_of_one_pair_and_carries_the_last() {
        let mut a1 = item(Some("1"), Some("a"));
        a1.last.source = Some(10);
        a1.change_tids = vec!["(0,1)".into()];
        let mut a2 = item(Some("1"), Some("a"));
        a2.last.target = Some(20);
        a2.change_tids = vec!["(0,2)".into()];
        a2.change_tids_complete = false;
        a2.link = Some("(3,4)".into());
        let b = item(Some("2"), None);
        let (items, carry) = fold(None, vec![a1, a2, b.clone()], true);
        assert_eq!(items.len(), 1);
        let a = &items[0];
        assert_eq!(a.last, Sides::new(Some(10), Some(20)));
        assert_eq!(a.change_tids, vec!["(0,1)", "(0,2)"]);
        assert!(!a.change_tids_complete);
        assert_eq!(a.link.as_deref(), Some("(3,4)"));
        assert_eq!(carry, Some(b.clone()));
        // the carried pair continues in the next fetch; the last fetch carries nothing
        let mut b2 = item(Some("2"), None);
        b2.last.source = Some(5);
        let (items, carry) = fold(carry, vec![b2], false);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].last.source, Some(5));
        assert_eq!(carry, None);
        assert_eq!(fold(None, vec![], false), (vec![], None));
    }

    #[test]
    fn pending_conflicts_are_found_by_either_key_once() {
        let p = Pending::new(vec![
            PendingConflict {
                ids: ids(Some("1"), Some("a")),
                fields: vec!["email".into()],
            },
            PendingConflict {
                ids: ids(None, Some("b")),
                fields: vec![WHOLE_ENTITY.into()],
            },
        ]);
        assert!(p.waits(Side::Source, "1"));
        assert!(p.waits(Side::Target, "a"));
        assert!(!p.waits(Side::Target, "1"));
        assert_eq!(p.fields_of(&ids(Some("1"), Some("a"))), vec!["email"]);
        assert_eq!(p.fields_of(&ids(Some("1"), None)), vec!["email"]);
        assert_eq!(p.fields_of(&ids(Some("9"), Some("b"))), vec!["*"]);
        assert!(p.fields_of(&ids(Some("9"), Some("z"))).is_empty());
    }

    #[test]
    fn copy_goes_one_way_for_linked_pairs_changed_on_one_side() {
        let none = Pending::new(vec![]);
        let linked = |s: Option<i64>, t: Option<i64>| WorkItem {
            link: Some("(0,1)".into()),
            last: Sides::new(s, t),
            ..item(Some("1"), Some("a"))
        };
        let table = [
            (linked(Some(1), None), Some(Side::Target)),
            (linked(None, Some(1)), Some(Side::Source)),
            (linked(Some(1), Some(2)), None),
            (linked(None, None), None),
            (
                WorkItem {
                    link: None,
                    ..linked(Some(1), None)
                },
                None,
            ),
            (
                WorkItem {
                    ids: ids(Some("1"), None),
                    ..linked(Some(1), None)
                },
                None,
            ),
        ];
        for (i, (it, want)) in table.iter().enumerate() {
            assert_eq!(copy_direction(it, &none), *want, "case {i}");
        }
        let waits = Pending::new(vec![PendingConflict {
            ids: ids(None, Some("a")),
            fields: vec!["email".into()],
        }]);
        assert_eq!(copy_direction(&linked(Some(1), None), &waits), None);
    }

    #[test]
    fn bases_are_attached_and_moved_links_taken_out() {
        let linked = |s: &str, t: &str| WorkItem {
            link: Some("(0,1)".into()),
            ..item(Some(s), Some(t))
        };
        let mut items = vec![
            linked("1", "a"),
            linked("2", "b"),
            linked("3", "c"),
            item(Some("4"), None),
        ];
        let base = row(json!({"email": "x"}));
        let bases = HashMap::from([
            ("1".to_string(), ("a".to_string(), base.clone())),
            ("2".to_string(), ("z".to_string(), base.clone())),
        ]);
        let relinked = attach_bases(&mut items, bases);
        assert_eq!(
            relinked,
            vec![ids(Some("2"), Some("b")), ids(Some("3"), Some("c"))]
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].base, Some(base));
        assert_eq!(items[1].ids, ids(Some("4"), None));
    }

    #[test]
    fn target_only_items_linked_by_an_earlier_batch_are_skipped() {
        let linked = HashSet::from(["a".to_string()]);
        let with_base = WorkItem {
            base: Some(Row::new()),
            ..item(None, Some("a"))
        };
        let kept = skip_linked_by_earlier_batches(
            vec![
                item(None, Some("a")),
                item(None, Some("b")),
                item(Some("1"), Some("a")),
                with_base.clone(),
            ],
            &linked,
        );
        assert_eq!(
            kept,
            vec![item(None, Some("b")), item(Some("1"), Some("a")), with_base]
        );
    }

    #[test]
    fn matching_takes_free_targets_once_each() {
        let linked = WorkItem {
            base: Some(Row::new()),
            ..item(Some("1"), Some("a"))
        };
        let pairs = vec![
            linked,
            item(Some("2"), None),
            item(Some("3"), None),
            item(Some("4"), None),
            item(None, Some("c")),
        ];
        let r = row(json!({"email": "x"}));
        let projected = vec![
            Some(Ok(r.clone())),
            Some(Ok(r.clone())),
            Some(Ok(r.clone())),
            Some(Err("bad".to_string())),
            None,
        ];
        let wanted = match_wanted(&pairs, &projected);
        assert_eq!(wanted.iter().map(|w| w.0).collect::<Vec<_>>(), vec![1, 2]);
        let taken = taken_targets(&pairs);
        assert_eq!(taken, HashSet::from(["a".to_string()]));
        // candidates by pair, then key: "a" is taken, 1 gets "b", 2 cannot have "b" again
        let found = vec![
            (1, "a".to_string()),
            (1, "b".to_string()),
            (1, "c".to_string()),
            (2, "b".to_string()),
            (2, "c".to_string()),
        ];
        let m = assign_matches(found, &taken);
        assert_eq!(
            m,
            HashMap::from([(1, "b".to_string()), (2, "c".to_string())])
        );
        let (pairs, projected) = apply_matches(pairs, projected, &m);
        // the target-only item of "c" is absorbed by pair 2
        assert_eq!(pairs.len(), 4);
        assert_eq!(projected.len(), 4);
        assert_eq!(pairs[1].ids, ids(Some("2"), Some("b")));
        assert_eq!(pairs[2].ids, ids(Some("3"), Some("c")));
        assert_eq!(pairs[3].ids, ids(Some("4"), None));
    }

    #[test]
    fn times_are_read_only_for_pairs_changed_on_both_sides() {
        let both = |s: &str, complete: bool| WorkItem {
            last: Sides::new(Some(1), Some(2)),
            change_tids: vec![format!("(0,{s})")],
            change_tids_complete: complete,
            ..item(Some(s), Some(s))
        };
        let one = WorkItem {
            last: Sides::new(Some(1), None),
            change_tids: vec!["(9,9)".into()],
            ..item(Some("9"), Some("9"))
        };
        let pairs = vec![both("1", true), both("2", false), one];
        let (tids, scan) = time_requests(&pairs, true);
        assert_eq!(tids, vec!["(0,1)"]);
        assert_eq!(
            scan,
            Sides::new(vec!["2".to_string()], vec!["2".to_string()])
        );
        // an initial load has no window to scan: the ctids are all there is
        let (tids, scan) = time_requests(&pairs, false);
        assert_eq!(tids, vec!["(0,1)", "(0,2)"]);
        assert_eq!(scan, Sides::default());
    }

    #[test]
    fn a_unit_of_split_fields_shares_its_source_time() {
        let shape = split_join();
        let t = Times {
            fields: HashMap::from([("full_name".to_string(), 7), ("other".to_string(), 9)]),
            last: Some(9),
        };
        let out = source_times_by_field(&shape.mapping, &t);
        assert_eq!(
            out.fields,
            HashMap::from([("first".to_string(), 7), ("last".to_string(), 7)])
        );
        assert_eq!(out.last, Some(9));
    }

    #[test]
    fn target_rows_keep_the_mapped_fields_only() {
        let fields = vec!["a".to_string(), "b".to_string()];
        let r = target_values(row(json!({"a": 1, "x": 2})), &fields);
        assert_eq!(Value::Object(r), json!({"a": 1, "b": null}));
    }

    /// `plan` of a bidirectional batch without per-field times.
    fn plan_bidirectional(
        shape: &Shape,
        strategy: Strategy,
        pairs: &[WorkItem],
        projected: Vec<Projected>,
        source_rows: &HashMap<String, ReadRow>,
        target_rows: HashMap<String, ReadRow>,
        pending: &Pending,
    ) -> BatchPlan {
        plan(Batch {
            shape,
            strategy,
            direction: Direction::Bidirectional,
            pairs,
            projected,
            source_rows,
            target_rows,
            pending,
            field_times: &FieldTimes::new(),
        })
    }

    fn read(n: &str, v: Value) -> ReadRow {
        ReadRow {
            version: version(n),
            row: row(v),
        }
    }

    #[test]
    fn plan_turns_merges_into_ops_and_failures() {
        let shape = split_join();
        let base = row(json!({"first": "Ada", "last": "Lovelace", "email": "ada@x"}));
        let linked = |s: &str, t: &str, last: Sides<Option<i64>>| WorkItem {
            base: Some(base.clone()),
            link: Some("(0,1)".into()),
            last,
            ..item(Some(s), Some(t))
        };
        let pairs = vec![
            // 1: source changed the name -> target update of first/last
            linked("1", "a", Sides::new(Some(5), None)),
            // 2: target changed the email -> source update of email only
            linked("2", "b", Sides::new(None, Some(5))),
            // 3: the source cannot be mapped -> fails alone
            item(Some("3"), None),
            // 4: nothing changed -> no op
            linked("4", "d", Sides::new(Some(5), None)),
            // 5: new source -> target insert with a link
            item(Some("5"), None),
        ];
        let source_rows = HashMap::from([
            (
                "1".into(),
                read("1", json!({"full_name": "Ada King", "email": "ada@x"})),
            ),
            (
                "2".into(),
                read("2", json!({"full_name": "Ada Lovelace", "email": "ada@x"})),
            ),
            (
                "4".into(),
                read("4", json!({"full_name": "Ada Lovelace", "email": "ada@x"})),
            ),
            (
                "5".into(),
                read("5", json!({"full_name": "Bo Ek", "email": "BO@X"})),
            ),
        ]);
        let target_rows = HashMap::from([
            (
                "a".into(),
                read(
                    "a",
                    json!({"first": "Ada", "last": "Lovelace", "email": "ada@x", "extra": 1}),
                ),
            ),
            (
                "b".into(),
                read(
                    "b",
                    json!({"first": "Ada", "last": "Lovelace", "email": "ada@new"}),
                ),
            ),
            (
                "d".into(),
                read(
                    "d",
                    json!({"first": "Ada", "last": "Lovelace", "email": "ada@x"}),
                ),
            ),
        ]);
        let projected: Vec<Projected> = pairs
            .iter()
            .map(|p| match p.ids.source.as_deref() {
                Some("3") => Some(Err("toNumber: 'x' is not a number".to_string())),
                Some(s) => source_rows.get(s).map(|r| shape.project(&r.row)),
                None => None,
            })
            .collect();
        let pending = Pending::new(vec![]);
        let out = plan_bidirectional(
            &shape,
            Strategy::LatestWins,
            &pairs,
            projected,
            &source_rows,
            target_rows,
            &pending,
        );
        assert_eq!(
            out.failed,
            vec![Failure {
                ids: ids(Some("3"), None),
                message: "toNumber: 'x' is not a number".into()
            }]
        );
        assert_eq!(out.ops.len(), 3, "{:?}", out.ops);
        let [one, two, five] = [&out.ops[0], &out.ops[1], &out.ops[2]];
        assert_eq!(
            one.writes.target,
            Some(Write::Update(row(json!({"last": "King"}))))
        );
        assert_eq!(one.writes.source, None);
        assert_eq!(
            one.versions,
            Sides::new(Some(version("1")), Some(version("a")))
        );
        assert_eq!(one.old_link, Some(("1".into(), "a".into())));
        // the merged row goes back through join/lowercase; only email differs
        assert_eq!(
            two.writes.source,
            Some(Write::Update(row(json!({"email": "ada@new"}))))
        );
        assert_eq!(two.writes.target, None);
        assert_eq!(
            five.writes.target,
            Some(Write::Insert(row(
                json!({"first": "Bo", "last": "Ek", "email": "bo@x"})
            )))
        );
        assert_eq!(five.old_link, None);
        assert!(matches!(five.link, LinkAction::Upsert(_)));
    }

    #[test]
    fn a_pair_waiting_for_a_person_is_left_alone() {
        let shape = identity(&["email"]);
        let base = row(json!({"email": "a"}));
        let pairs = vec![WorkItem {
            base: Some(base),
            link: Some("(0,1)".into()),
            last: Sides::new(Some(1), None),
            ..item(Some("1"), Some("a"))
        }];
        let source_rows = HashMap::from([("1".into(), read("1", json!({"email": "b"})))]);
        let target_rows = HashMap::from([("a".into(), read("a", json!({"email": "a"})))]);
        let projected = vec![Some(shape.project(&source_rows["1"].row))];
        let pending = Pending::new(vec![PendingConflict {
            ids: ids(Some("1"), Some("a")),
            fields: vec![WHOLE_ENTITY.into()],
        }]);
        let out = plan_bidirectional(
            &shape,
            Strategy::Manual,
            &pairs,
            projected,
            &source_rows,
            target_rows,
            &pending,
        );
        assert!(out.ops.is_empty() && out.failed.is_empty());
    }

    #[test]
    fn a_target_row_belongs_to_one_pair() {
        // two pairs name the same target (a source matched it and it changed too): the
        // second finds no row and creates nothing from it
        let shape = identity(&["email"]);
        let pairs = vec![item(Some("1"), Some("a")), item(None, Some("a"))];
        let source_rows = HashMap::from([("1".into(), read("1", json!({"email": "x"})))]);
        let target_rows = HashMap::from([("a".into(), read("a", json!({"email": "x"})))]);
        let projected = vec![Some(shape.project(&source_rows["1"].row)), None];
        let pending = Pending::new(vec![]);
        let out = plan_bidirectional(
            &shape,
            Strategy::LatestWins,
            &pairs,
            projected,
            &source_rows,
            target_rows,
            &pending,
        );
        // pair 1 converged (equal values): only its link is written; pair 2 has nothing
        assert_eq!(out.ops.len(), 1);
        assert_eq!(out.ops[0].ids, ids(Some("1"), Some("a")));
        assert_eq!(out.ops[0].writes, Sides::new(None, None));
    }

    #[test]
    fn raced_ops_are_split_from_the_rest() {
        let op = |s: &str, t: &str| Op {
            ids: ids(Some(s), Some(t)),
            old_link: None,
            versions: Sides::default(),
            writes: Sides::default(),
            link: LinkAction::Keep,
            conflicts: vec![],
        };
        let ops = vec![op("1", "a"), op("2", "b"), op("3", "c")];
        let (hit, rest) = split_raced(
            ops,
            &[
                (Side::Target, "b".into()),
                (Side::Source, "3".into()),
                (Side::Source, "a".into()),
            ],
        );
        assert_eq!(
            hit.iter()
                .map(|o| o.ids.source.clone().unwrap())
                .collect::<Vec<_>>(),
            ["2", "3"]
        );
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].ids, ids(Some("1"), Some("a")));
    }

    #[test]
    fn links_are_updated_in_place_dropped_or_added() {
        let b = row(json!({"email": "x"}));
        let op = |old: Option<(&str, &str)>, link: LinkAction| Op {
            ids: Sides::default(),
            old_link: old.map(|(s, t)| (s.to_string(), t.to_string())),
            versions: Sides::default(),
            writes: Sides::default(),
            link,
            conflicts: vec![],
        };
        let ops = vec![
            op(Some(("1", "a")), LinkAction::Keep),
            op(Some(("2", "b")), LinkAction::Upsert(b.clone())),
            op(None, LinkAction::Upsert(b.clone())),
            op(Some(("4", "d")), LinkAction::Remove),
            op(Some(("5", "e")), LinkAction::Upsert(b.clone())),
        ];
        let now = vec![
            ids(Some("1"), Some("a")),
            ids(Some("2"), Some("b")),
            ids(Some("3"), Some("new")),
            ids(None, Some("d")),
            ids(Some("5"), Some("e2")),
        ];
        let ch = link_changes(&ops, &now);
        assert_eq!(ch.bases, vec![("2", &b)]);
        assert_eq!(
            ch.dropped,
            Sides::new(
                vec!["4".to_string(), "5".to_string()],
                vec!["d".to_string(), "e".to_string()]
            )
        );
        assert_eq!(ch.added, vec![("3", "new", &b), ("5", "e2", &b)]);
    }
}
