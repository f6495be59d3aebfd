//! The buffer of taken records and the hooks that write it: at the end of each
//! statement, after a utility statement, before commit; dropped with an aborted
//! subtransaction.

use super::*;

/// A change record taken (its id drawn, its time set) but not yet in change_log: the
/// trigger collects them and writes them many at a time (see `flush`).
pub(super) struct Pending {
    /// the subtransaction whose writes it records (moved to the parent when that
    /// commits): it is written only while that subtransaction is the current one, and
    /// dropped when it aborts
    pub(super) subxid: pg_sys::SubTransactionId,
    pub(super) log: LogRel,
    pub(super) id: pg_sys::Datum,
    pub(super) changed_at: pg_sys::TimestampTz,
    pub(super) system: String,
    pub(super) entity_type: String,
    pub(super) origin: Option<String>,
    pub(super) rec: rowjson::ChangeRecord,
}

/// The values of one change record, as written.
pub(super) struct RecordRef<'a> {
    pub(super) id: pg_sys::Datum,
    pub(super) changed_at: pg_sys::TimestampTz,
    pub(super) system: &'a str,
    pub(super) entity_type: &'a str,
    pub(super) origin: Option<&'a str>,
    pub(super) rec: &'a rowjson::ChangeRecord,
}

impl Pending {
    pub(super) fn values(&self) -> RecordRef<'_> {
        RecordRef {
            id: self.id,
            changed_at: self.changed_at,
            system: &self.system,
            entity_type: &self.entity_type,
            origin: self.origin.as_deref(),
            rec: &self.rec,
        }
    }
}

/// Records written to change_log at once, at most, and the bytes of taken records that
/// make a write happen sooner: they bound the trigger's memory in a statement that
/// changes millions of rows, or a thousand rows of a megabyte each.
pub(super) const FLUSH_AT: usize = 1000;

pub(super) const FLUSH_BYTES: usize = 16 << 20;

/// The taken records, in the order they were taken, and their size.
#[derive(Default)]
pub(super) struct Buffer {
    pub(super) recs: Vec<Pending>,
    pub(super) bytes: usize,
    /// the statement (transaction, command) that took the last record
    pub(super) last: Option<(pg_sys::TransactionId, pg_sys::CommandId)>,
}

impl Pending {
    pub(super) fn size(&self) -> usize {
        let r = &self.rec;
        std::mem::size_of::<Pending>()
            + r.entity_id.len()
            + r.fields.len()
            + r.fields_jsonb.as_ref().map_or(0, Vec::len)
            + r.checksum.as_ref().map_or(0, String::len)
    }
}

/// Write the taken records of the current subtransaction (`all`: every taken record,
/// at commit) to change_log, in the order they were taken. Records of an enclosing
/// subtransaction wait until it is the current one again: written now, they would be
/// undone with this one, while the writes they record stay.
pub(crate) fn flush(all: bool) {
    let batch: Vec<Pending> = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.recs.is_empty() {
            return Vec::new();
        }
        let cut = if all {
            0
        } else {
            let cur = unsafe { pg_sys::GetCurrentSubTransactionId() };
            p.recs
                .iter()
                .rposition(|x| x.subxid != cur)
                .map_or(0, |i| i + 1)
        };
        let batch = p.recs.split_off(cut);
        p.bytes -= batch.iter().map(Pending::size).sum::<usize>();
        batch
    });
    if batch.is_empty() {
        return;
    }
    // a batch's tuples and index entries are made in a context of their own, deleted
    // after (on an ERROR too: the guard's drop switches back first); one record's go to
    // the caller's, which is always short-lived (the trigger's per-row context, the
    // statement's portal or SPI call, the transaction)
    let _cx = (batch.len() > 1).then(|| unsafe { ScratchContext::enter() });
    for group in batch.chunk_by(|a, b| a.log.relid == b.log.relid) {
        let recs: Vec<RecordRef> = group.iter().map(Pending::values).collect();
        unsafe { write_records(&group[0].log, &recs) };
    }
}

/// A memory context made current until the guard is dropped, then deleted.
pub(super) struct ScratchContext {
    pub(super) cx: pg_sys::MemoryContext,
    pub(super) prev: pg_sys::MemoryContext,
}

impl ScratchContext {
    pub(super) unsafe fn enter() -> Self {
        let cx = pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"sync_engine change_log write".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let prev = pg_sys::MemoryContextSwitchTo(cx);
        ScratchContext { cx, prev }
    }
}

impl Drop for ScratchContext {
    fn drop(&mut self) {
        unsafe {
            pg_sys::MemoryContextSwitchTo(self.prev);
            pg_sys::MemoryContextDelete(self.cx);
        }
    }
}

pub(super) static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;

pub(super) static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Once per process (from `_PG_init`): taken change records are written at the end of
/// every statement (ExecutorEnd, and after utility statements such as COPY) and
/// before commit or PREPARE; those of an aborted (sub)transaction are dropped.
pub fn init() {
    // preloaded: every backend forks with the hooks in place
    HOOKS_LIVE.set(unsafe { pg_sys::process_shared_preload_libraries_in_progress });
    unsafe {
        PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(executor_end);
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

pub(super) fn flush_if_pending() {
    HOOKS_LIVE.set(true);
    // not while the transaction is failing (nothing may be written), and not in
    // parallel mode (a statement ending inside a parallel query: the records wait for
    // the statement around it)
    if PENDING.with(|p| !p.borrow().recs.is_empty())
        && unsafe { pg_sys::IsTransactionState() && !pg_sys::IsInParallelMode() }
    {
        flush(false);
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn executor_end(qd: *mut pg_sys::QueryDesc) {
    flush_if_pending();
    match PREV_EXECUTOR_END {
        Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(qd)),
        None => pg_sys::standard_ExecutorEnd(qd),
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    match PREV_PROCESS_UTILITY {
        Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
            prev(pstmt, query, read_only_tree, context, params, env, dest, qc)
        }),
        None => pg_sys::standard_ProcessUtility(
            pstmt,
            query,
            read_only_tree,
            context,
            params,
            env,
            dest,
            qc,
        ),
    }
    // COPY FROM fires row triggers without an executor of its own
    flush_if_pending();
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            // writing one (through SPI, into a change_log with triggers) may take more
            while PENDING.with(|p| !p.borrow().recs.is_empty()) {
                flush(true);
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => {
            let left = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()).recs.len());
            if left > 0 {
                warning!("sync_engine: {left} change record(s) taken after the commit began were not written");
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            crate::capture::origin::clear();
            PENDING.with(|p| *p.borrow_mut() = Buffer::default())
        }
        _ => {}
    }
}

#[pg_guard]
pub(super) unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        // its writes are undone: so are their records (and those of its children)
        SUBXACT_EVENT_ABORT_SUB => PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.recs.retain(|x| x.subxid < my);
            p.bytes = p.recs.iter().map(Pending::size).sum();
        }),
        // its writes are now the parent's
        SUBXACT_EVENT_COMMIT_SUB => PENDING.with(|p| {
            for x in p.borrow_mut().recs.iter_mut().filter(|x| x.subxid >= my) {
                x.subxid = parent;
            }
        }),
        _ => {}
    }
}
