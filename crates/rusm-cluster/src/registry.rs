//! The global registry: names that any node of the cluster resolves to a pid, kept in
//! a JetStream KV bucket (`rusm_<cluster>_names`) and changed only by compare-and-set,
//! so of two nodes racing for a name exactly one wins.
//!
//! A name is released when its process ends (its node deletes the entry, expecting
//! the revision it wrote), and is free to take again when its holder's node is gone:
//! left, replaced by a newer incarnation, declared down, or not heard from in
//! `down_after` since this node joined. A lookup never returns a holder on a node
//! known to be gone. What decides "gone" is each node's own failure detector, as for
//! links and monitors.

use std::fmt::Write as _;

use async_nats::jetstream::kv;
use rusm_otp::Pid;

use crate::error::ClusterError;
use crate::node::{Cluster, Shared};

/// The longest global name, in bytes.
pub const MAX_GLOBAL_NAME: usize = 255;

/// How often a registration retries a compare-and-set that lost a race.
const RACE_RETRIES: usize = 16;

/// The KV key of a global name: its bytes in hex, since names are free text and KV
/// keys are not.
fn key(name: &str) -> Result<String, ClusterError> {
    if name.is_empty() || name.len() > MAX_GLOBAL_NAME {
        return Err(ClusterError::BadName {
            len: name.len(),
            max: MAX_GLOBAL_NAME,
        });
    }
    let mut key = String::with_capacity(2 + name.len() * 2);
    key.push_str("n.");
    for byte in name.bytes() {
        let _ = write!(key, "{byte:02x}");
    }
    Ok(key)
}

fn decode_holder(entry: &kv::Entry) -> Option<Pid> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    let raw: [u8; 8] = entry.value.as_ref().try_into().ok()?;
    Some(Pid::from_raw(u64::from_le_bytes(raw)))
}

impl Shared {
    /// Is `holder` alive, as far as this node can tell? A process here: is it alive.
    /// One on another node: is that node up. A node this one has not heard from is
    /// taken as gone only once this node has been in the cluster for `down_after`
    /// (the time in which it would have heard its heartbeats).
    async fn holder_alive(&self, holder: Pid) -> bool {
        let shared = self;
        if holder.node() == shared.node {
            return shared.rt.is_alive(holder);
        }
        let settled = shared.joined_at + shared.config.down_after;
        loop {
            {
                let peers = shared.state.peers.lock();
                if peers.is_up(holder.node()) {
                    return true;
                }
                if peers.is_dead(holder.node()) {
                    return false;
                }
            }
            let now = std::time::Instant::now();
            if now >= settled {
                return false;
            }
            // Not heard of yet: wait out the time its heartbeat takes to arrive.
            tokio::time::sleep_until(settled.into()).await;
        }
    }

