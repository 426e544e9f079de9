//! Errors of the cluster layer.

use rusm_otp::Pid;

/// Why joining, the registry or a status query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration is wrong.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The server's URL.
        url: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A NATS or JetStream operation failed.
    #[error("{what}: {message}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// What the server or client said.
        message: String,
    },
    /// The runtime could not join (it has spawned processes already, or joined before).
    #[error(transparent)]
    Runtime(#[from] rusm_otp::Error),
    /// The name is held by a live process.
    #[error("the global name {name:?} is held by {holder}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The process holding it.
        holder: Pid,
    },
    /// Only a live process of this node may be registered by it.
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// A global name is empty or longer than allowed.
    #[error("a global name must be 1 to {max} bytes long, not {len}")]
    BadName {
        /// The name's length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
}

impl ClusterError {
    pub(crate) fn nats(what: &'static str, error: impl std::fmt::Display) -> ClusterError {
        ClusterError::Nats {
            what,
            message: error.to_string(),
        }
    }
}
