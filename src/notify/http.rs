//! The webhook senders: per receiver (subscription), a few threads that POST the jobs
//! the notifier hands them and send back how each attempt ended. They never call into
//! PostgreSQL. A slow or hanging receiver ties up its own threads only; each request
//! is bounded by the connect and total timeouts. Redirects are not followed (a 3xx is
//! a failed attempt) and no proxy from the environment is used.

use super::schedule::Attempt;
use super::sign;
use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One attempt to make.
pub struct Job {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    pub event_id: i64,
    /// the `webhook-id`: the same on every attempt of this event
    pub message_id: String,
    pub body: String,
}

/// How an attempt ended.
pub struct Outcome {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub attempt: Attempt,
}

/// The limits requests are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connect_ms: u64,
    pub total_ms: u64,
    pub threads: usize,
}

struct Senders {
    jobs: Sender<Job>,
    limits: Limits,
}

/// The threads of every receiver, and the channel their outcomes come back on.
pub struct Pool {
    receivers: HashMap<i64, Senders>,
    outcomes_tx: Sender<Outcome>,
    pub outcomes: Receiver<Outcome>,
}

impl Default for Pool {
    fn default() -> Self {
        let (outcomes_tx, outcomes) = channel();
        Pool {
            receivers: HashMap::new(),
            outcomes_tx,
            outcomes,
        }
    }
}

impl Pool {
    /// Queue `job` on its receiver's threads, starting them (again, when `limits`
    /// changed: the old ones finish what they hold and end).
    pub fn send(&mut self, job: Job, limits: Limits) {
        let stale = self
            .receivers
            .get(&job.webhook_id)
            .is_some_and(|s| s.limits != limits);
        if stale {
            self.receivers.remove(&job.webhook_id);
        }
        let outcomes = self.outcomes_tx.clone();
        let s = self.receivers.entry(job.webhook_id).or_insert_with(|| {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..limits.threads.max(1) {
                let rx = Arc::clone(&rx);
                let out = outcomes.clone();
                super::spawn_without_signals(move || sender_thread(rx, out, limits));
            }
            Senders { jobs: tx, limits }
        });
        // the threads end only when their channel is dropped, so this cannot fail
        let _ = s.jobs.send(job);
    }

    /// Stop the threads of receivers not in `keep` (removed or disabled ones).
    pub fn retain(&mut self, keep: &[i64]) {
        self.receivers.retain(|id, _| keep.contains(id));
    }
}

fn agent(limits: Limits) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_millis(limits.connect_ms)))
        .timeout_global(Some(Duration::from_millis(limits.total_ms)))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .user_agent("sync_engine-webhooks")
        .build()
        .into()
}

fn sender_thread(jobs: Arc<Mutex<Receiver<Job>>>, outcomes: Sender<Outcome>, limits: Limits) {
    let agent = agent(limits);
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return, // the pool dropped this receiver
            }
        };
        // a panic in the HTTP stack is a failed attempt (retried on the schedule), not
        // a delivery left in flight forever with its thread gone
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| post(&agent, &job)))
            .unwrap_or_else(|_| Attempt::Failed("the HTTP client panicked while sending".into()));
        if outcomes
            .send(Outcome {
                delivery_id: job.delivery_id,
                webhook_id: job.webhook_id,
                attempt,
            })
            .is_err()
        {
            return; // the notifier is gone
        }
    }
}

/// POST one signed request and say how it ended.
fn post(agent: &ureq::Agent, job: &Job) -> Attempt {
    let key = match sign::secret_key(&job.secret) {
        Ok(k) => k,
        Err(m) => return Attempt::Failed(m),
    };
    let id = job.message_id.clone();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let sig = sign::signature(&key, &id, ts, job.body.as_bytes());
    let r = agent
        .post(&job.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .send(job.body.as_bytes());
    match r {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            // read (a bounded part of) the answer so the connection can be reused
            let mut sink = Vec::new();
            let _ = resp
                .into_body()
                .into_reader()
                .take(64 * 1024)
                .read_to_end(&mut sink);
            Attempt::Answered {
                status,
                retry_after,
            }
        }
        Err(e) => Attempt::Failed(describe(&e)),
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("no answer within the timeout ({t})"),
        other => format!("the request failed: {other}"),
    }
}
