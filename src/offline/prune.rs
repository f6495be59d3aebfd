//! Pruning for offline clients, run with change_log's (worker and sync_prune):
//! - remembered push ids older than sync_engine.push_id_retention hours go;
//! - a change_log prune records, per endpoint, the highest txid it deleted
//!   (sync_log_horizon), which tells sync_pull a cursor may have lost changes.

use crate::pg::guc;

/// One bounded batch of remembered push ids past their retention.
pub fn push_ids_sql(schema: &str, batch: i64) -> String {
    format!(
        "DELETE FROM {schema}.sync_push_ids WHERE ctid = ANY(ARRAY(
            SELECT p.ctid FROM {schema}.sync_push_ids p
             WHERE p.pushed_at < now() - make_interval(hours => {hours})
             LIMIT {batch}))",
        hours = guc::PUSH_ID_RETENTION_HOURS.get()
    )
}

/// Wrap a change_log DELETE (without RETURNING) so that it records the prune horizon of
/// each endpoint it deleted from; the statement returns one row per deleted record.
pub fn with_horizon(schema: &str, delete: &str) -> String {
    format!(
        "WITH d AS ({delete} RETURNING system, entity_type, txid),
              h AS (INSERT INTO {schema}.sync_log_horizon AS h (system, entity_type, pruned_txid)
                    SELECT system, entity_type, max(txid::text::numeric)::text::xid8 FROM d GROUP BY 1, 2
                    ON CONFLICT (system, entity_type) DO UPDATE
                       SET pruned_txid = greatest(h.pruned_txid, excluded.pruned_txid), pruned_at = now())
         SELECT 1 FROM d"
    )
}
