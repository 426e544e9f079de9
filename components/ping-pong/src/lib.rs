//! `ping-pong`: echoes data messages back to their sender, or drives round trips
//! against such an echoer (the wasm-to-wasm ping-pong benchmark pair).
//!
//! All integers are little-endian; a pid is its raw number as a `u64`.
//!
//! # Ponger (init empty)
//!
//! Handles data messages:
//!
//! - payload exactly `stop` (4 bytes, any tag): returns, ending with reason `normal`;
//! - payload of at least 8 bytes, any tag `t`: the first 8 bytes are the sender's pid;
//!   replies to that pid with tag `t + 1` (wrapping) and the very same payload;
//! - any other data message, and every `down` or `exit` message: ignored.
//!
//! # Pinger (init of 24 or 28 bytes)
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | `peer`: the ponger's pid |
//! | 8..16 | `rounds`: `u64`, round trips to make |
//! | 16..24 | `reporter`: pid to tell when done |
//! | 24..28 | optional `body_len`: `u32`, extra zero bytes after the pid in each ping (default 0) |
//!
//! Monitors the peer, then `rounds` times: sends tag 1 with payload
//! `own pid (8 bytes) ++ body_len zero bytes` to the peer and waits for the tag-2 reply.
//! Then sends the reporter tag 3 with payload `rounds` (`u64`) and returns (`normal`).
//! The peer is left running. If the peer ends first, the pinger ends with
//! `custom:ping-pong: peer <0.N> ended: <reason>`; a reply of the wrong length ends it
//! with `custom:ping-pong: reply does not match the ping`.
//!
//! Any other init ends the process with a `custom` reason saying so.

use rusm_guest::wire::Reader;
use rusm_guest::{Message, Pid, Selector, Tag, monitor, receive, self_pid, send};

/// The tag of a ping.
const PING_TAG: Tag = 1;
/// The tag of the ponger's reply to a ping.
const PONG_TAG: Tag = PING_TAG + 1;
/// The tag of the pinger's report.
const DONE_TAG: Tag = 3;

fn run(init: Vec<u8>) -> Result<(), String> {
    match init.len() {
        0 => pong(),
        24 | 28 => {
            let mut reader = Reader::new(&init);
            let peer = reader.pid().map_err(|e| e.to_string())?;
            let rounds = reader.u64().map_err(|e| e.to_string())?;
            let reporter = reader.pid().map_err(|e| e.to_string())?;
            let body_len = if reader.is_empty() {
                0
            } else {
                reader.u32().map_err(|e| e.to_string())?
            };
            ping(peer, rounds, reporter, body_len as usize)
        }
        len => Err(format!(
            "ping-pong: init must be empty (ponger) or 24 or 28 bytes (pinger), got {len} bytes"
        )),
    }
}

fn pong() -> Result<(), String> {
    loop {
        let Message::Data { tag, payload } = receive() else {
            continue;
        };
        if payload == b"stop" {
            return Ok(());
        }
        let Some(sender) = payload.get(..8).and_then(Pid::from_slice) else {
            continue;
        };
        send(sender, tag.wrapping_add(1), &payload)
            .map_err(|e| format!("ping-pong: cannot reply to {sender}: {e}"))?;
    }
}

fn ping(peer: Pid, rounds: u64, reporter: Pid, body_len: usize) -> Result<(), String> {
    let watch = monitor(peer);
    let selector = Selector::new().tag(PONG_TAG).monitor(watch);
    let mut ping = self_pid().to_le_bytes().to_vec();
    ping.resize(8 + body_len, 0);
    for _ in 0..rounds {
        send(peer, PING_TAG, &ping).map_err(|e| format!("ping-pong: cannot ping {peer}: {e}"))?;
        match selector.receive() {
            Message::Data { payload, .. } if payload.len() == ping.len() => {}
            Message::Data { .. } => return Err("ping-pong: reply does not match the ping".into()),
            Message::Down { reason, .. } => {
                return Err(format!("ping-pong: peer {peer} ended: {reason}"));
            }
            Message::Exit { .. } | Message::Upgrade { .. } => {
                unreachable!("the selector takes no exit or upgrade messages")
            }
        }
    }
    send(reporter, DONE_TAG, rounds.to_le_bytes())
        .map_err(|e| format!("ping-pong: cannot report to {reporter}: {e}"))
}

rusm_guest::actor!(run);
