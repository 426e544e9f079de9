//! Native scenarios: rusm-otp processes against raw tokio tasks and channels.
//!
//! Every timed section runs inside a spawned task — a rusm process or a
//! `tokio::spawn`ed task — never in `block_on`, so neither side pays for crossing from
//! the main thread to the workers. Every run checks that its work really happened
//! (every reply collected and summed, the token's hop count, each receiver's total)
//! before its time is accepted.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use rusm_otp::{Context, ExitReason, Message, Payload, Pid, Runtime, SpawnOptions};
use rusm_wasm::Preemption;
use tokio::sync::{mpsc, oneshot};

use crate::harness::{Contender, interleaved};
use crate::report::{Figure, Sample, Side};

/// In ping-pong, one round trip in this many is timed on its own for the latency
/// percentiles (timing every one would add two clock reads to each ~1 us round trip).
pub(crate) const LATENCY_STRIDE: u64 = 8;

/// The token value that tells ring members and ping-pong partners to stop.
const STOP: u64 = u64::MAX;

/// What a scenario is given.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// The main size (see each scenario).
    pub n: u64,
    /// The second size, for scenarios that have one.
    pub m: u64,
    /// Measured repeats per side.
    pub repeats: usize,
    /// Run the rusm side only (for profiling; the baselines come out empty).
    pub rusm_only: bool,
    /// Tokio worker threads of the runtime the scenario runs on.
    pub workers: usize,
    /// How wasm nodes preempt long-running guests (`WasmConfig::preemption`).
    pub preemption: Preemption,
    /// `http`: requests per instance of the reusing side (0: no such side).
    pub reuse: u32,
    /// `http`: requests one instance of the `wasi:http` 0.3 side serves at once (0: no
    /// such side).
    pub p3: u32,
}

// ---- helpers -----------------------------------------------------------------------

/// Run `body` as a root rusm process on `rt`, hand back what it measured, and wait until
/// every process it started has ended (so the next run starts on an idle node).
pub(crate) async fn drive<F, Fut>(rt: &Runtime, body: F) -> Result<Sample>
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Sample>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let (pid, watch) = rt.spawn_watched(SpawnOptions::default(), move |ctx| async move {
        let _ = tx.send(body(ctx).await);
    });
    let reason = watch.await;
    ensure!(
        reason == ExitReason::Normal,
        "driver {pid} ended with {reason}"
    );
    let sample = rx.await.context("the driver sent no result")??;
    settle(rt).await?;
    Ok(sample)
}

