//! `rusm run APP.toml --watch`: reload a component when its code changes, upgrading its
//! running processes in place (`WasmNode::reload_file`).
//!
//! The sources are polled twice a second: a `path` component's `.wasm` file, and a
//! `build` component's `Cargo.toml` and `src/` (rebuilt with cargo on a change). A
//! version that does not build or load is reported and the old one stays live.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusm_wasm::{UpgradeOutcome, WasmNode};

use crate::manifest::{Manifest, Source};

/// What is watched for one component.
struct Watched {
    name: String,
    source: Source,
    wasm: PathBuf,
    seen: Vec<(PathBuf, SystemTime, u64)>,
}

/// Every file under `source` whose change means a new version, with its modification
/// time and size.
fn fingerprint(source: &Source) -> Vec<(PathBuf, SystemTime, u64)> {
    let mut files = Vec::new();
    match source {
        Source::Wasm(path) => files.push(path.clone()),
        Source::Cargo(dir) => {
            files.push(dir.join("Cargo.toml"));
            collect(&dir.join("src"), &mut files);
        }
    }
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let meta = std::fs::metadata(&f).ok()?;
            Some((f, meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Watch the components of `manifest` (built at `files`) until the task is aborted.
pub fn spawn(
    node: WasmNode,
    manifest: &Manifest,
    files: &BTreeMap<String, PathBuf>,
) -> tokio::task::JoinHandle<()> {
    let mut watched: Vec<Watched> = manifest
        .components
        .iter()
        .map(|(name, c)| Watched {
            name: name.clone(),
            source: c.source.clone(),
            wasm: files[name].clone(),
            seen: fingerprint(&c.source),
        })
        .collect();
    tracing::info!(target: "rusm::app", "watching {} components for changes", watched.len());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for w in &mut watched {
                let now = fingerprint(&w.source);
                if now == w.seen {
                    continue;
                }
                w.seen = now;
                reload(&node, w).await;
            }
        }
    })
}

async fn reload(node: &WasmNode, w: &mut Watched) {
    if let Source::Cargo(dir) = &w.source {
        tracing::info!(target: "rusm::app", "change in {}; rebuilding {}", dir.display(), w.name);
        let dir = dir.clone();
        match tokio::task::spawn_blocking(move || crate::build::build_package(&dir)).await {
            Ok(Ok(wasm)) => w.wasm = wasm,
            Ok(Err(e)) => {
                tracing::warn!(target: "rusm::app", "reload  {} failed: {}; the old version stays live", w.name, crate::one_line(&format!("{e:#}")));
                return;
            }
            Err(e) => {
                tracing::warn!(target: "rusm::app", "reload  {} failed: {e}; the old version stays live", w.name);
                return;
            }
        }
    }
    match node.reload_file(&w.name, &w.wasm).await {
        Ok(report) => {
            let count = |outcome| {
                report
                    .upgrades
                    .iter()
                    .filter(|u| u.outcome == outcome)
                    .count()
            };
            tracing::info!(
                target: "rusm::app",
                "reload  {} is now version {}: {} processes upgraded in place, {} timed out, {} ended first",
                w.name,
                report.version,
                count(UpgradeOutcome::Upgraded),
                count(UpgradeOutcome::TimedOut),
                count(UpgradeOutcome::Ended)
            );
        }
        Err(e) => tracing::warn!(
            target: "rusm::app",
            "reload  {} failed: {}; the old version stays live",
            w.name,
            crate::one_line(&e.to_string())
        ),
    }
}
