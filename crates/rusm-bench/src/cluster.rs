//! `cluster-ping-pong`: round trips between processes of two nodes joined through a
//! real `nats-server` on loopback, against raw `async-nats` request-reply between two
//! connections to the same server in the same run (the transport's own limit).
//!
//! Both sides start in the same process: two `Runtime`s, each joined through its own
//! NATS connection, exactly as two node processes would be, so one round trip is two
//! frames through the server (client → server → client, twice).

use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use futures_util::StreamExt;
use rusm_cluster::testing::NatsServer;
use rusm_cluster::{Cluster, ClusterConfig};
use rusm_otp::{Pid, Runtime};

use crate::harness::{Contender, interleaved};
use crate::native::{LATENCY_STRIDE, Params, drive, settle};
use crate::report::{Figure, Sample, Side};

/// The payload of each message: a round number.
fn number(bytes: Option<&[u8]>) -> Result<u64> {
    let bytes = bytes.context("a message that is not bytes")?;
    Ok(u64::from_le_bytes(
        bytes.try_into().context("a message that is not 8 bytes")?,
    ))
}

pub async fn cluster_ping_pong(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let server = NatsServer::start().map_err(anyhow::Error::msg)?;
    let rt_a = Runtime::new();
    let rt_b = Runtime::new();
    let a = Cluster::join(
        &rt_a,
        ClusterConfig::new(server.url(), "a").cluster_name("bench"),
    )
    .await?;
    let b = Cluster::join(
        &rt_b,
        ClusterConfig::new(server.url(), "b").cluster_name("bench"),
    )
    .await?;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !(a.members().iter().any(|m| m.up) && b.members().iter().any(|m| m.up)) {
        ensure!(
            Instant::now() < deadline,
            "the two nodes never saw each other"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The ponger on b answers each message to the pid in the tag.
    let pong = rt_b.spawn(|ctx| async move {
        loop {
            let data = ctx.recv().await.into_data().expect("data");
            let to = Pid::from_raw(data.tag);
            let bytes = data.payload.as_bytes().unwrap_or_default().to_vec();
            ctx.send(to, bytes);
        }
    });
    // Raw NATS: a responder on its own connection, a requester on another.
    let responder = async_nats::connect(server.url()).await?;
    let requester = async_nats::connect(server.url()).await?;
    let mut requests = responder.subscribe("bench.echo").await?;
    let answering = responder.clone();
    let echo = tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            if let Some(reply) = msg.reply {
                let _ = answering.publish(reply, msg.payload).await;
            }
        }
    });
    requester.flush().await?;
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm", || rusm_round_trips(rt_a.clone(), pong, n)),
            Contender::new("async-nats request", || {
                nats_round_trips(requester.clone(), n)
            }),
        ],
    )
    .await?;
    echo.abort();
    drop((a, b));
    Ok(vec![Figure::new(
        "cluster-ping-pong",
        "round trip across nodes",
        "round trips",
        format!("n={n}, one nats-server on loopback"),
        Side::new("rusm", &series[0], Some("round trip")),
        Side::new("async-nats request", &series[1], Some("round trip")),
        Some(0.8),
    )])
}

async fn rusm_round_trips(rt: Runtime, pong: Pid, n: u64) -> Result<Sample> {
    drive(&rt, move |ctx| async move {
        let me = ctx.pid().as_raw();
        let mut latencies = Vec::with_capacity((n / LATENCY_STRIDE + 1) as usize);
        let start = Instant::now();
        for i in 0..n {
            let timed = (i % LATENCY_STRIDE == 0).then(Instant::now);
            ctx.send_tagged(pong, me, i.to_le_bytes().to_vec());
            let reply = ctx
                .recv_timeout(std::time::Duration::from_secs(10))
                .await
                .context("no answer within 10 s")?;
            let data = reply.into_data().context("not data")?;
            let v = number(data.payload.as_bytes())?;
            ensure!(v == i, "round trip {i} came back as {v}");
            if let Some(t) = timed {
                latencies.push(t.elapsed());
            }
        }
        Ok(Sample {
            units: n,
            elapsed: start.elapsed(),
            latencies,
        })
    })
    .await
}

