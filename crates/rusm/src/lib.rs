//! rusm for embedders: load untrusted or fallible WebAssembly plugins into your own
//! Rust program, call them through your own WIT interface, and keep each one bounded:
//! a call has a deadline and can be cancelled (even a plugin stuck in `loop {}`), a
//! plugin only reaches what its capability policy grants, and it can be killed or
//! hot-reloaded at any time without harming the others.
//!
//! Every plugin is also an actor of the rusm runtime: it has a pid and a mailbox,
//! can be linked to, monitored and supervised, and from inside a call it can send to
//! and receive from other processes through the `rusm:runtime` interface.
//!
//! Build a [`Node`] inside your tokio runtime with [`Node::builder`], adding your own
//! host functions to its linker with [`NodeBuilder::link`]; generate typed bindings
//! for your world with [`wasmtime::component::bindgen!`] (pass
//! `wasmtime_crate: rusm::wasmtime` so they use this crate's wasmtime); load plugins
//! with [`WasmNode::load_plugin_file`], start them with [`WasmNode::spawn_plugin`] and
//! call them with [`Plugin::call`]. `docs/embedding.md` in the repository walks
//! through a whole host (`examples/plugin-host`).

#![deny(missing_docs)]

use std::time::Duration;

/// The wasmtime this crate runs on: generate your bindings against it
/// (`bindgen!({ ..., wasmtime_crate: rusm::wasmtime })`).
pub use wasmtime;

pub use rusm_otp::supervisor;
pub use rusm_otp::{
    Context, ExitReason, MailboxConfig, Message, MonitorRef, Overflow, Payload, Pid, Runtime, Watch,
};
pub use rusm_policy::{Policy, PolicyLibrary};
pub use rusm_wasm::{
    Allocator, ArenaConfig, BindFn, CallOptions, ComponentInfo, ComponentKind, Extensions,
    Interrupted, JetStreamStore, KvBackend, KvError, KvFuture, KvStore, LoadError, NodeBuckets,
    Plugin, PluginError, PluginOptions, PoolConfig, Preemption, ProcessState, ReloadError,
    ReloadReport, SHARED_TIMEOUT, SpawnError, SupervisedPlugin, ValueVersion, WasmConfig, WasmNode,
    WriteLimits,
};

/// The linker plugins are instantiated with: WASI preview 2, `rusm:runtime`, and
/// whatever [`NodeBuilder::link`] adds.
pub type Linker = wasmtime::component::Linker<ProcessState>;

type LinkFn = Box<dyn FnOnce(&mut Linker) -> wasmtime::Result<()>>;

/// Builds a [`Node`]; see [`Node::builder`].
#[must_use]
pub struct NodeBuilder {
    handle: Option<tokio::runtime::Handle>,
    config: WasmConfig,
    links: Vec<LinkFn>,
    policies: Option<PolicyLibrary>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// Run the node's processes on this tokio runtime (by default the runtime
    /// [`NodeBuilder::build`] is called in).
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> NodeBuilder {
        self.handle = Some(handle);
        self
    }

    /// The whole engine configuration (pool, preemption, stacks, memory, cache).
    pub fn config(mut self, config: WasmConfig) -> NodeBuilder {
        self.config = config;
        self
    }

    /// How instances, linear memories and fiber stacks are allocated: the arena (the
    /// default; no address-space mapping per live plugin, sized from the machine) or
    /// wasmtime's pooling allocator (guard regions and copy-on-write memory images,
    /// capped near 10,000 instances by `vm.max_map_count`). See [`Allocator`].
    pub fn allocator(mut self, allocator: Allocator) -> NodeBuilder {
        self.config.allocator = allocator;
        self
    }

    /// Use wasmtime's pooling allocator ([`Allocator::Pooling`]) with these sizes: how
    /// many plugin and actor instances, memories and stacks may be alive at once.
    pub fn pool(mut self, pool: PoolConfig) -> NodeBuilder {
        self.config.pool = pool;
        self.config.allocator = Allocator::Pooling;
        self
    }

