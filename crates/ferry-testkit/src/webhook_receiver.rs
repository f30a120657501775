//! A webhook receiver on 127.0.0.1 for `ferry watch`'s delivery tests: it answers each POST
//! with the next status of its script (then 200), and keeps every request it read with the
//! status it answered, so that a test sees each attempt and what was accepted.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// A `Retry-After` header to send with it.
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }
}

/// One request the receiver read, and the status it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
    pub status: u16,
}

/// A running receiver; its thread lives as long as the test process.
#[derive(Debug)]
pub struct WebhookReceiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

/// An address on 127.0.0.1 that nothing listens on (a port the system just gave out and took
/// back): a webhook there refuses connections until a receiver starts on it.
pub fn unused_loopback_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}

impl WebhookReceiver {
    /// Starts on a free port of 127.0.0.1.
    pub fn start(answers: Vec<Answer>) -> Self {
        Self::start_on(unused_loopback_address(), answers)
    }

    /// Starts on `address` (from [`unused_loopback_address`]).
    pub fn start_on(address: SocketAddr, answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind(address).expect("the receiver's port is free");
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let mut answers: VecDeque<Answer> = answers.into();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((path, content_type, body)) = read_request(&stream) else {
                    continue;
                };
                let answer = answers.pop_front().unwrap_or(Answer::status(200));
                kept.lock().unwrap().push(Received {
                    path,
                    content_type,
                    body,
                    status: answer.status,
                });
                let retry_after = answer
                    .retry_after
                    .map(|value| format!("retry-after: {value}\r\n"))
                    .unwrap_or_default();
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {} Scripted\r\n{retry_after}content-length: 0\r\nconnection: close\r\n\r\n",
                        answer.status
                    )
                    .as_bytes(),
                );
            }
        });
        Self { address, received }
    }

    /// `http://127.0.0.1:PORT/alerts`.
    pub fn url(&self) -> String {
        url_of(self.address)
    }

    /// Every request read so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies answered with a 2xx, as JSON, waiting (at most 30 s) until there are
    /// `count`.
    pub fn wait_for_accepted(&self, count: usize) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let accepted: Vec<serde_json::Value> = self
                .received()
                .into_iter()
                .filter(|request| (200..300).contains(&request.status))
                .map(|request| serde_json::from_str(&request.body).expect("a JSON body"))
                .collect();
            if accepted.len() >= count || start.elapsed() > Duration::from_secs(30) {
                return accepted;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The webhook URL of a receiver at `address`.
pub fn url_of(address: SocketAddr) -> String {
    format!("http://{address}/alerts")
}

/// Reads one request: its path, content type and body (by `content-length`).
fn read_request(stream: &std::net::TcpStream) -> Option<(String, Option<String>, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split(' ').nth(1)?.to_owned();
    let mut length = 0;
    let mut content_type = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "content-type" => content_type = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, content_type, String::from_utf8(body).ok()?))
}
