//! The one error type of the core: a message that names the problem, with the
//! SQLSTATE a caller can match on. The core returns it; the API layer raises it
//! (`pg::OrRaise`), so a decision and its error code are tested without Postgres.

use std::fmt;

/// The SQLSTATEs the extension raises from core decisions, by condition name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 22004 null_value_not_allowed
    NullValueNotAllowed,
    /// 22023 invalid_parameter_value
    InvalidParameterValue,
    /// 22001 string_data_right_truncation
    StringDataRightTruncation,
    /// 22P02 invalid_text_representation
    InvalidTextRepresentation,
    /// 55000 object_not_in_prerequisite_state
    ObjectNotInPrerequisiteState,
    /// XX000 internal_error
    InternalError,
}

impl SqlState {
    /// The five-character SQLSTATE.
    pub fn code(self) -> &'static str {
        match self {
            SqlState::NullValueNotAllowed => "22004",
            SqlState::InvalidParameterValue => "22023",
            SqlState::StringDataRightTruncation => "22001",
            SqlState::InvalidTextRepresentation => "22P02",
            SqlState::ObjectNotInPrerequisiteState => "55000",
            SqlState::InternalError => "XX000",
        }
    }
}

/// An error with its SQLSTATE and a message naming the problem (and the fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub state: SqlState,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        Error {
            state,
            message: message.into(),
        }
    }

    /// 22023: an argument (or a value derived from one) is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(SqlState::InvalidParameterValue, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_displays_its_message_and_keeps_its_code() {
        let e = Error::invalid("boom");
        assert_eq!(e.to_string(), "boom");
        assert_eq!(e.state.code(), "22023");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "boom");
        assert_eq!(SqlState::NullValueNotAllowed.code(), "22004");
        assert_eq!(SqlState::StringDataRightTruncation.code(), "22001");
        assert_eq!(SqlState::InvalidTextRepresentation.code(), "22P02");
        assert_eq!(SqlState::InternalError.code(), "XX000");
    }
}
