//! A pushed change's `changed_at`: ISO-8601 text or epoch milliseconds, to microseconds
//! since the Unix epoch; clamping to the server's clock; ISO text for answers. Pure.

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800 * 1_000_000;

/// Earliest and latest times accepted: years 1 to 9999 (what ISO-8601 writes with four
/// digits; PostgreSQL itself goes further, a device clock should not).
const MIN_US: i64 = -62_135_596_800 * 1_000_000; // 0001-01-01T00:00:00Z
const MAX_US: i64 = 253_402_300_800 * 1_000_000 - 1; // 9999-12-31T23:59:59.999999Z

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A fixed-width run of ASCII digits at `s[at..at + n]`.
fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(part.iter().fold(0i64, |a, &b| a * 10 + i64::from(b - b'0')))
}

/// Parse ISO-8601 date and time with a zone: `YYYY-MM-DDTHH:MM[:SS[.ffffff]](Z|±HH[:MM])`
/// (a space for the `T` too). Returns microseconds since the Unix epoch.
/// - A zone is required: a time without one means a different moment on every device.
/// - Fractions beyond microseconds are cut (not rounded), as PostgreSQL keeps microseconds.
pub fn parse_iso(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        Err(format!(
            "changed_at \"{text}\" is not an ISO-8601 time ({why}); send e.g. \"2026-03-01T09:30:00Z\" or epoch milliseconds"
        ))
    };
    let s = text.trim().as_bytes();
    let (Some(y), Some(mo), Some(d)) = (digits(s, 0, 4), digits(s, 5, 2), digits(s, 8, 2)) else {
        return bad("no YYYY-MM-DD date");
    };
    if s[4] != b'-' || s[7] != b'-' {
        return bad("no YYYY-MM-DD date");
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || y < 1 {
        return bad("no such date");
    }
    if !matches!(s.get(10), Some(b'T' | b't' | b' ')) {
        return bad("no time of day");
    }
    let (Some(h), Some(mi)) = (digits(s, 11, 2), digits(s, 14, 2)) else {
        return bad("no HH:MM time");
    };
    if s.get(13) != Some(&b':') {
        return bad("no HH:MM time");
    }
    let mut at = 16;
    let mut sec = 0;
    let mut micros = 0;
    if s.get(at) == Some(&b':') {
        sec = match digits(s, at + 1, 2) {
            Some(v) => v,
            None => return bad("bad seconds"),
        };
        at += 3;
        if matches!(s.get(at), Some(b'.' | b',')) {
            at += 1;
            let start = at;
            while s.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return bad("empty fraction of a second");
            }
            let frac = &s[start..at.min(start + 6)];
            micros = frac.iter().fold(0i64, |a, &b| a * 10 + i64::from(b - b'0'))
                * 10i64.pow(6 - frac.len() as u32);
        }
    }
    if h > 23 || mi > 59 || sec > 59 {
        return bad("no such time of day");
    }
    let offset_s = match s.get(at) {
        Some(b'Z' | b'z') if at + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let Some(oh) = digits(s, at + 1, 2) else {
                return bad("bad zone offset");
            };
            let rest = &s[at + 3..];
            let om = match rest {
                [] => 0,
                [b':', _, _] => digits(s, at + 4, 2).unwrap_or(99),
                [_, _] => digits(s, at + 3, 2).unwrap_or(99),
                _ => 99,
            };
            if oh > 15 || om > 59 {
                return bad("bad zone offset");
            }
            let o = oh * 3600 + om * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        None => return bad("no time zone: add Z or an offset like +02:00"),
        _ => return bad("unexpected text after the time"),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    let us = secs * 1_000_000 + micros;
    if !(MIN_US..=MAX_US).contains(&us) {
        return bad("outside years 1 to 9999");
    }
    Ok(us)
}

/// A `changed_at` value of a pushed change: a JSON string (ISO-8601) or a JSON integer
/// (milliseconds since the Unix epoch). Returns microseconds since the Unix epoch.
pub fn parse_changed_at(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::String(s) => parse_iso(s),
        serde_json::Value::Number(n) => {
            let ms = n.as_i64().ok_or_else(|| {
                format!("changed_at {n} is not a whole number of epoch milliseconds")
            })?;
            let us = ms
                .checked_mul(1000)
                .filter(|us| (MIN_US..=MAX_US).contains(us))
                .ok_or_else(|| format!("changed_at {n} (epoch milliseconds) is outside years 1 to 9999"))?;
            Ok(us)
        }
        serde_json::Value::Null => Err("changed_at is missing: send the time the user made the change (ISO-8601 or epoch milliseconds)".into()),
        other => Err(format!(
            "changed_at must be ISO-8601 text or epoch milliseconds, not {other}"
        )),
    }
}

