//! Checking a manifest: from its raw serde form (`raw.rs`) to the checked types of
//! `manifest.rs`, every error one line starting with `FILE:LINE:COLUMN:`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rusm_otp::supervisor::{Restart, Shutdown, Strategy};
use rusm_policy::{Location, Policy, PolicyError, PolicyLibrary};
use rusm_wasm::{MachineLimits, WasmConfig};
use toml::Spanned;

use super::raw::{
    RawChild, RawCluster, RawComponent, RawInit, RawListener, RawManifest, RawNode, RawRoute,
    RawStep,
};
use super::*;

/// Builds errors that point into the manifest source.
struct Text<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Text<'_> {
    fn at(&self, span: Range<usize>, message: impl std::fmt::Display) -> anyhow::Error {
        let location = Location::from_offset(self.text, span.start);
        anyhow::anyhow!("{}:{location}: {message}", self.file.display())
    }
}

/// Read and check the manifest at `file`.
///
/// # Errors
/// When the file cannot be read, is not TOML, or is not a valid manifest; the message
/// names the file, line and column.
pub fn load(file: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the app manifest {}: {e}; check the path",
            file.display()
        )
    })?;
    parse(&text, file)
}

/// Check manifest `text`, read from `file` (which relative paths are resolved against).
///
/// # Errors
/// See [`load`].
pub fn parse(text: &str, file: &Path) -> anyhow::Result<Manifest> {
    let src = Text { file, text };
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => src.at(span, message),
            None => anyhow::anyhow!("{}: {message}", file.display()),
        }
    })?;
    let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };

    let library = match &raw.policies {
        None => None,
        Some(policies) => {
            let path = dir.join(policies.get_ref());
            let library = PolicyLibrary::load_dir(&path).map_err(|e| {
                src.at(
                    policies.span(),
                    format!(
                        "cannot load the policy directory {}: {}",
                        path.display(),
                        e.to_string().replace('\n', "; ")
                    ),
                )
            })?;
            Some(library)
        }
    };

    let mut components = BTreeMap::new();
    for (name, component) in &raw.components {
        let decl = component_decl(&src, &dir, library.as_ref(), name, component)?;
        components.insert(name.get_ref().clone(), decl);
    }

    let root = match &raw.supervisor {
        Some(sup) => supervisor_decl(
            &src,
            "root",
            &sup.get_ref().strategy,
            sup.get_ref().max_restarts,
            &sup.get_ref().period,
            &sup.get_ref().children,
            &components,
        )?,
        None => bail!(
            "{}: the manifest has no [supervisor] section; add one with at least one [[supervisor.children]] entry",
            file.display()
        ),
    };

    let mut listeners = Vec::new();
    let mut addresses = BTreeSet::new();
    for listener in &raw.listeners {
        let l = listener.get_ref();
        let listen: SocketAddr = l.listen.get_ref().parse().map_err(|_| {
            src.at(
                l.listen.span(),
                format!(
                    "{:?} is not a socket address; write IP:PORT, such as \"127.0.0.1:8080\"",
                    l.listen.get_ref()
                ),
            )
        })?;
        if listen.port() != 0 && !addresses.insert(listen) {
            return Err(src.at(l.listen.span(), format!("{listen} is listed twice")));
        }
        if l.routes.is_empty() {
            return Err(src.at(
                listener.span(),
                "a listener needs at least one route: routes = [{ path = \"/\", component = \"...\" }]",
            ));
        }
        let mut routes = Vec::new();
        for route in &l.routes {
            let r = route.get_ref();
            if !r.path.get_ref().starts_with('/') {
                return Err(src.at(
                    r.path.span(),
                    format!("route path {:?} must start with /", r.path.get_ref()),
                ));
            }
            known_component(&src, &components, &r.component)?;
            let (kind, connection) = route_connection(&src, r)?;
            let (reuse, pool, concurrency) = route_reuse(&src, r, kind)?;
            routes.push(RouteDecl {
                path: r.path.get_ref().clone(),
                method: r.method.clone(),
                component: r.component.get_ref().clone(),
                kind,
                connection,
                reuse,
                pool,
                concurrency,
            });
        }
        let config = listener_config(&src, l)?;
        listeners.push(ListenerDecl {
            listen,
            routes,
            config,
        });
    }

    let mut steps = Vec::new();
    for step in &raw.steps {
        steps.push(step_decl(&src, step, &root, !listeners.is_empty())?);
    }

    let mut node = match &raw.node {
        Some(node) => node_decl(&src, node.get_ref())?,
        None => NodeDecl::default(),
    };
    let kv_path = match raw.node.as_ref().and_then(|n| n.get_ref().kv_path.as_ref()) {
        Some(path) if path.get_ref().is_empty() => {
            return Err(src.at(
                path.span(),
                "kv_path is empty; name the key-value database file, e.g. kv_path = \"data/kv.redb\"",
            ));
        }
        Some(path) => dir.join(path.get_ref()),
        None => dir.join(".rusm").join("kv.redb"),
    };
    node.kv_default = raw
        .node
        .as_ref()
        .is_none_or(|n| n.get_ref().kv_path.is_none());
    node.kv_path = Some(std::path::absolute(&kv_path).unwrap_or(kv_path));

    let name = raw.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map_or_else(|| "app".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    let cluster = match &raw.cluster {
        Some(cluster) => Some(cluster_decl(&src, cluster.get_ref(), &dir)?),
        None => None,
    };
    Ok(Manifest {
        name,
        library,
        components,
        root,
        listeners,
        steps,
        node,
        cluster,
    })
}

