//! `wasi:keyvalue` buckets shared through a cluster: JetStream KV buckets on a real
//! `nats-server`, reached by `kv-probe` guests on two nodes through the same calls as
//! the node's own file. One bucket seen from both nodes, increments from many actors
//! on both that lose nothing, the grant's modes and limits, a server that goes away,
//! and the `[cluster] kv_buckets` key of `rusm run` and `rusm kv`.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusm_cluster::testing::NatsServer;
use rusm_cluster::{Cluster, ClusterConfig};
use rusm_otp::{Message, Pid, Runtime};
use rusm_wasm::{JetStreamStore, WasmConfig, WasmNode, WasmSpawnOptions};

use crate::{components, rusm, temp_dir};

/// The longest any one wait here may take.
const WAIT: Duration = Duration::from_secs(60);

fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn policy(toml: &str) -> Arc<rusm_policy::Policy> {
    Arc::new(rusm_policy::Policy::parse(toml, std::path::Path::new("test.toml")).unwrap())
}

/// A clustered node with `kv-probe` loaded, sharing `shared` (and, for the limits,
/// `tight`) through the cluster with requests bounded by `timeout`; its own buckets
/// in memory.
struct Node {
    rt: Runtime,
    wasm: WasmNode,
    _cluster: Cluster,
}

async fn node(server: &NatsServer, cluster: &str, name: &str, timeout: Duration) -> Node {
    let rt = Runtime::new();
    let config = ClusterConfig::new(server.url(), name)
        .cluster_name(cluster)
        .down_after(Duration::from_secs(3));
    let joined = Cluster::join(&rt, config).await.expect("the node joins");
    let wasm = WasmNode::new(rt.clone(), WasmConfig::default()).unwrap();
    wasm.load_file("kv-probe", components::KV_PROBE.path())
        .unwrap();
    let buckets = ["shared", "tight"].map(|b| (b.to_owned(), joined.kv_bucket_name(b)));
    let store = JetStreamStore::open(joined.nats_client(), buckets, timeout)
        .await
        .expect("the shared buckets open");
    wasm.share_buckets(["shared".into(), "tight".into()], Arc::new(store))
        .unwrap();
    Node {
        rt,
        wasm,
        _cluster: joined,
    }
}