    /// Register `pid`, a live process of this node, under the global `name`.
    ///
    /// # Errors
    /// [`ClusterError::NameTaken`] when a live process holds the name,
    /// [`ClusterError::NotLocal`] when `pid` is not a live process of this node,
    /// [`ClusterError::BadName`] for an empty or too long name, or the KV store's
    /// error.
    pub(crate) async fn register_global(&self, name: &str, pid: Pid) -> Result<(), ClusterError> {
        let key = key(name)?;
        let shared = self;
        if pid.node() != shared.node || !shared.rt.is_alive(pid) {
            return Err(ClusterError::NotLocal(pid));
        }
        let value: bytes::Bytes = pid.as_raw().to_le_bytes().to_vec().into();
        for _ in 0..RACE_RETRIES {
            let revision = match shared.names.create(&key, value.clone()).await {
                Ok(revision) => Some(revision),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let entry = shared
                        .names
                        .entry(&key)
                        .await
                        .map_err(|e| ClusterError::nats("reading a global name", e))?;
                    let Some(entry) = entry else { continue };
                    match decode_holder(&entry) {
                        Some(holder) if holder == pid => return Ok(()),
                        Some(holder) if self.holder_alive(holder).await => {
                            return Err(ClusterError::NameTaken {
                                name: name.to_string(),
                                holder,
                            });
                        }
                        // Its holder is gone: take it over, if no one else does first.
                        _ => shared
                            .names
                            .update(&key, value.clone(), entry.revision)
                            .await
                            .ok(),
                    }
                }
                Err(e) => return Err(ClusterError::nats("registering a global name", e)),
            };
            if let Some(revision) = revision {
                self.release_on_exit(key, pid, revision);
                return Ok(());
            }
        }
        Err(ClusterError::nats(
            "registering a global name",
            "lost the race for it too many times",
        ))
    }

    /// When `pid` ends, delete its entry, unless someone has written it since.
    fn release_on_exit(&self, key: String, pid: Pid, revision: u64) {
        let names = self.names.clone();
        let watch = self.rt.watch(pid);
        self.rt.handle().spawn(async move {
            watch.await;
            if let Err(e) = names.delete_expect_revision(&key, Some(revision)).await {
                tracing::debug!(%pid, error = %e, "global name not released (taken over?)");
            }
        });
    }

    /// The pid registered under the global `name`, if its holder is alive as far as
    /// this node can tell.
    ///
    /// # Errors
    /// [`ClusterError::BadName`], or the KV store's error.
    pub(crate) async fn whereis_global(&self, name: &str) -> Result<Option<Pid>, ClusterError> {
        let key = key(name)?;
        let entry = self
            .names
            .entry(&key)
            .await
            .map_err(|e| ClusterError::nats("reading a global name", e))?;
        match entry.as_ref().and_then(decode_holder) {
            Some(holder) if self.holder_alive(holder).await => Ok(Some(holder)),
            _ => Ok(None),
        }
    }

    /// Remove the global `name` if `pid` holds it. Returns whether it did.
    ///
    /// # Errors
    /// [`ClusterError::BadName`], or the KV store's error.
    pub(crate) async fn unregister_global(
        &self,
        name: &str,
        pid: Pid,
    ) -> Result<bool, ClusterError> {
        let key = key(name)?;
        let names = &self.names;
        let entry = names
            .entry(&key)
            .await
            .map_err(|e| ClusterError::nats("reading a global name", e))?;
        match entry {
            Some(entry) if decode_holder(&entry) == Some(pid) => Ok(names
                .delete_expect_revision(&key, Some(entry.revision))
                .await
                .is_ok()),
            _ => Ok(false),
        }
    }
}

impl Cluster {
    /// Register `pid`, a live process of this node, under the global `name`. Of two
    /// nodes racing for a name, exactly one wins.
    ///
    /// # Errors
    /// [`ClusterError::NameTaken`] when a live process holds the name,
    /// [`ClusterError::NotLocal`] when `pid` is not a live process of this node,
    /// [`ClusterError::BadName`] for an empty or too long name, or the KV store's
    /// error.
    pub async fn register_global(&self, name: &str, pid: Pid) -> Result<(), ClusterError> {
        self.shared.register_global(name, pid).await
    }

    /// The pid registered under the global `name`, if its holder is alive as far as
    /// this node can tell.
    ///
    /// # Errors
    /// [`ClusterError::BadName`], or the KV store's error.
    pub async fn whereis_global(&self, name: &str) -> Result<Option<Pid>, ClusterError> {
        self.shared.whereis_global(name).await
    }

    /// Remove the global `name` if `pid` holds it. Returns whether it did.
    ///
    /// # Errors
    /// [`ClusterError::BadName`], or the KV store's error.
    pub async fn unregister_global(&self, name: &str, pid: Pid) -> Result<bool, ClusterError> {
        self.shared.unregister_global(name, pid).await
    }
}

/// The registry's errors as the runtime's, for [`rusm_otp::Runtime::register_global`].
pub(crate) fn into_runtime_error(error: ClusterError) -> rusm_otp::Error {
    match error {
        ClusterError::NameTaken { name, holder } => rusm_otp::Error::NameTaken { name, holder },
        other => rusm_otp::Error::Cluster(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_and_bounded() {
        assert_eq!(key("ab").unwrap(), "n.6162");
        assert_eq!(key("a b/*>").unwrap(), "n.6120622f2a3e");
        assert!(key("").is_err());
        assert!(key(&"x".repeat(256)).is_err());
    }
}
