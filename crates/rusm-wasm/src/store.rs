//! The store builder every kind of process uses, and the one classifier of how a
//! guest call ended.
//!
//! A [`ProcessStore`] is a wasmtime `Store` together with the instance permit it was
//! built under. Its fields are declared store first, so the store (and with it the
//! instance's pool slot or arena span) is always dropped before the permit: the rule
//! that a full pool makes new processes wait, and never fail inside wasmtime, is
//! written here once. A store is set up the same way for every kind: the WASI context
//! and outbound-HTTP grant from the policy (through the broker), the resolved
//! [`Limits`] (memory, tables, fuel), and a yield at every epoch tick.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use rusm_otp::{Context, ExitReason};
use rusm_policy::Policy;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};

use crate::bindings::{SelfExit, reason_text};
use crate::broker::{self, Dirs};
use crate::engine::WasmConfig;
use crate::extensions::Extensions;
use crate::limits::{self, Limits, MemoryBudget, MemoryGrant, TreeToken};
use crate::preempt::EpochTicker;
use crate::state::{ChildToken, NodeView, ProcessState};

/// A process's store and the instance permit it holds. The store is dropped first.
pub(crate) struct ProcessStore {
    /// The store (declared first: dropped before the permit).
    pub(crate) store: Store<ProcessState>,
    permit: OwnedSemaphorePermit,
}

/// Everything a process's store is built from, decided when it is spawned.
pub(crate) struct ProcessSetup {
    /// The rusm process.
    pub(crate) ctx: Context,
    /// The policy it runs under.
    pub(crate) policy: Arc<Policy>,
    /// That policy's limits on this node.
    pub(crate) limits: Limits,
    /// What it may reach of its node.
    pub(crate) node: NodeView,
    /// Its place among its parent's children, when a guest spawned it.
    pub(crate) child_token: Option<ChildToken>,
    /// The embedder's values (plugins).
    pub(crate) extensions: Extensions,
    /// When its run must end (its deadline, counted from its start).
    pub(crate) ends_at: Option<tokio::time::Instant>,
    /// Its place in its spawn tree's budget, when a guest spawned it.
    pub(crate) tree: Option<TreeToken>,
    /// Its share of the node's memory budget.
    pub(crate) memory: MemoryGrant,
    /// Its preopened directories, opened when it was spawned.
    pub(crate) dirs: Arc<Dirs>,
}

/// Builds the stores of a node's processes: the engine, the instance permits, and the
/// epoch thread every store's preemption depends on (kept alive by every builder's
/// owner, so it ticks while any process runs).
pub(crate) struct StoreFactory {
    engine: Engine,
    config: WasmConfig,
    /// One permit per instance the allocator can hold at once.
    instance_permits: Arc<Semaphore>,
    /// The linear memory granted to live processes, against the node's budget.
    memory: Arc<MemoryBudget>,
    _ticker: EpochTicker,
}

impl StoreFactory {
    /// A builder for stores of `engine`, configured by `config`, whose preemption
    /// `ticker` drives.
    pub(crate) fn new(engine: Engine, config: WasmConfig, ticker: EpochTicker) -> StoreFactory {
        let slots = config.max_instances() as usize;
        StoreFactory {
            engine,
            memory: Arc::new(MemoryBudget::new(config.memory_budget)),
            config,
            instance_permits: Arc::new(Semaphore::new(slots)),
            _ticker: ticker,
        }
    }

    /// The node's configuration.
    pub(crate) fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// The node's memory budget, which every process's `memory` limit is granted from.
    pub(crate) fn memory(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// Wait (at most `WasmConfig::instance_wait`) for room for one more running
    /// instance, then build the store of a new process of `component`.
    ///
    /// # Errors
    /// The exit reason of a process that cannot start: no room in time, or a policy
    /// the broker cannot grant.
    pub(crate) async fn open(
        &self,
        component: &str,
        setup: ProcessSetup,
    ) -> Result<ProcessStore, ExitReason> {
        let wait = self.config.instance_wait;
        let slots = self.instance_permits.clone();
        let permit = match tokio::time::timeout(wait, slots.acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(ExitReason::custom(format!(
                    "cannot start component {component:?}: no free instance slot within {wait:?} ({})",
                    self.config.instance_limits()
                )));
            }
        };
        let store = self.build(component, setup, None)?;
        Ok(ProcessStore { store, permit })
    }

