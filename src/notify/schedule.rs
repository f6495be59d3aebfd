//! Retry arithmetic of webhook deliveries, as plain Rust (no Postgres): the retry
//! schedule setting, jitter, `Retry-After`, and what to do after an attempt.
//!
//! - The schedule lists the waits *between* attempts: `5s,5m,30m` means the first
//!   attempt at once, then up to three retries; a delivery has at most
//!   `schedule.len() + 1` attempts (Svix's convention).
//! - Jitter: each wait is multiplied by a factor in [0.9, 1.1), so receivers that came
//!   back from an outage are not hit by every retry in the same instant.

use std::time::Duration;

/// The default of `sync_engine.webhook_retry_schedule` (Svix's schedule).
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";
/// The longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Parse a retry schedule: comma-separated durations, each a number and a unit `ms`,
/// `s`, `m`, `h` or `d` (`100ms,2s,5m`). An empty string means no retries.
/// Returns the waits, or a message naming the bad item and the expected form.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(vec![]);
    }
    s.split(',')
        .map(|item| parse_duration(item.trim()))
        .collect()
}

fn parse_duration(item: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid retry delay \"{item}\" in sync_engine.webhook_retry_schedule: expected a number and a unit (ms, s, m, h, d), comma-separated, e.g. \"{DEFAULT_SCHEDULE}\""
        )
    };
    let split = item.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = item.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms)
        .filter(|&t| t <= 30 * 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// `wait` scaled by the jitter factor 0.9 + 0.2 * `u` (`u` uniform in [0, 1)).
pub fn jittered(wait: Duration, u: f64) -> Duration {
    let u = u.clamp(0.0, 1.0);
    wait.mul_f64(0.9 + 0.2 * u)
}

/// A `Retry-After` header value: delay-seconds, or an HTTP-date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) compared with `now_unix` (seconds). None when it
/// parses as neither. At most `MAX_RETRY_AFTER`; a date in the past is zero.
pub fn parse_retry_after(v: &str, now_unix: i64) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(v)?;
    Some(Duration::from_secs((at - now_unix).max(0) as u64).min(MAX_RETRY_AFTER))
}

/// Unix seconds of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? as i64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// How one attempt ended, as the delivery thread saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this HTTP status; `retry_after` is its Retry-After
    /// header, if any.
    Answered {
        status: u16,
        retry_after: Option<String>,
    },
    /// No answer: connection refused, timeout, a broken response. The message says which.
    Failed(String),
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// A 2xx: delivered.
    Delivered,
    /// Try again after this wait.
    RetryAfter(Duration),
    /// The attempts are used up: dead-letter.
    Dead,
    /// 410 Gone: the receiver asks to be unsubscribed. The delivery is dead and the
    /// subscription disabled.
    Unsubscribe,
}

/// The decision after attempt number `attempt` (1-based) of a delivery ended as `a`.
/// - `schedule`: the retry waits (see `parse_schedule`); `u`: a uniform random number
///   in [0, 1) for the jitter; `now_unix`: the time, for a Retry-After date.
/// - A `Retry-After` on 429 or 503 is honoured: the next attempt comes no sooner than
///   it says (and no sooner than the schedule's wait either).
pub fn after_attempt(
    attempt: u32,
    a: &Attempt,
    schedule: &[Duration],
    u: f64,
    now_unix: i64,
) -> Next {
    let retry_after = match a {
        Attempt::Answered { status, .. } if (200..300).contains(status) => return Next::Delivered,
        Attempt::Answered { status: 410, .. } => return Next::Unsubscribe,
        Attempt::Answered {
            status: 429 | 503,
            retry_after: Some(v),
        } => parse_retry_after(v, now_unix),
        _ => None,
    };
    let Some(wait) = schedule.get(attempt.saturating_sub(1) as usize) else {
        return Next::Dead;
    };
    let wait = jittered(*wait, u);
    Next::RetryAfter(retry_after.map_or(wait, |r| r.max(wait)))
}

