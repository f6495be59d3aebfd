//! sync_push, the shell: validates the batch (pure, `push_plan`), makes its values
//! canonical through the table's column types, claims the change ids, loads the rows,
//! plans each change (pure) and writes the result as ordinary writes of the endpoint's
//! table, tagged with the client's origin and the device's change times, so the capture
//! trigger records them like any other change. Conflicts go to sync_conflicts; every
//! answered id to sync_push_ids — all in the caller's transaction.

use super::push_plan::{
    self, BatchErrorKind, Change, ChangePlan, Operation, PushStrategy, ServerState, Winner, Write,
};
use super::time;
use crate::capture::endpoints::{self, Endpoint};
use crate::pg::db::{self, spi_fail};
use crate::pg::fail;
use crate::pg::guc;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use crate::pg::subxact;
use crate::sync::{delete_rows, insert_rows, jsonb_arg, load_rows, update_rows};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// The origin tag of a client's pushes: its records carry it in change_log.origin, and
/// sync_pull with that client_id leaves them out.
pub fn client_origin(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// Apply a batch of changes from an offline client or a connector to the endpoint
/// (system, entity_type). See docs/offline.md.
pub fn sync_push(
    system: &str,
    entity_type: &str,
    changes: Value,
    client_id: &str,
    strategy: &str,
) -> JsonB {
    let strategy = PushStrategy::parse(strategy)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, &e));
    let caller = security::current_user();
    security::as_extension_owner(|| {
        let e = endpoints::load(system, entity_type);
        JsonB(push(&e, caller, &changes, client_id, strategy))
    })
}

/// The privilege an operation or write needs.
fn privilege(op: Operation) -> (&'static str, u32) {
    match op {
        Operation::Insert => ("INSERT", pg_sys::ACL_INSERT),
        Operation::Update => ("UPDATE", pg_sys::ACL_UPDATE),
        Operation::Delete => ("DELETE", pg_sys::ACL_DELETE),
    }
}

/// Errors that say "try again", not "this row is wrong": a serialization failure, a
/// deadlock, a lock timeout.
fn is_transient(sqlstate: &str) -> bool {
    matches!(sqlstate, "40001" | "40P01" | "55P03")
}

fn require(caller: pg_sys::Oid, e: &Endpoint, ops: impl Iterator<Item = Operation>) {
    // the writes run as the table's owner, past its policies: a caller that row-level
    // security restricts could otherwise change rows it cannot see
    if security::row_security_restricts(caller, e.relid) {
        crate::pg::fail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            &format!(
                "sync_push: {} has row-level security enabled for role {}; sync_push does not apply row-level security policies, so it refuses to write there (push as a role the policies do not restrict, or disable them for it)",
                e.table,
                security::role_name(caller)
            ),
        );
    }
    let mut privs = vec![("SELECT", pg_sys::ACL_SELECT)];
    for op in ops {
        let p = privilege(op);
        if !privs.contains(&p) {
            privs.push(p);
        }
    }
    security::require_table_privileges(
        caller,
        e.relid,
        &e.table,
        &privs,
        &format!("push changes to \"{}\".\"{}\"", e.system, e.entity_type),
    );
}

/// The server clock now, µs since the Unix epoch.
fn now_us() -> i64 {
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    now + time::PG_EPOCH_OFFSET_US
}

/// One change on its way through the batch.
struct Item {
    ch: Change,
    /// the time it is recorded with (clamped), µs since the Unix epoch
    at: i64,
    clamped: time::Clamp,
    answer: Option<Value>,
}

