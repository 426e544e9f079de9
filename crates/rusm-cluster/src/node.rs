//! A node's membership in its cluster: joining, heartbeats, the failure detector, the
//! ordered stream to each peer, and what arrives from peers.
//!
//! Subjects (`<c>` is the cluster name): every node publishes its heartbeat on
//! `rusm.<c>.hb` and reads its frames from its inbox, `rusm.<c>.n.<node number>`.
//! Node numbers come from a JetStream KV counter (bucket `rusm_<c>_nodes`), so every
//! start of a node — every incarnation — gets a number never used before in the
//! cluster, and the pids of an earlier incarnation name a node that is gone.
//!
//! Tasks: one writer (the only publisher of frames: it numbers them, so the order it
//! takes them from the outbox is the order they are numbered and sent), one reader
//! (heartbeats before frames, then frames in arrival order), and one ticker
//! (heartbeats out, silent peers declared down).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use async_nats::{Client, ConnectOptions, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use rusm_otp::{
    BoxFuture, ExitReason, MonitorRef, Payload, Pid, Remote, Runtime, SendError, SendErrorKind,
    SignalKind, SpawnRefused, SpawnRequest, Tag,
};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::frame::{self, Body, Header, Heartbeat};
use crate::peers::{Peer, PeerStats, Verdict};

/// How many frames may wait for the writer. A sender that finds the outbox full ends
/// the connection to that peer (a frame dropped silently would be a gap the receiver
/// cannot see).
pub const OUTBOX_FRAMES: usize = 65_536;

/// The most other nodes a node keeps in its membership view; heartbeats from more
/// are refused (and logged), so forged heartbeats cannot grow it without bound.
pub const MAX_PEERS: usize = 1024;

/// How long a remote spawn waits for its answer. A node that is declared down
/// first fails it sooner, with `noconnection`; a process whose answer arrives after
/// this is killed at once, so a spawn that failed never leaves a process behind.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The most remote spawns a node keeps waiting for an answer from any one peer; more
/// are refused at once, so a peer that never answers cannot make this node hold an
/// unbounded number of them.
pub const MAX_PENDING_SPAWNS: usize = 4096;

/// One other node as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Its node number (the top bits of its pids).
    pub node: u32,
    /// Its name.
    pub name: String,
    /// Whether it is up: heard from within `down_after`.
    pub up: bool,
    /// Its counters.
    pub stats: PeerStats,
}

/// What the runtime, the tasks and the registry share.
pub(crate) struct Shared {
    pub(crate) rt: Runtime,
    pub(crate) client: Client,
    pub(crate) config: ClusterConfig,
    pub(crate) node: u32,
    pub(crate) cluster_id: u64,
    pub(crate) state: Arc<State>,
    pub(crate) names: kv::Store,
    pub(crate) joined_at: Instant,
    heartbeat_subject: Subject,
}

/// What the outbox side (the runtime's [`Remote`]) and the tasks share.
pub(crate) struct State {
    prefix: String,
    pub(crate) peers: Mutex<Peers>,
    out: mpsc::Sender<Out>,
    /// The largest data payload a frame carries: the server's `max_payload` less the
    /// frame's own bytes.
    max_data: usize,
    /// Peers whose outbox overflowed: the writer ends their connections.
    overflowed: Mutex<Vec<u32>>,
    /// Heartbeats refused because the membership view is full (for the log's rate).
    pub(crate) refused_heartbeats: std::sync::atomic::AtomicU64,
    /// Remote spawns sent and not yet answered, by request id.
    spawns: Mutex<FxHashMap<u64, PendingSpawn>>,
    next_spawn: std::sync::atomic::AtomicU64,
    /// Told whenever a peer comes up (a spawn naming a node not heard of yet waits
    /// for it, for at most `down_after` after joining).
    heard: tokio::sync::Notify,
}

/// A remote spawn waiting for its answer.
struct PendingSpawn {
    node: u32,
    caller: Pid,
    link: bool,
    monitor: Option<MonitorRef>,
    /// `None` once the caller stopped waiting (its time ran out): an answer that
    /// still comes kills the process it names.
    reply: Option<tokio::sync::oneshot::Sender<Result<Pid, SpawnRefused>>>,
}

#[derive(Default)]
pub(crate) struct Peers {
    by_node: FxHashMap<u32, PeerEntry>,
    /// Node numbers that are gone for good: left, or replaced by a newer incarnation.
    dead: FxHashSet<u32>,
    by_name: FxHashMap<String, u32>,
}

struct PeerEntry {
    peer: Peer,
    subject: Subject,
}

impl Peers {
    /// Is `node` up? (Unknown nodes are not.)
    pub(crate) fn is_up(&self, node: u32) -> bool {
        self.by_node.get(&node).is_some_and(|e| e.peer.up)
    }

    /// Is `node` gone for good (left, or replaced by a newer incarnation)?
    pub(crate) fn is_dead(&self, node: u32) -> bool {
        self.dead.contains(&node)
    }
}

