//! Snapshot-safe reading of `change_log` (PgQ's batching rule), shared by the engine,
//! pull and the SQL face below. The arithmetic lives in `cursor`.

use crate::core::cursor::{self, Snapshot, Start, Window};
use crate::pg::db;
use crate::pg::fail;
use crate::pg::quote::ext_schema;
use crate::pg::OrRaise;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;

/// The current position: this statement's snapshot, with our own transaction (if it
/// has written anything) counted as in progress.
pub fn current_position() -> Snapshot {
    let (s, own) = db::two::<String, String>(
        "SELECT pg_current_snapshot()::text, pg_current_xact_id_if_assigned()::text",
        &[],
    )
    .expect("snapshot");
    let snap = Snapshot::parse(&s.unwrap_or_default())
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, &e.message));
    match own.and_then(|x| x.parse::<u64>().ok()) {
        Some(xid) => snap.with_in_progress(xid),
        None => snap,
    }
}

/// Build the window (prev, cur], refusing malformed or backwards positions.
pub fn window(prev: Option<&str>, cur: &str) -> Window {
    let parse = |s: &str| Snapshot::parse(s).or_raise();
    let prev = prev.map(parse);
    Window::new(prev, parse(cur)).or_raise()
}

/// Where a run of config `config_id` starts (see `cursor::start`): compares the
/// sync_instance its `position` was taken in (`sync_configs.position_instance`) with
/// this database's. Reads sync_configs and sync_instance; ERROR 55000 when
/// sync_instance has lost its row, 22023 when a position of this database is malformed.
pub fn run_start(config_id: i64, position: Option<&str>) -> Start {
    let schema = ext_schema();
    let (taken_in, here) = db::two::<String, String>(
        &format!(
            "SELECT c.position_instance::text, (SELECT i.id::text FROM {schema}.sync_instance i)
               FROM {schema}.sync_configs c WHERE c.id = $1"
        ),
        &[config_id.into()],
    )
    .unwrap_or((None, None));
    let here = here.unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            &format!(
                "{schema}.sync_instance has no row: it identifies this database's change log and is made by CREATE EXTENSION; \
                 put one back with INSERT INTO {schema}.sync_instance DEFAULT VALUES (every config then reconciles once)"
            ),
        )
    });
    cursor::start(position, taken_in.as_deref(), &here).or_raise()
}

/// The window a run starting at `start` reads up to `cur`: after the position for
/// `Start::After`, from the beginning otherwise. ERROR 22023 when `cur` does not
/// follow the position.
pub fn window_from(start: &Start, cur: Snapshot) -> Window {
    let prev = match start {
        Start::After(p) => Some(p.clone()),
        Start::InitialLoad | Start::Reconcile => None,
    };
    Window::new(prev, cur).or_raise()
}

/// SQL predicate selecting the rows of `change_log` (aliased `alias`) in the window.
/// The bounds let the txid index narrow the scan; pg_visible_in_snapshot applies the
/// exact rule. Values are inlined as literals: they are numbers and snapshot text we
/// produced and validated ourselves.
pub fn window_predicate(w: &Window, alias: &str) -> String {
    let mut p = format!(
        "{alias}.txid >= '{lo}'::xid8 AND {alias}.txid < '{hi}'::xid8 \
         AND pg_visible_in_snapshot({alias}.txid, '{cur}'::pg_snapshot)",
        lo = w.lower_bound(),
        hi = w.upper_bound(),
        cur = w.cur
    );
    if let Some(prev) = &w.prev {
        p.push_str(&format!(
            " AND NOT pg_visible_in_snapshot({alias}.txid, '{prev}'::pg_snapshot)"
        ));
    }
    p
}

/// One row of `sync_changes`: id, system, entity_type, entity_id, operation, fields,
/// changed_at, txid, origin, checksum.
pub type ChangeRow = (
    i64,
    String,
    String,
    String,
    String,
    JsonB,
    TimestampWithTimeZone,
    i64,
    Option<String>,
    Option<String>,
);

/// Changes that became visible after `since` and are visible at `until`
/// (`since` NULL = from the beginning), optionally for one endpoint, in id order.
/// Consecutive windows never return a change twice and never skip one, including
/// changes of transactions that began before `since` and committed after it.
/// Reads change_log.
pub fn changes(
    since: Option<&str>,
    until: &str,
    system: Option<&str>,
    entity_type: Option<&str>,
) -> Vec<ChangeRow> {
    let w = window(since, until);
    let schema = ext_schema();
    let sql = format!(
        "SELECT c.id, c.system, c.entity_type, c.entity_id, c.operation, c.fields, c.changed_at, \
                c.txid::text::bigint, c.origin, c.checksum \
           FROM {schema}.change_log c \
          WHERE {pred} AND ($1::text IS NULL OR c.system = $1) AND ($2::text IS NULL OR c.entity_type = $2) \
          ORDER BY c.id",
        pred = window_predicate(&w, "c")
    );
    Spi::connect(|client| {
        let t = client
            .select(&sql, None, &[system.into(), entity_type.into()])
            .unwrap_or_else(|e| db::spi_fail(e));
        t.map(|r| {
            (
                db::col::<i64>(&r, 1).unwrap_or_default(),
                db::col::<String>(&r, 2).unwrap_or_default(),
                db::col::<String>(&r, 3).unwrap_or_default(),
                db::col::<String>(&r, 4).unwrap_or_default(),
                db::col::<String>(&r, 5).unwrap_or_default(),
                db::col::<JsonB>(&r, 6).unwrap_or(JsonB(serde_json::Value::Null)),
                db::col::<TimestampWithTimeZone>(&r, 7).expect("changed_at is NOT NULL"),
                db::col::<i64>(&r, 8).unwrap_or_default(),
                db::col::<String>(&r, 9),
                db::col::<String>(&r, 10),
            )
        })
        .collect::<Vec<_>>()
    })
}
