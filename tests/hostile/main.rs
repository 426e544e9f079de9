//! The attacks of a hostile guest on the host's memory, each at the size that once
//! grew the host by hundreds of megabytes, run beside a real node and measured in
//! this process: the host's resident memory (`/proc/self/statm`) is read before the
//! attack and again while the attacker holds whatever the host kept for it (or after
//! it was ended for trying), and must grow by less than a stated bound.
//!
//! The tests of this binary take turns ([`one_at_a_time`]), so no other test's
//! memory is counted. `connections.rs` holds a thousand WebSocket connections open
//! the same way.

mod connections;

use std::sync::Arc;
use std::time::Duration;

use rusm_otp::{ExitReason, Message, Pid, Runtime, Watch};
use rusm_policy::Policy;
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const MIB: u64 = 1 << 20;

/// The longest any step waits.
const WAIT: Duration = Duration::from_secs(60);

const FLOOD: u8 = 1;
const TIMERS: u8 = 2;
const MONITORS: u8 = 3;
const SEND: u8 = 4;

/// Held by each test for its whole run.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// This process's resident memory, in bytes: `/proc/self/statm`'s second field (in
/// pages) times the page size (`/proc/self/smaps`' `KernelPageSize`).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm reads");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm has a resident field");
    pages * page_size()
}

fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps reads");
        smaps
            .lines()
            .find_map(|line| line.strip_prefix("KernelPageSize:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("smaps names the page size")
    })
}

/// Fails unless resident memory grew by less than `bound` bytes since `before`.
#[track_caller]
fn assert_grew_less_than(before: u64, bound: u64, what: &str) {
    let now = resident();
    let grown = now.saturating_sub(before);
    assert!(
        grown < bound,
        "{what}: the host's resident memory grew by {} MiB ({} -> {} MiB), past the bound of {} MiB",
        grown / MIB,
        before / MIB,
        now / MIB,
        bound / MIB
    );
}

