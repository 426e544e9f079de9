//! The top of the wasm backend: [`WasmNode`] — loading components, choosing the policy
//! and limits of each spawn, and spawning the process kinds of [`crate::kinds`] — with
//! its HTTP, plugin and reload entry points in the submodules. A guest's `spawn`
//! reaches the node only through the [`Spawner`] it implements.

mod http;
mod http_pool;
mod plugins;
mod reload;

pub use http_pool::{
    DEFAULT_P3_CONCURRENCY, DEFAULT_POOL_IDLE, DEFAULT_POOL_INSTANCES, HttpPool, HttpPoolConfig,
    HttpPoolRequest,
};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::RwLock;
use rusm_otp::{Context, MailboxConfig, Pid, Runtime, SpawnOptions, Spawned, Watch};
use rusm_policy::{Policy, PolicyLibrary, SpawnGrant, SpawnRefusal};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{Actor, WitError, WitSpawnOptions, WitSpawned};
use crate::broker::{self, Dirs};
use crate::config;
use crate::engine::{WasmConfig, build_engine};
use crate::error::{LoadError, SpawnError};
use crate::extensions::Extensions;
use crate::host;
use crate::keyvalue::{self, KvBackend, KvStore, NodeBuckets};
use crate::kind::ComponentKind;
use crate::kinds::{self, Backend, BodyFuture, Granted};
use crate::limits::{Limits, TreeToken};
use crate::preempt::EpochTicker;
use crate::registry::{ComponentInfo, ComponentRegistry, LoadedComponent};
use crate::rights;
use crate::state::{ChildToken, NodeView, ProcessState, Spawner};
use crate::store::StoreFactory;
use crate::upgrade::Upgrades;

/// How to spawn a wasm process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmSpawnOptions {
    /// Bytes handed to the actor's entry point.
    pub init: Vec<u8>,
    /// Link to the spawning process.
    pub link: bool,
    /// Monitor from the spawning process.
    pub monitor: bool,
    /// Start trapping exits.
    pub trap_exit: bool,
    /// Mailbox capacity and overflow (a policy's `mailbox` limit, when smaller, wins).
    pub mailbox: MailboxConfig,
    /// The policy to run under; `None` means the node's default policy. Host code is
    /// trusted to choose any policy; guests go through their own spawn rights.
    pub policy: Option<Arc<Policy>>,
}

/// The named policies of a node, shared by reference with the processes using them.
struct Policies {
    library: PolicyLibrary,
    default: Arc<Policy>,
    /// What host code of another node gets for a component it names only
    /// ([`WasmNode::set_component_policy`]).
    by_component: std::collections::HashMap<String, Arc<Policy>>,
}

impl Policies {
    fn new(library: PolicyLibrary) -> Policies {
        let default = library
            .get("default")
            .cloned()
            .unwrap_or_else(|_| Arc::new(Policy::embedded_default()));
        Policies {
            library,
            default,
            by_component: std::collections::HashMap::new(),
        }
    }
}

/// What a spawn from inside a guest carries beyond its options: the child's places
/// among its parent's children and in its spawn tree's budget, what is left of its
/// parent's run, and the fuel the parent gives it (on a node that meters fuel).
struct FromGuest {
    child_token: ChildToken,
    tree: TreeToken,
    budget: Option<Duration>,
    fuel: Option<u64>,
    /// The child's preopens, opened and checked against the parent's.
    dirs: Arc<Dirs>,
}

/// State shared by a node and every wasm process on it: the layers below (in
/// [`Backend`]) and the node's policies.
pub(crate) struct NodeShared {
    backend: Arc<Backend>,
    policies: RwLock<Policies>,
    /// What serves the spawns other nodes ask of this one; the runtime holds it
    /// weakly.
    remote_spawns: Arc<RemoteSpawns>,
}

/// Spawns for other nodes of the cluster (see [`rusm_otp::SpawnHandler`]): the
/// component by the name it is loaded under here, under a policy of this node's
/// library that is a subset of what the caller holds, or under the caller's own.
struct RemoteSpawns(std::sync::Weak<NodeShared>);

