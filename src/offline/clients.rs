//! Which role a client id belongs to (`sync_clients`): the role that pushed with it
//! first. Another role may push or pull as that client only if it has the owner's
//! privileges (is it, a member of it, or a superuser); otherwise 42501. So a role cannot
//! claim another device's change ids (its next push would be answered "duplicate"),
//! tag its writes with another client's origin (that client's pulls would leave them
//! out), or pull as that client. Runs inside `as_extension_owner`.

use crate::pg::db;
use crate::pg::quote::ext_schema;
use crate::pg::security;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

/// The owner of `client_id`, None when no role has pushed with it yet.
fn owner(schema: &str, client_id: &str) -> Option<pg_sys::Oid> {
    db::one::<pg_sys::Oid>(
        &format!("SELECT owner::oid FROM {schema}.sync_clients WHERE client_id = $1"),
        &[client_id.into()],
    )
}

fn require(caller: pg_sys::Oid, owner: pg_sys::Oid, client_id: &str, what: &str) {
    if unsafe { pg_sys::has_privs_of_role(caller, owner) } {
        return;
    }
    crate::pg::fail(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        &format!(
            "permission denied to {what} as client \"{client_id}\": the client id belongs to role \"{}\" (the first to push with it), and role \"{}\" is not a member of it; use a client id of your own, or have the extension's owner rebind it (UPDATE sync_clients SET owner = ... WHERE client_id = ...)",
            security::role_name(owner),
            security::role_name(caller)
        ),
    );
}

/// sync_push: bind `client_id` to `caller` if no role has it yet (in the caller's
/// transaction: undone with a push that fails), then ERROR 42501 unless `caller` has the
/// privileges of its owner.
pub fn bind(caller: pg_sys::Oid, client_id: &str, what: &str) {
    let schema = ext_schema();
    let found = owner(&schema, client_id)
        .or_else(|| {
            db::one::<pg_sys::Oid>(
                &format!(
                    "INSERT INTO {schema}.sync_clients (client_id, owner) VALUES ($1, $2::oid::regrole)
                     ON CONFLICT (client_id) DO NOTHING RETURNING owner::oid"
                ),
                &[client_id.into(), caller.into()],
            )
        })
        // a concurrent first push by another role won the insert
        .or_else(|| owner(&schema, client_id))
        .expect("the client id has an owner");
    require(caller, found, client_id, what);
}

/// sync_pull: ERROR 42501 when `client_id` belongs to a role whose privileges `caller`
/// lacks. An id nobody pushed with yet is not bound by a pull.
pub fn check(caller: pg_sys::Oid, client_id: &str, what: &str) {
    if let Some(o) = owner(&ext_schema(), client_id) {
        require(caller, o, client_id, what);
    }
}
