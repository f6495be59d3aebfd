//! The triggers `sync_register_table` installs on a registered table.

use pgrx::prelude::*;

/// AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW: record the change in change_log.
#[pg_trigger]
fn sync_capture<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    // SAFETY: the trigger call's own data, valid for this call
    unsafe { crate::capture::capture(trigger.trigger(), trigger.trigger_data()) };
    Ok(None)
}

/// BEFORE TRUNCATE FOR EACH STATEMENT: refuse it (TRUNCATE fires no row triggers).
#[pg_trigger]
fn sync_refuse_truncate<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    crate::capture::refuse_truncate(&trigger.table_name().unwrap_or_default())
}