fn push(
    e: &Endpoint,
    caller: pg_sys::Oid,
    changes: &Value,
    client_id: &str,
    strategy: PushStrategy,
) -> Value {
    let max = guc::PUSH_MAX_BATCH.get().max(1) as usize;
    let parsed =
        push_plan::parse_batch(changes, &e.columns, &e.key_column, max).unwrap_or_else(|b| {
            let code = match b.kind {
                BatchErrorKind::Malformed => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                BatchErrorKind::TooLarge => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            };
            fail(code, &b.message)
        });
    require(caller, e, parsed.iter().map(|c| c.operation));
    super::clients::bind(caller, client_id, "push");
    let parsed = canonical(e, parsed);
    let now = now_us();
    let mut items: Vec<Item> = parsed
        .into_iter()
        .map(|ch| {
            let (at, clamped) = time::clamp(ch.changed_at, now);
            Item {
                ch,
                at,
                clamped,
                answer: None,
            }
        })
        .collect();
    let schema = ext_schema();
    let origin = client_origin(client_id);

    // claim the ids: an id already remembered (or claimed by a concurrent push of the
    // same batch, which we wait for) is a duplicate
    let ids: Vec<String> = items.iter().map(|i| i.ch.id.clone()).collect();
    let mut claimed: HashSet<String> = Spi::connect_mut(|c| {
        let t = c
            .update(
                &format!(
                    "INSERT INTO {schema}.sync_push_ids (endpoint_id, client_id, change_id, status)
                     SELECT $1, $2, x, 'applied' FROM unnest($3::text[]) x
                     ON CONFLICT DO NOTHING RETURNING change_id"
                ),
                None,
                &[e.id.into(), client_id.into(), ids.clone().into()],
            )
            .unwrap_or_else(|e| spi_fail(e));
        t.filter_map(|r| db::col::<String>(&r, 1)).collect()
    });
    let earlier: HashMap<String, String> = Spi::connect(|c| {
        let t = c
            .select(
                &format!(
                    "SELECT change_id, status FROM {schema}.sync_push_ids
                      WHERE endpoint_id = $1 AND client_id = $2 AND change_id = ANY($3)
                        AND NOT (change_id = ANY($4))"
                ),
                None,
                &[
                    e.id.into(),
                    client_id.into(),
                    ids.clone().into(),
                    claimed.iter().cloned().collect::<Vec<_>>().into(),
                ],
            )
            .unwrap_or_else(|e| spi_fail(e));
        t.filter_map(|r| Some((db::col::<String>(&r, 1)?, db::col::<String>(&r, 2)?)))
            .collect()
    });
    for it in items.iter_mut() {
        // the first occurrence in this batch takes the claim; a later one is a duplicate
        if !claimed.remove(&it.ch.id) {
            let first = earlier
                .get(&it.ch.id)
                .map_or("in this batch", |s| s.as_str());
            it.answer = Some(json!({"id": it.ch.id, "status": "duplicate", "first_status": first}));
        }
    }

    // segments in which every entity appears once; each is planned against the rows
    // as the segments before it left them
    let mut start = 0;
    while start < items.len() {
        let mut seen = HashSet::new();
        let mut end = start;
        while end < items.len() {
            let it = &items[end];
            if it.answer.is_none() && !seen.insert(it.ch.entity_id.clone()) {
                break;
            }
            end += 1;
        }
        apply_segment(
            e,
            &schema,
            &origin,
            client_id,
            strategy,
            caller,
            &mut items[start..end],
        );
        start = end;
    }

    // remember what was answered
    let mut counts = [0i64; 4]; // applied, duplicates, conflicts, rejected
    let mut remember = Vec::new();
    let mut results = Vec::with_capacity(items.len());
    for it in items {
        let mut a = it.answer.expect("every change answered");
        if it.clamped == time::Clamp::ToServerClock && a["status"] != "duplicate" {
            a["changed_at_clamped"] = json!({
                "sent": time::format_iso(it.ch.changed_at), "used": time::format_iso(it.at)
            });
        }
        let status = a["status"].as_str().unwrap_or_default().to_string();
        counts[match status.as_str() {
            "applied" => 0,
            "duplicate" => 1,
            "conflict" => 2,
            _ => 3,
        }] += 1;
        if status != "duplicate" {
            remember.push(json!({"id": it.ch.id, "status": status, "result": a}));
        }
        results.push(a);
    }
    if !remember.is_empty() {
        db::run(
            &format!(
                "UPDATE {schema}.sync_push_ids p SET status = x.status, result = x.result
                   FROM jsonb_to_recordset($3) x(id text, status text, result jsonb)
                  WHERE p.endpoint_id = $1 AND p.client_id = $2 AND p.change_id = x.id"
            ),
            &[
                e.id.into(),
                client_id.into(),
                jsonb_arg(Value::Array(remember)).into(),
            ],
        );
    }
    json!({
        "applied": counts[0], "duplicates": counts[1], "conflicts": counts[2], "rejected": counts[3],
        "results": results,
    })
}

