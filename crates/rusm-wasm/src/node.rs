//! A node's wasm side: the engine, the component registry and spawning.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use rusm_otp::{
    Context, ExitReason, MailboxConfig, Overflow, Pid, Runtime, SpawnOptions, Spawned, Watch,
};
use rusm_policy::{Policy, PolicyLibrary, SpawnRefusal};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::broker;

use crate::engine::{EpochTicker, WasmConfig, build_engine};
use crate::error::{LoadError, SpawnError};
use crate::host::{Actor, ActorPre, SelfExit, WitError, WitSpawnOptions, WitSpawned};
use crate::state::{ChildSlot, ProcessLimits, ProcessState};
use crate::upgrade::{self, HandOver, InstanceEnd, LiveGuard, Upgrades};

/// What a loaded component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// Exports `rusm:runtime/entry`: a long-running actor.
    Actor,
    /// Exports `wasi:cli/run`: a plain WASI command run as a process; its exit code
    /// becomes the exit reason (0 is `normal`).
    Command,
    /// Exports `wasi:http/incoming-handler@0.2.x`: an HTTP handler, run once per
    /// request (see [`WasmNode::serve_http`]); it cannot be spawned as an actor.
    Http,
    /// Exports `rusm:runtime/handler` (world `handler-actor`): a long-running actor
    /// whose `handle` the host calls once per message; idle, it holds no fiber stack.
    Handler,
    /// Exports the embedder's own interface: a plugin, loaded with
    /// [`WasmNode::load_plugin_bytes`] and run with [`WasmNode::spawn_plugin`].
    Plugin,
}

pub(crate) enum Prepared {
    Actor(ActorPre<ProcessState>),
    Command(CommandPre<ProcessState>),
    Http(ProxyPre<ProcessState>),
    Handler(crate::handler::HandlerActorPre<ProcessState>),
    Plugin(wasmtime::component::InstancePre<ProcessState>),
}

/// A compiled, link-checked component, ready to instantiate.
pub(crate) struct LoadedComponent {
    /// Shared with the label of every process spawned from it.
    pub(crate) name: Arc<str>,
    pub(crate) kind: ComponentKind,
    pub(crate) prepared: Prepared,
    /// Its version under its name, counted from 1 (0 until it is installed).
    pub(crate) version: u64,
}

/// What [`WasmNode::load_bytes`] reports about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The name it is registered under.
    pub name: String,
    /// Actor or command.
    pub kind: ComponentKind,
}

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
    shared: HashMap<String, Arc<Policy>>,
    default: Arc<Policy>,
}

impl Policies {
    fn new(library: PolicyLibrary) -> Policies {
        let shared: HashMap<String, Arc<Policy>> = library
            .names()
            .filter_map(|name| Some((name.to_owned(), Arc::new(library.get(name).ok()?.clone()))))
            .collect();
        let default = shared
            .get("default")
            .cloned()
            .unwrap_or_else(|| Arc::new(Policy::embedded_default()));
        Policies {
            library,
            shared,
            default,
        }
    }
}

/// The future a wasm process body runs.
pub(crate) type BodyFuture = std::pin::Pin<Box<dyn Future<Output = ExitReason> + Send>>;

/// State shared by a node and every wasm process on it.
pub(crate) struct NodeShared {
    engine: Engine,
    linker: Linker<ProcessState>,
    pub(crate) rt: Runtime,
    config: WasmConfig,
    components: RwLock<HashMap<String, Arc<LoadedComponent>>>,
    policies: RwLock<Policies>,
    /// Reloads, upgrades and the live actor processes they concern.
    pub(crate) upgrades: Upgrades,
    /// One permit per instance the pool can hold at once (see
    /// [`NodeShared::instance_slot`]).
    instance_slots: Arc<tokio::sync::Semaphore>,
    _ticker: EpochTicker,
    /// Bumped by every install of a component version, so a plugin notices a reload
    /// with one atomic load per call.
    pub(crate) installs: std::sync::atomic::AtomicU64,
}