/// What the writer publishes.
enum Out {
    /// A frame for a peer, as the runtime hands it over.
    Frame { to: u32, body: Body },
    /// This node's heartbeat, at once: queued when a peer is first heard (or heard
    /// again), before the peer counts as up, so that every frame to it follows a
    /// heartbeat on the wire and it knows this node before it reads the frame.
    Beat,
}

/// The runtime's way to other nodes: queue a frame for the writer. It reaches the
/// registry through a weak reference (the runtime holds the outbox, and the shared
/// state holds the runtime).
struct Outbox(Arc<State>, Arc<std::sync::OnceLock<Weak<Shared>>>);

impl State {
    fn queue(&self, to: u32, body: Body) -> Result<(), Body> {
        let body = match self.out.try_send(Out::Frame { to, body }) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(out)) => {
                self.overflowed.lock().push(to);
                out
            }
            Err(mpsc::error::TrySendError::Closed(out)) => out,
        };
        match body {
            Out::Frame { body, .. } => Err(body),
            Out::Beat => unreachable!("a frame comes back as itself"),
        }
    }
}

impl Remote for Outbox {
    fn send(&self, to: Pid, tag: Tag, payload: Payload) -> Result<(), SendError> {
        let bytes = match payload {
            Payload::Bytes(bytes) => bytes,
            other => {
                return Err(SendError {
                    payload: other,
                    kind: SendErrorKind::NotPortable,
                });
            }
        };
        let state = &self.0;
        if bytes.len() > state.max_data {
            return Err(SendError {
                kind: SendErrorKind::TooLarge {
                    size: bytes.len(),
                    limit: state.max_data,
                },
                payload: Payload::Bytes(bytes),
            });
        }
        if !state.peers.lock().is_up(to.node()) {
            return Err(SendError {
                payload: Payload::Bytes(bytes),
                kind: SendErrorKind::NoConnection,
            });
        }
        let body = Body::Data {
            to,
            tag,
            payload: bytes,
        };
        state.queue(to.node(), body).map_err(|body| {
            let Body::Data { payload, .. } = body else {
                unreachable!("a data frame comes back as itself")
            };
            SendError {
                payload: Payload::Bytes(payload),
                kind: SendErrorKind::NoConnection,
            }
        })
    }

    fn signal(&self, to: Pid, from: Pid, reason: ExitReason, kind: SignalKind) {
        let _ = self.0.queue(
            to.node(),
            Body::Signal {
                to,
                from,
                kind,
                reason,
            },
        );
    }

    fn link(&self, from: Pid, to: Pid) {
        let _ = self.0.queue(to.node(), Body::Link { from, to });
    }

    fn unlink(&self, from: Pid, to: Pid) {
        let _ = self.0.queue(to.node(), Body::Unlink { from, to });
    }

    fn monitor(&self, owner: Pid, target: Pid, monitor: MonitorRef) {
        let _ = self.0.queue(
            target.node(),
            Body::Monitor {
                owner,
                target,
                monitor,
            },
        );
    }

    fn demonitor(&self, owner: Pid, target: Pid, monitor: MonitorRef) {
        let _ = self.0.queue(
            target.node(),
            Body::Demonitor {
                owner,
                target,
                monitor,
            },
        );
    }

    fn down(&self, owner: Pid, monitor: MonitorRef, pid: Pid, reason: ExitReason) {
        let _ = self.0.queue(
            owner.node(),
            Body::Down {
                owner,
                monitor,
                pid,
                reason,
            },
        );
    }

    fn register_global(&self, name: &str, pid: Pid) -> BoxFuture<Result<(), rusm_otp::Error>> {
        let shared = self.1.get().and_then(Weak::upgrade);
        let name = name.to_string();
        Box::pin(async move {
            let Some(shared) = shared else {
                return Err(rusm_otp::Error::Cluster(
                    "the node has left its cluster".into(),
                ));
            };
            shared
                .register_global(&name, pid)
                .await
                .map_err(crate::registry::into_runtime_error)
        })
    }

    fn spawn(&self, node: &str, request: SpawnRequest) -> BoxFuture<Result<Pid, SpawnRefused>> {
        let state = Arc::clone(&self.0);
        let shared = self.1.get().and_then(Weak::upgrade);
        let node = node.to_string();
        Box::pin(async move {
            let Some(shared) = shared else {
                return Err(SpawnRefused::Unavailable(
                    "the node has left its cluster".into(),
                ));
            };
            shared.spawn_on(&state, &node, request).await
        })
    }

    fn whereis_global(&self, name: &str) -> BoxFuture<Result<Option<Pid>, rusm_otp::Error>> {
        let shared = self.1.get().and_then(Weak::upgrade);
        let name = name.to_string();
        Box::pin(async move {
            match shared {
                Some(shared) => shared
                    .whereis_global(&name)
                    .await
                    .map_err(crate::registry::into_runtime_error),
                None => Ok(None),
            }
        })
    }
}

/// A node's membership in a cluster. Dropping it stops the node's part in the
/// cluster at once (its peers declare it down after `down_after`); [`Cluster::leave`]
/// tells them first.
pub struct Cluster {
    pub(crate) shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("cluster", &self.shared.config.cluster_name)
            .field("node", &self.shared.config.node_name)
            .field("number", &self.shared.node)
            .finish()
    }
}

