//! The service of the `apps/cluster` demo: registers the global name its init text
//! gives ("greeter" without one), then answers every call `[caller pid: 8 bytes][text]`
//! (tag 10) with `hello from <pid>: <text>` (tag 11) to the caller, wherever in the
//! cluster it runs.
//!
//! A successor started after its predecessor's node died may find the name still held
//! by the dead holder on nodes that have not yet declared that node down (each node's
//! failure detector decides for itself). So while the name is held it tries again ten
//! times a second, for up to ten seconds, then gives up with the error.

use std::time::Duration;

use rusm_guest::{Error, Message, Pid, Selector, register_global, self_pid, send};

const CALL: u64 = 10;
const ANSWER: u64 = 11;
/// Tries at taking the name, a tenth of a second apart.
const TRIES: u32 = 100;

fn run(init: Vec<u8>) -> Result<(), String> {
    let name = if init.is_empty() {
        "greeter".to_string()
    } else {
        String::from_utf8(init).map_err(|_| "the init text is not UTF-8".to_string())?
    };
    let me = self_pid();
    let mut tries = 0;
    loop {
        match register_global(&name) {
            Ok(()) => break,
            Err(Error::AlreadyRegistered(_)) if tries < TRIES => {
                tries += 1;
                // Nothing matches an empty selector: a pause that messages do not end.
                let _ = Selector::new().receive_timeout(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("register-global {name:?}: {e}")),
        }
    }
    let shown = format!("<{}.{}>", me.node(), me.serial());
    println!("greeter: {shown} on node {} holds {name:?}", me.node());
    loop {
        let Message::Data { tag, payload } = Selector::new().tag(CALL).receive() else {
            continue;
        };
        let Some(from) = payload.get(..8).and_then(Pid::from_slice) else {
            continue;
        };
        let text = String::from_utf8_lossy(&payload[8..]);
        let answer = format!("hello from {shown}: {text}");
        if send(from, tag + 1, answer.as_bytes()).is_err() {
            // A caller gone is no reason to stop serving.
            continue;
        }
        debug_assert_eq!(tag + 1, ANSWER);
    }
}

rusm_guest::actor!(run);
