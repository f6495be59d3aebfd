//! The launcher: one background worker, connected to no database, that starts a
//! scheduler (`crate::worker`) for each database that has sync_engine installed, and
//! starts it again when it ends for any reason other than the server's shutdown.
//!
//! - Shared memory (`REGISTRY`, only when the library is preloaded) holds one slot per
//!   database: written by the launcher (start attempts), by that database's scheduler
//!   (pid, ticks, errors, how it ended) and by CREATE EXTENSION (a poke). The
//!   `sync_workers` view reads it through `sync_worker_states()`.
//! - The launcher lists pg_database (a shared catalog, so no database connection is
//!   needed: it blocks no CREATE DATABASE ... TEMPLATE and no DROP DATABASE), and for
//!   each database the settings admit asks `launch_plan::Track` what to do.
//! - A scheduler started in a database without the extension exits at once, saying so;
//!   it is started there again after a committed CREATE EXTENSION (which pokes the
//!   launcher) or when the launcher restarts.
//! - The launcher exits with code 1 on SIGTERM: the postmaster restarts it after
//!   LAUNCHER_RESTART unless the server is shutting down (it starts no workers then).

use crate::core::launch_plan::{get_text, put_text, DatabaseFilter, Decision, Exit, Track};
use crate::pg::guc;
use pgrx::bgworkers::*;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const LAUNCHER_NAME: &str = "sync_engine launcher";
const LAUNCHER_RESTART: Duration = Duration::from_secs(5);
/// Databases the registry can track at once (beyond that: a WARNING, and no scheduler).
pub const MAX_DATABASES: usize = 128;
const NAME_LEN: usize = 64;
const TEXT_LEN: usize = 256;

/// What a database's scheduler is doing, as the `sync_workers` view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SchedulerState {
    /// The launcher registered it; the postmaster has not started it yet, or it is
    /// connecting.
    Starting = 1,
    Running = 2,
    /// It ended (terminated, error): the launcher starts it again soon.
    Stopped = 3,
    /// sync_engine is not installed in the database.
    NoExtension = 4,
    /// No background worker slot was free (max_worker_processes).
    WaitingForSlot = 5,
}

impl SchedulerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Starting,
            2 => Self::Running,
            4 => Self::NoExtension,
            5 => Self::WaitingForSlot,
            _ => Self::Stopped,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::NoExtension => "no extension",
            Self::WaitingForSlot => "waiting for a worker slot",
        }
    }
}

/// One database's entry in shared memory. `dboid == 0`: a free slot.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct DbSlot {
    dboid: u32,
    datname: [u8; NAME_LEN],
    state: u8,
    /// The scheduler's pid while it runs (cleared by its exit callback).
    pid: i32,
    /// Address of the scheduler's latch (in shared memory) while it runs.
    latch: usize,
    started_at: i64,
    last_tick: i64,
    last_error: [u8; TEXT_LEN],
    last_error_at: i64,
    last_exit: [u8; TEXT_LEN],
    starts: i64,
    start_failures: i64,
    /// Committed CREATE EXTENSIONs in the database.
    pokes: u32,
    /// The launcher asks the scheduler to exit (the database is no longer served).
    stop_requested: bool,
}

impl DbSlot {
    const FREE: DbSlot = DbSlot {
        dboid: 0,
        datname: [0; NAME_LEN],
        state: SchedulerState::Stopped as u8,
        pid: 0,
        latch: 0,
        started_at: 0,
        last_tick: 0,
        last_error: [0; TEXT_LEN],
        last_error_at: 0,
        last_exit: [0; TEXT_LEN],
        starts: 0,
        start_failures: 0,
        pokes: 0,
        stop_requested: false,
    };

    fn new(dboid: u32, datname: &str) -> Self {
        let mut s = Self::FREE;
        s.dboid = dboid;
        put_text(&mut s.datname, datname);
        s
    }
}

#[derive(Copy, Clone)]
#[repr(C)]
pub struct Registry {
    /// Address of the launcher's latch (0: no launcher has run yet).
    launcher_latch: usize,
    slots: [DbSlot; MAX_DATABASES],
}