/// The `[cluster]` table, each key checked where it is written.
fn cluster_decl(
    src: &Text<'_>,
    raw: &RawCluster,
    dir: &std::path::Path,
) -> anyhow::Result<ClusterDecl> {
    let text = |value: &Option<Spanned<String>>, key: &str| -> anyhow::Result<Option<String>> {
        match value {
            Some(v) if v.get_ref().trim().is_empty() => {
                Err(src.at(v.span(), format!("[cluster] {key} is empty")))
            }
            Some(v) => Ok(Some(v.get_ref().clone())),
            None => Ok(None),
        }
    };
    let cluster_name = text(&raw.cluster_name, "cluster_name")?;
    if let (Some(name), Some(value)) = (&cluster_name, &raw.cluster_name)
        && let Err(e) = rusm_cluster::check_cluster_name(name)
    {
        return Err(src.at(value.span(), format!("[cluster] {e}")));
    }
    let node_name = text(&raw.node_name, "node_name")?;
    if let (Some(name), Some(value)) = (&node_name, &raw.node_name)
        && let Err(e) = rusm_cluster::ClusterConfig::new("nats://check", name.as_str()).check()
    {
        return Err(src.at(value.span(), format!("[cluster] {e}")));
    }
    let down_after = match &raw.down_after {
        None => None,
        Some(value) => {
            let d = rusm_policy::parse_duration(value.get_ref()).map_err(|e| {
                src.at(
                    value.span(),
                    format!("{e}; write a duration such as \"2s\""),
                )
            })?;
            if d < rusm_cluster::MIN_DOWN_AFTER {
                return Err(src.at(
                    value.span(),
                    format!(
                        "[cluster] down_after must be at least {}",
                        rusm_policy::format_duration(rusm_cluster::MIN_DOWN_AFTER)
                    ),
                ));
            }
            Some(d)
        }
    };
    let mut kv_buckets: Vec<String> = Vec::new();
    for bucket in raw.kv_buckets.iter().flat_map(|list| list.get_ref()) {
        let name = bucket.get_ref();
        if !rusm_policy::is_bucket_name(name) || name.contains('.') {
            return Err(src.at(
                bucket.span(),
                format!(
                    "[cluster] kv_buckets: {name:?} cannot be shared through the cluster: \
                     a shared bucket's name is 1 to 64 ASCII letters, digits, '-' or '_' \
                     (JetStream bucket names have no '.')"
                ),
            ));
        }
        if kv_buckets.contains(name) {
            return Err(src.at(
                bucket.span(),
                format!("[cluster] kv_buckets names {name:?} twice"),
            ));
        }
        kv_buckets.push(name.clone());
    }
    let kv_buckets_at = raw
        .kv_buckets
        .as_ref()
        .filter(|_| !kv_buckets.is_empty())
        .map(|list| {
            format!(
                "{}:{}",
                src.file.display(),
                Location::from_offset(src.text, list.span().start)
            )
        });
    Ok(ClusterDecl {
        kv_buckets,
        kv_buckets_at,
        url: text(&raw.url, "url")?,
        node_name,
        cluster_name,
        down_after,
        credentials: text(&raw.credentials, "credentials")?.map(|p| dir.join(p)),
    })
}

