//! The SQL surface: every `#[pg_extern]` and `#[pg_trigger]` of the extension.
//!
//! Each function is thin: it checks its arguments (`core::args`, NULLs refused with
//! 22004 naming the argument), calls the module that does the work, and raises a core
//! error as an ERROR with its SQLSTATE (`pg::OrRaise`). Arguments are `Option<T>` so
//! pgrx does not make a function STRICT (a NULL would then answer NULL silently).
//!
//! | file | functions | work done in |
//! |---|---|---|
//! | `tables` | sync_register_table, sync_unregister_table | `capture::endpoints` |
//! | `capture` | the triggers sync_capture, sync_refuse_truncate | `capture` |
//! | `changes` | sync_position, sync_changes | `capture::changes` |
//! | `configs` | sync_create_config | `sync::config` |
//! | `runs` | sync_execute, sync_resolve_conflict, sync_prune | `sync`, `sync::conflicts`, `worker` |
//! | `offline` | sync_push, sync_pull, sync_snapshot | `offline` |
//! | `notify` | sync_add_webhook, sync_remove_webhook, sync_redeliver, sync_webhook_secret (+ 2 internal) | `notify` |
//! | `worker` | sync_worker_states, sync_wake_launcher (internal, declared in sql/) | `worker::launcher` |
//! | `info` | sync_engine_build_info | `pg::build_info` |

mod capture;
mod changes;
mod configs;
mod info;
mod notify;
mod offline;
mod runs;
mod tables;
mod worker;
