//! Plugins: components that export an embedder's own interface, called from host code
//! with typed bindings, each one a rusm process.
//!
//! A plugin component exports whatever interface the embedding application defines
//! (not `rusm:runtime/entry`) and may import the application's own host functions
//! next to WASI and `rusm:runtime` (see [`WasmNode::with_linker`](crate::WasmNode::with_linker)). It is loaded with
//! [`WasmNode::load_plugin_bytes`](crate::WasmNode::load_plugin_bytes) (or `_file`) and started with
//! [`WasmNode::spawn_plugin`](crate::WasmNode::spawn_plugin), which returns a [`Plugin`] handle.
//!
//! Every plugin is a rusm process: it has a pid, a mailbox, can be linked to, monitored
//! and killed, and from inside a call it sends and receives through `rusm:runtime`.
//! The process's body only waits for the end; the plugin's store sits in the handle
//! behind an async mutex, and [`Plugin::call`] runs the typed call on the caller's own
//! task, so a call costs no hop between tasks. A call is bounded: a deadline
//! ([`CallOptions::deadline`]), [`Plugin::cancel`], and the end of the process (a
//! [`Plugin::kill`] or any exit signal) each interrupt it, even a guest in `loop {}`
//! (the store yields at every epoch tick, so the interruption is seen within a tick).
//! Since wasmtime forbids entering an instance again once a call into it was dropped,
//! an interrupted call leaves the plugin either ended or, with
//! [`Interrupted::Keep`], running on a fresh instance under the same pid.
//!
//! A trap ends the plugin's process with the usual exit reason (seen by its links and
//! monitors) and is returned to the caller as [`PluginError::Crashed`]. After a
//! [`WasmNode::reload`](crate::WasmNode::reload) of its component, the next call runs on a fresh instance of
//! the new version (the call in flight finishes on the old one).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rusm_otp::{Context, ExitReason, MailboxConfig, Pid, SpawnOptions, Watch};
use rusm_policy::Policy;
use tokio::sync::{Notify, oneshot, watch};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::arena::unleased;
use crate::error::SpawnError;
use crate::extensions::Extensions;
use crate::kind::ComponentKind;
use crate::kinds::{Backend, BodyFuture, Granted};
use crate::preempt::in_guest;
use crate::registry::{LoadedComponent, Prepared};
use crate::state::ProcessState;
use crate::store::{ProcessSetup, ProcessStore, exit_reason};

/// What happens to a plugin whose call was interrupted by its deadline or
/// [`Plugin::cancel`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Interrupted {
    /// End the plugin's process (with `deadline-exceeded` after a deadline, `killed`
    /// after a cancel); its links and monitors see it, and later calls fail with
    /// [`PluginError::Ended`].
    #[default]
    Kill,
    /// Keep the process (same pid, mailbox and links) and go on with a fresh instance
    /// of the component: whatever the interrupted instance held in memory is lost.
    Keep,
}

/// How to start a plugin.
#[derive(Debug, Default)]
pub struct PluginOptions {
    /// The policy the plugin runs under; `None` means the node's default policy.
    pub policy: Option<Arc<Policy>>,
    /// Mailbox capacity and overflow (a policy's `mailbox` limit, when smaller, wins).
    pub mailbox: MailboxConfig,
    /// The embedder's per-plugin values, reachable from its host functions through
    /// [`ProcessState::extension_mut`]. They stay with the plugin across fresh
    /// instances (after an interrupted call or a reload).
    pub extensions: Extensions,
    /// The deadline of every call that does not set its own; `None` means none.
    pub deadline: Option<Duration>,
    /// What an interrupted call does to the plugin.
    pub interrupted: Interrupted,
}

/// How to make one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// How long the call may take; `None` means the plugin's own default
    /// ([`PluginOptions::deadline`]).
    pub deadline: Option<Duration>,
    /// What an interrupted call does to the plugin; `None` means the plugin's default
    /// ([`PluginOptions::interrupted`]).
    pub interrupted: Option<Interrupted>,
}

impl CallOptions {
    /// A call with this deadline.
    pub fn deadline(deadline: Duration) -> CallOptions {
        CallOptions {
            deadline: Some(deadline),
            interrupted: None,
        }
    }

