//! sync_execute: one incremental run of a config. The shell around `merge`: it reads
//! what changed since the config's position, loads the touched rows in batches, lets
//! the pure merge decide, and applies the decisions set-based, one subtransaction per
//! batch (falling back to one per entity to isolate a failing one). Everything —
//! writes, links, conflicts, the new position and the run record — commits together.

use crate::changes;
use crate::config::{self, Config};
use crate::cursor::Start;
use crate::db::{self, spi_fail};
use crate::endpoints::Endpoint;
use crate::merge::{self, Conflict, Input, LinkAction, Plan, Row, Times, Write};
use crate::security;
use crate::subxact;
use crate::{ext_schema, fail};
use pgrx::prelude::*;
use pgrx::{JsonB, PgMemoryContexts};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// Advisory lock class for "a run of config N is in progress".
pub const LOCK_CLASS: i32 = 0x5359_4e43; // 'SYNC'
/// Change records per entity and side the work list carries for per-field times.
const CHANGE_TIDS: i64 = 64;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub synced: i64,
    pub conflicts: i64,
    pub errors: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    /// pairs brought up to date by the one-statement column copy (`copy_across`), not
    /// the merge; part of `synced`/`updated`
    pub copied: i64,
    /// targets linked by this run (creates, matches), so later batches skip them
    pub new_targets: Vec<String>,
}

/// One entity pair to look at, from the work list.
struct Item {
    source_id: Option<String>,
    target_id: Option<String>,
    /// latest change of each side in the window (microseconds since the epoch)
    source_last: Option<i64>,
    target_last: Option<i64>,
    /// the pair's change records (ctids), fetched for per-field times when both
    /// sides changed and the strategy compares times; at most CHANGE_TIDS per side
    change_tids: Vec<String>,
    /// false when a side had more change records than that (then the times are read
    /// by scanning the window for the entity)
    change_tids_complete: bool,
    /// the link's ctid when the pair is linked (then both ids are set)
    link: Option<String>,
    /// the link's base, loaded for the pairs that go through the merge
    base: Option<Row>,
}

impl Item {
    fn same_pair(&self, o: &Item) -> bool {
        self.source_id == o.source_id && self.target_id == o.target_id
    }

    /// Fold another work-list row of the same pair into this one (the work list has
    /// a row per changed side and per open error).
    fn absorb(&mut self, o: Item) {
        self.source_last = self.source_last.max(o.source_last);
        self.target_last = self.target_last.max(o.target_last);
        self.change_tids.extend(o.change_tids);
        self.change_tids_complete &= o.change_tids_complete;
        if self.link.is_none() {
            self.link = o.link;
        }
    }
}

/// What to do for one entity pair, in table column names.
#[derive(Clone)]
struct Op {
    source_id: Option<String>,
    target_id: Option<String>,
    /// (source id, target id) of the link before this run
    old_link: Option<(String, String)>,
    /// the version of each side's row the run read: writes are guarded by it, so a
    /// row changed by someone else since is never overwritten
    source_version: Option<Version>,
    target_version: Option<Version>,
    target_write: Option<Write>,
    source_write: Option<Write>,
    link: LinkAction,
    conflicts: Vec<Conflict>,
}

struct Run<'a> {
    cfg: &'a Config,
    schema: String,
    run_id: i64,
    fields: Vec<String>,
    /// source columns the mapping reads
    source_cols: Vec<String>,
    stats: Stats,
    linked_targets: HashSet<String>,
    /// this run's change_log window (alias c); None for an initial load
    window_pred: Option<String>,
    /// (target side?, key) of rows the last failed apply found changed by someone else
    raced: std::cell::RefCell<Vec<(bool, String)>>,
    /// links inserted since the links table was last analyzed, and how many rows it
    /// had then (see `links_added`)
    links_growth: std::cell::Cell<(f64, f64)>,
    /// microseconds spent loading rows, up to the merge's end, applying (DEBUG1 log)
    timing: [u128; 3],
    /// the set-based statements bringing a pair up to date when only one side changed
    /// (to the target, to the source), for configs whose mapping copies columns as
    /// they are (see `copy_sql`)
    copy: [Option<String>; 2],
}

/// SQL for the checksum stored with a link's base (`sync_links.base_checksum`): the
/// sha256 (hex) of the base's jsonb text, which is canonical (keys in jsonb's order,
/// one spelling per value). `expr` is a jsonb expression.
pub(crate) fn base_checksum_sql(expr: &str) -> String {
    format!("encode(sha256(convert_to(({expr})::text, 'UTF8')), 'hex')")
}