/// The changes with their entity ids and values as the table's types print them (so
/// "007" and 7 name the same integer key, and a timestamp compares whatever its
/// spelling). A value that does not fit its column refuses the whole batch, naming the
/// change and the column.
fn canonical(e: &Endpoint, mut changes: Vec<Change>) -> Vec<Change> {
    if changes.is_empty() {
        return changes;
    }
    let arg: Vec<Value> = changes
        .iter()
        .map(|c| {
            let obj = |old: bool| -> Value {
                Value::Object(
                    c.fields
                        .iter()
                        .map(|f| {
                            (
                                f.column.clone(),
                                if old { f.old.clone() } else { f.new.clone() },
                            )
                        })
                        .collect(),
                )
            };
            json!({"k": c.entity_id, "n": obj(false), "o": obj(true)})
        })
        .collect();
    let sql = format!(
        "SELECT format('%s', (x.c->>'k')::{kt}),
                to_jsonb(jsonb_populate_record(NULL::{table}, x.c->'n')),
                to_jsonb(jsonb_populate_record(NULL::{table}, x.c->'o'))
           FROM jsonb_array_elements($1) WITH ORDINALITY x(c, n) ORDER BY x.n",
        kt = e.key_type,
        table = e.table
    );
    let run = || {
        security::as_table_owner(e.owner, || {
            Spi::connect(|c| {
                let t = c
                    .select(&sql, None, &[jsonb_arg(Value::Array(arg.clone())).into()])
                    .unwrap_or_else(|e| spi_fail(e));
                db::scoped(|| {
                    t.map(|r| {
                        (
                            db::col::<String>(&r, 1).unwrap_or_default(),
                            db::col::<JsonB>(&r, 2).map(|j| j.0),
                            db::col::<JsonB>(&r, 3).map(|j| j.0),
                        )
                    })
                    .collect::<Vec<_>>()
                })
            })
        })
    };
    let rows = match subxact::run(run) {
        Ok(rows) => rows,
        Err(_) => misfit(e, &changes),
    };
    for (c, (key, new, old)) in changes.iter_mut().zip(rows) {
        c.entity_id = key;
        for f in c.fields.iter_mut() {
            if let Some(Value::Object(n)) = &new {
                f.new = n.get(&f.column).cloned().unwrap_or(Value::Null);
            }
            if let Some(Value::Object(o)) = &old {
                f.old = o.get(&f.column).cloned().unwrap_or(Value::Null);
            }
        }
    }
    changes
}

/// Find the value that does not fit (one at a time, in subtransactions) and raise the
/// error naming it. Only on the error path.
fn misfit(e: &Endpoint, changes: &[Change]) -> ! {
    let check = |sql: &str, args: Vec<pgrx::datum::DatumWithOid>| {
        subxact::run(|| security::as_table_owner(e.owner, || db::run(sql, &args)))
    };
    for c in changes {
        let key_sql = format!("SELECT ($1::text)::{}", e.key_type);
        if let Err(err) = check(&key_sql, vec![c.entity_id.as_str().into()]) {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                &format!(
                    "sync_push: {}: entity_id \"{}\" does not fit key column \"{}\" ({}): {}",
                    c.label(),
                    crate::core::args::shown(&c.entity_id),
                    e.key_column,
                    e.key_type,
                    crate::core::args::shown(&err.message)
                ),
            );
        }
        for f in &c.fields {
            for (which, v) in [("new", &f.new), ("old", &f.old)] {
                let sql = format!("SELECT jsonb_populate_record(NULL::{}, $1)", e.table);
                let obj = json!({ f.column.clone(): v });
                if let Err(err) = check(&sql, vec![jsonb_arg(obj).into()]) {
                    fail(
                        PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                        &format!(
                            "sync_push: {}: {which} value of \"{}\" does not fit its column ({}): {}",
                            c.label(),
                            f.column,
                            e.column_type(&f.column).unwrap_or("?"),
                            err.message
                        ),
                    );
                }
            }
        }
    }
    fail(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        "sync_push: a value of the batch does not fit its column",
    )
}

/// Unix µs of a timestamptz column, in SQL.
const UNIX_US: &str = "floor(extract(epoch FROM max(c.changed_at)) * 1000000)::bigint";

