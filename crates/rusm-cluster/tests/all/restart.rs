//! A restart of the NATS server under a stream of messages: the nodes reconnect, and
//! every message that arrives arrives in order; a message lost on the way ends the
//! connection with `noconnection`, never a silent gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use rusm_otp::{ExitReason, Message};

use crate::{WAIT, connected, node, server, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_reconnects_without_reordering() {
    let mut server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let got = Arc::new(Mutex::new(Vec::<u64>::new()));
    let received = got.clone();
    let receiver = rt_b.spawn(move |ctx| async move {
        loop {
            let data = ctx.recv().await.into_data().expect("data");
            let n = u64::from_le_bytes(data.payload.as_bytes().unwrap().try_into().unwrap());
            received.lock().push(n);
        }
    });
    // A monitor across the connection: it fires (noconnection) if the connection ends.
    let (_, watched) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let mref = ctx.monitor(receiver);
        match ctx.recv().await {
            Message::Down(d) if d.monitor == mref => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (stopping, counting) = (stop.clone(), sent.clone());
    rt_a.spawn(move |ctx| async move {
        let mut n = 0u64;
        while !stopping.load(Ordering::Relaxed) {
            ctx.send(receiver, n.to_le_bytes().to_vec());
            n += 1;
            counting.store(n, Ordering::Relaxed);
            if n.is_multiple_of(64) {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });
    until("the stream to flow", || got.lock().len() >= 1000).await;
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    let after = sent.load(Ordering::Relaxed);
    // Messages sent after the restart arrive: the nodes reconnected.
    until("messages sent after the restart to arrive", || {
        got.lock().last().is_some_and(|&n| n > after + 1000)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let got = got.lock().clone();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "messages arrived out of order"
    );
    let gap = got.windows(2).any(|w| w[1] != w[0] + 1) || got[0] != 0;
    let ended = a.members()[0].stats.connections_ended + b.members()[0].stats.connections_ended;
    if gap {
        // Lost messages: the connection ended, and the monitor across it said so.
        assert!(ended > 0, "a gap without the connection ending");
        assert_eq!(
            tokio::time::timeout(WAIT, watched).await.unwrap(),
            ExitReason::NoConnection
        );
    }
}