#[pg_extern(volatile)]
fn sync_execute(config_id: Option<i64>) -> JsonB {
    let config_id = crate::args::required(config_id, "sync_execute", "config_id");
    // pg_cron runs jobs in a background worker of type pg_cron, or over a connection
    // named pg_cron: record such runs as started by cron
    let by = security::with_own_search_path(|| {
        db::one::<String>(
            "SELECT CASE WHEN backend_type ILIKE 'pg_cron%' OR application_name = 'pg_cron' THEN 'cron' ELSE 'manual' END
               FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
    })
    .unwrap_or_else(|| "manual".into());
    JsonB(execute(config_id, &by))
}

/// Run a config now. `started_by` is recorded in sync_runs (manual, worker, cron).
pub fn execute(config_id: i64, started_by: &str) -> Value {
    execute_run(config_id, started_by, None)
}

/// Run a config, completing the `sync_runs` row `run_id` if the caller recorded one
/// beforehand (the worker does, in its own transaction, so a run that dies is seen).
pub fn execute_run(config_id: i64, started_by: &str, run_id: Option<i64>) -> Value {
    let caller = security::current_user();
    security::as_extension_owner(|| run_as_extension_owner(caller, config_id, started_by, run_id))
}

/// `execute_run` once running as the extension's owner: `caller` (who called) must
/// have the privileges of the config's owner. The run's writes into the two tables
/// each run as that table's owner (see `security::as_table_owner`).
fn run_as_extension_owner(
    caller: pg_sys::Oid,
    config_id: i64,
    started_by: &str,
    run_id: Option<i64>,
) -> Value {
    let iso = db::one::<String>("SELECT current_setting('transaction_isolation')", &[])
        .unwrap_or_default();
    if iso != "read committed" {
        fail(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            &format!("sync_execute must run at READ COMMITTED isolation, not {iso}"),
        );
    }
    let cfg = config::load(config_id);
    security::require_privileges_of(
        caller,
        cfg.owner,
        &format!("run sync config {config_id} (\"{}\")", cfg.name),
    );
    let locked = db::one::<bool>(
        "SELECT pg_try_advisory_xact_lock($1, $2::int)",
        &[LOCK_CLASS.into(), config_id.into()],
    )
    .unwrap_or(false);
    if !locked {
        fail(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            &format!(
                "sync config {config_id} (\"{}\") is already running in another session; runs of one config never overlap, try again when it finishes",
                cfg.name
            ),
        );
    }
    // re-read the position now that we hold the lock: a run that just finished moved it
    let cfg = config::load(config_id);
    let schema = ext_schema();
    let started = std::time::Instant::now();
    let cur = changes::current_position();
    // a position taken in another database (a restored dump) is not read from: the run
    // reconciles every row through the links, as an initial load does
    let start = changes::run_start(config_id, cfg.position.as_deref());
    let window = changes::window_from(&start, cur.clone());
    if start == Start::Reconcile {
        log!(
            "sync_engine: config {config_id} (\"{}\"): its position was taken in another database (restored from a dump?); this run compares every row through the existing links",
            cfg.name
        );
    }
    let run_id = match run_id {
        Some(id) => id,
        None => db::one::<i64>(
            &format!("INSERT INTO {schema}.sync_runs (config_id, started_by) VALUES ($1, $2) RETURNING id"),
            &[config_id.into(), started_by.into()],
        )
        .expect("run id"),
    };
    let tagged = crate::origin::tag_writes(cfg.origin());
    let mut run = Run {
        cfg: &cfg,
        schema: schema.clone(),
        run_id,
        fields: cfg.fields(),
        source_cols: cfg.mapping.source_columns(),
        stats: Stats::default(),
        linked_targets: HashSet::new(),
        window_pred: matches!(start, Start::After(_))
            .then(|| changes::window_predicate(&window, "c")),
        raced: Default::default(),
        links_growth: std::cell::Cell::new((0.0, links_rows(&schema).unwrap_or(0.0))),
        timing: [0; 3],
        copy: [true, false].map(|to_target| copy_sql(&cfg, &schema, to_target)),
    };
    let work_sql = match start {
        Start::After(_) => work_sql(&cfg, &schema, &window),
        Start::InitialLoad | Start::Reconcile => initial_work_sql(&cfg, &schema),
    };
    // the work list hashes and sorts one row per changed entity: give it at least
    // 16 MB (a few of its nodes may each use that much, and keep it while the cursor
    // is open, which is what bounds the run's memory)
    let prev_work_mem = db::one::<String>("SELECT current_setting('work_mem')", &[]);
    db::run(
        "SELECT set_config('work_mem', '16MB', true)
          WHERE pg_size_bytes(current_setting('work_mem')) < 16 * 1024 * 1024",
        &[],
    );
    Spi::connect(|client| {
        let mut cursor = client
            .try_open_cursor(&work_sql, &[cfg.id.into(), cfg.origin().into()])
            .unwrap_or_else(|e| spi_fail(e));
        // the work list is sorted by pair; rows of one pair are folded together, and
        // the last pair of a fetch waits for the next one, which may continue it
        let batch = i64::from(crate::guc::BATCH_SIZE.get());
        let mut carry: Option<Item> = None;
        let mut first = true;
        loop {
            // each batch (its fetch included) works in a memory context of its own,
            // deleted afterwards: memory stays bounded however long the backlog is
            let mut cx = PgMemoryContexts::new("sync_engine batch");
            let rows: Vec<Item> = unsafe {
                cx.switch_to(|_| {
                    let t = cursor.fetch(batch).unwrap_or_else(|e| spi_fail(e));
                    let rows = crate::db::scoped(|| {
                        t.map(|r| Item {
                            source_id: r.get::<String>(1).ok().flatten(),
                            target_id: r.get::<String>(2).ok().flatten(),
                            source_last: r.get::<i64>(3).ok().flatten(),
                            target_last: r.get::<i64>(4).ok().flatten(),
                            change_tids: r.get::<Vec<String>>(5).ok().flatten().unwrap_or_default(),
                            change_tids_complete: r
                                .get::<i64>(7)
                                .ok()
                                .flatten()
                                .is_none_or(|n| n <= CHANGE_TIDS),
                            link: r.get::<String>(6).ok().flatten(),
                            base: None,
                        })
                        .collect::<Vec<Item>>()
                    });
                    pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
                    rows
                })
            };
            if std::mem::take(&mut first) {
                // the first fetch ran the work list's sorts and hashes: the batches'
                // own statements get the session's work_mem again
                db::run(
                    "SELECT set_config('work_mem', $1, true)",
                    &[prev_work_mem.clone().unwrap_or_else(|| "4MB".into()).into()],
                );
            }
            let exhausted = rows.len() < batch as usize;
            let mut items: Vec<Item> = Vec::with_capacity(rows.len() + 1);
            items.extend(carry.take());
            for it in rows {
                match items.last_mut() {
                    Some(last) if last.same_pair(&it) => last.absorb(it),
                    _ => items.push(it),
                }
            }
            if !exhausted {
                carry = items.pop();
            }
            if !items.is_empty() {
                unsafe { cx.switch_to(|_| run.batch(items)) };
            }
            drop(cx);
            if exhausted {
                break;
            }
        }
    });

    debug1!(
        "sync_engine: config {config_id}: load {} ms, load+merge {} ms, apply {} ms",
        run.timing[0] / 1000,
        run.timing[1] / 1000,
        run.timing[2] / 1000
    );
    let s = &run.stats;
    let duration_ms = started.elapsed().as_millis() as i64;
    let result = json!({
        "run_id": run_id, "config_id": config_id, "synced": s.synced, "conflicts": s.conflicts,
        "errors": s.errors, "created": s.created, "updated": s.updated, "deleted": s.deleted,
        "copied": s.copied, "duration_ms": duration_ms, "reconciled": start == Start::Reconcile,
    });
    drop(tagged);
    db::run(
        &format!(
            "UPDATE {schema}.sync_configs SET position = $2, last_run_at = now(), next_run_at = now() + sync_interval,
                    consecutive_failures = 0, position_instance = (SELECT i.id FROM {schema}.sync_instance i)
              WHERE id = $1"
        ),
        &[config_id.into(), cur.to_string().into()],
    );
    db::run(
        &format!(
            "UPDATE {schema}.sync_runs SET completed_at = clock_timestamp(), status = $2, result = $3 WHERE id = $1"
        ),
        &[run_id.into(), (if s.errors > 0 { "partial" } else { "success" }).into(), JsonB(result.clone()).into()],
    );
    result
}

/// A key as text the way the capture trigger records it: through the type's output
/// function (`format('%s', ..)`), not a `::text` cast, which differs for char(n), inet...
fn key_text(e: &Endpoint, alias: &str) -> String {
    format!(
        "format('%s', {alias}.{})",
        crate::capture::quote_ident(&e.key_column)
    )
}

/// First run, or a reconcile (a position from another database): every row of both
/// tables takes part (plus links whose rows are gone), a linked pair with its link, so
/// the merge compares both sides with the base.
fn initial_work_sql(cfg: &Config, schema: &str) -> String {
    let (s, t) = (&cfg.source, &cfg.target);
    format!(
        "SELECT w.s_id, w.t_id, NULL::bigint, NULL::bigint, NULL::text[], b.ctid::text, NULL::bigint FROM (
            SELECT {sk} AS s_id, l.target_id AS t_id FROM {st} s
              LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.source_id = {sk}
            UNION
            SELECT l.source_id, {tk} FROM {tt} t
              LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.target_id = {tk}
            UNION
            SELECT source_id, target_id FROM {schema}.sync_links WHERE config_id = $1 AND $2::text IS NOT NULL
         ) w
         LEFT JOIN {schema}.sync_links b ON b.config_id = $1 AND b.source_id = w.s_id AND b.target_id = w.t_id
         ORDER BY w.s_id NULLS LAST, w.t_id",
        sk = key_text(s, "s"),
        tk = key_text(t, "t"),
        st = s.table,
        tt = t.table,
    )
}

