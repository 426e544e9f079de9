//! Errors of the HTTP server.

use std::net::SocketAddr;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A route is malformed or names a component that cannot serve HTTP.
    #[error("bad route {prefix:?} -> {component:?}: {reason}")]
    Route {
        /// The route's path prefix.
        prefix: String,
        /// The route's component.
        component: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration cannot work (for example `max_concurrent` of 0).
    #[error("bad HTTP configuration: {0}")]
    Config(String),
}
