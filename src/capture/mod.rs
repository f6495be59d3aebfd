//! The capture trigger: one `change_log` row per inserted, updated or deleted row.
//!
//! Hot path: it runs inside every write to a registered table, so it caches per
//! relation the output functions of its columns and builds the record (and its jsonb
//! image) itself. A record is *taken* in the trigger (its id drawn, its time set) and
//! written with others straight into change_log's heap and indexes: a thousand at a
//! time, at the end of the statement (ExecutorEnd, or after a utility statement such
//! as COPY), and before commit. Records of a subtransaction are written only while it
//! is the current one, and dropped when it aborts, with the writes they record. When
//! change_log does not have its usual shape, records go in through SPI instead. The
//! pure part (JSON text, diff record, checksum) is in `rowjson`.

use crate::core::rowjson::{self, ColKind, ColValue};
use crate::pg::fail;
use crate::pg::quote::quote_ident;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

pub mod changes;
pub mod endpoints;
pub mod origin;

pub const TRIGGER_NAME: &str = "sync_engine_capture";

struct Col {
    name: String,
    typid: pg_sys::Oid,
    dropped: bool,
    byval: bool,
    len: i16,
    kind: ColKind,
    out: Box<pg_sys::FmgrInfo>,
}

struct RelInfo {
    cols: Vec<Col>,
    /// per column: its JSON kind, and false when dropped (what rowjson::Cols needs)
    kinds: Vec<ColKind>,
    live: Vec<bool>,
    /// column order sorted by name, for the canonical checksum form
    sorted: Vec<usize>,
}

/// Where change records go when written directly (no SPI, no executor): the
/// change_log table, its id sequence, for one extension schema.
#[derive(Clone)]
struct LogRel {
    schema: std::rc::Rc<str>,
    relid: pg_sys::Oid,
    seqid: pg_sys::Oid,
}

/// change_log's columns, in order, as sql/schema.sql creates them.
const LOG_COLUMNS: [&str; 10] = [
    "id",
    "system",
    "entity_type",
    "entity_id",
    "operation",
    "fields",
    "changed_at",
    "txid",
    "origin",
    "checksum",
];

/// A change record taken (its id drawn, its time set) but not yet in change_log: the
/// trigger collects them and writes them many at a time (see `flush`).
struct Pending {
    /// the subtransaction whose writes it records (moved to the parent when that
    /// commits): it is written only while that subtransaction is the current one, and
    /// dropped when it aborts
    subxid: pg_sys::SubTransactionId,
    log: LogRel,
    id: pg_sys::Datum,
    changed_at: pg_sys::TimestampTz,
    system: String,
    entity_type: String,
    origin: Option<String>,
    rec: rowjson::ChangeRecord,
}

/// The values of one change record, as written.
struct RecordRef<'a> {
    id: pg_sys::Datum,
    changed_at: pg_sys::TimestampTz,
    system: &'a str,
    entity_type: &'a str,
    origin: Option<&'a str>,
    rec: &'a rowjson::ChangeRecord,
}

impl Pending {
    fn values(&self) -> RecordRef<'_> {
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
const FLUSH_AT: usize = 1000;
const FLUSH_BYTES: usize = 16 << 20;

/// The taken records, in the order they were taken, and their size.
#[derive(Default)]
struct Buffer {
    recs: Vec<Pending>,
    bytes: usize,
    /// the statement (transaction, command) that took the last record
    last: Option<(pg_sys::TransactionId, pg_sys::CommandId)>,
}

impl Pending {
    fn size(&self) -> usize {
        let r = &self.rec;
        std::mem::size_of::<Pending>()
            + r.entity_id.len()
            + r.fields.len()
            + r.fields_jsonb.as_ref().map_or(0, Vec::len)
            + r.checksum.as_ref().map_or(0, String::len)
    }
}

thread_local! {
    static PENDING: RefCell<Buffer> = RefCell::new(Buffer::default());
    /// whether the hooks that write taken records at the end of a statement are in
    /// place for every statement: not yet in a backend that loaded the library in the
    /// middle of a statement (e.g. a COPY), which writes each record at once until one
    /// of the hooks has run
    static HOOKS_LIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static RELS: RefCell<HashMap<pg_sys::Oid, RelInfo>> = RefCell::new(HashMap::new());
    static LOGREL: RefCell<Option<Option<LogRel>>> = const { RefCell::new(None) };
    static PLAN: RefCell<Option<(String, pg_sys::SPIPlanPtr)>> = const { RefCell::new(None) };
}

unsafe fn att_name(att: &pg_sys::FormData_pg_attribute) -> &str {
    CStr::from_ptr(att.attname.data.as_ptr())
        .to_str()
        .unwrap_or("?")
}

unsafe fn attr(tupdesc: pg_sys::TupleDesc, i: usize) -> &'static pg_sys::FormData_pg_attribute {
    &*(*tupdesc).attrs.as_ptr().add(i)
}