/// A listener's limits: the defaults, with what the manifest sets.
fn listener_config(src: &Text<'_>, raw: &RawListener) -> anyhow::Result<rusm_http::HttpConfig> {
    let mut config = rusm_http::HttpConfig::default();
    let count = |value: &Option<Spanned<i64>>, key: &str, default: usize| match value {
        None => Ok(default),
        Some(value) => usize::try_from(*value.get_ref())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                src.at(
                    value.span(),
                    format!(
                        "{key} must be a whole number of at least 1, not {}",
                        value.get_ref()
                    ),
                )
            }),
    };
    config.max_connections = count(
        &raw.max_connections,
        "max_connections",
        config.max_connections,
    )?;
    config.max_concurrent = count(&raw.max_concurrent, "max_concurrent", config.max_concurrent)?;
    config.max_streams = count(&raw.max_streams, "max_streams", config.max_streams)?;
    if let Some(value) = &raw.max_body_bytes {
        config.max_body_bytes = rusm_policy::parse_size(value.get_ref())
            .map_err(|e| src.at(value.span(), format!("{e}; write a size such as \"10MiB\"")))?;
    }
    if let Some(value) = &raw.buffered_body_bytes {
        config.buffered_body_bytes = rusm_policy::parse_size(value.get_ref())
            .map_err(|e| src.at(value.span(), format!("{e}; write a size such as \"64KiB\"")))?;
    }
    let positive = |value: &Option<Spanned<String>>, key: &str, default: Duration| {
        let d = duration(src, value, default)?;
        match value {
            Some(value) if d.is_zero() => Err(src.at(
                value.span(),
                format!("{key} must be more than 0, not {}", value.get_ref()),
            )),
            _ => Ok(d),
        }
    };
    config.queue_timeout = duration(src, &raw.queue_timeout, config.queue_timeout)?;
    config.header_read_timeout = positive(
        &raw.header_read_timeout,
        "header_read_timeout",
        config.header_read_timeout,
    )?;
    config.body_read_timeout = positive(
        &raw.body_read_timeout,
        "body_read_timeout",
        config.body_read_timeout,
    )?;
    config.request_deadline = positive(
        &raw.request_deadline,
        "request_deadline",
        config.request_deadline,
    )?;
    Ok(config)
}

/// The shortest time slice `[node]` accepts (durations are whole milliseconds).
const MIN_TIME_SLICE: Duration = Duration::from_millis(1);
/// The longest time slice `[node]` accepts: a kill or a fair share waits a slice or two.
const MAX_TIME_SLICE: Duration = Duration::from_secs(1);

fn node_decl(src: &Text<'_>, raw: &RawNode) -> anyhow::Result<NodeDecl> {
    let allocator = match &raw.allocator {
        None => None,
        Some(value) => Some(match value.get_ref().as_str() {
            "arena" => AllocatorChoice::Arena,
            "pooling" => AllocatorChoice::Pooling,
            other => {
                return Err(src.at(
                    value.span(),
                    format!("unknown allocator {other:?}; expected \"arena\" or \"pooling\""),
                ));
            }
        }),
    };
    let max_instances = match &raw.max_instances {
        None => None,
        Some(value) => Some(
            u32::try_from(*value.get_ref())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    src.at(
                        value.span(),
                        format!(
                            "max_instances must be a whole number from 1 to {}, not {}",
                            u32::MAX,
                            value.get_ref()
                        ),
                    )
                })?,
        ),
    };
    let time_slice = match &raw.time_slice {
        None => None,
        Some(value) => {
            let tick = rusm_policy::parse_duration(value.get_ref()).map_err(|e| {
                src.at(
                    value.span(),
                    format!("{e}; write a duration such as \"1ms\""),
                )
            })?;
            if tick < MIN_TIME_SLICE || tick > MAX_TIME_SLICE {
                return Err(src.at(
                    value.span(),
                    format!(
                        "time_slice must be at least 1ms and at most 1s, not {}",
                        value.get_ref()
                    ),
                ));
            }
            Some(tick)
        }
    };
    let memory_budget = match &raw.memory_budget {
        None => None,
        Some(value) => {
            let bytes = rusm_policy::parse_size(value.get_ref()).map_err(|e| {
                src.at(
                    value.span(),
                    format!("{e}; write a size such as \"64 GiB\""),
                )
            })?;
            if bytes == 0 {
                return Err(src.at(
                    value.span(),
                    "memory_budget must be more than 0 bytes".to_owned(),
                ));
            }
            Some(bytes)
        }
    };
    let kv_max_bytes = match &raw.kv_max_bytes {
        None => None,
        Some(value) => {
            let bytes = match value.get_ref() {
                toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|&n| n > 0),
                toml::Value::String(text) => rusm_policy::parse_size(text).ok().filter(|&n| n > 0),
                _ => None,
            };
            Some(bytes.ok_or_else(|| {
                src.at(
                    value.span(),
                    "kv_max_bytes must be a size of at least 1 byte, such as 1073741824 or \"1GiB\"",
                )
            })?)
        }
    };
    let node = NodeDecl {
        allocator,
        max_instances,
        time_slice,
        memory_budget,
        kv_path: None,
        kv_default: true,
        kv_max_bytes,
    };
    // What the machine can hold is checked here too, so the error points at the line.
    if let Err(why) = node
        .apply(WasmConfig::default())
        .check(&MachineLimits::detect())
    {
        let span = raw
            .max_instances
            .as_ref()
            .map(Spanned::span)
            .or_else(|| raw.allocator.as_ref().map(Spanned::span))
            .unwrap_or(0..0);
        return Err(src.at(span, format!("[node] {why}")));
    }
    Ok(node)
}