    /// How long a guest may run in one go before it is made to yield (and so how soon
    /// a deadline, a cancel or a kill reaches a guest that never calls the host):
    /// [`Preemption::Slice`] of `slice`; the default is 1 ms.
    pub fn time_slice(mut self, slice: Duration) -> NodeBuilder {
        self.config.preemption = Preemption::Slice(slice);
        self
    }

    /// Keep the node's `wasi:keyvalue` buckets in the redb database file at `path`
    /// (created when missing, locked while the node runs), so they outlive the node
    /// ([`WasmConfig::kv_path`]); without it they are kept in memory.
    pub fn kv_path(mut self, path: impl Into<std::path::PathBuf>) -> NodeBuilder {
        self.config.kv_path = Some(path.into());
        self
    }

    /// How guests are preempted ([`Preemption`]).
    pub fn preemption(mut self, preemption: Preemption) -> NodeBuilder {
        self.config.preemption = preemption;
        self
    }

    /// The named capability policies; its `default` policy is what plugins run under
    /// when [`PluginOptions::policy`] names none (without one: no files, no network,
    /// no environment).
    pub fn policies(mut self, policies: PolicyLibrary) -> NodeBuilder {
        self.policies = Some(policies);
        self
    }

    /// Add host functions to the linker, after WASI and `rusm:runtime`: typically
    /// your world's generated `add_to_linker`, reaching per-plugin state through
    /// [`ProcessState::extension_mut`]. Call it once per interface; they run in order
    /// when the node is built.
    pub fn link(
        mut self,
        add: impl FnOnce(&mut Linker) -> wasmtime::Result<()> + 'static,
    ) -> NodeBuilder {
        self.links.push(Box::new(add));
        self
    }

    /// Build the node: its engine, its linker, and the thread that advances the epoch.
    ///
    /// # Errors
    /// When called outside a tokio runtime without [`NodeBuilder::runtime`], when the
    /// engine configuration is rejected, or when a [`NodeBuilder::link`] function fails
    /// (an interface added twice, say).
    pub fn build(self) -> anyhow::Result<Node> {
        let handle = match self.handle {
            Some(handle) => handle,
            None => tokio::runtime::Handle::try_current().map_err(|_| {
                anyhow::anyhow!(
                    "rusm::Node must be built inside a tokio runtime, or be given one with NodeBuilder::runtime"
                )
            })?,
        };
        let runtime = Runtime::with_handle(handle);
        let links = self.links;
        let wasm = WasmNode::with_linker(runtime, self.config, move |linker| {
            links.into_iter().try_for_each(|add| add(linker))
        })?;
        if let Some(policies) = self.policies {
            wasm.set_policies(policies);
        }
        Ok(Node { wasm })
    }
}

/// A rusm node embedded in your program: the actor runtime and the wasm engine that
/// runs your plugins. Cheap to clone.
///
/// It dereferences to [`WasmNode`], whose methods load, start and reload plugins
/// ([`WasmNode::load_plugin_file`], [`WasmNode::spawn_plugin`],
/// [`WasmNode::reload_file`]) and actors.
#[derive(Debug, Clone)]
pub struct Node {
    wasm: WasmNode,
}

impl Node {
    /// A builder with the default configuration ([`WasmConfig::default`]: a 1 ms
    /// time slice and the arena allocator sized from the machine) and no host
    /// functions of your own.
    pub fn builder() -> NodeBuilder {
        NodeBuilder {
            handle: None,
            config: WasmConfig::default(),
            links: Vec::new(),
            policies: None,
        }
    }

    /// The actor runtime: spawn native processes, send, register names, monitor.
    pub fn runtime(&self) -> &Runtime {
        self.wasm.runtime()
    }

    /// The wasm side of the node.
    pub fn wasm(&self) -> &WasmNode {
        &self.wasm
    }

    /// Shut the node down: every process (plugins included) gets a `shutdown` exit
    /// signal and `grace` to end before it is killed.
    pub async fn shutdown(&self, grace: Duration) {
        self.wasm.runtime().shutdown(grace).await;
    }
}

impl std::ops::Deref for Node {
    type Target = WasmNode;

    fn deref(&self) -> &WasmNode {
        &self.wasm
    }
}
