//! A real HTTP receiver for the webhook tests: listens on 127.0.0.1 (an ephemeral port,
//! or a given one), records every request (headers, body, arrival time) and answers
//! each with the next scripted reply (then with the default one). HTTP/1.1 with
//! keep-alive, Content-Length bodies: what the notifier sends.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status with a Retry-After header.
    RetryAfter(u16, String),
    /// Read the request, then answer nothing for this long and close the connection.
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct Shared {
    requests: Mutex<Vec<Request>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    stop: AtomicBool,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Listen on an ephemeral port, answering 200 unless scripted otherwise.
    pub fn start() -> Receiver {
        Self::start_on(0)
    }

    /// Listen on `port` (0: ephemeral).
    pub fn start_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the test receiver");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            requests: Mutex::new(vec![]),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Status(200)),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || serve(conn, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver { port, shared }
    }

    /// A port nothing listens on (a dead receiver), for `start_on` later.
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answer the next requests with `replies`, in order.
    pub fn script(&self, replies: &[Reply]) {
        self.shared
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().cloned());
    }

    /// Answer with `r` once the script is used up.
    pub fn default_reply(&self, r: Reply) {
        *self.shared.default.lock().unwrap() = r;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Wait up to `secs` until `pred` holds for the requests so far; returns them.
    pub fn wait_for(&self, secs: u64, pred: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let r = self.requests();
            if pred(&r) || start.elapsed() > Duration::from_secs(secs) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The requests whose JSON body has this "type".
    pub fn of_type(&self, t: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.json()["type"] == t)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut conn: TcpStream, s: Arc<Shared>) {
    conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // one request: headers up to the blank line, then Content-Length bytes
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            match conn.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if s.stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut headers = HashMap::new();
        for line in head.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let total = head_end + 4 + len;
        while buf.len() < total {
            match conn.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end + 4..total]).to_string();
        buf.drain(..total);
        s.requests.lock().unwrap().push(Request {
            headers,
            body,
            at: Instant::now(),
        });
        let reply = s
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| s.default.lock().unwrap().clone());
        let answer = match reply {
            Reply::Status(code) => format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n"),
            Reply::RetryAfter(code, v) => {
                format!("HTTP/1.1 {code} X\r\nretry-after: {v}\r\ncontent-length: 0\r\n\r\n")
            }
            Reply::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
        };
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