unsafe impl PGRXSharedMemory for Registry {}

static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"sync_engine_registry") };

/// Set in `_PG_init` while the library is being preloaded (children of the postmaster
/// inherit it); false in a backend that loaded the library on its own, which has no
/// registry.
static PRELOADED: AtomicBool = AtomicBool::new(false);

fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

fn now_tz() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// From `_PG_init` (only while preloading): the registry and the launcher.
#[allow(unexpected_cfgs)] // pg_shmem_init! names every PostgreSQL version's feature
pub fn register() {
    PRELOADED.store(true, Ordering::Relaxed);
    pg_shmem_init!(
        REGISTRY = Registry {
            launcher_latch: 0,
            slots: [DbSlot::FREE; MAX_DATABASES],
        }
    );
    BackgroundWorkerBuilder::new(LAUNCHER_NAME)
        .set_type(LAUNCHER_NAME)
        .set_function("sync_engine_launcher_main")
        .set_library("sync_engine")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(LAUNCHER_RESTART))
        .load();
}

fn find(r: &Registry, dboid: u32) -> Option<usize> {
    r.slots.iter().position(|s| s.dboid == dboid)
}

/// The slot of `dboid`, taken from the free ones if it has none. None: the registry is
/// full.
fn find_or_add(r: &mut Registry, dboid: u32, datname: &str) -> Option<usize> {
    if let Some(i) = find(r, dboid) {
        return Some(i);
    }
    let i = r.slots.iter().position(|s| s.dboid == 0)?;
    r.slots[i] = DbSlot::new(dboid, datname);
    Some(i)
}

// --- the scheduler's side ------------------------------------------------------------

/// The registry slot of this scheduler process (usize::MAX: none).
static MY_SLOT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Called by a scheduler once connected to its database: records its pid, latch and
/// start in the database's slot and arranges for its exit to be recorded.
/// Returns false when the launcher no longer wants a scheduler there (no slot, or a
/// stop was requested): the scheduler then exits.
pub fn scheduler_attach() -> bool {
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    {
        let mut r = REGISTRY.exclusive();
        let Some(i) = find(&r, dboid) else {
            return false;
        };
        let s = &mut r.slots[i];
        if s.stop_requested {
            return false;
        }
        s.pid = unsafe { pg_sys::MyProcPid };
        s.latch = unsafe { pg_sys::MyLatch } as usize;
        s.state = SchedulerState::Running as u8;
        s.started_at = now_tz();
        s.last_tick = 0;
        MY_SLOT.store(i, Ordering::SeqCst);
    }
    unsafe { pg_sys::before_shmem_exit(Some(scheduler_exit_callback), pg_sys::Datum::from(0)) };
    true
}

fn with_my_slot(f: impl FnOnce(&mut DbSlot)) {
    let i = MY_SLOT.load(Ordering::SeqCst);
    if i == usize::MAX {
        return;
    }
    let mut r = REGISTRY.exclusive();
    let s = &mut r.slots[i];
    if s.pid == unsafe { pg_sys::MyProcPid } {
        f(s);
    }
}

/// Whether the scheduler should go on after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    Continue,
    /// The launcher asked it to exit (its database is no longer served).
    StopRequested,
}

/// Record a tick of the scheduler loop (the view's last_tick).
pub fn scheduler_tick() -> Tick {
    let mut stop = false;
    with_my_slot(|s| {
        s.last_tick = now_tz();
        stop = s.stop_requested;
    });
    if stop {
        Tick::StopRequested
    } else {
        Tick::Continue
    }
}

/// Record an error the scheduler reported (the view's last_error).
pub fn scheduler_error(message: &str) {
    with_my_slot(|s| {
        put_text(&mut s.last_error, message);
        s.last_error_at = now_tz();
    });
}

/// Record how the scheduler is about to end, just before it returns.
pub fn scheduler_exiting(state: SchedulerState, why: &str) {
    with_my_slot(|s| {
        s.state = state as u8;
        put_text(&mut s.last_exit, why);
    });
}

