//! `rusm run --cluster`: joining the node to a cluster, and `rusm cluster status`.

use std::process::ExitCode;
use std::time::Duration;

use rusm_cluster::{Cluster, ClusterConfig};
use rusm_otp::Runtime;

use crate::manifest::ClusterDecl;

/// The cluster a `rusm run` node joins; each flag overrides the manifest's
/// `[cluster]` key of the same name.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Join the cluster at this NATS server (for example nats://127.0.0.1:4222).
    #[arg(long = "cluster", value_name = "URL")]
    pub url: Option<String>,
    /// This node's name in the cluster (the host name when unset).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The cluster's name: nodes of different clusters on one server never meet
    /// (default "rusm").
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// How long a silent node has before it is declared down (default 2s).
    #[arg(long, value_name = "DURATION")]
    pub down_after: Option<String>,
}

impl ClusterArgs {
    /// Whether any flag was given.
    pub fn given(&self) -> bool {
        self.url.is_some()
            || self.node_name.is_some()
            || self.cluster_name.is_some()
            || self.down_after.is_some()
    }

    /// The configuration to join with: the manifest's table with the flags on top;
    /// `None` when neither names a server.
    pub fn config(&self, manifest: Option<&ClusterDecl>) -> anyhow::Result<Option<ClusterConfig>> {
        let table = manifest.cloned().unwrap_or_default();
        let Some(url) = self.url.clone().or(table.url) else {
            if self.given() {
                anyhow::bail!(
                    "--node-name, --cluster-name and --down-after need a cluster to join: \
                     give --cluster nats://HOST:PORT (or url in the manifest's [cluster])"
                );
            }
            return Ok(None);
        };
        let node_name = node_name_or_host(self.node_name.clone().or(table.node_name))?;
        let mut config = ClusterConfig::new(url, node_name);
        if let Some(name) = self.cluster_name.clone().or(table.cluster_name) {
            config = config.cluster_name(name);
        }
        if let Some(text) = &self.down_after {
            let d = rusm_policy::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("--down-after: {e}; write a duration such as 2s"))?;
            config = config.down_after(d);
        } else if let Some(d) = table.down_after {
            config = config.down_after(d);
        }
        if let Some(path) = table.credentials {
            config = config.credentials(path);
        }
        config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Some(config))
    }
}

/// A clustered node's name: `given` (from `--node-name` or the manifest), or else the
/// machine's host name, made a valid node name.
pub fn node_name_or_host(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(name) => Ok(name),
        None => host_name(),
    }
}

fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        anyhow::bail!("give the node a name with --node-name (no host name to use)");
    }
    Ok(name)
}

/// Join `rt` to the cluster `config` names, before anything is spawned on it.
pub async fn join(rt: &Runtime, config: Option<ClusterConfig>) -> anyhow::Result<Option<Cluster>> {
    let Some(config) = config else {
        return Ok(None);
    };
    let cluster = Cluster::join(rt, config).await.map_err(|e| match e {
        rusm_cluster::ClusterError::Connect { .. } => anyhow::anyhow!(
            "{e}; is a nats-server with JetStream running there? Install it (Debian/Ubuntu: apt install nats-server) and start it with: nats-server -js"
        ),
        other => anyhow::anyhow!("{other}"),
    })?;
    tracing::info!(
        target: "rusm::app",
        "node {} is node {} of its cluster",
        cluster.node_name(),
        cluster.node()
    );
    Ok(Some(cluster))
}

/// Back `buckets` by the cluster's JetStream KV buckets on `node` (`[cluster]
/// kv_buckets`), before anything is spawned on it.
pub async fn share_buckets(
    node: &rusm_wasm::WasmNode,
    cluster: &Cluster,
    buckets: &[String],
) -> anyhow::Result<()> {
    let pairs = buckets
        .iter()
        .map(|b| (b.clone(), cluster.kv_bucket_name(b)));
    let store =
        rusm_wasm::JetStreamStore::open(cluster.nats_client(), pairs, rusm_wasm::SHARED_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    node.share_buckets(buckets.iter().cloned(), std::sync::Arc::new(store))?;
    tracing::info!(
        target: "rusm::app",
        "buckets shared through the cluster: {}",
        buckets
            .iter()
            .map(|b| format!("{b} (JetStream {})", cluster.kv_bucket_name(b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `rusm cluster status`: print the live nodes, one a line.
pub fn status(url: &str, cluster: &str, wait: Duration) -> anyhow::Result<ExitCode> {
    let nodes = crate::runtime()?.block_on(rusm_cluster::status(url, cluster, wait))?;
    if nodes.is_empty() {
        outln!("no live nodes in cluster {cluster}");
    }
    for node in nodes {
        outln!(
            "{}\tnode {}\theartbeat every {}",
            node.name,
            node.node,
            rusm_policy::format_duration(node.heartbeat)
        );
    }
    Ok(ExitCode::SUCCESS)
}
