//! `rusm inspect`: a component's kind, world, imports and exports, and which of its
//! imports a policy denies.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use rusm_otp::Runtime;
use rusm_policy::{KillRight, Policy, StdioMode};
use rusm_wasm::LoadError;
use wasmtime::component::types::ComponentItem;

/// What a policy does to one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Always available; no policy section governs it.
    Always(String),
    /// The policy grants (part of) it.
    Granted(String),
    /// The policy denies it.
    Denied(String),
}

/// Print the report for the component at `path` checked against `policy_file` (the
/// default policy when `None`).
///
/// # Errors
/// When the file cannot be read, is not a component, or the policy is bad.
pub fn inspect(path: &Path, policy_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let policy = crate::component::policy_or_default(policy_file)?;
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read component {}: {e}; check the path",
            path.display()
        )
    })?;
    let name = crate::component::component_name(path);
    let report = crate::runtime()?.block_on(async {
        let rt = Runtime::new();
        let node = crate::new_node(&rt)?;
        let runnable = match node.load_bytes(&name, &bytes) {
            Ok(info) => Ok(info.kind),
            Err(
                e @ (LoadError::UnsatisfiedImport { .. }
                | LoadError::NoEntryPoint { .. }
                | LoadError::BadEntryPoint { .. }),
            ) => Err(crate::one_line(&e.to_string())),
            Err(e) => anyhow::bail!("{}: {}", path.display(), crate::one_line(&e.to_string())),
        };
        let component =
            wasmtime::component::Component::new(node.engine(), &bytes).map_err(|e| {
                anyhow::anyhow!("{}: {}", path.display(), crate::one_line(&format!("{e:#}")))
            })?;
        let ty = component.component_type();
        let engine = node.engine();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let imports: Vec<(String, Vec<String>)> = ty
            .imports(engine)
            .map(|(n, item)| {
                let funcs = match item.ty {
                    ComponentItem::ComponentInstance(instance) => instance
                        .exports(engine)
                        .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                        .map(|(f, _)| f.to_owned())
                        .collect(),
                    _ => Vec::new(),
                };
                (n.to_owned(), funcs)
            })
            .collect();
        Ok(render(
            path,
            policy_file,
            &policy,
            runnable,
            &exports,
            &imports,
        ))
    })?;
    out!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn world(exports: &[String]) -> &'static str {
    let has = |prefix: &str| exports.iter().any(|e| e.starts_with(prefix));
    if has("rusm:runtime/entry") {
        "rusm:runtime/actor (a rusm actor)"
    } else if has("rusm:runtime/handler") {
        "rusm:runtime/handler-actor (a handler-style rusm actor)"
    } else if has("wasi:http/incoming-handler") && has("wasi:cli/run") {
        "wasi:http/proxy and wasi:cli/command (an HTTP handler that is also a plain WASI command)"
    } else if has("wasi:http/incoming-handler") {
        "wasi:http/proxy (an HTTP handler)"
    } else if has("wasi:cli/run") {
        "wasi:cli/command (a plain WASI command)"
    } else {
        "unknown (exports none of rusm:runtime/entry, rusm:runtime/handler, wasi:http/incoming-handler, wasi:cli/run; a plugin of an embedding host exports that host's own interface)"
    }
}