fn component_decl(
    src: &Text<'_>,
    dir: &Path,
    library: Option<&PolicyLibrary>,
    name: &Spanned<String>,
    component: &Spanned<RawComponent>,
) -> anyhow::Result<ComponentDecl> {
    let c = component.get_ref();
    let valid_name = !name.get_ref().is_empty()
        && name
            .get_ref()
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    if !valid_name {
        return Err(src.at(
            name.span(),
            format!(
                "{:?} is not a valid component name; use ASCII letters, digits, - _ and .",
                name.get_ref()
            ),
        ));
    }
    let source = match (&c.path, &c.build) {
        (Some(path), None) => Source::Wasm(dir.join(path.get_ref())),
        (None, Some(build)) => Source::Cargo(dir.join(build.get_ref())),
        (Some(path), Some(_)) => {
            return Err(src.at(
                path.span(),
                format!(
                    "component {:?} has both path and build; give one: path = a .wasm file, build = a cargo package directory",
                    name.get_ref()
                ),
            ));
        }
        (None, None) => {
            return Err(src.at(
                component.span(),
                format!(
                    "component {:?} needs path = \"FILE.wasm\" or build = \"CARGO PACKAGE DIRECTORY\"",
                    name.get_ref()
                ),
            ));
        }
    };
    let (policy, policy_origin) = match &c.policy {
        None => (
            library
                .and_then(|l| l.get("default").ok().cloned())
                .unwrap_or_else(|| Arc::new(Policy::embedded_default())),
            "the default policy".to_owned(),
        ),
        Some(value) => match value.get_ref() {
            toml::Value::String(s) if s.ends_with(".toml") => {
                let path = dir.join(s);
                let policy = Policy::from_file(&path).map_err(|e| match e {
                    PolicyError::Read { .. } => src.at(
                        value.span(),
                        format!("cannot read policy file {}: check the path", path.display()),
                    ),
                    other => anyhow::anyhow!("{other}"),
                })?;
                policy
                    .fs
                    .check_host_paths()
                    .map_err(|e| src.at(value.span(), e.to_string()))?;
                (Arc::new(policy), format!("policy file {}", path.display()))
            }
            toml::Value::String(s) => {
                let Some(library) = library else {
                    return Err(src.at(
                        value.span(),
                        format!(
                            "component {:?} names the policy {s:?}, but the manifest sets no policies directory; add policies = \"DIR\" at the top, or give a path ending in .toml",
                            name.get_ref()
                        ),
                    ));
                };
                let policy = library
                    .get(s)
                    .map_err(|e| src.at(value.span(), e.to_string()))?;
                (Arc::clone(policy), format!("policy {s:?}"))
            }
            toml::Value::Table(table) => {
                let text = toml::to_string(table).context("cannot re-encode an inline policy")?;
                let policy = Policy::parse(&text, src.file).map_err(|e| match e {
                    PolicyError::Invalid { message, .. } => src.at(
                        value.span(),
                        format!("inline policy of component {:?}: {message}", name.get_ref()),
                    ),
                    other => anyhow::anyhow!("{other}"),
                })?;
                policy.fs.check_host_paths().map_err(|e| {
                    src.at(
                        value.span(),
                        format!(
                            "inline policy of component {:?}: preopen {} cannot be opened: {}",
                            name.get_ref(),
                            e.host.display(),
                            e.problem
                        ),
                    )
                })?;
                (Arc::new(policy), "an inline policy".to_owned())
            }
            _ => {
                return Err(src.at(
                    value.span(),
                    "policy must be a policy name, a path ending in .toml, or an inline table",
                ));
            }
        },
    };
    Ok(ComponentDecl {
        source,
        policy,
        policy_origin,
    })
}

