//! `rusm-bench`: rusm's benchmarks, each figure beside a baseline measured in the same
//! process in the same run.
//!
//! ```text
//! cargo run --release -p rusm-bench -- <scenario> [n] [--m M] [--workers W] [--repeats R] [--json]
//! cargo run --release -p rusm-bench -- all
//! ```
//!
//! Scenarios live in their own modules (`native`, `wasm`) and return
//! [`report::Figure`]s; the output format is `report`'s alone.

mod cluster;
mod harness;
mod http;
mod idle;
mod kv;
mod native;
mod plugin;
#[cfg(test)]
use native::testing;
mod reload;
mod report;
mod storm;
mod wasm;
mod ws;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};

use rusm_wasm::Preemption;

use crate::native::Params;
use crate::report::{Figure, Report};

/// rusm benchmarks: every rusm rate beside a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "rusm-bench")]
struct Cli {
    /// What to run.
    scenario: Scenario,
    /// Main size: processes (spawn-native, spawn-component, ring), round trips
    /// (ping-pong, ping-pong-wasm, ping-pong-handler, each fairness bystander, ws-echo), receivers (fan-out), kills
    /// per run (kill-latency), requests per run (http), busy actors (reload), calls (plugin-call), idle actors (idle-actors), restarts (crash-storm), operations of each kind (kv), connections (connections-idle). Defaults per scenario; not allowed with `all`.
    n: Option<u64>,
    /// Second size: laps (ring), messages per receiver (fan-out), processes alive at
    /// once (spawn-component), spinners (fairness, kill-latency's busy side; 0 means
    /// 2 x workers), keep-alive connections (http), WebSocket connections (ws-echo).
    #[arg(long)]
    m: Option<u64>,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Measured repeats per side (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 7)]
    repeats: usize,
    /// Print one JSON document instead of text lines.
    #[arg(long)]
    json: bool,
    /// Time slice of the wasm scenarios' nodes, in microseconds
    /// (`Preemption::Slice`; the default is the node's default, 1 ms).
    #[arg(long, default_value_t = 1_000)]
    time_slice_us: u64,
    /// Preempt by a fixed epoch tick of this many microseconds instead of by slice
    /// (`Preemption::Tick`, every running guest yielding once per tick).
    #[arg(long)]
    tick_us: Option<u64>,
    /// `http`: also serve the component from a pool of instances reused for this many
    /// requests each (`Route::reuse`), beside the fresh instance per request.
    #[arg(long)]
    reuse: Option<u32>,
    /// `http`: also serve `http-p3`, a wasi:http 0.3 service, whose instances each
    /// serve up to this many requests at once (`Route::concurrency`), beside the
    /// fresh instance per request (and `wasmtime serve` on the same component).
    #[arg(long)]
    p3: Option<u32>,
    /// `connections-idle`'s client process: hold n connections to this address
    /// (the scenario starts it; not for use by hand).
    #[arg(long, hide = true)]
    ws_clients: Option<String>,
    /// Run only the rusm side of each figure (for profiling; no baseline, no ratio).
    #[arg(long, hide = true)]
    rusm_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Spawn n processes that each reply once and exit; collect every reply.
    SpawnNative,
    /// n round trips between two processes.
    PingPong,
    /// n processes pass a token around m times.
    Ring,
    /// 1 sender -> n receivers, m messages each.
    FanOut,
    /// Spawn n `trivial` wasm processes (at most m alive at once); collect every end.
    SpawnComponent,
    /// n round trips between a wasm pinger and a wasm ponger.
    PingPongWasm,
    /// n round trips with a handler-style ponger, vs a blocking one.
    PingPongHandler,
    /// Bystanders do n round trips each while m spinners spin.
    Fairness,
    /// Kill a spinning wasm process n times per run; time until its exit is seen.
    KillLatency,
    /// n HTTP requests to `http-hello` over m keep-alive connections on loopback
    /// (with `--reuse N`, also on instances reused N times).
    Http,
    /// Reload a component while n of its actors are busy; every one upgraded in place.
    Reload,
    /// n typed host -> plugin calls of `add` on a warm instance, vs bare wasmtime.
    PluginCall,
    /// n idle wasm actors, every one answering once: resident bytes and mappings each.
    IdleActors,
    /// n restarts of a crashing wasm child under a supervisor, then a shutdown mid-storm.
    CrashStorm,
    /// n wasi:keyvalue gets, sets and increments from an actor, vs redb's own API.
    Kv,
    /// n round trips between processes of two nodes through a local nats-server, vs
    /// raw async-nats request-reply (needs `nats-server` on the PATH).
    ClusterPingPong,
    /// n one-way messages from one node to each of m others (one sender per pair),
    /// per pair, vs raw async-nats publish/subscribe (needs `nats-server` on the PATH).
    ClusterFanOut,
    /// n WebSocket round trips to `ws-echo` over m connections, vs a native
    /// tokio-tungstenite echo server.
    WsEcho,
    /// n idle WebSocket connections to `ws-echo`, each answering: resident bytes
    /// each, vs a native tokio-tungstenite echo server.
    ConnectionsIdle,
    /// Every scenario above with its default sizes.
    All,
}

