//! A handler-style echo: every data message whose payload starts with a pid (8
//! little-endian bytes) is sent back to that pid with the tag plus one and the same
//! payload. Between messages it runs no code, so an idle one holds no host stack (the
//! `idle-actors` benchmark counts how many a node holds).
//!
//! After an upgrade it answers tag 3 with tag 4 and the state it was handed (so a test
//! can reload another handler to this one and see the state arrive); tag 3 is echoed
//! like any other tag on a fresh start.

use rusm_guest::{Handler, Message, Next, Pid, send};

struct IdleEcho {
    handed_over: Option<Vec<u8>>,
}

impl Handler for IdleEcho {
    fn init(_init: Vec<u8>, handed_over: Option<Vec<u8>>) -> Result<Self, String> {
        Ok(IdleEcho { handed_over })
    }

    fn handle(&mut self, message: Message) -> Next {
        if let Message::Data { tag, payload } = message
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {
            let _ = match (&self.handed_over, tag) {
                (Some(state), 3) => send(from, 4, state),
                _ => send(from, tag + 1, &payload),
            };
        }
        Next::Wait
    }
}

rusm_guest::handler!(IdleEcho);