/// before_shmem_exit: the scheduler is gone (also after a FATAL error, SIGTERM's
/// included); a state still 'running' means it did not get to say why.
#[pg_guard]
unsafe extern "C-unwind" fn scheduler_exit_callback(_code: i32, _arg: pg_sys::Datum) {
    with_my_slot(|s| {
        if s.state == SchedulerState::Running as u8 {
            s.state = SchedulerState::Stopped as u8;
            let why = if crate::worker::stopping() {
                "terminated (SIGTERM); a run in progress was rolled back"
            } else {
                "exited with an error (see the server log)"
            };
            put_text(&mut s.last_exit, why);
        }
        s.pid = 0;
        s.latch = 0;
    });
    MY_SLOT.store(usize::MAX, Ordering::SeqCst);
    // a launcher that adopted this scheduler (it has no handle to be notified through)
    // learns of the exit now rather than at its next look
    wake_launcher();
}

fn wake_launcher() {
    let latch = REGISTRY.share().launcher_latch;
    if latch != 0 {
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

// --- SQL -------------------------------------------------------------------------------

/// Rows of the `sync_workers` view: one per database the launcher tracks (empty when
/// the library is not preloaded). Declared in sql/schema.sql.
#[allow(clippy::type_complexity)]
/// One row of `sync_worker_states()`: datid, datname, state, pid, started_at,
/// last_tick, last_error, last_error_at, last_exit, starts, start_failures.
pub type WorkerStateRow = (
    pg_sys::Oid,
    String,
    String,
    Option<i32>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    i64,
    i64,
);

/// The schedulers of every database, by name, from shared memory (empty when the
/// library is not preloaded).
pub fn worker_states() -> Vec<WorkerStateRow> {
    let slots: Vec<DbSlot> = if preloaded() {
        REGISTRY
            .share()
            .slots
            .iter()
            .filter(|s| s.dboid != 0)
            .copied()
            .collect()
    } else {
        vec![]
    };
    let ts = |t: i64| {
        (t != 0)
            .then(|| TimestampWithTimeZone::try_from(t).ok())
            .flatten()
    };
    let text = |b: &[u8]| Some(get_text(b)).filter(|t| !t.is_empty());
    let mut rows: Vec<_> = slots
        .iter()
        .map(|s| {
            (
                pg_sys::Oid::from(s.dboid),
                get_text(&s.datname),
                SchedulerState::from_u8(s.state).as_str().to_string(),
                (s.pid != 0).then_some(s.pid),
                ts(s.started_at),
                ts(s.last_tick),
                text(&s.last_error),
                ts(s.last_error_at),
                text(&s.last_exit),
                s.starts,
                s.start_failures,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

/// Called by the extension script: once the CREATE EXTENSION commits, count a poke for
/// this database and wake the launcher, which then starts its scheduler. Does nothing
/// when the library is not preloaded. Declared in sql/schema.sql.
pub fn wake_launcher_at_commit() {
    if !preloaded() {
        return;
    }
    let dboid = unsafe { pg_sys::MyDatabaseId };
    // the name now: no catalog lookups in a commit callback
    let name = unsafe {
        let p = pg_sys::get_database_name(dboid);
        if p.is_null() {
            return;
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
        {
            let mut r = REGISTRY.exclusive();
            if let Some(i) = find_or_add(&mut r, dboid.to_u32(), &name) {
                r.slots[i].pokes = r.slots[i].pokes.wrapping_add(1);
            }
        }
        wake_launcher();
    });
}

// --- the launcher ----------------------------------------------------------------------

/// A database as pg_database lists it.
struct Database {
    oid: u32,
    name: String,
}

/// The databases a scheduler may serve: connectable, not templates, not half-dropped.
/// Reads pg_database directly (a shared catalog: no database connection needed).
fn list_databases() -> Vec<Database> {
    let mut out = vec![];
    unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, lock);
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tup = pg_sys::systable_getnext(scan);
            if tup.is_null() {
                break;
            }
            let d = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tup);
            if !d.datallowconn
                || d.datistemplate
                || d.datconnlimit == pg_sys::DATCONNLIMIT_INVALID_DB
            {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(d.datname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            out.push(Database {
                oid: d.oid.to_u32(),
                name,
            });
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, lock);
    }
    out
}

/// The launcher's own memory of a database: the plan, and the handle of the scheduler
/// it registered (palloc'd in TopMemoryContext; freed once the worker is gone).
struct Local {
    plan: Track,
    handle: *mut pg_sys::BackgroundWorkerHandle,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            plan: Track::default(),
            handle: std::ptr::null_mut(),
        }
    }
}

impl Local {
    /// Whether the worker registered through `handle` may still be running; drops the
    /// handle once it is not.
    fn handle_alive(&mut self) -> bool {
        if self.handle.is_null() {
            return false;
        }
        let mut pid: pg_sys::pid_t = 0;
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        if status == pg_sys::BgwHandleStatus::BGWH_STOPPED {
            unsafe { pg_sys::pfree(self.handle.cast()) };
            self.handle = std::ptr::null_mut();
            false
        } else {
            true
        }
    }
}

/// Mark `db`'s slot 'starting' and register a dynamic scheduler for it. Returns its
/// handle, or None when no worker slot is free.
/// - the mark comes first: the scheduler may set its own 'running' before the
///   registration returns, and must not be overwritten
fn spawn_scheduler(db: &Database) -> Option<*mut pg_sys::BackgroundWorkerHandle> {
    set_slot(db.oid, |s| s.state = SchedulerState::Starting as u8);
    let builder =
        BackgroundWorkerBuilder::new(&format!("{} {}", crate::worker::WORKER_NAME, db.name))
            .set_type(crate::worker::WORKER_NAME)
            .set_function("sync_engine_scheduler_main")
            .set_library("sync_engine")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None) // the launcher restarts it
            .set_argument(Some(pg_sys::Datum::from(db.oid)))
            .set_notify_pid(unsafe { pg_sys::MyProcPid });
    let mut bgw: pg_sys::BackgroundWorker = (&builder).into();
    let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    let ok = unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut bgw, &mut handle);
        pg_sys::MemoryContextSwitchTo(old);
        ok
    };
    ok.then_some(handle)
}

