//! sync_pull and sync_snapshot, the shell: an endpoint's change records after an opaque
//! cursor, page by page, read with the snapshot-window rule of sync_execute
//! (`changes::window_predicate`); and its current rows by key, with the cursor to pull
//! from afterwards. The cursor arithmetic is in `pull_cursor`.

use super::pull_cursor::{self, InWindow, PullCursor};
use super::push::client_origin;
use crate::capture::changes;
use crate::capture::endpoints::{self, Endpoint};
use crate::core::cursor::{Snapshot, Window};
use crate::pg::db::{self, spi_fail};
use crate::pg::fail;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// This database's sync_instance id; ERROR 55000 when its row is gone.
fn instance(schema: &str) -> String {
    db::one::<String>(&format!("SELECT id::text FROM {schema}.sync_instance"), &[]).unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!("{schema}.sync_instance has no row; put one back with INSERT INTO {schema}.sync_instance DEFAULT VALUES"),
        )
    })
}

fn require_select(caller: pg_sys::Oid, e: &Endpoint, what: &str) {
    security::require_table_privileges(
        caller,
        e.relid,
        &e.table,
        &[("SELECT", pg_sys::ACL_SELECT)],
        &format!("{what} \"{}\".\"{}\"", e.system, e.entity_type),
    );
}

/// The endpoint's change records after `cursor` (NULL: from now), at most `max_changes`,
/// leaving out the pushes of `client_id`. See docs/offline.md.
pub fn sync_pull(
    system: &str,
    entity_type: &str,
    cursor: Option<&str>,
    max: i64,
    client_id: Option<&str>,
) -> JsonB {
    let decoded = cursor.map(|c| {
        PullCursor::decode(c)
            .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, &e))
    });
    let caller = security::current_user();
    security::as_extension_owner(|| {
        let e = endpoints::load(system, entity_type);
        require_select(caller, &e, "pull changes of");
        // the records are read as the extension's owner: a caller the table's policies
        // restrict would get the values of rows it cannot see
        if security::row_security_restricts(caller, e.relid) {
            fail(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                &format!(
                    "sync_pull: {} has row-level security enabled for role {}; sync_pull does not apply row-level security policies, so it refuses to return its change records (pull as a role the policies do not restrict; sync_snapshot reads the rows under them)",
                    e.table,
                    security::role_name(caller)
                ),
            );
        }
        if let Some(c) = client_id {
            super::clients::check(caller, c, "pull");
        }
        JsonB(pull(&e, decoded, max, client_id.map(client_origin)))
    })
}

fn pull(e: &Endpoint, c: Option<PullCursor>, max: i64, skip_origin: Option<String>) -> Value {
    let schema = ext_schema();
    let here = instance(&schema);
    let Some(c) = c else {
        let start = PullCursor {
            instance: here,
            endpoint_id: e.id,
            prev: changes::current_position(),
            page: None,
        };
        return json!({"cursor": start.encode(), "has_more": false, "changes": []});
    };
    if c.endpoint_id != e.id && c.instance.eq_ignore_ascii_case(&here) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!(
                "sync_pull: the cursor belongs to another endpoint (id {}), not \"{}\".\"{}\" (id {})",
                c.endpoint_id, e.system, e.entity_type, e.id
            ),
        );
    }
    if let Some(r) = pull_cursor::reset_needed(&c, &here, None) {
        return reset(e, r);
    }
    let (cur, after_id) = match &c.page {
        Some(p) => (p.cur.clone(), p.after_id),
        None => (changes::current_position(), 0),
    };
    let w = Window::new(Some(c.prev.clone()), cur.clone()).unwrap_or_else(|err| {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!("sync_pull: {err}"),
        )
    });
    // the page is chosen first and its JSON built afterwards: built inside, it would be
    // made for every record of the window before the sort picks the page
    let sql = format!(
        "SELECT x.id, jsonb_build_object('id', x.id, 'entity_id', x.entity_id, 'operation', x.operation,
                    'fields', x.fields, 'changed_at', x.changed_at, 'origin', x.origin)
           FROM (SELECT c.id, c.entity_id, c.operation, c.fields, c.changed_at, c.origin
                   FROM {schema}.change_log c
                  WHERE {pred} AND c.system = $1 AND c.entity_type = $2 AND c.id > $3
                    AND ($4::text IS NULL OR c.origin IS DISTINCT FROM $4)
                  ORDER BY c.id LIMIT $5) x
          ORDER BY x.id",
        pred = changes::window_predicate(&w, "c")
    );
    let rows: Vec<(i64, Value)> = Spi::connect(|client| {
        let t = client
            .select(
                &sql,
                None,
                &[
                    e.system.as_str().into(),
                    e.entity_type.as_str().into(),
                    after_id.into(),
                    skip_origin.into(),
                    (max + 1).into(),
                ],
            )
            .unwrap_or_else(|e| spi_fail(e));
        db::scoped(|| {
            t.filter_map(|r| Some((db::col::<i64>(&r, 1)?, db::col::<JsonB>(&r, 2)?.0)))
                .collect()
        })
    });
    // after the rows: a prune that committed before they were read shows here
    if let Some(r) = pull_cursor::reset_needed(&c, &here, pruned_txid(&schema, e)) {
        return reset(e, r);
    }
    let has_more = rows.len() as i64 > max;
    let mut page: Vec<Value> = Vec::with_capacity(rows.len().min(max as usize));
    let mut last = after_id;
    for (id, v) in rows.into_iter().take(max as usize) {
        last = id;
        page.push(v);
    }
    let next = if has_more {
        PullCursor {
            page: Some(InWindow {
                cur,
                after_id: last,
            }),
            ..c
        }
    } else {
        PullCursor {
            prev: cur,
            page: None,
            ..c
        }
    };
    json!({"cursor": next.encode(), "has_more": has_more, "changes": page})
}

