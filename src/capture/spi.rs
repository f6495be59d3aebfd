//! Writing a change record through SPI: the path for a change_log of an unusual shape.

use super::*;

pub(super) const INSERT_SQL: &str = "INSERT INTO {schema}.change_log \
     (system, entity_type, entity_id, operation, fields, origin, checksum, changed_at) \
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, \
             COALESCE(timestamptz '2000-01-01 00:00:00+00' + $8::bigint * interval '1 microsecond', clock_timestamp()))";

/// Find change_log and its sequence in `schema`; None when the table does not have
/// the expected shape (then records go through SPI, which any shape accepts).
pub(super) unsafe fn log_rel(schema: &str) -> Option<LogRel> {
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

/// A record's `fields` as JSON text: the text it was made with, or (made as an image
/// alone, see rowjson::FieldsForm) its image printed by jsonb_out, for the SPI paths.
pub(super) fn fields_text(r: &rowjson::ChangeRecord) -> std::borrow::Cow<'_, str> {
    match &r.fields_jsonb {
        Some(img) if r.fields.is_empty() => unsafe {
            let d =
                pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(image_datum(img))])
                    .expect("jsonb_out returns text");
            let p = d.cast_mut_ptr::<std::ffi::c_char>();
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            pg_sys::pfree(p.cast());
            s.into()
        },
        _ => r.fields.as_str().into(),
    }
}

/// A taken record through SPI, with the id and time it was given when taken: for a
/// change_log whose shape changed between taking and writing it.
pub(super) fn insert_spi(schema: &str, p: &RecordRef<'_>) {
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
    // as the extension's owner, with its search_path (see trigger::insert_prepared)
    crate::pg::security::as_extension_owner(|| {
        Spi::run_with_args(
            &sql,
            &[
                id.into(),
                p.system.into(),
                p.entity_type.into(),
                r.entity_id.as_str().into(),
                r.operation.into(),
                fields_text(r).as_ref().into(),
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
        })
    });
    if pushed {
        unsafe { pg_sys::PopActiveSnapshot() };
    }
}
