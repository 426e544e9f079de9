//! Messages, links, monitors and exit signals between processes of two nodes.

use rusm_otp::{ExitReason, Message, Payload, Pid, SendErrorKind};

use crate::{WAIT, connected, node, server, until};

/// A process that answers every message `[reply_to: 8 bytes][body]` with its body.
fn echo(rt: &rusm_otp::Runtime) -> Pid {
    rt.spawn(|ctx| async move {
        loop {
            let data = ctx.recv().await.into_data().expect("data");
            let bytes = data.payload.as_bytes().expect("bytes").to_vec();
            let to = Pid::from_raw(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            ctx.send_tagged(to, data.tag, bytes[8..].to_vec());
        }
    })
}

fn ask(me: Pid, body: &[u8]) -> Vec<u8> {
    let mut out = me.as_raw().to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_and_its_reply_comes_back() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let echo = echo(&rt_b);
    let (_, done) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        ctx.send_tagged(echo, 7, ask(ctx.pid(), b"ping"));
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Data(d)) if d.tag == 7 && d.payload.as_bytes() == Some(b"ping") => {
                ExitReason::Normal
            }
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(done.await, ExitReason::Normal);
    let stats = a.members()[0].stats;
    assert_eq!((stats.frames_sent, stats.frames_received), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_between_a_pair_arrive_in_send_order_under_load() {
    const N: u32 = 20_000;
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    // Two senders on a, each numbering its own messages; one receiver on b checks
    // that each sender's numbers arrive in order, with none missing.
    let (receiver, done) = rt_b.spawn_watched(Default::default(), move |ctx| async move {
        let mut next = [0u32; 2];
        while next.iter().any(|&n| n < N) {
            let Some(Message::Data(d)) = ctx.recv_timeout(WAIT).await else {
                return ExitReason::custom(format!("stalled at {next:?}"));
            };
            let bytes = d.payload.as_bytes().unwrap();
            let n = u32::from_le_bytes(bytes.try_into().unwrap());
            let sender = d.tag as usize;
            if n != next[sender] {
                return ExitReason::custom(format!(
                    "sender {sender}: got {n}, expected {}",
                    next[sender]
                ));
            }
            next[sender] += 1;
        }
        ExitReason::Normal
    });
    for sender in 0..2u64 {
        rt_a.spawn(move |ctx| async move {
            for n in 0..N {
                ctx.send_tagged(receiver, sender, n.to_le_bytes().to_vec());
                if n % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    assert_eq!(done.await, ExitReason::Normal);
    assert_eq!(b.members()[0].stats.frames_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_monitor_sees_the_real_reason_and_a_dead_pid_is_noproc() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let victim = rt_b.spawn(|ctx| async move {
        ctx.recv().await;
        ExitReason::custom("told to stop")
    });
    let gone = rt_b.spawn(|_| async {});
    until("the short-lived process to end", || !rt_b.is_alive(gone)).await;
    let (_, done) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let on_gone = ctx.monitor(gone);
        let Some(Message::Down(d)) = ctx.recv_timeout(WAIT).await else {
            return ExitReason::custom("no down for the dead pid");
        };
        if (d.monitor, d.pid, d.reason.clone()) != (on_gone, gone, ExitReason::NoProc) {
            return ExitReason::custom(format!("wrong down {d:?}"));
        }
        let on_victim = ctx.monitor(victim);
        // The monitor is in place on b before the stop request, which follows it in
        // the same ordered stream.
        ctx.send(victim, b"stop".to_vec());
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Down(d)) if d.monitor == on_victim && d.pid == victim => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(done.await, ExitReason::custom("told to stop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_carry_exits_both_ways_and_a_demonitor_crosses() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    // A process on b linked from a: when the one on a crashes, the one on b dies too.
    let (on_b, b_done) = rt_b.spawn_watched(Default::default(), |ctx| async move {
        ctx.recv().await;
    });
    let (_, a_done) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        // The link reaches b before the exit signal: one ordered stream.
        ctx.link(on_b).unwrap();
        ExitReason::crashed("boom")
    });
    assert_eq!(a_done.await, ExitReason::crashed("boom"));
    assert_eq!(b_done.await, ExitReason::crashed("boom"));
    // And from b to a, trapped: the exit arrives as a message.
    let (trapper, trapped) = rt_a.spawn_watched(Default::default(), |ctx| async move {
        ctx.trap_exit(true);
        let first = ctx.recv().await;
        let Message::Data(d) = first else {
            return ExitReason::custom(format!("first {first:?}"));
        };
        assert_eq!(d.payload.as_bytes(), Some(&b"x"[..]));
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Exit(sig)) => sig.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    let (_, linker) = rt_b.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(trapper).unwrap();
        ctx.send(trapper, b"x".to_vec());
        ExitReason::custom("bye")
    });
    assert_eq!(linker.await, ExitReason::custom("bye"));
    // The message, then the exit: the order they were sent in.
    assert_eq!(trapped.await, ExitReason::custom("bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_exit_reach_a_remote_process() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let (target, done) = rt_b.spawn_watched(Default::default(), |ctx| async move {
        ctx.trap_exit(true);
        loop {
            ctx.recv().await;
        }
    });
    rt_a.spawn(move |ctx| async move {
        ctx.exit(target, ExitReason::custom("trapped"));
        ctx.kill(target);
    });
    assert_eq!(done.await, ExitReason::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_monitors_fire_noconnection_when_the_peer_stops() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let remote = rt_b.spawn(|ctx| async move { ctx.recv().await });
    // Linked without trapping: the process ends with noconnection.
    let (_, linked) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(remote).unwrap();
        ctx.recv().await;
    });
    // Trapping: the exit arrives as a message from the remote pid.
    let (_, trapping) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        ctx.trap_exit(true);
        ctx.link(remote).unwrap();
        match ctx.recv().await {
            Message::Exit(sig) if sig.from == remote => sig.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    until("both links to cross", || {
        b.members()[0].stats.frames_received >= 2
    })
    .await;
    drop(b);
    assert_eq!(linked.await, ExitReason::NoConnection);
    assert_eq!(trapping.await, ExitReason::NoConnection);
    // Across no connection, a link or monitor fires at once, and a send says so.
    let (_, late) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let refused = ctx.try_send(remote, 0, Payload::Bytes(b"x".to_vec()));
        if !matches!(refused, Err(ref e) if e.kind == SendErrorKind::NoConnection) {
            return ExitReason::custom(format!("{refused:?}"));
        }
        let mref = ctx.monitor(remote);
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Down(d)) if d.monitor == mref => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(late.await, ExitReason::NoConnection);
    drop(rt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_cannot_travel_are_refused_with_a_reason() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let remote = echo(&rt_b);
    let limit = a.max_message();
    assert!(limit > 1000 && limit < 1 << 20, "{limit}");
    let too_big = rt_a.try_send_tagged(remote, 0, Payload::Bytes(vec![0; limit + 1]));
    let err = too_big.unwrap_err();
    assert_eq!(
        err.kind,
        SendErrorKind::TooLarge {
            size: limit + 1,
            limit
        }
    );
    assert!(err.to_string().contains("larger than"), "{err}");
    let value = rt_a.try_send_tagged(remote, 0, Payload::value(String::from("native")));
    assert_eq!(value.unwrap_err().kind, SendErrorKind::NotPortable);
    // The largest allowed payload crosses.
    let (_, done) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let mut body = vec![7u8; limit - 8];
        body.splice(0..0, ctx.pid().as_raw().to_le_bytes());
        ctx.send(remote, body);
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Data(d)) if d.payload.as_bytes().map(<[u8]>::len) == Some(limit - 8) => {
                ExitReason::Normal
            }
            other => ExitReason::custom(format!("{:?}", other.map(|m| m.tag()))),
        }
    });
    assert_eq!(done.await, ExitReason::Normal);
}
