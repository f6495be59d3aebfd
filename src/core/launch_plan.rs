//! The launcher's decisions, as plain Rust (no Postgres): which databases get a
//! scheduler, and when a database's scheduler is (re)started.
//!
//! The shell (`crate::worker::launcher`) observes the world (pg_database, worker handles, shared
//! memory), feeds it in here as numbers and enums, and carries out the answer.

/// Which databases the launcher serves, from `sync_engine.databases` and
/// `sync_engine.database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseFilter {
    /// Every database that allows connections and is not a template.
    All,
    /// Only these (exact, case-sensitive names).
    Listed(Vec<String>),
}

impl DatabaseFilter {
    /// The filter the settings ask for.
    /// - `databases`: `sync_engine.databases`, a comma-separated list; spaces around a
    ///   name are dropped, and so are empty items.
    /// - `database`: `sync_engine.database`, the older one-database setting.
    ///
    /// Returns `Listed` from `databases` when it names at least one database, else
    /// `Listed([database])` when that is set and not blank, else `All`.
    pub fn from_settings(databases: Option<&str>, database: Option<&str>) -> Self {
        let listed = parse_list(databases.unwrap_or(""));
        if !listed.is_empty() {
            return DatabaseFilter::Listed(listed);
        }
        match database.map(str::trim) {
            Some(d) if !d.is_empty() => DatabaseFilter::Listed(vec![d.to_string()]),
            _ => DatabaseFilter::All,
        }
    }

    /// Whether the database named `datname` is served.
    pub fn admits(&self, datname: &str) -> bool {
        match self {
            DatabaseFilter::All => true,
            DatabaseFilter::Listed(names) => names.iter().any(|n| n == datname),
        }
    }
}

/// Names in a comma-separated list, trimmed, without empty items or repeats.
pub fn parse_list(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The shortest wait before a scheduler that ended is started again.
pub const MIN_RESTART_DELAY_MS: u64 = 1_000;
/// The longest wait, reached by a scheduler that keeps dying soon after its start.
pub const MAX_RESTART_DELAY_MS: u64 = 60_000;
/// A scheduler that ran at least this long is not a quick death.
pub const STABLE_AFTER_MS: u64 = 10_000;

/// How a database's last scheduler ended, as it told the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// sync_engine is not installed in the database (never was, or was dropped).
    NoExtension,
    /// Anything else: terminated (pg_terminate_backend, DROP DATABASE ... FORCE),
    /// an error, a failed start.
    Ended,
}

/// What the launcher should do about one database now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its scheduler is running (or starting): nothing.
    Keep,
    /// Start a scheduler now.
    StartNow,
    /// Start one at this time (ms on the caller's clock), not before.
    StartAt(u64),
    /// The extension is not installed there: wait for a CREATE EXTENSION (a poke) or a
    /// launcher restart.
    WaitForCreateExtension,
}

/// The launcher's memory of one database's scheduler. Times are ms on one monotonic
/// clock of the caller's choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Track {
    /// A scheduler was started (or found running) and has not been seen ending.
    pub running: bool,
    /// When the current or last scheduler was started.
    pub started_ms: u64,
    /// The database's poke count read just before that start; None: this launcher
    /// never started one there.
    pub pokes_at_start: Option<u32>,
    /// How the last scheduler ended (None: none has ended under this launcher).
    pub last_exit: Option<Exit>,
    /// Quick deaths in a row (each doubles the restart delay).
    pub quick_deaths: u32,
    /// No start before this time.
    pub not_before_ms: u64,
    /// Failed attempts to start one (no free worker slot) since the last start.
    pub failed_starts: u32,
}

impl Track {
    /// What to do now, given whether a scheduler is alive and the database's current
    /// poke count (bumped by each committed CREATE EXTENSION there).
    pub fn decide(&self, alive: bool, pokes: u32, now_ms: u64) -> Decision {
        if alive || self.running {
            return Decision::Keep;
        }
        if self.last_exit == Some(Exit::NoExtension) && self.pokes_at_start == Some(pokes) {
            return Decision::WaitForCreateExtension;
        }
        if now_ms >= self.not_before_ms {
            Decision::StartNow
        } else {
            Decision::StartAt(self.not_before_ms)
        }
    }

    /// A scheduler was registered (or an alive one adopted) at `now_ms`; `pokes` was
    /// read before registering it.
    pub fn started(&mut self, pokes: u32, now_ms: u64) {
        self.running = true;
        self.started_ms = now_ms;
        self.pokes_at_start = Some(pokes);
        self.failed_starts = 0;
    }

    /// No worker slot was free: the next look tries again (the launcher looks every
    /// naptime, and whenever a worker exits). Returns true for the first failure in a
    /// row (the one to warn about).
    pub fn start_failed(&mut self) -> bool {
        self.failed_starts += 1;
        self.failed_starts == 1
    }

