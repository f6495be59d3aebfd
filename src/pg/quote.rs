//! Quoting for SQL text the extension builds, and the extension's own schema.

use crate::pg::{db, fail};
use pgrx::PgSqlErrorCode;

/// `s` as a quoted SQL identifier (`"a""b"`).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `s` as a SQL string literal; one with a backslash as an escape string (`E'..'`), so
/// it reads the same whatever `standard_conforming_strings` says.
pub fn quote_literal(s: &str) -> String {
    let q = s.replace('\'', "''");
    if q.contains('\\') {
        format!("E'{}'", q.replace('\\', "\\\\"))
    } else {
        format!("'{q}'")
    }
}

/// The schema the extension was created in, quoted for use in SQL text.
/// Errors: 42704 when the extension is not installed in this database.
pub fn ext_schema() -> String {
    quote_ident(&ext_schema_raw())
}

/// The schema the extension was created in, unquoted.
pub fn ext_schema_raw() -> String {
    db::one::<String>(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
         JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'sync_engine'",
        &[],
    )
    .unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "extension sync_engine is not installed in this database",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_ident("Crm; DROP"), r#""Crm; DROP""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'"), r"E'a\\b'''");
    }
}
