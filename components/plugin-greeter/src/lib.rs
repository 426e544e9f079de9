//! `plugin-greeter`: a plugin of the `examples/plugin-host` application (WIT package
//! `myapp:plugin`, world `plugin`), version 1.
//!
//! - `describe` returns `greeter 1`.
//! - `greet(name)` returns `<greeting>, <name>!`, where the greeting is the host's
//!   `greeting` setting (default `Hello`), and logs `greeted <name>` to the host.
//! - `add(a, b)` returns `a + b` (wrapping).
//! - `run(job)` runs one job:
//!   - `env:<NAME>`: the environment variable's value, or an error naming it;
//!   - `read:<path>`: the file's text, or the WASI error as `<Kind>: <message>`;
//!   - `ask:<registered name>`: sends the process of that name a data message (tag 1)
//!     holding this plugin's pid (8 little-endian bytes), waits up to 5 seconds for a
//!     data message back and returns its payload as text;
//!   - `crash`: panics, which traps;
//!   - anything else is an error saying the job is unknown.

use std::time::Duration;

use rusm_guest::{Message, receive_timeout, self_pid, send, whereis};

wit_bindgen::generate!({
    path: "../../examples/plugin-host/wit",
    world: "plugin",
});

use exports::myapp::plugin::handler::Guest;
use myapp::plugin::host;

/// The tag of the message `ask:` sends.
const ASK_TAG: u64 = 1;

struct Greeter;

impl Guest for Greeter {
    fn describe() -> String {
        "greeter 1".to_owned()
    }

    fn greet(name: String) -> String {
        host::log(&format!("greeted {name}"));
        let greeting = host::setting("greeting").unwrap_or_else(|| "Hello".to_owned());
        format!("{greeting}, {name}!")
    }

    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn run(job: String) -> Result<String, String> {
        match job.split_once(':') {
            Some(("env", name)) => std::env::var(name).map_err(|e| format!("{name}: {e}")),
            Some(("read", path)) => {
                std::fs::read_to_string(path).map_err(|e| format!("{:?}: {e}", e.kind()))
            }
            Some(("ask", name)) => ask(name),
            None if job == "crash" => panic!("plugin-greeter was asked to crash"),
            _ => Err(format!("unknown job {job:?}")),
        }
    }
}

/// Send the process registered as `name` our pid and return its answer.
fn ask(name: &str) -> Result<String, String> {
    let to = whereis(name).ok_or_else(|| format!("no process is registered as {name:?}"))?;
    send(to, ASK_TAG, self_pid().to_le_bytes()).map_err(|e| e.to_string())?;
    loop {
        match receive_timeout(Duration::from_secs(5)) {
            Some(Message::Data { payload, .. }) => {
                return String::from_utf8(payload).map_err(|e| e.to_string());
            }
            Some(_) => continue,
            None => return Err(format!("{name:?} did not answer within 5 s")),
        }
    }
}

export!(Greeter);
