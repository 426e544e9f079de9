//! A handler-style actor importing a function of its embedder's,
//! `rusm-test:nest/hook.call`, besides `rusm:runtime`. Every data message whose
//! payload starts with a pid (8 little-endian bytes) makes one call; the answer goes
//! back to that pid with the tag plus one and the call's result (8 little-endian
//! bytes). An embedder's tests use it to run their host functions inside a handler's
//! call (one that calls a plugin, say).

use rusm_guest::{Handler, Message, Next, Pid, send};

mod hook {
    wit_bindgen::generate!({
        inline: r"
            package rusm-test:nest;

            interface hook {
                /// Whatever the embedder computes.
                call: func(argument: u64) -> u64;
            }

            world hooked {
                import hook;
            }
        ",
    });
}

struct Hooked;

impl Handler for Hooked {
    fn init(_init: Vec<u8>, _handed_over: Option<Vec<u8>>) -> Result<Self, String> {
        Ok(Hooked)
    }

    fn handle(&mut self, message: Message) -> Next {
        if let Message::Data { tag, payload } = message
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {
            let answer = hook::rusm_test::nest::hook::call(tag);
            let _ = send(from, tag + 1, answer.to_le_bytes());
        }
        Next::Wait
    }
}

rusm_guest::handler!(Hooked);