/// Later runs: the entities with change records in the window (not written by this
/// config), plus entities whose last apply failed; one row per changed side of a pair
/// (folded together by the reader), with that side's latest change time and, when
/// the strategy compares times, the change records' ctids.
fn work_sql(cfg: &Config, schema: &str, w: &crate::cursor::Window) -> String {
    let lit = crate::quote_literal;
    let (s, t) = (&cfg.source, &cfg.target);
    let tids = if cfg.strategy == merge::Strategy::LatestWins {
        format!("(array_agg(c.ctid::text))[1:{CHANGE_TIDS}]")
    } else {
        "NULL::text[]".to_string()
    };
    format!(
        "WITH ch AS MATERIALIZED (
            SELECT (c.system = {ss} AND c.entity_type = {se}) AS is_src, c.entity_id,
                   (extract(epoch FROM max(c.changed_at)) * 1000000)::bigint AS last, {tids} AS tids,
                   count(*) AS n
              FROM {schema}.change_log c
             WHERE {pred}
               AND ((c.system = {ss} AND c.entity_type = {se}) OR (c.system = {ts} AND c.entity_type = {te}))
               AND c.origin IS DISTINCT FROM $2
             GROUP BY 1, 2
         ), ids AS (
            SELECT is_src, entity_id, last, tids, n FROM ch
            UNION ALL SELECT true, source_id, NULL, NULL, NULL FROM {schema}.sync_errors
                   WHERE config_id = $1 AND NOT resolved AND source_id IS NOT NULL
            UNION ALL SELECT false, target_id, NULL, NULL, NULL FROM {schema}.sync_errors
                   WHERE config_id = $1 AND NOT resolved AND target_id IS NOT NULL
         )
         SELECT i.entity_id, l.target_id, i.last, NULL::bigint, i.tids, l.ctid::text, i.n
           FROM ids i LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.source_id = i.entity_id
          WHERE i.is_src
         UNION ALL
         SELECT l.source_id, i.entity_id, NULL, i.last, i.tids, l.ctid::text, i.n
           FROM ids i LEFT JOIN {schema}.sync_links l ON l.config_id = $1 AND l.target_id = i.entity_id
          WHERE NOT i.is_src
         ORDER BY 1 NULLS LAST, 2",
        pred = changes::window_predicate(w, "c"),
        ss = lit(&s.system),
        se = lit(&s.entity_type),
        ts = lit(&t.system),
        te = lit(&t.entity_type),
    )
}

pub(crate) fn jsonb_arg(v: Value) -> JsonB {
    JsonB(v)
}

/// A row as read by a run: where it was (its ctid, which guards the write-back) and
/// the columns the mapping uses.
pub(crate) struct ReadRow {
    version: Version,
    row: Row,
}

/// Which version of a row a run read: its ctid (to find it fast) and xmin (to be sure
/// it is still that version: a TID scan does not re-check its ctid after waiting for a
/// concurrent writer, a filter on xmin is re-checked).
#[derive(Clone)]
pub(crate) struct Version {
    ctid: String,
    xmin: String,
    /// the partition (or inheritance child) holding the row: a ctid is only unique
    /// within one heap
    tableoid: String,
}

/// For a config whose mapping copies each column as it is to a column of the same type
/// (and whose direction lets changes flow this way), one statement that brings linked
/// pairs up to date where only the reading side changed: it writes the other side
/// (`to_target`: the target) with the reading side's current values, and the link's
/// base with them, but only where the written row still holds the base, i.e. nobody
/// changed it since the last sync (the guard a concurrent writer's new version is
/// re-checked against, too), and where a mapped value differs from the base. What the
/// three-way merge would do for such a pair, without reading rows into the engine.
/// `$1` config id, `$2`/`$3`/`$4` the pairs' source and target ids and their links'
/// ctids (a link that moved since is not found: that pair is not written); returns the
/// source ids of the pairs written. Pairs it leaves alone go through the merge.
fn copy_sql(cfg: &Config, schema: &str, to_target: bool) -> Option<String> {
    let flows = if to_target {
        cfg.direction.to_target()
    } else {
        cfg.direction.to_source()
    };
    let copies = cfg.mapping.column_copies(|s, t| {
        let (st, tt) = (cfg.source.column_type(s), cfg.target.column_type(t));
        st.is_some() && st == tt
    })?;
    // jsonb_build_object takes at most 100 arguments
    if !flows || copies.is_empty() || copies.len() > 50 {
        return None;
    }
    // the statement reads the other table and writes the links as well as the written
    // table, so it can only run as the written table's owner if that is the extension's
    // owner (the role the run's bookkeeping runs as); otherwise the merge path writes
    // that table, from values the run read, as its owner
    let written_owner = if to_target {
        cfg.target.owner
    } else {
        cfg.source.owner
    };
    if written_owner != security::current_user() {
        return None;
    }
    let q = crate::capture::quote_ident;
    let lit = crate::quote_literal;
    let (read, write) = if to_target {
        (&cfg.source, &cfg.target)
    } else {
        (&cfg.target, &cfg.source)
    };
    // (base field = target column, column read, column written)
    let cols: Vec<(&str, &str, &str)> = copies
        .iter()
        .map(|(s, t)| {
            if to_target {
                (t.as_str(), s.as_str(), t.as_str())
            } else {
                (t.as_str(), t.as_str(), s.as_str())
            }
        })
        .collect();
    // the new base: an object of the read row's columns
    let new_base = {
        let pairs: Vec<String> = cols
            .iter()
            .map(|c| format!("{}, r.{}", lit(c.0), q(c.1)))
            .collect();
        format!("jsonb_build_object({})", pairs.join(", "))
    };
    // the written row's columns, which must still hold the old base
    let written: Vec<(String, String)> = cols
        .iter()
        .map(|c| {
            (
                format!("w.{}", q(c.2)),
                write.column_type(c.2).unwrap_or("").to_string(),
            )
        })
        .collect();
    let guarded: Vec<(&str, &str, &str)> = cols
        .iter()
        .zip(&written)
        .map(|(c, (e, t))| (c.0, e.as_str(), t.as_str()))
        .collect();
    let (read_id, write_id) = if to_target {
        ("sid", "tid")
    } else {
        ("tid", "sid")
    };
    Some(format!(
        "WITH p AS (
            SELECT l.ctid AS lc, x.sid, x.tid, l.base
              FROM unnest($2::text[], $3::text[], $4::text[]::tid[]) AS x(sid, tid, lc),
                   LATERAL (SELECT l.ctid, l.config_id, l.source_id, l.target_id, l.base
                              FROM {schema}.sync_links l WHERE l.ctid = x.lc OFFSET 0) l
             WHERE l.config_id = $1 AND l.source_id = x.sid AND l.target_id = x.tid
         ), u AS (
            UPDATE {wt} w SET ({wcols}) = ROW({rcols})
              FROM p, {rt} r, LATERAL (SELECT {new_base} AS nb OFFSET 0) n
             WHERE r.{rk} = p.{read_id}::{rkt} AND w.{wk} = p.{write_id}::{wkt}
               AND {guard} AND n.nb <> p.base
            RETURNING p.lc, p.sid, n.nb
         ), v AS (
            UPDATE {schema}.sync_links l
               SET base = u.nb, base_checksum = {checksum}, updated_at = now()
              FROM u WHERE l.ctid = u.lc
            RETURNING u.sid
         )
         SELECT sid FROM v",
        wt = write.table,
        rt = read.table,
        wcols = cols.iter().map(|c| q(c.2)).collect::<Vec<_>>().join(", "),
        rcols = cols
            .iter()
            .map(|c| format!("r.{}", q(c.1)))
            .collect::<Vec<_>>()
            .join(", "),
        guard = crate::mapping::base_guard_sql(&guarded, "p.base"),
        checksum = base_checksum_sql("u.nb"),
        rk = q(&read.key_column),
        rkt = read.key_type,
        wk = q(&write.key_column),
        wkt = write.key_type,
    ))
}

