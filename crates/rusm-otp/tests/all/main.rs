//! Integration tests of the actor core, one module per area.

mod events;
mod invariants;
mod links;
mod mailbox;
mod registry_timers;
mod spawn;
mod storm;
mod supervisor;

use std::future::Future;

use rusm_otp::{Context, ExitReason, IntoExitReason, Runtime};

/// Run `body` as a process and return its exit reason.
pub async fn run_process<F, Fut>(rt: &Runtime, body: F) -> ExitReason
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoExitReason,
{
    let (_pid, watch) = rt.spawn_watched(Default::default(), body);
    watch.await
}
