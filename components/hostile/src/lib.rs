//! `hostile`: attacks what the host holds for a process — messages it sends itself,
//! timers, monitors of a dead process, oversized messages to another process — at a
//! size its init chooses, reports how far it got, then holds on to whatever the host
//! kept for it until told to stop, so a test can measure the host while the attack's
//! gains are alive.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`.
//!
//! # Init
//!
//! `reporter` pid, `op` `u8`, then per op:
//!
//! | op | name | more fields | what it does | the report's payload |
//! | --- | --- | --- | --- | --- |
//! | 1 | flood | `size` `u32`, `count` `u32` | sends itself `count` messages (tag 1) of `size` bytes, never receiving them, stopping at the first error | how many sends succeeded, `u32`, then the first error as text (empty when none) |
//! | 2 | timers | `size` `u32`, `count` `u32`, `delay_ms` `u64` | sets up to `count` `send-after` timers for itself (tag 2) of `size` bytes each, stopping at the first error | how many it set, `u32`, then the first error as text |
//! | 3 | monitors | `target` pid, `count` `u32` | `monitor(target)` `count` times (each a waiting `down` when the target is dead) | `count`, `u32` (past the policy's `monitors` limit the process traps instead) |
//! | 4 | send | `target` pid, `size` `u32` | sends `target` one message (tag 4) of `size` bytes | empty, or the error as text |
//!
//! # Reports to `reporter`
//!
//! One message: tag 1 with the payload above. Then the process holds what it made the
//! host keep (its queued messages, timers and `down`s; it receives nothing else) until
//! a data message tagged 0 whose payload is exactly `stop` arrives, and returns
//! (`normal`). A bad init ends it with `custom:hostile: bad init: ...`.

use std::time::Duration;

use rusm_guest::wire::{DecodeError, Reader};
use rusm_guest::{Pid, Tag, monitor, receive_tag, self_pid, send, send_after};

const REPORT: Tag = 1;
const STOP: Tag = 0;

const FLOOD: u8 = 1;
const TIMERS: u8 = 2;
const MONITORS: u8 = 3;
const SEND: u8 = 4;

enum Op {
    Flood { size: u32, count: u32 },
    Timers { size: u32, count: u32, delay: u64 },
    Monitors { target: Pid, count: u32 },
    Send { target: Pid, size: u32 },
}

fn decode(init: &[u8]) -> Result<(Pid, Op), DecodeError> {
    let mut reader = Reader::new(init);
    let reporter = reader.pid()?;
    let op = match reader.u8()? {
        FLOOD => Op::Flood {
            size: reader.u32()?,
            count: reader.u32()?,
        },
        TIMERS => Op::Timers {
            size: reader.u32()?,
            count: reader.u32()?,
            delay: reader.u64()?,
        },
        MONITORS => Op::Monitors {
            target: reader.pid()?,
            count: reader.u32()?,
        },
        SEND => Op::Send {
            target: reader.pid()?,
            size: reader.u32()?,
        },
        other => return Err(DecodeError::new(format!("unknown op {other}"))),
    };
    reader.end()?;
    Ok((reporter, op))
}

/// `done` as a `u32`, then `error` (empty when none).
fn progress(done: u32, error: Option<String>) -> Vec<u8> {
    let mut out = done.to_le_bytes().to_vec();
    out.extend_from_slice(error.unwrap_or_default().as_bytes());
    out
}

/// Up to `count` attempts of `attempt`, stopping at the first error.
fn repeat<E: ToString>(count: u32, mut attempt: impl FnMut() -> Result<(), E>) -> Vec<u8> {
    for done in 0..count {
        if let Err(e) = attempt() {
            return progress(done, Some(e.to_string()));
        }
    }
    progress(count, None)
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let (reporter, op) = decode(&init).map_err(|e| format!("hostile: bad init: {e}"))?;
    let me = self_pid();
    let report = match op {
        Op::Flood { size, count } => {
            let payload = vec![0xf1_u8; size as usize];
            repeat(count, || send(me, 1, &payload))
        }
        Op::Timers { size, count, delay } => {
            let payload = vec![0xf2_u8; size as usize];
            let delay = Duration::from_millis(delay);
            repeat(count, || send_after(me, 2, &payload, delay).map(|_| ()))
        }
        Op::Monitors { target, count } => {
            for _ in 0..count {
                monitor(target);
            }
            count.to_le_bytes().to_vec()
        }
        Op::Send { target, size } => match send(target, 4, vec![0xf4_u8; size as usize]) {
            Ok(()) => Vec::new(),
            Err(e) => e.to_string().into_bytes(),
        },
    };
    send(reporter, REPORT, report).map_err(|e| format!("hostile: cannot report: {e}"))?;
    while receive_tag(STOP) != b"stop" {}
    Ok(())
}

rusm_guest::actor!(run);