/// Wait until no process is alive on `rt`.
pub(crate) async fn settle(rt: &Runtime) -> Result<()> {
    let start = Instant::now();
    while rt.process_count() > 0 {
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "{} processes still alive 30 s after the run",
                rt.process_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Run `body` as a spawned tokio task (not in `block_on`).
pub(crate) async fn in_task<Fut>(body: Fut) -> Result<Sample>
where
    Fut: Future<Output = Result<Sample>> + Send + 'static,
{
    tokio::spawn(body)
        .await
        .context("the baseline task panicked")?
}

/// The `u64` a data message carries.
fn u64_of(msg: Message) -> Result<u64> {
    let data = msg
        .into_data()
        .ok_or_else(|| anyhow!("expected a data message"))?;
    data.payload
        .downcast::<u64>()
        .map_err(|p| anyhow!("expected a u64 payload, got {p:?}"))
}

/// For actors that cannot return an error: panic (the process crashes, the linked
/// driver goes down with it, the run fails).
fn must_u64(msg: Message) -> u64 {
    u64_of(msg).expect("benchmark protocol violated")
}

fn sum_below(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

// ---- spawn-native --------------------------------------------------------------------

/// `spawn-native`: a parent spawns `n` processes; each sends one reply and exits; the
/// parent collects all `n`. Baselines: `tokio::spawn` of `n` tasks replying over an
/// mpsc channel to the spawning task, and `tokio::spawn` + join of `n` tasks.
pub async fn spawn_native(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let rt = Runtime::new();
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm", || rusm_spawn(rt.clone(), n)),
            Contender::new("tokio spawn+mpsc reply", || in_task(tokio_spawn_reply(n))),
            Contender::new("tokio spawn+join", || in_task(tokio_spawn_join(n))),
        ],
    )
    .await?;
    let params = format!("n={n}");
    let rusm = Side::new("rusm", &series[0], None);
    Ok(vec![
        Figure::new(
            "spawn-native",
            "spawn+reply+exit",
            "spawns",
            params.clone(),
            rusm.clone(),
            Side::new("tokio spawn+mpsc reply", &series[1], None),
            Some(0.5),
        ),
        Figure::new(
            "spawn-native",
            "spawn+reply+exit vs join",
            "spawns",
            params,
            rusm,
            Side::new("tokio spawn+join", &series[2], None),
            None,
        ),
    ])
}

async fn rusm_spawn(rt: Runtime, n: u64) -> Result<Sample> {
    let before = rt.stats();
    let sample = drive(&rt, move |ctx| async move {
        let me = ctx.pid();
        let start = Instant::now();
        for i in 0..n {
            ctx.spawn(move |child| async move { child.send(me, Payload::value(i)) });
        }
        let mut sum = 0u64;
        for _ in 0..n {
            sum += u64_of(ctx.recv().await)?;
        }
        let elapsed = start.elapsed();
        ensure!(
            sum == sum_below(n),
            "replies summed to {sum}, expected {}",
            sum_below(n)
        );
        Ok(Sample {
            units: n,
            elapsed,
            latencies: Vec::new(),
        })
    })
    .await?;
    let after = rt.stats();
    ensure!(
        after.spawned - before.spawned == n + 1,
        "not every child was spawned"
    );
    ensure!(
        after.exited - before.exited == n + 1,
        "not every child exited"
    );
    Ok(sample)
}

async fn tokio_spawn_reply(n: u64) -> Result<Sample> {
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let start = Instant::now();
    for i in 0..n {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(i);
        });
    }
    drop(tx);
    let mut sum = 0u64;
    for _ in 0..n {
        sum += rx.recv().await.context("a reply went missing")?;
    }
    let elapsed = start.elapsed();
    ensure!(
        sum == sum_below(n),
        "replies summed to {sum}, expected {}",
        sum_below(n)
    );
    Ok(Sample {
        units: n,
        elapsed,
        latencies: Vec::new(),
    })
}

async fn tokio_spawn_join(n: u64) -> Result<Sample> {
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
    let mut sum = 0u64;
    for handle in handles {
        sum += handle.await?;
    }
    let elapsed = start.elapsed();
    ensure!(
        sum == sum_below(n),
        "results summed to {sum}, expected {}",
        sum_below(n)
    );
    Ok(Sample {
        units: n,
        elapsed,
        latencies: Vec::new(),
    })
}

// ---- ping-pong -----------------------------------------------------------------------

/// `ping-pong`: two processes do `n` round trips. Baseline: two spawned tokio tasks
/// over a pair of unbounded mpsc channels.
pub async fn ping_pong(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let rt = Runtime::new();
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm", || rusm_ping_pong(rt.clone(), n)),
            Contender::new("tokio mpsc", || in_task(tokio_ping_pong(n))),
        ],
    )
    .await?;
    Ok(vec![Figure::new(
        "ping-pong",
        "round trip",
        "round trips",
        format!("n={n}"),
        Side::new("rusm", &series[0], Some("round trip")),
        Side::new("tokio mpsc", &series[1], Some("round trip")),
        Some(0.5),
    )])
}

