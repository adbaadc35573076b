//! A loopback HTTP/1.1 server for the download tests: it serves one body, answers each request with
//! the next scripted [`Reply`] (honouring `Range: bytes=N-` with 206 where the reply allows), records
//! what it was asked, and always stops: a bounded number of replies, a deadline on every accept and
//! read, and a stop flag set on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the server answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// The body (206 from the asked offset when the request has a Range, else 200).
    Full,
    /// Like `Full`, after waiting this long before the headers.
    FullAfter(Duration),
    /// Like `Full`, but closes the connection after sending this many body bytes.
    Cut(usize),
    /// 200 and the whole body, whatever Range was asked.
    IgnoreRange,
    /// This status with a short text body.
    Status(u16),
    /// Reads the request, then sends nothing for this long, then closes.
    Hang(Duration),
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request path.
    pub path: String,
    /// The `N` of a `Range: bytes=N-` header.
    pub range: Option<u64>,
    /// The status the server answered (0 for `Hang`).
    pub status: u16,
}

/// A running server; stops (and is joined) on drop.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server that answers at most `replies.len()` requests, in order.
    pub fn start(body: Vec<u8>, replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Connections are handled one at a time: a concurrent client waits in the backlog.
            for reply in replies {
                let deadline = Instant::now() + Duration::from_secs(15);
                let stream = loop {
                    if stop2.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
                    match listener.accept() {
                        Ok((s, _)) => break s,
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                };
                let _ = handle(stream, &body, reply, &seen2, &stop2);
            }
        });
        Server { base, seen, stop, thread: Some(thread) }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Option<u64>)> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") && buf.len() < 16 * 1024 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let range = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("range") {
            return None;
        }
        value.trim().strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
    });
    Ok((path, range))
}

fn handle(
    mut stream: TcpStream,
    body: &[u8],
    reply: Reply,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let (path, range) = read_request(&mut stream)?;
    let record = |status| seen.lock().unwrap().push(Seen { path: path.clone(), range, status });
    let head = |status: u16, reason: &str, extra: String, len: usize| {
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    match reply {
        Reply::Status(code) => {
            record(code);
            let text = b"nope";
            stream.write_all(head(code, "Error", String::new(), text.len()).as_bytes())?;
            stream.write_all(text)?;
        }
        Reply::Hang(d) => {
            record(0);
            let until = Instant::now() + d;
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Reply::Full | Reply::FullAfter(_) | Reply::Cut(_) | Reply::IgnoreRange => {
            if let Reply::FullAfter(d) = reply {
                std::thread::sleep(d);
            }
            let start = match (reply, range) {
                (Reply::IgnoreRange, _) | (_, None) => None,
                (_, Some(n)) => Some((n as usize).min(body.len())),
            };
            let (status, rest) = match start {
                Some(n) => {
                    let extra = format!("Content-Range: bytes {n}-{}/{}\r\n", body.len() - 1, body.len());
                    stream.write_all(head(206, "Partial Content", extra, body.len() - n).as_bytes())?;
                    (206, &body[n..])
                }
                None => {
                    stream.write_all(head(200, "OK", String::new(), body.len()).as_bytes())?;
                    (200, body)
                }
            };
            record(status);
            let send = match reply {
                Reply::Cut(k) => &rest[..k.min(rest.len())],
                _ => rest,
            };
            stream.write_all(send)?;
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}
