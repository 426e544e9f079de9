//! The global registry on JetStream KV.

use rusm_cluster::ClusterError;
use rusm_otp::Pid;

use crate::{connected, node, server, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_nodes_racing_for_a_name_exactly_one_wins() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    let (_rt_c, c) = node(&server, "c", "c").await;
    connected(&[&a, &b, &c]).await;
    for round in 0..10 {
        let name = format!("service-{round}");
        let pa = rt_a.spawn(|ctx| async move { ctx.recv().await });
        let pb = rt_b.spawn(|ctx| async move { ctx.recv().await });
        let (ra, rb) = tokio::join!(a.register_global(&name, pa), b.register_global(&name, pb));
        let winner = match (ra, rb) {
            (Ok(()), Err(ClusterError::NameTaken { holder, .. })) if holder == pa => pa,
            (Err(ClusterError::NameTaken { holder, .. }), Ok(())) if holder == pb => pb,
            other => panic!("round {round}: {other:?}"),
        };
        for node in [&a, &b, &c] {
            assert_eq!(node.whereis_global(&name).await.unwrap(), Some(winner));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_released_when_its_process_ends() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let holder = rt_a.spawn(|ctx| async move { ctx.recv().await });
    a.register_global("db", holder).await.unwrap();
    // Registering again under the name it holds is fine; another name for a pid
    // of another node is refused.
    a.register_global("db", holder).await.unwrap();
    let theirs = rt_b.spawn(|ctx| async move { ctx.recv().await });
    assert!(matches!(
        a.register_global("x", theirs).await,
        Err(ClusterError::NotLocal(p)) if p == theirs
    ));
    assert_eq!(b.whereis_global("db").await.unwrap(), Some(holder));
    rt_a.kill(holder);
    let mut freed = false;
    for _ in 0..2000 {
        if b.whereis_global("db").await.unwrap().is_none() {
            freed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(freed, "the name outlived its holder");
    b.register_global("db", theirs).await.unwrap();
    assert_eq!(a.whereis_global("db").await.unwrap(), Some(theirs));
    assert!(!a.unregister_global("db", holder).await.unwrap());
    assert!(b.unregister_global("db", theirs).await.unwrap());
    assert_eq!(a.whereis_global("db").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_names_are_released() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let (rt_b, b) = node(&server, "c", "b").await;
    connected(&[&a, &b]).await;
    let theirs = rt_b.spawn(|ctx| async move { ctx.recv().await });
    b.register_global("leader", theirs).await.unwrap();
    let mine = rt_a.spawn(|ctx| async move { ctx.recv().await });
    assert!(matches!(
        a.register_global("leader", mine).await,
        Err(ClusterError::NameTaken { holder, .. }) if holder == theirs
    ));
    // b stops without a word; its process never ended, so its entry stays in KV.
    drop(b);
    until("a to declare b down", || a.members().iter().all(|m| !m.up)).await;
    assert_eq!(a.whereis_global("leader").await.unwrap(), None);
    a.register_global("leader", mine).await.unwrap();
    assert_eq!(a.whereis_global("leader").await.unwrap(), Some(mine));
    drop(rt_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_refused() {
    let server = server();
    let (rt_a, a) = node(&server, "c", "a").await;
    let me = rt_a.spawn(|ctx| async move { ctx.recv().await });
    let long = "n".repeat(rusm_cluster::MAX_GLOBAL_NAME + 1);
    assert!(matches!(
        a.register_global(&long, me).await,
        Err(ClusterError::BadName { len, .. }) if len == long.len()
    ));
    assert!(a.whereis_global("").await.is_err());
    // Any bytes a name holds are fine: they are not the KV key.
    a.register_global("a b.*>/ü", me).await.unwrap();
    assert_eq!(a.whereis_global("a b.*>/ü").await.unwrap(), Some(me));
    assert!(matches!(
        a.register_global("dead", Pid::new(a.node(), 999_999)).await,
        Err(ClusterError::NotLocal(_))
    ));
}