    /// A fresh store for the same process as `old` (after a hand-over, or for a plugin
    /// whose instance must not be entered again): its context, policy, limits, node
    /// view, children, extensions and remaining fuel carry over, and so does its
    /// instance permit. `old`'s store is dropped first.
    ///
    /// # Errors
    /// The exit reason of a process that cannot go on (its policy can no longer be
    /// granted).
    pub(crate) fn renew(
        &self,
        component: &str,
        old: ProcessStore,
    ) -> Result<ProcessStore, ExitReason> {
        let ProcessStore { store, permit } = old;
        let fuel = store.get_fuel().ok();
        let ProcessState {
            ctx,
            node,
            policy,
            limits,
            children,
            _child_token,
            extensions,
            ends_at,
            tree,
            _tree_token,
            _memory,
            dirs,
            ..
        } = store.into_data();
        let setup = ProcessSetup {
            ctx,
            policy,
            limits,
            node,
            child_token: _child_token,
            extensions,
            ends_at,
            tree: _tree_token,
            memory: _memory,
            dirs,
        };
        let mut store = self.build(component, setup, fuel)?;
        store.data_mut().children = children;
        store.data_mut().tree = tree;
        Ok(ProcessStore { store, permit })
    }

    /// The store itself, with `fuel` left (the limit's full amount when `None`).
    fn build(
        &self,
        component: &str,
        setup: ProcessSetup,
        fuel: Option<u64>,
    ) -> Result<Store<ProcessState>, ExitReason> {
        let ProcessSetup {
            ctx,
            policy,
            limits,
            node,
            child_token,
            extensions,
            ends_at,
            tree,
            memory,
            dirs,
        } = setup;
        let started = Instant::now();
        let wasi = broker::wasi_ctx(&policy, &dirs, ctx.pid(), started).map_err(|e| {
            ExitReason::crashed(format!("cannot start component {component:?}: {e}"))
        })?;
        let http_hooks = broker::HttpGrant::new(&policy, ctx.pid());
        let mut state = ProcessState {
            ctx,
            node,
            policy,
            limits,
            wasi,
            dirs,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks,
            table: ResourceTable::new(),
            open_buckets: 0,
            open_cas: 0,
            limiter: limits.limiter(),
            started,
            children: Arc::new(AtomicUsize::new(0)),
            _child_token: child_token,
            extensions,
            ends_at,
            tree: std::sync::OnceLock::new(),
            _tree_token: None,
            _memory: memory,
        };
        if let Some(token) = tree {
            let _ = state.tree.set(Arc::clone(token.budget()));
            state._tree_token = Some(token);
        }
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        // Yield at every tick through tokio's own `yield_now`: it puts the task at the
        // back of the run queue, where a plain wake would let tokio poll it again at
        // once from its LIFO slot and starve the other processes on that worker.
        store.epoch_deadline_callback(|_| {
            Ok(wasmtime::UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        if let Some(full) = limits.fuel {
            let _ = store.set_fuel(fuel.unwrap_or(full));
        }
        Ok(store)
    }
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
        Some(Ok(Err(text))) => ExitReason::custom(reason_text(text)),
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
    if state.limiter.hit_memory_limit {
        return ExitReason::OutOfMemory;
    }
    // A component past its policy's count of core instances, memories or tables:
    // wasmtime refuses the instantiation; the reason names the limit.
    if let Some(text) = err
        .chain()
        .find_map(|cause| limits::count_limit_hit(&state.limits, &cause.to_string()))
    {
        return ExitReason::crashed(text);
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
    // A guest chooses its trap's message (a panic's text) and its call depth.
    ExitReason::crashed(reason_text(text))
}
