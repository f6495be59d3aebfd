//! The column-copy fast path: for a config whose mapping copies columns as they are,
//! linked pairs changed on one side only are brought up to date by one statement per
//! direction and batch, without reading rows into the engine.

use super::apply::written_keys;
use super::config::Config;
use super::run::Run;
use super::sql::base_checksum_sql;
use crate::core::plan::{self, Pending, WorkItem};
use crate::core::types::{Side, Sides};
use crate::pg::db;
use crate::pg::quote::{quote_ident, quote_literal};
use crate::pg::security;
use crate::pg::subxact;
use pgrx::prelude::*;
use std::collections::HashSet;

/// For a config whose mapping copies each column as it is to a column of the same type
/// (and whose direction lets changes flow this way), one statement that brings linked
/// pairs up to date where only the reading side changed: it writes the `written` side with the reading side's current values, and the link's
/// base with them, but only where the written row still holds the base, i.e. nobody
/// changed it since the last sync (the guard a concurrent writer's new version is
/// re-checked against, too), and where a mapped value differs from the base. What the
/// three-way merge would do for such a pair, without reading rows into the engine.
/// `$1` config id, `$2`/`$3`/`$4` the pairs' source and target ids and their links'
/// ctids (a link that moved since is not found: that pair is not written); returns the
/// source ids of the pairs written. Pairs it leaves alone go through the merge.
/// The (source column, target column) pairs of `cfg`'s mapping when every entry copies
/// one column as it is to a column of the same type, at most 50 (jsonb_build_object
/// takes at most 100 arguments); None otherwise: the config has no copy statements.
fn copy_pairs(cfg: &Config) -> Option<Vec<(String, String)>> {
    let copies = cfg.shape.mapping.column_copies(|s, t| {
        let (st, tt) = (cfg.source.column_type(s), cfg.target.column_type(t));
        st.is_some() && st == tt
    })?;
    (!copies.is_empty() && copies.len() <= 50).then_some(copies)
}

/// Whether a copy statement may write the `written` side: it reads one table and
/// writes the other and the links, so only as the written table's owner if that is the
/// extension's owner (the role the run's bookkeeping runs as); otherwise the merge path
/// writes that table, from values the run read, as its owner.
fn may_copy_into(cfg: &Config, written: Side) -> bool {
    cfg.endpoint(written).owner == security::current_user()
}

/// `pairs` (`copy_pairs`) as (base field = target column, column read, column written)
/// for writing the `written` side.
fn copy_columns(pairs: &[(String, String)], written: Side) -> Vec<(&str, &str, &str)> {
    pairs
        .iter()
        .map(|(s, t)| match written {
            Side::Target => (t.as_str(), s.as_str(), t.as_str()),
            Side::Source => (t.as_str(), t.as_str(), s.as_str()),
        })
        .collect()
}

/// The base of a copied pair: a jsonb object of the read row (alias `r`) keyed by the
/// base fields of `cols` (`copy_columns`).
fn base_object(cols: &[(&str, &str, &str)]) -> String {
    let pairs: Vec<String> = cols
        .iter()
        .map(|c| format!("{}, r.{}", quote_literal(c.0), quote_ident(c.1)))
        .collect();
    format!("jsonb_build_object({})", pairs.join(", "))
}

pub(super) fn copy_sql(cfg: &Config, schema: &str, written: Side) -> Option<String> {
    let to_target = written == Side::Target;
    let flows = if to_target {
        cfg.direction.to_target()
    } else {
        cfg.direction.to_source()
    };
    let pairs = copy_pairs(cfg)?;
    if !flows || !may_copy_into(cfg, written) {
        return None;
    }
    let cols = copy_columns(&pairs, written);
    let q = quote_ident;
    let (read, write) = (cfg.endpoint(written.other()), cfg.endpoint(written));
    // the new base: an object of the read row's columns
    let new_base = base_object(&cols);
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
        guard = crate::core::mapping::base_guard_sql(&guarded, "p.base"),
        checksum = base_checksum_sql("u.nb"),
        rk = q(&read.key_column),
        rkt = read.key_type,
        wk = q(&write.key_column),
        wkt = write.key_type,
    ))
}

