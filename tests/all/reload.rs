//! Hot reload and in-place upgrade: new versions of a component become current only
//! once they load, running processes move to them under the same pid with their
//! mailbox, links, monitors and state, and those that do not cooperate are ended with
//! `upgrade-timeout` for their supervisor to restart on the new code.

use std::time::Duration;

use rusm_otp::{ExitReason, Message, Pid, Runtime};
use rusm_wasm::{
    LoadError, ProcessUpgrade, ReloadError, ReloadEvent, ReloadEventKind, UpgradeOutcome, WasmNode,
    WasmSpawnOptions,
};
use tokio::sync::broadcast;

use crate::components;
use crate::{Probe, node, pid_bytes, policy, probe};
use rusm_e2e::Component;

const INC: u64 = 1;
const GET: u64 = 2;
const VERSION: u64 = 4;

fn bytes_of(component: Component) -> Vec<u8> {
    std::fs::read(component.path()).unwrap()
}

/// Makes `counter`-protocol calls from a native process and checks each reply tag.
struct Caller {
    rt: Runtime,
    me: Pid,
    probe: Probe,
    next_tag: u64,
}

impl Caller {
    fn new(rt: &Runtime) -> Caller {
        let (me, probe) = probe(rt);
        Caller {
            rt: rt.clone(),
            me,
            probe,
            next_tag: 1000,
        }
    }

    fn envelope(&mut self, body: &[u8]) -> (u64, Vec<u8>) {
        self.next_tag += 1;
        let mut out = pid_bytes(self.me);
        out.extend(self.next_tag.to_le_bytes());
        out.extend(body);
        (self.next_tag, out)
    }

    async fn call(&mut self, to: Pid, tag: u64, body: &[u8]) -> Vec<u8> {
        let (reply_tag, envelope) = self.envelope(body);
        self.rt.send_tagged(to, tag, envelope);
        let (tag, payload) = self.probe.data().await;
        assert_eq!(tag, reply_tag, "replies come in order");
        payload
    }

    async fn inc(&mut self, to: Pid, n: i64) -> i64 {
        i64::from_le_bytes(
            self.call(to, INC, &n.to_le_bytes())
                .await
                .try_into()
                .unwrap(),
        )
    }

    async fn get(&mut self, to: Pid) -> i64 {
        i64::from_le_bytes(self.call(to, GET, b"").await.try_into().unwrap())
    }

    async fn version(&mut self, to: Pid) -> u64 {
        u64::from_le_bytes(self.call(to, VERSION, b"").await.try_into().unwrap())
    }
}

async fn next_event(events: &mut broadcast::Receiver<ReloadEvent>) -> ReloadEvent {
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("an event within 30 s")
        .expect("no event was missed")
}

/// A short description of an event, for comparing sequences.
fn describe(event: &ReloadEvent) -> String {
    let kind = match &event.kind {
        ReloadEventKind::Preparing => "preparing".to_owned(),
        ReloadEventKind::Reloaded => "reloaded".to_owned(),
        ReloadEventKind::Failed(_) => "failed".to_owned(),
        ReloadEventKind::Upgraded { pid } => format!("upgraded {pid}"),
        ReloadEventKind::UpgradeTimedOut { pid } => format!("timed-out {pid}"),
        other => format!("{other:?}"),
    };
    format!("{} v{} {kind}", event.component, event.version)
}

async fn events_so_far(events: &mut broadcast::Receiver<ReloadEvent>, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..count {
        seen.push(describe(&next_event(events).await));
    }
    assert!(
        events.try_recv().is_err(),
        "no more events than expected: {seen:?}"
    );
    seen
}