impl Scenario {
    const EACH: [Scenario; 19] = [
        Scenario::SpawnNative,
        Scenario::PingPong,
        Scenario::Ring,
        Scenario::FanOut,
        Scenario::SpawnComponent,
        Scenario::PingPongWasm,
        Scenario::PingPongHandler,
        Scenario::Fairness,
        Scenario::KillLatency,
        Scenario::Http,
        Scenario::Reload,
        Scenario::PluginCall,
        Scenario::IdleActors,
        Scenario::CrashStorm,
        Scenario::Kv,
        Scenario::ClusterPingPong,
        Scenario::ClusterFanOut,
        Scenario::WsEcho,
        Scenario::ConnectionsIdle,
    ];

    /// Default (n, m).
    fn defaults(self) -> (u64, u64) {
        match self {
            Scenario::SpawnNative => (500_000, 0),
            Scenario::PingPong => (1_000_000, 0),
            Scenario::Ring => (1_000, 1_000),
            Scenario::FanOut => (100, 20_000),
            Scenario::SpawnComponent => (20_000, 1_000),
            Scenario::PingPongWasm => (100_000, 0),
            Scenario::PingPongHandler => (100_000, 0),
            Scenario::Fairness => (100, 0),
            Scenario::KillLatency => (40, 0),
            Scenario::Http => (20_000, 32),
            Scenario::Reload => (1_000, 0),
            Scenario::PluginCall => (200_000, 0),
            Scenario::IdleActors => (10_000, 0),
            Scenario::CrashStorm => (20_000, 0),
            Scenario::Kv => (2_000, 0),
            Scenario::ClusterPingPong => (20_000, 0),
            Scenario::ClusterFanOut => (200_000, 2),
            Scenario::WsEcho => (25_600, 256),
            Scenario::ConnectionsIdle => (10_000, 0),
            Scenario::All => (0, 0),
        }
    }