/// The wasm side of a node: one engine, a registry of compiled components, and the
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
    /// address space) or the epoch thread cannot start.
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
        broker::link_clock_checks(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        Actor::add_to_linker::<ProcessState, HasSelf<ProcessState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)?;
        extend(&mut linker).map_err(anyhow::Error::from)?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        let slots = config.max_instances();
        let instance_slots = Arc::new(tokio::sync::Semaphore::new(slots as usize));
        Ok(WasmNode {
            shared: Arc::new(NodeShared {
                engine,
                linker,
                rt,
                config,
                components: RwLock::new(HashMap::new()),
                policies: RwLock::new(Policies::new(PolicyLibrary::new())),
                upgrades: Upgrades::new(),
                instance_slots,
                _ticker: ticker,
                installs: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The node's actor runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.shared.rt
    }

    /// The node's one wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Use these named policies (for example `PolicyLibrary::load_dir("capabilities")`).
    /// Its `default` policy becomes what processes run under when nothing else is
    /// named; guests name the others in their spawn options. Processes already running
    /// keep the policy they started with.
    pub fn set_policies(&self, library: PolicyLibrary) {
        *self.shared.policies.write() = Policies::new(library);
    }

    /// The node's default policy.
    pub fn default_policy(&self) -> Arc<Policy> {
        self.shared.policies.read().default.clone()
    }

    /// The names of the loaded components, sorted.
    pub fn component_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.components.read().keys().cloned().collect();
        names.sort();
        names
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
        let loaded = self.shared.prepare(name, bytes)?;
        let info = ComponentInfo {
            name: name.to_owned(),
            kind: loaded.kind,
        };
        // Processes already running keep their version; `reload` upgrades them.
        let version = self
            .shared
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
        let (core, body) = self.shared.prepare_spawn(component, options, None)?;
        Ok(self.shared.rt.spawn_watched(core, body))
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
        self.shared.spawn(parent, component, options)
    }
}

impl NodeShared {
    pub(crate) fn split_options(
        &self,
        options: WasmSpawnOptions,
        policy: &Policy,
    ) -> (SpawnOptions, Vec<u8>) {
        let mut mailbox = options.mailbox;
        if let Some(limit) = policy.limits.mailbox {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            if mailbox.capacity.is_none_or(|cap| cap > limit) {
                mailbox = MailboxConfig {
                    capacity: Some(limit),
                    overflow: Overflow::DropNewest,
                };
            }
        }
        let core = SpawnOptions {
            link: options.link,
            monitor: options.monitor,
            trap_exit: options.trap_exit,
            mailbox,
            label: None,
        };
        (core, options.init)
    }

    /// Make `loaded` the current version of its name, unless `check` (given the live
    /// version, if any, and the new one) refuses it; returns the new version number.
    pub(crate) fn install<E>(
        &self,
        mut loaded: LoadedComponent,
        check: impl FnOnce(Option<&LoadedComponent>, &LoadedComponent) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut components = self.components.write();
        let old = components.get(&*loaded.name);
        check(old.map(|old| &**old), &loaded)?;
        loaded.version = old.map_or(0, |old| old.version) + 1;
        let version = loaded.version;
        components.insert(loaded.name.to_string(), Arc::new(loaded));
        self.installs.fetch_add(1, Ordering::Release);
        Ok(version)
    }

    /// The current version of a component, 0 when none of that name is loaded.
    pub(crate) fn current_version(&self, name: &str) -> u64 {
        self.components.read().get(name).map_or(0, |c| c.version)
    }

    /// Compile and link-check a component (no registration). Blocking: compiling
    /// takes a while, so reloads call it off the scheduler threads.
    pub(crate) fn prepare(&self, name: &str, bytes: &[u8]) -> Result<LoadedComponent, LoadError> {
        self.prepare_as(name, bytes, None)
    }

    /// Whether the node meters fuel.
    pub(crate) fn fuel_metering(&self) -> bool {
        self.config.fuel_metering
    }

    /// [`NodeShared::prepare`], as `kind` when given. A name loaded as a plugin stays a
    /// plugin (its new versions need no entry point).
    pub(crate) fn prepare_as(
        &self,
        name: &str,
        bytes: &[u8],
        kind: Option<ComponentKind>,
    ) -> Result<LoadedComponent, LoadError> {
        let kind = kind.or_else(|| {
            self.components
                .read()
                .get(name)
                .map(|c| c.kind)
                .filter(|k| *k == ComponentKind::Plugin)
        });
        let name_owned = name.to_owned();
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotWasm {
                component: name_owned,
            });
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule {
                component: name_owned,
            });
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid {
            component: name_owned.clone(),
            detail: format!("{e:#}"),
        })?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(export, _)| export.to_owned())
            .collect();
        let kind = if let Some(kind) = kind {
            kind
        } else if exports.iter().any(|e| e.starts_with("rusm:runtime/entry@")) {
            ComponentKind::Actor
        } else if exports
            .iter()
            .any(|e| e.starts_with("rusm:runtime/handler@"))
        {
            ComponentKind::Handler
        } else if exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")) {
            ComponentKind::Command
        } else if exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2"))
        {
            ComponentKind::Http
        } else {
            return Err(LoadError::NoEntryPoint {
                component: name_owned,
                exports,
            });
        };
        let pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::UnsatisfiedImport {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?;
        let prepared = match kind {
            ComponentKind::Actor => {
                Prepared::Actor(ActorPre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Command => {
                Prepared::Command(CommandPre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Http => {
                Prepared::Http(ProxyPre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Handler => {
                Prepared::Handler(crate::handler::HandlerActorPre::new(pre).map_err(|e| {
                    LoadError::BadEntryPoint {
                        component: name_owned.clone(),
                        detail: format!("{e:#}"),
                    }
                })?)
            }
            ComponentKind::Plugin => Prepared::Plugin(pre),
        };
        Ok(LoadedComponent {
            name: name_owned.as_str().into(),
            kind,
            prepared,
            version: 0,
        })
    }

    pub(crate) fn component(&self, name: &str) -> Result<Arc<LoadedComponent>, SpawnError> {
        self.components
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| SpawnError::UnknownComponent(name.to_owned()))
    }

    fn spawn(
        self: &Arc<Self>,
        parent: Option<&Context>,
        component: &str,
        options: WasmSpawnOptions,
    ) -> Result<Spawned, SpawnError> {
        self.spawn_child(parent, component, options, None)
    }

    /// Everything a spawn needs before it starts the process: the component, the policy
    /// (the node default when none is given), the core options and the body.
    fn prepare_spawn(
        self: &Arc<Self>,
        component: &str,
        options: WasmSpawnOptions,
        child_slot: Option<ChildSlot>,
    ) -> Result<
        (
            SpawnOptions,
            impl FnOnce(Context) -> BodyFuture + Send + 'static,
        ),
        SpawnError,
    > {
        let loaded = self.component(component)?;
        if loaded.kind == ComponentKind::Http {
            return Err(SpawnError::HttpHandler(loaded.name.to_string()));
        }
        if loaded.kind == ComponentKind::Plugin {
            return Err(SpawnError::Plugin(loaded.name.to_string()));
        }
        let policy = options
            .policy
            .clone()
            .unwrap_or_else(|| self.policies.read().default.clone());
        let (mut core, init) = self.split_options(options, &policy);
        core.label = Some(loaded.name.clone());
        let body = self.clone().body(loaded, init, policy, child_slot)?;
        Ok((core, body))
    }

    fn spawn_child(
        self: &Arc<Self>,
        parent: Option<&Context>,
        component: &str,
        options: WasmSpawnOptions,
        child_slot: Option<ChildSlot>,
    ) -> Result<Spawned, SpawnError> {
        let (core, body) = self.prepare_spawn(component, options, child_slot)?;
        Ok(match parent {
            Some(ctx) => ctx.spawn_with(core, body),
            None => Spawned {
                pid: self.rt.spawn_with(core, body),
                monitor: None,
            },
        })
    }

    /// The node's default policy.
    pub(crate) fn default_policy(&self) -> Arc<Policy> {
        self.policies.read().default.clone()
    }

    /// The body of a wasm process: instantiate, run the entry point, classify the end.
    fn body(
        self: Arc<Self>,
        component: Arc<LoadedComponent>,
        init: Vec<u8>,
        policy: Arc<Policy>,
        child_slot: Option<ChildSlot>,
    ) -> Result<impl FnOnce(Context) -> BodyFuture + Send + 'static, SpawnError> {
        self.check_policy_runnable(&policy)?;
        Ok(move |ctx| -> BodyFuture {
            // A handler's body is its own, smaller future: a live actor keeps it boxed
            // for its whole life, and `run_process`'s holds the entry-point call inline.
            if component.kind == ComponentKind::Handler {
                Box::pin(crate::handler::run_handler(
                    self, component, ctx, init, policy, child_slot,
                ))
            } else {
                Box::pin(run_process(self, component, ctx, init, policy, child_slot))
            }
        })
    }

    /// Whether this node can run a process under `policy`.
    pub(crate) fn check_policy_runnable(&self, policy: &Policy) -> Result<(), SpawnError> {
        if policy.limits.fuel.is_some() && !self.config.fuel_metering {
            return Err(SpawnError::NotPermitted(
                "the policy sets a fuel limit but this node runs without fuel metering (WasmConfig::fuel_metering)".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn spawn_from_guest(
        self: &Arc<Self>,
        state: &ProcessState,
        component: &str,
        options: WitSpawnOptions,
    ) -> Result<WitSpawned, WitError> {
        let child_policy =
            {
                let policies = self.policies.read();
                match policies.library.policy_for_spawn(
                    &state.policy,
                    component,
                    options.policy.as_deref(),
                ) {
                    Ok(granted) if std::ptr::eq(granted, &*state.policy) => state.policy.clone(),
                    Ok(_) => {
                        let name = options.policy.as_deref().unwrap_or_default();
                        policies.shared.get(name).cloned().ok_or_else(|| {
                            WitError::NotFound(format!("no policy named {name:?}"))
                        })?
                    }
                    Err(refusal @ SpawnRefusal::NotFound { .. }) => {
                        return Err(WitError::NotFound(refusal.to_string()));
                    }
                    Err(refusal) => return Err(WitError::NotPermitted(refusal.to_string())),
                }
            };
        if let Some(max) = state.policy.limits.children
            && state.children.load(Ordering::Acquire) as u64 >= max
        {
            return Err(WitError::NotPermitted(format!(
                "the policy allows at most {max} live children"
            )));
        }
        state.children.fetch_add(1, Ordering::AcqRel);
        let slot = ChildSlot(state.children.clone());
        let opts = WasmSpawnOptions {
            init: options.init,
            link: options.link,
            monitor: options.monitor,
            policy: Some(child_policy),
            ..WasmSpawnOptions::default()
        };
        match self.spawn_child(Some(&state.ctx), component, opts, Some(slot)) {
            Ok(spawned) => Ok(WitSpawned {
                pid: spawned.pid.as_raw(),
                monitor: spawned.monitor.map(|m| m.as_raw()),
            }),
            Err(SpawnError::UnknownComponent(name)) => {
                Err(WitError::NotFound(format!("no component named {name:?}")))
            }
            Err(SpawnError::NotPermitted(why)) => Err(WitError::NotPermitted(why)),
            Err(
                err @ (SpawnError::HttpHandler(_)
                | SpawnError::NotHttpHandler(_)
                | SpawnError::Plugin(_)
                | SpawnError::NotPlugin(_)),
            ) => Err(WitError::Invalid(err.to_string())),
        }
    }

    /// May this process end `target` with `kill` or `exit`? Itself always; others as
    /// its policy's kill right says.
    pub(crate) fn check_kill(&self, state: &ProcessState, target: Pid) -> Result<(), WitError> {
        let me = state.ctx.pid();
        if target == me {
            return Ok(());
        }
        let is_child = self.rt.parent_of(target) == Some(me);
        if state.policy.process.may_kill(is_child) {
            Ok(())
        } else {
            Err(WitError::NotPermitted(format!(
                "the policy does not allow ending {target}"
            )))
        }
    }

    pub(crate) fn check_register(&self, state: &ProcessState, name: &str) -> Result<(), WitError> {
        if state.policy.process.may_register(name) {
            Ok(())
        } else {
            Err(WitError::NotPermitted(format!(
                "the policy does not allow registering {name:?}"
            )))
        }
    }

    pub(crate) fn max_message_size(&self, state: &ProcessState) -> Option<usize> {
        state
            .policy
            .limits
            .message_size
            .map(|max| usize::try_from(max).unwrap_or(usize::MAX))
    }
}

async fn run_process(
    node: Arc<NodeShared>,
    component: Arc<LoadedComponent>,
    ctx: Context,
    init: Vec<u8>,
    policy: Arc<Policy>,
    child_slot: Option<ChildSlot>,
) -> ExitReason {
    if component.kind == ComponentKind::Handler {
        return crate::handler::run_handler(node, component, ctx, init, policy, child_slot).await;
    }
    let deadline = policy
        .limits
        .deadline
        .map(|limit| tokio::time::Instant::now() + limit);
    let live = LiveGuard::track(&node, &component, ctx.pid());
    let mut component = component;
    // Declared before the store, so dropped after it: the pool slot is free first.
    let _slot = match node.instance_slot(&component.name).await {
        Ok(permit) => permit,
        Err(reason) => return reason,
    };
    let mut store = match process_store(&node, &component.name, ctx, policy, child_slot) {
        Ok(store) => store,
        Err(reason) => return reason,
    };
    // Each turn runs one instance; a hand-over starts the next one on the current
    // version in a fresh store, under the same rusm process.
    let outcome = loop {
        let run = async {
            match &component.prepared {
                Prepared::Actor(pre) => {
                    async {
                        let actor = pre.instantiate_async(&mut store).await?;
                        actor.rusm_runtime_entry().call_run(&mut store, &init).await
                    }
                    .await
                }
                Prepared::Command(pre) => {
                    async {
                        let command = pre.instantiate_async(&mut store).await?;
                        let result = command.wasi_cli_run().call_run(&mut store).await?;
                        Ok(result.map_err(|()| "command returned an error".to_owned()))
                    }
                    .await
                }
                Prepared::Http(_) => Err(wasmtime::Error::msg(
                    "an HTTP handler component has no entry point to run",
                )),
                Prepared::Plugin(_) => Err(wasmtime::Error::msg(
                    "a plugin component has no entry point to run",
                )),
                Prepared::Handler(_) => Err(wasmtime::Error::msg(
                    "a handler-style component runs through its handler exports",
                )),
            }
        };
        let end = upgrade::run_instance(run, deadline, live.as_ref()).await;
        match (end, &live) {
            (InstanceEnd::Overdue, Some(live)) => {
                live.timed_out();
                let reason = ExitReason::UpgradeTimeout;
                tracing::debug!(pid = %store.data().ctx.pid(), component = %component.name, %reason, "wasm process ended");
                return reason;
            }
            (InstanceEnd::Returned(Some(Err(err))), Some(live)) if err.is::<HandOver>() => {
                let hand_over = err
                    .downcast::<HandOver>()
                    .expect("the error was checked to be a hand-over");
                match next_instance(&node, &component.name, store, ComponentKind::Actor) {
                    Ok((next, next_store)) => {
                        live.upgraded(next.version, hand_over);
                        component = next;
                        store = next_store;
                    }
                    Err(reason) => return reason,
                }
            }
            (InstanceEnd::Returned(outcome), _) => break outcome,
            (InstanceEnd::Overdue, None) => break None,
        }
    };
    let reason = exit_reason(outcome, store.data());
    tracing::debug!(pid = %store.data().ctx.pid(), component = %component.name, %reason, "wasm process ended");
    reason
}

/// After a hand-over: the current version of `name` (which must be of `kind`) and a
/// fresh store for it, taking over the process (its context, policy, children and
/// remaining fuel) from `old`.
pub(crate) fn next_instance(
    node: &Arc<NodeShared>,
    name: &str,
    old: Store<ProcessState>,
    kind: ComponentKind,
) -> Result<(Arc<LoadedComponent>, Store<ProcessState>), ExitReason> {
    let fuel = old.get_fuel().ok();
    let ProcessState {
        ctx,
        policy,
        children,
        _child_slot,
        ..
    } = old.into_data();
    let next = node
        .component(name)
        .map_err(|e| upgrade::cannot_continue(name, &e.to_string()))?;
    if next.kind != kind {
        return Err(upgrade::cannot_continue(
            name,
            "its current version is another kind of component",
        ));
    }
    let mut store = process_store(node, name, ctx, policy, _child_slot)?;
    store.data_mut().children = children;
    if node.config.fuel_metering
        && let Some(fuel) = fuel
    {
        let _ = store.set_fuel(fuel);
    }
    Ok((next, store))
}

impl NodeShared {
    /// Wait (at most `WasmConfig::instance_wait`) for room in the pool for one more
    /// running instance. The permit must outlive the process's store, so that the
    /// pool slot is free again before the permit is.
    ///
    /// # Errors
    /// The exit reason of a process that found no room in time.
    pub(crate) async fn instance_slot(
        &self,
        component: &str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ExitReason> {
        let wait = self.config.instance_wait;
        let slots = self.instance_slots.clone();
        match tokio::time::timeout(wait, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ExitReason::custom(format!(
                "cannot start component {component:?}: no free instance slot within {wait:?} ({})",
                self.config.instance_limits()
            ))),
        }
    }
}

/// The store of a new wasm process, set up the same way for every kind of process:
/// the WASI context from the policy (through the broker), memory and table limits,
/// a yield at every epoch tick, and fuel when the node meters it.
///
/// # Errors
/// The exit reason of a process that cannot start (its policy cannot be granted).
pub(crate) fn process_store(
    node: &Arc<NodeShared>,
    component: &str,
    ctx: Context,
    policy: Arc<Policy>,
    child_slot: Option<ChildSlot>,
) -> Result<Store<ProcessState>, ExitReason> {
    let started = Instant::now();
    let wasi = broker::wasi_ctx(&policy, ctx.pid(), started)
        .map_err(|e| ExitReason::crashed(format!("cannot start component {component:?}: {e}")))?;
    let pool_max = node.config.max_memory_size();
    let memory = policy
        .limits
        .memory
        .map_or(node.config.default_memory_limit, |m| {
            usize::try_from(m).unwrap_or(usize::MAX)
        })
        .min(pool_max);
    let table_elements = policy
        .limits
        .table_elements
        .map_or(node.config.pool.table_elements, |t| {
            usize::try_from(t).unwrap_or(usize::MAX)
        })
        .min(node.config.pool.table_elements);
    let fuel = policy.limits.fuel;
    let http_hooks = broker::HttpGrant::new(&policy, ctx.pid());
    let state = ProcessState {
        ctx,
        node: node.clone(),
        policy,
        wasi,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        http_hooks,
        table: ResourceTable::new(),
        limits: ProcessLimits {
            memory,
            table_elements,
            hit_memory_limit: false,
        },
        started,
        children: Arc::new(AtomicUsize::new(0)),
        _child_slot: child_slot,
        extensions: crate::plugin::Extensions::new(),
    };
    let mut store = Store::new(&node.engine, state);
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(1);
    // Yield at every tick through tokio's own `yield_now`: it puts the task at the back
    // of the run queue, where a plain wake would let tokio poll it again at once from
    // its LIFO slot and starve the other processes on that worker.
    store.epoch_deadline_callback(|_| {
        Ok(wasmtime::UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
    if node.config.fuel_metering {
        let _ = store.set_fuel(fuel.unwrap_or(u64::MAX));
    }
    Ok(store)
}

/// How a process ended: `None` when its deadline passed, otherwise what its guest
/// call returned.
pub(crate) fn exit_reason(
    outcome: Option<wasmtime::Result<Result<(), String>>>,
    state: &ProcessState,
) -> ExitReason {
    match outcome {
        None => ExitReason::DeadlineExceeded,
        Some(Ok(Ok(()))) => ExitReason::Normal,
        Some(Ok(Err(text))) => ExitReason::custom(text),
        Some(Err(err)) => classify(&err, state),
    }
}

/// Turn an error out of a guest into an exit reason.
fn classify(err: &wasmtime::Error, state: &ProcessState) -> ExitReason {
    if let Some(SelfExit(reason)) = err.downcast_ref::<SelfExit>() {
        return reason.clone();
    }
    if let Some(broker::CapabilityDenied(what)) = err.downcast_ref::<broker::CapabilityDenied>() {
        return ExitReason::CapabilityDenied((*what).into());
    }
    if state.limits.hit_memory_limit {
        return ExitReason::OutOfMemory;
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return if exit.0 == 0 {
            ExitReason::Normal
        } else {
            ExitReason::custom(format!("exit code {}", exit.0))
        };
    }
    let mut text = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    if let Some(backtrace) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
        text.push('\n');
        text.push_str(&backtrace.to_string());
    }
    ExitReason::crashed(text)
}
