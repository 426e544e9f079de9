//! The `reload` scenario: hot reload of a component while `n` of its actors are busy.
//!
//! `n` `counter` actors run on a node. A native driver keeps every one of them busy:
//! in waves, it sends each an `inc 1` call and waits for all `n` replies, over and over.
//! While the waves run, the node reloads `counter` (alternately with the bytes of
//! `counter-v2` and of `counter`, so every reload really changes the code), which asks
//! each running counter to upgrade in place: hand over its value and continue on the
//! new version under the same pid, with the same mailbox.
//!
//! A run ends when the reload has returned and one more full wave has been answered.
//! Then every counter is asked for its version (must be the new one) and its value
//! (must equal the `inc`s the driver sent it: a lost message, or a value not carried
//! over, fails the run). **Messages lost must be 0.**
//!
//! Figures: rusm's side is the reload, timed from the `reload` call until it returns
//! with every process upgraded (compiling the new version included; the compiled-code
//! cache is on, as in the other wasm scenarios, so only the first compile of each
//! version is cold); one unit is one actor upgraded. The baseline, in the same run, is
//! what replacing the actors costs without an upgrade: spawning `n` fresh counters of
//! the same component and waiting until each has answered one call (no state kept).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use rusm_otp::{Context, Message, Payload, Pid, Runtime, Tag};
use rusm_wasm::{UpgradeOutcome, WasmConfig, WasmNode, WasmSpawnOptions};

use crate::harness::{Contender, interleaved};
use crate::native::{Params, drive};
use crate::report::{Figure, Sample, Side};

const INC: Tag = 1;
const GET: Tag = 2;
const STOP: Tag = 3;
const VERSION: Tag = 4;
/// Replies carry `REPLY_BASE + the actor's index`.
const REPLY_BASE: Tag = 1 << 62;
/// How long one wave may take before the run fails (a lost message never answers).
const WAVE_LIMIT: Duration = Duration::from_secs(20);

/// `reload`: upgrade `n` busy counters in place, per run.
pub async fn reload(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    ensure!(n > 0, "reload: n must be at least 1");
    let v1 = std::fs::read(crate::wasm::component_path("counter")?)?;
    let v2 = std::fs::read(crate::wasm::component_path("counter-v2")?)?;
    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    node.load_bytes("counter", &v1).context("loading counter")?;

    let versions = Arc::new([v1, v2]);
    // Which bytes the next reload installs (index into `versions`), and what
    // `version` (tag 4) then answers.
    let mut next = 1usize;
    let upgrade_node = node.clone();
    let upgrade_versions = versions.clone();
    let fresh_node = node.clone();
    let sides = vec![
        Contender::new("rusm reload, upgrade in place", move || {
            let node = upgrade_node.clone();
            let bytes = upgrade_versions[next].clone();
            let expect_version = next as u64 + 1;
            next = 1 - next;
            let rt = node.runtime().clone();
            async move {
                drive(&rt, move |ctx| {
                    upgrade_run(node, ctx, n, bytes, expect_version)
                })
                .await
            }
        }),
        Contender::new("spawn n fresh", move || {
            let node = fresh_node.clone();
            let rt = node.runtime().clone();
            async move { drive(&rt, move |ctx| fresh_run(node, ctx, n)).await }
        }),
    ];
    let series = interleaved(p.repeats, p.rusm_only, sides).await?;
    let figure = Figure::new(
        "reload",
        "upgrade n busy actors",
        "actors",
        format!("n={n}"),
        Side::new("rusm reload", &series[0], None),
        Side::new("spawn n fresh", &series[1], None),
        None,
    );
    let swap_ms = n as f64 / series[0].median() * 1e3;
    Ok(vec![figure.with_note(format!(
        "swap latency {swap_ms:.1} ms for {n} busy actors (median); messages lost: 0 (checked every run)"
    ))])
}

/// Spawn `n` counters linked to `ctx`.
fn spawn_counters(node: &WasmNode, ctx: &Context, n: u64) -> Result<Vec<Pid>> {
    (0..n)
        .map(|_| {
            let options = WasmSpawnOptions {
                link: true,
                ..WasmSpawnOptions::default()
            };
            Ok(node.spawn_with(Some(ctx), "counter", options)?.pid)
        })
        .collect()
}

/// A call envelope: caller pid, reply tag, body.
fn call(ctx: &Context, to: Pid, tag: Tag, index: usize, body: &[u8]) {
    let mut payload = Vec::with_capacity(16 + body.len());
    payload.extend(ctx.pid().as_raw().to_le_bytes());
    payload.extend((REPLY_BASE + index as u64).to_le_bytes());
    payload.extend(body);
    ctx.send_tagged(to, tag, Payload::Bytes(payload));
}

