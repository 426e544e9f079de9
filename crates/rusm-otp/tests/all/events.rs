//! Lifecycle events told to observers, and the node's counters.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusm_otp::supervisor::{ChildSpec, Strategy, SupervisorSpec, supervise};
use rusm_otp::{Event, ExitReason, Pid, Runtime, SpawnOptions};

/// An owned copy of an [`Event`], for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Spawned(Pid, Option<Pid>, Option<String>),
    Exited(Pid, Option<String>, ExitReason),
    Restarted(Pid, String, Pid),
}

fn record(rt: &Runtime) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    rt.add_observer(move |event| {
        let owned = match *event {
            Event::Spawned { pid, parent, label } => {
                Seen::Spawned(pid, parent, label.map(str::to_owned))
            }
            Event::Exited { pid, label, reason } => {
                Seen::Exited(pid, label.map(str::to_owned), reason.clone())
            }
            Event::Restarted {
                supervisor,
                child,
                pid,
            } => Seen::Restarted(supervisor, child.to_owned(), pid),
            _ => return,
        };
        sink.lock().push(owned);
    });
    seen
}

#[tokio::test]
async fn observers_see_spawns_and_exits_with_labels_and_reasons() {
    let rt = Runtime::new();
    let seen = record(&rt);
    let options = SpawnOptions {
        label: Some("worker".into()),
        ..SpawnOptions::default()
    };
    let (parent, watch) = rt.spawn_watched(options, |ctx| async move {
        let child = ctx.spawn_monitor(|_ctx| async { ExitReason::custom("bye") });
        ctx.recv().await;
        child.0
    });
    assert_eq!(watch.await, ExitReason::Normal);
    let seen = seen.lock().clone();
    let child = seen
        .iter()
        .find_map(|s| match s {
            Seen::Spawned(pid, Some(p), None) if *p == parent => Some(*pid),
            _ => None,
        })
        .expect("the child's spawn was seen");
    let at = |wanted: &Seen| seen.iter().position(|s| s == wanted).unwrap();
    let parent_spawned = at(&Seen::Spawned(parent, None, Some("worker".into())));
    let child_spawned = at(&Seen::Spawned(child, Some(parent), None));
    let child_exited = at(&Seen::Exited(child, None, ExitReason::custom("bye")));
    let parent_exited = at(&Seen::Exited(
        parent,
        Some("worker".into()),
        ExitReason::Normal,
    ));
    assert!(parent_spawned < child_spawned);
    assert!(child_spawned < child_exited);
    assert!(child_exited < parent_exited);
}

#[tokio::test]
async fn observers_are_told_of_each_registration_once_the_name_resolves() {
    let rt = Runtime::new();
    let (tx, mut told) = tokio::sync::mpsc::unbounded_channel();
    let observer_rt = rt.clone();
    rt.add_observer(move |event| {
        if let Event::Registered { name, pid } = *event {
            // Already resolvable when told.
            let _ = tx.send((name.to_owned(), pid, observer_rt.whereis(name)));
        }
    });
    let (first, _) = rt.spawn_watched(SpawnOptions::default(), |ctx| async move {
        ctx.recv().await;
    });
    let (second, _) = rt.spawn_watched(SpawnOptions::default(), |ctx| async move {
        ctx.recv().await;
    });
    rt.register("server", first).unwrap();
    assert_eq!(
        bounded(told.recv()).await,
        Some(("server".to_owned(), first, Some(first)))
    );
    // Registering the name it holds again, or a name another holds, tells nothing.
    rt.register("server", first).unwrap();
    rt.register("server", second).unwrap_err();
    rt.register("other", second).unwrap();
    assert_eq!(
        bounded(told.recv()).await,
        Some(("other".to_owned(), second, Some(second)))
    );
    assert!(told.try_recv().is_err());
}

