//! `sync_engine_build_info()`: which build of the library a server has loaded.
//!
//! - `cargo pgrx test` installs a debug build into the same directory as a release
//!   install, and a debug build is 3-4 times slower; a DBA (and the bench scripts) must
//!   be able to tell which one is installed.

use serde_json::json;

/// How the library was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildProfile {
    /// debug assertions on (cargo's dev/test profile): for tests only
    Debug,
    /// optimized, no debug assertions (`cargo pgrx install --release`)
    Release,
}

impl BuildProfile {
    /// The profile this code was compiled with.
    pub fn current() -> BuildProfile {
        if cfg!(debug_assertions) {
            BuildProfile::Debug
        } else {
            BuildProfile::Release
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BuildProfile::Debug => "debug",
            BuildProfile::Release => "release",
        }
    }
}

/// The build description: `{"profile": "debug"|"release", "version": "<crate version>"}`.
pub fn build_info() -> serde_json::Value {
    json!({
        "profile": BuildProfile::current().as_str(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_follows_debug_assertions() {
        // unit tests build with the dev profile unless --release is given
        let expected = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert_eq!(BuildProfile::current().as_str(), expected);
        assert_eq!(build_info()["profile"], expected);
    }

    #[test]
    fn version_is_the_crate_version() {
        assert_eq!(build_info()["version"], env!("CARGO_PKG_VERSION"));
        assert!(!env!("CARGO_PKG_VERSION").is_empty());
    }
}