async fn bucket(js: &jetstream::Context, name: String) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name.clone()).await {
        return Ok(store);
    }
    // The stream a KV bucket is, made by hand: the client's own bucket creation first
    // reads account fields a 2.9 server does not send.
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    // Another node may create it meanwhile: the same config is accepted again.
    js.get_or_create_stream(config)
        .await
        .map_err(|e| ClusterError::nats("creating the cluster's JetStream bucket", e))?;
    js.get_key_value(name)
        .await
        .map_err(|e| ClusterError::nats("opening the cluster's JetStream bucket", e))
}

/// Take the next node number from the cluster's counter (compare-and-set, so two
/// nodes starting at once get different numbers).
async fn allocate_node(nodes: &kv::Store) -> Result<u32, ClusterError> {
    const KEY: &str = "last";
    for _ in 0..64 {
        let entry = nodes
            .entry(KEY)
            .await
            .map_err(|e| ClusterError::nats("reading the node counter", e))?;
        let attempt = match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let last: u32 = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        ClusterError::nats("reading the node counter", "it is not a number")
                    })?;
                let next = last + 1;
                if next > Pid::MAX_NODE {
                    return Err(ClusterError::Config(format!(
                        "the cluster has numbered {last} nodes, the most it can"
                    )));
                }
                nodes
                    .update(KEY, next.to_string().into(), entry.revision)
                    .await
                    .map(|_| next)
                    .ok()
            }
            _ => nodes.create(KEY, "1".into()).await.map(|_| 1).ok(),
        };
        if let Some(node) = attempt {
            return Ok(node);
        }
    }
    Err(ClusterError::nats(
        "taking a node number",
        "too many nodes started at once",
    ))
}

