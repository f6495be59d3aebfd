//! Tests against a real PostgreSQL (pgrx-tests). Each file holds a `#[pg_schema] mod tests`
//! (run inside a rolled-back transaction) or plain #[test]s using autocommit clients.
mod args;
mod capture;
pub mod concurrent;
mod dump;
pub mod engine;
mod security;
pub mod util;
mod worker;
