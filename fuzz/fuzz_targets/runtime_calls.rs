//! Coverage-guided fuzzing of the `rusm:runtime` host functions: every input is a
//! program for the `runtime-fuzz` guest (arbitrary calls with arbitrary arguments, in
//! any order), run on one real node through the real ABI by the harness the
//! end-to-end tests share (`tests/fuzz/harness.rs`). A finding is a host panic, an
//! untyped or unbounded error, an exit the runtime does not document, or something
//! the guest made the host hold that outlives it.

#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use rusm_otp::Runtime;
use rusm_wasm::{WasmConfig, WasmNode};

#[path = "../../tests/fuzz/harness.rs"]
mod harness;

/// One node and harness for the whole run, on a runtime of its own.
struct Fuzzing {
    rt: tokio::runtime::Runtime,
    harness: Mutex<harness::Harness>,
}

fn fuzzing() -> &'static Fuzzing {
    static FUZZING: OnceLock<Fuzzing> = OnceLock::new();
    FUZZING.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let harness = rt.block_on(async {
            let node =
                WasmNode::new(Runtime::new(), WasmConfig::default()).expect("the wasm node starts");
            for name in harness::COMPONENTS {
                let path = rusm_e2e::component(name).expect("the component is built");
                node.load_file(name, path).expect("the component loads");
            }
            harness::Harness::new(node)
        });
        Fuzzing {
            rt,
            harness: Mutex::new(harness),
        }
    })
}

fuzz_target!(|program: &[u8]| {
    let fuzzing = fuzzing();
    let mut harness = fuzzing.harness.lock().expect("no earlier input panicked");
    if let Err(why) = fuzzing.rt.block_on(harness.check_program(program)) {
        panic!("{why}");
    }
});
