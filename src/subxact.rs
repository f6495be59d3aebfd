//! Run a closure in a subtransaction: on ERROR the subtransaction's work is rolled back
//! and the error returned, so one failing entity never aborts a whole run.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;

#[derive(Debug, Clone)]
pub struct SubxactError {
    pub sqlstate: String,
    pub message: String,
}

pub fn run<R>(f: impl FnOnce() -> R) -> Result<R, SubxactError> {
    let (cxt, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
    }
    let f = AssertUnwindSafe(f);
    let result = PgTryBuilder::new(AssertUnwindSafe(move || Ok((f.0)())))
        .catch_others(|e| {
            let r = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
                CaughtError::RustPanic { ereport, .. } => ereport,
            };
            Err(SubxactError {
                sqlstate: format!("{:?}", r.sql_error_code()),
                message: r.message().to_string(),
            })
        })
        .execute();
    unsafe {
        match &result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => {
                pg_sys::MemoryContextSwitchTo(cxt);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        pg_sys::MemoryContextSwitchTo(cxt);
        pg_sys::CurrentResourceOwner = owner;
    }
    result
}

/// SQLSTATE (as PgSqlErrorCode debug name) and message of a caught error.
pub fn describe(e: &CaughtError) -> SubxactError {
    let r = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    SubxactError {
        sqlstate: format!("{:?}", r.sql_error_code()),
        message: r.message().to_string(),
    }
}