/// The highest txid of the endpoint's pruned change records.
fn pruned_txid(schema: &str, e: &Endpoint) -> Option<u64> {
    db::one::<String>(
        &format!("SELECT pruned_txid::text FROM {schema}.sync_log_horizon WHERE system = $1 AND entity_type = $2"),
        &[e.system.as_str().into(), e.entity_type.as_str().into()],
    )
    .and_then(|s| s.parse().ok())
}

fn reset(e: &Endpoint, r: pull_cursor::ResetReason) -> Value {
    json!({
        "reset_required": true,
        "reason": r.code(),
        "message": r.message(),
        "hint": format!(
            "resync: page through sync_snapshot('{}', '{}') and continue with sync_pull from the cursor of its first page",
            e.system, e.entity_type
        ),
    })
}

/// The endpoint's current rows in key order after `after_key` (NULL: from the first),
/// at most `max_rows`; the first page also returns the cursor to pull from afterwards.
pub fn sync_snapshot(system: &str, entity_type: &str, after_key: Option<&str>, max: i64) -> JsonB {
    let caller = security::current_user();
    let (e, here) = security::as_extension_owner(|| {
        let e = endpoints::load(system, entity_type);
        require_select(caller, &e, "read a snapshot of");
        let here = instance(&ext_schema());
        (e, here)
    });
    // the rows are read as the caller (its row-level security applies), and on the
    // first page in the same statement as the position, so they are what that
    // position has seen
    let kc = crate::pg::quote::quote_ident(&e.key_column);
    let sql = format!(
        "SELECT pg_current_snapshot()::text, pg_current_xact_id_if_assigned()::text,
                (SELECT coalesce(jsonb_agg(jsonb_build_object('entity_id', r.k, 'values', r.v) ORDER BY r.n), '[]')
                   FROM (SELECT format('%s', t.{kc}) AS k, to_jsonb(t) - {kl} AS v,
                                row_number() OVER (ORDER BY t.{kc}) AS n
                           FROM {table} t
                          WHERE $1::text IS NULL OR t.{kc} > ($1::text)::{kt}
                          ORDER BY t.{kc} LIMIT $2) r)",
        table = e.table,
        kt = e.key_type,
        kl = crate::pg::quote::quote_literal(&e.key_column),
    );
    if let Some(k) = after_key {
        // a key that does not fit the key column: say so, not only the type's complaint
        let check = format!("SELECT ($1::text)::{}", e.key_type);
        if let Err(err) = crate::pg::subxact::run(|| {
            security::with_own_search_path(|| db::run(&check, &[k.into()]))
        }) {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                &format!(
                    "sync_snapshot: after_key \"{}\" does not fit key column \"{}\" ({}): {}",
                    crate::core::args::shown(k),
                    e.key_column,
                    e.key_type,
                    crate::core::args::shown(&err.message)
                ),
            );
        }
    }
    // (as the caller, with the extension's search_path)
    let (snap, own, rows) = security::with_own_search_path(|| {
        Spi::connect(|c| {
            let t = c
                .select(&sql, Some(1), &[after_key.into(), (max + 1).into()])
                .unwrap_or_else(|e| spi_fail(e));
            let r = t.first();
            (
                db::col::<String>(&r, 1).unwrap_or_default(),
                db::col::<String>(&r, 2),
                db::col::<JsonB>(&r, 3).map(|j| j.0).unwrap_or(Value::Null),
            )
        })
    });
    let Value::Array(mut rows) = rows else {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "sync_snapshot: no rows array",
        )
    };
    let has_more = rows.len() as i64 > max;
    rows.truncate(max as usize);
    let next_key = rows
        .last()
        .and_then(|r| r["entity_id"].as_str().map(String::from));
    let mut out = json!({"rows": rows, "has_more": has_more, "after_key": next_key});
    if after_key.is_none() {
        let mut pos = Snapshot::parse(&snap)
            .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, &e.message));
        if let Some(x) = own.and_then(|x| x.parse::<u64>().ok()) {
            pos = pos.with_in_progress(x);
        }
        out["cursor"] = json!(PullCursor {
            instance: here,
            endpoint_id: e.id,
            prev: pos,
            page: None
        }
        .encode());
    }
    JsonB(out)
}
