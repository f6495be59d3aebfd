//! The origin tag of the engine's own writes (invariant 2, no echo), held in this
//! backend's memory. Only the engine's code can set it (`tag_writes`); the capture
//! trigger copies it into `change_log.origin`. No setting or SQL function sets it, so
//! an ordinary role cannot make its writes look like the engine's.

use std::cell::RefCell;

thread_local! {
    static CURRENT: RefCell<Option<String>> = const { RefCell::new(None) };
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

/// Forget any tag (at the end of a transaction: a scope never outlives one, this is
/// the safety net if it did).
pub fn clear() {
    CURRENT.with(|c| *c.borrow_mut() = None);
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
    fn a_panic_unwinding_restores_the_tag() {
        let r = std::panic::catch_unwind(|| {
            let _a = tag_writes("a".into());
            panic!("error while writing");
        });
        assert!(r.is_err());
        assert_eq!(current(), None);
    }
}
