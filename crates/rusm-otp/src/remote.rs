//! Pids of other nodes: the seam a cluster layer plugs into.
//!
//! A node that joins a cluster ([`Runtime::join_cluster`]) gets a node number, which
//! every pid it hands out from then on carries in its top bits ([`Pid::node`]). The
//! runtime itself knows no transport: whatever it would do to a process that is not in
//! its own table but names another node — deliver a message, an exit signal, a link,
//! a monitor or a `Down` — it hands to the [`Remote`] the cluster layer gave it, and the
//! cluster layer hands what arrives from other nodes back through the `remote_*`
//! methods here. Only the miss path of a lookup asks which node a pid names, so a
//! local send costs the same on a clustered node as on a lone one.
//!
//! When the connection to a node ends, [`Runtime::node_down`] fires every link and
//! monitor that crosses it with [`ExitReason::NoConnection`], as Erlang does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, SendError};
use crate::message::{Payload, Tag};
use crate::reason::ExitReason;
use crate::runtime::{Runtime, SignalKind};
use crate::{MonitorRef, Pid};

/// What a node does with operations on pids of other nodes. Implemented by a cluster
/// layer; every method is called on the thread of the operation, with no lock of the
/// runtime held, and must not block (queue the frame and return).
pub trait Remote: Send + Sync + 'static {
    /// Send a data message to `to`, a process of another node.
    ///
    /// # Errors
    /// Hands the payload back when it cannot travel (too large for the transport, or
    /// not bytes) or the node is not connected.
    fn send(&self, to: Pid, tag: Tag, payload: Payload) -> Result<(), SendError>;

    /// Deliver an exit signal from `from` (a process of this node, or [`Pid::NODE`])
    /// to `to`.
    fn signal(&self, to: Pid, from: Pid, reason: ExitReason, kind: SignalKind);

    /// `from` (of this node) has linked to `to`: ask `to`'s node to add the other side,
    /// or to answer with a `noproc` exit signal when `to` is gone.
    fn link(&self, from: Pid, to: Pid);

    /// `from` has unlinked from `to`.
    fn unlink(&self, from: Pid, to: Pid);

    /// `owner` (of this node) monitors `target` under `monitor`: ask `target`'s node to
    /// send a `Down` when it ends (at once, `noproc`, when it has ended).
    fn monitor(&self, owner: Pid, target: Pid, monitor: MonitorRef);

    /// `owner` no longer monitors `target` under `monitor`.
    fn demonitor(&self, owner: Pid, target: Pid, monitor: MonitorRef);

    /// Tell `owner`, a process of another node, that `pid` (monitored under `monitor`)
    /// ended with `reason`.
    fn down(&self, owner: Pid, monitor: MonitorRef, pid: Pid, reason: ExitReason);

    /// Register `pid`, a process of this node, under the cluster-wide `name`.
    /// The default has no global registry.
    fn register_global(&self, name: &str, pid: Pid) -> BoxFuture<Result<(), Error>> {
        let _ = (name, pid);
        Box::pin(std::future::ready(Err(Error::Cluster(
            "the cluster has no global registry".into(),
        ))))
    }

    /// The pid registered under the cluster-wide `name`, if its holder is alive.
    fn whereis_global(&self, name: &str) -> BoxFuture<Result<Option<Pid>, Error>> {
        let _ = name;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Ask the node named `node` to spawn what `request` says, and answer with the new
    /// process's pid. Before the answer resolves, the caller's side of the link and
    /// monitor the request asks for is in place (`Runtime::remote_spawned`), so every
    /// signal of the child follows it. The default has no remote spawn.
    fn spawn(&self, node: &str, request: SpawnRequest) -> BoxFuture<Result<Pid, SpawnRefused>> {
        let _ = request;
        let node = node.to_string();
        Box::pin(std::future::ready(Err(SpawnRefused::Unavailable(format!(
            "this node cannot reach node {node:?}: its cluster has no remote spawn"
        )))))
    }
}

