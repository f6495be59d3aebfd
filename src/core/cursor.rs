//! Snapshot arithmetic for reading `change_log` without losing or repeating changes.
//!
//! A position is a PostgreSQL `pg_snapshot` in its text form `xmin:xmax:xip1,xip2,...`.
//! PgQ's batching rule: a change belongs to the window (prev, cur] iff its transaction
//! id is visible in `cur` and was not visible in `prev`. A transaction that began
//! before `prev` was taken and committed after it is in `prev`'s in-progress list, so
//! it is returned by the next read — a sequence or timestamp cursor would skip it.
//!
//! Pure logic: no Postgres here.

use crate::core::error::Error;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    /// In-progress transaction ids, sorted, all in [xmin, xmax).
    pub xip: Vec<u64>,
}

impl Snapshot {
    /// Parse `xmin:xmax:xip,...` (the text form of `pg_snapshot`).
    pub fn parse(s: &str) -> Result<Snapshot, Error> {
        let bad = || {
            Error::invalid(format!(
                "invalid sync position \"{s}\": expected a snapshot like \"100:104:100,102\" (xmin:xmax:in-progress ids)"
            ))
        };
        let mut parts = s.trim().splitn(3, ':');
        let xmin: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let xmax: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let rest = parts.next().ok_or_else(bad)?;
        let mut xip = Vec::new();
        if !rest.is_empty() {
            for x in rest.split(',') {
                xip.push(x.parse::<u64>().map_err(|_| bad())?);
            }
        }
        xip.sort_unstable();
        xip.dedup();
        if xmin > xmax || xip.iter().any(|&x| x < xmin || x >= xmax) {
            return Err(bad());
        }
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Is a transaction with this id visible (committed or aborted, i.e. finished) in
    /// the snapshot? Same rule as `pg_visible_in_snapshot`.
    pub fn is_visible(&self, xid: u64) -> bool {
        if xid < self.xmin {
            return true;
        }
        if xid >= self.xmax {
            return false;
        }
        self.xip.binary_search(&xid).is_err()
    }

    /// Treat `xid` (the reader's own transaction) as still in progress: its changes
    /// belong to the first window read after it commits, never to one read inside it
    /// (a snapshot does not list its own transaction, so without this a second read in
    /// the same transaction would pass over changes made between the two reads).
    pub fn with_in_progress(mut self, xid: u64) -> Snapshot {
        if xid >= self.xmax || self.xip.binary_search(&xid).is_ok() {
            return self;
        }
        self.xmin = self.xmin.min(xid);
        let at = self.xip.binary_search(&xid).unwrap_err();
        self.xip.insert(at, xid);
        self
    }

    /// Does `self` come at or after `prev`: everything visible in prev is visible here?
    pub fn follows(&self, prev: &Snapshot) -> bool {
        if self.xmax < prev.xmax || self.xmin < prev.xmin {
            return false;
        }
        // every xid visible in prev but in [self.xmin, self.xmax) must not be in our xip
        self.xip.iter().all(|&x| !prev.is_visible(x))
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (i, x) in self.xip.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{x}")?;
        }
        Ok(())
    }
}

/// The window of changes that became visible between two positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub prev: Option<Snapshot>,
    pub cur: Snapshot,
}

impl Window {
    pub fn new(prev: Option<Snapshot>, cur: Snapshot) -> Result<Window, Error> {
        if let Some(p) = &prev {
            if !cur.follows(p) {
                return Err(Error::invalid(format!(
                    "position {cur} does not follow {p}: positions must come from the same cluster, oldest first"
                )));
            }
        }
        Ok(Window { prev, cur })
    }

    /// Smallest txid that can be in the window (inclusive): everything below prev's
    /// xmin was already visible in prev.
    pub fn lower_bound(&self) -> u64 {
        self.prev.as_ref().map_or(0, |p| p.xmin)
    }

    /// Exclusive upper bound: nothing at or above cur's xmax is visible in cur.
    pub fn upper_bound(&self) -> u64 {
        self.cur.xmax
    }

    /// PgQ's rule: visible now, not visible before.
    pub fn contains(&self, xid: u64) -> bool {
        self.cur.is_visible(xid) && !self.prev.as_ref().is_some_and(|p| p.is_visible(xid))
    }
}

/// Where a config's run starts, given its stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Never ran: every row of both tables takes part (the initial load).
    InitialLoad,
    /// The changes that became visible after this position, taken in this database.
    After(Snapshot),
    /// The position was taken in another database (the config came back from a dump):
    /// its transaction ids say nothing here and the change records it points into are
    /// not here, so every row of both tables takes part, through the existing links.
    Reconcile,
}

