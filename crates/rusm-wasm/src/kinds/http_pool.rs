//! A reused HTTP instance: one rusm process whose instance serves up to `reuse`
//! requests in turn, for a pool of warm instances ([`HttpPool`](crate::HttpPool)).
//!
//! The process builds its store and instantiates the component once, then runs one
//! `handle` call per [`Job`] it is handed, each under the limits a fresh request would
//! have: the deadline counted from the job's start (the earlier of the request's and
//! the policy's), the policy's full fuel again, the memory the instance has (its limit
//! holds across requests, as for any long-lived process). After a call the process is
//! idle: its handle goes back on its pool's [`IdleWorkers`] and it waits for the next
//! job, or retires after `idle_timeout`. Any call that does not return normally (a
//! trap, the deadline, a kill) ends the process, so the next request gets a fresh
//! instance; so does a call that leaves an HTTP request, response or body of its own
//! in the store (see [`holds_http`]), so that nothing of one request outlives its
//! call, and the `reuse`-th call.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusm_otp::{ExitReason, Pid};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::body::{HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest,
    HostOutgoingResponse, HostResponseOutparam,
};

use crate::kinds::{Backend, HttpScheme, PooledBody, ResponseSender, Started};
use crate::preempt::in_guest;
use crate::registry::LoadedComponent;
use crate::state::ProcessState;
use crate::store::{ProcessSetup, exit_reason};

/// One request for a pooled instance.
pub(crate) struct Job {
    /// The request.
    pub(crate) request: hyper::Request<PooledBody>,
    /// Its scheme.
    pub(crate) scheme: HttpScheme,
    /// The request's own deadline, counted from the start of its call.
    pub(crate) deadline: Option<Duration>,
    /// Where the guest's response goes.
    pub(crate) respond: ResponseSender,
    /// How the call ended.
    pub(crate) done: oneshot::Sender<ExitReason>,
    /// The pool's permit for one request in flight, released once the instance is
    /// idle again (or gone).
    pub(crate) busy: OwnedSemaphorePermit,
    /// The instance's own handle, put back on the idle list after the call.
    pub(crate) handle: WorkerHandle,
}

/// How a pool reaches one of its instances.
pub(crate) struct WorkerHandle {
    /// The instance's process.
    pub(crate) pid: Pid,
    /// The component version it runs.
    pub(crate) version: u64,
    /// Its job queue (room for one).
    pub(crate) jobs: mpsc::Sender<Job>,
    /// Its exit reason, once it has ended.
    pub(crate) ended: tokio::sync::watch::Receiver<Option<ExitReason>>,
}

/// The idle instances of a pool, most recently used last.
#[derive(Default)]
pub(crate) struct IdleWorkers {
    list: Mutex<Vec<WorkerHandle>>,
}

impl IdleWorkers {
    /// The most recently idle instance, if any.
    pub(crate) fn pop(&self) -> Option<WorkerHandle> {
        self.lock().pop()
    }

    /// Drop every idle instance's handle: each retires when it sees its queue closed.
    pub(crate) fn clear(&self) {
        let drained: Vec<WorkerHandle> = std::mem::take(&mut *self.lock());
        drop(drained);
    }

