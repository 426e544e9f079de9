//! The live nodes of a cluster, as a client that is not a node sees them: what
//! `rusm cluster status` prints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::config::check_cluster_name;
use crate::error::ClusterError;
use crate::frame;

/// A node heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// Its node number.
    pub node: u32,
    /// Its name.
    pub name: String,
    /// How often it beats.
    pub heartbeat: Duration,
}

/// Listen to the heartbeats of cluster `cluster` at `url` for `wait` and return the
/// nodes heard from (and not heard leaving), by node number. Heartbeats come four
/// times per `down_after` (2 s by default), so a `wait` of a second hears every live
/// node of a cluster with default settings at least twice.
///
/// # Errors
/// A bad cluster name, or the server cannot be reached.
pub async fn status(
    url: &str,
    cluster: &str,
    wait: Duration,
) -> Result<Vec<NodeStatus>, ClusterError> {
    check_cluster_name(cluster)?;
    let client = async_nats::ConnectOptions::new()
        .name("rusm cluster status")
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|source| ClusterError::Connect {
            url: url.to_string(),
            source,
        })?;
    let mut heartbeats = client
        .subscribe(format!("rusm.{cluster}.hb"))
        .await
        .map_err(|e| ClusterError::nats("subscribing to heartbeats", e))?;
    let id = frame::cluster_id(cluster);
    let deadline = Instant::now() + wait;
    let mut nodes = BTreeMap::new();
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline.into(), heartbeats.next()).await {
        let Ok(hb) = frame::decode_heartbeat(&msg.payload) else {
            continue;
        };
        if hb.cluster != id {
            continue;
        }
        if hb.alive {
            nodes.insert(
                hb.node,
                NodeStatus {
                    node: hb.node,
                    name: hb.name,
                    heartbeat: Duration::from_millis(hb.interval_ms.into()),
                },
            );
        } else {
            nodes.remove(&hb.node);
        }
    }
    Ok(nodes.into_values().collect())
}
