//! A policy in plain words, one line per grant and per denied area.

use std::fmt::Write as _;

use crate::Policy;
use crate::config::ConfigValue;
use crate::fs::FsMode;
use crate::keyvalue::BucketMode;
use crate::limits::LimitValue;
use crate::limits::format_size;
use crate::net::{HostPattern, PortRange, SocketKind, SocketPattern};
use crate::process::{KillRight, NamePattern, PolicyRef};
use crate::stdio::StdioMode;

fn ports(p: PortRange) -> String {
    if p == PortRange::ANY {
        "any port".to_string()
    } else if p.first() == p.last() {
        format!("port {}", p.first())
    } else {
        format!("ports {}-{}", p.first(), p.last())
    }
}

fn socket(p: &SocketPattern) -> String {
    let host = match p.host {
        HostPattern::Localhost => "localhost (127.0.0.0/8 and ::1)".to_string(),
        HostPattern::Range(_) => p.host.to_string(),
    };
    format!("{host}, {}", ports(p.ports))
}

fn names(p: &NamePattern, singular: &str, plural: &str) -> String {
    match p {
        NamePattern::Exact(n) => format!("{singular} \"{n}\""),
        NamePattern::Prefix(prefix) => format!("{plural} starting with \"{prefix}\""),
        NamePattern::Any => format!("any {singular}"),
    }
}

