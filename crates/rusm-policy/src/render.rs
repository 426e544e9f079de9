//! A policy back to TOML: [`Policy::to_toml`], the form in which a node tells another
//! what one of its processes holds (the receiving node parses it and grants a child no
//! more). Parsing what it writes gives a policy equal to the original in every grant
//! and limit (tested against every policy of the library); where a value has no exact
//! policy syntax it is written smaller, never larger: a deadline is cut to whole
//! milliseconds (at least one) and a count above `i64::MAX` becomes `i64::MAX`.

use std::time::Duration;

use toml::{Table, Value};

use crate::config::ConfigValue;
use crate::limits::{MailboxOverflow, format_duration};
use crate::{FsMode, Policy};

fn strings<T: ToString>(items: &[T]) -> Value {
    Value::Array(items.iter().map(|i| Value::String(i.to_string())).collect())
}

fn count(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn duration(d: Duration) -> Value {
    Value::String(format_duration(d.max(Duration::from_millis(1))))
}

impl Policy {
    /// This policy as TOML that [`Policy::parse`] reads back to the same grants. Host
    /// paths of preopens are written as resolved (absolute when the policy's origin
    /// was), so the text stands on its own.
    #[must_use]
    pub fn to_toml(&self) -> String {
        let mut doc = Table::new();
        if !self.fs.preopens.is_empty() {
            let preopens = self
                .fs
                .preopens
                .iter()
                .map(|p| {
                    let mut t = Table::new();
                    t.insert(
                        "host".into(),
                        Value::String(p.host_resolved.to_string_lossy().into_owned()),
                    );
                    t.insert("guest".into(), Value::String(p.guest.clone()));
                    let mode = match p.mode {
                        FsMode::ReadOnly => "ro",
                        FsMode::ReadWrite => "rw",
                    };
                    t.insert("mode".into(), Value::String(mode.into()));
                    Value::Table(t)
                })
                .collect();
            let mut fs = Table::new();
            fs.insert("preopen".into(), Value::Array(preopens));
            doc.insert("fs".into(), Value::Table(fs));
        }
        let mut net = Table::new();
        for (key, patterns) in [
            ("tcp_connect", &self.net.tcp_connect),
            ("tcp_bind", &self.net.tcp_bind),
            ("udp_bind", &self.net.udp_bind),
            ("udp_connect", &self.net.udp_connect),
        ] {
            if !patterns.is_empty() {
                net.insert(key.into(), strings(patterns));
            }
        }
        if self.net.dns {
            net.insert("dns".into(), Value::Boolean(true));
        }
        if !net.is_empty() {
            doc.insert("net".into(), Value::Table(net));
        }
        if !self.http.outbound.is_empty() {
            let mut http = Table::new();
            http.insert("outbound".into(), strings(&self.http.outbound));
            doc.insert("http".into(), Value::Table(http));
        }
        let mut clocks = Table::new();
        clocks.insert("wall".into(), Value::Boolean(self.clocks.wall));
        clocks.insert("monotonic".into(), Value::Boolean(self.clocks.monotonic));
        doc.insert("clocks".into(), Value::Table(clocks));
        let mut env = Table::new();
        if !self.env.vars.is_empty() {
            let vars = self
                .env
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            env.insert("vars".into(), Value::Table(vars));
        }
        if !self.env.inherit.is_empty() {
            env.insert("inherit".into(), strings(&self.env.inherit));
        }
        if !self.env.args.is_empty() {
            env.insert("args".into(), strings(&self.env.args));
        }
        if let Some(cwd) = &self.env.cwd {
            env.insert("cwd".into(), Value::String(cwd.clone()));
        }
        if !env.is_empty() {
            doc.insert("env".into(), Value::Table(env));
        }
        let mut stdio = Table::new();
        stdio.insert("stdin".into(), Value::String(self.stdio.stdin.to_string()));
        stdio.insert(
            "stdout".into(),
            Value::String(self.stdio.stdout.to_string()),
        );
        stdio.insert(
            "stderr".into(),
            Value::String(self.stdio.stderr.to_string()),
        );
        doc.insert("stdio".into(), Value::Table(stdio));
        let l = &self.limits;
        let mut limits = Table::new();
        for (key, value) in [
            ("memory", l.memory),
            ("table_elements", l.table_elements),
            ("fuel", l.fuel),
            ("mailbox", l.mailbox),
            ("message_size", l.message_size),
            ("children", l.children),
            ("timers", l.timers),
            ("monitors", l.monitors),
            ("links", l.links),
            ("mailbox_bytes", l.mailbox_bytes),
            ("max_receive", l.max_receive),
            ("descendants", l.descendants),
            ("spawns", l.spawns),
            ("memories", l.memories),
            ("tables", l.tables),
            ("instances", l.instances),
        ] {
            if let Some(n) = value {
                limits.insert(key.into(), count(n));
            }
        }
        if let Some(d) = l.deadline {
            limits.insert("deadline".into(), duration(d));
        }
        if let Some(overflow) = l.mailbox_overflow {
            let text = match overflow {
                MailboxOverflow::Drop => "drop",
                MailboxOverflow::Refuse => "refuse",
            };
            limits.insert("mailbox_overflow".into(), Value::String(text.into()));
        }
        if !limits.is_empty() {
            doc.insert("limits".into(), Value::Table(limits));
        }
        let mut process = Table::new();
        if !self.process.spawn.is_empty() {
            let rules = self
                .process
                .spawn
                .iter()
                .map(|r| {
                    let mut t = Table::new();
                    t.insert("component".into(), Value::String(r.component.to_string()));
                    t.insert("policy".into(), Value::String(r.policy.to_string()));
                    Value::Table(t)
                })
                .collect();
            process.insert("spawn".into(), Value::Array(rules));
        }
        process.insert("kill".into(), Value::String(self.process.kill.to_string()));
        if !self.process.register.is_empty() {
            process.insert("register".into(), strings(&self.process.register));
        }
        doc.insert("process".into(), Value::Table(process));
        if !self.keyvalue.buckets.is_empty() {
            let buckets = self
                .keyvalue
                .buckets
                .iter()
                .map(|b| {
                    let mut t = Table::new();
                    t.insert("name".into(), Value::String(b.name.clone()));
                    t.insert("mode".into(), Value::String(b.mode.to_string()));
                    if let Some(n) = b.max_bytes {
                        t.insert("max_bytes".into(), count(n));
                    }
                    if let Some(n) = b.max_value {
                        t.insert("max_value".into(), count(n));
                    }
                    Value::Table(t)
                })
                .collect();
            let mut kv = Table::new();
            kv.insert("buckets".into(), Value::Array(buckets));
            doc.insert("keyvalue".into(), Value::Table(kv));
        }
        if !self.config.vars.is_empty() {
            let vars = self
                .config
                .vars
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        ConfigValue::Literal(text) => Value::String(text.clone()),
                        ConfigValue::Env(name) => {
                            let mut t = Table::new();
                            t.insert("env".into(), Value::String(name.clone()));
                            Value::Table(t)
                        }
                    };
                    (k.clone(), value)
                })
                .collect();
            let mut config = Table::new();
            config.insert("vars".into(), Value::Table(vars));
            doc.insert("config".into(), Value::Table(config));
        }
        doc.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Policy, PolicyLibrary};

    /// Parse what `policy` renders and check that each grants exactly what the other
    /// does (the subset check both ways), and that the text is stable.
    fn round_trips(name: &str, policy: &Policy) {
        let text = policy.to_toml();
        let back = Policy::parse(&text, Path::new("/rendered.toml"))
            .unwrap_or_else(|e| panic!("{name}: the rendering does not parse: {e}\n{text}"));
        back.is_subset_of(policy)
            .unwrap_or_else(|e| panic!("{name}: the rendering grants more: {e}\n{text}"));
        policy
            .is_subset_of(&back)
            .unwrap_or_else(|e| panic!("{name}: the rendering grants less: {e}\n{text}"));
        assert_eq!(back.limits, policy.limits, "{name}\n{text}");
        assert_eq!(back.env, policy.env, "{name}\n{text}");
        assert_eq!(back.config, policy.config, "{name}\n{text}");
        assert_eq!(back.to_toml(), text, "{name}: the rendering is not stable");
    }

    #[test]
    fn every_policy_of_the_library_round_trips() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../capabilities");
        let library = PolicyLibrary::load_dir(&dir).unwrap();
        let mut seen = 0;
        for name in library.names() {
            round_trips(name, library.get(name).unwrap());
            seen += 1;
        }
        assert!(seen > 3, "only {seen} policies in {}", dir.display());
    }

    #[test]
    fn a_policy_granting_every_kind_of_thing_round_trips() {
        let dir = std::env::temp_dir().join(format!("rusm-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = format!(
            r#"
[[fs.preopen]]
host = "{dir}"
guest = "/data"
mode = "rw"

[net]
tcp_connect = ["127.0.0.1:8000-9000", "10.0.0.0/8:443", "localhost:80"]
udp_bind = ["[::1]:5353"]
dns = true

[http]
outbound = ["https://api.example.com", "http://127.0.0.1:8080"]

[clocks]
wall = true
monotonic = false

[env]
vars = {{ MODE = "test", QUOTED = "a \"b\" c" }}
inherit = ["HOME"]
args = ["--verbose"]
cwd = "/data"

[stdio]
stdout = "log"
stderr = "inherit"

[limits]
memory = "64MiB"
fuel = 1000000
deadline = "1m30s"
mailbox = 100
mailbox_overflow = "refuse"
children = 4
descendants = 10

[process]
spawn = [{{ component = "worker-*", policy = "self" }}, {{ component = "echo", policy = "worker" }}]
kill = "children"
register = ["svc-*", "exact"]

[keyvalue]
buckets = [{{ name = "sessions", mode = "rw", max_bytes = "1MiB" }}, {{ name = "ro-one" }}]

[config]
vars = {{ greeting = "hello", secret = {{ env = "DB_PASSWORD" }} }}
"#,
            dir = dir.display()
        );
        let policy = Policy::parse(&source, Path::new("/full.toml")).unwrap();
        round_trips("full", &policy);
        round_trips("empty", &Policy::deny_all());
        round_trips("embedded default", &Policy::embedded_default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