/// Per entity: its fields' last change times, and its last change by anyone but this
/// client. Reads change_log (one scan for the batch).
#[allow(clippy::type_complexity)]
fn change_times(
    e: &Endpoint,
    schema: &str,
    origin: &str,
    keys: &[String],
) -> (HashMap<String, HashMap<String, i64>>, HashMap<String, i64>) {
    let mut fields: HashMap<String, HashMap<String, i64>> = HashMap::new();
    let mut last = HashMap::new();
    if keys.is_empty() {
        return (fields, last);
    }
    Spi::connect(|c| {
        let t = c
            .select(
                &format!(
                    "SELECT c.entity_id, f.k, {UNIX_US}
                       FROM {schema}.change_log c, jsonb_object_keys(c.fields) f(k)
                      WHERE c.system = $1 AND c.entity_type = $2 AND c.entity_id = ANY($3)
                      GROUP BY 1, 2"
                ),
                None,
                &[
                    e.system.as_str().into(),
                    e.entity_type.as_str().into(),
                    keys.to_vec().into(),
                ],
            )
            .unwrap_or_else(|e| spi_fail(e));
        for r in t {
            if let (Ok(Some(id)), Ok(Some(k)), Ok(Some(us))) =
                (r.get::<String>(1), r.get::<String>(2), r.get::<i64>(3))
            {
                fields.entry(id).or_default().insert(k, us);
            }
        }
        let t = c
            .select(
                &format!(
                    "SELECT c.entity_id, {UNIX_US} FROM {schema}.change_log c
                      WHERE c.system = $1 AND c.entity_type = $2 AND c.entity_id = ANY($3)
                        AND c.origin IS DISTINCT FROM $4
                      GROUP BY 1"
                ),
                None,
                &[
                    e.system.as_str().into(),
                    e.entity_type.as_str().into(),
                    keys.to_vec().into(),
                    origin.into(),
                ],
            )
            .unwrap_or_else(|e| spi_fail(e));
        for r in t {
            if let (Ok(Some(id)), Ok(Some(us))) = (r.get::<String>(1), r.get::<i64>(2)) {
                last.insert(id, us);
            }
        }
    });
    (fields, last)
}

/// Write the planned writes of `items` (entity -> write): updates in one statement,
/// inserts in one per set of columns, deletes in one.
fn write_all(e: &Endpoint, writes: &[(&str, &Write)]) {
    let mut updates = Map::new();
    let mut inserts: Vec<(Vec<String>, Map<String, Value>)> = Vec::new();
    let mut deletes = Vec::new();
    for (key, w) in writes {
        match w {
            Write::Update(m) => {
                updates.insert(key.to_string(), Value::Object(m.clone()));
            }
            Write::Insert(m) => {
                let cols: Vec<String> = m.keys().cloned().collect();
                match inserts.iter_mut().find(|(c, _)| *c == cols) {
                    Some((_, rows)) => {
                        rows.insert(key.to_string(), Value::Object(m.clone()));
                    }
                    None => inserts.push((
                        cols,
                        Map::from_iter([(key.to_string(), Value::Object(m.clone()))]),
                    )),
                }
            }
            Write::Delete => deletes.push(key.to_string()),
        }
    }
    update_rows(e, updates);
    for (cols, rows) in inserts {
        insert_rows(e, &cols, rows);
    }
    delete_rows(e, &deletes);
}

