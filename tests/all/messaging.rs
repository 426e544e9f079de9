use rusm_otp::{ExitReason, Message, Payload};
use rusm_wasm::WasmSpawnOptions;

use crate::components;
use crate::{node, pid_bytes, pinger_init, policy, probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_to_wasm_ping_pong() {
    let node = node(&[components::PING_PONG]);
    let rt = node.runtime().clone();
    let (reporter, mut probe) = probe(&rt);
    let ponger = node.spawn("ping-pong", Vec::new()).unwrap();
    let init = pinger_init(ponger, 500, reporter);
    let (_pinger, pinger_end) = node
        .spawn_watched(
            "ping-pong",
            WasmSpawnOptions {
                init,
                ..Default::default()
            },
        )
        .unwrap();
    let (tag, payload) = probe.data().await;
    assert_eq!((tag, payload), (3, 500u64.to_le_bytes().to_vec()));
    assert_eq!(pinger_end.await, ExitReason::Normal);
    // Stop the ponger with its stop message: it ends normally.
    let end = rt.watch(ponger);
    rt.send(ponger, b"stop".to_vec());
    assert_eq!(end.await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_wasm_processes_exchange_messages() {
    let node = node(&[components::PING_PONG]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let ponger = node.spawn("ping-pong", Vec::new()).unwrap();
    let mut payload = pid_bytes(me);
    payload.extend(b"hello");
    rt.send_tagged(ponger, 41, payload.clone());
    assert_eq!(probe.data().await, (42, payload));
    // A native (non-byte) value cannot reach a guest: it is dropped, and the guest
    // carries on with the next message.
    rt.send_tagged(ponger, 1, Payload::value(17u32));
    let mut payload = pid_bytes(me);
    payload.extend(b"again");
    rt.send_tagged(ponger, 7, payload.clone());
    assert_eq!(probe.data().await, (8, payload));
}

fn call_envelope(caller: rusm_otp::Pid, reply_tag: u64, body: &[u8]) -> Vec<u8> {
    let mut out = pid_bytes(caller);
    out.extend(reply_tag.to_le_bytes());
    out.extend(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_server_keeps_state_and_registers_its_name() {
    let node = node(&[components::COUNTER]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let options = WasmSpawnOptions {
        init: b"counter".to_vec(),
        policy: Some(policy("[process]\nregister = [\"counter\"]\n")),
        ..Default::default()
    };
    let (counter, _) = node.spawn_watched("counter", options).unwrap();
    // Calls are answered in order; the name appears once the guest registered it.
    rt.send_tagged(counter, 1, call_envelope(me, 100, &5i64.to_le_bytes()));
    assert_eq!(probe.data().await, (100, 5i64.to_le_bytes().to_vec()));
    assert_eq!(rt.whereis("counter"), Some(counter));
    rt.send_tagged(counter, 1, call_envelope(me, 101, &(-2i64).to_le_bytes()));
    assert_eq!(probe.data().await, (101, 3i64.to_le_bytes().to_vec()));
    rt.send_tagged(counter, 2, call_envelope(me, 102, b""));
    assert_eq!(probe.data().await, (102, 3i64.to_le_bytes().to_vec()));
    let end = rt.watch(counter);
    rt.send_tagged(counter, 3, call_envelope(me, 103, b""));
    assert_eq!(probe.data().await, (103, Vec::new()));
    assert_eq!(end.await, ExitReason::Normal);
    assert_eq!(
        rt.whereis("counter"),
        None,
        "the name went with the process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_receive_in_a_guest_leaves_other_messages_in_order() {
    // The pinger waits for tag-2 replies only; noise sent to it first stays queued and
    // does not disturb the exchange.
    let node = node(&[components::PING_PONG]);
    let rt = node.runtime().clone();
    let (reporter, mut probe) = probe(&rt);
    let ponger = node.spawn("ping-pong", Vec::new()).unwrap();
    let init = pinger_init(ponger, 50, reporter);
    let (pinger, _end) = node
        .spawn_watched(
            "ping-pong",
            WasmSpawnOptions {
                init,
                ..Default::default()
            },
        )
        .unwrap();
    for i in 0..20u8 {
        rt.send_tagged(pinger, 77, vec![i]);
    }
    assert_eq!(probe.data().await, (3, 50u64.to_le_bytes().to_vec()));

    // What a selective receive passes over keeps its order: `send-receive-probe` takes
    // its commands (tag 1000) and a tag-55 message from behind noise, then takes the
    // noise with plain try-receives (its reports are tag 1001: kind 1, tag, payload).
    let probe_node = crate::node(&[components::SEND_RECEIVE_PROBE]);
    let rt = probe_node.runtime().clone();
    let (reporter, mut reports) = crate::probe(&rt);
    let guest = probe_node
        .spawn("send-receive-probe", pid_bytes(reporter))
        .unwrap();
    for i in 0..10u8 {
        rt.send_tagged(guest, 77, vec![i]);
    }
    rt.send_tagged(guest, 55, b"wanted".to_vec());
    for i in 10..20u8 {
        rt.send_tagged(guest, 77, vec![i]);
    }
    let data_report =
        |tag: u64, payload: &[u8]| (1001, [&[1u8][..], &tag.to_le_bytes(), payload].concat());
    // try-receive with a selector of one tag, 55.
    let select_55 = [&[2u8, 1][..], &1u32.to_le_bytes(), &55u64.to_le_bytes()].concat();
    rt.send_tagged(guest, 1000, select_55);
    assert_eq!(reports.data().await, data_report(55, b"wanted"));
    for i in 0..20u8 {
        // try-receive without a selector: the oldest message.
        rt.send_tagged(guest, 1000, vec![2, 0]);
        assert_eq!(reports.data().await, data_report(77, &[i]), "message {i}");
    }
    rt.send_tagged(guest, 1000, vec![2, 0]);
    assert_eq!(reports.data().await, (1001, vec![0]), "nothing is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_monitors_and_trap_exit_work_across_native_and_wasm() {
    let node = node(&[components::PING_PONG, components::CRASHER]);
    let rt = node.runtime().clone();
    let n2 = node.clone();
    let (tester, done) = rt.spawn_watched(Default::default(), move |ctx| async move {
        ctx.trap_exit(true);
        // Native links to wasm: the wasm process crashing reaches us as an exit message.
        let crasher = n2
            .spawn_with(
                Some(&ctx),
                "crasher",
                WasmSpawnOptions {
                    init: b"unreachable".to_vec(),
                    link: true,
                    ..Default::default()
                },
            )
            .unwrap()
            .pid;
        let Message::Exit(sig) = ctx.recv().await else {
            return ExitReason::custom("no exit");
        };
        if sig.from != crasher || !matches!(sig.reason, ExitReason::Crashed(_)) {
            return ExitReason::custom(format!("bad exit {sig:?}"));
        }
        // Native monitors wasm.
        let ponger = n2
            .spawn_with(
                Some(&ctx),
                "ping-pong",
                WasmSpawnOptions {
                    monitor: true,
                    ..Default::default()
                },
            )
            .unwrap();
        ctx.kill(ponger.pid);
        let Message::Down(down) = ctx.recv().await else {
            return ExitReason::custom("no down");
        };
        if Some(down.monitor) != ponger.monitor || down.reason != ExitReason::Killed {
            return ExitReason::custom(format!("bad down {down:?}"));
        }
        ExitReason::Normal
    });
    let _ = tester;
    assert_eq!(done.await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_supervisor_restarts_its_child_then_gives_up() {
    let node = node(&[components::SUPERVISOR, components::CRASHER]);
    let rt = node.runtime().clone();
    let (reporter, mut probe) = probe(&rt);
    let mut init = pid_bytes(reporter);
    init.extend(2u32.to_le_bytes()); // max restarts
    init.push(0); // transient
    init.extend((b"crasher".len() as u32).to_le_bytes());
    init.extend(b"crasher");
    init.extend((b"panic".len() as u32).to_le_bytes());
    init.extend(b"panic");
    let may_spawn_crashers = policy("[process]\nspawn = [{ component = \"crasher\" }]\n");
    let options = WasmSpawnOptions {
        init,
        policy: Some(may_spawn_crashers),
        ..Default::default()
    };
    let (_sup, end) = node.spawn_watched("supervisor", options).unwrap();
    let mut started = 0;
    let mut downs = 0;
    let mut exits = 0;
    loop {
        let (tag, payload) = probe.data().await;
        match tag {
            1 => started += 1,
            2 => {
                exits += 1;
                assert!(String::from_utf8_lossy(&payload[8..]).starts_with("crashed:"));
            }
            3 => {
                downs += 1;
                assert!(String::from_utf8_lossy(&payload[8..]).starts_with("crashed:"));
            }
            5 => {
                assert_eq!(payload, 2u32.to_le_bytes());
                break;
            }
            other => panic!("unexpected report {other}"),
        }
    }
    assert_eq!(started, 3, "first start and two restarts");
    assert_eq!(downs, 3);
    assert!(exits <= 3);
    assert_eq!(end.await, ExitReason::MaxRestartIntensity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_spawns_monitored_children() {
    let node = node(&[components::SPAWNER, components::TRIVIAL]);
    let rt = node.runtime().clone();
    let (reporter, mut probe) = probe(&rt);
    let mut init = pid_bytes(reporter);
    init.extend(3u32.to_le_bytes());
    init.push(0b1010); // monitor + stay
    for s in [&b"trivial"[..], b"", b""] {
        init.extend((s.len() as u32).to_le_bytes());
        init.extend(s);
    }
    let may_spawn = policy("[process]\nspawn = [{ component = \"*\" }]\n");
    let options = WasmSpawnOptions {
        init,
        policy: Some(may_spawn.clone()),
        ..Default::default()
    };
    let (spawner, _) = node.spawn_watched("spawner", options).unwrap();
    let mut children = Vec::new();
    for i in 0..3u32 {
        let (tag, payload) = probe.data().await;
        assert_eq!(tag, 1);
        assert_eq!(payload[..4], i.to_le_bytes());
        children.push(u64::from_le_bytes(payload[4..12].try_into().unwrap()));
    }
    assert_eq!(
        probe.data().await,
        (3, [3u32.to_le_bytes(), 0u32.to_le_bytes()].concat())
    );
    // Each trivial child ends at once; the spawner's monitors report it.
    let mut downs = Vec::new();
    for _ in 0..3 {
        let (tag, payload) = probe.data().await;
        assert_eq!(tag, 4);
        assert_eq!(&payload[8..], b"normal");
        downs.push(u64::from_le_bytes(payload[..8].try_into().unwrap()));
    }
    downs.sort();
    children.sort();
    assert_eq!(downs, children);
    // Spawning an unknown component is an error for the guest, not a crash.
    let mut init = pid_bytes(reporter);
    init.extend(1u32.to_le_bytes());
    init.push(0);
    for s in [&b"no-such-thing"[..], b"", b""] {
        init.extend((s.len() as u32).to_le_bytes());
        init.extend(s);
    }
    let options = WasmSpawnOptions {
        init,
        policy: Some(may_spawn),
        ..Default::default()
    };
    let _ = node.spawn_watched("spawner", options).unwrap();
    let (tag, payload) = probe.data().await;
    assert_eq!(tag, 2);
    assert!(
        String::from_utf8_lossy(&payload[4..]).starts_with("not found: "),
        "{:?}",
        String::from_utf8_lossy(&payload)
    );
    rt.send(spawner, b"stop".to_vec());
}

/// The actor shown in the README is `components/echo`, word for word, and it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_actor_is_the_echo_component_and_answers() {
    crate::assert_readme_shows("echo");

    let node = node(&[components::ECHO]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let echo = node.spawn("echo", Vec::new()).unwrap();
    let mut payload = pid_bytes(me);
    payload.extend(b"hi");
    rt.send_tagged(echo, 9, payload.clone());
    assert_eq!(probe.data().await, (10, payload));
}