/// A short description of a failed attempt for `sync_deliveries.last_error`.
pub fn describe(a: &Attempt) -> Option<String> {
    match a {
        Attempt::Answered { status, .. } if (200..300).contains(status) => None,
        Attempt::Answered { status, .. } => Some(format!("the receiver answered HTTP {status}")),
        Attempt::Failed(m) => Some(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_default_schedule_parses_to_svix_waits() {
        let s = parse_schedule(DEFAULT_SCHEDULE).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s[0], Duration::from_secs(5));
        assert_eq!(s[1], Duration::from_secs(300));
        assert_eq!(s[3], Duration::from_secs(7200));
        assert_eq!(s[6], Duration::from_secs(36_000));
    }

    #[test]
    fn schedules_take_ms_and_spaces_and_may_be_empty() {
        assert_eq!(
            parse_schedule(" 100ms, 200ms ").unwrap(),
            vec![ms(100), ms(200)]
        );
        assert_eq!(
            parse_schedule("1d").unwrap(),
            vec![Duration::from_secs(86_400)]
        );
        assert_eq!(parse_schedule("").unwrap(), vec![]);
    }

    #[test]
    fn bad_schedules_name_the_item() {
        for bad in ["5", "5x", "s", "-5s", "5s,,5m", "1.5s", "99999d"] {
            let e = parse_schedule(bad).unwrap_err();
            assert!(e.contains("invalid retry delay"), "{bad}: {e}");
            assert!(e.contains("ms, s, m, h, d"), "{bad}: {e}");
        }
        assert!(parse_schedule("5s,5x").unwrap_err().contains("\"5x\""));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        assert_eq!(jittered(ms(1000), 0.0), ms(900));
        assert_eq!(jittered(ms(1000), 0.5), ms(1000));
        assert!(jittered(ms(1000), 0.999_999) < ms(1100));
        assert!(jittered(ms(1000), 0.999_999) > ms(1099));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        // 1994-11-06 08:49:37 UTC = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 + 30),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999", 0), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    fn answered(status: u16, retry_after: Option<&str>) -> Attempt {
        Attempt::Answered {
            status,
            retry_after: retry_after.map(str::to_string),
        }
    }

    #[test]
    fn a_2xx_is_delivered_and_410_unsubscribes() {
        let s = [ms(100)];
        assert_eq!(
            after_attempt(1, &answered(200, None), &s, 0.5, 0),
            Next::Delivered
        );
        assert_eq!(
            after_attempt(1, &answered(204, None), &s, 0.5, 0),
            Next::Delivered
        );
        assert_eq!(
            after_attempt(1, &answered(410, None), &s, 0.5, 0),
            Next::Unsubscribe
        );
    }

    #[test]
    fn failures_follow_the_schedule_then_die() {
        let s = [ms(100), ms(200)];
        let fail = Attempt::Failed("timed out".into());
        assert_eq!(
            after_attempt(1, &fail, &s, 0.5, 0),
            Next::RetryAfter(ms(100))
        );
        assert_eq!(
            after_attempt(2, &answered(500, None), &s, 0.5, 0),
            Next::RetryAfter(ms(200))
        );
        assert_eq!(
            after_attempt(3, &answered(500, None), &s, 0.5, 0),
            Next::Dead
        );
        assert_eq!(after_attempt(1, &fail, &[], 0.5, 0), Next::Dead);
        // a redirect is not followed: it is a failed attempt
        assert_eq!(
            after_attempt(1, &answered(302, None), &s, 0.5, 0),
            Next::RetryAfter(ms(100))
        );
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only() {
        let s = [ms(100)];
        let long = Next::RetryAfter(Duration::from_secs(7));
        assert_eq!(
            after_attempt(1, &answered(429, Some("7")), &s, 0.5, 0),
            long
        );
        assert_eq!(
            after_attempt(1, &answered(503, Some("7")), &s, 0.5, 0),
            long
        );
        assert_eq!(
            after_attempt(1, &answered(500, Some("7")), &s, 0.5, 0),
            Next::RetryAfter(ms(100))
        );
        // never sooner than the schedule
        assert_eq!(
            after_attempt(1, &answered(429, Some("0")), &s, 0.5, 0),
            Next::RetryAfter(ms(100))
        );
        // the attempts still run out
        assert_eq!(
            after_attempt(2, &answered(429, Some("7")), &s, 0.5, 0),
            Next::Dead
        );
    }

    #[test]
    fn describe_names_the_status() {
        assert_eq!(describe(&answered(200, None)), None);
        assert_eq!(
            describe(&answered(500, None)).unwrap(),
            "the receiver answered HTTP 500"
        );
        assert_eq!(describe(&Attempt::Failed("x".into())).unwrap(), "x");
    }
}