pub(crate) async fn rusm_ping_pong(rt: Runtime, n: u64) -> Result<Sample> {
    drive(&rt, move |ctx| async move {
        let pong = ctx.spawn_link(|c| async move {
            let parent = c.parent().expect("spawned by the driver");
            loop {
                let v = must_u64(c.recv().await);
                if v == STOP {
                    break;
                }
                c.send(parent, Payload::value(v));
            }
        });
        let mut latencies = Vec::with_capacity((n / LATENCY_STRIDE + 1) as usize);
        let start = Instant::now();
        for i in 0..n {
            let timed = (i % LATENCY_STRIDE == 0).then(Instant::now);
            ctx.send(pong, Payload::value(i));
            let v = u64_of(ctx.recv().await)?;
            ensure!(v == i, "round trip {i} came back as {v}");
            if let Some(t) = timed {
                latencies.push(t.elapsed());
            }
        }
        let elapsed = start.elapsed();
        ctx.send(pong, Payload::value(STOP));
        Ok(Sample {
            units: n,
            elapsed,
            latencies,
        })
    })
    .await
}

pub(crate) async fn tokio_ping_pong(n: u64) -> Result<Sample> {
    let (to_pong, mut pong_rx) = mpsc::unbounded_channel::<u64>();
    let (to_ping, mut ping_rx) = mpsc::unbounded_channel::<u64>();
    let pong = tokio::spawn(async move {
        while let Some(v) = pong_rx.recv().await {
            if v == STOP {
                break;
            }
            to_ping.send(v).expect("ping is waiting");
        }
    });
    let mut latencies = Vec::with_capacity((n / LATENCY_STRIDE + 1) as usize);
    let start = Instant::now();
    for i in 0..n {
        let timed = (i % LATENCY_STRIDE == 0).then(Instant::now);
        to_pong.send(i).map_err(|_| anyhow!("pong is gone"))?;
        let v = ping_rx.recv().await.context("pong is gone")?;
        ensure!(v == i, "round trip {i} came back as {v}");
        if let Some(t) = timed {
            latencies.push(t.elapsed());
        }
    }
    let elapsed = start.elapsed();
    to_pong.send(STOP).map_err(|_| anyhow!("pong is gone"))?;
    pong.await?;
    Ok(Sample {
        units: n,
        elapsed,
        latencies,
    })
}

// ---- ring ----------------------------------------------------------------------------

/// `ring`: `n` processes in a ring pass a token around `m` times; a unit is one hop
/// (one message), so a run is `n * m` units. The token counts its hops, and the driver
/// checks the count after every lap. Baseline: `n` tokio tasks and mpsc channels.
pub async fn ring(p: Params) -> Result<Vec<Figure>> {
    let (n, m) = (p.n, p.m);
    ensure!(n >= 2, "a ring needs at least 2 processes");
    let rt = Runtime::new();
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm", || rusm_ring(rt.clone(), n, m)),
            Contender::new("tokio mpsc", || in_task(tokio_ring(n, m))),
        ],
    )
    .await?;
    Ok(vec![Figure::new(
        "ring",
        "token hop",
        "hops",
        format!("n={n} m={m}"),
        Side::new("rusm", &series[0], Some("lap")),
        Side::new("tokio mpsc", &series[1], Some("lap")),
        None,
    )])
}

