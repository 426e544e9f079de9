use std::time::Duration;

use rusm_otp::{Error, ExitReason, Message, Payload, Pid, Runtime};

use crate::run_process;

/// A process that waits forever.
fn idle(rt: &Runtime) -> Pid {
    rt.spawn(|ctx| async move {
        loop {
            ctx.recv().await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abnormal_exit_kills_linked_processes() {
    let rt = Runtime::new();
    let a = idle(&rt);
    let a_end = rt.watch(a);
    let (_b, b_end) = rt.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(a).unwrap();
        ExitReason::custom("fail")
    });
    assert_eq!(b_end.await, ExitReason::custom("fail"));
    assert_eq!(a_end.await, ExitReason::custom("fail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_exit_leaves_linked_processes_alone() {
    let rt = Runtime::new();
    let a = idle(&rt);
    let (_b, b_end) = rt.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(a).unwrap();
    });
    assert_eq!(b_end.await, ExitReason::Normal);
    // a is still alive and answers.
    let reason = run_process(&rt, move |ctx| async move {
        let m = ctx.monitor(a);
        ctx.exit(a, ExitReason::custom("stop"));
        let Message::Down(down) = ctx.recv().await else {
            panic!()
        };
        assert_eq!(down.monitor, m);
        down.reason
    })
    .await;
    assert_eq!(reason, ExitReason::custom("stop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_exit_turns_signals_into_messages() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        assert!(!ctx.trap_exit(true));
        let child = ctx.spawn_link(|_c| async { ExitReason::crashed("oops") });
        let Message::Exit(sig) = ctx.recv().await else {
            panic!()
        };
        assert_eq!((sig.from, sig.reason), (child, ExitReason::crashed("oops")));
        // Normal exits of linked processes arrive too while trapping.
        let child = ctx.spawn_link(|_c| async {});
        let Message::Exit(sig) = ctx.recv().await else {
            panic!()
        };
        assert_eq!((sig.from, sig.reason), (child, ExitReason::Normal));
        // exit/2 with any reason, even from a non-linked process, becomes a message.
        let me = ctx.pid();
        let sender = ctx.spawn(move |c| async move { c.exit(me, ExitReason::Shutdown) });
        let Message::Exit(sig) = ctx.recv().await else {
            panic!()
        };
        assert_eq!((sig.from, sig.reason), (sender, ExitReason::Shutdown));
        assert!(ctx.trap_exit(false));
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_cannot_be_trapped_but_killed_from_a_link_can() {
    let rt = Runtime::new();
    let trapper = rt.spawn(|ctx| async move {
        ctx.trap_exit(true);
        loop {
            ctx.recv().await;
        }
    });
    let end = rt.watch(trapper);
    rt.kill(trapper);
    assert_eq!(end.await, ExitReason::Killed);

    // A linked process that was killed sends `killed`, which a trapping process receives.
    let reason = run_process(&rt, |ctx| async move {
        ctx.trap_exit(true);
        let victim = ctx.spawn_link(|c| async move {
            loop {
                c.recv().await;
            }
        });
        ctx.kill(victim);
        let Message::Exit(sig) = ctx.recv().await else {
            panic!()
        };
        assert_eq!((sig.from, sig.reason), (victim, ExitReason::Killed));
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_normal_is_ignored_by_a_non_trapping_process() {
    let rt = Runtime::new();
    let target = rt.spawn(|ctx| async move {
        let msg = ctx.recv().await.into_data().unwrap();
        msg.payload.downcast::<u32>().unwrap();
    });
    let end = rt.watch(target);
    rt.exit(target, ExitReason::Normal);
    rt.send(target, Payload::value(1u32));
    assert_eq!(end.await, ExitReason::Normal);
    assert!(!rt.is_alive(target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_or_monitoring_a_dead_pid_yields_noproc_at_once() {
    let rt = Runtime::new();
    let dead = rt.spawn(|_c| async {});
    rt.watch(dead).await;
    let reason = run_process(&rt, move |ctx| async move {
        assert_eq!(ctx.link(dead), Err(Error::NoProc(dead)));
        let m = ctx.monitor(dead);
        let Some(Message::Down(down)) = ctx.recv_timeout(Duration::from_secs(5)).await else {
            panic!("no down")
        };
        assert_eq!(
            (down.monitor, down.pid, down.reason),
            (m, dead, ExitReason::NoProc)
        );
        // Never-existing pids behave the same.
        let ghost = Pid::from_raw(u64::MAX);
        assert_eq!(ctx.link(ghost), Err(Error::NoProc(ghost)));
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_stops_propagation_and_demonitor_stops_down() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let child = ctx.spawn_link(|_c| async move {
            rx.await.unwrap();
            ExitReason::custom("late")
        });
        let m = ctx.monitor(child);
        ctx.unlink(child);
        assert!(ctx.demonitor(m));
        assert!(!ctx.demonitor(m));
        let m2 = ctx.monitor(child);
        tx.send(()).unwrap();
        // Only the second monitor reports; we are not killed by the unlinked child.
        let Message::Down(down) = ctx.recv().await else {
            panic!()
        };
        assert_eq!(
            (down.monitor, down.reason),
            (m2, ExitReason::custom("late"))
        );
        assert!(ctx.recv_timeout(Duration::from_millis(20)).await.is_none());
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demonitor_flushes_a_waiting_down() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let (child, m) = ctx.spawn_monitor(|_c| async {});
        // Wait until the Down is in the mailbox without taking it.
        let watch = ctx.runtime().watch(child);
        watch.await;
        while ctx.mailbox_stats().len == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!ctx.demonitor(m), "already fired");
        assert_eq!(ctx.mailbox_stats().len, 0, "the waiting down was removed");
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_reaches_a_process_blocked_elsewhere() {
    let rt = Runtime::new();
    let sleeper = rt.spawn(|_ctx| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let end = rt.watch(sleeper);
    rt.kill(sleeper);
    assert_eq!(end.await, ExitReason::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_propagates_through_a_chain() {
    let rt = Runtime::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // a - b - c linked in a chain; c crashes, a and b follow.
    let reason = run_process(&rt, move |ctx| async move {
        ctx.trap_exit(true);
        let tx2 = tx.clone();
        let a = ctx.spawn_link(move |a| async move {
            let b = a.spawn_link(move |b| async move {
                let c = b.spawn_link(|_c| async { ExitReason::crashed("root cause") });
                tx2.send(c).unwrap();
                loop {
                    b.recv().await;
                }
            });
            tx.send(b).unwrap();
            loop {
                a.recv().await;
            }
        });
        let Message::Exit(sig) = ctx.recv().await else {
            panic!()
        };
        assert_eq!(
            (sig.from, sig.reason),
            (a, ExitReason::crashed("root cause"))
        );
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
    let b = rx.recv().await.unwrap();
    assert!(!rt.is_alive(b));
}
