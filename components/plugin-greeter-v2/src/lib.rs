//! `plugin-greeter-v2`: version 2 of `plugin-greeter`, loaded over it to show a hot
//! reload in the `examples/plugin-host` application.
//!
//! - `describe` returns `greeter 2`.
//! - `greet(name)` returns `<greeting>, <name>! (v2)` (greeting: the host's `greeting`
//!   setting, default `Hello`) and logs `greeted <name> (v2)`.
//! - `add(a, b)` returns `a + b` (wrapping), as version 1 does.
//! - `run(job)` answers `v2 ran <job>`.

wit_bindgen::generate!({
    path: "../../examples/plugin-host/wit",
    world: "plugin",
});

use exports::myapp::plugin::handler::Guest;
use myapp::plugin::host;

struct Greeter;

impl Guest for Greeter {
    fn describe() -> String {
        "greeter 2".to_owned()
    }

    fn greet(name: String) -> String {
        host::log(&format!("greeted {name} (v2)"));
        let greeting = host::setting("greeting").unwrap_or_else(|| "Hello".to_owned());
        format!("{greeting}, {name}! (v2)")
    }

    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn run(job: String) -> Result<String, String> {
        Ok(format!("v2 ran {job}"))
    }
}

export!(Greeter);