impl rusm_otp::SpawnHandler for RemoteSpawns {
    fn spawn(&self, request: &rusm_otp::SpawnRequest) -> Result<Pid, rusm_otp::SpawnRefused> {
        use rusm_otp::SpawnRefused;
        let Some(node) = self.0.upgrade() else {
            return Err(SpawnRefused::Unavailable("the node is stopping".into()));
        };
        let invalid = |e: WitError| match e {
            WitError::Invalid(why) => SpawnRefused::Invalid(why),
            other => SpawnRefused::Invalid(format!("{other:?}")),
        };
        rights::check_name("component name", &request.component).map_err(invalid)?;
        if let Some(named) = &request.policy {
            rights::check_name("policy name", named).map_err(invalid)?;
        }
        let component = request.component.as_str();
        let policy = match &request.holds {
            // Host code of the asking node, trusted as host code is here.
            None => match &request.policy {
                None => {
                    let policies = node.policies.read();
                    policies
                        .by_component
                        .get(component)
                        .unwrap_or(&policies.default)
                        .clone()
                }
                Some(name) => node
                    .policies
                    .read()
                    .library
                    .get(name)
                    .cloned()
                    .map_err(|e| SpawnRefused::NotFound(e.to_string()))?,
            },
            Some(text) => {
                let origin = format!("<policy of {}>", request.caller);
                let holds = Policy::parse(text, Path::new(&origin)).map_err(|e| {
                    SpawnRefused::Invalid(format!("the caller's policy does not parse: {e}"))
                })?;
                let grant = node.policies.read().library.policy_for_spawn(
                    &holds,
                    component,
                    request.policy.as_deref(),
                );
                match grant {
                    Ok(SpawnGrant::Own) => Arc::new(holds),
                    Ok(SpawnGrant::Named(policy)) => policy,
                    Err(refusal @ SpawnRefusal::NotFound { .. }) => {
                        return Err(SpawnRefused::NotFound(refusal.to_string()));
                    }
                    Err(refusal) => return Err(SpawnRefused::NotPermitted(refusal.to_string())),
                }
            }
        };
        let options = WasmSpawnOptions {
            init: request.init.clone(),
            policy: Some(policy),
            ..WasmSpawnOptions::default()
        };
        match node.spawn_child(None, component, options, None) {
            Ok(spawned) => Ok(spawned.pid),
            Err(SpawnError::UnknownComponent(name)) => Err(SpawnRefused::NotFound(format!(
                "no component named {name:?} is loaded on this node"
            ))),
            Err(SpawnError::NotPermitted(why)) => Err(SpawnRefused::NotPermitted(why)),
            Err(SpawnError::Unavailable(why)) => Err(SpawnRefused::Unavailable(why)),
            Err(other) => Err(SpawnRefused::Invalid(other.to_string())),
        }
    }
}

/// means to run them as rusm processes.
///
/// Cheap to clone. Every wasm process keeps the node's shared state alive, so the epoch
/// thread keeps ticking while any of them runs.
#[derive(Clone)]
pub struct WasmNode {
    pub(crate) shared: Arc<NodeShared>,
}

impl std::fmt::Debug for WasmNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmNode")
            .field("components", &self.component_names())
            .finish()
    }
}

impl WasmNode {
    /// Create the wasm side of the node `rt`: the engine, the linker with WASI preview 2
    /// and `rusm:runtime`, and the epoch thread.
    ///
    /// # Errors
    /// When the engine configuration is rejected (for example a pool larger than the
    /// address space), the epoch thread cannot start, or the key-value database
    /// ([`WasmConfig::kv_path`]) cannot be opened (a [`KvOpenError`](crate::KvOpenError):
    /// locked by another node, not a database, damaged).
    pub fn new(rt: Runtime, config: WasmConfig) -> anyhow::Result<WasmNode> {
        WasmNode::with_linker(rt, config, |_| Ok(()))
    }

