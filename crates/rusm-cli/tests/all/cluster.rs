//! Nodes joined through a real `nats-server`: wasm guests reaching processes of other
//! nodes through the same `rusm:runtime` calls, `rusm run --cluster` as a real node
//! process, and what its peers see when that process is killed.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusm_cluster::testing::NatsServer;
use rusm_cluster::{Cluster, ClusterConfig};
use rusm_otp::{ExitReason, Message, Pid, Runtime};
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};

use crate::{components, rusm, temp_dir};

/// The longest any one wait here may take.
const WAIT: Duration = Duration::from_secs(60);

/// The failure detector of every node here: long enough that a machine loaded by the
/// rest of the suite does not starve a heartbeat past it.
const DOWN_AFTER: Duration = Duration::from_secs(3);

fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

async fn native_node(server: &NatsServer, cluster: &str, name: &str) -> (Runtime, Cluster) {
    let rt = Runtime::new();
    let config = ClusterConfig::new(server.url(), name)
        .cluster_name(cluster)
        .down_after(DOWN_AFTER);
    let cluster = Cluster::join(&rt, config).await.expect("the node joins");
    (rt, cluster)
}

fn policy(toml: &str) -> Arc<rusm_policy::Policy> {
    Arc::new(rusm_policy::Policy::parse(toml, std::path::Path::new("test.toml")).unwrap())
}

