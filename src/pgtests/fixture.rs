//! The shared fixture of the multi-connection tests: `Db`, an autocommit connection to
//! the test cluster, and `crm_hub`, the CRM table and HubSpot-style mirror most tests
//! sync between.
#![cfg(test)]

use crate::pgtests::concurrent::cluster;
use serde_json::Value;

pub struct Db(pub postgres::Client);

impl Db {
    pub fn new() -> Db {
        cluster();
        Db(pgrx_tests::client().unwrap().0)
    }
    pub fn exec(&mut self, sql: &str) {
        self.0
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    pub fn json(&mut self, sql: &str) -> Value {
        let r = self
            .0
            .query_one(&format!("SELECT to_jsonb(x)::text FROM ({sql}) x"), &[]);
        r.unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get::<_, String>(0)
            .parse::<Value>()
            .unwrap()
    }
    pub fn rows(&mut self, sql: &str) -> Value {
        let r = self.0.query_one(
            &format!("SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]')::text FROM ({sql}) x"),
            &[],
        );
        r.unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get::<_, String>(0)
            .parse::<Value>()
            .unwrap()
    }
    pub fn sync(&mut self, cfg: i64) -> Value {
        let r = self.0.query_one("SELECT sync_execute($1)::text", &[&cfg]);
        r.unwrap_or_else(|e| panic!("sync_execute({cfg}): {e:?}"))
            .get::<_, String>(0)
            .parse::<Value>()
            .unwrap()
    }
    /// This connection's backend pid.
    pub fn pid(&mut self) -> i32 {
        self.0
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0)
    }
    /// Wait (up to 30 s) until backend `pid` waits for a heavyweight lock (a row or
    /// transaction lock another session holds), as pg_stat_activity shows it.
    pub fn wait_until_blocked(&mut self, pid: i32) {
        let start = std::time::Instant::now();
        loop {
            let blocked: bool = self
                .0
                .query_one(
                    "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if blocked {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "backend {pid} never waited for a lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    pub fn err(&mut self, sql: &str) -> String {
        match self.0.batch_execute(sql) {
            Ok(_) => panic!("expected an error from {sql}"),
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
                format!("{}: {}", db.code().code(), db.message())
            }
        }
    }
}

pub const MAPPING: &str = r#"[{"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
                          {"source": "email", "target": "email", "transform": "lowercase"},
                          {"source": "phone", "target": "phone"}]"#;

/// A CRM table (integer keys) and a HubSpot-style mirror (text keys from its own
/// default), registered, with a config between them. Returns the config id.
pub fn crm_hub(db: &mut Db, p: &str, strategy: &str, direction: &str, match_on: &str) -> i64 {
    db.exec(&format!(
        "CREATE SCHEMA {p};
         CREATE TABLE {p}.crm (id serial PRIMARY KEY, full_name text, email text, phone text);
         CREATE SEQUENCE {p}.hub_seq START 1000;
         CREATE TABLE {p}.hub (id text PRIMARY KEY DEFAULT 'hs-' || nextval('{p}.hub_seq'),
                               firstname text, lastname text, email text, phone text);
         SELECT sync_register_table('{p}_crm', 'contacts', '{p}.crm');
         SELECT sync_register_table('{p}_hub', 'contacts', '{p}.hub');"
    ));
    // created disabled in the same transaction: these tests run it by hand, not the worker
    db.exec(&format!(
        "SELECT sync_create_config('{p}', '{p}_crm', '{p}_hub', 'contacts', '{MAPPING}',
                                   '{strategy}', '{direction}', match_on => {match_on});
         UPDATE sync_configs SET enabled = false WHERE name = '{p}';"
    ));
    db.json(&format!("SELECT id FROM sync_configs WHERE name = '{p}'"))["id"]
        .as_i64()
        .unwrap()
}

/// Drop a test role left by an earlier run (and what it owns), then create it.
pub fn fresh_role(db: &mut Db, role: &str) {
    db.exec(&format!(
        "DO $$ BEGIN
           IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
             EXECUTE 'DROP OWNED BY {role} CASCADE'; EXECUTE 'DROP ROLE {role}';
           END IF;
         END $$;
         CREATE ROLE {role} NOLOGIN;"
    ));
}
