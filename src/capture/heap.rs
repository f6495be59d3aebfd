//! Writing change records straight into change_log's heap and indexes, when the
//! table has its usual shape; the jsonb and numeric images the records need.

use super::*;

/// Where change records go when written directly (no SPI, no executor): the
/// change_log table, its id sequence, for one extension schema.
#[derive(Clone)]
pub(super) struct LogRel {
    pub(super) schema: std::rc::Rc<str>,
    pub(super) relid: pg_sys::Oid,
    pub(super) seqid: pg_sys::Oid,
}

/// change_log's columns, in order, as sql/schema.sql creates them.
pub(super) const LOG_COLUMNS: [&str; 10] = [
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

/// Does the open change_log still have the shape the direct path writes (checked on
/// every call: ALTER TABLE, a new trigger or rule, or a new index may come at any time)?
pub(super) unsafe fn plain_shape(rel: pg_sys::Relation) -> bool {
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
pub(super) unsafe fn plain_indexes(
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
pub(super) unsafe fn insert_direct(relid: pg_sys::Oid, recs: &[RecordRef<'_>]) -> bool {
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
pub(super) unsafe fn write_records(log: &LogRel, recs: &[RecordRef<'_>]) {
    if !insert_direct(log.relid, recs) {
        recs.iter().for_each(|r| insert_spi(&log.schema, r));
    }
}
