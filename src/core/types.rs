//! Names for the two sides of a config, so no code says `true` or `[0]` for one.

pub use crate::core::merge::Side;

impl Side {
    /// Both sides, source first.
    pub const BOTH: [Side; 2] = [Side::Source, Side::Target];

    /// The side across from this one.
    pub fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }
}

/// One value per side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sides<T> {
    pub source: T,
    pub target: T,
}

impl<T> Sides<T> {
    pub fn new(source: T, target: T) -> Self {
        Sides { source, target }
    }

    /// The same value on both sides.
    pub fn both(v: T) -> Self
    where
        T: Clone,
    {
        Sides {
            source: v.clone(),
            target: v,
        }
    }

    pub fn get(&self, side: Side) -> &T {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    pub fn get_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Source => &mut self.source,
            Side::Target => &mut self.target,
        }
    }

    /// Each side's value through `f`, which is told the side.
    pub fn map<U>(self, mut f: impl FnMut(Side, T) -> U) -> Sides<U> {
        Sides {
            source: f(Side::Source, self.source),
            target: f(Side::Target, self.target),
        }
    }
}

impl<T> Sides<Option<T>> {
    /// Both values, when both sides have one.
    pub fn pair(&self) -> Option<(&T, &T)> {
        Some((self.source.as_ref()?, self.target.as_ref()?))
    }
}

impl Sides<Option<String>> {
    /// The ids as `&str`, for messages and SQL arguments.
    pub fn as_deref(&self) -> Sides<Option<&str>> {
        Sides {
            source: self.source.as_deref(),
            target: self.target.as_deref(),
        }
    }
}

/// Where a run's time went, in microseconds (logged at DEBUG1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// reading the work list's rows, bases, pending conflicts
    pub load: u128,
    /// from the load up to the merge's end
    pub merge: u128,
    /// the writes
    pub apply: u128,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_addressed_by_name() {
        let mut s = Sides::new(1, 2);
        assert_eq!((*s.get(Side::Source), *s.get(Side::Target)), (1, 2));
        *s.get_mut(Side::Target) += 10;
        assert_eq!(s, Sides::new(1, 12));
        let named = s.map(|side, v| format!("{side:?}={v}"));
        assert_eq!(named, Sides::new("Source=1".into(), "Target=12".into()));
        assert_eq!(Side::Source.other(), Side::Target);
        assert_eq!(Side::Target.other(), Side::Source);
        let ids = Sides::new(Some("a".to_string()), None);
        assert_eq!(ids.pair(), None);
        assert_eq!(ids.as_deref(), Sides::new(Some("a"), None));
        let both = Sides::new(Some(1), Some(2));
        assert_eq!(both.pair(), Some((&1, &2)));
    }
}