/// Set once SIGTERM has arrived (pgrx's flag is reset by each look).
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stopping() -> bool {
    if BackgroundWorker::sigterm_received() {
        STOPPING.store(true, Ordering::SeqCst);
    }
    STOPPING.load(Ordering::SeqCst)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn sync_engine_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    REGISTRY.exclusive().launcher_latch = unsafe { pg_sys::MyLatch } as usize;
    log!("{LAUNCHER_NAME} started");
    let clock = Instant::now();
    let mut locals: HashMap<u32, Local> = HashMap::new();
    let mut warned_full = false;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let naptime_ms = guc::LAUNCHER_NAPTIME.get().max(1) as u64 * 1000;
        let mut wake_ms = naptime_ms;
        match crate::worker::in_txn(list_databases) {
            Ok(all) => {
                let filter = DatabaseFilter::from_settings(
                    guc::string(&guc::DATABASES).as_deref(),
                    guc::string(&guc::DATABASE).as_deref(),
                );
                let served: Vec<Database> =
                    all.into_iter().filter(|d| filter.admits(&d.name)).collect();
                let now_ms = clock.elapsed().as_millis() as u64;
                if let Some(next) =
                    reconcile(&mut locals, &served, now_ms, naptime_ms, &mut warned_full)
                {
                    wake_ms = wake_ms.min(next.saturating_sub(now_ms).max(50));
                }
            }
            Err(e) => warning!(
                "{LAUNCHER_NAME}: listing databases: {} ({})",
                e.message,
                e.sqlstate
            ),
        }
        if stopping() {
            break;
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(wake_ms))) || stopping() {
            break;
        }
    }
    log!("{LAUNCHER_NAME} exiting");
    // code 1: the postmaster starts the launcher again unless the server is shutting down
    unsafe { pg_sys::proc_exit(1) };
}

