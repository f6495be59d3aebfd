//! Loading what a batch's plan needs: current rows (read without locks: each write is
//! guarded by the row's version instead), the links' bases, pending conflicts,
//! per-field change times, and `match_on` candidates.

use super::jsonb_arg;
use super::run::Run;
use super::sql::{self, statements};
use crate::capture::endpoints::Endpoint;
use crate::core::merge::Row;
use crate::core::plan::{self, FieldTimes, PendingConflict, ReadRow, Version, WorkItem};
use crate::core::types::{Side, Sides};
use crate::pg::db;
use crate::pg::quote::{quote_ident, quote_literal};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// Current rows by key, only the columns in `cols`, without locking them: each write
/// of the run is guarded by the row's ctid instead (see `update_guarded`).
pub(super) fn read_rows(e: &Endpoint, ids: &[String], cols: &[String]) -> HashMap<String, ReadRow> {
    if ids.is_empty() {
        return HashMap::new();
    }
    // json_build_object takes at most 100 arguments: wide mappings read the whole row
    let json = if cols.len() > 50 {
        "row_to_json(t)".to_string()
    } else {
        let pairs: Vec<String> = cols
            .iter()
            .map(|c| {
                let q = quote_ident(c);
                format!("{}, t.{q}", quote_literal(c))
            })
            .collect();
        format!("json_build_object({})", pairs.join(", "))
    };
    // one index lookup per key, whatever work_mem and the statistics say (OFFSET 0
    // keeps the planner from turning it into a join over the whole table)
    let sql = format!(
        "SELECT x.* FROM unnest($1::text[]::{kt}[]) AS w(id),
                LATERAL (SELECT {k}, t.ctid::text, t.xmin::text, t.tableoid::oid::text, {json}
                           FROM {table} t WHERE t.{kc} = w.id OFFSET 0) x",
        k = sql::key_text(e, "t"),
        table = e.table,
        kc = quote_ident(&e.key_column),
        kt = e.key_type,
    );
    keyed_rows(&sql, ids)
}

/// Run `sql` (columns: key, ctid, xmin, tableoid as text, row json; `$1` = the keys)
/// and return its rows by key.
fn keyed_rows(sql: &str, ids: &[String]) -> HashMap<String, ReadRow> {
    db::select(sql, &[ids.to_vec().into()], |r| keyed_row(r, 1))
        .into_iter()
        .collect()
}

/// A keyed row from the columns at `at`..: key, ctid, xmin, tableoid (as text), row
/// (json). None when any is NULL or the row is not an object.
fn keyed_row(r: &pgrx::spi::SpiHeapTupleData, at: usize) -> Option<(String, ReadRow)> {
    let text = |i: usize| db::col::<String>(r, at + i);
    let version = Version {
        ctid: text(1)?,
        xmin: text(2)?,
        tableoid: text(3)?,
    };
    match db::col::<pgrx::Json>(r, at + 4) {
        Some(pgrx::Json(Value::Object(row))) => Some((text(0)?, ReadRow { version, row })),
        _ => None,
    }
}

/// Current rows by key (all columns), locked against concurrent writers until the
/// transaction commits.
pub fn load_rows(e: &Endpoint, ids: &[String]) -> HashMap<String, Row> {
    if ids.is_empty() {
        return HashMap::new();
    }
    let sql = format!(
        "SELECT {k}, t.ctid::text, t.xmin::text, t.tableoid::oid::text, to_jsonb(t)::json FROM {table} t
          WHERE t.{kc} = ANY($1::text[]::{kt}[]) FOR NO KEY UPDATE OF t",
        k = sql::key_text(e, "t"),
        table = e.table,
        kc = quote_ident(&e.key_column),
        kt = e.key_type,
    );
    keyed_rows(&sql, ids)
        .into_iter()
        .map(|(k, r)| (k, r.row))
        .collect()
}