    /// The same call, leaving the plugin as `interrupted` says if it is interrupted.
    #[must_use]
    pub fn on_interrupt(mut self, interrupted: Interrupted) -> CallOptions {
        self.interrupted = Some(interrupted);
        self
    }
}

/// Why a plugin could not be started or a call did not return.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin could not be started (unknown component, not a plugin, a policy the
    /// node cannot honour).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The plugin's process started but its instance did not (no room in the pool, a
    /// policy the broker cannot grant, a trap while instantiating, bindings that do
    /// not match the component); the process ended with `reason`.
    #[error("plugin {component:?} could not start: {reason}")]
    Start {
        /// The component.
        component: String,
        /// The plugin's exit reason.
        reason: ExitReason,
    },
    /// The call trapped (or the guest exited); the plugin's process ended with
    /// `reason`, as its links and monitors see.
    #[error("plugin {component:?} ({pid}) crashed: {reason}")]
    Crashed {
        /// The component.
        component: String,
        /// The plugin's pid.
        pid: Pid,
        /// The plugin's exit reason.
        reason: ExitReason,
    },
    /// The call did not return within its deadline.
    #[error("plugin {component:?} ({pid}) did not answer within {deadline:?}{}", ended_note(*.killed))]
    DeadlineExceeded {
        /// The component.
        component: String,
        /// The plugin's pid.
        pid: Pid,
        /// The deadline.
        deadline: Duration,
        /// Whether the plugin was ended for it ([`Interrupted::Kill`]) rather than
        /// kept on a fresh instance.
        killed: bool,
    },
    /// The call was cancelled with [`Plugin::cancel`].
    #[error("the call into plugin {component:?} ({pid}) was cancelled{}", ended_note(*.killed))]
    Cancelled {
        /// The component.
        component: String,
        /// The plugin's pid.
        pid: Pid,
        /// Whether the plugin was ended for it rather than kept on a fresh instance.
        killed: bool,
    },
    /// The plugin's process has ended (killed, exited, crashed in an earlier call,
    /// stopped), before or during the call.
    #[error("plugin {component:?} ({pid}) has ended: {reason}")]
    Ended {
        /// The component.
        component: String,
        /// The plugin's pid.
        pid: Pid,
        /// Its exit reason.
        reason: ExitReason,
    },
}

fn ended_note(killed: bool) -> &'static str {
    if killed {
        "; the plugin was ended"
    } else {
        "; the plugin goes on with a fresh instance"
    }
}

/// Makes the embedder's typed bindings for a new instance of a plugin: usually
/// `|store, instance| MyWorld::new(store, instance)` with the `MyWorld` type that
/// `wasmtime::component::bindgen!` generated.
pub type BindFn<B> = fn(&mut Store<ProcessState>, &Instance) -> wasmtime::Result<B>;

/// What ends a call early, besides its deadline.
struct Signals {
    /// The plugin's process has ended.
    ended: AtomicBool,
    /// Bumped by every [`Plugin::cancel`].
    cancels: AtomicU64,
    /// Woken on either.
    notify: Notify,
}

impl Signals {
    fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Resolves when the process ends, or a cancel newer than `cancels` arrives.
    async fn interrupted(&self, cancels: u64) -> Interrupt {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ended.load(Ordering::Acquire) {
                return Interrupt::Ended;
            }
            if self.cancels.load(Ordering::Acquire) != cancels {
                return Interrupt::Cancelled;
            }
            notified.await;
        }
    }
}

enum Interrupt {
    Ended,
    Cancelled,
    Deadline(Duration),
}

/// Marks the plugin ended when its process body ends or is dropped (a kill).
struct EndGuard(Arc<Signals>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
        self.0.wake();
    }
}

/// A running instance of a plugin.
struct Running<B> {
    bindings: B,
    /// The store and its instance permit.
    store: ProcessStore,
    /// The component version the instance runs.
    version: u64,
    /// The node's install count when `version` was last found current.
    installs: u64,
    /// A call into this instance was interrupted (or its future dropped): it must not
    /// be entered again.
    poisoned: bool,
}

enum ExitState {
    Waiting(Watch),
    Done(ExitReason),
}

