//! The plan of a pushed batch, pure: the batch validated into typed changes (errors name
//! the change's position and id), and per change what to write and which fields
//! conflict, from the server's current row, the field's last change time and the
//! strategy. No Postgres here; `push` is the shell that loads rows and writes.

use super::time;
use crate::core::mapping::values_equal;
use crate::core::merge::ConflictKind;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// What a pushed change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

pub const OPERATIONS: &[&str] = &["insert", "update", "delete"];

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// How sync_push decides a field the server changed to something else meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStrategy {
    /// the later of the device's `changed_at` and the field's last change on the server
    LatestWins,
    ClientWins,
    ServerWins,
    /// the server's value stays; the conflict waits for sync_resolve_conflict
    Manual,
}

pub const PUSH_STRATEGIES: &[&str] = &["latest_wins", "client_wins", "server_wins", "manual"];

impl PushStrategy {
    pub fn parse(s: &str) -> Result<PushStrategy, String> {
        match s {
            "latest_wins" => Ok(PushStrategy::LatestWins),
            "client_wins" => Ok(PushStrategy::ClientWins),
            "server_wins" => Ok(PushStrategy::ServerWins),
            "manual" => Ok(PushStrategy::Manual),
            _ => Err(format!(
                "sync_push: unknown conflict strategy \"{s}\"; allowed: {}",
                PUSH_STRATEGIES.join(", ")
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PushStrategy::LatestWins => "latest_wins",
            PushStrategy::ClientWins => "client_wins",
            PushStrategy::ServerWins => "server_wins",
            PushStrategy::Manual => "manual",
        }
    }
}

/// One field of a pushed change: what the client last saw, what it wants.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub column: String,
    pub old: Value,
    pub new: Value,
}

/// A validated pushed change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// 1-based position in the batch
    pub position: usize,
    pub id: String,
    pub entity_id: String,
    pub operation: Operation,
    /// in the order sent; none for a delete
    pub fields: Vec<FieldChange>,
    /// as sent, microseconds since the Unix epoch
    pub changed_at: i64,
}

/// How a change is named in messages: `change 3 (id "c-3")`.
pub fn label(position: usize, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("change {position} (id \"{id}\")"),
        None => format!("change {position}"),
    }
}

impl Change {
    pub fn label(&self) -> String {
        label(self.position, Some(&self.id))
    }
}

/// The longest change id, in bytes.
pub const MAX_ID_BYTES: usize = 200;

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string or number member as text (ids may be numbers on the device).
fn id_text(v: Option<&Value>) -> Option<Result<String, &'static str>> {
    match v? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => Some(Err("is empty")),
        Value::String(s) => Some(Ok(s.clone())),
        Value::Number(n) => Some(Ok(n.to_string())),
        _ => Some(Err("must be a string or a number")),
    }
}

