//! Handler-style actors (`components/handler-probe`, `components/idle-handler`): the
//! host calls `handle` once per message; links, monitors, trap-exit, kill, policies and
//! upgrades work as for actors blocked in `receive`.

use std::time::Duration;

use rusm_otp::{Context, ExitReason, Message, Pid, Runtime};
use rusm_wasm::{Allocator, ArenaConfig, WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::components;
use crate::{node, pid_bytes, policy, probe};

/// A command for `handler-probe`: its payload is the pid to answer, then `extra`.
fn command(ctx_pid: Pid, extra: &[u8]) -> Vec<u8> {
    [pid_bytes(ctx_pid), extra.to_vec()].concat()
}

fn send(rt: &Runtime, to: Pid, tag: u64, payload: Vec<u8>) {
    rt.send_tagged(to, tag, rusm_otp::Payload::Bytes(payload));
}

/// A native process that runs `start` with its context, then forwards every message
/// it receives to the test.
fn parent(
    rt: &Runtime,
    start: impl FnOnce(&Context) + Send + 'static,
) -> (Pid, UnboundedReceiver<Message>) {
    let (tx, rx) = unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        start(&ctx);
        loop {
            if tx.send(ctx.recv().await).is_err() {
                return;
            }
        }
    });
    (pid, rx)
}

async fn next(rx: &mut UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a message within 30 s")
        .expect("the parent is alive")
}