struct Inner<B> {
    backend: Arc<Backend>,
    component: Arc<str>,
    pid: Pid,
    bind: BindFn<B>,
    deadline: Option<Duration>,
    interrupted: Interrupted,
    running: crate::turn::TurnLock<Option<Running<B>>>,
    signals: Arc<Signals>,
    stop: parking_lot::Mutex<Option<oneshot::Sender<ExitReason>>>,
    exit: tokio::sync::Mutex<ExitState>,
}

/// A running plugin: a rusm process whose component exports the embedder's interface,
/// called through the embedder's typed bindings `B`.
///
/// Cheap to clone; calls through clones take turns (one call runs at a time per
/// plugin). When the last handle is dropped the plugin's process ends with `normal`.
pub struct Plugin<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Plugin<B> {
    fn clone(&self) -> Self {
        Plugin {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B> std::fmt::Debug for Plugin<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("component", &self.inner.component)
            .field("pid", &self.inner.pid)
            .finish()
    }
}

/// Start the plugin `loaded` as a new process spawned with `core` under what
/// `granted` says, and hand back its handle, with the future that makes its first
/// instance (and ends the process if that fails).
#[allow(clippy::too_many_arguments)]
pub(crate) fn begin<B: Send + 'static>(
    backend: &Arc<Backend>,
    loaded: Arc<LoadedComponent>,
    granted: Granted,
    core: SpawnOptions,
    call_deadline: Option<Duration>,
    interrupted: Interrupted,
    extensions: Extensions,
    bind: BindFn<B>,
) -> (
    Plugin<B>,
    impl Future<Output = Result<(), PluginError>> + Send + 'static,
) {
    let signals = Arc::new(Signals {
        ended: AtomicBool::new(false),
        cancels: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let (ctx_tx, ctx_rx) = oneshot::channel::<ProcessSetup>();
    let (stop_tx, stop_rx) = oneshot::channel::<ExitReason>();
    let guard_signals = Arc::clone(&signals);
    let body = move |ctx: Context| -> BodyFuture {
        Box::pin(async move {
            let _ended = EndGuard(guard_signals);
            // The policy's deadline bounds the plugin's whole run, as for every
            // other kind: when it passes the process ends, interrupting a call.
            let setup = granted.setup(ctx, extensions);
            let deadline = setup.ends_at;
            if ctx_tx.send(setup).is_err() {
                return ExitReason::Normal;
            }
            match deadline {
                None => stop_rx.await.unwrap_or(ExitReason::Normal),
                Some(at) => tokio::select! {
                    stop = stop_rx => stop.unwrap_or(ExitReason::Normal),
                    () = tokio::time::sleep_until(at) => ExitReason::DeadlineExceeded,
                },
            }
        })
    };
    let (pid, watch) = backend.rt.spawn_watched(core, body);
    let inner = Inner {
        backend: Arc::clone(backend),
        component: loaded.name.clone(),
        pid,
        bind,
        deadline: call_deadline,
        interrupted,
        running: crate::turn::TurnLock::new(None),
        signals,
        stop: parking_lot::Mutex::new(Some(stop_tx)),
        exit: tokio::sync::Mutex::new(ExitState::Waiting(watch)),
    };
    let plugin = Plugin {
        inner: Arc::new(inner),
    };
    let handle = plugin.clone();
    let backend = Arc::clone(backend);
    let started = async move {
        let plugin = handle;
        let start_error = |reason| PluginError::Start {
            component: loaded.name.to_string(),
            reason,
        };
        let Ok(setup) = ctx_rx.await else {
            // Ended before its body ran (killed at once, or the node shutting down).
            return Err(start_error(plugin.exited().await));
        };
        let store = match backend.stores.open(&loaded.name, setup).await {
            Ok(store) => store,
            Err(reason) => return Err(start_error(plugin.end_with(reason).await)),
        };
        match instantiate(&backend, &loaded, store, bind).await {
            Ok(live) => {
                *plugin.inner.running.lock().await = Some(live);
                Ok(())
            }
            Err(reason) => Err(start_error(plugin.end_with(reason).await)),
        }
    };
    (plugin, started)
}

/// Calls into a plugin that a supervisor keeps running; see
/// [`WasmNode::plugin_child`](crate::WasmNode::plugin_child). Cheap to clone.
pub struct SupervisedPlugin<B> {
    component: Arc<str>,
    current: watch::Receiver<Option<Plugin<B>>>,
}

impl<B> Clone for SupervisedPlugin<B> {
    fn clone(&self) -> Self {
        SupervisedPlugin {
            component: Arc::clone(&self.component),
            current: self.current.clone(),
        }
    }
}

impl<B> std::fmt::Debug for SupervisedPlugin<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisedPlugin")
            .field("component", &self.component)
            .field("current", &*self.current.borrow())
            .finish()
    }
}

