//! Who the engine acts as, and how it resolves names. Two rules (as PostgreSQL 16's
//! logical-replication apply worker does, and pg_cron per job):
//! - Every statement that writes a user table runs as that table's owner, inside a
//!   security-restricted operation (`as_table_owner`): a trigger, default, constraint or
//!   index expression on the table gains nothing its owner did not already have.
//! - The extension's own bookkeeping (configs, links, runs, conflicts, change_log) runs
//!   as the extension's owner (`as_extension_owner`), whoever called, after the caller's
//!   rights were checked (`require_*`).
//!
//! Every statement the extension runs resolves names with `search_path` set to
//! `pg_catalog`, the extension's schema and `pg_temp`, in that order
//! (`with_own_search_path`; the background workers set `pg_catalog, pg_temp` for their
//! whole session, `restrict_session_search_path`): no function, operator, type or table
//! the caller (or a database default) puts on the path can stand in for a built-in or
//! for one of the extension's objects. That includes the engine's writes into user
//! tables, which run with the table owner's rights: user code reached from them (a
//! plpgsql trigger) sees the same path and must schema-qualify what it uses outside
//! pg_catalog, as under logical replication.
use crate::pg::db;
use crate::pg::fail;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// Set `search_path` to `value`: with `GUC_ACTION_SAVE` at the current GUC nest level,
/// undone when the level is popped (as a function's `SET` clause is); with
/// `GUC_ACTION_SET` for the session (as `SET` is).
fn set_search_path(value: &CStr, action: pg_sys::GucAction::Type) {
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

/// The search_path of a background worker's session (`restrict_session_search_path`).
pub const WORKER_SEARCH_PATH: &CStr = c"pg_catalog, pg_temp";

/// From a background worker (scheduler, notifier), once connected, in a transaction:
/// set its session's `search_path` to `pg_catalog, pg_temp`, whatever the database's or
/// role's default says. Its statements name the extension's objects with their schema;
/// a database owner's `ALTER DATABASE .. SET search_path` cannot steer them.
pub fn restrict_session_search_path() {
    set_search_path(WORKER_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SET);
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
/// - Called inside `as_extension_owner`: the statement (and the user code it reaches)
///   resolves names with the extension's `search_path`, never the caller's, which would
///   let the caller pick the functions that run with the owner's rights.
pub fn as_table_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    switch_to(owner, pg_sys::SECURITY_RESTRICTED_OPERATION, f)
}

/// Run `f` as the extension's owner: the bookkeeping of a public function, after its
/// caller's rights have been checked. Its statements run with the extension's
/// `search_path` (`with_own_search_path`).
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    with_own_search_path(|| {
        if owner == current_user() {
            f()
        } else {
            switch_to(owner, 0, f)
        }
    })
}

/// Run `f` (as the current role) with `search_path` set to `pg_catalog`, the
/// extension's schema and `pg_temp`, put back afterwards (also on an ERROR): for the
/// statements of a public function that runs with the caller's own rights (sync_changes,
/// sync_position, sync_prune), so that what it calls is what it means.
pub fn with_own_search_path<R>(f: impl FnOnce() -> R) -> R {
    let schema = crate::pg::quote::ext_schema();
    let _restore = OwnPath {
        level: unsafe { pg_sys::NewGUCNestLevel() },
    };
    let own = CString::new(format!("pg_catalog, {schema}, pg_temp")).expect("no NUL in a name");
    set_search_path(&own, pg_sys::GucAction::GUC_ACTION_SAVE);
    f()
}

/// Undoes `with_own_search_path`'s `search_path`.
struct OwnPath {
    level: i32,
}

impl Drop for OwnPath {
    fn drop(&mut self) {
        // on an ERROR the (sub)transaction's abort pops the GUC level itself
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.level) };
        }
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

/// Whether row-level security restricts role `me` on relation `rel`: its policies would
/// filter what `me` reads there and check what it writes. Calls that read or write a
/// table as its owner refuse such a caller (they would get past the policies).
pub fn row_security_restricts(me: pg_sys::Oid, rel: pg_sys::Oid) -> bool {
    let rls = unsafe { pg_sys::check_enable_rls(rel, me, true) };
    rls == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
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