    /// [`WasmNode::new`], with `extend` adding the embedder's own host functions to the
    /// linker after WASI and `rusm:runtime` (for example a `bindgen!` world's
    /// `add_to_linker`, reaching its per-plugin state through
    /// [`ProcessState::extension_mut`]). The linker is fixed once the node is built.
    ///
    /// # Errors
    /// As [`WasmNode::new`]; also what `extend` returns (a name defined twice, say).
    pub fn with_linker(
        rt: Runtime,
        config: WasmConfig,
        extend: impl FnOnce(&mut Linker<ProcessState>) -> wasmtime::Result<()>,
    ) -> anyhow::Result<WasmNode> {
        let engine = build_engine(&config).map_err(anyhow::Error::from)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        // WASI 0.3 and wasi:http 0.3 for the services that serve concurrent requests;
        // the same WASI context (preopens, sockets, clocks) and the same outbound
        // HTTP grant back both versions, and the clock checks cover both.
        wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        broker::link_clock_checks(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        Actor::add_to_linker::<ProcessState, HasSelf<ProcessState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)?;
        if config.fuel_metering {
            // A child's fuel comes out of its parent's, which only the store knows.
            linker.allow_shadowing(true);
            linker
                .instance(host::PROCESS_INTERFACE)
                .and_then(|mut process| process.func_wrap("spawn", host::spawn_paying_fuel))
                .map_err(anyhow::Error::from)?;
            linker.allow_shadowing(false);
        }
        keyvalue::add_to_linker(&mut linker, ProcessState::keyvalue)
            .map_err(anyhow::Error::from)?;
        config::add_to_linker(&mut linker, ProcessState::config).map_err(anyhow::Error::from)?;
        let kv = keyvalue::open_store(&config)?;
        extend(&mut linker).map_err(anyhow::Error::from)?;
        let ticker = EpochTicker::start(engine.clone(), config.preemption)?;
        // A process ended by a signal while its guest runs yields at once, instead of
        // at the end of its slice (and then ends: its task was woken).
        let interrupted = engine.weak();
        rt.add_interrupter(move || {
            if let Some(engine) = interrupted.upgrade() {
                engine.increment_epoch();
            }
        });
        let backend = Backend {
            registry: ComponentRegistry::new(engine.clone(), linker),
            stores: StoreFactory::new(engine, config, ticker),
            upgrades: Arc::new(Upgrades::new()),
            rt,
            buckets: Arc::new(NodeBuckets::new(Arc::clone(&kv))),
            kv,
        };
        let shared = Arc::new_cyclic(|me| NodeShared {
            backend: Arc::new(backend),
            policies: RwLock::new(Policies::new(PolicyLibrary::new())),
            remote_spawns: Arc::new(RemoteSpawns(me.clone())),
        });
        let handler: Arc<dyn rusm_otp::SpawnHandler> = shared.remote_spawns.clone();
        shared
            .backend
            .rt
            .set_spawn_handler(Arc::downgrade(&handler));
        Ok(WasmNode { shared })
    }

