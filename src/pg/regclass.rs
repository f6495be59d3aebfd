//! `Regclass`: a `regclass` argument taken as the relation's oid, without opening the
//! relation (pgrx's `PgRelation` opens it while decoding the argument, and a numeric
//! oid of no relation then fails as an internal error, XX000, before our checks run).

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::prelude::*;

/// A `regclass` value: a relation's oid, which may name no relation (a number cast to
/// regclass is not checked).
#[derive(Clone, Copy, Debug)]
pub struct Regclass(pub pg_sys::Oid);

impl FromDatum for Regclass {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            None
        } else {
            unsafe { pg_sys::Oid::from_datum(datum, false) }.map(Regclass)
        }
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for Regclass {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

pgrx::impl_sql_translatable!(Regclass, arg_only = "regclass");

impl Regclass {
    /// The relation, opened with AccessShareLock; ERROR 42P01 when the oid names none.
    pub fn open(self) -> pgrx::PgRelation {
        let exists = unsafe {
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::RELOID as i32,
                pg_sys::Datum::from(self.0),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
            )
        };
        if !exists {
            super::fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                &format!("relation with OID {} does not exist", self.0.to_u32()),
            );
        }
        unsafe { pgrx::PgRelation::with_lock(self.0, pg_sys::AccessShareLock as pg_sys::LOCKMODE) }
    }
}