    async fn run(self, p: Params) -> Result<Vec<Figure>> {
        match self {
            Scenario::SpawnNative => native::spawn_native(p).await,
            Scenario::PingPong => native::ping_pong(p).await,
            Scenario::Ring => native::ring(p).await,
            Scenario::FanOut => native::fan_out(p).await,
            Scenario::SpawnComponent => wasm::spawn_component(p).await,
            Scenario::PingPongWasm => wasm::ping_pong_wasm(p).await,
            Scenario::PingPongHandler => wasm::ping_pong_handler(p).await,
            Scenario::Fairness => wasm::fairness(p).await,
            Scenario::KillLatency => wasm::kill_latency(p).await,
            Scenario::Http => http::http(p).await,
            Scenario::Reload => reload::reload(p).await,
            Scenario::PluginCall => plugin::plugin_call(p).await,
            Scenario::Kv => kv::kv(p).await,
            Scenario::ClusterPingPong => cluster::cluster_ping_pong(p).await,
            Scenario::ClusterFanOut => cluster::cluster_fan_out(p).await,
            Scenario::WsEcho => ws::ws_echo(p).await,
            Scenario::IdleActors | Scenario::CrashStorm | Scenario::ConnectionsIdle => {
                unreachable!(
                    "idle-actors, crash-storm and connections-idle report measures and run apart"
                )
            }
            Scenario::All => unreachable!("`all` is expanded before running"),
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.workers == 0 || cli.repeats == 0 || cli.time_slice_us == 0 || cli.tick_us == Some(0) {
        bail!("--workers, --repeats, --time-slice-us and --tick-us must be at least 1");
    }
    if cli.reuse.is_some_and(|n| n < 2) {
        bail!("--reuse must be at least 2 (1 is the fresh instance per request)");
    }
    if cli.reuse.is_some() && cli.scenario != Scenario::Http {
        bail!("--reuse applies to the http scenario");
    }
    if cli.p3 == Some(0) {
        bail!("--p3 must be at least 1 (requests one instance serves at once)");
    }
    if cli.p3.is_some() && cli.scenario != Scenario::Http {
        bail!("--p3 applies to the http scenario");
    }
    let scenarios: Vec<Scenario> = if cli.scenario == Scenario::All {
        if cli.n.is_some() || cli.m.is_some() {
            bail!("n and --m size one scenario; `all` uses each scenario's defaults");
        }
        Scenario::EACH.to_vec()
    } else {
        vec![cli.scenario]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.workers)
        .enable_all()
        .build()?;

    if let Some(addr) = &cli.ws_clients {
        let n = cli.n.unwrap_or(cli.scenario.defaults().0);
        return runtime.block_on(ws::ws_clients(addr, n));
    }
    if !cli.json {
        println!(
            "# rusm-bench: {} tokio workers; rates are the median of {} runs per side after 1 \
             warm-up, the baseline run right after rusm in each round, in the same process; \
             ratio = median of the per-round rusm/baseline ratios [min..max]",
            cli.workers, cli.repeats
        );
    }
    let mut figures = Vec::new();
    let mut measures = Vec::new();
    for scenario in scenarios {
        let (n, m) = scenario.defaults();
        let params = Params {
            n: cli.n.unwrap_or(n),
            m: cli.m.unwrap_or(m),
            repeats: cli.repeats,
            rusm_only: cli.rusm_only,
            workers: cli.workers,
            preemption: match cli.tick_us {
                Some(tick) => Preemption::Tick(Duration::from_micros(tick)),
                None => Preemption::Slice(Duration::from_micros(cli.time_slice_us)),
            },
            reuse: cli.reuse.unwrap_or(0),
            p3: cli.p3.unwrap_or(0),
        };
        if matches!(
            scenario,
            Scenario::IdleActors | Scenario::CrashStorm | Scenario::ConnectionsIdle
        ) {
            let found = match scenario {
                Scenario::IdleActors => runtime.block_on(idle::idle_actors(params))?,
                Scenario::CrashStorm => runtime.block_on(storm::crash_storm(params))?,
                _ => runtime.block_on(ws::connections_idle(params))?,
            };
            if !cli.json {
                for measure in &found {
                    println!("{}", measure.line());
                }
            }
            measures.extend(found);
            continue;
        }
        let found = runtime.block_on(scenario.run(params))?;
        if !cli.json {
            for figure in &found {
                println!("{}", figure.line());
            }
        }
        figures.extend(found);
    }
    if cli.json {
        let report = Report {
            workers: cli.workers,
            repeats: cli.repeats,
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            figures,
            measures,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
