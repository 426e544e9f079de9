//! Attenuation: does a child policy grant no more than its parent?

use std::path::PathBuf;

use crate::Policy;
use crate::fs::FsMode;
use crate::http::{HttpPattern, HttpPolicy};
use crate::keyvalue::BucketMode;
use crate::net::{NetPolicy, SocketKind, SocketPattern};
use crate::process::{KillRight, NamePattern, SpawnRule};
use crate::stdio::StdioMode;

/// One grant of a child policy that its parent does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Escalation {
    /// A preopen outside every parent preopen, or under only weaker ones.
    #[error(
        "preopen {} ({mode}) at {guest} is not inside any of the parent's preopens with mode {mode} or stronger",
        host.display()
    )]
    Preopen {
        /// The child's resolved host directory.
        host: PathBuf,
        /// The child's guest path.
        guest: String,
        /// The child's mode.
        mode: FsMode,
    },
    /// A socket pattern not covered by the parent's patterns of the same kind.
    #[error("{kind} {pattern} is not covered by the parent's grants")]
    Socket {
        /// Which list the pattern is in.
        kind: SocketKind,
        /// The child's pattern.
        pattern: SocketPattern,
    },
    /// DNS granted to the child but not the parent.
    #[error("dns is granted but the parent denies it")]
    Dns,
    /// An outbound HTTP pattern not covered by the parent's.
    #[error("http outbound {pattern} is not covered by the parent's grants")]
    Http {
        /// The child's pattern.
        pattern: HttpPattern,
    },
    /// A clock granted to the child but not the parent.
    #[error("the {clock} clock is granted but the parent denies it")]
    Clock {
        /// `wall` or `monotonic`.
        clock: &'static str,
    },
    /// An explicit variable the parent does not hold with the same value.
    #[error("env var {name} is not set by the parent to the same value")]
    EnvVar {
        /// The variable's name.
        name: String,
    },
    /// An inherited variable the parent does not inherit.
    #[error("env inherit {name} is not inherited by the parent")]
    EnvInherit {
        /// The variable's name.
        name: String,
    },
    /// A standard stream routed more powerfully than in the parent.
    #[error("{stream} \"{child}\" exceeds the parent's \"{parent}\"")]
    Stdio {
        /// `stdin`, `stdout` or `stderr`.
        stream: &'static str,
        /// The child's mode.
        child: StdioMode,
        /// The parent's mode.
        parent: StdioMode,
    },
    /// A limit above the parent's, or unset where the parent sets one.
    #[error("{}", describe_limit(name, child.as_deref(), parent))]
    Limit {
        /// The limit's key, e.g. `memory`.
        name: &'static str,
        /// The child's value, printed; `None` when the child leaves it to the node.
        child: Option<String>,
        /// The parent's value, printed.
        parent: String,
    },
    /// A spawn rule not covered by a parent rule with the same policy.
    #[error("spawn {rule} is not covered by the parent's spawn rules")]
    Spawn {
        /// The child's rule.
        rule: SpawnRule,
    },
    /// A kill right above the parent's.
    #[error("kill \"{child}\" exceeds the parent's \"{parent}\"")]
    Kill {
        /// The child's right.
        child: KillRight,
        /// The parent's right.
        parent: KillRight,
    },
    /// A register pattern not covered by the parent's.
    #[error("register \"{pattern}\" is not covered by the parent's register names")]
    Register {
        /// The child's pattern.
        pattern: NamePattern,
    },
    /// A bucket the parent does not grant, or grants only with a weaker mode.
    #[error("{}", describe_bucket(name, *mode, *parent))]
    Bucket {
        /// The bucket's name.
        name: String,
        /// The child's mode.
        mode: BucketMode,
        /// The parent's mode, when it grants the bucket at all.
        parent: Option<BucketMode>,
    },
    /// A bucket's size limit (`max_bytes` or `max_value`, defaults applied) above the
    /// parent's for the same bucket.
    #[error("keyvalue bucket {name:?} {limit} {child} exceeds the parent's {parent}")]
    BucketLimit {
        /// The bucket's name.
        name: String,
        /// `max_bytes` or `max_value`.
        limit: &'static str,
        /// The child's limit in bytes.
        child: u64,
        /// The parent's limit in bytes.
        parent: u64,
    },
    /// A configuration key the parent does not hold from the same source.
    #[error("config var {name} is not given by the parent with the same value")]
    ConfigVar {
        /// The key.
        name: String,
    },
}

