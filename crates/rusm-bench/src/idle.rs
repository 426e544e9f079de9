//! The `idle-actors` scenario: how many live wasm actors a node holds, and what each
//! costs in resident memory and in address-space mappings, for each actor style.
//!
//! A driver spawns `n` actors (real instances of Rust guests built with the SDK) that
//! wait for a message, then sends every one a message and collects every reply, so
//! each actor counted is really alive and answering. Three runs, each on a fresh node:
//!
//! - **handler** style (`idle-handler`, `rusm_guest::handler!`) on the arena allocator
//!   (the default): between messages no guest code runs and the actor holds no fiber
//!   stack;
//! - **blocking** style (`echo`, `rusm_guest::actor!`, waiting in `receive`) on the arena
//!   allocator: each idle actor keeps its fiber stack open;
//! - **blocking** style on the pooling allocator (`Allocator::Pooling`), the previous
//!   default, with a pool of at most 10,000 slots (its stacks are all mapped at node
//!   start, two mappings each, so a larger pool cannot even start under the default
//!   `vm.max_map_count`).
//!
//! Reported per run: resident bytes per actor (growth of the process's `VmRSS` from
//! just before the first spawn to after the last reply and two periods of the arena's
//! idle-stack sweep, divided by the actors that replied), mappings per actor (growth of the lines of `/proc/self/maps`, which
//! `vm.max_map_count` bounds), the most actors that replied, and the rate of spawning
//! them and collecting their first replies. A spawn that fails, or an actor that ends
//! instead of answering, stops the count there and is reported, not hidden. A run also
//! stops spawning when the process's resident memory passes 16 GiB.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use rusm_otp::{Context, ExitReason, Message, Payload, Runtime, Tag};
use rusm_wasm::{Allocator, ArenaConfig, PoolConfig, WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::oneshot;

use crate::native::Params;
use crate::report::Measure;

/// Both components answer a message with tag `t` with tag `t + 1`.
const PING: Tag = 1;
const PONG: Tag = 2;
/// How long the driver waits for any one reply before it counts the rest as lost.
const REPLY_LIMIT: Duration = Duration::from_secs(60);
/// Spawning stops when the process is this large (the machine is shared).
const RSS_CAP: u64 = 16 << 30;
/// The largest pool the pooling run asks for.
const POOL_CAP: u32 = 10_000;

/// One run of the scenario.
#[derive(Debug, Clone, Copy)]
enum Run {
    HandlerArena,
    BlockingArena,
    BlockingPooling,
}

impl Run {
    fn component(self) -> &'static str {
        match self {
            Run::HandlerArena => "idle-handler",
            Run::BlockingArena | Run::BlockingPooling => "echo",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Run::HandlerArena => "handler style, arena",
            Run::BlockingArena => "blocking style, arena",
            Run::BlockingPooling => "blocking style, pooling",
        }
    }
}
/// What one run reached.
#[derive(Debug)]
struct Reached {
    asked: u64,
    spawned: u64,
    replied: u64,
    /// Why spawning or answering stopped early, if it did.
    stopped: Option<String>,
    rss_bytes: u64,
    /// The part of `rss_bytes` in the arena's read-write pieces (linear memories, open
    /// stacks).
    arena_rw_bytes: u64,
    /// Growth of the process's page tables (`VmPTE`; not part of `VmRSS`).
    page_table_bytes: u64,
    maps: u64,
    /// From the first counted spawn to the last reply.
    elapsed: Duration,
}

/// `idle-actors`: `n` idle actors of each style, every one answering once.
pub async fn idle_actors(p: Params) -> Result<Vec<Measure>> {
    let n = u32::try_from(p.n).context("n is too large")?;
    let mut measures = Vec::new();
    for run in [Run::HandlerArena, Run::BlockingArena, Run::BlockingPooling] {
        measures.extend(one_run(&p, run, n).await?);
    }
    Ok(measures)
}