/// Does the cached info still describe this tuple descriptor (ALTER TABLE may change it)?
unsafe fn still_valid(info: &RelInfo, tupdesc: pg_sys::TupleDesc) -> bool {
    let natts = (*tupdesc).natts as usize;
    if info.cols.len() != natts {
        return false;
    }
    (0..natts).all(|i| {
        let a = attr(tupdesc, i);
        let c = &info.cols[i];
        c.typid == a.atttypid && c.dropped == a.attisdropped && c.name == att_name(a)
    })
}

unsafe fn build_info(tupdesc: pg_sys::TupleDesc) -> RelInfo {
    let natts = (*tupdesc).natts as usize;
    let mut cols = Vec::with_capacity(natts);
    for i in 0..natts {
        let a = attr(tupdesc, i);
        let mut out: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
        if !a.attisdropped {
            let mut foid = pg_sys::InvalidOid;
            let mut isvarlena = false;
            pg_sys::getTypeOutputInfo(a.atttypid, &mut foid, &mut isvarlena);
            pg_sys::fmgr_info_cxt(foid, out.as_mut(), pg_sys::TopMemoryContext);
        }
        cols.push(Col {
            name: att_name(a).to_string(),
            typid: a.atttypid,
            dropped: a.attisdropped,
            byval: a.attbyval,
            len: a.attlen,
            kind: kind_of(a.atttypid),
            out,
        });
    }
    let mut sorted: Vec<usize> = (0..natts).filter(|&i| !cols[i].dropped).collect();
    sorted.sort_by(|&a, &b| cols[a].name.cmp(&cols[b].name));
    RelInfo {
        kinds: cols.iter().map(|c| c.kind).collect(),
        live: cols.iter().map(|c| !c.dropped).collect(),
        cols,
        sorted,
    }
}

fn kind_of(typid: pg_sys::Oid) -> ColKind {
    match typid {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::OIDOID => ColKind::Number,
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID | pg_sys::NUMERICOID => ColKind::Number,
        pg_sys::BOOLOID => ColKind::Bool,
        pg_sys::JSONOID | pg_sys::JSONBOID => ColKind::Json,
        _ => ColKind::Text,
    }
}

unsafe fn output(col: &Col, d: pg_sys::Datum) -> String {
    let p = pg_sys::OutputFunctionCall(col.out.as_ref() as *const _ as *mut _, d);
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    pg_sys::pfree(p.cast());
    s
}

/// Binary image equality (what PostgreSQL's datumIsEqual does). Different images may
/// still print the same, which the caller checks on the text.
unsafe fn datum_image_eq(a: pg_sys::Datum, b: pg_sys::Datum, byval: bool, len: i16) -> bool {
    if byval {
        return a == b;
    }
    let (pa, pb) = (a.cast_mut_ptr::<u8>(), b.cast_mut_ptr::<u8>());
    let (la, lb) = match len {
        -1 => (
            pgrx::varlena::varsize_any(pa as *const pg_sys::varlena),
            pgrx::varlena::varsize_any(pb as *const pg_sys::varlena),
        ),
        -2 => (
            CStr::from_ptr(pa as *const std::ffi::c_char)
                .to_bytes()
                .len(),
            CStr::from_ptr(pb as *const std::ffi::c_char)
                .to_bytes()
                .len(),
        ),
        n => (n as usize, n as usize),
    };
    la == lb && std::slice::from_raw_parts(pa, la) == std::slice::from_raw_parts(pb, lb)
}

