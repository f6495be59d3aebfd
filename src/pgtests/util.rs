//! Helpers shared by the Postgres tests.
use pgrx::prelude::*;

/// Run `sql` and return "SQLSTATE: message" of the error it raised, or None. The
/// statement runs in a subtransaction, so the test can check nothing was left behind.
pub fn try_sql(sql: &str) -> Option<String> {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.sync_try(q text) RETURNS text LANGUAGE plpgsql AS $f$
         BEGIN EXECUTE q; RETURN NULL;
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $f$",
    )
    .unwrap();
    Spi::get_one_with_args::<String>("SELECT pg_temp.sync_try($1)", &[sql.into()]).unwrap()
}

/// Assert `sql` fails with `sqlstate` and a message containing every fragment.
pub fn expect_error(sql: &str, sqlstate: &str, fragments: &[&str]) {
    let e = try_sql(sql).unwrap_or_else(|| panic!("expected an error from: {sql}"));
    assert!(e.starts_with(sqlstate), "wrong SQLSTATE for {sql}: {e}");
    for f in fragments {
        assert!(e.contains(f), "error for {sql} should mention {f:?}: {e}");
    }
}

pub fn count(sql: &str) -> i64 {
    Spi::get_one::<i64>(sql).unwrap().unwrap_or(0)
}

pub fn json(sql: &str) -> serde_json::Value {
    Spi::get_one::<pgrx::JsonB>(sql)
        .unwrap()
        .map(|j| j.0)
        .unwrap_or(serde_json::Value::Null)
}

pub fn text(sql: &str) -> Option<String> {
    Spi::get_one::<String>(sql).unwrap()
}
