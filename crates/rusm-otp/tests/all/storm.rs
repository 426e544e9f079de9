//! Restart storms: a supervisor with no practical intensity limit restarting a child
//! that crashes as soon as it starts. Stopping the node, or the supervisor, must still
//! end everything in bounded time, and the restarts are counted per supervisor.
//!
//! Each test runs on its own two-worker tokio runtime that is dropped in the
//! background, so a supervisor that never yields fails the test instead of hanging it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusm_otp::supervisor::{ChildSpec, Restart, Strategy, SupervisorSpec, supervise};
use rusm_otp::{Event, ExitReason, Message, Payload, Runtime, SpawnOptions};
use tokio::sync::Notify;

/// How long a test waits for shutdown before it fails.
const LIMIT: Duration = Duration::from_secs(20);
/// Restarts to wait for before stopping: the storm is well under way by then.
const STORM: u64 = 2_000;

/// Run `test` on a fresh two-worker runtime; the runtime is shut down in the background
/// afterwards so that a task stuck in a poll cannot hang the test binary.
fn on_runtime<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tokio_rt.block_on(test())));
    tokio_rt.shutdown_background();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A permanent child labelled `crasher` that crashes as soon as it runs.
fn crasher(id: &str) -> ChildSpec {
    ChildSpec::new(id, |ctx| {
        let options = SpawnOptions {
            link: true,
            label: Some("crasher".into()),
            ..SpawnOptions::default()
        };
        Ok(ctx
            .spawn_with(options, |_ctx| async {
                ExitReason::crashed("crasher: on purpose")
            })
            .pid)
    })
    .restart(Restart::Permanent)
}

/// A permanent child that waits until it is stopped.
fn steady(id: &str) -> ChildSpec {
    ChildSpec::worker(id, |ctx| async move {
        loop {
            ctx.recv().await;
        }
    })
}

/// A supervisor that gives up only after a billion restarts in a second.
fn storm_spec(strategy: Strategy) -> SupervisorSpec {
    SupervisorSpec::new(strategy).intensity(1_000_000_000, Duration::from_secs(1))
}

/// Count restarts on `rt`; the notify fires once `at_least` have happened.
fn count_restarts(rt: &Runtime, at_least: u64) -> Arc<Notify> {
    let reached = Arc::new(Notify::new());
    let count = Arc::new(AtomicU64::new(0));
    let notify = reached.clone();
    rt.add_observer(move |event| {
        if let Event::Restarted { .. } = event
            && count.fetch_add(1, Ordering::Relaxed) + 1 == at_least
        {
            notify.notify_one();
        }
    });
    reached
}

/// The notify fires once a crasher has ended after the node began to stop.
fn crash_while_stopping(rt: &Runtime) -> Arc<Notify> {
    let crashed = Arc::new(Notify::new());
    let notify = crashed.clone();
    let node = rt.clone();
    rt.add_observer(move |event| {
        if let Event::Exited {
            label: Some("crasher"),
            ..
        } = event
            && node.is_shutting_down()
        {
            notify.notify_one();
        }
    });
    crashed
}

async fn storm(reached: &Notify) {
    tokio::time::timeout(LIMIT, reached.notified())
        .await
        .expect("the supervisor restarts its crashing child");
}

/// Start `spec` as a root supervisor, let it storm, then shut the node down.
async fn node_shutdown_ends_the_storm(spec: SupervisorSpec) {
    let rt = Runtime::new();
    let reached = count_restarts(&rt, STORM);
    let options = SpawnOptions {
        label: Some("storm".into()),
        ..SpawnOptions::default()
    };
    let sup = rt.spawn_with(options, move |ctx| supervise(ctx, spec));
    storm(&reached).await;
    // The newest root, so the first to be told to stop: it ends only once a crasher has
    // ended after the node began to stop, so the supervisor always has a child to
    // restart while the node is stopping, before its own stop signal comes.
    let crashed = crash_while_stopping(&rt);
    let options = SpawnOptions {
        trap_exit: true,
        ..SpawnOptions::default()
    };
    rt.spawn_with(options, move |ctx| async move {
        ctx.recv().await;
        let _ = tokio::time::timeout(LIMIT, crashed.notified()).await;
    });
    // Every restart so far is counted for the supervisor that made it.
    let counted = rt.supervisor_restarts();
    assert_eq!(counted[0].supervisor, sup);
    assert_eq!(counted[0].label.as_deref(), Some("storm"));
    let sum: u64 = counted.iter().map(|s| s.restarts).sum();
    assert!(sum >= STORM, "{counted:?}");
    let ended = rt.watch(sup);
    tokio::time::timeout(LIMIT, rt.shutdown(Duration::from_secs(1)))
        .await
        .unwrap_or_else(|_| panic!("shutdown did not finish within {LIMIT:?}: {:?}", rt.stats()));
    assert_eq!(rt.process_count(), 0);
    assert_eq!(
        ended.await,
        ExitReason::Shutdown,
        "how the supervisor ended"
    );
    assert_eq!(rt.supervisor_restarts(), []);
}