/// Validate a batch: a JSON array of at most `max_batch` changes on a table with
/// `columns` (its key column `key_column` may not be in `fields`).
/// Returns the changes in order, or the first problem, naming the change.
pub fn parse_batch(
    changes: &Value,
    columns: &[String],
    key_column: &str,
    max_batch: usize,
) -> Result<Vec<Change>, BatchError> {
    let Value::Array(items) = changes else {
        return Err(BatchError::malformed(format!(
            "sync_push: changes must be a JSON array of changes, not {}",
            json_kind(changes)
        )));
    };
    if items.len() > max_batch {
        return Err(BatchError {
            kind: BatchErrorKind::TooLarge,
            message: format!(
                "sync_push: {} changes in one call; at most {max_batch} (sync_engine.push_max_batch): send them in smaller batches",
                items.len()
            ),
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, c)| parse_change(i + 1, c, columns, key_column))
        .collect()
}

fn parse_change(
    position: usize,
    c: &Value,
    columns: &[String],
    key_column: &str,
) -> Result<Change, BatchError> {
    let Value::Object(m) = c else {
        return Err(BatchError::malformed(format!(
            "sync_push: {} must be a JSON object, not {}",
            label(position, None),
            json_kind(c)
        )));
    };
    let id = match id_text(m.get("id")) {
        Some(Ok(id)) if id.len() <= MAX_ID_BYTES => id,
        Some(Ok(id)) => {
            return Err(BatchError::malformed(format!(
                "sync_push: {}: id is {} bytes long; at most {MAX_ID_BYTES}",
                label(position, None),
                id.len()
            )))
        }
        Some(Err(why)) => {
            return Err(BatchError::malformed(format!(
                "sync_push: {}: id {why}",
                label(position, None)
            )))
        }
        None => {
            return Err(BatchError::malformed(format!(
                "sync_push: {} has no \"id\": every change needs a client-generated unique id",
                label(position, None)
            )))
        }
    };
    let at = label(position, Some(&id));
    let problem = |msg: String| BatchError::malformed(format!("sync_push: {at}: {msg}"));
    let bad = |msg: String| Err(problem(msg));
    let entity_id = match id_text(m.get("entity_id")) {
        Some(Ok(e)) => e,
        Some(Err(why)) => return bad(format!("entity_id {why}")),
        None => return bad("has no \"entity_id\" (the key of the row it changes)".into()),
    };
    let operation = match m.get("operation") {
        Some(Value::String(s)) => match s.as_str() {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            _ => {
                return bad(format!(
                    "unknown operation \"{s}\"; allowed: {}",
                    OPERATIONS.join(", ")
                ))
            }
        },
        None | Some(Value::Null) => {
            return bad(format!("has no \"operation\" ({})", OPERATIONS.join(", ")))
        }
        Some(v) => return bad(format!("operation must be a string, not {}", json_kind(v))),
    };
    let changed_at =
        time::parse_changed_at(m.get("changed_at").unwrap_or(&Value::Null)).map_err(problem)?;
    let fields = match (operation, m.get("fields")) {
        (Operation::Delete, None | Some(Value::Null)) => Map::new(),
        (Operation::Delete, Some(Value::Object(f))) if f.is_empty() => Map::new(),
        (Operation::Delete, Some(_)) => {
            return bad("a delete carries no \"fields\"".into());
        }
        (_, Some(Value::Object(f))) if !f.is_empty() => f.clone(),
        (_, None | Some(Value::Null)) => {
            return bad(format!(
                "an {} needs \"fields\": {{\"column\": {{\"old\": .., \"new\": ..}}}}",
                operation.name()
            ))
        }
        (_, Some(Value::Object(_))) => return bad("\"fields\" is empty".into()),
        (_, Some(v)) => {
            return bad(format!(
                "\"fields\" must be an object, not {}",
                json_kind(v)
            ))
        }
    };
    let mut out = Vec::with_capacity(fields.len());
    for (col, v) in fields {
        if col == key_column {
            return bad(format!(
                "\"{col}\" is the key column; the key is entity_id and a change cannot change it"
            ));
        }
        if !columns.contains(&col) {
            return bad(format!(
                "unknown column \"{col}\"; the table has: {}",
                columns
                    .iter()
                    .filter(|c| *c != key_column)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let Value::Object(pair) = v else {
            return bad(format!(
                "field \"{col}\" must be {{\"old\": .., \"new\": ..}}, not {}",
                json_kind(&v)
            ));
        };
        if let Some(k) = pair.keys().find(|k| *k != "old" && *k != "new") {
            return bad(format!(
                "field \"{col}\" has \"{k}\"; only \"old\" and \"new\" are allowed"
            ));
        }
        let Some(new) = pair.get("new") else {
            return bad(format!("field \"{col}\" has no \"new\" value"));
        };
        // an insert's old is null (there was no row); an update says what it last saw
        let old = match (operation, pair.get("old")) {
            (_, Some(o)) => o.clone(),
            (Operation::Insert, None) => Value::Null,
            _ => {
                return bad(format!(
                    "field \"{col}\" has no \"old\" value (what the device last saw; null for none)"
                ))
            }
        };
        out.push(FieldChange {
            column: col,
            old,
            new: new.clone(),
        });
    }
    Ok(Change {
        position,
        id,
        entity_id,
        operation,
        fields: out,
        changed_at,
    })
}

/// Why a batch was refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchErrorKind {
    Malformed,
    TooLarge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub kind: BatchErrorKind,
    pub message: String,
}

impl BatchError {
    fn malformed(message: String) -> BatchError {
        BatchError {
            kind: BatchErrorKind::Malformed,
            message,
        }
    }
}

/// One field of a change against the server's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOutcome {
    /// the server still holds what the client saw: write the client's value
    Apply,
    /// the server already holds the client's value
    Converged,
    /// the server holds a third value
    Conflict,
}

/// The decision table: server = new -> converged; server = old -> apply; else conflict.
pub fn field_outcome(server: &Value, old: &Value, new: &Value) -> FieldOutcome {
    if values_equal(server, new) {
        FieldOutcome::Converged
    } else if values_equal(server, old) {
        FieldOutcome::Apply
    } else {
        FieldOutcome::Conflict
    }
}

/// Who wins a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    Client,
    Server,
    /// manual: nobody yet
    Pending,
}

impl Winner {
    /// The name in answers.
    pub fn name(self) -> &'static str {
        match self {
            Winner::Client => "client",
            Winner::Server => "server",
            Winner::Pending => "pending",
        }
    }
    /// sync_conflicts.resolution: the client is the source side, the table the target.
    pub fn resolution(self) -> &'static str {
        match self {
            Winner::Client => "source",
            Winner::Server => "target",
            Winner::Pending => "pending",
        }
    }
}

