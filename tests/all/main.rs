//! End-to-end tests: real components from `components/`, built by this crate's build
//! script, driven through the real host. One module per area.

// `components::COUNTER` and the rest; a component no test here uses is a compile error.
rusm_e2e::components!(e2e);

mod architecture;
mod capabilities;
mod cargo_component;
mod connections;
mod failures;
mod fuzz_runtime;
mod handler;
mod hostile;
mod http;
mod load;
mod messaging;
mod p3;
mod preemption;
mod reload;
mod reuse;
mod send_receive;
mod state;

use std::sync::OnceLock;

use rusm_e2e::Component;
use std::time::Duration;

use rusm_otp::{Message, Pid, Runtime};
use rusm_wasm::{WasmConfig, WasmNode};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// A node with the given components loaded, each under its package name.
pub fn node(components: &[Component]) -> WasmNode {
    let rt = Runtime::new();
    let config = WasmConfig {
        cache_dir: Some(cache_dir()),
        ..WasmConfig::default()
    };
    let node = WasmNode::new(rt, config).expect("the wasm node starts");
    for component in components {
        let name = component.name();
        node.load_file(name, component.path())
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
    node
}

fn cache_dir() -> std::path::PathBuf {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmtime-cache"))
        .clone()
}

/// A policy from TOML text (its errors name `test-policy.toml`).
pub fn policy(toml: &str) -> std::sync::Arc<rusm_policy::Policy> {
    let policy = rusm_policy::Policy::parse(toml, std::path::Path::new("test-policy.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::sync::Arc::new(policy)
}

/// A WASI command component importing an interface no host provides
/// (`acme:missing/thing@1.0.0`), in WAT.
pub const UNSATISFIABLE_COMMAND_WAT: &str = r#"
        (component
          (import "acme:missing/thing@1.0.0" (instance (export "f" (func))))
          (core module $m (func (export "run") (result i32) i32.const 0))
          (core instance $i (instantiate $m))
          (func $run (result (result)) (canon lift (core func $i "run")))
          (instance $r (export "run" (func $run)))
          (export "wasi:cli/run@0.2.0" (instance $r)))
    "#;

/// Fails unless `README.md` shows `components/<component>/src/lib.rs` word for word,
/// from its first `use rusm_guest` line to the end.
pub fn assert_readme_shows(component: &str) {
    let root = rusm_e2e::components_dir().parent().unwrap().to_owned();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let path = format!("{component}/src/lib.rs");
    let source = std::fs::read_to_string(rusm_e2e::components_dir().join(&path)).unwrap();
    let shown = &source[source.find("use rusm_guest").unwrap()..];
    assert!(
        readme.contains(shown),
        "README.md's example differs from components/{path}"
    );
}

/// The 8 little-endian bytes of a pid, as components expect them.
pub fn pid_bytes(pid: Pid) -> Vec<u8> {
    pid.as_raw().to_le_bytes().to_vec()
}

/// The init of a `ping-pong` pinger: its peer, the number of round trips, and the pid
/// that receives the tag-3 report at the end.
pub fn pinger_init(peer: Pid, rounds: u64, reporter: Pid) -> Vec<u8> {
    [
        pid_bytes(peer),
        rounds.to_le_bytes().to_vec(),
        pid_bytes(reporter),
    ]
    .concat()
}

/// A native process that forwards everything it receives to the test.
pub fn probe(rt: &Runtime) -> (Pid, Probe) {
    let (tx, rx) = unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        loop {
            if tx.send(ctx.recv().await).is_err() {
                return;
            }
        }
    });
    (pid, Probe(rx))
}

/// What a [`probe`] received.
pub struct Probe(UnboundedReceiver<Message>);

impl Probe {
    /// The next message, failing the test after 30 s.
    pub async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(30), self.0.recv())
            .await
            .expect("a message within 30 s")
            .expect("the probe is alive")
    }

    /// The next data message, as (tag, payload).
    pub async fn data(&mut self) -> (u64, Vec<u8>) {
        match self.next().await {
            Message::Data(d) => (d.tag, d.payload.downcast::<Vec<u8>>().expect("bytes")),
            other => panic!("expected data, got {other:?}"),
        }
    }
}
