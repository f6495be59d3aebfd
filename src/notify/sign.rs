//! Standard Webhooks signatures and secrets, as plain Rust (no Postgres).
//!
//! - A secret is `whsec_` followed by the base64 of 24 to 64 random bytes; the key of
//!   the HMAC is those bytes (the base64-decoded part).
//! - A request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret (the spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

/// The secret text for the random `bytes`.
pub fn secret_from_bytes(bytes: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

/// The HMAC key of a secret: the bytes after `whsec_`, base64-decoded. Err: a message
/// saying what is wrong and what a secret looks like (never the secret itself).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let form = format!(
        "a secret is \"{SECRET_PREFIX}\" followed by the base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes (pass NULL to have one generated)"
    );
    let Some(b64) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err(format!(
            "the secret does not start with \"{SECRET_PREFIX}\": {form}"
        ));
    };
    let key = B64
        .decode(b64)
        .map_err(|_| format!("the secret is not valid base64 after \"{SECRET_PREFIX}\": {form}"))?;
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
        return Err(format!("the secret holds {} bytes: {form}", key.len()));
    }
    Ok(key)
}

/// The `webhook-signature` header value for message `id` sent at `timestamp` (Unix
/// seconds) with `body`, signed with `key` (see `secret_key`).
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Whether `header` (a `webhook-signature` value: space-separated `v1,<sig>` items)
/// holds a valid signature of the message — what a receiver checks.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = secret_key(secret) else {
        return false;
    };
    let want = signature(&key, id, timestamp, body);
    header.split_whitespace().any(|s| s == want)
}

/// The `webhook-id` of an outbox event: the same on every retry and for every receiver.
pub fn message_id(instance_hex: &str, event_id: i64) -> String {
    format!("evt_{instance_hex}_{event_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // the example of the Standard Webhooks spec (and of Svix's libraries)
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_standard_webhooks_example() {
        let key = secret_key(SPEC_SECRET).unwrap();
        assert_eq!(
            signature(&key, SPEC_ID, SPEC_TS, SPEC_BODY.as_bytes()),
            SPEC_SIG
        );
        assert!(verify(
            SPEC_SECRET,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY.as_bytes(),
            SPEC_SIG
        ));
        assert!(verify(
            SPEC_SECRET,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY.as_bytes(),
            &format!("v1,bad {SPEC_SIG}")
        ));
        assert!(!verify(
            SPEC_SECRET,
            SPEC_ID,
            SPEC_TS + 1,
            SPEC_BODY.as_bytes(),
            SPEC_SIG
        ));
        assert!(!verify(SPEC_SECRET, SPEC_ID, SPEC_TS, b"{}", SPEC_SIG));
    }

    #[test]
    fn generated_secrets_round_trip() {
        let s = secret_from_bytes(&[7u8; SECRET_BYTES]);
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).unwrap(), vec![7u8; SECRET_BYTES]);
    }

    #[test]
    fn bad_secrets_say_why_without_echoing_them() {
        let e = secret_key("hunter2hunter2hunter2hunter2").unwrap_err();
        assert!(e.contains("does not start with \"whsec_\""), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(secret_key("whsec_!!!")
            .unwrap_err()
            .contains("not valid base64"));
        let short = secret_from_bytes(&[1u8; 8]);
        assert!(secret_key(&short).unwrap_err().contains("holds 8 bytes"));
        let long = secret_from_bytes(&[1u8; 65]);
        assert!(secret_key(&long).unwrap_err().contains("holds 65 bytes"));
        assert!(secret_key(&secret_from_bytes(&[1u8; 24])).is_ok());
    }

    #[test]
    fn message_ids_are_stable_per_event() {
        assert_eq!(
            message_id("0123456789abcdef", 42),
            "evt_0123456789abcdef_42"
        );
    }
}
