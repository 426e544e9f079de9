//! `crasher`: fails on purpose, in the way its init selects.
//!
//! # Init
//!
//! One of these ASCII words (the whole init, no length prefix):
//!
//! | init | what happens | the reason the runtime should report |
//! | --- | --- | --- |
//! | `unreachable` | executes a wasm `unreachable` instruction | `crashed:...` |
//! | `oom` | allocates 1 MiB chunks, writing every byte, until allocation fails (the allocator then aborts with a trap) | `out-of-memory` |
//! | `stack-overflow` | recurses without bound; each call does work after the recursive one, so it cannot become a loop | `crashed:...` |
//! | `panic` | panics with `crasher: requested panic` (built with `panic = "abort"`: a trap) | `crashed:...` |
//! | `error` | returns `Err("crasher: requested error")` | `custom:crasher: requested error` |
//! | `exit-custom` | calls `exit(self, custom("crasher: requested exit"))` | `custom:crasher: requested exit` |
//! | `long-error` | returns an `Err` of 1 MiB of text | `custom:` with the text cut to the runtime's bound |
//! | `huge-selector` | a selective receive naming 100,000 tags | `crashed:` naming the selector bound |
//! | `long-exit` | calls `exit(self, custom(...))` with 1 MiB of text | `custom:` with the text cut to the runtime's bound |
//!
//! After `exit-custom` the process waits up to 10 s for the signal to end it, then
//! ends with `custom:crasher: still running after exit(self, custom)`. Any other init
//! ends it with `custom:crasher: unknown mode "..."`.
//!
//! # Messages
//!
//! None.

use std::hint::black_box;
use std::time::Duration;

use rusm_guest::{ExitReason, Selector, exit, self_pid};

/// The length of the reasons of the `long-*` modes.
const LONG: usize = 1 << 20;

/// The size of each allocation of the `oom` mode.
const CHUNK: usize = 1 << 20;

fn run(init: Vec<u8>) -> Result<(), String> {
    match init.as_slice() {
        b"unreachable" => trap(),
        b"oom" => exhaust_memory(),
        b"stack-overflow" => {
            let depth = descend(0);
            Err(format!("crasher: recursion returned after {depth}"))
        }
        b"panic" => panic!("crasher: requested panic"),
        b"error" => Err("crasher: requested error".into()),
        b"long-error" => Err("e".repeat(LONG)),
        b"huge-selector" => {
            let _ = Selector::new()
                .tags(0..100_000)
                .receive_timeout(Duration::from_millis(10));
            Err("crasher: a selector of 100,000 tags was accepted".into())
        }
        b"long-exit" => {
            exit(self_pid(), ExitReason::custom("x".repeat(LONG)))
                .map_err(|e| format!("crasher: cannot exit: {e}"))?;
            Err("crasher: still running after exit(self, custom)".into())
        }
        b"exit-custom" => {
            exit(self_pid(), ExitReason::custom("crasher: requested exit"))
                .map_err(|e| format!("crasher: cannot exit: {e}"))?;
            // The signal ends this process at the runtime's next chance; an empty
            // selector gives it one without taking any message.
            let _ = Selector::new().receive_timeout(Duration::from_secs(10));
            Err("crasher: still running after exit(self, custom)".into())
        }
        other => Err(format!(
            "crasher: unknown mode {:?}",
            String::from_utf8_lossy(other)
        )),
    }
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // `vec!` with a non-zero byte writes every page, so the memory is really used.
        let chunk = black_box(vec![0xa5_u8; CHUNK]);
        hoard.push(chunk);
        black_box(&hoard);
    }
}

/// Recurses until the stack runs out. The result of each call feeds the work done
/// after it, so the recursion is not a tail call and cannot be turned into a loop.
#[inline(never)]
fn descend(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let below = descend(black_box(depth + 1));
    black_box(below.wrapping_mul(31) ^ depth)
}

rusm_guest::actor!(run);
