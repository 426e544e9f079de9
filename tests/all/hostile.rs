//! Hostile guests: what a process can make the host hold is charged to it and bounded.
//! Each test is an attack a guest under some policy would try, run beside what it
//! would hurt, asserting the documented refusal and that the victim (or the host) is
//! unharmed.

use std::sync::Arc;
use std::time::Duration;

use rusm_otp::{Event, ExitReason, Runtime, Watch};
use rusm_policy::Policy;
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};

use crate::{cache_dir, pid_bytes, policy, probe};

/// The longest any step of these tests waits for something to happen.
const WAIT: Duration = Duration::from_secs(30);

/// `rights-probe` ops (see `components/rights-probe`).
const PROBE_SUCCEED: u8 = 10;

/// A node configured by `config` (the cache set) with `components` loaded.
fn node_with(config: WasmConfig, components: &[&str]) -> WasmNode {
    let config = WasmConfig {
        cache_dir: Some(cache_dir()),
        ..config
    };
    let node = WasmNode::new(Runtime::new(), config).expect("the wasm node starts");
    for name in components {
        let path = rusm_e2e::component(name).unwrap_or_else(|| panic!("no component {name}"));
        node.load_file(name, path)
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
    node
}

fn metering() -> WasmConfig {
    WasmConfig {
        fuel_metering: true,
        ..WasmConfig::default()
    }
}

fn options(init: Vec<u8>, policy: &Arc<Policy>) -> WasmSpawnOptions {
    WasmSpawnOptions {
        init,
        policy: Some(policy.clone()),
        ..WasmSpawnOptions::default()
    }
}

async fn ended(end: Watch) -> ExitReason {
    tokio::time::timeout(WAIT, end)
        .await
        .expect("the process ends in time")
}

/// Every exit of a process labelled `label` on `node`, in order.
fn exits_of(
    node: &WasmNode,
    label: &'static str,
) -> tokio::sync::mpsc::UnboundedReceiver<ExitReason> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    node.runtime().add_observer(move |event| {
        if let Event::Exited {
            label: Some(l),
            reason,
            ..
        } = event
            && *l == label
        {
            let _ = tx.send(ExitReason::clone(reason));
        }
    });
    rx
}

