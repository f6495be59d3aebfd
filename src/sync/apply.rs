//! Writing a batch: guarded set-based writes into both tables, links, conflicts.
//! Also the row writers `sync_push` and `sync_resolve_conflict` share.

use super::jsonb_arg;
use super::run::Run;
use super::sql::{self, base_checksum_sql, col_list, statements};
use super::Stats;
use crate::capture::endpoints::Endpoint;
use crate::core::merge::{Row, Write};
use crate::core::plan::{self, Op, Version};
use crate::core::types::{Side, Sides};
use crate::pg::db::{self, spi_fail};
use crate::pg::fail;
use crate::pg::quote::quote_ident;
use crate::pg::security;
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

impl Run<'_> {
    /// Apply `ops` with set-based statements: creates first (they make the keys the
    /// links need), then guarded updates and deletes, then links, conflicts, and the
    /// resolution of the pairs' open errors. Runs inside a subtransaction; a row changed
    /// by someone else since it was read is noted in `raced` and fails the whole call
    /// (40001). Tables: both tables, sync_links, sync_conflicts, sync_errors.
    pub(super) fn apply(&self, ops: &[Op]) -> Stats {
        let mut st = Stats {
            synced: ops.len() as i64,
            ..Stats::default()
        };
        // each op's keys; creates fill in the new ones
        let mut ids: Vec<Sides<Option<String>>> = ops.iter().map(|o| o.ids.clone()).collect();
        st.created = self.create_rows(ops, &mut ids);
        (st.updated, st.deleted) = self.write_rows(ops, &ids);
        st.new_targets = self.write_links(ops, &ids);
        st.conflicts = self.record_conflicts(ops, &ids);
        // entities that failed before and went through now
        self.resolve_errors(Sides::new(
            ids.iter().filter_map(|i| i.source.clone()).collect(),
            ids.iter().filter_map(|i| i.target.clone()).collect(),
        ));
        st
    }

    /// Insert the rows `ops` create, on each side, with new keys (from the key
    /// column's default, or the partner's key); fills them into `ids`. Returns how
    /// many rows were created.
    fn create_rows(&self, ops: &[Op], ids: &mut [Sides<Option<String>>]) -> i64 {
        let cfg = self.cfg;
        let mut created = 0;
        for side in [Side::Target, Side::Source] {
            let e = cfg.endpoint(side);
            let insert = |i: usize| -> Option<&Row> {
                match ops[i].writes.get(side) {
                    Some(Write::Insert(v)) => Some(v),
                    _ => None,
                }
            };
            let idx: Vec<usize> = (0..ops.len()).filter(|&i| insert(i).is_some()).collect();
            if idx.is_empty() {
                continue;
            }
            let partner_ids: Vec<Option<String>> = idx
                .iter()
                .map(|&i| ids[i].get(side.other()).clone())
                .collect();
            let keys = new_keys(e, &partner_ids);
            let mut rows = serde_json::Map::new();
            for (&i, k) in idx.iter().zip(&keys) {
                if let Some(v) = insert(i) {
                    rows.insert(k.clone(), Value::Object(v.clone()));
                }
                *ids[i].get_mut(side) = Some(k.clone());
            }
            let cols = match side {
                Side::Target => cfg.shape.mapping.target_columns(),
                Side::Source => cfg.shape.mapping.source_columns(),
            };
            insert_rows(e, &cols, rows);
            created += idx.len() as i64;
        }
        created
    }

    /// The guarded updates and deletes of `ops` (rows now keyed by `ids`), each side
    /// at once. Returns (updated, deleted). A row changed since it was read is noted in
    /// `raced` and fails the call (40001).
    fn write_rows(&self, ops: &[Op], ids: &[Sides<Option<String>>]) -> (i64, i64) {
        let cfg = self.cfg;
        let (mut updated, mut deleted) = (0, 0);
        for side in [Side::Target, Side::Source] {
            let e = cfg.endpoint(side);
            let mut updates: Vec<(&str, Option<&Version>, &Row)> = Vec::new();
            let mut deletes: Vec<(&str, Option<&Version>)> = Vec::new();
            for (o, now) in ops.iter().zip(ids) {
                let ver = o.versions.get(side).as_ref();
                match (o.writes.get(side), now.get(side)) {
                    (Some(Write::Update(v)), Some(id)) => updates.push((id, ver, v)),
                    (Some(Write::Delete), Some(id)) => deletes.push((id, ver)),
                    _ => {}
                }
            }
            updated += updates.len() as i64;
            deleted += deletes.len() as i64;
            let mut missed = update_guarded(e, &updates);
            missed.extend(delete_guarded(e, &deletes));
            if !missed.is_empty() {
                missed.sort();
                self.raced
                    .borrow_mut()
                    .extend(missed.iter().map(|k| (side, k.clone())));
                fail(
                    PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                    &format!(
                        "{} row(s) of {} changed in another transaction after this run read them (key {}); not overwritten, retried on the next run",
                        missed.len(),
                        e.table,
                        missed.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        (updated, deleted)
    }

    /// Update, drop and insert the links of `ops` (`plan::link_changes`). Returns the
    /// targets newly linked.
    fn write_links(&self, ops: &[Op], ids: &[Sides<Option<String>>]) -> Vec<String> {
        let cfg = self.cfg;
        let mut new_targets = Vec::new();
        let links = plan::link_changes(ops, ids);
        if !links.bases.is_empty() {
            let rows: Vec<(&str, Option<&str>, &Row)> =
                links.bases.iter().map(|&(s, b)| (s, None, b)).collect();
            let (s, _, b) = link_columns(&rows);
            db::lookups_only(|| {
                db::run(
                    &sql::fill(
                        statements::UPDATE_BASES,
                        &[
                            ("schema", &self.schema),
                            ("checksum", &base_checksum_sql("x.b")),
                        ],
                    ),
                    &[cfg.id.into(), s.into(), b.into()],
                )
            });
        }
        self.drop_links(links.dropped);
        if !links.added.is_empty() {
            new_targets.extend(links.added.iter().map(|&(_, t, _)| t.to_string()));
            // a stale link of either key (a relinked pair, a reused key) is replaced:
            // found by the insert itself, so the common case costs no extra lookups
            let insert =
                |rows: &[(&str, Option<&str>, &Row)], on_conflict: &str| -> HashSet<String> {
                    let (s, t, b) = link_columns(rows);
                    written_keys(
                        &sql::fill(
                            statements::INSERT_LINKS,
                            &[
                                ("schema", &self.schema),
                                ("checksum", &base_checksum_sql("x.b")),
                                ("on_conflict", on_conflict),
                            ],
                        ),
                        &[cfg.id.into(), s.into(), t.into(), b.into()],
                    )
                };
            let new_links: Vec<(&str, Option<&str>, &Row)> = links
                .added
                .iter()
                .map(|&(s, t, b)| (s, Some(t), b))
                .collect();
            let done = insert(&new_links, "ON CONFLICT DO NOTHING");
            let stale: Vec<(&str, Option<&str>, &Row)> = new_links
                .into_iter()
                .filter(|l| !done.contains(l.0))
                .collect();
            if !stale.is_empty() {
                self.drop_links(Sides::new(
                    stale.iter().map(|l| l.0.to_string()).collect(),
                    stale.iter().filter_map(|l| l.1.map(String::from)).collect(),
                ));
                insert(&stale, "");
            }
            self.links_added(done.len() + stale.len());
        }
        new_targets
    }

    /// Record the conflicts of `ops` in sync_conflicts, with both sides' values: a
    /// losing value is never lost. Returns how many.
    fn record_conflicts(&self, ops: &[Op], ids: &[Sides<Option<String>>]) -> i64 {
        let cfg = self.cfg;
        let conflicts: Vec<Value> = ops
            .iter()
            .zip(ids)
            .flat_map(|(o, now)| {
                o.conflicts.iter().map(move |c| {
                    json!({
                        "s": now.source, "t": now.target, "kind": c.kind.name(), "fields": c.fields,
                        "sv": c.source_value, "tv": c.target_value, "bv": c.base_value,
                        "res": c.resolution.name(), "rv": c.resolved_value,
                    })
                })
            })
            .collect();
        let n = conflicts.len() as i64;
        if n > 0 {
            db::run(
                &sql::statement(statements::INSERT_CONFLICTS, &self.schema),
                &[
                    cfg.id.into(),
                    self.run_id.into(),
                    cfg.strategy.name().into(),
                    jsonb_arg(Value::Array(conflicts)).into(),
                ],
            );
        }
        n
    }

    /// Delete this config's links of these source keys and of these target keys: one
    /// index lookup per key.
    fn drop_links(&self, keys: Sides<Vec<String>>) {
        for (col, ids) in [("source_id", keys.source), ("target_id", keys.target)] {
            if ids.is_empty() {
                continue;
            }
            db::lookups_only(|| {
                db::run(
                    &format!(
                        "DELETE FROM {}.sync_links l USING unnest($2::text[]) AS x(id)
                          WHERE l.config_id = $1 AND l.{col} = x.id",
                        self.schema
                    ),
                    &[self.cfg.id.into(), ids.into()],
                )
            });
        }
    }

    /// Count links inserted by this run; at ANALYZE_LINKS_AT and each time the count
    /// doubles, analyze the links table.
    /// - An initial load grows this config's links from nothing within one
    ///   transaction. With statistics from before, the planner expects none, probes
    ///   `match_on` candidates through the wrong index or hashes every link of the
    ///   config, once per batch: the load's time grows with the square of its size.
    /// - The config's own growth counts, not the table's: a links table that already
    ///   holds other configs' links (a million, say) would otherwise wait that long.
    /// - Doubling keeps it to about seven ANALYZEs per million links; below the first,
    ///   the links hashed per batch are few.
    pub(super) fn links_added(&self, n: usize) {
        let (since, next) = self.links_growth.get();
        let since = since + n as f64;
        if since < next {
            self.links_growth.set((since, next));
            return;
        }
        // SKIP_LOCKED: never wait for (or deadlock with) another run holding the
        // lock its own ANALYZE took, which lasts until that run commits
        db::run(
            &format!("ANALYZE (SKIP_LOCKED) {}.sync_links", self.schema),
            &[],
        );
        self.links_growth.set((since, since * 2.0));
    }
}

/// Whether config `id` has links (one probe of the primary key).
/// - A scalar subquery ordered by the key, so that the plan is that probe (`EXISTS`
///   drops an ORDER BY). Under `EXISTS`, a config holding half of the links looks
///   like a sequential scan's first few rows; when its links lie at the end of the
///   heap, that scan reads every other config's links first, on every run (15
///   changes in a 1,000,000-row pair took 300 ms).
pub(super) fn has_links(schema: &str, id: i64) -> bool {
    db::one::<bool>(
        &format!(
            "SELECT (SELECT true FROM {schema}.sync_links WHERE config_id = $1
                      ORDER BY source_id LIMIT 1) IS NOT NULL"
        ),
        &[id.into()],
    )
    .unwrap_or(true)
}

/// Links a run inserts before it first analyzes the links table (see `links_added`).
pub(super) const ANALYZE_LINKS_AT: f64 = 20_000.0;

/// Keys for new rows: from the key column's default (sequence, uuid, ...) evaluated
/// before the insert, so each created row is known to belong to its partner. A key
/// without a default takes the partner's key.
pub fn new_keys(e: &Endpoint, partner_ids: &[Option<String>]) -> Vec<String> {
    match &e.key_default {
        Some(expr) => {
            let sql = format!("SELECT format('%s', {expr}) FROM generate_series(1, $1)");
            // the default is the table owner's expression: evaluate it with its rights
            security::as_table_owner(e.owner, || {
                Spi::connect(|c| {
                    let t = c
                        .select(&sql, None, &[(partner_ids.len() as i64).into()])
                        .unwrap_or_else(|e| spi_fail(e));
                    db::scoped(|| t.filter_map(|r| db::col::<String>(&r, 1)).collect())
                })
            })
        }
        None => partner_ids
            .iter()
            .map(|p| {
                p.clone().unwrap_or_else(|| {
                    fail(
                        PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                        &format!(
                            "cannot make a key for a new row in {}: its key has no default",
                            e.table
                        ),
                    )
                })
            })
            .collect(),
    }
}

pub fn insert_rows(e: &Endpoint, cols: &[String], rows: serde_json::Map<String, Value>) {
    let kc = quote_ident(&e.key_column);
    let sql = format!(
        "INSERT INTO {table} ({kc}, {cols}) {ovr} SELECT (x.k)::{kt}, {rcols}
           FROM jsonb_each($1) x(k, v), LATERAL jsonb_populate_record(NULL::{table}, x.v) r",
        table = e.table,
        cols = col_list(cols, ""),
        rcols = col_list(cols, "r."),
        kt = e.key_type,
        ovr = if e.key_identity {
            "OVERRIDING SYSTEM VALUE"
        } else {
            ""
        },
    );
    security::as_table_owner(e.owner, || {
        db::run(&sql, &[jsonb_arg(Value::Object(rows)).into()])
    });
}

pub fn update_rows(e: &Endpoint, rows: serde_json::Map<String, Value>) {
    if rows.is_empty() {
        return;
    }
    let mut cols: Vec<String> = Vec::new();
    for v in rows.values() {
        if let Value::Object(m) = v {
            for k in m.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    let kc = quote_ident(&e.key_column);
    let sql = format!(
        "UPDATE {table} t SET ({cols}) = (SELECT {rcols} FROM jsonb_populate_record(t, x.v) r)
           FROM jsonb_each($1) x(k, v) WHERE t.{kc} = (x.k)::{kt} AND t.{kc} = ANY($2::text[]::{kt}[])",
        table = e.table,
        cols = col_list(&cols, ""),
        rcols = col_list(&cols, "r."),
        kt = e.key_type,
    );
    // the key list lets the planner find the rows by index whatever it guesses for jsonb_each
    let keys: Vec<String> = rows.keys().cloned().collect();
    security::as_table_owner(e.owner, || {
        db::run(&sql, &[jsonb_arg(Value::Object(rows)).into(), keys.into()])
    });
}

/// Columns carrying each row's version in a guarded write's JSON.
const CTID_KEY: &str = "__sync_engine_ctid";
const XMIN_KEY: &str = "__sync_engine_xmin";
const TABLEOID_KEY: &str = "__sync_engine_tableoid";

/// Keys as the statement returned them: what was really written.
pub(super) fn written_keys(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> HashSet<String> {
    Spi::connect_mut(|c| {
        let t = c.update(sql, None, args).unwrap_or_else(|e| spi_fail(e));
        db::scoped(|| t.filter_map(|r| db::col::<String>(&r, 1)).collect())
    })
}

/// A row for a guarded UPDATE, serialized as its values plus the version read.
struct VersionedRow<'a>(&'a Version, &'a Row);

impl serde::Serialize for VersionedRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.1.len() + 3))?;
        m.serialize_entry(CTID_KEY, &self.0.ctid)?;
        m.serialize_entry(XMIN_KEY, &self.0.xmin)?;
        m.serialize_entry(TABLEOID_KEY, &self.0.tableoid)?;
        for (k, v) in self.1 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Link rows as column arrays (source ids, target ids, bases): array parameters, the
/// bases as jsonb built in Rust, so nothing is parsed on the way in.
#[allow(clippy::type_complexity)]
fn link_columns<'a>(
    rows: &[(&'a str, Option<&'a str>, &'a Row)],
) -> (
    Vec<&'a str>,
    Vec<Option<&'a str>>,
    Vec<crate::capture::JsonbObject<'a>>,
) {
    (
        rows.iter().map(|r| r.0).collect(),
        rows.iter().map(|r| r.1).collect(),
        rows.iter()
            .map(|r| crate::capture::JsonbObject(r.2))
            .collect(),
    )
}

/// A `json` parameter serialized straight from borrowed values.
fn json_text<T: serde::Serialize>(v: &T) -> pgrx::datum::JsonString {
    pgrx::datum::JsonString(serde_json::to_string(v).expect("serializable"))
}

/// UPDATE rows (key, ctid when read, column -> value) only where the row is still the
/// version the run read: a row someone changed since (or is changing: the UPDATE waits
/// for them and then re-checks) is left alone. Returns the keys not written.
fn update_guarded(e: &Endpoint, rows: &[(&str, Option<&Version>, &Row)]) -> Vec<String> {
    let mut missed = Vec::new();
    // one statement per set of columns written
    let mut groups: HashMap<Vec<&str>, Vec<(&str, &Version, &Row)>> = HashMap::new();
    for &(key, ver, vals) in rows {
        match ver {
            Some(ver) if !vals.is_empty() => groups
                .entry(vals.keys().map(String::as_str).collect())
                .or_default()
                .push((key, ver, vals)),
            Some(_) => {}
            None => missed.push(key.to_string()),
        }
    }
    for (cols, rows) in groups {
        let cols: Vec<String> = cols.into_iter().map(String::from).collect();
        let done = update_guarded_arrays(e, &cols, &rows)
            .unwrap_or_else(|| update_guarded_json(e, &cols, &rows));
        missed.extend(
            rows.iter()
                .filter(|r| !done.contains(r.0))
                .map(|r| r.0.to_string()),
        );
    }
    missed
}

/// `update_guarded` for one set of columns through `json_to_recordset`, which converts
/// arrays and composites from their JSON form.
fn update_guarded_json(
    e: &Endpoint,
    cols: &[String],
    rows: &[(&str, &Version, &Row)],
) -> HashSet<String> {
    let defs = cols
        .iter()
        .map(|c| format!("{} {}", quote_ident(c), e.column_type(c).unwrap_or("text")))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE {table} t SET ({cols}) = ROW({rcols})
               FROM json_to_recordset($1) AS r({ck} tid, {xk} xid, {ok} oid, {defs})
              WHERE t.ctid = r.{ck} AND t.xmin = r.{xk} AND t.tableoid = r.{ok}
             RETURNING {k}",
        table = e.table,
        cols = col_list(cols, ""),
        rcols = col_list(cols, "r."),
        ck = quote_ident(CTID_KEY),
        xk = quote_ident(XMIN_KEY),
        ok = quote_ident(TABLEOID_KEY),
        k = sql::key_text(e, "t"),
    );
    let arr: Vec<VersionedRow> = rows.iter().map(|r| VersionedRow(r.1, r.2)).collect();
    db::lookups_only(|| {
        security::as_table_owner(e.owner, || written_keys(&sql, &[json_text(&arr).into()]))
    })
}

/// `update_guarded` for one set of scalar and JSON columns: the values go in as one
/// text array per column (nothing to parse but each value's own input), cast to the
/// column's type without modifiers so that the modifier applies as an assignment.
/// None when a column is an array or composite: `json_to_recordset` converts those.
fn update_guarded_arrays(
    e: &Endpoint,
    cols: &[String],
    rows: &[(&str, &Version, &Row)],
) -> Option<HashSet<String>> {
    let mut casts = Vec::with_capacity(cols.len());
    let mut inputs = Vec::with_capacity(cols.len());
    for c in cols {
        let i = e.column_index(c)?;
        let input = e.column_inputs[i];
        if input == crate::core::mapping::ColumnInput::Structured {
            return None;
        }
        casts.push(format!("r.v{}::{}", casts.len(), e.column_base_types[i]));
        inputs.push(input);
    }
    let sql = format!(
        "UPDATE {table} t SET ({cols}) = ROW({casts})
           FROM unnest($1::text[]::tid[], $2::text[]::xid[], $3::text[]::oid[]{params}) AS r(c, x, o{names})
          WHERE t.ctid = r.c AND t.xmin = r.x AND t.tableoid = r.o
         RETURNING {k}",
        table = e.table,
        cols = col_list(cols, ""),
        casts = casts.join(", "),
        params = (0..cols.len())
            .map(|i| format!(", ${}::text[]", i + 4))
            .collect::<String>(),
        names = (0..cols.len()).map(|i| format!(", v{i}")).collect::<String>(),
        k = sql::key_text(e, "t"),
    );
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
        rows.iter()
            .map(|r| r.1.ctid.as_str())
            .collect::<Vec<_>>()
            .into(),
        rows.iter()
            .map(|r| r.1.xmin.as_str())
            .collect::<Vec<_>>()
            .into(),
        rows.iter()
            .map(|r| r.1.tableoid.as_str())
            .collect::<Vec<_>>()
            .into(),
    ];
    for (c, input) in cols.iter().zip(inputs) {
        let vals: Vec<Option<String>> = rows
            .iter()
            .map(|r| {
                r.2.get(c)
                    .and_then(|v| crate::core::mapping::input_text(v, input))
            })
            .collect();
        // text cannot hold a NUL (a json value may spell one "\u0000"):
        // json_to_recordset refuses it with a proper error
        if vals.iter().flatten().any(|v| v.contains('\0')) {
            return None;
        }
        args.push(vals.into());
    }
    Some(db::lookups_only(|| {
        security::as_table_owner(e.owner, || written_keys(&sql, &args))
    }))
}

/// DELETE rows (key, ctid when read) that are still the version the run read; returns
/// the keys not deleted.
fn delete_guarded(e: &Endpoint, rows: &[(&str, Option<&Version>)]) -> Vec<String> {
    let mut missed = Vec::new();
    let mut keys = Vec::new();
    let mut ctids = Vec::new();
    let mut xmins = Vec::new();
    let mut tableoids = Vec::new();
    for &(key, ver) in rows {
        match ver {
            Some(v) => {
                keys.push(key);
                ctids.push(v.ctid.clone());
                xmins.push(v.xmin.clone());
                tableoids.push(v.tableoid.clone());
            }
            None => missed.push(key.to_string()),
        }
    }
    if !ctids.is_empty() {
        let sql = format!(
            "DELETE FROM {table} t USING unnest($1::tid[], $2::text[]::xid[], $3::text[]::oid[]) AS r(c, x, o)
              WHERE t.ctid = r.c AND t.xmin = r.x AND t.tableoid = r.o
             RETURNING {k}",
            table = e.table,
            k = sql::key_text(e, "t"),
        );
        let done = db::lookups_only(|| {
            security::as_table_owner(e.owner, || {
                written_keys(&sql, &[ctids.into(), xmins.into(), tableoids.into()])
            })
        });
        missed.extend(
            keys.into_iter()
                .filter(|k| !done.contains(*k))
                .map(String::from),
        );
    }
    missed
}

pub fn delete_rows(e: &Endpoint, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let sql = format!(
        "DELETE FROM {table} WHERE {kc} = ANY($1::text[]::{kt}[])",
        table = e.table,
        kc = quote_ident(&e.key_column),
        kt = e.key_type,
    );
    security::as_table_owner(e.owner, || db::run(&sql, &[ids.to_vec().into()]));
}
