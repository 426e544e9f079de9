//! A hostile client on the cluster's NATS server forging frames: each forgery is
//! refused and counted, and only a well-formed frame in sequence is delivered.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rusm_otp::{MonitorRef, Pid, Runtime, SignalKind};

use crate::frame::{self, Body, Header, Heartbeat};
use crate::testing::NatsServer;
use crate::{Cluster, ClusterConfig};

const CLUSTER: &str = "hostile";
const EVIL: u32 = 77;
const WAIT: Duration = Duration::from_secs(15);

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn header(cluster: &str, seq: u64) -> Header {
    Header {
        cluster: frame::cluster_id(cluster),
        from: EVIL,
        session: 1,
        seq,
    }
}

fn refused(a: &Cluster) -> u64 {
    a.members()
        .iter()
        .find(|m| m.node == EVIL)
        .map_or(0, |m| m.stats.frames_refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_frames_are_refused_and_a_gap_ends_the_connection() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let rt = Runtime::new();
    let config = ClusterConfig::new(server.url(), "a").cluster_name(CLUSTER);
    let a = Cluster::join(&rt, config).await.unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let victim = rt.spawn(move |ctx| async move {
        ctx.trap_exit(true);
        loop {
            let msg = ctx.recv().await;
            let _ = seen_tx.send(format!("{msg:?}"));
        }
    });
    let evil = async_nats::connect(server.url()).await.unwrap();
    let mut evil_inbox = evil
        .subscribe(format!("rusm.{CLUSTER}.n.{EVIL}"))
        .await
        .unwrap();
    let inbox = format!("rusm.{CLUSTER}.n.{}", a.node());
    let hb_subject = format!("rusm.{CLUSTER}.hb");
    let beat = |cluster: &str, node: u32| {
        frame::encode_heartbeat(&Heartbeat {
            cluster: frame::cluster_id(cluster),
            node,
            alive: true,
            interval_ms: 500,
            name: format!("evil-{node}"),
        })
    };
    // A heartbeat of another cluster's id on this cluster's subject is ignored.
    evil.publish(hb_subject.clone(), beat("other", 99).into())
        .await
        .unwrap();
    evil.publish(hb_subject.clone(), beat(CLUSTER, EVIL).into())
        .await
        .unwrap();
    until("a to hear the forger's heartbeat", || {
        a.members().iter().any(|m| m.node == EVIL)
    })
    .await;
    assert!(a.members().iter().all(|m| m.node != 99));
    let send = |bytes: Vec<u8>| {
        let evil = evil.clone();
        let inbox = inbox.clone();
        async move { evil.publish(inbox, bytes.into()).await.unwrap() }
    };
    let data = |seq, payload: &[u8]| {
        frame::encode(
            header(CLUSTER, seq),
            &Body::Data {
                to: victim,
                tag: 0,
                payload: payload.to_vec(),
            },
        )
    };
    // Wrong cluster id.
    send(frame::encode(
        header("other", 1),
        &Body::Data {
            to: victim,
            tag: 0,
            payload: b"wrong cluster".to_vec(),
        },
    ))
    .await;
    // A spoofed sender: an exit signal claiming to come from a process of node 5.
    send(frame::encode(
        header(CLUSTER, 1),
        &Body::Signal {
            to: victim,
            from: Pid::new(5, 1),
            kind: SignalKind::Kill,
            reason: rusm_otp::ExitReason::Killed,
        },
    ))
    .await;
    // A monitor owned by a pid of this very node.
    send(frame::encode(
        header(CLUSTER, 1),
        &Body::Monitor {
            owner: Pid::new(a.node(), 1),
            target: victim,
            monitor: MonitorRef::from_raw(1),
        },
    ))
    .await;
    // A message for a third node, which a must not forward.
    send(frame::encode(
        header(CLUSTER, 1),
        &Body::Data {
            to: Pid::new(a.node() + 1, 1),
            tag: 0,
            payload: b"forward me".to_vec(),
        },
    ))
    .await;
    // Claiming to be a itself.
    let mut own = header(CLUSTER, 1);
    own.from = a.node();
    send(frame::encode(own, &Body::Disconnect)).await;
    // Garbage.
    send(b"\x01\x01 not a frame".to_vec()).await;
    // Then one good frame: it is the only one delivered, and the forgeries, sent
    // before it on the same connection, were all judged before it.
    send(data(1, b"good")).await;
    let got = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.contains("Data"), "{got}");
    assert!(rt.is_alive(victim));
    assert!(refused(&a) >= 4, "{:?}", a.members());
    assert!(seen.try_recv().is_err(), "a forgery was delivered");
    // A gap: seq 3 after 1. Refused, and the connection ends: a tells the forger.
    send(data(3, b"after a gap")).await;
    let disconnect = tokio::time::timeout(WAIT, evil_inbox.next())
        .await
        .unwrap()
        .unwrap();
    let (h, body) = frame::decode(&disconnect.payload).unwrap();
    assert_eq!((h.from, body), (a.node(), Body::Disconnect));
    let stats = a
        .members()
        .into_iter()
        .find(|m| m.node == EVIL)
        .unwrap()
        .stats;
    assert_eq!(stats.connections_ended, 1);
    // A replay of the old stream is refused too; a new session starts at 1.
    send(data(2, b"replayed")).await;
    let mut fresh = header(CLUSTER, 1);
    fresh.session = 2;
    send(frame::encode(
        fresh,
        &Body::Data {
            to: victim,
            tag: 0,
            payload: b"new session".to_vec(),
        },
    ))
    .await;
    let got = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.contains("Data"), "{got}");
    assert!(seen.try_recv().is_err(), "a refused frame was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_heartbeats_cannot_grow_the_membership_view_without_bound() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let rt = Runtime::new();
    let a = Cluster::join(
        &rt,
        ClusterConfig::new(server.url(), "a").cluster_name(CLUSTER),
    )
    .await
    .unwrap();
    let evil = async_nats::connect(server.url()).await.unwrap();
    let subject = format!("rusm.{CLUSTER}.hb");
    let forged = crate::MAX_PEERS as u32 + 200;
    for node in 2..2 + forged {
        let hb = frame::encode_heartbeat(&Heartbeat {
            cluster: frame::cluster_id(CLUSTER),
            node,
            alive: true,
            interval_ms: 500,
            name: format!("forged-{node}"),
        });
        evil.publish(subject.clone(), hb.into()).await.unwrap();
    }
    // A node number past the most a cluster numbers is ignored too.
    let hb = frame::encode_heartbeat(&Heartbeat {
        cluster: frame::cluster_id(CLUSTER),
        node: u32::MAX,
        alive: true,
        interval_ms: 500,
        name: "too-far".into(),
    });
    evil.publish(subject.clone(), hb.into()).await.unwrap();
    evil.flush().await.unwrap();
    until("the view to fill", || a.members().len() == crate::MAX_PEERS).await;
    // Every forged heartbeat past the bound (and the one past the node numbers) is
    // refused, not kept.
    until("the rest to be refused", || {
        a.shared
            .state
            .refused_heartbeats
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 200
    })
    .await;
    assert_eq!(a.members().len(), crate::MAX_PEERS);
    assert!(a.members().iter().all(|m| m.node <= Pid::MAX_NODE));
}