impl Cluster {
    /// Join `rt` to the cluster `config` names: connect to NATS, take a node number
    /// and start the node's heartbeats, its writer and its reader. `rt` must not have
    /// spawned any process yet (its pids must name its node).
    ///
    /// # Errors
    /// A bad configuration, an unreachable server or one without JetStream, or a
    /// runtime that cannot join.
    pub async fn join(rt: &Runtime, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        config.check()?;
        let cluster = config.cluster_name.clone();
        let options = match &config.credentials {
            Some(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    ClusterError::Config(format!(
                        "cannot read the credentials file {}: {e}",
                        path.display()
                    ))
                })?,
            None => ConnectOptions::new(),
        };
        let client = options
            .name(format!("rusm {cluster}/{}", config.node_name))
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|source| ClusterError::Connect {
                url: config.url.clone(),
                source,
            })?;
        let js = jetstream::new(client.clone());
        let nodes = bucket(&js, format!("rusm_{cluster}_nodes")).await?;
        let names = bucket(&js, format!("rusm_{cluster}_names")).await?;
        let node = allocate_node(&nodes).await?;
        let prefix = format!("rusm.{cluster}");
        let inbox = client
            .subscribe(format!("{prefix}.n.{node}"))
            .await
            .map_err(|e| ClusterError::nats("subscribing to the node's inbox", e))?;
        let heartbeats = client
            .subscribe(format!("{prefix}.hb"))
            .await
            .map_err(|e| ClusterError::nats("subscribing to heartbeats", e))?;
        let max_data = client
            .server_info()
            .max_payload
            .saturating_sub(frame::DATA_OVERHEAD);
        let (out, outbox) = mpsc::channel(OUTBOX_FRAMES);
        let state = Arc::new(State {
            prefix: prefix.clone(),
            peers: Mutex::new(Peers::default()),
            out,
            max_data,
            overflowed: Mutex::new(Vec::new()),
            refused_heartbeats: std::sync::atomic::AtomicU64::new(0),
            spawns: Mutex::new(FxHashMap::default()),
            next_spawn: std::sync::atomic::AtomicU64::new(1),
            heard: tokio::sync::Notify::new(),
        });
        let registry = Arc::new(std::sync::OnceLock::new());
        rt.join_cluster(node, Arc::new(Outbox(state.clone(), registry.clone())))?;
        let shared = Arc::new(Shared {
            rt: rt.clone(),
            client,
            cluster_id: frame::cluster_id(&cluster),
            node,
            state,
            names,
            joined_at: Instant::now(),
            heartbeat_subject: Subject::from(format!("{prefix}.hb")),
            config,
        });
        let _ = registry.set(Arc::downgrade(&shared));
        shared.beat(true).await;
        let handle = rt.handle();
        let tasks = vec![
            handle.spawn(write(shared.clone(), outbox)),
            handle.spawn(read(shared.clone(), heartbeats, inbox)),
            handle.spawn(tick(shared.clone())),
        ];
        tracing::info!(
            cluster = %shared.config.cluster_name,
            node = %shared.config.node_name,
            number = node,
            "joined the cluster"
        );
        Ok(Cluster { shared, tasks })
    }

    /// This node's number (the top bits of its pids).
    pub fn node(&self) -> u32 {
        self.shared.node
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// The connection to the cluster's NATS server, for the node's other uses of it
    /// (JetStream KV buckets shared through the cluster, say).
    pub fn nats_client(&self) -> async_nats::Client {
        self.shared.client.clone()
    }

    /// The cluster's name.
    pub fn cluster_name(&self) -> &str {
        &self.shared.config.cluster_name
    }

    /// The JetStream KV bucket that backs the `wasi:keyvalue` bucket `bucket` when it
    /// is shared through this cluster: `rusm_<cluster>_kv_<bucket>`.
    pub fn kv_bucket_name(&self, bucket: &str) -> String {
        format!("rusm_{}_kv_{bucket}", self.shared.config.cluster_name)
    }

    /// The runtime this node joined with.
    pub fn runtime(&self) -> &Runtime {
        &self.shared.rt
    }

    /// The largest payload a message to another node may carry, in bytes (the
    /// server's `max_payload` less the frame's own bytes); a larger one is refused at
    /// the send with [`SendErrorKind::TooLarge`].
    pub fn max_message(&self) -> usize {
        self.shared.state.max_data
    }

    /// The other nodes this node knows of, by node number.
    pub fn members(&self) -> Vec<Member> {
        let peers = self.shared.state.peers.lock();
        let mut all: Vec<Member> = peers
            .by_node
            .iter()
            .map(|(&node, e)| Member {
                node,
                name: e.peer.name.clone(),
                up: e.peer.up,
                stats: e.peer.stats,
            })
            .collect();
        all.sort_by_key(|m| m.node);
        all
    }

    /// Leave the cluster: tell the peers (they declare this node down at once and fire
    /// every link and monitor across it with `noconnection`), then stop.
    pub async fn leave(self) {
        self.shared.beat(false).await;
        let _ = self.shared.client.flush().await;
        tracing::info!(node = %self.shared.config.node_name, "left the cluster");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Shared {
    async fn beat(&self, alive: bool) {
        let hb = Heartbeat {
            cluster: self.cluster_id,
            node: self.node,
            alive,
            interval_ms: self.config.heartbeat_interval().as_millis() as u32,
            name: self.config.node_name.clone(),
        };
        let bytes = frame::encode_heartbeat(&hb);
        if let Err(e) = self
            .client
            .publish(self.heartbeat_subject.clone(), bytes.into())
            .await
        {
            tracing::warn!(error = %e, "could not publish a heartbeat");
        }
    }

    /// End the connection to `node`; fire its links and monitors when anything had
    /// crossed it, and tell it (`disconnect`) so it ends its side too.
    fn end_connection(&self, node: u32, why: &str, tell: bool) -> bool {
        let established = {
            let mut peers = self.state.peers.lock();
            match peers.by_node.get_mut(&node) {
                Some(e) => e.peer.end(),
                None => false,
            }
        };
        if established {
            tracing::warn!(peer = node, why, "connection ended");
            self.node_down(node);
        } else {
            self.fail_spawns(node);
        }
        if tell {
            let _ = self.state.queue(node, Body::Disconnect);
        }
        established
    }

    /// A peer is gone for good (it left, or a newer incarnation replaced it).
    fn bury(&self, node: u32, why: &str) {
        let known = {
            let mut peers = self.state.peers.lock();
            let entry = peers.by_node.remove(&node);
            if entry.is_some() {
                // Only nodes this one knew: a forged goodbye of an unknown number
                // costs nothing.
                peers.dead.insert(node);
            }
            if let Some(e) = &entry
                && peers.by_name.get(&e.peer.name) == Some(&node)
            {
                peers.by_name.remove(&e.peer.name);
            }
            entry.is_some()
        };
        if known {
            tracing::info!(peer = node, why, "node gone");
            self.node_down(node);
        }
    }

    fn heartbeat(&self, bytes: &[u8]) {
        let hb = match frame::decode_heartbeat(bytes) {
            Ok(hb) => hb,
            Err(e) => {
                tracing::warn!(error = %e, "refused a malformed heartbeat");
                return;
            }
        };
        if hb.cluster != self.cluster_id {
            tracing::warn!(node = hb.node, "refused a heartbeat of another cluster");
            return;
        }
        if hb.node == self.node || hb.node == 0 || hb.node > Pid::MAX_NODE {
            return;
        }
        if !hb.alive {
            self.bury(hb.node, "left the cluster");
            return;
        }
        let now = Instant::now();
        let mut superseded = None;
        {
            let mut peers = self.state.peers.lock();
            if peers.dead.contains(&hb.node) {
                return;
            }
            if !peers.by_node.contains_key(&hb.node) && peers.by_node.len() >= MAX_PEERS {
                drop(peers);
                let refused = 1 + self
                    .state
                    .refused_heartbeats
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if refused <= 10 || refused.is_multiple_of(1000) {
                    tracing::warn!(
                        node = hb.node,
                        refused,
                        "refused a heartbeat: the membership view holds {MAX_PEERS} nodes"
                    );
                }
                return;
            }
            match peers.by_name.get(&hb.name).copied() {
                Some(older) if older < hb.node => superseded = Some(older),
                Some(newer) if newer > hb.node => {
                    // An older incarnation that still beats: the newer one holds the name.
                    return;
                }
                _ => {}
            }
            peers.by_name.insert(hb.name.clone(), hb.node);
            let prefix = &self.state.prefix;
            let fresh = !peers.by_node.get(&hb.node).is_some_and(|e| e.peer.up);
            let entry = peers.by_node.entry(hb.node).or_insert_with(|| {
                tracing::info!(peer = hb.node, name = %hb.name, "node joined");
                PeerEntry {
                    peer: Peer::new(hb.name.clone(), now),
                    subject: Subject::from(format!("{prefix}.n.{}", hb.node)),
                }
            });
            entry.peer.last_seen = now;
            if !entry.peer.up {
                tracing::info!(peer = hb.node, name = %hb.name, "node up again");
                entry.peer.up = true;
            }
            if fresh {
                // Still under the lock that makes the peer count as up: any frame
                // for it is queued behind this heartbeat.
                let _ = self.state.out.try_send(Out::Beat);
            }
        }
        self.state.heard.notify_waiters();
        if let Some(older) = superseded {
            self.bury(older, "restarted as a new incarnation");
        }
    }

    fn refuse(&self, from: u32, why: &str) {
        let first = {
            let mut peers = self.state.peers.lock();
            match peers.by_node.get_mut(&from) {
                Some(e) => {
                    e.peer.stats.frames_refused += 1;
                    e.peer.stats.frames_refused
                }
                None => 1,
            }
        };
        // A hostile sender must not fill the log: the first ten, then every thousandth.
        if first <= 10 || first.is_multiple_of(1000) {
            tracing::warn!(peer = from, why, refused = first, "refused a frame");
        }
    }

    fn frame(&self, bytes: &[u8]) {
        let (header, body) = match frame::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "refused a malformed frame");
                return;
            }
        };
        let Header {
            cluster,
            from,
            session,
            seq,
        } = header;
        if cluster != self.cluster_id {
            return self.refuse(from, "of another cluster");
        }
        if from == self.node || from == 0 {
            return self.refuse(from, "claims to come from this node");
        }
        if body.sender_pids().any(|p| p.node() != from) {
            return self.refuse(from, "names a process of another node as its sender");
        }
        if body.receiver_pid().is_some_and(|p| p.node() != self.node) {
            return self.refuse(from, "is for a process of another node");
        }
        let verdict = {
            let mut peers = self.state.peers.lock();
            if peers.dead.contains(&from) {
                drop(peers);
                return self.refuse(from, "from a node that is gone");
            }
            let Some(entry) = peers.by_node.get_mut(&from) else {
                drop(peers);
                return self.refuse(from, "from a node that has sent no heartbeat");
            };
            if body == Body::Disconnect {
                None
            } else if !entry.peer.up {
                Some(Verdict::Gap { established: false })
            } else {
                let verdict = entry.peer.judge(session, seq);
                if verdict != (Verdict::Gap { established: true })
                    && verdict != (Verdict::Gap { established: false })
                {
                    entry.peer.last_seen = Instant::now();
                    entry.peer.stats.frames_received += 1;
                    entry.peer.stats.bytes_received += bytes.len() as u64;
                }
                Some(verdict)
            }
        };
        match verdict {
            None => {
                self.end_connection(from, "the peer disconnected", false);
            }
            Some(Verdict::Gap { .. }) => {
                self.refuse(from, "out of sequence");
                self.end_connection(from, "a gap in the stream", true);
            }
            Some(Verdict::Restart) => {
                // The peer ended the connection: its links and monitors across it
                // have fired there, so they fire here too.
                self.node_down(from);
                self.deliver(from, body);
            }
            Some(Verdict::Deliver) => self.deliver(from, body),
        }
    }

    fn deliver(&self, from: u32, body: Body) {
        let rt = &self.rt;
        match body {
            Body::Spawn { id, request } => self.serve_spawn(from, id, *request),
            Body::Spawned { id, caller, result } => self.spawned(from, id, caller, result),
            Body::Data { to, tag, payload } => {
                let _ = rt.try_send_tagged(to, tag, Payload::Bytes(payload));
            }
            Body::Signal {
                to,
                from,
                kind,
                reason,
            } => rt.remote_signal(to, from, reason, kind),
            Body::Link { from, to } => {
                if !rt.remote_link(to, from) {
                    let _ = self.state.queue(
                        from.node(),
                        Body::Signal {
                            to: from,
                            from: to,
                            kind: SignalKind::Link,
                            reason: ExitReason::NoProc,
                        },
                    );
                }
            }
            Body::Unlink { from, to } => rt.remote_unlink(to, from),
            Body::Monitor {
                owner,
                target,
                monitor,
            } => {
                if !rt.remote_monitor(target, owner, monitor) {
                    let _ = self.state.queue(
                        owner.node(),
                        Body::Down {
                            owner,
                            monitor,
                            pid: target,
                            reason: ExitReason::NoProc,
                        },
                    );
                }
            }
            Body::Demonitor {
                owner,
                target,
                monitor,
            } => rt.remote_demonitor(target, owner, monitor),
            Body::Down {
                owner,
                monitor,
                pid,
                reason,
            } => rt.remote_down(owner, monitor, pid, reason),
            Body::Disconnect => {}
        }
    }

    /// What a frame for a peer that is not up does here instead: a link or monitor
    /// across no connection fires at once with `noconnection`, as in Erlang.
    fn unconnected(&self, body: Body) {
        match body {
            Body::Link { from, to } => {
                self.rt
                    .remote_signal(from, to, ExitReason::NoConnection, SignalKind::Link);
            }
            Body::Monitor {
                owner,
                target,
                monitor,
            } => self
                .rt
                .remote_down(owner, monitor, target, ExitReason::NoConnection),
            Body::Spawn { id, .. } => self.answer_spawn(
                id,
                Err(SpawnRefused::Unavailable(
                    "the node went down before the request was sent".into(),
                )),
            ),
            _ => {}
        }
    }

    /// The connection to `node` is gone: its links and monitors fire, and the remote
    /// spawns waiting for its answer fail.
    fn node_down(&self, node: u32) {
        self.rt.node_down(node);
        self.fail_spawns(node);
    }

    /// Fail every remote spawn waiting for `node`'s answer: the answer, if it was on
    /// its way, is lost with the connection.
    fn fail_spawns(&self, node: u32) {
        let failed: Vec<PendingSpawn> = {
            let mut spawns = self.state.spawns.lock();
            let ids: Vec<u64> = spawns
                .iter()
                .filter(|(_, p)| p.node == node)
                .map(|(&id, _)| id)
                .collect();
            ids.into_iter()
                .filter_map(|id| spawns.remove(&id))
                .collect()
        };
        for pending in failed {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(SpawnRefused::Unavailable(format!(
                    "noconnection: the connection to node {node} ended before it answered"
                ))));
            }
        }
    }

    /// Complete the spawn waiting under `id` with `result`, when it still waits.
    fn answer_spawn(&self, id: u64, result: Result<Pid, SpawnRefused>) {
        let pending = self.state.spawns.lock().remove(&id);
        if let Some(reply) = pending.and_then(|p| p.reply) {
            let _ = reply.send(result);
        }
    }

    /// Spawn on the node named `name` for `request.caller`: resolve the name, send
    /// the request, wait for its answer.
    async fn spawn_on(
        &self,
        state: &Arc<State>,
        name: &str,
        request: SpawnRequest,
    ) -> Result<Pid, SpawnRefused> {
        check_request(&request, state.max_data)?;
        if name == self.config.node_name {
            return self.spawn_here(request);
        }
        // A node this one has not heard of yet may still be announced: one just
        // joined waits out the time its peers' heartbeats take to arrive.
        let settled = self.joined_at + self.config.down_after;
        let node = loop {
            let heard = state.heard.notified();
            tokio::pin!(heard);
            heard.as_mut().enable();
            {
                let peers = state.peers.lock();
                match peers.by_name.get(name) {
                    Some(&node) if peers.is_up(node) => break node,
                    Some(_) => {
                        return Err(SpawnRefused::Unavailable(format!(
                            "noconnection: node {name:?} is down"
                        )));
                    }
                    None if Instant::now() >= settled => {
                        let mut known: Vec<&str> = peers
                            .by_node
                            .values()
                            .filter(|e| e.peer.up)
                            .map(|e| e.peer.name.as_str())
                            .collect();
                        known.push(&self.config.node_name);
                        known.sort_unstable();
                        return Err(SpawnRefused::NotFound(format!(
                            "no node named {name:?} in cluster {:?} (nodes up: {})",
                            self.config.cluster_name,
                            known.join(", ")
                        )));
                    }
                    None => {}
                }
            }
            let _ = tokio::time::timeout_at(settled.into(), heard).await;
        };
        let id = state
            .next_spawn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut spawns = state.spawns.lock();
            if spawns.values().filter(|p| p.node == node).count() >= MAX_PENDING_SPAWNS {
                return Err(SpawnRefused::Unavailable(format!(
                    "{MAX_PENDING_SPAWNS} spawns on node {name:?} already wait for an answer"
                )));
            }
            spawns.insert(
                id,
                PendingSpawn {
                    node,
                    caller: request.caller,
                    link: request.link,
                    monitor: request.monitor,
                    reply: Some(tx),
                },
            );
        }
        let body = Body::Spawn {
            id,
            request: Box::new(request),
        };
        if state.queue(node, body).is_err() {
            state.spawns.lock().remove(&id);
            return Err(SpawnRefused::Unavailable(format!(
                "noconnection: the connection to node {name:?} is full or closed"
            )));
        }
        match tokio::time::timeout(SPAWN_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SpawnRefused::Unavailable(format!(
                "noconnection: node {name:?} went away before it answered"
            ))),
            Err(_) => {
                if let Some(p) = state.spawns.lock().get_mut(&id) {
                    p.reply = None;
                }
                Err(SpawnRefused::Unavailable(format!(
                    "node {name:?} did not answer the spawn within {SPAWN_TIMEOUT:?}"
                )))
            }
        }
    }

    /// A spawn asked of this node by one of its own processes through its own name:
    /// served as a peer's would be, the links and monitors made here.
    fn spawn_here(&self, request: SpawnRequest) -> Result<Pid, SpawnRefused> {
        let child = self.rt.handle_remote_spawn(&request)?;
        if request.caller != Pid::NODE {
            let linked = request.link && self.rt.remote_link(child, request.caller);
            let monitored = request
                .monitor
                .filter(|&m| self.rt.remote_monitor(child, request.caller, m));
            let _ = self
                .rt
                .remote_spawned(request.caller, child, linked, monitored);
            if request.link && !linked {
                self.rt
                    .remote_signal(request.caller, child, ExitReason::NoProc, SignalKind::Link);
            }
            if let Some(m) = request.monitor
                && monitored.is_none()
            {
                self.rt
                    .remote_down(request.caller, m, child, ExitReason::NoProc);
            }
        }
        Ok(child)
    }

    /// A peer asks this node to spawn: spawn, answer, then add the child's side of the
    /// link and monitor. The answer is queued before the child's side exists, so any
    /// signal of the child follows the answer on the wire (the caller's side is in
    /// place by then); a child that ended before its side was added answers `noproc`.
    fn serve_spawn(&self, from: u32, id: u64, request: SpawnRequest) {
        let result = check_request(&request, self.state.max_data)
            .and_then(|()| self.rt.handle_remote_spawn(&request));
        {
            let mut peers = self.state.peers.lock();
            if let Some(e) = peers.by_node.get_mut(&from) {
                match result {
                    Ok(_) => e.peer.stats.spawns_served += 1,
                    Err(_) => e.peer.stats.spawns_refused += 1,
                }
            }
        }
        match &result {
            Ok(child) => tracing::info!(
                peer = from,
                component = %request.component,
                pid = %child,
                caller = %request.caller,
                "spawned for another node"
            ),
            Err(why) => tracing::warn!(
                peer = from,
                component = %request.component,
                caller = %request.caller,
                %why,
                "refused a spawn for another node"
            ),
        }
        let caller = request.caller;
        let _ = self.state.queue(
            from,
            Body::Spawned {
                id,
                caller,
                result: result.clone(),
            },
        );
        let (Ok(child), false) = (result, caller == Pid::NODE) else {
            return;
        };
        if request.link && !self.rt.remote_link(child, caller) {
            let _ = self.state.queue(
                from,
                Body::Signal {
                    to: caller,
                    from: child,
                    kind: SignalKind::Link,
                    reason: ExitReason::NoProc,
                },
            );
        }
        if let Some(monitor) = request.monitor
            && !self.rt.remote_monitor(child, caller, monitor)
        {
            let _ = self.state.queue(
                from,
                Body::Down {
                    owner: caller,
                    monitor,
                    pid: child,
                    reason: ExitReason::NoProc,
                },
            );
        }
    }

    /// A peer answers a spawn this node asked of it: put the caller's side of the
    /// link and monitor in place (before the frames that follow are read), then wake
    /// the caller. An answer no request waits for is refused; one that comes after
    /// its caller stopped waiting, or after its caller ended, ends the child it names.
    fn spawned(&self, from: u32, id: u64, caller: Pid, result: Result<Pid, SpawnRefused>) {
        let pending = {
            let mut spawns = self.state.spawns.lock();
            match spawns.get(&id) {
                Some(p) if p.node == from && p.caller == caller => spawns.remove(&id),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            // Forged, or the answer to a request failed when its connection ended.
            // The process it names (of the answering node, as every frame's sender
            // pids are) has no caller: end it.
            if let Ok(child) = result {
                let _ = self.state.queue(
                    from,
                    Body::Signal {
                        to: child,
                        from: Pid::NODE,
                        kind: SignalKind::Kill,
                        reason: ExitReason::Killed,
                    },
                );
            }
            return self.refuse(from, "answers no spawn request of this node");
        };
        let Ok(child) = result else {
            if let Some(reply) = pending.reply {
                let _ = reply.send(result);
            }
            return;
        };
        let placed = pending.reply.is_some()
            && (caller == Pid::NODE
                || self
                    .rt
                    .remote_spawned(caller, child, pending.link, pending.monitor));
        if !placed {
            // Nobody will ever hear of this child: end it.
            let _ = self.state.queue(
                from,
                Body::Signal {
                    to: child,
                    from: Pid::NODE,
                    kind: SignalKind::Kill,
                    reason: ExitReason::Killed,
                },
            );
            return;
        }
        if let Some(reply) = pending.reply
            && reply.send(Ok(child)).is_err()
            && caller == Pid::NODE
        {
            // Host code that stopped waiting (its future dropped).
            let _ = self.state.queue(
                from,
                Body::Signal {
                    to: child,
                    from: Pid::NODE,
                    kind: SignalKind::Kill,
                    reason: ExitReason::Killed,
                },
            );
        }
    }
}