impl<B: Send + 'static> SupervisedPlugin<B> {
    /// Calls into whichever plugin of `component` is published on `current`.
    pub(crate) fn new(
        component: Arc<str>,
        current: watch::Receiver<Option<Plugin<B>>>,
    ) -> SupervisedPlugin<B> {
        SupervisedPlugin { component, current }
    }

    /// The instance the supervisor started last, once it is up (it may have ended
    /// since; `None` before the first start).
    pub fn current(&self) -> Option<Plugin<B>> {
        self.current.borrow().clone()
    }

    /// The running plugin, waiting for the supervisor to (re)start it if it has
    /// ended. Bound the wait with a timeout where the supervisor may give up.
    ///
    /// # Errors
    /// [`PluginError::Ended`] with the last instance's exit reason when no instance
    /// can come any more: the child spec (held by the supervisor) has been dropped,
    /// because the supervisor has ended ([`PluginError::Start`] with `noproc` if no
    /// instance ever started).
    pub async fn ready(&self) -> Result<Plugin<B>, PluginError> {
        let mut current = self.current.clone();
        loop {
            if let Some(plugin) = current.borrow_and_update().clone()
                && !plugin.is_ended()
            {
                return Ok(plugin);
            }
            if current.changed().await.is_err() {
                let last = current.borrow().clone();
                return Err(match last {
                    Some(plugin) => plugin.ended_error().await,
                    None => PluginError::Start {
                        component: self.component.to_string(),
                        reason: ExitReason::NoProc,
                    },
                });
            }
        }
    }

    /// [`Plugin::call`] on the running instance (waiting for it as [`Self::ready`]).
    ///
    /// # Errors
    /// As [`Self::ready`] and [`Plugin::call_with`].
    pub async fn call<R, F>(&self, f: F) -> Result<R, PluginError>
    where
        F: AsyncFnOnce(&B, &mut Store<ProcessState>) -> wasmtime::Result<R>,
    {
        self.ready().await?.call(f).await
    }

    /// [`Plugin::call_with`] on the running instance (waiting for it as
    /// [`Self::ready`]).
    ///
    /// # Errors
    /// As [`Self::ready`] and [`Plugin::call_with`].
    pub async fn call_with<R, F>(&self, options: CallOptions, f: F) -> Result<R, PluginError>
    where
        F: AsyncFnOnce(&B, &mut Store<ProcessState>) -> wasmtime::Result<R>,
    {
        self.ready().await?.call_with(options, f).await
    }
}

/// Instantiate `component` in `store` and bind it.
async fn instantiate<B>(
    backend: &Backend,
    component: &LoadedComponent,
    mut store: ProcessStore,
    bind: BindFn<B>,
) -> Result<Running<B>, ExitReason> {
    let Prepared::Plugin(pre) = &component.prepared else {
        return Err(ExitReason::crashed(format!(
            "component {:?} is no longer a plugin",
            component.name
        )));
    };
    let pre: &InstancePre<ProcessState> = pre;
    // Read before the version is known to be current, so a reload that lands after
    // the lookup is seen at the next call.
    let installs = backend.registry.installs();
    let wasm = &mut store.store;
    // Unleased: a plugin may be started from inside another store's call.
    let bound = unleased(in_guest(async {
        let instance = pre.instantiate_async(&mut *wasm).await?;
        bind(wasm, &instance)
    }))
    .await;
    match bound {
        Ok(bindings) => Ok(Running {
            bindings,
            store,
            version: component.version,
            installs,
            poisoned: false,
        }),
        Err(err) => Err(exit_reason(Some(Err(err)), store.store.data())),
    }
}

