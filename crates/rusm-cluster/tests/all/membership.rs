//! Joining, heartbeats, the failure detector and incarnations.

use std::time::{Duration, Instant};

use rusm_otp::{ExitReason, Message, Pid};

use crate::{DOWN_AFTER, WAIT, connected, node, server, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_see_each_other_and_their_pids_name_them() {
    let server = server();
    let (rt_a, a) = node(&server, "c1", "a").await;
    let (rt_b, b) = node(&server, "c1", "b").await;
    assert_ne!(a.node(), b.node());
    connected(&[&a, &b]).await;
    let names: Vec<String> = a.members().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["b"]);
    let pa = rt_a.spawn(|ctx| async move { ctx.recv().await });
    let pb = rt_b.spawn(|ctx| async move { ctx.recv().await });
    assert_eq!(pa.node(), a.node());
    assert_eq!(pb.node(), b.node());
    assert_eq!(rt_a.node_number(), a.node());
    let listed = rusm_cluster::status(&server.url(), "c1", Duration::from_millis(700))
        .await
        .unwrap();
    let listed: Vec<&str> = listed.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(listed, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_server_never_see_each_other() {
    let server = server();
    let (_rt_a, a) = node(&server, "red", "a").await;
    let (_rt_b, b) = node(&server, "blue", "b").await;
    let (_rt_c, c) = node(&server, "red", "c").await;
    connected(&[&a, &c]).await;
    // Both clusters number their nodes on their own.
    assert_eq!(b.node(), 1);
    assert_eq!((a.node(), c.node()), (1, 2));
    assert!(b.members().is_empty(), "{:?}", b.members());
    assert!(a.members().iter().all(|m| m.name == "c"));
    let blue = rusm_cluster::status(&server.url(), "blue", Duration::from_millis(700))
        .await
        .unwrap();
    assert_eq!(blue.len(), 1);
    assert_eq!(blue[0].name, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_is_declared_down_within_the_bound() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let remote = rt_b.spawn(|ctx| async move { ctx.recv().await });
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt_a.spawn(move |ctx| async move {
        let mref = ctx.monitor(remote);
        let _ = tx.send(mref);
        let msg = ctx.recv().await;
        let Message::Down(down) = msg else {
            return Err(format!("expected a down, got {msg:?}"));
        };
        if down.monitor == mref && down.pid == remote && down.reason == ExitReason::NoConnection {
            Ok(())
        } else {
            Err(format!("wrong down {down:?}"))
        }
    });
    rx.await.unwrap();
    // The monitor has crossed: b knows of it.
    until("b to hear the monitor", || {
        b.members().iter().any(|m| m.stats.frames_received > 0)
    })
    .await;
    // b stops answering (its tasks end; no goodbye), as if its process were killed.
    let stopped = Instant::now();
    drop(b);
    until("a to declare b down", || a.members().iter().all(|m| !m.up)).await;
    let took = stopped.elapsed();
    assert!(
        took <= DOWN_AFTER + DOWN_AFTER / 2,
        "declared down after {took:?}, bound {DOWN_AFTER:?}"
    );
    until("the monitor to fire noconnection", || {
        rt_a.stats().exits.total() == 1
    })
    .await;
    assert_eq!(
        rt_a.stats().exits.get("normal"),
        1,
        "{:?}",
        rt_a.stats().exits
    );
    assert_eq!(a.members()[0].stats.downs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_gone_at_once_and_a_restart_is_a_new_incarnation() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let old = rt_b.spawn(|ctx| async move { ctx.recv().await });
    let old_number = b.node();
    b.leave().await;
    drop(rt_b);
    until("a to forget b", || a.members().is_empty()).await;
    let (rt_b2, b2) = node(&server, "c", "b").await;
    assert!(b2.node() > old_number, "a restart takes a new number");
    connected(&[&a, &b2]).await;
    assert_eq!(a.members().len(), 1);
    // The old incarnation's pid stays dead: a monitor of it fires at once.
    let (pid, done) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let mref = ctx.monitor(old);
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Down(d)) if d.monitor == mref => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(done.await, ExitReason::NoConnection, "{pid}");
    let fresh = rt_b2.spawn(|ctx| async move { ctx.recv().await });
    assert_eq!(fresh.node(), b2.node());
    assert_ne!(Pid::new(old_number, fresh.serial()), fresh);
}