/// What a process asks another node to spawn: the request as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The process asking (of the asking node).
    pub caller: Pid,
    /// The component, by the name it is loaded under on the receiving node.
    pub component: String,
    /// The policy of the receiving node's library to run it under; `None` runs it
    /// under the policy the caller holds (`holds`), or, for host code, the receiving
    /// node's default policy.
    pub policy: Option<String>,
    /// The caller's own policy as TOML text (`rusm_policy::Policy::to_toml`): the
    /// receiving node grants the child no more than this and refuses a spawn right
    /// it lacks. `None` when the caller is host code of the asking node, which is
    /// trusted as host code is on its own node.
    pub holds: Option<String>,
    /// Bytes handed to the new process's entry point.
    pub init: Vec<u8>,
    /// Link the new process to the caller.
    pub link: bool,
    /// Monitor the new process from the caller under this reference (made by the
    /// asking node, so that it names the asking node).
    pub monitor: Option<MonitorRef>,
}

/// Why a remote spawn was refused. The text says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnRefused {
    /// No node, component or policy of that name.
    #[error("{0}")]
    NotFound(String),
    /// The caller holds less than the spawn asks for.
    #[error("{0}")]
    NotPermitted(String),
    /// The request is malformed (a name too long, a policy that does not parse).
    #[error("{0}")]
    Invalid(String),
    /// The node cannot do it now: not connected, gone before it answered, shutting
    /// down, or without room for the process.
    #[error("{0}")]
    Unavailable(String),
}

/// What a node does with a spawn another node asks of it: implemented by the backend
/// that runs components (a `rusm_wasm::WasmNode` sets itself), given to the runtime
/// with [`Runtime::set_spawn_handler`].
pub trait SpawnHandler: Send + Sync + 'static {
    /// Spawn what `request` asks, with no parent on this node (its caller is of
    /// another node). Links and monitors are not its business: the cluster layer
    /// adds them once the process exists. Must not block.
    ///
    /// # Errors
    /// Why the request is refused.
    fn spawn(&self, request: &SpawnRequest) -> Result<Pid, SpawnRefused>;
}

/// What [`Runtime::spawn_on`] and [`Context::spawn_on`](crate::Context::spawn_on) take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteSpawn {
    /// The component, by the name it is loaded under on the receiving node.
    pub component: String,
    /// The policy of the receiving node's library to run it under (see
    /// [`SpawnRequest::policy`]).
    pub policy: Option<String>,
    /// The policy the caller holds, as TOML (see [`SpawnRequest::holds`]).
    pub holds: Option<String>,
    /// Bytes handed to the new process's entry point.
    pub init: Vec<u8>,
    /// Link the new process to the caller.
    pub link: bool,
    /// Monitor the new process from the caller.
    pub monitor: bool,
}

/// A boxed future, as [`Remote`]'s registry calls return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A node's place in its cluster.
pub(crate) struct Membership {
    pub(crate) node: u32,
    pub(crate) remote: Arc<dyn Remote>,
}

impl crate::Context {
    /// Spawn `spawn.component` on the node named `node`, as this process: a link or
    /// monitor it asks for is between this process and the new one, in place when
    /// this returns.
    ///
    /// # Errors
    /// [`SpawnRefused`]: no such node or component, more asked than held, the node
    /// not connected or gone before it answered.
    pub async fn spawn_on(
        &self,
        node: &str,
        spawn: RemoteSpawn,
    ) -> Result<crate::Spawned, SpawnRefused> {
        self.runtime().spawn_remote(node, self.pid(), spawn).await
    }
}

