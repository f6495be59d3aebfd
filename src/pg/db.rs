//! Thin helpers over pgrx SPI: a missing row is None, every other SPI error is an ERROR.

use crate::pg::fail;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiError, SpiHeapTupleData, SpiTupleTable};
use pgrx::{FromDatum, IntoDatum};

pub fn spi_fail(e: SpiError) -> ! {
    fail(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        &format!("sync_engine: SPI: {e}"),
    )
}

fn none_if_missing<T>(r: Result<T, SpiError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(SpiError::InvalidPosition) => None,
        Err(e) => spi_fail(e),
    }
}

/// First column of the first row; None when there is no row or the value is NULL.
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    none_if_missing(Spi::get_one_with_args::<T>(sql, args)).flatten()
}

/// First two columns of the first row; None when there is no row.
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> Option<(Option<A>, Option<B>)> {
    none_if_missing(Spi::get_two_with_args::<A, B>(sql, args))
}

/// A row of an SPI result: a tuple of an iterated table, or a table at its current row.
pub trait SpiRow {
    fn value<T: FromDatum + IntoDatum>(&self, n: usize) -> Result<Option<T>, SpiError>;
    fn value_by_name<T: FromDatum + IntoDatum>(&self, name: &str) -> Result<Option<T>, SpiError>;
}

impl SpiRow for SpiHeapTupleData<'_> {
    fn value<T: FromDatum + IntoDatum>(&self, n: usize) -> Result<Option<T>, SpiError> {
        self.get::<T>(n)
    }
    fn value_by_name<T: FromDatum + IntoDatum>(&self, name: &str) -> Result<Option<T>, SpiError> {
        self.get_by_name::<T, _>(name)
    }
}

impl SpiRow for SpiTupleTable<'_> {
    fn value<T: FromDatum + IntoDatum>(&self, n: usize) -> Result<Option<T>, SpiError> {
        self.get::<T>(n)
    }
    fn value_by_name<T: FromDatum + IntoDatum>(&self, name: &str) -> Result<Option<T>, SpiError> {
        self.get_by_name::<T, _>(name)
    }
}

/// Column `n` (1-based) of an SPI result row; None when NULL. A column that cannot be
/// read as `T` (the statement and the code disagree) is an ERROR, never a NULL.
pub fn col<T: FromDatum + IntoDatum>(r: &impl SpiRow, n: usize) -> Option<T> {
    r.value::<T>(n).unwrap_or_else(|e| spi_fail(e))
}

/// Column `name` of an SPI result row; None when NULL. An unknown column, or one that
/// cannot be read as `T`, is an ERROR.
pub fn named<T: FromDatum + IntoDatum>(r: &impl SpiRow, name: &str) -> Option<T> {
    r.value_by_name::<T>(name).unwrap_or_else(|e| spi_fail(e))
}

/// The rows of the query `sql`, each through `f` (rows it answers None for are left
/// out). An SPI error is an ERROR; what pgrx copies while converting values is freed
/// on return (`scoped`).
pub fn select<R>(
    sql: &str,
    args: &[DatumWithOid],
    mut f: impl FnMut(&SpiHeapTupleData) -> Option<R>,
) -> Vec<R> {
    Spi::connect(|c| {
        let t = c.select(sql, None, args).unwrap_or_else(|e| spi_fail(e));
        scoped(|| t.filter_map(|r| f(&r)).collect())
    })
}

/// Run a statement for its effect.
pub fn run(sql: &str, args: &[DatumWithOid]) {
    Spi::run_with_args(sql, args).unwrap_or_else(|e| spi_fail(e))
}

/// Run `f` (which reads values out of SPI rows) so that whatever pgrx copies while
/// converting them is freed on return. pgrx converts a row's values in the *parent*
/// of the current memory context, which inside `Spi::connect` is the transaction's
/// context: without this, every value read during a long run would stay allocated
/// until commit. What `f` returns must own its data (String, serde_json::Value, ...).
pub fn scoped<R>(f: impl FnOnce() -> R) -> R {
    use pgrx::PgMemoryContexts;
    let mut outer = PgMemoryContexts::new("sync_engine rows");
    let r = unsafe {
        outer.switch_to(|_| {
            let mut inner = PgMemoryContexts::new("sync_engine row");
            inner.switch_to(|_| f())
        })
    };
    drop(outer);
    r
}

/// Run `f` with the planner held to index and TID lookups (no sequential scans, hash
/// or merge joins). For statements that touch one batch of rows by key or ctid: with
/// a batch of thousands the planner's estimate favours scanning the whole table once
/// per batch, which makes a run's cost follow the table's size. The settings are
/// transaction-local and put back afterwards (an error rolls them back with the
/// subtransaction it aborts).
pub fn lookups_only<R>(f: impl FnOnce() -> R) -> R {
    const KNOBS: &str = "enable_seqscan, enable_hashjoin, enable_mergejoin";
    let prev = one::<Vec<String>>(
        "SELECT ARRAY[current_setting('enable_seqscan'), current_setting('enable_hashjoin'),
                      current_setting('enable_mergejoin')]",
        &[],
    )
    .unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            &format!("sync_engine: cannot read {KNOBS}"),
        )
    });
    let set =
        "SELECT set_config('enable_seqscan', $1, true), set_config('enable_hashjoin', $2, true),
                      set_config('enable_mergejoin', $3, true)";
    run(set, &["off".into(), "off".into(), "off".into()]);
    let r = f();
    run(
        set,
        &[
            prev[0].as_str().into(),
            prev[1].as_str().into(),
            prev[2].as_str().into(),
        ],
    );
    r
}
