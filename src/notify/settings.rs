//! Settings (GUCs) of notifications. All reloadable (SIGHUP): the notifier reads them
//! at every turn of its loop.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Waits between the attempts of a delivery (see `schedule::parse_schedule`).
pub static RETRY_SCHEDULE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"5s,5m,30m,2h,5h,10h,10h"));
/// Milliseconds a whole request may take (connect, send, answer).
pub static TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(15_000);
/// Milliseconds to connect to a receiver.
pub static CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);
/// Requests in flight at once per receiver.
pub static CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(4);
/// Redis to XADD every event to (unset: none).
pub static REDIS_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// The stream key.
pub static REDIS_STREAM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"sync_engine:events"));
/// Approximate MAXLEN of the stream (0: not trimmed).
pub static REDIS_MAXLEN: GucSetting<i32> = GucSetting::<i32>::new(100_000);
/// Hours delivered rows of sync_deliveries (and streamed, fully delivered events of
/// the outbox) are kept.
pub static DELIVERIES_RETENTION_HOURS: GucSetting<i32> = GucSetting::<i32>::new(168);

/// From `guc::init`.
pub fn init() {
    GucRegistry::define_string_guc(
        c"sync_engine.webhook_retry_schedule",
        c"Waits between the attempts of a webhook delivery, comma-separated (ms, s, m, h, d).",
        c"A delivery has one attempt more than the list has items; then it is dead.",
        &RETRY_SCHEDULE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.webhook_timeout",
        c"Milliseconds a webhook request may take in all (connect, send, answer).",
        c"",
        &TIMEOUT_MS,
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"sync_engine.webhook_connect_timeout",
        c"Milliseconds to connect to a webhook receiver.",
        c"",
        &CONNECT_TIMEOUT_MS,
        50,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"sync_engine.webhook_concurrency",
        c"Webhook requests in flight at once per receiver.",
        c"",
        &CONCURRENCY,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"sync_engine.redis_url",
        c"Redis to XADD every sync_engine event to, e.g. redis://127.0.0.1:6379/0. Unset: none.",
        c"Readable by superusers only: it may hold a password.",
        &REDIS_URL,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"sync_engine.redis_stream",
        c"The Redis stream key events are added to.",
        c"",
        &REDIS_STREAM,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.redis_maxlen",
        c"Approximate length the Redis stream is trimmed to (MAXLEN ~); 0: not trimmed.",
        c"",
        &REDIS_MAXLEN,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sync_engine.deliveries_retention",
        c"Hours delivered webhook deliveries (and fully sent events) are kept.",
        c"Dead and pending deliveries are kept until delivered or their webhook is removed.",
        &DELIVERIES_RETENTION_HOURS,
        0,
        24 * 3650,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// `sync_engine.redis_url`, None when unset or blank.
pub fn redis_url() -> Option<String> {
    crate::pg::guc::string(&REDIS_URL).filter(|u| !u.trim().is_empty())
}

/// `sync_engine.redis_stream` (its default when unset or blank).
pub fn redis_stream() -> String {
    crate::pg::guc::string(&REDIS_STREAM)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "sync_engine:events".into())
}

/// `sync_engine.webhook_retry_schedule` as text.
pub fn retry_schedule() -> String {
    crate::pg::guc::string(&RETRY_SCHEDULE).unwrap_or_default()
}