/// Refuse a spawn request whose names or init do not fit a frame.
fn check_request(request: &SpawnRequest, max_data: usize) -> Result<(), SpawnRefused> {
    for (what, text) in [
        ("component name", Some(&request.component)),
        ("policy name", request.policy.as_ref()),
    ] {
        if let Some(text) = text
            && (text.is_empty() || text.len() > frame::MAX_SPAWN_NAME)
        {
            return Err(SpawnRefused::Invalid(format!(
                "a {what} is 1 to {} bytes, not {}",
                frame::MAX_SPAWN_NAME,
                text.len()
            )));
        }
    }
    if let Some(holds) = &request.holds
        && holds.len() > frame::MAX_HOLDS
    {
        return Err(SpawnRefused::Invalid(format!(
            "the caller's policy is {} bytes of text, more than the {} a spawn request carries",
            holds.len(),
            frame::MAX_HOLDS
        )));
    }
    let size = frame::SPAWN_FIXED
        + request.component.len()
        + request.policy.as_ref().map_or(0, String::len)
        + request.holds.as_ref().map_or(0, String::len)
        + request.init.len();
    let most = max_data + frame::DATA_OVERHEAD;
    if size > most {
        return Err(SpawnRefused::Invalid(format!(
            "the spawn request is {size} bytes, more than the {most} a frame carries"
        )));
    }
    Ok(())
}