    /// The node's actor runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.shared.backend.rt
    }

    /// The node's key-value store: the buckets its processes reach through
    /// `wasi:keyvalue` (one redb database, [`WasmConfig::kv_path`]), for the host's
    /// own reads and writes.
    pub fn kv_store(&self) -> &Arc<dyn KvBackend> {
        &self.shared.backend.kv
    }

    /// Every bucket of the node as its processes reach them: the node's file, and
    /// the buckets [`WasmNode::share_buckets`] handed to another store. For the host's
    /// own reads and writes of shared buckets (`rusm kv` through a running node).
    pub fn buckets(&self) -> Arc<NodeBuckets> {
        Arc::clone(&self.shared.backend.buckets)
    }

    /// Back the buckets `names` by `store` instead of the node's file, for every
    /// process from now on: a clustered node's JetStream buckets
    /// ([`JetStreamStore`](crate::JetStreamStore)), say. Call it once, before spawning
    /// anything that opens them (each call is routed when it is made).
    ///
    /// # Errors
    /// When buckets were already shared on this node (the set is fixed once), or a
    /// name is not a valid bucket name.
    pub fn share_buckets(
        &self,
        names: impl IntoIterator<Item = String>,
        store: Arc<dyn KvStore>,
    ) -> anyhow::Result<()> {
        let names: std::collections::BTreeSet<String> = names.into_iter().collect();
        if let Some(bad) = names.iter().find(|n| !rusm_policy::is_bucket_name(n)) {
            anyhow::bail!("invalid bucket name {bad:?}");
        }
        if !self.shared.backend.buckets.share(names, store) {
            anyhow::bail!("this node's shared buckets are already set");
        }
        Ok(())
    }

    /// The node's one wasmtime engine.
    pub fn engine(&self) -> &Engine {
        self.shared.backend.registry.engine()
    }

    /// Use these named policies (for example `PolicyLibrary::load_dir("capabilities")`).
    /// Its `default` policy becomes what processes run under when nothing else is
    /// named; guests name the others in their spawn options. Processes already running
    /// keep the policy they started with.
    pub fn set_policies(&self, library: PolicyLibrary) {
        let mut policies = self.shared.policies.write();
        let by_component = std::mem::take(&mut policies.by_component);
        *policies = Policies {
            by_component,
            ..Policies::new(library)
        };
    }

    /// The node's default policy.
    pub fn default_policy(&self) -> Arc<Policy> {
        self.shared.policies.read().default.clone()
    }

    /// The policy a process of `component` runs under when host code of another node
    /// of the cluster asks for one by name only (no policy named, no caller policy):
    /// the policy this node's operator gives the component. Without one, such a
    /// spawn runs under the default policy.
    pub fn set_component_policy(&self, component: &str, policy: Arc<Policy>) {
        self.shared
            .policies
            .write()
            .by_component
            .insert(component.to_owned(), policy);
    }

    /// Bytes of linear memory granted to the node's live wasm processes together (the
    /// sum of their `memory` limits), out of [`WasmConfig::memory_budget`].
    pub fn granted_memory(&self) -> u64 {
        self.shared.backend.stores.memory().granted()
    }

    /// The names of the loaded components, sorted.
    pub fn component_names(&self) -> Vec<String> {
        self.shared.backend.registry.names()
    }

    /// Compile a component file and register it under `name`.
    ///
    /// # Errors
    /// See [`WasmNode::load_bytes`]; also when the file cannot be read.
    pub fn load_file(&self, name: &str, path: &Path) -> Result<ComponentInfo, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(name, &bytes)
    }

    /// Compile a component and register it under `name`, replacing any previous
    /// component of that name only once the new one compiled and linked.
    ///
    /// # Errors
    /// When the bytes are not wasm, are a core module rather than a component, do not
    /// validate, import something the host does not provide, or export neither the
    /// `rusm:runtime/entry` actor entry point nor `wasi:cli/run`. Nothing else is
    /// affected by a failed load.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        let loaded = self.shared.backend.registry.compile(name, bytes, None)?;
        let info = ComponentInfo {
            name: name.to_owned(),
            kind: loaded.kind,
        };
        // Processes already running keep their version; `reload` upgrades them.
        let version = self
            .shared
            .backend
            .registry
            .install(loaded, |_, _| Ok::<(), LoadError>(()))?;
        tracing::info!(component = name, kind = ?info.kind, version, "component loaded");
        Ok(info)
    }

    /// Spawn a wasm process with no parent.
    ///
    /// # Errors
    /// [`SpawnError::UnknownComponent`] when no component of that name is loaded.
    pub fn spawn(&self, component: &str, init: Vec<u8>) -> Result<Pid, SpawnError> {
        let options = WasmSpawnOptions {
            init,
            ..WasmSpawnOptions::default()
        };
        Ok(self.spawn_with(None, component, options)?.pid)
    }

    /// Spawn a wasm process with no parent and a [`Watch`] on its exit.
    ///
    /// # Errors
    /// [`SpawnError::UnknownComponent`] when no component of that name is loaded.
    pub fn spawn_watched(
        &self,
        component: &str,
        options: WasmSpawnOptions,
    ) -> Result<(Pid, Watch), SpawnError> {
        let (core, body) = self.shared.spawn_parts(component, options, None)?;
        Ok(self.shared.backend.rt.spawn_watched(core, body))
    }

    /// Spawn a wasm process, as a child of `parent` when given (then `link`/`monitor`
    /// apply to it).
    ///
    /// # Errors
    /// [`SpawnError::UnknownComponent`] when no component of that name is loaded.
    pub fn spawn_with(
        &self,
        parent: Option<&Context>,
        component: &str,
        options: WasmSpawnOptions,
    ) -> Result<Spawned, SpawnError> {
        self.shared.spawn_child(parent, component, options, None)
    }
}

/// Refuse a process of `component` whose policy allows fewer linear memories or
/// tables than the component creates, naming the limit (core instances are counted
/// as it instantiates them).
fn check_counts(component: &LoadedComponent, limits: &Limits) -> Result<(), SpawnError> {
    for (what, key, needs, limit) in [
        (
            "linear memories",
            "memories",
            component.memories,
            limits.memories,
        ),
        ("tables", "tables", component.tables, limits.tables),
    ] {
        if needs as usize > limit {
            return Err(SpawnError::NotPermitted(format!(
                "component {:?} creates {needs} {what}, more than the {limit} its policy allows (limit `{key}`)",
                component.name
            )));
        }
    }
    Ok(())
}

