//! rusm nodes joined into a cluster through NATS, with Erlang's distribution
//! guarantees.
//!
//! [`Cluster::join`] connects a [`rusm_otp::Runtime`] to a NATS server, takes a node
//! number for it (every start of a node gets a new one) and makes its pids name it,
//! so `send`, `link`, `monitor`, `exit` and `kill` reach processes of other nodes
//! through the same calls as local ones, for native and wasm processes alike.
//!
//! - **Ordering.** Everything one node sends another — messages and signals — goes
//!   over one stream per pair of nodes, numbered in sequence. Frames arrive in the
//!   order sent or not at all: a gap ends the connection instead of being delivered
//!   around.
//! - **Failure detection.** Nodes beat four times per `down_after` (default 2 s); one
//!   silent for `down_after` is declared down, and every link and monitor across the
//!   connection fires with [`ExitReason::NoConnection`](rusm_otp::ExitReason). A node
//!   that restarts is a new incarnation with a new number: pids of the old one stay
//!   dead.
//! - **Global registry** ([`Cluster::register_global`], [`Cluster::whereis_global`]) on
//!   JetStream KV with compare-and-set.
//!
//! What is lost when a connection ends is what Erlang loses: messages and signals in
//! flight (sent, not yet delivered) may be lost, never reordered; links and monitors
//! across it fire `noconnection`; nothing is retransmitted.
//!
//! The server needs JetStream (node numbers and the registry live in KV buckets); only
//! features of NATS 2.9 are used.

#![deny(missing_docs)]

mod config;
mod error;
mod frame;
#[cfg(all(test, feature = "testing"))]
mod hostile_tests;
mod node;
mod peers;
mod registry;
mod status;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    ClusterConfig, DEFAULT_CLUSTER, DEFAULT_DOWN_AFTER, MAX_CLUSTER_NAME, MIN_DOWN_AFTER,
    check_cluster_name, check_node_name,
};
pub use error::ClusterError;
pub use node::{Cluster, MAX_PEERS, MAX_PENDING_SPAWNS, Member, OUTBOX_FRAMES, SPAWN_TIMEOUT};
pub use peers::PeerStats;
pub use registry::MAX_GLOBAL_NAME;
pub use status::{NodeStatus, status};
