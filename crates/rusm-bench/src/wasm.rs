//! Wasm scenarios: rusm processes that are WASI preview 2 components (`rusm-wasm`),
//! against raw wasmtime on the same engine, native rusm processes and raw tokio.
//!
//! The components are the examples of `components/`, built by `rusm-e2e`'s build
//! script. Every node compiles them through wasmtime's cache (next to this binary), so
//! only the first run of a build compiles. As in the native scenarios, every timed
//! section runs inside a spawned task, never in `block_on`, and every run checks that
//! its work happened (every reply or exit collected with the right reason, the node's
//! spawn/exit counters, the pinger's report of its rounds, each kill's reason).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use rusm_otp::{Context, ExitReason, Message, Payload, Pid, Runtime, Tag};
use rusm_wasm::{Preemption, WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc;
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceTable, types::ComponentItem,
};
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::harness::{Contender, interleaved};
use crate::native::{LATENCY_STRIDE, Params, drive, in_task, rusm_ping_pong, tokio_ping_pong};
use crate::report::{Figure, Sample, Series, Side};

/// `rusm:runtime`'s types, for the raw wasmtime ping-pong host (which defines the
/// few `process` functions the `ping-pong` component calls by hand).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "actor",
    });
}

use bindings::rusm::runtime::types::{
    DataMessage, Error as WitError, Message as WitMessage, Selector,
};

/// `trivial`'s reply and `spinner`'s `spinning` notice.
const NOTICE_TAG: Tag = 1;
/// A ping to `ping-pong`; the ponger answers with `PING_TAG + 1`.
const PING_TAG: Tag = 1;
const PONG_TAG: Tag = 2;
/// The pinger's report (payload: its rounds, `u64`).
const DONE_TAG: Tag = 3;
/// The payload that ends a ponger.
const STOP: &[u8] = b"stop";
/// How long a spinner may take to die once killed before the run fails.
const KILL_LIMIT: Duration = Duration::from_secs(10);

// ---- helpers -----------------------------------------------------------------------

/// A wasm node (on a fresh rusm runtime) with these components of `components/`
/// loaded, its engine caching compiled code next to this binary.
pub(crate) fn wasm_node(p: &Params, components: &[&str]) -> Result<WasmNode> {
    let config = WasmConfig {
        cache_dir: Some(cache_dir()),
        preemption: p.preemption,
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    for name in components {
        node.load_file(name, component_path(name)?)
            .with_context(|| format!("loading component {name}"))?;
    }
    Ok(node)
}

pub(crate) fn component_path(name: &str) -> Result<&'static Path> {
    rusm_e2e::component(name).ok_or_else(|| anyhow!("rusm-e2e built no component {name:?}"))
}

/// `target/<profile>/wasmtime-cache` when run from the target directory.
pub(crate) fn cache_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wasmtime-cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("rusm-bench-wasmtime-cache"))
}

/// A pid as components expect it: 8 little-endian bytes.
fn pid_bytes(pid: Pid) -> Vec<u8> {
    pid.as_raw().to_le_bytes().to_vec()
}

/// Wait for one data message with `tag` and check its payload.
async fn expect_data(ctx: &Context, tag: Tag, payload: &[u8]) -> Result<()> {
    let data = ctx.recv_tag(tag).await;
    let got = data
        .payload
        .as_bytes()
        .ok_or_else(|| anyhow!("tag {tag}: expected bytes"))?;
    ensure!(
        got == payload,
        "tag {tag}: expected payload {payload:?}, got {got:?}"
    );
    Ok(())
}

/// Spawn a `ping-pong` ponger linked to `ctx` (so its crash fails the run).
fn spawn_ponger(node: &WasmNode, ctx: &Context) -> Result<Pid> {
    spawn_ponger_in(node, ctx, Steps::Combined)
}

/// How a `ping-pong` side makes each step (its `mode` byte): send, then wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steps {
    /// One `send-receive` call (mode 0, the component's default).
    Combined,
    /// A `send` call, then a `receive` call (mode 1).
    Separate,
    /// A `send` call, then a `try-receive` call, then a `receive` call when nothing
    /// was queued (mode 2).
    TryFirst,
}

impl Steps {
    fn mode(self) -> u8 {
        match self {
            Steps::Combined => 0,
            Steps::Separate => 1,
            Steps::TryFirst => 2,
        }
    }
}

/// [`spawn_ponger`] making its steps as `steps` says.
fn spawn_ponger_in(node: &WasmNode, ctx: &Context, steps: Steps) -> Result<Pid> {
    let options = WasmSpawnOptions {
        init: vec![steps.mode()],
        link: true,
        ..WasmSpawnOptions::default()
    };
    Ok(node.spawn_with(Some(ctx), "ping-pong", options)?.pid)
}

/// The init of a `ping-pong` pinger: `rounds` round trips with `ponger`, reporting to
/// `reporter`, no extra body, steps as `steps` says.
fn pinger_init(ponger: u64, rounds: u64, reporter: u64, steps: Steps) -> Vec<u8> {
    let mut init = ponger.to_le_bytes().to_vec();
    init.extend(rounds.to_le_bytes());
    init.extend(reporter.to_le_bytes());
    init.extend(0u32.to_le_bytes());
    init.push(steps.mode());
    init
}