async fn rusm_ring(rt: Runtime, n: u64, m: u64) -> Result<Sample> {
    drive(&rt, move |ctx| async move {
        // Spawned back to front, so each member is born knowing the next one.
        let mut next = ctx.pid();
        for _ in 1..n {
            let to = next;
            next = ctx.spawn_link(move |c| async move {
                loop {
                    let v = must_u64(c.recv().await);
                    if v == STOP {
                        c.send(to, Payload::value(STOP));
                        break;
                    }
                    c.send(to, Payload::value(v + 1));
                }
            });
        }
        let first = next;
        let mut latencies = Vec::with_capacity(m as usize);
        let mut token = 0u64;
        let start = Instant::now();
        for lap in 0..m {
            let t = Instant::now();
            ctx.send(first, Payload::value(token + 1));
            let v = u64_of(ctx.recv().await)?;
            ensure!(
                v == token + n,
                "lap {lap}: token came back as {v}, expected {}",
                token + n
            );
            token = v;
            latencies.push(t.elapsed());
        }
        let elapsed = start.elapsed();
        ensure!(
            token == n * m,
            "the token made {token} hops, expected {}",
            n * m
        );
        ctx.send(first, Payload::value(STOP));
        ensure!(
            u64_of(ctx.recv().await)? == STOP,
            "the stop token did not come round"
        );
        Ok(Sample {
            units: n * m,
            elapsed,
            latencies,
        })
    })
    .await
}

async fn tokio_ring(n: u64, m: u64) -> Result<Sample> {
    let (driver_tx, mut driver_rx) = mpsc::unbounded_channel::<u64>();
    let mut next = driver_tx;
    for _ in 1..n {
        let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
        let to = next;
        tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                if v == STOP {
                    let _ = to.send(STOP);
                    break;
                }
                to.send(v + 1).expect("the next member is alive");
            }
        });
        next = tx;
    }
    let first = next;
    let mut latencies = Vec::with_capacity(m as usize);
    let mut token = 0u64;
    let start = Instant::now();
    for lap in 0..m {
        let t = Instant::now();
        first
            .send(token + 1)
            .map_err(|_| anyhow!("the ring is broken"))?;
        let v = driver_rx.recv().await.context("the ring is broken")?;
        ensure!(
            v == token + n,
            "lap {lap}: token came back as {v}, expected {}",
            token + n
        );
        token = v;
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    ensure!(
        token == n * m,
        "the token made {token} hops, expected {}",
        n * m
    );
    first
        .send(STOP)
        .map_err(|_| anyhow!("the ring is broken"))?;
    ensure!(
        driver_rx.recv().await == Some(STOP),
        "the stop token did not come round"
    );
    Ok(Sample {
        units: n * m,
        elapsed,
        latencies,
    })
}

// ---- fan-out -------------------------------------------------------------------------

/// `fan-out`: one sender sends `m` messages to each of `n` receivers (round-robin);
/// each receiver sums what it got and reports to the sender when done. A unit is one
/// delivered message. A second figure runs the same with one receiver and `n * m`
/// messages (one-way 1→1), which is what the BEAM anchor's one-way figure measures.
/// Baseline: unbounded tokio mpsc channels.
pub async fn fan_out(p: Params) -> Result<Vec<Figure>> {
    let (n, m) = (p.n, p.m);
    let mut figures = Vec::new();
    for (name, receivers, each) in [("1->N messages", n, m), ("1->1 one-way", 1, n * m)] {
        let rt = Runtime::new();
        let series = interleaved(
            p.repeats,
            p.rusm_only,
            vec![
                Contender::new("rusm", || rusm_fan_out(rt.clone(), receivers, each)),
                Contender::new("tokio mpsc", || in_task(tokio_fan_out(receivers, each))),
            ],
        )
        .await?;
        figures.push(Figure::new(
            "fan-out",
            name,
            "msgs",
            format!("n={receivers} m={each}"),
            Side::new("rusm", &series[0], None),
            Side::new("tokio mpsc", &series[1], None),
            None,
        ));
    }
    Ok(figures)
}