/// Current rows by key, only the columns in `cols`, without locking them: each write
/// of the run is guarded by the row's ctid instead (see `update_guarded`).
fn read_rows(e: &Endpoint, ids: &[String], cols: &[String]) -> HashMap<String, ReadRow> {
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
                let q = crate::capture::quote_ident(c);
                format!("{}, t.{q}", crate::quote_literal(c))
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
        k = key_text(e, "t"),
        table = e.table,
        kc = crate::capture::quote_ident(&e.key_column),
        kt = e.key_type,
    );
    keyed_rows(&sql, ids)
}

/// Run `sql` (columns: key, ctid, xmin, tableoid as text, row json; `$1` = the keys)
/// and return its rows by key.
fn keyed_rows(sql: &str, ids: &[String]) -> HashMap<String, ReadRow> {
    Spi::connect(|c| {
        let t = c
            .select(sql, None, &[ids.to_vec().into()])
            .unwrap_or_else(|e| spi_fail(e));
        db::scoped(|| t.filter_map(|r| keyed_row(&r, 1)).collect())
    })
}

/// A keyed row from the columns at `at`..: key, ctid, xmin, tableoid (as text), row
/// (json). None when any is NULL or the row is not an object.
fn keyed_row(r: &pgrx::spi::SpiHeapTupleData, at: usize) -> Option<(String, ReadRow)> {
    let text = |i: usize| r.get::<String>(at + i).ok().flatten();
    let version = Version {
        ctid: text(1)?,
        xmin: text(2)?,
        tableoid: text(3)?,
    };
    match r.get::<pgrx::Json>(at + 4).ok().flatten() {
        Some(pgrx::Json(Value::Object(row))) => Some((text(0)?, ReadRow { version, row })),
        _ => None,
    }
}

/// Current rows by key (all columns), locked against concurrent writers until the
/// transaction commits.
pub(crate) fn load_rows(e: &Endpoint, ids: &[String]) -> HashMap<String, Row> {
    if ids.is_empty() {
        return HashMap::new();
    }
    let sql = format!(
        "SELECT {k}, t.ctid::text, t.xmin::text, t.tableoid::oid::text, to_jsonb(t)::json FROM {table} t
          WHERE t.{kc} = ANY($1::text[]::{kt}[]) FOR NO KEY UPDATE OF t",
        k = key_text(e, "t"),
        table = e.table,
        kc = crate::capture::quote_ident(&e.key_column),
        kt = e.key_type,
    );
    keyed_rows(&sql, ids)
        .into_iter()
        .map(|(k, r)| (k, r.row))
        .collect()
}

impl<'a> Run<'a> {
    /// Pending manual conflicts of these entities: link source id -> fields ("*" = whole entity).
    fn load_pending(
        &self,
        sids: &[String],
        tids: &[String],
    ) -> Vec<(Option<String>, Option<String>, Vec<String>)> {
        let sql = format!(
            "SELECT source_id, target_id, CASE WHEN kind = 'update_update' THEN fields ELSE ARRAY['*'] END
               FROM {}.sync_conflicts
              WHERE config_id = $1 AND resolution = 'pending' AND (source_id = ANY($2) OR target_id = ANY($3))",
            self.schema
        );
        Spi::connect(|c| {
            let t = c
                .select(
                    &sql,
                    None,
                    &[
                        self.cfg.id.into(),
                        sids.to_vec().into(),
                        tids.to_vec().into(),
                    ],
                )
                .unwrap_or_else(|e| spi_fail(e));
            db::scoped(|| {
                t.map(|r| {
                    (
                        r.get::<String>(1).ok().flatten(),
                        r.get::<String>(2).ok().flatten(),
                        r.get::<Vec<String>>(3).ok().flatten().unwrap_or_default(),
                    )
                })
                .collect()
            })
        })
    }

    /// Per-field change times of the pairs that changed on both sides (only those can
    /// conflict, and only latest_wins compares times): (is source, id) -> column -> time.
    #[allow(clippy::type_complexity)]
    fn field_times(&self, pairs: &[Item]) -> HashMap<(bool, String), HashMap<String, i64>> {
        let both = pairs
            .iter()
            .filter(|p| p.source_last.is_some() && p.target_last.is_some());
        // the change records by ctid when the work list had them all, else the
        // entity's records found by scanning the window
        let mut tids: Vec<String> = Vec::new();
        let (mut scan_s, mut scan_t): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for p in both {
            match (&self.window_pred, p.change_tids_complete) {
                (Some(_), false) => {
                    scan_s.extend(p.source_id.clone());
                    scan_t.extend(p.target_id.clone());
                }
                _ => tids.extend(p.change_tids.iter().cloned()),
            }
        }
        let (s, t) = (&self.cfg.source, &self.cfg.target);
        let lit = crate::quote_literal;
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
        let mut out: HashMap<(bool, String), HashMap<String, i64>> = HashMap::new();
        for (sql, args) in queries {
            let rows: Vec<(bool, String, String, i64)> = Spi::connect(|c| {
                let t = c.select(&sql, None, &args).unwrap_or_else(|e| spi_fail(e));
                db::scoped(|| {
                    t.filter_map(|r| {
                        Some((
                            r.get::<bool>(1).ok().flatten()?,
                            r.get::<String>(2).ok().flatten()?,
                            r.get::<String>(3).ok().flatten()?,
                            r.get::<i64>(4).ok().flatten()?,
                        ))
                    })
                    .collect()
                })
            });
            for (is_src, id, field, at) in rows {
                out.entry((is_src, id)).or_default().insert(field, at);
            }
        }
        out
    }

