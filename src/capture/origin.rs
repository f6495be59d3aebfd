//! The origin tag of the engine's own writes (invariant 2, no echo), held in this
//! backend's memory. Only the engine's code can set it (`tag_writes`); the capture
//! trigger copies it into `change_log.origin`. No setting or SQL function sets it, so
//! an ordinary role cannot make its writes look like the engine's.
//!
//! Next to it, the *change time* of the records of a write (`time_writes`): sync_push
//! writes a device's change with the time the user made it, not the time it arrived.
//! Same rules: set only by Rust code, for the life of a scope.

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
    static TIMES: RefCell<Option<HashMap<String, i64>>> = const { RefCell::new(None) };
}

/// While alive, writes of this backend are tagged with an origin; dropping it puts
/// back the tag before (also while an ERROR unwinds).
#[must_use = "the tag lasts as long as the scope value"]
pub struct OriginScope {
    prev: Option<String>,
}

impl Drop for OriginScope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// Tag this backend's writes with `tag` until the returned scope is dropped.
pub fn tag_writes(tag: String) -> OriginScope {
    let prev = CURRENT.with(|c| c.borrow_mut().replace(tag));
    OriginScope { prev }
}

/// The tag for a write now; None for an ordinary write.
pub fn current() -> Option<String> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Forget any tag and change times (at the end of a transaction: a scope never
/// outlives one, this is the safety net if it did).
pub fn clear() {
    CURRENT.with(|c| *c.borrow_mut() = None);
    TIMES.with(|t| *t.borrow_mut() = None);
}

/// While alive, the change records of writes to the entities named in its map get
/// the map's time instead of the clock's; dropping it puts back the map before.
#[must_use = "the change times last as long as the scope value"]
pub struct ChangeTimeScope {
    prev: Option<HashMap<String, i64>>,
}

impl Drop for ChangeTimeScope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        TIMES.with(|t| *t.borrow_mut() = prev);
    }
}

/// Give the change records of entity key (text, as change_log.entity_id holds it) ->
/// time (PostgreSQL timestamptz microseconds, since 2000-01-01) that time, until the
/// returned scope is dropped. Entities not in the map keep the clock's time.
pub fn time_writes(times: HashMap<String, i64>) -> ChangeTimeScope {
    let prev = TIMES.with(|t| t.borrow_mut().replace(times));
    ChangeTimeScope { prev }
}

/// The change time set for a write of `entity_id` now, None for the clock's.
pub fn change_time(entity_id: &str) -> Option<i64> {
    TIMES.with(|t| t.borrow().as_ref().and_then(|m| m.get(entity_id).copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(current(), None);
        {
            let _a = tag_writes("a".into());
            assert_eq!(current().as_deref(), Some("a"));
            {
                let _b = tag_writes("b".into());
                assert_eq!(current().as_deref(), Some("b"));
            }
            assert_eq!(current().as_deref(), Some("a"));
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn change_times_apply_to_their_entities_only_and_restore() {
        assert_eq!(change_time("1"), None);
        {
            let _t = time_writes(HashMap::from([("1".to_string(), 42)]));
            assert_eq!(change_time("1"), Some(42));
            assert_eq!(change_time("2"), None);
        }
        assert_eq!(change_time("1"), None);
    }

    #[test]
    fn a_panic_unwinding_restores_the_tag() {
        let r = std::panic::catch_unwind(|| {
            let _a = tag_writes("a".into());
            panic!("error while writing");
        });
        assert!(r.is_err());
        assert_eq!(current(), None);
    }
}