pub(crate) fn explain(policy: &Policy) -> String {
    let mut lines: Vec<String> = Vec::new();

    if policy.fs.is_empty() {
        lines.push("filesystem: no access (no preopened directories, so no paths at all)".into());
    }
    for p in &policy.fs.preopens {
        let mode = match p.mode {
            FsMode::ReadOnly => "read-only",
            FsMode::ReadWrite => "read-write",
        };
        lines.push(format!(
            "filesystem: {} is host directory {} ({mode})",
            p.guest,
            p.host_resolved.display()
        ));
    }

    if policy.net.is_empty() {
        lines.push("network: no access".into());
    } else {
        for kind in SocketKind::ALL {
            let verb = match kind {
                SocketKind::TcpConnect => "tcp connect to",
                SocketKind::TcpBind => "tcp bind and listen on",
                SocketKind::UdpBind => "udp bind on",
                SocketKind::UdpConnect => "udp send to",
            };
            for p in policy.net.patterns(kind) {
                lines.push(format!("network: {verb} {}", socket(p)));
            }
        }
        lines.push(if policy.net.dns {
            "network: dns lookups allowed".into()
        } else {
            "network: no dns lookups".into()
        });
    }

    if policy.http.is_empty() {
        lines.push("http: no outbound requests".into());
    }
    for p in &policy.http.outbound {
        lines.push(format!(
            "http: outbound requests to {p} ({})",
            ports(p.ports)
        ));
    }

    let clocks = policy.clocks;
    if !clocks.wall && !clocks.monotonic {
        lines.push(
            "clocks: no access (reading a clock ends the process with capability-denied)".into(),
        );
    } else {
        lines.push(if clocks.wall {
            "clocks: wall clock (time of day)".into()
        } else {
            "clocks: no wall clock".into()
        });
        lines.push(if clocks.monotonic {
            "clocks: monotonic clock (elapsed time and timers)".into()
        } else {
            "clocks: no monotonic clock".into()
        });
    }

    let env = &policy.env;
    if env.vars.is_empty() && env.inherit.is_empty() {
        lines.push("env: no variables".into());
    }
    for (name, value) in &env.vars {
        lines.push(format!("env: variable {name} = {value:?}"));
    }
    for name in &env.inherit {
        lines.push(format!(
            "env: variable {name} passed through from the host when set there"
        ));
    }
    if env.args.is_empty() {
        lines.push("env: no arguments".into());
    } else {
        let mut args = String::new();
        for (i, a) in env.args.iter().enumerate() {
            if i > 0 {
                args.push_str(", ");
            }
            let _ = write!(args, "{a:?}");
        }
        lines.push(format!("env: arguments {args}"));
    }
    if let Some(cwd) = &env.cwd {
        lines.push(format!("env: working directory {cwd}"));
    }

    for (stream, mode) in policy.stdio.streams() {
        let what = match (stream, mode) {
            ("stdin", StdioMode::Null) => "null (reads see end of file)",
            (_, StdioMode::Null) => "null (output is discarded)",
            (_, StdioMode::Log) => "log (each line goes to the host log, tagged with the pid)",
            (_, StdioMode::Inherit) => "inherit (the host's own stream)",
        };
        lines.push(format!("stdio: {stream} {what}"));
    }

    for (name, value) in policy.limits.entries() {
        let value = match value {
            None => "node default".to_string(),
            Some(v @ LimitValue::Count(_)) if name == "fuel" => format!("{} units", v.describe()),
            Some(v @ LimitValue::Count(_)) if name == "mailbox" => {
                format!("{} messages", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "children" => {
                format!("{} live children", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "timers" => {
                format!("{} waiting timers", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "monitors" => {
                format!("{} monitors", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "links" => {
                format!("{} links", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "descendants" => {
                format!("{} live processes in its spawn tree", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "spawns" => {
                format!("{} spawns in its whole spawn tree", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "memories" => {
                format!("{} linear memories", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "tables" => {
                format!("{} tables", v.describe())
            }
            Some(v @ LimitValue::Count(_)) if name == "instances" => {
                format!("{} core instances", v.describe())
            }
            Some(v) => v.describe(),
        };
        lines.push(format!("limits: {name} {value}"));
    }
    lines.push(format!(
        "limits: mailbox_overflow {}",
        match policy.limits.mailbox_overflow {
            None => "node default (drop)",
            Some(crate::limits::MailboxOverflow::Drop) =>
                "drop (a message to a full mailbox is dropped and counted)",
            Some(crate::limits::MailboxOverflow::Refuse) =>
                "refuse (a send to a full mailbox fails for the sender)",
        }
    ));

    let process = &policy.process;
    if process.spawn.is_empty() {
        lines.push("process: may not spawn".into());
    }
    for rule in &process.spawn {
        let under = match &rule.policy {
            PolicyRef::Own => "its own policy".to_string(),
            PolicyRef::Named(n) => format!("policy \"{n}\""),
        };
        lines.push(format!(
            "process: may spawn {} under {under}",
            names(&rule.component, "component", "components")
        ));
    }
    lines.push(
        match process.kill {
            KillRight::None => "process: may not kill or link to other processes",
            KillRight::Children => "process: may kill or link to its own children",
            KillRight::Any => "process: may kill or link to any process",
        }
        .into(),
    );
    if process.register.is_empty() {
        lines.push("process: may not register names".into());
    }
    for p in &process.register {
        lines.push(format!(
            "process: may register {}",
            names(p, "name", "names")
        ));
    }
    lines.push("process: may monitor any process (always allowed: monitors only observe)".into());

    if policy.keyvalue.is_empty() {
        lines.push("keyvalue: no buckets".into());
    }
    for b in &policy.keyvalue.buckets {
        let mode = match b.mode {
            BucketMode::ReadOnly => "read-only",
            BucketMode::ReadWrite => "read-write",
        };
        lines.push(format!(
            "keyvalue: bucket \"{}\" ({mode}), at most {} in all, values up to {}",
            b.name,
            format_size(b.bucket_limit()),
            format_size(b.value_limit())
        ));
    }

    if policy.config.is_empty() {
        lines.push("config: no values".into());
    }
    for (key, value) in &policy.config.vars {
        lines.push(match value {
            ConfigValue::Literal(text) => format!("config: {key} = {text:?}"),
            ConfigValue::Env(name) => {
                format!("config: {key} from the host variable {name} when set there")
            }
        });
    }

    let mut out = lines.join("\n");
    out.push('\n');
    out
}
