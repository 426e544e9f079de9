use std::collections::HashSet;
use std::time::Duration;

use rusm_otp::{ExitReason, Message, Payload, Pid, Runtime};

use crate::run_process;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_are_unique_and_readable() {
    let rt = Runtime::new();
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let pid = rt.spawn(|_ctx| async {});
        assert!(seen.insert(pid), "{pid} reused");
        assert!(pid.to_string().starts_with("<0.") && pid.to_string().ends_with('>'));
    }
    // Pids of ended processes are not handed out again.
    let last = *seen.iter().max().unwrap();
    rt.shutdown(Duration::from_secs(1)).await;
    assert!(rt.spawn(|_ctx| async {}) > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_result_becomes_exit_reason() {
    let rt = Runtime::new();
    assert_eq!(run_process(&rt, |_ctx| async {}).await, ExitReason::Normal);
    assert_eq!(
        run_process(&rt, |_ctx| async { ExitReason::custom("done") }).await,
        ExitReason::custom("done")
    );
    assert_eq!(
        run_process(&rt, |_ctx| async { Err::<(), _>(ExitReason::Shutdown) }).await,
        ExitReason::Shutdown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_ends_only_that_process() {
    let rt = Runtime::new();
    let bystander = rt.spawn(|ctx| async move {
        let msg = ctx.recv().await.into_data().unwrap();
        msg.payload
            .downcast::<u32>()
            .unwrap()
            .eq(&7)
            .then_some(())
            .ok_or(ExitReason::custom("wrong message"))
    });
    let reason = run_process(&rt, |_ctx| async {
        if true {
            panic!("boom {}", 42);
        }
    })
    .await;
    assert_eq!(reason, ExitReason::crashed("panicked: boom 42"));
    // A panic while building the body future is caught too.
    let (_pid, end) = rt.spawn_watched(Default::default(), |_ctx| -> std::future::Ready<()> {
        panic!("early")
    });
    assert_eq!(end.await, ExitReason::crashed("panicked: early"));

    let watch = rt.watch(bystander);
    rt.send(bystander, Payload::value(7u32));
    assert_eq!(watch.await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_link_and_spawn_monitor_from_a_process() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let (child, mref) = ctx.spawn_monitor(|_c| async { ExitReason::custom("bye") });
        match ctx.recv().await {
            Message::Down(down) => {
                assert_eq!((down.pid, down.monitor), (child, mref));
                assert_eq!(down.reason, ExitReason::custom("bye"));
            }
            other => panic!("unexpected {other:?}"),
        }
        ctx.trap_exit(true);
        let linked = ctx.spawn_link(|_c| async { ExitReason::crashed("x") });
        match ctx.recv().await {
            Message::Exit(sig) => {
                assert_eq!(sig.from, linked);
                assert_eq!(sig.reason, ExitReason::crashed("x"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(ctx.runtime().parent_of(ctx.pid()), None);
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_is_recorded() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let me = ctx.pid();
        let child = ctx.spawn_monitor(move |c| async move {
            if c.parent() == Some(me) {
                ExitReason::Normal
            } else {
                ExitReason::custom("wrong parent")
            }
        });
        let down = ctx.recv().await;
        let Message::Down(down) = down else { panic!() };
        assert_eq!(down.pid, child.0);
        down.reason
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_shutdown_stops_everything() {
    let rt = Runtime::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..50u32 {
        let tx = tx.clone();
        rt.spawn(move |ctx| async move {
            tx.send(i).unwrap();
            loop {
                ctx.recv().await;
            }
        });
    }
    // A process that ignores shutdown is killed after the grace period. It says when
    // it traps exits, so the shutdown cannot reach it before.
    let trapping = tx.clone();
    let stubborn = rt.spawn(move |ctx| async move {
        ctx.trap_exit(true);
        trapping.send(u32::MAX).unwrap();
        loop {
            ctx.recv().await;
        }
    });
    for _ in 0..51 {
        rx.recv().await.unwrap();
    }
    let stubborn_end = rt.watch(stubborn);
    rt.shutdown(Duration::from_millis(50)).await;
    assert_eq!(rt.process_count(), 0);
    assert_eq!(stubborn_end.await, ExitReason::Killed);
    // Nothing starts after shutdown.
    let late = rt.spawn(|_ctx| async {});
    assert!(!rt.is_alive(late));
    assert_eq!(rt.watch(late).await, ExitReason::NoProc);
    let _ = Pid::NODE;
}