impl Run<'_> {
    /// Linked pairs that changed on one side only (and wait for no person), when the
    /// config has a `copy_sql` statement for that direction: brought up to date by it,
    /// one statement per direction and batch. Returns the items still to merge: the
    /// rest, and the pairs the statement left alone (the other side changed meanwhile,
    /// the source row is gone, nothing mapped changed) or could not write at all (an
    /// error: the merge then isolates the entity it belongs to).
    pub(super) fn copy_across(&mut self, items: Vec<WorkItem>, pending: &Pending) -> Vec<WorkItem> {
        if self.copy.source.is_none() && self.copy.target.is_none() {
            return items;
        }
        let t0 = std::time::Instant::now();
        let mut rest = Vec::with_capacity(items.len());
        let mut held: Sides<Vec<WorkItem>> = Sides::default();
        for it in items {
            match plan::copy_direction(&it, pending).filter(|&w| self.copy.get(w).is_some()) {
                Some(w) => held.get_mut(w).push(it),
                None => rest.push(it),
            }
        }
        let mut done: Sides<Vec<String>> = Sides::default();
        for written in [Side::Target, Side::Source] {
            let pairs = std::mem::take(held.get_mut(written));
            let Some(sql) = self
                .copy
                .get(written)
                .as_deref()
                .filter(|_| !pairs.is_empty())
            else {
                continue;
            };
            let sids: Vec<&str> = pairs
                .iter()
                .filter_map(|p| p.ids.source.as_deref())
                .collect();
            let tids: Vec<&str> = pairs
                .iter()
                .filter_map(|p| p.ids.target.as_deref())
                .collect();
            let links: Vec<&str> = pairs.iter().filter_map(|p| p.link.as_deref()).collect();
            let owner = self.cfg.endpoint(written).owner;
            let written_sources = subxact::run_for_rows(|| {
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
                match p.ids.pair() {
                    Some((s, t)) if written_sources.contains(s) => {
                        done.source.push(s.clone());
                        done.target.push(t.clone());
                    }
                    _ => rest.push(p),
                }
            }
        }
        let n = done.source.len() as i64;
        self.stats.synced += n;
        self.stats.updated += n;
        self.stats.copied += n;
        if n > 0 {
            self.resolve_errors(done);
        }
        self.timing.apply += t0.elapsed().as_micros();
        rest
    }
}

