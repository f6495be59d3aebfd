//! The functional core: plain Rust, no pgrx, unit-tested without Postgres
//! (`cargo test --lib core::`).
//!
//! - `args`: the public functions' NULL and name checks.
//! - `cursor`: snapshot windows and position arithmetic (invariant 1).
//! - `jsonb`, `rowjson`: exact jsonb images, change records and their checksums.
//! - `mapping`: field mappings and transforms, both directions.
//! - `merge`: the per-field three-way merge of one entity pair.
//! - `plan`: every decision about a batch of entity pairs (what a run writes).
//! - `resolve`: the decisions of `sync_resolve_conflict` for a config's conflict.
//! - `launch_plan`: which databases the launcher starts a scheduler for.
//! - `types`: `Side`, `Sides<T>`, `Timings`.
//! - `error`: the one error type, carrying its SQLSTATE.

pub mod args;
pub mod cursor;
pub mod error;
pub mod jsonb;
pub mod launch_plan;
pub mod mapping;
pub mod merge;
pub mod plan;
pub mod resolve;
pub mod rowjson;
pub mod types;