fn node(components: &[&str]) -> WasmNode {
    let config = WasmConfig {
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmtime-cache")),
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config).expect("the wasm node starts");
    for name in components {
        let path = rusm_e2e::component(name).unwrap_or_else(|| panic!("no component {name}"));
        node.load_file(name, path)
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
    node
}

fn policy(toml: &str) -> Arc<Policy> {
    Arc::new(
        Policy::parse(toml, std::path::Path::new("test-policy.toml"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A native process forwarding every data message it receives to the test.
fn reporter(rt: &Runtime) -> (Pid, UnboundedReceiver<(u64, Vec<u8>)>) {
    let (tx, rx) = unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await {
                let payload = d.payload.downcast::<Vec<u8>>().unwrap_or_default();
                if tx.send((d.tag, payload)).is_err() {
                    return;
                }
            }
        }
    });
    (pid, rx)
}

async fn next(reports: &mut UnboundedReceiver<(u64, Vec<u8>)>) -> (u64, Vec<u8>) {
    tokio::time::timeout(WAIT, reports.recv())
        .await
        .expect("a report in time")
        .expect("the reporter lives")
}

async fn ended(end: Watch) -> ExitReason {
    tokio::time::timeout(WAIT, end)
        .await
        .expect("the process ends in time")
}

/// The `hostile` component's init: `reporter`, `op`, then `fields`.
fn init(reporter: Pid, op: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut init = reporter.as_raw().to_le_bytes().to_vec();
    init.push(op);
    for field in fields {
        init.extend_from_slice(field);
    }
    init
}

fn spawn(node: &WasmNode, init: Vec<u8>, under: &Arc<Policy>) -> (Pid, Watch) {
    node.spawn_watched(
        "hostile",
        WasmSpawnOptions {
            init,
            policy: Some(under.clone()),
            ..WasmSpawnOptions::default()
        },
    )
    .expect("the attacker spawns")
}

/// The report's leading count and the error text after it.
fn progress(payload: &[u8]) -> (u32, String) {
    let count = u32::from_le_bytes(payload[..4].try_into().unwrap());
    (count, String::from_utf8(payload[4..].to_vec()).unwrap())
}

/// A node with `hostile` loaded, warmed up by one attacker run to its end (so the
/// compiled code and the allocator's first chunk are resident before measuring).
async fn warm_node(components: &[&str]) -> (WasmNode, Pid, UnboundedReceiver<(u64, Vec<u8>)>) {
    let node = node(components);
    let (me, mut reports) = reporter(node.runtime());
    let (pid, end) = spawn(
        &node,
        init(
            me,
            SEND,
            &[&me.as_raw().to_le_bytes(), &0_u32.to_le_bytes()],
        ),
        &policy(""),
    );
    next(&mut reports).await;
    next(&mut reports).await;
    node.runtime().send_tagged(pid, 0, b"stop".to_vec());
    assert_eq!(ended(end).await, ExitReason::Normal);
    (node, me, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_messages_of_16_mib_to_itself_hold_at_most_the_mailbox_bound() {
    let _turn = one_at_a_time().await;
    let (node, me, mut reports) = warm_node(&["hostile"]).await;
    let before = resident();
    // Under the default policy (64 MiB of memory, so 64 MiB of mailbox): 960 MiB sent.
    let (pid, end) = spawn(
        &node,
        init(
            me,
            FLOOD,
            &[&(16_u32 << 20).to_le_bytes(), &60_u32.to_le_bytes()],
        ),
        &policy(""),
    );
    let (tag, payload) = next(&mut reports).await;
    assert_eq!(tag, 1);
    // Every send "succeeds" (a full mailbox drops, as Erlang's send never fails) ...
    assert_eq!(progress(&payload), (60, String::new()));
    // ... but only what fits in 64 MiB is kept, and the rest is counted.
    assert_grew_less_than(before, 160 * MIB, "60 x 16 MiB to itself");
    let stats = node
        .runtime()
        .mailbox_stats(pid)
        .expect("the attacker holds");
    assert_eq!(stats.len, 4);
    assert_eq!(stats.dropped, 56);
    // Its full mailbox would drop a `stop` too.
    node.runtime().kill(pid);
    assert_eq!(ended(end).await, ExitReason::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_one_hour_timers_of_1_kib_stop_at_the_timer_limit() {
    let _turn = one_at_a_time().await;
    let (node, me, mut reports) = warm_node(&["hostile"]).await;
    let before = resident();
    let (pid, end) = spawn(
        &node,
        init(
            me,
            TIMERS,
            &[
                &1024_u32.to_le_bytes(),
                &200_000_u32.to_le_bytes(),
                &3_600_000_u64.to_le_bytes(),
            ],
        ),
        &policy(""),
    );
    let (tag, payload) = next(&mut reports).await;
    assert_eq!(tag, 1);
    assert_grew_less_than(before, 16 * MIB, "200,000 timers of 1 KiB");
    let (set, error) = progress(&payload);
    assert_eq!(set, 1_000);
    assert!(error.contains("at most 1000 waiting timers"), "{error}");
    node.runtime().send_tagged(pid, 0, b"stop".to_vec());
    assert_eq!(ended(end).await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_monitors_of_a_dead_process_end_the_attacker_at_the_monitor_limit() {
    let _turn = one_at_a_time().await;
    let (node, me, mut reports) = warm_node(&["hostile"]).await;
    let dead = node.runtime().spawn(|_ctx| async {});
    ended(node.runtime().watch(dead)).await;
    let before = resident();
    let (pid, end) = spawn(
        &node,
        init(
            me,
            MONITORS,
            &[&dead.as_raw().to_le_bytes(), &2_000_000_u32.to_le_bytes()],
        ),
        &policy(""),
    );
    // Each monitor of the dead pid is a `down` waiting in the mailbox: past the
    // default 10,000 the attacker traps. Had it held them all, it would report.
    let outcome = tokio::select! {
        reason = ended(end) => reason,
        (_, payload) = next(&mut reports) => {
            assert_grew_less_than(before, 16 * MIB, "2,000,000 monitors held");
            node.runtime().send_tagged(pid, 0, b"stop".to_vec());
            panic!("the attacker held {} monitors", progress(&payload).0)
        }
    };
    let ExitReason::Crashed(text) = &outcome else {
        panic!("the attacker ends with a crash, not {outcome}")
    };
    assert!(
        text.contains("the policy allows at most 10000 monitors"),
        "{text}"
    );
    assert_grew_less_than(before, 16 * MIB, "2,000,000 monitors of a dead pid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_20_mib_to_a_16_mib_victim_are_refused_and_it_still_answers() {
    let _turn = one_at_a_time().await;
    let (node, me, mut reports) = warm_node(&["hostile", "counter"]).await;
    // The victim: a registered counter with a 16 MiB memory policy, under a
    // supervisor-like watch: four deaths would spend an app's restart intensity.
    let victim_policy =
        policy("[process]\nregister = [\"counter\"]\n[limits]\nmemory = \"16 MiB\"\n");
    let (victim, victim_end) = node
        .spawn_watched(
            "counter",
            WasmSpawnOptions {
                init: b"counter".to_vec(),
                policy: Some(victim_policy),
                ..WasmSpawnOptions::default()
            },
        )
        .unwrap();
    // Once it answers a call it has registered.
    let get = |reply: u64| {
        let mut call = me.as_raw().to_le_bytes().to_vec();
        call.extend(reply.to_le_bytes());
        call
    };
    node.runtime().send_tagged(victim, 2, get(6));
    let first = tokio::select! {
        reason = ended(node.runtime().watch(victim)) => panic!("the victim ended with {reason}"),
        first = next(&mut reports) => first,
    };
    assert_eq!(first, (6, 0_i64.to_le_bytes().to_vec()));
    let before = resident();
    for _ in 0..4 {
        let target = node
            .runtime()
            .whereis("counter")
            .expect("the counter is registered");
        assert_eq!(target, victim);
        let (pid, end) = spawn(
            &node,
            init(
                me,
                SEND,
                &[
                    &target.as_raw().to_le_bytes(),
                    &(20_u32 << 20).to_le_bytes(),
                ],
            ),
            &policy(""),
        );
        let (_, payload) = next(&mut reports).await;
        let refused = String::from_utf8(payload).unwrap();
        assert!(
            refused.contains(&format!(
                "a message of 20971520 bytes is larger than the 4194304 bytes {victim} accepts"
            )),
            "{refused}"
        );
        // The sender's own copy in its memory, and the host's copy of it, which the
        // allocator may keep for reuse once the send is refused.
        assert_grew_less_than(before, 96 * MIB, "a 20 MiB message held by its sender");
        node.runtime().send_tagged(pid, 0, b"stop".to_vec());
        assert_eq!(ended(end).await, ExitReason::Normal);
    }
    // The victim still answers: `get` (tag 2) through a call envelope.
    node.runtime().send_tagged(victim, 2, get(7));
    assert_eq!(next(&mut reports).await, (7, 0_i64.to_le_bytes().to_vec()));
    node.runtime().send_tagged(victim, 3, get(8));
    assert_eq!(next(&mut reports).await.0, 8);
    assert_eq!(ended(victim_end).await, ExitReason::Normal);
}
