//! `plugin-looper`: a misbehaving plugin of the `examples/plugin-host` application.
//!
//! - `describe` returns `looper 1`; `greet(name)` returns `looping, <name>`;
//!   `add(a, b)` returns `a + b` (wrapping).
//! - `run(job)` never returns: it logs `spinning on <job>` through the host, then
//!   spins in a loop that calls nothing, so only the host's deadline, a cancel or a
//!   kill can stop it.

use std::hint::black_box;

wit_bindgen::generate!({
    path: "../../examples/plugin-host/wit",
    world: "plugin",
});

use exports::myapp::plugin::handler::Guest;

struct Looper;

impl Guest for Looper {
    fn describe() -> String {
        "looper 1".to_owned()
    }

    fn greet(name: String) -> String {
        format!("looping, {name}")
    }

    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn run(job: String) -> Result<String, String> {
        myapp::plugin::host::log(&format!("spinning on {job}"));
        let mut turns = 0u64;
        loop {
            turns = black_box(turns.wrapping_add(job.len() as u64 + 1));
        }
    }
}

export!(Looper);