/// The time a change is recorded with: `sent`, or `now` when `sent` is later (a device
/// clock running ahead must not win every conflict). Returns (time, clamped?).
pub fn clamp(sent: i64, now: i64) -> (i64, Clamp) {
    if sent > now {
        (now, Clamp::ToServerClock)
    } else {
        (sent, Clamp::AsSent)
    }
}

/// Whether `clamp` moved a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    AsSent,
    ToServerClock,
}

/// ISO-8601 UTC text of microseconds since the Unix epoch, e.g. `2026-03-01T09:30:00.5Z`.
pub fn format_iso(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        t / 3600,
        t % 3600 / 60,
        t % 60
    );
    if micros != 0 {
        let f = format!("{micros:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_772_357_400_000_000; // 2026-03-01T09:30:00Z

    #[test]
    fn iso_forms_parse_to_the_same_instant() {
        for s in [
            "2026-03-01T09:30:00Z",
            "2026-03-01 09:30:00Z",
            "2026-03-01T09:30Z",
            "2026-03-01T11:30:00+02:00",
            "2026-03-01T11:30:00+0200",
            "2026-03-01T04:30:00-05",
            "2026-03-01t09:30:00.000z",
        ] {
            assert_eq!(parse_iso(s), Ok(T0), "{s}");
        }
        assert_eq!(
            parse_iso("2026-03-01T09:30:00.123456789Z"),
            Ok(T0 + 123_456)
        );
        assert_eq!(parse_iso("2026-03-01T09:30:00,5Z"), Ok(T0 + 500_000));
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_iso("1969-12-31T23:59:59Z"), Ok(-1_000_000));
        assert_eq!(
            parse_iso("2024-02-29T00:00:00Z").map(|u| u % 86_400_000_000),
            Ok(0)
        );
    }

    #[test]
    fn bad_iso_text_is_refused_with_the_reason() {
        for (s, why) in [
            ("2026-03-01T09:30:00", "no time zone"),
            ("2026-03-01", "no time of day"),
            ("2026-13-01T00:00:00Z", "no such date"),
            ("2026-02-29T00:00:00Z", "no such date"),
            ("2026-03-01T24:00:00Z", "no such time"),
            ("2026-03-01T09:60:00Z", "no such time"),
            ("yesterday", "no YYYY-MM-DD"),
            ("", "no YYYY-MM-DD"),
            ("2026-03-01T09:30:00Zjunk", "unexpected text"),
            ("2026-03-01T09:30:00+2", "bad zone"),
            ("2026-03-01T09:30:00.Z", "empty fraction"),
        ] {
            let e = parse_iso(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains("ISO-8601"), "{e}");
        }
    }

    #[test]
    fn epoch_milliseconds_and_other_json() {
        assert_eq!(parse_changed_at(&json!(1_772_357_400_000i64)), Ok(T0));
        assert_eq!(parse_changed_at(&json!(-1)), Ok(-1000));
        assert_eq!(parse_changed_at(&json!("2026-03-01T09:30:00Z")), Ok(T0));
        assert!(parse_changed_at(&json!(1.5))
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_changed_at(&json!(i64::MAX))
            .unwrap_err()
            .contains("outside"));
        assert!(parse_changed_at(&json!(null))
            .unwrap_err()
            .contains("missing"));
        assert!(parse_changed_at(&json!(true))
            .unwrap_err()
            .contains("not true"));
    }

    #[test]
    fn a_clock_ahead_is_clamped_to_the_server() {
        assert_eq!(clamp(T0, T0 + 1), (T0, Clamp::AsSent));
        assert_eq!(clamp(T0, T0), (T0, Clamp::AsSent));
        assert_eq!(clamp(T0 + 5, T0), (T0, Clamp::ToServerClock));
    }

    #[test]
    fn iso_output_round_trips() {
        assert_eq!(format_iso(T0), "2026-03-01T09:30:00Z");
        assert_eq!(format_iso(T0 + 120_000), "2026-03-01T09:30:00.12Z");
        assert_eq!(format_iso(-1), "1969-12-31T23:59:59.999999Z");
        for us in [T0, 0, -1, MIN_US, MAX_US, 951_782_400_000_000] {
            assert_eq!(parse_iso(&format_iso(us)), Ok(us), "{us}");
        }
    }
}
