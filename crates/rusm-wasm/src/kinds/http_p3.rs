//! A `wasi:http/handler@0.3` service instance: one rusm process whose instance serves
//! up to `concurrency` requests at once, for a pool ([`HttpPool`](crate::HttpPool)).
//!
//! The process builds its store and instantiates the component once, then runs the
//! store's concurrent event loop: every [`P3Job`] handed to it becomes a call of the
//! guest's async `handle`, running beside the others in flight. Each request has its
//! own deadline (the earlier of the request's and the policy's, counted from when the
//! instance takes it): past it, the request ends with
//! [`ExitReason::DeadlineExceeded`] and the instance takes no new request, finishes
//! the others and retires. The instance's memory and everything it holds are bounded
//! by its policy for its life, as for any long-lived process; each call it takes
//! refills the policy's fuel.
//!
//! A trap ends the instance: the requests in flight on it fail with the trap as their
//! reason, and the next request gets a fresh instance. A guest that stops yielding to
//! the event loop (a busy loop) keeps the per-request deadlines from being seen; the
//! process then ends at the latest deadline of its requests in flight.
//!
//! The instance retires once it has taken `reuse` requests and they are done, when it
//! has had none in flight for `idle_timeout`, or when its pool drops its handle (the
//! pool is gone, or the component was reloaded).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rusm_otp::ExitReason;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tokio::time::Instant;
use wasmtime::AsContextMut;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{ExpirationError, Prepared, Proxy};

use crate::kinds::{Backend, HttpErrorCode, PooledBody, ResponseSender, Started};
use crate::preempt::in_guest;
use crate::registry::LoadedComponent;
use crate::state::ProcessState;
use crate::store::{ProcessSetup, exit_reason};

/// One request for a service instance.
pub(crate) struct P3Job {
    /// The request (its URI carries the scheme and authority the guest sees).
    pub(crate) request: hyper::Request<PooledBody>,
    /// The request's own deadline, counted from when the instance takes it.
    pub(crate) deadline: Option<Duration>,
    /// Where the guest's response goes.
    pub(crate) respond: ResponseSender,
    /// How the request ended.
    pub(crate) done: oneshot::Sender<ExitReason>,
    /// The pool's permit for one request in flight.
    pub(crate) busy: OwnedSemaphorePermit,
    /// The instance's permit for one of its `concurrency` slots.
    pub(crate) slot: OwnedSemaphorePermit,
}

/// What a service instance keeps for its life.
pub(crate) struct P3Plan {
    /// Requests it takes in all before it retires (at least 1).
    pub(crate) reuse: u32,
    /// How long it waits with no request in flight before it retires.
    pub(crate) idle_timeout: Duration,
    /// The pool's permit for one live instance, released after its store is dropped.
    pub(crate) instance: OwnedSemaphorePermit,
}

/// How one request's call ended, seen from the event loop.
enum Ended {
    /// The guest answered (or failed the request with an error code); the instance
    /// carries on.
    Answered,
    /// The request passed its deadline; the instance takes no more.
    Expired,
    /// The instance cannot go on (a trap); its reason.
    Retire(wasmtime::Error),
}

/// The body of a service instance's process, starting with its first job.
pub(crate) async fn run_p3_worker(
    backend: Arc<Backend>,
    component: Arc<LoadedComponent>,
    setup: ProcessSetup,
    jobs: mpsc::UnboundedReceiver<P3Job>,
    first: P3Job,
    plan: P3Plan,
) -> ExitReason {
    let P3Plan {
        reuse,
        idle_timeout,
        instance,
    } = plan;
    let pid = setup.ctx.pid();
    let (reason, store) = serve_p3(
        &backend,
        &component,
        setup,
        jobs,
        first,
        reuse,
        idle_timeout,
    )
    .await;
    // The store (its instance, its memory grant) goes before the pool's instance
    // permit, so a new instance never exists beside this one past the pool's bound.
    drop(store);
    drop(instance);
    tracing::debug!(%pid, component = %component.name, %reason, "http service instance retired");
    reason
}

