//! webhook_sink: listens on 127.0.0.1 (an ephemeral port, printed as the first line of
//! stdout), answers every request with 204 and counts them; each second it writes the
//! count so far to the file given as its first argument. Requests must carry a
//! Content-Length body (what sync_engine's notifier sends).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn serve(mut c: TcpStream, n: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(16384);
    let mut chunk = [0u8; 16384];
    loop {
        let head = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let h = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
        let len: usize = h
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let total = head + 4 + len;
        while buf.len() < total {
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        buf.drain(..total);
        n.fetch_add(1, Ordering::Relaxed);
        if c.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

fn main() {
    let out = std::env::args().nth(1).expect("usage: webhook_sink COUNT_FILE");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", l.local_addr().unwrap().port());
    let n = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&n);
    std::thread::spawn(move || loop {
        let _ = std::fs::write(&out, counter.load(Ordering::Relaxed).to_string());
        std::thread::sleep(Duration::from_millis(200));
    });
    for c in l.incoming().flatten() {
        let n = Arc::clone(&n);
        std::thread::spawn(move || serve(c, n));
    }
}
