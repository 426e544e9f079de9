//! [`HttpPool`]: warm instances of one HTTP handler, each serving up to `reuse`
//! requests in turn ([`crate::kinds::http_pool`] is an instance's process), or, for a
//! `wasi:http` 0.3 service, up to `concurrency` at once ([`crate::kinds::http_p3`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use rusm_otp::{ExitReason, MailboxConfig, SpawnOptions};
use rusm_policy::Policy;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::{NodeShared, WasmNode};
use crate::error::SpawnError;
use crate::extensions::Extensions;
use crate::kinds::PooledBody;
use crate::kinds::http::{HttpDone, HttpInvocation};
use crate::kinds::http_p3::{P3Job, P3Plan, run_p3_worker};
use crate::kinds::http_pool::{IdleWorkers, Job, WorkerHandle, WorkerPlan, run_worker};
use crate::kinds::{BodyFuture, Granted};
use crate::kinds::{HttpBodyError, HttpScheme};
use crate::registry::LoadedComponent;

/// How long an idle pooled instance waits for a request before it retires, unless
/// [`HttpPoolConfig::idle_timeout`] says otherwise.
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(60);

/// How many instances a pool holds at most, unless [`HttpPoolConfig::instances`]
/// says otherwise.
pub const DEFAULT_POOL_INSTANCES: usize = 16;

/// How many requests one instance of a `wasi:http` 0.3 service serves at once,
/// unless [`HttpPoolConfig::concurrency`] says otherwise.
pub const DEFAULT_P3_CONCURRENCY: u32 = 16;

/// How a pool of reused instances of one HTTP handler behaves.
#[derive(Debug, Clone)]
pub struct HttpPoolConfig {
    /// How many requests one instance serves before it retires (at least 1; 1 is a
    /// fresh instance per request, kept warm between them): one after another for a
    /// `wasi:http` 0.2 handler, up to [`HttpPoolConfig::concurrency`] at a time for a
    /// 0.3 service.
    pub reuse: u32,
    /// For a component exporting `wasi:http/handler@0.3`: how many requests one
    /// instance serves at once (at least 1). Ignored for a 0.2 handler, whose
    /// instances serve one request at a time.
    pub concurrency: u32,
    /// How many instances the pool holds at once, busy and idle together (at least
    /// 1): the most requests it serves at once. Each holds one of the node's
    /// instances and its policy's `memory` from the node's budget for its life.
    pub instances: usize,
    /// How long an idle instance waits for its next request before it retires.
    pub idle_timeout: Duration,
    /// The policy every instance runs under; `None` means the node's default.
    pub policy: Option<Arc<Policy>>,
}

impl HttpPoolConfig {
    /// A pool whose instances serve up to `reuse` requests each, with the default
    /// size ([`DEFAULT_POOL_INSTANCES`]) and idle timeout ([`DEFAULT_POOL_IDLE`]),
    /// under the node's default policy.
    pub fn new(reuse: u32) -> HttpPoolConfig {
        HttpPoolConfig {
            reuse,
            concurrency: DEFAULT_P3_CONCURRENCY,
            instances: DEFAULT_POOL_INSTANCES,
            idle_timeout: DEFAULT_POOL_IDLE,
            policy: None,
        }
    }
}

/// How to run one request on a pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpPoolRequest {
    /// A wall-clock deadline for the request's call, counted from when an instance
    /// takes it (the earlier of this and the policy's own `deadline` limit applies).
    /// When it passes the instance is ended with [`ExitReason::DeadlineExceeded`].
    pub deadline: Option<Duration>,
    /// Whether the request came over TLS (the scheme the guest sees).
    pub https: bool,
    /// How long to wait for an instance when all of the pool's are busy.
    pub wait: Duration,
}