    /// Per-field source change times keyed by target field (a unit's fields share the
    /// latest time of its source columns).
    fn source_times_by_field(&self, t: &Times) -> Times {
        let mut out = Times {
            fields: HashMap::new(),
            last: t.last,
        };
        if t.fields.is_empty() {
            return out;
        }
        for unit in &self.cfg.mapping.fields {
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

    /// Find unlinked target rows matching the projected match_on values.
    fn find_matches(
        &self,
        wanted: &[(usize, Row)],
        taken: &HashSet<String>,
    ) -> HashMap<usize, (String, ReadRow)> {
        if wanted.is_empty() || self.cfg.match_on.is_empty() {
            return HashMap::new();
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
                let q = crate::capture::quote_ident(f);
                format!("t.{q} = m.{q}")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let sql = format!(
            "SELECT (x.v->>'__n')::int, {tk}, t.ctid::text, t.xmin::text, t.tableoid::oid::text,
                    to_jsonb(t)::json
               FROM jsonb_array_elements($1) x(v)
               CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, x.v) m
               JOIN {table} t ON {cond}
              WHERE NOT EXISTS (SELECT 1 FROM {schema}.sync_links l WHERE l.config_id = $2 AND l.target_id = {tk})
              ORDER BY 1, 2
              FOR NO KEY UPDATE OF t",
            tk = key_text(t, "t"),
            table = t.table,
            schema = self.schema,
        );
        let rows: Vec<(i32, String, ReadRow)> = Spi::connect(|c| {
            let r = c
                .select(
                    &sql,
                    None,
                    &[jsonb_arg(Value::Array(arr)).into(), self.cfg.id.into()],
                )
                .unwrap_or_else(|e| spi_fail(e));
            db::scoped(|| {
                r.filter_map(|r| {
                    let n = r.get::<i32>(1).ok().flatten()?;
                    let (k, row) = keyed_row(&r, 2)?;
                    Some((n, k, row))
                })
                .collect()
            })
        });
        let mut used = taken.clone();
        let mut out = HashMap::new();
        for (n, k, row) in rows {
            let n = n as usize;
            if out.contains_key(&n) || used.contains(&k) {
                continue;
            }
            used.insert(k.clone());
            out.insert(n, (k, row));
        }
        out
    }

    fn batch(&mut self, items: Vec<Item>) {
        let t0 = std::time::Instant::now();
        let ids = |items: &[Item]| -> (Vec<String>, Vec<String>) {
            (
                items.iter().filter_map(|i| i.source_id.clone()).collect(),
                items.iter().filter_map(|i| i.target_id.clone()).collect(),
            )
        };
        let (sids, tids) = ids(&items);
        let pending = self.load_pending(&sids, &tids);
        // pending manual conflicts by either key (an entry found by both counts once)
        let mut pending_by: HashMap<(bool, &str), Vec<usize>> = HashMap::new();
        for (i, (ps, pt, _)) in pending.iter().enumerate() {
            if let Some(s) = ps {
                pending_by.entry((true, s.as_str())).or_default().push(i);
            }
            if let Some(t) = pt {
                pending_by.entry((false, t.as_str())).or_default().push(i);
            }
        }
        self.timing[0] += t0.elapsed().as_micros();
        let items = self.copy_across(items, &pending_by);
        if items.is_empty() {
            return;
        }
        let t0 = std::time::Instant::now();
        let mut items = items;
        for (s, t) in self.load_bases(&mut items) {
            self.record_error(
                s.as_deref(),
                t.as_deref(),
                "40001",
                "the link of this pair was replaced earlier in the same run (a key handed out again); retried on the next run",
            );
        }
        if items.is_empty() {
            return;
        }
        let (sids, tids) = ids(&items);
        let src_rows = read_rows(&self.cfg.source, &sids, &self.source_cols);
        let mut tgt_rows = read_rows(&self.cfg.target, &tids, &self.fields);
        self.timing[0] += t0.elapsed().as_micros();

        // (the work list has one item per pair: the reader folded them)
        let mut pairs: Vec<Item> = Vec::with_capacity(items.len());
        for item in items {
            if item.base.is_none() && item.source_id.is_none() {
                if let Some(t) = &item.target_id {
                    if self.linked_targets.contains(t) {
                        // linked by an earlier batch of this run (a match or a create)
                        continue;
                    }
                }
            }
            pairs.push(item);
        }

        // project sources; match unlinked sources to existing unlinked targets
        let mut projected: Vec<Option<Result<Row, String>>> = Vec::with_capacity(pairs.len());
        let mut wanted = Vec::new();
        for (i, p) in pairs.iter().enumerate() {
            let proj = p
                .source_id
                .as_ref()
                .and_then(|s| src_rows.get(s))
                .map(|r| self.cfg.project(&r.row));
            if p.base.is_none() && p.target_id.is_none() {
                if let Some(Ok(row)) = &proj {
                    wanted.push((i, row.clone()));
                }
            }
            projected.push(proj);
        }
        // targets already paired with a linked source are not free to match
        let taken: HashSet<String> = pairs
            .iter()
            .filter(|p| p.base.is_some())
            .filter_map(|p| p.target_id.clone())
            .collect();
        let mut matched_targets = HashSet::new();
        for (i, (tid, row)) in self.find_matches(&wanted, &taken) {
            pairs[i].target_id = Some(tid.clone());
            matched_targets.insert(tid.clone());
            tgt_rows.insert(tid, row);
        }
        // a target-only item of this batch that a source just matched is handled by that pair
        let mut keep = Vec::with_capacity(pairs.len());
        let mut keep_proj = Vec::with_capacity(pairs.len());
        for (p, proj) in pairs.into_iter().zip(projected) {
            let absorbed = p.source_id.is_none()
                && p.target_id
                    .as_ref()
                    .is_some_and(|t| matched_targets.contains(t));
            if !absorbed {
                keep.push(p);
                keep_proj.push(proj);
            }
        }
        let (pairs, projected) = (keep, keep_proj);
        let field_times = self.field_times(&pairs);

        let mut ops = Vec::with_capacity(pairs.len());
        let mut failed: Vec<(Option<String>, Option<String>, String)> = Vec::new();
        for (p, proj) in pairs.iter().zip(projected) {
            let (sid, tid) = (p.source_id.clone(), p.target_id.clone());
            let source = match proj {
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    failed.push((sid, tid, e));
                    continue;
                }
                None => None,
            };
            // each target row belongs to one pair: take it, keeping the mapped fields
            let (target, target_version) = match tid.as_ref().and_then(|t| tgt_rows.remove(t)) {
                Some(ReadRow { version, mut row }) => {
                    if row.len() != self.fields.len() {
                        row.retain(|k, _| self.fields.contains(k));
                    }
                    for f in &self.fields {
                        if !row.contains_key(f) {
                            row.insert(f.clone(), Value::Null);
                        }
                    }
                    (Some(row), Some(version))
                }
                None => (None, None),
            };
            let mut hits: Vec<usize> = [(true, &sid), (false, &tid)]
                .into_iter()
                .filter_map(|(side, id)| pending_by.get(&(side, id.as_deref()?)))
                .flatten()
                .copied()
                .collect();
            hits.sort_unstable();
            hits.dedup();
            let pend: Vec<String> = hits.iter().flat_map(|&i| pending[i].2.clone()).collect();
            let times = |is_src: bool, id: &Option<String>, last: Option<i64>| Times {
                fields: match id {
                    Some(id) if !field_times.is_empty() => field_times
                        .get(&(is_src, id.clone()))
                        .cloned()
                        .unwrap_or_default(),
                    _ => HashMap::new(),
                },
                last,
            };
            let st = self.source_times_by_field(&times(true, &sid, p.source_last));
            let tt = times(false, &tid, p.target_last);
            let plan = merge::merge(&Input {
                fields: &self.fields,
                source: source.as_ref(),
                target: target.as_ref(),
                base: p.base.as_ref(),
                source_times: &st,
                target_times: &tt,
                pending: &pend,
                strategy: self.cfg.strategy,
                direction: self.cfg.direction,
            });
            if plan.is_noop() {
                continue;
            }
            match self.to_op(
                plan,
                sid.clone(),
                tid.clone(),
                p.base
                    .as_ref()
                    .and_then(|_| Some((p.source_id.clone()?, p.target_id.clone()?))),
                sid.as_ref().and_then(|s| src_rows.get(s)),
                target_version,
            ) {
                Ok(op) => ops.push(op),
                Err(e) => failed.push((sid, tid, e)),
            }
        }
        for (s, t, msg) in failed {
            self.record_error(s.as_deref(), t.as_deref(), "22000", &msg);
        }
        if ops.is_empty() {
            return;
        }
        // apply the batch at once; on failure isolate the failing entities
        self.timing[1] += t0.elapsed().as_micros();
        let t1 = std::time::Instant::now();
        self.raced.borrow_mut().clear();
        let whole = subxact::run_for_rows(|| self.apply(&ops));
        self.timing[2] += t1.elapsed().as_micros();
        if let Err(e) = &whole {
            // rows changed by someone else meanwhile: record those entities (retried
            // next run) and apply the rest of the batch together once more
            let raced = std::mem::take(&mut *self.raced.borrow_mut());
            if !raced.is_empty() {
                let (hit, rest): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| {
                    raced.iter().any(|(target_side, key)| {
                        let id = if *target_side {
                            &o.target_id
                        } else {
                            &o.source_id
                        };
                        id.as_deref() == Some(key.as_str())
                    })
                });
                for o in &hit {
                    let (s, t) = (o.source_id.as_deref(), o.target_id.as_deref());
                    self.record_error(s, t, &e.sqlstate, &e.message);
                }
                ops = rest;
                match subxact::run_for_rows(|| self.apply(&ops)) {
                    Ok(st) => return self.add(st),
                    Err(_) => self.raced.borrow_mut().clear(),
                }
            }
        }
        match whole {
            Ok(st) => self.add(st),
            Err(_) => {
                for op in &ops {
                    let (s, t) = (op.source_id.clone(), op.target_id.clone());
                    match subxact::run_for_rows(|| self.apply(std::slice::from_ref(op))) {
                        Ok(st) => self.add(st),
                        Err(e) => {
                            self.raced.borrow_mut().clear();
                            self.record_error(s.as_deref(), t.as_deref(), &e.sqlstate, &e.message)
                        }
                    }
                }
            }
        }
    }