/// Ask every counter `tag` and collect the replies, by counter.
async fn ask_all(ctx: &Context, pids: &[Pid], tag: Tag, body: &[u8]) -> Result<Vec<Vec<u8>>> {
    for (i, pid) in pids.iter().enumerate() {
        call(ctx, *pid, tag, i, body);
    }
    let mut replies = vec![None; pids.len()];
    for _ in 0..pids.len() {
        let msg = ctx
            .recv_match_timeout(
                |m| matches!(m, Message::Data(d) if d.tag >= REPLY_BASE),
                WAVE_LIMIT,
            )
            .await
            .ok_or_else(|| {
                anyhow!("a reply did not come within {WAVE_LIMIT:?}: a message was lost")
            })?;
        let data = msg.into_data().ok_or_else(|| anyhow!("not data"))?;
        let index = usize::try_from(data.tag - REPLY_BASE)?;
        let bytes = data
            .payload
            .as_bytes()
            .ok_or_else(|| anyhow!("a reply without bytes"))?
            .to_vec();
        let slot = replies
            .get_mut(index)
            .ok_or_else(|| anyhow!("a reply for no counter"))?;
        ensure!(slot.is_none(), "two replies from counter {index}");
        *slot = Some(bytes);
    }
    Ok(replies.into_iter().map(Option::unwrap_or_default).collect())
}

/// Ask every counter to stop (each replies, then ends normally).
fn stop_all(ctx: &Context, pids: &[Pid]) {
    for (i, pid) in pids.iter().enumerate() {
        call(ctx, *pid, STOP, i, &[]);
    }
}

fn u64_le(bytes: &[u8]) -> Result<u64> {
    Ok(u64::from_le_bytes(
        bytes.try_into().map_err(|_| anyhow!("expected 8 bytes"))?,
    ))
}

/// One measured reload with `n` busy counters.
async fn upgrade_run(
    node: WasmNode,
    ctx: Context,
    n: u64,
    bytes: Vec<u8>,
    expect_version: u64,
) -> Result<Sample> {
    let pids = spawn_counters(&node, &ctx, n)?;
    // Every counter runs and answers before the clock starts.
    let before = ask_all(&ctx, &pids, VERSION, &[]).await?;
    let old_version = 3 - expect_version;
    ensure!(
        before.iter().all(|v| u64_le(v).ok() == Some(old_version)),
        "the counters did not start on version {old_version}"
    );

    let done = Arc::new(AtomicBool::new(false));
    let reloader = {
        let node = node.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let report = node.reload("counter", bytes).await;
            let elapsed = start.elapsed();
            done.store(true, Ordering::Release);
            report.map(|r| (r, elapsed))
        })
    };
    let mut waves = 0u64;
    while !done.load(Ordering::Acquire) {
        ask_all(&ctx, &pids, INC, &1i64.to_le_bytes()).await?;
        waves += 1;
    }
    // One more full wave, all on the new version.
    ask_all(&ctx, &pids, INC, &1i64.to_le_bytes()).await?;
    waves += 1;
    let (report, elapsed) = reloader.await?.map_err(|e| anyhow!("reload failed: {e}"))?;
    let upgraded = report
        .upgrades
        .iter()
        .filter(|u| u.outcome == UpgradeOutcome::Upgraded)
        .count();
    ensure!(
        upgraded == pids.len(),
        "{upgraded} of {} counters upgraded: {:?}",
        pids.len(),
        report.upgrades
    );

    let versions = ask_all(&ctx, &pids, VERSION, &[]).await?;
    ensure!(
        versions
            .iter()
            .all(|v| u64_le(v).ok() == Some(expect_version)),
        "not every counter runs version {expect_version} after the reload"
    );
    let values = ask_all(&ctx, &pids, GET, &[]).await?;
    for (i, value) in values.iter().enumerate() {
        let value = u64_le(value)?;
        ensure!(
            value == waves,
            "counter {i} holds {value} after {waves} incs: messages lost or state not carried over"
        );
    }
    stop_all(&ctx, &pids);
    Ok(Sample {
        units: n,
        elapsed,
        latencies: Vec::new(),
    })
}

/// The baseline: spawn `n` fresh counters and wait for one answer from each.
async fn fresh_run(node: WasmNode, ctx: Context, n: u64) -> Result<Sample> {
    let start = Instant::now();
    let pids = spawn_counters(&node, &ctx, n)?;
    let versions = ask_all(&ctx, &pids, VERSION, &[]).await?;
    let elapsed = start.elapsed();
    ensure!(versions.iter().all(|v| v.len() == 8), "a bad version reply");
    stop_all(&ctx, &pids);
    Ok(Sample {
        units: n,
        elapsed,
        latencies: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{runtime, small};

    #[test]
    fn a_small_reload_run_upgrades_every_busy_counter_and_loses_nothing() {
        let rt = runtime();
        let params = Params {
            repeats: 2,
            ..small(20, 0)
        };
        let figures = rt.block_on(reload(params)).unwrap();
        assert_eq!(figures.len(), 1);
        assert!(figures[0].rusm.rate > 0.0 && figures[0].baseline.rate > 0.0);
    }
}