/// Spawn a `ping-pong` pinger linked to `ctx`: `rounds` round trips with `ponger`,
/// reporting to `ctx` with [`DONE_TAG`].
fn spawn_pinger(node: &WasmNode, ctx: &Context, ponger: Pid, rounds: u64) -> Result<Pid> {
    let mut init = pid_bytes(ponger);
    init.extend(rounds.to_le_bytes());
    init.extend(pid_bytes(ctx.pid()));
    let options = WasmSpawnOptions {
        init,
        link: true,
        ..WasmSpawnOptions::default()
    };
    Ok(node.spawn_with(Some(ctx), "ping-pong", options)?.pid)
}

/// `rounds` round trips from the native process `ctx` to a wasm ponger; one in `every`
/// is timed.
async fn native_pings(
    ctx: &Context,
    ponger: Pid,
    rounds: u64,
    every: u64,
) -> Result<Vec<Duration>> {
    let ping = pid_bytes(ctx.pid());
    let mut latencies = Vec::with_capacity((rounds / every + 1) as usize);
    for i in 0..rounds {
        let timed = (i % every == 0).then(Instant::now);
        ctx.send_tagged(ponger, PING_TAG, Payload::Bytes(ping.clone()));
        let reply = ctx.recv_tag(PONG_TAG).await;
        ensure!(
            reply.payload.as_bytes() == Some(&ping[..]),
            "round trip {i}: the reply does not match the ping"
        );
        if let Some(t) = timed {
            latencies.push(t.elapsed());
        }
    }
    Ok(latencies)
}

/// Wait for the pinger's report and check it made `rounds` round trips.
async fn pinger_report(ctx: &Context, rounds: u64) -> Result<()> {
    expect_data(ctx, DONE_TAG, &rounds.to_le_bytes()).await
}

/// p50 and p99 of a series' latencies in epoch ticks, for a note.
fn in_ticks(series: &Series, tick: Duration) -> Option<(f64, f64)> {
    let l = series.latency("")?;
    let tick_us = tick.as_secs_f64() * 1e6;
    Some((l.p50_us / tick_us, l.p99_us / tick_us))
}

// ---- spawn-component -----------------------------------------------------------------

/// `spawn-component`: spawn `n` `trivial` wasm processes, at most `window` alive at
/// once (the pool holds 10,000 instances by default), and observe every one finish.
///
/// rusm sides: with an empty init (the component returns at once; the spawner
/// monitors each child and counts `down`s with reason `normal`), and with the
/// spawner's pid as init (each child sends one message, which the spawner counts).
/// Baselines, on the node's own engine (same `Config`, same pool, same epoch thread),
/// one tokio task each, completion reported over an mpsc channel, same window: raw
/// wasmtime `InstancePre::instantiate_async` + `call_async` of `run` with an empty
/// init, with a `()` store and every import a trap stub; and the same with a fresh WASI
/// context per store (`wasmtime_wasi::p2::add_to_linker_async`, as `wasmtime run`).
pub async fn spawn_component(p: Params) -> Result<Vec<Figure>> {
    let (n, window) = (p.n, p.m.max(1));
    let node = wasm_node(&p, &["trivial"])?;
    let component = Component::from_file(node.engine(), component_path("trivial")?)
        .map_err(anyhow::Error::from)?;
    let bare = Arc::new(RawWasmtime::bare(&component)?);
    let wasi = Arc::new(RawWasmtime::wasi(&component)?);
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm", || {
                rusm_spawn_component(node.clone(), n, window, Completion::Down)
            }),
            Contender::new("wasmtime", || in_task(bare.clone().run(n, window))),
            Contender::new("wasmtime+WASI", || in_task(wasi.clone().run(n, window))),
            Contender::new("rusm reply", || {
                rusm_spawn_component(node.clone(), n, window, Completion::Reply)
            }),
        ],
    )
    .await?;
    let params = format!("n={n} k={window}");
    let empty = Side::new("rusm", &series[0], None);
    let bare = Side::new("wasmtime", &series[1], None);
    Ok(vec![
        Figure::new(
            "spawn-component",
            "empty init, down",
            "spawns",
            params.clone(),
            empty.clone(),
            bare.clone(),
            Some(0.8),
        )
        .with_note(
            "like for like: empty init both sides; baseline store (), every import a trap stub"
                .into(),
        ),
        Figure::new(
            "spawn-component",
            "empty init vs +WASI",
            "spawns",
            params.clone(),
            empty,
            Side::new("wasmtime+WASI", &series[2], None),
            None,
        )
        .with_note("baseline builds a default WasiCtx + ResourceTable per store".into()),
        Figure::new(
            "spawn-component",
            "reply (pid init)",
            "spawns",
            params,
            Side::new("rusm", &series[3], None),
            bare,
            None,
        )
        .with_note("each rusm child sends 1 message; the baseline sends none".into()),
    ])
}

/// How the spawner learns that a child is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    /// Empty init; the spawner monitors each child and counts `down`s.
    Down,
    /// The spawner's pid as init; the child sends one message.
    Reply,
}