    /// Linked pairs that changed on one side only (and wait for no person), when the
    /// config has a `copy_sql` statement for that direction: brought up to date by it,
    /// one statement per direction and batch. Returns the items still to merge: the
    /// rest, and the pairs the statement left alone (the other side changed meanwhile,
    /// the source row is gone, nothing mapped changed) or could not write at all (an
    /// error: the merge then isolates the entity it belongs to).
    fn copy_across(
        &mut self,
        items: Vec<Item>,
        pending: &HashMap<(bool, &str), Vec<usize>>,
    ) -> Vec<Item> {
        if self.copy.iter().all(Option::is_none) {
            return items;
        }
        let t0 = std::time::Instant::now();
        let mut rest = Vec::with_capacity(items.len());
        let mut held: [Vec<Item>; 2] = Default::default();
        for it in items {
            let way = match (&it.source_id, &it.target_id, &it.link) {
                (Some(s), Some(t), Some(_))
                    if !pending.contains_key(&(true, s.as_str()))
                        && !pending.contains_key(&(false, t.as_str())) =>
                {
                    match (it.source_last, it.target_last) {
                        (Some(_), None) => Some(0),
                        (None, Some(_)) => Some(1),
                        _ => None,
                    }
                }
                _ => None,
            };
            match way.filter(|&w| self.copy[w].is_some()) {
                Some(w) => held[w].push(it),
                None => rest.push(it),
            }
        }
        let mut done_s: Vec<String> = Vec::new();
        let mut done_t: Vec<String> = Vec::new();
        for (way, pairs) in held.into_iter().enumerate() {
            let Some(sql) = self.copy[way].as_deref().filter(|_| !pairs.is_empty()) else {
                continue;
            };
            let sids: Vec<&str> = pairs
                .iter()
                .filter_map(|p| p.source_id.as_deref())
                .collect();
            let tids: Vec<&str> = pairs
                .iter()
                .filter_map(|p| p.target_id.as_deref())
                .collect();
            let links: Vec<&str> = pairs.iter().filter_map(|p| p.link.as_deref()).collect();
            let owner = if way == 0 {
                self.cfg.target.owner
            } else {
                self.cfg.source.owner
            };
            let written = subxact::run_for_rows(|| {
                db::lookups_only(|| {
                    security::as_table_owner(owner, || {
                        written_keys(
                            sql,
                            &[self.cfg.id.into(), sids.into(), tids.into(), links.into()],
                        )
                    })
                })
            })
            .unwrap_or_else(|e| {
                debug1!(
                    "sync_engine: config {}: copying {} pair(s) failed ({}); they go through the merge",
                    self.cfg.id,
                    pairs.len(),
                    e.message
                );
                HashSet::new()
            });
            for p in pairs {
                match (&p.source_id, &p.target_id) {
                    (Some(s), Some(t)) if written.contains(s) => {
                        done_s.push(s.clone());
                        done_t.push(t.clone());
                    }
                    _ => rest.push(p),
                }
            }
        }
        let n = done_s.len() as i64;
        self.stats.synced += n;
        self.stats.updated += n;
        self.stats.copied += n;
        if n > 0 {
            self.resolve_errors(done_s, done_t);
        }
        self.timing[2] += t0.elapsed().as_micros();
        rest
    }

    /// The bases of the linked pairs. A pair whose link an earlier batch of this run
    /// dropped or replaced (a key handed out again) is taken out and returned: both of
    /// its entities are looked at again by the next run, with the links as they are.
    #[allow(clippy::type_complexity)]
    fn load_bases(&self, items: &mut Vec<Item>) -> Vec<(Option<String>, Option<String>)> {
        let linked: Vec<&str> = items
            .iter()
            .filter(|i| i.link.is_some())
            .filter_map(|i| i.source_id.as_deref())
            .collect();
        if linked.is_empty() {
            return Vec::new();
        }
        let mut bases: HashMap<String, (String, Row)> = db::lookups_only(|| {
            Spi::connect(|c| {
                let t = c
                    .select(
                        &format!(
                            "SELECT l.source_id, l.target_id, l.base::json
                           FROM unnest($2::text[]) AS x(id)
                           JOIN {}.sync_links l ON l.config_id = $1 AND l.source_id = x.id",
                            self.schema
                        ),
                        None,
                        &[self.cfg.id.into(), linked.into()],
                    )
                    .unwrap_or_else(|e| spi_fail(e));
                db::scoped(|| {
                    t.filter_map(|r| {
                        let s = r.get::<String>(1).ok().flatten()?;
                        let t = r.get::<String>(2).ok().flatten()?;
                        match r.get::<pgrx::Json>(3).ok().flatten()? {
                            pgrx::Json(Value::Object(b)) => Some((s, (t, b))),
                            _ => None,
                        }
                    })
                    .collect()
                })
            })
        });
        let mut relinked = Vec::new();
        items.retain_mut(|it| {
            if it.link.is_none() {
                return true;
            }
            match it.source_id.as_ref().and_then(|s| bases.remove(s)) {
                Some((t, b)) if it.target_id.as_ref() == Some(&t) => {
                    it.base = Some(b);
                    true
                }
                _ => {
                    relinked.push((it.source_id.take(), it.target_id.take()));
                    false
                }
            }
        });
        relinked
    }

    /// Open errors of these entities are resolved: they went through.
    fn resolve_errors(&self, source_ids: Vec<String>, target_ids: Vec<String>) {
        db::run(
            &format!(
                "UPDATE {}.sync_errors SET resolved = true, retried_at = now()
                  WHERE config_id = $1 AND NOT resolved AND (source_id = ANY($2) OR target_id = ANY($3))",
                self.schema
            ),
            &[self.cfg.id.into(), source_ids.into(), target_ids.into()],
        );
    }

    fn add(&mut self, s: Stats) {
        let t = &mut self.stats;
        t.synced += s.synced;
        t.conflicts += s.conflicts;
        t.created += s.created;
        t.updated += s.updated;
        t.deleted += s.deleted;
        self.linked_targets.extend(s.new_targets);
    }

