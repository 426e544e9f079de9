//! The four kinds of wasm process, as siblings over one start path: `entry` actors and
//! commands ([`actor`]), handler-style actors ([`handler`]), HTTP requests ([`http`], and reused
//! instances serving many in turn, [`http_pool`])
//! and plugins ([`plugin`]). Each is a process body (or, for plugins, a handle) built
//! from what the node decided at spawn — the component, a [`ProcessSetup`] — and the
//! node's lower layers in [`Backend`]; none of them sees the node itself.

pub(crate) mod actor;
pub(crate) mod handler;
pub(crate) mod http;
pub(crate) mod http_p3;
pub(crate) mod http_pool;
pub(crate) mod plugin;

// The vocabulary the three HTTP kinds ([`http`], [`http_pool`], [`http_p3`]) share.

/// The body of a response a handler produced (streamed from the guest as it writes).
pub type HttpResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The `wasi:http` error code a handler may answer with instead of a response.
pub use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode as HttpErrorCode;

/// The error type a request body handed to [`WasmNode::serve_http`](crate::WasmNode::serve_http) may fail with;
/// anything convertible into it will do (a `hyper::Error` is).
pub use wasmtime_wasi_http::Error as HttpBodyError;

pub(crate) use wasmtime_wasi_http::p2::bindings::http::types::Scheme as HttpScheme;

/// Where a request's response head arrives.
pub(crate) type ResponseSlot =
    tokio::sync::oneshot::Receiver<Result<hyper::Response<HttpResponseBody>, HttpErrorCode>>;
/// Where the guest sets a request's response head.
pub(crate) type ResponseSender =
    tokio::sync::oneshot::Sender<Result<hyper::Response<HttpResponseBody>, HttpErrorCode>>;

/// The request body a pooled instance is handed (any body, boxed).
pub(crate) type PooledBody =
    http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, HttpBodyError>;

use std::sync::Arc;

use rusm_otp::{Context, ExitReason, Runtime};
use rusm_policy::Policy;

use crate::broker::Dirs;
use crate::extensions::Extensions;
use crate::kind::ComponentKind;
use crate::limits::{Limits, MemoryGrant, TreeToken};
use crate::registry::{ComponentRegistry, LoadedComponent};
use crate::state::{ChildToken, NodeView};
use crate::store::{ProcessSetup, ProcessStore, StoreFactory};
use crate::upgrade::{self, LiveGuard, Upgrades};

/// The future a wasm process body runs.
pub(crate) type BodyFuture = std::pin::Pin<Box<dyn Future<Output = ExitReason> + Send>>;

/// What the node granted a process at spawn, before it has a context.
pub(crate) struct Granted {
    /// The policy it runs under.
    pub(crate) policy: Arc<Policy>,
    /// That policy's limits on this node.
    pub(crate) limits: Limits,
    /// What it may reach of its node.
    pub(crate) node: NodeView,
    /// Its place among its parent's children, when a guest spawned it.
    pub(crate) child_token: Option<ChildToken>,
    /// Its place in its spawn tree's budget, when a guest spawned it.
    pub(crate) tree: Option<TreeToken>,
    /// Its share of the node's memory budget.
    pub(crate) memory: MemoryGrant,
    /// Its policy's preopens, opened at spawn.
    pub(crate) dirs: Arc<Dirs>,
}

impl Granted {
    /// The store set-up of the process `ctx`, which starts now (its deadline counts
    /// from here), with the embedder's `extensions`.
    pub(crate) fn setup(self, ctx: Context, extensions: Extensions) -> ProcessSetup {
        ProcessSetup {
            ctx,
            policy: self.policy,
            limits: self.limits,
            node: self.node,
            child_token: self.child_token,
            extensions,
            ends_at: self.limits.deadline_from_now(),
            tree: self.tree,
            memory: self.memory,
            dirs: self.dirs,
        }
    }
}

/// The node's layers a process body works with: its components, its store builder,
/// its upgrade state and its actor runtime.
pub(crate) struct Backend {
    /// The loaded components.
    pub(crate) registry: ComponentRegistry,
    /// Builds every process's store.
    pub(crate) stores: StoreFactory,
    /// Reloads, upgrades and the live actor processes they concern.
    pub(crate) upgrades: Arc<Upgrades>,
    /// The node's actor runtime.
    pub(crate) rt: Runtime,
    /// The node's key-value file.
    pub(crate) kv: Arc<dyn crate::keyvalue::KvBackend>,
    /// The node's buckets, each routed to the store that backs it (the file above,
    /// or a shared one).
    pub(crate) buckets: Arc<crate::keyvalue::NodeBuckets>,
}

/// A process whose store is built: the store, its place among the live processes
/// the upgrade machinery tracks (actors and handlers), and when its run must end.
/// Fields drop in order: the store (and its permit) before the live entry.
pub(crate) struct Started {
    pub(crate) store: ProcessStore,
    pub(crate) live: Option<LiveGuard>,
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl Backend {
    /// The start every kind shares: tracking for upgrades (for the long-running
    /// kinds), then the store; the run ends at `setup.ends_at`.
    ///
    /// # Errors
    /// The exit reason of a process that cannot start (see [`StoreFactory::open`]).
    pub(crate) async fn start(
        &self,
        component: &LoadedComponent,
        setup: ProcessSetup,
    ) -> Result<Started, ExitReason> {
        let deadline = setup.ends_at;
        let live = matches!(
            component.kind,
            ComponentKind::Actor | ComponentKind::Handler
        )
        .then(|| {
            LiveGuard::track(
                &self.upgrades,
                &self.rt,
                component.name.clone(),
                component.version,
                self.registry.current_version(&component.name),
                setup.ctx.pid(),
            )
        });
        let store = self.stores.open(&component.name, setup).await?;
        Ok(Started {
            store,
            live,
            deadline,
        })
    }

    /// After a hand-over or an interrupted plugin call: the current version of `name`
    /// (which must be of `kind`) and a fresh store for it, taking over the process
    /// from `old`.
    ///
    /// # Errors
    /// The exit reason of a process that cannot continue.
    pub(crate) fn next_instance(
        &self,
        name: &str,
        old: ProcessStore,
        kind: ComponentKind,
    ) -> Result<(Arc<LoadedComponent>, ProcessStore), ExitReason> {
        let next = self
            .registry
            .component(name)
            .map_err(|e| upgrade::cannot_continue(name, &e.to_string()))?;
        if next.kind != kind {
            return Err(upgrade::cannot_continue(
                name,
                "its current version is another kind of component",
            ));
        }
        let store = self.stores.renew(name, old)?;
        Ok((next, store))
    }

    /// The process was ended for not handing over in time.
    pub(crate) fn timed_out(&self, live: &LiveGuard, component: &str) {
        live.timed_out(self.registry.current_version(component));
    }
}