async fn rusm_spawn_component(
    node: WasmNode,
    n: u64,
    window: u64,
    how: Completion,
) -> Result<Sample> {
    let rt = node.runtime().clone();
    let before = rt.stats();
    let sample = drive(&rt, move |ctx| async move {
        let options = WasmSpawnOptions {
            init: match how {
                Completion::Down => Vec::new(),
                Completion::Reply => pid_bytes(ctx.pid()),
            },
            monitor: how == Completion::Down,
            ..WasmSpawnOptions::default()
        };
        let start = Instant::now();
        let mut spawned = 0;
        while spawned < n.min(window) {
            node.spawn_with(Some(&ctx), "trivial", options.clone())?;
            spawned += 1;
        }
        for done in 0..n {
            match (how, ctx.recv().await) {
                (Completion::Down, Message::Down(down)) => ensure!(
                    down.reason == ExitReason::Normal,
                    "child {done} ended with {}",
                    down.reason
                ),
                (Completion::Reply, Message::Data(data)) => ensure!(
                    data.tag == NOTICE_TAG && data.payload.as_bytes() == Some(&[][..]),
                    "child {done} sent tag {} {:?}",
                    data.tag,
                    data.payload
                ),
                (_, other) => bail!("unexpected message {other:?}"),
            }
            if spawned < n {
                node.spawn_with(Some(&ctx), "trivial", options.clone())?;
                spawned += 1;
            }
        }
        let elapsed = start.elapsed();
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

/// The store data of the WASI baseline.
struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for WasiState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Raw wasmtime: a pre-instantiated component, where its `run` export is, and how to
/// make each store's data.
struct RawWasmtime<T: 'static> {
    pre: InstancePre<T>,
    run: ComponentExportIndex,
    data: fn() -> T,
}

/// Define every function of the component's `rusm:runtime/*` imports, except those
/// named in `defined`, as a trap. Unlike `Linker::define_unknown_imports_as_traps`,
/// this leaves WASI alone: that one would also stub a WASI interface the component
/// imports at a newer patch version than the linker names, shadowing the real,
/// semver-compatible definition and splitting its resource types.
fn stub_runtime_imports<T: 'static>(
    linker: &mut Linker<T>,
    component: &Component,
    defined: &[&str],
) -> Result<()> {
    let engine = component.engine();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("rusm:runtime/") {
            continue;
        }
        let is_process = name.starts_with("rusm:runtime/process@");
        let mut host = linker.instance(name)?;
        for (func, export) in instance.exports(engine) {
            if !matches!(export.ty, ComponentItem::ComponentFunc(_))
                || (is_process && defined.contains(&func))
            {
                continue;
            }
            let what = format!("{name}#{func}");
            host.func_new(func, move |_, _, _, _| {
                Err(wasmtime::format_err!(
                    "{what} is not provided by this baseline"
                ))
            })?;
        }
    }
    Ok(())
}

/// Where `rusm:runtime/entry@*`'s `run` is among the component's exports.
fn run_export(component: &Component) -> Result<ComponentExportIndex> {
    let engine = component.engine();
    let entry = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .find(|name| name.starts_with("rusm:runtime/entry@"))
        .context("the component exports no rusm:runtime/entry")?;
    let (_, instance) = component
        .get_export(None, &entry)
        .context("no entry export")?;
    let (_, run) = component
        .get_export(Some(&instance), "run")
        .context("rusm:runtime/entry exports no run")?;
    Ok(run)
}

impl RawWasmtime<()> {
    /// Every import (WASI and `rusm:runtime`) a trap stub; `()` store data.
    fn bare(component: &Component) -> Result<RawWasmtime<()>> {
        let mut linker = Linker::new(component.engine());
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(anyhow::Error::from)?;
        Ok(RawWasmtime {
            pre: linker.instantiate_pre(component)?,
            run: run_export(component)?,
            data: || (),
        })
    }
}

impl RawWasmtime<WasiState> {
    /// WASI preview 2 linked for real with a default context per store;
    /// `rusm:runtime` imports trap stubs.
    fn wasi(component: &Component) -> Result<RawWasmtime<WasiState>> {
        let mut linker = Linker::new(component.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        stub_runtime_imports(&mut linker, component, &[])?;
        Ok(RawWasmtime {
            pre: linker.instantiate_pre(component)?,
            run: run_export(component)?,
            data: || WasiState {
                ctx: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            },
        })
    }
}

impl<T: Send + 'static> RawWasmtime<T> {
    /// One instance: a store (epoch deadline as rusm sets it), instantiate, call `run`
    /// with an empty init, drop. (`get_typed_func` type-checks `run` on every call,
    /// which rusm's generated bindings do once per component: a few hundred
    /// nanoseconds against the baseline.)
    async fn one(self: Arc<Self>) -> Result<()> {
        let mut store = Store::new(self.pre.engine(), (self.data)());
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let run =
            instance.get_typed_func::<(&[u8],), (Result<(), String>,)>(&mut store, &self.run)?;
        let (result,) = run.call_async(&mut store, (&[],)).await?;
        result.map_err(|e| anyhow!("run returned an error: {e}"))
    }

    /// `n` instances, one tokio task each, at most `window` at once; each reports its
    /// result over an mpsc channel to this task.
    async fn run(self: Arc<Self>, n: u64, window: u64) -> Result<Sample> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<()>>();
        let spawn_one = |tx: mpsc::UnboundedSender<Result<()>>| {
            let this = self.clone();
            tokio::spawn(async move {
                let _ = tx.send(this.one().await);
            });
        };
        let start = Instant::now();
        let mut spawned = 0;
        while spawned < n.min(window) {
            spawn_one(tx.clone());
            spawned += 1;
        }
        for done in 0..n {
            rx.recv()
                .await
                .context("a task went missing")?
                .with_context(|| format!("instance {done}"))?;
            if spawned < n {
                spawn_one(tx.clone());
                spawned += 1;
            }
        }
        let elapsed = start.elapsed();
        Ok(Sample {
            units: n,
            elapsed,
            latencies: Vec::new(),
        })
    }
}

// ---- ping-pong-wasm --------------------------------------------------------------------