/// Warm instances of one HTTP handler, each serving up to
/// [`HttpPoolConfig::reuse`] requests in turn; made by [`WasmNode::http_pool`].
///
/// Every instance is a rusm process (one pid for all the requests it serves) whose
/// store is built and instantiated once. Each request's call runs under the
/// limits a fresh instance would have: its own deadline, the policy's full fuel
/// again; the instance's memory (and everything it holds, from timers to children)
/// is bounded by its policy for its whole life, as for any long-lived process. An
/// instance retires — its store dropped, the next request getting a fresh one —
/// after its `reuse`-th request, after any call that does not return normally (a
/// trap, the deadline, a kill), after a call that leaves an HTTP request, response
/// or body in its store, when it has been idle for `idle_timeout`, and when its
/// component is reloaded (a request never runs on an older version than the
/// current one). Global state in the guest carries from one request to the next
/// only within one instance.
///
/// At most [`HttpPoolConfig::instances`] instances are alive at once (a retiring
/// one's store is dropped before another takes its place); a request that finds
/// them all busy waits up to [`HttpPoolRequest::wait`], then fails with
/// [`SpawnError::Unavailable`]. Cheap to clone; the idle instances retire when the
/// last clone is dropped.
#[derive(Clone)]
pub struct HttpPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    node: Arc<NodeShared>,
    component: String,
    policy: Arc<Policy>,
    reuse: u32,
    size: usize,
    idle_timeout: Duration,
    /// One permit per request being served.
    busy: Arc<Semaphore>,
    /// One permit per live instance, held until its store is dropped.
    instances: Arc<Semaphore>,
    idle: Arc<IdleWorkers>,
    started: AtomicU64,
    /// For a `wasi:http` 0.3 service: its live instances and how many requests each
    /// takes at once.
    p3: Option<P3Workers>,
}

/// The instances of a `wasi:http` 0.3 service's pool.
struct P3Workers {
    concurrency: usize,
    /// Live instances, oldest first; one leaves the list when it stops taking
    /// requests (its queue closed) or its version is not the current one.
    list: parking_lot::Mutex<Vec<P3Handle>>,
}

/// How a pool reaches one of its service instances.
struct P3Handle {
    pid: rusm_otp::Pid,
    version: u64,
    jobs: mpsc::UnboundedSender<P3Job>,
    /// One permit per request it may take now.
    slots: Arc<Semaphore>,
    ended: watch::Receiver<Option<ExitReason>>,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        self.idle.clear();
        if let Some(p3) = &self.p3 {
            p3.list.lock().clear();
        }
    }
}

impl std::fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPool")
            .field("component", &self.inner.component)
            .field("reuse", &self.inner.reuse)
            .field("instances", &self.inner.size)
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl WasmNode {
    /// A pool of reused instances of the loaded component `component`, which must
    /// export `wasi:http/incoming-handler` (see [`WasmNode::serves_http`]). No
    /// instance starts until a request needs one.
    ///
    /// # Errors
    /// [`SpawnError::UnknownComponent`] and [`SpawnError::NotHttpHandler`] as for
    /// [`WasmNode::serve_http`]; [`SpawnError::NotPermitted`] when `reuse` or
    /// `instances` is 0.
    pub fn http_pool(
        &self,
        component: &str,
        config: HttpPoolConfig,
    ) -> Result<HttpPool, SpawnError> {
        let node = &self.shared;
        let loaded = node.backend.registry.component(component)?;
        if !loaded.serves_http() {
            return Err(SpawnError::NotHttpHandler(component.to_owned()));
        }
        if config.reuse == 0 || config.instances == 0 || config.concurrency == 0 {
            return Err(SpawnError::NotPermitted(format!(
                "a pool of {component:?} needs reuse, instances and concurrency of at least 1 (reuse {}, instances {}, concurrency {})",
                config.reuse, config.instances, config.concurrency
            )));
        }
        let p3 = loaded.http_service().is_some().then(|| P3Workers {
            concurrency: config.concurrency as usize,
            list: parking_lot::Mutex::new(Vec::new()),
        });
        let in_flight = match &p3 {
            Some(p3) => config.instances.saturating_mul(p3.concurrency),
            None => config.instances,
        };
        let policy = config.policy.unwrap_or_else(|| node.default_policy());
        Ok(HttpPool {
            inner: Arc::new(PoolInner {
                node: Arc::clone(node),
                component: component.to_owned(),
                policy,
                reuse: config.reuse,
                size: config.instances,
                idle_timeout: config.idle_timeout,
                busy: Arc::new(Semaphore::new(in_flight.min(Semaphore::MAX_PERMITS))),
                instances: Arc::new(Semaphore::new(config.instances)),
                idle: Arc::new(IdleWorkers::default()),
                started: AtomicU64::new(0),
                p3,
            }),
        })
    }
}

