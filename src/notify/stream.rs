//! The Redis Stream sender: one thread that XADDs batches of events, in order, and
//! says which got there. It never calls into PostgreSQL; while Redis is down its
//! batches fail and the events stay in the outbox until a later batch gets through.
//!
//! Each entry: `id` (the webhook-id, `evt_<instance>_<outbox id>`), `type`, `payload` (the JSON
//! body a webhook receives). Trimmed with `MAXLEN ~ n` when n > 0.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

/// Where and how to add entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub stream: String,
    pub maxlen: i64,
}

/// One outbox event to add.
pub struct Entry {
    pub event_id: i64,
    /// the event's webhook-id
    pub message_id: String,
    pub event_type: String,
    pub payload: String,
}

/// A batch's fate: the ids added, or why none were.
pub type BatchResult = Result<Vec<i64>, String>;

pub struct Streamer {
    batches: Sender<(Target, Vec<Entry>)>,
    pub results: Receiver<BatchResult>,
}

impl Default for Streamer {
    fn default() -> Self {
        let (batches, rx) = channel::<(Target, Vec<Entry>)>();
        let (tx, results) = channel();
        super::spawn_without_signals(move || stream_thread(rx, tx));
        Streamer { batches, results }
    }
}

impl Streamer {
    /// Hand a batch to the thread; its result arrives on `results`.
    pub fn send(&self, target: Target, entries: Vec<Entry>) {
        // the thread lives as long as this sender
        let _ = self.batches.send((target, entries));
    }
}

const TIMEOUT: Duration = Duration::from_secs(2);

fn connect(url: &str) -> Result<redis::Connection, String> {
    let client = redis::Client::open(url)
        .map_err(|e| format!("sync_engine.redis_url is not a Redis URL: {e}"))?;
    let c = client
        .get_connection_with_timeout(TIMEOUT)
        .map_err(|e| format!("cannot connect to Redis: {e}"))?;
    c.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

fn stream_thread(batches: Receiver<(Target, Vec<Entry>)>, results: Sender<BatchResult>) {
    let mut conn: Option<(String, redis::Connection)> = None;
    while let Ok((target, entries)) = batches.recv() {
        if conn.as_ref().is_some_and(|(u, _)| *u != target.url) {
            conn = None;
        }
        if conn.is_none() {
            match connect(&target.url) {
                Ok(c) => conn = Some((target.url.clone(), c)),
                Err(e) => {
                    if results.send(Err(e)).is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let (_, c) = conn.as_mut().expect("connected above");
        let mut pipe = redis::pipe();
        for e in &entries {
            let cmd = pipe.cmd("XADD").arg(&target.stream);
            if target.maxlen > 0 {
                cmd.arg("MAXLEN").arg("~").arg(target.maxlen);
            }
            cmd.arg("*")
                .arg("id")
                .arg(&e.message_id)
                .arg("type")
                .arg(&e.event_type)
                .arg("payload")
                .arg(&e.payload);
        }
        let r: redis::RedisResult<Vec<String>> = pipe.query(c);
        let out = match r {
            Ok(_) => Ok(entries.iter().map(|e| e.event_id).collect()),
            Err(e) => {
                conn = None;
                Err(format!("XADD to Redis failed: {e}"))
            }
        };
        if results.send(out).is_err() {
            return;
        }
    }
}