#[allow(clippy::too_many_arguments)]
fn apply_segment(
    e: &Endpoint,
    schema: &str,
    origin: &str,
    client_id: &str,
    strategy: PushStrategy,
    caller: pg_sys::Oid,
    items: &mut [Item],
) {
    let todo: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].answer.is_none())
        .collect();
    if todo.is_empty() {
        return;
    }
    let keys: Vec<String> = todo
        .iter()
        .map(|&i| items[i].ch.entity_id.clone())
        .collect();
    let rows = load_rows(e, &keys);
    let timed: Vec<String> = todo
        .iter()
        .filter(|&&i| {
            push_plan::needs_times(&items[i].ch, rows.get(&items[i].ch.entity_id), strategy)
        })
        .map(|&i| items[i].ch.entity_id.clone())
        .collect();
    let (field_times, last) = change_times(e, schema, origin, &timed);
    let plans: Vec<(usize, ChangePlan)> = todo
        .iter()
        .map(|&i| {
            let it = &items[i];
            let key = &it.ch.entity_id;
            let st = ServerState {
                row: rows.get(key),
                field_times: field_times.get(key),
                last_change: last.get(key).copied(),
            };
            (i, push_plan::plan(&it.ch, it.at, &st, strategy))
        })
        .collect();
    // what the writes need, beyond what the operations needed
    require(
        caller,
        e,
        plans.iter().filter_map(|(_, p)| match &p.write {
            Some(Write::Update(_)) => Some(Operation::Update),
            Some(Write::Insert(_)) => Some(Operation::Insert),
            Some(Write::Delete) => Some(Operation::Delete),
            None => None,
        }),
    );

    // the writes: tagged with the client, timed as the device said
    let times: HashMap<String, i64> = plans
        .iter()
        .filter(|(_, p)| p.write.is_some())
        .map(|(i, _)| {
            let it = &items[*i];
            (it.ch.entity_id.clone(), it.at - time::PG_EPOCH_OFFSET_US)
        })
        .collect();
    let mut failed: HashMap<usize, subxact::SubxactError> = HashMap::new();
    {
        let _tag = crate::capture::origin::tag_writes(origin.to_string());
        let _times = crate::capture::origin::time_writes(times);
        let writes: Vec<(&str, &Write)> = plans
            .iter()
            .filter_map(|(i, p)| {
                p.write
                    .as_ref()
                    .map(|w| (items[*i].ch.entity_id.as_str(), w))
            })
            .collect();
        if !writes.is_empty() && subxact::run_for_rows(|| write_all(e, &writes)).is_err() {
            // one at a time, to find the rows that fail
            for (i, p) in &plans {
                if let Some(w) = &p.write {
                    let key = items[*i].ch.entity_id.as_str();
                    if let Err(err) = subxact::run_for_rows(|| write_all(e, &[(key, w)])) {
                        if is_transient(&err.sqlstate) {
                            // remembered as rejected, the change would be dropped by a
                            // client that re-sends it; failing the call lets it retry
                            crate::pg::fail(
                                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                                &format!(
                                    "sync_push: change {:?} (entity {key}) hit a transient error ({}: {}); nothing of this batch was applied, send it again",
                                    items[*i].ch.id, err.sqlstate, err.message
                                ),
                            );
                        }
                        failed.insert(*i, err);
                    }
                }
            }
        }
    }

    for (i, p) in plans {
        let it = &mut items[i];
        if let Some(err) = failed.remove(&i) {
            it.answer = Some(json!({
                "id": it.ch.id, "status": "rejected", "reason": err.message, "sqlstate": err.sqlstate,
            }));
            continue;
        }
        if p.conflicts.is_empty() {
            it.answer = Some(json!({"id": it.ch.id, "status": "applied"}));
            continue;
        }
        let mut recorded = Vec::new();
        for c in &p.conflicts {
            let id = record_conflict(e, schema, client_id, strategy, &it.ch, c);
            recorded.push(json!({"conflict_id": id, "fields": c.fields, "winner": c.winner.name(), "kind": c.kind.name()}));
        }
        it.answer = Some(json!({
            "id": it.ch.id, "status": "conflict",
            "conflict_id": recorded[0]["conflict_id"], "winner": recorded[0]["winner"],
            "conflicts": recorded,
        }));
    }
}

fn record_conflict(
    e: &Endpoint,
    schema: &str,
    client_id: &str,
    strategy: PushStrategy,
    ch: &Change,
    c: &push_plan::PlannedConflict,
) -> i64 {
    let resolved = match c.winner {
        Winner::Client => c.client_value.clone(),
        Winner::Server => c.server_value.clone(),
        Winner::Pending => Value::Null,
    };
    db::one::<i64>(
        &format!(
            "INSERT INTO {schema}.sync_conflicts (endpoint_id, client_id, change_id, source_id, target_id, kind,
                 fields, source_value, target_value, base_value, strategy, resolution, resolved_value,
                 resolved_by, resolved_at)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11,
                     CASE WHEN $11 = 'pending' THEN NULL ELSE $12 END,
                     CASE WHEN $11 = 'pending' THEN NULL ELSE 'strategy:' || $10 END,
                     CASE WHEN $11 = 'pending' THEN NULL ELSE now() END)
             RETURNING id"
        ),
        &[
            e.id.into(),
            client_id.into(),
            ch.id.as_str().into(),
            ch.entity_id.as_str().into(),
            c.kind.name().into(),
            c.fields.clone().into(),
            jsonb_arg(c.client_value.clone()).into(),
            jsonb_arg(c.server_value.clone()).into(),
            jsonb_arg(c.base_value.clone()).into(),
            strategy.name().into(),
            c.winner.resolution().into(),
            jsonb_arg(resolved).into(),
        ],
    )
    .unwrap_or_else(|| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "sync_push: conflict not recorded"))
}