/// A worker's `nodes`: one or more node names, each at most once.
fn child_nodes(
    src: &Text<'_>,
    child_id: &str,
    nodes: Option<&Spanned<Vec<Spanned<String>>>>,
) -> anyhow::Result<Vec<String>> {
    let Some(nodes) = nodes else {
        return Ok(Vec::new());
    };
    if nodes.get_ref().is_empty() {
        return Err(src.at(
            nodes.span(),
            format!(
                "child {child_id:?} has an empty nodes list; name at least one node, or leave nodes out to run it here"
            ),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for node in nodes.get_ref() {
        let name = node.get_ref();
        if let Err(why) = rusm_cluster::check_node_name(name) {
            return Err(src.at(node.span(), format!("child {child_id:?}: {why}")));
        }
        if seen.contains(name) {
            return Err(src.at(
                node.span(),
                format!("child {child_id:?} names node {name:?} twice in nodes"),
            ));
        }
        seen.push(name.clone());
    }
    Ok(seen)
}

fn known_component(
    src: &Text<'_>,
    components: &BTreeMap<String, ComponentDecl>,
    name: &Spanned<String>,
) -> anyhow::Result<()> {
    if components.contains_key(name.get_ref()) {
        return Ok(());
    }
    let known: Vec<&str> = components.keys().map(String::as_str).collect();
    Err(src.at(
        name.span(),
        format!(
            "unknown component {:?}; declare it under [components.{}] (declared: {})",
            name.get_ref(),
            name.get_ref(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    ))
}

fn strategy(src: &Text<'_>, value: &Option<Spanned<String>>) -> anyhow::Result<Strategy> {
    let Some(value) = value else {
        return Ok(Strategy::OneForOne);
    };
    match value.get_ref().as_str() {
        "one_for_one" => Ok(Strategy::OneForOne),
        "one_for_all" => Ok(Strategy::OneForAll),
        "rest_for_one" => Ok(Strategy::RestForOne),
        other => Err(src.at(
            value.span(),
            format!(
                "unknown strategy {other:?}; expected one of: one_for_one, one_for_all, rest_for_one"
            ),
        )),
    }
}

/// An HTTP route's instances: requests per instance (`None` when not set: 1 for a
/// wasi:http 0.2 handler, no cap for a 0.3 service), the pool's size (the default
/// when not set) and, for a 0.3 service, requests per instance at once. Each must
/// be at least 1; `pool` needs `reuse` or `concurrency`, and none goes on a
/// connection route.
fn route_reuse(
    src: &Text<'_>,
    raw: &RawRoute,
    kind: rusm_http::RouteKind,
) -> anyhow::Result<(Option<u32>, usize, Option<u32>)> {
    let whole = |value: &Spanned<i64>, key: &str| {
        u32::try_from(*value.get_ref())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                src.at(
                    value.span(),
                    format!(
                        "{key} must be a whole number of at least 1, not {}",
                        value.get_ref()
                    ),
                )
            })
    };
    let reuse = raw.reuse.as_ref().map(|v| whole(v, "reuse")).transpose()?;
    let pool = raw.pool.as_ref().map(|v| whole(v, "pool")).transpose()?;
    let concurrency = raw
        .concurrency
        .as_ref()
        .map(|v| {
            let n = whole(v, "concurrency")?;
            if n > MAX_CONCURRENCY {
                return Err(src.at(
                    v.span(),
                    format!("concurrency must be at most {MAX_CONCURRENCY}, not {n}"),
                ));
            }
            Ok(n)
        })
        .transpose()?;
    if kind != rusm_http::RouteKind::Http
        && let Some(set) = raw
            .reuse
            .as_ref()
            .or(raw.pool.as_ref())
            .or(raw.concurrency.as_ref())
    {
        return Err(src.at(
            set.span(),
            "reuse, pool and concurrency apply to http routes; a websocket or sse route runs a process per connection",
        ));
    }
    if let (Some(value), None | Some(1), None) = (&raw.pool, reuse, concurrency) {
        return Err(src.at(
            value.span(),
            "pool applies with reuse or concurrency: add reuse = N (requests per instance, more than 1) or, for a wasi:http 0.3 service, concurrency = N",
        ));
    }
    Ok((
        reuse,
        pool.map_or(rusm_wasm::DEFAULT_POOL_INSTANCES, |p| p as usize),
        concurrency,
    ))
}

/// The most requests one instance of a wasi:http 0.3 service may be set to serve at
/// once (each holds its request, its response and their bodies in the instance).
pub(crate) const MAX_CONCURRENCY: u32 = 1024;

/// A route's kind and its connections' settings: the defaults, with what the manifest
/// sets. Connection keys on an `http` route are errors.
fn route_connection(
    src: &Text<'_>,
    raw: &RawRoute,
) -> anyhow::Result<(rusm_http::RouteKind, rusm_http::ConnectionConfig)> {
    use rusm_http::RouteKind;
    let kind = match &raw.kind {
        None => RouteKind::Http,
        Some(kind) => match kind.get_ref().as_str() {
            "http" => RouteKind::Http,
            "websocket" => RouteKind::WebSocket,
            "sse" => RouteKind::Sse,
            other => {
                return Err(src.at(
                    kind.span(),
                    format!(
                        "unknown route kind {other:?}; write \"http\", \"websocket\" or \"sse\""
                    ),
                ));
            }
        },
    };
    let mut config = rusm_http::ConnectionConfig::default();
    let sizes = [
        (
            &raw.max_message_bytes,
            "max_message_bytes",
            &mut config.max_message_bytes,
        ),
        (
            &raw.max_queued_bytes,
            "max_queued_bytes",
            &mut config.max_queued_bytes,
        ),
    ];
    let mut set = Vec::new();
    for (value, key, field) in sizes {
        let Some(value) = value else { continue };
        set.push((key, value.span()));
        *field = rusm_policy::parse_size(value.get_ref())
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                src.at(
                    value.span(),
                    format!(
                        "{key} must be a size of at least 1 byte, such as \"64KiB\", not {:?}",
                        value.get_ref()
                    ),
                )
            })?;
    }
    if let Some(value) = &raw.max_queued_messages {
        set.push(("max_queued_messages", value.span()));
        config.max_queued_messages = usize::try_from(*value.get_ref())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                src.at(
                    value.span(),
                    format!(
                        "max_queued_messages must be a whole number of at least 1, not {}",
                        value.get_ref()
                    ),
                )
            })?;
    }
    let durations = [
        (&raw.idle_timeout, "idle_timeout", &mut config.idle_timeout),
        (
            &raw.ping_interval,
            "ping_interval",
            &mut config.ping_interval,
        ),
        (
            &raw.write_timeout,
            "write_timeout",
            &mut config.write_timeout,
        ),
        (
            &raw.close_timeout,
            "close_timeout",
            &mut config.close_timeout,
        ),
        (&raw.heartbeat, "heartbeat", &mut config.heartbeat),
    ];
    for (value, key, field) in durations {
        let Some(spanned) = value else { continue };
        set.push((key, spanned.span()));
        *field = duration(src, value, *field)?;
        if field.is_zero() {
            return Err(src.at(
                spanned.span(),
                format!("{key} must be more than 0, not {}", spanned.get_ref()),
            ));
        }
    }
    if kind == RouteKind::Http
        && let Some((key, span)) = set.first()
    {
        return Err(src.at(
            span.clone(),
            format!("{key} applies to websocket and sse routes; add kind = \"websocket\" or kind = \"sse\""),
        ));
    }
    Ok((kind, config))
}

