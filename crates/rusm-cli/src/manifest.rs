//! The app manifest (`APP.toml`): components, their policies, a supervision tree,
//! HTTP listeners and an optional script of client steps. The format is documented in
//! `docs/manifest.md`.
//!
//! Reading a manifest checks everything that can be checked without building or
//! loading anything: unknown keys, wrong types, references to components that are not
//! declared, duplicate child ids, bad durations and addresses. Every error is one line
//! starting with `FILE:LINE:COLUMN:`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusm_otp::supervisor::{Restart, Shutdown, Strategy};
use rusm_policy::{Policy, PolicyLibrary};
use rusm_wasm::{Allocator, PoolConfig, WasmConfig};

/// A checked app manifest, with paths resolved against the manifest's directory.
#[derive(Debug)]
pub struct Manifest {
    /// The app's name (the file stem when the manifest names none).
    pub name: String,
    /// The named policies, when the manifest names a policy directory.
    pub library: Option<PolicyLibrary>,
    /// The components, by name.
    pub components: BTreeMap<String, ComponentDecl>,
    /// The root of the supervision tree.
    pub root: SupervisorDecl,
    /// The HTTP listeners.
    pub listeners: Vec<ListenerDecl>,
    /// The client steps run once the tree is up.
    pub steps: Vec<Step>,
    /// How the app's node is sized (`[node]`).
    pub node: NodeDecl,
    /// The cluster the app's node joins (`[cluster]`), if any.
    pub cluster: Option<ClusterDecl>,
}

/// The `[cluster]` table: the cluster the app's node joins. `rusm run`'s `--cluster`,
/// `--node-name`, `--cluster-name` and `--down-after` override its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterDecl {
    /// `url`: the NATS server.
    pub url: Option<String>,
    /// `node_name`: this node's name in the cluster.
    pub node_name: Option<String>,
    /// `cluster_name`: the cluster's name (`rusm` when unset).
    pub cluster_name: Option<String>,
    /// `down_after`: how long a silent node has before it is declared down.
    pub down_after: Option<Duration>,
    /// `credentials`: a NATS credentials file, resolved against the manifest's
    /// directory.
    pub credentials: Option<PathBuf>,
    /// `kv_buckets`: the `wasi:keyvalue` buckets shared through the cluster (each a
    /// JetStream KV bucket) instead of kept in the node's file.
    pub kv_buckets: Vec<String>,
    /// Where `kv_buckets` is written (`FILE:LINE:COLUMN`), for the error of a node
    /// that shares buckets but is not clustered.
    pub kv_buckets_at: Option<String>,
}

/// The `[node]` table: how the app's node allocates instances and preempts them.
/// Every key is optional; what is not set keeps the machine-derived default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDecl {
    /// `allocator = "arena" | "pooling"`.
    pub allocator: Option<AllocatorChoice>,
    /// `max_instances`: instances alive at once.
    pub max_instances: Option<u32>,
    /// `time_slice`: how long a guest runs in one go before it must yield.
    pub time_slice: Option<Duration>,
    /// `memory_budget`: bytes of linear memory the node may grant its live processes
    /// together.
    pub memory_budget: Option<u64>,
    /// `kv_path`: the key-value database file, resolved against the manifest's
    /// directory (`.rusm/kv.redb` there when the manifest names none).
    pub kv_path: Option<PathBuf>,
    /// Whether `kv_path` is the default (the manifest names none): a node of a
    /// cluster then keeps its database in `.rusm/<node name>/kv.redb`.
    pub kv_default: bool,
    /// `kv_max_bytes`: the most the key-value store holds.
    pub kv_max_bytes: Option<u64>,
}

/// The allocator an app chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorChoice {
    /// `rusm_wasm::Allocator::Arena` (the default).
    Arena,
    /// `rusm_wasm::Allocator::Pooling`.
    Pooling,
}

impl NodeDecl {
    /// The key-value database of the node named `node_name` in a cluster (`None` for a
    /// node that joins none): `kv_path` when the manifest names one, otherwise
    /// `.rusm/kv.redb`, or `.rusm/<node name>/kv.redb` for a clustered node, so that
    /// nodes started from one manifest each keep their own file.
    pub fn kv_path_for(&self, node_name: Option<&str>) -> Option<PathBuf> {
        let path = self.kv_path.clone()?;
        match (node_name, path.parent()) {
            (Some(name), Some(dir)) if self.kv_default => Some(dir.join(name).join("kv.redb")),
            _ => Some(path),
        }
    }

