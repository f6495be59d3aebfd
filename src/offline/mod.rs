//! Offline clients and connectors: `sync_push` (a batch of a device's changes applied as
//! ordinary writes, conflicts decided per field), `sync_pull` (an endpoint's change
//! records after an opaque cursor, page by page) and `sync_snapshot` (its rows by key,
//! the resync path).
//!
//! Functional core: `time` (changed_at), `push_plan` (validation, decision table),
//! `pull_cursor` (the cursor). Shell: `push`, `pull`, `resolve` (push conflicts for
//! sync_resolve_conflict), `prune` (remembered ids, the prune horizon), `clients` (which
//! role a client id belongs to).

pub mod clients;
pub mod prune;
pub mod pull;
pub mod pull_cursor;
pub mod push;
pub mod push_plan;
pub mod resolve;
pub mod time;