/// A `kv-probe` under a policy and the native process that receives its answers.
struct Probe {
    rt: Runtime,
    pid: Pid,
    me: Pid,
    answers: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Probe {
    fn spawn(node: &Node, policy: &Arc<rusm_policy::Policy>, init: &str) -> Probe {
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        let me = node.rt.spawn(move |ctx| async move {
            loop {
                if let Message::Data(d) = ctx.recv().await {
                    let text = String::from_utf8_lossy(d.payload.as_bytes().unwrap_or_default());
                    if tx.send(text.into_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let options = WasmSpawnOptions {
            policy: Some(policy.clone()),
            init: init.as_bytes().to_vec(),
            ..Default::default()
        };
        let (pid, _) = node.wasm.spawn_watched("kv-probe", options).unwrap();
        Probe {
            rt: node.rt.clone(),
            pid,
            me,
            answers,
        }
    }

    fn send(&self, command: &str) {
        let mut payload = self.me.as_raw().to_le_bytes().to_vec();
        payload.extend(command.as_bytes());
        self.rt.send_tagged(self.pid, 7, payload);
    }

    async fn answer(&mut self) -> String {
        tokio::time::timeout(WAIT, self.answers.recv())
            .await
            .expect("the probe answers in time")
            .expect("the probe runs")
    }

    async fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer().await
    }
}

const GRANTS: &str = r#"
[keyvalue]
buckets = [
  { name = "shared", mode = "rw" },
  { name = "local", mode = "rw" },
  { name = "tight", mode = "rw", max_bytes = "2KiB", max_value = "1KiB" },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_bucket_is_the_same_bucket_on_every_node() {
    let server = server();
    let (a, b) = (
        node(&server, "kv1", "a", Duration::from_secs(10)).await,
        node(&server, "kv1", "b", Duration::from_secs(10)).await,
    );
    let grants = policy(GRANTS);
    let mut pa = Probe::spawn(&a, &grants, "open shared");
    let mut pb = Probe::spawn(&b, &grants, "open shared");
    // Set on a, read on b: every store operation, both ways.
    assert_eq!(pa.ask("get user").await, "ok none");
    assert_eq!(pa.ask("set user ada").await, "ok");
    assert_eq!(pb.ask("get user").await, "ok ada");
    assert_eq!(pb.ask("exists user").await, "ok true");
    assert_eq!(pb.ask("set theme dark").await, "ok");
    // Keys that JetStream does not take as they are come back as written, in order.
    assert_eq!(pb.ask("set a.b/c=d* dots").await, "ok");
    assert_eq!(pa.ask("list -").await, "ok a.b/c=d*,theme,user end");
    assert_eq!(pa.ask("get a.b/c=d*").await, "ok dots");
    assert_eq!(pb.ask("del user").await, "ok");
    assert_eq!(pa.ask("get user").await, "ok none");
    assert_eq!(pa.ask("exists user").await, "ok false");
    assert_eq!(pa.ask("list -").await, "ok a.b/c=d*,theme end");
    // Batches, written on one node and read on the other.
    assert_eq!(pa.ask("setmany k1=one,k2=two,k3=three").await, "ok");
    assert_eq!(
        pb.ask("getmany k1,k2,nope,k3").await,
        "ok k1=one,k2=two,-,k3=three"
    );
    assert_eq!(pb.ask("delmany k1,k3,nope").await, "ok");
    assert_eq!(pa.ask("getmany k1,k2,k3").await, "ok -,k2=two,-");
    // Compare-and-swap across nodes: b's write in between makes a's swap fail, and
    // the handle it gets back expects b's value.
    assert_eq!(pa.ask("cas theme").await, "ok");
    assert_eq!(pa.ask("current").await, "ok dark");
    assert_eq!(pb.ask("set theme light").await, "ok");
    assert_eq!(pa.ask("swap blue").await, "err cas-failed");
    assert_eq!(pb.ask("get theme").await, "ok light");
    assert_eq!(pa.ask("swap blue").await, "ok");
    assert_eq!(pb.ask("get theme").await, "ok blue");
    // Increments from both nodes add up.
    assert_eq!(pa.ask("inc visits 5").await, "ok 5");
    assert_eq!(pb.ask("inc visits -2").await, "ok 3");
    assert_eq!(pb.ask("set word text").await, "ok");
    assert!(
        pa.ask("inc word 1").await.starts_with("err other"),
        "a value that is not a number is not incremented"
    );
    // A bucket not shared stays each node's own.
    assert_eq!(pa.ask("open local").await, "ok");
    assert_eq!(pa.ask("set user grace").await, "ok");
    assert_eq!(pb.ask("open local").await, "ok");
    assert_eq!(pb.ask("get user").await, "ok none");
    assert_eq!(
        b.wasm.kv_store().get("shared", "theme").unwrap(),
        None,
        "a shared bucket's keys are not in the node's file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_many_actors_on_two_nodes_lose_nothing() {
    const ACTORS: usize = 6;
    const EACH: u64 = 40;
    let server = server();
    let (a, b) = (
        node(&server, "kv2", "a", Duration::from_secs(20)).await,
        node(&server, "kv2", "b", Duration::from_secs(20)).await,
    );
    let grants = policy(GRANTS);
    let mut probes: Vec<Probe> = (0..ACTORS)
        .flat_map(|_| {
            [
                Probe::spawn(&a, &grants, "open shared"),
                Probe::spawn(&b, &grants, "open shared"),
            ]
        })
        .collect();
    // All at once: `increment`, and the guest's own loop of cas, current and swap.
    for probe in &probes {
        probe.send(&format!("repeat {EACH} inc hits 1"));
        probe.send(&format!("casinc swaps {EACH}"));
    }
    for probe in &mut probes {
        // The last sum each saw, and the retries its swaps took: both unknown in
        // advance, only that they succeeded.
        for _ in 0..2 {
            let answer = probe.answer().await;
            assert!(answer.starts_with("ok "), "{answer}");
        }
    }
    let total = (2 * ACTORS) as u64 * EACH;
    let mut reader = Probe::spawn(&a, &grants, "open shared");
    assert_eq!(reader.ask("get hits").await, format!("ok {total}"));
    assert_eq!(reader.ask("get swaps").await, format!("ok {total}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_bucket_holds_the_grant_modes_and_limits() {
    let server = server();
    let (a, b) = (
        node(&server, "kv3", "a", Duration::from_secs(10)).await,
        node(&server, "kv3", "b", Duration::from_secs(10)).await,
    );
    let mut writer = Probe::spawn(&a, &policy(GRANTS), "open shared");
    assert_eq!(writer.ask("set k v").await, "ok");
    // The attack: a guest granted the bucket read-only writes to it, on either node.
    let read_only = policy("[keyvalue]\nbuckets = [{ name = \"shared\", mode = \"ro\" }]\n");
    let mut reader = Probe::spawn(&b, &read_only, "open shared");
    assert_eq!(reader.ask("get k").await, "ok v");
    for write in [
        "set k stolen",
        "del k",
        "inc n 1",
        "setmany k=x",
        "delmany k",
        "cas k",
    ] {
        assert_eq!(reader.ask(write).await, "err access-denied", "{write}");
    }
    assert_eq!(writer.ask("get k").await, "ok v");
    // A guest granted nothing opens nothing.
    let mut none = Probe::spawn(&b, &policy(""), "");
    assert_eq!(none.ask("open shared").await, "err access-denied");
    // Values past max_value are refused before anything is sent: nothing stored.
    let mut tight = Probe::spawn(&a, &policy(GRANTS), "open tight");
    let refused = tight.ask("fill big 1025").await;
    assert!(
        refused.contains("value of 1025 bytes is larger than the bucket's max_value of 1024"),
        "{refused}"
    );
    assert!(
        tight.ask("setmany a=1,b=2").await == "ok",
        "small values go in"
    );
    let batch = format!("setmany c=3,big={}", "x".repeat(1025));
    assert!(tight.ask(&batch).await.contains("max_value"));
    let mut other = Probe::spawn(&b, &policy(GRANTS), "open tight");
    assert_eq!(other.ask("getmany a,c,big").await, "ok a=1,-,-");
    // Past max_bytes: the bucket is full, for the writers of both nodes.
    assert_eq!(tight.ask("fill v1 1000").await, "ok");
    let full = other.ask("fill v2 1000").await;
    assert!(full.contains("is full"), "{full}");
    assert_eq!(other.ask("get v2").await, "ok none");
    // Removing a key frees its bytes: the same write then fits.
    assert_eq!(tight.ask("del v1").await, "ok");
    assert_eq!(other.ask("fill v2 1000").await, "ok");
    // Deleting keys that are not there stores nothing, so it cannot fill the bucket.
    let ghosts: Vec<String> = (0..200).map(|i| format!("ghost-{i}")).collect();
    assert_eq!(
        tight.ask(&format!("delmany {}", ghosts.join(","))).await,
        "ok"
    );
    assert_eq!(tight.ask("fill v3 10").await, "ok");
    // A key too long for a JetStream subject once escaped is refused by its size.
    let long = ".".repeat(1100);
    let answer = tight.ask(&format!("set {long} x")).await;
    assert!(answer.contains("escaped"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_gives_the_guest_an_error_in_bounded_time() {
    let server = server();
    let timeout = Duration::from_millis(500);
    let a = node(&server, "kv4", "a", timeout).await;
    let mut probe = Probe::spawn(&a, &policy(GRANTS), "open shared");
    assert_eq!(probe.ask("set k v").await, "ok");
    drop(server);
    for command in ["get k", "set k w", "inc n 1", "list -", "cas k"] {
        let start = Instant::now();
        let answer = probe.ask(command).await;
        assert!(answer.starts_with("err other"), "{command}: {answer}");
        assert!(
            start.elapsed() < timeout * 8,
            "{command} took {:?}",
            start.elapsed()
        );
    }
    // The node's own buckets do not wait on the server.
    assert_eq!(probe.ask("open local").await, "ok");
    assert_eq!(probe.ask("set k v").await, "ok");
}

/// An app on a clustered node sharing `shared`, with `kv-probe` running.
fn shared_app(dir: &std::path::Path, server: &NatsServer, cluster: &str) -> std::path::PathBuf {
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "shared"

[components.probe]
path = {:?}
policy = {{ keyvalue = {{ buckets = [{{ name = "shared", mode = "rw" }}] }} }}

[supervisor]
children = [{{ id = "probe", component = "probe" }}]

[cluster]
url = "{}"
node_name = "app"
cluster_name = "{cluster}"
kv_buckets = ["shared"]
"#,
            components::KV_PROBE.path(),
            server.url()
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rusm_kv_reaches_a_shared_bucket_through_the_running_node_only() {
    let server = server();
    let dir = temp_dir("shared-kv-app");
    let file = shared_app(&dir, &server, "kv5");
    let app = file.to_str().unwrap();
    // No node runs: rusm kv says where the keys are instead of reading the file.
    let out = crate::run(&["kv", "get", app, "shared", "k"]);
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(
        out.stderr.contains("shared through the cluster")
            && out.stderr.contains("only through a running node"),
        "{out:?}"
    );
    let child = rusm()
        .args(["run", app])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A node of a cluster keeps its database under its own name, and rusm kv finds it
    // there from the manifest's node_name.
    let socket = dir.join(".rusm").join("app").join("kv.redb.sock");
    let deadline = Instant::now() + WAIT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the app never served its socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = crate::run(&["kv", "set", app, "shared", "greeting", "hello"]);
    assert_eq!(out.code(), 0, "{out:?}");
    // Written through the node, it is in the cluster's JetStream bucket: another node
    // of the cluster reads it.
    let b = node(&server, "kv5", "b", Duration::from_secs(10)).await;
    let mut probe = Probe::spawn(&b, &policy(GRANTS), "open shared");
    assert_eq!(probe.ask("get greeting").await, "ok hello");
    assert_eq!(probe.ask("set answer 42").await, "ok");
    let out = crate::run(&["kv", "get", app, "shared", "answer"]);
    assert_eq!((out.code(), out.stdout.trim()), (0, "42"), "{out:?}");
    let out = crate::run(&["kv", "list", app, "shared"]);
    assert_eq!(out.stdout, "answer\ngreeting\n", "{out:?}");
    // --node names another node of the same manifest: its database, where none runs.
    let out = crate::run(&["kv", "--node", "other", "get", app, "shared", "answer"]);
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("other{}kv.redb.sock", std::path::MAIN_SEPARATOR)),
        "{out:?}"
    );
    crate::interrupt(child);
}

/// The end of the manifests below: one child running the probe.
const SUPERVISOR: &str = "\n[supervisor]\nchildren = [{ id = \"probe\", component = \"probe\" }]\n";

#[test]
fn kv_buckets_on_a_node_that_is_not_clustered_is_an_error_naming_the_line() {
    let dir = temp_dir("shared-kv-alone");
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!(
            "[components.probe]\npath = {:?}\n\n[cluster]\nnode_name = \"a\"\nkv_buckets = [\"shared\"]\n{SUPERVISOR}",
            components::KV_PROBE.path()
        ),
    )
    .unwrap();
    let out = crate::run(&["run", file.to_str().unwrap()]);
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("app.toml:6:14:"), "{out:?}");
    assert!(out.stderr.contains("joins no cluster"), "{out:?}");
    // A name JetStream cannot take, or one named twice, is refused where it is written.
    for (list, error) in [
        ("[\"a.b\"]", "cannot be shared through the cluster"),
        ("[\"s\", \"s\"]", "names \"s\" twice"),
    ] {
        std::fs::write(
            &file,
            format!(
                "[components.probe]\npath = {:?}\n\n[cluster]\nurl = \"nats://127.0.0.1:1\"\nkv_buckets = {list}\n{SUPERVISOR}",
                components::KV_PROBE.path()
            ),
        )
        .unwrap();
        let out = crate::run(&["run", file.to_str().unwrap()]);
        assert_eq!(out.code(), 2, "{out:?}");
        assert!(out.stderr.contains("app.toml:6:"), "{out:?}");
        assert!(out.stderr.contains(error), "{out:?}");
    }
}