impl Runtime {
    /// Make this node node number `node` of a cluster whose other nodes `remote`
    /// reaches. Every pid and monitor reference handed out from now on carries `node`
    /// in its top bits ([`Pid::node`]).
    ///
    /// # Errors
    /// [`Error::Cluster`] when the node has already joined a cluster, has already
    /// spawned a process (its pids would not name it), or `node` is 0 or above
    /// [`Pid::MAX_NODE`].
    pub fn join_cluster(&self, node: u32, remote: Arc<dyn Remote>) -> Result<(), Error> {
        if node == 0 || node > Pid::MAX_NODE {
            return Err(Error::Cluster(format!(
                "node number {node} is outside 1..={}",
                Pid::MAX_NODE
            )));
        }
        let inner = &*self.inner;
        let base = Pid::new(node, 1).as_raw();
        if inner
            .next_pid
            .compare_exchange(1, base, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::Cluster(
                "a node joins its cluster before it spawns its first process".into(),
            ));
        }
        inner.next_ref.fetch_add(base - 1, Ordering::AcqRel);
        inner
            .cluster
            .set(Membership { node, remote })
            .map_err(|_| Error::Cluster("the node has already joined a cluster".into()))
    }

    /// Register `pid` under the cluster-wide `name` (see [`Remote::register_global`]).
    ///
    /// # Errors
    /// [`Error::NameTaken`] when a live process holds it, [`Error::Cluster`] when this
    /// node is in no cluster or the registry cannot be reached.
    pub async fn register_global(&self, name: &str, pid: Pid) -> Result<(), Error> {
        match self.inner.cluster.get() {
            Some(m) => m.remote.register_global(name, pid).await,
            None => Err(Error::Cluster("this node is in no cluster".into())),
        }
    }

    /// The pid registered under the cluster-wide `name`; `None` on a node in no cluster.
    ///
    /// # Errors
    /// [`Error::Cluster`] when the registry cannot be reached.
    pub async fn whereis_global(&self, name: &str) -> Result<Option<Pid>, Error> {
        match self.inner.cluster.get() {
            Some(m) => m.remote.whereis_global(name).await,
            None => Ok(None),
        }
    }

    /// Spawn `spawn.component` on the node named `node` for host code of this node
    /// (no caller process: a link or monitor asked for is ignored).
    ///
    /// # Errors
    /// As [`Context::spawn_on`](crate::Context::spawn_on); also when this node is in
    /// no cluster.
    pub async fn spawn_on(&self, node: &str, spawn: RemoteSpawn) -> Result<Pid, SpawnRefused> {
        let spawn = RemoteSpawn {
            link: false,
            monitor: false,
            ..spawn
        };
        self.spawn_remote(node, Pid::NODE, spawn)
            .await
            .map(|s| s.pid)
    }

    pub(crate) async fn spawn_remote(
        &self,
        node: &str,
        caller: Pid,
        spawn: RemoteSpawn,
    ) -> Result<crate::Spawned, SpawnRefused> {
        let Some(membership) = self.inner.cluster.get() else {
            return Err(SpawnRefused::Unavailable(format!(
                "cannot spawn on node {node:?}: this node is in no cluster"
            )));
        };
        let monitor = spawn.monitor.then(|| self.new_monitor_ref());
        let request = SpawnRequest {
            caller,
            component: spawn.component,
            policy: spawn.policy,
            holds: spawn.holds,
            init: spawn.init,
            link: spawn.link,
            monitor,
        };
        let pid = membership.remote.spawn(node, request).await?;
        Ok(crate::Spawned { pid, monitor })
    }

    /// The backend that spawns what other nodes ask of this one (see [`SpawnHandler`]).
    /// A later call replaces an earlier one.
    pub fn set_spawn_handler(&self, handler: std::sync::Weak<dyn SpawnHandler>) {
        *self.inner.spawn_handler.write() = Some(handler);
    }

    /// Spawn what another node asks, through this node's [`SpawnHandler`].
    ///
    /// # Errors
    /// The handler's refusal; [`SpawnRefused::Unavailable`] when the node has none or
    /// is shutting down.
    pub fn handle_remote_spawn(&self, request: &SpawnRequest) -> Result<Pid, SpawnRefused> {
        if self.is_shutting_down() {
            return Err(SpawnRefused::Unavailable(
                "the node is shutting down".into(),
            ));
        }
        let handler = self
            .inner
            .spawn_handler
            .read()
            .as_ref()
            .and_then(std::sync::Weak::upgrade);
        match handler {
            Some(handler) => handler.spawn(request),
            None => Err(SpawnRefused::Unavailable(
                "the node runs no components for other nodes".into(),
            )),
        }
    }

    /// The answer to a remote spawn has arrived: put the caller's side of the link
    /// (`link`) and of the monitor (`monitor`) to `child` in place. False when the
    /// caller is no longer alive (the cluster layer then undoes the child's side).
    pub fn remote_spawned(
        &self,
        caller: Pid,
        child: Pid,
        link: bool,
        monitor: Option<MonitorRef>,
    ) -> bool {
        let Some(slot) = self.inner.table.get(caller) else {
            return false;
        };
        let mut st = slot.state.lock();
        if st.alive {
            if link {
                st.links.insert(child);
            }
            if let Some(mref) = monitor {
                st.monitoring.insert(mref, child);
            }
        }
        st.alive
    }

    /// This node's number in its cluster, 0 when it has joined none.
    pub fn node_number(&self) -> u32 {
        self.inner.cluster.get().map_or(0, |m| m.node)
    }

    /// The [`Remote`] that reaches `pid`, when `pid` names another node of this
    /// node's cluster. Only asked after a lookup in the table missed.
    #[inline]
    pub(crate) fn remote_node(&self, pid: Pid) -> Option<&dyn Remote> {
        let membership = self.inner.cluster.get()?;
        let node = pid.node();
        (node != 0 && node != membership.node).then(|| &*membership.remote)
    }

    /// An exit signal from `from`, a process of another node, for `to` of this one:
    /// delivered under the same rules as a local one (a `Link` signal only while the
    /// link stands).
    pub fn remote_signal(&self, to: Pid, from: Pid, reason: ExitReason, kind: SignalKind) {
        if self.inner.table.get(to).is_some() {
            self.signal(to, from, reason, kind);
        }
    }

    /// `from`, a process of another node, links to `to` of this node. False when `to`
    /// is not alive: the caller answers `from` with a `noproc` exit signal.
    pub fn remote_link(&self, to: Pid, from: Pid) -> bool {
        let Some(slot) = self.inner.table.get(to) else {
            return false;
        };
        let mut st = slot.state.lock();
        if st.alive {
            st.links.insert(from);
        }
        st.alive
    }

    /// `from`, a process of another node, unlinks from `to` of this node.
    pub fn remote_unlink(&self, to: Pid, from: Pid) {
        if let Some(slot) = self.inner.table.get(to) {
            let mut st = slot.state.lock();
            st.links.remove(&from);
        }
    }

    /// `owner`, a process of another node, monitors `target` of this node. False when
    /// `target` is not alive: the caller answers with a `noproc` `Down`.
    pub fn remote_monitor(&self, target: Pid, owner: Pid, monitor: MonitorRef) -> bool {
        let Some(slot) = self.inner.table.get(target) else {
            return false;
        };
        let mut st = slot.state.lock();
        st.alive && {
            st.monitored_by.push((monitor, owner));
            true
        }
    }

    /// `owner`, a process of another node, no longer monitors `target`.
    pub fn remote_demonitor(&self, target: Pid, owner: Pid, monitor: MonitorRef) {
        if let Some(slot) = self.inner.table.get(target) {
            slot.state
                .lock()
                .monitored_by
                .retain(|&(m, o)| (m, o) != (monitor, owner));
        }
    }

    /// A `Down` for `owner` of this node: `pid`, of another node, ended.
    pub fn remote_down(&self, owner: Pid, monitor: MonitorRef, pid: Pid, reason: ExitReason) {
        if self.inner.table.get(owner).is_some() {
            self.deliver_down(owner, monitor, pid, reason);
        }
    }

    /// The connection to node `node` has ended: every link of a process here to a
    /// process there gets an exit signal, and every monitor of one there a `Down`,
    /// both with [`ExitReason::NoConnection`]; monitors its processes held on
    /// processes here are dropped. Walks the whole table once.
    pub fn node_down(&self, node: u32) {
        let mut links = Vec::new();
        let mut downs = Vec::new();
        self.inner.table.for_each(|slot| {
            let mut st = slot.state.lock();
            if !st.alive {
                return;
            }
            links.extend(
                st.links
                    .iter()
                    .filter(|p| p.node() == node)
                    .map(|&p| (slot.pid, p)),
            );
            downs.extend(
                st.monitoring
                    .iter()
                    .filter(|(_, p)| p.node() == node)
                    .map(|(&m, &p)| (slot.pid, m, p)),
            );
            st.monitored_by.retain(|(_, owner)| owner.node() != node);
        });
        for (me, other) in links {
            self.signal(me, other, ExitReason::NoConnection, SignalKind::Link);
        }
        for (me, mref, target) in downs {
            self.deliver_down(me, mref, target, ExitReason::NoConnection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Remote` that records what it is handed.
    #[derive(Default)]
    struct Recorder(parking_lot::Mutex<Vec<String>>);

    impl Remote for Recorder {
        fn send(&self, to: Pid, tag: Tag, _: Payload) -> Result<(), SendError> {
            self.0.lock().push(format!("send {to} {tag}"));
            Ok(())
        }
        fn signal(&self, to: Pid, from: Pid, reason: ExitReason, kind: SignalKind) {
            self.0
                .lock()
                .push(format!("signal {to} {from} {reason} {kind:?}"));
        }
        fn link(&self, from: Pid, to: Pid) {
            self.0.lock().push(format!("link {from} {to}"));
        }
        fn unlink(&self, from: Pid, to: Pid) {
            self.0.lock().push(format!("unlink {from} {to}"));
        }
        fn monitor(&self, owner: Pid, target: Pid, _: MonitorRef) {
            self.0.lock().push(format!("monitor {owner} {target}"));
        }
        fn demonitor(&self, owner: Pid, target: Pid, _: MonitorRef) {
            self.0.lock().push(format!("demonitor {owner} {target}"));
        }
        fn down(&self, owner: Pid, _: MonitorRef, pid: Pid, reason: ExitReason) {
            self.0.lock().push(format!("down {owner} {pid} {reason}"));
        }
    }

    #[tokio::test]
    async fn a_node_joins_before_its_first_spawn_and_once() {
        let rt = Runtime::new();
        let remote = Arc::new(Recorder::default());
        assert!(rt.join_cluster(0, remote.clone()).is_err());
        assert!(rt.join_cluster(Pid::MAX_NODE + 1, remote.clone()).is_err());
        rt.join_cluster(3, remote.clone()).unwrap();
        assert!(rt.join_cluster(4, remote.clone()).is_err());
        let pid = rt.spawn(|ctx| async move { ctx.recv().await });
        assert_eq!((pid.node(), pid.serial()), (3, 1));
        assert_eq!(rt.node_number(), 3);
        let late = Runtime::new();
        late.spawn(|_| async {});
        assert!(late.join_cluster(1, remote).is_err());
    }

    #[tokio::test]
    async fn pids_of_other_nodes_go_to_the_remote_and_local_misses_do_not() {
        let rt = Runtime::new();
        let remote = Arc::new(Recorder::default());
        rt.join_cluster(3, remote.clone()).unwrap();
        let far = Pid::new(9, 5);
        let gone_here = Pid::new(3, 999);
        let (_, done) = rt.spawn_watched(Default::default(), move |ctx| async move {
            ctx.send(far, b"x".to_vec());
            ctx.send(gone_here, b"x".to_vec());
            ctx.link(far).unwrap();
            assert!(ctx.link(gone_here).is_err());
            let mref = ctx.monitor(far);
            ctx.demonitor(mref);
            ctx.exit(far, ExitReason::custom("bye"));
            ctx.link(far).unwrap();
            // The connection to node 9 ends: the link fires noconnection.
            ctx.trap_exit(true);
            ctx.runtime().node_down(9);
            match ctx.recv().await {
                crate::Message::Exit(sig) if sig.from == far => sig.reason,
                other => ExitReason::custom(format!("{other:?}")),
            }
        });
        assert_eq!(done.await, ExitReason::NoConnection);
        let seen = remote.0.lock().clone();
        let me = "<3.1>";
        assert_eq!(
            seen[..6],
            [
                format!("send {far} 0"),
                format!("link {me} {far}"),
                format!("monitor {me} {far}"),
                format!("demonitor {me} {far}"),
                format!("signal {far} {me} bye Exit"),
                format!("link {me} {far}"),
            ]
        );
        assert!(seen.iter().all(|s| !s.contains("<3.999>")), "{seen:?}");
    }
}