#[tokio::test]
async fn stats_count_exits_by_kind_restarts_and_the_mailbox_high_water_mark() {
    let rt = Runtime::new();
    let seen = record(&rt);
    // Told after the process left the table (so after `process_count` fell).
    let (exit_tx, mut exits) = tokio::sync::mpsc::unbounded_channel();
    rt.add_observer(move |event| {
        if let Event::Exited { pid, .. } = *event {
            let _ = exit_tx.send(pid);
        }
    });
    let before = rt.stats();
    assert_eq!(before.exits.total(), 0);
    assert_eq!(before.restarts, 0);

    // A process that lets 50 messages pile up, then ends.
    let (piler, piled) = rt.spawn_watched(SpawnOptions::default(), |ctx| async move {
        ctx.recv_tag(99).await;
    });
    for i in 0..50u64 {
        rt.send(piler, rusm_otp::Payload::value(i));
    }
    rt.send_tagged(piler, 99, rusm_otp::Payload::value(()));
    assert_eq!(piled.await, ExitReason::Normal);

    // A supervised child that crashes twice, then stays up.
    let crashes = Arc::new(Mutex::new(0u32));
    let count = crashes.clone();
    let (up_tx, mut up) = tokio::sync::mpsc::unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(10))
        .child(ChildSpec::worker("flaky", move |ctx| {
            let count = count.clone();
            let up_tx = up_tx.clone();
            async move {
                let crash = {
                    let mut n = count.lock();
                    *n += 1;
                    *n <= 2
                };
                if crash {
                    return ExitReason::crashed("flaky");
                }
                let _ = up_tx.send(());
                ctx.recv().await;
                ExitReason::Normal
            }
        }));
    let sup = rt.spawn(move |ctx| supervise(ctx, spec));
    bounded(up.recv()).await.expect("the third start stays up");
    assert_eq!(*crashes.lock(), 3);
    let stopped = rt.watch(sup);
    rt.kill(sup);
    assert_eq!(bounded(stopped).await, ExitReason::Killed);
    // The supervisor's end takes its child with it; each exit is told after it left.
    while rt.process_count() > 0 {
        bounded(exits.recv())
            .await
            .expect("the observer is installed");
    }

    let stats = rt.stats();
    assert_eq!(stats.restarts, 2, "two crashes, two restarts");
    assert_eq!(stats.exits.get("crashed"), 2);
    assert!(stats.exits.get("normal") >= 1);
    assert!(stats.mailbox_high_water >= 51, "{stats:?}");
    assert_eq!(stats.exits.total(), stats.exited);
    let restarts: Vec<_> = seen
        .lock()
        .iter()
        .filter(|s| matches!(s, Seen::Restarted(s, child, _) if *s == sup && child == "flaky"))
        .cloned()
        .collect();
    assert_eq!(restarts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupters_hear_every_signal_that_ends_a_process_and_no_other() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = Runtime::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    rt.add_interrupter(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let idle = || {
        rt.spawn(|ctx| async move {
            ctx.recv().await;
        })
    };
    // A kill and an untrapped abnormal exit signal each end a process: one call each.
    let killed = idle();
    let end = rt.watch(killed);
    rt.kill(killed);
    assert_eq!(end.await, ExitReason::Killed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let exited = idle();
    let end = rt.watch(exited);
    rt.exit(exited, ExitReason::custom("stop"));
    assert_eq!(end.await, ExitReason::custom("stop"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A normal exit signal from another is ignored, and a trapped one is a message:
    // neither ends the process, so neither interrupts.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let trapping = rt.spawn(move |ctx| async move {
        ctx.trap_exit(true);
        let _ = ready_tx.send(());
        let _ = got_tx.send(ctx.recv().await);
        ctx.recv().await;
    });
    ready_rx.await.unwrap();
    let plain = idle();
    rt.exit(plain, ExitReason::Normal);
    rt.exit(trapping, ExitReason::custom("trapped"));
    assert!(matches!(got_rx.await.unwrap(), rusm_otp::Message::Exit(_)));
    assert!(rt.is_alive(plain) && rt.is_alive(trapping));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Fails the test instead of hanging when `future` takes more than 30 s.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("done within 30 s")
}