fn duration(
    src: &Text<'_>,
    value: &Option<Spanned<String>>,
    default: Duration,
) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(value) => rusm_policy::parse_duration(value.get_ref()).map_err(|e| {
            src.at(
                value.span(),
                format!("{e}; write a duration such as \"5s\""),
            )
        }),
    }
}

fn supervisor_decl(
    src: &Text<'_>,
    id: &str,
    strategy_value: &Option<Spanned<String>>,
    max_restarts: Option<u32>,
    period: &Option<Spanned<String>>,
    children: &[Spanned<RawChild>],
    components: &BTreeMap<String, ComponentDecl>,
) -> anyhow::Result<SupervisorDecl> {
    let mut ids = BTreeSet::new();
    let mut decls = Vec::new();
    for child in children {
        let c = child.get_ref();
        let child_id = c.id.get_ref();
        if child_id.is_empty() || child_id.contains('/') {
            return Err(src.at(
                c.id.span(),
                format!("child id {child_id:?} must be non-empty and contain no /"),
            ));
        }
        if !ids.insert(child_id.clone()) {
            return Err(src.at(
                c.id.span(),
                format!("supervisor {id:?} has two children with id {child_id:?}"),
            ));
        }
        let restart = match &c.restart {
            None => Restart::Permanent,
            Some(value) => match value.get_ref().as_str() {
                "permanent" => Restart::Permanent,
                "transient" => Restart::Transient,
                "temporary" => Restart::Temporary,
                other => {
                    return Err(src.at(
                        value.span(),
                        format!(
                            "unknown restart type {other:?}; expected one of: permanent, transient, temporary"
                        ),
                    ));
                }
            },
        };
        let kind = match (&c.component, &c.children) {
            (Some(component), None) => {
                known_component(src, components, component)?;
                if let Some(value) = c
                    .strategy
                    .as_ref()
                    .or(c.period.as_ref())
                    .or(c.max_restarts.as_ref().map(|_| &c.id))
                {
                    return Err(src.at(
                        value.span(),
                        format!(
                            "child {child_id:?} runs a component, so strategy, max_restarts and period do not apply; they belong to a supervisor child (one with children)"
                        ),
                    ));
                }
                ChildKind::Worker {
                    component: component.get_ref().clone(),
                    init: match &c.init {
                        None => Vec::new(),
                        Some(RawInit::Text(text)) => text.as_bytes().to_vec(),
                        Some(RawInit::Bytes(bytes)) => bytes.clone(),
                    },
                    nodes: child_nodes(src, child_id, c.nodes.as_ref())?,
                }
            }
            (None, Some(grandchildren)) => {
                if let Some(nodes) = &c.nodes {
                    return Err(src.at(
                        nodes.span(),
                        format!(
                            "child {child_id:?} is a supervisor; nodes applies to components only"
                        ),
                    ));
                }
                if c.init.is_some() {
                    return Err(src.at(
                        c.id.span(),
                        format!(
                            "child {child_id:?} is a supervisor; init applies to components only"
                        ),
                    ));
                }
                ChildKind::Supervisor(supervisor_decl(
                    src,
                    child_id,
                    &c.strategy,
                    c.max_restarts,
                    &c.period,
                    grandchildren,
                    components,
                )?)
            }
            (Some(component), Some(_)) => {
                return Err(src.at(
                    component.span(),
                    format!(
                        "child {child_id:?} has both component and children; a child is either a worker (component) or a supervisor (children)"
                    ),
                ));
            }
            (None, None) => {
                return Err(src.at(
                    child.span(),
                    format!(
                        "child {child_id:?} needs component = \"NAME\" (a worker) or children = [...] (a supervisor)"
                    ),
                ));
            }
        };
        let shutdown = match &c.shutdown {
            None => match kind {
                ChildKind::Worker { .. } => Shutdown::Timeout(Duration::from_secs(5)),
                ChildKind::Supervisor(_) => Shutdown::Infinity,
            },
            Some(value) => match value.get_ref().as_str() {
                "brutal_kill" => Shutdown::BrutalKill,
                "infinity" => Shutdown::Infinity,
                text => Shutdown::Timeout(rusm_policy::parse_duration(text).map_err(|e| {
                    src.at(
                        value.span(),
                        format!("{e}; shutdown is \"brutal_kill\", \"infinity\" or a duration such as \"5s\""),
                    )
                })?),
            },
        };
        decls.push(ChildDecl {
            id: child_id.clone(),
            restart,
            shutdown,
            kind,
        });
    }
    Ok(SupervisorDecl {
        id: id.to_owned(),
        strategy: strategy(src, strategy_value)?,
        max_restarts: max_restarts.unwrap_or(3),
        period: duration(src, period, Duration::from_secs(5))?,
        children: decls,
    })
}