/// `ping-pong-wasm`: `n` round trips between a `ping-pong` pinger and ponger (both
/// wasm; the pinger reports its rounds to a native driver). Also a native pinger
/// against a wasm ponger (every 8th round trip timed). Baselines in the same run:
/// native rusm ping-pong and raw tokio (`ping-pong`'s sides), and the same two
/// components on raw wasmtime with the least host that runs them (the `process`
/// functions they call, over tokio channels): what any wasmtime host pays per message.
/// Both sides make each step (send, then wait) with one `send-receive` call; the same
/// pair with a `send` call then a `receive` call (`ping-pong` mode 1, how it worked
/// before `send-receive`) runs in the same run, on rusm and on raw wasmtime, and on
/// rusm with a `try-receive` before each blocking `receive` (mode 2).
pub async fn ping_pong_wasm(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let node = wasm_node(&p, &["ping-pong"])?;
    // The same exchange on a node that ticks every 10 ms (how nodes preempted before
    // time slices), in the same run.
    let ticking = wasm_node(
        &Params {
            preemption: Preemption::Tick(Duration::from_millis(10)),
            ..p
        },
        &["ping-pong"],
    )?;
    let component = Component::from_file(node.engine(), component_path("ping-pong")?)
        .map_err(anyhow::Error::from)?;
    let raw = Arc::new(RawPingPong::new(&component)?);
    let native_rt = Runtime::new();
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("rusm wasm", || wasm_ping_pong(node.clone(), n)),
            Contender::new("rusm native", || rusm_ping_pong(native_rt.clone(), n)),
            Contender::new("tokio mpsc", || in_task(tokio_ping_pong(n))),
            Contender::new("native->wasm", || native_wasm_ping_pong(node.clone(), n)),
            Contender::new("wasmtime+mpsc", || {
                in_task(raw.clone().round_trips(n, Steps::Combined))
            }),
            Contender::new("rusm wasm, send+receive", || {
                wasm_ping_pong_in(node.clone(), n, Steps::Separate)
            }),
            Contender::new("wasmtime+mpsc, send+receive", || {
                in_task(raw.clone().round_trips(n, Steps::Separate))
            }),
            Contender::new("rusm wasm, send+try-receive+receive", || {
                wasm_ping_pong_in(node.clone(), n, Steps::TryFirst)
            }),
            Contender::new("rusm wasm, 10 ms tick", || {
                wasm_ping_pong(ticking.clone(), n)
            }),
        ],
    )
    .await?;
    let params = format!("n={n}");
    let separate = Side::new("rusm send+receive", &series[5], None);
    let raw_separate = Side::new("wasmtime+mpsc send+receive", &series[6], None);
    let wasm = Side::new("rusm", &series[0], None);
    let native = Side::new("rusm native", &series[1], Some("round trip"));
    Ok(vec![
        Figure::new(
            "ping-pong-wasm",
            "wasm<->wasm vs native",
            "round trips",
            params.clone(),
            wasm.clone(),
            native.clone(),
            None,
        ),
        Figure::new(
            "ping-pong-wasm",
            "wasm<->wasm vs tokio",
            "round trips",
            params.clone(),
            wasm.clone(),
            Side::new("tokio mpsc", &series[2], Some("round trip")),
            None,
        ),
        Figure::new(
            "ping-pong-wasm",
            "wasm<->wasm vs raw",
            "round trips",
            params.clone(),
            wasm,
            Side::new("wasmtime+mpsc", &series[4], None),
            None,
        )
        .with_note(
            "same components, raw wasmtime host: self/send/monitor/receive/send-receive \
             over tokio mpsc, no rusm code"
                .into(),
        ),
        Figure::new(
            "ping-pong-wasm",
            "wasm<->wasm, this preemption vs a 10 ms tick",
            "round trips",
            params.clone(),
            Side::new("rusm", &series[0], None),
            Side::new("rusm, 10 ms tick", &series[8], None),
            None,
        )
        .with_note(format!(
            "the same exchange on two nodes of this run: {} vs an epoch advanced every 10 ms",
            describe(p.preemption)
        )),
        Figure::new(
            "ping-pong-wasm",
            "native->wasm vs native",
            "round trips",
            params.clone(),
            Side::new("rusm", &series[3], Some("round trip")),
            native,
            None,
        )
        .with_note("a native rusm pinger against a wasm ponger".into()),
        Figure::new(
            "ping-pong-wasm",
            "send-receive vs send+receive",
            "round trips",
            params.clone(),
            Side::new("rusm", &series[0], None),
            separate.clone(),
            None,
        )
        .with_note(
            "same binary and component: each step one send-receive call, vs a send call \
             then a receive call (ping-pong mode 1, as before send-receive)"
                .into(),
        ),
        Figure::new(
            "ping-pong-wasm",
            "send+receive vs raw send+receive",
            "round trips",
            params.clone(),
            separate,
            raw_separate,
            None,
        )
        .with_note("both sides with a send call then a receive call per step".into()),
        Figure::new(
            "ping-pong-wasm",
            "send+try-receive+receive vs send+receive",
            "round trips",
            params,
            Side::new("rusm try first", &series[7], None),
            Side::new("rusm send+receive", &series[5], None),
            None,
        )
        .with_note(
            "ping-pong mode 2: a try-receive before each blocking receive (the mailbox is \
             empty right after the send, so it is one call more)"
                .into(),
        ),
    ])
}

async fn wasm_ping_pong(node: WasmNode, n: u64) -> Result<Sample> {
    wasm_ping_pong_in(node, n, Steps::Combined).await
}