    fn push(&self, handle: WorkerHandle) {
        self.lock().push(handle);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WorkerHandle>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a pooled instance keeps for its life.
pub(crate) struct WorkerPlan {
    /// Requests it serves before it retires (at least 1).
    pub(crate) reuse: u32,
    /// How long it waits idle for a job before it retires.
    pub(crate) idle_timeout: Duration,
    /// Its pool's idle list (gone with the pool).
    pub(crate) idle: Weak<IdleWorkers>,
    /// The pool's permit for one live instance, released after its store is dropped.
    pub(crate) instance: OwnedSemaphorePermit,
}

/// Whether the store still holds an HTTP request, response or body (incoming or
/// outgoing, with the streams that are their children) once a call has returned.
pub(crate) fn holds_http(state: &mut ProcessState) -> bool {
    state.table.iter_mut().any(|entry| {
        entry.is::<HostIncomingRequest>()
            || entry.is::<HostResponseOutparam>()
            || entry.is::<HostOutgoingResponse>()
            || entry.is::<HostIncomingBody>()
            || entry.is::<HostOutgoingBody>()
            || entry.is::<HostOutgoingRequest>()
            || entry.is::<HostFutureIncomingResponse>()
            || entry.is::<HostIncomingResponse>()
    })
}

/// The body of a pooled instance's process, starting with its first job.
pub(crate) async fn run_worker(
    backend: Arc<Backend>,
    component: Arc<LoadedComponent>,
    setup: ProcessSetup,
    mut jobs: mpsc::Receiver<Job>,
    first: Job,
    plan: WorkerPlan,
) -> ExitReason {
    let WorkerPlan {
        reuse,
        idle_timeout,
        idle,
        instance,
    } = plan;
    let pid = setup.ctx.pid();
    let (reason, store) = serve_jobs(
        &backend,
        &component,
        setup,
        &mut jobs,
        first,
        reuse,
        idle_timeout,
        &idle,
    )
    .await;
    // The store (its instance, its memory grant) goes before the pool's instance
    // permit, so a new instance never exists beside this one past the pool's bound.
    drop(store);
    drop(instance);
    tracing::debug!(%pid, component = %component.name, %reason, "pooled http instance retired");
    reason
}

/// Serve jobs until the instance retires: its exit reason, and its store to drop.
#[allow(clippy::too_many_arguments)]
async fn serve_jobs(
    backend: &Backend,
    component: &LoadedComponent,
    setup: ProcessSetup,
    jobs: &mut mpsc::Receiver<Job>,
    first: Job,
    reuse: u32,
    idle_timeout: Duration,
    idle: &Weak<IdleWorkers>,
) -> (ExitReason, Option<crate::store::ProcessStore>) {
    let Some(pre) = component.http_handler() else {
        let reason = ExitReason::crashed(format!(
            "component {:?} is not an HTTP handler",
            component.name
        ));
        let _ = first.done.send(reason.clone());
        return (reason, None);
    };
    let limits = setup.limits;
    let Started { mut store, .. } = match backend.start(component, setup).await {
        Ok(started) => started,
        Err(reason) => {
            let _ = first.done.send(reason.clone());
            return (reason, None);
        }
    };
    // Instantiation runs the component's start code: it counts against the first
    // request's deadline.
    let first_ends = limits.with_deadline(first.deadline).deadline_from_now();
    store.store.data_mut().ends_at = first_ends;
    let instantiate = in_guest(pre.instantiate_async(&mut store.store));
    let proxy = match first_ends {
        None => Some(instantiate.await),
        Some(at) => tokio::time::timeout_at(at, instantiate).await.ok(),
    };
    let proxy = match proxy {
        Some(Ok(proxy)) => proxy,
        other => {
            let reason = exit_reason(other.map(|r| r.map(|_| Ok(()))), store.store.data());
            let _ = first.done.send(reason.clone());
            return (reason, Some(store));
        }
    };
    let mut job = first;
    let mut served = 0u32;
    loop {
        let Job {
            request,
            scheme,
            deadline,
            respond,
            done,
            busy,
            handle,
        } = job;
        let s = &mut store.store;
        let ends_at = limits.with_deadline(deadline).deadline_from_now();
        if ends_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
            // No time left before the call starts (the wait took it all): the request
            // ends without touching the instance, which stays idle.
            drop((request, respond));
            let Some(list) = idle.upgrade() else {
                let _ = done.send(ExitReason::DeadlineExceeded);
                return (ExitReason::Normal, Some(store));
            };
            list.push(handle);
            drop(list);
            let _ = done.send(ExitReason::DeadlineExceeded);
            drop(busy);
            job = match next_job(jobs, idle_timeout).await {
                Some(next) => next,
                None => return (ExitReason::Normal, Some(store)),
            };
            continue;
        }
        s.data_mut().ends_at = ends_at;
        if let Some(full) = limits.fuel {
            let _ = s.set_fuel(full);
        }
        let resources = {
            let mut http = s.data_mut().http();
            http.new_incoming_request(scheme, request)
                .and_then(|req| Ok((req, http.new_response_outparam(respond)?)))
        };
        let (req, out) = match resources {
            Ok(pair) => pair,
            Err(e) => {
                let reason =
                    ExitReason::crashed(format!("cannot hand the request to the guest: {e:#}"));
                let _ = done.send(reason.clone());
                return (reason, Some(store));
            }
        };
        let call = in_guest(
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *s, req, out),
        );
        let outcome = match ends_at {
            None => Some(call.await),
            Some(at) => tokio::time::timeout_at(at, call).await.ok(),
        };
        if !matches!(outcome, Some(Ok(()))) {
            let reason = exit_reason(outcome.map(|r| r.map(Ok)), s.data());
            let _ = done.send(reason.clone());
            return (reason, Some(store));
        }
        served += 1;
        if holds_http(s.data_mut()) {
            let reason = ExitReason::custom(
                "the handler kept an HTTP request, response or body past its call; its instance is retired",
            );
            let _ = done.send(reason.clone());
            return (reason, Some(store));
        }
        if served >= reuse {
            let _ = done.send(ExitReason::Normal);
            return (ExitReason::Normal, Some(store));
        }
        // Idle again: on the list first, then the permit, so the next request that
        // gets the permit finds this instance.
        s.data_mut().ends_at = None;
        let Some(list) = idle.upgrade() else {
            let _ = done.send(ExitReason::Normal);
            return (ExitReason::Normal, Some(store));
        };
        list.push(handle);
        drop(list);
        let _ = done.send(ExitReason::Normal);
        drop(busy);
        job = match next_job(jobs, idle_timeout).await {
            Some(next) => next,
            None => return (ExitReason::Normal, Some(store)),
        };
    }
}

/// The next job of an idle instance: `None` when its pool is gone (its handles with
/// it), or when none came within `idle_timeout` (then the queue is closed first, so a
/// job handed over meanwhile is still served, and none after).
async fn next_job(jobs: &mut mpsc::Receiver<Job>, idle_timeout: Duration) -> Option<Job> {
    match tokio::time::timeout(idle_timeout, jobs.recv()).await {
        Ok(next) => next,
        Err(_) => {
            jobs.close();
            jobs.try_recv().ok()
        }
    }
}
