//! The cluster against a real `nats-server`, with in-process nodes: each node is its
//! own `Runtime` joined through its own NATS connection.

mod membership;
mod messaging;
mod registry;
mod restart;
mod spawn;

use std::time::{Duration, Instant};

use rusm_cluster::testing::NatsServer;
use rusm_cluster::{Cluster, ClusterConfig};
use rusm_otp::Runtime;

/// How long any one wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A failure detector fast enough for tests.
pub const DOWN_AFTER: Duration = Duration::from_millis(800);

pub fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// A node named `name` of cluster `cluster`.
pub async fn node(server: &NatsServer, cluster: &str, name: &str) -> (Runtime, Cluster) {
    let rt = Runtime::new();
    let config = ClusterConfig::new(server.url(), name)
        .cluster_name(cluster)
        .down_after(DOWN_AFTER);
    let cluster = Cluster::join(&rt, config)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
    (rt, cluster)
}

/// Wait until `cond` holds, failing the test after [`WAIT`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until every node sees every other as up.
pub async fn connected(nodes: &[&Cluster]) {
    for a in nodes {
        for b in nodes {
            if a.node() != b.node() {
                until(
                    &format!("{} to see {}", a.node_name(), b.node_name()),
                    || a.members().iter().any(|m| m.node == b.node() && m.up),
                )
                .await;
            }
        }
    }
}