/// `n` wasm<->wasm round trips, both sides making their steps as `steps` says.
async fn wasm_ping_pong_in(node: WasmNode, n: u64, steps: Steps) -> Result<Sample> {
    let rt = node.runtime().clone();
    drive(&rt, move |ctx| async move {
        let ponger = spawn_ponger_in(&node, &ctx, steps)?;
        let start = Instant::now();
        let options = WasmSpawnOptions {
            init: pinger_init(ponger.as_raw(), n, ctx.pid().as_raw(), steps),
            link: true,
            ..WasmSpawnOptions::default()
        };
        node.spawn_with(Some(&ctx), "ping-pong", options)?;
        pinger_report(&ctx, n).await?;
        let elapsed = start.elapsed();
        ctx.send(ponger, STOP.to_vec());
        Ok(Sample {
            units: n,
            elapsed,
            latencies: Vec::new(),
        })
    })
    .await
}

async fn native_wasm_ping_pong(node: WasmNode, n: u64) -> Result<Sample> {
    let rt = node.runtime().clone();
    drive(&rt, move |ctx| async move {
        let ponger = spawn_ponger(&node, &ctx)?;
        let start = Instant::now();
        let latencies = native_pings(&ctx, ponger, n, LATENCY_STRIDE).await?;
        let elapsed = start.elapsed();
        ctx.send(ponger, STOP.to_vec());
        Ok(Sample {
            units: n,
            elapsed,
            latencies,
        })
    })
    .await
}

// ---- ping-pong-handler -----------------------------------------------------------------

/// `ping-pong-handler`: `n` round trips with a handler-style ponger (`idle-handler`,
/// `rusm_guest::handler!`: the host waits for each message natively and calls `handle`
/// for it, opening the fiber stack for the call), from two pingers: the blocking
/// `ping-pong` pinger (wasm -> handler) and a native rusm process (native -> handler,
/// every 8th round trip timed). Baselines in the same run: the same two pingers against
/// the blocking-style `ping-pong` ponger (waiting in `receive` on its fiber), i.e.
/// `ping-pong-wasm`'s sides. The handler ponger does not stop by message; it is
/// killed after each run, and must still be alive then.
pub async fn ping_pong_handler(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let node = wasm_node(&p, &["ping-pong", "idle-handler"])?;
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("wasm->handler", || {
                handler_ping_pong(node.clone(), n, Pinger::Wasm)
            }),
            Contender::new("wasm->blocking", || wasm_ping_pong(node.clone(), n)),
            Contender::new("native->handler", || {
                handler_ping_pong(node.clone(), n, Pinger::Native)
            }),
            Contender::new("native->blocking", || {
                native_wasm_ping_pong(node.clone(), n)
            }),
        ],
    )
    .await?;
    let params = format!("n={n}");
    Ok(vec![
        Figure::new(
            "ping-pong-handler",
            "wasm->handler vs wasm->blocking",
            "round trips",
            params.clone(),
            Side::new("rusm handler", &series[0], None),
            Side::new("blocking ponger", &series[1], None),
            None,
        )
        .with_note(
            "a blocking ping-pong pinger against the idle-handler ponger, vs against a \
             blocking ping-pong ponger"
                .into(),
        ),
        Figure::new(
            "ping-pong-handler",
            "native->handler vs native->blocking",
            "round trips",
            params,
            Side::new("rusm handler", &series[2], Some("round trip")),
            Side::new("blocking ponger", &series[3], Some("round trip")),
            None,
        )
        .with_note("a native rusm pinger against each ponger".into()),
    ])
}

/// Who pings the handler ponger.
#[derive(Debug, Clone, Copy)]
enum Pinger {
    /// A `ping-pong` pinger (blocking-style wasm), reporting its rounds.
    Wasm,
    /// The native driver itself (every [`LATENCY_STRIDE`]th round trip timed).
    Native,
}

async fn handler_ping_pong(node: WasmNode, n: u64, pinger: Pinger) -> Result<Sample> {
    let rt = node.runtime().clone();
    drive(&rt, move |ctx| async move {
        // Not linked: the ponger is killed at the end. A ponger that dies early fails
        // the run all the same: the wasm pinger monitors it and ends with a reason
        // (it is linked to the driver), and the native pinger times out.
        let ponger = node
            .spawn_with(Some(&ctx), "idle-handler", WasmSpawnOptions::default())?
            .pid;
        let start = Instant::now();
        let latencies = match pinger {
            Pinger::Wasm => {
                spawn_pinger(&node, &ctx, ponger, n)?;
                pinger_report(&ctx, n).await?;
                Vec::new()
            }
            Pinger::Native => native_pings(&ctx, ponger, n, LATENCY_STRIDE).await?,
        };
        let elapsed = start.elapsed();
        let rt = ctx.runtime();
        ensure!(
            rt.is_alive(ponger),
            "the handler ponger ended during the run"
        );
        let ended = rt.watch(ponger);
        rt.kill(ponger);
        let reason = tokio::time::timeout(KILL_LIMIT, ended)
            .await
            .context("the handler ponger outlived its kill")?;
        ensure!(
            reason == ExitReason::Killed,
            "the handler ponger ended with {reason}"
        );
        Ok(Sample {
            units: n,
            elapsed,
            latencies,
        })
    })
    .await
}

/// A message in the raw wasmtime ping-pong: tag and payload.
type RawMessage = (Tag, Vec<u8>);