/// The writer: numbers each frame in its peer's session and publishes it.
async fn write(shared: Arc<Shared>, mut outbox: mpsc::Receiver<Out>) {
    let mut batch = Vec::with_capacity(256);
    loop {
        if outbox.recv_many(&mut batch, 256).await == 0 {
            return;
        }
        for out in batch.drain(..) {
            let (to, body) = match out {
                Out::Frame { to, body } => (to, body),
                Out::Beat => {
                    shared.beat(true).await;
                    continue;
                }
            };
            let framed = {
                let mut peers = shared.state.peers.lock();
                match peers.by_node.get_mut(&to) {
                    Some(e) if e.peer.up || body == Body::Disconnect => {
                        let (session, seq) = if body == Body::Disconnect {
                            (e.peer.next_out().0, 0)
                        } else {
                            e.peer.next_out()
                        };
                        let bytes = frame::encode(
                            Header {
                                cluster: shared.cluster_id,
                                from: shared.node,
                                session,
                                seq,
                            },
                            &body,
                        );
                        e.peer.stats.frames_sent += 1;
                        e.peer.stats.bytes_sent += bytes.len() as u64;
                        Ok((e.subject.clone(), bytes))
                    }
                    _ => Err(body),
                }
            };
            match framed {
                Ok((subject, bytes)) => {
                    if let Err(e) = shared.client.publish(subject, Bytes::from(bytes)).await {
                        tracing::warn!(peer = to, error = %e, "could not publish a frame");
                    }
                }
                Err(body) => shared.unconnected(body),
            }
        }
        let overflowed = std::mem::take(&mut *shared.state.overflowed.lock());
        for node in overflowed {
            if !shared.end_connection(node, "the outbox overflowed", true) {
                shared.node_down(node);
            }
        }
    }
}

