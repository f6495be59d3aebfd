//! Convergence fuzzing (issue 17): a seeded, randomized workload of several autocommit
//! connections against every kind of config at once, then the invariants of DESIGN.md
//! checked on what is left.
//!
//! What runs, in rounds, while the worker runs every config each second:
//! - writer threads insert, update (key updates included: recorded as delete + insert),
//!   delete on both endpoints of bidirectional configs of every strategy, on the
//!   authoritative side of both one-way directions (and delete on their receiving side),
//!   through split/join and column-copy mappings, and on a three-system chain (crm <->
//!   hubspot, crm <-> support); transactions commit, roll back, stay open until a run
//!   has completed, and write in subtransactions that abort (`ROLLBACK TO SAVEPOINT`);
//! - a runner calls `sync_execute` at random (racing the worker: "already running" is
//!   expected) and resolves some pending manual conflicts;
//! - offline clients push batches with `sync_push` (stale `old` values included, so
//!   some conflict) and re-send some of them.
//!
//! Then writes stop, scheduling is paused and every config runs until a whole round of
//! runs changes nothing, and the checks:
//! - every link joins two existing rows and every row has a link; both sides hold equal
//!   mapped values except fields of pending manual conflicts;
//! - every value the engine overwrote (change records with the engine's origin, of the
//!   `phone`/`email` fields, whose values are unique tokens) had been on the other side
//!   (it was synced) or is kept in `sync_conflicts`; every value a push overwrote was
//!   the `old` the client sent or is kept in `sync_conflicts`;
//! - no change applied twice: no token in two rows of a table, no engine update record
//!   writing a token twice, a re-sent batch answers `duplicate` for each change and no
//!   pushed token is written twice;
//! - every committed write was captured, nothing of a rolled-back transaction or an
//!   aborted subtransaction was; no run is left `running`, no entity left in error;
//! - the last round of runs was all zeros (a second run is a no-op).
//!
//! `FUZZ_SECONDS` (default 40) is the writing time; longer runs are several rounds of at
//! most 40 s each, checked after each. `FUZZ_SEED` repeats a run's operations (the
//! interleaving of the threads is the scheduler's). The seed is printed at the start and
//! in every failure. `bash tests/fuzz.sh --minutes N [--seed S]` runs it long.