fn describe_bucket(name: &str, mode: BucketMode, parent: Option<BucketMode>) -> String {
    match parent {
        Some(parent) => {
            format!("keyvalue bucket {name:?} ({mode}) exceeds the parent's \"{parent}\"")
        }
        None => format!("keyvalue bucket {name:?} ({mode}) is not granted to the parent"),
    }
}

fn describe_limit(name: &str, child: Option<&str>, parent: &str) -> String {
    match child {
        Some(child) => format!("limit {name} {child} exceeds the parent's {parent}"),
        None => format!(
            "limit {name} is left to the node's default, but the parent limits it to {parent}"
        ),
    }
}

/// Every grant of `child` that `parent` does not hold, in section order.
pub(crate) fn escalations(child: &Policy, parent: &Policy) -> Vec<Escalation> {
    let mut out = Vec::new();

    for p in &child.fs.preopens {
        let covered = parent
            .fs
            .preopens
            .iter()
            .any(|q| p.host_resolved.starts_with(&q.host_resolved) && p.mode <= q.mode);
        if !covered {
            out.push(Escalation::Preopen {
                host: p.host_resolved.clone(),
                guest: p.guest.clone(),
                mode: p.mode,
            });
        }
    }

    for kind in SocketKind::ALL {
        let parents = parent.net.patterns(kind);
        for pattern in child.net.patterns(kind) {
            if !NetPolicy::covers(parents, pattern) {
                out.push(Escalation::Socket {
                    kind,
                    pattern: *pattern,
                });
            }
        }
    }
    if child.net.dns && !parent.net.dns {
        out.push(Escalation::Dns);
    }

    for pattern in &child.http.outbound {
        if !HttpPolicy::covers(&parent.http.outbound, pattern) {
            out.push(Escalation::Http {
                pattern: pattern.clone(),
            });
        }
    }

    if child.clocks.wall && !parent.clocks.wall {
        out.push(Escalation::Clock { clock: "wall" });
    }
    if child.clocks.monotonic && !parent.clocks.monotonic {
        out.push(Escalation::Clock { clock: "monotonic" });
    }

    for (name, value) in &child.env.vars {
        if parent.env.vars.get(name) != Some(value) {
            out.push(Escalation::EnvVar { name: name.clone() });
        }
    }
    for name in &child.env.inherit {
        if !parent.env.inherit.contains(name) {
            out.push(Escalation::EnvInherit { name: name.clone() });
        }
    }

    for ((stream, c), (_, p)) in child
        .stdio
        .streams()
        .into_iter()
        .zip(parent.stdio.streams())
    {
        if c > p {
            out.push(Escalation::Stdio {
                stream,
                child: c,
                parent: p,
            });
        }
    }

    for ((name, c), (_, p)) in child
        .limits
        .entries()
        .into_iter()
        .zip(parent.limits.entries())
    {
        if let Some(p) = p
            && c.is_none_or(|c| c > p)
        {
            out.push(Escalation::Limit {
                name,
                child: c.map(|c| c.describe()),
                parent: p.describe(),
            });
        }
    }

    for rule in &child.process.spawn {
        let covered = parent
            .process
            .spawn
            .iter()
            .any(|r| r.policy == rule.policy && r.component.covers(&rule.component));
        if !covered {
            out.push(Escalation::Spawn { rule: rule.clone() });
        }
    }
    if child.process.kill > parent.process.kill {
        out.push(Escalation::Kill {
            child: child.process.kill,
            parent: parent.process.kill,
        });
    }
    for pattern in &child.process.register {
        if !parent.process.register.iter().any(|p| p.covers(pattern)) {
            out.push(Escalation::Register {
                pattern: pattern.clone(),
            });
        }
    }

    for bucket in &child.keyvalue.buckets {
        let Some(granted) = parent.keyvalue.bucket(&bucket.name) else {
            out.push(Escalation::Bucket {
                name: bucket.name.clone(),
                mode: bucket.mode,
                parent: None,
            });
            continue;
        };
        if bucket.mode > granted.mode {
            out.push(Escalation::Bucket {
                name: bucket.name.clone(),
                mode: bucket.mode,
                parent: Some(granted.mode),
            });
        }
        for (limit, c, p) in [
            ("max_bytes", bucket.bucket_limit(), granted.bucket_limit()),
            ("max_value", bucket.value_limit(), granted.value_limit()),
        ] {
            if c > p {
                out.push(Escalation::BucketLimit {
                    name: bucket.name.clone(),
                    limit,
                    child: c,
                    parent: p,
                });
            }
        }
    }

    for (name, value) in &child.config.vars {
        if parent.config.vars.get(name) != Some(value) {
            out.push(Escalation::ConfigVar { name: name.clone() });
        }
    }

    out
}