fn render(
    path: &Path,
    policy_file: Option<&Path>,
    policy: &Policy,
    runnable: Result<rusm_wasm::ComponentKind, String>,
    exports: &[String],
    imports: &[(String, Vec<String>)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "component: {}", path.display());
    let _ = writeln!(out, "world: {} (inferred from its exports)", world(exports));
    match &runnable {
        Ok(kind) => {
            let serves = *kind != rusm_wasm::ComponentKind::Http
                && exports
                    .iter()
                    .any(|e| e.starts_with("wasi:http/incoming-handler@0.2"));
            let _ = writeln!(
                out,
                "runs in rusm: yes, as {}{}",
                match kind {
                    rusm_wasm::ComponentKind::Command => "a command (rusm run)",
                    rusm_wasm::ComponentKind::Http => "an HTTP handler (rusm serve)",
                    rusm_wasm::ComponentKind::Handler => "a handler-style actor (rusm run)",
                    _ => "an actor (rusm run)",
                },
                if serves {
                    " and as an HTTP handler (rusm serve)"
                } else {
                    ""
                }
            );
        }
        Err(why) => {
            let _ = writeln!(out, "runs in rusm: no: {why}");
        }
    }
    let _ = writeln!(
        out,
        "policy: {}",
        policy_file.map_or_else(
            || "the default policy".to_owned(),
            |p| p.display().to_string()
        )
    );
    let _ = writeln!(out, "exports:");
    for export in exports {
        let _ = writeln!(out, "  {export}");
    }
    let _ = writeln!(out, "imports:");
    let width = imports.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut denied = Vec::new();
    for (name, funcs) in imports {
        let verdict = verdict(name, funcs, policy);
        let text = match &verdict {
            Verdict::Always(t) => format!("always available: {t}"),
            Verdict::Granted(t) => format!("granted: {t}"),
            Verdict::Denied(t) => {
                denied.push(name.clone());
                format!("DENIED: {t}")
            }
        };
        let _ = writeln!(out, "  {name:<width$}  {text}");
    }
    if denied.is_empty() {
        let _ = writeln!(out, "denied by this policy: nothing");
    } else {
        let _ = writeln!(out, "denied by this policy: {}", denied.join(", "));
    }
    out
}

/// What `policy` does to the import `name` (an interface such as
/// `wasi:filesystem/types@0.2.0`) whose functions are `funcs`.
pub fn verdict(name: &str, funcs: &[String], policy: &Policy) -> Verdict {
    let interface = name.split('@').next().unwrap_or(name);
    let net = &policy.net;
    let tcp = !net.tcp_connect.is_empty() || !net.tcp_bind.is_empty();
    let udp = !net.udp_connect.is_empty() || !net.udp_bind.is_empty();
    let join = |items: Vec<String>| items.join(", ");
    match interface {
        i if i.starts_with("wasi:filesystem/") => {
            if policy.fs.preopens.is_empty() {
                Verdict::Denied("[fs] no preopened directories, so no paths at all".into())
            } else {
                Verdict::Granted(format!(
                    "[fs] {}",
                    join(
                        policy
                            .fs
                            .preopens
                            .iter()
                            .map(|p| format!("{} ({})", p.guest, p.mode.key()))
                            .collect()
                    )
                ))
            }
        }
        "wasi:sockets/ip-name-lookup" => {
            if net.dns {
                Verdict::Granted("[net] dns".into())
            } else {
                Verdict::Denied("[net] dns is off: lookups fail".into())
            }
        }
        i if i.starts_with("wasi:sockets/tcp") => {
            if tcp {
                Verdict::Granted(format!(
                    "[net] tcp_connect {}; tcp_bind {}",
                    patterns(&net.tcp_connect),
                    patterns(&net.tcp_bind)
                ))
            } else {
                Verdict::Denied("[net] no tcp_connect or tcp_bind: access-denied".into())
            }
        }
        i if i.starts_with("wasi:sockets/udp") => {
            if udp {
                Verdict::Granted(format!(
                    "[net] udp_connect {}; udp_bind {}",
                    patterns(&net.udp_connect),
                    patterns(&net.udp_bind)
                ))
            } else {
                Verdict::Denied("[net] no udp_connect or udp_bind: access-denied".into())
            }
        }
        i if i.starts_with("wasi:sockets/") => {
            if tcp || udp || net.dns {
                Verdict::Granted("[net] the network handle (what it reaches is above)".into())
            } else {
                Verdict::Denied("[net] no network access at all".into())
            }
        }
        "wasi:http/outgoing-handler" => {
            if policy.http.outbound.is_empty() {
                Verdict::Denied("[http] no outbound origins: HttpRequestDenied".into())
            } else {
                Verdict::Granted(format!(
                    "[http] outbound {}",
                    join(policy.http.outbound.iter().map(|p| p.to_string()).collect())
                ))
            }
        }
        "wasi:clocks/wall-clock" => {
            if policy.clocks.wall {
                Verdict::Granted("[clocks] wall".into())
            } else {
                Verdict::Denied(
                    "[clocks] wall is off: reading it ends the process with capability-denied"
                        .into(),
                )
            }
        }
        "wasi:clocks/monotonic-clock" => {
            if policy.clocks.monotonic {
                Verdict::Granted("[clocks] monotonic".into())
            } else {
                Verdict::Denied("[clocks] monotonic is off: reading it or waiting for an instant ends the process with capability-denied (waiting for a duration stays allowed)".into())
            }
        }
        "wasi:cli/environment" => {
            if policy.env.is_empty() {
                Verdict::Denied("[env] no variables and no arguments".into())
            } else {
                Verdict::Granted(format!(
                    "[env] {} variables, {} inherited, {} arguments{}",
                    policy.env.vars.len(),
                    policy.env.inherit.len(),
                    policy.env.args.len(),
                    policy
                        .env
                        .cwd
                        .as_ref()
                        .map(|cwd| format!(", working directory {cwd}"))
                        .unwrap_or_default()
                ))
            }
        }
        "wasi:cli/stdin" => stream("stdin", policy.stdio.stdin),
        "wasi:cli/stdout" => stream("stdout", policy.stdio.stdout),
        "wasi:cli/stderr" => stream("stderr", policy.stdio.stderr),
        i if i.starts_with("rusm:runtime/process") => process(funcs, policy),
        i if i.starts_with("wasi:io/") => Verdict::Always("streams and polling".into()),
        i if i.starts_with("wasi:random/") => Verdict::Always("random numbers".into()),
        i if i.starts_with("wasi:cli/") => Verdict::Always("exit and terminal queries".into()),
        "wasi:http/types" => Verdict::Always("HTTP types (requests go through [http])".into()),
        i if i.starts_with("wasi:keyvalue/") => {
            if policy.keyvalue.is_empty() {
                Verdict::Denied("[keyvalue] no buckets: store.open returns access-denied".into())
            } else {
                Verdict::Granted(format!(
                    "[keyvalue] {}",
                    join(
                        policy
                            .keyvalue
                            .buckets
                            .iter()
                            .map(|b| format!("{} ({})", b.name, b.mode))
                            .collect()
                    )
                ))
            }
        }
        "wasi:config/store" => {
            if policy.config.is_empty() {
                Verdict::Denied("[config] no values: every key is none".into())
            } else {
                Verdict::Granted(format!(
                    "[config] {}",
                    join(policy.config.vars.keys().cloned().collect())
                ))
            }
        }
        i if i.starts_with("wasi:") || i.starts_with("rusm:") => {
            Verdict::Always("not governed by any policy section".into())
        }
        _ => Verdict::Denied(
            "not provided by the rusm command (an embedding host may link it)".into(),
        ),
    }
}