/// Poll the global registry until `name` is held, failing after [`WAIT`].
async fn held(cluster: &Cluster, name: &str) -> Pid {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(pid) = cluster.whereis_global(name).await.unwrap() {
            return pid;
        }
        assert!(Instant::now() < deadline, "{name} was never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ask `to` (a `cluster-echo`) with `tag` and `body` from a fresh process of `rt`;
/// its answer's tag and payload.
async fn ask(rt: &Runtime, to: Pid, tag: u64, body: &[u8]) -> (u64, Vec<u8>) {
    let body = body.to_vec();
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(move |ctx| async move {
        let mut payload = ctx.pid().as_raw().to_le_bytes().to_vec();
        payload.extend_from_slice(&body);
        let answer = match ctx.try_send(to, tag, rusm_otp::Payload::Bytes(payload)) {
            Err(e) => Err(format!("the send to {to} failed: {e}")),
            Ok(()) => match ctx.recv_timeout(WAIT).await {
                Some(Message::Data(d)) => {
                    Ok((d.tag, d.payload.as_bytes().unwrap_or_default().to_vec()))
                }
                other => Err(format!("no answer from {to}: {other:?}")),
            },
        };
        let _ = tx.send(answer);
    });
    rx.await.unwrap().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_guests_reach_other_nodes_through_the_same_runtime_calls() {
    let server = server();
    let (rt_a, a) = native_node(&server, "wasm", "a").await;
    let rt_b = Runtime::new();
    let b = Cluster::join(
        &rt_b,
        ClusterConfig::new(server.url(), "b")
            .cluster_name("wasm")
            .down_after(DOWN_AFTER),
    )
    .await
    .unwrap();
    let node = WasmNode::new(rt_b.clone(), WasmConfig::default()).unwrap();
    node.load_file("cluster-echo", components::CLUSTER_ECHO.path())
        .unwrap();
    let granted = policy("[process]\nregister = [\"svc\"]\n");
    let (guest, _) = node
        .spawn_watched(
            "cluster-echo",
            WasmSpawnOptions {
                init: b"svc".to_vec(),
                policy: Some(granted.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(guest.node(), b.node());
    // a finds the guest by its global name and talks to it.
    assert_eq!(held(&a, "svc").await, guest);
    let (tag, payload) = ask(&rt_a, guest, 10, b"hello").await;
    assert_eq!(tag, 11);
    assert_eq!(&payload[8..], b"hello");
    // The guest looks up a name a native process of a holds, across the cluster.
    let native = rt_a.spawn(|ctx| async move { ctx.recv().await });
    a.register_global("native", native).await.unwrap();
    let (tag, payload) = ask(&rt_a, guest, 1, b"native").await;
    assert_eq!((tag, payload), (2, native.as_raw().to_le_bytes().to_vec()));
    let (_, payload) = ask(&rt_a, guest, 1, b"nobody").await;
    assert!(payload.is_empty());
    // A second guest racing for the same name loses, and says so.
    let (_, second) = node
        .spawn_watched(
            "cluster-echo",
            WasmSpawnOptions {
                init: b"svc".to_vec(),
                policy: Some(granted),
                ..Default::default()
            },
        )
        .unwrap();
    let reason = second.await.to_string();
    assert!(
        reason.contains("already registered") || reason.contains("held by"),
        "{reason}"
    );
    // The attack: a guest whose policy grants no register right cannot take a name.
    let (_, refused) = node
        .spawn_watched(
            "cluster-echo",
            WasmSpawnOptions {
                init: b"stolen".to_vec(),
                policy: Some(policy("")),
                ..Default::default()
            },
        )
        .unwrap();
    let reason = refused.await.to_string();
    assert!(reason.contains("does not allow registering"), "{reason}");
    assert_eq!(a.whereis_global("stolen").await.unwrap(), None);
    // Killing the guest from a: the kill crosses, and a's monitor sees it.
    let (_, watcher) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let mref = ctx.monitor(guest);
        ctx.kill(guest);
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Down(d)) if d.monitor == mref => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(watcher.await, ExitReason::Killed);
}

/// A `rusm run --cluster` node process running `cluster-echo` under `name`.
fn node_process(server: &NatsServer, cluster: &str, node: &str, name: &str) -> Child {
    let dir = temp_dir(&format!("cluster-{cluster}-{node}"));
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, format!("[process]\nregister = [\"{name}\"]\n")).unwrap();
    rusm()
        .args(["run", components::CLUSTER_ECHO.path().to_str().unwrap()])
        .arg("--policy")
        .arg(&policy)
        .args([
            "--init",
            name,
            "--cluster",
            &server.url(),
            "--node-name",
            node,
        ])
        .args(["--cluster-name", cluster, "--down-after", "3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rusm starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_process_fires_noconnection_within_the_bound() {
    let server = server();
    let (rt_a, a) = native_node(&server, "kill", "a").await;
    let mut child = node_process(&server, "kill", "b", "svc");
    let service = held(&a, "svc").await;
    let (tag, _) = ask(&rt_a, service, 4, b"ping").await;
    assert_eq!(tag, 5);
    // `rusm cluster status` lists both nodes.
    let status = crate::run(&[
        "cluster",
        "status",
        "--url",
        &server.url(),
        "--cluster-name",
        "kill",
    ]);
    assert_eq!(status.code(), 0, "{status:?}");
    let names: Vec<&str> = status
        .stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(names, ["a", "b"], "{status:?}");
    // A linked process and a monitor on a, watching the service on b.
    let (_, linked) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        ctx.link(service).unwrap();
        ctx.recv().await;
    });
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (_, monitoring) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let mref = ctx.monitor(service);
        // A round trip after the monitor: it is in place on b.
        let mut payload = ctx.pid().as_raw().to_le_bytes().to_vec();
        payload.extend_from_slice(b"sync");
        ctx.send_tagged(service, 20, payload);
        let _ = ctx.recv_tag_timeout(21, WAIT).await;
        let _ = ready_tx.send(());
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Down(d)) if d.monitor == mref && d.pid == service => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    ready_rx.await.unwrap();
    // SIGKILL: the node process ends without a word to anyone.
    child.kill().unwrap();
    let killed = Instant::now();
    child.wait().unwrap();
    assert_eq!(monitoring.await, ExitReason::NoConnection);
    let took = killed.elapsed();
    assert!(
        took <= DOWN_AFTER + DOWN_AFTER / 2,
        "noconnection after {took:?}; the bound is {DOWN_AFTER:?}"
    );
    assert_eq!(linked.await, ExitReason::NoConnection);
    // Its global name is free again, and a restarted node is a new incarnation whose
    // service answers under a new pid, while the old pid stays dead.
    assert_eq!(a.whereis_global("svc").await.unwrap(), None);
    let mut again = node_process(&server, "kill", "b", "svc");
    let fresh = held(&a, "svc").await;
    assert_ne!(fresh.node(), service.node());
    let (tag, _) = ask(&rt_a, fresh, 6, b"again").await;
    assert_eq!(tag, 7);
    let (_, old) = rt_a.spawn_watched(Default::default(), move |ctx| async move {
        let mref = ctx.monitor(service);
        match ctx.recv_timeout(WAIT).await {
            Some(Message::Down(d)) if d.monitor == mref => d.reason,
            other => ExitReason::custom(format!("{other:?}")),
        }
    });
    assert_eq!(old.await, ExitReason::NoConnection);
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn cluster_flags_without_a_server_are_refused_with_a_hint() {
    let out = crate::run(&[
        "run",
        components::CLUSTER_ECHO.path().to_str().unwrap(),
        "--node-name",
        "b",
    ]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("--cluster nats://"), "{out:?}");
    let out = crate::run(&[
        "run",
        components::CLUSTER_ECHO.path().to_str().unwrap(),
        "--cluster",
        "nats://127.0.0.1:1",
        "--node-name",
        "bad name",
    ]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("node name"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_joins_the_cluster_its_manifest_names_and_leaves_it_on_ctrl_c() {
    let server = server();
    let (rt_a, a) = native_node(&server, "apps", "a").await;
    let dir = temp_dir("cluster-app");
    std::fs::write(
        dir.join("svc.toml"),
        "[process]\nregister = [\"from-app\"]\n",
    )
    .unwrap();
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "clustered"

[components.svc]
path = {:?}
policy = "svc.toml"

[supervisor]
children = [{{ id = "svc", component = "svc", init = "from-app" }}]

[cluster]
url = "{}"
node_name = "app-node"
cluster_name = "apps"
down_after = "3s"
"#,
            components::CLUSTER_ECHO.path(),
            server.url()
        ),
    )
    .unwrap();
    let mut child = rusm()
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let service = held(&a, "from-app").await;
    let (tag, _) = ask(&rt_a, service, 8, b"hi").await;
    assert_eq!(tag, 9);
    assert!(a.members().iter().any(|m| m.name == "app-node" && m.up));
    // Ctrl-C: the app stops and says goodbye, so a forgets it without waiting out
    // its silence, and the service's name is released with its process.
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + DOWN_AFTER / 2;
    while !a.members().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the app's node was not forgotten at once: {:?}",
            a.members()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.whereis_global("from-app").await.unwrap(), None);
}

#[test]
fn a_bad_cluster_table_is_an_error_naming_its_line() {
    let dir = temp_dir("cluster-bad-table");
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!(
            "[components.svc]\npath = {:?}\n\n[supervisor]\nchildren = [{{ id = \"svc\", component = \"svc\" }}]\n\n[cluster]\nurl = \"nats://127.0.0.1:1\"\ndown_after = \"10ms\"\n",
            components::CLUSTER_ECHO.path()
        ),
    )
    .unwrap();
    let out = crate::run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("app.toml:9:"), "{out:?}");
    assert!(
        out.stderr.contains("down_after must be at least"),
        "{out:?}"
    );
    std::fs::write(
        &file,
        "[cluster]\nurl = \"nats://127.0.0.1:1\"\nnode = \"x\"\n",
    )
    .unwrap();
    let out = crate::run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("unknown field"), "{out:?}");
}

/// The init of a `spawner` that spawns one `component` under `policy` on `node`,
/// linked and monitored, trapping exits, and stays to report what it hears.
fn spawner_init(
    reporter: Pid,
    component: &str,
    policy: &str,
    child_init: &[u8],
    node: &str,
) -> Vec<u8> {
    let mut init = reporter.as_raw().to_le_bytes().to_vec();
    init.extend_from_slice(&1u32.to_le_bytes());
    init.push(0b1111);
    for text in [
        component.as_bytes(),
        policy.as_bytes(),
        child_init,
        node.as_bytes(),
    ] {
        init.extend_from_slice(&(text.len() as u32).to_le_bytes());
        init.extend_from_slice(text);
    }
    init
}

fn pid_at(bytes: &[u8]) -> Pid {
    Pid::from_raw(u64::from_le_bytes(
        bytes.try_into().expect("8 bytes of a pid"),
    ))
}

/// A native process of `rt` that hands every data message it gets to the channel.
fn reporter(rt: &Runtime) -> (Pid, tokio::sync::mpsc::UnboundedReceiver<(u64, Vec<u8>)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await {
                let bytes = d.payload.as_bytes().unwrap_or_default().to_vec();
                if tx.send((d.tag, bytes)).is_err() {
                    return;
                }
            }
        }
    });
    (pid, rx)
}

