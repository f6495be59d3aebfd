//! Reading the work list: the pairs a run looks at, through an SPI cursor over the
//! statement `sql::work_sql` (or `sql::initial_work_sql`) builds.

use super::sql::CHANGE_TIDS;
use crate::core::plan::WorkItem;
use crate::core::types::Sides;
use crate::pg::db::{self, spi_fail};
use pgrx::prelude::*;
use pgrx::spi::SpiCursor;

/// The next `batch` rows of the work list (columns: source id, target id, source's
/// latest change, target's latest change, change record ctids, link ctid, number of
/// change records), one work item each, unfolded. Frees the fetched tuples.
pub(super) fn fetch(cursor: &mut SpiCursor<'_>, batch: i64) -> Vec<WorkItem> {
    let t = cursor.fetch(batch).unwrap_or_else(|e| spi_fail(e));
    let rows = db::scoped(|| {
        t.map(|r| WorkItem {
            ids: Sides::new(db::col(&r, 1), db::col(&r, 2)),
            last: Sides::new(db::col(&r, 3), db::col(&r, 4)),
            change_tids: db::col::<Vec<String>>(&r, 5).unwrap_or_default(),
            change_tids_complete: db::col::<i64>(&r, 7).is_none_or(|n| n <= CHANGE_TIDS),
            link: db::col(&r, 6),
            base: None,
        })
        .collect::<Vec<WorkItem>>()
    });
    // SAFETY: the tuple table of this fetch, whose rows are all converted above
    unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
    rows
}
