use std::time::Duration;

use rusm_otp::{Error, ExitReason, Message, Payload, Runtime};

use crate::run_process;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_whereis_unregister_and_cleanup() {
    let rt = Runtime::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let holder = rt.spawn(|ctx| async move {
        ctx.register("counter").unwrap();
        rx.await.unwrap();
    });
    while rt.whereis("counter").is_none() {
        tokio::task::yield_now().await;
    }
    assert_eq!(rt.whereis("counter"), Some(holder));
    assert_eq!(rt.registered_name(holder).as_deref(), Some("counter"));
    let other = rt.spawn(|ctx| async move {
        loop {
            ctx.recv().await;
        }
    });
    assert_eq!(
        rt.register("counter", other),
        Err(Error::NameTaken {
            name: "counter".into(),
            holder
        })
    );
    rt.register("other", other).unwrap();
    assert_eq!(
        rt.register("second", other),
        Err(Error::AlreadyNamed {
            pid: other,
            name: "other".into()
        })
    );
    assert_eq!(rt.unregister("other"), Some(other));
    assert_eq!(rt.whereis("other"), None);
    rt.register("second", other).unwrap();

    let end = rt.watch(holder);
    tx.send(()).unwrap();
    end.await;
    assert_eq!(
        rt.whereis("counter"),
        None,
        "names are removed when their process ends"
    );
    rt.register("counter", other).unwrap_err(); // other already has a name
    let dead = rt.spawn(|_c| async {});
    rt.watch(dead).await;
    assert_eq!(rt.register("x", dead), Err(Error::NoProc(dead)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_from_a_process_only_removes_its_own_name() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        assert_eq!(
            ctx.unregister("nobody"),
            Err(Error::NotRegistered("nobody".into()))
        );
        ctx.register("me").unwrap();
        assert_eq!(ctx.whereis("me"), Some(ctx.pid()));
        ctx.unregister("me").unwrap();
        assert_eq!(ctx.whereis("me"), None);
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(start_paused = true)]
async fn send_after_delivers_and_cancel_prevents_delivery() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let me = ctx.pid();
        let start = tokio::time::Instant::now();
        ctx.send_after(me, 1, Payload::value(1u32), Duration::from_secs(10));
        let cancelled = ctx.send_after(me, 2, Payload::value(2u32), Duration::from_secs(5));
        assert!(ctx.cancel_timer(cancelled));
        assert!(!ctx.cancel_timer(cancelled), "a timer is cancelled once");
        let got = ctx.recv().await.into_data().unwrap();
        assert_eq!(got.tag, 1);
        assert!(start.elapsed() >= Duration::from_secs(10));
        // Nothing else arrives: the cancelled timer never fires.
        assert!(ctx.recv_timeout(Duration::from_secs(60)).await.is_none());
        // A fired timer cannot be cancelled.
        let fired = ctx.send_after(me, 3, Payload::value(3u32), Duration::from_secs(1));
        let Message::Data(d) = ctx.recv().await else {
            panic!()
        };
        assert_eq!(d.tag, 3);
        assert!(!ctx.cancel_timer(fired));
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(start_paused = true)]
async fn only_the_process_that_set_a_timer_can_cancel_it() {
    let rt = Runtime::new();
    let (timer_tx, timer_rx) = tokio::sync::oneshot::channel();
    let owner = rt.spawn(|ctx| async move {
        let me = ctx.pid();
        let timer = ctx.send_after(me, 7, Payload::value(7u32), Duration::from_secs(5));
        timer_tx.send(timer).unwrap();
        // The timer still fires: the other process's cancel was refused.
        let got = ctx.recv().await.into_data().unwrap();
        assert_eq!(got.tag, 7);
        assert_eq!(ctx.timer_count(), 0, "a fired timer is no longer counted");
    });
    let watch = rt.watch(owner);
    let timer = timer_rx.await.unwrap();
    let thief = run_process(&rt, move |ctx| async move {
        assert!(
            !ctx.cancel_timer(timer),
            "another process cancelled the timer"
        );
    })
    .await;
    assert_eq!(thief, ExitReason::Normal);
    assert_eq!(watch.await, ExitReason::Normal);
}

#[tokio::test(start_paused = true)]
async fn a_processs_timers_end_with_it_and_with_their_target() {
    let rt = Runtime::new();
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel();
    let probe = rt.spawn(move |ctx| async move {
        loop {
            let _ = probe_tx.send(ctx.recv().await);
        }
    });
    // A process that sets an hour-long timer for the probe and ends: the timer goes
    // with it, so nothing ever arrives.
    let setter = run_process(&rt, move |ctx| async move {
        ctx.send_after(probe, 1, Payload::value(1u32), Duration::from_secs(3600));
        assert_eq!(ctx.timer_count(), 1);
    })
    .await;
    assert_eq!(setter, ExitReason::Normal);
    // A timer set by the host for a process that then ends is gone too: cancelling it
    // finds nothing.
    let (target_tx, target_rx) = tokio::sync::oneshot::channel::<()>();
    let target = rt.spawn(|_ctx| async move {
        let _ = target_rx.await;
    });
    let for_target = rt.send_after(target, 2, Payload::value(2u32), Duration::from_secs(3600));
    let watch = rt.watch(target);
    drop(target_tx);
    assert_eq!(watch.await, ExitReason::Normal);
    assert!(
        !rt.cancel_timer(for_target),
        "the target's timer outlived it"
    );
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert!(
        probe_rx.try_recv().is_err(),
        "an ended process's timer fired"
    );
}