async fn one_run(p: &Params, run: Run, n: u32) -> Result<Vec<Measure>> {
    let (n, config) = match run {
        Run::HandlerArena | Run::BlockingArena => (
            n,
            WasmConfig {
                allocator: Allocator::Arena(ArenaConfig {
                    max_instances: n.saturating_add(16),
                    ..ArenaConfig::default()
                }),
                ..WasmConfig::default()
            },
        ),
        Run::BlockingPooling => {
            let n = n.min(POOL_CAP);
            let slots = n.saturating_add(16);
            let pool = PoolConfig {
                total_component_instances: slots,
                total_core_instances: slots.saturating_mul(4),
                total_memories: slots,
                total_tables: slots.saturating_mul(2),
                total_stacks: slots,
                ..PoolConfig::default()
            };
            (
                n,
                WasmConfig {
                    allocator: Allocator::Pooling,
                    pool,
                    ..WasmConfig::default()
                },
            )
        }
    };
    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        ..config
    };
    let stack = config.async_stack_size;
    // Measure idle actors: let the arena's sweep close the stacks their calls left
    // open (it runs every `idle_stack_close`; a stack goes within two of its periods).
    let quiet = match &config.allocator {
        Allocator::Arena(arena) if arena.open_stacks > 0 => {
            arena.idle_stack_close * 2 + Duration::from_millis(250)
        }
        _ => Duration::ZERO,
    };
    let maps_before_node = map_count()?;
    let node = WasmNode::new(Runtime::new(), config)?;
    let node_maps = map_count()?.saturating_sub(maps_before_node);
    let component = run.component();
    node.load_file(component, crate::wasm::component_path(component)?)
        .with_context(|| format!("loading {component}"))?;

    let rt = node.runtime().clone();
    let (tx, rx) = oneshot::channel();
    let driver_node = node.clone();
    rt.spawn(move |ctx| async move {
        let _ = tx.send(drive(driver_node, ctx, component, u64::from(n), quiet).await);
    });
    let reached = rx.await.context("the driver ended without a result")??;
    let live = rt.process_count();
    rt.shutdown(Duration::from_secs(60)).await;
    drop(node);

    let params = format!("n={n}, {}", run.label());
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
    let mut maps_note = format!("beside the {node_maps} mappings the node made when it started");
    if let Some(limit) = max_map_count {
        maps_note.push_str(&format!("; vm.max_map_count is {limit}"));
    }
    let style_note = match run {
        Run::HandlerArena => format!(
            "idle between handle calls: holds its fiber stack ({} KiB reserved) while the \
             engine has the component model's concurrency on",
            stack >> 10
        ),
        Run::BlockingArena | Run::BlockingPooling => format!(
            "blocked in receive: holds its fiber stack ({} KiB reserved)",
            stack >> 10
        ),
    };
    Ok(vec![
        Measure {
            scenario: "idle-actors".into(),
            name: "resident per idle actor".into(),
            params: params.clone(),
            value: bytes,
            unit: "bytes".into(),
            note: Some(format!(
                "{style_note}; BEAM measured here ~2,680 B per process, Lunatic publishes ~75 KB"
            )),
        },
        Measure {
            scenario: "idle-actors".into(),
            name: "arena read-write per idle actor".into(),
            params: params.clone(),
            value: per(reached.arena_rw_bytes),
            unit: "bytes".into(),
            note: Some(
                "the resident part above in the arena's read-write pieces: linear memories, \
                 and the fiber stacks held open (blocking actors); the rest is the host's \
                 (stores, instances, process state, tasks)"
                    .into(),
            ),
        },
        Measure {
            scenario: "idle-actors".into(),
            name: "page tables per idle actor".into(),
            params: params.clone(),
            value: per(reached.page_table_bytes),
            unit: "bytes".into(),
            note: Some("growth of VmPTE, not counted in the resident figure".into()),
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
            params: params.clone(),
            value: reached.replied as f64,
            unit: "actors".into(),
            note: Some(reached_note),
        },
        Measure {
            scenario: "idle-actors".into(),
            name: "spawned and answered".into(),
            params,
            value: reached.replied as f64 / reached.elapsed.as_secs_f64().max(1e-9),
            unit: "actors/s".into(),
            note: Some(
                "every spawn, then every first reply, over the wall-clock time of both".into(),
            ),
        },
    ])
}