/// A native process that links to and monitors `target`, trapping exits, and forwards
/// what it receives.
fn watcher(rt: &Runtime, target: Pid) -> Probe {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    rt.spawn(move |ctx| async move {
        ctx.trap_exit(true);
        ctx.link(target).expect("the target is alive");
        let monitor = ctx.monitor(target);
        let _ = ready_tx.send(monitor);
        loop {
            if tx.send(ctx.recv().await).is_err() {
                return;
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the watcher is linked");
    Probe(rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_keeps_its_value_pid_name_links_and_monitors_across_an_upgrade() {
    let node = node(&[components::COUNTER]);
    let rt = node.runtime().clone();
    let mut caller = Caller::new(&rt);
    let mut events = node.reload_events();
    let options = WasmSpawnOptions {
        init: b"upgraded-counter".to_vec(),
        policy: Some(policy("[process]\nregister = [\"upgraded-counter\"]\n")),
        ..Default::default()
    };
    let (counter, end) = node.spawn_watched("counter", options).unwrap();
    for n in 1..=5 {
        caller.inc(counter, n).await;
    }
    assert_eq!(caller.get(counter).await, 15);
    assert_eq!(caller.version(counter).await, 1);
    let mut watcher = watcher(&rt, counter);
    assert_eq!(node.component_version("counter"), 1);
    assert_eq!(node.processes_of("counter"), [(counter, 1)]);

    let report = node
        .reload("counter", bytes_of(components::COUNTER_V2))
        .await
        .unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(
        report.upgrades,
        [ProcessUpgrade {
            component: "counter".into(),
            pid: counter,
            outcome: UpgradeOutcome::Upgraded,
        }]
    );
    assert_eq!(
        events_so_far(&mut events, 3).await,
        [
            "counter v1 preparing".to_owned(),
            "counter v2 reloaded".to_owned(),
            format!("counter v2 upgraded {counter}"),
        ]
    );

    // Same pid, new code, old value; the name is still held.
    assert_eq!(caller.version(counter).await, 2);
    assert_eq!(caller.get(counter).await, 15);
    assert_eq!(caller.inc(counter, 1).await, 16);
    assert_eq!(rt.whereis("upgraded-counter"), Some(counter));
    assert_eq!(node.processes_of("counter"), [(counter, 2)]);
    assert_eq!(node.component_version("counter"), 2);

    // New spawns run the new version.
    let fresh = node.spawn("counter", Vec::new()).unwrap();
    assert_eq!(caller.version(fresh).await, 2);
    assert_eq!(caller.get(fresh).await, 0);

    // The link and the monitor made before the upgrade still fire.
    rt.kill(counter);
    assert_eq!(end.await, ExitReason::Killed);
    let mut saw_exit = false;
    let mut saw_down = false;
    while !(saw_exit && saw_down) {
        match watcher.next().await {
            Message::Exit(signal) => {
                assert_eq!((signal.from, signal.reason), (counter, ExitReason::Killed));
                saw_exit = true;
            }
            Message::Down(down) => {
                assert_eq!((down.pid, down.reason), (counter, ExitReason::Killed));
                saw_down = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(node.processes_of("counter"), [(fresh, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_during_an_upgrade_are_all_processed() {
    let node = node(&[components::COUNTER]);
    let rt = node.runtime().clone();
    let mut caller = Caller::new(&rt);
    let counter = node.spawn("counter", Vec::new()).unwrap();
    assert_eq!(caller.version(counter).await, 1);

    // Requests are queued before, while and after the upgrade is under way.
    let mut reply_tags = Vec::new();
    for _ in 0..100 {
        let (tag, envelope) = caller.envelope(&1i64.to_le_bytes());
        rt.send_tagged(counter, INC, envelope);
        reply_tags.push(tag);
    }
    let reloading = {
        let node = node.clone();
        tokio::spawn(async move {
            node.reload("counter", bytes_of(components::COUNTER_V2))
                .await
        })
    };
    for _ in 0..100 {
        let (tag, envelope) = caller.envelope(&1i64.to_le_bytes());
        rt.send_tagged(counter, INC, envelope);
        reply_tags.push(tag);
    }
    let report = reloading.await.unwrap().unwrap();
    assert_eq!(report.upgrades[0].outcome, UpgradeOutcome::Upgraded);
    for _ in 0..100 {
        let (tag, envelope) = caller.envelope(&1i64.to_le_bytes());
        rt.send_tagged(counter, INC, envelope);
        reply_tags.push(tag);
    }

    // Every request got its reply, in order, each one count higher.
    for (expected, reply_tag) in (1i64..).zip(reply_tags) {
        let (tag, payload) = caller.probe.data().await;
        assert_eq!(tag, reply_tag);
        assert_eq!(payload, expected.to_le_bytes());
    }
    assert_eq!(caller.get(counter).await, 300);
    assert_eq!(caller.version(counter).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_keeps_the_old_version_serving() {
    let node = node(&[components::COUNTER]);
    let rt = node.runtime().clone();
    let mut caller = Caller::new(&rt);
    let mut events = node.reload_events();
    let counter = node.spawn("counter", Vec::new()).unwrap();
    caller.inc(counter, 42).await;

    let unsatisfiable = wat::parse_str(crate::UNSATISFIABLE_COMMAND_WAT).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not wasm at all".to_vec()),
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        ("no entry point", wat::parse_str("(component)").unwrap()),
        ("unsatisfiable import", unsatisfiable),
        ("a command", bytes_of(components::HELLO_CLI)),
    ];
    for (case, bytes) in cases {
        let err = node.reload("counter", bytes).await.unwrap_err();
        let expected = match case {
            "garbage" => matches!(err.load_error(), Some(LoadError::NotWasm { .. })),
            "core module" => matches!(err.load_error(), Some(LoadError::CoreModule { .. })),
            "no entry point" => matches!(err.load_error(), Some(LoadError::NoEntryPoint { .. })),
            "unsatisfiable import" => {
                matches!(err.load_error(), Some(LoadError::UnsatisfiedImport { .. }))
                    && err.to_string().contains("acme:missing/thing@1.0.0")
            }
            _ => {
                matches!(err, ReloadError::KindChanged { .. })
                    && err.to_string().contains("cannot change the kind")
            }
        };
        assert!(expected, "{case}: {err}");

        let preparing = next_event(&mut events).await;
        assert!(
            matches!(preparing.kind, ReloadEventKind::Preparing),
            "{case}"
        );
        let failed = next_event(&mut events).await;
        let ReloadEventKind::Failed(cause) = &failed.kind else {
            panic!("{case}: expected a failure event, got {failed:?}");
        };
        assert_eq!(cause.to_string(), err.to_string(), "{case}");
        assert_eq!((failed.component.as_str(), failed.version), ("counter", 1));

        // The old version still serves: the running process and new spawns.
        assert_eq!(node.component_version("counter"), 1, "{case}");
        assert_eq!(caller.version(counter).await, 1, "{case}");
        assert_eq!(caller.get(counter).await, 42, "{case}");
        let fresh = node.spawn("counter", Vec::new()).unwrap();
        assert_eq!(caller.version(fresh).await, 1, "{case}");
        rt.kill(fresh);
    }
    assert!(
        events.try_recv().is_err(),
        "no process was asked to upgrade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_ignores_upgrades_is_restarted_in_place_by_the_sdk() {
    // `echo` never looks at upgrades: the SDK hands over an empty state for it, and it
    // keeps its pid and answers on the new code.
    let node = node(&[components::ECHO]);
    let rt = node.runtime().clone();
    let (me, mut probe) = probe(&rt);
    let echo = node.spawn("echo", Vec::new()).unwrap();
    rt.send_tagged(echo, 10, pid_bytes(me));
    assert_eq!(probe.data().await, (11, pid_bytes(me)));

    let report = node
        .reload("echo", bytes_of(components::ECHO))
        .await
        .unwrap();
    assert_eq!(report.upgrades[0].pid, echo);
    assert_eq!(report.upgrades[0].outcome, UpgradeOutcome::Upgraded);
    assert_eq!(node.processes_of("echo"), [(echo, 2)]);
    rt.send_tagged(echo, 20, pid_bytes(me));
    assert_eq!(probe.data().await, (21, pid_bytes(me)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinner_is_ended_with_upgrade_timeout_and_restarted_on_the_new_version() {
    let node = node(&[components::SUPERVISOR, components::SPINNER]);
    node.set_upgrade_grace(Duration::from_millis(200));
    let rt = node.runtime().clone();
    let mut events = node.reload_events();
    let (reporter, mut reports) = probe(&rt);
    let (child_reporter, mut child_reports) = probe(&rt);
    let mut init = pid_bytes(reporter);
    init.extend(3u32.to_le_bytes()); // max restarts
    init.push(0); // transient
    init.extend((b"spinner".len() as u32).to_le_bytes());
    init.extend(b"spinner");
    init.extend(8u32.to_le_bytes());
    init.extend(pid_bytes(child_reporter));
    let options = WasmSpawnOptions {
        init,
        policy: Some(policy("[process]\nspawn = [{ component = \"spinner\" }]\n")),
        ..Default::default()
    };
    let (_supervisor, end) = node.spawn_watched("supervisor", options).unwrap();
    let (tag, payload) = reports.data().await;
    assert_eq!(tag, 1, "started");
    let spinner = Pid::from_raw(u64::from_le_bytes(payload.try_into().unwrap()));
    assert_eq!(child_reports.data().await, (1, b"spinning".to_vec()));

    // The new "spinner" is the `trivial` actor: it reports with an empty payload and
    // returns.
    let report = node
        .reload("spinner", bytes_of(components::TRIVIAL))
        .await
        .unwrap();
    assert_eq!(
        report.upgrades,
        [ProcessUpgrade {
            component: "spinner".into(),
            pid: spinner,
            outcome: UpgradeOutcome::TimedOut,
        }]
    );
    assert_eq!(
        events_so_far(&mut events, 3).await,
        [
            "spinner v1 preparing".to_owned(),
            "spinner v2 reloaded".to_owned(),
            format!("spinner v2 timed-out {spinner}"),
        ]
    );

    // The supervisor saw `upgrade-timeout` and restarted the child on the new code.
    let mut down_reasons = Vec::new();
    let mut restarted = None;
    while restarted.is_none() {
        let (tag, payload) = reports.data().await;
        match tag {
            2 => {} // the exit signal, in either order with the down
            3 => {
                assert_eq!(payload[..8], pid_bytes(spinner));
                down_reasons.push(String::from_utf8(payload[8..].to_vec()).unwrap());
            }
            1 => {
                restarted = Some(Pid::from_raw(u64::from_le_bytes(
                    payload.try_into().unwrap(),
                )))
            }
            other => panic!("unexpected report {other}"),
        }
    }
    assert_eq!(down_reasons, ["upgrade-timeout"]);
    assert_ne!(restarted, Some(spinner));
    assert_eq!(
        child_reports.data().await,
        (1, Vec::new()),
        "the new version runs"
    );
    // The new version returns normally, so the transient supervisor stops.
    loop {
        let (tag, payload) = reports.data().await;
        match tag {
            2 => {}
            3 => assert_eq!(&payload[8..], b"normal"),
            6 => break,
            other => panic!("unexpected report {other}"),
        }
    }
    assert_eq!(end.await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reloads_of_one_name_are_serialised() {
    let node = node(&[components::COUNTER]);
    let rt = node.runtime().clone();
    let mut caller = Caller::new(&rt);
    let mut events = node.reload_events();
    let counter = node.spawn("counter", Vec::new()).unwrap();
    caller.inc(counter, 7).await;

    let sources = [
        "counter-v2",
        "counter",
        "garbage",
        "counter-v2",
        "counter",
        "counter-v2",
    ];
    let tasks: Vec<_> = sources
        .iter()
        .map(|source| {
            let node = node.clone();
            let bytes = match *source {
                "garbage" => b"garbage".to_vec(),
                "counter" => bytes_of(components::COUNTER),
                _ => bytes_of(components::COUNTER_V2),
            };
            tokio::spawn(async move { node.reload("counter", bytes).await })
        })
        .collect();
    let mut succeeded = Vec::new();
    for (source, task) in sources.iter().zip(tasks) {
        match task.await.unwrap() {
            Ok(report) => {
                assert_ne!(*source, "garbage");
                assert_eq!(report.upgrades.len(), 1);
                assert_eq!(report.upgrades[0].outcome, UpgradeOutcome::Upgraded);
                succeeded.push((report.version, *source));
            }
            Err(err) => {
                assert_eq!(*source, "garbage");
                assert!(
                    matches!(err.load_error(), Some(LoadError::NotWasm { .. })),
                    "{err}"
                );
            }
        }
    }
    succeeded.sort();
    let versions: Vec<u64> = succeeded.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        [2, 3, 4, 5, 6],
        "each success made the next version"
    );
    assert_eq!(node.component_version("counter"), 6);

    // Each reload ran alone: preparing, then its outcome (and, on success, the upgrade
    // of the one counter) before the next one began.
    let mut live = 1;
    for _ in 0..sources.len() {
        let preparing = next_event(&mut events).await;
        assert!(
            matches!(preparing.kind, ReloadEventKind::Preparing),
            "{preparing:?}"
        );
        assert_eq!(preparing.version, live);
        let outcome = next_event(&mut events).await;
        match outcome.kind {
            ReloadEventKind::Reloaded => {
                assert_eq!(outcome.version, live + 1);
                live += 1;
                let upgraded = next_event(&mut events).await;
                assert_eq!(
                    describe(&upgraded),
                    format!("counter v{live} upgraded {counter}")
                );
            }
            ReloadEventKind::Failed(_) => assert_eq!(outcome.version, live),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(events.try_recv().is_err());

    // The last version to succeed is what runs, with the value carried all along.
    let last_source = succeeded.last().unwrap().1;
    let expected_version = if last_source == "counter" { 1 } else { 2 };
    assert_eq!(caller.version(counter).await, expected_version);
    assert_eq!(caller.get(counter).await, 7);
}

async fn spawn_counter_at(
    node: &WasmNode,
    caller: &mut Caller,
    component: &str,
    value: i64,
) -> Pid {
    let pid = node.spawn(component, Vec::new()).unwrap();
    caller.inc(pid, value).await;
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_are_upgraded_after_what_they_depend_on_in_order() {
    // Four names for the counter: web depends on cache and db, cache on db; other on
    // nothing.
    let node = node(&[]);
    for name in ["db", "cache", "web", "other"] {
        node.load_file(name, components::COUNTER.path()).unwrap();
    }
    node.set_dependencies("web", &["cache", "db"]).unwrap();
    node.set_dependencies("cache", &["db"]).unwrap();
    assert_eq!(node.upgrade_order("db"), ["db", "cache", "web"]);
    let rt = node.runtime().clone();
    let mut caller = Caller::new(&rt);
    // Spawned in the reverse order, so pid order is not dependency order.
    let web = spawn_counter_at(&node, &mut caller, "web", 3).await;
    let cache = spawn_counter_at(&node, &mut caller, "cache", 2).await;
    let db = spawn_counter_at(&node, &mut caller, "db", 1).await;
    let other = spawn_counter_at(&node, &mut caller, "other", 4).await;
    let mut events = node.reload_events();

    let report = node
        .reload("db", bytes_of(components::COUNTER_V2))
        .await
        .unwrap();
    let order: Vec<(&str, Pid, UpgradeOutcome)> = report
        .upgrades
        .iter()
        .map(|u| (u.component.as_str(), u.pid, u.outcome))
        .collect();
    assert_eq!(
        order,
        [
            ("db", db, UpgradeOutcome::Upgraded),
            ("cache", cache, UpgradeOutcome::Upgraded),
            ("web", web, UpgradeOutcome::Upgraded),
        ]
    );
    assert_eq!(
        events_so_far(&mut events, 5).await,
        [
            "db v1 preparing".to_owned(),
            "db v2 reloaded".to_owned(),
            format!("db v2 upgraded {db}"),
            format!("cache v1 upgraded {cache}"),
            format!("web v1 upgraded {web}"),
        ]
    );
    // db runs the new code; the dependents restarted in place on their own (unchanged)
    // version; each kept its value; the unrelated one was not touched.
    assert_eq!(caller.version(db).await, 2);
    assert_eq!(caller.version(cache).await, 1);
    assert_eq!(caller.version(web).await, 1);
    for (pid, value) in [(db, 1), (cache, 2), (web, 3), (other, 4)] {
        assert_eq!(caller.get(pid).await, value);
    }

    // Reloading a dependent does not touch what it depends on.
    let report = node
        .reload("cache", bytes_of(components::COUNTER_V2))
        .await
        .unwrap();
    let touched: Vec<&str> = report
        .upgrades
        .iter()
        .map(|u| u.component.as_str())
        .collect();
    assert_eq!(touched, ["cache", "web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cycle_is_rejected_when_declared() {
    let node = node(&[]);
    node.set_dependencies("a", &["b"]).unwrap();
    node.set_dependencies("b", &["c"]).unwrap();
    let err = node.set_dependencies("c", &["a"]).unwrap_err();
    assert_eq!(err.cycle, ["c", "a", "b", "c"]);
    assert!(err.to_string().contains("c -> a -> b -> c"), "{err}");
    let err = node.set_dependencies("d", &["d"]).unwrap_err();
    assert_eq!(err.cycle, ["d", "d"]);
    // Nothing changed: c still depends on nothing.
    assert_eq!(node.upgrade_order("c"), ["c", "b", "a"]);
    assert_eq!(node.upgrade_order("a"), ["a"]);
}

/// A request body fed from a channel, so a request can stay in flight.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = rusm_wasm::HttpBodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

/// Reloading `name` with `component` is refused: it serves another wasi:http version
/// (`versions`: the live one's, the refused one's).
async fn refused_http_version(
    node: &rusm_wasm::WasmNode,
    name: &str,
    component: Component,
    versions: (&str, &str),
) {
    let err = node.reload(name, bytes_of(component)).await.unwrap_err();
    match &err {
        ReloadError::HttpVersionChanged { from, to, .. } => {
            assert_eq!((*from, *to), versions, "{err}");
        }
        other => panic!("{name}: not refused for its wasi:http version: {other}"),
    }
}

/// The body of `GET /hello` served by a fresh instance of `web`.
async fn get_hello(node: &rusm_wasm::WasmNode) -> Vec<u8> {
    let request = hyper::Request::builder()
        .uri("http://rusm.test/hello")
        .body(ChannelBody(tokio::sync::mpsc::unbounded_channel().1))
        .unwrap();
    let mut invocation = node
        .serve_http("web", request, rusm_wasm::HttpRequestOptions::default())
        .unwrap();
    whole_body(invocation.response().await.unwrap()).await
}

async fn whole_body(response: hyper::Response<rusm_wasm::HttpResponseBody>) -> Vec<u8> {
    use http_body_util::BodyExt;
    tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .expect("the body within 30 s")
        .expect("the whole body")
        .to_bytes()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_in_flight_finish_on_the_old_version_and_new_ones_use_the_new() {
    let node = node(&[]);
    node.load_file("web", components::HTTP_ECHO.path()).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(bytes::Bytes::from_static(b"sent before, "))
        .unwrap();
    let request = hyper::Request::builder()
        .method("POST")
        .uri("http://rusm.test/echo")
        .body(ChannelBody(rx))
        .unwrap();
    let mut in_flight = node
        .serve_http("web", request, rusm_wasm::HttpRequestOptions::default())
        .unwrap();
    let old_response = tokio::time::timeout(Duration::from_secs(30), in_flight.response())
        .await
        .expect("the echo answers at once")
        .unwrap();
    assert_eq!(old_response.headers()["x-echo-method"], "POST");

    // Handlers are not upgraded: the report names no process.
    let report = node
        .reload("web", bytes_of(components::HTTP_HELLO))
        .await
        .unwrap();
    assert_eq!((report.version, report.upgrades.len()), (2, 0));

    assert_eq!(get_hello(&node).await, b"hello from rusm\n");

    // The request in flight still runs the echo it started on.
    tx.send(bytes::Bytes::from_static(b"sent after")).unwrap();
    drop(tx);
    assert_eq!(whole_body(old_response).await, b"sent before, sent after");

    // An actor cannot replace a handler.
    let err = node
        .reload("web", bytes_of(components::COUNTER))
        .await
        .unwrap_err();
    assert!(matches!(err, ReloadError::KindChanged { .. }), "{err}");

    // Nor can a wasi:http 0.3 service replace a 0.2 handler: this handler's requests
    // are served a fresh instance each, which a 0.3 service is not. The refused version
    // leaves the live one serving.
    refused_http_version(&node, "web", components::HTTP_P3, ("0.2", "0.3")).await;
    assert!(!node.is_http_service("web"));
    assert_eq!(get_hello(&node).await, b"hello from rusm\n");

    // And the other way: a 0.3 service is not replaced by a 0.2 handler.
    node.load_file("service", components::HTTP_P3.path())
        .unwrap();
    refused_http_version(&node, "service", components::HTTP_HELLO, ("0.3", "0.2")).await;
    assert!(node.is_http_service("service"));
}
