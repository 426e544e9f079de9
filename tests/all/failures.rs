use rusm_otp::ExitReason;
use rusm_wasm::WasmSpawnOptions;

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
    let node = node(&["crasher"]);
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
async fn stack_overflow_is_a_crash() {
    let node = node(&["crasher"]);
    let ExitReason::Crashed(text) = crash_reason(&node, "stack-overflow").await else {
        panic!()
    };
    assert!(text.contains("stack"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_exhaustion_is_out_of_memory() {
    let node = node(&["crasher"]);
    assert_eq!(crash_reason(&node, "oom").await, ExitReason::OutOfMemory);
    // The node keeps working afterwards, and pool slots came back: many more crashes
    // than a tiny pool would allow still run.
    for _ in 0..3 {
        assert_eq!(crash_reason(&node, "oom").await, ExitReason::OutOfMemory);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_chosen_reasons_come_through() {
    let node = node(&["crasher"]);
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
    use rusm_wasm::{PoolConfig, WasmConfig, WasmNode};
    let config = WasmConfig {
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
    node.load_file("crasher", rusm_e2e::component("crasher").unwrap())
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
