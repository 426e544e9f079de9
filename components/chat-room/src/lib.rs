//! The chat room: registers as `chat-room`; a `ws-chat` connection joins with its
//! connection's pid (tag 1) and is welcomed with `joined N` (N members); every post
//! (tag 2, text) goes to every member's connection as a text frame. A member whose
//! connection ends (seen through a monitor) leaves.

use rusm_guest::{Message, Pid, monitor, receive, register, ws};

const JOIN: u64 = 1;
const POST: u64 = 2;

fn run(_init: Vec<u8>) -> Result<(), String> {
    register("chat-room").map_err(|e| e.to_string())?;
    let mut members: Vec<Pid> = Vec::new();
    loop {
        match receive() {
            Message::Data { tag: JOIN, payload } => {
                if let Some(conn) = Pid::from_slice(&payload) {
                    monitor(conn);
                    members.push(conn);
                    let _ = ws::send_text(conn, &format!("joined {}", members.len()));
                }
            }
            Message::Data { tag: POST, payload } => {
                let text = String::from_utf8_lossy(&payload);
                for member in &members {
                    let _ = ws::send_text(*member, &text);
                }
            }
            Message::Down { pid, .. } => members.retain(|m| *m != pid),
            _ => {}
        }
    }
}

rusm_guest::actor!(run);