/// The driver: spawn, ping every actor, collect every reply, wait `quiet` (so the
/// actors are idle), measure.
async fn drive(
    node: WasmNode,
    ctx: Context,
    component: &str,
    n: u64,
    quiet: Duration,
) -> Result<Reached> {
    // One actor first, so one-time costs (the first instantiation, the driver's own
    // growth) are not counted per actor; it is not counted either.
    let warm = node.spawn_with(Some(&ctx), component, WasmSpawnOptions::default())?;
    ping(&ctx, warm.pid);
    ctx.recv_tag_timeout(PONG, REPLY_LIMIT)
        .await
        .ok_or_else(|| anyhow!("the first {component} actor did not answer"))?;
    let (rss0, maps0, before) = (rss_bytes()?, map_count()?, Footprint::read()?);
    let started = Instant::now();

    let mut pids = Vec::new();
    let mut stopped = None;
    for i in 0..n {
        match node.spawn_with(Some(&ctx), component, monitored()) {
            Ok(spawned) => pids.push(spawned.pid),
            Err(e) => {
                stopped = Some(format!("spawn {i} failed: {e}"));
                break;
            }
        }
        if i % 1024 == 1023 {
            // Let the new actors run to their first `receive`.
            tokio::task::yield_now().await;
            if rss_bytes()? > RSS_CAP {
                stopped = Some(format!(
                    "resident memory passed {} GiB after {} spawns",
                    RSS_CAP >> 30,
                    i + 1
                ));
                break;
            }
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
    let elapsed = started.elapsed();
    tokio::time::sleep(quiet).await;
    let (rss1, maps1, after) = (rss_bytes()?, map_count()?, Footprint::read()?);
    Ok(Reached {
        elapsed,
        asked: n,
        spawned: pids.len() as u64,
        replied,
        stopped,
        rss_bytes: rss1.saturating_sub(rss0),
        arena_rw_bytes: after.arena_rw.saturating_sub(before.arena_rw),
        page_table_bytes: after.page_tables.saturating_sub(before.page_tables),
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
pub(crate) fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

/// Where resident memory is, beyond the total.
struct Footprint {
    /// Resident bytes of the arena's read-write pieces (marked `dd`, left out of core
    /// dumps): linear memories, and the fiber stacks that are open.
    arena_rw: u64,
    /// `VmPTE`: the process's page tables.
    page_tables: u64,
}

impl Footprint {
    fn read() -> Result<Footprint> {
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut arena_rw = 0;
        let mut rw = false;
        let mut rss = 0;
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            if let Some((from, to)) = first.split_once('-')
                && u64::from_str_radix(from, 16).is_ok()
                && u64::from_str_radix(to, 16).is_ok()
            {
                rw = words.next().unwrap_or("").starts_with("rw");
                rss = 0;
            } else if first == "Rss:" {
                rss = words
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024;
            } else if first == "VmFlags:" && rw && words.any(|flag| flag == "dd") {
                // The arena's chunks are the only mappings left out of core dumps;
                // their read-write pieces are linear memories and open stacks (closed
                // stacks are not read-write; idle handler actors hold none open).
                arena_rw += rss;
            }
        }
        let status = std::fs::read_to_string("/proc/self/status")?;
        let page_tables = status
            .lines()
            .find_map(|l| l.strip_prefix("VmPTE:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        Ok(Footprint {
            arena_rw,
            page_tables,
        })
    }
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
        // Every actor of each run answered. (The sizes are read from the whole test
        // process, where other tests run beside this one, so only their presence is
        // checked here.)
        let reached: Vec<f64> = measures
            .iter()
            .filter(|m| m.name == "idle actors reached")
            .map(|m| m.value)
            .collect();
        assert_eq!(reached, [50.0, 50.0, 50.0]);
        assert!(value("resident per idle actor").is_finite());
        assert!(value("mappings per idle actor").is_finite());
        assert!(value("spawned and answered") > 0.0);
    }
}
