//! The rusm demo: a supervision tree of wasm actors on one node, with the embedded
//! defaults. A counter actor (a component) serves calls from a native client; the
//! counter is made to crash, its supervisor restarts it, and the client carries on;
//! a crasher component shows how traps become exit reasons.
//!
//! Run it with `cargo run --release -p rusm-e2e --example demo`.

use std::sync::Arc;
use std::time::Duration;

use rusm_otp::supervisor::{ChildSpec, Restart, Strategy, SupervisorSpec, supervise};
use rusm_otp::{ExitReason, Message, Pid, Runtime};
use rusm_policy::Policy;
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};

rusm_e2e::components!();

fn call(me: Pid, reply_tag: u64, body: &[u8]) -> Vec<u8> {
    let mut out = me.as_raw().to_le_bytes().to_vec();
    out.extend(reply_tag.to_le_bytes());
    out.extend(body);
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rusm_otp=debug".into()),
        )
        .with_target(false)
        .init();

    let rt = Runtime::new();
    let node = WasmNode::new(rt.clone(), WasmConfig::default())?;
    for component in [components::COUNTER, components::CRASHER] {
        node.load_file(component.name(), component.path())?;
    }

    // The counter runs under its own policy (capabilities/counter.toml): no files, no
    // network, no clocks, 16 MiB of memory, and the right to register "counter".
    let policy_file = rusm_e2e::components_dir().join("../capabilities/counter.toml");
    let counter_policy = Arc::new(Policy::from_file(&policy_file)?);
    println!("the counter's policy ({}):", policy_file.display());
    for line in counter_policy.explain().lines() {
        println!("  {line}");
    }

    // The tree: the counter component, registered as "counter", restarted if it dies.
    let n = node.clone();
    let counter = ChildSpec::new("counter", move |ctx| {
        let options = WasmSpawnOptions {
            init: b"counter".to_vec(),
            link: true,
            policy: Some(counter_policy.clone()),
            ..Default::default()
        };
        n.spawn_with(Some(ctx), "counter", options)
            .map(|s| s.pid)
            .map_err(|e| ExitReason::custom(e.to_string()))
    })
    .restart(Restart::Permanent);
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10))
        .child(counter);
    let sup = rt.spawn(move |ctx| supervise(ctx, spec));
    println!("supervisor {sup} started");

    // A native client that calls the counter, through the registry.
    let (client, done) = rt.spawn_watched(Default::default(), move |ctx| async move {
        let mut reply_tag = 1000;
        for round in 1..=2 {
            let counter = loop {
                match ctx.whereis("counter") {
                    Some(pid) => break pid,
                    None if !ctx.runtime().is_alive(sup) => {
                        return ExitReason::custom("the supervisor gave up");
                    }
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            for n in [5i64, 10, 20] {
                reply_tag += 1;
                ctx.send_tagged(counter, 1, call(ctx.pid(), reply_tag, &n.to_le_bytes()));
                let reply = ctx.recv_tag(reply_tag).await;
                let value =
                    i64::from_le_bytes(reply.payload.as_bytes().unwrap().try_into().unwrap());
                println!("round {round}: counter {counter} += {n} -> {value}");
            }
            if round == 1 {
                println!(
                    "crashing the counter {counter} (exit signal with reason custom \"demo crash\")"
                );
                let m = ctx.monitor(counter);
                ctx.exit(counter, ExitReason::custom("demo crash"));
                if let Message::Down(down) = ctx
                    .recv_match(|msg| matches!(msg, Message::Down(d) if d.monitor == m))
                    .await
                {
                    println!("counter {} went down: {}", down.pid, down.reason);
                }
                // Wait for the supervisor to register the restarted counter.
                while ctx.whereis("counter") == Some(counter) || ctx.whereis("counter").is_none() {
                    if !ctx.runtime().is_alive(sup) {
                        return ExitReason::custom("the supervisor gave up");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                println!(
                    "the supervisor restarted it as {}; its state starts again at 0",
                    ctx.whereis("counter").unwrap()
                );
            }
        }
        ExitReason::Normal
    });
    println!("client {client} started");
    let outcome = done.await;
    if outcome != ExitReason::Normal {
        rt.shutdown(Duration::from_secs(5)).await;
        anyhow::bail!("the demo client failed: {outcome}");
    }

    // Traps and limits become typed exit reasons.
    for mode in ["unreachable", "oom", "error"] {
        let options = WasmSpawnOptions {
            init: mode.as_bytes().to_vec(),
            ..Default::default()
        };
        let (pid, end) = node.spawn_watched("crasher", options)?;
        let reason = end.await;
        let first_line = reason
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        println!("crasher {pid} ({mode}) exited: {first_line}");
    }

    rt.shutdown(Duration::from_secs(5)).await;
    println!("node shut down; {} processes left", rt.process_count());
    Ok(())
}