/// splitmix64: a tiny, good-enough PRNG whose whole state is one u64, so a seed repeats
/// a sequence exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// An independent generator for a sub-task (a thread, a round).
    pub fn fork(&mut self, salt: u64) -> Rng {
        Rng(self.next_u64() ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod rng_tests {
    use super::Rng;

    #[test]
    fn a_seed_repeats_its_sequence_and_forks_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        // splitmix64's published first output for seed 0
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut r = Rng::new(7);
        let (mut x, mut y) = (r.fork(1), r.fork(2));
        assert_ne!(x.next_u64(), y.next_u64());
        let mut r = Rng::new(9);
        assert!((0..1000).all(|_| r.below(7) < 7));
        let hits = (0..10_000).filter(|_| r.chance(30)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;
    use crate::pgtests::concurrent::cluster;
    use crate::pgtests::fixture::MAPPING;
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The shape of a table: a CRM row (bigint key from a sequence, full_name) or a
    /// mirror row (text key 'hs-N', firstname + lastname).
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Shape {
        Crm,
        Hub,
    }

    /// What writers may do to a table.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Writes {
        All,
        /// the receiving side of a one-way config: deletes only (its edits would stay
        /// there by design, so they are not part of convergence)
        DeleteOnly,
    }

    #[derive(Clone, Debug)]
    struct Table {
        /// schema-qualified name
        qual: String,
        /// sequence of its keys
        seq: String,
        system: String,
        shape: Shape,
        writes: Writes,
    }

    impl Table {
        fn key_type(&self) -> &'static str {
            match self.shape {
                Shape::Crm => "bigint",
                Shape::Hub => "text",
            }
        }
        fn new_key(&self) -> String {
            match self.shape {
                Shape::Crm => format!("nextval('{}')", self.seq),
                Shape::Hub => format!("'hs-' || nextval('{}')", self.seq),
            }
        }
        /// columns a writer may set, with the token kind
        fn columns(&self) -> &'static [&'static str] {
            match self.shape {
                Shape::Crm => &["full_name", "email", "phone"],
                Shape::Hub => &["firstname", "lastname", "email", "phone"],
            }
        }
    }

    #[derive(Clone, Debug)]
    struct Config {
        name: String,
        id: i64,
        source: usize,
        target: usize,
        /// split/join + lowercase mapping (crm -> hub), or NULL (same-named columns,
        /// the column copy)
        split: bool,
    }

    struct World {
        tables: Vec<Table>,
        configs: Vec<Config>,
        /// (table index, client id) pairs that push
        clients: Vec<(usize, String)>,
    }

    fn connect() -> postgres::Client {
        cluster();
        pgrx_tests::client().unwrap().0
    }

    fn sqlstate(e: &postgres::Error) -> String {
        e.code().map(|c| c.code().to_string()).unwrap_or_default()
    }

    fn describe(e: &postgres::Error) -> String {
        match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        }
    }

    fn one_json(c: &mut postgres::Client, sql: &str) -> Value {
        let row = c
            .query_one(
                &format!("SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]')::text FROM ({sql}) x"),
                &[],
            )
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        row.get::<_, String>(0).parse().unwrap()
    }

    /// Create `schema.name` of `shape`, register it as system `<schema>_<name>`; returns
    /// its index in `tables`.
    fn add_table(
        c: &mut postgres::Client,
        tables: &mut Vec<Table>,
        schema: &str,
        name: &str,
        shape: Shape,
        writes: Writes,
    ) -> usize {
        let qual = format!("{schema}.{name}");
        let seq = format!("{schema}.{name}_seq");
        let ddl = match shape {
            Shape::Crm => format!(
                "CREATE SEQUENCE {seq};
                 CREATE TABLE {qual} (id bigint PRIMARY KEY DEFAULT nextval('{seq}'), full_name text, email text, phone text);"
            ),
            Shape::Hub => format!(
                "CREATE SEQUENCE {seq} START 1000;
                 CREATE TABLE {qual} (id text PRIMARY KEY DEFAULT 'hs-' || nextval('{seq}'),
                                      firstname text, lastname text, email text, phone text);"
            ),
        };
        let system = format!("{schema}_{name}");
        c.batch_execute(&format!(
            "{ddl} SELECT sync_register_table('{system}', 'contacts', '{qual}');"
        ))
        .unwrap_or_else(|e| panic!("{qual}: {}", describe(&e)));
        tables.push(Table {
            qual,
            seq,
            system,
            shape,
            writes,
        });
        tables.len() - 1
    }

    /// Create the tables, endpoints and configs (scheduled each second by the worker).
    fn setup(c: &mut postgres::Client) -> World {
        let mut tables = vec![];
        let mut configs = vec![];
        // one pair per strategy (bidirectional), and both one-way directions
        let pairs = [
            ("fz_sw", "source_wins", "bidirectional"),
            ("fz_tw", "target_wins", "bidirectional"),
            ("fz_lw", "latest_wins", "bidirectional"),
            ("fz_mn", "manual", "bidirectional"),
            ("fz_st", "latest_wins", "source_to_target"),
            ("fz_ts", "target_wins", "target_to_source"),
        ];
        let mut cfg_specs = vec![];
        for (schema, strategy, direction) in pairs {
            c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
            let (sw, tw) = match direction {
                "source_to_target" => (Writes::All, Writes::DeleteOnly),
                "target_to_source" => (Writes::DeleteOnly, Writes::All),
                _ => (Writes::All, Writes::All),
            };
            let s = add_table(c, &mut tables, schema, "crm", Shape::Crm, sw);
            let t = add_table(c, &mut tables, schema, "hub", Shape::Hub, tw);
            cfg_specs.push((schema.to_string(), s, t, true, strategy, direction));
        }
        // the chain: crm <-> hubspot (split), crm <-> support (column copy)
        c.batch_execute("CREATE SCHEMA fz_ch").unwrap();
        let crm = add_table(c, &mut tables, "fz_ch", "crm", Shape::Crm, Writes::All);
        let hubspot = add_table(c, &mut tables, "fz_ch", "hubspot", Shape::Hub, Writes::All);
        let support = add_table(c, &mut tables, "fz_ch", "support", Shape::Crm, Writes::All);
        cfg_specs.push((
            "fz_ch_hub".into(),
            crm,
            hubspot,
            true,
            "latest_wins",
            "bidirectional",
        ));
        cfg_specs.push((
            "fz_ch_sup".into(),
            crm,
            support,
            false,
            "source_wins",
            "bidirectional",
        ));
        for (name, s, t, split, strategy, direction) in cfg_specs {
            let mapping = if split {
                format!("'{MAPPING}'")
            } else {
                "NULL".into()
            };
            let id: i64 = c
                .query_one(
                    &format!(
                        "SELECT sync_create_config('{name}', '{}', '{}', 'contacts', {mapping}, '{strategy}', '{direction}',
                                                   sync_interval => '1 second')",
                        tables[s].system, tables[t].system
                    ),
                    &[],
                )
                .unwrap_or_else(|e| panic!("config {name}: {}", describe(&e)))
                .get(0);
            // a twin that never runs (disabled, no position) holds every record of the
            // pair's endpoints: another test's sync_prune in this shared cluster must not
            // take the records this test checks
            c.batch_execute(&format!(
                "SELECT sync_create_config('{name}_hold', '{}', '{}', 'contacts', {mapping});
                 UPDATE sync_configs SET enabled = false WHERE name = '{name}_hold';",
                tables[s].system, tables[t].system
            ))
            .unwrap_or_else(|e| panic!("config {name}_hold: {}", describe(&e)));
            configs.push(Config {
                name,
                id,
                source: s,
                target: t,
                split,
            });
        }
        // offline clients: a phone on a CRM table, a connector on the chain's support table
        let clients = vec![
            (
                tables.iter().position(|t| t.qual == "fz_lw.crm").unwrap(),
                "fz-phone".to_string(),
            ),
            (support, "fz-connector".to_string()),
        ];
        World {
            tables,
            configs,
            clients,
        }
    }

    /// What a thread did: tokens committed per (system, column), tokens of rolled-back
    /// work, and pushes.
    #[derive(Default)]
    struct Log {
        committed: Vec<(String, String)>,
        aborted: Vec<String>,
        /// pushed token -> the `old` the client sent with it (None for inserts)
        pushed: Vec<(String, Option<String>)>,
        pushes: u64,
        resent: u64,
        txns: u64,
        rollbacks: u64,
        savepoints: u64,
        open: u64,
        key_updates: u64,
        runs: u64,
        busy: u64,
        resolves: u64,
        errors: Vec<String>,
    }

    struct Writer {
        rng: Rng,
        tag: String,
        n: u64,
    }

    impl Writer {
        fn token(&mut self, col: &str) -> String {
            self.n += 1;
            let (tag, n) = (&self.tag, self.n);
            match col {
                "phone" => format!("p{tag}x{n}"),
                "email" => format!("e{tag}x{n}@fz"),
                "full_name" => format!("F{tag}x{n} L{tag}x{n}"),
                "firstname" => format!("F{tag}x{n}"),
                _ => format!("L{tag}x{n}"),
            }
        }
    }

    /// Errors a writer's transaction may meet from its competitors: it rolls back.
    fn writer_may_fail(state: &str) -> bool {
        matches!(state, "40P01" | "40001" | "55P03")
    }

    /// One random operation on `t` inside the open transaction; returns the tokens it
    /// wrote (column, token) if it changed a row.
    fn operation(
        w: &mut Writer,
        c: &mut postgres::Transaction,
        t: &Table,
        log: &mut Log,
    ) -> Result<Vec<(String, String)>, postgres::Error> {
        let roll = w.rng.below(100);
        let pick = w.rng.next_u64() as i64 & 0x7fff_ffff;
        let existing = || {
            format!(
                "SELECT id::text FROM {q} ORDER BY id OFFSET ({pick} % greatest((SELECT count(*) FROM {q}), 1)) LIMIT 1",
                q = t.qual
            )
        };
        if t.writes == Writes::DeleteOnly || (10..18).contains(&roll) {
            if let Some(r) = c.query_opt(&existing(), &[])? {
                let id: String = r.get(0);
                c.execute(
                    &format!(
                        "DELETE FROM {} WHERE id = $1::text::{}",
                        t.qual,
                        t.key_type()
                    ),
                    &[&id],
                )?;
            }
            return Ok(vec![]);
        }
        if roll < 35 {
            let cols = t.columns();
            let vals: Vec<String> = cols.iter().map(|col| w.token(col)).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                t.qual,
                cols.join(", "),
                (1..=cols.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = vals
                .iter()
                .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                .collect();
            c.execute(&sql, &params)?;
            return Ok(cols.iter().map(|c| c.to_string()).zip(vals).collect());
        }
        let Some(r) = c.query_opt(&existing(), &[])? else {
            return Ok(vec![]);
        };
        let id: String = r.get(0);
        if roll < 45 {
            // a key update: recorded as a delete of the old key and an insert of the new
            let n = c.execute(
                &format!(
                    "UPDATE {} SET id = {} WHERE id = $1::text::{}",
                    t.qual,
                    t.new_key(),
                    t.key_type()
                ),
                &[&id],
            )?;
            log.key_updates += n;
            return Ok(vec![]);
        }
        let cols = t.columns();
        let mut chosen: Vec<&str> = vec![*w.rng.pick(cols)];
        if w.rng.chance(40) {
            let other = *w.rng.pick(cols);
            if !chosen.contains(&other) {
                chosen.push(other);
            }
        }
        let vals: Vec<String> = chosen.iter().map(|col| w.token(col)).collect();
        let sets: Vec<String> = chosen
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = ${}", i + 2))
            .collect();
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&id];
        params.extend(
            vals.iter()
                .map(|v| v as &(dyn postgres::types::ToSql + Sync)),
        );
        let n = c.execute(
            &format!(
                "UPDATE {} SET {} WHERE id = $1::text::{}",
                t.qual,
                sets.join(", "),
                t.key_type()
            ),
            &params,
        )?;
        if n == 0 {
            return Ok(vec![]);
        }
        Ok(chosen.iter().map(|c| c.to_string()).zip(vals).collect())
    }

    /// Writer thread: random transactions until `stop`.
    fn writer(world: Arc<World>, mut rng: Rng, tag: String, stop: Arc<AtomicBool>) -> Log {
        let mut log = Log::default();
        let mut c = connect();
        let mut observer = connect();
        let mut w = Writer {
            rng: rng.fork(1),
            tag,
            n: 0,
        };
        while !stop.load(Ordering::SeqCst) {
            // a table: mostly writable ones
            let ti = rng.below(world.tables.len() as u64) as usize;
            let t = world.tables[ti].clone();
            let ops = 1 + rng.below(3);
            let ending = rng.below(100);
            log.txns += 1;
            let mut tx = c.transaction().unwrap();
            let mut pending: Vec<(String, String)> = vec![];
            let mut aborted: Vec<String> = vec![];
            let mut failed: Option<postgres::Error> = None;
            for _ in 0..ops {
                let in_savepoint = rng.chance(20);
                let abort_savepoint = in_savepoint && rng.chance(60);
                let res = if in_savepoint {
                    log.savepoints += 1;
                    let mut sp = match tx.savepoint("fz") {
                        Ok(sp) => sp,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    };
                    let r = operation(&mut w, &mut sp, &t, &mut log);
                    match r {
                        Ok(toks) if abort_savepoint => {
                            aborted.extend(toks.into_iter().map(|(_, v)| v));
                            sp.rollback().map(|_| vec![])
                        }
                        Ok(toks) => sp.commit().map(|_| toks),
                        Err(e) => Err(e), // dropped: rolled back to the savepoint
                    }
                } else {
                    operation(&mut w, &mut tx, &t, &mut log)
                };
                match res {
                    Ok(toks) => pending.extend(toks),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                let state = sqlstate(&e);
                if !writer_may_fail(&state) && state != "25P02" {
                    log.errors
                        .push(format!("writer on {}: {}", t.qual, describe(&e)));
                }
                drop(tx);
                log.rollbacks += 1;
                aborted.extend(pending.into_iter().map(|(_, v)| v));
                log.aborted.extend(aborted);
                continue;
            }
            if ending < 10 {
                tx.rollback().unwrap();
                log.rollbacks += 1;
                aborted.extend(pending.into_iter().map(|(_, v)| v));
                log.aborted.extend(aborted);
                continue;
            }
            if ending < 22 {
                // stay open until a run of a config of this table has completed (or 2 s:
                // the run may be waiting for this transaction's rows)
                log.open += 1;
                let since: String = observer
                    .query_one("SELECT clock_timestamp()::text", &[])
                    .unwrap()
                    .get(0);
                let cfgs: Vec<i64> = world
                    .configs
                    .iter()
                    .filter(|c| c.source == ti || c.target == ti)
                    .map(|c| c.id)
                    .collect();
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(2) {
                    let done: bool = observer
                        .query_one(
                            "SELECT EXISTS (SELECT FROM sync_runs WHERE config_id = ANY($1) AND completed_at > $2::text::timestamptz)",
                            &[&cfgs, &since],
                        )
                        .unwrap()
                        .get(0);
                    if done {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            match tx.commit() {
                Ok(()) => {
                    log.committed
                        .extend(pending.into_iter().map(|(_, v)| (t.system.clone(), v)));
                    log.aborted.extend(aborted);
                }
                Err(e) => {
                    let state = sqlstate(&e);
                    if !writer_may_fail(&state) {
                        log.errors
                            .push(format!("commit on {}: {}", t.qual, describe(&e)));
                    }
                    log.rollbacks += 1;
                    aborted.extend(pending.into_iter().map(|(_, v)| v));
                    log.aborted.extend(aborted);
                }
            }
        }
        log
    }

    /// Runner thread: explicit runs racing the worker, and resolutions of manual
    /// conflicts.
    fn runner(world: Arc<World>, mut rng: Rng, stop: Arc<AtomicBool>) -> Log {
        let mut log = Log::default();
        let mut c = connect();
        while !stop.load(Ordering::SeqCst) {
            let cfg = rng.pick(&world.configs).clone();
            if cfg.name == "fz_mn" && rng.chance(30) {
                let pick = rng.next_u64() as i64 & 0x7fff_ffff;
                let choice = *rng.pick(&["source", "target"]);
                let r = c.query_opt(
                    "SELECT sync_resolve_conflict(x.id, $3)::text
                       FROM (SELECT id FROM sync_conflicts WHERE config_id = $1 AND resolution = 'pending'
                              ORDER BY id OFFSET ($2 % greatest((SELECT count(*) FROM sync_conflicts
                                                                  WHERE config_id = $1 AND resolution = 'pending'), 1))
                              LIMIT 1) x",
                    &[&cfg.id, &pick, &choice],
                );
                match r {
                    Ok(Some(_)) => log.resolves += 1,
                    Ok(None) => {}
                    // resolved meanwhile, or a competitor's lock
                    Err(e) if matches!(sqlstate(&e).as_str(), "55000" | "40P01" | "40001") => {}
                    Err(e) => log.errors.push(format!("resolving: {}", describe(&e))),
                }
                continue;
            }
            match c.query_one("SELECT sync_execute($1)::text", &[&cfg.id]) {
                Ok(_) => log.runs += 1,
                Err(e) if sqlstate(&e) == "55P03" => log.busy += 1,
                Err(e) if matches!(sqlstate(&e).as_str(), "40P01" | "40001") => {}
                Err(e) => log
                    .errors
                    .push(format!("sync_execute({}): {}", cfg.name, describe(&e))),
            }
            std::thread::sleep(Duration::from_millis(rng.below(200)));
        }
        log
    }

    /// Offline clients: batches of updates (with the `old` value read now or earlier),
    /// inserts and deletes, some batches sent again.
    fn pusher(world: Arc<World>, mut rng: Rng, stop: Arc<AtomicBool>, round: u64) -> Log {
        let mut log = Log::default();
        let mut c = connect();
        let mut sent: Vec<(usize, String, Value)> = vec![];
        // values read earlier: (table, key, column, value), so some pushes are stale
        let mut seen: Vec<(usize, String, String, String)> = vec![];
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100 + rng.below(200)));
            if !sent.is_empty() && rng.chance(25) {
                let (ci, client, batch) = sent[rng.below(sent.len() as u64) as usize].clone();
                let t = &world.tables[world.clients[ci].0];
                match c.query_one(
                    "SELECT sync_push($1, 'contacts', $2::text::jsonb, $3)::text",
                    &[&t.system, &batch.to_string(), &client],
                ) {
                    Ok(r) => {
                        let r: Value = r.get::<_, String>(0).parse().unwrap();
                        let n = batch.as_array().unwrap().len();
                        if r["duplicates"] != json!(n) {
                            log.errors.push(format!(
                                "a re-sent batch was not all duplicates: {batch} -> {r}"
                            ));
                        }
                        log.resent += 1;
                    }
                    Err(e) if matches!(sqlstate(&e).as_str(), "40P01" | "40001") => {}
                    Err(e) => log.errors.push(format!("re-sending: {}", describe(&e))),
                }
                continue;
            }
            let ci = rng.below(world.clients.len() as u64) as usize;
            let (ti, client) = world.clients[ci].clone();
            let t = world.tables[ti].clone();
            let mut batch = vec![];
            let mut tokens: Vec<(String, Option<String>)> = vec![];
            for _ in 0..1 + rng.below(3) {
                n += 1;
                let id = format!("{client}-r{round}-{n}");
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                let changed_at = now_ms - rng.below(3000);
                let roll = rng.below(100);
                if roll < 20 {
                    let key = 10_000_000 + round * 100_000 + n + ci as u64 * 1_000_000_000;
                    let phone = format!("pc{ci}r{round}x{n}");
                    let email = format!("ec{ci}r{round}x{n}@fz");
                    tokens.push((phone.clone(), None));
                    tokens.push((email.clone(), None));
                    batch.push(json!({"id": id, "entity_id": key.to_string(), "operation": "insert", "changed_at": changed_at,
                                      "fields": {"full_name": {"new": format!("Fc{n} Lc{n}")}, "email": {"new": email}, "phone": {"new": phone}}}));
                    continue;
                }
                // an existing row's value, read now or remembered from earlier
                let col = *rng.pick(&["email", "phone"]);
                let (key, old) = if !seen.is_empty() && rng.chance(30) {
                    let s = seen[rng.below(seen.len() as u64) as usize].clone();
                    if s.0 != ti || s.2 != col {
                        continue;
                    }
                    (s.1, s.3)
                } else {
                    let pick = rng.next_u64() as i64 & 0x7fff_ffff;
                    let r = c
                        .query_opt(
                            &format!(
                                "SELECT id::text, {col} FROM {q} WHERE {col} IS NOT NULL ORDER BY id
                                  OFFSET ($1 % greatest((SELECT count(*) FROM {q}), 1)) LIMIT 1",
                                q = t.qual
                            ),
                            &[&pick],
                        )
                        .unwrap();
                    let Some(r) = r else { continue };
                    let (k, v): (String, String) = (r.get(0), r.get(1));
                    seen.push((ti, k.clone(), col.to_string(), v.clone()));
                    (k, v)
                };
                if roll < 28 {
                    batch.push(json!({"id": id, "entity_id": key, "operation": "delete", "changed_at": changed_at}));
                    continue;
                }
                let new = if col == "phone" {
                    format!("pc{ci}r{round}x{n}")
                } else {
                    format!("ec{ci}r{round}x{n}@fz")
                };
                tokens.push((new.clone(), Some(old.clone())));
                batch.push(json!({"id": id, "entity_id": key, "operation": "update", "changed_at": changed_at,
                                  "fields": {col: {"old": old, "new": new}}}));
            }
            if batch.is_empty() {
                continue;
            }
            let batch = Value::Array(batch);
            match c.query_one(
                "SELECT sync_push($1, 'contacts', $2::text::jsonb, $3)::text",
                &[&t.system, &batch.to_string(), &client],
            ) {
                Ok(r) => {
                    let r: Value = r.get::<_, String>(0).parse().unwrap();
                    if r["rejected"] != json!(0) {
                        log.errors
                            .push(format!("a push was rejected: {batch} -> {r}"));
                    }
                    log.pushes += 1;
                    log.pushed.extend(tokens);
                    sent.push((ci, client, batch));
                }
                Err(e) if matches!(sqlstate(&e).as_str(), "40P01" | "40001") => {}
                Err(e) => log
                    .errors
                    .push(format!("pushing {batch}: {}", describe(&e))),
            }
        }
        log
    }

    /// Pause scheduling, wait for the worker's run in flight, then run every config
    /// until a whole round changes nothing. Returns the number of rounds it took.
    fn settle(c: &mut postgres::Client, world: &World, seed: u64) -> usize {
        let ids: Vec<i64> = world.configs.iter().map(|c| c.id).collect();
        c.execute(
            "UPDATE sync_configs SET enabled = false WHERE id = ANY($1)",
            &[&ids],
        )
        .unwrap();
        let started = Instant::now();
        loop {
            let running: i64 = c
                .query_one(
                    "SELECT count(*) FROM sync_runs WHERE config_id = ANY($1) AND status = 'running'",
                    &[&ids],
                )
                .unwrap()
                .get(0);
            if running == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "seed {seed}: a run stayed 'running' for 2 minutes after the writes stopped"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut last = vec![];
        for round in 1..=12 {
            last.clear();
            let mut quiet = true;
            for cfg in &world.configs {
                let r = loop {
                    match c.query_one("SELECT sync_execute($1)::text", &[&cfg.id]) {
                        Ok(r) => break r.get::<_, String>(0).parse::<Value>().unwrap(),
                        // the worker's last run (it read the config before the pause)
                        Err(e) if sqlstate(&e) == "55P03" => {
                            std::thread::sleep(Duration::from_millis(100))
                        }
                        Err(e) => panic!(
                            "seed {seed}: final sync_execute({}): {}",
                            cfg.name,
                            describe(&e)
                        ),
                    }
                };
                let busy = [
                    "synced",
                    "created",
                    "updated",
                    "deleted",
                    "conflicts",
                    "errors",
                ]
                .iter()
                .any(|k| r[k] != json!(0));
                quiet &= !busy;
                last.push((cfg.name.clone(), r));
            }
            if quiet {
                return round;
            }
        }
        panic!("seed {seed}: the configs never settled; the last round: {last:?}");
    }

    /// What happened to an entity, for a failure message: its change records on `system`
    /// and the conflicts of config `cfg` naming its key.
    fn history(c: &mut postgres::Client, cfg: i64, system: &str, entity: &str) -> String {
        let recs = one_json(
            c,
            &format!(
                "SELECT id, operation, origin, fields, changed_at FROM change_log
                  WHERE system = '{system}' AND entity_id = '{entity}' ORDER BY id"
            ),
        );
        let conflicts = one_json(
            c,
            &format!(
                "SELECT id, run_id, kind, source_id, target_id, fields, source_value, target_value, resolution, resolved_by
                   FROM sync_conflicts WHERE config_id = {cfg} AND (source_id = '{entity}' OR target_id = '{entity}') ORDER BY id"
            ),
        );
        format!("    history of {system} {entity}: {recs}\n    its conflicts: {conflicts}")
    }

    /// The checks after settling; returns the failures found.
    fn check(c: &mut postgres::Client, world: &World, logs: &[Log]) -> Vec<String> {
        let mut bad = vec![];
        let ids: Vec<i64> = world.configs.iter().map(|c| c.id).collect();
        let systems: Vec<String> = world.tables.iter().map(|t| t.system.clone()).collect();

        // 1. links and rows: every row linked once, both sides equal except pending
        // manual conflicts' fields (a pending delete conflict excludes its entity)
        for cfg in &world.configs {
            let (s, t) = (&world.tables[cfg.source], &world.tables[cfg.target]);
            let (name_s, name_t) = if cfg.split {
                (
                    "s.full_name",
                    "nullif(concat_ws(' ', t.firstname, t.lastname), '')",
                )
            } else {
                ("s.full_name", "t.full_name")
            };
            let email_s = if cfg.split {
                "lower(s.email)"
            } else {
                "s.email"
            };
            let sql = format!(
                "WITH pend AS (
                   SELECT source_id, target_id, kind, fields FROM sync_conflicts
                    WHERE config_id = {id} AND resolution = 'pending'),
                 whole AS (SELECT source_id, target_id FROM pend WHERE kind <> 'update_update'),
                 skip AS (SELECT source_id, target_id, f FROM pend, unnest(fields) f WHERE kind = 'update_update')
                 SELECT 'unlinked source row ' || s.id AS problem FROM {sq} s
                  WHERE NOT EXISTS (SELECT FROM sync_links l WHERE l.config_id = {id} AND l.source_id = s.id::text)
                    AND NOT EXISTS (SELECT FROM whole w WHERE w.source_id = s.id::text)
                 UNION ALL
                 SELECT 'unlinked target row ' || t.id FROM {tq} t
                  WHERE NOT EXISTS (SELECT FROM sync_links l WHERE l.config_id = {id} AND l.target_id = t.id::text)
                    AND NOT EXISTS (SELECT FROM whole w WHERE w.target_id = t.id::text)
                 UNION ALL
                 SELECT 'link ' || l.source_id || ' -> ' || l.target_id || ' misses a row' FROM sync_links l
                  WHERE l.config_id = {id}
                    AND (NOT EXISTS (SELECT FROM {sq} s WHERE s.id::text = l.source_id)
                         OR NOT EXISTS (SELECT FROM {tq} t WHERE t.id::text = l.target_id))
                    AND NOT EXISTS (SELECT FROM whole w WHERE w.source_id = l.source_id OR w.target_id = l.target_id)
                 UNION ALL
                 SELECT 'link ' || l.source_id || ' -> ' || l.target_id || ' differs in ' || d.f || ': '
                        || coalesce(d.sv, 'NULL') || ' vs ' || coalesce(d.tv, 'NULL')
                   FROM sync_links l JOIN {sq} s ON s.id::text = l.source_id JOIN {tq} t ON t.id::text = l.target_id,
                        LATERAL (VALUES ('name', {name_s}, {name_t}), ('email', {email_s}, t.email),
                                        ('phone', s.phone, t.phone)) d(f, sv, tv)
                  WHERE l.config_id = {id} AND d.sv IS DISTINCT FROM d.tv
                    AND NOT EXISTS (SELECT FROM whole w WHERE w.source_id = l.source_id OR w.target_id = l.target_id)
                    AND NOT EXISTS (SELECT FROM skip k WHERE (k.source_id = l.source_id OR k.target_id = l.target_id)
                                      AND (k.f = d.f OR (d.f = 'name' AND k.f IN ('full_name', 'firstname', 'lastname'))))",
                id = cfg.id,
                sq = s.qual,
                tq = t.qual
            );
            for p in one_json(c, &sql).as_array().unwrap() {
                bad.push(format!("{}: {}", cfg.name, p["problem"].as_str().unwrap()));
            }
        }

        // 2. no silent overwrite: a value the engine overwrote (or deleted) was on the
        // other side of that config, or is kept in sync_conflicts
        for cfg in &world.configs {
            let (s, t) = (&world.tables[cfg.source], &world.tables[cfg.target]);
            let sql = format!(
                "WITH eng AS (
                   SELECT l.id, l.system, l.entity_id, l.operation, f.key AS col, f.value->>'old' AS old
                     FROM change_log l, jsonb_each(l.fields) f
                    WHERE l.system IN ('{ss}', '{ts}') AND l.origin = 'sync_engine:config:{id}'
                      AND l.operation IN ('update', 'delete') AND f.key IN ('phone', 'email')
                      AND f.value->>'old' IS NOT NULL AND f.value->>'old' IS DISTINCT FROM f.value->>'new'),
                 held AS (
                   SELECT DISTINCT l.system, f.key AS col, f.value->>'new' AS val
                     FROM change_log l, jsonb_each(l.fields) f
                    WHERE l.system IN ('{ss}', '{ts}') AND f.key IN ('phone', 'email') AND f.value->>'new' IS NOT NULL),
                 lost AS (
                   SELECT e.* FROM eng e
                    WHERE NOT EXISTS (SELECT FROM held h WHERE h.system <> e.system AND h.col = e.col AND h.val = e.old))
                 SELECT 'change ' || id || ' (' || operation || ' of ' || system || ' ' || entity_id || ') overwrote '
                        || col || ' ' || old || ', which never reached the other side and is in no conflict' AS problem,
                        system, entity_id
                   FROM lost
                  WHERE NOT EXISTS (SELECT FROM sync_conflicts k WHERE k.config_id = {id}
                                      AND (coalesce(k.source_value::text, '') || coalesce(k.target_value::text, ''))
                                          LIKE '%\"' || lost.old || '\"%')",
                id = cfg.id,
                ss = s.system,
                ts = t.system
            );
            for (i, p) in one_json(c, &sql).as_array().unwrap().iter().enumerate() {
                bad.push(format!("{}: {}", cfg.name, p["problem"].as_str().unwrap()));
                if i < 3 {
                    bad.push(history(
                        c,
                        cfg.id,
                        p["system"].as_str().unwrap(),
                        p["entity_id"].as_str().unwrap(),
                    ));
                }
            }
        }
        // ... and a value a push overwrote was the `old` the client sent, or is kept
        let (mut toks, mut olds): (Vec<String>, Vec<Option<String>>) = (vec![], vec![]);
        for l in logs {
            for (tok, old) in &l.pushed {
                toks.push(tok.clone());
                olds.push(old.clone());
            }
        }
        let pushed = c
            .query(
                "WITH sent AS (SELECT * FROM unnest($1::text[], $2::text[]) s(tok, old)),
                 rec AS (SELECT l.id, l.system, l.entity_id, l.origin, f.key, f.value->>'old' AS old, f.value->>'new' AS new
                           FROM change_log l, jsonb_each(l.fields) f
                          WHERE l.system = ANY($3) AND l.origin LIKE 'client:%' AND f.key IN ('phone', 'email'))
                 SELECT 'push record ' || r.id || ' of ' || r.system || ' ' || r.entity_id || ' overwrote ' || r.key || ' '
                        || r.old || ', not the old value ' || coalesce(s.old, 'NULL') || ' the client sent, in no conflict'
                   FROM rec r JOIN sent s ON s.tok = r.new
                  WHERE r.old IS NOT NULL AND r.old IS DISTINCT FROM s.old
                    AND NOT EXISTS (SELECT FROM sync_conflicts k WHERE k.client_id = substr(r.origin, 8)
                                      AND (coalesce(k.source_value::text, '') || coalesce(k.target_value::text, ''))
                                          LIKE '%\"' || r.old || '\"%')
                 UNION ALL
                 SELECT 'pushed ' || r.new || ' written ' || count(*) || ' times' FROM rec r JOIN sent s ON s.tok = r.new
                  GROUP BY r.new HAVING count(*) > 1",
                &[&toks, &olds, &systems],
            )
            .unwrap();
        bad.extend(pushed.iter().map(|r| r.get::<_, String>(0)));

        // 3. nothing applied twice: a token in one row of a table at most, and written by
        // the engine's updates at most once per table
        for (ti, t) in world.tables.iter().enumerate() {
            let cfgs: Vec<String> = world
                .configs
                .iter()
                .filter(|c| c.source == ti || c.target == ti)
                .map(|c| c.id.to_string())
                .collect();
            let sql = format!(
                "SELECT '{q}: ' || v || ' is in ' || count(*) || ' rows' AS problem
                   FROM (SELECT phone AS v FROM {q} UNION ALL SELECT email FROM {q}) x
                  WHERE v IS NOT NULL GROUP BY v HAVING count(*) > 1
                    -- a key update is a delete and an insert: an edit of the old row that
                    -- wins against the delete re-creates it, beside the new one
                    AND NOT (EXISTS (SELECT FROM sync_conflicts k WHERE k.config_id IN ({cfgs}) AND k.kind <> 'update_update')
                             AND EXISTS (SELECT FROM change_log d, jsonb_each(d.fields) df, change_log i, jsonb_each(i.fields) nf
                                          WHERE d.system LIKE 'fz\\_%' AND d.operation = 'delete' AND d.origin IS NULL
                                            AND df.value->>'old' = x.v AND i.txid = d.txid AND i.system = d.system
                                            AND i.operation = 'insert' AND nf.value->>'new' = x.v))",
                q = t.qual,
                cfgs = cfgs.join(",")
            );
            for p in one_json(c, &sql).as_array().unwrap() {
                bad.push(p["problem"].as_str().unwrap().to_string());
            }
        }
        let twice = c
            .query(
                "SELECT l.system || ': the engine wrote ' || f.key || ' ' || (f.value->>'new') || ' ' || count(*) || ' times'
                   FROM change_log l, jsonb_each(l.fields) f
                  WHERE l.system = ANY($1) AND l.origin LIKE 'sync_engine:%' AND l.operation = 'update'
                    AND f.key IN ('phone', 'email') AND f.value->>'new' IS NOT NULL
                  GROUP BY l.system, f.key, f.value->>'new' HAVING count(*) > 1",
                &[&systems],
            )
            .unwrap();
        bad.extend(twice.iter().map(|r| r.get::<_, String>(0)));

        // 4. capture: every committed write recorded, nothing rolled back recorded
        let (mut sys, mut tok, mut aborted) = (vec![], vec![], vec![]);
        for l in logs {
            for (s, t) in &l.committed {
                sys.push(s.clone());
                tok.push(t.clone());
            }
            aborted.extend(l.aborted.iter().cloned());
        }
        let missing = c
            .query(
                "WITH rec AS (SELECT DISTINCT l.system, f.value->>'new' AS v FROM change_log l, jsonb_each(l.fields) f
                               WHERE l.system = ANY($3) AND l.origin IS NULL)
                 SELECT 'committed ' || w.tok || ' on ' || w.sys || ' was never captured'
                   FROM unnest($1::text[], $2::text[]) w(sys, tok)
                  WHERE NOT EXISTS (SELECT FROM rec WHERE rec.system = w.sys AND rec.v = w.tok)",
                &[&sys, &tok, &systems],
            )
            .unwrap();
        bad.extend(missing.iter().map(|r| r.get::<_, String>(0)));
        let leaked = c
            .query(
                "SELECT 'rolled-back ' || (f.value->>'new') || ' is in change record ' || l.id
                   FROM change_log l, jsonb_each(l.fields) f
                  WHERE l.system = ANY($2) AND f.value->>'new' = ANY($1)",
                &[&aborted, &systems],
            )
            .unwrap();
        bad.extend(leaked.iter().map(|r| r.get::<_, String>(0)));

        // 5. runs: none left running, no entity left in error, errors only of the kinds
        // concurrency causes (a row changed under the run, a deadlock)
        let runs = one_json(
            c,
            &format!(
                "SELECT 'run ' || id || ' of config ' || config_id || ': ' || status || coalesce(' ' || error, '') AS problem
                   FROM sync_runs WHERE config_id IN ({}) AND (status = 'running'
                     OR (status = 'failed' AND error NOT LIKE '%deadlock%'))
                 UNION ALL
                 SELECT 'entity ' || coalesce(source_id, '?') || '/' || coalesce(target_id, '?') || ' of config ' || config_id
                        || ': ' || coalesce(sqlstate, '') || ' ' || message || CASE WHEN resolved THEN '' ELSE ' (open)' END
                   FROM sync_errors WHERE config_id IN ({0}) AND (NOT resolved OR sqlstate NOT IN ('40001', '40P01'))",
                ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            ),
        );
        for p in runs.as_array().unwrap() {
            bad.push(p["problem"].as_str().unwrap().to_string());
        }
        for l in logs {
            bad.extend(l.errors.iter().cloned());
        }
        bad
    }

    /// Prints the seed when the test fails.
    struct SeedGuard(u64);
    impl Drop for SeedGuard {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "fuzz FAILED with FUZZ_SEED={} (repeat: bash tests/fuzz.sh --seed {0})",
                    self.0
                );
            }
        }
    }

    #[test]
    fn fuzz_concurrent_writers_runs_and_pushes_converge_and_lose_nothing() {
        let seed: u64 = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    % 1_000_000_000
            });
        let total: u64 = std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40);
        let _guard = SeedGuard(seed);
        eprintln!("fuzz: FUZZ_SEED={seed} FUZZ_SECONDS={total}");
        let mut rng = Rng::new(seed);
        let mut c = connect();
        let world = Arc::new(setup(&mut c));
        let began = Instant::now();
        let mut round = 0u64;
        let mut totals: HashMap<&str, u64> = HashMap::new();
        loop {
            round += 1;
            let left = total.saturating_sub(began.elapsed().as_secs());
            let secs = left.clamp(5, 40);
            let ids: Vec<i64> = world.configs.iter().map(|c| c.id).collect();
            c.execute(
                "UPDATE sync_configs SET enabled = true, next_run_at = now() WHERE id = ANY($1)",
                &[&ids],
            )
            .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let mut handles = vec![];
            for w in 0..3u64 {
                let (world, stop, rng) = (Arc::clone(&world), Arc::clone(&stop), rng.fork(w));
                let tag = format!("{w}r{round}");
                handles.push(std::thread::spawn(move || writer(world, rng, tag, stop)));
            }
            {
                let (world, stop, rng) = (Arc::clone(&world), Arc::clone(&stop), rng.fork(10));
                handles.push(std::thread::spawn(move || runner(world, rng, stop)));
            }
            {
                let (world, stop, rng) = (Arc::clone(&world), Arc::clone(&stop), rng.fork(11));
                handles.push(std::thread::spawn(move || pusher(world, rng, stop, round)));
            }
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::SeqCst);
            let logs: Vec<Log> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| panic!("seed {seed}: a fuzz thread panicked"))
                })
                .collect();
            let rounds = settle(&mut c, &world, seed);
            let bad = check(&mut c, &world, &logs);
            let conflicts: i64 = c
                .query_one(
                    "SELECT count(*) FROM sync_conflicts WHERE config_id = ANY($1) OR client_id LIKE 'fz-%'",
                    &[&ids],
                )
                .unwrap()
                .get(0);
            for l in &logs {
                for (k, v) in [
                    ("txns", l.txns),
                    ("rollbacks", l.rollbacks),
                    ("savepoints", l.savepoints),
                    ("open", l.open),
                    ("key_updates", l.key_updates),
                    ("runs", l.runs),
                    ("busy", l.busy),
                    ("resolves", l.resolves),
                    ("pushes", l.pushes),
                    ("resent", l.resent),
                    ("committed", l.committed.len() as u64),
                    ("aborted", l.aborted.len() as u64),
                ] {
                    *totals.entry(k).or_default() += v;
                }
            }
            let mut summary: Vec<String> = totals.iter().map(|(k, v)| format!("{k}={v}")).collect();
            summary.sort();
            let line = format!(
                "fuzz round {round} (seed {seed}, {} s): settled in {rounds} rounds of runs, conflicts so far {conflicts}, {} problems; {}",
                began.elapsed().as_secs(),
                bad.len(),
                summary.join(" ")
            );
            eprintln!("{line}");
            // the test harness shows a passing test's output to nobody: tests/fuzz.sh reads this
            if let Ok(path) = std::env::var("FUZZ_LOG") {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap_or_else(|e| panic!("FUZZ_LOG {path}: {e}"));
                writeln!(f, "{line}").unwrap();
            }
            assert!(
                bad.is_empty(),
                "seed {seed}, round {round}: {} problems:\n{}",
                bad.len(),
                bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
            );
            if began.elapsed().as_secs() + 5 >= total {
                break;
            }
        }
        // the workload did what it is for
        for k in [
            "rollbacks",
            "savepoints",
            "open",
            "key_updates",
            "runs",
            "pushes",
            "resent",
        ] {
            assert!(
                totals.get(k).copied().unwrap_or(0) > 0,
                "seed {seed}: no {k} happened"
            );
        }
    }
}