struct Deformed {
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

unsafe fn deform(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, natts: usize) -> Deformed {
    let mut values = vec![pg_sys::Datum::from(0usize); natts];
    let mut nulls = vec![true; natts];
    pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
    Deformed { values, nulls }
}

unsafe fn row_values(info: &RelInfo, row: &Deformed) -> Vec<ColValue> {
    info.cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.dropped || row.nulls[i] {
                None
            } else {
                Some(output(c, row.values[i]))
            }
        })
        .collect()
}

unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
        s.as_ptr().cast(),
        s.len() as i32,
    ))
}

const INSERT_SQL: &str = "INSERT INTO {schema}.change_log \
     (system, entity_type, entity_id, operation, fields, origin, checksum, changed_at) \
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, \
             COALESCE(timestamptz '2000-01-01 00:00:00+00' + $8::bigint * interval '1 microsecond', clock_timestamp()))";

/// Find change_log and its sequence in `schema`; None when the table does not have
/// the expected shape (then records go through SPI, which any shape accepts).
unsafe fn log_rel(schema: &str) -> Option<LogRel> {
    if let Some(cached) = LOGREL.with(|l| l.borrow().clone()) {
        match cached {
            // insert_direct notices a change_log that is gone and forgets it
            Some(l) if &*l.schema == schema => return Some(l),
            None => return None,
            _ => {}
        }
    }
    let cschema = CString::new(schema).ok()?;
    let nsp = pg_sys::get_namespace_oid(cschema.as_ptr(), true);
    let found = (|| {
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let relid = pg_sys::get_relname_relid(c"change_log".as_ptr(), nsp);
        let seqid = pg_sys::get_relname_relid(c"change_log_id_seq".as_ptr(), nsp);
        if relid == pg_sys::InvalidOid || seqid == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
        let ok = plain_shape(rel)
            && plain_indexes(rel).is_some_and(|ix| {
                for (irel, _) in ix {
                    pg_sys::index_close(irel, pg_sys::NoLock as i32);
                }
                true
            });
        // locks kept to commit, as a write takes them anyway
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        ok.then(|| LogRel {
            schema: schema.into(),
            relid,
            seqid,
        })
    })();
    LOGREL.with(|l| *l.borrow_mut() = Some(found.clone()));
    found
}

/// One change record on its way into change_log.
struct Change<'a> {
    system: &'a str,
    entity_type: &'a str,
    origin: Option<&'a str>,
    rec: rowjson::ChangeRecord,
}

/// Does the open change_log still have the shape the direct path writes (checked on
/// every call: ALTER TABLE, a new trigger or rule, or a new index may come at any time)?
unsafe fn plain_shape(rel: pg_sys::Relation) -> bool {
    let td = (*rel).rd_att;
    (*td).natts as usize == LOG_COLUMNS.len()
        && (0..LOG_COLUMNS.len()).all(|i| {
            let a = attr(td, i);
            !a.attisdropped && att_name(a) == LOG_COLUMNS[i]
        })
        && !(*(*rel).rd_rel).relhastriggers
        && !(*(*rel).rd_rel).relhasrules
}

