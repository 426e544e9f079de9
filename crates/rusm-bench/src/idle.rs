//! The `idle-actors` scenario: how many live wasm actors a node holds, and what each
//! costs in resident memory and in address-space mappings.
//!
//! A driver spawns `n` `echo` actors (real instances of a Rust guest built with the
//! SDK), each of which then waits in `receive` (holding its fiber stack while it
//! waits). Then it sends every one a message and collects every reply, so each actor
//! counted is really alive and answering. The node's pool is sized for `n` (instances,
//! memories, tables, stacks); everything else is `WasmConfig::default()`.
//!
//! Reported: resident bytes per actor (growth of the process's `VmRSS` from just
//! before the first spawn to after the last reply, divided by the actors that
//! replied), mappings per actor (growth of the lines of `/proc/self/maps`, which
//! `vm.max_map_count` bounds), and the most actors that replied. A spawn that fails,
//! or an actor that ends instead of answering, stops the count there and is reported,
//! not hidden.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use rusm_otp::{Context, ExitReason, Message, Payload, Runtime, Tag};
use rusm_wasm::{PoolConfig, WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::oneshot;

use crate::native::Params;
use crate::report::Measure;

/// `echo` answers a message with tag `t` with tag `t + 1`.
const PING: Tag = 1;
const PONG: Tag = 2;
/// How long the driver waits for any one reply before it counts the rest as lost.
const REPLY_LIMIT: Duration = Duration::from_secs(60);

/// What one run reached.
#[derive(Debug)]
struct Reached {
    asked: u64,
    spawned: u64,
    replied: u64,
    /// Why spawning or answering stopped early, if it did.
    stopped: Option<String>,
    rss_bytes: u64,
    maps: u64,
}

/// `idle-actors`: `n` idle `echo` actors, every one answering once.
pub async fn idle_actors(p: Params) -> Result<Vec<Measure>> {
    let n = u32::try_from(p.n).context("n is too large")?;
    let slots = n.saturating_add(16);
    let pool = PoolConfig {
        total_component_instances: slots,
        total_core_instances: slots.saturating_mul(4),
        total_memories: slots,
        total_tables: slots.saturating_mul(2),
        total_stacks: slots,
        ..PoolConfig::default()
    };
    let config = WasmConfig {
        pool,
        cache_dir: Some(crate::wasm::cache_dir()),
        epoch_tick: p.epoch_tick,
        ..WasmConfig::default()
    };
    let stack = config.async_stack_size;
    let maps_before_node = map_count()?;
    let node = WasmNode::new(Runtime::new(), config)?;
    let pool_maps = map_count()?.saturating_sub(maps_before_node);
    node.load_file("echo", crate::wasm::component_path("echo")?)
        .context("loading echo")?;

    let rt = node.runtime().clone();
    let (tx, rx) = oneshot::channel();
    let driver_node = node.clone();
    rt.spawn(move |ctx| async move {
        let _ = tx.send(drive(driver_node, ctx, u64::from(n)).await);
    });
    let reached = rx.await.context("the driver ended without a result")??;
    let live = rt.process_count();
    rt.shutdown(Duration::from_secs(30)).await;

    let params = format!("n={n}");
    let per = |total: u64| total as f64 / reached.replied.max(1) as f64;
    let bytes = per(reached.rss_bytes);
    let maps = per(reached.maps);
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let mut reached_note = format!(
        "{} of {} asked: {} spawned, {} replied; {live} processes live at the end",
        reached.replied, reached.asked, reached.spawned, reached.replied
    );
    if let Some(why) = &reached.stopped {
        reached_note.push_str(&format!("; stopped: {why}"));
    }
    let mut maps_note = format!(
        "beside the {pool_maps} mappings the node made up front for a pool of {slots} slots"
    );
    if let Some(limit) = max_map_count {
        maps_note.push_str(&format!("; vm.max_map_count is {limit}"));
    }
    Ok(vec![
        Measure {
            scenario: "idle-actors".into(),
            name: "resident per idle actor".into(),
            params: params.clone(),
            value: bytes,
            unit: "bytes".into(),
            note: Some(format!(
                "style: blocked in receive (fiber stack of {} KiB reserved per actor); BEAM measured here ~2,680 B per process, Lunatic publishes ~75 KB",
                stack >> 10
            )),
        },
        Measure {
            scenario: "idle-actors".into(),
            name: "mappings per idle actor".into(),
            params: params.clone(),
            value: maps,
            unit: "mappings".into(),
            note: Some(maps_note),
        },
        Measure {
            scenario: "idle-actors".into(),
            name: "idle actors reached".into(),
            params,
            value: reached.replied as f64,
            unit: "actors".into(),
            note: Some(reached_note),
        },
    ])
}

/// The driver: spawn, ping every actor, collect every reply, measure.
async fn drive(node: WasmNode, ctx: Context, n: u64) -> Result<Reached> {
    // One actor first, so one-time costs (the first instantiation, the driver's own
    // growth) are not counted per actor; it is not counted either.
    let warm = node.spawn_with(Some(&ctx), "echo", WasmSpawnOptions::default())?;
    ping(&ctx, warm.pid);
    ctx.recv_tag_timeout(PONG, REPLY_LIMIT)
        .await
        .ok_or_else(|| anyhow!("the first echo actor did not answer"))?;
    let (rss0, maps0) = (rss_bytes()?, map_count()?);

    let mut pids = Vec::new();
    let mut stopped = None;
    for i in 0..n {
        match node.spawn_with(Some(&ctx), "echo", monitored()) {
            Ok(spawned) => pids.push(spawned.pid),
            Err(e) => {
                stopped = Some(format!("spawn {i} failed: {e}"));
                break;
            }
        }
        if i % 1024 == 1023 {
            // Let the new actors run to their first `receive`.
            tokio::task::yield_now().await;
        }
    }
    for pid in &pids {
        ping(&ctx, *pid);
    }
    let mut replied = 0u64;
    let mut ended = 0u64;
    while replied + ended < pids.len() as u64 {
        let msg = ctx
            .recv_match_timeout(
                |m| matches!(m, Message::Data(d) if d.tag == PONG) || matches!(m, Message::Down(_)),
                REPLY_LIMIT,
            )
            .await;
        match msg {
            Some(Message::Data(_)) => replied += 1,
            Some(Message::Down(down)) => {
                // An actor that ended will not answer.
                ended += 1;
                if stopped.is_none() && down.reason != ExitReason::Normal {
                    stopped = Some(format!("{} ended: {}", down.pid, down.reason));
                }
            }
            _ => {
                stopped.get_or_insert_with(|| format!("no reply within {REPLY_LIMIT:?}"));
                break;
            }
        }
    }
    let (rss1, maps1) = (rss_bytes()?, map_count()?);
    Ok(Reached {
        asked: n,
        spawned: pids.len() as u64,
        replied,
        stopped,
        rss_bytes: rss1.saturating_sub(rss0),
        maps: maps1.saturating_sub(maps0),
    })
}

/// Spawn options that monitor the actor from the driver (an actor that dies is seen,
/// not waited for).
fn monitored() -> WasmSpawnOptions {
    WasmSpawnOptions {
        monitor: true,
        ..WasmSpawnOptions::default()
    }
}

fn ping(ctx: &Context, to: rusm_otp::Pid) {
    ctx.send_tagged(
        to,
        PING,
        Payload::Bytes(ctx.pid().as_raw().to_le_bytes().to_vec()),
    );
}

/// The process's resident set, in bytes (`VmRSS` in `/proc/self/status`).
fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// The number of mappings of this process (lines of `/proc/self/maps`).
fn map_count() -> Result<u64> {
    Ok(std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{runtime, small};

    #[test]
    fn a_small_idle_run_counts_every_actor_and_its_cost() {
        let rt = runtime();
        let params = Params {
            repeats: 1,
            ..small(50, 0)
        };
        let measures = rt.block_on(idle_actors(params)).unwrap();
        let value = |name: &str| {
            measures
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.value)
                .unwrap()
        };
        // Every actor answered. (The sizes are read from the whole test process, where
        // other tests run beside this one, so only their presence is checked here.)
        assert_eq!(value("idle actors reached"), 50.0);
        assert!(value("resident per idle actor").is_finite());
        assert!(value("mappings per idle actor").is_finite());
    }
}
