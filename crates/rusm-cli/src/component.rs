//! `rusm run COMPONENT.wasm` (one process) and `rusm serve COMPONENT.wasm` (one HTTP
//! component).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rusm_otp::{ExitReason, Runtime};
use rusm_policy::Policy;
use rusm_wasm::{ComponentKind, WasmNode, WasmSpawnOptions};

use crate::grants::GrantArgs;
use crate::{lifecycle, metrics};

const GRACE: Duration = Duration::from_secs(5);

/// Options of `rusm run COMPONENT.wasm`.
pub struct RunOptions {
    /// The component file.
    pub component: PathBuf,
    /// Its policy file.
    pub policy: Option<PathBuf>,
    /// Init bytes for an actor.
    pub init: Vec<u8>,
    /// Program arguments for a command.
    pub args: Vec<String>,
    /// Serve metrics here.
    pub metrics: Option<SocketAddr>,
    /// Grants on top of the policy.
    pub grants: GrantArgs,
    /// The cluster to join, if any.
    pub cluster: Option<rusm_cluster::ClusterConfig>,
}

/// The name a component file is registered under: its file stem.
pub fn component_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "component".to_owned())
}

/// A component kind in words.
pub fn kind_name(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Command => "a WASI command",
        ComponentKind::Http => "an HTTP handler",
        ComponentKind::Handler => "a handler-style actor",
        ComponentKind::Plugin => "a plugin of an embedding host",
        _ => "an actor",
    }
}

/// Read a component file and load it into `node`; errors are one line.
pub fn load(node: &WasmNode, name: &str, path: &Path) -> anyhow::Result<ComponentKind> {
    let bytes = read(path)?;
    let info = node
        .load_bytes(name, &bytes)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), crate::one_line(&e.to_string())))?;
    Ok(info.kind)
}

/// Read a component file and load it into `node` as an HTTP handler, whatever else
/// it exports; errors are one line.
pub fn load_http(node: &WasmNode, name: &str, path: &Path) -> anyhow::Result<()> {
    let bytes = read(path)?;
    node.load_http_bytes(name, &bytes)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), crate::one_line(&e.to_string())))?;
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read component {}: {e}; check the path",
            path.display()
        )
    })
}

/// The policy in `file`, or the default one.
pub fn policy_or_default(file: Option<&Path>) -> anyhow::Result<Policy> {
    match file {
        Some(file) => crate::load_policy(file),
        None => Ok(Policy::embedded_default()),
    }
}

