//! The limits of a server.

use std::time::Duration;

/// The limits a public-facing server needs. [`HttpConfig::default`] has values fit
/// for a small service; every field can be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// The largest request body accepted, in bytes; larger ones get 413 (at once when
    /// `Content-Length` says so, otherwise as soon as the streamed body passes it).
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
    /// How long a request waits for a free instance slot before it gets 503.
    pub queue_timeout: Duration,
    /// How long a client may take to send a request head on a connection.
    pub header_read_timeout: Duration,
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
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
