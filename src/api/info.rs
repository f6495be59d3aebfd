//! Which build is loaded.

use pgrx::prelude::*;
use pgrx::JsonB;

/// The loaded library's build: `{"profile": "debug"|"release", "version": ".."}`. Reads
/// nothing from the database.
#[pg_extern(stable, parallel_safe)]
fn sync_engine_build_info() -> JsonB {
    JsonB(crate::pg::build_info::build_info())
}
