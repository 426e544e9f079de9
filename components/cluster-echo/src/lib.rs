//! A service of a cluster: registers the global name its init text gives ("echo"
//! without one), then answers every data message whose payload starts with a pid
//! (8 little-endian bytes) by sending the payload back to that pid, tag plus one,
//! wherever in the cluster the pid lives.
//!
//! A message with tag 1 asks it to look a global name up (the rest of the payload
//! after the pid) and answer with that pid's 8 bytes, or none when it is not
//! registered.

use rusm_guest::{Message, Pid, receive, register_global, send, whereis_global};

fn run(init: Vec<u8>) -> Result<(), String> {
    let name = if init.is_empty() {
        "echo".to_string()
    } else {
        String::from_utf8(init).map_err(|_| "the init text is not UTF-8".to_string())?
    };
    register_global(&name).map_err(|e| format!("register-global {name:?}: {e}"))?;
    loop {
        let Message::Data { tag, payload } = receive() else {
            continue;
        };
        let Some(from) = payload.get(..8).and_then(Pid::from_slice) else {
            continue;
        };
        if tag == 1 {
            let wanted = String::from_utf8_lossy(&payload[8..]).into_owned();
            let found = whereis_global(&wanted).map(|p| p.as_raw().to_le_bytes().to_vec());
            send(from, 2, found.unwrap_or_default()).map_err(|e| e.to_string())?;
        } else {
            send(from, tag + 1, &payload).map_err(|e| e.to_string())?;
        }
    }
}

rusm_guest::actor!(run);
