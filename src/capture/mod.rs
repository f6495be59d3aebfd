//! The capture trigger: one `change_log` row per inserted, updated or deleted row.
//!
//! Hot path: it runs inside every write to a registered table, so it caches per
//! relation the output functions of its columns and builds the record (and its jsonb
//! image) itself. A record is *taken* in the trigger (its id drawn, its time set) and
//! written with others straight into change_log's heap and indexes: a thousand at a
//! time, at the end of the statement (ExecutorEnd, or after a utility statement such
//! as COPY), and before commit. Records of a subtransaction are written only while it
//! is the current one, and dropped when it aborts, with the writes they record. When
//! change_log does not have its usual shape, records go in through SPI instead. The
//! pure part (JSON text, diff record, checksum) is in `core::rowjson`.
//!
//! - `trigger`: the row trigger's work (`capture`), and the TRUNCATE refusal;
//! - `rel`: per relation, its columns and output functions (cached), a row's values;
//! - `buffer`: the taken records, and the hooks that write them (statement end,
//!   utility statements, commit, subtransaction end);
//! - `heap`: the direct writer into change_log's heap and indexes;
//! - `spi`: the SPI writer, for a change_log of an unusual shape;
//! - `endpoints`, `changes`, `origin`: registration, change windows, the origin tag.

use crate::core::rowjson::{self, ColKind, ColValue};
use crate::pg::fail;
use crate::pg::quote::quote_ident;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

mod buffer;
pub mod changes;
mod heap;
mod rel;
mod spi;
mod trigger;

use buffer::*;
use heap::*;
use rel::*;
use spi::*;

pub(crate) use buffer::flush;
pub use buffer::init;
#[cfg(any(test, feature = "pg_test"))]
pub(crate) use heap::jsonb_datum;
pub(crate) use heap::{numeric_image, JsonbObject};
pub use trigger::{capture, refuse_truncate};

pub mod endpoints;
pub mod origin;

pub const TRIGGER_NAME: &str = "sync_engine_capture";

extern "C-unwind" {
    /// commands/sequence.h: the next value of sequence `relid` (nextval's body)
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

thread_local! {
    static PENDING: RefCell<Buffer> = RefCell::new(Buffer::default());
    /// whether the hooks that write taken records at the end of a statement are in
    /// place for every statement: not yet in a backend that loaded the library in the
    /// middle of a statement (e.g. a COPY), which writes each record at once until one
    /// of the hooks has run
    static HOOKS_LIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static RELS: RefCell<HashMap<pg_sys::Oid, RelInfo>> = RefCell::new(HashMap::new());
    static LOGREL: RefCell<Option<Option<LogRel>>> = const { RefCell::new(None) };
    static PLAN: RefCell<Option<(String, pg_sys::SPIPlanPtr)>> = const { RefCell::new(None) };
}
