//! A chat room's connection, handler style (route `kind = "websocket"`): joins the
//! actor registered as `chat-room` (component `chat-room`) with its connection's pid
//! and posts its client's text there; the room sends every post to every member's
//! connection. Ends when the client closes.

use rusm_guest::ws::{Frame, Init};
use rusm_guest::{ExitReason, Handler, Message, Next, Pid, send, whereis};

/// To the room: join with this connection (payload: its pid, 8 bytes).
const JOIN: u64 = 1;
/// To the room: a post (payload: the text).
const POST: u64 = 2;

struct Chat {
    room: Pid,
}

impl Handler for Chat {
    fn init(init: Vec<u8>, _handed_over: Option<Vec<u8>>) -> Result<Self, String> {
        let init = Init::decode(&init).map_err(|e| e.to_string())?;
        let room = whereis("chat-room").ok_or("no process is registered as chat-room")?;
        send(room, JOIN, init.conn.to_le_bytes()).map_err(|e| e.to_string())?;
        Ok(Chat { room })
    }

    fn handle(&mut self, message: Message) -> Next {
        match Frame::from_message(&message) {
            Some(Frame::Text(text)) => {
                let _ = send(self.room, POST, text.as_bytes());
                Next::Wait
            }
            Some(Frame::Close(_)) => Next::Stop(ExitReason::Normal),
            _ => Next::Wait,
        }
    }
}

rusm_guest::handler!(Chat);
