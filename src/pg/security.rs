//! Who the engine acts as. Two rules (as PostgreSQL 16's logical-replication apply
//! worker does, and pg_cron per job):
//! - Every statement that writes a user table runs as that table's owner, inside a
//!   security-restricted operation (`as_table_owner`): a trigger, default, constraint or
//!   index expression on the table gains nothing its owner did not already have.
//! - The extension's own bookkeeping (configs, links, runs, conflicts, change_log) runs
//!   as the extension's owner (`as_extension_owner`), whoever called, after the caller's
//!   rights were checked (`require_*`), with `search_path` set to `pg_catalog`, the
//!   extension's schema and `pg_temp` (in that order): no function or operator the
//!   caller put on its path can stand in for a built-in while the owner's rights apply.
//!   User code reached from there (the writes under `as_table_owner`) gets the caller's
//!   `search_path` back, as before.

use crate::pg::db;
use crate::pg::fail;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};

thread_local! {
    /// The caller's `search_path` while `as_extension_owner` runs with its own (None
    /// outside it): what user code under `as_table_owner` sees.
    static CALLER_PATH: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Set `search_path` to `value` at the current GUC nest level, undone when the level is
/// popped (as a function's `SET` clause is).
fn set_search_path(value: &CStr) {
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// The role the session acts as now (`current_user`).
pub fn current_user() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

/// The owner of the sync_engine extension in this database.
pub fn extension_owner() -> pg_sys::Oid {
    db::one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'sync_engine'",
        &[],
    )
    .unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "extension sync_engine is not installed in this database",
        )
    })
}

/// The owner of a relation.
pub fn relation_owner(rel: pg_sys::Oid) -> pg_sys::Oid {
    db::one::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
        &[rel.into()],
    )
    .unwrap_or_else(|| {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            &format!("relation with OID {} does not exist", rel.to_u32()),
        )
    })
}

/// How a role switch is undone: the user and security context before it, and the GUC
/// nest level opened for it (settings changed under the switch are rolled back).
struct Switched {
    user: pg_sys::Oid,
    sec_context: i32,
    guc_level: Option<i32>,
}

impl Drop for Switched {
    fn drop(&mut self) {
        unsafe {
            // on an ERROR the (sub)transaction's abort pops the GUC level itself
            if let Some(level) = self.guc_level.filter(|_| !std::thread::panicking()) {
                pg_sys::AtEOXact_GUC(true, level);
            }
            pg_sys::SetUserIdAndSecContext(self.user, self.sec_context);
        }
    }
}

/// Run `f` as role `role`, adding `extra` to the security context.
fn switch_to<R>(role: pg_sys::Oid, extra: u32, f: impl FnOnce() -> R) -> R {
    let (mut user, mut sec_context) = (pg_sys::Oid::INVALID, 0i32);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut sec_context) };
    let restricted = extra & pg_sys::SECURITY_RESTRICTED_OPERATION != 0;
    let _undo = Switched {
        user,
        sec_context,
        guc_level: restricted.then(|| unsafe { pg_sys::NewGUCNestLevel() }),
    };
    if restricted {
        // user code (triggers, defaults) resolves names as it did for the caller
        if let Some(path) = CALLER_PATH.with(|c| c.borrow().clone()) {
            set_search_path(&path);
        }
    }
    unsafe {
        pg_sys::SetUserIdAndSecContext(
            role,
            sec_context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | extra) as i32,
        )
    };
    f()
}

/// Run `f` — one statement (or a few) writing the user table `rel` — as the table's
/// owner, inside a security-restricted operation.
/// - Triggers, defaults, check and domain constraints and index expressions of the
///   table run with its owner's rights, never the caller's or the worker's.
/// - Settings a trigger changes (e.g. `search_path`) are rolled back afterwards, so
///   they cannot steer the engine's next statements.
pub fn as_table_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    switch_to(owner, pg_sys::SECURITY_RESTRICTED_OPERATION, f)
}

/// Run `f` as the extension's owner: the bookkeeping of a public function, after its
/// caller's rights have been checked.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    let schema = crate::pg::quote::ext_schema();
    let caller_path = unsafe {
        let p = pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_owned())
    };
    let _restore = OwnPath {
        level: unsafe { pg_sys::NewGUCNestLevel() },
        prev: CALLER_PATH.with(|c| c.replace(caller_path)),
    };
    let own = CString::new(format!("pg_catalog, {schema}, pg_temp")).expect("no NUL in a name");
    set_search_path(&own);
    if owner == current_user() {
        return f();
    }
    switch_to(owner, 0, f)
}

/// Undoes `as_extension_owner`'s `search_path` (and puts back the outer caller path).
struct OwnPath {
    level: i32,
    prev: Option<CString>,
}

impl Drop for OwnPath {
    fn drop(&mut self) {
        // on an ERROR the (sub)transaction's abort pops the GUC level itself
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.level) };
        }
        let prev = self.prev.take();
        CALLER_PATH.with(|c| *c.borrow_mut() = prev);
    }
}

/// A role's name (its OID as text if it no longer exists).
pub fn role_name(role: pg_sys::Oid) -> String {
    db::one::<String>(
        "SELECT COALESCE((SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = $1), $1::text)",
        &[role.into()],
    )
    .unwrap_or_default()
}

/// ERROR 42501 unless role `me` (the caller) has the privileges of `role` (is it, a
/// member of it, or a superuser). `what` says what was refused.
pub fn require_privileges_of(me: pg_sys::Oid, role: pg_sys::Oid, what: &str) {
    if unsafe { pg_sys::has_privs_of_role(me, role) } {
        return;
    }
    fail(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        &format!(
            "permission denied to {what}: role \"{}\" is not a member of its owner \"{}\"",
            role_name(me),
            role_name(role)
        ),
    )
}

/// ERROR 42501 unless role `me` (the caller) owns relation `rel` (or is a member of
/// its owner, or a superuser). `what` says what was refused.
pub fn require_table_owner(me: pg_sys::Oid, rel: pg_sys::Oid, table: &str, what: &str) {
    if unsafe { pg_sys::pg_class_ownercheck(rel, me) } {
        return;
    }
    fail(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        &format!(
            "permission denied to {what}: must be the owner of {table} (role \"{}\" is not)",
            role_name(me)
        ),
    )
}

/// The privileges a config needs on each of its tables.
pub const SYNC_PRIVILEGES: [(&str, u32); 4] = [
    ("SELECT", pg_sys::ACL_SELECT),
    ("INSERT", pg_sys::ACL_INSERT),
    ("UPDATE", pg_sys::ACL_UPDATE),
    ("DELETE", pg_sys::ACL_DELETE),
];

/// ERROR 42501 naming the missing ones unless role `me` (the caller) holds every
/// privilege in `privileges` on relation `rel`.
pub fn require_table_privileges(
    me: pg_sys::Oid,
    rel: pg_sys::Oid,
    table: &str,
    privileges: &[(&str, u32)],
    what: &str,
) {
    let missing: Vec<&str> = privileges
        .iter()
        .filter(|(_, mode)| unsafe {
            pg_sys::pg_class_aclcheck(rel, me, *mode as pg_sys::AclMode)
                != pg_sys::AclResult::ACLCHECK_OK
        })
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return;
    }
    fail(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        &format!(
            "permission denied to {what}: role \"{}\" lacks {} on {table}",
            role_name(me),
            missing.join(", ")
        ),
    )
}
