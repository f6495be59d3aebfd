//! Per relation: its columns, their output functions and JSON kinds (cached), and a
//! row's values read through them.

use super::*;

pub(super) struct Col {
    pub(super) name: String,
    pub(super) typid: pg_sys::Oid,
    pub(super) dropped: bool,
    pub(super) byval: bool,
    pub(super) len: i16,
    pub(super) kind: ColKind,
    pub(super) out: Box<pg_sys::FmgrInfo>,
}

pub(super) struct RelInfo {
    pub(super) cols: Vec<Col>,
    /// per column: its JSON kind, and false when dropped (what rowjson::Cols needs)
    pub(super) kinds: Vec<ColKind>,
    pub(super) live: Vec<bool>,
    /// column order sorted by name, for the canonical checksum form
    pub(super) sorted: Vec<usize>,
}

pub(super) unsafe fn att_name(att: &pg_sys::FormData_pg_attribute) -> &str {
    CStr::from_ptr(att.attname.data.as_ptr())
        .to_str()
        .unwrap_or("?")
}

pub(super) unsafe fn attr(
    tupdesc: pg_sys::TupleDesc,
    i: usize,
) -> &'static pg_sys::FormData_pg_attribute {
    &*(*tupdesc).attrs.as_ptr().add(i)
}

/// Does the cached info still describe this tuple descriptor (ALTER TABLE may change it)?
pub(super) unsafe fn still_valid(info: &RelInfo, tupdesc: pg_sys::TupleDesc) -> bool {
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

pub(super) unsafe fn build_info(tupdesc: pg_sys::TupleDesc) -> RelInfo {
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

pub(super) fn kind_of(typid: pg_sys::Oid) -> ColKind {
    match typid {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::OIDOID => ColKind::Number,
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID | pg_sys::NUMERICOID => ColKind::Number,
        pg_sys::BOOLOID => ColKind::Bool,
        pg_sys::JSONOID | pg_sys::JSONBOID => ColKind::Json,
        _ => ColKind::Text,
    }
}

/// A column's value as its type's text output (what its output function returns, read
/// as UTF-8, lossily). Integers, booleans and text-like types are formatted here, as
/// their output functions do (which no setting changes); others through their output
/// function.
pub(super) unsafe fn output(col: &Col, d: pg_sys::Datum) -> String {
    match col.typid {
        pg_sys::INT2OID => return (d.value() as i16).to_string(),
        pg_sys::INT4OID => return (d.value() as i32).to_string(),
        pg_sys::INT8OID => return (d.value() as i64).to_string(),
        pg_sys::OIDOID => return (d.value() as u32).to_string(),
        pg_sys::BOOLOID => return if d.value() != 0 { "t" } else { "f" }.to_string(),
        // textout, varcharout, bpcharout: the stored bytes (no NUL can be in them)
        pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => {
            let raw = d.cast_mut_ptr::<pg_sys::varlena>();
            let v = pg_sys::pg_detoast_datum_packed(raw);
            let bytes = std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v).cast::<u8>(),
                pgrx::varlena::varsize_any_exhdr(v),
            );
            let s = String::from_utf8_lossy(bytes).into_owned();
            if v != raw {
                pg_sys::pfree(v.cast());
            }
            return s;
        }
        _ => {}
    }
    let p = pg_sys::OutputFunctionCall(col.out.as_ref() as *const _ as *mut _, d);
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    pg_sys::pfree(p.cast());
    s
}

/// Binary image equality (what PostgreSQL's datumIsEqual does). Different images may
/// still print the same, which the caller checks on the text.
pub(super) unsafe fn datum_image_eq(
    a: pg_sys::Datum,
    b: pg_sys::Datum,
    byval: bool,
    len: i16,
) -> bool {
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

pub(super) struct Deformed {
    pub(super) values: Vec<pg_sys::Datum>,
    pub(super) nulls: Vec<bool>,
}

pub(super) unsafe fn deform(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    natts: usize,
) -> Deformed {
    let mut values = vec![pg_sys::Datum::from(0usize); natts];
    let mut nulls = vec![true; natts];
    pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
    Deformed { values, nulls }
}

pub(super) unsafe fn row_values(info: &RelInfo, row: &Deformed) -> Vec<ColValue> {
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

pub(super) unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
        s.as_ptr().cast(),
        s.len() as i32,
    ))
}