async fn rusm_fan_out(rt: Runtime, n: u64, m: u64) -> Result<Sample> {
    drive(&rt, move |ctx| async move {
        let me = ctx.pid();
        let receivers: Vec<Pid> = (0..n)
            .map(|r| {
                ctx.spawn_link(move |c| async move {
                    let mut sum = 0u64;
                    for _ in 0..m {
                        sum += must_u64(c.recv().await);
                    }
                    c.send(me, Payload::value((r, sum)));
                })
            })
            .collect();
        let start = Instant::now();
        for i in 0..m {
            for &to in &receivers {
                ctx.send(to, Payload::value(i));
            }
        }
        let mut reported = vec![false; n as usize];
        for _ in 0..n {
            let data = ctx.recv().await.into_data().context("expected a report")?;
            let (r, sum) = data
                .payload
                .downcast::<(u64, u64)>()
                .map_err(|_| anyhow!("expected a report"))?;
            ensure!(
                sum == sum_below(m),
                "receiver {r} summed {sum}, expected {}",
                sum_below(m)
            );
            ensure!(
                !std::mem::replace(&mut reported[r as usize], true),
                "receiver {r} reported twice"
            );
        }
        let elapsed = start.elapsed();
        Ok(Sample {
            units: n * m,
            elapsed,
            latencies: Vec::new(),
        })
    })
    .await
}

async fn tokio_fan_out(n: u64, m: u64) -> Result<Sample> {
    let (report_tx, mut report_rx) = mpsc::unbounded_channel::<(u64, u64)>();
    let senders: Vec<mpsc::UnboundedSender<u64>> = (0..n)
        .map(|r| {
            let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
            let report = report_tx.clone();
            tokio::spawn(async move {
                let mut sum = 0u64;
                for _ in 0..m {
                    sum += rx.recv().await.expect("the sender is alive");
                }
                let _ = report.send((r, sum));
            });
            tx
        })
        .collect();
    drop(report_tx);
    let start = Instant::now();
    for i in 0..m {
        for to in &senders {
            to.send(i).map_err(|_| anyhow!("a receiver is gone"))?;
        }
    }
    let mut reported = vec![false; n as usize];
    for _ in 0..n {
        let (r, sum) = report_rx.recv().await.context("a receiver died")?;
        ensure!(
            sum == sum_below(m),
            "receiver {r} summed {sum}, expected {}",
            sum_below(m)
        );
        ensure!(
            !std::mem::replace(&mut reported[r as usize], true),
            "receiver {r} reported twice"
        );
    }
    let elapsed = start.elapsed();
    Ok(Sample {
        units: n * m,
        elapsed,
        latencies: Vec::new(),
    })
}

/// What the scenarios' unit tests share: small sizes and a 2-worker runtime.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Params for a quick, fully checked run: sizes `n` and `m`, one measured repeat.
    pub(crate) fn small(n: u64, m: u64) -> Params {
        Params {
            n,
            m,
            repeats: 1,
            rusm_only: false,
            workers: 2,
            preemption: Preemption::default(),
            reuse: 0,
            p3: 0,
        }
    }

    /// A tokio runtime with 2 workers, as the benchmark binary uses by default.
    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{runtime, small};

    #[test]
    fn every_scenario_runs_and_verifies_small() {
        let rt = runtime();
        rt.block_on(async {
            for figures in [
                spawn_native(small(500, 0)).await.unwrap(),
                ping_pong(small(500, 0)).await.unwrap(),
                ring(small(10, 20)).await.unwrap(),
                fan_out(small(4, 50)).await.unwrap(),
            ] {
                for fig in figures {
                    assert!(
                        fig.rusm.rate > 0.0 && fig.baseline.rate > 0.0,
                        "{}",
                        fig.line()
                    );
                    assert_eq!(fig.rusm.runs.len(), 1);
                }
            }
        });
    }

    #[test]
    fn a_crashing_actor_fails_the_run() {
        let rt = runtime();
        rt.block_on(async {
            let node = Runtime::new();
            let err = drive(&node, |ctx| async move {
                let _child = ctx.spawn_link(|c| async move { must_u64(c.recv().await) });
                ctx.send(_child, b"not a u64".to_vec());
                ctx.recv().await;
                Ok(Sample::default())
            })
            .await
            .unwrap_err();
            assert!(err.to_string().contains("ended with"), "{err}");
        });
    }
}