    /// The scheduler was seen gone at `now_ms`, having ended as `exit`.
    /// - no extension: nothing to wait for once a CREATE EXTENSION arrives;
    /// - otherwise: restart after a delay that doubles with each quick death (one that
    ///   ran less than STABLE_AFTER_MS), from MIN_RESTART_DELAY_MS up to
    ///   MAX_RESTART_DELAY_MS; a scheduler that ran longer starts the count afresh.
    pub fn ended(&mut self, exit: Exit, now_ms: u64) {
        self.running = false;
        self.last_exit = Some(exit);
        match exit {
            Exit::NoExtension => {
                self.quick_deaths = 0;
                self.not_before_ms = now_ms;
            }
            Exit::Ended => {
                let lived = now_ms.saturating_sub(self.started_ms);
                self.quick_deaths = if lived < STABLE_AFTER_MS {
                    self.quick_deaths.saturating_add(1)
                } else {
                    0
                };
                self.not_before_ms = now_ms + restart_delay_ms(self.quick_deaths);
            }
        }
    }
}

/// MIN_RESTART_DELAY_MS * 2^quick_deaths, at most MAX_RESTART_DELAY_MS.
pub fn restart_delay_ms(quick_deaths: u32) -> u64 {
    MIN_RESTART_DELAY_MS
        .saturating_mul(1u64 << quick_deaths.min(20))
        .min(MAX_RESTART_DELAY_MS)
}

/// Copy `s` into a fixed NUL-terminated buffer, cut at a character boundary so the
/// stored text stays valid UTF-8.
pub fn put_text<const N: usize>(buf: &mut [u8; N], s: &str) {
    let mut end = s.len().min(N - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf[..end].copy_from_slice(&s.as_bytes()[..end]);
    buf[end..].fill(0);
}

/// The text in a buffer filled by `put_text`.
pub fn get_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_wins_over_database_and_empty_means_all() {
        let f = DatabaseFilter::from_settings(Some(" app , crm,,app "), Some("postgres"));
        assert_eq!(f, DatabaseFilter::Listed(vec!["app".into(), "crm".into()]));
        assert!(f.admits("crm") && !f.admits("postgres") && !f.admits("App"));
        assert_eq!(
            DatabaseFilter::from_settings(Some(" , "), Some("pgrx_tests")),
            DatabaseFilter::Listed(vec!["pgrx_tests".into()])
        );
        assert_eq!(
            DatabaseFilter::from_settings(None, Some("  ")),
            DatabaseFilter::All
        );
        assert!(DatabaseFilter::from_settings(Some(""), None).admits("anything"));
    }

    #[test]
    fn a_terminated_scheduler_is_restarted_after_a_second() {
        let mut t = Track::default();
        assert_eq!(t.decide(false, 0, 0), Decision::StartNow);
        t.started(0, 0);
        assert_eq!(t.decide(false, 0, 5), Decision::Keep);
        t.ended(Exit::Ended, 60_000);
        assert_eq!(t.decide(false, 0, 60_500), Decision::StartAt(61_000));
        assert_eq!(t.decide(false, 0, 61_000), Decision::StartNow);
        assert_eq!(t.decide(true, 0, 61_000), Decision::Keep);
    }

    #[test]
    fn quick_deaths_back_off_up_to_a_minute_and_a_stable_run_resets() {
        let mut t = Track::default();
        let mut now = 0;
        let mut delays = vec![];
        for _ in 0..8 {
            t.started(0, now);
            now += 100; // dies at once
            t.ended(Exit::Ended, now);
            delays.push(t.not_before_ms - now);
            now = t.not_before_ms;
        }
        assert_eq!(
            delays,
            vec![2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        t.started(0, now);
        t.ended(Exit::Ended, now + STABLE_AFTER_MS);
        assert_eq!(t.not_before_ms - (now + STABLE_AFTER_MS), 1_000);
    }

    #[test]
    fn no_extension_waits_for_a_poke_that_came_after_the_start() {
        let mut t = Track::default();
        t.started(3, 0);
        t.ended(Exit::NoExtension, 10);
        assert_eq!(t.decide(false, 3, 20), Decision::WaitForCreateExtension);
        // a CREATE EXTENSION committed while the probe was looking: start again
        assert_eq!(t.decide(false, 4, 20), Decision::StartNow);
        // a new launcher (empty memory) probes every database once
        assert_eq!(Track::default().decide(false, 3, 0), Decision::StartNow);
    }

    #[test]
    fn a_full_worker_table_warns_once_and_retries_at_each_look() {
        let mut t = Track::default();
        assert!(t.start_failed());
        assert!(!t.start_failed());
        assert_eq!(t.decide(false, 0, 15_000), Decision::StartNow);
        t.started(0, 20_000);
        assert_eq!(t.failed_starts, 0);
        assert!(t.start_failed(), "a new episode warns again");
    }

    #[test]
    fn text_buffers_cut_at_character_boundaries() {
        let mut b = [0u8; 6];
        put_text(&mut b, "abcdé"); // é is 2 bytes: "abcd" + 2 = 6 > 5 usable
        assert_eq!(get_text(&b), "abcd");
        put_text(&mut b, "xy");
        assert_eq!(get_text(&b), "xy");
    }
}
