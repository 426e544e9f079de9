//! What each wasm process's store holds, and the narrow view of its node that a
//! process gets: spawning through a [`Spawner`] and the upgrade protocol, nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rusm_otp::Context;
use rusm_policy::{ClockPolicy, Policy};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::{WitError, WitSpawnOptions, WitSpawned};
use crate::broker::{ClockView, Dirs, HttpGrant};
use crate::config::ConfigView;
use crate::extensions::Extensions;
use crate::keyvalue::{KvView, NodeBuckets};
use crate::limits::{Limits, MemoryGrant, StoreLimiter, TreeBudget, TreeToken};
use crate::upgrade::Upgrades;

/// How a guest's `spawn` reaches the node: the node implements it (policy library,
/// component registry, spawning), and a process holds it as a trait object, so host
/// calls cannot reach anything else of the node.
pub(crate) trait Spawner: Send + Sync {
    /// Spawn `component` as a child of the process whose store is `parent`, under
    /// the policy its options name (checked against the parent's). With `fuel` (the
    /// most the parent can give, on a node that meters fuel), the child runs on at
    /// most that much; the spawn returns how much it was given, which the parent
    /// no longer has.
    fn spawn_from_guest(
        self: Arc<Self>,
        parent: &ProcessState,
        component: &str,
        options: WitSpawnOptions,
        fuel: Option<u64>,
    ) -> Result<(WitSpawned, u64), WitError>;
}

/// What a process may reach of its node.
#[derive(Clone)]
pub(crate) struct NodeView {
    /// Spawning children.
    pub(crate) spawner: Arc<dyn Spawner>,
    /// Upgrade requests and handed-over state.
    pub(crate) upgrades: Arc<Upgrades>,
    /// The node's key-value store (`wasi:keyvalue`, as the policy grants it).
    pub(crate) kv: Arc<NodeBuckets>,
}

/// Counts a process among its parent's live children while it exists.
pub(crate) struct ChildToken(pub(crate) Arc<AtomicUsize>);

impl Drop for ChildToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The data of a wasm process's `Store`.
pub struct ProcessState {
    pub(crate) ctx: Context,
    pub(crate) node: NodeView,
    pub(crate) policy: Arc<Policy>,
    /// The policy's limits, resolved for this node.
    pub(crate) limits: Limits,
    pub(crate) wasi: WasiCtx,
    /// Its preopened directories, opened when it was spawned.
    pub(crate) dirs: Arc<Dirs>,
    /// `wasi:http` state (field size limit).
    pub(crate) http: WasiHttpCtx,
    /// Outbound HTTP as the policy's `[http]` section allows it.
    pub(crate) http_hooks: HttpGrant,
    pub(crate) table: ResourceTable,
    /// How many `wasi:keyvalue` buckets it holds open.
    pub(crate) open_buckets: usize,
    /// How many `wasi:keyvalue` compare-and-swap handles it holds.
    pub(crate) open_cas: usize,
    pub(crate) limiter: StoreLimiter,
    pub(crate) started: Instant,
    /// Live children of this process (for the policy's `children` limit).
    pub(crate) children: Arc<AtomicUsize>,
    /// This process's place among its parent's children.
    pub(crate) _child_token: Option<ChildToken>,
    /// The embedder's own values (see [`ProcessState::extension_mut`]).
    pub(crate) extensions: Extensions,
    /// When the process's run must end: what is left of it bounds the deadline of
    /// every child it spawns.
    pub(crate) ends_at: Option<tokio::time::Instant>,
    /// The spawn budget of the tree this process belongs to: its parent's, or (for a
    /// root) its own, made when it first spawns.
    pub(crate) tree: std::sync::OnceLock<Arc<TreeBudget>>,
    /// Its place in its tree's budget (none for a root).
    pub(crate) _tree_token: Option<TreeToken>,
    /// Its `memory` limit's share of the node's memory budget, returned when the
    /// store is dropped.
    pub(crate) _memory: MemoryGrant,
}

impl ProcessState {
    /// The rusm process this store belongs to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The policy this process runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The embedder's value of type `T` in this process, if it has one (set with
    /// [`PluginOptions::extensions`](crate::PluginOptions::extensions)).
    pub fn extension<T: std::any::Any + Send>(&self) -> Option<&T> {
        self.extensions.get::<T>()
    }

    /// The embedder's value of type `T` in this process, created with `T::default()`
    /// when it has none: what an embedder's host functions reach their per-plugin
    /// state through, for example
    /// `MyWorld::add_to_linker::<_, HasSelf<MyHost>>(linker, |s| s.extension_mut::<MyHost>())`.
    pub fn extension_mut<T: std::any::Any + Send + Default>(&mut self) -> &mut T {
        self.extensions.get_or_default::<T>()
    }

    /// All of the embedder's values in this process.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

impl WasiView for ProcessState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ProcessState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl ProcessState {
    /// The budget of this process's spawn tree.
    pub(crate) fn tree_budget(&self) -> &Arc<TreeBudget> {
        self.tree
            .get_or_init(|| Arc::new(TreeBudget::new(&self.limits)))
    }

    /// What is left of this process's run, when it has a deadline.
    pub(crate) fn remaining(&self) -> Option<std::time::Duration> {
        self.ends_at
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
    }
}

impl ProcessState {
    /// What `wasi:keyvalue` reaches of this process.
    pub(crate) fn keyvalue(&mut self) -> KvView<'_> {
        KvView {
            table: &mut self.table,
            policy: &self.policy.keyvalue,
            store: &self.node.kv,
            open: &mut self.open_buckets,
            open_cas: &mut self.open_cas,
        }
    }

    /// What `wasi:config` reaches of this process.
    pub(crate) fn config(&mut self) -> ConfigView<'_> {
        ConfigView(&self.policy.config)
    }
}

impl ClockView for ProcessState {
    fn clock_grant(&self) -> (&ClockPolicy, Instant) {
        (&self.policy.clocks, self.started)
    }
}