/// Decide a conflict. `client_at`: the change's (clamped) time; `server_at`: when the
/// server last changed what conflicts (None = unknown, counts as oldest). For
/// latest_wins the later one wins; a tie keeps the server's value.
pub fn winner(strategy: PushStrategy, client_at: i64, server_at: Option<i64>) -> Winner {
    match strategy {
        PushStrategy::ClientWins => Winner::Client,
        PushStrategy::ServerWins => Winner::Server,
        PushStrategy::Manual => Winner::Pending,
        PushStrategy::LatestWins => {
            if client_at > server_at.unwrap_or(i64::MIN) {
                Winner::Client
            } else {
                Winner::Server
            }
        }
    }
}

/// A conflict of one change, for sync_conflicts (client = source, server = target).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedConflict {
    pub kind: ConflictKind,
    pub fields: Vec<String>,
    pub client_value: Value,
    pub server_value: Value,
    pub base_value: Value,
    pub winner: Winner,
}

/// What to write for a change (values in column names, canonical JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Update(Map<String, Value>),
    Insert(Map<String, Value>),
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangePlan {
    pub write: Option<Write>,
    pub conflicts: Vec<PlannedConflict>,
}

/// What the server knows about a change's entity.
#[derive(Debug, Clone, Default)]
pub struct ServerState<'a> {
    /// the current row (column -> value), None when there is none
    pub row: Option<&'a Map<String, Value>>,
    /// per column, its last change time (µs since the Unix epoch), from change_log
    pub field_times: Option<&'a HashMap<String, i64>>,
    /// the entity's last change by anyone but this client (deletes included)
    pub last_change: Option<i64>,
}

/// Does planning this change need change times from change_log (which costs a read of
/// the log)? Only latest_wins conflicts and deletes do.
pub fn needs_times(ch: &Change, row: Option<&Map<String, Value>>, strategy: PushStrategy) -> bool {
    match (ch.operation, row) {
        (Operation::Delete, Some(_)) => true,
        (Operation::Delete, None) => false,
        (Operation::Update, None) => strategy == PushStrategy::LatestWins,
        (Operation::Insert, None) => false,
        (_, Some(r)) => {
            strategy == PushStrategy::LatestWins
                && ch.fields.iter().any(|f| {
                    let old = if ch.operation == Operation::Insert {
                        &Value::Null
                    } else {
                        &f.old
                    };
                    field_outcome(r.get(&f.column).unwrap_or(&Value::Null), old, &f.new)
                        == FieldOutcome::Conflict
                })
        }
    }
}