/// A request's parts while it looks for an instance.
struct Pending {
    request: hyper::Request<PooledBody>,
    scheme: HttpScheme,
    deadline: Option<Duration>,
    respond: crate::kinds::ResponseSender,
    done: oneshot::Sender<ExitReason>,
    busy: OwnedSemaphorePermit,
}

impl Pending {
    fn job(self, handle: WorkerHandle) -> Job {
        Job {
            request: self.request,
            scheme: self.scheme,
            deadline: self.deadline,
            respond: self.respond,
            done: self.done,
            busy: self.busy,
            handle,
        }
    }

    fn back(job: Job) -> Pending {
        Pending {
            request: job.request,
            scheme: job.scheme,
            deadline: job.deadline,
            respond: job.respond,
            done: job.done,
            busy: job.busy,
        }
    }
}

impl HttpPool {
    /// Serve `request` on one of the pool's instances: an idle one, or a new one
    /// when none is idle and the pool has room.
    ///
    /// The request's URI needs an authority or a `Host` header (the guest sees it as
    /// the request's authority).
    ///
    /// # Errors
    /// [`SpawnError::Unavailable`] when every instance stays busy for
    /// `options.wait`, or a new instance's policy does not fit the node's memory
    /// budget now; [`SpawnError::UnknownComponent`] when the component was removed;
    /// [`SpawnError::NotPermitted`] when this node cannot honour the pool's policy.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future before it resolves hands nothing to an
    /// instance.
    pub async fn serve<B>(
        &self,
        request: hyper::Request<B>,
        options: HttpPoolRequest,
    ) -> Result<HttpInvocation, SpawnError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpBodyError>,
    {
        let pool = &self.inner;
        let waited = tokio::time::Instant::now();
        let busy = match tokio::time::timeout(options.wait, pool.busy.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            _ => return Err(pool.full()),
        };
        let (respond, response) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        let mut pending = Pending {
            request: request.map(|body| body.map_err(Into::into).boxed_unsync()),
            scheme: if options.https {
                HttpScheme::Https
            } else {
                HttpScheme::Http
            },
            deadline: options.deadline,
            respond,
            done,
            busy,
        };
        let current = pool.node.backend.registry.current_version(&pool.component);
        if let Some(p3) = &pool.p3 {
            return pool
                .serve_p3(
                    p3,
                    pending,
                    current,
                    options.wait.saturating_sub(waited.elapsed()),
                )
                .await
                .map(|(pid, ended)| {
                    HttpInvocation::new(pid, response, done_future(done_rx, ended))
                });
        }
        while let Some(handle) = pool.idle.pop() {
            if handle.version != current {
                // An older version: dropping its handle retires it.
                continue;
            }
            let pid = handle.pid;
            let ended = handle.ended.clone();
            let jobs = handle.jobs.clone();
            match jobs.try_send(pending.job(handle)) {
                Ok(()) => {
                    return Ok(HttpInvocation::new(
                        pid,
                        response,
                        done_future(done_rx, ended),
                    ));
                }
                // It retired meanwhile (idle too long, or killed): the next one.
                Err(
                    mpsc::error::TrySendError::Closed(job) | mpsc::error::TrySendError::Full(job),
                ) => pending = Pending::back(job),
            }
        }
        let left = options.wait.saturating_sub(waited.elapsed());
        let instance = match pool.instances.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // Every instance is busy or retiring; a retiring one's permit comes back
            // once its store is dropped.
            Err(_) => {
                match tokio::time::timeout(left, pool.instances.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(pool.full()),
                }
            }
        };
        let (pid, ended) = pool.start(pending, instance)?;
        Ok(HttpInvocation::new(
            pid,
            response,
            done_future(done_rx, ended),
        ))
    }

    /// Retire the idle instances now (each drops its store); busy ones go back to
    /// the pool as usual. A server calls it when it stops.
    pub fn retire_idle(&self) {
        self.inner.idle.clear();
        if let Some(p3) = &self.inner.p3 {
            // Dropping a handle closes its instance's queue: it finishes what it has
            // in flight, then retires.
            let drained: Vec<P3Handle> = std::mem::take(&mut *p3.list.lock());
            drop(drained);
        }
    }

    /// Whether the pool's component is a `wasi:http` 0.3 service (its instances serve
    /// up to [`HttpPool::concurrency`] requests at once).
    pub fn is_p3(&self) -> bool {
        self.inner.p3.is_some()
    }

    /// How many requests one instance serves at once: the configured concurrency for
    /// a `wasi:http` 0.3 service, 1 for a 0.2 handler.
    pub fn concurrency(&self) -> usize {
        self.inner.p3.as_ref().map_or(1, |p3| p3.concurrency)
    }

    /// The pool's instances alive now (busy, idle, or retiring).
    pub fn live(&self) -> usize {
        self.inner.size - self.inner.instances.available_permits()
    }

    /// The pool's requests being served now.
    pub fn busy(&self) -> usize {
        self.inner.size - self.inner.busy.available_permits()
    }

    /// How many instances the pool has started since it was made.
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::Relaxed)
    }

    /// The most instances the pool holds at once.
    pub fn instances(&self) -> usize {
        self.inner.size
    }

    /// How many requests one instance serves before it retires.
    pub fn reuse(&self) -> u32 {
        self.inner.reuse
    }
}

