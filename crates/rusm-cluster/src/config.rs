//! How a node joins its cluster.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClusterError;
use crate::frame::MAX_NODE_NAME;

/// The cluster name a node joins when it names none.
pub const DEFAULT_CLUSTER: &str = "rusm";

/// How long a node may stay silent before its peers declare it down, by default.
pub const DEFAULT_DOWN_AFTER: Duration = Duration::from_secs(2);

/// The shortest `down_after` accepted: heartbeats go out four times within it.
pub const MIN_DOWN_AFTER: Duration = Duration::from_millis(200);

/// The longest cluster name.
pub const MAX_CLUSTER_NAME: usize = 32;

/// Where and as whom a node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The NATS server, as `nats://host:port` (user and password or a token may be
    /// given in the URL; `tls://` asks for TLS).
    pub url: String,
    /// This node's name, unique among the live nodes of its cluster: letters, digits,
    /// `-`, `_` and `.`, at most 64 bytes.
    pub node_name: String,
    /// The cluster's name: every subject and bucket the cluster uses carries it, so
    /// two clusters on one NATS server never see each other. Letters, digits, `-` and
    /// `_`, at most 32 bytes.
    pub cluster_name: String,
    /// How long a node may stay silent before it is declared down and every link and
    /// monitor across it fires with `noconnection`.
    pub down_after: Duration,
    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    pub credentials: Option<PathBuf>,
}

impl ClusterConfig {
    /// A node named `node_name` joining the default cluster at `url`.
    pub fn new(url: impl Into<String>, node_name: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            node_name: node_name.into(),
            cluster_name: DEFAULT_CLUSTER.to_string(),
            down_after: DEFAULT_DOWN_AFTER,
            credentials: None,
        }
    }

    /// The same, in the cluster named `name`.
    pub fn cluster_name(mut self, name: impl Into<String>) -> ClusterConfig {
        self.cluster_name = name.into();
        self
    }

    /// The same, declaring a silent node down after `down_after`.
    pub fn down_after(mut self, down_after: Duration) -> ClusterConfig {
        self.down_after = down_after;
        self
    }

    /// The same, authenticating with a NATS credentials file.
    pub fn credentials(mut self, path: impl Into<PathBuf>) -> ClusterConfig {
        self.credentials = Some(path.into());
        self
    }

    /// How often this node sends a heartbeat: a quarter of `down_after`.
    pub fn heartbeat_interval(&self) -> Duration {
        self.down_after / 4
    }

    /// Check the names and the timing.
    ///
    /// # Errors
    /// [`ClusterError::Config`] naming the key that is wrong.
    pub fn check(&self) -> Result<(), ClusterError> {
        check_cluster_name(&self.cluster_name)?;
        check_name("node name", &self.node_name, MAX_NODE_NAME, true)?;
        if self.url.trim().is_empty() {
            return Err(ClusterError::Config("the NATS url is empty".into()));
        }
        if self.down_after < MIN_DOWN_AFTER {
            return Err(ClusterError::Config(format!(
                "down_after of {:?} is shorter than the {:?} allowed",
                self.down_after, MIN_DOWN_AFTER
            )));
        }
        Ok(())
    }
}

/// Check a cluster name.
///
/// # Errors
/// [`ClusterError::Config`] saying what is wrong with it.
pub fn check_cluster_name(name: &str) -> Result<(), ClusterError> {
    check_name("cluster name", name, MAX_CLUSTER_NAME, false)
}

/// Check a node name (as [`ClusterConfig::node_name`] must be, and as a remote spawn
/// names its node).
///
/// # Errors
/// [`ClusterError::Config`] saying what is wrong with it.
pub fn check_node_name(name: &str) -> Result<(), ClusterError> {
    check_name("node name", name, MAX_NODE_NAME, true)
}

fn check_name(what: &str, name: &str, max: usize, dots: bool) -> Result<(), ClusterError> {
    if name.is_empty() || name.len() > max {
        return Err(ClusterError::Config(format!(
            "the {what} {name:?} must be 1 to {max} bytes long"
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.');
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(ClusterError::Config(format!(
            "the {what} {name:?} has {bad:?}: only letters, digits, '-', '_'{} are allowed",
            if dots { " and '.'" } else { "" }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass_and_bad_ones_say_why() {
        assert!(
            ClusterConfig::new("nats://127.0.0.1:4222", "a.1")
                .check()
                .is_ok()
        );
        let err = ClusterConfig::new("nats://x", "a b").check().unwrap_err();
        assert!(err.to_string().contains("node name"), "{err}");
        let err = ClusterConfig::new("nats://x", "a")
            .cluster_name("c.d")
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("cluster name"), "{err}");
        let err = ClusterConfig::new("nats://x", "a")
            .down_after(Duration::from_millis(10))
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("down_after"), "{err}");
        assert!(
            ClusterConfig::new("nats://x", "a".repeat(65))
                .check()
                .is_err()
        );
    }
}