impl NodeShared {
    /// What a process under `policy` is granted on this node; a guest's child's run
    /// ends within what is left of its parent's.
    fn grant(
        self: &Arc<Self>,
        policy: Arc<Policy>,
        from_guest: Option<FromGuest>,
    ) -> Result<Granted, SpawnError> {
        let (child_token, tree, budget, fuel, dirs) = match from_guest {
            Some(g) => (Some(g.child_token), Some(g.tree), g.budget, g.fuel, g.dirs),
            None => (None, None, None, None, Self::open_dirs(&policy)?),
        };
        let mut limits =
            Limits::resolve(&policy, self.backend.stores.config())?.with_deadline(budget);
        if let Some(given) = fuel {
            limits.fuel = limits.fuel.map(|own| own.min(given));
        }
        let memory = self
            .backend
            .stores
            .memory()
            .admit(limits.memory)
            .map_err(SpawnError::Unavailable)?;
        Ok(Granted {
            policy,
            limits,
            node: NodeView {
                spawner: Arc::clone(self) as Arc<dyn Spawner>,
                upgrades: Arc::clone(&self.backend.upgrades),
                kv: Arc::clone(&self.backend.buckets),
            },
            child_token,
            tree,
            memory,
            dirs,
        })
    }

    /// Open `policy`'s preopens for a process about to be spawned.
    fn open_dirs(policy: &Policy) -> Result<Arc<Dirs>, SpawnError> {
        if policy.fs.preopens.is_empty() {
            return Ok(Arc::new(Dirs::none()));
        }
        Dirs::open(policy)
            .map(Arc::new)
            .map_err(|e| SpawnError::NotPermitted(e.to_string()))
    }

    /// The core spawn options of a process of `component` that asked for `mailbox`
    /// (and `link`, `monitor`, `trap_exit`), bounded by its limits.
    fn core_options(
        component: &LoadedComponent,
        granted: &Granted,
        mailbox: MailboxConfig,
        link: bool,
        monitor: bool,
        trap_exit: bool,
    ) -> SpawnOptions {
        SpawnOptions {
            link,
            monitor,
            trap_exit,
            mailbox: granted.limits.mailbox(mailbox),
            label: Some(component.name.clone()),
        }
    }

    /// The node's default policy.
    fn default_policy(&self) -> Arc<Policy> {
        self.policies.read().default.clone()
    }

    /// Everything a spawn needs before it starts the process: the component, the policy
    /// (the node default when none is given), its limits, the core options and the body.
    fn spawn_parts(
        self: &Arc<Self>,
        component: &str,
        options: WasmSpawnOptions,
        from_guest: Option<FromGuest>,
    ) -> Result<
        (
            SpawnOptions,
            impl FnOnce(Context) -> BodyFuture + Send + 'static,
        ),
        SpawnError,
    > {
        let loaded = self.backend.registry.component(component)?;
        if loaded.kind == ComponentKind::Http {
            return Err(SpawnError::HttpHandler(loaded.name.to_string()));
        }
        if loaded.kind == ComponentKind::Plugin {
            return Err(SpawnError::Plugin(loaded.name.to_string()));
        }
        let policy = options
            .policy
            .clone()
            .unwrap_or_else(|| self.default_policy());
        let granted = self.grant(policy, from_guest)?;
        check_counts(&loaded, &granted.limits)?;
        let core = Self::core_options(
            &loaded,
            &granted,
            options.mailbox,
            options.link,
            options.monitor,
            options.trap_exit,
        );
        let init = options.init;
        let backend = Arc::clone(&self.backend);
        let body = move |ctx: Context| -> BodyFuture {
            let setup = granted.setup(ctx, Extensions::new());
            // A handler's body is its own, smaller future: a live actor keeps it boxed
            // for its whole life, and an actor's holds the entry-point call inline.
            if loaded.kind == ComponentKind::Handler {
                Box::pin(kinds::handler::run(backend, loaded, setup, init))
            } else {
                Box::pin(kinds::actor::run(backend, loaded, setup, init))
            }
        };
        Ok((core, body))
    }

    fn spawn_child(
        self: &Arc<Self>,
        parent: Option<&Context>,
        component: &str,
        options: WasmSpawnOptions,
        from_guest: Option<FromGuest>,
    ) -> Result<Spawned, SpawnError> {
        let (core, body) = self.spawn_parts(component, options, from_guest)?;
        Ok(match parent {
            Some(ctx) => ctx.spawn_with(core, body),
            None => Spawned {
                pid: self.backend.rt.spawn_with(core, body),
                monitor: None,
            },
        })
    }

