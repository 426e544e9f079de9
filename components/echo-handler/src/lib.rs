//! The README's example handler-style actor: `echo` written as a handler. The host
//! calls `handle` once per message; a data message whose payload starts with a pid (8
//! little-endian bytes) is sent back to that pid with the tag plus one.

use rusm_guest::{Handler, Message, Next, Pid, send};

struct Echo;

impl Handler for Echo {
    fn init(_init: Vec<u8>, _handed_over: Option<Vec<u8>>) -> Result<Self, String> {
        Ok(Echo)
    }

    fn handle(&mut self, message: Message) -> Next {
        if let Message::Data { tag, payload } = message
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {
            let _ = send(from, tag + 1, &payload);
        }
        Next::Wait
    }
}

rusm_guest::handler!(Echo);
