//! Checks of the public SQL functions' arguments: NULLs and names.
//!
//! Every public function takes its arguments as `Option<T>` (so pgrx does not mark it
//! STRICT, which would answer a NULL argument with a silent NULL) and passes each one
//! through these helpers at its top:
//! - `required`: a NULL in a required argument (also an explicit NULL for one with a
//!   default) is refused with 22004 (null_value_not_allowed) naming the function and
//!   the argument, e.g. `sync_execute: config_id must not be NULL`.
//! - `name` / `optional_name`: a name (system, entity type, config name) must not be
//!   empty or only whitespace (22023) and is at most `NAME_MAX_BYTES` bytes (22001,
//!   string_data_right_truncation).
//! - `no_null_elements`: an array argument (match_on) with a NULL element is refused with
//!   22004 naming the argument and the element.
//!
//! The decisions (what is wrong, the message) are pure functions with unit tests; the
//! `ereport` is a thin shell around them.

use crate::fail;
use pgrx::PgSqlErrorCode;

/// The longest name (system, entity type, config name, target entity type) in bytes of
/// UTF-8: the length of a PostgreSQL identifier (NAMEDATALEN - 1).
/// - Names are identifiers chosen by people and shown in error messages, views and
///   origin tags; a 100,000-character "name" is a mistake, not a name.
pub const NAME_MAX_BYTES: usize = 63;

/// What is wrong with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// empty, or only whitespace
    Empty,
    /// longer than `NAME_MAX_BYTES`; `bytes` is its length
    TooLong { bytes: usize },
}

impl NameProblem {
    /// The SQLSTATE that reports this problem.
    pub fn code(&self) -> PgSqlErrorCode {
        match self {
            NameProblem::Empty => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            NameProblem::TooLong { .. } => PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
        }
    }
}

/// What is wrong with the name `v`, or None when it is a valid name.
pub fn name_problem(v: &str) -> Option<NameProblem> {
    if v.trim().is_empty() {
        Some(NameProblem::Empty)
    } else if v.len() > NAME_MAX_BYTES {
        Some(NameProblem::TooLong { bytes: v.len() })
    } else {
        None
    }
}

/// The message for a NULL in the required argument `arg` of function `func`.
pub fn null_message(func: &str, arg: &str) -> String {
    format!("{func}: {arg} must not be NULL")
}

/// The message for a NULL element (at 1-based `position`) in the array argument `arg`.
pub fn null_element_message(func: &str, arg: &str, position: usize) -> String {
    format!("{func}: {arg} must not contain NULL (element {position} is NULL)")
}

/// The message for the name argument `arg` of `func` having `problem`.
pub fn name_message(func: &str, arg: &str, problem: &NameProblem) -> String {
    match problem {
        NameProblem::Empty => format!("{func}: {arg} must be a non-empty name"),
        NameProblem::TooLong { bytes } => {
            format!("{func}: {arg} is {bytes} bytes long; a name is at most {NAME_MAX_BYTES} bytes")
        }
    }
}

/// The 1-based position of the first NULL element of `v`, or None.
pub fn first_null<T>(v: &[Option<T>]) -> Option<usize> {
    v.iter().position(Option::is_none).map(|i| i + 1)
}

/// The value of the required argument `arg` of `func`; ERROR 22004 naming it when NULL.
pub fn required<T>(v: Option<T>, func: &str, arg: &str) -> T {
    match v {
        Some(v) => v,
        None => fail(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            &null_message(func, arg),
        ),
    }
}

/// The required name argument `arg` of `func`; ERROR when NULL (22004), empty (22023)
/// or longer than `NAME_MAX_BYTES` (22001).
pub fn name<'a>(v: Option<&'a str>, func: &str, arg: &str) -> &'a str {
    let v = required(v, func, arg);
    check_name(v, func, arg);
    v
}

/// The NULL-able name argument `arg` of `func`: NULL passes, a value is checked as
/// `name` does.
pub fn optional_name<'a>(v: Option<&'a str>, func: &str, arg: &str) -> Option<&'a str> {
    if let Some(s) = v {
        check_name(s, func, arg);
    }
    v
}

