//! `ping-pong`: echoes data messages back to their sender, or drives round trips
//! against such an echoer (the wasm-to-wasm ping-pong benchmark pair).
//!
//! All integers are little-endian; a pid is its raw number as a `u64`. Both sides make
//! each step — send, then wait for the next message — with one `send-receive` call
//! into the runtime; the `mode` byte selects separate `send` and `receive` calls
//! instead (the benchmark compares the two). The messages exchanged are the same.
//!
//! # Ponger (init empty, or one byte: `mode`)
//!
//! Handles data messages:
//!
//! - payload exactly `stop` (4 bytes, any tag): returns, ending with reason `normal`;
//! - payload of at least 8 bytes, any tag `t`: the first 8 bytes are the sender's pid;
//!   replies to that pid with tag `t + 1` (wrapping) and the very same payload;
//! - any other data message, and every `down` or `exit` message: ignored.
//!
//! # Pinger (init of 24, 28 or 29 bytes)
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | `peer`: the ponger's pid |
//! | 8..16 | `rounds`: `u64`, round trips to make |
//! | 16..24 | `reporter`: pid to tell when done |
//! | 24..28 | optional `body_len`: `u32`, extra zero bytes after the pid in each ping (default 0) |
//! | 28 | optional `mode` (default 0) |
//!
//! Monitors the peer, then `rounds` times: sends tag 1 with payload
//! `own pid (8 bytes) ++ body_len zero bytes` to the peer and waits for the tag-2 reply.
//! Then sends the reporter tag 3 with payload `rounds` (`u64`) and returns (`normal`).
//! The peer is left running. If the peer ends first, the pinger ends with
//! `custom:ping-pong: peer <0.N> ended: <reason>`; a reply of the wrong length ends it
//! with `custom:ping-pong: reply does not match the ping`.
//!
//! # Mode
//!
//! `0`: one `send-receive` per step (the default); `1`: a `send`, then a `receive`;
//! `2`: a `send`, then a `try-receive`, then a `receive` only when nothing was queued.
//! Any other value, and any other init, ends the process with a `custom` reason saying
//! so.

use rusm_guest::wire::Reader;
use rusm_guest::{
    Message, Pid, Selector, Tag, monitor, receive, self_pid, send, send_receive, try_receive,
};

/// The tag of a ping.
const PING_TAG: Tag = 1;
/// The tag of the ponger's reply to a ping.
const PONG_TAG: Tag = PING_TAG + 1;
/// The tag of the pinger's report.
const DONE_TAG: Tag = 3;

/// How each side makes a step: send, then wait for the next message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One `send-receive` call.
    Combined,
    /// A `send` call, then a `receive` call.
    Separate,
    /// A `send` call, then a `try-receive` call, then a `receive` call if nothing was
    /// queued.
    TryFirst,
}

impl Mode {
    fn from_byte(byte: u8) -> Result<Mode, String> {
        match byte {
            0 => Ok(Mode::Combined),
            1 => Ok(Mode::Separate),
            2 => Ok(Mode::TryFirst),
            other => Err(format!("ping-pong: mode must be 0, 1 or 2, got {other}")),
        }
    }
}

fn run(init: Vec<u8>) -> Result<(), String> {
    match init.len() {
        0 => pong(Mode::Combined),
        1 => pong(Mode::from_byte(init[0])?),
        24 | 28 | 29 => {
            let mut reader = Reader::new(&init);
            let peer = reader.pid().map_err(|e| e.to_string())?;
            let rounds = reader.u64().map_err(|e| e.to_string())?;
            let reporter = reader.pid().map_err(|e| e.to_string())?;
            let body_len = if reader.is_empty() {
                0
            } else {
                reader.u32().map_err(|e| e.to_string())?
            };
            let mode = match reader.rest() {
                [] => Mode::Combined,
                [byte] => Mode::from_byte(*byte)?,
                _ => unreachable!("the init length was checked"),
            };
            ping(peer, rounds, reporter, body_len as usize, mode)
        }
        len => Err(format!(
            "ping-pong: init must be 0 or 1 bytes (ponger) or 24, 28 or 29 bytes (pinger), \
             got {len} bytes"
        )),
    }
}

fn pong(mode: Mode) -> Result<(), String> {
    let mut next = receive();
    loop {
        let Message::Data { tag, payload } = next else {
            next = receive();
            continue;
        };
        if payload == b"stop" {
            return Ok(());
        }
        let Some(sender) = payload.get(..8).and_then(Pid::from_slice) else {
            next = receive();
            continue;
        };
        let failed = |e| format!("ping-pong: cannot reply to {sender}: {e}");
        next = match mode {
            Mode::Combined => {
                send_receive(sender, tag.wrapping_add(1), &payload).map_err(failed)?
            }
            Mode::Separate => {
                send(sender, tag.wrapping_add(1), &payload).map_err(failed)?;
                receive()
            }
            Mode::TryFirst => {
                send(sender, tag.wrapping_add(1), &payload).map_err(failed)?;
                try_receive().unwrap_or_else(receive)
            }
        };
    }
}

fn ping(peer: Pid, rounds: u64, reporter: Pid, body_len: usize, mode: Mode) -> Result<(), String> {
    let watch = monitor(peer);
    let selector = Selector::new().tag(PONG_TAG).monitor(watch);
    let mut ping = self_pid().to_le_bytes().to_vec();
    ping.resize(8 + body_len, 0);
    let failed = |e| format!("ping-pong: cannot ping {peer}: {e}");
    for _ in 0..rounds {
        let reply = match mode {
            Mode::Combined => selector
                .send_receive(peer, PING_TAG, &ping)
                .map_err(failed)?,
            Mode::Separate => {
                send(peer, PING_TAG, &ping).map_err(failed)?;
                selector.receive()
            }
            Mode::TryFirst => {
                send(peer, PING_TAG, &ping).map_err(failed)?;
                selector.try_receive().unwrap_or_else(|| selector.receive())
            }
        };
        match reply {
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
