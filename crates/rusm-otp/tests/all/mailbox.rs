use std::time::Duration;

use rusm_otp::{
    ExitReason, MailboxConfig, Message, Overflow, Payload, Runtime, SendErrorKind, SpawnOptions,
};

use crate::run_process;

fn num(msg: Message) -> u32 {
    msg.into_data().unwrap().payload.downcast::<u32>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_dead_pid_is_dropped_and_try_send_hands_it_back() {
    let rt = Runtime::new();
    let dead = rt.spawn(|_ctx| async {});
    rt.watch(dead).await;
    rt.send(dead, Payload::value(1u32)); // no panic, no error
    let err = rt
        .try_send_tagged(dead, 0, Payload::value(5u32))
        .unwrap_err();
    assert_eq!(err.kind, SendErrorKind::NoProc);
    assert_eq!(err.payload.downcast::<u32>().unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_timeout_returns_none_and_keeps_waiting_messages() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        assert!(ctx.recv_timeout(Duration::from_millis(20)).await.is_none());
        ctx.send_tagged(ctx.pid(), 1, Payload::value(1u32));
        assert!(
            ctx.recv_tag_timeout(2, Duration::from_millis(20))
                .await
                .is_none()
        );
        assert_eq!(
            num(ctx.recv_timeout(Duration::from_secs(5)).await.unwrap()),
            1
        );
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_receives_take_what_is_queued_without_waiting_and_keep_order() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        assert!(ctx.try_recv().is_none());
        assert!(ctx.try_recv_tag(2).is_none());
        for (tag, n) in [(1, 10u32), (2, 20), (1, 11), (3, 30)] {
            ctx.send_tagged(ctx.pid(), tag, Payload::value(n));
        }
        let twenty = ctx.try_recv_tag(2).unwrap();
        assert_eq!(twenty.payload.downcast::<u32>().unwrap(), 20);
        let thirty = ctx
            .try_recv_match(|m| matches!(m, Message::Data(d) if d.tag == 3))
            .unwrap();
        assert_eq!(num(thirty), 30);
        assert!(ctx.try_recv_tag(2).is_none());
        // The rest keep their order.
        assert_eq!(num(ctx.try_recv().unwrap()), 10);
        assert_eq!(num(ctx.try_recv().unwrap()), 11);
        assert!(ctx.try_recv().is_none());
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_receive_keeps_order_of_unmatched() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        for i in 0..10u32 {
            ctx.send_tagged(ctx.pid(), u64::from(i % 3), Payload::value(i));
        }
        // By tag.
        let twos: Vec<u32> = [0; 3].iter().map(|_| 0).collect();
        let mut got = twos;
        for slot in &mut got {
            *slot = ctx.recv_tag(2).await.payload.downcast::<u32>().unwrap();
        }
        assert_eq!(got, vec![2, 5, 8]);
        // By predicate.
        let m = ctx.recv_match(|m| m.tag() == Some(1)).await;
        assert_eq!(num(m), 1);
        // The rest, in arrival order.
        let mut rest = Vec::new();
        while let Some(m) = ctx.recv_timeout(Duration::from_millis(1)).await {
            rest.push(num(m));
        }
        assert_eq!(rest, vec![0, 3, 4, 6, 7, 9]);
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_receive_waits_for_a_later_match() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let me = ctx.pid();
        ctx.spawn(move |c| async move {
            for i in 0..100u32 {
                c.send_tagged(me, 0, Payload::value(i));
            }
            c.send_tagged(me, 9, Payload::value(999u32));
        });
        assert_eq!(
            ctx.recv_tag(9).await.payload.downcast::<u32>().unwrap(),
            999
        );
        assert_eq!(ctx.mailbox_stats().len, 100);
        let first = ctx.recv().await;
        assert_eq!(num(first), 0);
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

/// Repeated selective receives over a long mailbox stay linear: the mailbox counts the
/// messages it shows to receives, and that count must grow with the messages taken, not
/// with their product with the mailbox length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_selective_receive_over_a_large_mailbox_is_not_quadratic() {
    const N: u32 = 100_000;
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        // N messages tagged 1, then N tagged 2: every tag-2 receive has N messages ahead.
        for i in 0..N {
            ctx.send_tagged(ctx.pid(), 1, Payload::value(i));
        }
        for i in 0..N {
            ctx.send_tagged(ctx.pid(), 2, Payload::value(i));
        }
        for i in 0..N {
            assert_eq!(ctx.recv_tag(2).await.payload.downcast::<u32>().unwrap(), i);
        }
        for i in 0..N {
            assert_eq!(num(ctx.recv().await), i);
        }
        let stats = ctx.mailbox_stats();
        assert_eq!(stats.len, 0);
        // About one examination per message taken, plus one pass to build the tag index;
        // a scanning implementation would need N * N = 10^10.
        assert!(
            stats.examined <= u64::from(5 * N),
            "examined {}",
            stats.examined
        );
        assert_eq!(stats.high_water, 2 * N as usize);
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_waiting_predicate_receive_examines_each_message_once() {
    let rt = Runtime::new();
    let reason = run_process(&rt, |ctx| async move {
        let me = ctx.pid();
        // A feeder sends many non-matching messages one at a time, then the match.
        ctx.spawn(move |c| async move {
            for i in 0..2000u32 {
                c.send(me, Payload::value(i));
                tokio::task::yield_now().await;
            }
            c.send_tagged(me, 5, Payload::value(0u32));
        });
        let mut shown = 0u64;
        ctx.recv_match(|m| {
            shown += 1;
            m.tag() == Some(5)
        })
        .await;
        assert_eq!(
            shown, 2001,
            "each message is shown to the predicate exactly once"
        );
    })
    .await;
    assert_eq!(reason, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mailbox_drops_newest_but_never_system_messages() {
    let rt = Runtime::new();
    let options = SpawnOptions {
        mailbox: MailboxConfig {
            capacity: Some(3),
            overflow: Overflow::DropNewest,
            ..MailboxConfig::default()
        },
        trap_exit: true,
        ..SpawnOptions::default()
    };
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let pid = rt.spawn_with(options, move |ctx| async move {
        gate_rx.await.unwrap();
        let got: Vec<u32> = vec![
            num(ctx.recv().await),
            num(ctx.recv().await),
            num(ctx.recv().await),
        ];
        let Message::Exit(sig) = ctx.recv().await else {
            return ExitReason::custom("no exit");
        };
        let dropped = ctx.mailbox_stats().dropped;
        if got == [0, 1, 2] && sig.reason == ExitReason::custom("gone") && dropped == 3 {
            ExitReason::Normal
        } else {
            ExitReason::custom(format!("got {got:?} {:?} dropped {dropped}", sig.reason))
        }
    });
    for i in 0..5u32 {
        rt.send(pid, Payload::value(i)); // 3 and 4 are dropped, the sender never notices
    }
    let full = rt
        .try_send_tagged(pid, 0, Payload::value(9u32))
        .unwrap_err();
    assert_eq!(full.kind, SendErrorKind::Full);
    assert_eq!(full.payload.downcast::<u32>().unwrap(), 9);
    // An exit signal still gets in although the mailbox is full of data.
    let (_linker, linker_end) = rt.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(pid).unwrap();
        ExitReason::custom("gone")
    });
    // The watch fires after the exit signal went out to the linked process.
    linker_end.await;
    let end = rt.watch(pid);
    gate_tx.send(()).unwrap();
    assert_eq!(end.await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_mailbox_tells_the_sender_and_counts_like_a_dropping_one() {
    let rt = Runtime::new();
    let options = SpawnOptions {
        mailbox: MailboxConfig {
            capacity: Some(2),
            overflow: Overflow::Refuse,
            ..MailboxConfig::default()
        },
        ..SpawnOptions::default()
    };
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let (pid, end) = rt.spawn_watched(options, move |ctx| async move {
        gate_rx.await.unwrap();
        let got = (num(ctx.recv().await), num(ctx.recv().await));
        if got == (0, 1) && ctx.try_recv().is_none() {
            ExitReason::Normal
        } else {
            ExitReason::custom(format!("got {got:?}"))
        }
    });
    for i in 0..2u32 {
        rt.try_send_tagged(pid, 0, Payload::value(i)).unwrap();
    }
    let refused = rt
        .try_send_tagged(pid, 0, Payload::value(2u32))
        .unwrap_err();
    assert_eq!(refused.kind, SendErrorKind::Refused);
    assert_eq!(refused.payload.downcast::<u32>().unwrap(), 2);
    // A plain send cannot be told: the message is dropped.
    rt.send(pid, Payload::value(3u32));
    assert_eq!(rt.mailbox_stats(pid).unwrap().dropped, 2);
    assert_eq!(rt.stats().mailbox_dropped, 2);
    gate_tx.send(()).unwrap();
    assert_eq!(end.await, ExitReason::Normal);
    // The node keeps counting what an ended process's mailbox dropped.
    assert_eq!(rt.stats().mailbox_dropped, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_mailbox_drop_oldest_keeps_the_latest() {
    let rt = Runtime::new();
    let options = SpawnOptions {
        mailbox: MailboxConfig {
            capacity: Some(2),
            overflow: Overflow::DropOldest,
            ..MailboxConfig::default()
        },
        trap_exit: true,
        ..SpawnOptions::default()
    };
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let pid = rt.spawn_with(options, move |ctx| async move {
        gate_rx.await.unwrap();
        let a = num(ctx.recv().await);
        let b = num(ctx.recv().await);
        // The exit signal from the linked process arrives although data filled the box.
        let Message::Exit(sig) = ctx.recv().await else {
            return ExitReason::custom("no exit");
        };
        if (a, b) == (3, 4) && sig.reason == ExitReason::custom("gone") {
            ExitReason::Normal
        } else {
            ExitReason::custom(format!("got {a} {b}"))
        }
    });
    for i in 0..5u32 {
        rt.send(pid, Payload::value(i));
    }
    let (_linker, linker_end) = rt.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(pid).unwrap();
        ExitReason::custom("gone")
    });
    // The watch fires after the exit signal went out to the linked process.
    linker_end.await;
    let end = rt.watch(pid);
    gate_tx.send(()).unwrap();
    assert_eq!(end.await, ExitReason::Normal);
}
