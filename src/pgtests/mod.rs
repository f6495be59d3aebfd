//! Tests against a real PostgreSQL (pgrx-tests). Each file holds a `#[pg_schema] mod tests`
//! (run inside a rolled-back transaction) or plain #[test]s using autocommit clients.
mod args;
mod capture;
mod claims;
pub mod concurrent;
#[cfg(test)]
mod crash;
mod dump;
mod engine;
pub mod fixture;
#[cfg(test)]
mod fuzz;
mod hostile;
mod initial;
#[cfg(test)]
mod launcher;
mod notify;
mod offline;
mod privileges;
#[cfg(test)]
pub mod receiver;
mod security;
mod shadowing;
#[cfg(test)]
pub mod throwaway;
pub mod util;
mod worker;
