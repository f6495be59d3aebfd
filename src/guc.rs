//! Settings (GUCs) of sync_engine.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};

/// Set (transaction-locally) by the engine while it writes, so the capture trigger tags
/// its change records and the engine never syncs its own writes back (no echo).
pub static ORIGIN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    GucRegistry::define_string_guc(
        c"sync_engine.origin",
        c"Origin tag written into change_log by the capture trigger.",
        c"Set by sync_engine while it applies changes; NULL (empty) for ordinary writes.",
        &ORIGIN,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The current origin tag, None when unset or empty.
pub fn origin() -> Option<String> {
    // read the raw pointer: no allocation on the capture hot path unless set
    let raw = unsafe { *ORIGIN.as_ptr() };
    if raw.is_null() {
        return None;
    }
    let s = unsafe { CStr::from_ptr(raw) };
    if s.is_empty() {
        None
    } else {
        Some(s.to_string_lossy().into_owned())
    }
}