/// Open change_log's indexes if every one is a plain, ready, immediate, non-partial
/// index on columns (what the direct path can maintain correctly); else None.
unsafe fn plain_indexes(
    rel: pg_sys::Relation,
) -> Option<Vec<(pg_sys::Relation, *mut pg_sys::IndexInfo)>> {
    let list = pg_sys::RelationGetIndexList(rel);
    let n = if list.is_null() {
        0
    } else {
        (*list).length as usize
    };
    let mut out = Vec::with_capacity(n);
    let mut ok = true;
    for i in 0..n {
        let ioid = (*(*list).elements.add(i)).oid_value;
        let irel = pg_sys::index_open(ioid, pg_sys::RowExclusiveLock as i32);
        let info = pg_sys::BuildIndexInfo(irel);
        let idx = &*(*irel).rd_index;
        out.push((irel, info));
        if !(*info).ii_Expressions.is_null()
            || !(*info).ii_Predicate.is_null()
            || !(*info).ii_ReadyForInserts
            || !(*info).ii_ExclusionOps.is_null()
            || !idx.indimmediate
            || !idx.indislive
        {
            ok = false;
        }
    }
    if ok {
        Some(out)
    } else {
        for (irel, _) in out {
            pg_sys::index_close(irel, pg_sys::NoLock as i32);
        }
        None
    }
}

/// numeric_in(text) of a JSON number, appended as its varlena bytes (the image jsonb
/// embeds for a number; see rowjson::fields_jsonb).
pub(crate) fn numeric_image(text: &str, out: &mut Vec<u8>) {
    let c = CString::new(text).expect("a JSON number has no NUL");
    unsafe {
        let d = pgrx::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(c.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        )
        .expect("numeric_in returns a value");
        let p = d.cast_mut_ptr::<pg_sys::varlena>();
        let len = pgrx::varlena::varsize_any(p);
        out.extend_from_slice(std::slice::from_raw_parts(p.cast::<u8>(), len));
        pg_sys::pfree(p.cast());
    }
}

/// A datum (in the current memory context) holding a varlena image made in Rust.
pub(crate) fn image_datum(img: &[u8]) -> pg_sys::Datum {
    unsafe {
        let p = pg_sys::palloc(img.len()).cast::<u8>();
        std::ptr::copy_nonoverlapping(img.as_ptr(), p, img.len());
        pg_sys::Datum::from(p)
    }
}

/// A jsonb parameter written straight from a JSON object (no text, no parse).
pub(crate) struct JsonbObject<'a>(pub &'a serde_json::Map<String, serde_json::Value>);

impl pgrx::IntoDatum for JsonbObject<'_> {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        match crate::core::jsonb::object_image(self.0, &mut numeric_image) {
            Some(img) => Some(image_datum(&img)),
            // too long for jsonb: let jsonb_in say so
            None => {
                Some(unsafe { jsonb_datum(None, &serde_json::to_string(self.0).expect("JSON")) })
            }
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

/// A jsonb datum: the prebuilt image when there is one,
/// else the JSON text parsed by jsonb_in.
pub(crate) unsafe fn jsonb_datum(image: Option<&[u8]>, text: &str) -> pg_sys::Datum {
    if let Some(img) = image {
        return image_datum(img);
    }
    let cfields = CString::new(text).expect("no NUL in JSON");
    pgrx::direct_function_call_as_datum(
        pg_sys::jsonb_in,
        &[Some(pg_sys::Datum::from(cfields.as_ptr()))],
    )
    .expect("jsonb")
}