fn check_name(v: &str, func: &str, arg: &str) {
    if let Some(p) = name_problem(v) {
        fail(p.code(), &name_message(func, arg, &p));
    }
}

/// The NULL-able array argument `arg` of `func` without NULL elements; ERROR 22004
/// naming it and the element when one is NULL.
pub fn no_null_elements<T>(v: Option<Vec<Option<T>>>, func: &str, arg: &str) -> Option<Vec<T>> {
    let v = v?;
    if let Some(pos) = first_null(&v) {
        fail(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            &null_element_message(func, arg, pos),
        );
    }
    Some(v.into_iter().flatten().collect())
}

/// The most characters of a value an error message quotes.
pub const SHOWN_MAX_CHARS: usize = 80;

/// `v` as an error message quotes it: whole when short, else its first
/// `SHOWN_MAX_CHARS` characters and how long it was, so a 100 KB argument does not make
/// a 100 KB message.
pub fn shown(v: &str) -> String {
    match v.char_indices().nth(SHOWN_MAX_CHARS) {
        None => v.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", &v[..cut], v.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_are_cut_at_a_character_boundary_and_say_their_length() {
        assert_eq!(shown("manual"), "manual");
        let long = "ä".repeat(100);
        let s = shown(&long);
        assert_eq!(s, format!("{}... (200 bytes)", "ä".repeat(SHOWN_MAX_CHARS)));
        assert_eq!(
            shown(&"x".repeat(SHOWN_MAX_CHARS)),
            "x".repeat(SHOWN_MAX_CHARS)
        );
    }

    #[test]
    fn valid_names_pass() {
        assert_eq!(name_problem("crm"), None);
        assert_eq!(name_problem(" padded "), None);
        assert_eq!(name_problem(&"x".repeat(NAME_MAX_BYTES)), None);
    }

    #[test]
    fn empty_and_blank_names_are_empty() {
        assert_eq!(name_problem(""), Some(NameProblem::Empty));
        assert_eq!(name_problem(" \t\n"), Some(NameProblem::Empty));
    }

    #[test]
    fn length_is_counted_in_bytes() {
        assert_eq!(
            name_problem(&"x".repeat(NAME_MAX_BYTES + 1)),
            Some(NameProblem::TooLong { bytes: 64 })
        );
        // 32 two-byte characters = 64 bytes, over the limit though only 32 characters
        let umlauts = "ä".repeat(32);
        assert_eq!(
            name_problem(&umlauts),
            Some(NameProblem::TooLong { bytes: 64 })
        );
        assert_eq!(name_problem(&"ä".repeat(31)), None);
        assert_eq!(
            name_problem(&"x".repeat(100_000)),
            Some(NameProblem::TooLong { bytes: 100_000 })
        );
    }

    #[test]
    fn problems_map_to_their_sqlstates() {
        assert_eq!(
            NameProblem::Empty.code(),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
        assert_eq!(
            NameProblem::TooLong { bytes: 64 }.code(),
            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION
        );
    }

    #[test]
    fn messages_name_function_and_argument() {
        assert_eq!(
            null_message("sync_execute", "config_id"),
            "sync_execute: config_id must not be NULL"
        );
        assert_eq!(
            null_element_message("sync_create_config", "match_on", 2),
            "sync_create_config: match_on must not contain NULL (element 2 is NULL)"
        );
        assert_eq!(
            name_message("sync_register_table", "system", &NameProblem::Empty),
            "sync_register_table: system must be a non-empty name"
        );
        assert_eq!(
            name_message(
                "sync_register_table",
                "system",
                &NameProblem::TooLong { bytes: 100 }
            ),
            "sync_register_table: system is 100 bytes long; a name is at most 63 bytes"
        );
    }

    #[test]
    fn first_null_is_one_based() {
        assert_eq!(first_null::<i32>(&[]), None);
        assert_eq!(first_null(&[Some(1), Some(2)]), None);
        assert_eq!(first_null(&[Some(1), None, None]), Some(2));
        assert_eq!(first_null::<i32>(&[None]), Some(1));
    }
}