/// Run one component as a process and wait for it to end (or for Ctrl-C).
///
/// # Errors
/// Bad input: the component, the policy, the metrics address.
pub fn run(options: RunOptions) -> anyhow::Result<ExitCode> {
    let name = component_name(&options.component);
    let mut policy = policy_or_default(options.policy.as_deref())?;
    options.grants.apply(&mut policy)?;
    crate::runtime()?.block_on(async move {
        let rt = Runtime::new();
        let cluster = crate::cluster::join(&rt, options.cluster).await?;
        let node = crate::new_node(&rt)?;
        let kind = load(&node, &name, &options.component)?;
        if kind == ComponentKind::Http {
            anyhow::bail!(
                "{} is an HTTP handler (it exports wasi:http/incoming-handler); serve it with `rusm serve {} --listen 127.0.0.1:8080`",
                options.component.display(),
                options.component.display()
            );
        }
        if kind == ComponentKind::Command
            && (!options.args.is_empty() || policy.env.args.is_empty())
        {
            // The program name first, as a command expects.
            policy.env.args = std::iter::once(name.clone())
                .chain(options.args.iter().cloned())
                .collect();
        } else if !options.args.is_empty() {
            anyhow::bail!(
                "{} is an actor, not a WASI command: it takes init data (--init), not arguments",
                options.component.display()
            );
        }
        lifecycle::log_lifecycle(&rt, HashSet::new());
        let _metrics = match options.metrics {
            Some(addr) => {
                let server = metrics::serve(
                    addr,
                    metrics::Sources {
                        rt: rt.clone(),
                        http: Vec::new(),
                    },
                )
                .await?;
                tracing::info!(target: "rusm::app", "metrics at http://{}/metrics", server.local_addr());
                Some(server)
            }
            None => None,
        };
        let spawn = WasmSpawnOptions {
            init: options.init,
            policy: Some(Arc::new(policy)),
            ..WasmSpawnOptions::default()
        };
        let interrupted = crate::ctrl_c()?;
        let (pid, mut ended) = node
            .spawn_watched(&name, spawn)
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        let reason = tokio::select! {
            reason = &mut ended => reason,
            () = interrupted => {
                note!("rusm: Ctrl-C; stopping {name} {pid}");
                rt.shutdown(GRACE).await;
                if let Some(cluster) = cluster {
                    cluster.leave().await;
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        rt.shutdown(GRACE).await;
        if let Some(cluster) = cluster {
            cluster.leave().await;
        }
        Ok(exit_code(&name, kind, &reason))
    })
}

/// The exit code for a process that ended with `reason`: 0 for `normal`, a command's
/// own exit code, 1 for anything else (which is reported on stderr).
fn exit_code(name: &str, kind: ComponentKind, reason: &ExitReason) -> ExitCode {
    if reason.is_normal() {
        return ExitCode::SUCCESS;
    }
    if kind == ComponentKind::Command
        && let ExitReason::Custom(text) = reason
    {
        if let Some(code) = text
            .strip_prefix("exit code ")
            .and_then(|c| c.parse::<i64>().ok())
        {
            return ExitCode::from(u8::try_from(code.clamp(1, 255)).unwrap_or(1));
        }
        if &**text == "command returned an error" {
            return ExitCode::FAILURE;
        }
    }
    note!("rusm: {name} ended: {}", lifecycle::first_line(reason));
    ExitCode::FAILURE
}

/// Options of `rusm serve`.
pub struct ServeOptions {
    /// The HTTP component file.
    pub component: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The policy of each request's process.
    pub policy: Option<PathBuf>,
    /// Serve metrics here.
    pub metrics: Option<SocketAddr>,
    /// Grants on top of the policy.
    pub grants: GrantArgs,
}

/// Serve one HTTP component until Ctrl-C: any component exporting
/// `wasi:http/incoming-handler`, whatever else it exports.
///
/// # Errors
/// Bad input: the component, the policy, an address in use.
pub fn serve(options: ServeOptions) -> anyhow::Result<ExitCode> {
    let name = component_name(&options.component);
    let mut policy = policy_or_default(options.policy.as_deref())?;
    options.grants.apply(&mut policy)?;
    let policy = Arc::new(policy);
    crate::runtime()?.block_on(async move {
        let rt = Runtime::new();
        let node = crate::new_node(&rt)?;
        load_http(&node, &name, &options.component)?;
        lifecycle::log_lifecycle(&rt, HashSet::from([name.clone()]));
        let server = crate::http::bind_one(&node, &name, policy, options.listen).await?;
        let _metrics = match options.metrics {
            Some(addr) => {
                let sources = metrics::Sources {
                    rt: rt.clone(),
                    http: vec![crate::http::stats_source(&server)],
                };
                let m = metrics::serve(addr, sources).await?;
                tracing::info!(target: "rusm::app", "metrics at http://{}/metrics", m.local_addr());
                Some(m)
            }
            None => None,
        };
        let interrupted = crate::ctrl_c()?;
        tracing::info!(
            target: "rusm::app",
            "serving {name} on http://{}/; press Ctrl-C to stop",
            crate::http::local_addr(&server)
        );
        interrupted.await;
        note!("rusm: Ctrl-C; stopping");
        crate::http::shutdown(server).await;
        rt.shutdown(GRACE).await;
        Ok(ExitCode::SUCCESS)
    })
}
