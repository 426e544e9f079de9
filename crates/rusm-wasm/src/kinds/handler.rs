//! Handler-style actors: components of the `handler-actor` world, which export
//! `rusm:runtime/handler` (`init`, `handle`, `terminate`, `upgrade-state`) instead of
//! a `run` entry point.
//!
//! The host owns the process's loop. It waits for the next message natively, on the
//! rusm-otp mailbox, with no guest code on any stack, and calls `handle` only when a
//! message is there. Its guest calls run outside any [`StackScope`]: the store's fiber
//! stack stays open for the store's life. (Closing it between calls, with a [`StackScope`], is
//! not safe while the engine enables the component model's concurrency, as it does
//! for wasi:http 0.3: the store may keep a suspended fiber on that stack between calls
//! and resume it when it is dropped, to unwind it.)
//!
//! Everything that belongs to the rusm-otp process works as for `entry` actors: links,
//! monitors and trap-exit (an `exit` message is handed to `handle`), kill (while idle
//! the body future is simply dropped with the store; in the middle of a call the epoch
//! yield lets the drop happen within a tick), policies (the same store set-up and
//! rights checks) and upgrades (answered by the host: `upgrade-state` on the old
//! version, `init` with that state on the new one, in a fresh store of the same
//! process).

use std::sync::Arc;

use rusm_otp::ExitReason;
use wasmtime::Store;

#[cfg(doc)]
use crate::arena::StackScope;
use crate::bindings::{
    HandlerActor, Next, message_to_wit, reason_from_wit, reason_text, reason_to_wit,
};
use crate::kind::ComponentKind;
use crate::kinds::{Backend, Started};
use crate::preempt::in_guest;
use crate::registry::{LoadedComponent, Prepared};
use crate::state::ProcessState;
use crate::store::{ProcessSetup, ProcessStore, exit_reason};
use crate::upgrade::{self, HandOver, LiveGuard};

/// The body of a handler-style process.
pub(crate) async fn run(
    backend: Arc<Backend>,
    component: Arc<LoadedComponent>,
    setup: ProcessSetup,
    init: Vec<u8>,
) -> ExitReason {
    let Started {
        store,
        live,
        deadline,
    } = match backend.start(&component, setup).await {
        Ok(started) => started,
        Err(reason) => return reason,
    };
    let pid = store.store.data().ctx.pid();
    let name = component.name.clone();
    let body = serve(&backend, component, store, init, live.as_ref());
    let limited = async {
        match deadline {
            None => body.await,
            Some(at) => tokio::time::timeout_at(at, body)
                .await
                .unwrap_or(ExitReason::DeadlineExceeded),
        }
    };
    let reason = match &live {
        None => limited.await,
        // A request the host could not answer in time (the guest is busy inside a
        // callback) ends the process, as for `entry` actors.
        Some(live) => tokio::select! {
            biased;
            reason = limited => reason,
            () = live.overdue() => {
                backend.timed_out(live, &name);
                ExitReason::UpgradeTimeout
            }
        },
    };
    tracing::debug!(%pid, component = %name, %reason, "wasm process ended");
    reason
}

/// Run `call` (a guest call on the handler's store), and turn a failure into the
/// process's exit reason.
///
/// Not an `async fn`: the call is boxed before anything awaits, so the futures of the
/// host loop that waits on it stay small (a live actor keeps its loop's future for
/// its whole life, sized for its largest state).
fn scoped<T>(
    call: impl Future<Output = wasmtime::Result<T>>,
) -> impl Future<Output = Result<T, CallFailure>> {
    let call = Box::pin(in_guest(call));
    async move { call.await.map_err(CallFailure) }
}

/// The guest trapped, exited or was refused something.
struct CallFailure(wasmtime::Error);

impl CallFailure {
    fn reason(self, store: &Store<ProcessState>) -> ExitReason {
        exit_reason(Some(Err(self.0)), store.data())
    }
}

/// Instantiate the handler and call its `init`.
async fn start(
    component: &LoadedComponent,
    store: &mut Store<ProcessState>,
    init: &[u8],
    handed_over: Option<&[u8]>,
) -> Result<HandlerActor, ExitReason> {
    let Prepared::Handler(pre) = &component.prepared else {
        return Err(upgrade::cannot_continue(
            &component.name,
            "it is not a handler-style actor",
        ));
    };
    let actor = match scoped(pre.instantiate_async(&mut *store)).await {
        Ok(actor) => actor,
        Err(failure) => return Err(failure.reason(store)),
    };
    let started = scoped(
        actor
            .rusm_runtime_handler()
            .call_init(&mut *store, init, handed_over),
    )
    .await;
    match started {
        Ok(Ok(())) => Ok(actor),
        Ok(Err(text)) => Err(ExitReason::custom(reason_text(text))),
        Err(failure) => Err(failure.reason(store)),
    }
}

/// The host's loop: the next message, then `handle`, until the guest stops or fails.
async fn serve(
    backend: &Backend,
    mut component: Arc<LoadedComponent>,
    mut store: ProcessStore,
    init: Vec<u8>,
    live: Option<&LiveGuard>,
) -> ExitReason {
    let mut actor = match start(&component, &mut store.store, &init, None).await {
        Ok(actor) => actor,
        Err(reason) => return reason,
    };
    loop {
        let msg = store.store.data().ctx.recv().await;
        if let Some(signal) = upgrade::signal_of(&msg) {
            let pid = store.store.data().ctx.pid();
            let upgrades = &backend.upgrades;
            let (Some(live), Some(_)) = (live, upgrades.deliverable(pid, signal)) else {
                // Already answered.
                continue;
            };
            let generation = upgrades.pending(pid).unwrap_or_default();
            let state = match scoped(
                actor
                    .rusm_runtime_handler()
                    .call_upgrade_state(&mut store.store),
            )
            .await
            {
                Ok(state) => state,
                Err(failure) => return failure.reason(&store.store),
            };
            let (next, next_store) =
                match backend.next_instance(&component.name, store, ComponentKind::Handler) {
                    Ok(next) => next,
                    Err(reason) => return reason,
                };
            live.upgraded(
                next.version,
                HandOver {
                    state: state.clone(),
                    generation,
                },
            );
            component = next;
            store = next_store;
            actor = match start(&component, &mut store.store, &init, Some(&state)).await {
                Ok(actor) => actor,
                Err(reason) => return reason,
            };
            continue;
        }
        let Some(msg) = message_to_wit(msg) else {
            continue;
        };
        let handled = scoped(
            actor
                .rusm_runtime_handler()
                .call_handle(&mut store.store, &msg),
        )
        .await;
        match handled {
            Ok(Next::Wait) => {}
            Ok(Next::Stop(reason)) => {
                let ending = reason_from_wit(reason);
                let wit = reason_to_wit(&ending);
                return match scoped(
                    actor
                        .rusm_runtime_handler()
                        .call_terminate(&mut store.store, &wit),
                )
                .await
                {
                    Ok(()) => ending,
                    Err(failure) => failure.reason(&store.store),
                };
            }
            Err(failure) => return failure.reason(&store.store),
        }
    }
}
