//! A WebSocket connection's actor (route `kind = "websocket"`): one process per
//! connection, frames as messages.
//!
//! Echoes every text and binary frame. A few texts are commands instead:
//!
//! - `bye`: closes with 4000 `bye` and ends.
//! - `crash`: panics (the client sees close 1011).
//! - `whoami`: answers with this process's raw pid.
//! - `path`: answers with the request's path and query, `PATH?QUERY`.
//! - `big N`: tries to send an N-byte text; when that is refused, answers
//!   `refused: ERROR`.
//! - `flood COUNT SIZE`: sends COUNT binary frames of SIZE bytes as fast as it can,
//!   then sends its pid (8 bytes, tag 1) to the process registered as
//!   `ws-flood-report`, if any.
//! - `stall`: stops reading its mailbox (waits for a tag nobody sends).
//!
//! Ends when the client closes.

use rusm_guest::ws::{self, Frame, Init};
use rusm_guest::{receive, receive_tag, self_pid, send, whereis};

/// A tag nothing sends, for `stall`.
const NEVER: u64 = 0x5eed;

fn run(init: Vec<u8>) -> Result<(), String> {
    let init = Init::decode(&init).map_err(|e| e.to_string())?;
    let conn = init.conn;
    loop {
        let message = receive();
        let sent = match Frame::from_message(&message) {
            Some(Frame::Text(text)) => match text.split_once(' ') {
                _ if text == "bye" => {
                    ws::close(conn, 4000, "bye").map_err(|e| e.to_string())?;
                    return Ok(());
                }
                _ if text == "crash" => panic!("asked to crash"),
                _ if text == "whoami" => ws::send_text(conn, &self_pid().as_raw().to_string()),
                _ if text == "path" => {
                    ws::send_text(conn, &format!("{}?{}", init.path, init.query))
                }
                _ if text == "stall" => {
                    receive_tag(NEVER);
                    Ok(())
                }
                Some(("big", n)) => {
                    let n: usize = n.parse().map_err(|_| "big N: N is a number")?;
                    match ws::send_text(conn, &"x".repeat(n)) {
                        Err(e) => ws::send_text(conn, &format!("refused: {e}")),
                        Ok(()) => Ok(()),
                    }
                }
                Some(("flood", args)) => {
                    let (count, size) = args.split_once(' ').ok_or("flood COUNT SIZE")?;
                    let count: usize = count.parse().map_err(|_| "flood: COUNT")?;
                    let frame = vec![7u8; size.parse().map_err(|_| "flood: SIZE")?];
                    for _ in 0..count {
                        ws::send_binary(conn, &frame).map_err(|e| e.to_string())?;
                    }
                    match whereis("ws-flood-report") {
                        Some(report) => send(report, 1, self_pid().to_le_bytes()),
                        None => Ok(()),
                    }
                }
                _ => ws::send_text(conn, &text),
            },
            Some(Frame::Binary(bytes)) => ws::send_binary(conn, &bytes),
            Some(Frame::Close(_)) => return Ok(()),
            None => Ok(()),
        };
        sent.map_err(|e| e.to_string())?;
    }
}

rusm_guest::actor!(run);
