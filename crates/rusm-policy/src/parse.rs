//! Turning TOML source into a [`Policy`], with a located error for everything that
//! is not a valid policy.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::config::{ConfigPolicy, ConfigValue};
use crate::env::{EnvPolicy, is_var_name};
use crate::error::{Location, PolicyError};
use crate::fs::{FsMode, FsPolicy, GuestPathError, Preopen, normalize_guest, resolve_host};
use crate::http::HttpPolicy;
use crate::keyvalue::{Bucket, BucketMode, KeyValuePolicy, is_bucket_name};
use crate::limits::{LIMIT_KEYS, Limits, MailboxOverflow, parse_duration, parse_size};
use crate::net::{NetPolicy, SocketKind};
use crate::process::{KillRight, NamePattern, PolicyRef, ProcessPolicy, SpawnRule};
use crate::stdio::{ClockPolicy, StdioMode, StdioPolicy};
use crate::{Policy, pattern::PatternError};

type Key<'i> = Spanned<DeString<'i>>;
type Value<'i> = Spanned<DeValue<'i>>;
type Result<T> = std::result::Result<T, PolicyError>;

/// The top-level sections.
const TOP_KEYS: [&str; 10] = [
    "fs", "net", "http", "clocks", "env", "stdio", "limits", "process", "keyvalue", "config",
];

/// The TOML type of a value, with its article, for messages.
fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The entries of a table in the order they appear in the source.
fn entries<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(&'a Key<'i>, &'a Value<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

pub(crate) struct Parser<'s> {
    source: &'s str,
    origin: &'s Path,
    base: &'s Path,
}

impl<'s> Parser<'s> {
    pub(crate) fn new(source: &'s str, origin: &'s Path, base: &'s Path) -> Self {
        Parser {
            source,
            origin,
            base,
        }
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        PolicyError::at(self.origin, self.source, span, message.into())
    }

    fn location(&self, span: &Range<usize>) -> Location {
        Location::from_offset(self.source, span.start)
    }

    pub(crate) fn parse(&self) -> Result<Policy> {
        let doc = DeTable::parse(self.source).map_err(|e| self.syntax_error(&e))?;
        let mut policy = Policy::deny_all();
        for (key, value) in entries(doc.get_ref()) {
            let place = "at the top level";
            let expected = |name: &str| format!("a table ([{name}])");
            match key.get_ref().as_ref() {
                "fs" => policy.fs = self.fs(self.table(key, value, place, &expected("fs"))?)?,
                "net" => {
                    policy.net = self.net(self.table(key, value, place, &expected("net"))?)?
                }
                "http" => {
                    policy.http = self.http(self.table(key, value, place, &expected("http"))?)?;
                }
                "clocks" => {
                    policy.clocks =
                        self.clocks(self.table(key, value, place, &expected("clocks"))?)?;
                }
                "env" => {
                    policy.env = self.env(self.table(key, value, place, &expected("env"))?)?
                }
                "stdio" => {
                    policy.stdio =
                        self.stdio(self.table(key, value, place, &expected("stdio"))?)?;
                }
                "limits" => {
                    policy.limits =
                        self.limits(self.table(key, value, place, &expected("limits"))?)?;
                }
                "process" => {
                    policy.process =
                        self.process(self.table(key, value, place, &expected("process"))?)?;
                }
                "keyvalue" => {
                    policy.keyvalue =
                        self.keyvalue(self.table(key, value, place, &expected("keyvalue"))?)?;
                }
                "config" => {
                    policy.config =
                        self.config(self.table(key, value, place, &expected("config"))?)?;
                }
                other => return Err(self.unknown_key(key, other, place, &TOP_KEYS)),
            }
        }
        Ok(policy)
    }

    fn syntax_error(&self, error: &toml::de::Error) -> PolicyError {
        let span = error.span().unwrap_or(0..0);
        let mut message = error.message().to_string();
        if let Some(first) = message.get(..1) {
            message = first.to_lowercase() + &message[1..];
        }
        if message == "duplicate key"
            && let Some(text) = self.source.get(span.clone())
        {
            message = format!("duplicate key {text:?}");
        }
        self.err(span, format!("invalid toml: {message}"))
    }

    fn unknown_key(&self, key: &Key<'_>, name: &str, place: &str, allowed: &[&str]) -> PolicyError {
        self.err(
            key.span(),
            format!(
                "unknown key {name:?} {place}; expected one of: {}",
                allowed.join(", ")
            ),
        )
    }