async fn nats_round_trips(client: async_nats::Client, n: u64) -> Result<Sample> {
    tokio::spawn(async move {
        let mut latencies = Vec::with_capacity((n / LATENCY_STRIDE + 1) as usize);
        let start = Instant::now();
        for i in 0..n {
            let timed = (i % LATENCY_STRIDE == 0).then(Instant::now);
            let reply = client
                .request("bench.echo", i.to_le_bytes().to_vec().into())
                .await?;
            let v = number(Some(&reply.payload))?;
            ensure!(v == i, "request {i} came back as {v}");
            if let Some(t) = timed {
                latencies.push(t.elapsed());
            }
        }
        Ok(Sample {
            units: n,
            elapsed: start.elapsed(),
            latencies,
        })
    })
    .await?
}

/// How many messages a `cluster-fan-out` receiver takes before it acknowledges, and
/// how many unacknowledged ones a sender keeps in flight: a node's send never blocks
/// and a full outbox ends the connection, so a sender that can outrun the wire paces
/// itself by acknowledgements, as any producer across nodes must. The baseline
/// paces itself the same way.
const WINDOW: u64 = 4096;
const IN_FLIGHT: u64 = 4 * WINDOW;

/// `cluster-fan-out`: one node sends to `m` others, one sender process per receiving
/// node, `n` one-way messages each; the rate is per node pair. Against raw async-nats
/// publish/subscribe in the same run: one publishing connection, one subscribing
/// connection per receiver, the same message size and the same acknowledgement
/// window.
pub async fn cluster_fan_out(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let peers = p.m.max(1) as usize;
    let server = NatsServer::start().map_err(anyhow::Error::msg)?;
    let rt_a = Runtime::new();
    let a = Cluster::join(
        &rt_a,
        ClusterConfig::new(server.url(), "a").cluster_name("fan"),
    )
    .await?;
    let mut nodes = Vec::new();
    for i in 0..peers {
        let rt = Runtime::new();
        let c = Cluster::join(
            &rt,
            ClusterConfig::new(server.url(), format!("b{i}")).cluster_name("fan"),
        )
        .await?;
        nodes.push((rt, c));
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while a.members().iter().filter(|m| m.up).count() < peers
        || nodes
            .iter()
            .any(|(_, c)| !c.members().iter().any(|m| m.node == a.node() && m.up))
    {
        ensure!(Instant::now() < deadline, "the nodes never saw each other");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let receivers: Vec<Runtime> = nodes.iter().map(|(rt, _)| rt.clone()).collect();
    let publisher = async_nats::connect(server.url()).await?;
    let mut subscribers = Vec::new();
    for _ in 0..peers {
        subscribers.push(async_nats::connect(server.url()).await?);
    }
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm", || rusm_fan_out(rt_a.clone(), receivers.clone(), n)),
            Contender::new("async-nats publish", || {
                nats_fan_out(publisher.clone(), subscribers.clone(), n)
            }),
        ],
    )
    .await?;
    drop((a, nodes));
    Ok(vec![Figure::new(
        "cluster-fan-out",
        "one-way messages per node pair",
        "messages",
        format!(
            "n={n} per pair, {peers} receiving nodes, 8-byte payloads, acknowledged every {WINDOW}, one nats-server on loopback"
        ),
        Side::new("rusm", &series[0], None),
        Side::new("async-nats publish", &series[1], None),
        Some(0.8),
    )])
}

