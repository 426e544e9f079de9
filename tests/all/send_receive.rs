//! The combined imports `send-receive` and `try-receive`, driven from inside a guest
//! (`send-receive-probe`) against native and wasm peers.

use rusm_otp::{ExitReason, Message, Payload, Pid, Runtime};
use rusm_wasm::{UpgradeOutcome, WasmNode, WasmSpawnOptions};

use crate::components;
use crate::{Probe, node, pid_bytes, policy, probe};

/// The probe's command tag and report tag.
const COMMAND_TAG: u64 = 1000;
const REPORT_TAG: u64 = 1001;

/// What the probe reported for one command.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    Nothing,
    Data(u64, Vec<u8>),
    Upgrade(u64),
    Error(String),
    Done,
    Other(Vec<u8>),
}

/// A `send-receive-probe` process and the native process its reports go to.
struct Guest {
    rt: Runtime,
    pid: Pid,
    reports: Probe,
}

impl Guest {
    fn spawn(node: &WasmNode, options: WasmSpawnOptions) -> Guest {
        let rt = node.runtime().clone();
        let (reporter, reports) = probe(&rt);
        let options = WasmSpawnOptions {
            init: pid_bytes(reporter),
            ..options
        };
        let pid = node
            .spawn_with(None, "send-receive-probe", options)
            .unwrap()
            .pid;
        Guest { rt, pid, reports }
    }

    /// Run one command and wait for its report.
    async fn run(&mut self, command: Vec<u8>) -> Report {
        self.rt.send_tagged(self.pid, COMMAND_TAG, command);
        let (tag, payload) = self.reports.data().await;
        assert_eq!(tag, REPORT_TAG, "a report, got tag {tag} {payload:?}");
        let rest = payload[1..].to_vec();
        match payload[0] {
            0 => Report::Nothing,
            1 => Report::Data(u64::from_le_bytes(rest[..8].try_into().unwrap()), {
                rest[8..].to_vec()
            }),
            4 => Report::Upgrade(u64::from_le_bytes(rest[..8].try_into().unwrap())),
            5 => Report::Error(String::from_utf8(rest).unwrap()),
            6 => Report::Done,
            _ => Report::Other(payload),
        }
    }

    async fn send_receive(
        &mut self,
        to: Pid,
        tag: u64,
        payload: &[u8],
        timeout_ms: Option<u64>,
        selector: Option<&[u64]>,
    ) -> Report {
        let mut command = vec![1];
        command.extend(pid_bytes(to));
        command.extend(tag.to_le_bytes());
        command.extend(byte_string(payload));
        match timeout_ms {
            None => command.push(0),
            Some(ms) => {
                command.push(1);
                command.extend(ms.to_le_bytes());
            }
        }
        command.extend(selector_bytes(selector));
        self.run(command).await
    }

    async fn try_receive(&mut self, selector: Option<&[u64]>) -> Report {
        let mut command = vec![2];
        command.extend(selector_bytes(selector));
        self.run(command).await
    }

    async fn send(&mut self, to: Pid, tag: u64, payload: &[u8]) -> Report {
        let mut command = vec![3];
        command.extend(pid_bytes(to));
        command.extend(tag.to_le_bytes());
        command.extend(byte_string(payload));
        self.run(command).await
    }

    async fn call(&mut self, server: Pid, tag: u64, body: &[u8], timeout_ms: u64) -> Report {
        let mut command = vec![4];
        command.extend(pid_bytes(server));
        command.extend(tag.to_le_bytes());
        command.extend(byte_string(body));
        command.extend(timeout_ms.to_le_bytes());
        self.run(command).await
    }

    /// Put a data message in the probe's mailbox, behind what is already there.
    fn queue(&self, tag: u64, payload: &[u8]) {
        self.rt.send_tagged(self.pid, tag, payload.to_vec());
    }
}

fn byte_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend(bytes);
    out
}

fn selector_bytes(selector: Option<&[u64]>) -> Vec<u8> {
    match selector {
        None => vec![0],
        Some(tags) => {
            let mut out = vec![1];
            out.extend((tags.len() as u32).to_le_bytes());
            for tag in tags {
                out.extend(tag.to_le_bytes());
            }
            out
        }
    }
}