    fn wrong_type(
        &self,
        key: &Key<'_>,
        value: &Value<'_>,
        place: &str,
        expected: &str,
    ) -> PolicyError {
        self.err(
            value.span(),
            format!(
                "wrong type for {:?} {place}: expected {expected}, found {}",
                key.get_ref().as_ref(),
                type_name(value.get_ref())
            ),
        )
    }

    fn wrong_element_type(
        &self,
        key: &Key<'_>,
        value: &Value<'_>,
        place: &str,
        expected: &str,
    ) -> PolicyError {
        self.err(
            value.span(),
            format!(
                "wrong type for an element of {:?} {place}: expected {expected}, found {}",
                key.get_ref().as_ref(),
                type_name(value.get_ref())
            ),
        )
    }

    fn table<'a, 'i>(
        &self,
        key: &Key<'i>,
        value: &'a Value<'i>,
        place: &str,
        expected: &str,
    ) -> Result<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Ok(t),
            _ => Err(self.wrong_type(key, value, place, expected)),
        }
    }

    fn bool(&self, key: &Key<'_>, value: &Value<'_>, place: &str) -> Result<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type(key, value, place, "a boolean (true or false)")),
        }
    }

    fn string<'a>(
        &self,
        key: &Key<'_>,
        value: &'a Value<'_>,
        place: &str,
        expected: &str,
    ) -> Result<&'a str> {
        match value.get_ref() {
            DeValue::String(s) => {
                if s.contains('\0') {
                    return Err(self.err(
                        value.span(),
                        format!(
                            "{:?} {place} contains a NUL character, which no host can pass on",
                            key.get_ref().as_ref()
                        ),
                    ));
                }
                Ok(s)
            }
            _ => Err(self.wrong_type(key, value, place, expected)),
        }
    }

    /// An array of strings, each with its span. `what` describes one element, as
    /// in "socket pattern" or "variable name".
    fn strings<'a>(
        &self,
        key: &Key<'_>,
        value: &'a Value<'_>,
        place: &str,
        what: &str,
    ) -> Result<Vec<(&'a str, Range<usize>)>> {
        let DeValue::Array(items) = value.get_ref() else {
            let expected = format!("an array of strings ({what}s)");
            return Err(self.wrong_type(key, value, place, &expected));
        };
        items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) if s.contains('\0') => Err(self.err(
                    item.span(),
                    format!(
                        "an element of {:?} {place} contains a NUL character, which no host can pass on",
                        key.get_ref().as_ref()
                    ),
                )),
                DeValue::String(s) => Ok((s.as_ref(), item.span())),
                _ => Err(self.wrong_element_type(key, item, place, &format!("a string (a {what})"))),
            })
            .collect()
    }

    /// An array of strings, each parsed as a `T`.
    fn patterns<T: FromStr<Err = PatternError>>(
        &self,
        key: &Key<'_>,
        value: &Value<'_>,
        place: &str,
        what: &str,
    ) -> Result<Vec<(T, Range<usize>)>> {
        self.strings(key, value, place, what)?
            .into_iter()
            .map(|(text, span)| {
                text.parse().map(|p| (p, span.clone())).map_err(|e| {
                    self.err(
                        span,
                        format!(
                            "invalid {} pattern {text:?} {place}: {e}",
                            key.get_ref().as_ref()
                        ),
                    )
                })
            })
            .collect()
    }

    /// A string that must be one of `choices`.
    fn choice<T: Copy>(
        &self,
        key: &Key<'_>,
        value: &Value<'_>,
        place: &str,
        choices: &[(&str, T)],
    ) -> Result<T> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let expected = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => {
                format!("a string ({} or {last})", rest.join(", "))
            }
            _ => format!("a string ({})", names.join(", ")),
        };
        let text = self.string(key, value, place, &expected)?;
        choices
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                self.err(
                    value.span(),
                    format!(
                        "invalid value {text:?} for {:?} {place}; expected one of: {}",
                        key.get_ref().as_ref(),
                        names.join(", ")
                    ),
                )
            })
    }

    fn missing(&self, table_span: Range<usize>, key: &str, place: &str, hint: &str) -> PolicyError {
        self.err(table_span, format!("missing key {key:?} {place}; {hint}"))
    }

    fn fs(&self, table: &DeTable<'_>) -> Result<FsPolicy> {
        const KEYS: [&str; 1] = ["preopen"];
        const ENTRY_KEYS: [&str; 3] = ["host", "guest", "mode"];
        let place = "in [fs]";
        let entry_place = "in [[fs.preopen]]";
        let mut fs = FsPolicy::default();
        // Guest path -> where it was first preopened.
        let mut seen: BTreeMap<String, Location> = BTreeMap::new();
        for (key, value) in entries(table) {
            if key.get_ref() != "preopen" {
                return Err(self.unknown_key(key, key.get_ref(), place, &KEYS));
            }
            let expected = "an array of tables ([[fs.preopen]])";
            let items = match value.get_ref() {
                DeValue::Array(items) => items,
                _ => return Err(self.wrong_type(key, value, place, expected)),
            };
            for item in items.iter() {
                let DeValue::Table(entry) = item.get_ref() else {
                    return Err(self.wrong_element_type(key, item, place, "a table"));
                };
                let (mut host, mut guest, mut mode) = (None, None, FsMode::ReadOnly);
                let mut location = None;
                for (k, v) in entries(entry) {
                    match k.get_ref().as_ref() {
                        "host" => {
                            let text =
                                self.string(k, v, entry_place, "a string (a host directory)")?;
                            if text.is_empty() {
                                return Err(self.err(
                                    v.span(),
                                    "empty host path in [[fs.preopen]]; name a directory, e.g. host = \"data\"",
                                ));
                            }
                            host = Some(PathBuf::from(text));
                            location = Some(self.location(&v.span()));
                        }
                        "guest" => {
                            let text = self.string(
                                k,
                                v,
                                entry_place,
                                "a string (the path the guest sees)",
                            )?;
                            let normalized = normalize_guest(text).map_err(|e| {
                                let msg = match e {
                                    GuestPathError::Empty => "empty guest path in [[fs.preopen]]; give the path the guest sees, e.g. guest = \"/data\" or guest = \".\"".to_string(),
                                    GuestPathError::ParentComponent => format!(
                                        "guest path {text:?} in [[fs.preopen]] contains \"..\"; write the path without \"..\" components"
                                    ),
                                    GuestPathError::Nul => {
                                        "guest path in [[fs.preopen]] contains a NUL character".to_string()
                                    }
                                };
                                self.err(v.span(), msg)
                            })?;
                            let here = self.location(&v.span());
                            if let Some(first) = seen.get(&normalized) {
                                return Err(self.err(
                                    v.span(),
                                    format!(
                                        "duplicate guest path {normalized:?} in [[fs.preopen]]; it is already preopened at line {}",
                                        first.line
                                    ),
                                ));
                            }
                            seen.insert(normalized.clone(), here);
                            guest = Some(normalized);
                        }
                        "mode" => {
                            mode = self.choice(
                                k,
                                v,
                                entry_place,
                                &[("ro", FsMode::ReadOnly), ("rw", FsMode::ReadWrite)],
                            )?;
                        }
                        other => return Err(self.unknown_key(k, other, entry_place, &ENTRY_KEYS)),
                    }
                }
                let host = host.ok_or_else(|| {
                    self.missing(
                        item.span(),
                        "host",
                        entry_place,
                        "name the host directory to preopen, e.g. host = \"data\"",
                    )
                })?;
                let guest = guest.ok_or_else(|| {
                    self.missing(
                        item.span(),
                        "guest",
                        entry_place,
                        "give the path the guest sees, e.g. guest = \"/data\" or guest = \".\"",
                    )
                })?;
                fs.preopens.push(Preopen {
                    host_resolved: resolve_host(self.base, &host),
                    host,
                    guest,
                    mode,
                    origin: self.origin.to_path_buf(),
                    location,
                });
            }
        }
        Ok(fs)
    }

    fn net(&self, table: &DeTable<'_>) -> Result<NetPolicy> {
        const KEYS: [&str; 5] = ["tcp_connect", "tcp_bind", "udp_bind", "udp_connect", "dns"];
        let place = "in [net]";
        let mut net = NetPolicy::default();
        for (key, value) in entries(table) {
            let name: &str = key.get_ref();
            if name == "dns" {
                net.dns = self.bool(key, value, place)?;
                continue;
            }
            let Some(kind) = SocketKind::ALL.into_iter().find(|k| k.key() == name) else {
                return Err(self.unknown_key(key, name, place, &KEYS));
            };
            let patterns = self
                .patterns(key, value, place, "socket pattern")?
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            match kind {
                SocketKind::TcpConnect => net.tcp_connect = patterns,
                SocketKind::TcpBind => net.tcp_bind = patterns,
                SocketKind::UdpBind => net.udp_bind = patterns,
                SocketKind::UdpConnect => net.udp_connect = patterns,
            }
        }
        Ok(net)
    }

    fn http(&self, table: &DeTable<'_>) -> Result<HttpPolicy> {
        const KEYS: [&str; 1] = ["outbound"];
        let place = "in [http]";
        let mut http = HttpPolicy::default();
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "outbound" => {
                    http.outbound = self
                        .patterns(key, value, place, "origin pattern")?
                        .into_iter()
                        .map(|(p, _)| p)
                        .collect();
                }
                other => return Err(self.unknown_key(key, other, place, &KEYS)),
            }
        }
        Ok(http)
    }

    fn clocks(&self, table: &DeTable<'_>) -> Result<ClockPolicy> {
        const KEYS: [&str; 2] = ["wall", "monotonic"];
        let place = "in [clocks]";
        let mut clocks = ClockPolicy::default();
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "wall" => clocks.wall = self.bool(key, value, place)?,
                "monotonic" => clocks.monotonic = self.bool(key, value, place)?,
                other => return Err(self.unknown_key(key, other, place, &KEYS)),
            }
        }
        Ok(clocks)
    }

    fn env(&self, table: &DeTable<'_>) -> Result<EnvPolicy> {
        const KEYS: [&str; 4] = ["vars", "inherit", "args", "cwd"];
        let place = "in [env]";
        let mut env = EnvPolicy::default();
        let mut inherited: Vec<(String, Range<usize>)> = Vec::new();
        let bad_name = |name: &str, where_: &str| {
            format!(
                "invalid variable name {name:?} {where_}; names use ASCII letters, digits and _, and do not start with a digit"
            )
        };
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "vars" => {
                    let vars = self.table(key, value, place, "a table of strings ([env.vars])")?;
                    for (k, v) in entries(vars) {
                        if !is_var_name(k.get_ref()) {
                            return Err(self.err(k.span(), bad_name(k.get_ref(), "in [env.vars]")));
                        }
                        let text = self.string(k, v, "in [env.vars]", "a string")?;
                        env.vars.insert(k.get_ref().to_string(), text.to_string());
                    }
                }
                "inherit" => {
                    for (name, span) in self.strings(key, value, place, "variable name")? {
                        if !is_var_name(name) {
                            return Err(self.err(span, bad_name(name, "in [env] inherit")));
                        }
                        if !inherited.iter().any(|(n, _)| n == name) {
                            inherited.push((name.to_string(), span));
                        }
                    }
                }
                "args" => {
                    env.args = self
                        .strings(key, value, place, "program argument")?
                        .into_iter()
                        .map(|(s, _)| s.to_string())
                        .collect();
                }
                "cwd" => {
                    let text = self.string(key, value, place, "a string (a guest path)")?;
                    let normalized = normalize_guest(text).map_err(|e| {
                        let msg = match e {
                            GuestPathError::Empty => "empty working directory in [env] cwd; give a guest path, e.g. cwd = \"/data\"".to_string(),
                            GuestPathError::ParentComponent => format!(
                                "working directory {text:?} in [env] cwd contains \"..\"; write the path without \"..\" components"
                            ),
                            GuestPathError::Nul => {
                                "working directory in [env] cwd contains a NUL character".to_string()
                            }
                        };
                        self.err(value.span(), msg)
                    })?;
                    env.cwd = Some(normalized);
                }
                other => return Err(self.unknown_key(key, other, place, &KEYS)),
            }
        }
        for (name, span) in inherited {
            if env.vars.contains_key(&name) {
                return Err(self.err(
                    span,
                    format!(
                        "{name:?} is both set in [env.vars] and inherited in [env] inherit; keep only one of them"
                    ),
                ));
            }
            env.inherit.push(name);
        }
        Ok(env)
    }

    fn stdio(&self, table: &DeTable<'_>) -> Result<StdioPolicy> {
        const KEYS: [&str; 3] = ["stdin", "stdout", "stderr"];
        const INPUT: [(&str, StdioMode); 2] =
            [("inherit", StdioMode::Inherit), ("null", StdioMode::Null)];
        const OUTPUT: [(&str, StdioMode); 3] = [
            ("inherit", StdioMode::Inherit),
            ("null", StdioMode::Null),
            ("log", StdioMode::Log),
        ];
        let place = "in [stdio]";
        let mut stdio = StdioPolicy::default();
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "stdin" => stdio.stdin = self.choice(key, value, place, &INPUT)?,
                "stdout" => stdio.stdout = self.choice(key, value, place, &OUTPUT)?,
                "stderr" => stdio.stderr = self.choice(key, value, place, &OUTPUT)?,
                other => return Err(self.unknown_key(key, other, place, &KEYS)),
            }
        }
        Ok(stdio)
    }

    /// A positive integer that fits in a `u64`.
    fn count(&self, key: &Key<'_>, value: &Value<'_>, place: &str, expected: &str) -> Result<u64> {
        let DeValue::Integer(int) = value.get_ref() else {
            return Err(self.wrong_type(key, value, place, expected));
        };
        let name = key.get_ref().as_ref();
        match i128::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if n < 1 => Err(self.err(
                value.span(),
                format!("{name:?} {place} must be at least 1, found {n}"),
            )),
            Ok(n) => u64::try_from(n).map_err(|_| self.too_large(name, place, value)),
            Err(_) => Err(self.too_large(name, place, value)),
        }
    }

    fn too_large(&self, name: &str, place: &str, value: &Value<'_>) -> PolicyError {
        self.err(
            value.span(),
            format!("{name:?} {place} is too large; the most is {}", u64::MAX),
        )
    }

    fn size(&self, key: &Key<'_>, value: &Value<'_>, place: &str) -> Result<u64> {
        let expected = "a size (a whole number of bytes, or a string such as \"64MiB\")";
        let name = key.get_ref().as_ref();
        match value.get_ref() {
            DeValue::Integer(_) => self.count(key, value, place, expected),
            DeValue::String(text) => match parse_size(text) {
                Ok(0) => Err(self.err(
                    value.span(),
                    format!("{name:?} {place} must be at least 1 byte, found {text:?}"),
                )),
                Ok(n) => Ok(n),
                Err(e) => Err(self.err(
                    value.span(),
                    format!("invalid size for {name:?} {place}: {e}"),
                )),
            },
            _ => Err(self.wrong_type(key, value, place, expected)),
        }
    }

    fn duration(&self, key: &Key<'_>, value: &Value<'_>, place: &str) -> Result<Duration> {
        let expected = "a duration string such as \"30s\", \"500ms\" or \"5m\"";
        let name = key.get_ref().as_ref();
        let text = self.string(key, value, place, expected)?;
        match parse_duration(text) {
            Ok(d) if d.is_zero() => Err(self.err(
                value.span(),
                format!("{name:?} {place} must be longer than zero, found {text:?}"),
            )),
            Ok(d) => Ok(d),
            Err(e) => Err(self.err(
                value.span(),
                format!("invalid duration for {name:?} {place}: {e}"),
            )),
        }
    }

    fn limits(&self, table: &DeTable<'_>) -> Result<Limits> {
        let place = "in [limits]";
        let mut limits = Limits::default();
        let integer = "a positive integer";
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "memory" => limits.memory = Some(self.size(key, value, place)?),
                "table_elements" => {
                    limits.table_elements = Some(self.count(key, value, place, integer)?)
                }
                "fuel" => limits.fuel = Some(self.count(key, value, place, integer)?),
                "deadline" => limits.deadline = Some(self.duration(key, value, place)?),
                "mailbox" => limits.mailbox = Some(self.count(key, value, place, integer)?),
                "message_size" => limits.message_size = Some(self.size(key, value, place)?),
                "children" => limits.children = Some(self.count(key, value, place, integer)?),
                "timers" => limits.timers = Some(self.count(key, value, place, integer)?),
                "monitors" => limits.monitors = Some(self.count(key, value, place, integer)?),
                "links" => limits.links = Some(self.count(key, value, place, integer)?),
                "mailbox_bytes" => limits.mailbox_bytes = Some(self.size(key, value, place)?),
                "max_receive" => limits.max_receive = Some(self.size(key, value, place)?),
                "descendants" => {
                    limits.descendants = Some(self.count(key, value, place, integer)?);
                }
                "spawns" => limits.spawns = Some(self.count(key, value, place, integer)?),
                "memories" => limits.memories = Some(self.count(key, value, place, integer)?),
                "tables" => limits.tables = Some(self.count(key, value, place, integer)?),
                "instances" => limits.instances = Some(self.count(key, value, place, integer)?),
                "mailbox_overflow" => {
                    limits.mailbox_overflow = Some(self.choice(
                        key,
                        value,
                        place,
                        &[
                            ("drop", MailboxOverflow::Drop),
                            ("refuse", MailboxOverflow::Refuse),
                        ],
                    )?);
                }
                other => {
                    let allowed: Vec<&str> = LIMIT_KEYS
                        .iter()
                        .copied()
                        .chain(["mailbox_overflow"])
                        .collect();
                    return Err(self.unknown_key(key, other, place, &allowed));
                }
            }
        }
        Ok(limits)
    }

    fn process(&self, table: &DeTable<'_>) -> Result<ProcessPolicy> {
        const KEYS: [&str; 3] = ["spawn", "kill", "register"];
        let place = "in [process]";
        let mut process = ProcessPolicy::default();
        for (key, value) in entries(table) {
            match key.get_ref().as_ref() {
                "spawn" => process.spawn = self.spawn_rules(key, value)?,
                "kill" => {
                    process.kill = self.choice(
                        key,
                        value,
                        place,
                        &[
                            ("none", KillRight::None),
                            ("children", KillRight::Children),
                            ("any", KillRight::Any),
                        ],
                    )?;
                }
                "register" => {
                    process.register = self
                        .patterns::<NamePattern>(key, value, place, "name pattern")?
                        .into_iter()
                        .map(|(p, _)| p)
                        .collect();
                }
                other => return Err(self.unknown_key(key, other, place, &KEYS)),
            }
        }
        Ok(process)
    }

    fn spawn_rules(&self, key: &Key<'_>, value: &Value<'_>) -> Result<Vec<SpawnRule>> {
        const KEYS: [&str; 2] = ["component", "policy"];
        let place = "in [process] spawn";
        let expected =
            "an array of tables such as [{ component = \"worker\", policy = \"worker\" }]";
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(key, value, "in [process]", expected));
        };
        let mut rules = Vec::new();
        for item in items.iter() {
            let DeValue::Table(entry) = item.get_ref() else {
                return Err(self.wrong_element_type(key, item, "in [process]", "a table"));
            };
            let (mut component, mut policy) = (None, PolicyRef::Own);
            for (k, v) in entries(entry) {
                let parse_err = |text: &str, e: &dyn Display| {
                    self.err(
                        v.span(),
                        format!("invalid {} {text:?} {place}: {e}", k.get_ref().as_ref()),
                    )
                };
                match k.get_ref().as_ref() {
                    "component" => {
                        let text =
                            self.string(k, v, place, "a string (a component name or pattern)")?;
                        component = Some(
                            text.parse::<NamePattern>()
                                .map_err(|e| parse_err(text, &e))?,
                        );
                    }
                    "policy" => {
                        let text =
                            self.string(k, v, place, "a string (a policy name or \"self\")")?;
                        policy = text.parse::<PolicyRef>().map_err(|e| parse_err(text, &e))?;
                    }
                    other => return Err(self.unknown_key(k, other, place, &KEYS)),
                }
            }
            let component = component.ok_or_else(|| {
                self.missing(
                    item.span(),
                    "component",
                    place,
                    "name the component (or a pattern such as \"worker-*\" or \"*\"), e.g. component = \"worker\"",
                )
            })?;
            rules.push(SpawnRule {
                component,
                policy,
                location: Some(self.location(&item.span())),
            });
        }
        Ok(rules)
    }

    fn keyvalue(&self, table: &DeTable<'_>) -> Result<KeyValuePolicy> {
        const KEYS: [&str; 1] = ["buckets"];
        const ENTRY_KEYS: [&str; 4] = ["name", "mode", "max_bytes", "max_value"];
        let place = "in [keyvalue]";
        let entry_place = "in [keyvalue] buckets";
        let mut kv = KeyValuePolicy::default();
        for (key, value) in entries(table) {
            if key.get_ref() != "buckets" {
                return Err(self.unknown_key(key, key.get_ref(), place, &KEYS));
            }
            let expected = "an array of tables such as [{ name = \"sessions\", mode = \"rw\" }]";
            let DeValue::Array(items) = value.get_ref() else {
                return Err(self.wrong_type(key, value, place, expected));
            };
            // Bucket name -> the line it was first granted on.
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for item in items.iter() {
                let DeValue::Table(entry) = item.get_ref() else {
                    return Err(self.wrong_element_type(key, item, place, "a table"));
                };
                let mut bucket = Bucket {
                    name: String::new(),
                    mode: BucketMode::ReadOnly,
                    max_bytes: None,
                    max_value: None,
                };
                let mut named = false;
                for (k, v) in entries(entry) {
                    match k.get_ref().as_ref() {
                        "name" => {
                            let text =
                                self.string(k, v, entry_place, "a string (a bucket name)")?;
                            if !is_bucket_name(text) {
                                return Err(self.err(
                                    v.span(),
                                    format!(
                                        "invalid bucket name {text:?} {entry_place}; names are 1 to 64 ASCII letters, digits, '-', '_' or '.'"
                                    ),
                                ));
                            }
                            let line = self.location(&v.span()).line;
                            if let Some(first) = seen.get(text) {
                                return Err(self.err(
                                    v.span(),
                                    format!(
                                        "duplicate bucket {text:?} {entry_place}; it is already granted at line {first}"
                                    ),
                                ));
                            }
                            seen.insert(text.to_string(), line);
                            bucket.name = text.to_string();
                            named = true;
                        }
                        "mode" => {
                            bucket.mode = self.choice(
                                k,
                                v,
                                entry_place,
                                &[("ro", BucketMode::ReadOnly), ("rw", BucketMode::ReadWrite)],
                            )?;
                        }
                        "max_bytes" => bucket.max_bytes = Some(self.size(k, v, entry_place)?),
                        "max_value" => bucket.max_value = Some(self.size(k, v, entry_place)?),
                        other => return Err(self.unknown_key(k, other, entry_place, &ENTRY_KEYS)),
                    }
                }
                if !named {
                    return Err(self.missing(
                        item.span(),
                        "name",
                        entry_place,
                        "name the bucket, e.g. name = \"sessions\"",
                    ));
                }
                kv.buckets.push(bucket);
            }
        }
        Ok(kv)
    }

    fn config(&self, table: &DeTable<'_>) -> Result<ConfigPolicy> {
        const KEYS: [&str; 1] = ["vars"];
        const VALUE_KEYS: [&str; 1] = ["env"];
        let place = "in [config]";
        let vars_place = "in [config.vars]";
        let mut config = ConfigPolicy::default();
        for (key, value) in entries(table) {
            if key.get_ref() != "vars" {
                return Err(self.unknown_key(key, key.get_ref(), place, &KEYS));
            }
            let vars = self.table(key, value, place, "a table ([config.vars])")?;
            for (k, v) in entries(vars) {
                let name: &str = k.get_ref();
                if name.is_empty() {
                    return Err(self.err(k.span(), format!("empty key {vars_place}")));
                }
                let value = match v.get_ref() {
                    DeValue::String(_) => {
                        ConfigValue::Literal(self.string(k, v, vars_place, "a string")?.to_string())
                    }
                    DeValue::Table(t) => {
                        let mut env = None;
                        for (ek, ev) in entries(t) {
                            if ek.get_ref() != "env" {
                                return Err(self.unknown_key(
                                    ek,
                                    ek.get_ref(),
                                    vars_place,
                                    &VALUE_KEYS,
                                ));
                            }
                            let text =
                                self.string(ek, ev, vars_place, "a string (a host variable name)")?;
                            if !is_var_name(text) {
                                return Err(self.err(
                                    ev.span(),
                                    format!(
                                        "invalid variable name {text:?} {vars_place}; names use ASCII letters, digits and _, and do not start with a digit"
                                    ),
                                ));
                            }
                            env = Some(text.to_string());
                        }
                        let env = env.ok_or_else(|| {
                            self.missing(
                                v.span(),
                                "env",
                                vars_place,
                                "name the host variable, e.g. { env = \"DB_PASSWORD\" }",
                            )
                        })?;
                        ConfigValue::Env(env)
                    }
                    _ => {
                        return Err(self.wrong_type(
                            k,
                            v,
                            vars_place,
                            "a string or a table such as { env = \"DB_PASSWORD\" }",
                        ));
                    }
                };
                config.vars.insert(name.to_string(), value);
            }
        }
        Ok(config)
    }
}