/// Whether `path` (`a/b`) names a child of `root`.
fn has_child(root: &SupervisorDecl, path: &str) -> bool {
    let mut sup = root;
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        let Some(child) = sup.children.iter().find(|c| c.id == part) else {
            return false;
        };
        match (&child.kind, parts.peek()) {
            (_, None) => return true,
            (ChildKind::Supervisor(inner), Some(_)) => sup = inner,
            (ChildKind::Worker { .. }, Some(_)) => return false,
        }
    }
    false
}

fn child_path(
    src: &Text<'_>,
    root: &SupervisorDecl,
    value: &Spanned<String>,
) -> anyhow::Result<String> {
    if has_child(root, value.get_ref()) {
        Ok(value.get_ref().clone())
    } else {
        Err(src.at(
            value.span(),
            format!(
                "no child {:?} in the supervision tree; name a child by its ids from the root, such as \"counter\" or \"crashers/crasher\"",
                value.get_ref()
            ),
        ))
    }
}

fn step_decl(
    src: &Text<'_>,
    step: &Spanned<RawStep>,
    root: &SupervisorDecl,
    has_listener: bool,
) -> anyhow::Result<Step> {
    let s = step.get_ref();
    let kinds = [
        s.say.is_some(),
        s.http.is_some(),
        s.exit.is_some(),
        s.await_exit.is_some(),
        s.await_name.is_some(),
        s.sleep.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(src.at(
            step.span(),
            "a step has exactly one of: say, http, exit, await_exit, await_name, sleep",
        ));
    }
    let stray = |present: bool, key: &str, allowed: &str| -> anyhow::Result<()> {
        if present {
            Err(src.at(
                step.span(),
                format!("{key} belongs to {allowed} steps only"),
            ))
        } else {
            Ok(())
        }
    };
    let is_http = s.http.is_some();
    stray(
        !is_http && (s.body.is_some() || s.expect_status.is_some() || s.expect_body.is_some()),
        "body/expect_status/expect_body",
        "http",
    )?;
    stray(s.exit.is_none() && s.reason.is_some(), "reason", "exit")?;
    stray(
        s.await_exit.is_none() && s.expect_reason.is_some(),
        "expect_reason",
        "await_exit",
    )?;
    if let Some(text) = &s.say {
        return Ok(Step::Say(text.clone()));
    }
    if let Some(http) = &s.http {
        if !has_listener {
            return Err(src.at(
                http.span(),
                "an http step needs a listener; add a [[listeners]] section",
            ));
        }
        let mut words = http.get_ref().split_whitespace();
        let (Some(method), Some(path), None) = (words.next(), words.next(), words.next()) else {
            return Err(src.at(
                http.span(),
                format!(
                    "http step {:?} must be METHOD PATH, such as \"GET /counter\"",
                    http.get_ref()
                ),
            ));
        };
        if !path.starts_with('/') || !method.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(src.at(
                http.span(),
                format!(
                    "http step {:?} must be METHOD PATH, such as \"GET /counter\"",
                    http.get_ref()
                ),
            ));
        }
        return Ok(Step::Http {
            method: method.to_owned(),
            path: path.to_owned(),
            body: s.body.clone(),
            expect_status: s.expect_status,
            expect_body: s.expect_body.clone(),
        });
    }
    if let Some(exit) = &s.exit {
        return Ok(Step::Exit {
            child: child_path(src, root, exit)?,
            reason: s
                .reason
                .clone()
                .unwrap_or_else(|| "killed by the script".into()),
        });
    }
    if let Some(child) = &s.await_exit {
        let expect_reason = match &s.expect_reason {
            None => None,
            Some(kind) if rusm_otp::ExitReason::KINDS.contains(&kind.get_ref().as_str()) => {
                Some(kind.get_ref().clone())
            }
            Some(kind) => {
                return Err(src.at(
                    kind.span(),
                    format!(
                        "unknown exit reason kind {:?}; expected one of: {}",
                        kind.get_ref(),
                        rusm_otp::ExitReason::KINDS.join(", ")
                    ),
                ));
            }
        };
        return Ok(Step::AwaitExit {
            child: child_path(src, root, child)?,
            expect_reason,
        });
    }
    if let Some(name) = &s.await_name {
        return Ok(Step::AwaitName(name.clone()));
    }
    let sleep = s.sleep.as_ref().expect("exactly one kind is set");
    Ok(Step::Sleep(duration(
        src,
        &Some(sleep.clone()),
        Duration::ZERO,
    )?))
}
