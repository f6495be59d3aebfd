//! Tests against a real PostgreSQL (pgrx-tests). Each file holds a `#[pg_schema] mod tests`.
mod capture;
pub mod concurrent;
pub mod util;