/// The reader: heartbeats first (a peer's heartbeat is in before its first frame is
/// read), then frames in the order they arrived.
async fn read(
    shared: Arc<Shared>,
    mut heartbeats: async_nats::Subscriber,
    mut inbox: async_nats::Subscriber,
) {
    loop {
        tokio::select! {
            biased;
            hb = heartbeats.next() => match hb {
                Some(msg) => shared.heartbeat(&msg.payload),
                None => return,
            },
            frame = inbox.next() => match frame {
                Some(msg) => shared.frame(&msg.payload),
                None => return,
            },
        }
    }
}

/// The ticker: a heartbeat every quarter of `down_after`, and a look every tenth of
/// it for peers silent for nine tenths of it. A node that stops is so declared down
/// at most `down_after` after it stopped.
async fn tick(shared: Arc<Shared>) {
    let down_after = shared.config.down_after;
    let every = shared.config.heartbeat_interval();
    let mut look = tokio::time::interval(down_after / 10);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_beat = Instant::now() + every;
    loop {
        look.tick().await;
        let now = Instant::now();
        if now >= next_beat {
            shared.beat(true).await;
            next_beat = now + every;
        }
        let silent: Vec<u32> = {
            let mut peers = shared.state.peers.lock();
            peers
                .by_node
                .iter_mut()
                .filter(|(_, e)| e.peer.up && now - e.peer.last_seen >= down_after * 9 / 10)
                .map(|(&node, e)| {
                    e.peer.up = false;
                    e.peer.stats.downs += 1;
                    node
                })
                .collect()
        };
        for node in silent {
            tracing::warn!(peer = node, "node down: no heartbeat within down_after");
            // Its links and monitors fire even when nothing crossed the connection
            // yet (a link or monitor may be on its way).
            if !shared.end_connection(node, "the peer stopped answering", true) {
                shared.node_down(node);
            }
        }
    }
}