/// A native parent (forwarding what it receives, see [`parent`]) that spawns
/// `handler-probe` linked to itself; returns the parent, the handler and the parent's
/// forwarded messages (kept, so the parent stays alive).
async fn linked_probe(node: &WasmNode) -> (Pid, Pid, UnboundedReceiver<Message>) {
    let spawner = node.clone();
    let (linker, mut rx) = parent(node.runtime(), move |ctx| {
        let options = WasmSpawnOptions {
            link: true,
            ..WasmSpawnOptions::default()
        };
        let child = spawner
            .spawn_with(Some(ctx), "handler-probe", options)
            .unwrap();
        ctx.send_tagged(
            ctx.pid(),
            99,
            rusm_otp::Payload::Bytes(pid_bytes(child.pid)),
        );
    });
    let child = match next(&mut rx).await {
        Message::Data(d) => Pid::from_raw(u64::from_le_bytes(
            d.payload.downcast::<Vec<u8>>().unwrap()[..8]
                .try_into()
                .unwrap(),
        )),
        other => panic!("{other:?}"),
    };
    (linker, child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_handled_one_by_one_and_state_is_kept() {
    let node = node(&[components::HANDLER_PROBE]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let actor = node.spawn("handler-probe", Vec::new()).unwrap();
    for n in 1..=3u64 {
        send(&rt, actor, 1, command(me, b""));
        assert_eq!(probe.data().await, (2, n.to_le_bytes().to_vec()));
    }
    // A selective receive inside `handle` takes the tag-22 message and leaves the
    // count command queued before it for the next `handle`.
    send(&rt, actor, 21, command(me, b""));
    send(&rt, actor, 1, command(me, b""));
    send(&rt, actor, 22, b"picked".to_vec());
    assert_eq!(probe.data().await, (23, b"picked".to_vec()));
    assert_eq!(probe.data().await, (2, 4u64.to_le_bytes().to_vec()));
    assert!(rt.is_alive(actor));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_and_stop_end_the_process_with_their_reasons() {
    let node = node(&[components::HANDLER_PROBE]);
    let rt = node.runtime().clone();
    // Watched from the spawn on: the process may end before a later watch could start.
    let options = WasmSpawnOptions {
        init: b"fail".to_vec(),
        ..WasmSpawnOptions::default()
    };
    let (_, failing) = node.spawn_watched("handler-probe", options).unwrap();
    assert_eq!(failing.await, ExitReason::custom("init refused"));

    let (me, mut probe) = probe(&rt);
    let actor = node.spawn("handler-probe", Vec::new()).unwrap();
    let end = rt.watch(actor);
    send(&rt, actor, 7, command(me, b""));
    // `terminate` ran, with the reason the process ends with.
    assert_eq!(probe.data().await, (8, b"custom:asked to stop".to_vec()));
    assert_eq!(end.await, ExitReason::custom("asked to stop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_monitors_and_trap_exit_work_for_handlers() {
    let node = node(&[components::HANDLER_PROBE]);
    let rt = node.runtime().clone();

    // A link from the spawn options: the handler dies with its parent.
    let (linker, child, _rx) = linked_probe(&node).await;
    let end = rt.watch(child);
    rt.exit(linker, ExitReason::custom("parent gone"));
    assert_eq!(end.await, ExitReason::custom("parent gone"));

    // Trapping exits: the signal becomes a message handed to `handle`; the handler
    // lives on. Its monitor reports the end of a watched process.
    let (me, mut probe) = probe(&rt);
    let (linker, actor, _rx) = linked_probe(&node).await;
    send(&rt, actor, 11, command(me, b""));
    assert_eq!(probe.data().await.0, 12);
    let watched = rt.spawn(|ctx| async move {
        ctx.recv().await;
        ExitReason::custom("watched ends")
    });
    send(&rt, actor, 13, command(me, &pid_bytes(watched)));
    assert_eq!(probe.data().await.0, 14);
    send(&rt, watched, 0, Vec::new());
    assert_eq!(probe.data().await, (31, b"custom:watched ends".to_vec()));
    rt.exit(linker, ExitReason::custom("parent gone"));
    assert_eq!(probe.data().await, (30, b"custom:parent gone".to_vec()));
    send(&rt, actor, 1, command(me, b""));
    assert_eq!(probe.data().await, (2, 1u64.to_le_bytes().to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_killed_while_idle_and_while_spinning_in_handle() {
    let node = node(&[components::HANDLER_PROBE]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let idle = node.spawn("handler-probe", Vec::new()).unwrap();
    send(&rt, idle, 1, command(me, b""));
    assert_eq!(probe.data().await.0, 2);
    let end = rt.watch(idle);
    rt.kill(idle);
    assert_eq!(end.await, ExitReason::Killed);

    let spinning = node.spawn("handler-probe", Vec::new()).unwrap();
    send(&rt, spinning, 1, command(me, b""));
    assert_eq!(probe.data().await.0, 2);
    send(&rt, spinning, 5, command(me, b""));
    let end = rt.watch(spinning);
    rt.kill(spinning);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), end)
            .await
            .unwrap(),
        ExitReason::Killed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_handle_reaches_a_monitor_as_crashed() {
    let node = node(&[components::HANDLER_PROBE]);
    let rt = node.runtime().clone();
    let (me, _probe) = probe(&rt);
    let spawner = node.clone();
    let (_watcher, mut rx) = parent(&rt, move |ctx| {
        let options = WasmSpawnOptions {
            monitor: true,
            ..WasmSpawnOptions::default()
        };
        let child = spawner
            .spawn_with(Some(ctx), "handler-probe", options)
            .unwrap();
        ctx.send_tagged(child.pid, 6, rusm_otp::Payload::Bytes(pid_bytes(me)));
    });
    match next(&mut rx).await {
        Message::Down(down) => {
            assert!(
                matches!(&down.reason, ExitReason::Crashed(why) if why.contains("unreachable")),
                "{:?}",
                down.reason
            );
        }
        other => panic!("expected a down message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_runs_under_its_policy() {
    let node = node(&[components::HANDLER_PROBE, components::IDLE_HANDLER]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let other = rt.spawn(|ctx| async move {
        ctx.recv().await;
    });
    // The default policy grants neither spawning nor linking to others.
    let actor = node.spawn("handler-probe", Vec::new()).unwrap();
    send(&rt, actor, 19, command(me, b""));
    let (tag, text) = probe.data().await;
    assert_eq!(tag, 20);
    assert!(
        String::from_utf8_lossy(&text).contains("not permitted"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    // A link can end the other process, so it needs the kill right over it.
    send(&rt, actor, 9, command(me, &pid_bytes(other)));
    let (tag, text) = probe.data().await;
    assert_eq!(tag, 10);
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("not permitted: the policy does not allow ending {other}")
    );
    assert!(rt.is_alive(other));

    // A policy that grants the spawn.
    let options = WasmSpawnOptions {
        policy: Some(policy(
            "[process]\nspawn = [{ component = \"idle-handler\" }]\n",
        )),
        ..WasmSpawnOptions::default()
    };
    let granted = node.spawn_with(None, "handler-probe", options).unwrap().pid;
    send(&rt, granted, 19, command(me, b""));
    assert_eq!(probe.data().await, (20, b"ok".to_vec()));

    // A policy that grants ending any process grants the link.
    let options = WasmSpawnOptions {
        policy: Some(policy("[process]\nkill = \"any\"\n")),
        ..WasmSpawnOptions::default()
    };
    let linker = node.spawn_with(None, "handler-probe", options).unwrap().pid;
    send(&rt, linker, 9, command(me, &pid_bytes(other)));
    assert_eq!(probe.data().await, (10, b"ok".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_the_state_to_the_new_version_under_the_same_pid() {
    let node = node(&[components::HANDLER_PROBE]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let actor = node.spawn("handler-probe", Vec::new()).unwrap();
    for _ in 0..2 {
        send(&rt, actor, 1, command(me, b""));
        probe.data().await;
    }
    // The new version is another handler: it reports the state it was handed.
    let bytes = std::fs::read(components::IDLE_HANDLER.path()).unwrap();
    let report = node.reload("handler-probe", bytes).await.unwrap();
    assert_eq!(node.component_version("handler-probe"), 2);
    assert_eq!(report.upgrades.len(), 1);
    assert_eq!(report.upgrades[0].pid, actor);
    assert_eq!(
        report.upgrades[0].outcome,
        rusm_wasm::UpgradeOutcome::Upgraded
    );
    send(&rt, actor, 3, command(me, b""));
    assert_eq!(probe.data().await, (4, 2u64.to_le_bytes().to_vec()));
    assert!(rt.is_alive(actor));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_past_the_instance_limit_ends_with_a_reason_naming_it() {
    let config = WasmConfig {
        allocator: Allocator::Arena(ArenaConfig {
            max_instances: 2,
            ..ArenaConfig::default()
        }),
        instance_wait: Duration::from_millis(200),
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config).unwrap();
    node.load_file("idle-handler", components::IDLE_HANDLER.path())
        .unwrap();
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let mut live = Vec::new();
    for _ in 0..2 {
        let pid = node.spawn("idle-handler", Vec::new()).unwrap();
        send(&rt, pid, 1, command(me, b""));
        assert_eq!(probe.data().await.0, 2);
        live.push(pid);
    }
    let (_, third) = node
        .spawn_watched("idle-handler", WasmSpawnOptions::default())
        .unwrap();
    match third.await {
        ExitReason::Custom(why) => {
            assert!(why.contains("max_instances"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // Ending one frees its slot for the next.
    let end = rt.watch(live[0]);
    rt.kill(live[0]);
    end.await;
    let fourth = node.spawn("idle-handler", Vec::new()).unwrap();
    send(&rt, fourth, 1, command(me, b""));
    assert_eq!(probe.data().await.0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_answer_while_their_open_stacks_are_evicted_and_swept() {
    // One stack kept open for eight busy actors, and a sweep every millisecond: stacks
    // are closed and reopened all the time, on both workers, while calls run.
    let config = WasmConfig {
        allocator: Allocator::Arena(ArenaConfig {
            open_stacks: 1,
            idle_stack_close: Duration::from_millis(1),
            ..ArenaConfig::default()
        }),
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config).unwrap();
    node.load_file("idle-handler", components::IDLE_HANDLER.path())
        .unwrap();
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let actors: Vec<Pid> = (0..8)
        .map(|_| node.spawn("idle-handler", Vec::new()).unwrap())
        .collect();
    let rounds = 100u64;
    for round in 0..rounds {
        for (i, &actor) in actors.iter().enumerate() {
            let payload = command(
                me,
                &[round.to_le_bytes(), (i as u64).to_le_bytes()].concat(),
            );
            send(&rt, actor, 10, payload);
        }
    }
    let mut next_round = vec![0u64; actors.len()];
    for _ in 0..rounds * actors.len() as u64 {
        let (tag, payload) = probe.data().await;
        assert_eq!(tag, 11);
        let round = u64::from_le_bytes(payload[8..16].try_into().unwrap());
        let i = u64::from_le_bytes(payload[16..24].try_into().unwrap()) as usize;
        assert_eq!(round, next_round[i], "actor {i} answers in order");
        next_round[i] += 1;
    }
    assert!(next_round.iter().all(|&n| n == rounds));
    for actor in actors {
        assert!(rt.is_alive(actor));
    }
}

/// The handler-style actor shown in the README is `components/echo-handler`, word for
/// word, and it answers like `echo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_handler_is_the_echo_handler_component_and_answers() {
    crate::assert_readme_shows("echo-handler");

    let node = node(&[components::ECHO_HANDLER]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let echo = node.spawn("echo-handler", Vec::new()).unwrap();
    for tag in [9, 41] {
        let mut payload = pid_bytes(me);
        payload.extend(b"hi");
        rt.send_tagged(echo, tag, payload.clone());
        assert_eq!(probe.data().await, (tag + 1, payload));
    }
}