/// Everyone's inbox in the raw wasmtime ping-pong, by pid - 1.
type RawPeers = Arc<Vec<mpsc::UnboundedSender<RawMessage>>>;

/// The store data of a component in the raw wasmtime ping-pong.
struct RawActor {
    wasi: WasiCtx,
    table: ResourceTable,
    me: u64,
    inbox: mpsc::UnboundedReceiver<RawMessage>,
    /// Everyone's inbox (1 ponger, 2 pinger, 3 the driver).
    peers: RawPeers,
}

impl RawActor {
    /// `send` over the channels: to a pid the run does not have, `noproc`.
    fn send(&self, to: u64, tag: Tag, payload: Vec<u8>) -> Result<(), WitError> {
        let sent = usize::try_from(to)
            .ok()
            .and_then(|to| self.peers.get(to.wrapping_sub(1)))
            .map(|inbox| inbox.send((tag, payload)));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(WitError::Noproc),
        }
    }
}

impl WasiView for RawActor {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Raw wasmtime running `ping-pong`: WASI linked for real, and the `process`
/// functions the component calls (`self`, `send`, `monitor`, `receive`,
/// `send-receive`, `try-receive`) over tokio channels, each the least that works (no selective receive: only the expected
/// messages are ever sent; `monitor` never fires). Other imports trap.
struct RawPingPong {
    pre: InstancePre<RawActor>,
    run: ComponentExportIndex,
}

impl RawPingPong {
    fn new(component: &Component) -> Result<RawPingPong> {
        let engine = component.engine();
        let process = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .find(|name| name.starts_with("rusm:runtime/process@"))
            .context("the component imports no rusm:runtime/process")?;
        let mut linker = Linker::<RawActor>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        stub_runtime_imports(
            &mut linker,
            component,
            &[
                "self",
                "send",
                "monitor",
                "receive",
                "send-receive",
                "try-receive",
            ],
        )?;
        let mut host = linker.instance(&process)?;
        host.func_wrap("self", |store: StoreContextMut<'_, RawActor>, (): ()| {
            Ok((store.data().me,))
        })?;
        host.func_wrap(
            "send",
            |store: StoreContextMut<'_, RawActor>, (to, tag, payload): (u64, Tag, Vec<u8>)| {
                Ok((store.data().send(to, tag, payload),))
            },
        )?;
        host.func_wrap_async(
            "send-receive",
            |mut store: StoreContextMut<'_, RawActor>,
             (to, tag, payload, _, _): (u64, Tag, Vec<u8>, Option<u64>, Option<Selector>)| {
                Box::new(async move {
                    if let Err(e) = store.data().send(to, tag, payload) {
                        return Ok((Err(e),));
                    }
                    let next = store.data_mut().inbox.recv().await;
                    Ok((Ok(next.map(|(tag, payload)| {
                        WitMessage::Data(DataMessage { tag, payload })
                    })),))
                })
            },
        )?;
        host.func_wrap(
            "try-receive",
            |mut store: StoreContextMut<'_, RawActor>, (_,): (Option<Selector>,)| {
                let next = store.data_mut().inbox.try_recv().ok();
                Ok((next.map(|(tag, payload)| WitMessage::Data(DataMessage { tag, payload })),))
            },
        )?;
        host.func_wrap(
            "monitor",
            |_: StoreContextMut<'_, RawActor>, (_,): (u64,)| Ok((1u64,)),
        )?;
        host.func_wrap_async(
            "receive",
            |mut store: StoreContextMut<'_, RawActor>, (_, _): (Option<u64>, Option<Selector>)| {
                Box::new(async move {
                    let next = store.data_mut().inbox.recv().await;
                    Ok(
                        (
                            next.map(|(tag, payload)| {
                                WitMessage::Data(DataMessage { tag, payload })
                            }),
                        ),
                    )
                })
            },
        )?;
        Ok(RawPingPong {
            pre: linker.instantiate_pre(component)?,
            run: run_export(component)?,
        })
    }

    /// Run one component to its end, as a tokio task's body.
    async fn actor(
        self: Arc<Self>,
        me: u64,
        inbox: mpsc::UnboundedReceiver<RawMessage>,
        peers: RawPeers,
        init: Vec<u8>,
    ) -> Result<()> {
        let data = RawActor {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            me,
            inbox,
            peers,
        };
        let mut store = Store::new(self.pre.engine(), data);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let run =
            instance.get_typed_func::<(&[u8],), (Result<(), String>,)>(&mut store, &self.run)?;
        let (result,) = run.call_async(&mut store, (&init,)).await?;
        result.map_err(|e| anyhow!("ping-pong {me} returned an error: {e}"))
    }

    /// `n` round trips between a raw pinger (pid 2) and ponger (pid 1), each its own
    /// tokio task, reporting to this task (pid 3), both making their steps as `steps`
    /// says.
    async fn round_trips(self: Arc<Self>, n: u64, steps: Steps) -> Result<Sample> {
        let (senders, mut inboxes): (Vec<_>, VecDeque<_>) =
            (0..3).map(|_| mpsc::unbounded_channel()).unzip();
        let peers = Arc::new(senders);
        let (pong_inbox, ping_inbox, mut reports) = (
            inboxes.pop_front().context("inbox")?,
            inboxes.pop_front().context("inbox")?,
            inboxes.pop_front().context("inbox")?,
        );
        let ponger =
            tokio::spawn(
                self.clone()
                    .actor(1, pong_inbox, peers.clone(), vec![steps.mode()]),
            );
        let init = pinger_init(1, n, 3, steps);
        let start = Instant::now();
        let pinger = tokio::spawn(self.clone().actor(2, ping_inbox, peers.clone(), init));
        let (tag, payload) = reports.recv().await.context("the pinger never reported")?;
        let elapsed = start.elapsed();
        ensure!(
            tag == DONE_TAG && payload == n.to_le_bytes(),
            "the pinger reported tag {tag} {payload:?}"
        );
        peers[0]
            .send((0, STOP.to_vec()))
            .map_err(|_| anyhow!("the ponger is gone"))?;
        pinger.await.context("the pinger panicked")??;
        ponger.await.context("the ponger panicked")??;
        Ok(Sample {
            units: n,
            elapsed,
            latencies: Vec::new(),
        })
    }
}