/// One pass over the served databases: start the schedulers the plan asks for, note
/// the ones that ended, ask the ones of databases no longer served to stop, and free
/// the slots of databases gone. Returns the earliest time a start is due, if any.
fn reconcile(
    locals: &mut HashMap<u32, Local>,
    served: &[Database],
    now_ms: u64,
    naptime_ms: u64,
    warned_full: &mut bool,
) -> Option<u64> {
    let mut next: Option<u64> = None;
    for db in served {
        let local = locals.entry(db.oid).or_default();
        let handle_alive = local.handle_alive();
        let (pid, state, pokes) = {
            let mut r = REGISTRY.exclusive();
            let Some(i) = find_or_add(&mut r, db.oid, &db.name) else {
                if !*warned_full {
                    warning!(
                        "{LAUNCHER_NAME}: more than {MAX_DATABASES} databases to serve; database \"{}\" and further ones get no scheduler (limit the set with sync_engine.databases)",
                        db.name
                    );
                    *warned_full = true;
                }
                continue;
            };
            let s = &mut r.slots[i];
            s.stop_requested = false;
            put_text(&mut s.datname, &db.name); // ALTER DATABASE ... RENAME
            (s.pid, SchedulerState::from_u8(s.state), s.pokes)
        };
        let alive = handle_alive || pid != 0;
        if !alive && local.plan.running {
            let exit = if state == SchedulerState::NoExtension {
                Exit::NoExtension
            } else {
                Exit::Ended
            };
            if state == SchedulerState::Starting {
                set_slot(db.oid, |s| {
                    s.state = SchedulerState::Stopped as u8;
                    put_text(
                        &mut s.last_exit,
                        "ended before it could start (see the server log)",
                    );
                });
            }
            local.plan.ended(exit, now_ms);
        } else if alive && !local.plan.running {
            local.plan.started(pokes, now_ms); // started by an earlier launcher
        }
        match local.plan.decide(alive, pokes, now_ms) {
            Decision::Keep | Decision::WaitForCreateExtension => {}
            Decision::StartAt(t) => next = Some(next.map_or(t, |n| n.min(t))),
            Decision::StartNow => match spawn_scheduler(db) {
                Some(h) => {
                    local.handle = h;
                    let failed_before = local.plan.failed_starts;
                    local.plan.started(pokes, now_ms);
                    set_slot(db.oid, |s| s.starts += 1);
                    if failed_before > 0 {
                        log!(
                            "{LAUNCHER_NAME}: started the scheduler of database \"{}\" after {failed_before} attempts found no free worker slot",
                            db.name
                        );
                    }
                }
                None => {
                    let msg = format!(
                        "no background worker slot is free for the scheduler of database \"{}\" (max_worker_processes = {}); retrying every {} s and whenever a scheduler exits",
                        db.name,
                        unsafe { pg_sys::max_worker_processes },
                        naptime_ms / 1000
                    );
                    set_slot(db.oid, |s| {
                        s.state = SchedulerState::WaitingForSlot as u8;
                        s.start_failures += 1;
                        put_text(&mut s.last_error, &msg);
                        s.last_error_at = now_tz();
                    });
                    if local.plan.start_failed() {
                        warning!("{LAUNCHER_NAME}: {msg}");
                    }
                }
            },
        }
    }

    // databases no longer served (dropped, excluded by the settings, made a template)
    let gone: Vec<(u32, i32, usize)> = {
        let r = REGISTRY.share();
        r.slots
            .iter()
            .filter(|s| s.dboid != 0 && !served.iter().any(|d| d.oid == s.dboid))
            .map(|s| (s.dboid, s.pid, s.latch))
            .collect()
    };
    for (oid, pid, latch) in gone {
        let handle_alive = locals.get_mut(&oid).is_some_and(|l| l.handle_alive());
        if pid != 0 || handle_alive {
            set_slot(oid, |s| s.stop_requested = true);
            if latch != 0 {
                unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
            }
        } else {
            locals.remove(&oid);
            let mut r = REGISTRY.exclusive();
            if let Some(i) = find(&r, oid) {
                r.slots[i] = DbSlot::FREE;
            }
        }
    }
    next
}

fn set_slot(dboid: u32, f: impl FnOnce(&mut DbSlot)) {
    let mut r = REGISTRY.exclusive();
    if let Some(i) = find(&r, dboid) {
        f(&mut r.slots[i]);
    }
}