/// A spawn handler that counts what reaches it.
struct Counting(std::sync::atomic::AtomicUsize, Runtime);

impl rusm_otp::SpawnHandler for Counting {
    fn spawn(&self, _: &rusm_otp::SpawnRequest) -> Result<Pid, rusm_otp::SpawnRefused> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.1.spawn(|ctx| async move { ctx.recv().await }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_spawn_requests_and_answers_are_refused_and_counted() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let rt = Runtime::new();
    let config = ClusterConfig::new(server.url(), "a").cluster_name(CLUSTER);
    let a = Cluster::join(&rt, config).await.unwrap();
    let handler = std::sync::Arc::new(Counting(Default::default(), rt.clone()));
    let as_handler: std::sync::Arc<dyn rusm_otp::SpawnHandler> = handler.clone();
    rt.set_spawn_handler(std::sync::Arc::downgrade(&as_handler));
    let served = || handler.0.load(std::sync::atomic::Ordering::SeqCst);
    let evil = async_nats::connect(server.url()).await.unwrap();
    let mut evil_inbox = evil
        .subscribe(format!("rusm.{CLUSTER}.n.{EVIL}"))
        .await
        .unwrap();
    let hb = frame::encode_heartbeat(&Heartbeat {
        cluster: frame::cluster_id(CLUSTER),
        node: EVIL,
        alive: true,
        interval_ms: 500,
        name: "evil".into(),
    });
    evil.publish(format!("rusm.{CLUSTER}.hb"), hb.into())
        .await
        .unwrap();
    until("a to hear the forger", || {
        a.members().iter().any(|m| m.node == EVIL)
    })
    .await;
    let inbox = format!("rusm.{CLUSTER}.n.{}", a.node());
    let request = |caller: Pid| Body::Spawn {
        id: 1,
        request: Box::new(rusm_otp::SpawnRequest {
            caller,
            component: "anything".into(),
            policy: None,
            holds: None,
            init: Vec::new(),
            link: true,
            monitor: None,
        }),
    };
    let send = |bytes: Vec<u8>| {
        let evil = evil.clone();
        let inbox = inbox.clone();
        async move { evil.publish(inbox, bytes.into()).await.unwrap() }
    };
    // Of another cluster.
    send(frame::encode(
        header("other", 1),
        &request(Pid::new(EVIL, 1)),
    ))
    .await;
    // A spoofed caller: a process of node 5, or of a itself.
    send(frame::encode(header(CLUSTER, 1), &request(Pid::new(5, 1)))).await;
    send(frame::encode(
        header(CLUSTER, 1),
        &request(Pid::new(a.node(), 1)),
    ))
    .await;
    // An answer to a request a never sent.
    send(frame::encode(
        header(CLUSTER, 1),
        &Body::Spawned {
            id: 99,
            caller: Pid::new(a.node(), 1),
            result: Ok(Pid::new(EVIL, 3)),
        },
    ))
    .await;
    // Then a well-formed request in sequence (the answer to nothing was well formed
    // and took number 1): the only one served, answered to the forger's node.
    send(frame::encode(
        header(CLUSTER, 2),
        &request(Pid::new(EVIL, 1)),
    ))
    .await;
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            let msg = evil_inbox.next().await.unwrap();
            if let Ok((_, body @ Body::Spawned { .. })) = frame::decode(&msg.payload) {
                return body;
            }
        }
    })
    .await
    .unwrap();
    let Body::Spawned { id, caller, result } = answer else {
        unreachable!()
    };
    assert_eq!((id, caller), (1, Pid::new(EVIL, 1)));
    assert_eq!(result.unwrap().node(), a.node());
    assert_eq!(served(), 1, "a forged request reached the handler");
    // The request of another cluster, the two spoofed callers and the answer to
    // nothing are each refused and counted against the forger.
    assert_eq!(refused(&a), 4, "{:?}", a.members());
    let stats = a
        .members()
        .into_iter()
        .find(|m| m.node == EVIL)
        .unwrap()
        .stats;
    assert_eq!(stats.spawns_served, 1);
}
