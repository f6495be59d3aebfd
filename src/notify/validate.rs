//! Checks of webhook subscriptions, as plain Rust (no Postgres): receiver URLs and
//! event names. Each returns a message naming the problem (and the fix).

/// Every event type, in the order docs/notify.md documents them.
pub const EVENT_TYPES: [&str; 6] = [
    "run.completed",
    "run.failed",
    "conflict.created",
    "conflict.resolved",
    "changes.available",
    "delivery.dead",
];

/// Whether `t` is an event type.
pub fn is_event_type(t: &str) -> bool {
    EVENT_TYPES.contains(&t)
}

/// The event list of a subscription: each a known event type, at least one; repeats
/// are dropped (first occurrence kept). Err: a message listing the allowed names.
pub fn events(list: &[String]) -> Result<Vec<String>, String> {
    let allowed = EVENT_TYPES.join(", ");
    if list.is_empty() {
        return Err(format!(
            "events must name at least one event type (one of: {allowed})"
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for e in list {
        if !is_event_type(e) {
            return Err(format!(
                "unknown event type \"{e}\": the event types are {allowed}"
            ));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

/// The longest receiver URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// A receiver URL: absolute http:// or https:// with a host, parseable as an HTTP URI.
pub fn url(u: &str) -> Result<(), String> {
    let form = "a receiver URL is an absolute http:// or https:// URL with a host, e.g. https://hooks.example.com/sync";
    if u.len() > MAX_URL_BYTES {
        return Err(format!(
            "the URL is {} bytes long; at most {MAX_URL_BYTES} are accepted",
            u.len()
        ));
    }
    let uri: ureq::http::Uri = u
        .parse()
        .map_err(|e| format!("the URL does not parse ({e}): {form}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "the URL's scheme is \"{other}\", not http or https: {form}"
            ))
        }
        None => return Err(format!("the URL has no scheme: {form}")),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(format!("the URL has no host: {form}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn events_are_checked_and_deduplicated() {
        assert_eq!(
            events(&v(&["run.failed", "run.failed", "delivery.dead"])).unwrap(),
            v(&["run.failed", "delivery.dead"])
        );
        let e = events(&v(&["run.failed", "run.done"])).unwrap_err();
        assert!(e.contains("\"run.done\""), "{e}");
        for t in EVENT_TYPES {
            assert!(e.contains(t), "{e} should list {t}");
        }
        assert!(events(&[]).unwrap_err().contains("at least one"));
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(url("http://127.0.0.1:8080/hook").is_ok());
        assert!(url("https://hooks.example.com/a?b=c").is_ok());
        assert!(url("ftp://example.com/x").unwrap_err().contains("\"ftp\""));
        assert!(url("example.com/x").unwrap_err().contains("http"));
        assert!(url("http://").unwrap_err().contains("http"));
        assert!(url("http://exa mple.com/")
            .unwrap_err()
            .contains("does not parse"));
        assert!(url("").is_err());
        assert!(url(&format!("http://e.com/{}", "a".repeat(3000)))
            .unwrap_err()
            .contains("at most 2048"));
    }
}