/// Instantiate, then serve jobs until the instance retires: its exit reason, and its
/// store to drop.
async fn serve_p3(
    backend: &Backend,
    component: &LoadedComponent,
    setup: ProcessSetup,
    mut jobs: mpsc::UnboundedReceiver<P3Job>,
    first: P3Job,
    reuse: u32,
    idle_timeout: Duration,
) -> (ExitReason, Option<crate::store::ProcessStore>) {
    let Some(pre) = component.http_service() else {
        let reason = ExitReason::crashed(format!(
            "component {:?} is not a wasi:http 0.3 service",
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
    store.store.data_mut().ends_at = None;
    let instantiate = in_guest(pre.instantiate_async(&mut store.store));
    let service = match first_ends {
        None => Some(instantiate.await),
        Some(at) => tokio::time::timeout_at(at, instantiate).await.ok(),
    };
    let proxy = match service {
        Some(Ok(service)) => Proxy::P3(service),
        other => {
            let reason = exit_reason(other.map(|r| r.map(|_| Ok(()))), store.store.data());
            let _ = first.done.send(reason.clone());
            return (reason, Some(store));
        }
    };
    let fuel = limits.fuel;
    // The latest deadline of the requests in flight, for the guard outside the event
    // loop (which a guest that never yields to it keeps from running).
    let (latest_tx, mut latest_rx) = watch::channel::<Option<Instant>>(None);
    let proxy = &proxy;
    let event_loop = async |accessor: &Accessor<ProcessState>| -> wasmtime::Result<()> {
        let mut in_flight = FuturesUnordered::new();
        let mut ends: Vec<Instant> = Vec::new();
        let mut taken = 0u32;
        // Until the queue is closed and drained: closing it (the `reuse`-th request,
        // an expired request, the idle timeout) still serves what was handed over.
        let mut queue_open = true;
        // Whether a request passed its deadline (the instance then retires as soon as
        // the others are done, without waiting for its guest's tasks).
        let mut expired = false;
        let mut pending_first = Some(first);
        let mut idle_since: Option<Instant> = None;
        loop {
            let job = if let Some(job) = pending_first.take() {
                Some(job)
            } else {
                let mut idle = pin!(sleep_until_opt(
                    idle_since.map(|since| since + idle_timeout)
                ));
                let next = std::future::poll_fn(|cx| {
                    if let Poll::Ready(Some(ended)) = in_flight.poll_next_unpin(cx) {
                        return Poll::Ready(Step::Ended(ended));
                    }
                    if queue_open && let Poll::Ready(job) = jobs.poll_recv(cx) {
                        return Poll::Ready(match job {
                            Some(job) => Step::Job(job),
                            None => Step::Closed,
                        });
                    }
                    if !queue_open && in_flight.is_empty() {
                        return Poll::Ready(Step::Closed);
                    }
                    if idle.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Step::Idle);
                    }
                    Poll::Pending
                });
                match next.await {
                    Step::Job(job) => Some(job),
                    Step::Ended((ended, at)) => {
                        if let Some(i) = ends.iter().position(|e| Some(*e) == at) {
                            ends.swap_remove(i);
                        }
                        latest_tx.send_replace(ends.iter().max().copied());
                        match ended {
                            Ended::Answered => {}
                            // No new requests; the others finish first.
                            Ended::Expired => {
                                expired = true;
                                jobs.close();
                            }
                            Ended::Retire(error) => return Err(error),
                        }
                        if in_flight.is_empty() {
                            idle_since = Some(Instant::now());
                        }
                        None
                    }
                    Step::Closed => {
                        queue_open = false;
                        if in_flight.is_empty() {
                            if !expired {
                                // Responses returned by calls may still be streaming
                                // their bodies from guest tasks: let those finish
                                // (up to the idle timeout) before the store goes.
                                let _ = tokio::time::timeout(
                                    idle_timeout,
                                    std::future::poll_fn(|cx| {
                                        accessor.poll_no_interesting_tasks(cx)
                                    }),
                                )
                                .await;
                            }
                            return Ok(());
                        }
                        None
                    }
                    Step::Idle => {
                        jobs.close();
                        idle_since = None;
                        None
                    }
                }
            };
            let Some(job) = job else { continue };
            let P3Job {
                request,
                deadline,
                respond,
                done,
                busy,
                slot,
            } = job;
            let ends_at = limits.with_deadline(deadline).deadline_from_now();
            if let Some(at) = ends_at {
                ends.push(at);
                latest_tx.send_replace(ends.iter().max().copied());
            }
            taken += 1;
            idle_since = None;
            if taken >= reuse {
                jobs.close();
            }
            let (tx, rx) = futures_channel::oneshot::channel();
            let prepared = accessor.with(|mut access| {
                let mut store = access.as_context_mut();
                if let Some(full) = fuel {
                    let _ = store.set_fuel(full);
                }
                Prepared::new(store, proxy, request, ProcessState::http, tx)
            });
            in_flight.push(async move {
                let prepared = match prepared {
                    Ok(prepared) => prepared,
                    Err(error) => {
                        let reason = ExitReason::crashed(format!(
                            "cannot hand the request to the guest: {error:#}"
                        ));
                        let _ = done.send(reason);
                        drop((respond, busy, slot));
                        return (Ended::Answered, ends_at);
                    }
                };
                let expiration = async move {
                    match ends_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let ended = match prepared.run(accessor, expiration).await {
                    Err(error) => Ended::Retire(error),
                    Ok(_) => match rx.await {
                        Ok(Ok(response)) => {
                            let _ = respond.send(Ok(response));
                            let _ = done.send(ExitReason::Normal);
                            Ended::Answered
                        }
                        Ok(Err(error)) if error.downcast_ref::<ExpirationError>().is_some() => {
                            let _ = done.send(ExitReason::DeadlineExceeded);
                            Ended::Expired
                        }
                        Ok(Err(error)) => match error
                            .downcast_ref::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>()
                        {
                            Some(code) => {
                                let _ = respond.send(Err(HttpErrorCode::InternalError(Some(
                                    format!("{code:?}"),
                                ))));
                                let _ = done.send(ExitReason::Normal);
                                Ended::Answered
                            }
                            None => Ended::Retire(error),
                        },
                        Err(_) => Ended::Retire(wasmtime::Error::msg(
                            "the service call ended without an outcome",
                        )),
                    },
                };
                // A request that retires the instance leaves `done` to the instance's
                // exit reason (see `done_future`).
                drop((busy, slot));
                (ended, ends_at)
            });
        }
    };
    let outcome = {
        let mut run = pin!(in_guest(store.store.run_concurrent(event_loop)));
        loop {
            let latest = *latest_rx.borrow_and_update();
            tokio::select! {
                outcome = run.as_mut() => break Some(outcome),
                changed = latest_rx.changed() => {
                    if changed.is_err() {
                        // The event loop is gone; its outcome is next.
                        break Some(run.as_mut().await);
                    }
                }
                () = sleep_until_opt(latest) => break None,
            }
        }
    };
    let outcome = outcome.map(|r| r.and_then(|inner| inner).map(Ok));
    let reason = exit_reason(outcome, store.store.data());
    (reason, Some(store))
}

/// What the event loop waits for next. A step lives only until the loop matches it,
/// so the job travels by value rather than in a box allocated per request.
#[allow(clippy::large_enum_variant)]
enum Step {
    Job(P3Job),
    Ended((Ended, Option<Instant>)),
    Closed,
    Idle,
}

/// Sleep until `at`, or forever when there is none.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