/// Write change records straight into change_log's heap (several to a page and to a
/// WAL record) and its indexes: what an INSERT would do, without parsing, planning or
/// starting an executor. Returns false (having written nothing) when change_log is gone
/// or not in the plain shape this path handles; the caller then goes through SPI.
unsafe fn insert_direct(relid: pg_sys::Oid, recs: &[RecordRef<'_>]) -> bool {
    let rel = pg_sys::try_table_open(relid, pg_sys::RowExclusiveLock as i32);
    if rel.is_null() {
        // dropped (e.g. the extension was re-created): look it up again next time
        LOGREL.with(|l| *l.borrow_mut() = None);
        return false;
    }
    let indexes = if plain_shape(rel) {
        plain_indexes(rel)
    } else {
        None
    };
    let Some(indexes) = indexes else {
        // the lock is kept to commit either way, as the SPI insert will take it too
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        // changed since it was looked at: the next record looks again (and then goes
        // through the kept SPI plan)
        LOGREL.with(|l| *l.borrow_mut() = None);
        return false;
    };
    let td = (*rel).rd_att;
    // the slots of several records get a copy that is not reference-counted: making and
    // dropping a slot then neither pins the relation's descriptor nor tells the
    // resource owner
    let slot_td = if recs.len() > 1 {
        pg_sys::CreateTupleDescCopy(td)
    } else {
        td
    };
    let txid = pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value);
    let mut slots: Vec<*mut pg_sys::TupleTableSlot> = Vec::with_capacity(recs.len());
    for p in recs {
        let r = p.rec;
        let mut values = [
            p.id,
            text_datum(p.system),
            text_datum(p.entity_type),
            text_datum(&r.entity_id),
            text_datum(r.operation),
            jsonb_datum(r.fields_jsonb.as_deref(), &r.fields),
            pg_sys::Datum::from(p.changed_at),
            txid,
            p.origin
                .map_or(pg_sys::Datum::from(0usize), |o| text_datum(o)),
            r.checksum
                .as_deref()
                .map_or(pg_sys::Datum::from(0usize), |c| text_datum(c)),
        ];
        let mut nulls = [
            false,
            false,
            false,
            false,
            false,
            false,
            false,
            false,
            p.origin.is_none(),
            r.checksum.is_none(),
        ];
        let tuple = pg_sys::heap_form_tuple(td, values.as_mut_ptr(), nulls.as_mut_ptr());
        let slot = pg_sys::MakeSingleTupleTableSlot(slot_td, &pg_sys::TTSOpsHeapTuple);
        pg_sys::ExecStoreHeapTuple(tuple, slot, true);
        slots.push(slot);
    }
    if let [slot] = slots[..] {
        // one record (a single-row statement): the plain insert costs less
        let tuple = (*(slot as *mut pg_sys::HeapTupleTableSlot)).tuple;
        pg_sys::simple_heap_insert(rel, tuple);
        (*slot).tts_tid = (*tuple).t_self;
    } else {
        pg_sys::heap_multi_insert(
            rel,
            slots.as_mut_ptr(),
            slots.len() as i32,
            pg_sys::GetCurrentCommandId(true),
            0,
            std::ptr::null_mut(),
        );
    }
    for (irel, info) in indexes {
        let check = if (*(*irel).rd_index).indisunique {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
        } else {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
        };
        for &slot in &slots {
            let mut ivals = [pg_sys::Datum::from(0usize); pg_sys::INDEX_MAX_KEYS as usize];
            let mut inulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
            pg_sys::FormIndexDatum(
                info,
                slot,
                std::ptr::null_mut(),
                ivals.as_mut_ptr(),
                inulls.as_mut_ptr(),
            );
            pg_sys::index_insert(
                irel,
                ivals.as_mut_ptr(),
                inulls.as_mut_ptr(),
                &mut (*slot).tts_tid,
                rel,
                check,
                false,
                info,
            );
        }
        pg_sys::index_close(irel, pg_sys::NoLock as i32);
    }
    for slot in slots {
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
    // like the executor: the locks are held until the transaction ends
    pg_sys::table_close(rel, pg_sys::NoLock as i32);
    true
}

/// Write records into `log`: straight into its heap and indexes, or through SPI when
/// change_log is not (or no longer) in the shape the direct path handles.
unsafe fn write_records(log: &LogRel, recs: &[RecordRef<'_>]) {
    if !insert_direct(log.relid, recs) {
        recs.iter().for_each(|r| insert_spi(&log.schema, r));
    }
}

/// A taken record through SPI, with the id and time it was given when taken: for a
/// change_log whose shape changed between taking and writing it.
fn insert_spi(schema: &str, p: &RecordRef<'_>) {
    let r = p.rec;
    let sql = format!(
        "INSERT INTO {}.change_log \
         (id, system, entity_type, entity_id, operation, fields, changed_at, origin, checksum) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, \
                 timestamptz '2000-01-01 00:00:00+00' + $7 * interval '1 microsecond', $8, $9)",
        quote_ident(schema)
    );
    let id = unsafe { i64::from_datum(p.id, false) }.expect("change_log id");
    // at commit there is no snapshot, which SPI needs
    let pushed = unsafe {
        let none = !pg_sys::ActiveSnapshotSet();
        if none {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        none
    };
    Spi::run_with_args(
        &sql,
        &[
            id.into(),
            p.system.into(),
            p.entity_type.into(),
            r.entity_id.as_str().into(),
            r.operation.into(),
            r.fields.as_str().into(),
            p.changed_at.into(),
            p.origin.into(),
            r.checksum.as_deref().into(),
        ],
    )
    .unwrap_or_else(|e| {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            &format!("sync_engine: change_log insert failed: {e}"),
        )
    });
    if pushed {
        unsafe { pg_sys::PopActiveSnapshot() };
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
struct ScratchContext {
    cx: pg_sys::MemoryContext,
    prev: pg_sys::MemoryContext,
}

impl ScratchContext {
    unsafe fn enter() -> Self {
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

/// Take one change record: its id and time now, its row in change_log at the end of
/// the statement (or of every FLUSH_AT records), when change_log has its usual shape;
/// else inserted now through a plan kept for the life of the backend.
unsafe fn write_change(schema: &str, ch: Change<'_>) {
    if let Some(log) = log_rel(schema) {
        let id = pgrx::direct_function_call_as_datum(
            pg_sys::nextval_oid,
            &[Some(pg_sys::Datum::from(log.seqid))],
        )
        .expect("nextval");
        // a pushed change keeps the time its user made it (see origin::time_writes)
        let changed_at = crate::capture::origin::change_time(&ch.rec.entity_id)
            .unwrap_or_else(|| pg_sys::GetCurrentTimestamp());
        // the first record of a statement is written at once: a single-row statement
        // then costs what it did before records were taken in batches
        let stmt = (
            pg_sys::GetTopTransactionIdIfAny(),
            pg_sys::GetCurrentCommandId(false),
        );
        let first = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let first = p.recs.is_empty() && p.last != Some(stmt);
            p.last = Some(stmt);
            first
        });
        if first || !HOOKS_LIVE.get() {
            let r = RecordRef {
                id,
                changed_at,
                system: ch.system,
                entity_type: ch.entity_type,
                origin: ch.origin,
                rec: &ch.rec,
            };
            write_records(&log, std::slice::from_ref(&r));
            return;
        }
        let subxid = pg_sys::GetCurrentSubTransactionId();
        let rec = Pending {
            subxid,
            log,
            id,
            changed_at,
            system: ch.system.to_string(),
            entity_type: ch.entity_type.to_string(),
            origin: ch.origin.map(str::to_string),
            rec: ch.rec,
        };
        let full = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.bytes += rec.size();
            p.recs.push(rec);
            // this subtransaction's records are the last ones taken
            let n = p.recs.len();
            (n >= FLUSH_AT && p.recs[n - FLUSH_AT].subxid == subxid) || p.bytes >= FLUSH_BYTES
        });
        if full {
            flush(false);
        }
        return;
    }
    let (system, entity_type, origin) = (ch.system, ch.entity_type, ch.origin);
    let r = &ch.rec;
    let changed_at = crate::capture::origin::change_time(&r.entity_id);
    let (entity_id, operation, fields, checksum) = (
        r.entity_id.as_str(),
        r.operation,
        r.fields.as_str(),
        r.checksum.as_deref(),
    );
    if pg_sys::SPI_connect() < 0 {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "sync_engine: SPI_connect failed in capture trigger",
        );
    }
    let plan = PLAN.with(|p| {
        let mut p = p.borrow_mut();
        match &*p {
            Some((s, plan)) if s == schema => *plan,
            _ => {
                let sql = INSERT_SQL.replace("{schema}", &quote_ident(schema));
                let csql = CString::new(sql).expect("no NUL in SQL");
                let mut types = [pg_sys::TEXTOID; 8];
                let plan = pg_sys::SPI_prepare(csql.as_ptr(), 8, types.as_mut_ptr());
                if plan.is_null() {
                    fail(
                        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                        "sync_engine: could not prepare change_log insert",
                    );
                }
                pg_sys::SPI_keepplan(plan);
                if let Some((_, old)) = p.take() {
                    pg_sys::SPI_freeplan(old);
                }
                *p = Some((schema.to_string(), plan));
                plan
            }
        }
    });
    let mut values = [
        text_datum(system),
        text_datum(entity_type),
        text_datum(entity_id),
        text_datum(operation),
        text_datum(fields),
        origin.map_or(pg_sys::Datum::from(0usize), |o| text_datum(o)),
        checksum.map_or(pg_sys::Datum::from(0usize), |c| text_datum(c)),
        changed_at.map_or(pg_sys::Datum::from(0usize), |t| text_datum(&t.to_string())),
    ];
    let nulls = [
        b' ',
        b' ',
        b' ',
        b' ',
        b' ',
        if origin.is_some() { b' ' } else { b'n' },
        if checksum.is_some() { b' ' } else { b'n' },
        if changed_at.is_some() { b' ' } else { b'n' },
    ];
    let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr().cast(), false, 0);
    if rc != pg_sys::SPI_OK_INSERT as i32 {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            &format!("sync_engine: change_log insert failed (SPI code {rc})"),
        );
    }
    pg_sys::SPI_finish();
}

