//! Webhook subscriptions and the notifier's internal functions.

use crate::core::args;
use crate::notify::{self, webhooks};
use crate::pg::OrRaise;
use pgrx::prelude::*;

/// Subscribe the receiver at `url` to `events`; `secret` (`whsec_<base64>`) signs the
/// requests, generated when NULL. Returns the subscription id.
#[pg_extern(volatile)]
fn sync_add_webhook(
    url: Option<&str>,
    events: Option<Vec<Option<String>>>,
    secret: default!(Option<&str>, "NULL"),
) -> i64 {
    const F: &str = "sync_add_webhook";
    let url = args::required(url, F, "url").or_raise();
    let events = args::no_null_elements(events, F, "events").or_raise();
    let events = args::required(events, F, "events").or_raise();
    webhooks::add(url, events, secret)
}

/// Remove subscription `id` with its deliveries.
#[pg_extern(volatile)]
fn sync_remove_webhook(id: Option<i64>) {
    webhooks::remove(args::required(id, "sync_remove_webhook", "id").or_raise())
}

/// Send delivery `delivery_id` again (dead ones included), from its first attempt.
#[pg_extern(volatile)]
fn sync_redeliver(delivery_id: Option<i64>) {
    webhooks::redeliver(args::required(delivery_id, "sync_redeliver", "delivery_id").or_raise())
}

/// The secret of webhook `id`, for the receiver's configuration (owner only).
#[pg_extern(volatile)]
fn sync_webhook_secret(id: Option<i64>) -> String {
    webhooks::secret(args::required(id, "sync_webhook_secret", "id").or_raise())
}

/// Wake the notifier when the current transaction commits. Called by `sync_emit`
/// (sql/notify.sql), which declares it.
#[pg_extern(sql = false, volatile)]
fn sync_notify_wake() {
    notify::wake_at_commit();
}

/// Whether `sync_engine.redis_url` is set: events then go to the stream too. Read in C
/// because the setting itself is readable by superusers only. Declared in
/// sql/notify.sql.
#[pg_extern(sql = false, volatile)]
fn sync_notify_redis_enabled() -> bool {
    notify::redis_enabled()
}