// ---------------------------------------------------------------------------------
// Fuel: a child's comes out of its parent's
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_successors_ends_when_its_roots_fuel_is_spent() {
    // Each rights-probe spawns a successor under its own policy and returns: no
    // deadline and no spawn budget, only fuel. Were every successor's fuel fresh, the
    // chain would never end.
    let node = node_with(metering(), &["rights-probe"]);
    let mut exits = exits_of(&node, "rights-probe");
    let chain = policy(
        "[process]\nspawn = [{ component = \"rights-probe\" }]\n[limits]\nfuel = 2000000000\n",
    );
    let (reporter, mut reports) = probe(node.runtime());
    let mut init = pid_bytes(reporter);
    init.push(PROBE_SUCCEED);
    node.spawn_with(None, "rights-probe", options(init, &chain))
        .expect("the root spawns");
    let mut successors = 0_u32;
    let end = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                (tag, payload) = reports.data() => match tag {
                    1 => successors += 1,
                    // A spawn refused for want of fuel: the chain stops here.
                    _ => return String::from_utf8(payload).unwrap(),
                },
                reason = exits.recv() => match reason.expect("the observer stays") {
                    ExitReason::Normal => {}
                    // A successor ran out of fuel before it could spawn.
                    ExitReason::Crashed(text) => return text.to_string(),
                    other => panic!("a successor ended with {other}"),
                },
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the chain still ran after {WAIT:?} ({successors} successors)"));
    assert!(end.contains("fuel"), "{end}");
    // Each successor has at most half of what its parent had left.
    assert!(successors > 0, "the root spawned a successor");
    assert!(successors <= 32, "{successors} successors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_runs_on_fuel_its_parent_gives_and_a_parent_without_a_limit_gives_its_own() {
    let node = node_with(metering(), &["spawner", "trivial"]);
    // A parent with a fuel limit spawns a child that needs little: it runs.
    for parent in [
        "[process]\nspawn = [{ component = \"trivial\" }]\n[limits]\nfuel = 100000000\n",
        "[process]\nspawn = [{ component = \"trivial\" }]\n",
    ] {
        let mut exits = exits_of(&node, "trivial");
        let (reporter, mut reports) = probe(node.runtime());
        let mut init = pid_bytes(reporter);
        init.extend(1_u32.to_le_bytes());
        init.push(0);
        for text in ["trivial", ""] {
            init.extend(u32::try_from(text.len()).unwrap().to_le_bytes());
            init.extend(text.as_bytes());
        }
        init.extend(0_u32.to_le_bytes());
        let (_pid, end) = node
            .spawn_watched("spawner", options(init, &policy(parent)))
            .unwrap();
        let (tag, payload) = reports.data().await;
        assert_eq!(tag, 1, "spawned: {}", String::from_utf8_lossy(&payload));
        assert_eq!(ended(end).await, ExitReason::Normal);
        let child = tokio::time::timeout(WAIT, exits.recv()).await.unwrap();
        assert_eq!(child, Some(ExitReason::Normal), "under {parent:?}");
    }
}

// ---------------------------------------------------------------------------------
// Admission by granted memory
// ---------------------------------------------------------------------------------

/// `spawner`'s init: spawn `count` children of `component` with `child_init`, under
/// the spawner's own policy, and stay (forwarding downs) until `stop`.
fn spawner_init(
    reporter: rusm_otp::Pid,
    count: u32,
    component: &str,
    child_init: &[u8],
) -> Vec<u8> {
    let mut init = pid_bytes(reporter);
    init.extend(count.to_le_bytes());
    init.push(1 << 3);
    for text in [component.as_bytes(), b""] {
        init.extend(u32::try_from(text.len()).unwrap().to_le_bytes());
        init.extend(text);
    }
    init.extend(u32::try_from(child_init.len()).unwrap().to_le_bytes());
    init.extend(child_init);
    init
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_spawns_it_could_not_back_with_memory() {
    const MIB: u64 = 1 << 20;
    let node = node_with(
        WasmConfig {
            memory_budget: 64 * MIB,
            ..WasmConfig::default()
        },
        &["spawner", "rights-probe"],
    );
    // A guest granted 16 MiB spawns waiting children, each granted 16 MiB too: the
    // node can back itself and three of them, whatever the tree's own limits say.
    let tree = policy(
        "[process]\nspawn = [{ component = \"rights-probe\" }]\n[limits]\nmemory = \"16 MiB\"\n",
    );
    let (reporter, mut reports) = probe(node.runtime());
    let mut waiting = pid_bytes(reporter);
    waiting.push(0);
    let (spawner, spawner_end) = node
        .spawn_watched(
            "spawner",
            options(spawner_init(reporter, 5, "rights-probe", &waiting), &tree),
        )
        .unwrap();
    let mut children = Vec::new();
    let mut refusals = Vec::new();
    loop {
        let (tag, payload) = reports.data().await;
        match tag {
            1 => children.push(rusm_otp::Pid::from_raw(u64::from_le_bytes(
                payload[4..12].try_into().unwrap(),
            ))),
            2 => refusals.push(String::from_utf8(payload[4..].to_vec()).unwrap()),
            3 => break,
            other => panic!("unexpected report {other}"),
        }
    }
    assert_eq!(children.len(), 3, "{refusals:?}");
    assert_eq!(refusals.len(), 2);
    for refusal in &refusals {
        assert!(
            refusal.starts_with("unavailable: the node cannot back another process with memory"),
            "{refusal}"
        );
        assert!(
            refusal.contains("memory budget of 67108864 bytes"),
            "{refusal}"
        );
    }
    assert_eq!(node.granted_memory(), 64 * MIB);
    // The host's own spawns meet the same budget.
    let refused = node
        .spawn_watched("rights-probe", options(waiting.clone(), &tree))
        .unwrap_err();
    assert!(
        matches!(&refused, rusm_wasm::SpawnError::Unavailable(why) if why.contains("WasmConfig::memory_budget")),
        "{refused}"
    );
    // What ended gives its grant back.
    let ends: Vec<Watch> = children.iter().map(|&c| node.runtime().watch(c)).collect();
    for &child in &children {
        node.runtime().send_tagged(child, 0, b"stop".to_vec());
    }
    node.runtime().send_tagged(spawner, 0, b"stop".to_vec());
    for end in ends {
        assert_eq!(ended(end).await, ExitReason::Normal);
    }
    assert_eq!(ended(spawner_end).await, ExitReason::Normal);
    assert_eq!(node.granted_memory(), 0);
    let (again, end) = node
        .spawn_watched("rights-probe", options(waiting, &tree))
        .expect("the budget is free again");
    node.runtime().send_tagged(again, 0, b"stop".to_vec());
    assert_eq!(ended(end).await, ExitReason::Normal);
}

// ---------------------------------------------------------------------------------
// Memories, tables and core instances per component
// ---------------------------------------------------------------------------------

/// A WASI command (its `run` returns `ok`) whose core module declares `memories`
/// memories and `tables` tables, instantiated along with `extra` more instances of
/// an empty module.
fn command_wat(memories: usize, tables: usize, extra: usize) -> Vec<u8> {
    let text = format!(
        r#"(component
          (core module $m
            {}
            {}
            (func (export "run") (result i32) i32.const 0))
          (core module $empty)
          {}
          (core instance $i (instantiate $m))
          (func $run (result (result)) (canon lift (core func $i "run")))
          (instance $r (export "run" (func $run)))
          (export "wasi:cli/run@0.2.0" (instance $r)))"#,
        "(memory 1) ".repeat(memories),
        "(table 1 funcref) ".repeat(tables),
        "(core instance (instantiate $empty)) ".repeat(extra),
    );
    wat::parse_str(text).expect("the component assembles")
}

/// How a process of `bytes` (loaded as `name`) under `limits` ends, or why its spawn
/// was refused.
async fn run_command(
    node: &WasmNode,
    name: &str,
    bytes: &[u8],
    limits: &str,
) -> Result<ExitReason, String> {
    node.load_bytes(name, bytes).expect("the component loads");
    let under = policy(limits);
    match node.spawn_watched(name, options(Vec::new(), &under)) {
        Ok((_pid, end)) => Ok(ended(end).await),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_more_memories_or_tables_than_its_policy_allows_is_refused_at_spawn() {
    let node = crate::node(&[]);
    let many_memories = command_wat(11, 0, 0);
    let refused = run_command(&node, "memories", &many_memories, "")
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        "not permitted: component \"memories\" creates 11 linear memories, more than the 10 its policy allows (limit `memories`)"
    );
    let granted = run_command(
        &node,
        "memories",
        &many_memories,
        "[limits]\nmemories = 11\n",
    )
    .await;
    assert_eq!(granted, Ok(ExitReason::Normal));

    let many_tables = command_wat(1, 51, 0);
    let refused = run_command(&node, "tables", &many_tables, "")
        .await
        .unwrap_err();
    assert!(
        refused.contains("creates 51 tables, more than the 50 its policy allows (limit `tables`)"),
        "{refused}"
    );
    let refused = run_command(
        &node,
        "tables",
        &command_wat(1, 3, 0),
        "[limits]\ntables = 2\n",
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("creates 3 tables, more than the 2"),
        "{refused}"
    );
    let granted = run_command(&node, "tables", &many_tables, "[limits]\ntables = 51\n").await;
    assert_eq!(granted, Ok(ExitReason::Normal));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_more_core_instances_than_its_policy_allows_ends_naming_the_limit() {
    let node = crate::node(&[]);
    // 60 instances of an empty module besides the one that runs: past the default 50.
    let many_instances = command_wat(1, 0, 60);
    let reason = run_command(&node, "instances", &many_instances, "")
        .await
        .unwrap();
    assert_eq!(
        reason,
        ExitReason::crashed(
            "the component needs more core instances than the 50 its policy allows (limit `instances`)"
        )
    );
    let granted = run_command(
        &node,
        "instances",
        &many_instances,
        "[limits]\ninstances = 61\n",
    )
    .await;
    assert_eq!(granted, Ok(ExitReason::Normal));
}

// ---------------------------------------------------------------------------------
// What a full mailbox does: drop and count, or refuse
// ---------------------------------------------------------------------------------

/// `hostile` ops (see `components/hostile`).
const HOSTILE_FLOOD: u8 = 1;
const HOSTILE_SEND: u8 = 4;

fn hostile_init(reporter: rusm_otp::Pid, op: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut init = pid_bytes(reporter);
    init.push(op);
    for field in fields {
        init.extend_from_slice(field);
    }
    init
}

/// The report's leading count and the error text after it.
fn progress(payload: &[u8]) -> (u32, String) {
    let count = u32::from_le_bytes(payload[..4].try_into().unwrap());
    (count, String::from_utf8(payload[4..].to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_drops_and_counts_or_refuses_as_its_policy_says() {
    let node = crate::node(&[crate::components::HOSTILE]);
    let flood = |reporter| {
        hostile_init(
            reporter,
            HOSTILE_FLOOD,
            &[&16_u32.to_le_bytes(), &10_u32.to_le_bytes()],
        )
    };
    // Dropping (the default): every send succeeds, five are kept, five counted.
    let (reporter, mut reports) = probe(node.runtime());
    let (pid, end) = node
        .spawn_watched(
            "hostile",
            options(flood(reporter), &policy("[limits]\nmailbox = 5\n")),
        )
        .unwrap();
    let (_, payload) = reports.data().await;
    assert_eq!(progress(&payload), (10, String::new()));
    let stats = node.runtime().mailbox_stats(pid).unwrap();
    assert_eq!((stats.len, stats.dropped), (5, 5));
    assert_eq!(node.runtime().stats().mailbox_dropped, 5);
    node.runtime().kill(pid);
    assert_eq!(ended(end).await, ExitReason::Killed);
    assert_eq!(
        node.runtime().stats().mailbox_dropped,
        5,
        "an ended process's drops stay counted"
    );

    // Refusing: the sixth send fails, and the sender is told why.
    let refusing = policy("[limits]\nmailbox = 5\nmailbox_overflow = \"refuse\"\n");
    let (pid, end) = node
        .spawn_watched("hostile", options(flood(reporter), &refusing))
        .unwrap();
    let (_, payload) = reports.data().await;
    assert_eq!(
        progress(&payload),
        (
            5,
            format!("unavailable: the mailbox of {pid} is full and refuses more messages")
        )
    );
    node.runtime().kill(pid);
    assert_eq!(ended(end).await, ExitReason::Killed);

    // The receiver's policy decides, whoever sends: a byte bound refuses too.
    let small = policy("[limits]\nmailbox_bytes = \"1 KiB\"\nmailbox_overflow = \"refuse\"\n");
    let (victim, victim_end) = node
        .spawn_watched(
            "hostile",
            options(
                hostile_init(
                    reporter,
                    HOSTILE_FLOOD,
                    &[&0_u32.to_le_bytes(), &0_u32.to_le_bytes()],
                ),
                &small,
            ),
        )
        .unwrap();
    assert_eq!(reports.data().await.0, 1, "the victim holds");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let (sender, end) = node
            .spawn_watched(
                "hostile",
                options(
                    hostile_init(
                        reporter,
                        HOSTILE_SEND,
                        &[&pid_bytes(victim), &400_u32.to_le_bytes()],
                    ),
                    &policy(""),
                ),
            )
            .unwrap();
        let (_, payload) = reports.data().await;
        outcomes.push(String::from_utf8(payload).unwrap());
        node.runtime().send_tagged(sender, 0, b"stop".to_vec());
        assert_eq!(ended(end).await, ExitReason::Normal);
    }
    assert_eq!(outcomes[..2], [String::new(), String::new()]);
    assert_eq!(
        outcomes[2],
        format!("unavailable: the mailbox of {victim} is full and refuses more messages")
    );
    node.runtime().kill(victim);
    assert_eq!(ended(victim_end).await, ExitReason::Killed);
}

// ---------------------------------------------------------------------------------
// Names a guest passes are bounded
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_longer_than_the_bound_is_refused_before_the_host_keeps_or_echoes_it() {
    let node = crate::node(&[crate::components::RIGHTS_PROBE]);
    let anything = policy("[process]\nregister = [\"*\"]\n");
    // `register` with a 100 KiB name (op 3): the refusal names the bound, not the name.
    for (len, outcome) in [(255, "ok"), (100 * 1024, "invalid")] {
        let (reporter, mut reports) = probe(node.runtime());
        let name = "n".repeat(len);
        let mut init = pid_bytes(reporter);
        init.push(3);
        init.extend(u32::try_from(len).unwrap().to_le_bytes());
        init.extend(name.as_bytes());
        let (_pid, end) = node
            .spawn_watched("rights-probe", options(init, &anything))
            .unwrap();
        let (tag, payload) = reports.data().await;
        assert_eq!(ended(end).await, ExitReason::Normal);
        match outcome {
            "ok" => assert_eq!(tag, 1, "{}", String::from_utf8_lossy(&payload)),
            _ => {
                assert_eq!(tag, 2);
                assert_eq!(
                    String::from_utf8(payload).unwrap(),
                    "invalid request: a name of 102400 bytes is longer than the 255 allowed"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_the_node_cannot_back_with_memory_gets_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Room for a request under a 16 MiB policy, not under the default 64 MiB.
    let node = node_with(
        WasmConfig {
            memory_budget: 32 << 20,
            ..WasmConfig::default()
        },
        &[],
    );
    node.load_http_file("http-hello", rusm_e2e::component("http-hello").unwrap())
        .unwrap();
    let small = policy("[limits]\nmemory = \"16 MiB\"\n");
    let routes = vec![
        rusm_http::Route::new("/small", "http-hello").policy(small),
        rusm_http::Route::new("/default", "http-hello"),
    ];
    let server = rusm_http::HttpServer::bind(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        routes,
        rusm_http::HttpConfig::default(),
    )
    .await
    .expect("the server binds");
    let status = |path: &'static str| {
        let addr = server.local_addr();
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let small_status = tokio::time::timeout(WAIT, status("/small")).await.unwrap();
    assert_eq!(small_status, "HTTP/1.1 200 OK");
    let default_status = tokio::time::timeout(WAIT, status("/default"))
        .await
        .unwrap();
    assert_eq!(default_status, "HTTP/1.1 503 Service Unavailable");
    server.shutdown().await;
}
