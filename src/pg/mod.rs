//! The thin layer over PostgreSQL's server API that every shell module uses: SPI
//! helpers (`db`), subtransactions (`subxact`), settings (`guc`), role switching
//! and privilege checks (`security`), identifier and literal quoting (`quote`),
//! and raising errors (`fail`).

pub mod build_info;
pub mod db;
pub mod guc;
pub mod quote;
pub mod regclass;
pub mod security;
pub mod subxact;

use crate::core::error::{Error, SqlState};
use pgrx::prelude::*;

/// Raise a core error as an ERROR with its SQLSTATE: the one place where
/// `core::error::Error` meets `ereport`.
pub fn raise(e: Error) -> ! {
    fail(sqlstate(e.state), &e.message)
}

/// The server's error code for a core SQLSTATE.
fn sqlstate(s: SqlState) -> PgSqlErrorCode {
    match s {
        SqlState::NullValueNotAllowed => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        SqlState::InvalidParameterValue => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        SqlState::StringDataRightTruncation => PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
        SqlState::InvalidTextRepresentation => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
        SqlState::ObjectNotInPrerequisiteState => {
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        }
        SqlState::InternalError => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
    }
}

/// `result.or_raise()`: the value, or the core error raised as an ERROR.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, Error> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}

/// Raise ERROR 22023 (invalid_parameter_value) with `msg`: an argument, or a value
/// derived from one, is not acceptable.
pub fn bad(msg: String) -> ! {
    fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, &msg)
}

/// Raise an ERROR with a SQLSTATE a caller can match on.
pub fn fail(code: PgSqlErrorCode, msg: &str) -> ! {
    ereport!(ERROR, code, msg.to_string());
}