fn patterns(list: &[rusm_policy::SocketPattern]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn stream(name: &str, mode: StdioMode) -> Verdict {
    match mode {
        StdioMode::Null => Verdict::Denied(format!(
            "[stdio] {name} null ({})",
            if name == "stdin" {
                "reads see end of file"
            } else {
                "output is discarded"
            }
        )),
        StdioMode::Log => Verdict::Granted(format!("[stdio] {name} to the host log")),
        StdioMode::Inherit => Verdict::Granted(format!("[stdio] {name} inherited from the host")),
    }
}

fn process(funcs: &[String], policy: &Policy) -> Verdict {
    let p = &policy.process;
    let uses = |f: &str| funcs.is_empty() || funcs.iter().any(|g| g == f);
    let mut granted = Vec::new();
    let mut denied = Vec::new();
    if uses("spawn") || uses("spawn-on") {
        if p.spawn.is_empty() {
            denied.push("spawn".to_owned());
        } else {
            granted.push(format!(
                "spawn {}",
                p.spawn
                    .iter()
                    .map(|r| r.component.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if uses("kill") || uses("exit") || uses("link") {
        match p.kill {
            KillRight::None => denied.push("kill/exit/link of other processes".to_owned()),
            KillRight::Children => granted.push("kill its children".to_owned()),
            KillRight::Any => granted.push("kill any process".to_owned()),
        }
    }
    if uses("register") {
        if p.register.is_empty() {
            denied.push("register".to_owned());
        } else {
            granted.push(format!(
                "register {}",
                p.register
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let granted_text = if granted.is_empty() {
        String::new()
    } else {
        format!("; granted: {}", granted.join("; "))
    };
    if denied.is_empty() {
        Verdict::Granted(format!("[process] {}", granted.join("; ")))
    } else {
        Verdict::Denied(format!(
            "[process] {} not permitted{granted_text} (messaging, monitors and the registry lookups are always allowed)",
            denied.join(", ")
        ))
    }
}
