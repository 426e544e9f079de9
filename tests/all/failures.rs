use rusm_otp::ExitReason;
use rusm_wasm::WasmSpawnOptions;

use crate::components;
use crate::node;

async fn crash_reason(node: &rusm_wasm::WasmNode, mode: &str) -> ExitReason {
    let options = WasmSpawnOptions {
        init: mode.as_bytes().to_vec(),
        ..Default::default()
    };
    let (_pid, end) = node.spawn_watched("crasher", options).unwrap();
    end.await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_become_crashed_reasons_with_the_trap_message() {
    let node = node(&[components::CRASHER]);
    let ExitReason::Crashed(text) = crash_reason(&node, "unreachable").await else {
        panic!()
    };
    assert!(text.contains("unreachable"), "{text}");
    assert!(
        text.contains("wasm backtrace"),
        "the backtrace is included: {text}"
    );
    let ExitReason::Crashed(text) = crash_reason(&node, "panic").await else {
        panic!()
    };
    assert!(
        text.contains("unreachable"),
        "a guest panic aborts with unreachable: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_make_an_exit_reason_of_any_size() {
    // A reason is held by the node and lowered into every link and monitor: a guest
    // returning or exiting with 1 MiB of text gets it cut to the runtime's bound.
    let node = node(&[components::CRASHER]);
    for mode in ["long-error", "long-exit"] {
        let ExitReason::Custom(text) = crash_reason(&node, mode).await else {
            panic!("{mode} ends with a custom reason")
        };
        assert!(
            text.len() <= 4096,
            "{mode}: a reason of {} bytes",
            text.len()
        );
        assert!(
            text.ends_with(&format!("({} bytes, cut)", 1 << 20)),
            "{mode}: the reason says it was cut: ...{}",
            &text[text.len().saturating_sub(40)..]
        );
    }
}

/// A command whose core module has eight linear memories of one page each and grows
/// every one of them to 48 MiB: 384 MiB in all, each memory under a 64 MiB limit.
const EIGHT_MEMORIES_WAT: &str = r#"
    (component
      (core module $m
        (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) 
        (func (export "run") (result i32)
          (drop (memory.grow 0 (i32.const 767))) (drop (memory.grow 1 (i32.const 767))) (drop (memory.grow 2 (i32.const 767))) (drop (memory.grow 3 (i32.const 767))) (drop (memory.grow 4 (i32.const 767))) (drop (memory.grow 5 (i32.const 767))) (drop (memory.grow 6 (i32.const 767))) (drop (memory.grow 7 (i32.const 767))) 
          i32.const 0))
      (core instance $i (instantiate $m))
      (func $run (result (result)) (canon lift (core func $i "run")))
      (instance $r (export "run" (func $run)))
      (export "wasi:cli/run@0.2.0" (instance $r)))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_linear_memories_together_count_against_the_memory_limit() {
    let node = node(&[]);
    let wasm = wat::parse_str(EIGHT_MEMORIES_WAT).expect("the component assembles");
    node.load_bytes("eight-memories", &wasm)
        .expect("the component loads");
    // Under the default 64 MiB limit: the second memory's growth already passes it.
    let (_pid, end) = node
        .spawn_watched("eight-memories", WasmSpawnOptions::default())
        .unwrap();
    assert_eq!(end.await, ExitReason::OutOfMemory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_larger_than_the_bound_ends_the_guest_with_a_reason_naming_it() {
    let node = node(&[components::CRASHER]);
    let reason = crash_reason(&node, "huge-selector").await;
    let ExitReason::Crashed(text) = &reason else {
        panic!("a crash, not {reason}")
    };
    assert!(
        text.contains("a selector of 100000 tags and 0 monitors is larger than the 256 allowed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflow_is_a_crash() {
    let node = node(&[components::CRASHER]);
    let ExitReason::Crashed(text) = crash_reason(&node, "stack-overflow").await else {
        panic!()
    };
    assert!(text.contains("stack"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_exhaustion_is_out_of_memory() {
    let node = node(&[components::CRASHER]);
    assert_eq!(crash_reason(&node, "oom").await, ExitReason::OutOfMemory);
    // The node keeps working afterwards, and pool slots came back: many more crashes
    // than a tiny pool would allow still run.
    for _ in 0..3 {
        assert_eq!(crash_reason(&node, "oom").await, ExitReason::OutOfMemory);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_chosen_reasons_come_through() {
    let node = node(&[components::CRASHER]);
    assert_eq!(
        crash_reason(&node, "error").await,
        ExitReason::custom("crasher: requested error")
    );
    assert_eq!(
        crash_reason(&node, "exit-custom").await,
        ExitReason::custom("crasher: requested exit")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_slots_are_returned_after_crashes() {
    use rusm_wasm::{Allocator, PoolConfig, WasmConfig, WasmNode};
    let config = WasmConfig {
        allocator: Allocator::Pooling,
        pool: PoolConfig {
            total_component_instances: 4,
            total_core_instances: 40,
            total_memories: 8,
            total_tables: 40,
            total_stacks: 4,
            ..PoolConfig::default()
        },
        ..WasmConfig::default()
    };
    let node = WasmNode::new(rusm_otp::Runtime::new(), config).unwrap();
    node.load_file("crasher", components::CRASHER.path())
        .unwrap();
    // Far more crashes than pool slots: each must release its slot.
    for i in 0..20 {
        let mode = ["unreachable", "oom", "stack-overflow", "panic"][i % 4];
        let reason = crash_reason(&node, mode).await;
        assert!(
            matches!(reason, ExitReason::Crashed(_) | ExitReason::OutOfMemory),
            "{mode}: {reason:?}"
        );
    }
}

/// A node whose pool holds two running instances, with the given wait for a slot.
fn two_slot_node(wait: std::time::Duration) -> rusm_wasm::WasmNode {
    let pool = rusm_wasm::PoolConfig {
        total_component_instances: 2,
        total_memories: 2,
        total_stacks: 2,
        ..rusm_wasm::PoolConfig::default()
    };
    let config = rusm_wasm::WasmConfig {
        allocator: rusm_wasm::Allocator::Pooling,
        pool,
        instance_wait: wait,
        ..rusm_wasm::WasmConfig::default()
    };
    let node = rusm_wasm::WasmNode::new(rusm_otp::Runtime::new(), config).unwrap();
    node.load_file("echo", components::ECHO.path()).unwrap();
    node
}

/// When every pool slot is taken, a new process waits for one instead of failing:
/// it starts as soon as another instance ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_into_a_full_pool_waits_for_a_free_slot() {
    let node = two_slot_node(std::time::Duration::from_secs(30));
    let rt = node.runtime().clone();
    let (me, mut probe) = crate::probe(&rt);
    let first = node.spawn("echo", Vec::new()).unwrap();
    let second = node.spawn("echo", Vec::new()).unwrap();
    for pid in [first, second] {
        rt.send_tagged(pid, 1, crate::pid_bytes(me));
        assert_eq!(probe.data().await.0, 2);
    }
    let tagged = |which: &[u8]| [crate::pid_bytes(me), which.to_vec()].concat();
    let third = node.spawn("echo", Vec::new()).unwrap();
    rt.send_tagged(third, 1, tagged(b"third"));
    // While both slots are held it waits, alive, its message unread, while the
    // running echo answers what was sent after it.
    rt.send_tagged(second, 1, tagged(b"second"));
    assert_eq!(probe.data().await, (2, tagged(b"second")));
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), probe.next()).await;
    assert!(
        quiet.is_err(),
        "the third echo answered while the pool was full"
    );
    assert!(rt.is_alive(third));
    let mailbox = rt.mailbox_stats(third).expect("the third echo is alive");
    assert_eq!(
        (mailbox.len, mailbox.examined),
        (1, 0),
        "the third echo has not started receiving"
    );
    // Ending one lets it start.
    rt.kill(first);
    assert_eq!(probe.data().await, (2, tagged(b"third")));
    assert!(rt.is_alive(third));
}

/// A process that finds no free slot within the node's `instance_wait` ends with a
/// reason that says so (not a crash deep in the engine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_that_finds_no_slot_in_time_ends_with_a_clear_reason() {
    let node = two_slot_node(std::time::Duration::from_millis(200));
    let rt = node.runtime().clone();
    let (me, mut probe) = crate::probe(&rt);
    // Both slots are held once both actors have answered.
    for _ in 0..2 {
        let pid = node.spawn("echo", Vec::new()).unwrap();
        rt.send_tagged(pid, 1, crate::pid_bytes(me));
        assert_eq!(probe.data().await.0, 2);
    }
    let (_pid, end) = node
        .spawn_watched("echo", WasmSpawnOptions::default())
        .unwrap();
    let reason = tokio::time::timeout(std::time::Duration::from_secs(30), end)
        .await
        .expect("the third process ends within 30 s");
    let ExitReason::Custom(text) = &reason else {
        panic!("expected a custom reason, got {reason}");
    };
    assert!(
        text.contains("no free instance slot within 200ms")
            && text.contains("total_component_instances 2"),
        "{text}"
    );
}