    /// `base` with this table's settings applied.
    pub fn apply(&self, base: WasmConfig) -> WasmConfig {
        let mut config = base;
        match self.allocator {
            Some(AllocatorChoice::Pooling) => config.allocator = Allocator::Pooling,
            Some(AllocatorChoice::Arena) if config.allocator == Allocator::Pooling => {
                config.allocator = Allocator::default();
            }
            _ => {}
        }
        if let Some(n) = self.max_instances {
            match &mut config.allocator {
                Allocator::Arena(arena) => arena.max_instances = n,
                Allocator::Pooling => {
                    config.pool = PoolConfig {
                        max_memory_size: config.pool.max_memory_size,
                        table_elements: config.pool.table_elements,
                        ..PoolConfig::with_instances(n)
                    };
                }
            }
        }
        if let Some(slice) = self.time_slice {
            config.preemption = rusm_wasm::Preemption::Slice(slice);
        }
        if let Some(budget) = self.memory_budget {
            config.memory_budget = budget;
        }
        if let Some(path) = &self.kv_path {
            config.kv_path = Some(path.clone());
        }
        if let Some(max) = self.kv_max_bytes {
            config.kv_max_bytes = max;
        }
        config
    }
}

/// Where a component's code comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A built `.wasm` file.
    Wasm(PathBuf),
    /// A cargo package directory that rusm builds for `wasm32-wasip2`.
    Cargo(PathBuf),
}

/// A component of the app.
#[derive(Debug, Clone)]
pub struct ComponentDecl {
    /// Where its code comes from.
    pub source: Source,
    /// The policy every process of this component runs under.
    pub policy: Arc<Policy>,
    /// Where that policy came from, for logs (`capabilities/counter.toml`, `inline`, ...).
    pub policy_origin: String,
}

/// A supervisor of the tree.
#[derive(Debug, Clone)]
pub struct SupervisorDecl {
    /// Its id (`root` for the root).
    pub id: String,
    /// Which children restart together.
    pub strategy: Strategy,
    /// Most restarts within `period`.
    pub max_restarts: u32,
    /// The window restarts are counted in.
    pub period: Duration,
    /// Its children, in start order.
    pub children: Vec<ChildDecl>,
}

/// A child of a supervisor.
#[derive(Debug, Clone)]
pub struct ChildDecl {
    /// Its id, unique among its siblings.
    pub id: String,
    /// When it is restarted.
    pub restart: Restart,
    /// How it is stopped.
    pub shutdown: Shutdown,
    /// What it is.
    pub kind: ChildKind,
}

/// A worker or a nested supervisor.
#[derive(Debug, Clone)]
pub enum ChildKind {
    /// A process running a component, with these init bytes.
    Worker {
        /// The component's name.
        component: String,
        /// The init bytes handed to the actor.
        init: Vec<u8>,
        /// The nodes of the cluster to start it on, tried in order at every start
        /// (`nodes = [...]`); empty runs it on this node.
        nodes: Vec<String>,
    },
    /// A supervisor of its own children.
    Supervisor(SupervisorDecl),
}

/// An HTTP listener.
#[derive(Debug, Clone)]
pub struct ListenerDecl {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Its routes, matched by longest path prefix.
    pub routes: Vec<RouteDecl>,
    /// Its limits: `rusm-http`'s defaults with the listener's own settings applied.
    pub config: rusm_http::HttpConfig,
}

/// A route of a listener.
#[derive(Debug, Clone)]
pub struct RouteDecl {
    /// The path prefix it serves.
    pub path: String,
    /// Only this method, when given.
    pub method: Option<String>,
    /// The component handling it.
    pub component: String,
    /// What it serves: HTTP requests, WebSocket connections or SSE streams.
    pub kind: rusm_http::RouteKind,
    /// The settings of its connections (WebSocket and SSE routes).
    pub connection: rusm_http::ConnectionConfig,
    /// Requests one instance serves (HTTP routes), when set: in turn for a wasi:http
    /// 0.2 handler (not set: 1, a fresh instance per request), in all for a 0.3
    /// service (not set: no cap).
    pub reuse: Option<u32>,
    /// With `reuse` above 1, or for a wasi:http 0.3 service, the most instances the
    /// route's pool holds.
    pub pool: usize,
    /// For a wasi:http 0.3 service, the requests one instance serves at once, when
    /// set (not set: [`rusm_wasm::DEFAULT_P3_CONCURRENCY`]).
    pub concurrency: Option<u32>,
}