/// A native process answering every data message of 8 bytes or more to the pid in its
/// first 8 bytes, with tag + 1 and the same payload.
fn native_echo(rt: &Runtime) -> Pid {
    rt.spawn(|ctx| async move {
        loop {
            if let Message::Data(data) = ctx.recv().await
                && let Some(bytes) = data.payload.as_bytes()
                && let Some(to) = bytes.get(..8)
            {
                let to = Pid::from_raw(u64::from_le_bytes(to.try_into().unwrap()));
                ctx.send_tagged(to, data.tag + 1, Payload::Bytes(bytes.to_vec()));
            }
        }
    })
}

/// A native process that takes every message and never answers.
fn native_silent(rt: &Runtime) -> Pid {
    rt.spawn(|ctx| async move {
        loop {
            ctx.recv().await;
        }
    })
}

/// A payload starting with `pid`, as echoers expect.
fn addressed(pid: Pid, rest: &[u8]) -> Vec<u8> {
    let mut out = pid_bytes(pid);
    out.extend(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_gets_the_answer_of_a_native_echo_a_wasm_ponger_and_a_call() {
    let node = node(&[
        components::SEND_RECEIVE_PROBE,
        components::PING_PONG,
        components::COUNTER,
    ]);
    let rt = node.runtime().clone();
    let mut guest = Guest::spawn(&node, WasmSpawnOptions::default());
    let echo = native_echo(&rt);
    let ping = addressed(guest.pid, b"hi");
    // With a selector and with none.
    assert_eq!(
        guest.send_receive(echo, 5, &ping, None, Some(&[6])).await,
        Report::Data(6, ping.clone())
    );
    assert_eq!(
        guest.send_receive(echo, 9, &ping, Some(5_000), None).await,
        Report::Data(10, ping.clone())
    );
    // A wasm ponger, answering with one send-receive (init empty), with a send and a
    // receive (mode 1), or with a send and a try-receive before the receive (mode 2).
    for init in [Vec::new(), vec![1], vec![2]] {
        let ponger = node.spawn("ping-pong", init).unwrap();
        for round in 0..3 {
            assert_eq!(
                guest
                    .send_receive(ponger, 7 + round, &ping, None, Some(&[8 + round]))
                    .await,
                Report::Data(8 + round, ping.clone())
            );
        }
        let end = rt.watch(ponger);
        rt.send(ponger, b"stop".to_vec());
        assert_eq!(end.await, ExitReason::Normal);
    }
    // `call` makes its request and waits for the reply in one send-receive.
    let counter = node.spawn("counter", Vec::new()).unwrap();
    assert_eq!(
        guest.call(counter, 1, &5i64.to_le_bytes(), 5_000).await,
        Report::Data(0, 5i64.to_le_bytes().to_vec())
    );
    assert_eq!(
        guest.call(counter, 2, b"", 5_000).await,
        Report::Data(0, 5i64.to_le_bytes().to_vec())
    );
    // A server that is gone fails the call with its reason rather than a timeout.
    let end = rt.watch(counter);
    rt.kill(counter);
    assert_eq!(end.await, ExitReason::Killed);
    assert_eq!(
        guest.call(counter, 2, b"", 60_000).await,
        Report::Error("the server ended before replying: noproc".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_times_out_and_its_selector_leaves_other_messages_in_order() {
    let node = node(&[components::SEND_RECEIVE_PROBE]);
    let rt = node.runtime().clone();
    let mut guest = Guest::spawn(&node, WasmSpawnOptions::default());
    let silent = native_silent(&rt);
    assert_eq!(
        guest
            .send_receive(silent, 1, b"anyone?", Some(50), Some(&[2]))
            .await,
        Report::Nothing
    );
    assert_eq!(
        guest
            .send_receive(silent, 1, b"anyone?", Some(50), None)
            .await,
        Report::Nothing
    );

    let echo = native_echo(&rt);
    guest.queue(21, b"first");
    guest.queue(22, b"second");
    let ping = addressed(guest.pid, b"c");
    assert_eq!(
        guest.send_receive(echo, 30, &ping, None, Some(&[31])).await,
        Report::Data(31, ping)
    );
    // The two messages the selector passed over are still there, in order.
    assert_eq!(
        guest.try_receive(None).await,
        Report::Data(21, b"first".to_vec())
    );
    assert_eq!(
        guest.try_receive(None).await,
        Report::Data(22, b"second".to_vec())
    );
    assert_eq!(guest.try_receive(None).await, Report::Nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_receive_takes_what_is_queued_and_never_waits() {
    let node = node(&[components::SEND_RECEIVE_PROBE]);
    let mut guest = Guest::spawn(&node, WasmSpawnOptions::default());
    assert_eq!(guest.try_receive(None).await, Report::Nothing);
    assert_eq!(guest.try_receive(Some(&[40])).await, Report::Nothing);
    guest.queue(40, b"x");
    guest.queue(41, b"y");
    assert_eq!(guest.try_receive(Some(&[99])).await, Report::Nothing);
    assert_eq!(
        guest.try_receive(Some(&[41])).await,
        Report::Data(41, b"y".to_vec())
    );
    assert_eq!(
        guest.try_receive(None).await,
        Report::Data(40, b"x".to_vec())
    );
    assert_eq!(guest.try_receive(None).await, Report::Nothing);
    // A message that arrives after an empty try-receive still wakes a waiting
    // receive.
    let echo = native_echo(node.runtime());
    let ping = addressed(guest.pid, b"later");
    assert_eq!(
        guest.send_receive(echo, 1, &ping, None, None).await,
        Report::Data(2, ping)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_arrives_through_send_receive_and_try_receive() {
    let node = node(&[components::SEND_RECEIVE_PROBE]);
    let rt = node.runtime().clone();
    let mut guest = Guest::spawn(&node, WasmSpawnOptions::default());
    let silent = native_silent(&rt);
    let bytes = std::fs::read(components::SEND_RECEIVE_PROBE.path()).unwrap();

    // A send-receive without selector waiting for anything gets the request as the
    // typed variant; the probe then hands over.
    let reload = tokio::spawn({
        let node = node.clone();
        let bytes = bytes.clone();
        async move { node.reload("send-receive-probe", bytes).await }
    });
    assert_eq!(
        guest.send_receive(silent, 1, b"x", None, None).await,
        Report::Upgrade(2)
    );
    let report = reload.await.unwrap().unwrap();
    assert_eq!(report.upgrades.len(), 1);
    assert_eq!(report.upgrades[0].pid, guest.pid);
    assert_eq!(report.upgrades[0].outcome, UpgradeOutcome::Upgraded);

    // A try-receive without selector returns it once it is queued.
    let reload = tokio::spawn({
        let node = node.clone();
        async move { node.reload("send-receive-probe", bytes).await }
    });
    loop {
        match guest.try_receive(None).await {
            Report::Nothing => tokio::task::yield_now().await,
            Report::Upgrade(version) => {
                assert_eq!(version, 3);
                break;
            }
            other => panic!("expected nothing or the upgrade, got {other:?}"),
        }
    }
    let report = reload.await.unwrap().unwrap();
    assert_eq!(report.upgrades[0].outcome, UpgradeOutcome::Upgraded);
    assert_eq!(node.processes_of("send-receive-probe"), [(guest.pid, 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_to_a_dead_pid_times_out_and_an_oversized_one_fails_as_send_does() {
    let node = node(&[components::SEND_RECEIVE_PROBE]);
    let rt = node.runtime().clone();
    let (dead, ended) = rt.spawn_watched(Default::default(), |_ctx| async {});
    assert_eq!(ended.await, ExitReason::Normal);
    // Large enough for the probe's reports (an error's text), smaller than `big`.
    let mut guest = Guest::spawn(
        &node,
        WasmSpawnOptions {
            policy: Some(policy("[limits]\nmessage_size = 200\n")),
            ..WasmSpawnOptions::default()
        },
    );
    // The message is dropped, as in Erlang; the wait times out.
    assert_eq!(
        guest
            .send_receive(dead, 1, &addressed(guest.pid, b""), Some(50), None)
            .await,
        Report::Nothing
    );

    let echo = native_echo(&rt);
    guest.queue(50, b"keep");
    let big = addressed(guest.pid, &[0; 292]);
    let Report::Error(refused) = guest.send(echo, 1, &big).await else {
        panic!("an oversized send must fail");
    };
    assert!(refused.contains("300 bytes"), "{refused}");
    // The same error, and nothing received: the queued message is still there.
    assert_eq!(
        guest.send_receive(echo, 1, &big, None, None).await,
        Report::Error(refused)
    );
    assert_eq!(
        guest.try_receive(None).await,
        Report::Data(50, b"keep".to_vec())
    );
    // Within the limit both work.
    let small = addressed(guest.pid, b"ok");
    assert_eq!(guest.send(echo, 3, &small).await, Report::Done);
    assert_eq!(
        guest.send_receive(echo, 5, &small, None, Some(&[6])).await,
        Report::Data(6, small.clone())
    );
    assert_eq!(guest.try_receive(None).await, Report::Data(4, small));
}
