//! The limits of a server.

use std::time::Duration;

/// The limits a public-facing server needs. [`HttpConfig::default`] has values fit
/// for a small service; every field can be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The largest request body accepted, in bytes; larger ones get 413 (at once when
    /// `Content-Length` says so, otherwise as soon as the streamed body passes it). A
    /// streamed body that passes it after the handler has sent its response head is
    /// cut there: the handler's next read fails, and the status it sent stands.
    pub max_body_bytes: u64,
    /// The largest request head (request line and headers) accepted, in bytes; hyper
    /// answers 431 beyond it. Values below 8 KiB are raised to 8 KiB (hyper's floor).
    pub max_header_bytes: usize,
    /// The most header fields in one request (431 beyond).
    pub max_headers: usize,
    /// Wall-clock time from the request's arrival until its handler must have
    /// finished; when it passes, the instance is killed (and the client gets 504 if
    /// no response had started). The policy's own `deadline` limit, when shorter,
    /// wins.
    pub request_deadline: Duration,
    /// How many request instances may run at once.
    pub max_concurrent: usize,
    /// How long a request waits for a free instance slot before it gets 503 (or 504,
    /// when its deadline passes first).
    pub queue_timeout: Duration,
    /// How many connections may be open at once. At the cap the listener stops
    /// accepting: further connections wait in the kernel's accept backlog until one
    /// closes (they are not refused).
    pub max_connections: usize,
    /// How long a client may take to send a request head on a connection (counted
    /// from the connection's start, or from the previous response on a kept-alive
    /// one); past it the connection is closed.
    pub header_read_timeout: Duration,
    /// How long after the request's arrival its whole body must have been received.
    /// A body not in by then fails: the client gets 408 (or, when the handler had
    /// already started its response, the connection is closed).
    pub body_read_timeout: Duration,
    /// Request bodies whose `Content-Length` is at most this are read whole before
    /// the request waits for an instance slot, so a client that is slow to send one
    /// holds no instance. Longer bodies, and those without a length, stream into the
    /// instance as they arrive (still bounded by `body_read_timeout`).
    pub buffered_body_bytes: u64,
    /// On [`HttpServer::shutdown`](crate::HttpServer::shutdown), how long in-flight
    /// requests may take to finish before their instances are killed and their
    /// connections closed.
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            request_deadline: Duration::from_secs(30),
            max_concurrent: 1024,
            queue_timeout: Duration::from_secs(1),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            buffered_body_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