// ---- fairness --------------------------------------------------------------------------

/// `fairness`: `spinners` `spinner` components (default 2 × workers) spin while
/// bystanders do `n` round trips each: `workers` wasm↔wasm ping-pong pairs, and one
/// native pinger against a wasm ponger that times every round trip (the latency).
/// A unit is one bystander round trip. Baseline: the same bystanders with no spinners,
/// in the same run.
pub async fn fairness(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let spinners = if p.m == 0 { 2 * p.workers as u64 } else { p.m };
    let pairs = p.workers as u64;
    let node = wasm_node(&p, &["spinner", "ping-pong"])?;
    let ticking = wasm_node(
        &Params {
            preemption: Preemption::Tick(Duration::from_millis(10)),
            ..p
        },
        &["spinner", "ping-pong"],
    )?;
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("with spinners", || {
                bystanders(node.clone(), spinners, pairs, n)
            }),
            Contender::new("no spinners", || bystanders(node.clone(), 0, pairs, n)),
            Contender::new("with spinners, 10 ms tick", || {
                bystanders(ticking.clone(), spinners, pairs, n)
            }),
        ],
    )
    .await?;
    let with = Side::new("rusm", &series[0], Some("round trip"));
    let slice = p.preemption.period();
    let note = match (in_ticks(&series[0], slice), series[0].latency("")) {
        (Some((p50, p99)), Some(l)) => format!(
            "bystander round trip with spinners: p50 {p50:.2} / p99 {p99:.2} periods of {} \
             (target p99 <= 2 ms: {})",
            describe(p.preemption),
            if l.p99_us <= 2_000.0 {
                "met"
            } else {
                "NOT MET"
            }
        ),
        _ => String::new(),
    };
    Ok(vec![
        Figure::new(
            "fairness",
            "bystander round trips",
            "round trips",
            format!("n={n} spinners={spinners} pairs={pairs}+1"),
            with,
            Side::new("no spinners", &series[1], Some("round trip")),
            None,
        )
        .with_note(note),
        Figure::new(
            "fairness",
            "bystanders beside spinners, this preemption vs a 10 ms tick",
            "round trips",
            format!("n={n} spinners={spinners} pairs={pairs}+1"),
            Side::new("rusm", &series[0], Some("round trip")),
            Side::new("rusm, 10 ms tick", &series[2], Some("round trip")),
            None,
        ),
    ])
}

/// How a node preempts, in words.
fn describe(preemption: Preemption) -> String {
    match preemption {
        Preemption::Slice(slice) => format!("a {slice:?} time slice"),
        Preemption::Tick(tick) => format!("an epoch tick of {tick:?}"),
    }
}

/// One fairness run: start `spinners` spinners and wait until each says it spins,
/// then time the bystanders, then kill every spinner (each must end `killed`).
async fn bystanders(node: WasmNode, spinners: u64, pairs: u64, n: u64) -> Result<Sample> {
    let rt = node.runtime().clone();
    drive(&rt, move |ctx| async move {
        let me = pid_bytes(ctx.pid());
        let mut spinning = Vec::new();
        for _ in 0..spinners {
            let options = WasmSpawnOptions {
                init: me.clone(),
                ..WasmSpawnOptions::default()
            };
            spinning.push(node.spawn_with(Some(&ctx), "spinner", options)?.pid);
        }
        for _ in 0..spinners {
            expect_data(&ctx, NOTICE_TAG, b"spinning").await?;
        }
        let pongers = (0..=pairs)
            .map(|_| spawn_ponger(&node, &ctx))
            .collect::<Result<Vec<Pid>>>()?;
        let start = Instant::now();
        for &ponger in &pongers[1..] {
            spawn_pinger(&node, &ctx, ponger, n)?;
        }
        let latencies = native_pings(&ctx, pongers[0], n, 1).await?;
        for _ in 0..pairs {
            pinger_report(&ctx, n).await?;
        }
        let elapsed = start.elapsed();
        for pid in spinning {
            let rt = ctx.runtime();
            ensure!(rt.is_alive(pid), "spinner {pid} ended during the run");
            let ended = rt.watch(pid);
            rt.kill(pid);
            let reason = tokio::time::timeout(KILL_LIMIT, ended)
                .await
                .with_context(|| format!("spinner {pid} still alive {KILL_LIMIT:?} after kill"))?;
            ensure!(
                reason == ExitReason::Killed,
                "spinner {pid} ended with {reason}"
            );
        }
        for ponger in pongers {
            ctx.send(ponger, STOP.to_vec());
        }
        Ok(Sample {
            units: (pairs + 1) * n,
            elapsed,
            latencies,
        })
    })
    .await
}

// ---- kill-latency ----------------------------------------------------------------------