#[test]
fn node_shutdown_ends_a_one_for_one_restart_storm() {
    on_runtime(|| {
        node_shutdown_ends_the_storm(storm_spec(Strategy::OneForOne).child(crasher("c")))
    });
}

#[test]
fn node_shutdown_ends_a_one_for_all_restart_storm() {
    on_runtime(|| {
        node_shutdown_ends_the_storm(
            storm_spec(Strategy::OneForAll)
                .child(steady("a"))
                .child(crasher("c"))
                .child(steady("b")),
        )
    });
}

#[test]
fn node_shutdown_ends_a_rest_for_one_restart_storm() {
    on_runtime(|| {
        node_shutdown_ends_the_storm(
            storm_spec(Strategy::RestForOne)
                .child(steady("a"))
                .child(crasher("c"))
                .child(steady("b")),
        )
    });
}

#[test]
fn a_nested_supervisor_in_a_storm_stops_when_the_node_does() {
    on_runtime(|| {
        node_shutdown_ends_the_storm(
            SupervisorSpec::new(Strategy::OneForOne)
                .child(steady("a"))
                .child(ChildSpec::supervisor(
                    "inner",
                    storm_spec(Strategy::OneForOne).child(crasher("c")),
                )),
        )
    });
}

/// A child whose first start succeeds and every later start fails at once, so the
/// supervisor restarts it without ever waiting for a message; `failing` is told once
/// `STORM` starts have failed.
fn fails_to_restart(id: &str, failing: Arc<Notify>) -> ChildSpec {
    let starts = Arc::new(AtomicU64::new(0));
    ChildSpec::new(id, move |ctx| {
        let n = starts.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            return Ok(ctx.spawn_link(|_ctx| async { ExitReason::crashed("crasher: on purpose") }));
        }
        if n == STORM {
            failing.notify_one();
        }
        Err(ExitReason::custom("cannot start"))
    })
}

#[test]
fn a_supervisor_told_to_stop_by_its_parent_stops_during_a_storm() {
    on_runtime(|| async {
        let rt = Runtime::new();
        let failing = Arc::new(Notify::new());
        let spec = storm_spec(Strategy::OneForOne)
            .child(steady("a"))
            .child(fails_to_restart("c", failing.clone()));
        let (sup_tx, sup_rx) = tokio::sync::oneshot::channel();
        let (parent, ended) = rt.spawn_watched(
            SpawnOptions {
                trap_exit: true,
                ..SpawnOptions::default()
            },
            move |ctx| async move {
                let sup = ctx.spawn_link(move |c| supervise(c, spec));
                let _ = sup_tx.send(sup);
                // Told when to stop the supervisor, then waits for it to end.
                ctx.recv_tag(1).await;
                ctx.exit(sup, ExitReason::Shutdown);
                loop {
                    if let Message::Exit(sig) = ctx.recv().await
                        && sig.from == sup
                    {
                        return sig.reason;
                    }
                }
            },
        );
        let sup = sup_rx.await.unwrap();
        tokio::time::timeout(LIMIT, failing.notified())
            .await
            .expect("the supervisor keeps restarting its child");
        rt.send_tagged(parent, 1, Payload::value(()));
        let reason = tokio::time::timeout(LIMIT, ended)
            .await
            .unwrap_or_else(|_| panic!("supervisor {sup} did not stop within {LIMIT:?}"));
        assert_eq!(reason, ExitReason::Shutdown);
        assert!(!rt.is_alive(sup));
        tokio::time::timeout(LIMIT, rt.shutdown(Duration::from_secs(1)))
            .await
            .expect("the node stops");
    });
}

#[test]
fn a_kill_ends_a_supervisor_restarting_without_pause() {
    on_runtime(|| async {
        let rt = Runtime::new();
        let failing = Arc::new(Notify::new());
        let spec = storm_spec(Strategy::OneForOne).child(fails_to_restart("c", failing.clone()));
        let sup = rt.spawn(move |ctx| supervise(ctx, spec));
        let ended = rt.watch(sup);
        tokio::time::timeout(LIMIT, failing.notified())
            .await
            .expect("the supervisor keeps restarting its child");
        rt.kill(sup);
        let reason = tokio::time::timeout(LIMIT, ended)
            .await
            .unwrap_or_else(|_| panic!("supervisor {sup} did not end within {LIMIT:?}"));
        assert_eq!(reason, ExitReason::Killed);
        assert_eq!(rt.supervisor_restarts(), []);
    });
}
