//! HTTP-serving actors: a listener that routes requests to components exporting
//! `wasi:http/incoming-handler`, each request handled by a fresh sandboxed instance
//! that is also a rusm process.
//!
//! [`HttpServer::bind`] listens on an address and serves HTTP/1.1 (keep-alive on) with
//! hyper. Each request is matched against the [`Route`]s (longest path prefix, then
//! method); the chosen component is instantiated from its cached `ProxyPre` on the
//! node's pooled engine through [`rusm_wasm::WasmNode::serve_http`], as a rusm process
//! with a pid, a mailbox and the `rusm:runtime` imports, under the route's policy (or
//! the node's default). Request and response bodies stream in both directions. A
//! route with [`Route::reuse`] serves its requests from a bounded pool of warm
//! instances instead ([`rusm_wasm::HttpPool`]), each serving several requests in turn.
//!
//! What a client sees when a limit is hit ([`HttpConfig`]):
//!
//! | condition | status |
//! | --- | --- |
//! | no route for the path | 404 |
//! | a route for the path, none for the method | 405 (with `Allow`) |
//! | request body larger than `max_body_bytes` | 413 (or, once the handler has answered, its read fails at the limit) |
//! | request head larger than `max_header_bytes` | 431 (from hyper) |
//! | request body not all in within `body_read_timeout` of the head | 408 (or the connection is closed, if the handler had answered) |
//! | request head not in within `header_read_timeout` | the connection is closed |
//! | no instance slot free within `queue_timeout` (or, on a route with [`Route::reuse`], no instance of its pool) | 503 (with `Retry-After`) |
//! | no response within `request_deadline` of the head's arrival | 504; the instance is killed |
//!
//! At most `max_connections` connections are open at once; at the cap the listener
//! stops accepting and further clients wait in the kernel's accept backlog. A body
//! with a `Content-Length` of at most `buffered_body_bytes` is read whole before the
//! request takes one of the `max_concurrent` instance slots, so slow clients do not
//! hold instances.
//! | the handler trapped, or returned without a response | 500 |
//!
//! Every request is logged through `tracing` (target `rusm::http::access`) with its
//! method, path, status, duration and pid, and counted in [`HttpStats`].
//!
//! ```no_run
//! # async fn example(node: rusm_wasm::WasmNode) -> Result<(), rusm_http::HttpError> {
//! use rusm_http::{HttpConfig, HttpServer, Route};
//!
//! let routes = vec![Route::new("/hello", "http-hello"), Route::new("/", "http-echo")];
//! let server = HttpServer::bind(node, "127.0.0.1:8080".parse().unwrap(), routes, HttpConfig::default()).await?;
//! println!("listening on {}", server.local_addr());
//! // ...
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod body;
mod config;
mod connection;
mod error;
mod route;
mod server;
mod stats;

pub use config::HttpConfig;
pub use connection::ConnectionConfig;
pub use error::HttpError;
pub use route::{Route, RouteKind};
pub use server::HttpServer;
pub use stats::{HttpStats, LATENCY_BUCKETS};

/// The tags a connection process exchanges with its guest and with whoever holds its
/// pid: the same values as `rusm_guest::ws` and `rusm_guest::sse`, whose docs give the
/// payloads.
pub mod tags {
    pub use crate::connection::proto::{BINARY, CLOSE, EVENT, PING, TEXT};
}
