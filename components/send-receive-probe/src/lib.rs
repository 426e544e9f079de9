//! `send-receive-probe`: runs `send-receive`, `try-receive`, `send` or `call` when told
//! to and reports what each returned, so tests can see the combined imports from
//! inside a guest.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8; a byte string is a `u32` length then the bytes.
//!
//! # Init
//!
//! `reporter`: the pid that gets the reports (8 bytes). The probe handles upgrades
//! itself (`handle_upgrades(true)`), so an upgrade request comes back from a
//! `send-receive` or `try-receive` without selector as the `upgrade` message.
//!
//! # Commands
//!
//! Data messages tagged 1000, taken with a selective receive (every other message keeps
//! its place). The payload is `op` `u8`, then per op:
//!
//! | op | name | fields | what it does |
//! | --- | --- | --- | --- |
//! | 1 | send-receive | `to` pid, `tag` `u64`, `payload` byte string, `timeout`, `selector` | `send_receive` (with `timeout`: `send_receive_timeout`; with `selector`: the `Selector` methods) |
//! | 2 | try-receive | `selector` | `try_receive`, or `Selector::try_receive` |
//! | 3 | send | `to` pid, `tag` `u64`, `payload` byte string | `send` |
//! | 4 | call | `server` pid, `tag` `u64`, `body` byte string, `timeout_ms` `u64` | `call` |
//!
//! `timeout` is `u8` 0 (none: wait as long as it takes) or 1 then `u64` milliseconds.
//! `selector` is `u8` 0 (none) or 1 then `u32` count and that many `u64` tags.
//!
//! # Reports
//!
//! One data message to `reporter`, tag 1001, per command; its payload is `kind` `u8`
//! then:
//!
//! | kind | meaning | then |
//! | --- | --- | --- |
//! | 0 | nothing (a timeout, an empty mailbox) | — |
//! | 1 | a data message (for `call`: the reply) | its tag `u64`, then its payload to the end (for `call`, tag 0) |
//! | 2 | a `down` message | monitor `u64`, pid, reason as text to the end |
//! | 3 | an `exit` message | from pid, reason as text to the end |
//! | 4 | an `upgrade` message | version `u64` |
//! | 5 | an error | its text to the end (`rusm_guest::Error`, or `rusm_guest::CallError`) |
//! | 6 | done (`send` succeeded) | — |
//!
//! After reporting an `upgrade` the probe hands over an empty state; the new version
//! starts again with the same init. A command it cannot read ends it with
//! `custom:send-receive-probe: bad command: ...`; a bad init with
//! `custom:send-receive-probe: bad init: ...`.

use std::time::Duration;

use rusm_guest::wire::{DecodeError, Reader, Writer};
use rusm_guest::{
    Message, Selector, Tag, call, hand_over, handle_upgrades, receive_tag, send, send_receive,
    send_receive_timeout, try_receive,
};

/// The tag of a command.
const COMMAND_TAG: Tag = 1000;
/// The tag of a report.
const REPORT_TAG: Tag = 1001;

fn run(init: Vec<u8>) -> Result<(), String> {
    let reporter = Reader::new(&init)
        .pid()
        .map_err(|e| format!("send-receive-probe: bad init: {e}"))?;
    handle_upgrades(true);
    loop {
        let command = receive_tag(COMMAND_TAG);
        let report =
            execute(&command).map_err(|e| format!("send-receive-probe: bad command: {e}"))?;
        let upgrade = matches!(report, Outcome::Received(Some(Message::Upgrade { .. })));
        send(reporter, REPORT_TAG, report.encode())
            .map_err(|e| format!("send-receive-probe: cannot report: {e}"))?;
        if upgrade {
            let _ = hand_over([]);
        }
    }
}

/// What a command got.
enum Outcome {
    Received(Option<Message>),
    Failed(String),
    Done,
}

fn execute(command: &[u8]) -> Result<Outcome, DecodeError> {
    let mut reader = Reader::new(command);
    let outcome = match reader.u8()? {
        1 => {
            let to = reader.pid()?;
            let tag = reader.u64()?;
            let payload = reader.bytes()?;
            let timeout = optional_timeout(&mut reader)?;
            let selector = optional_selector(&mut reader)?;
            let result = match (timeout, selector) {
                (None, None) => send_receive(to, tag, payload).map(Some),
                (Some(timeout), None) => send_receive_timeout(to, tag, payload, timeout),
                (None, Some(selector)) => selector.send_receive(to, tag, payload).map(Some),
                (Some(timeout), Some(selector)) => {
                    selector.send_receive_timeout(to, tag, payload, timeout)
                }
            };
            match result {
                Ok(message) => Outcome::Received(message),
                Err(error) => Outcome::Failed(error.to_string()),
            }
        }
        2 => Outcome::Received(match optional_selector(&mut reader)? {
            None => try_receive(),
            Some(selector) => selector.try_receive(),
        }),
        3 => {
            let to = reader.pid()?;
            let tag = reader.u64()?;
            match send(to, tag, reader.bytes()?) {
                Ok(()) => Outcome::Done,
                Err(error) => Outcome::Failed(error.to_string()),
            }
        }
        4 => {
            let server = reader.pid()?;
            let tag = reader.u64()?;
            let body = reader.bytes()?;
            let timeout = Duration::from_millis(reader.u64()?);
            match call(server, tag, body, timeout) {
                Ok(payload) => Outcome::Received(Some(Message::Data { tag: 0, payload })),
                Err(error) => Outcome::Failed(error.to_string()),
            }
        }
        op => return Err(DecodeError::new(format!("unknown op {op}"))),
    };
    reader.end()?;
    Ok(outcome)
}

fn optional_timeout(reader: &mut Reader<'_>) -> Result<Option<Duration>, DecodeError> {
    Ok(match reader.u8()? {
        0 => None,
        _ => Some(Duration::from_millis(reader.u64()?)),
    })
}

fn optional_selector(reader: &mut Reader<'_>) -> Result<Option<Selector>, DecodeError> {
    if reader.u8()? == 0 {
        return Ok(None);
    }
    let count = reader.u32()?;
    let mut selector = Selector::new();
    for _ in 0..count {
        selector = selector.tag(reader.u64()?);
    }
    Ok(Some(selector))
}

impl Outcome {
    fn encode(&self) -> Vec<u8> {
        let mut out = Writer::new();
        match self {
            Outcome::Received(None) => out.u8(0),
            Outcome::Received(Some(Message::Data { tag, payload })) => {
                out.u8(1).u64(*tag).raw(payload)
            }
            Outcome::Received(Some(Message::Down {
                monitor,
                pid,
                reason,
            })) => out
                .u8(2)
                .u64(monitor.as_raw())
                .pid(*pid)
                .raw(reason.to_string().as_bytes()),
            Outcome::Received(Some(Message::Exit { from, reason })) => {
                out.u8(3).pid(*from).raw(reason.to_string().as_bytes())
            }
            Outcome::Received(Some(Message::Upgrade { version })) => out.u8(4).u64(*version),
            Outcome::Failed(text) => out.u8(5).raw(text.as_bytes()),
            Outcome::Done => out.u8(6),
        };
        out.finish()
    }
}

rusm_guest::actor!(run);
