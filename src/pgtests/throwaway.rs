//! A throwaway PostgreSQL cluster of a test's own (its own directory and port), for
//! tests that kill processes, stop the server or need their own settings: the shared
//! pgrx test cluster must not be reset under the other tests.

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(args: &[&str]) -> std::process::Output {
    Command::new("sudo")
        .args(["-u", "postgres"])
        .args(args)
        .current_dir("/")
        .output()
        .expect("sudo")
}

/// A cluster in `dir` on 127.0.0.1:`port`. Dropping it stops it (immediate) and removes
/// the directory; a panicking test prints the server log first.
pub struct Throwaway {
    pub dir: &'static str,
    pub port: u16,
    opts: String,
}

impl Throwaway {
    /// initdb a fresh cluster (wiping one left by an interrupted run) and start it with
    /// the extension preloaded and `settings` ("-c name=value ..." server options).
    /// The extension must be installed (the pgrx test framework does it).
    pub fn start(dir: &'static str, port: u16, settings: &str) -> Self {
        wipe(dir);
        let out = as_postgres(&[
            &format!("{BIN}/initdb"),
            "-D",
            dir,
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t = Throwaway {
            dir,
            port,
            opts: format!(
                "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=sync_engine {settings}"
            ),
        };
        t.start_again();
        t
    }

    /// pg_ctl start (after a stop), waiting until it accepts connections.
    pub fn start_again(&self) {
        let log = format!("{}/log", self.dir);
        let out = as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            self.dir,
            "-w",
            "-l",
            &log,
            "-o",
            &self.opts,
            "start",
        ]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// pg_ctl stop in `mode` (fast, immediate, ...), waiting up to 60 s. Returns
    /// whether it stopped and how long that took.
    pub fn stop(&self, mode: &str) -> (bool, Duration) {
        let started = Instant::now();
        let out = as_postgres(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            self.dir,
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "stop",
        ]);
        (out.status.success(), started.elapsed())
    }

    pub fn try_connect(&self, db: &str) -> Option<postgres::Client> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect(postgres::NoTls)
            .ok()
    }

    pub fn connect(&self, db: &str) -> postgres::Client {
        self.try_connect(db)
            .unwrap_or_else(|| panic!("connect to database {db} of the cluster in {}", self.dir))
    }

    /// Run `sql` (several statements allowed) in `db`, panicking on an error.
    pub fn exec(&self, db: &str, sql: &str) {
        self.connect(db)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    /// The single value of `sql` in `db`, as text ("" for NULL).
    pub fn value(&self, db: &str, sql: &str) -> String {
        value(&mut self.connect(db), sql)
    }

    /// Reconnect and poll until `sql` in `db` gives `want`, up to `secs` seconds; returns
    /// the last value seen. A failed connection or query (a server resetting) counts as
    /// "not yet".
    pub fn wait(&self, db: &str, sql: &str, want: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let got = self
                .try_connect(db)
                .and_then(|mut c| c.query_one(&format!("SELECT ({sql})::text"), &[]).ok())
                .and_then(|r| r.get::<_, Option<String>>(0))
                .unwrap_or_default();
            if got == want || start.elapsed() > Duration::from_secs(secs) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(format!("{}/log", self.dir)).unwrap_or_default()
    }
}

/// The single value of `sql`, as text ("" for NULL).
pub fn value(c: &mut postgres::Client, sql: &str) -> String {
    c.query_one(&format!("SELECT ({sql})::text"), &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

/// An error with the server's message, if it sent one.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster log of {}:\n{}", self.dir, self.log());
        }
        wipe(self.dir);
    }
}

/// Stop the cluster in `dir` if it runs and remove the directory.
fn wipe(dir: &str) {
    as_postgres(&[
        &format!("{BIN}/pg_ctl"),
        "-D",
        dir,
        "-m",
        "immediate",
        "stop",
    ]);
    if std::path::Path::new(dir).exists() {
        std::fs::remove_dir_all(dir).expect("remove the throwaway cluster");
    }
}