async fn report(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(u64, Vec<u8>)>) -> (u64, Vec<u8>) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a report in time")
        .expect("the reporter runs")
}

/// A wasm node of cluster `cluster` named `name`, with `components` loaded and the
/// policy library `policies` (file name, text).
async fn wasm_node(
    server: &NatsServer,
    cluster: &str,
    name: &str,
    components: &[&rusm_e2e::Component],
    policies: &[(&str, &str)],
) -> (Runtime, Cluster, WasmNode) {
    let (rt, c) = native_node(server, cluster, name).await;
    let node = WasmNode::new(rt.clone(), WasmConfig::default()).unwrap();
    for component in components {
        node.load_file(component.name(), component.path()).unwrap();
    }
    let dir = temp_dir(&format!("cluster-{cluster}-{name}-policies"));
    for (file, text) in policies {
        std::fs::write(dir.join(file), text).unwrap();
    }
    node.set_policies(rusm_policy::PolicyLibrary::load_dir(&dir).unwrap());
    (rt, c, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_spawns_on_another_node_under_no_more_than_it_holds() {
    const SPAWNED: u64 = 1;
    const FAILED: u64 = 2;
    const DONE: u64 = 3;
    const DOWN: u64 = 4;
    const EXIT: u64 = 5;
    let server = server();
    let (rt_a, a, node_a) = wasm_node(&server, "rspawn", "a", &[&components::SPAWNER], &[]).await;
    let svc = "[process]\nregister = [\"svc-*\"]\n";
    let (_rt_b, b, _node_b) = wasm_node(
        &server,
        "rspawn",
        "b",
        &[&components::CLUSTER_ECHO],
        &[("svc.toml", svc)],
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while !a.members().iter().any(|m| m.name == "b" && m.up) {
        assert!(Instant::now() < deadline, "a never saw b");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (me, mut reports) = reporter(&rt_a);
    let start = |holds: &str, component: &str, child_init: &[u8], node: &str| {
        node_a
            .spawn_with(
                None,
                "spawner",
                WasmSpawnOptions {
                    init: spawner_init(me, component, "svc", child_init, node),
                    policy: Some(policy(holds)),
                    ..Default::default()
                },
            )
            .unwrap()
            .pid
    };
    let holder =
        "[process]\nspawn = [{ component = \"*\", policy = \"svc\" }]\nregister = [\"svc-*\"]\n";
    // The spawn works: the child runs on b under b's `svc` policy (it takes the global
    // name its init gives, which only that policy allows) and answers a.
    let spawner = start(holder, "cluster-echo", b"svc-remote", "b");
    let (tag, payload) = report(&mut reports).await;
    assert_eq!(tag, SPAWNED, "{}", String::from_utf8_lossy(&payload));
    let child = pid_at(&payload[4..12]);
    assert_eq!(child.node(), b.node());
    assert_eq!(report(&mut reports).await.0, DONE);
    assert_eq!(held(&a, "svc-remote").await, child);
    let (tag, answer) = ask(&rt_a, child, 10, b"hello").await;
    assert_eq!((tag, &answer[8..]), (11, &b"hello"[..]));
    // The attack: a guest holding a spawn right but not the register right `svc`
    // grants asks for `svc` on b, and b refuses it.
    let failed = |payload: &[u8]| String::from_utf8_lossy(&payload[4..]).into_owned();
    let weak = "[process]\nspawn = [{ component = \"*\", policy = \"svc\" }]\n";
    start(weak, "cluster-echo", b"svc-stolen", "b");
    let (tag, payload) = report(&mut reports).await;
    assert_eq!(tag, FAILED);
    let why = failed(&payload);
    assert!(
        why.contains("not permitted") && why.contains("grants more"),
        "{why}"
    );
    assert_eq!(report(&mut reports).await.0, DONE);
    // b refuses a caller that holds no spawn right at all (host code of a sends what
    // the guest would, without the guest's own check first).
    let refused = rt_a
        .spawn_on(
            "b",
            rusm_otp::RemoteSpawn {
                component: "cluster-echo".into(),
                policy: Some("svc".into()),
                holds: Some(svc.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, rusm_otp::SpawnRefused::NotPermitted(why) if why.contains("does not allow spawning")),
        "{refused:?}"
    );
    // An unknown component and an unknown node are errors naming them.
    start(holder, "ghost", b"", "b");
    let (tag, payload) = report(&mut reports).await;
    assert_eq!(tag, FAILED);
    let why = failed(&payload);
    assert!(
        why.contains("not found") && why.contains("\"ghost\""),
        "{why}"
    );
    assert_eq!(report(&mut reports).await.0, DONE);
    start(holder, "cluster-echo", b"", "nowhere");
    let (tag, payload) = report(&mut reports).await;
    assert_eq!(tag, FAILED);
    let why = failed(&payload);
    assert!(why.contains("no node named \"nowhere\""), "{why}");
    assert_eq!(report(&mut reports).await.0, DONE);
    let stats = b
        .members()
        .into_iter()
        .find(|m| m.name == "a")
        .unwrap()
        .stats;
    assert_eq!((stats.spawns_served, stats.spawns_refused), (1, 3));
    // b dies: the first spawner's link and monitor of its child fire noconnection.
    drop(b);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let (tag, payload) = report(&mut reports).await;
        assert_eq!(pid_at(&payload[..8]), child);
        heard.push((tag, String::from_utf8_lossy(&payload[8..]).into_owned()));
    }
    heard.sort();
    assert_eq!(
        heard,
        [
            (DOWN, "noconnection".to_string()),
            (EXIT, "noconnection".to_string())
        ]
    );
    assert!(rt_a.is_alive(spawner));
}

/// `apps/cluster/NAME` with its `build = "../../components/X"` lines pointing at the
/// components this suite built (the manifest is otherwise the file itself), written
/// into `dir`.
fn demo_manifest(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(crate::root().join("apps/cluster").join(name)).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix("build = \"../../components/") {
            Some(rest) => {
                let component = rest.trim_end_matches('"');
                let path = match component {
                    "cluster-greeter" => components::CLUSTER_GREETER.path(),
                    "cluster-client" => components::CLUSTER_CLIENT.path(),
                    other => panic!("{name} builds an unexpected component {other}"),
                };
                out.push_str(&format!("path = {:?}\n", path));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let file = dir.join(name);
    std::fs::write(&file, out).unwrap();
    file
}

/// One line of a demo node process, from stdout or stderr.
fn node_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// Read `lines` until one satisfies `wanted`, failing after [`WAIT`]; that line.
fn line_where(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    seen: &mut String,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no line {what} in:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if wanted(&line) {
            return line;
        }
    }
}

fn demo_node(file: &std::path::Path, server: &NatsServer, name: Option<&str>) -> Child {
    let mut command = rusm();
    command
        .args(["run", file.to_str().unwrap(), "--cluster", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(name) = name {
        command.args(["--node-name", name]);
    }
    command.spawn().expect("rusm starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_demo_moves_its_service_when_a_node_is_killed() {
    let server = server();
    let dir = temp_dir("cluster-demo");
    let worker = demo_manifest(&dir, "worker.toml");
    let app = demo_manifest(&dir, "app.toml");
    // An observer of the demo's cluster, to learn the nodes' numbers.
    let (_rt, observer) = native_node(&server, "demo", "observer").await;
    let mut b = demo_node(&worker, &server, Some("b"));
    let c = demo_node(&worker, &server, Some("c"));
    let number = |name: &str| {
        observer
            .members()
            .into_iter()
            .find(|m| m.name == name && m.up)
            .map(|m| m.node)
    };
    let deadline = Instant::now() + WAIT;
    while number("b").is_none() || number("c").is_none() {
        assert!(
            Instant::now() < deadline,
            "b and c never came up: {:?}",
            observer.members()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (on_b, on_c) = (number("b").unwrap(), number("c").unwrap());
    let mut a = demo_node(&app, &server, None);
    let a_lines = node_lines(&mut a);
    let mut seen = String::new();
    // The client on a finds the greeter on b and is answered.
    let found = line_where(&a_lines, "finding the greeter", &mut seen, |l| {
        l.starts_with("client: greeter is <")
    });
    assert!(
        found.ends_with(&format!("on node {on_b}")),
        "{found}\n{seen}"
    );
    line_where(&a_lines, "with an answer", &mut seen, |l| {
        l.starts_with("client: call ") && l.contains(" answered by ")
    });
    // SIGKILL b: it tells no one.
    b.kill().unwrap();
    b.wait().unwrap();
    let killed = Instant::now();
    line_where(&a_lines, "with the greeter down", &mut seen, |l| {
        l.contains("client: greeter at") && l.ends_with("is down: noconnection")
    });
    line_where(&a_lines, "with the restart on c", &mut seen, |l| {
        l.contains("started greeter (greeter) on node c")
    });
    let found = line_where(&a_lines, "finding the greeter again", &mut seen, |l| {
        l.starts_with("client: greeter is <")
    });
    assert!(
        found.ends_with(&format!("on node {on_c}")),
        "{found}\n{seen}"
    );
    line_where(&a_lines, "with an answer from c", &mut seen, |l| {
        l.starts_with("client: call ") && l.contains(" answered by ")
    });
    assert!(killed.elapsed() < WAIT, "{seen}");
    for mut node in [a, c] {
        node.kill().unwrap();
        node.wait().unwrap();
    }
}

#[test]
fn cluster_demo_without_a_server_says_what_to_install() {
    let dir = temp_dir("cluster-demo-no-server");
    let app = demo_manifest(&dir, "app.toml");
    // A port nothing listens on: bind one, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = crate::run(&[
        "run",
        app.to_str().unwrap(),
        "--cluster",
        &format!("nats://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("cannot connect to NATS"), "{out:?}");
    assert!(out.stderr.contains("apt install nats-server"), "{out:?}");
    assert!(out.stderr.contains("nats-server -js"), "{out:?}");
}
