//! The row trigger's work: one change record per inserted, updated or deleted row.

use super::*;

/// One change record on its way into change_log.
pub(super) struct Change<'a> {
    pub(super) system: &'a str,
    pub(super) entity_type: &'a str,
    pub(super) origin: Option<&'a str>,
    pub(super) rec: rowjson::ChangeRecord,
}

/// Take one change record: its id and time now, its row in change_log at the end of
/// the statement (or of every FLUSH_AT records), when change_log has its usual shape;
/// else inserted now through a plan kept for the life of the backend.
pub(super) unsafe fn write_change(schema: &str, ch: Change<'_>) {
    if let Some(log) = log_rel(schema) {
        // what nextval(seqid) does, permission check included, without the fmgr call
        let seqid = log.seqid;
        let id = pg_sys::Datum::from(pg_sys::ffi::pg_guard_ffi_boundary(|| {
            nextval_internal(seqid, true)
        }));
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
    // as the extension's owner, with its search_path: the writer needs no grant on
    // change_log, and names in the statement (and in a DBA's trigger on change_log)
    // resolve as the extension means them, not as the writer's search_path says
    crate::pg::security::as_extension_owner(|| insert_prepared(schema, &ch));
}

/// A record inserted through a plan kept for the life of the backend (change_log not
/// in its usual shape). Runs as the extension's owner.
unsafe fn insert_prepared(schema: &str, ch: &Change<'_>) {
    let (system, entity_type, origin) = (ch.system, ch.entity_type, ch.origin);
    let r = &ch.rec;
    let changed_at = crate::capture::origin::change_time(&r.entity_id);
    let fields = fields_text(r);
    let (entity_id, operation, fields, checksum) = (
        r.entity_id.as_str(),
        r.operation,
        fields.as_ref(),
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

pub(super) unsafe fn trigger_args(trigger: &pg_sys::Trigger) -> Vec<std::borrow::Cow<'_, str>> {
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

        // the record as capture writes it: the jsonb image alone where it can be made
        let make = |entity_id: String,
                    operation: &'static str,
                    old: Option<&[ColValue]>,
                    new: Option<&[ColValue]>,
                    only: Option<&[bool]>| {
            rowjson::record(
                &cols,
                entity_id,
                operation,
                old,
                new,
                only,
                Some(&mut numeric_image),
                rowjson::FieldsForm::ImageOrText,
            )
        };
        if op == pg_sys::TRIGGER_EVENT_INSERT {
            let new = row_values(info, &deform(td.tg_trigtuple, tupdesc, natts));
            emit(make(key_of(&new), "insert", None, Some(&new), None));
        } else if op == pg_sys::TRIGGER_EVENT_DELETE {
            let old = row_values(info, &deform(td.tg_trigtuple, tupdesc, natts));
            emit(make(key_of(&old), "delete", Some(&old), None, None));
        } else if op == pg_sys::TRIGGER_EVENT_UPDATE {
            let o = deform(td.tg_trigtuple, tupdesc, natts);
            let n = deform(td.tg_newtuple, tupdesc, natts);
            let same = |i: usize| match (o.nulls[i], n.nulls[i]) {
                (true, true) => true,
                (false, false) => {
                    let c = &info.cols[i];
                    datum_image_eq(o.values[i], n.values[i], c.byval, c.len)
                }
                _ => false,
            };
            // output text only where the binary images differ (equal images are equal
            // values); the whole old row only when the key may have changed, as a key
            // change records the old row's every column
            let whole_old = !same(key_idx);
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
                let ov = if same(i) {
                    if whole_old { nv.clone() } else { None }
                } else {
                    let ov = if o.nulls[i] { None } else { Some(output(c, o.values[i])) };
                    changed[i] = ov != nv;
                    ov
                };
                old.push(ov);
                new.push(nv);
            }
            if !changed.iter().any(|&c| c) {
                return;
            }
            let new_key = key_of(&new);
            let old_key = if whole_old { key_of(&old) } else { new_key.clone() };
            if old_key != new_key {
                // a key change is the old entity going away and a new one appearing
                emit(make(old_key, "delete", Some(&old), None, None));
                emit(make(new_key, "insert", None, Some(&new), None));
            } else {
                // `old` holds the changed columns (update records read no others)
                emit(make(new_key, "update", Some(&old), Some(&new), Some(&changed)));
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