impl PoolInner {
    /// Hand `pending` to a service instance with a free slot, or to a new one when
    /// none has one and the pool has room (waiting up to `left` for a retiring
    /// instance to go).
    async fn serve_p3(
        &self,
        p3: &P3Workers,
        pending: Pending,
        current: u64,
        left: Duration,
    ) -> Result<(rusm_otp::Pid, watch::Receiver<Option<ExitReason>>), SpawnError> {
        let mut job = P3Job {
            request: pending.request,
            deadline: pending.deadline,
            respond: pending.respond,
            done: pending.done,
            busy: pending.busy,
            slot: Arc::new(Semaphore::new(1))
                .try_acquire_owned()
                .map_err(|_| self.full())?,
        };
        if matches!(pending.scheme, HttpScheme::Https) {
            set_scheme(&mut job.request, http::uri::Scheme::HTTPS);
        } else {
            set_scheme(&mut job.request, http::uri::Scheme::HTTP);
        }
        {
            let mut list = p3.list.lock();
            // Instances of an older version, and those that stopped taking requests,
            // leave the list (an older one then finishes and retires).
            list.retain(|w| w.version == current && !w.jobs.is_closed());
            for worker in list.iter() {
                let Ok(slot) = worker.slots.clone().try_acquire_owned() else {
                    continue;
                };
                job.slot = slot;
                match worker.jobs.send(job) {
                    Ok(()) => return Ok((worker.pid, worker.ended.clone())),
                    Err(mpsc::error::SendError(back)) => job = back,
                }
            }
        }
        let instance = match self.instances.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                match tokio::time::timeout(left, self.instances.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(self.full()),
                }
            }
        };
        let slots = Arc::new(Semaphore::new(p3.concurrency));
        job.slot = slots.clone().try_acquire_owned().map_err(|_| self.full())?;
        let handle = self.start_p3(job, instance, Arc::clone(&slots))?;
        let found = (handle.pid, handle.ended.clone());
        p3.list.lock().push(handle);
        Ok(found)
    }

    /// Start a new service instance whose first request is `first`.
    fn start_p3(
        &self,
        first: P3Job,
        instance: OwnedSemaphorePermit,
        slots: Arc<Semaphore>,
    ) -> Result<P3Handle, SpawnError> {
        let (loaded, granted, options) = self.prepare(|c| c.http_service().is_some())?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(None);
        let plan = P3Plan {
            reuse: self.reuse,
            idle_timeout: self.idle_timeout,
            instance,
        };
        let version = loaded.version;
        let backend = Arc::clone(&self.node.backend);
        let body = move |ctx: rusm_otp::Context| -> BodyFuture {
            let setup = granted.setup(ctx, Extensions::new());
            Box::pin(run_p3_worker(backend, loaded, setup, queue, first, plan))
        };
        let pid = self.launch(options, body, ended_tx);
        Ok(P3Handle {
            pid,
            version,
            jobs,
            slots,
            ended,
        })
    }

    /// What every instance of the pool starts from: its component, checked to be the
    /// kind the pool serves (`serves`), its policy's grant within the component's
    /// counts, and its process options.
    fn prepare(
        &self,
        serves: fn(&LoadedComponent) -> bool,
    ) -> Result<(Arc<LoadedComponent>, Granted, SpawnOptions), SpawnError> {
        let loaded = self.node.backend.registry.component(&self.component)?;
        if !serves(&loaded) {
            return Err(SpawnError::NotHttpHandler(self.component.clone()));
        }
        let granted = self.node.grant(Arc::clone(&self.policy), None)?;
        super::check_counts(&loaded, &granted.limits)?;
        let options = NodeShared::core_options(
            &loaded,
            &granted,
            MailboxConfig::default(),
            false,
            false,
            false,
        );
        Ok((loaded, granted, options))
    }

    /// Spawn an instance's process, publish its exit reason on `ended`, count it.
    fn launch(
        &self,
        options: SpawnOptions,
        body: impl FnOnce(rusm_otp::Context) -> BodyFuture + Send + 'static,
        ended: watch::Sender<Option<ExitReason>>,
    ) -> rusm_otp::Pid {
        let (pid, exit) = self.node.backend.rt.spawn_watched(options, body);
        tokio::spawn(async move {
            let reason = exit.await;
            let _ = ended.send(Some(reason));
        });
        self.started.fetch_add(1, Ordering::Relaxed);
        pid
    }

    fn full(&self) -> SpawnError {
        SpawnError::Unavailable(format!(
            "all {} instances of the pool for {:?} are busy",
            self.size, self.component
        ))
    }

    /// Start a new instance whose first request is `pending`.
    fn start(
        &self,
        pending: Pending,
        instance: OwnedSemaphorePermit,
    ) -> Result<(rusm_otp::Pid, watch::Receiver<Option<ExitReason>>), SpawnError> {
        let (loaded, granted, options) = self.prepare(|c| c.http_handler().is_some())?;
        let (jobs, queue) = mpsc::channel(1);
        let (ended_tx, ended) = watch::channel(None);
        let plan = WorkerPlan {
            reuse: self.reuse,
            idle_timeout: self.idle_timeout,
            idle: Arc::downgrade(&self.idle),
            instance,
        };
        let version = loaded.version;
        let backend = Arc::clone(&self.node.backend);
        let handle_ended = ended.clone();
        let body = move |ctx: rusm_otp::Context| -> BodyFuture {
            let handle = WorkerHandle {
                pid: ctx.pid(),
                version,
                jobs,
                ended: handle_ended,
            };
            let first = pending.job(handle);
            let setup = granted.setup(ctx, Extensions::new());
            Box::pin(run_worker(backend, loaded, setup, queue, first, plan))
        };
        let pid = self.launch(options, body, ended_tx);
        Ok((pid, ended))
    }
}

/// The end of a pooled request's call: what its instance said, or, when the instance
/// went away without saying (killed), the instance's exit reason.
fn done_future(
    done: oneshot::Receiver<ExitReason>,
    mut ended: watch::Receiver<Option<ExitReason>>,
) -> HttpDone {
    HttpDone::of(async move {
        match done.await {
            Ok(reason) => reason,
            Err(_) => match ended.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone().unwrap_or(ExitReason::NoProc),
                Err(_) => ExitReason::NoProc,
            },
        }
    })
}

/// Give `request`'s URI the scheme the guest sees (it keeps its own authority, or
/// takes the `Host` header's).
fn set_scheme(request: &mut hyper::Request<PooledBody>, scheme: http::uri::Scheme) {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    let mut parts = request.uri().clone().into_parts();
    if parts.authority.is_none() {
        parts.authority = host;
    }
    if parts.authority.is_none() {
        return;
    }
    parts.scheme = Some(scheme);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}