/// Found by the fuzzer: resolving a manual conflict overwrote (or deleted) an edit made on
/// the losing side after the conflict was recorded, and nothing kept the lost value.
#[cfg(test)]
mod regressions {
    use crate::pgtests::fixture::{crm_hub, Db};
    use serde_json::json;

    fn pending(db: &mut Db, c: i64) -> i64 {
        db.json(&format!(
            "SELECT id FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending' ORDER BY id DESC LIMIT 1"
        ))["id"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn fuzz_found_resolving_never_overwrites_or_deletes_an_edit_made_after_the_conflict() {
        let mut db = Db::new();
        let c = crm_hub(&mut db, "fz_res", "manual", "bidirectional", "NULL");
        db.exec(
            "INSERT INTO fz_res.crm (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.io', '1')",
        );
        db.sync(c);
        let rows = "SELECT (SELECT jsonb_agg(phone ORDER BY id) FROM fz_res.crm) AS crm,
                           (SELECT jsonb_agg(phone ORDER BY id) FROM fz_res.hub) AS hub";

        // update vs update, then the target changes the field again: 'source' would
        // overwrite "3", which the conflict never saw
        db.exec("UPDATE fz_res.crm SET phone = '2a'; UPDATE fz_res.hub SET phone = '2b';");
        assert_eq!(db.sync(c)["conflicts"], 1);
        let k = pending(&mut db, c);
        db.exec("UPDATE fz_res.hub SET phone = '3'");
        let e = db.err(&format!("SELECT sync_resolve_conflict({k}, 'source')"));
        assert!(
            e.starts_with("55000")
                && e.contains(&format!(
                    "sync conflict {k}: the target row was changed after the conflict was recorded"
                ))
                && e.contains("phone is now \"3\", was \"2b\"")
                && e.contains("would overwrite that edit"),
            "{e}"
        );
        assert_eq!(
            db.json(rows),
            json!({"crm": ["2a"], "hub": ["3"]}),
            "nothing written"
        );
        // the side that changed may win: its current value
        db.exec(&format!("SELECT sync_resolve_conflict({k}, 'target')"));
        assert_eq!(db.json(rows), json!({"crm": ["3"], "hub": ["3"]}));

        // source updated, target deleted; then the source changes another field: deleting
        // the source ('target') would lose it
        db.exec("UPDATE fz_res.crm SET email = 'ann@new.io'; DELETE FROM fz_res.hub;");
        assert_eq!(db.sync(c)["conflicts"], 1);
        let k = pending(&mut db, c);
        db.exec("UPDATE fz_res.crm SET phone = '4'");
        let e = db.err(&format!("SELECT sync_resolve_conflict({k}, 'target')"));
        assert!(
            e.starts_with("55000")
                && e.contains("the source row was changed")
                && e.contains("phone is now \"4\", was \"3\"")
                && e.contains("would delete the row with that edit"),
            "{e}"
        );
        assert_eq!(
            db.json(rows),
            json!({"crm": ["4"], "hub": null}),
            "nothing deleted"
        );
        db.exec(&format!("SELECT sync_resolve_conflict({k}, 'source')"));
        assert_eq!(
            db.json(rows),
            json!({"crm": ["4"], "hub": ["4"]}),
            "re-created"
        );

        // source deleted, target updated; the target changes again: refused; unchanged
        // since the conflict, the delete goes through
        db.exec("DELETE FROM fz_res.crm; UPDATE fz_res.hub SET phone = '5';");
        assert_eq!(db.sync(c)["conflicts"], 1);
        let k = pending(&mut db, c);
        db.exec("UPDATE fz_res.hub SET email = 'late@x.io'");
        let e = db.err(&format!("SELECT sync_resolve_conflict({k}, 'source')"));
        assert!(
            e.starts_with("55000")
                && e.contains("the target row was changed")
                && e.contains("email is now \"late@x.io\""),
            "{e}"
        );
        db.exec("UPDATE fz_res.hub SET email = 'ann@new.io'");
        db.exec(&format!("SELECT sync_resolve_conflict({k}, 'source')"));
        assert_eq!(
            db.json(rows),
            json!({"crm": null, "hub": null}),
            "deleted on both sides"
        );
        assert_eq!(
            db.json(&format!("SELECT count(*) AS n FROM sync_conflicts WHERE config_id = {c} AND resolution = 'pending'"))["n"],
            0
        );
    }
}
