//! Webhook subscriptions: subscribe, unsubscribe, redeliver, read a secret (the SQL
//! functions are in `api::notify`). Each checks its arguments (URL, events, secret)
//! and that the caller has the privileges of the extension's owner (subscriptions see every config's events and
//! hold secrets), then writes as the extension's owner.

use super::{sign, validate};
use crate::pg::db;
use crate::pg::fail;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use pgrx::prelude::*;

/// ERROR 42501 unless the caller has the privileges of the extension's owner.
fn require_owner(what: &str) {
    security::require_privileges_of(security::current_user(), security::extension_owner(), what);
}

/// `SECRET_BYTES` random bytes from pg_strong_random, as a `whsec_` secret.
fn generate_secret() -> String {
    let mut buf = [0u8; sign::SECRET_BYTES];
    if !unsafe { pg_sys::pg_strong_random(buf.as_mut_ptr().cast(), buf.len()) } {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "sync_add_webhook: could not generate a random secret (pg_strong_random failed)",
        );
    }
    sign::secret_from_bytes(&buf)
}

/// Subscribe the receiver at `url` to the event types `events` (see
/// `validate::EVENT_TYPES`); `secret` (`whsec_<base64>`) signs the requests, generated
/// when NULL. Returns the subscription's id. Writes sync_webhooks (and restarts the
/// changes.available position when this is its first listener).
/// ERRORs: 22004 a NULL url/events or a NULL element; 22023 a bad URL, an unknown or no
/// event type, a malformed secret; 42501 a caller without the owner's privileges.
pub fn add(url: &str, events: Vec<String>, secret: Option<&str>) -> i64 {
    const F: &str = "sync_add_webhook";
    let bad = |m: String| -> ! {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            &format!("{F}: {m}"),
        )
    };
    validate::url(url).unwrap_or_else(|m| bad(format!("invalid url: {m}")));
    let events = validate::events(&events).unwrap_or_else(|m| bad(format!("invalid events: {m}")));
    let secret = match secret {
        Some(s) => {
            sign::secret_key(s).unwrap_or_else(|m| bad(format!("invalid secret: {m}")));
            s.to_string()
        }
        None => generate_secret(),
    };
    require_owner("add a webhook");
    let schema = ext_schema();
    security::as_extension_owner(|| {
        if events.iter().any(|e| e == "changes.available") {
            // nobody listened: announce from now on, not from an old position
            db::run(
                &format!(
                    "UPDATE {schema}.sync_notify_state SET position = NULL
                      WHERE NOT {schema}.sync_event_wanted('changes.available') AND position IS NOT NULL"
                ),
                &[],
            );
        }
        db::one::<i64>(
            &format!("INSERT INTO {schema}.sync_webhooks (url, events, secret) VALUES ($1, $2, $3) RETURNING id"),
            &[url.into(), events.into(), secret.into()],
        )
        .expect("webhook id")
    })
}

fn missing_webhook(func: &str, id: i64) -> ! {
    fail(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        &format!("{func}: webhook {id} does not exist (see sync_webhooks)"),
    )
}

/// Remove subscription `id` with its deliveries (pending, dead and delivered ones).
/// ERRORs: 22004 NULL; 42704 no such webhook; 42501 not the owner's privileges.
pub fn remove(id: i64) {
    const F: &str = "sync_remove_webhook";
    require_owner("remove a webhook");
    let schema = ext_schema();
    let gone = security::as_extension_owner(|| {
        db::one::<i64>(
            &format!("DELETE FROM {schema}.sync_webhooks WHERE id = $1 RETURNING id"),
            &[id.into()],
        )
    });
    if gone.is_none() {
        missing_webhook(F, id);
    }
}

/// Send delivery `delivery_id` again, whatever its status (dead ones included): it is
/// made pending, due now, with its attempts reset to 0 (the retry schedule starts over).
/// ERRORs: 22004 NULL; 42704 no such delivery; 55000 its webhook is disabled (410);
/// 42501 not the owner's privileges.
pub fn redeliver(id: i64) {
    const F: &str = "sync_redeliver";
    require_owner("redeliver a webhook delivery");
    let schema = ext_schema();
    security::as_extension_owner(|| {
        let (webhook, enabled) = db::two::<i64, bool>(
            &format!(
                "SELECT w.id, w.enabled FROM {schema}.sync_deliveries d
                   JOIN {schema}.sync_webhooks w ON w.id = d.webhook_id WHERE d.id = $1 FOR UPDATE OF d"
            ),
            &[id.into()],
        )
        .unwrap_or_else(|| {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                &format!("{F}: delivery {id} does not exist (see sync_deliveries)"),
            )
        });
        if enabled == Some(false) {
            fail(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                &format!(
                    "{F}: webhook {} of delivery {id} is disabled (its receiver answered 410 Gone, see sync_webhooks.disabled_reason); add the receiver again with sync_add_webhook",
                    webhook.unwrap_or_default()
                ),
            );
        }
        db::run(
            &format!(
                "UPDATE {schema}.sync_deliveries
                    SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL
                  WHERE id = $1"
            ),
            &[id.into()],
        );
    });
    super::wake_at_commit();
}

/// The secret of webhook `id` (`whsec_...`), for the receiver's configuration. Only a
/// role with the extension owner's privileges may read it.
/// ERRORs: 22004 NULL; 42704 no such webhook; 42501 not the owner's privileges.
pub fn secret(id: i64) -> String {
    const F: &str = "sync_webhook_secret";
    require_owner("read a webhook's secret");
    let schema = ext_schema();
    security::as_extension_owner(|| {
        db::one::<String>(
            &format!("SELECT secret FROM {schema}.sync_webhooks WHERE id = $1"),
            &[id.into()],
        )
    })
    .unwrap_or_else(|| missing_webhook(F, id))
}