impl<B: Send + 'static> Plugin<B> {
    /// The plugin's pid.
    pub fn pid(&self) -> Pid {
        self.inner.pid
    }

    /// The name of the plugin's component.
    pub fn component(&self) -> &str {
        &self.inner.component
    }

    /// Call into the plugin: `f` is given the typed bindings of the current instance
    /// and its store, for example
    /// `plugin.call(async |p, store| p.myapp_plugin_handler().call_greet(store, "ann").await)`.
    /// The call runs on the caller's task, under the plugin's default deadline.
    ///
    /// # Errors
    /// See [`Plugin::call_with`].
    pub async fn call<R, F>(&self, f: F) -> Result<R, PluginError>
    where
        F: AsyncFnOnce(&B, &mut Store<ProcessState>) -> wasmtime::Result<R>,
    {
        self.call_with(CallOptions::default(), f).await
    }

    /// [`Plugin::call`] with a deadline and what to do when it is interrupted.
    ///
    /// Calls take turns: this waits for the plugin's call in flight, if any, to end
    /// (the deadline counts from when this call starts running). Before running, a
    /// plugin whose component was reloaded moves to a fresh instance of the new
    /// version.
    ///
    /// # Errors
    /// [`PluginError::Crashed`] when the call traps (the plugin has ended),
    /// [`PluginError::DeadlineExceeded`] or [`PluginError::Cancelled`] when it was
    /// interrupted, [`PluginError::Ended`] when the plugin's process has ended,
    /// [`PluginError::Start`] when a fresh instance could not be made (the plugin has
    /// ended).
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call; the plugin goes on with a fresh instance
    /// at its next call.
    pub async fn call_with<R, F>(&self, options: CallOptions, f: F) -> Result<R, PluginError>
    where
        F: AsyncFnOnce(&B, &mut Store<ProcessState>) -> wasmtime::Result<R>,
    {
        let inner = &*self.inner;
        // Uncontended, `try_lock` is one compare-and-swap; `lock` sets up a waiter.
        let mut running = match inner.running.try_lock() {
            Some(running) => running,
            None => inner.running.lock().await,
        };
        let cancels = inner.signals.cancels.load(Ordering::Acquire);
        let Some(live) = running.as_mut() else {
            drop(running);
            return Err(self.ended_error().await);
        };
        if inner.signals.ended.load(Ordering::Acquire) {
            // Killed between calls: free the instance now.
            *running = None;
            drop(running);
            return Err(self.ended_error().await);
        }
        // A reload installs a new version: one atomic load tells whether any install
        // happened since this instance was last found current.
        let installs = inner.backend.registry.installs();
        let stale = installs != live.installs && {
            let current = inner.backend.registry.current_version(&inner.component);
            live.installs = installs;
            live.version != current
        };
        if live.poisoned || stale {
            self.renew(&mut running).await?;
        }
        let Some(live) = running.as_mut() else {
            drop(running);
            return Err(self.ended_error().await);
        };
        live.poisoned = true;
        let deadline = options.deadline.or(inner.deadline);
        let outcome = {
            // Unleased: the caller may be a host function running inside another
            // store's call (a handler's), whose stack lease must not take this
            // plugin's stack.
            let run = unleased(in_guest(f(&live.bindings, &mut live.store.store)));
            let interrupted = async {
                match deadline {
                    None => inner.signals.interrupted(cancels).await,
                    Some(limit) => tokio::select! {
                        biased;
                        why = inner.signals.interrupted(cancels) => why,
                        () = tokio::time::sleep(limit) => Interrupt::Deadline(limit),
                    },
                }
            };
            // `run` first: a call that finishes in its first poll never registers a
            // waker or a timer.
            tokio::select! {
                biased;
                result = run => Ok(result),
                why = interrupted => Err(why),
            }
        };
        let kill = options.interrupted.unwrap_or(inner.interrupted) == Interrupted::Kill;
        match outcome {
            Ok(Ok(value)) => {
                live.poisoned = false;
                Ok(value)
            }
            Ok(Err(err)) => {
                let reason = exit_reason(Some(Err(err)), live.store.store.data());
                *running = None;
                drop(running);
                self.end_with(reason.clone()).await;
                Err(PluginError::Crashed {
                    component: inner.component.to_string(),
                    pid: inner.pid,
                    reason,
                })
            }
            Err(Interrupt::Ended) => {
                *running = None;
                drop(running);
                Err(self.ended_error().await)
            }
            Err(why @ (Interrupt::Deadline(_) | Interrupt::Cancelled)) => {
                let error = match why {
                    Interrupt::Deadline(deadline) => PluginError::DeadlineExceeded {
                        component: inner.component.to_string(),
                        pid: inner.pid,
                        deadline,
                        killed: kill,
                    },
                    _ => PluginError::Cancelled {
                        component: inner.component.to_string(),
                        pid: inner.pid,
                        killed: kill,
                    },
                };
                if kill {
                    let reason = match why {
                        Interrupt::Deadline(_) => ExitReason::DeadlineExceeded,
                        _ => ExitReason::Killed,
                    };
                    *running = None;
                    drop(running);
                    self.end_with(reason).await;
                } else {
                    // Free the interrupted instance now rather than at the next call.
                    self.renew(&mut running).await?;
                }
                Err(error)
            }
        }
    }

    /// Interrupt the call in flight, if any: it returns [`PluginError::Cancelled`] and
    /// the plugin is ended or kept as the call's [`Interrupted`] says. Calls that start
    /// later are not affected.
    pub fn cancel(&self) {
        self.inner.signals.cancels.fetch_add(1, Ordering::AcqRel);
        self.inner.signals.wake();
    }

    /// Kill the plugin's process (reason `killed`), interrupting the call in flight.
    pub fn kill(&self) {
        self.inner.backend.rt.kill(self.inner.pid);
    }

    /// End the plugin with `normal` once the call in flight, if any, has returned,
    /// and wait for its process to end.
    pub async fn stop(&self) -> ExitReason {
        let mut running = self.inner.running.lock().await;
        *running = None;
        drop(running);
        self.end_with(ExitReason::Normal).await
    }

    /// Whether the plugin's process has ended.
    pub fn is_ended(&self) -> bool {
        self.inner.signals.ended.load(Ordering::Acquire)
    }

    /// Wait for the plugin's process to end, and its exit reason.
    pub async fn exited(&self) -> ExitReason {
        let mut exit = self.inner.exit.lock().await;
        match &mut *exit {
            ExitState::Done(reason) => reason.clone(),
            ExitState::Waiting(watch) => {
                let reason = watch.await;
                *exit = ExitState::Done(reason.clone());
                reason
            }
        }
    }

    /// End the process with `reason` (unless it has ended already) and wait for its
    /// exit reason. The caller has dropped the instance first, so the pool slot is
    /// free before the exit is announced.
    async fn end_with(&self, reason: ExitReason) -> ExitReason {
        if let Some(stop) = self.inner.stop.lock().take() {
            let _ = stop.send(reason);
        }
        self.exited().await
    }

    async fn ended_error(&self) -> PluginError {
        PluginError::Ended {
            component: self.inner.component.to_string(),
            pid: self.inner.pid,
            reason: self.exited().await,
        }
    }

    /// Replace the instance in `running` with a fresh one of the component's current
    /// version, under the same process (context, policy, extensions).
    async fn renew(&self, running: &mut Option<Running<B>>) -> Result<(), PluginError> {
        let inner = &*self.inner;
        let Some(old) = running.take() else {
            return Err(self.ended_error().await);
        };
        let fail = async |reason: ExitReason| PluginError::Start {
            component: inner.component.to_string(),
            reason: self.end_with(reason).await,
        };
        let Running { store, .. } = old;
        let component = match inner.backend.registry.component(&inner.component) {
            Ok(component) if component.kind == ComponentKind::Plugin => component,
            Ok(_) => {
                return Err(fail(ExitReason::crashed(format!(
                    "component {:?} is no longer a plugin",
                    inner.component
                )))
                .await);
            }
            Err(err) => return Err(fail(ExitReason::crashed(err.to_string())).await),
        };
        let store = match inner.backend.stores.renew(&inner.component, store) {
            Ok(store) => store,
            Err(reason) => return Err(fail(reason).await),
        };
        match instantiate(&inner.backend, &component, store, inner.bind).await {
            Ok(live) => {
                tracing::debug!(pid = %inner.pid, component = %inner.component, version = live.version, "plugin on a fresh instance");
                *running = Some(live);
                Ok(())
            }
            Err(reason) => Err(fail(reason).await),
        }
    }
}
