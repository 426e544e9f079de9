//! The manifest as TOML gives it: serde types mirroring `docs/manifest.md` key for
//! key, with the spans errors point at. Nothing here is checked beyond TOML types and
//! unknown keys (`deny_unknown_fields`); `check.rs` turns them into the checked form.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) name: Option<String>,
    pub(super) policies: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) components: BTreeMap<Spanned<String>, Spanned<RawComponent>>,
    pub(super) supervisor: Option<Spanned<RawSupervisor>>,
    #[serde(default)]
    pub(super) listeners: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<RawStep>>,
    pub(super) node: Option<Spanned<RawNode>>,
    pub(super) cluster: Option<Spanned<RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) url: Option<Spanned<String>>,
    pub(super) node_name: Option<Spanned<String>>,
    pub(super) cluster_name: Option<Spanned<String>>,
    pub(super) down_after: Option<Spanned<String>>,
    pub(super) credentials: Option<Spanned<String>>,
    pub(super) kv_buckets: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) allocator: Option<Spanned<String>>,
    pub(super) max_instances: Option<Spanned<i64>>,
    pub(super) time_slice: Option<Spanned<String>>,
    pub(super) memory_budget: Option<Spanned<String>>,
    pub(super) kv_path: Option<Spanned<String>>,
    pub(super) kv_max_bytes: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponent {
    pub(super) path: Option<Spanned<String>>,
    pub(super) build: Option<Spanned<String>>,
    pub(super) policy: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupervisor {
    pub(super) strategy: Option<Spanned<String>>,
    pub(super) max_restarts: Option<u32>,
    pub(super) period: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) children: Vec<Spanned<RawChild>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChild {
    pub(super) id: Spanned<String>,
    pub(super) component: Option<Spanned<String>>,
    pub(super) init: Option<RawInit>,
    pub(super) restart: Option<Spanned<String>>,
    pub(super) shutdown: Option<Spanned<String>>,
    pub(super) strategy: Option<Spanned<String>>,
    pub(super) max_restarts: Option<u32>,
    pub(super) period: Option<Spanned<String>>,
    pub(super) children: Option<Vec<Spanned<RawChild>>>,
    pub(super) nodes: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawInit {
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) listen: Spanned<String>,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<RawRoute>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_concurrent: Option<Spanned<i64>>,
    pub(super) max_body_bytes: Option<Spanned<String>>,
    pub(super) buffered_body_bytes: Option<Spanned<String>>,
    pub(super) queue_timeout: Option<Spanned<String>>,
    pub(super) header_read_timeout: Option<Spanned<String>>,
    pub(super) body_read_timeout: Option<Spanned<String>>,
    pub(super) request_deadline: Option<Spanned<String>>,
    pub(super) max_streams: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) path: Spanned<String>,
    pub(super) method: Option<String>,
    pub(super) component: Spanned<String>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) max_message_bytes: Option<Spanned<String>>,
    pub(super) max_queued_bytes: Option<Spanned<String>>,
    pub(super) max_queued_messages: Option<Spanned<i64>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) ping_interval: Option<Spanned<String>>,
    pub(super) write_timeout: Option<Spanned<String>>,
    pub(super) close_timeout: Option<Spanned<String>>,
    pub(super) heartbeat: Option<Spanned<String>>,
    pub(super) reuse: Option<Spanned<i64>>,
    pub(super) pool: Option<Spanned<i64>>,
    pub(super) concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) say: Option<String>,
    pub(super) http: Option<Spanned<String>>,
    pub(super) body: Option<String>,
    pub(super) expect_status: Option<u16>,
    pub(super) expect_body: Option<String>,
    pub(super) exit: Option<Spanned<String>>,
    pub(super) reason: Option<String>,
    pub(super) await_exit: Option<Spanned<String>>,
    pub(super) expect_reason: Option<Spanned<String>>,
    pub(super) await_name: Option<String>,
    pub(super) sleep: Option<Spanned<String>>,
}