/// Decide where a run starts.
/// - `position`: the config's stored position (snapshot text), None if it never ran;
/// - `taken_in`: the sync_instance id stored with it (None for a position stored
///   without one, which only a hand-made row can have);
/// - `here`: this database's sync_instance id.
///
/// Returns the start, or an error for a position of this database that does not parse.
/// - A position from elsewhere is never parsed: it may even be "ahead" of this
///   database's snapshots (another cluster with more transactions behind it), and a
///   window built from it would skip every change until this cluster caught up.
/// - A position without an instance is treated as foreign: reconciling costs a full
///   comparison once, trusting it could lose changes.
pub fn start(position: Option<&str>, taken_in: Option<&str>, here: &str) -> Result<Start, Error> {
    match (position, taken_in) {
        (None, _) => Ok(Start::InitialLoad),
        (Some(p), Some(t)) if t.eq_ignore_ascii_case(here) => Snapshot::parse(p).map(Start::After),
        (Some(_), _) => Ok(Start::Reconcile),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: &str = "0b8e5a2c-3f43-4a7e-9b1e-6f1d2c3a4b5c";
    const THERE: &str = "7d1c0f9e-aa10-4b2b-8c55-0e9f8a7b6c5d";

    #[test]
    fn a_position_taken_here_continues_after_it() {
        assert_eq!(
            start(Some("100:104:100,102"), Some(HERE), HERE),
            Ok(Start::After(snap("100:104:100,102")))
        );
        // uuid text compares whatever its case
        assert_eq!(
            start(Some("5:5:"), Some(&HERE.to_uppercase()), HERE),
            Ok(Start::After(snap("5:5:")))
        );
    }

    #[test]
    fn no_position_is_the_initial_load() {
        assert_eq!(start(None, None, HERE), Ok(Start::InitialLoad));
        assert_eq!(start(None, Some(THERE), HERE), Ok(Start::InitialLoad));
    }

    #[test]
    fn a_position_from_another_database_reconciles() {
        // restored into a fresh cluster: the old position is far ahead of this one's xids
        assert_eq!(
            start(Some("900000:900004:900001"), Some(THERE), HERE),
            Ok(Start::Reconcile)
        );
        // never parsed: whatever it holds, it is not ours
        assert_eq!(
            start(Some("garbage"), Some(THERE), HERE),
            Ok(Start::Reconcile)
        );
        // stored without an instance: not known to be ours
        assert_eq!(start(Some("5:5:"), None, HERE), Ok(Start::Reconcile));
    }

    #[test]
    fn a_broken_position_of_this_database_is_an_error() {
        let e = start(Some("5:3:"), Some(HERE), HERE).unwrap_err();
        assert!(e.message.contains("invalid sync position"), "{e}");
    }

    fn snap(s: &str) -> Snapshot {
        Snapshot::parse(s).unwrap()
    }

    #[test]
    fn parse_and_format_round_trip() {
        for s in ["100:104:100,102", "5:5:", "1:10:3"] {
            assert_eq!(snap(s).to_string(), s);
        }
        assert_eq!(snap("100:104:102,100").xip, vec![100, 102]);
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in ["", "abc", "1:2", "5:3:", "1:10:11", "1:10:x", "1:10:0"] {
            let e = Snapshot::parse(s).unwrap_err();
            assert!(e.message.contains("invalid sync position"), "{s}: {e}");
        }
    }

    #[test]
    fn visibility_follows_pg_rules() {
        let s = snap("100:104:100,102");
        assert!(s.is_visible(99));
        assert!(!s.is_visible(100));
        assert!(s.is_visible(101));
        assert!(!s.is_visible(102));
        assert!(s.is_visible(103));
        assert!(!s.is_visible(104));
        assert!(!s.is_visible(500));
    }

    #[test]
    fn long_transaction_lands_in_the_next_window_once() {
        // 100 began first, 101 committed; first read at 100:102:100
        let p1 = snap("100:102:100");
        let w1 = Window::new(None, p1.clone()).unwrap();
        assert!(w1.contains(101));
        assert!(!w1.contains(100));
        // 100 commits later; second read
        let p2 = snap("102:102:");
        let w2 = Window::new(Some(p1), p2.clone()).unwrap();
        assert!(
            w2.contains(100),
            "the long transaction is in the next window"
        );
        assert!(!w2.contains(101), "never twice");
        let w3 = Window::new(Some(p2), snap("103:103:")).unwrap();
        assert!(!w3.contains(100));
        assert!(w3.contains(102));
    }

    #[test]
    fn windows_partition_the_xid_space() {
        let ps = [
            snap("10:14:10,12"),
            snap("12:16:12,15"),
            snap("15:20:15,17,19"),
            snap("21:21:"),
        ];
        for xid in 1..25u64 {
            let mut n = usize::from(Window::new(None, ps[0].clone()).unwrap().contains(xid));
            for pair in ps.windows(2) {
                let w = Window::new(Some(pair[0].clone()), pair[1].clone()).unwrap();
                n += usize::from(w.contains(xid));
            }
            let expected = usize::from(ps[3].is_visible(xid));
            assert_eq!(n, expected, "xid {xid}");
        }
    }

    #[test]
    fn bounds_cover_the_window() {
        let w = Window::new(Some(snap("10:14:10,12")), snap("12:16:12,15")).unwrap();
        assert_eq!(w.lower_bound(), 10);
        assert_eq!(w.upper_bound(), 16);
        for xid in 0..30 {
            if w.contains(xid) {
                assert!(xid >= w.lower_bound() && xid < w.upper_bound());
            }
        }
    }

    #[test]
    fn own_transaction_counts_as_in_progress() {
        let s = snap("100:110:105").with_in_progress(103);
        assert_eq!(s.to_string(), "100:110:103,105");
        assert!(!s.is_visible(103));
        assert_eq!(
            snap("100:110:").with_in_progress(95).to_string(),
            "95:110:95"
        );
        assert_eq!(
            snap("100:110:").with_in_progress(120).to_string(),
            "100:110:",
            "not yet visible anyway"
        );
        // the next read after commit picks it up, once
        let w = Window::new(Some(snap("100:110:103,105")), snap("106:112:")).unwrap();
        assert!(w.contains(103));
    }

    #[test]
    fn going_backwards_is_refused() {
        let e = Window::new(Some(snap("12:16:12,15")), snap("10:14:10,12")).unwrap_err();
        assert!(e.message.contains("does not follow"));
        // a transaction visible before cannot be in progress later
        assert!(Window::new(Some(snap("10:14:")), snap("12:16:12")).is_err());
    }
}