/// `kill-latency`: `n` times per run, spawn a `spinner` (init: the driver's pid), wait
/// for its `spinning`, watch it, `kill` it and time until the watch reports `killed`.
/// A second rusm side does the same while `2 × workers` other spinners keep every
/// worker busy. Baseline: killing a `ping-pong` ponger blocked in `receive` (no
/// preemption to wait for). A run's rate is kills per second of kill latency
/// (`n` / summed latency); the figures to read are the latencies.
pub async fn kill_latency(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    let load = if p.m == 0 { 2 * p.workers as u64 } else { p.m };
    let node = wasm_node(&p, &["spinner", "ping-pong"])?;
    let series = interleaved(
        p.repeats,
        p.rusm_only,
        vec![
            Contender::new("spinning", || {
                kills(node.clone(), "spinner", 0, n, p.preemption.period())
            }),
            Contender::new("blocked in receive", || {
                kills(node.clone(), "ping-pong", 0, n, p.preemption.period())
            }),
            Contender::new("spinning, busy node", || {
                kills(node.clone(), "spinner", load, n, p.preemption.period())
            }),
        ],
    )
    .await?;
    let tick = p.preemption.period();
    let blocked = Side::new("blocked in receive", &series[1], Some("kill"));
    let note = |s: &Series| match in_ticks(s, tick) {
        Some((p50, p99)) => format!(
            "kill latency p50 {p50:.2} / p99 {p99:.2} periods of {} (target p99 <= 2 periods: {})",
            describe(p.preemption),
            if p99 <= 2.0 { "met" } else { "NOT MET" }
        ),
        None => String::new(),
    };
    Ok(vec![
        Figure::new(
            "kill-latency",
            "kill a spinning actor",
            "kills",
            format!("n={n}"),
            Side::new("rusm", &series[0], Some("kill")),
            blocked.clone(),
            None,
        )
        .with_note(note(&series[0])),
        Figure::new(
            "kill-latency",
            "kill spinning, busy node",
            "kills",
            format!("n={n} spinners={load}"),
            Side::new("rusm", &series[2], Some("kill")),
            blocked,
            None,
        )
        .with_note(note(&series[2])),
    ])
}

/// One kill-latency run: `n` kills of `component` processes, one at a time, while
/// `load` spinners run. A spinner is killed 0.5 to 1.5 epoch ticks after it says it
/// spins; a ponger once it has had 1 ms to block in `receive`.
async fn kills(
    node: WasmNode,
    component: &'static str,
    load: u64,
    n: u64,
    tick: Duration,
) -> Result<Sample> {
    let rt = node.runtime().clone();
    drive(&rt, move |ctx| async move {
        let me = pid_bytes(ctx.pid());
        let spin = |ctx: &Context| -> Result<Pid> {
            let options = WasmSpawnOptions {
                init: me.clone(),
                ..WasmSpawnOptions::default()
            };
            Ok(node.spawn_with(Some(ctx), "spinner", options)?.pid)
        };
        let background = (0..load)
            .map(|_| spin(&ctx))
            .collect::<Result<Vec<Pid>>>()?;
        for _ in 0..load {
            expect_data(&ctx, NOTICE_TAG, b"spinning").await?;
        }
        let mut latencies = Vec::with_capacity(n as usize);
        for i in 0..n {
            let pid = if component == "spinner" {
                let pid = spin(&ctx)?;
                expect_data(&ctx, NOTICE_TAG, b"spinning").await?;
                // `spinning` reaches us only when the spinner's worker next looks at
                // its run queue, which may be at the spinner's next yield; killing at
                // once would catch it right after a yield. Wait 0.5 to 1.5 ticks
                // (spread evenly over the runs) so the kill lands at any point of a
                // time slice.
                let phase = (i as f64 * 0.618_034).fract();
                tokio::time::sleep(tick.mul_f64(0.5 + phase)).await;
                pid
            } else {
                let pid = node
                    .spawn_with(Some(&ctx), component, WasmSpawnOptions::default())?
                    .pid;
                tokio::time::sleep(Duration::from_millis(1)).await;
                pid
            };
            let rt = ctx.runtime();
            ensure!(rt.is_alive(pid), "{component} {pid} ended before the kill");
            let ended = rt.watch(pid);
            let start = Instant::now();
            rt.kill(pid);
            let reason = tokio::time::timeout(KILL_LIMIT, ended)
                .await
                .with_context(|| format!("{component} {pid} alive {KILL_LIMIT:?} after kill"))?;
            latencies.push(start.elapsed());
            ensure!(
                reason == ExitReason::Killed,
                "{component} {pid} ended with {reason}"
            );
        }
        for pid in background {
            let ended = ctx.runtime().watch(pid);
            ctx.runtime().kill(pid);
            let reason = tokio::time::timeout(KILL_LIMIT, ended)
                .await
                .context("a background spinner outlived its kill")?;
            ensure!(
                reason == ExitReason::Killed,
                "spinner {pid} ended with {reason}"
            );
        }
        Ok(Sample {
            units: n,
            elapsed: latencies.iter().sum(),
            latencies,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{runtime, small};

    #[test]
    fn every_wasm_scenario_runs_and_verifies_small() {
        let rt = runtime();
        rt.block_on(async {
            for figures in [
                spawn_component(small(300, 50)).await.unwrap(),
                ping_pong_wasm(small(300, 0)).await.unwrap(),
                ping_pong_handler(small(300, 0)).await.unwrap(),
                fairness(small(20, 0)).await.unwrap(),
                kill_latency(small(3, 0)).await.unwrap(),
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
}