/// Plan one change. `at`: its (clamped) time, µs since the Unix epoch.
/// - insert of a key that exists: an update against old = null for every field;
/// - update of a missing row: an update_delete conflict (the server deleted it); the
///   client winning re-creates the row with its fields;
/// - delete of a missing row: applied, nothing to write;
/// - delete of a row someone else changed after the delete's time: a delete_update
///   conflict (latest_wins: the server's later change wins); otherwise the row goes.
pub fn plan(ch: &Change, at: i64, st: &ServerState, strategy: PushStrategy) -> ChangePlan {
    let fields_map = |pick: &dyn Fn(&FieldChange) -> Value| -> Map<String, Value> {
        ch.fields
            .iter()
            .map(|f| (f.column.clone(), pick(f)))
            .collect()
    };
    match (ch.operation, st.row) {
        (Operation::Delete, None) => ChangePlan {
            write: None,
            conflicts: vec![],
        },
        (Operation::Delete, Some(row)) => {
            if st.last_change.is_some_and(|t| t > at) {
                let w = match strategy {
                    PushStrategy::ClientWins => Winner::Client,
                    PushStrategy::Manual => Winner::Pending,
                    PushStrategy::ServerWins | PushStrategy::LatestWins => Winner::Server,
                };
                let mut fields: Vec<String> = row.keys().cloned().collect();
                fields.sort();
                ChangePlan {
                    write: (w == Winner::Client).then_some(Write::Delete),
                    conflicts: vec![PlannedConflict {
                        kind: ConflictKind::DeleteUpdate,
                        fields,
                        client_value: Value::Null,
                        server_value: Value::Object(row.clone()),
                        base_value: Value::Null,
                        winner: w,
                    }],
                }
            } else {
                ChangePlan {
                    write: Some(Write::Delete),
                    conflicts: vec![],
                }
            }
        }
        (Operation::Insert, None) => ChangePlan {
            write: Some(Write::Insert(fields_map(&|f| f.new.clone()))),
            conflicts: vec![],
        },
        (Operation::Update, None) => {
            let w = winner(strategy, at, st.last_change);
            ChangePlan {
                write: (w == Winner::Client).then(|| Write::Insert(fields_map(&|f| f.new.clone()))),
                conflicts: vec![PlannedConflict {
                    kind: ConflictKind::UpdateDelete,
                    fields: ch.fields.iter().map(|f| f.column.clone()).collect(),
                    client_value: Value::Object(fields_map(&|f| f.new.clone())),
                    server_value: Value::Null,
                    base_value: Value::Object(fields_map(&|f| f.old.clone())),
                    winner: w,
                }],
            }
        }
        (op, Some(row)) => {
            let mut write = Map::new();
            // conflicting fields grouped by who won them, in field order
            let mut groups: Vec<(Winner, Vec<&FieldChange>)> = Vec::new();
            for f in &ch.fields {
                let old = if op == Operation::Insert {
                    &Value::Null
                } else {
                    &f.old
                };
                let server = row.get(&f.column).unwrap_or(&Value::Null);
                match field_outcome(server, old, &f.new) {
                    FieldOutcome::Converged => {}
                    FieldOutcome::Apply => {
                        write.insert(f.column.clone(), f.new.clone());
                    }
                    FieldOutcome::Conflict => {
                        let server_at = st.field_times.and_then(|t| t.get(&f.column).copied());
                        let w = winner(strategy, at, server_at);
                        if w == Winner::Client {
                            write.insert(f.column.clone(), f.new.clone());
                        }
                        match groups.iter_mut().find(|(g, _)| *g == w) {
                            Some((_, fs)) => fs.push(f),
                            None => groups.push((w, vec![f])),
                        }
                    }
                }
            }
            let conflicts = groups
                .into_iter()
                .map(|(w, fs)| {
                    let obj = |pick: &dyn Fn(&FieldChange) -> Value| {
                        Value::Object(fs.iter().map(|f| (f.column.clone(), pick(f))).collect())
                    };
                    PlannedConflict {
                        kind: ConflictKind::UpdateUpdate,
                        fields: fs.iter().map(|f| f.column.clone()).collect(),
                        client_value: obj(&|f| f.new.clone()),
                        server_value: obj(&|f| row.get(&f.column).cloned().unwrap_or(Value::Null)),
                        base_value: obj(&|f| {
                            if op == Operation::Insert {
                                Value::Null
                            } else {
                                f.old.clone()
                            }
                        }),
                        winner: w,
                    }
                })
                .collect();
            ChangePlan {
                write: (!write.is_empty()).then_some(Write::Update(write)),
                conflicts,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols() -> Vec<String> {
        ["id", "name", "phone", "score"].map(String::from).to_vec()
    }

    fn parse(v: Value) -> Result<Vec<Change>, BatchError> {
        parse_batch(&v, &cols(), "id", 3)
    }

    fn err(v: Value) -> String {
        parse(v).unwrap_err().message
    }

    const AT: &str = "2026-03-01T09:30:00Z";
    const T: i64 = 1_772_357_400_000_000;

    #[test]
    fn a_valid_batch_parses_in_order() {
        let b = parse(json!([
            {"id": "a", "entity_id": 17, "operation": "update",
             "fields": {"phone": {"old": "1", "new": "2"}}, "changed_at": AT},
            {"id": 7, "entity_id": "18", "operation": "insert",
             "fields": {"name": {"new": "Ann"}}, "changed_at": 1_772_357_400_000i64},
            {"id": "c", "entity_id": "19", "operation": "delete", "changed_at": AT},
        ]))
        .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[0].position, b[0].id.as_str(), b[0].entity_id.as_str()),
            (1, "a", "17")
        );
        assert_eq!(
            b[0].fields[0],
            FieldChange {
                column: "phone".into(),
                old: json!("1"),
                new: json!("2")
            }
        );
        assert_eq!(b[1].id, "7");
        assert_eq!(
            b[1].fields[0].old,
            Value::Null,
            "an insert's old defaults to null"
        );
        assert_eq!(b[1].changed_at, T);
        assert_eq!(b[2].operation, Operation::Delete);
        assert!(b[2].fields.is_empty());
        assert_eq!(parse(json!([])).unwrap(), vec![]);
    }

    #[test]
    fn malformed_batches_name_the_change_and_the_problem() {
        let ok = |extra: Value| {
            let mut c = json!({"id": "x", "entity_id": "1", "operation": "update",
                               "fields": {"phone": {"old": "1", "new": "2"}}, "changed_at": AT});
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            json!([{"id": "first", "entity_id": "9", "operation": "delete", "changed_at": AT}, c])
        };
        assert!(err(json!({"id": 1})).contains("must be a JSON array of changes, not an object"));
        assert!(err(json!("x")).contains("not a string"));
        let cases: Vec<(Value, &str)> = vec![
            (json!({"id": null}), "change 2 has no \"id\""),
            (json!({"id": ""}), "change 2: id is empty"),
            (
                json!({"id": [1]}),
                "change 2: id must be a string or a number",
            ),
            (
                json!({"entity_id": null}),
                "change 2 (id \"x\"): has no \"entity_id\"",
            ),
            (
                json!({"operation": null}),
                "change 2 (id \"x\"): has no \"operation\"",
            ),
            (
                json!({"operation": "upsert"}),
                "unknown operation \"upsert\"; allowed: insert, update, delete",
            ),
            (json!({"operation": 3}), "operation must be a string"),
            (
                json!({"fields": {"email": {"old": 1, "new": 2}}}),
                "unknown column \"email\"; the table has: name, phone, score",
            ),
            (
                json!({"fields": {"id": {"old": 1, "new": 2}}}),
                "\"id\" is the key column",
            ),
            (
                json!({"fields": {"phone": "2"}}),
                "field \"phone\" must be {\"old\": .., \"new\": ..}, not a string",
            ),
            (
                json!({"fields": {"phone": {"new": "2"}}}),
                "field \"phone\" has no \"old\"",
            ),
            (
                json!({"fields": {"phone": {"old": "2"}}}),
                "field \"phone\" has no \"new\"",
            ),
            (
                json!({"fields": {"phone": {"old": "1", "new": "2", "why": 1}}}),
                "only \"old\" and \"new\"",
            ),
            (json!({"fields": {}}), "\"fields\" is empty"),
            (json!({"fields": null}), "an update needs \"fields\""),
            (json!({"fields": [1]}), "\"fields\" must be an object"),
            (
                json!({"changed_at": "tomorrow"}),
                "change 2 (id \"x\"): changed_at \"tomorrow\" is not an ISO-8601 time",
            ),
            (json!({"changed_at": null}), "changed_at is missing"),
            (
                json!({"operation": "delete"}),
                "a delete carries no \"fields\"",
            ),
        ];
        for (extra, want) in cases {
            let e = err(ok(extra.clone()));
            assert!(e.contains(want), "{extra}: {e}");
            assert!(e.starts_with("sync_push: change 2"), "{extra}: {e}");
        }
        assert!(err(json!([1])).contains("change 1 must be a JSON object, not a number"));
    }

    #[test]
    fn a_batch_over_the_limit_is_refused() {
        let c = json!({"id": "x", "entity_id": "1", "operation": "delete", "changed_at": AT});
        let e = parse(json!([c, c, c, c])).unwrap_err();
        assert_eq!(e.kind, BatchErrorKind::TooLarge);
        assert!(
            e.message
                .contains("4 changes in one call; at most 3 (sync_engine.push_max_batch)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn decision_table_per_field() {
        let o = |s: Value, old: Value, new: Value| field_outcome(&s, &old, &new);
        assert_eq!(o(json!("a"), json!("a"), json!("b")), FieldOutcome::Apply);
        assert_eq!(
            o(json!("b"), json!("a"), json!("b")),
            FieldOutcome::Converged
        );
        assert_eq!(
            o(json!("c"), json!("a"), json!("b")),
            FieldOutcome::Conflict
        );
        assert_eq!(
            o(json!("a"), json!("a"), json!("a")),
            FieldOutcome::Converged
        );
        assert_eq!(o(Value::Null, Value::Null, json!(1)), FieldOutcome::Apply);
        assert_eq!(o(json!(1), Value::Null, json!(2)), FieldOutcome::Conflict);
        // numbers compare by value
        assert_eq!(o(json!(1.0), json!(1), json!(2)), FieldOutcome::Apply);
    }

    #[test]
    fn strategies_pick_the_winner() {
        use PushStrategy::*;
        assert_eq!(winner(ClientWins, 1, Some(9)), Winner::Client);
        assert_eq!(winner(ServerWins, 9, Some(1)), Winner::Server);
        assert_eq!(winner(Manual, 9, Some(1)), Winner::Pending);
        assert_eq!(winner(LatestWins, 9, Some(1)), Winner::Client);
        assert_eq!(winner(LatestWins, 1, Some(9)), Winner::Server);
        assert_eq!(
            winner(LatestWins, 5, Some(5)),
            Winner::Server,
            "a tie keeps the server's"
        );
        assert_eq!(
            winner(LatestWins, 5, None),
            Winner::Client,
            "unknown server time counts as oldest"
        );
        assert!(PushStrategy::parse("source_wins")
            .unwrap_err()
            .contains("allowed: latest_wins, client_wins, server_wins, manual"));
        for s in PUSH_STRATEGIES {
            assert_eq!(PushStrategy::parse(s).unwrap().name(), *s);
        }
    }

    fn change(op: Operation, fields: &[(&str, Value, Value)]) -> Change {
        Change {
            position: 1,
            id: "c".into(),
            entity_id: "1".into(),
            operation: op,
            fields: fields
                .iter()
                .map(|(c, o, n)| FieldChange {
                    column: c.to_string(),
                    old: o.clone(),
                    new: n.clone(),
                })
                .collect(),
            changed_at: T,
        }
    }

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn untouched_fields_apply_beside_a_conflicting_one() {
        let ch = change(
            Operation::Update,
            &[
                ("name", json!("Ann"), json!("Anna")),
                ("phone", json!("1"), json!("2")),
            ],
        );
        let r = row(json!({"id": 1, "name": "Ann", "phone": "3"}));
        let times = HashMap::from([("phone".to_string(), T - 10)]);
        let st = ServerState {
            row: Some(&r),
            field_times: Some(&times),
            last_change: None,
        };
        let p = plan(&ch, T, &st, PushStrategy::LatestWins);
        assert_eq!(
            p.write,
            Some(Write::Update(row(json!({"name": "Anna", "phone": "2"})))),
            "the device is later: it wins phone"
        );
        assert_eq!(p.conflicts.len(), 1);
        let c = &p.conflicts[0];
        assert_eq!(
            (c.kind, c.winner, c.fields.clone()),
            (
                ConflictKind::UpdateUpdate,
                Winner::Client,
                vec!["phone".to_string()]
            )
        );
        assert_eq!(
            (
                c.client_value.clone(),
                c.server_value.clone(),
                c.base_value.clone()
            ),
            (
                json!({"phone": "2"}),
                json!({"phone": "3"}),
                json!({"phone": "1"})
            )
        );

        // an office edit later than the device's: the server keeps phone, name still applies
        let later = HashMap::from([("phone".to_string(), T + 10)]);
        let st = ServerState {
            row: Some(&r),
            field_times: Some(&later),
            last_change: None,
        };
        let p = plan(&ch, T, &st, PushStrategy::LatestWins);
        assert_eq!(p.write, Some(Write::Update(row(json!({"name": "Anna"})))));
        assert_eq!(p.conflicts[0].winner, Winner::Server);
        for (s, w, writes_phone) in [
            (PushStrategy::ClientWins, Winner::Client, true),
            (PushStrategy::ServerWins, Winner::Server, false),
            (PushStrategy::Manual, Winner::Pending, false),
        ] {
            let p = plan(&ch, T, &st, s);
            assert_eq!(p.conflicts[0].winner, w);
            let Some(Write::Update(m)) = p.write else {
                panic!()
            };
            assert_eq!(m.contains_key("phone"), writes_phone, "{s:?}");
        }
    }

    #[test]
    fn converged_changes_write_nothing() {
        let ch = change(Operation::Update, &[("phone", json!("1"), json!("2"))]);
        let r = row(json!({"id": 1, "phone": "2"}));
        let p = plan(
            &ch,
            T,
            &ServerState {
                row: Some(&r),
                ..Default::default()
            },
            PushStrategy::Manual,
        );
        assert_eq!(
            p,
            ChangePlan {
                write: None,
                conflicts: vec![]
            }
        );
    }

    #[test]
    fn edge_cases() {
        // insert of an existing key: an update against old = null
        let ins = change(
            Operation::Insert,
            &[
                ("name", json!("x"), json!("Ann")),
                ("phone", Value::Null, json!("2")),
            ],
        );
        let r = row(json!({"id": 1, "name": null, "phone": "9"}));
        let p = plan(
            &ins,
            T,
            &ServerState {
                row: Some(&r),
                ..Default::default()
            },
            PushStrategy::ServerWins,
        );
        assert_eq!(p.write, Some(Write::Update(row(json!({"name": "Ann"})))));
        assert_eq!(p.conflicts[0].fields, vec!["phone"]);
        assert_eq!(p.conflicts[0].base_value, json!({"phone": null}));
        // insert of a new key
        let p = plan(&ins, T, &ServerState::default(), PushStrategy::ServerWins);
        assert_eq!(
            p.write,
            Some(Write::Insert(row(json!({"name": "Ann", "phone": "2"}))))
        );
        // update of a missing row: update_delete; the client winning re-creates it
        let up = change(Operation::Update, &[("phone", json!("1"), json!("2"))]);
        let p = plan(
            &up,
            T,
            &ServerState {
                last_change: Some(T - 1),
                ..Default::default()
            },
            PushStrategy::LatestWins,
        );
        assert_eq!(p.conflicts[0].kind, ConflictKind::UpdateDelete);
        assert_eq!(p.conflicts[0].winner, Winner::Client);
        assert_eq!(p.write, Some(Write::Insert(row(json!({"phone": "2"})))));
        let p = plan(
            &up,
            T,
            &ServerState {
                last_change: Some(T + 1),
                ..Default::default()
            },
            PushStrategy::LatestWins,
        );
        assert_eq!((p.write, p.conflicts[0].winner), (None, Winner::Server));
        let p = plan(&up, T, &ServerState::default(), PushStrategy::Manual);
        assert_eq!((p.write, p.conflicts[0].winner), (None, Winner::Pending));
        // delete of a missing row: applied, nothing to do
        let del = change(Operation::Delete, &[]);
        assert_eq!(
            plan(&del, T, &ServerState::default(), PushStrategy::Manual),
            ChangePlan {
                write: None,
                conflicts: vec![]
            }
        );
        // delete of a row nobody changed since: deleted
        let r = row(json!({"id": 1, "phone": "9"}));
        let p = plan(
            &del,
            T,
            &ServerState {
                row: Some(&r),
                last_change: Some(T - 1),
                ..Default::default()
            },
            PushStrategy::ServerWins,
        );
        assert_eq!(
            p,
            ChangePlan {
                write: Some(Write::Delete),
                conflicts: vec![]
            }
        );
        // delete vs a later update: delete_update
        for (s, w, deletes) in [
            (PushStrategy::LatestWins, Winner::Server, false),
            (PushStrategy::ServerWins, Winner::Server, false),
            (PushStrategy::ClientWins, Winner::Client, true),
            (PushStrategy::Manual, Winner::Pending, false),
        ] {
            let p = plan(
                &del,
                T,
                &ServerState {
                    row: Some(&r),
                    last_change: Some(T + 1),
                    ..Default::default()
                },
                s,
            );
            assert_eq!(p.conflicts[0].kind, ConflictKind::DeleteUpdate);
            assert_eq!(p.conflicts[0].winner, w, "{s:?}");
            assert_eq!(p.conflicts[0].server_value, json!({"id": 1, "phone": "9"}));
            assert_eq!(p.write == Some(Write::Delete), deletes, "{s:?}");
        }
    }

    #[test]
    fn times_are_only_needed_for_latest_wins_conflicts_and_deletes() {
        let up = change(Operation::Update, &[("phone", json!("1"), json!("2"))]);
        let same = row(json!({"phone": "1"}));
        let other = row(json!({"phone": "3"}));
        assert!(!needs_times(&up, Some(&same), PushStrategy::LatestWins));
        assert!(needs_times(&up, Some(&other), PushStrategy::LatestWins));
        assert!(!needs_times(&up, Some(&other), PushStrategy::Manual));
        assert!(needs_times(&up, None, PushStrategy::LatestWins));
        assert!(needs_times(
            &change(Operation::Delete, &[]),
            Some(&same),
            PushStrategy::Manual
        ));
        assert!(!needs_times(
            &change(Operation::Delete, &[]),
            None,
            PushStrategy::LatestWins
        ));
    }
}