/// For a config's first run whose mapping copies each column as it is (same types, at
/// most 50), when one side is empty and the other is not, and the direction lets rows
/// flow to the empty side: one statement that copies every row across, with new keys
/// (the key column's default, or the partner's key), and links each pair with the
/// copied values as its base, as the merge path would create them. None when it does
/// not apply (`written` side's owner is not the run's role, nothing to copy, the
/// config has links, ...). The statement copies nothing when the written side is no
/// longer empty when it runs (the merge path then does the load).
/// `had_links`: whether the config had links when the run began (`Run::had_links`).
/// `$1` config id. Returns the statement and the side it writes.
pub(super) fn initial_copy_sql(
    cfg: &Config,
    schema: &str,
    had_links: bool,
) -> Option<(String, Side)> {
    let pairs = copy_pairs(cfg)?;
    let empty = |e: &crate::capture::endpoints::Endpoint| {
        db::one::<bool>(
            &format!("SELECT NOT EXISTS (SELECT 1 FROM {})", e.table),
            &[],
        )
        .unwrap_or(false)
    };
    if had_links {
        return None;
    }
    let (source_empty, target_empty) = (empty(&cfg.source), empty(&cfg.target));
    let written = match (source_empty, target_empty) {
        (false, true) if cfg.direction.to_target() => Side::Target,
        (true, false) if cfg.direction.to_source() => Side::Source,
        _ => return None,
    };
    if !may_copy_into(cfg, written) {
        return None;
    }
    let cols = copy_columns(&pairs, written);
    let (read, write) = (cfg.endpoint(written.other()), cfg.endpoint(written));
    let q = quote_ident;
    let base = base_object(&cols);
    let rk = q(&read.key_column);
    // a json column gets the text the merge path's jsonb_populate_record writes
    let value = |c: &(&str, &str, &str)| match write.column_type(c.2) {
        Some("json") => format!("r.{}::jsonb::json", q(c.1)),
        _ => format!("r.{}", q(c.1)),
    };
    let ovr = if write.key_identity {
        "OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let wcols = cols.iter().map(|c| q(c.2)).collect::<Vec<_>>().join(", ");
    let links =
        format!("{schema}.sync_links (config_id, source_id, target_id, base, base_checksum)");
    let sql = match &write.key_default {
        // the partner's key: each insert reads the rows itself (one snapshot), so no
        // row is held in between (a materialized copy of a million rows spills to disk)
        None => {
            let id = format!("format('%s', r.{rk})");
            format!(
                "WITH e AS MATERIALIZED (
                    -- still empty now, in this statement's snapshot
                    SELECT NOT EXISTS (SELECT 1 FROM {wt}) AS empty
                 ), w AS (
                    INSERT INTO {wt} ({wk}, {wcols}) {ovr}
                    SELECT ({id})::{wkt}, {vals} FROM {rt} r WHERE (SELECT empty FROM e)
                 ), l AS (
                    INSERT INTO {links}
                    SELECT $1, {id}, {id}, x.b, {checksum}
                      FROM {rt} r, LATERAL (SELECT {base} AS b OFFSET 0) x
                     WHERE (SELECT empty FROM e)
                 )
                 SELECT CASE WHEN (SELECT empty FROM e) THEN (SELECT count(*) FROM {rt}) ELSE 0 END",
                rt = read.table,
                wt = write.table,
                wk = q(&write.key_column),
                wkt = write.key_type,
                vals = cols.iter().map(value).collect::<Vec<_>>().join(", "),
                checksum = base_checksum_sql("x.b"),
            )
        }
        // a new key per row: drawn once, so the row and its link get the same one
        Some(expr) => {
            let (sid, tid) = match written {
                Side::Target => ("c.rid", "c.wid"),
                Side::Source => ("c.wid", "c.rid"),
            };
            format!(
                "WITH c AS MATERIALIZED (
                    SELECT format('%s', r.{rk}) AS rid, format('%s', {expr}) AS wid, {base} AS b, {vals}
                      FROM {rt} r
                     -- still empty now, in this statement's snapshot
                     WHERE NOT EXISTS (SELECT 1 FROM {wt})
                 ), w AS (
                    INSERT INTO {wt} ({wk}, {wcols}) {ovr}
                    SELECT (c.wid)::{wkt}, {cvals} FROM c
                 ), l AS (
                    INSERT INTO {links}
                    SELECT $1, {sid}, {tid}, c.b, {checksum} FROM c
                 )
                 SELECT count(*) FROM c",
                rt = read.table,
                wt = write.table,
                wk = q(&write.key_column),
                wkt = write.key_type,
                vals = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} AS v{i}", value(c)))
                    .collect::<Vec<_>>()
                    .join(", "),
                cvals = (0..cols.len())
                    .map(|i| format!("c.v{i}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                checksum = base_checksum_sql("c.b"),
            )
        }
    };
    Some((sql, written))
}

impl Run<'_> {
    /// The first run of a config, when `initial_copy_sql` applies: copy every row to
    /// the empty side in one statement (in a subtransaction). Returns how many pairs
    /// were created, or None when the path does not apply or the statement failed (the
    /// merge path then does the load, reporting any row's error itself).
    /// Tables: both tables, sync_links.
    pub(super) fn initial_copy(&mut self) -> Option<i64> {
        let (sql, written) = initial_copy_sql(self.cfg, &self.schema, self.had_links)?;
        let owner = self.cfg.endpoint(written).owner;
        let t0 = std::time::Instant::now();
        let n = subxact::run_for_rows(|| {
            security::as_table_owner(owner, || db::one::<i64>(&sql, &[self.cfg.id.into()]))
        })
        .unwrap_or_else(|e| {
            debug1!(
                "sync_engine: config {}: the initial copy failed ({}); the rows go through the merge",
                self.cfg.id,
                e.message
            );
            None
        })
        .filter(|&n| n > 0)?;
        self.stats.synced += n;
        self.stats.created += n;
        self.stats.copied += n;
        self.links_added(n as usize);
        self.timing.apply += t0.elapsed().as_micros();
        Some(n)
    }
}