async fn rusm_fan_out(rt: Runtime, peers: Vec<Runtime>, n: u64) -> Result<Sample> {
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<Result<()>>();
    // Each receiver checks that its sender's numbers arrive in order, acknowledges
    // every WINDOW to the pid in the tag, and reports when it has all n.
    let receivers: Vec<Pid> = peers
        .iter()
        .map(|peer| {
            let done = done_tx.clone();
            peer.spawn(move |ctx| async move {
                let mut next = 0u64;
                let result = async {
                    while next < n {
                        let data = ctx
                            .recv_timeout(std::time::Duration::from_secs(10))
                            .await
                            .context("a receiver stalled for 10 s")?
                            .into_data()
                            .context("not data")?;
                        let v = number(data.payload.as_bytes())?;
                        ensure!(v == next, "message {next} came as {v}");
                        next += 1;
                        if next.is_multiple_of(WINDOW) || next == n {
                            ctx.send(Pid::from_raw(data.tag), next.to_le_bytes().to_vec());
                        }
                    }
                    Ok(())
                }
                .await;
                let _ = done.send(result);
            })
        })
        .collect();
    let start = Instant::now();
    for &to in &receivers {
        let done = done_tx.clone();
        rt.spawn(move |ctx| async move {
            let me = ctx.pid().as_raw();
            let mut acked = 0u64;
            let result = async {
                for i in 0..n {
                    while i >= acked + IN_FLIGHT {
                        let ack = ctx
                            .recv_timeout(std::time::Duration::from_secs(10))
                            .await
                            .context("no acknowledgement within 10 s")?
                            .into_data()
                            .context("not data")?;
                        acked = number(ack.payload.as_bytes())?;
                    }
                    ctx.try_send(to, me, rusm_otp::Payload::Bytes(i.to_le_bytes().to_vec()))
                        .map_err(|e| anyhow::anyhow!("send {i}: {e}"))?;
                }
                Ok(())
            }
            .await;
            if result.is_err() {
                let _ = done.send(result);
            }
        });
    }
    for _ in 0..receivers.len() {
        done.recv().await.context("a side ended without a word")??;
    }
    let elapsed = start.elapsed();
    settle(&rt).await?;
    for peer in &peers {
        settle(peer).await?;
    }
    Ok(Sample {
        units: n,
        elapsed,
        latencies: Vec::new(),
    })
}

async fn nats_fan_out(
    publisher: async_nats::Client,
    subscribers: Vec<async_nats::Client>,
    n: u64,
) -> Result<Sample> {
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut receiving = Vec::new();
    let mut acks = Vec::new();
    for (i, sub) in subscribers.iter().enumerate() {
        let subject = format!("bench.fan.{run}.{i}");
        let ack_subject = format!("bench.ack.{run}.{i}");
        let mut messages = sub.subscribe(subject).await?;
        acks.push(publisher.subscribe(ack_subject.clone()).await?);
        sub.flush().await?;
        let sub = sub.clone();
        receiving.push(tokio::spawn(async move {
            let mut next = 0u64;
            while next < n {
                let msg = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
                    .await
                    .context("a subscriber stalled for 10 s")?
                    .context("the subscription ended")?;
                let v = number(Some(&msg.payload))?;
                ensure!(v == next, "message {next} came as {v}");
                next += 1;
                if next.is_multiple_of(WINDOW) || next == n {
                    sub.publish(ack_subject.clone(), next.to_le_bytes().to_vec().into())
                        .await?;
                }
            }
            sub.flush().await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    publisher.flush().await?;
    let start = Instant::now();
    let mut sending = Vec::new();
    for (i, mut ack) in acks.into_iter().enumerate() {
        let publisher = publisher.clone();
        let subject = format!("bench.fan.{run}.{i}");
        sending.push(tokio::spawn(async move {
            let mut acked = 0u64;
            for i in 0..n {
                while i >= acked + IN_FLIGHT {
                    let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ack.next())
                        .await
                        .context("no acknowledgement within 10 s")?
                        .context("the acknowledgements ended")?;
                    acked = number(Some(&msg.payload))?;
                }
                publisher
                    .publish(subject.clone(), i.to_le_bytes().to_vec().into())
                    .await?;
            }
            publisher.flush().await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in receiving {
        task.await??;
    }
    let elapsed = start.elapsed();
    for task in sending {
        task.await??;
    }
    Ok(Sample {
        units: n,
        elapsed,
        latencies: Vec::new(),
    })
}

/// Each baseline run's subjects are its own, so nothing of an earlier run is heard.
static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
