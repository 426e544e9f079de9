//! `entry` actors and commands: the body instantiates the component and runs its
//! entry point (`rusm:runtime/entry.run` or `wasi:cli/run`) under the process's
//! deadline; an actor that hands over continues on the current version in a fresh
//! store of the same process.

use std::sync::Arc;

use rusm_otp::ExitReason;

use crate::kind::ComponentKind;
use crate::kinds::{Backend, Started};
use crate::preempt::in_guest;
use crate::registry::{LoadedComponent, Prepared};
use crate::store::{ProcessSetup, exit_reason};
use crate::upgrade::{self, HandOver, InstanceEnd};

/// The body of an actor or command process.
pub(crate) async fn run(
    backend: Arc<Backend>,
    component: Arc<LoadedComponent>,
    setup: ProcessSetup,
    init: Vec<u8>,
) -> ExitReason {
    let Started {
        mut store,
        live,
        deadline,
    } = match backend.start(&component, setup).await {
        Ok(started) => started,
        Err(reason) => return reason,
    };
    let mut component = component;
    // Each turn runs one instance; a hand-over starts the next one on the current
    // version in a fresh store, under the same rusm process.
    let outcome = loop {
        let wasm = &mut store.store;
        let run = in_guest(async {
            match &component.prepared {
                Prepared::Actor(pre) => {
                    async {
                        let actor = pre.instantiate_async(&mut *wasm).await?;
                        actor.rusm_runtime_entry().call_run(&mut *wasm, &init).await
                    }
                    .await
                }
                Prepared::Command(pre) => {
                    async {
                        let command = pre.instantiate_async(&mut *wasm).await?;
                        let result = command.wasi_cli_run().call_run(&mut *wasm).await?;
                        Ok(result.map_err(|()| "command returned an error".to_owned()))
                    }
                    .await
                }
                Prepared::Http(_) | Prepared::HttpP3(_) => Err(wasmtime::Error::msg(
                    "an HTTP handler component has no entry point to run",
                )),
                Prepared::Plugin(_) => Err(wasmtime::Error::msg(
                    "a plugin component has no entry point to run",
                )),
                Prepared::Handler(_) => Err(wasmtime::Error::msg(
                    "a handler-style component runs through its handler exports",
                )),
            }
        });
        let end = upgrade::run_instance(run, deadline, live.as_ref()).await;
        match (end, &live) {
            (InstanceEnd::Overdue, Some(live)) => {
                backend.timed_out(live, &component.name);
                let reason = ExitReason::UpgradeTimeout;
                tracing::debug!(pid = %store.store.data().ctx.pid(), component = %component.name, %reason, "wasm process ended");
                return reason;
            }
            (InstanceEnd::Returned(Some(Err(err))), Some(live)) if err.is::<HandOver>() => {
                let hand_over = err
                    .downcast::<HandOver>()
                    .expect("the error was checked to be a hand-over");
                match backend.next_instance(&component.name, store, ComponentKind::Actor) {
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
    let reason = exit_reason(outcome, store.store.data());
    tracing::debug!(pid = %store.store.data().ctx.pid(), component = %component.name, %reason, "wasm process ended");
    reason
}
