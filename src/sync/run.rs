//! `Run`: the state of one run across its batches, and `batch`, the pipeline of one
//! batch: copy -> load -> plan -> apply. Each step is a method in its own file
//! (`fastpath`, `load`, `apply`, `isolate`); every decision is `core::plan`'s.

use super::config::Config;
use super::sql::{self, statements};
use super::{changes, Stats};
use crate::core::cursor::{Start, Window};
use crate::core::plan::{self, Batch, Failure, Pending, Projected, WorkItem};
use crate::core::types::{Side, Sides, Timings};
use crate::pg::db;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::Instant;

pub(super) struct Run<'a> {
    pub cfg: &'a Config,
    /// the extension schema, quoted
    pub schema: String,
    pub run_id: i64,
    /// target-space fields in mapping order
    pub fields: Vec<String>,
    /// source columns the mapping reads
    pub source_cols: Vec<String>,
    pub stats: Stats,
    /// targets linked by this run (creates, matches, pairs waiting for a retry):
    /// later batches do not treat them as unlinked rows
    pub linked_targets: HashSet<String>,
    /// this run's change_log window (alias c); None for an initial load
    pub window_pred: Option<String>,
    /// (side, key) of rows the last failed apply found changed by someone else
    pub raced: RefCell<Vec<(Side, String)>>,
    /// links inserted by this run, and the count at which the links table is
    /// analyzed next (see `links_added`)
    pub links_growth: Cell<(f64, f64)>,
    /// whether the config had links when the run began: if not, every link is this
    /// run's, and `linked_targets` knows each linked target
    pub had_links: bool,
    pub timing: Timings,
    /// per side written: the set-based statement bringing a pair up to date when only
    /// the other side changed, for configs whose mapping copies columns as they are
    /// (see `fastpath::copy_sql`)
    pub copy: Sides<Option<String>>,
}

impl<'a> Run<'a> {
    /// A run of `cfg` reading `window` (or every row, for an initial load or reconcile).
    pub fn new(
        cfg: &'a Config,
        schema: String,
        run_id: i64,
        start: &Start,
        window: &Window,
    ) -> Self {
        Run {
            cfg,
            run_id,
            fields: cfg.fields(),
            source_cols: cfg.shape.mapping.source_columns(),
            stats: Stats::default(),
            linked_targets: HashSet::new(),
            window_pred: matches!(start, Start::After(_))
                .then(|| changes::window_predicate(window, "c")),
            raced: Default::default(),
            links_growth: Cell::new((0.0, super::apply::ANALYZE_LINKS_AT)),
            had_links: super::apply::has_links(&schema, cfg.id),
            timing: Timings::default(),
            copy: Sides::new(
                super::fastpath::copy_sql(cfg, &schema, Side::Source),
                super::fastpath::copy_sql(cfg, &schema, Side::Target),
            ),
            schema,
        }
    }

    /// One batch of work items (one per pair): everything it decides and writes.
    /// Tables: reads both tables, sync_links, sync_conflicts, change_log; writes both
    /// tables, sync_links, sync_conflicts, sync_errors.
    pub fn batch(&mut self, items: Vec<WorkItem>) {
        let t0 = Instant::now();
        let ids = |items: &[WorkItem]| -> Sides<Vec<String>> {
            Sides::new(
                items.iter().filter_map(|i| i.ids.source.clone()).collect(),
                items.iter().filter_map(|i| i.ids.target.clone()).collect(),
            )
        };
        let pending = Pending::new(self.load_pending(&ids(&items)));
        self.timing.load += t0.elapsed().as_micros();
        let mut items = self.copy_across(items, &pending);
        if items.is_empty() {
            return;
        }
        let t0 = Instant::now();
        for relinked in self.load_bases(&mut items) {
            self.record_error(
                &relinked,
                "40001",
                "the link of this pair was replaced earlier in the same run (a key handed out again); retried on the next run",
            );
        }
        // before their rows are read: a load with match_on links most targets before
        // their own (target-only) items come up
        let pairs = plan::skip_linked_by_earlier_batches(items, &self.linked_targets);
        if pairs.is_empty() {
            return;
        }
        let keys = ids(&pairs);
        let source_rows = super::load::read_rows(&self.cfg.source, &keys.source, &self.source_cols);
        let mut target_rows = super::load::read_rows(&self.cfg.target, &keys.target, &self.fields);
        self.timing.load += t0.elapsed().as_micros();

        // project sources; match unlinked sources to existing unlinked targets
        let projected: Vec<Projected> = pairs
            .iter()
            .map(|p| {
                p.ids
                    .source
                    .as_ref()
                    .and_then(|s| source_rows.get(s))
                    .map(|r| self.cfg.project(&r.row))
            })
            .collect();
        let wanted = plan::match_wanted(&pairs, &projected);
        let taken = plan::taken_targets(&pairs);
        let (matches, matched_rows) = self.find_matches(&wanted, &taken);
        target_rows.extend(matched_rows);
        let (pairs, projected) = plan::apply_matches(pairs, projected, &matches);
        let field_times = self.field_times(&pairs);

        let out = plan::plan(Batch {
            shape: &self.cfg.shape,
            strategy: self.cfg.strategy,
            direction: self.cfg.direction,
            pairs: &pairs,
            projected,
            source_rows: &source_rows,
            target_rows,
            pending: &pending,
            field_times: &field_times,
        });
        for Failure { ids, message } in out.failed {
            self.record_error(&ids, "22000", &message);
        }
        if out.ops.is_empty() {
            return;
        }
        self.timing.merge += t0.elapsed().as_micros();
        let t1 = Instant::now();
        self.apply_isolated(out.ops);
        self.timing.apply += t1.elapsed().as_micros();
    }

    /// Open errors of these entities are resolved: they went through.
    pub fn resolve_errors(&self, ids: Sides<Vec<String>>) {
        db::run(
            &sql::statement(statements::RESOLVE_ERRORS, &self.schema),
            &[self.cfg.id.into(), ids.source.into(), ids.target.into()],
        );
    }

    /// Count an applied batch into the run's result.
    pub fn add(&mut self, s: Stats) {
        let t = &mut self.stats;
        t.synced += s.synced;
        t.conflicts += s.conflicts;
        t.created += s.created;
        t.updated += s.updated;
        t.deleted += s.deleted;
        self.linked_targets.extend(s.new_targets);
    }

    /// Record that the pair `ids` failed (sync_errors), closing its older errors; it is
    /// retried next run.
    pub fn record_error(&mut self, ids: &Sides<Option<String>>, sqlstate: &str, message: &str) {
        self.stats.errors += 1;
        // the pair's target (maybe just matched) waits for the retry of this pair: a
        // later batch of this run must not treat it as an unlinked row
        self.linked_targets.extend(ids.target.clone());
        db::run(
            &sql::statement(statements::RECORD_ERROR, &self.schema),
            &[
                self.cfg.id.into(),
                self.run_id.into(),
                ids.source.as_deref().into(),
                ids.target.as_deref().into(),
                message.into(),
                sqlstate.into(),
            ],
        );
    }
}
