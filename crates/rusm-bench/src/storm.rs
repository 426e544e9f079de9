//! The `crash-storm` scenario: a supervisor with no practical intensity limit
//! restarting the `crasher` component, which traps (`unreachable`) as soon as it starts.
//!
//! One run on a fresh node: the supervisor (one_for_one, `u32::MAX` restarts a second)
//! starts the crasher and restarts it `n` times. Reported: restarts per second (from the
//! first start to the `n`-th restart), the process's resident memory (`VmRSS`) just
//! before the supervisor starts and after the `n`-th restart, and the time from asking
//! the node to shut down (with the storm still going) to every process having ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rusm_otp::supervisor::{ChildSpec, Strategy, SupervisorSpec, supervise};
use rusm_otp::{Event, ExitReason};
use rusm_wasm::WasmSpawnOptions;
use tokio::sync::Notify;

use crate::idle::rss_bytes;
use crate::native::Params;
use crate::report::Measure;
use crate::wasm::wasm_node;

/// How long the storm may take to reach `n` restarts.
const STORM_LIMIT: Duration = Duration::from_secs(600);
/// The node's grace period at shutdown; a storm must not need it.
const GRACE: Duration = Duration::from_secs(5);

/// `crash-storm`: `n` restarts of a crashing wasm child, then a shutdown mid-storm.
pub async fn crash_storm(p: Params) -> Result<Vec<Measure>> {
    let n = p.n.max(1);
    let node = wasm_node(&p, &["crasher"])?;
    let rt = node.runtime().clone();
    let reached = Arc::new(Notify::new());
    let restarts = Arc::new(AtomicU64::new(0));
    {
        let (reached, restarts) = (reached.clone(), restarts.clone());
        rt.add_observer(move |event| {
            if let Event::Restarted { .. } = event
                && restarts.fetch_add(1, Ordering::Relaxed) + 1 == n
            {
                reached.notify_one();
            }
        });
    }
    let child = ChildSpec::new("crasher", move |ctx| {
        let options = WasmSpawnOptions {
            init: b"unreachable".to_vec(),
            link: true,
            ..WasmSpawnOptions::default()
        };
        Ok(node
            .spawn_with(Some(ctx), "crasher", options)
            .map_err(|e| ExitReason::custom(e.to_string()))?
            .pid)
    });
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(child);

    let rss_start = rss_bytes()?;
    let started = Instant::now();
    rt.spawn(move |ctx| supervise(ctx, spec));
    tokio::time::timeout(STORM_LIMIT, reached.notified())
        .await
        .with_context(|| format!("fewer than {n} restarts within {STORM_LIMIT:?}"))?;
    let storm = started.elapsed();
    let rss_after = rss_bytes()?;
    let stopping = Instant::now();
    tokio::time::timeout(GRACE * 4, rt.shutdown(GRACE))
        .await
        .context("the node did not stop during the storm")?;
    let stopped = stopping.elapsed();

    let params = format!("n={n}");
    let measure = |name: &str, value: f64, unit: &str, note: Option<String>| Measure {
        scenario: "crash-storm".into(),
        name: name.into(),
        params: params.clone(),
        value,
        unit: unit.into(),
        note,
    };
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    Ok(vec![
        measure(
            "restarts",
            n as f64 / storm.as_secs_f64(),
            "restarts/s",
            Some("a wasm child trapping at start, restarted by a native supervisor".into()),
        ),
        measure("resident at start", mib(rss_start), "MiB", None),
        measure(
            "resident after storm",
            mib(rss_after),
            "MiB",
            Some(format!("after {n} restarts")),
        ),
        measure(
            "shutdown to exit",
            stopped.as_secs_f64() * 1e3,
            "ms",
            Some(format!("grace {GRACE:?}, asked with the storm going")),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{runtime, small};

    #[test]
    fn a_small_storm_restarts_and_stops() {
        let measures = runtime().block_on(crash_storm(small(200, 0))).unwrap();
        let value = |name: &str| measures.iter().find(|m| m.name == name).unwrap().value;
        assert!(value("restarts") > 0.0);
        assert!(value("resident after storm") > 0.0);
        assert!(value("shutdown to exit").is_finite());
    }
}