/// One step of the client script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Print a line.
    Say(String),
    /// Send an HTTP request to the first listener and print the answer.
    Http {
        /// The method.
        method: String,
        /// The path (with query).
        path: String,
        /// The request body.
        body: Option<String>,
        /// The status the answer must have.
        expect_status: Option<u16>,
        /// The body the answer must have (compared without surrounding whitespace).
        expect_body: Option<String>,
    },
    /// Send an exit signal to a child of the tree, wait for it to end and for its
    /// supervisor to start it again.
    Exit {
        /// The child's path in the tree (`counter`, `crashers/crasher`).
        child: String,
        /// The reason sent.
        reason: String,
    },
    /// Wait for a child of the tree to end, and print why.
    AwaitExit {
        /// The child's path in the tree.
        child: String,
        /// The kind of reason it must end with ([`rusm_otp::ExitReason::kind`]).
        expect_reason: Option<String>,
    },
    /// Wait until a process has registered this name.
    AwaitName(String),
    /// Wait this long.
    Sleep(Duration),
}

impl Step {
    /// The step as one line, for the account of the run.
    pub fn describe(&self) -> String {
        match self {
            Step::Say(text) => text.clone(),
            Step::Http {
                method, path, body, ..
            } => match body {
                Some(body) => format!("{method} {path} with body {body:?}"),
                None => format!("{method} {path}"),
            },
            Step::Exit { child, reason } => {
                format!("send {child} an exit signal with reason {reason:?}")
            }
            Step::AwaitExit { child, .. } => format!("wait for {child} to end"),
            Step::AwaitName(name) => format!("wait for a process to register {name:?}"),
            Step::Sleep(d) => format!("wait {}", rusm_policy::format_duration(*d)),
        }
    }
}

mod check;
mod raw;

pub use check::load;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::check::parse;
    use super::*;

    const APP: &str = r#"
[components.web]
path = "web.wasm"

[supervisor]

