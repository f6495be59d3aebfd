//! Run a closure in a subtransaction: on ERROR the subtransaction's work is rolled back
//! and the error returned, so one failing entity never aborts a whole run.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{PgSqlErrorCode, PgTryBuilder};
use std::panic::AssertUnwindSafe;

#[derive(Debug, Clone)]
pub struct SubxactError {
    pub code: PgSqlErrorCode,
    /// the five-character SQLSTATE, e.g. 23514
    pub sqlstate: String,
    pub message: String,
}

impl SubxactError {
    /// Raise the error again.
    fn raise(&self) -> ! {
        crate::pg::fail(self.code, &self.message)
    }
}

/// The five-character SQLSTATE of an error code (PostgreSQL packs it six bits a
/// character, the first character lowest).
pub fn sqlstate(code: PgSqlErrorCode) -> String {
    let n = code as i64;
    (0..5)
        .map(|i| (((n >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

/// Whether an error may be about the rows being written, so that writing other rows
/// may work: anything but what is about the run as a whole — a cancel, timeout or
/// shutdown (class 57), too few resources (53), a system or I/O error (58), a lost
/// connection (08), a missing database or schema (3D, 3F), corrupted data (XX001,
/// XX002), and a statement that cannot work for any row (class 42: a syntax error, a
/// missing table, column or function), except a missing privilege (42501), which
/// row-level security raises for single rows. Codes a trigger makes up reach us as
/// XX000 and count as the row's.
pub fn is_data_error(sqlstate: &str) -> bool {
    let run_level = matches!(
        sqlstate.get(..2),
        Some("57" | "53" | "58" | "08" | "3D" | "3F" | "42")
    ) || matches!(sqlstate, "XX001" | "XX002");
    !run_level || sqlstate == "42501"
}

/// `run` for work on rows (a batch, one entity): an error that may be about the rows
/// is returned, so the caller can isolate the entity; any other error (see
/// `is_data_error`) is raised again and ends the statement that called us.
pub fn run_for_rows<R>(f: impl FnOnce() -> R) -> Result<R, SubxactError> {
    let r = run(f);
    if let Err(e) = &r {
        if !is_data_error(&e.sqlstate) {
            e.raise();
        }
    }
    r
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
            Err(describe_report(r))
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
    describe_report(r)
}

fn describe_report(r: &pgrx::pg_sys::panic::ErrorReportWithLevel) -> SubxactError {
    SubxactError {
        code: r.sql_error_code(),
        sqlstate: sqlstate(r.sql_error_code()),
        message: r.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_five_characters() {
        assert_eq!(sqlstate(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION), "23514");
        assert_eq!(sqlstate(PgSqlErrorCode::ERRCODE_QUERY_CANCELED), "57014");
        assert_eq!(sqlstate(PgSqlErrorCode::ERRCODE_RAISE_EXCEPTION), "P0001");
        assert_eq!(sqlstate(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN), "42703");
    }

    #[test]
    fn only_errors_about_the_rows_written_are_data_errors() {
        for data in [
            "23514", "23505", "22001", "22P05", "40001", "40P01", "55P03", "P0001", "42501",
            "XX000", "38000", "39001",
        ] {
            assert!(is_data_error(data), "{data}");
        }
        for run in [
            "57014", "57P01", "42703", "42P01", "42883", "42601", "53200", "53100", "58030",
            "08006", "3D000", "3F000", "XX001", "XX002",
        ] {
            assert!(!is_data_error(run), "{run}");
        }
    }
}
