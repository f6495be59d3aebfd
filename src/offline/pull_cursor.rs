//! The opaque cursor of sync_pull, pure: what it holds, its text form, and whether
//! changes after it may have been pruned.
//!
//! A cursor says "everything visible in snapshot `prev` was delivered" and, while a
//! window (prev, cur] is being paged through, "of that window, the changes up to id
//! `after_id` too". It carries the sync_instance it was made in (a cursor from another
//! database answers reset_required) and the endpoint (using it for another one is an
//! error). Text form: `sp1` + hex of `1|instance|endpoint|prev|cur|after_id`; clients
//! must treat it as opaque.

use crate::core::cursor::Snapshot;

const PREFIX: &str = "sp1";

/// Paging inside a window: its end and the last change id delivered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InWindow {
    pub cur: Snapshot,
    pub after_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullCursor {
    pub instance: String,
    pub endpoint_id: i64,
    pub prev: Snapshot,
    pub page: Option<InWindow>,
}

fn not_a_cursor(why: &str) -> String {
    format!(
        "sync_pull: the cursor is not one sync_pull returned ({why}); pass NULL to start from now, or the \"cursor\" of the last answer"
    )
}

impl PullCursor {
    pub fn encode(&self) -> String {
        let (cur, after) = match &self.page {
            Some(p) => (p.cur.to_string(), p.after_id.to_string()),
            None => (String::new(), String::new()),
        };
        let plain = format!(
            "1|{}|{}|{}|{cur}|{after}",
            self.instance, self.endpoint_id, self.prev
        );
        format!("{PREFIX}{}", hex::encode(plain))
    }

    pub fn decode(text: &str) -> Result<PullCursor, String> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| not_a_cursor("unknown format"))?;
        let bytes = hex::decode(body).map_err(|_| not_a_cursor("not its encoding"))?;
        let plain = String::from_utf8(bytes).map_err(|_| not_a_cursor("not its encoding"))?;
        let parts: Vec<&str> = plain.split('|').collect();
        let [version, instance, endpoint, prev, cur, after] = parts[..] else {
            return Err(not_a_cursor("wrong number of parts"));
        };
        if version != "1" {
            return Err(not_a_cursor("unknown version"));
        }
        let endpoint_id = endpoint
            .parse::<i64>()
            .map_err(|_| not_a_cursor("bad endpoint"))?;
        let snap = |s: &str| Snapshot::parse(s).map_err(|_| not_a_cursor("bad position"));
        let prev = snap(prev)?;
        let page = match (cur, after) {
            ("", "") => None,
            (c, a) => {
                let cur = snap(c)?;
                if !cur.follows(&prev) {
                    return Err(not_a_cursor("positions out of order"));
                }
                let after_id = a.parse::<i64>().map_err(|_| not_a_cursor("bad page"))?;
                Some(InWindow { cur, after_id })
            }
        };
        if instance.is_empty() {
            return Err(not_a_cursor("no database"));
        }
        Ok(PullCursor {
            instance: instance.to_string(),
            endpoint_id,
            prev,
            page,
        })
    }
}

/// Why a cursor cannot be continued (the client resyncs through sync_snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// made in another database (a restore from a dump, another cluster)
    OtherDatabase,
    /// changes it had not reached yet were pruned from change_log
    Pruned,
}

impl ResetReason {
    pub fn message(self) -> &'static str {
        match self {
            ResetReason::OtherDatabase => {
                "the cursor was made by another database (e.g. before a restore from a dump)"
            }
            ResetReason::Pruned => {
                "changes after the cursor were pruned from change_log (sync_engine.log_retention)"
            }
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            ResetReason::OtherDatabase => "other_database",
            ResetReason::Pruned => "pruned",
        }
    }
}

/// Can `c` be continued here? `here`: this database's sync_instance id; `pruned_txid`:
/// the highest txid whose records of the endpoint were pruned (None: none were).
/// - Every change not yet delivered has a txid not visible in `prev`, so >= its xmin:
///   when everything pruned lies below that, nothing undelivered was lost.
pub fn reset_needed(c: &PullCursor, here: &str, pruned_txid: Option<u64>) -> Option<ResetReason> {
    if !c.instance.eq_ignore_ascii_case(here) {
        return Some(ResetReason::OtherDatabase);
    }
    match pruned_txid {
        Some(t) if t >= c.prev.xmin => Some(ResetReason::Pruned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: &str = "0b8e5a2c-3f43-4a7e-9b1e-6f1d2c3a4b5c";

    fn snap(s: &str) -> Snapshot {
        Snapshot::parse(s).unwrap()
    }

    fn cursor(page: Option<InWindow>) -> PullCursor {
        PullCursor {
            instance: HERE.into(),
            endpoint_id: 4,
            prev: snap("100:104:100,102"),
            page,
        }
    }

    #[test]
    fn round_trips_and_is_opaque() {
        for c in [
            cursor(None),
            cursor(Some(InWindow {
                cur: snap("102:110:102"),
                after_id: 77,
            })),
        ] {
            let t = c.encode();
            assert!(t.starts_with("sp1"));
            assert!(
                !t.contains(':') && !t.contains('|'),
                "no snapshot text shows: {t}"
            );
            assert_eq!(PullCursor::decode(&t), Ok(c));
        }
    }

    #[test]
    fn junk_is_not_a_cursor() {
        let good = cursor(None).encode();
        let wrong_version = format!("sp1{}", hex::encode(format!("2|{HERE}|4|1:1:||")));
        let backwards = format!("sp1{}", hex::encode(format!("1|{HERE}|4|10:14:|5:6:|1")));
        for t in [
            "",
            "hello",
            "sp1zz",
            "sp1",
            &good[..good.len() - 2],
            &wrong_version,
            &backwards,
            &format!("sp1{}", hex::encode("1|x|4|garbage||")),
            &format!("sp1{}", hex::encode("1||4|1:1:||")),
        ] {
            let e = PullCursor::decode(t).unwrap_err();
            assert!(e.contains("not one sync_pull returned"), "{t}: {e}");
        }
    }

    #[test]
    fn reset_when_from_elsewhere_or_pruned_past_it() {
        let c = cursor(None);
        assert_eq!(reset_needed(&c, HERE, None), None);
        assert_eq!(
            reset_needed(&c, &HERE.to_uppercase(), Some(99)),
            None,
            "pruned below the cursor only"
        );
        assert_eq!(reset_needed(&c, HERE, Some(100)), Some(ResetReason::Pruned));
        assert_eq!(
            reset_needed(&c, HERE, Some(5000)),
            Some(ResetReason::Pruned)
        );
        assert_eq!(
            reset_needed(&c, "7d1c0f9e-aa10-4b2b-8c55-0e9f8a7b6c5d", None),
            Some(ResetReason::OtherDatabase)
        );
    }
}
