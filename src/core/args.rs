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
//! Pure: each check returns `core::error::Error` with its SQLSTATE; the API layer
//! raises it (`pg::OrRaise`).

use crate::core::error::{Error, Result, SqlState};

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
    pub fn code(&self) -> SqlState {
        match self {
            NameProblem::Empty => SqlState::InvalidParameterValue,
            NameProblem::TooLong { .. } => SqlState::StringDataRightTruncation,
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
pub fn required<T>(v: Option<T>, func: &str, arg: &str) -> Result<T> {
    v.ok_or_else(|| Error::new(SqlState::NullValueNotAllowed, null_message(func, arg)))
}

/// The required name argument `arg` of `func`; ERROR when NULL (22004), empty (22023)
/// or longer than `NAME_MAX_BYTES` (22001).
pub fn name<'a>(v: Option<&'a str>, func: &str, arg: &str) -> Result<&'a str> {
    let v = required(v, func, arg)?;
    check_name(v, func, arg)?;
    Ok(v)
}

/// The NULL-able name argument `arg` of `func`: NULL passes, a value is checked as
/// `name` does.
pub fn optional_name<'a>(v: Option<&'a str>, func: &str, arg: &str) -> Result<Option<&'a str>> {
    if let Some(s) = v {
        check_name(s, func, arg)?;
    }
    Ok(v)
}

fn check_name(v: &str, func: &str, arg: &str) -> Result<()> {
    match name_problem(v) {
        Some(p) => Err(Error::new(p.code(), name_message(func, arg, &p))),
        None => Ok(()),
    }
}

/// The NULL-able array argument `arg` of `func` without NULL elements; ERROR 22004
/// naming it and the element when one is NULL.
pub fn no_null_elements<T>(
    v: Option<Vec<Option<T>>>,
    func: &str,
    arg: &str,
) -> Result<Option<Vec<T>>> {
    let Some(v) = v else { return Ok(None) };
    if let Some(pos) = first_null(&v) {
        return Err(Error::new(
            SqlState::NullValueNotAllowed,
            null_element_message(func, arg, pos),
        ));
    }
    Ok(Some(v.into_iter().flatten().collect()))
}

/// The longest client id (`sync_push`, `sync_pull`), in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 200;

/// The client_id argument of `func`: not NULL (22004), not empty (22023), at most
/// `MAX_CLIENT_ID_BYTES` (22001).
pub fn client_id<'a>(v: Option<&'a str>, func: &str) -> Result<&'a str> {
    let v = required(v, func, "client_id")?;
    if v.trim().is_empty() {
        return Err(Error::invalid(format!(
            "{func}: client_id must be a non-empty name of the device or connector"
        )));
    }
    if v.len() > MAX_CLIENT_ID_BYTES {
        return Err(Error::new(
            SqlState::StringDataRightTruncation,
            format!(
                "{func}: client_id is {} bytes long; at most {MAX_CLIENT_ID_BYTES}",
                v.len()
            ),
        ));
    }
    Ok(v)
}

/// The required count argument `arg` of `func`: at least 1 (22023), NULL refused (22004).
pub fn positive(v: Option<i32>, func: &str, arg: &str) -> Result<i64> {
    let v = required(v, func, arg)?;
    if v < 1 {
        return Err(Error::invalid(format!(
            "{func}: {arg} must be at least 1 (got {v})"
        )));
    }
    Ok(i64::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(NameProblem::Empty.code().code(), "22023");
        assert_eq!(NameProblem::TooLong { bytes: 64 }.code().code(), "22001");
    }

    #[test]
    fn checks_return_errors_with_their_sqlstates() {
        assert_eq!(required(Some(1), "f", "a"), Ok(1));
        let e = required::<i32>(None, "f", "a").unwrap_err();
        assert_eq!(
            (e.state.code(), e.message.as_str()),
            ("22004", "f: a must not be NULL")
        );
        assert_eq!(name(Some("crm"), "f", "a"), Ok("crm"));
        assert_eq!(name(Some(" "), "f", "a").unwrap_err().state.code(), "22023");
        assert_eq!(optional_name(None, "f", "a"), Ok(None));
        let long = "x".repeat(64);
        assert_eq!(
            optional_name(Some(&long), "f", "a")
                .unwrap_err()
                .state
                .code(),
            "22001"
        );
        assert_eq!(no_null_elements::<i32>(None, "f", "a"), Ok(None));
        assert_eq!(
            no_null_elements(Some(vec![Some(1), Some(2)]), "f", "a"),
            Ok(Some(vec![1, 2]))
        );
        let e = no_null_elements(Some(vec![Some(1), None]), "f", "a").unwrap_err();
        assert_eq!(e.message, "f: a must not contain NULL (element 2 is NULL)");
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
    fn client_ids_and_counts_are_checked() {
        assert_eq!(client_id(Some("phone-7"), "f"), Ok("phone-7"));
        assert_eq!(client_id(None, "f").unwrap_err().state.code(), "22004");
        assert_eq!(
            client_id(Some("  "), "f").unwrap_err().state.code(),
            "22023"
        );
        let long = "c".repeat(MAX_CLIENT_ID_BYTES + 1);
        let e = client_id(Some(&long), "f").unwrap_err();
        assert_eq!(e.state.code(), "22001");
        assert_eq!(e.message, "f: client_id is 201 bytes long; at most 200");
        assert_eq!(positive(Some(1), "f", "n"), Ok(1));
        let e = positive(Some(0), "f", "n").unwrap_err();
        assert_eq!(
            (e.state.code(), e.message.as_str()),
            ("22023", "f: n must be at least 1 (got 0)")
        );
        assert_eq!(positive(None, "f", "n").unwrap_err().state.code(), "22004");
    }

    #[test]
    fn first_null_is_one_based() {
        assert_eq!(first_null::<i32>(&[]), None);
        assert_eq!(first_null(&[Some(1), Some(2)]), None);
        assert_eq!(first_null(&[Some(1), None, None]), Some(2));
        assert_eq!(first_null::<i32>(&[None]), Some(1));
    }
}