[[listeners]]
listen = "127.0.0.1:0"
routes = [{ path = "/", component = "web" }]
"#;

    #[test]
    fn listener_limits_default_and_can_be_set() {
        let m = parse(APP, Path::new("app.toml")).unwrap();
        assert_eq!(m.listeners[0].config, rusm_http::HttpConfig::default());
        let text = format!(
            "{APP}max_connections = 4\nmax_concurrent = 2\nbody_read_timeout = \"300ms\"\nheader_read_timeout = \"2s\"\nrequest_deadline = \"5s\"\nqueue_timeout = \"0s\"\nmax_body_bytes = \"1KiB\"\nbuffered_body_bytes = \"512B\"\n"
        );
        let c = parse(&text, Path::new("app.toml")).unwrap().listeners[0]
            .config
            .clone();
        assert_eq!(c.max_connections, 4);
        assert_eq!(c.max_concurrent, 2);
        assert_eq!(c.body_read_timeout, Duration::from_millis(300));
        assert_eq!(c.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.request_deadline, Duration::from_secs(5));
        assert_eq!(c.queue_timeout, Duration::ZERO);
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.buffered_body_bytes, 512);
    }

    #[test]
    fn bad_listener_limits_name_the_line() {
        for (line, expect) in [
            (
                "max_connections = 0",
                "max_connections must be a whole number of at least 1",
            ),
            (
                "body_read_timeout = \"0s\"",
                "body_read_timeout must be more than 0",
            ),
            ("header_read_timeout = \"soon\"", "write a duration"),
        ] {
            let err = parse(&format!("{APP}{line}\n"), Path::new("app.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("app.toml:10:"), "{err}");
            assert!(err.contains(expect), "{err}");
        }
    }

    /// `APP` with its route replaced by `route` (the route is on line 9).
    fn with_route(route: &str) -> String {
        APP.replace(r#"{ path = "/", component = "web" }"#, route)
    }

    #[test]
    fn connection_routes_have_a_kind_and_settings() {
        let text = with_route(
            r#"{ path = "/ws", component = "web", kind = "websocket", max_message_bytes = "64KiB", max_queued_messages = 16, idle_timeout = "30s", ping_interval = "5s" }, { path = "/events", component = "web", kind = "sse", heartbeat = "2s" }, { path = "/", component = "web", kind = "http" }"#,
        );
        let text = format!("{text}max_streams = 10\n");
        let m = parse(&text, Path::new("app.toml")).unwrap();
        let l = &m.listeners[0];
        assert_eq!(l.config.max_streams, 10);
        let [ws, sse, http] = &l.routes[..] else {
            panic!("three routes")
        };
        assert_eq!(ws.kind, rusm_http::RouteKind::WebSocket);
        assert_eq!(ws.connection.max_message_bytes, 64 * 1024);
        assert_eq!(ws.connection.max_queued_messages, 16);
        assert_eq!(ws.connection.idle_timeout, Duration::from_secs(30));
        assert_eq!(ws.connection.ping_interval, Duration::from_secs(5));
        assert_eq!(
            ws.connection.write_timeout,
            rusm_http::ConnectionConfig::default().write_timeout
        );
        assert_eq!(sse.kind, rusm_http::RouteKind::Sse);
        assert_eq!(sse.connection.heartbeat, Duration::from_secs(2));
        assert_eq!(http.kind, rusm_http::RouteKind::Http);
    }

    #[test]
    fn bad_connection_routes_name_the_line() {
        for (route, expect) in [
            (
                r#"{ path = "/", component = "web", kind = "socket" }"#,
                "unknown route kind \"socket\"",
            ),
            (
                r#"{ path = "/", component = "web", idle_timeout = "1s" }"#,
                "idle_timeout applies to websocket and sse routes",
            ),
            (
                r#"{ path = "/", component = "web", kind = "sse", heartbeat = "0s" }"#,
                "heartbeat must be more than 0",
            ),
            (
                r#"{ path = "/", component = "web", kind = "websocket", max_message_bytes = "lots" }"#,
                "max_message_bytes must be a size",
            ),
            (
                r#"{ path = "/", component = "web", kind = "websocket", max_queued_messages = 0 }"#,
                "max_queued_messages must be a whole number of at least 1",
            ),
        ] {
            let err = parse(&with_route(route), Path::new("app.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("app.toml:9:"), "{err}");
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn http_routes_may_reuse_instances_from_a_pool() {
        let text = with_route(
            r#"{ path = "/api", component = "web", reuse = 500, pool = 4 }, { path = "/", component = "web" }"#,
        );
        let m = parse(&text, Path::new("app.toml")).unwrap();
        let [api, root] = &m.listeners[0].routes[..] else {
            panic!("two routes")
        };
        assert_eq!((api.reuse, api.pool, api.concurrency), (Some(500), 4, None));
        assert_eq!(
            (root.reuse, root.pool, root.concurrency),
            (None, rusm_wasm::DEFAULT_POOL_INSTANCES, None)
        );
        for (route, expect) in [
            (
                r#"{ path = "/", component = "web", reuse = 0 }"#,
                "reuse must be a whole number of at least 1",
            ),
            (
                r#"{ path = "/", component = "web", reuse = 5, pool = 0 }"#,
                "pool must be a whole number of at least 1",
            ),
            (
                r#"{ path = "/", component = "web", pool = 4 }"#,
                "pool applies with reuse",
            ),
            (
                r#"{ path = "/", component = "web", kind = "websocket", reuse = 5 }"#,
                "reuse, pool and concurrency apply to http routes",
            ),
            (
                r#"{ path = "/", component = "web", concurrency = 0 }"#,
                "concurrency must be a whole number of at least 1, not 0",
            ),
            (
                r#"{ path = "/", component = "web", concurrency = 5000 }"#,
                "concurrency must be at most 1024, not 5000",
            ),
            (
                r#"{ path = "/", component = "web", kind = "sse", concurrency = 8 }"#,
                "reuse, pool and concurrency apply to http routes",
            ),
        ] {
            let err = parse(&with_route(route), Path::new("app.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("app.toml:9:"), "{err}");
            assert!(err.contains(expect), "{err}");
        }
    }

    #[test]
    fn a_wasi_http_0_3_route_sets_its_concurrency_and_pool() {
        let text = with_route(r#"{ path = "/", component = "web", concurrency = 64, pool = 2 }"#);
        let m = parse(&text, Path::new("app.toml")).unwrap();
        let route = &m.listeners[0].routes[0];
        assert_eq!(
            (route.reuse, route.pool, route.concurrency),
            (None, 2, Some(64))
        );
    }

    #[test]
    fn the_chat_app_declares_its_connection_routes() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps/chat/app.toml");
        let m = super::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let routes = &m.listeners[0].routes;
        assert_eq!(routes[0].kind, rusm_http::RouteKind::WebSocket);
        assert_eq!(routes[0].component, "ws-chat");
        assert_eq!(routes[0].connection.max_message_bytes, 16 * 1024);
        assert_eq!(routes[1].kind, rusm_http::RouteKind::Sse);
        assert_eq!(m.listeners[0].config.max_streams, 10_000);
    }
}