static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

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

fn flush_if_pending() {
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
unsafe extern "C-unwind" fn executor_end(qd: *mut pg_sys::QueryDesc) {
    flush_if_pending();
    match PREV_EXECUTOR_END {
        Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(qd)),
        None => pg_sys::standard_ExecutorEnd(qd),
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
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
unsafe extern "C-unwind" fn xact_callback(
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
unsafe extern "C-unwind" fn subxact_callback(
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

unsafe fn trigger_args(trigger: &pg_sys::Trigger) -> Vec<std::borrow::Cow<'_, str>> {
    (0..trigger.tgnargs as usize)
        .map(|i| CStr::from_ptr(*trigger.tgargs.add(i)).to_string_lossy())
        .collect()
}

/// The row trigger's work: take the change record of the row in `td` (its id drawn,
/// its time set) and queue it for `flush`.
///
/// # Safety
/// `trigger` and `td` are the trigger call's own data (`api::capture`).
pub unsafe fn capture(trigger: &pg_sys::Trigger, td: &pg_sys::TriggerData) {
    let args = trigger_args(trigger);
    if args.len() != 4 {
        fail(
            PgSqlErrorCode::ERRCODE_TRIGGERED_ACTION_EXCEPTION,
            "sync_capture() must be installed by sync_register_table (expects 4 arguments)",
        );
    }
    let (schema, system, entity_type, key_column) = (&args[0], &args[1], &args[2], &args[3]);
    let event = td.tg_event;
    let op = event & pg_sys::TRIGGER_EVENT_OPMASK;
    if event & pg_sys::TRIGGER_EVENT_ROW == 0 {
        fail(
            PgSqlErrorCode::ERRCODE_TRIGGERED_ACTION_EXCEPTION,
            "sync_capture() must be a row-level trigger",
        );
    }
    let rel = td.tg_relation;
    let relid = (*rel).rd_id;
    let tupdesc = (*rel).rd_att;
    let natts = (*tupdesc).natts as usize;

    // the records are made while the relation's cached info is borrowed, and taken
    // after (taking one may write records, and through SPI that may capture more)
    let mut out: [Option<rowjson::ChangeRecord>; 2] = [None, None];
    RELS.with(|rels| {
        let mut rels = rels.borrow_mut();
        let fresh = match rels.get(&relid) {
            Some(info) => !still_valid(info, tupdesc),
            None => true,
        };
        if fresh {
            rels.insert(relid, build_info(tupdesc));
        }
        let info = rels.get(&relid).expect("just inserted");
        let key_idx = info
            .cols
            .iter()
            .position(|c| !c.dropped && c.name == *key_column)
            .unwrap_or_else(|| {
                fail(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    &format!(
                        "sync_engine: key column \"{key_column}\" of registered table {} no longer exists; unregister and register the table again",
                        entity_type
                    ),
                )
            });
        let names: Vec<&str> = info.cols.iter().map(|c| c.name.as_str()).collect();
        let cols = rowjson::Cols { names: &names, kinds: &info.kinds, live: &info.live, sorted: &info.sorted };

        let key_of = |vals: &[ColValue]| -> String {
            vals[key_idx].clone().unwrap_or_else(|| {
                fail(
                    PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                    &format!("sync_engine: key column \"{key_column}\" is NULL; a registered table needs a key in every row"),
                )
            })
        };
        let mut emit = |rec: rowjson::ChangeRecord| {
            let free = out.iter_mut().find(|o| o.is_none()).expect("two records at most");
            *free = Some(rec);
        };

        if op == pg_sys::TRIGGER_EVENT_INSERT {
            let new = row_values(info, &deform(td.tg_trigtuple, tupdesc, natts));
            emit(rowjson::insert_record(&cols, key_of(&new), &new, Some(&mut numeric_image)));
        } else if op == pg_sys::TRIGGER_EVENT_DELETE {
            let old = row_values(info, &deform(td.tg_trigtuple, tupdesc, natts));
            emit(rowjson::delete_record(&cols, key_of(&old), &old, Some(&mut numeric_image)));
        } else if op == pg_sys::TRIGGER_EVENT_UPDATE {
            let o = deform(td.tg_trigtuple, tupdesc, natts);
            let n = deform(td.tg_newtuple, tupdesc, natts);
            // output text only where the binary images differ; equal images are equal values
            let mut old: Vec<ColValue> = Vec::with_capacity(natts);
            let mut new: Vec<ColValue> = Vec::with_capacity(natts);
            let mut changed = vec![false; natts];
            for (i, c) in info.cols.iter().enumerate() {
                if c.dropped {
                    old.push(None);
                    new.push(None);
                    continue;
                }
                let nv = if n.nulls[i] { None } else { Some(output(c, n.values[i])) };
                let same = match (o.nulls[i], n.nulls[i]) {
                    (true, true) => true,
                    (false, false) => datum_image_eq(o.values[i], n.values[i], c.byval, c.len),
                    _ => false,
                };
                let ov = if same {
                    nv.clone()
                } else if o.nulls[i] {
                    None
                } else {
                    Some(output(c, o.values[i]))
                };
                changed[i] = ov != nv;
                old.push(ov);
                new.push(nv);
            }
            if !changed.iter().any(|&c| c) {
                return;
            }
            let old_key = key_of(&old);
            let new_key = key_of(&new);
            if old_key != new_key {
                // a key change is the old entity going away and a new one appearing
                emit(rowjson::delete_record(&cols, old_key, &old, Some(&mut numeric_image)));
                emit(rowjson::insert_record(&cols, new_key, &new, Some(&mut numeric_image)));
            } else {
                emit(rowjson::update_record(
                    &cols,
                    new_key,
                    &old,
                    &new,
                    &changed,
                    Some(&mut numeric_image),
                ));
            }
        }
    });
    if out[0].is_none() {
        return;
    }
    let origin = crate::capture::origin::current();
    for rec in out.into_iter().flatten() {
        write_change(
            schema,
            Change {
                system,
                entity_type,
                origin: origin.as_deref(),
                rec,
            },
        );
    }
}

/// Refuse TRUNCATE on the registered table `table`: it fires no row triggers, so its
/// deletes would silently never reach the other side.
pub fn refuse_truncate(table: &str) -> ! {
    fail(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        &format!(
            "TRUNCATE of \"{table}\" is refused: the table is registered with sync_engine and TRUNCATE is not captured; use DELETE, or sync_unregister_table first"
        ),
    )
}
