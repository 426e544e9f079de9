//! Remote spawn between in-process nodes: a native spawn handler stands for the
//! backend (the wasm backend's own, with its policy checks, is tested with real
//! components in `rusm-cli`'s cluster tests). What the cluster layer owes: the request
//! reaches the named node, the answer comes back, a refusal comes back as the same
//! refusal, links and monitors asked at the spawn cross nodes and fire
//! `noconnection` when the node goes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusm_cluster::Cluster;
use rusm_cluster::testing::NatsServer;
use rusm_otp::{
    ExitReason, Message, Pid, RemoteSpawn, Runtime, SpawnHandler, SpawnRefused, SpawnRequest,
};

use crate::{WAIT, connected, node, server, until};

/// Spawns `echo` (answers `[reply_to][body]` with its body, tag kept) and `crash`
/// (ends with `crashed: asked to`) as native processes; refuses anything else, and
/// any request whose caller holds no policy text naming it (`holds` must contain the
/// component's name).
struct Native {
    rt: Runtime,
    served: AtomicUsize,
    spawned: parking_lot::Mutex<Vec<Pid>>,
}

impl SpawnHandler for Native {
    fn spawn(&self, request: &SpawnRequest) -> Result<Pid, SpawnRefused> {
        self.served.fetch_add(1, Ordering::SeqCst);
        if let Some(holds) = &request.holds
            && !holds.contains(&request.component)
        {
            return Err(SpawnRefused::NotPermitted(format!(
                "the caller may not spawn {:?}",
                request.component
            )));
        }
        let pid = match request.component.as_str() {
            "echo" => Ok(self.rt.spawn(|ctx| async move {
                loop {
                    let data = ctx.recv().await.into_data().expect("data");
                    let bytes = data.payload.as_bytes().expect("bytes").to_vec();
                    let to = Pid::from_raw(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
                    ctx.send_tagged(to, data.tag, bytes[8..].to_vec());
                }
            })),
            "crash" => Ok(self.rt.spawn(|ctx| async move {
                // Wait for the word, so the caller's link is in place first.
                let _ = ctx.recv().await;
                ExitReason::crashed("asked to")
            })),
            other => Err(SpawnRefused::NotFound(format!(
                "no component named {other:?}"
            ))),
        }?;
        self.spawned.lock().push(pid);
        Ok(pid)
    }
}

fn serve(rt: &Runtime) -> Arc<Native> {
    let native = Arc::new(Native {
        rt: rt.clone(),
        served: AtomicUsize::new(0),
        spawned: parking_lot::Mutex::new(Vec::new()),
    });
    let handler: Arc<dyn SpawnHandler> = native.clone();
    rt.set_spawn_handler(Arc::downgrade(&handler));
    native
}

fn spawn(component: &str) -> RemoteSpawn {
    RemoteSpawn {
        component: component.into(),
        ..RemoteSpawn::default()
    }
}

async fn pair(server: &NatsServer, cluster: &str) -> (Runtime, Cluster, Runtime, Cluster) {
    let (rt_a, a) = node(server, cluster, "a").await;
    let (rt_b, b) = node(server, cluster, "b").await;
    connected(&[&a, &b]).await;
    (rt_a, a, rt_b, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_spawned_on_another_node_runs_there_and_answers() {
    let server = server();
    let (rt_a, a, rt_b, b) = pair(&server, "spawn").await;
    let native = serve(&rt_b);
    // Host code of a.
    let echo = rt_a.spawn_on("b", spawn("echo")).await.unwrap();
    assert_eq!(echo.node(), b.node());
    assert!(rt_b.is_alive(echo));
    // A process of a, linked and monitoring, asks and is answered.
    let (_, done) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let spawned = RemoteSpawn {
            link: true,
            monitor: true,
            ..spawn("echo")
        };
        let child = match ctx.spawn_on("b", spawned).await {
            Ok(s) => s,
            Err(e) => return ExitReason::custom(format!("refused: {e}")),
        };
        let mut ask = ctx.pid().as_raw().to_le_bytes().to_vec();
        ask.extend_from_slice(b"ping");
        ctx.send_tagged(child.pid, 7, ask);
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Data(d)) if d.payload.as_bytes() == Some(b"ping") => {}
            other => return ExitReason::custom(format!("{other:?}")),
        }
        if child.monitor.is_none() {
            return ExitReason::custom("no monitor reference");
        }
        ExitReason::Normal
    });
    assert_eq!(done.await, ExitReason::Normal);
    assert_eq!(native.served.load(Ordering::SeqCst), 2);
    let served = b.members()[0].stats.spawns_served;
    assert_eq!(served, 2);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_unknown_nodes_and_components_come_back_as_clear_errors() {
    let server = server();
    let (rt_a, a, rt_b, b) = pair(&server, "refuse").await;
    let native = serve(&rt_b);
    let err = rt_a.spawn_on("nowhere", spawn("echo")).await.unwrap_err();
    assert!(
        matches!(&err, SpawnRefused::NotFound(why) if why.contains("no node named \"nowhere\"") && why.contains("a, b")),
        "{err:?}"
    );
    let err = rt_a.spawn_on("b", spawn("ghost")).await.unwrap_err();
    assert!(
        matches!(&err, SpawnRefused::NotFound(why) if why.contains("ghost")),
        "{err:?}"
    );
    // What the caller holds is what the receiving node judges by.
    let holding_nothing = RemoteSpawn {
        holds: Some(String::new()),
        ..spawn("echo")
    };
    let err = rt_a.spawn_on("b", holding_nothing).await.unwrap_err();
    assert!(matches!(err, SpawnRefused::NotPermitted(_)), "{err:?}");
    // A name longer than a frame carries is refused before it is sent.
    let served = native.served.load(Ordering::SeqCst);
    let err = rt_a
        .spawn_on("b", spawn(&"x".repeat(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnRefused::Invalid(_)), "{err:?}");
    assert_eq!(native.served.load(Ordering::SeqCst), served);
    let stats = b.members()[0].stats;
    assert_eq!((stats.spawns_served, stats.spawns_refused), (0, 2));
    // A node with no spawn handler says so.
    let (rt_c, c) = node(&server, "refuse", "c").await;
    connected(&[&a, &c]).await;
    let err = rt_a.spawn_on("c", spawn("echo")).await.unwrap_err();
    assert!(
        matches!(&err, SpawnRefused::Unavailable(why) if why.contains("runs no components")),
        "{err:?}"
    );
    drop((rt_c, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_made_at_a_remote_spawn_carries_the_childs_exit_and_noconnection() {
    let server = server();
    let (rt_a, a, rt_b, b) = pair(&server, "link").await;
    let _native = serve(&rt_b);
    // The child's own exit reason crosses its link.
    let (_, crashed) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        ctx.trap_exit(true);
        let spawned = RemoteSpawn {
            link: true,
            ..spawn("crash")
        };
        let child = ctx.spawn_on("b", spawned).await.expect("spawned").pid;
        ctx.send(child, b"now".to_vec());
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Exit(sig)) if sig.from == child => sig.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(crashed.await, ExitReason::crashed("asked to"));
    // The node of the child goes: the link and the monitor fire noconnection.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_, gone) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        ctx.trap_exit(true);
        let spawned = RemoteSpawn {
            link: true,
            monitor: true,
            ..spawn("echo")
        };
        let child = ctx.spawn_on("b", spawned).await.expect("spawned");
        let _ = tx.send(child.pid);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match ctx.recv_timeout(WAIT).await {
                Some(Message::Exit(sig)) if sig.from == child.pid => {
                    seen.push(format!("exit {}", sig.reason));
                }
                Some(Message::Down(d)) if Some(d.monitor) == child.monitor => {
                    seen.push(format!("down {}", d.reason));
                }
                other => return ExitReason::custom(format!("{other:?}")),
            }
        }
        seen.sort();
        ExitReason::custom(seen.join(", "))
    });
    let child = rx.await.unwrap();
    assert!(rt_b.is_alive(child));
    drop(b);
    assert_eq!(
        gone.await,
        ExitReason::custom("down noconnection, exit noconnection")
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_ends_before_the_answer_leaves_no_child_behind() {
    let server = server();
    let (rt_a, a, rt_b, _b) = pair(&server, "orphan").await;
    let _native = serve(&rt_b);
    let live = rt_b.process_count();
    // The caller is killed once the child runs, whether or not the answer has
    // reached it yet: the child, linked to it, ends too (an answer that finds no
    // caller ends the child; one that found it made the link that now fires).
    let caller = rt_a.spawn(|ctx| async move {
        let spawned = RemoteSpawn {
            link: true,
            ..spawn("echo")
        };
        let _ = ctx.spawn_on("b", spawned).await;
        ctx.recv().await;
    });
    until("b to spawn the child", || rt_b.process_count() == live + 1).await;
    rt_a.kill(caller);
    until("b to end the orphan", || rt_b.process_count() == live).await;
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_restarts_a_remote_child_on_the_next_node_when_its_node_dies() {
    use rusm_otp::supervisor::{ChildSpec, Strategy, SupervisorSpec, supervise};
    let server = server();
    let (rt_a, a) = node(&server, "sup", "a").await;
    let (rt_b, b) = node(&server, "sup", "b").await;
    let (rt_c, c) = node(&server, "sup", "c").await;
    connected(&[&a, &b, &c]).await;
    let on_b = serve(&rt_b);
    let on_c = serve(&rt_c);
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(3, std::time::Duration::from_secs(60))
        .child(ChildSpec::remote("svc", ["b", "c"], spawn("echo")));
    let sup = rt_a.spawn(move |ctx| supervise(ctx, spec));
    until("the child to start on b", || on_b.spawned.lock().len() == 1).await;
    let first = on_b.spawned.lock()[0];
    assert_eq!(first.node(), b.node());
    assert!(on_c.spawned.lock().is_empty());
    // b dies: the supervisor hears noconnection and starts the child on c.
    drop(b);
    until("the child to start again on c", || {
        on_c.spawned.lock().len() == 1
    })
    .await;
    let second = on_c.spawned.lock()[0];
    assert_eq!(second.node(), c.node());
    assert!(rt_c.is_alive(second));
    until("the restart to be counted", || {
        rt_a.supervisor_restarts()
            .iter()
            .any(|r| r.supervisor == sup && r.restarts == 1)
    })
    .await;
    // Stopping the supervisor stops its remote child, across the node boundary.
    rt_a.exit(sup, ExitReason::Shutdown);
    until("the remote child to stop", || !rt_c.is_alive(second)).await;
    // With no node left to take it, a start fails with every node's refusal named.
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::remote(
        "svc",
        ["b", "nowhere"],
        spawn("echo"),
    ));
    let (_, ended) = rt_a.spawn_watched(Default::default(), move |ctx| supervise(ctx, spec));
    let reason = ended.await.to_string();
    assert!(
        reason.contains("no node could start")
            && reason.contains("b: ")
            && reason.contains("nowhere: "),
        "{reason}"
    );
    drop((a, c));
}