    /// The policy a guest under `parent` may give the child it spawns: its own, or the
    /// named one when that is a subset of its own.
    fn child_policy(
        &self,
        parent: &Arc<Policy>,
        component: &str,
        named: Option<&str>,
    ) -> Result<Arc<Policy>, WitError> {
        let policies = self.policies.read();
        match policies.library.policy_for_spawn(parent, component, named) {
            Ok(SpawnGrant::Own) => Ok(parent.clone()),
            Ok(SpawnGrant::Named(policy)) => Ok(policy),
            Err(refusal @ SpawnRefusal::NotFound { .. }) => {
                Err(WitError::NotFound(refusal.to_string()))
            }
            Err(refusal) => Err(WitError::NotPermitted(refusal.to_string())),
        }
    }
}

impl Spawner for NodeShared {
    fn spawn_from_guest(
        self: Arc<Self>,
        state: &ProcessState,
        component: &str,
        options: WitSpawnOptions,
        fuel: Option<u64>,
    ) -> Result<(WitSpawned, u64), WitError> {
        rights::check_name("component name", component)?;
        if let Some(named) = &options.policy {
            rights::check_name("policy name", named)?;
        }
        let child_policy =
            self.child_policy(&state.policy, component, options.policy.as_deref())?;
        // The child's fuel comes out of what its parent has left: its own policy's
        // fuel, at most the share the parent can give.
        let given = match fuel {
            Some(0) => {
                return Err(WitError::NotPermitted(
                    "the spawning process has no fuel left to give a child".into(),
                ));
            }
            Some(share) => Some(child_policy.limits.fuel.unwrap_or(u64::MAX).min(share)),
            None => None,
        };
        if let Some(max) = state.limits.children
            && state.children.load(Ordering::Acquire) as u64 >= max
        {
            return Err(WitError::NotPermitted(format!(
                "the policy allows at most {max} live children"
            )));
        }
        if options.link {
            rights::check_links(&state.limits, state.ctx.link_count())?;
        }
        if options.monitor
            && rights::check_monitors(&state.limits, state.ctx.monitor_count()).is_err()
        {
            return Err(WitError::NotPermitted(format!(
                "the policy allows at most {} monitors",
                state.limits.monitors
            )));
        }
        // Under its parent's own policy a child gets the parent's very directories;
        // under another, its own, opened now (after the cheap checks, so a refused spawn
        // costs no file system call) and checked against the parent's.
        let dirs = if Arc::ptr_eq(&child_policy, &state.policy) {
            Arc::clone(&state.dirs)
        } else {
            let dirs = Self::open_dirs(&child_policy).map_err(|e| match e {
                SpawnError::NotPermitted(why) => WitError::NotPermitted(why),
                other => WitError::Invalid(other.to_string()),
            })?;
            dirs.within(&state.dirs).map_err(WitError::NotPermitted)?;
            dirs
        };
        let tree = state
            .tree_budget()
            .admit()
            .map_err(WitError::NotPermitted)?;
        state.children.fetch_add(1, Ordering::AcqRel);
        let child_token = ChildToken(state.children.clone());
        let opts = WasmSpawnOptions {
            init: options.init,
            link: options.link,
            monitor: options.monitor,
            policy: Some(child_policy),
            ..WasmSpawnOptions::default()
        };
        // A child's run ends by its parent's deadline: a chain of successors cannot
        // outlive the budget of the process that started it.
        let from_guest = FromGuest {
            child_token,
            tree,
            budget: state.remaining(),
            fuel: given,
            dirs,
        };
        match self.spawn_child(Some(&state.ctx), component, opts, Some(from_guest)) {
            Ok(spawned) => Ok((
                WitSpawned {
                    pid: spawned.pid.as_raw(),
                    monitor: spawned.monitor.map(|m| m.as_raw()),
                },
                given.unwrap_or(0),
            )),
            Err(SpawnError::UnknownComponent(name)) => {
                Err(WitError::NotFound(format!("no component named {name:?}")))
            }
            Err(SpawnError::NotPermitted(why)) => Err(WitError::NotPermitted(why)),
            Err(SpawnError::Unavailable(why)) => Err(WitError::Unavailable(why)),
            Err(
                err @ (SpawnError::HttpHandler(_)
                | SpawnError::NotHttpHandler(_)
                | SpawnError::Plugin(_)
                | SpawnError::NotPlugin(_)),
            ) => Err(WitError::Invalid(err.to_string())),
        }
    }
}
