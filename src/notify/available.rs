//! `changes.available`: per endpoint, at most one event per notifier tick, saying how
//! many change records became visible since the last one and the window they are in
//! (`since`, `until`: positions for `sync_changes(since, until, system, entity_type)`).
//! Only while someone wants the event (a subscribed webhook, or Redis); otherwise the
//! position is forgotten and nothing is read.

use crate::pg::db;
use pgrx::prelude::*;
use serde_json::json;

/// One tick, in the caller's transaction. Reads change_log (in the window after the
/// last announced position), sync_endpoints and sync_notify_state; writes events and
/// the new position when there were changes.
pub fn tick(schema: &str) {
    let wanted = db::one::<bool>(
        &format!("SELECT {schema}.sync_event_wanted('changes.available')"),
        &[],
    )
    .unwrap_or(false);
    let prev = db::one::<String>(
        &format!("SELECT position FROM {schema}.sync_notify_state"),
        &[],
    );
    if !wanted {
        if prev.is_some() {
            db::run(
                &format!("UPDATE {schema}.sync_notify_state SET position = NULL"),
                &[],
            );
        }
        return;
    }
    let cur = crate::capture::changes::current_position().to_string();
    let Some(prev) = prev else {
        db::run(
            &format!("UPDATE {schema}.sync_notify_state SET position = $1"),
            &[cur.as_str().into()],
        );
        return;
    };
    if prev == cur {
        return;
    }
    let w = crate::capture::changes::window(Some(&prev), &cur);
    let sql = format!(
        "SELECT e.id, e.system, e.entity_type, count(*)::bigint, min(l.id), max(l.id)
           FROM {schema}.change_log l
           JOIN {schema}.sync_endpoints e ON e.system = l.system AND e.entity_type = l.entity_type
          WHERE {pred}
          GROUP BY e.id, e.system, e.entity_type ORDER BY e.id",
        pred = crate::capture::changes::window_predicate(&w, "l")
    );
    let events: Vec<pgrx::JsonB> = Spi::connect(|c| {
        let t = c
            .select(&sql, None, &[])
            .unwrap_or_else(|e| db::spi_fail(e));
        t.map(|r| {
            pgrx::JsonB(json!({
                "endpoint_id": db::col::<i64>(&r, 1),
                "system": db::col::<String>(&r, 2),
                "entity_type": db::col::<String>(&r, 3),
                "count": db::col::<i64>(&r, 4),
                "first_change_id": db::col::<i64>(&r, 5),
                "last_change_id": db::col::<i64>(&r, 6),
                "since": prev,
                "until": cur,
            }))
        })
        .collect()
    });
    if events.is_empty() {
        return;
    }
    db::run(
        &format!("SELECT {schema}.sync_emit('changes.available', $1)"),
        &[events.into()],
    );
    db::run(
        &format!("UPDATE {schema}.sync_notify_state SET position = $1"),
        &[cur.as_str().into()],
    );
}
