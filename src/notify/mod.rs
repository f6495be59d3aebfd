//! Notifications: events in an outbox, delivered as signed webhooks and to a Redis
//! Stream by a background worker of their own.
//!
//! - Emission (sql/notify.sql): AFTER triggers on sync_runs and sync_conflicts call
//!   `sync_emit`, which writes the event to `sync_outbox` and a `sync_deliveries` row
//!   per subscribed webhook, in the writer's transaction: a rolled-back run, push or
//!   resolution leaves no event. Nothing is written when nobody wants the type (no
//!   webhook subscribes to it and Redis is not configured). `changes.available` is
//!   written by the notifier (`available`), `delivery.dead` when it records a death.
//! - Delivery (`deliver`): the notifier, one per database, started by that database's
//!   scheduler while there is something to deliver. Its main thread does all SPI, in
//!   short transactions; HTTP requests run on per-receiver threads (`http`), Redis on
//!   one thread (`stream`); none of them calls into PostgreSQL.
//! - Pure logic: `schedule` (retries), `sign` (Standard Webhooks), `validate`.
//! - `api`: the SQL functions.

pub mod available;
pub mod deliver;
pub mod http;
pub mod schedule;
pub mod settings;
pub mod sign;
pub mod stream;
pub mod validate;
pub mod webhooks;

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::sync::atomic::{AtomicBool, Ordering};

/// Databases with a notifier at once (as the launcher's registry).
const MAX_NOTIFIERS: usize = crate::worker::launcher::MAX_DATABASES;

/// A running notifier: its database, pid and latch. `dboid == 0`: free.
#[derive(Copy, Clone)]
#[repr(C)]
pub struct NotifierSlot {
    dboid: u32,
    pid: i32,
    latch: usize,
}

#[derive(Copy, Clone)]
#[repr(C)]
pub struct Notifiers {
    slots: [NotifierSlot; MAX_NOTIFIERS],
}

unsafe impl PGRXSharedMemory for Notifiers {}

static NOTIFIERS: PgLwLock<Notifiers> = unsafe { PgLwLock::new(c"sync_engine_notifiers") };
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// From `_PG_init`: the notifiers' shared memory, when preloading.
#[allow(unexpected_cfgs)] // pg_shmem_init! names every PostgreSQL version's feature
pub fn init() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    PRELOADED.store(true, Ordering::Relaxed);
    pg_shmem_init!(
        NOTIFIERS = Notifiers {
            slots: [NotifierSlot {
                dboid: 0,
                pid: 0,
                latch: 0
            }; MAX_NOTIFIERS],
        }
    );
}

fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Claim this database's notifier slot for the calling process. False when another
/// live notifier holds it (or the table is full): the caller exits.
pub(crate) fn claim_slot() -> bool {
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let me = unsafe { pg_sys::MyProcPid };
    let mut n = NOTIFIERS.exclusive();
    if n.slots
        .iter()
        .any(|s| s.dboid == dboid && s.pid != 0 && s.pid != me)
    {
        return false;
    }
    let Some(i) = n
        .slots
        .iter()
        .position(|s| s.dboid == dboid || s.dboid == 0)
    else {
        return false;
    };
    n.slots[i] = NotifierSlot {
        dboid,
        pid: me,
        latch: unsafe { pg_sys::MyLatch } as usize,
    };
    drop(n);
    unsafe { pg_sys::before_shmem_exit(Some(release_slot), pg_sys::Datum::from(0)) };
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn release_slot(_code: i32, _arg: pg_sys::Datum) {
    let me = unsafe { pg_sys::MyProcPid };
    let mut n = NOTIFIERS.exclusive();
    for s in n.slots.iter_mut().filter(|s| s.pid == me) {
        *s = NotifierSlot {
            dboid: 0,
            pid: 0,
            latch: 0,
        };
    }
}

/// Whether a notifier runs for this database now.
pub(crate) fn notifier_running() -> bool {
    if !preloaded() {
        return false;
    }
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    NOTIFIERS
        .share()
        .slots
        .iter()
        .any(|s| s.dboid == dboid && s.pid != 0)
}

/// Set the latch of this database's notifier, if one runs.
fn wake_now(dboid: u32) {
    let latch = NOTIFIERS
        .share()
        .slots
        .iter()
        .find(|s| s.dboid == dboid && s.pid != 0)
        .map(|s| s.latch);
    if let Some(l) = latch.filter(|&l| l != 0) {
        unsafe { pg_sys::SetLatch(l as *mut pg_sys::Latch) };
    }
}

/// A wake-up is already arranged for the end of this transaction.
static WAKE_ARRANGED: AtomicBool = AtomicBool::new(false);

/// Once the current transaction commits, wake this database's notifier (at most one
/// wake-up per transaction). Does nothing without preloading (no notifier either).
pub fn wake_at_commit() {
    if !preloaded() || WAKE_ARRANGED.swap(true, Ordering::SeqCst) {
        return;
    }
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
        WAKE_ARRANGED.store(false, Ordering::SeqCst);
        wake_now(dboid);
    });
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, || {
        WAKE_ARRANGED.store(false, Ordering::SeqCst);
    });
}

/// Whether `sync_engine.redis_url` is set: events then go to the stream too. Read in C
/// because the setting itself is readable by superusers only. Declared in
/// sql/notify.sql.
pub fn redis_enabled() -> bool {
    settings::redis_url().is_some()
}

/// Pruning statements for the worker (`crate::worker::prune`): delivered deliveries
/// older than `sync_engine.deliveries_retention`, then events of that age with no
/// delivery left and nothing left to stream (or no Redis to stream to). Each deletes
/// at most `batch` rows.
pub fn prune_sql(schema: &str, batch: i64) -> Vec<String> {
    let hours = settings::DELIVERIES_RETENTION_HOURS.get();
    let streaming = settings::redis_url().is_some();
    vec![
        format!(
            "DELETE FROM {schema}.sync_deliveries WHERE id IN (
                SELECT id FROM {schema}.sync_deliveries
                 WHERE status = 'delivered' AND delivered_at < now() - make_interval(hours => {hours})
                 LIMIT {batch})"
        ),
        format!(
            "DELETE FROM {schema}.sync_outbox WHERE id IN (
                SELECT e.id FROM {schema}.sync_outbox e
                 WHERE e.created_at < now() - make_interval(hours => {hours})
                   AND (NOT e.stream_pending OR NOT {streaming})
                   AND NOT EXISTS (SELECT 1 FROM {schema}.sync_deliveries d WHERE d.event_id = e.id)
                 LIMIT {batch})"
        ),
    ]
}

/// Start a helper thread (HTTP or Redis I/O) with every signal blocked, so that the
/// server's signal handlers (SIGALRM for timeouts, SIGTERM, SIGHUP, latch SIGUSR1) only
/// ever run on the main thread. Threads it starts (e.g. DNS resolvers) inherit the mask.
pub fn spawn_without_signals<F>(f: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() + Send + 'static,
{
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut before);
        let handle = std::thread::spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        handle
    }
}