impl Run<'_> {
    /// Pending manual conflicts of the entities `ids`.
    pub(super) fn load_pending(&self, ids: &Sides<Vec<String>>) -> Vec<PendingConflict> {
        db::select(
            &sql::pending_sql(&self.schema),
            &[
                self.cfg.id.into(),
                ids.source.clone().into(),
                ids.target.clone().into(),
            ],
            |r| {
                Some(PendingConflict {
                    ids: Sides::new(db::col(r, 1), db::col(r, 2)),
                    fields: db::col::<Vec<String>>(r, 3).unwrap_or_default(),
                })
            },
        )
    }

    /// Per-field change times of the pairs that changed on both sides (only those can
    /// conflict, and only latest_wins compares times). Reads change_log.
    pub(super) fn field_times(&self, pairs: &[WorkItem]) -> FieldTimes {
        // the change records by ctid when the work list had them all, else the
        // entity's records found by scanning the window
        let (tids, scan) = plan::time_requests(pairs, self.window_pred.is_some());
        let (scan_s, scan_t) = (scan.source, scan.target);
        let (s, t) = (&self.cfg.source, &self.cfg.target);
        let lit = quote_literal;
        let is_src = format!(
            "(c.system = {} AND c.entity_type = {})",
            lit(&s.system),
            lit(&s.entity_type)
        );
        let is_tgt = format!(
            "(c.system = {} AND c.entity_type = {})",
            lit(&t.system),
            lit(&t.entity_type)
        );
        let mut queries: Vec<(String, Vec<pgrx::datum::DatumWithOid>)> = Vec::new();
        if !tids.is_empty() {
            queries.push((
                format!(
                    "SELECT {is_src}, c.entity_id, k, (extract(epoch FROM max(c.changed_at)) * 1000000)::bigint
                       FROM {schema}.change_log c, jsonb_object_keys(c.fields) k
                      WHERE c.ctid = ANY($1::tid[])
                      GROUP BY 1, 2, 3",
                    schema = self.schema,
                ),
                vec![tids.into()],
            ));
        }
        if let (Some(pred), false) = (&self.window_pred, scan_s.is_empty() && scan_t.is_empty()) {
            queries.push((
                format!(
                    "SELECT {is_src}, c.entity_id, k, (extract(epoch FROM max(c.changed_at)) * 1000000)::bigint
                       FROM {schema}.change_log c, jsonb_object_keys(c.fields) k
                      WHERE {pred} AND c.origin IS DISTINCT FROM $3
                        AND (({is_src} AND c.entity_id = ANY($1)) OR ({is_tgt} AND c.entity_id = ANY($2)))
                      GROUP BY 1, 2, 3",
                    schema = self.schema,
                ),
                vec![scan_s.into(), scan_t.into(), self.cfg.origin().into()],
            ));
        }
        let mut out = FieldTimes::new();
        for (sql, args) in queries {
            let rows: Vec<(bool, String, String, i64)> = db::select(&sql, &args, |r| {
                Some((
                    db::col::<bool>(r, 1)?,
                    db::col::<String>(r, 2)?,
                    db::col::<String>(r, 3)?,
                    db::col::<i64>(r, 4)?,
                ))
            });
            for (is_src, id, field, at) in rows {
                let side = if is_src { Side::Source } else { Side::Target };
                out.entry((side, id)).or_default().insert(field, at);
            }
        }
        out
    }

    /// Find unlinked target rows matching the projected match_on values.
    /// Returns the match of each pair in `wanted` (pair index -> target key, chosen by
    /// `plan::assign_matches` among targets not in `taken`) and the matched rows.
    /// Locks the matched target rows.
    #[allow(clippy::type_complexity)]
    pub(super) fn find_matches(
        &self,
        wanted: &[(usize, Row)],
        taken: &HashSet<String>,
    ) -> (HashMap<usize, String>, Vec<(String, ReadRow)>) {
        if wanted.is_empty() || self.cfg.match_on.is_empty() {
            return Default::default();
        }
        let t = &self.cfg.target;
        let arr: Vec<Value> = wanted
            .iter()
            .map(|(i, row)| {
                let mut m: Row = self
                    .cfg
                    .match_on
                    .iter()
                    .map(|f| (f.clone(), row.get(f).cloned().unwrap_or(Value::Null)))
                    .collect();
                m.insert("__n".into(), json!(i));
                Value::Object(m)
            })
            .collect();
        let cond = self
            .cfg
            .match_on
            .iter()
            .map(|f| {
                let q = quote_ident(f);
                format!("t.{q} = m.{q}")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        // unlinked: a run that began without links knows every target it linked (the
        // links table need not be asked, whose statistics lag behind such a load)
        let unlinked = if self.had_links {
            format!(
                "WHERE NOT EXISTS (SELECT 1 FROM {schema}.sync_links l WHERE l.config_id = $2 AND l.target_id = {tk})",
                schema = self.schema,
                tk = sql::key_text(t, "t"),
            )
        } else {
            // $2 (the config id) stays bound: the statement has the same parameters
            "WHERE $2::bigint IS NOT NULL".to_string()
        };
        let sql = format!(
            "SELECT (x.v->>'__n')::int, {tk}, t.ctid::text, t.xmin::text, t.tableoid::oid::text,
                    to_jsonb(t)::json
               FROM jsonb_array_elements($1) x(v)
               CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, x.v) m
               JOIN {table} t ON {cond}
              {unlinked}
              ORDER BY 1, 2
              FOR NO KEY UPDATE OF t",
            tk = sql::key_text(t, "t"),
            table = t.table,
        );
        let rows: Vec<(i32, String, ReadRow)> = db::select(
            &sql,
            &[jsonb_arg(Value::Array(arr)).into(), self.cfg.id.into()],
            |r| {
                let n = db::col::<i32>(r, 1)?;
                let (k, row) = keyed_row(r, 2)?;
                Some((n, k, row))
            },
        );
        let mut found: HashMap<String, ReadRow> = HashMap::new();
        let candidates: Vec<(usize, String)> = rows
            .into_iter()
            .filter(|(_, k, _)| self.had_links || !self.linked_targets.contains(k))
            .map(|(n, k, row)| {
                found.entry(k.clone()).or_insert(row);
                (n as usize, k)
            })
            .collect();
        let matches = plan::assign_matches(candidates, taken);
        let rows = matches
            .values()
            .filter_map(|k| Some((k.clone(), found.remove(k)?)))
            .collect();
        (matches, rows)
    }

    /// The bases of the linked pairs. A pair whose link an earlier batch of this run
    /// dropped or replaced (a key handed out again) is taken out and returned: both of
    /// its entities are looked at again by the next run, with the links as they are.
    pub(super) fn load_bases(&self, items: &mut Vec<WorkItem>) -> Vec<Sides<Option<String>>> {
        let linked: Vec<&str> = items
            .iter()
            .filter(|i| i.link.is_some())
            .filter_map(|i| i.ids.source.as_deref())
            .collect();
        if linked.is_empty() {
            return Vec::new();
        }
        let bases: HashMap<String, (String, Row)> = db::lookups_only(|| {
            db::select(
                &sql::statement(statements::LOAD_BASES, &self.schema),
                &[self.cfg.id.into(), linked.into()],
                |r| {
                    let s = db::col::<String>(r, 1)?;
                    let t = db::col::<String>(r, 2)?;
                    match db::col::<pgrx::Json>(r, 3)? {
                        pgrx::Json(Value::Object(b)) => Some((s, (t, b))),
                        _ => None,
                    }
                },
            )
            .into_iter()
            .collect()
        });
        plan::attach_bases(items, bases)
    }
}
