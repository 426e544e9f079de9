//! The example actor shown in the repository README (a test checks the two agree).
//!
//! Every data message whose payload starts with a pid (8 little-endian bytes) is sent
//! back to that pid with the tag plus one and the same payload. Runs until killed.

use rusm_guest::{Message, Pid, receive, send};

fn run(_init: Vec<u8>) -> Result<(), String> {
    loop {
        if let Message::Data { tag, payload } = receive()
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {
            send(from, tag + 1, &payload).map_err(|e| e.to_string())?;
        }
    }
}

rusm_guest::actor!(run);
