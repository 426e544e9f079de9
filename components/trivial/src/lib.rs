//! `trivial`: the smallest actor, used by the spawn benchmark.
//!
//! # Init
//!
//! Empty: returns at once (reason `normal`). A pid as 8 little-endian bytes: sends
//! that pid one data message (tag 1, empty payload), then returns. Any other init ends
//! the process with a `custom` reason saying so.
//!
//! # Messages
//!
//! None.

use rusm_guest::{Pid, send};

fn run(init: Vec<u8>) -> Result<(), String> {
    match init.len() {
        0 => Ok(()),
        8 => {
            let to = Pid::from_slice(&init).expect("init holds 8 bytes");
            send(to, 1, b"").map_err(|e| format!("trivial: cannot notify {to}: {e}"))
        }
        len => Err(format!(
            "trivial: init must be empty or a pid (8 bytes), got {len} bytes"
        )),
    }
}

rusm_guest::actor!(run);