    fn record_error(
        &mut self,
        source_id: Option<&str>,
        target_id: Option<&str>,
        sqlstate: &str,
        message: &str,
    ) {
        self.stats.errors += 1;
        // the pair's target (maybe just matched) waits for the retry of this pair: a
        // later batch of this run must not treat it as an unlinked row
        self.linked_targets.extend(target_id.map(String::from));
        db::run(
            &format!(
                "WITH old AS (UPDATE {s}.sync_errors SET resolved = true
                               WHERE config_id = $1 AND NOT resolved
                                 AND (source_id = $3 OR target_id = $4))
                 INSERT INTO {s}.sync_errors (config_id, run_id, source_id, target_id, message, sqlstate)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                s = self.schema
            ),
            &[
                self.cfg.id.into(),
                self.run_id.into(),
                source_id.into(),
                target_id.into(),
                message.into(),
                sqlstate.into(),
            ],
        );
    }

    /// Turn a target-space plan into writes in each table's own columns.
    fn to_op(
        &self,
        plan: Plan,
        source_id: Option<String>,
        target_id: Option<String>,
        old_link: Option<(String, String)>,
        source_read: Option<&ReadRow>,
        target_version: Option<Version>,
    ) -> Result<Op, String> {
        let source_write = match plan.source {
            Some(Write::Insert(v)) => Some(Write::Insert(self.cfg.unproject(&v)?)),
            Some(Write::Update(v)) => {
                let diff = match source_read {
                    Some(cur) => self.cfg.source_changes(&v, &cur.row)?,
                    None => self.cfg.unproject(&v)?,
                };
                (!diff.is_empty()).then_some(Write::Update(diff))
            }
            other => other,
        };
        Ok(Op {
            source_id,
            target_id,
            old_link,
            source_version: source_read.map(|r| r.version.clone()),
            target_version,
            target_write: plan.target,
            source_write,
            link: plan.link,
            conflicts: plan.conflicts,
        })
    }

    /// Delete this config's links of these source keys and of these target keys: one
    /// index lookup per key.
    fn drop_links(&self, sources: Vec<String>, targets: Vec<String>) {
        for (col, ids) in [("source_id", sources), ("target_id", targets)] {
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

    /// Count links inserted by this run; once they are as many again as the links table
    /// had when last analyzed, analyze it. An initial load grows it from nothing within
    /// one transaction, and with statistics of an empty table the planner looks keys up
    /// through the wrong index and reads every link of the config per batch.
    fn links_added(&self, n: usize) {
        let (since, known) = self.links_growth.get();
        let since = since + n as f64;
        if since < known.max(1000.0) {
            self.links_growth.set((since, known));
            return;
        }
        // SKIP_LOCKED: never wait for (or deadlock with) another run holding the
        // lock its own ANALYZE took, which lasts until that run commits
        db::run(
            &format!("ANALYZE (SKIP_LOCKED) {}.sync_links", self.schema),
            &[],
        );
        let now = links_rows(&self.schema).unwrap_or(0.0);
        self.links_growth.set((0.0, now.max(known + since)));
    }

    /// Apply a set of ops with set-based statements. Runs inside a subtransaction.
    fn apply(&self, ops: &[Op]) -> Stats {
        let mut st = Stats {
            synced: ops.len() as i64,
            ..Stats::default()
        };
        let cfg = self.cfg;
        // each op's (source id, target id); creates fill in the new keys
        let mut ids: Vec<(Option<String>, Option<String>)> = ops
            .iter()
            .map(|o| (o.source_id.clone(), o.target_id.clone()))
            .collect();
        // creates first: they produce the keys the links need
        for side_is_target in [true, false] {
            let e = if side_is_target {
                &cfg.target
            } else {
                &cfg.source
            };
            let write = |i: usize| -> Option<&Row> {
                let o = &ops[i];
                match if side_is_target {
                    &o.target_write
                } else {
                    &o.source_write
                } {
                    Some(Write::Insert(v)) => Some(v),
                    _ => None,
                }
            };
            let idx: Vec<usize> = (0..ops.len()).filter(|&i| write(i).is_some()).collect();
            if idx.is_empty() {
                continue;
            }
            let partner_ids: Vec<Option<String>> = idx
                .iter()
                .map(|&i| {
                    if side_is_target {
                        ids[i].0.clone()
                    } else {
                        ids[i].1.clone()
                    }
                })
                .collect();
            let keys = new_keys(e, &partner_ids);
            let mut rows = serde_json::Map::new();
            for (&i, k) in idx.iter().zip(&keys) {
                if let Some(v) = write(i) {
                    rows.insert(k.clone(), Value::Object(v.clone()));
                }
                if side_is_target {
                    ids[i].1 = Some(k.clone());
                } else {
                    ids[i].0 = Some(k.clone());
                }
            }
            let cols = if side_is_target {
                cfg.mapping.target_columns()
            } else {
                cfg.mapping.source_columns()
            };
            insert_rows(e, &cols, rows);
            st.created += idx.len() as i64;
        }
        for side_is_target in [true, false] {
            let e = if side_is_target {
                &cfg.target
            } else {
                &cfg.source
            };
            let mut updates: Vec<(&str, Option<&Version>, &Row)> = Vec::new();
            let mut deletes: Vec<(&str, Option<&Version>)> = Vec::new();
            for (o, (sid, tid)) in ops.iter().zip(&ids) {
                let (w, id, ver) = if side_is_target {
                    (&o.target_write, tid, &o.target_version)
                } else {
                    (&o.source_write, sid, &o.source_version)
                };
                match (w, id) {
                    (Some(Write::Update(v)), Some(id)) => updates.push((id, ver.as_ref(), v)),
                    (Some(Write::Delete), Some(id)) => deletes.push((id, ver.as_ref())),
                    _ => {}
                }
            }
            st.updated += updates.len() as i64;
            st.deleted += deletes.len() as i64;
            let mut missed = update_guarded(e, &updates);
            missed.extend(delete_guarded(e, &deletes));
            if !missed.is_empty() {
                missed.sort();
                self.raced
                    .borrow_mut()
                    .extend(missed.iter().map(|k| (side_is_target, k.clone())));
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
        // links: a changed base is updated in place; removed and new links are
        // deleted and inserted
        let mut drop_s = Vec::new();
        let mut drop_t = Vec::new();
        let mut new_links: Vec<LinkRow> = Vec::new();
        let mut bases: Vec<LinkRow> = Vec::new();
        for (o, (sid, tid)) in ops.iter().zip(&ids) {
            let same = match (&o.old_link, sid, tid) {
                (Some((os, ot)), Some(s), Some(t)) => os == s && ot == t,
                _ => false,
            };
            match (&o.link, sid) {
                (LinkAction::Keep, _) => {}
                (LinkAction::Upsert(base), Some(s)) if same => {
                    bases.push(LinkRow::new(s, None, base));
                }
                (link, _) => {
                    if let Some((os, ot)) = &o.old_link {
                        drop_s.push(os.clone());
                        drop_t.push(ot.clone());
                    }
                    if let (LinkAction::Upsert(base), Some(s), Some(t)) = (link, sid, tid) {
                        st.new_targets.push(t.clone());
                        new_links.push(LinkRow::new(s, Some(t), base));
                    }
                }
            }
        }
        if !bases.is_empty() {
            let (s, _, b) = LinkRow::columns(&bases);
            db::lookups_only(|| {
                db::run(
                    &format!(
                    "UPDATE {}.sync_links l SET base = x.b, base_checksum = {}, updated_at = now()
                       FROM unnest($2::text[], $3::jsonb[]) x(s, b)
                      WHERE l.config_id = $1 AND l.source_id = x.s",
                    self.schema,
                    base_checksum_sql("x.b")
                ),
                    &[cfg.id.into(), s.into(), b.into()],
                )
            });
        }
        self.drop_links(drop_s, drop_t);
        if !new_links.is_empty() {
            // a stale link of either key (a relinked pair, a reused key) is replaced:
            // found by the insert itself, so the common case costs no extra lookups
            let insert = |rows: &[LinkRow], on_conflict: &str| -> HashSet<String> {
                let (s, t, b) = LinkRow::columns(rows);
                written_keys(
                    &format!(
                        "INSERT INTO {}.sync_links (config_id, source_id, target_id, base, base_checksum)
                         SELECT $1, x.s, x.t, x.b, {} FROM unnest($2::text[], $3::text[], $4::jsonb[]) x(s, t, b)
                         {on_conflict} RETURNING source_id",
                        self.schema,
                        base_checksum_sql("x.b")
                    ),
                    &[cfg.id.into(), s.into(), t.into(), b.into()],
                )
            };
            let done = insert(&new_links, "ON CONFLICT DO NOTHING");
            let stale: Vec<LinkRow> = new_links
                .into_iter()
                .filter(|l| !done.contains(l.s))
                .collect();
            if !stale.is_empty() {
                self.drop_links(
                    stale.iter().map(|l| l.s.to_string()).collect(),
                    stale.iter().filter_map(|l| l.t.map(String::from)).collect(),
                );
                insert(&stale, "");
            }
            self.links_added(done.len() + stale.len());
        }
        // conflicts, with both sides' values: a losing value is never lost
        let conflicts: Vec<Value> = ops
            .iter()
            .zip(&ids)
            .flat_map(|(o, (sid, tid))| {
                o.conflicts.iter().map(move |c| {
                    json!({
                        "s": sid, "t": tid, "kind": c.kind.name(), "fields": c.fields,
                        "sv": c.source_value, "tv": c.target_value, "bv": c.base_value,
                        "res": c.resolution.name(), "rv": c.resolved_value,
                    })
                })
            })
            .collect();
        st.conflicts = conflicts.len() as i64;
        if !conflicts.is_empty() {
            db::run(
                &format!(
                    "INSERT INTO {}.sync_conflicts (config_id, run_id, source_id, target_id, kind, fields,
                         source_value, target_value, base_value, strategy, resolution, resolved_value, resolved_by,
                         resolved_at)
                     SELECT $1, $2, x->>'s', x->>'t', x->>'kind',
                            ARRAY(SELECT jsonb_array_elements_text(x->'fields')),
                            x->'sv', x->'tv', x->'bv', $3, x->>'res',
                            CASE WHEN x->>'res' = 'pending' THEN NULL ELSE x->'rv' END,
                            CASE WHEN x->>'res' = 'pending' THEN NULL ELSE 'strategy:' || $3 END,
                            CASE WHEN x->>'res' = 'pending' THEN NULL ELSE now() END
                       FROM jsonb_array_elements($4) x",
                    self.schema
                ),
                &[
                    cfg.id.into(),
                    self.run_id.into(),
                    strategy_name(cfg).into(),
                    jsonb_arg(Value::Array(conflicts)).into(),
                ],
            );
        }
        // entities that failed before and went through now
        let (ids_s, ids_t): (Vec<_>, Vec<_>) = ids.into_iter().unzip();
        self.resolve_errors(
            ids_s.into_iter().flatten().collect(),
            ids_t.into_iter().flatten().collect(),
        );
        st
    }
}

fn strategy_name(cfg: &Config) -> &'static str {
    match cfg.strategy {
        merge::Strategy::SourceWins => "source_wins",
        merge::Strategy::TargetWins => "target_wins",
        merge::Strategy::LatestWins => "latest_wins",
        merge::Strategy::Manual => "manual",
    }
}

/// Keys for new rows: from the key column's default (sequence, uuid, ...) evaluated
/// before the insert, so each created row is known to belong to its partner. A key
/// without a default takes the partner's key.
pub(crate) fn new_keys(e: &Endpoint, partner_ids: &[Option<String>]) -> Vec<String> {
    match &e.key_default {
        Some(expr) => {
            let sql = format!("SELECT format('%s', {expr}) FROM generate_series(1, $1)");
            // the default is the table owner's expression: evaluate it with its rights
            security::as_table_owner(e.owner, || {
                Spi::connect(|c| {
                    let t = c
                        .select(&sql, None, &[(partner_ids.len() as i64).into()])
                        .unwrap_or_else(|e| spi_fail(e));
                    db::scoped(|| {
                        t.filter_map(|r| r.get::<String>(1).ok().flatten())
                            .collect()
                    })
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

fn col_list(cols: &[String], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}{}", crate::capture::quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn insert_rows(e: &Endpoint, cols: &[String], rows: serde_json::Map<String, Value>) {
    let kc = crate::capture::quote_ident(&e.key_column);
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

pub(crate) fn update_rows(e: &Endpoint, rows: serde_json::Map<String, Value>) {
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
    let kc = crate::capture::quote_ident(&e.key_column);
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
fn written_keys(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> HashSet<String> {
    Spi::connect_mut(|c| {
        let t = c.update(sql, None, args).unwrap_or_else(|e| spi_fail(e));
        db::scoped(|| {
            t.filter_map(|r| r.get::<String>(1).ok().flatten())
                .collect()
        })
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

/// Rows of `sync_links` as of its last ANALYZE (None: never analyzed).
fn links_rows(schema: &str) -> Option<f64> {
    db::one::<f32>(
        "SELECT reltuples FROM pg_class WHERE oid = $1::regclass",
        &[format!("{schema}.sync_links").into()],
    )
    .filter(|&n| n >= 0.0)
    .map(f64::from)
}

/// A link row to insert or whose base to update.
struct LinkRow<'a> {
    s: &'a str,
    t: Option<&'a str>,
    b: &'a Row,
}

impl<'a> LinkRow<'a> {
    fn new(s: &'a str, t: Option<&'a str>, b: &'a Row) -> Self {
        LinkRow { s, t, b }
    }

    /// The rows as column arrays (source ids, target ids, bases): array parameters,
    /// the bases as jsonb built in Rust, so nothing is parsed on the way in.
    #[allow(clippy::type_complexity)]
    fn columns(
        rows: &[LinkRow<'a>],
    ) -> (
        Vec<&'a str>,
        Vec<Option<&'a str>>,
        Vec<crate::capture::JsonbObject<'a>>,
    ) {
        (
            rows.iter().map(|r| r.s).collect(),
            rows.iter().map(|r| r.t).collect(),
            rows.iter()
                .map(|r| crate::capture::JsonbObject(r.b))
                .collect(),
        )
    }
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
        .map(|c| {
            format!(
                "{} {}",
                crate::capture::quote_ident(c),
                e.column_type(c).unwrap_or("text")
            )
        })
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
        ck = crate::capture::quote_ident(CTID_KEY),
        xk = crate::capture::quote_ident(XMIN_KEY),
        ok = crate::capture::quote_ident(TABLEOID_KEY),
        k = key_text(e, "t"),
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
        if input == crate::mapping::ColumnInput::Structured {
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
        k = key_text(e, "t"),
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
                    .and_then(|v| crate::mapping::input_text(v, input))
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
            k = key_text(e, "t"),
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

pub(crate) fn delete_rows(e: &Endpoint, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let sql = format!(
        "DELETE FROM {table} WHERE {kc} = ANY($1::text[]::{kt}[])",
        table = e.table,
        kc = crate::capture::quote_ident(&e.key_column),
        kt = e.key_type,
    );
    security::as_table_owner(e.owner, || db::run(&sql, &[ids.to_vec().into()]));
}
